/*
 * test_book.c: proto/book.c. Insert/update/delete order, deleting an absent
 * level, best-first ordering, crossed books, the max_levels bound, replace
 * with duplicates, equality by value, and 100k random operations against a
 * naive reference model.
 */
#include "book.h"
#include "err.h"
#include "harness.h"


static qb_dec D(int64_t m, int s)
{
    return (qb_dec){m, (int8_t)s};
}

static qb_level L(int64_t pm, int ps, int64_t sm, int ss)
{
    return (qb_level){D(pm, ps), D(sm, ss)};
}

QB_TEST(insert_update_delete_keep_order)
{
    qb_book *b = qb_book_new(0);
    QB_CHECK(b != NULL);
    QB_CHECK_EQ_INT(qb_book_set(b, QB_BID, D(1004, 1), D(1, 0)), QB_OK);
    QB_CHECK_EQ_INT(qb_book_set(b, QB_BID, D(1005, 1), D(2, 0)), QB_OK);
    QB_CHECK_EQ_INT(qb_book_set(b, QB_BID, D(1002, 1), D(3, 0)), QB_OK);
    QB_CHECK_EQ_INT(qb_book_set(b, QB_ASK, D(1007, 1), D(4, 0)), QB_OK);
    QB_CHECK_EQ_INT(qb_book_set(b, QB_ASK, D(1006, 1), D(5, 0)), QB_OK);
    QB_CHECK_EQ_INT(qb_book_set(b, QB_ASK, D(1009, 1), D(6, 0)), QB_OK);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_BID), 3);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_ASK), 3);
    const qb_level *bids = qb_book_levels(b, QB_BID), *asks = qb_book_levels(b, QB_ASK);
    /* bids descending, asks ascending */
    QB_CHECK_EQ_INT(bids[0].price.mant, 1005);
    QB_CHECK_EQ_INT(bids[1].price.mant, 1004);
    QB_CHECK_EQ_INT(bids[2].price.mant, 1002);
    QB_CHECK_EQ_INT(asks[0].price.mant, 1006);
    QB_CHECK_EQ_INT(asks[1].price.mant, 1007);
    QB_CHECK_EQ_INT(asks[2].price.mant, 1009);
    /* update in place; a different scale of the same price is the same level */
    QB_CHECK_EQ_INT(qb_book_set(b, QB_BID, D(10040, 2), D(9, 0)), QB_OK);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_BID), 3);
    QB_CHECK_EQ_INT(qb_dec_cmp(qb_book_get(b, QB_BID, D(1004, 1)), D(9, 0)), 0);
    /* delete the middle, then the top */
    QB_CHECK_EQ_INT(qb_book_set(b, QB_BID, D(1004, 1), D(0, 8)), QB_OK);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_BID), 2);
    QB_CHECK_EQ_INT(qb_book_set(b, QB_ASK, D(1006, 1), D(0, 0)), QB_OK);
    asks = qb_book_levels(b, QB_ASK);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_ASK), 2);
    QB_CHECK_EQ_INT(asks[0].price.mant, 1007);
    /* deleting an absent level is normal */
    QB_CHECK_EQ_INT(qb_book_set(b, QB_ASK, D(1, 0), D(0, 0)), QB_OK);
    QB_CHECK_EQ_INT(qb_book_set(b, QB_ASK, D(1006, 1), D(0, 0)), QB_OK);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_ASK), 2);
    QB_CHECK(qb_dec_is_zero(qb_book_get(b, QB_ASK, D(1006, 1))));
    QB_CHECK(qb_dec_is_zero(qb_book_get(b, QB_ASK, D(5, 0))));
    /* invalid input */
    QB_CHECK_EQ_INT(qb_book_set(b, QB_ASK, D(1006, 1), D(-1, 0)), QB_EINVAL);
    QB_CHECK_EQ_INT(qb_book_set(b, QB_ASK, D(0, 1), D(1, 0)), QB_EINVAL);
    QB_CHECK_EQ_INT(qb_book_set(b, QB_ASK, D(-5, 1), D(1, 0)), QB_EINVAL);
    QB_CHECK_EQ_INT(qb_book_set(b, QB_ASK, D(0, 1), D(0, 0)), QB_EINVAL);
    QB_CHECK_EQ_INT(qb_book_set(b, (qb_book_side)7, D(5, 1), D(1, 0)), QB_EINVAL);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_ASK), 2);
    qb_book_clear(b);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_BID) + qb_book_depth(b, QB_ASK), 0);
    qb_book_free(b);
    qb_book_free(NULL);
}

QB_TEST(mixed_scales_sort_by_value)
{
    qb_book *b = qb_book_new(0);
    QB_CHECK_EQ_INT(qb_book_set(b, QB_ASK, D(1, 0), D(1, 0)), QB_OK);       /* 1 */
    QB_CHECK_EQ_INT(qb_book_set(b, QB_ASK, D(95, 2), D(1, 0)), QB_OK);      /* 0.95 */
    QB_CHECK_EQ_INT(qb_book_set(b, QB_ASK, D(1, -1), D(1, 0)), QB_OK);      /* 10 */
    QB_CHECK_EQ_INT(qb_book_set(b, QB_ASK, D(1000001, 6), D(1, 0)), QB_OK); /* 1.000001 */
    const qb_level *a = qb_book_levels(b, QB_ASK);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_ASK), 4);
    QB_CHECK(qb_dec_identical(a[0].price, D(95, 2)));
    QB_CHECK(qb_dec_identical(a[1].price, D(1, 0)));
    QB_CHECK(qb_dec_identical(a[2].price, D(1000001, 6)));
    QB_CHECK(qb_dec_identical(a[3].price, D(1, -1)));
    QB_CHECK_EQ_INT(qb_book_set(b, QB_ASK, D(100, 2), D(0, 0)), QB_OK); /* deletes 1 */
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_ASK), 3);
    qb_book_free(b);
}

QB_TEST(crossed)
{
    qb_book *b = qb_book_new(0);
    QB_CHECK(!qb_book_crossed(b));
    QB_CHECK_EQ_INT(qb_book_set(b, QB_BID, D(100, 0), D(1, 0)), QB_OK);
    QB_CHECK(!qb_book_crossed(b));
    QB_CHECK_EQ_INT(qb_book_set(b, QB_ASK, D(1001, 1), D(1, 0)), QB_OK);
    QB_CHECK(!qb_book_crossed(b));
    QB_CHECK_EQ_INT(qb_book_set(b, QB_BID, D(10010, 2), D(1, 0)), QB_OK); /* equal: crossed */
    QB_CHECK(qb_book_crossed(b));
    QB_CHECK_EQ_INT(qb_book_set(b, QB_BID, D(10010, 2), D(0, 0)), QB_OK);
    QB_CHECK(!qb_book_crossed(b));
    QB_CHECK_EQ_INT(qb_book_set(b, QB_BID, D(102, 0), D(1, 0)), QB_OK);
    QB_CHECK(qb_book_crossed(b));
    qb_book_free(b);
}

QB_TEST(max_levels_bound)
{
    qb_book *b = qb_book_new(3);
    for (int i = 1; i <= 3; i++) {
        QB_CHECK_EQ_INT(qb_book_set(b, QB_BID, D(i, 0), D(1, 0)), QB_OK);
    }
    QB_CHECK_EQ_INT(qb_book_set(b, QB_BID, D(4, 0), D(1, 0)), QB_ERANGE);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_BID), 3);
    /* updating and deleting still work on a full side */
    QB_CHECK_EQ_INT(qb_book_set(b, QB_BID, D(2, 0), D(5, 0)), QB_OK);
    QB_CHECK_EQ_INT(qb_book_set(b, QB_BID, D(2, 0), D(0, 0)), QB_OK);
    QB_CHECK_EQ_INT(qb_book_set(b, QB_BID, D(4, 0), D(1, 0)), QB_OK);
    QB_CHECK_EQ_INT(qb_book_set(b, QB_ASK, D(4, 0), D(1, 0)), QB_OK); /* per side */
    qb_level many[5] = {L(1, 0, 1, 0), L(2, 0, 1, 0), L(3, 0, 1, 0), L(4, 0, 1, 0), L(5, 0, 1, 0)};
    QB_CHECK_EQ_INT(qb_book_replace(b, many, 5, NULL, 0), QB_ERANGE);
    /* duplicates and zero sizes that reduce the count below the bound fit */
    qb_level dup[5] = {L(1, 0, 1, 0), L(1, 0, 2, 0), L(3, 0, 1, 0), L(4, 0, 0, 0), L(5, 0, 1, 0)};
    QB_CHECK_EQ_INT(qb_book_replace(b, dup, 5, NULL, 0), QB_OK);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_BID), 3);
    qb_book_free(b);

    /* the default bound */
    b = qb_book_new(0);
    for (int i = 1; i <= QB_BOOK_DEFAULT_MAX_LEVELS; i++) {
        if (qb_book_set(b, QB_ASK, D(i, 2), D(1, 0)) != QB_OK) {
            QB_CHECK(0);
            break;
        }
    }
    QB_CHECK_EQ_INT(qb_book_set(b, QB_ASK, D(QB_BOOK_DEFAULT_MAX_LEVELS + 1, 2), D(1, 0)),
                    QB_ERANGE);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_ASK), QB_BOOK_DEFAULT_MAX_LEVELS);
    qb_book_free(b);
}

/* Found by libFuzzer (fuzz_msgpack, fuzz_binance): a snapshot whose every
 * level has size 0, into a side that never held a level (no buffer yet),
 * took NULL + 0 (undefined behaviour). Both the sorted and the unsorted
 * path; the side is empty afterwards and still usable. */
QB_TEST(replace_all_zero_into_fresh_side)
{
    qb_book *b = qb_book_new(0);
    qb_level sorted[] = {L(101, 0, 0, 0), L(100, 0, 0, 0)};
    qb_level unsorted[] = {L(100, 0, 0, 0), L(101, 0, 0, 0)};
    QB_CHECK_EQ_INT(qb_book_replace(b, sorted, 2, unsorted, 2), QB_OK);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_BID), 0);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_ASK), 0);
    QB_CHECK_EQ_INT(qb_book_set(b, QB_BID, D(99, 0), D(1, 0)), QB_OK);
    QB_CHECK_EQ_INT(qb_book_set(b, QB_ASK, D(1010, 1), D(2, 0)), QB_OK);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_BID), 1);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_ASK), 1);
    QB_CHECK(!qb_book_crossed(b));
    /* and back to empty over a side that has a buffer */
    QB_CHECK_EQ_INT(qb_book_replace(b, unsorted, 2, sorted, 2), QB_OK);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_BID), 0);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_ASK), 0);
    qb_book_free(b);
}

QB_TEST(replace_sorts_dedups_and_skips_zero)
{
    qb_book *b = qb_book_new(0);
    QB_CHECK_EQ_INT(qb_book_set(b, QB_BID, D(7, 0), D(1, 0)), QB_OK);
    qb_level bids[] = {L(99, 0, 1, 0),  L(101, 0, 2, 0),
                       L(100, 0, 3, 0), L(1010, 1, 4, 0), /* 101 again, other scale: last wins */
                       L(98, 0, 0, 0),                    /* zero: skipped */
                       L(97, 0, 5, 0),  L(97, 0, 0, 0) /* last is zero: absent */};
    qb_level asks[] = {L(105, 0, 1, 0), L(102, 0, 2, 0), L(104, 0, 3, 0), L(102, 0, 9, 0)};
    QB_CHECK_EQ_INT(qb_book_replace(b, bids, 7, asks, 4), QB_OK);
    const qb_level *bl = qb_book_levels(b, QB_BID), *al = qb_book_levels(b, QB_ASK);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_BID), 3);
    QB_CHECK(qb_dec_identical(bl[0].price, D(1010, 1)));
    QB_CHECK_EQ_INT(bl[0].size.mant, 4);
    QB_CHECK_EQ_INT(bl[1].price.mant, 100);
    QB_CHECK_EQ_INT(bl[2].price.mant, 99);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_ASK), 3);
    QB_CHECK_EQ_INT(al[0].price.mant, 102);
    QB_CHECK_EQ_INT(al[0].size.mant, 9);
    QB_CHECK_EQ_INT(al[1].price.mant, 104);
    QB_CHECK_EQ_INT(al[2].price.mant, 105);
    QB_CHECK(qb_dec_is_zero(qb_book_get(b, QB_BID, D(7, 0)))); /* old content gone */
    /* invalid levels: rejected, book unchanged */
    qb_level bad[] = {L(1, 0, 1, 0), L(2, 0, -1, 0)};
    QB_CHECK_EQ_INT(qb_book_replace(b, bad, 2, NULL, 0), QB_EINVAL);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_BID), 3);
    /* empty replace clears */
    QB_CHECK_EQ_INT(qb_book_replace(b, NULL, 0, NULL, 0), QB_OK);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_BID) + qb_book_depth(b, QB_ASK), 0);
    qb_book_free(b);
}

QB_TEST(apply_and_equal_by_value)
{
    qb_book *a = qb_book_new(0), *b = qb_book_new(0);
    QB_CHECK(qb_book_equal(a, b));
    qb_level bids[] = {L(100, 0, 1, 0), L(99, 0, 2, 0)};
    qb_level asks[] = {L(101, 0, 15, 1)};
    QB_CHECK_EQ_INT(qb_book_apply(a, bids, 2, asks, 1), QB_OK);
    QB_CHECK(!qb_book_equal(a, b));
    qb_level bids2[] = {L(9900, 2, 2, 0), L(1000, 1, 100, 2)};
    qb_level asks2[] = {L(101, 0, 150, 2)};
    QB_CHECK_EQ_INT(qb_book_apply(b, bids2, 2, asks2, 1), QB_OK);
    QB_CHECK(qb_book_equal(a, b));
    QB_CHECK(qb_book_equal(b, a));
    QB_CHECK_EQ_INT(qb_book_set(b, QB_ASK, D(101, 0), D(151, 2)), QB_OK);
    QB_CHECK(!qb_book_equal(a, b));
    /* apply stops at the first error */
    qb_level bad[] = {L(50, 0, 1, 0), L(-1, 0, 1, 0), L(51, 0, 1, 0)};
    QB_CHECK_EQ_INT(qb_book_apply(a, bad, 3, NULL, 0), QB_EINVAL);
    QB_CHECK(!qb_dec_is_zero(qb_book_get(a, QB_BID, D(50, 0))));
    QB_CHECK(qb_dec_is_zero(qb_book_get(a, QB_BID, D(51, 0))));
    qb_book_free(a);
    qb_book_free(b);
}

/* The reference: an unsorted array, searched linearly, sorted on compare. */
typedef struct ref_side {
    qb_level lv[512];
    size_t n;
} ref_side;

static void ref_set(ref_side *r, qb_dec price, qb_dec size)
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

static bool ref_matches(const ref_side *r, const qb_book *b, qb_book_side side)
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

static uint64_t rnd_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

QB_TEST(random_ops_match_reference)
{
    qb_book *b = qb_book_new(150);
    static ref_side ref[2];
    ref[0].n = ref[1].n = 0;
    int erange = 0;
    for (int op = 0; op < 100000; op++) {
        qb_book_side side = (qb_book_side)(rnd() & 1);
        /* prices 1.00 .. 3.00 at mixed scales, so levels collide by value */
        int64_t cents = 100 + (int64_t)(rnd() % 201);
        qb_dec price = (rnd() % 4 == 0) ? D(cents * 10, 3) : D(cents, 2);
        qb_dec size = (rnd() % 3 == 0) ? D(0, 8) : D((int64_t)(rnd() % 100000) + 1, 4);
        int rc = qb_book_set(b, side, price, size);
        bool present = !qb_dec_is_zero(qb_book_get(b, side, price));
        if (rc == QB_ERANGE) {
            QB_CHECK(!present && ref[side].n == 150);
            erange++;
            continue;
        }
        QB_CHECK_EQ_INT(rc, QB_OK);
        ref_set(&ref[side], price, size);
        if (op % 97 == 0 || op > 99000) {
            QB_CHECK(ref_matches(&ref[QB_BID], b, QB_BID));
            QB_CHECK(ref_matches(&ref[QB_ASK], b, QB_ASK));
        }
        if (op % 10007 == 0) {
            /* replace from the reference (unsorted) gives an equal book */
            qb_book *c = qb_book_new(150);
            QB_CHECK_EQ_INT(qb_book_replace(c, ref[0].lv, ref[0].n, ref[1].lv, ref[1].n), QB_OK);
            QB_CHECK(qb_book_equal(b, c));
            qb_book_free(c);
        }
        if (qb_test_failed_) {
            fprintf(stderr, "  at op %d\n", op);
            break;
        }
    }
    QB_CHECK(erange > 0); /* the bound was exercised */
    qb_book_free(b);
}

/* Deep book, changes mostly near the top (as exchanges send them) and some
 * at the bottom: exercises the two-ended moves of book.c (front room, back
 * room, re-centring, and the longer move when a full side has no room),
 * against the reference model, for a roomy and a tight max_levels. */
static void top_heavy_run(size_t max_levels, int ops)
{
    qb_book *b = qb_book_new(max_levels);
    static ref_side ref[2];
    ref[0].n = ref[1].n = 0;
    int erange = 0;
    for (int op = 0; op < ops; op++) {
        qb_book_side side = (qb_book_side)(rnd() & 1);
        uint64_t r = rnd() % 100;
        int64_t k; /* distance from the best possible price, 0..499 */
        if (r < 70) {
            k = (int64_t)(rnd() % 40);
        } else if (r < 85) {
            k = 460 + (int64_t)(rnd() % 40);
        } else {
            k = (int64_t)(rnd() % 500);
        }
        qb_dec price = side == QB_BID ? D(1000 - k, 2) : D(1001 + k, 2);
        /* few deletions while filling, then balanced */
        bool del = (op < ops / 4) ? rnd() % 20 == 0 : rnd() % 2 == 0;
        qb_dec size = del ? D(0, 8) : D((int64_t)(rnd() % 100000) + 1, 4);
        int rc = qb_book_set(b, side, price, size);
        if (rc == QB_ERANGE) {
            QB_CHECK(ref[side].n == max_levels);
            erange++;
            continue;
        }
        QB_CHECK_EQ_INT(rc, QB_OK);
        ref_set(&ref[side], price, size);
        if (op % 53 == 0 || op > ops - 500) {
            QB_CHECK(ref_matches(&ref[QB_BID], b, QB_BID));
            QB_CHECK(ref_matches(&ref[QB_ASK], b, QB_ASK));
        }
        if (op == ops / 2) {
            /* a replace in the middle of the run, then more moves on it */
            QB_CHECK_EQ_INT(qb_book_replace(b, ref[0].lv, ref[0].n, ref[1].lv, ref[1].n), QB_OK);
        }
        if (qb_test_failed_) {
            fprintf(stderr, "  max_levels %zu at op %d\n", max_levels, op);
            break;
        }
    }
    if (max_levels < 500) {
        QB_CHECK(erange > 0);
    }
    qb_book_clear(b);
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_BID), 0);
    QB_CHECK_EQ_INT(qb_book_set(b, QB_BID, D(5, 0), D(1, 0)), QB_OK);
    QB_CHECK_EQ_INT(qb_book_set(b, QB_BID, D(6, 0), D(1, 0)), QB_OK);
    QB_CHECK_EQ_INT(qb_book_levels(b, QB_BID)[0].price.mant, 6);
    qb_book_free(b);
}

QB_TEST(top_heavy_ops_match_reference)
{
    top_heavy_run(500, 60000); /* never full: room at both ends */
    top_heavy_run(300, 60000); /* full often: no room, longer moves */
    top_heavy_run(67, 20000);  /* just past the initial allocation */
}

/* Replace with levels already best first (the copy path) gives the same
 * book as from a shuffled order (the sort path): size-0 levels skipped,
 * mixed scales compared by value, and searches afterwards still exact. */
QB_TEST(replace_sorted_input_same_as_shuffled)
{
    qb_level bids[6] = {L(1005, 1, 1, 0), L(10040, 2, 0, 0), L(1003, 1, 2, 0),
                        L(10025, 2, 3, 0), L(100, 0, 4, 0), L(99, 0, 0, 8)};
    qb_level asks[4] = {L(1006, 1, 5, 0), L(10070, 2, 6, 0), L(1008, 1, 7, 0), L(101, 0, 8, 0)};
    qb_level bids_shuf[6] = {bids[3], bids[0], bids[5], bids[1], bids[4], bids[2]};
    qb_level asks_shuf[4] = {asks[2], asks[0], asks[3], asks[1]};
    qb_book *a = qb_book_new(0), *b = qb_book_new(0);
    QB_CHECK_EQ_INT(qb_book_replace(a, bids, 6, asks, 4), QB_OK);
    QB_CHECK_EQ_INT(qb_book_replace(b, bids_shuf, 6, asks_shuf, 4), QB_OK);
    QB_CHECK(qb_book_equal(a, b));
    QB_CHECK_EQ_INT(qb_book_depth(a, QB_BID), 4);
    QB_CHECK_EQ_INT(qb_book_depth(a, QB_ASK), 4);
    QB_CHECK_EQ_INT(qb_book_levels(a, QB_BID)[3].price.mant, 100);
    QB_CHECK_EQ_INT(qb_book_get(a, QB_BID, D(100250, 3)).mant, 3);
    QB_CHECK_EQ_INT(qb_book_set(a, QB_BID, D(10030, 2), D(0, 0)), QB_OK);
    QB_CHECK_EQ_INT(qb_book_depth(a, QB_BID), 3);
    /* one scale everywhere, then another scale arrives by overwrite */
    qb_level one[3] = {L(300, 2, 1, 0), L(200, 2, 1, 0), L(100, 2, 1, 0)};
    QB_CHECK_EQ_INT(qb_book_replace(a, one, 3, NULL, 0), QB_OK);
    QB_CHECK_EQ_INT(qb_book_set(a, QB_BID, D(2, 0), D(9, 0)), QB_OK); /* 2 == 2.00 */
    QB_CHECK_EQ_INT(qb_book_depth(a, QB_BID), 3);
    QB_CHECK_EQ_INT(qb_book_get(a, QB_BID, D(200, 2)).mant, 9);
    QB_CHECK_EQ_INT(qb_book_set(a, QB_BID, D(250, 2), D(5, 0)), QB_OK);
    QB_CHECK_EQ_INT(qb_book_levels(a, QB_BID)[1].price.mant, 250);
    QB_CHECK_EQ_INT(qb_book_get(a, QB_BID, D(25, 1)).mant, 5);
    qb_book_free(a);
    qb_book_free(b);
}

int main(void)
{
    return qb_test_run_all();
}
