/*
 * book.h: one instrument's order book (price levels, not orders).
 *
 * Each side is a sorted array of levels, best first (bids descending, asks
 * ascending): cache-friendly, binary search to find a price, memmove to
 * insert or delete. Books in this market are a few hundred to a few thousand
 * levels deep and most changes are near the top, so this beats a tree in
 * practice (see docs/BENCHMARKS.md).
 *
 *   bids: [ 100.5 | 100.4 | 100.2 | ... ]   asks: [ 100.6 | 100.7 | ... ]
 *           best                                    best
 *
 * Size 0 deletes a level; deleting a level that is not there is normal (the
 * exchange's snapshot may not have had it). A book holds at most max_levels
 * per side (bounded memory): an insert past that fails with QB_ERANGE and
 * the owner must resync. A book is owned by one thread; no locking.
 */
#ifndef QB_BOOK_H
#define QB_BOOK_H

#include "decimal.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum qb_book_side {
    QB_BID = 0,
    QB_ASK = 1,
} qb_book_side;

typedef struct qb_level {
    qb_dec price;
    qb_dec size;
} qb_level;

typedef struct qb_book qb_book;

#define QB_BOOK_DEFAULT_MAX_LEVELS 20000

/* Returns a new empty book, or NULL when out of memory. max_levels == 0
 * means QB_BOOK_DEFAULT_MAX_LEVELS. The caller owns it; qb_book_free(). */
qb_book *qb_book_new(size_t max_levels);
void qb_book_free(qb_book *b); /* NULL is a no-op */
void qb_book_clear(qb_book *b);

/* Sets the size at price on side (size 0 deletes). Negative sizes and prices
 * are rejected with QB_EINVAL, a full side with QB_ERANGE. */
int qb_book_set(qb_book *b, qb_book_side side, qb_dec price, qb_dec size);

/* Applies a list of changes to each side, in order: the same result as
 * qb_book_set() level by level, for any order. Stops at the first error and
 * returns it; the book may then be partly updated and must be resynced.
 * Changes listed in price order (either direction, as exchanges send them)
 * are cheaper: each search starts from the previous change's position; best
 * first with distinct prices (Binance spot, HTX) cheapest: merged in one
 * pass, each level moved at most once. */
int qb_book_apply(qb_book *b, const qb_level *bids, size_t n_bids, const qb_level *asks,
                  size_t n_asks);

/* Replaces the book's contents with the given levels (any order; size 0
 * levels are skipped). */
int qb_book_replace(qb_book *b, const qb_level *bids, size_t n_bids, const qb_level *asks,
                    size_t n_asks);

size_t qb_book_depth(const qb_book *b, qb_book_side side);
/* The side's levels, best first. Valid until the book is next modified. */
const qb_level *qb_book_levels(const qb_book *b, qb_book_side side);
/* Size at price, or zero when absent. */
qb_dec qb_book_get(const qb_book *b, qb_book_side side, qb_dec price);

/* True when best bid >= best ask (both sides non-empty). */
bool qb_book_crossed(const qb_book *b);

/* True when both books hold the same levels by value. */
bool qb_book_equal(const qb_book *a, const qb_book *b);

/* For tests: how many chunks of changes qb_book_apply() has applied in one
 * merge pass (book.c: sorted changes) rather than level by level. */
size_t qb__book_merged(const qb_book *b);

#endif
