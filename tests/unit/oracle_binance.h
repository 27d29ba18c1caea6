/*
 * oracle_binance.h: a naive reference book built from Binance's JSON text
 * by string scanning (oracle_binance.c), independent of the parser and of
 * qb_book, for test_binance.c to compare the synced book with. Levels keep
 * the exchange's text; a size with no non-zero digit deletes. Test code
 * only.
 */
#ifndef QB_TEST_ORACLE_BINANCE_H
#define QB_TEST_ORACLE_BINANCE_H

#include "book.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct ref_level {
    char price[40];
    char size[40];
} ref_level;

/* One side; zero-initialise, free(v) when done. */
typedef struct ref_side {
    ref_level *v;
    size_t n, cap;
} ref_side;

/* Sets price to size (text as received; a zero size deletes). */
void ref_set(ref_side *s, const char *price, const char *size);

/* Applies every ["p","q"] of the array following key in text (naive scan:
 * the recorded data has no nested arrays there and no escapes). */
void ref_apply(ref_side *s, const char *text, const char *key);

/* The unsigned number following key in text; 0 when key is absent. */
unsigned long long ref_num(const char *text, const char *key);

/* True when side of b holds exactly r's levels (same text), strictly best
 * first; prints the first difference to stderr. */
bool ref_equal(const qb_book *b, qb_book_side side, const ref_side *r);

#endif
