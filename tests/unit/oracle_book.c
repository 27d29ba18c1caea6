/*
 * oracle_book.c: reference books that test_book.c checks proto/book.c
 * against (oracle_book.h). Test code only.
 */
#include "oracle_book.h"

#include "err.h"

#include <stdio.h>
#include <string.h>

/* ---- ref_side: an unsorted array, searched linearly ---------------------- */

void ref_set(ref_side *r, qb_dec price, qb_dec size)
{
    for (size_t i = 0; i < r->n; i++) {
        if (qb_dec_cmp(r->lv[i].price, price) == 0) {
            if (size.mant == 0) {
                r->lv[i] = r->lv[--r->n];
            } else {
                r->lv[i] = (qb_level){price, size};
            }
            return;
        }
    }
    if (size.mant != 0) {
        r->lv[r->n++] = (qb_level){price, size};
    }
}

bool ref_matches(const ref_side *r, const qb_book *b, qb_book_side side)
{
    if (qb_book_depth(b, side) != r->n) {
        return false;
    }
    const qb_level *lv = qb_book_levels(b, side);
    for (size_t i = 0; i < r->n; i++) {
        /* sorted strictly best first */
        if (i > 0) {
            int c = qb_dec_cmp(lv[i - 1].price, lv[i].price);
            if (side == QB_BID ? c <= 0 : c >= 0) {
                return false;
            }
        }
        /* every reference level is present with its size */
        if (!qb_dec_identical(qb_book_get(b, side, r->lv[i].price), r->lv[i].size)) {
            return false;
        }
    }
    return true;
}

/* ---- model_side: best first, binary search by value -------------------------- */

static int model_better(qb_book_side side, qb_dec a, qb_dec b)
{
    int c = qb_dec_cmp(a, b);
    return side == QB_BID ? c : -c;
}

int model_set(model_side *m, qb_book_side side, qb_level l, size_t max_levels)
{
    if (l.price.mant <= 0 || l.size.mant < 0) {
        return QB_EINVAL;
    }
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (model_better(side, m->lv[mid].price, l.price) > 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    bool found = lo < m->n && qb_dec_cmp(m->lv[lo].price, l.price) == 0;
    if (l.size.mant == 0) {
        if (found) {
            memmove(&m->lv[lo], &m->lv[lo + 1], (m->n - lo - 1) * sizeof *m->lv);
            m->n--;
        }
        return QB_OK;
    }
    if (found) {
        m->lv[lo] = l;
        return QB_OK;
    }
    if (m->n >= max_levels || m->n >= MODEL_CAP) {
        return QB_ERANGE;
    }
    memmove(&m->lv[lo + 1], &m->lv[lo], (m->n - lo) * sizeof *m->lv);
    m->lv[lo] = l;
    m->n++;
    return QB_OK;
}

int model_apply(model_side m[2], const qb_level *bids, size_t nb, const qb_level *asks, size_t na,
                size_t max_levels)
{
    for (size_t i = 0; i < nb; i++) {
        int rc = model_set(&m[QB_BID], QB_BID, bids[i], max_levels);
        if (rc != QB_OK) {
            return rc;
        }
    }
    for (size_t i = 0; i < na; i++) {
        int rc = model_set(&m[QB_ASK], QB_ASK, asks[i], max_levels);
        if (rc != QB_OK) {
            return rc;
        }
    }
    return QB_OK;
}

/* Same levels, same order, same text (scale included) on both sides. */
bool model_matches(const model_side m[2], const qb_book *b)
{
    for (int s = 0; s < 2; s++) {
        if (qb_book_depth(b, (qb_book_side)s) != m[s].n) {
            fprintf(stderr, "  side %d: depth %zu, model %zu\n", s,
                    qb_book_depth(b, (qb_book_side)s), m[s].n);
            return false;
        }
        const qb_level *lv = qb_book_levels(b, (qb_book_side)s);
        for (size_t i = 0; i < m[s].n; i++) {
            if (!qb_dec_identical(lv[i].price, m[s].lv[i].price) ||
                !qb_dec_identical(lv[i].size, m[s].lv[i].size)) {
                fprintf(stderr,
                        "  side %d level %zu: %lld/%d size %lld/%d, model %lld/%d size %lld/%d\n",
                        s, i, (long long)lv[i].price.mant, lv[i].price.scale,
                        (long long)lv[i].size.mant, lv[i].size.scale,
                        (long long)m[s].lv[i].price.mant, m[s].lv[i].price.scale,
                        (long long)m[s].lv[i].size.mant, m[s].lv[i].size.scale);
                return false;
            }
        }
    }
    return true;
}
