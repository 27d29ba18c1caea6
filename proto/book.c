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
 * per side), a search for a price of that scale compares mantissas only,
 * without a branch (conditional moves: a branchy binary search mispredicts
 * about half its steps, and was ~29 % of the adapter's time). qb_book_apply
 * searches each change from the previous change's position: exchanges list
 * a side's changes in price order, a few levels apart, so the answer is
 * usually among the next 32 levels, counted with independent compares.
 * When a side's changes come best first with distinct prices (Binance spot,
 * HTX: nearly always), they are merged into the side in one pass
 * (book_merge, per chunk of 64): updates are written in place, and the
 * runs of levels between the inserts and deletes move once each, by their
 * net shift, instead of one move per insert or delete; the search, the
 * checks and the compares are specialised per side and mode. Anything else
 * (other orders, repeats, another scale, a full or emptied side, too
 * little room) goes level by level as described above, with the same
 * result and error (differential tests against a model of qb_book_set).
 * A side of mixed scales (HTX writes JSON numbers: 9138.6 next to 9138.61)
 * is searched the same way on keys: each price as an integer at the side's
 * largest scale, computed on the fly, while they fit in int64; otherwise
 * by value with qb_dec_cmp (correct, slower).
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
    /* Keys, for searches on a mixed side (HTX sends JSON numbers: 9138.6
     * and 9138.61 side by side): kscale is the largest scale of the side;
     * while keyed, every level's price times 10^(kscale - its scale) (its
     * key: the same value as an integer) fits in int64. Cleared when a
     * price would not fit; set again when the side empties or is replaced. */
    int8_t kscale;
    bool keyed;
} book_side;

struct qb_book {
    book_side side[2];
    size_t max_levels;
    /* Scratch of qb_book_replace(): an index array and a level array that
     * is swapped with a side's array when the new side is complete. */
    size_t *idx;
    size_t idx_cap;
    size_t merged; /* chunks book_merge applied (qb__book_merged) */
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

/* 10^d, and the largest mantissa that times 10^d still fits in int64. */
static const int64_t book_p10[19] = {1,
                                     10,
                                     100,
                                     1000,
                                     10000,
                                     100000,
                                     1000000,
                                     10000000,
                                     100000000,
                                     1000000000,
                                     10000000000,
                                     100000000000,
                                     1000000000000,
                                     10000000000000,
                                     100000000000000,
                                     1000000000000000,
                                     10000000000000000,
                                     100000000000000000,
                                     1000000000000000000};
static const int64_t book_p10_lim[19] = {INT64_MAX,
                                         INT64_MAX / 10,
                                         INT64_MAX / 100,
                                         INT64_MAX / 1000,
                                         INT64_MAX / 10000,
                                         INT64_MAX / 100000,
                                         INT64_MAX / 1000000,
                                         INT64_MAX / 10000000,
                                         INT64_MAX / 100000000,
                                         INT64_MAX / 1000000000,
                                         INT64_MAX / 10000000000,
                                         INT64_MAX / 100000000000,
                                         INT64_MAX / 1000000000000,
                                         INT64_MAX / 10000000000000,
                                         INT64_MAX / 100000000000000,
                                         INT64_MAX / 1000000000000000,
                                         INT64_MAX / 10000000000000000,
                                         INT64_MAX / 100000000000000000,
                                         INT64_MAX / 1000000000000000000};

/* How a search compares prices: mantissas (every level has the price's
 * scale), keys (book_side), or by value (qb_dec_cmp: correct, slow). */
typedef enum book_mode { BOOK_MANT, BOOK_KEY, BOOK_VALUE } book_mode;

/* The mode of a search for price on the side, and the integer it compares
 * with (the mantissa, or the price's key). */
static inline book_mode book_query(const book_side *bs, qb_dec price, int64_t *key)
{
    if (!bs->mixed && price.scale == bs->scale) {
        *key = price.mant;
        return BOOK_MANT;
    }
    if (bs->keyed && price.scale <= bs->kscale) {
        int d = bs->kscale - price.scale;
        if (d <= 18 && price.mant <= book_p10_lim[d] && price.mant >= -book_p10_lim[d]) {
            *key = price.mant * book_p10[d];
            return BOOK_KEY;
        }
    }
    return BOOK_VALUE;
}

/* Level l's integer for a search: its mantissa, or (keyed) its key. */
static inline int64_t book_lv_key(const qb_level *l, int kscale, bool keyed)
{
    return keyed ? l->price.mant * book_p10[kscale - l->price.scale] : l->price.mant;
}

/* Index (counted from off) of the first of lv0[off..off+n) whose integer is
 * not better than key.
 * flip is 0 on the bid side (better: greater) and -1 on the ask side (~m >
 * ~k exactly when m < k), so both sides share one loop without a branch.
 * Branchless: the loop runs ceil(log2 n) times whatever the data, and each
 * step picks its half with a conditional move, so nothing depends on a
 * branch predictor that cannot predict a binary search (the branchy loop
 * this replaces mispredicted about 4.7 times per search of a 1000-level
 * side: ~29 % of the adapter's time). keyed is a constant in each caller. */
static inline size_t book_lb_int(const qb_level *lv0, size_t off, size_t n, int64_t key,
                                 int64_t flip, int kscale, bool keyed)
{
    if (n == 0) {
        return 0; /* lv0 may be NULL (a side never filled): no lv0 + off */
    }
    const qb_level *lv = lv0 + off;
    const qb_level *base = lv;
    int64_t k = key ^ flip;
    while (n > 1) {
        size_t half = n / 2;
        base = (book_lv_key(&base[half], kscale, keyed) ^ flip) > k ? base + half : base;
        n -= half;
    }
    return (size_t)(base - lv) + (size_t)((book_lv_key(base, kscale, keyed) ^ flip) > k);
}

/* Levels a hinted search looks at first (see book_search_from). */
#define BOOK_HINT_WINDOW 32

/* How many of the BOOK_HINT_WINDOW levels w[0..32) have an integer better
 * than key (flip as in book_lb_int). Two rounds of independent loads and
 * compares instead of a chain of 5 dependent ones: every 4th level first
 * (w[3], w[7], ... w[31]: c of them are better, so w[0..4c) are), then the
 * 3 levels of the block the answer is in. */
static inline size_t book_count_better32(const qb_level *w, int64_t key, int64_t flip, int kscale,
                                         bool keyed)
{
    int64_t k = key ^ flip;
    size_t c = 0;
    for (size_t j = 0; j < 8; j++) {
        c += (size_t)((book_lv_key(&w[4 * j + 3], kscale, keyed) ^ flip) > k);
    }
    if (c == 8) {
        return 32;
    }
    const qb_level *blk = w + 4 * c; /* blk[3] is not better */
    size_t d = 0;
    for (size_t j = 0; j < 3; j++) {
        d += (size_t)((book_lv_key(&blk[j], kscale, keyed) ^ flip) > k);
    }
    return 4 * c + d;
}

/* Index of the first level of [lo, hi) not better than price, or hi, in
 * mode m (key: book_query's). */
static size_t book_lb(const book_side *bs, qb_book_side s, size_t lo, size_t hi, qb_dec price,
                      book_mode m, int64_t key)
{
    int64_t flip = s == QB_BID ? 0 : -1;
    if (m == BOOK_MANT) {
        return lo + book_lb_int(bs->lv, lo, hi - lo, key, flip, 0, false);
    }
    if (m == BOOK_KEY) {
        return lo + book_lb_int(bs->lv, lo, hi - lo, key, flip, bs->kscale, true);
    }
    while (lo < hi) { /* by value (rare; may stay slow) */
        size_t mid = lo + (hi - lo) / 2;
        if (book_better(s, bs->lv[mid].price, price) > 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* True when level i exists and has exactly this price (by value). */
static inline bool book_found(const book_side *bs, size_t i, qb_dec price, book_mode m, int64_t key)
{
    if (i >= bs->n) {
        return false;
    }
    if (m == BOOK_MANT) {
        return bs->lv[i].price.mant == key;
    }
    if (m == BOOK_KEY) {
        return book_lv_key(&bs->lv[i], bs->kscale, true) == key;
    }
    return book_price_cmp(bs->lv[i].price, price) == 0;
}

/* Index of the first level not better than price; *found when that level
 * has exactly this price (by value). */
static size_t book_search(const book_side *bs, qb_book_side s, qb_dec price, bool *found)
{
    int64_t key = 0;
    book_mode m = book_query(bs, price, &key);
    size_t i = book_lb(bs, s, 0, bs->n, price, m, key);
    *found = book_found(bs, i, price, m, key);
    return i;
}

/* book_search_from() on integers (keyed: a constant in each caller). */
static inline size_t book_from_int(const book_side *bs, int64_t key, int64_t flip, size_t h,
                                   int dir, bool keyed)
{
    const qb_level *lv = bs->lv;
    size_t n = bs->n, i;
    int ks = bs->kscale;
    if (dir > 0) {
        if (n - h >= BOOK_HINT_WINDOW) {
            i = h + book_count_better32(lv + h, key, flip, ks, keyed);
            if (i == h + BOOK_HINT_WINDOW) { /* the whole window is better */
                i += book_lb_int(lv, i, n - i, key, flip, ks, keyed);
            }
        } else {
            i = h + book_lb_int(lv, h, n - h, key, flip, ks, keyed);
        }
    } else {
        if (h >= BOOK_HINT_WINDOW) {
            size_t lo = h - BOOK_HINT_WINDOW;
            i = lo + book_count_better32(lv + lo, key, flip, ks, keyed);
            if (i == lo) { /* lv[lo] is not better: the answer is <= lo */
                i = book_lb_int(lv, 0, lo, key, flip, ks, keyed);
            }
        } else {
            i = book_lb_int(lv, 0, h, key, flip, ks, keyed);
        }
    }
    return i;
}

/* book_search() knowing that the answer is at or after h (dir > 0: price
 * is worse than a price whose answer was h) or at or before h (dir < 0:
 * price is better). Counts the better levels among the BOOK_HINT_WINDOW
 * levels on that side of h first: sorted updates (a few levels apart)
 * almost always end there. Past the window, or with less than a window
 * left, the rest of the side is searched. By value: the plain search
 * (rare; correct, not fast). */
static size_t book_search_from(const book_side *bs, qb_book_side s, qb_dec price, size_t h, int dir,
                               bool *found)
{
    int64_t key = 0;
    book_mode m = book_query(bs, price, &key);
    int64_t flip = s == QB_BID ? 0 : -1;
    size_t i;
    if (m == BOOK_MANT) {
        i = book_from_int(bs, key, flip, h, dir, false);
    } else if (m == BOOK_KEY) {
        i = book_from_int(bs, key, flip, h, dir, true);
    } else {
        i = book_lb(bs, s, 0, bs->n, price, m, key);
    }
    *found = book_found(bs, i, price, m, key);
    return i;
}

/* book_note_scale() for a price of another scale than kscale on a keyed
 * side. A larger scale gives every stored key more digits: the side is
 * scanned (at most 18 times before keys stop fitting, then never until the
 * side empties or is replaced). */
static void book_note_key(book_side *bs, qb_dec price)
{
    if (price.scale > bs->kscale) {
        int d = price.scale - bs->kscale;
        for (size_t k = 0; d <= 18 && k < bs->n; k++) {
            if (book_lv_key(&bs->lv[k], bs->kscale, true) > book_p10_lim[d]) {
                d = 19;
            }
        }
        if (d > 18) {
            bs->keyed = false;
            return;
        }
        bs->kscale = price.scale; /* price's key is its mantissa */
        return;
    }
    int d = bs->kscale - price.scale;
    if (d > 18 || price.mant > book_p10_lim[d]) {
        bs->keyed = false;
    }
}

/* Keeps scale/mixed and the keys right when a price is stored in a side
 * that holds n_before levels (the stored one excluded). */
static inline void book_note_scale(book_side *bs, size_t n_before, qb_dec price)
{
    if (n_before == 0) {
        bs->scale = price.scale;
        bs->mixed = false;
        bs->kscale = price.scale;
        bs->keyed = true;
        return;
    }
    if (price.scale != bs->scale) {
        bs->mixed = true;
    }
    if (bs->keyed && price.scale != bs->kscale) {
        book_note_key(bs, price);
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

/* Sets the size at price, whose search gave (i, found). */
static inline int book_set_at(qb_book *b, book_side *bs, qb_dec price, qb_dec size, size_t i,
                              bool found)
{
    if (size.mant == 0) {
        if (found) {
            book_delete(bs, i);
        }
        return QB_OK;
    }
    if (found) {
        book_note_scale(bs, bs->n - 1, price); /* 1.5 may replace 1.50 */
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
    book_note_scale(bs, bs->n, price);
    *book_open(bs, i) = (qb_level){price, size};
    return QB_OK;
}

int qb_book_set(qb_book *b, qb_book_side side, qb_dec price, qb_dec size)
{
    if ((side != QB_BID && side != QB_ASK) || !book_level_valid(price, size)) {
        return QB_EINVAL;
    }
    book_side *bs = &b->side[side];
    bool found;
    size_t i = book_search(bs, side, price, &found);
    return book_set_at(b, bs, price, size, i, found);
}

/* Applies one side's changes level by level, in order (the chunks that
 * book_merge declines: not best first, repeats, errors, ...). After a
 * change at price P whose search answered h, h is still the index of the
 * first level not better
 * than P (an update or insert left P at h; a delete, or a delete of an
 * absent price, left the better levels before h and the rest from h on).
 * So the next price Q's answer is h when Q == P, at or after h when Q is
 * worse, at or before h when Q is better: the search starts from h
 * (book_search_from). Exchanges list a side's levels sorted (Binance spot
 * and HTX best first, Binance USD-M ascending) and near each other, so the
 * next answer is a few levels away. The direction is checked at every
 * step, never assumed: a step that turns (unsorted input) starts from h
 * only if the step before went the same way, otherwise it searches the
 * whole side (random input rarely ends in the window, and then pays for
 * both). Results are those of qb_book_set() level by level for any input. */
static int book_apply_seq(qb_book *b, qb_book_side side, const qb_level *in, size_t n)
{
    book_side *bs = &b->side[side];
    size_t h = 0;
    int last_dir = 0;
    for (size_t k = 0; k < n; k++) {
        qb_dec price = in[k].price, size = in[k].size;
        if (!book_level_valid(price, size)) {
            return QB_EINVAL;
        }
        bool found;
        size_t i;
        if (k == 0) {
            i = book_search(bs, side, price, &found);
        } else {
            /* >0: price is worse than the previous one (answer at/after h) */
            int dir = -book_better(side, price, in[k - 1].price);
            if (dir == 0) {
                i = h;
                int64_t key = 0;
                book_mode m = book_query(bs, price, &key);
                found = book_found(bs, h, price, m, key);
            } else if (k == 1 || (dir > 0) == (last_dir > 0)) {
                i = book_search_from(bs, side, price, h, dir, &found);
            } else {
                i = book_search(bs, side, price, &found);
            }
            if (dir != 0) {
                last_dir = dir;
            }
        }
        int rc = book_set_at(b, bs, price, size, i, found);
        if (rc != QB_OK) {
            return rc;
        }
        h = i;
    }
    return QB_OK;
}

/* Changes one merge takes at once: qb_book_apply cuts a longer list into
 * chunks of this many (applied one after the other, as level by level). */
#define BOOK_MERGE_MAX 64

/* The merge is specialised per side and search mode (constants), so that a
 * compare is one instruction; the compiler must not keep them as
 * arguments. */
#if defined(__GNUC__)
#define BOOK_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define BOOK_ALWAYS_INLINE static inline
#endif

/* Integer a is better than b: bids greater, asks smaller. Both are
 * positive (every price of a side, and every change the merge searches,
 * has a mantissa > 0: book_level_valid), so they compare as unsigned: a
 * compare and an add-with-carry when counting. */
BOOK_ALWAYS_INLINE bool book_int_better(int64_t a, int64_t b, bool bid)
{
    return bid ? (uint64_t)a > (uint64_t)b : (uint64_t)a < (uint64_t)b;
}

/* Index of the first of lv[h..n) whose integer is not better than key (the
 * answer is known to be at or after h). The next change of a sorted update
 * is usually a few levels further: when lv[h + 31] is not better, the answer
 * is among lv[h..h+31], counted without a branch in two rounds of
 * independent compares as in book_count_better32 (w[3], w[7], ... w[27],
 * then the 3 levels of the block); otherwise the rest of the side is
 * searched (book_lb_int). A binary search of the window (5 dependent
 * steps) took fewer instructions but more time: each search starts where
 * the one before ended, so their latencies add up. */
BOOK_ALWAYS_INLINE size_t book_merge_find(const qb_level *lv, size_t n, size_t h, int64_t key,
                                          int ks, bool keyed, bool bid)
{
    int64_t flip = bid ? 0 : -1;
    if (n - h < BOOK_HINT_WINDOW) {
        return h + book_lb_int(lv, h, n - h, key, flip, ks, keyed);
    }
    const qb_level *w = lv + h;
    if (book_int_better(book_lv_key(&w[BOOK_HINT_WINDOW - 1], ks, keyed), key, bid)) {
        size_t i = h + BOOK_HINT_WINDOW;
        return i + book_lb_int(lv, i, n - i, key, flip, ks, keyed);
    }
    size_t c = 0; /* of w[3], w[7], ... w[27] (w[31] is not better) */
    for (size_t j = 0; j < 7; j++) {
        c += book_int_better(book_lv_key(&w[4 * j + 3], ks, keyed), key, bid);
    }
    const qb_level *blk = w + 4 * c; /* blk[3] is not better */
    size_t d = 0;
    for (size_t j = 0; j < 3; j++) {
        d += book_int_better(book_lv_key(&blk[j], ks, keyed), key, bid);
    }
    return h + 4 * c + d;
}

/* True when the side has room for the levels moved with anchor v (the run
 * of levels that stays where it is has the prefix sum v; see book_merge). */
static inline bool book_merge_room(const book_side *bs, ptrdiff_t v, ptrdiff_t net)
{
    return (ptrdiff_t)book_front(bs) >= v && (ptrdiff_t)book_back(bs) >= net - v;
}

/* Applies one chunk of changes listed best first with distinct prices (as
 * Binance spot and HTX send them) in one pass: the same result as
 * book_set_at() level by level, but each level moves at most once.
 *
 * 1. Each change is checked (valid, strictly worse than the one before, and
 *    of the side's scale; keyed: fits as a key at most at the side's
 *    kscale), searched in the side as it was (the answer is at or after the
 *    previous change's: book_merge_find) and sorted: an update (found,
 *    size > 0) is written at once; a delete (found, size 0) or an insert
 *    (absent, size > 0) is an "op"; an absent size 0 is nothing. The ops,
 *    in price order, cut the old side into runs: run j is the levels
 *    between op j-1 and op j, and moves by rp[j] - v slots, rp[j] being the
 *    inserts minus the deletes before it.
 * 2. One run, the anchor, stays: the first (v = 0: the levels after the
 *    first op move) or the last (v = net: the levels before the last op
 *    move), whichever moves fewer levels and has room (else the side is
 *    re-centred, or with too little room the merge declines). Runs moving
 *    towards the front move first, front to back; then the others, back to
 *    front: neighbouring runs' moves differ by at most one slot, so no run
 *    overwrites one that has not moved yet.
 * 3. The inserts are written into the gaps the runs left.
 *
 * Declines (returns false) at a check that fails, an insert that would find
 * the side full (QB_ERANGE) or empty (book_note_scale then resets the
 * side's scales), or room that cannot be made: the caller then applies the
 * whole chunk level by level, which gives the exact result and error. By
 * then only updates have been written: at a change that fails, those of
 * the changes before it, which level by level applies too; after the loop
 * (room), all of them, and level by level then succeeds. Each is what level
 * by level writes at that price (present either way), and it writes them
 * again: the same book. One exception, outside the input's control: when
 * growing fails, level by level stops with QB_ENOMEM at its first insert
 * and the chunk's later updates are in the book as well (after an error
 * the book is partly updated and must be resynced: book.h).
 * keyed: the side is mixed (stays so) and compared on keys. */
BOOK_ALWAYS_INLINE bool book_merge_int(qb_book *b, book_side *bs, const qb_level *in, size_t m,
                                       bool keyed, bool bid)
{
    size_t n = bs->n, cnt = n, h = 0, nops = 0;
    size_t opos[BOOK_MERGE_MAX];
    const qb_level *olv[BOOK_MERGE_MAX]; /* NULL: a delete */
    int ks = bs->kscale, sc = bs->scale;
    int64_t prev = 0;
    if (m >= 2 && book_better(bid ? QB_BID : QB_ASK, in[0].price, in[1].price) <= 0) {
        return false; /* not best first (random, or worst first): without a search */
    }
    for (size_t k = 0; k < m; k++) {
        qb_dec p = in[k].price;
        int64_t sm = in[k].size.mant, key = p.mant;
        if (keyed) {
            int d = ks - p.scale;
            if (p.mant <= 0 || sm < 0 || d < 0 || d > 18 || p.mant > book_p10_lim[d]) {
                return false;
            }
            key = p.mant * book_p10[d];
            if (k > 0 && !book_int_better(prev, key, bid)) {
                return false;
            }
        } else if ((p.mant <= 0) | (sm < 0) | (p.scale != sc) |
                   (k > 0 && !book_int_better(prev, key, bid))) {
            return false;
        }
        prev = key;
        size_t i = book_merge_find(bs->lv, n, h, key, ks, keyed, bid);
        bool found = i < n && book_lv_key(&bs->lv[i], ks, keyed) == key;
        h = i;
        if (found) {
            if (sm != 0) {
                bs->lv[i] = in[k]; /* update: in place */
                continue;
            }
            olv[nops] = NULL; /* delete */
            cnt--;
        } else {
            if (sm == 0) {
                continue; /* absent: nothing to delete */
            }
            if (cnt >= b->max_levels || cnt == 0) {
                return false;
            }
            olv[nops] = &in[k]; /* insert */
            cnt++;
        }
        opos[nops++] = i;
    }
    b->merged++;
    if (nops == 0) {
        return true;
    }
    ptrdiff_t net = (ptrdiff_t)cnt - (ptrdiff_t)n;
    if (net > 0 && book_grow(bs, cnt, b->max_levels) != QB_OK) {
        b->merged--;
        return false; /* level by level meets the same QB_ENOMEM */
    }
    /* The runs: start rs[j], prefix sum rp[j]; the last one (nops) ends at n. */
    size_t rs[BOOK_MERGE_MAX + 1];
    ptrdiff_t rp[BOOK_MERGE_MAX + 1];
    size_t cost_front = 0, cost_tail = 0, start = 0;
    ptrdiff_t p = 0;
    for (size_t j = 0; j < nops; j++) {
        size_t len = opos[j] - start;
        rs[j] = start;
        rp[j] = p;
        cost_front += p != 0 ? len : 0;
        cost_tail += p != net ? len : 0;
        p += olv[j] ? 1 : -1;
        start = opos[j] + (olv[j] ? 0 : 1);
    }
    rs[nops] = start;
    rp[nops] = p;
    cost_front += p != 0 ? n - start : 0;
    ptrdiff_t v = cost_tail <= cost_front ? net : 0, other = net - v;
    if (!book_merge_room(bs, v, net)) {
        if (book_merge_room(bs, other, net)) {
            v = other;
        } else if (bs->cap - n >= 2 * (size_t)(net > 0 ? net : -net) &&
                   bs->cap - n >= BOOK_RECENTRE_MIN) {
            book_recentre(bs); /* then both anchors have room */
        } else {
            b->merged--;
            return false;
        }
    }
    qb_level *lv = bs->lv;
    for (size_t j = 0; j <= nops; j++) { /* towards the front: front to back */
        ptrdiff_t sh = rp[j] - v;
        size_t end = j < nops ? opos[j] : n;
        if (sh < 0 && end > rs[j]) {
            memmove(lv + rs[j] + sh, lv + rs[j], (end - rs[j]) * sizeof *lv);
        }
    }
    for (size_t j = nops + 1; j-- > 0;) { /* towards the back: back to front */
        ptrdiff_t sh = rp[j] - v;
        size_t end = j < nops ? opos[j] : n;
        if (sh > 0 && end > rs[j]) {
            memmove(lv + rs[j] + sh, lv + rs[j], (end - rs[j]) * sizeof *lv);
        }
    }
    for (size_t j = 0; j < nops; j++) {
        if (olv[j]) {
            lv[(ptrdiff_t)opos[j] + rp[j] - v] = *olv[j];
        }
    }
    bs->lv = lv - v;
    bs->n = cnt;
    return true;
}

static bool book_merge_bid_mant(qb_book *b, const qb_level *in, size_t m)
{
    return book_merge_int(b, &b->side[QB_BID], in, m, false, true);
}

static bool book_merge_ask_mant(qb_book *b, const qb_level *in, size_t m)
{
    return book_merge_int(b, &b->side[QB_ASK], in, m, false, false);
}

static bool book_merge_bid_key(qb_book *b, const qb_level *in, size_t m)
{
    return book_merge_int(b, &b->side[QB_BID], in, m, true, true);
}

static bool book_merge_ask_key(qb_book *b, const qb_level *in, size_t m)
{
    return book_merge_int(b, &b->side[QB_ASK], in, m, true, false);
}

/* book_merge_int() for the side and its search mode; false when it
 * declined (a side of keys too large for int64 always does). */
static bool book_merge(qb_book *b, qb_book_side side, const qb_level *in, size_t m)
{
    const book_side *bs = &b->side[side];
    if (!bs->mixed) {
        return side == QB_BID ? book_merge_bid_mant(b, in, m) : book_merge_ask_mant(b, in, m);
    }
    if (!bs->keyed) {
        return false;
    }
    return side == QB_BID ? book_merge_bid_key(b, in, m) : book_merge_ask_key(b, in, m);
}

/* Applies one side's changes in order: chunks of BOOK_MERGE_MAX, each
 * merged in one pass (book_merge) when it can be, otherwise level by level
 * (book_apply_seq). */
static int book_apply_side(qb_book *b, qb_book_side side, const qb_level *in, size_t n)
{
    for (size_t k = 0; k < n;) {
        size_t m = n - k < BOOK_MERGE_MAX ? n - k : BOOK_MERGE_MAX;
        if (!book_merge(b, side, in + k, m)) {
            int rc = book_apply_seq(b, side, in + k, m);
            if (rc != QB_OK) {
                return rc;
            }
        }
        k += m;
    }
    return QB_OK;
}

int qb_book_apply(qb_book *b, const qb_level *bids, size_t n_bids, const qb_level *asks,
                  size_t n_asks)
{
    int rc = book_apply_side(b, QB_BID, bids, n_bids);
    if (rc == QB_OK) {
        rc = book_apply_side(b, QB_ASK, asks, n_asks);
    }
    return rc;
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
    int8_t kscale = bs->scale;
    for (size_t k = 1; k < n; k++) {
        if (bs->lv[k].price.scale != bs->scale) {
            bs->mixed = true;
        }
        if (bs->lv[k].price.scale > kscale) {
            kscale = bs->lv[k].price.scale;
        }
    }
    bs->kscale = kscale;
    bs->keyed = true;
    for (size_t k = 0; bs->mixed && k < n; k++) {
        int d = kscale - bs->lv[k].price.scale;
        if (d > 18 || bs->lv[k].price.mant > book_p10_lim[d]) {
            bs->keyed = false;
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

size_t qb__book_merged(const qb_book *b)
{
    return b->merged;
}
