/*
 * oracle_binance.c: the naive reference book of test_binance.c
 * (oracle_binance.h): string scanning of the recorded text, no jsmn, no
 * qb_book, no qb_dec parsing. Test code only.
 */
#include "oracle_binance.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ref_set(ref_side *s, const char *price, const char *size)
{
    bool zero = true;
    for (const char *c = size; *c; c++) {
        if (*c >= '1' && *c <= '9') {
            zero = false;
        }
    }
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->v[i].price, price) == 0) {
            if (zero) {
                s->v[i] = s->v[--s->n];
            } else {
                snprintf(s->v[i].size, sizeof s->v[i].size, "%s", size);
            }
            return;
        }
    }
    if (zero) {
        return;
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
    }
    snprintf(s->v[s->n].price, sizeof s->v[s->n].price, "%s", price);
    snprintf(s->v[s->n].size, sizeof s->v[s->n].size, "%s", size);
    s->n++;
}

/* Applies every ["p","q"] of the array following `key` in text (naive scan:
 * the recorded data has no nested arrays there and no escapes). */
void ref_apply(ref_side *s, const char *text, const char *key)
{
    const char *p = strstr(text, key);
    if (p == NULL) {
        return;
    }
    p += strlen(key);
    while (*p == '[') {
        p++;
        if (*p == ']') {
            return;
        }
        /* "price","size"] */
        char price[40], size[40];
        const char *q1 = strchr(p, '"') + 1;
        const char *q2 = strchr(q1, '"');
        snprintf(price, sizeof price, "%.*s", (int)(q2 - q1), q1);
        const char *q3 = strchr(q2 + 1, '"') + 1;
        const char *q4 = strchr(q3, '"');
        snprintf(size, sizeof size, "%.*s", (int)(q4 - q3), q3);
        ref_set(s, price, size);
        p = strchr(q4, ']') + 1;
        if (*p == ',') {
            p++;
        }
        if (*p == ']') {
            return;
        }
    }
}

unsigned long long ref_num(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

/* True when book holds exactly the reference levels (same text). */
bool ref_equal(const qb_book *b, qb_book_side side, const ref_side *r)
{
    if (qb_book_depth(b, side) != r->n) {
        fprintf(stderr, "depth %zu != reference %zu\n", qb_book_depth(b, side), r->n);
        return false;
    }
    const qb_level *lv = qb_book_levels(b, side);
    for (size_t i = 0; i < r->n; i++) {
        char p[QB_DEC_STR_MAX], s[QB_DEC_STR_MAX];
        bool found = false;
        for (size_t k = 0; k < r->n && !found; k++) {
            qb_dec_format(lv[k].price, p, sizeof p);
            if (strcmp(p, r->v[i].price) == 0) {
                qb_dec_format(lv[k].size, s, sizeof s);
                if (strcmp(s, r->v[i].size) != 0) {
                    fprintf(stderr, "level %s: size %s != reference %s\n", p, s, r->v[i].size);
                    return false;
                }
                found = true;
            }
        }
        if (!found) {
            fprintf(stderr, "reference level %s missing\n", r->v[i].price);
            return false;
        }
    }
    /* Best first, strictly ordered. */
    for (size_t k = 1; k < r->n; k++) {
        int c = qb_dec_cmp(lv[k - 1].price, lv[k].price);
        if ((side == QB_BID && c <= 0) || (side == QB_ASK && c >= 0)) {
            fprintf(stderr, "book side not sorted at %zu\n", k);
            return false;
        }
    }
    return true;
}
