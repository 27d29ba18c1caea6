/*
 * oracle_htx.h: a naive reference book built from HTX's JSON text by
 * string scanning (oracle_htx.c), independent of the parser and of qb_book,
 * for test_htx.c to compare the synced book with. Prices and sizes are
 * kept as canonical decimal strings (canon), so "1.58E-4" and "0.000158"
 * are the same level. Test code only.
 */
#ifndef QB_TEST_ORACLE_HTX_H
#define QB_TEST_ORACLE_HTX_H

#include "book.h"
#include "decimal.h"

#include <stdbool.h>
#include <stddef.h>

/* Canonical decimal text of the JSON number s[0..n), by string shifting
 * only (no qb_dec): "1.58E-4" -> "0.000158", "9138.60" -> "9138.6",
 * "0.0" -> "0". */
void canon(const char *s, size_t n, char *out, size_t cap);

/* The canonical text of d (qb_dec_format, then canon). */
void canon_dec(qb_dec d, char *out, size_t cap);

/* One side, up to 400 levels; zero-initialise. */
typedef struct ref_side {
    char price[400][40];
    char size[400][40];
    size_t n;
} ref_side;

/* Sets the level of price p[0..pl) to size s[0..sl) (a zero size deletes). */
void ref_set(ref_side *r, const char *p, size_t pl, const char *s, size_t sl);

/* Applies every [p,s] pair of "key":[[p,s],...] in text to r. */
void ref_apply(ref_side *r, const char *text, const char *key);

/* True when side of b holds exactly r's levels (canonical text); prints
 * the first difference to stderr. */
bool ref_equal(const qb_book *b, qb_book_side side, const ref_side *r);

#endif
