/*
 * oracle_book.h: reference books for test_book.c (oracle_book.c), each as
 * plain as it can be, so that proto/book.c's searches, hints and merges
 * are checked against code that has none. Test code only.
 *
 * - ref_side: an unsorted array, searched linearly, sorted on compare.
 * - model_side: one best-first array per side, a plain binary search by
 *   value (qb_dec_cmp) and the rules of book.h applied level by level:
 *   size 0 deletes (absent: nothing), an equal price (by value) takes the
 *   new price and size, an insert past max_levels stops with QB_ERANGE, a
 *   bad level stops with QB_EINVAL.
 */
#ifndef QB_TEST_ORACLE_BOOK_H
#define QB_TEST_ORACLE_BOOK_H

#include "book.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct ref_side {
    qb_level lv[512];
    size_t n;
} ref_side;

/* Sets price to size (size 0 deletes). */
void ref_set(ref_side *r, qb_dec price, qb_dec size);

/* True when side of b holds exactly r's levels, strictly best first. */
bool ref_matches(const ref_side *r, const qb_book *b, qb_book_side side);

/* The caller owns lv (MODEL_CAP levels per side). */
typedef struct model_side {
    qb_level *lv;
    size_t n;
} model_side;

#define MODEL_CAP 4096

/* One level into one side, by book.h's rules; QB_OK, QB_EINVAL or
 * QB_ERANGE. */
int model_set(model_side *m, qb_book_side side, qb_level l, size_t max_levels);

/* Every bid then every ask, like qb_book_apply; stops at the first error. */
int model_apply(model_side m[2], const qb_level *bids, size_t nb, const qb_level *asks, size_t na,
                size_t max_levels);

/* Same levels, same order, same text (scale included) on both sides; prints
 * the first difference to stderr. */
bool model_matches(const model_side m[2], const qb_book *b);

#endif
