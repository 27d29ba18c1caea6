/*
 * book.c: the sorted-array order book of book.h.
 *
 * Each side is one array of levels, best first, kept sorted by price:
 *
 *   side[QB_BID]: 100.5 100.4 100.2 ...   (descending)
 *   side[QB_ASK]: 100.6 100.7 100.9 ...   (ascending)
 *
 * A change finds its price by binary search ("better than" order, so both
 * sides share one search), then overwrites the size, or moves one slot to
 * insert or delete. Each side's levels sit inside a larger allocation with
 * free slots at both ends, so an insert or delete moves whichever part is
 * shorter: the levels in front of it (one slot towards the front room) or
 * the tail (one slot towards the back room):
 *
 *   buf: [ free | best ... i ... worst | free ]     lv = buf + off
 *
 * Most changes are near the top of a deep book, so they move a few levels
 * instead of the whole tail (measured: 115k of 231k instructions per
 * 20-level Binance update were this memmove with a 1000-level book). When
 * the end that should take the move is full but the other is not, the
 * levels are re-centred first (amortised: it leaves half the room on each
 * side); with less than BOOK_RECENTRE_MIN free slots the longer move is
 * made instead. While every price of a side has the same scale (tracked
 * per side), a search for a price of that scale compares mantissas only.
 * The public view (qb_book_levels) stays one contiguous best-first array.
 * The arrays grow geometrically up to max_levels per side and never
 * shrink, so a book in steady state allocates nothing.
 *
 * qb_book_replace() copies levels that come best first (as exchanges send
 * them) and otherwise sorts an index array (reused scratch) instead of
 * inserting one by one, so a snapshot of n levels costs O(n log n) and
 * duplicates resolve as if the levels were applied in order (last wins).
 * A replace with an invalid level (QB_EINVAL) leaves the book unchanged; one
 * that fails later (QB_ERANGE past max_levels, QB_ENOMEM) leaves it empty,
 * never half-replaced. A book is owned by one thread; no locking.
 */
#include "book.h"

#include "err.h"

#include <stdlib.h>
#include <string.h>

typedef struct book_side {
    qb_level *buf; /* allocation of cap levels */
    qb_level *lv;  /* buf + off: the levels, best first */
    size_t n;
    size_t cap;
    /* When !mixed, every price of the side has this scale (one exchange,
     * one tick size: the usual case), and a search for a price of the same
     * scale compares mantissas only. Set once a price of another scale is
     * stored; cleared when the side empties or is replaced. */
    int8_t scale;
    bool mixed;
} book_side;

struct qb_book {
    book_side side[2];
    size_t max_levels;
    /* Scratch of qb_book_replace(): an index array and a level array that
     * is swapped with a side's array when the new side is complete. */
    size_t *idx;
    size_t idx_cap;
};

#define BOOK_MIN_CAP 64
/* Fewer free slots than this: no re-centring, move the longer part. */
#define BOOK_RECENTRE_MIN 8

qb_book *qb_book_new(size_t max_levels)
{
    qb_book *b = calloc(1, sizeof *b);
    if (b == NULL) {
        return NULL;
    }
    b->max_levels = max_levels ? max_levels : QB_BOOK_DEFAULT_MAX_LEVELS;
    return b;
}

void qb_book_free(qb_book *b)
{
    if (b == NULL) {
        return;
    }
    free(b->side[0].buf);
    free(b->side[1].buf);
    free(b->idx);
    free(b);
}

void qb_book_clear(qb_book *b)
{
    b->side[0].n = 0;
    b->side[1].n = 0;
}

/* Same-scale prices (the common case: one exchange, one tick size) compare
 * as integers; otherwise by value. */
static inline int book_price_cmp(qb_dec a, qb_dec b)
{
    if (a.scale == b.scale) {
        return (a.mant > b.mant) - (a.mant < b.mant);
    }
    return qb_dec_cmp(a, b);
}

/* >0 when price a is better than price b on side s. */
static inline int book_better(qb_book_side s, qb_dec a, qb_dec b)
{
    int c = book_price_cmp(a, b);
    return s == QB_BID ? c : -c;
}

/* Index of the first level not better than price; *found when that level
 * has exactly this price (by value). */
static size_t book_search(const book_side *bs, qb_book_side s, qb_dec price, bool *found)
{
    size_t lo = 0, hi = bs->n;
    const qb_level *lv = bs->lv;
    if (!bs->mixed && price.scale == bs->scale) {
        /* Same scale everywhere: plain integer order. */
        int64_t pm = price.mant;
        if (s == QB_BID) {
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (lv[mid].price.mant > pm) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
        } else {
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (lv[mid].price.mant < pm) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
        }
        *found = lo < bs->n && lv[lo].price.mant == pm;
        return lo;
    }
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (book_better(s, lv[mid].price, price) > 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = lo < bs->n && book_price_cmp(lv[lo].price, price) == 0;
    return lo;
}

/* Keeps scale/mixed right when a price is stored in a side that holds
 * n_before levels (the stored one excluded). */
static inline void book_note_scale(book_side *bs, size_t n_before, int8_t scale)
{
    if (n_before == 0) {
        bs->scale = scale;
        bs->mixed = false;
    } else if (scale != bs->scale) {
        bs->mixed = true;
    }
}

/* Front / back free slots of a side. */
static inline size_t book_front(const book_side *bs)
{
    return (size_t)(bs->lv - bs->buf);
}

static inline size_t book_back(const book_side *bs)
{
    return bs->cap - book_front(bs) - bs->n;
}

/* Moves the levels to the middle of the allocation. */
static void book_recentre(book_side *bs)
{
    qb_level *lv = bs->buf + (bs->cap - bs->n) / 2;
    if (lv != bs->lv) {
        memmove(lv, bs->lv, bs->n * sizeof *lv);
        bs->lv = lv;
    }
}

/* Room for need levels; the levels end up centred in the allocation. */
static int book_grow(book_side *bs, size_t need, size_t max)
{
    if (need <= bs->cap) {
        return QB_OK;
    }
    size_t cap = bs->cap ? bs->cap : BOOK_MIN_CAP;
    while (cap < need) {
        cap *= 2;
    }
    if (cap > max && need <= max) {
        cap = max;
    }
    qb_level *buf = malloc(cap * sizeof *buf);
    if (buf == NULL) {
        return QB_ENOMEM;
    }
    qb_level *lv = buf + (cap - bs->n) / 2;
    if (bs->n) {
        memcpy(lv, bs->lv, bs->n * sizeof *lv);
    }
    free(bs->buf);
    bs->buf = buf;
    bs->lv = lv;
    bs->cap = cap;
    return QB_OK;
}

static inline bool book_level_valid(qb_dec price, qb_dec size)
{
    return price.mant > 0 && size.mant >= 0;
}

/* Deletes level i: closes the gap from the shorter side. */
static void book_delete(book_side *bs, size_t i)
{
    if (i < bs->n - 1 - i) {
        memmove(bs->lv + 1, bs->lv, i * sizeof *bs->lv);
        bs->lv++;
    } else {
        memmove(&bs->lv[i], &bs->lv[i + 1], (bs->n - i - 1) * sizeof *bs->lv);
    }
    bs->n--;
}

/* Opens slot i (room for one more level is known to exist). */
static qb_level *book_open(book_side *bs, size_t i)
{
    bool front = i < bs->n - i;
    if (front ? book_front(bs) == 0 : book_back(bs) == 0) {
        if (bs->cap - bs->n >= BOOK_RECENTRE_MIN) {
            book_recentre(bs);
        } else {
            front = !front; /* little room: take the longer move */
        }
    }
    if (front) {
        memmove(bs->lv - 1, bs->lv, i * sizeof *bs->lv);
        bs->lv--;
    } else {
        memmove(&bs->lv[i + 1], &bs->lv[i], (bs->n - i) * sizeof *bs->lv);
    }
    bs->n++;
    return &bs->lv[i];
}

int qb_book_set(qb_book *b, qb_book_side side, qb_dec price, qb_dec size)
{
    if ((side != QB_BID && side != QB_ASK) || !book_level_valid(price, size)) {
        return QB_EINVAL;
    }
    book_side *bs = &b->side[side];
    bool found;
    size_t i = book_search(bs, side, price, &found);
    if (size.mant == 0) {
        if (found) {
            book_delete(bs, i);
        }
        return QB_OK;
    }
    if (found) {
        book_note_scale(bs, bs->n - 1, price.scale); /* 1.5 may replace 1.50 */
        bs->lv[i] = (qb_level){price, size};
        return QB_OK;
    }
    if (bs->n >= b->max_levels) {
        return QB_ERANGE;
    }
    int rc = book_grow(bs, bs->n + 1, b->max_levels);
    if (rc != QB_OK) {
        return rc;
    }
    book_note_scale(bs, bs->n, price.scale);
    *book_open(bs, i) = (qb_level){price, size};
    return QB_OK;
}

int qb_book_apply(qb_book *b, const qb_level *bids, size_t n_bids, const qb_level *asks,
                  size_t n_asks)
{
    for (size_t i = 0; i < n_bids; i++) {
        int rc = qb_book_set(b, QB_BID, bids[i].price, bids[i].size);
        if (rc != QB_OK) {
            return rc;
        }
    }
    for (size_t i = 0; i < n_asks; i++) {
        int rc = qb_book_set(b, QB_ASK, asks[i].price, asks[i].size);
        if (rc != QB_OK) {
            return rc;
        }
    }
    return QB_OK;
}

typedef struct book_sort_ctx {
    const qb_level *lv;
    qb_book_side side;
} book_sort_ctx;

/* Best first; equal prices in input order (so the last one is last). */
static int book_sort_cmp(const void *pa, const void *pb, void *arg)
{
    const book_sort_ctx *c = arg;
    size_t ia = *(const size_t *)pa, ib = *(const size_t *)pb;
    int r = book_better(c->side, c->lv[ia].price, c->lv[ib].price);
    if (r != 0) {
        return -r;
    }
    return (ia > ib) - (ia < ib);
}

/* Sets the count of a side just rebuilt, and its scale summary. */
static void book_side_done(book_side *bs, size_t n)
{
    bs->n = n;
    bs->mixed = false;
    bs->scale = n ? bs->lv[0].price.scale : 0;
    for (size_t k = 1; k < n; k++) {
        if (bs->lv[k].price.scale != bs->scale) {
            bs->mixed = true;
            break;
        }
    }
}

/* Builds one side from levels[0..n). On error the side is unchanged. */
static int book_replace_side(qb_book *b, qb_book_side side, const qb_level *lv, size_t n)
{
    book_side *bs = &b->side[side];
    if (n == 0) {
        book_side_done(bs, 0);
        return QB_OK;
    }
    /* Exchanges send their books best first without duplicates: then the
     * side is a copy without the size-0 levels, no sort needed. */
    size_t sorted = 1;
    while (sorted < n && book_better(side, lv[sorted - 1].price, lv[sorted].price) > 0) {
        sorted++;
    }
    if (sorted == n) {
        size_t keep = 0;
        for (size_t k = 0; k < n; k++) {
            keep += lv[k].size.mant != 0;
        }
        if (keep > b->max_levels) {
            return QB_ERANGE;
        }
        if (keep == 0) {
            book_side_done(bs, 0); /* every level deleted: maybe no buffer yet */
            return QB_OK;
        }
        int rc = book_grow(bs, keep, b->max_levels);
        if (rc != QB_OK) {
            return rc;
        }
        bs->lv = bs->buf + (bs->cap - keep) / 2;
        size_t o = 0;
        for (size_t k = 0; k < n; k++) {
            if (lv[k].size.mant != 0) {
                bs->lv[o++] = lv[k];
            }
        }
        book_side_done(bs, o);
        return QB_OK;
    }
    if (n > b->idx_cap) {
        size_t *idx = realloc(b->idx, n * sizeof *idx);
        if (idx == NULL) {
            return QB_ENOMEM;
        }
        b->idx = idx;
        b->idx_cap = n;
    }
    for (size_t i = 0; i < n; i++) {
        b->idx[i] = i;
    }
    book_sort_ctx ctx = {lv, side};
    qsort_r(b->idx, n, sizeof *b->idx, book_sort_cmp, &ctx);
    /* Count the distinct prices that survive (last of each run, size > 0). */
    size_t keep = 0;
    for (size_t k = 0; k < n; k++) {
        bool last_of_run =
            k + 1 == n || book_price_cmp(lv[b->idx[k]].price, lv[b->idx[k + 1]].price) != 0;
        if (last_of_run && lv[b->idx[k]].size.mant != 0) {
            keep++;
        }
    }
    if (keep > b->max_levels) {
        return QB_ERANGE;
    }
    if (keep == 0) {
        book_side_done(bs, 0); /* every level deleted: maybe no buffer yet */
        return QB_OK;
    }
    int rc = book_grow(bs, keep, b->max_levels);
    if (rc != QB_OK) {
        return rc;
    }
    bs->lv = bs->buf + (bs->cap - keep) / 2; /* centred: room at both ends */
    size_t o = 0;
    for (size_t k = 0; k < n; k++) {
        bool last_of_run =
            k + 1 == n || book_price_cmp(lv[b->idx[k]].price, lv[b->idx[k + 1]].price) != 0;
        if (last_of_run && lv[b->idx[k]].size.mant != 0) {
            bs->lv[o++] = lv[b->idx[k]];
        }
    }
    book_side_done(bs, o);
    return QB_OK;
}

int qb_book_replace(qb_book *b, const qb_level *bids, size_t n_bids, const qb_level *asks,
                    size_t n_asks)
{
    /* Validate everything first, so a bad snapshot leaves the book as it was. */
    for (size_t i = 0; i < n_bids; i++) {
        if (!book_level_valid(bids[i].price, bids[i].size)) {
            return QB_EINVAL;
        }
    }
    for (size_t i = 0; i < n_asks; i++) {
        if (!book_level_valid(asks[i].price, asks[i].size)) {
            return QB_EINVAL;
        }
    }
    int rc = book_replace_side(b, QB_BID, bids, n_bids);
    if (rc == QB_OK) {
        rc = book_replace_side(b, QB_ASK, asks, n_asks);
    }
    if (rc != QB_OK) {
        qb_book_clear(b); /* never a half-replaced book */
    }
    return rc;
}

size_t qb_book_depth(const qb_book *b, qb_book_side side)
{
    return side == QB_BID || side == QB_ASK ? b->side[side].n : 0;
}

const qb_level *qb_book_levels(const qb_book *b, qb_book_side side)
{
    return side == QB_BID || side == QB_ASK ? b->side[side].lv : NULL;
}

qb_dec qb_book_get(const qb_book *b, qb_book_side side, qb_dec price)
{
    if (side != QB_BID && side != QB_ASK) {
        return (qb_dec){0, 0};
    }
    bool found;
    size_t i = book_search(&b->side[side], side, price, &found);
    return found ? b->side[side].lv[i].size : (qb_dec){0, 0};
}

bool qb_book_crossed(const qb_book *b)
{
    if (b->side[QB_BID].n == 0 || b->side[QB_ASK].n == 0) {
        return false;
    }
    return book_price_cmp(b->side[QB_BID].lv[0].price, b->side[QB_ASK].lv[0].price) >= 0;
}

bool qb_book_equal(const qb_book *a, const qb_book *b)
{
    for (int s = 0; s < 2; s++) {
        const book_side *x = &a->side[s], *y = &b->side[s];
        if (x->n != y->n) {
            return false;
        }
        for (size_t i = 0; i < x->n; i++) {
            if (book_price_cmp(x->lv[i].price, y->lv[i].price) != 0 ||
                qb_dec_cmp(x->lv[i].size, y->lv[i].size) != 0) {
                return false;
            }
        }
    }
    return true;
}
