/*
 * test_book.c: proto/book.c. Insert/update/delete order, deleting an absent
 * level, best-first ordering, crossed books, the max_levels bound, replace
 * with duplicates, equality by value, 100k random operations against a
 * naive reference model, and qb_book_apply (whose searches start from the
 * previous level's position) against a sorted-array model applied level by
 * level: random books and updates in every order, and every pair of
 * positions around the hint window's edges; and the one-pass merge of
 * updates listed best first (book.c book_merge) against the same model:
 * random books (one scale, mixed, keys past int64), chunks of up to 300
 * changes, top-heavy or bottom-heavy, with flaws the merge must decline
 * (repeat, swap, another scale, invalid level), a Binance-like deep book
 * with a roomy and a tight max_levels, and keys near the int64 limit.
 */
#include "book.h"
#include "err.h"
#include "harness.h"
#include "oracle_book.h"

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
    qb_level bids[6] = {L(1005, 1, 1, 0),  L(10040, 2, 0, 0), L(1003, 1, 2, 0),
                        L(10025, 2, 3, 0), L(100, 0, 4, 0),   L(99, 0, 0, 8)};
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

/* ---- qb_book_apply against a model (model_side, oracle_book.h) -------------- */

/* A price on a grid of ticks 1..span at scale 2; mixed: some of them
 * written at scale 3 or 1 (the same value where it can be), some off-grid;
 * wide: also at scale 18 and 0, so that some keys would not fit in int64
 * (book.c then compares by value). */
static bool gen_wide;

static qb_dec gen_price(int64_t tick, bool mixed)
{
    if (mixed && gen_wide && rnd() % 8 == 0) {
        if (tick < 900) {
            return D(tick * 10000000000000000LL, 18);
        }
        if (tick % 100 == 0) {
            return D(tick / 100, 0);
        }
    }
    if (mixed) {
        switch (rnd() % 6) {
        case 0:
            return D(tick * 10, 3); /* same value, other scale */
        case 1:
            return D(tick * 10 + 5, 3); /* between two ticks */
        case 2:
            if (tick % 10 == 0) {
                return D(tick / 10, 1);
            }
            break;
        default:
            break;
        }
    }
    return D(tick, 2);
}

static qb_dec gen_size(void)
{
    uint64_t r = rnd() % 100;
    if (r < 20) {
        return D(0, (int)(rnd() % 3)); /* delete, present or not */
    }
    return D((int64_t)(rnd() % 1000000) + 1, 4);
}

static int cmp_tick_asc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_int_asc(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* One side's update: n ticks around the side's book, listed as order says
 * (0 random, 1 ascending, 2 descending, 3 ascending with repeats, 4 random
 * run of one direction then the other). */
static size_t gen_update(qb_level *out, size_t n, int order, int64_t span, bool mixed,
                         const model_side *m)
{
    int64_t ticks[64];
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rnd() % 100;
        int64_t t;
        if (r < 50 && m->n > 0) {
            /* an existing level, or next to one */
            qb_dec p = m->lv[rnd() % m->n].price;
            int64_t v = p.mant;
            for (int k = p.scale; k < 2; k++) {
                v *= 10;
            }
            for (int k = p.scale; k > 2; k--) {
                v /= 10;
            }
            t = v + (int64_t)(rnd() % 3) - 1;
        } else if (r < 60) {
            t = 1 + (int64_t)(rnd() % 3); /* the low end */
        } else if (r < 70) {
            t = span + 1 - (int64_t)(rnd() % 3); /* the high end */
        } else {
            t = 1 + (int64_t)(rnd() % (uint64_t)span);
        }
        ticks[i] = t < 1 ? 1 : t;
    }
    if (order == 1 || order == 2 || order == 3) {
        qsort(ticks, n, sizeof ticks[0], cmp_tick_asc);
        if (order == 3 && n > 1) {
            for (size_t i = 1; i < n; i++) {
                if (rnd() % 4 == 0) {
                    ticks[i] = ticks[i - 1]; /* repeat: still ascending (not strictly) */
                }
            }
        }
        if (order == 2) {
            for (size_t i = 0; i < n / 2; i++) {
                int64_t x = ticks[i];
                ticks[i] = ticks[n - 1 - i];
                ticks[n - 1 - i] = x;
            }
        }
    } else if (order == 4 && n > 2) {
        size_t half = n / 2;
        qsort(ticks, half, sizeof ticks[0], cmp_tick_asc);
        qsort(ticks + half, n - half, sizeof ticks[0], cmp_tick_asc);
        for (size_t i = 0; i < (n - half) / 2; i++) { /* second run descending */
            int64_t x = ticks[half + i];
            ticks[half + i] = ticks[n - 1 - i];
            ticks[n - 1 - i] = x;
        }
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = (qb_level){gen_price(ticks[i], mixed), gen_size()};
    }
    if (n > 0 && rnd() % 50 == 0) {
        out[rnd() % n].price = D(0, 2); /* a bad level: apply stops there */
    }
    return n;
}

/* A book of n distinct ticks (of span) per side, on both the book and the
 * model; mixed: some written at other scales. */
static void gen_book(qb_book *b, model_side m[2], size_t n, int64_t span, bool mixed)
{
    static qb_level in[2][2048];
    for (int s = 0; s < 2; s++) {
        /* distinct ticks: every (span / n)-th with jitter, best first */
        m[s].n = 0;
        int64_t step = span / (int64_t)(n ? n : 1);
        for (size_t i = 0; i < n; i++) {
            int64_t t = 1 + (int64_t)i * step + (step > 1 ? (int64_t)(rnd() % (uint64_t)step) : 0);
            qb_dec p = D(t, 2);
            if (mixed && rnd() % 3 == 0) {
                p = D(t * 10, 3);
            } else if (mixed && gen_wide && rnd() % 9 == 0 && t < 900) {
                p = D(t * 10000000000000000LL, 18);
            }
            m[s].lv[m[s].n++] = (qb_level){p, D((int64_t)(rnd() % 1000) + 1, 3)};
        }
        if (s == QB_BID) { /* best first: descending */
            for (size_t i = 0; i < n / 2; i++) {
                qb_level x = m[s].lv[i];
                m[s].lv[i] = m[s].lv[n - 1 - i];
                m[s].lv[n - 1 - i] = x;
            }
        }
        memcpy(in[s], m[s].lv, n * sizeof *in[s]);
        if (rnd() % 2) { /* the replace's sort path too */
            for (size_t i = n; i > 1; i--) {
                size_t j = rnd() % i;
                qb_level x = in[s][i - 1];
                in[s][i - 1] = in[s][j];
                in[s][j] = x;
            }
        }
    }
    QB_CHECK_EQ_INT(qb_book_replace(b, in[0], n, in[1], n), QB_OK);
}

QB_TEST(apply_matches_model_randomized)
{
    static qb_level mlv[2][MODEL_CAP];
    model_side m[2] = {{mlv[0], 0}, {mlv[1], 0}};
    qb_level bids[64], asks[64];
    int counts[5] = {0}, erange = 0, einval = 0;
    for (int round = 0; round < 400 && !qb_test_failed_; round++) {
        size_t n = (size_t)(rnd() % 5 == 0 ? rnd() % 40 : rnd() % 2001);
        bool mixed = rnd() % 3 == 0;
        gen_wide = mixed && rnd() % 3 == 0;
        int64_t span = (int64_t)n * (int64_t)(1 + rnd() % 4) + 10;
        size_t max_levels = rnd() % 5 == 0 ? n + rnd() % 8 + 1 : 0;
        qb_book *b = qb_book_new(max_levels);
        size_t max_eff = max_levels ? max_levels : QB_BOOK_DEFAULT_MAX_LEVELS;
        gen_book(b, m, n, span, mixed);
        for (int u = 0; u < 30 && !qb_test_failed_; u++) {
            int ob = (int)(rnd() % 5), oa = (int)(rnd() % 5);
            size_t nb = gen_update(bids, rnd() % 41, ob, span, mixed, &m[QB_BID]);
            size_t na = gen_update(asks, rnd() % 41, oa, span, mixed, &m[QB_ASK]);
            counts[ob]++;
            counts[oa]++;
            int rc = qb_book_apply(b, bids, nb, asks, na);
            int mrc = model_apply(m, bids, nb, asks, na, max_eff);
            QB_CHECK_EQ_INT(rc, mrc);
            erange += rc == QB_ERANGE;
            einval += rc == QB_EINVAL;
            if (!model_matches(m, b)) {
                QB_CHECK(!"book differs from the model");
            }
            if (qb_test_failed_) {
                fprintf(stderr, "  round %d update %d: book %zu levels, mixed %d, orders %d/%d\n",
                        round, u, n, (int)mixed, ob, oa);
            }
        }
        qb_book_free(b);
    }
    QB_CHECK(erange > 0 && einval > 0);
    for (int o = 0; o < 5; o++) {
        QB_CHECK(counts[o] > 0);
    }
}

/* Two-level updates from every position a to every position a + d of a
 * 100-level side, for present prices and for prices between two levels,
 * either direction: the second search starts from the first one's answer
 * and must cross the window's edges (32 levels) in every way, and reach
 * both ends of the side. Then the empty side and one-level sides. */
QB_TEST(apply_hint_every_distance)
{
    static qb_level mlv[2][MODEL_CAP];
    model_side m[2] = {{mlv[0], 0}, {mlv[1], 0}};
    qb_level base[2][100];
    qb_book *b = qb_book_new(0);
    int checked = 0;
    for (int v = 0; v < 4 && !qb_test_failed_; v++) {
        /* v 0: one scale; 1: every 3rd level at scale 3 (keys); 2: the other
         * levels at scale 1 (keys, the updates at a smaller scale than most);
         * 3: a level 1E-18 at the low end: keys would not fit (by value) */
        for (int k = 0; k < 100; k++) {
            base[QB_BID][k] = L(10000 - 10 * k, 2, k + 1, 0); /* 100.00, 99.90, ... */
            base[QB_ASK][k] = L(20000 + 10 * k, 2, k + 1, 0);
            for (int t = 0; t < 2; t++) {
                if (v == 1 && k % 3 == 0) {
                    base[t][k].price = D(base[t][k].price.mant * 10, 3);
                } else if (v == 2 && k % 3 != 0) {
                    base[t][k].price = D(base[t][k].price.mant / 10, 1);
                }
            }
        }
        if (v == 3) { /* 1E-18: 100.00 as a key at scale 18 does not fit */
            base[QB_BID][99].price = D(1, 18);
            base[QB_ASK][0].price = D(1, 18);
        }
        for (int s = 0; s < 2 && !qb_test_failed_; s++) {
            for (int a = -1; a <= 100 && !qb_test_failed_; a++) {
                for (int d = -101; d <= 101 && !qb_test_failed_; d++) {
                    int c = a + d;
                    if (c < -1 || c > 100 || d == 0) {
                        continue;
                    }
                    for (int kind = 0; kind < 4; kind++) {
                        QB_CHECK_EQ_INT(qb_book_replace(b, base[0], 100, base[1], 100), QB_OK);
                        for (int t = 0; t < 2; t++) {
                            memcpy(mlv[t], base[t], sizeof base[t]);
                            m[t].n = 100;
                        }
                        /* position -1 is past the best end, 100 past the worst */
                        int64_t step = s == QB_BID ? -10 : 10, p0 = s == QB_BID ? 10000 : 20000;
                        int64_t off = (kind & 1) ? step / 2 : 0; /* between levels */
                        qb_level up[2] = {
                            L(p0 + a * step + off, 2, (kind & 2) ? 0 : 7, 0),
                            L(p0 + c * step + off, 2, (kind & 2) ? 5 : 0, 0),
                        };
                        const qb_level *ub = s == QB_BID ? up : NULL, *ua = s == QB_ASK ? up : NULL;
                        QB_CHECK_EQ_INT(qb_book_apply(b, ub, ub ? 2 : 0, ua, ua ? 2 : 0), QB_OK);
                        model_apply(m, ub, ub ? 2 : 0, ua, ua ? 2 : 0, QB_BOOK_DEFAULT_MAX_LEVELS);
                        if (!model_matches(m, b)) {
                            fprintf(stderr, "  variant %d side %d from %d by %d, kind %d\n", v, s,
                                    a, d, kind);
                            QB_CHECK(!"book differs from the model");
                            break;
                        }
                        checked++;
                    }
                }
            }
        }
    }
    QB_CHECK(checked > 160000);
    /* an empty side, then one level, then runs off both ends */
    qb_book_clear(b);
    m[0].n = m[1].n = 0;
    qb_level runs[][4] = {
        {L(500, 2, 1, 0), L(600, 2, 1, 0), L(700, 2, 1, 0), L(400, 2, 1, 0)},
        {L(800, 2, 1, 0), L(300, 2, 1, 0), L(900, 2, 0, 0), L(200, 2, 1, 0)},
        {L(200, 2, 0, 0), L(300, 2, 0, 0), L(400, 2, 0, 0), L(500, 2, 0, 0)},
        {L(600, 2, 0, 0), L(700, 2, 0, 0), L(800, 2, 0, 0), L(100, 2, 0, 0)},
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        QB_CHECK_EQ_INT(qb_book_apply(b, runs[r], 4, runs[r], 4), QB_OK);
        model_apply(m, runs[r], 4, runs[r], 4, QB_BOOK_DEFAULT_MAX_LEVELS);
        QB_CHECK(model_matches(m, b));
    }
    QB_CHECK_EQ_INT(qb_book_depth(b, QB_BID) + qb_book_depth(b, QB_ASK), 0);
    QB_CHECK_EQ_INT(qb_book_apply(b, NULL, 0, NULL, 0), QB_OK);
    qb_book_free(b);
}

/* Keys (book.c: a mixed side's prices as integers at its largest scale)
 * that stop fitting in int64 as the scale grows: 9.00 and 9.50 at scale 2,
 * then 1E-18 (9.50 at scale 18 does not fit; 9.00 would). Searches must
 * then compare by value. */
QB_TEST(keys_past_int64_compare_by_value)
{
    static qb_level mlv[2][MODEL_CAP];
    for (int order = 0; order < 2; order++) {
        model_side m[2] = {{mlv[0], 0}, {mlv[1], 0}};
        qb_book *b = qb_book_new(0);
        qb_level steps[][3] = {
            {L(900, 2, 1, 0), L(950, 2, 2, 0), L(1, 18, 3, 0)},
            {L(925, 2, 4, 0), L(9, 0, 5, 0), L(2, 18, 6, 0)},
            {L(950000, 5, 7, 0), L(1, 18, 0, 0), L(91, 1, 8, 0)},
        };
        for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
            qb_level *l = steps[k];
            if (order) { /* the other way round */
                qb_level t = l[0];
                l[0] = l[2];
                l[2] = t;
            }
            QB_CHECK_EQ_INT(qb_book_apply(b, l, 3, l, 3), QB_OK);
            model_apply(m, l, 3, l, 3, QB_BOOK_DEFAULT_MAX_LEVELS);
            QB_CHECK(model_matches(m, b));
            for (size_t i = 0; i < 3; i++) {
                QB_CHECK(qb_dec_identical(qb_book_get(b, QB_BID, l[i].price), l[i].size));
                QB_CHECK(qb_dec_identical(qb_book_get(b, QB_ASK, l[i].price), l[i].size));
            }
            for (size_t i = 0; i < 3; i++) {
                qb_level one = l[i];
                one.size = D(10 + (int64_t)i, 0);
                QB_CHECK_EQ_INT(qb_book_set(b, QB_BID, one.price, one.size), QB_OK);
                model_set(&m[QB_BID], QB_BID, one, QB_BOOK_DEFAULT_MAX_LEVELS);
            }
            QB_CHECK(model_matches(m, b));
        }
        qb_book_free(b);
    }
}

/* ---- the merge path (book.c book_merge) against the model -------------------
 * One side's update listed best first with distinct prices, as Binance spot
 * and HTX send them: n ticks (up to 300: several chunks of 64), mostly near
 * the top of the side (top-heavy) or anywhere, present or next to a present
 * level, ~15 % deletions (present or not), inserts and deletes that
 * accumulate on one end (front room, back room, re-centring, a full
 * allocation: the merge declines), and now and then one flaw that must make
 * the chunk go level by level with the same result: a repeated price, two
 * prices swapped, the same value at another scale, an invalid level. */
static int merge_flaw[6];

static size_t gen_sorted(qb_level *out, size_t n, qb_book_side side, int64_t span, bool mixed,
                         const model_side *m, int bias)
{
    static int64_t ticks[512];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rnd() % 100;
        int64_t t;
        if (r < 60 && m->n > 0) {
            size_t at = bias == 1   ? rnd() % (m->n < 40 ? m->n : 40)            /* near the best */
                        : bias == 2 ? m->n - 1 - rnd() % (m->n < 40 ? m->n : 40) /* the worst */
                                    : rnd() % m->n;
            qb_dec p = m->lv[at].price;
            int64_t v = p.mant;
            for (int s = p.scale; s < 2; s++) {
                v *= 10;
            }
            for (int s = p.scale; s > 2; s--) {
                v /= 10;
            }
            t = v + (rnd() % 3 == 0 ? (int64_t)(rnd() % 3) - 1 : 0);
        } else {
            t = 1 + (int64_t)(rnd() % (uint64_t)(span + 2));
        }
        ticks[k++] = t < 1 ? 1 : t;
    }
    qsort(ticks, k, sizeof ticks[0], cmp_tick_asc);
    size_t d = 0;
    for (size_t i = 0; i < k; i++) { /* distinct */
        if (d == 0 || ticks[d - 1] != ticks[i]) {
            ticks[d++] = ticks[i];
        }
    }
    if (side == QB_BID) { /* best first: descending */
        for (size_t i = 0; i < d / 2; i++) {
            int64_t x = ticks[i];
            ticks[i] = ticks[d - 1 - i];
            ticks[d - 1 - i] = x;
        }
    }
    for (size_t i = 0; i < d; i++) {
        qb_dec size =
            rnd() % 100 < 15 ? D(0, (int)(rnd() % 3)) : D((int64_t)(rnd() % 1000000) + 1, 4);
        if (bias == 1 && rnd() % 2) { /* grow or shrink the front */
            size = rnd() % 2 ? D(0, 0) : D(7, 0);
        }
        out[i] = (qb_level){gen_price(ticks[i], mixed), size};
        if (out[i].price.scale != 2 && i > 0 && qb_dec_cmp(out[i].price, out[i - 1].price) == 0) {
            out[i].price = D(ticks[i], 2); /* gen_price may not keep them distinct */
        }
    }
    /* gen_price's off-grid prices (mixed) may break the strict order: fix */
    for (size_t i = 1; i < d; i++) {
        int c = qb_dec_cmp(out[i].price, out[i - 1].price);
        if ((side == QB_BID ? c : -c) >= 0) {
            out[i].price = D(ticks[i], 2);
        }
    }
    if (d > 1 && rnd() % 8 == 0) {
        size_t i = 1 + rnd() % (d - 1);
        int f = (int)(rnd() % 5);
        merge_flaw[f]++;
        switch (f) {
        case 0: /* a repeated price: the later one wins */
            out[i].price = out[i - 1].price;
            break;
        case 1: { /* two prices swapped */
            qb_level x = out[i];
            out[i] = out[i - 1];
            out[i - 1] = x;
            break;
        }
        case 2: /* the same value at another scale */
            if (out[i].price.mant <= INT64_MAX / 10) {
                out[i].price = D(out[i].price.mant * 10, out[i].price.scale + 1);
            }
            break;
        case 3:
            out[i].price = D(0, 2); /* invalid: stops there (QB_EINVAL) */
            break;
        default:
            out[i].size = D(-1, 0); /* invalid size */
            break;
        }
    }
    return d;
}

QB_TEST(apply_sorted_merge_matches_model)
{
    static qb_level mlv[2][MODEL_CAP];
    static qb_level up[2][512];
    model_side m[2] = {{mlv[0], 0}, {mlv[1], 0}};
    int erange = 0, einval = 0, updates = 0;
    size_t merged = 0;
    memset(merge_flaw, 0, sizeof merge_flaw);
    for (int round = 0; round < 300 && !qb_test_failed_; round++) {
        size_t n = (size_t)(rnd() % 4 == 0 ? rnd() % 40 : rnd() % 1500);
        bool mixed = rnd() % 3 == 0;
        gen_wide = mixed && rnd() % 4 == 0;
        int64_t span = (int64_t)n * (int64_t)(1 + rnd() % 3) + 20;
        size_t max_levels = rnd() % 4 == 0 ? n + rnd() % 8 + 1 : 0;
        qb_book *b = qb_book_new(max_levels);
        size_t max_eff = max_levels ? max_levels : QB_BOOK_DEFAULT_MAX_LEVELS;
        gen_book(b, m, n, span, mixed);
        int bias = (int)(rnd() % 3); /* 0 anywhere, 1 near the best, 2 near the worst */
        for (int u = 0; u < 40 && !qb_test_failed_; u++) {
            size_t want[2];
            for (int s = 0; s < 2; s++) {
                uint64_t r = rnd() % 10;
                want[s] = r < 6 ? rnd() % 41 : r < 9 ? rnd() % 130 : rnd() % 301;
            }
            size_t nb = gen_sorted(up[QB_BID], want[0], QB_BID, span, mixed, &m[QB_BID], bias);
            size_t na = gen_sorted(up[QB_ASK], want[1], QB_ASK, span, mixed, &m[QB_ASK], bias);
            int rc = qb_book_apply(b, up[QB_BID], nb, up[QB_ASK], na);
            int mrc = model_apply(m, up[QB_BID], nb, up[QB_ASK], na, max_eff);
            QB_CHECK_EQ_INT(rc, mrc);
            erange += rc == QB_ERANGE;
            einval += rc == QB_EINVAL;
            updates++;
            if (!model_matches(m, b)) {
                QB_CHECK(!"book differs from the model");
            }
            if (qb_test_failed_) {
                fprintf(stderr,
                        "  round %d update %d: book %zu levels, mixed %d wide %d, bias %d\n", round,
                        u, n, (int)mixed, (int)gen_wide, bias);
            }
        }
        merged += qb__book_merged(b);
        qb_book_free(b);
    }
    /* the merge took most chunks, and every flaw and both errors were met */
    QB_CHECK(merged > (size_t)updates);
    QB_CHECK(erange > 0 && einval > 0);
    for (int f = 0; f < 5; f++) {
        QB_CHECK(merge_flaw[f] > 0);
    }
}

/* A Binance-like deep book (1000 levels a side), 20+20-level updates among
 * the top 200 and 100 better prices, best first, 10-20 % deletions, for
 * thousands of updates: the inserts pile up at the front, so the merge
 * meets an empty front room, re-centres and grows. Then the same with a
 * tight max_levels (QB_ERANGE mid-chunk: level by level). Every update is
 * checked against the model. */
QB_TEST(apply_sorted_merge_deep_book)
{
    static qb_level mlv[2][MODEL_CAP];
    for (int tight = 0; tight < 2 && !qb_test_failed_; tight++) {
        model_side m[2] = {{mlv[0], 0}, {mlv[1], 0}};
        size_t max_levels = tight ? 1003 : 0;
        qb_book *b = qb_book_new(max_levels);
        static qb_level snap[2][1000];
        for (int s = 0; s < 2; s++) {
            for (int k = 0; k < 1000; k++) {
                int64_t px = s == QB_BID ? 599999 - k : 600001 + k;
                snap[s][k] = L(px * 1000000, 8, (int64_t)(rnd() % 5000000) + 1, 8);
            }
            memcpy(mlv[s], snap[s], sizeof snap[s]);
            m[s].n = 1000;
        }
        QB_CHECK_EQ_INT(qb_book_replace(b, snap[0], 1000, snap[1], 1000), QB_OK);
        int erange = 0;
        for (int u = 0; u < 3000 && !qb_test_failed_; u++) {
            qb_level up[2][20];
            for (int s = 0; s < 2; s++) {
                bool used[300] = {false};
                int k[20];
                for (int i = 0; i < 20; i++) {
                    int v; /* -100..199: some better than the snapshot's best */
                    do {
                        v = (int)(rnd() % 300);
                    } while (used[v]);
                    used[v] = true;
                    k[i] = v - 100;
                }
                qsort(k, 20, sizeof k[0], cmp_int_asc);
                for (int i = 0; i < 20; i++) {
                    int64_t px = s == QB_BID ? 599999 - k[i] : 600001 + k[i];
                    /* more inserts than deletes on the bid side: the front
                     * fills; tight: phases of deletes, so it fills again */
                    int pct = tight && (u / 100) % 2 ? 60 : s == QB_BID ? 10 : 20;
                    int del = (int)(rnd() % 100) < pct;
                    up[s][i] = L(px * 1000000, 8, del ? 0 : (int64_t)(rnd() % 5000000) + 1, 8);
                }
            }
            int rc = qb_book_apply(b, up[0], 20, up[1], 20);
            int mrc = model_apply(m, up[0], 20, up[1], 20,
                                  tight ? max_levels : QB_BOOK_DEFAULT_MAX_LEVELS);
            QB_CHECK_EQ_INT(rc, mrc);
            erange += rc == QB_ERANGE;
            if (!model_matches(m, b)) {
                fprintf(stderr, "  tight %d update %d\n", tight, u);
                QB_CHECK(!"book differs from the model");
            }
        }
        QB_CHECK(qb__book_merged(b) > (tight ? 2000u : 5000u)); /* of 6000 side updates */
        QB_CHECK(tight ? erange > 0 : erange == 0);
        qb_book_free(b);
    }
}

/* The merge on a keyed side (mixed scales) whose keys are near the int64
 * limit: kscale 18 (1E-18 and 5E-18 on the side), 9.00 is 9E18 as a key and
 * fits, 9.50 would not, and neither would a price at scale 19. Sorted
 * updates with such a price must give the model's book (the merge declines
 * them; level by level then compares by value). */
QB_TEST(apply_sorted_merge_keys_near_int64)
{
    static qb_level mlv[2][MODEL_CAP];
    for (int variant = 0; variant < 4; variant++) {
        model_side m[2] = {{mlv[0], 0}, {mlv[1], 0}};
        qb_book *b = qb_book_new(0);
        qb_level bids[] = {L(900, 2, 1, 0), L(850, 2, 2, 0), L(5, 18, 3, 0), L(1, 18, 4, 0)};
        qb_level asks[] = {L(1, 18, 4, 0), L(5, 18, 3, 0), L(850, 2, 2, 0), L(900, 2, 1, 0)};
        QB_CHECK_EQ_INT(qb_book_replace(b, bids, 4, asks, 4), QB_OK);
        memcpy(mlv[0], bids, sizeof bids);
        memcpy(mlv[1], asks, sizeof asks);
        m[0].n = m[1].n = 4;
        /* best first: a fitting update, then one whose key would not fit */
        qb_level ub[3], ua[3];
        qb_dec far = variant == 0   ? D(950, 2)                     /* 9.5E18 */
                     : variant == 1 ? D(92233720368547758LL, 16)    /* > int64 */
                     : variant == 2 ? D(1000000000000000000LL, 19)  /* scale 19 */
                                    : D(9223372036854775807LL, 18); /* fits exactly */
        ub[0] = (qb_level){far, D(9, 0)};
        ub[1] = L(900, 2, 0, 0);
        ub[2] = L(3, 18, 5, 0);
        for (int i = 1; i < 3; i++) { /* best first */
            for (int j = i; j > 0 && qb_dec_cmp(ub[j].price, ub[j - 1].price) > 0; j--) {
                qb_level x = ub[j];
                ub[j] = ub[j - 1];
                ub[j - 1] = x;
            }
        }
        for (int i = 0; i < 3; i++) {
            ua[i] = ub[2 - i];
        }
        /* the far price alone (nothing else to catch it), then all three */
        qb_level one = {far, D(8, 0)};
        int rc = qb_book_apply(b, &one, 1, &one, 1);
        int mrc = model_apply(m, &one, 1, &one, 1, QB_BOOK_DEFAULT_MAX_LEVELS);
        QB_CHECK_EQ_INT(rc, mrc);
        rc = qb_book_apply(b, ub, 3, ua, 3);
        mrc = model_apply(m, ub, 3, ua, 3, QB_BOOK_DEFAULT_MAX_LEVELS);
        QB_CHECK_EQ_INT(rc, mrc);
        if (!model_matches(m, b)) {
            fprintf(stderr, "  variant %d\n", variant);
            QB_CHECK(!"book differs from the model");
        }
        qb_book_free(b);
    }
}

int main(void)
{
    return qb_test_run_all();
}
