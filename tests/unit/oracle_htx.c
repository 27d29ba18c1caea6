/*
 * oracle_htx.c: the naive reference book of test_htx.c (oracle_htx.h):
 * string scanning, canonical decimal strings by string shifting, no jsmn,
 * no qb_book, no qb_dec parsing. Test code only.
 */
#include "oracle_htx.h"

#include "decimal.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Canonical decimal text of a JSON number, by string shifting only (no
 * qb_dec): "1.58E-4" -> "0.000158", "9138.60" -> "9138.6", "0.0" -> "0". */
void canon(const char *s, size_t n, char *out, size_t cap)
{
    char digits[128];
    size_t nd = 0;
    long point = -1, exp = 0;
    bool neg = false;
    size_t i = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) {
        neg = s[i] == '-';
        i++;
    }
    for (; i < n && s[i] != 'e' && s[i] != 'E'; i++) {
        if (s[i] == '.') {
            point = (long)nd;
        } else if (nd < sizeof digits - 1) {
            digits[nd++] = s[i];
        }
    }
    if (point < 0) {
        point = (long)nd;
    }
    if (i < n) {
        exp = strtol(s + i + 1, NULL, 10);
    }
    point += exp;
    char tmp[256];
    size_t t = 0;
    if (point <= 0) {
        tmp[t++] = '0';
        tmp[t++] = '.';
        for (long k = 0; k < -point; k++) {
            tmp[t++] = '0';
        }
        for (size_t k = 0; k < nd; k++) {
            tmp[t++] = digits[k];
        }
    } else {
        for (long k = 0; k < point; k++) {
            tmp[t++] = (size_t)k < nd ? digits[k] : '0';
        }
        if ((size_t)point < nd) {
            tmp[t++] = '.';
            for (size_t k = (size_t)point; k < nd; k++) {
                tmp[t++] = digits[k];
            }
        }
    }
    tmp[t] = '\0';
    char *p = tmp;
    while (p[0] == '0' && p[1] != '.' && p[1] != '\0') {
        p++;
    }
    if (strchr(p, '.')) {
        size_t l = strlen(p);
        while (p[l - 1] == '0') {
            p[--l] = '\0';
        }
        if (p[l - 1] == '.') {
            p[--l] = '\0';
        }
    }
    snprintf(out, cap, "%s%s", neg && strcmp(p, "0") != 0 ? "-" : "", p);
}

void canon_dec(qb_dec d, char *out, size_t cap)
{
    char b[QB_DEC_STR_MAX];
    qb_dec_format(d, b, sizeof b);
    canon(b, strlen(b), out, cap);
}

/* ---- naive reference book (string scanning, canonical strings) ---------------- */

void ref_set(ref_side *r, const char *p, size_t pl, const char *s, size_t sl)
{
    char cp[40], cs[40];
    canon(p, pl, cp, sizeof cp);
    canon(s, sl, cs, sizeof cs);
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->price[i], cp) == 0) {
            if (strcmp(cs, "0") == 0) {
                r->n--;
                memmove(r->price[i], r->price[i + 1], (r->n - i) * sizeof r->price[0]);
                memmove(r->size[i], r->size[i + 1], (r->n - i) * sizeof r->size[0]);
            } else {
                strcpy(r->size[i], cs);
            }
            return;
        }
    }
    if (strcmp(cs, "0") != 0 && r->n < 400) {
        strcpy(r->price[r->n], cp);
        strcpy(r->size[r->n], cs);
        r->n++;
    }
}

/* Applies every [p,s] pair of "key":[[p,s],...] in text to r. */
void ref_apply(ref_side *r, const char *text, const char *key)
{
    char pat[32];
    snprintf(pat, sizeof pat, "\"%s\":[", key);
    const char *p = strstr(text, pat);
    if (p == NULL) {
        return;
    }
    p += strlen(pat);
    while (*p == ' ') {
        p++;
    }
    while (*p == '[') {
        const char *a = p + 1;
        const char *comma = strchr(a, ',');
        const char *b = comma + 1;
        const char *end = strchr(b, ']');
        ref_set(r, a, (size_t)(comma - a), b, (size_t)(end - b));
        p = end + 1;
        if (*p == ',') {
            p++;
        }
    }
}

bool ref_equal(const qb_book *b, qb_book_side side, const ref_side *r)
{
    if (qb_book_depth(b, side) != r->n) {
        fprintf(stderr, "depth %zu != ref %zu\n", qb_book_depth(b, side), r->n);
        return false;
    }
    const qb_level *lv = qb_book_levels(b, side);
    for (size_t i = 0; i < r->n; i++) {
        char p[64], s[64];
        canon_dec(lv[i].price, p, sizeof p);
        canon_dec(lv[i].size, s, sizeof s);
        bool found = false;
        for (size_t k = 0; k < r->n; k++) {
            if (strcmp(r->price[k], p) == 0) {
                found = strcmp(r->size[k], s) == 0;
                if (!found) {
                    fprintf(stderr, "price %s: size %s != ref %s\n", p, s, r->size[k]);
                }
                break;
            }
        }
        if (!found) {
            return false;
        }
    }
    return true;
}
