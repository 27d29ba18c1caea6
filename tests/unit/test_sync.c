/*
 * test_sync.c: the book sync state machine (adapters/sync.c) without
 * network: snapshot plus buffered deltas, the sequence rules' verdicts
 * (stale, bridge, gap), resyncs and their reasons, snapshot errors, stop,
 * stale and back, the bounded event buffer, and the full-book mode
 * (qb_sync_on_full) that turns an exchange's full books into exact deltas.
 *
 * Events come from each exchange's real parser (synthetic Binance depth
 * frames, Bithumb-shaped full books), so the sync sees what it sees in the
 * adapter; the parsers themselves are tested in test_<exchange>.c. The
 * full-book check: a subscriber that applies only what the sync publishes
 * holds exactly the latest full book after each of thousands of random
 * top-N books (added, changed, removed levels, unchanged books, books
 * shrinking to empty, crossed books).
 */
#include "harness.h"

#include "err.h"
#include "exchange.h"
#include "json.h"
#include "log.h"
#include "sync.h"
#include "sync_owner.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- sequence rules (Binance spot's U/u), resyncs, the event buffer ------- */

QB_TEST(gap_triggers_resync_and_duplicates_drop)
{
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 16, 100), QB_OK);
    void *st_p = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_binance_ops, 1 << 16, &st_p), QB_OK);
    qb_sync_counters cnt = {0};
    rec_owner own = {0};
    qb_sync s;
    QB_CHECK_EQ_INT(qb_sync_init(&s, &qb_seq_binance_spot, rec_owner_ops(), &own, &cnt, 100),
                    QB_OK);
    qb_sync_start(&s, QB_FEED_SYNCING, "");
    char f[512];

    /* Snapshot with no buffered events: live, next event must bridge. */
    snapshot(st_p, &p, &s,
             "{\"lastUpdateId\":100,\"bids\":[[\"10.0\",\"1\"]],\"asks\":[[\"11.0\",\"2\"]]}",
             QB_OK);
    QB_CHECK_EQ_INT(s.state, QB_SYNC_LIVE);
    depth_frame(f, sizeof f, 95, 100, "[\"10.0\",\"5\"]", "");
    feed(st_p, &p, &s, f, QB_OK); /* u <= lastUpdateId: dropped */
    QB_CHECK_EQ_INT(cnt.deltas_dropped_stale, 1);
    QB_CHECK(qb_dec_cmp(qb_book_get(qb_sync_book(&s), QB_BID, dec("10")), dec("1")) == 0);
    depth_frame(f, sizeof f, 99, 103, "[\"10.0\",\"3\"]", "");
    feed(st_p, &p, &s, f, QB_OK); /* bridges: 99 <= 101 <= 103 */
    depth_frame(f, sizeof f, 104, 104, "[\"9.5\",\"4\"]", "[\"11.0\",\"0\"]");
    feed(st_p, &p, &s, f, QB_OK);
    QB_CHECK_EQ_INT(cnt.deltas_applied, 2);
    QB_CHECK(qb_dec_cmp(qb_book_get(qb_sync_book(&s), QB_BID, dec("10")), dec("3")) == 0);
    QB_CHECK_EQ_INT(qb_book_depth(qb_sync_book(&s), QB_ASK), 0);

    /* Duplicate of the last event and an old one: dropped, book unchanged. */
    feed(st_p, &p, &s, f, QB_OK);
    depth_frame(f, sizeof f, 99, 103, "[\"10.0\",\"77\"]", "");
    feed(st_p, &p, &s, f, QB_OK);
    QB_CHECK_EQ_INT(cnt.deltas_dropped_stale, 3);
    QB_CHECK_EQ_INT(cnt.deltas_applied, 2);
    QB_CHECK(qb_dec_cmp(qb_book_get(qb_sync_book(&s), QB_BID, dec("10")), dec("3")) == 0);

    /* Deleting a level that is not there is normal. */
    depth_frame(f, sizeof f, 105, 105, "[\"1.0\",\"0\"]", "");
    feed(st_p, &p, &s, f, QB_OK);
    QB_CHECK_EQ_INT(cnt.deltas_applied, 3);

    /* A gap: U=108 after u=105. */
    int wants = own.wants;
    depth_frame(f, sizeof f, 108, 110, "[\"10.0\",\"9\"]", "");
    feed(st_p, &p, &s, f, QB_EGAP);
    QB_CHECK_EQ_INT(cnt.gaps, 1);
    QB_CHECK_EQ_INT(cnt.resyncs, 1);
    QB_CHECK_EQ_INT(s.state, QB_SYNC_WAITING);
    QB_CHECK_EQ_INT(own.last_state, QB_FEED_RESYNCING);
    QB_CHECK_EQ_STR(own.last_reason, "gap: expected U=106 got U=108 (u=110)");
    QB_CHECK_EQ_INT(own.wants, wants + 1);
    QB_CHECK_EQ_INT(own.last_want_delay, 0);
    QB_CHECK_EQ_INT(s.nbuf, 1); /* the gap event starts the new buffer */
    QB_CHECK_EQ_INT(qb_book_depth(qb_sync_book(&s), QB_BID), 0);

    /* A snapshot older than the buffer is fetched again. */
    snapshot(st_p, &p, &s, "{\"lastUpdateId\":106,\"bids\":[],\"asks\":[]}", QB_EAGAIN);
    QB_CHECK_EQ_INT(cnt.snapshots_stale, 1);
    QB_CHECK_EQ_INT(own.last_want_delay, QB_SYNC_REFETCH_MS);
    QB_CHECK_EQ_INT(s.state, QB_SYNC_WAITING);

    /* lastUpdateId == U-1 is usable: the buffered event bridges. */
    depth_frame(f, sizeof f, 111, 111, "[\"9.0\",\"1\"]", "");
    feed(st_p, &p, &s, f, QB_OK);
    QB_CHECK_EQ_INT(s.nbuf, 2);
    int deltas = own.deltas;
    snapshot(st_p, &p, &s,
             "{\"lastUpdateId\":107,\"bids\":[[\"10.0\",\"2\"]],\"asks\":[[\"12\",\"1\"]]}", QB_OK);
    QB_CHECK_EQ_INT(s.state, QB_SYNC_LIVE);
    QB_CHECK_EQ_INT(own.deltas, deltas + 2);
    QB_CHECK_EQ_INT(s.book_id, 111);
    QB_CHECK(qb_dec_cmp(qb_book_get(qb_sync_book(&s), QB_BID, dec("10")), dec("9")) == 0);
    QB_CHECK_EQ_INT(cnt.snapshots_ok, 2);

    /* Crossed after an event: resync, counted. */
    depth_frame(f, sizeof f, 112, 112, "[\"12.5\",\"1\"]", "");
    feed(st_p, &p, &s, f, QB_ECROSSED);
    QB_CHECK_EQ_INT(cnt.crossed, 1);
    QB_CHECK_EQ_INT(s.state, QB_SYNC_WAITING);
    QB_CHECK_EQ_INT(own.last_state, QB_FEED_RESYNCING);
    QB_CHECK(strstr(own.last_reason, "crossed") != NULL);

    /* Snapshot failure: counted, reported, retried later. */
    qb_sync_on_snapshot_error(&s, QB_FEED_RESYNCING, "snapshot HTTP 429", 5000);
    QB_CHECK_EQ_INT(cnt.snapshots_failed, 1);
    QB_CHECK_EQ_INT(own.last_want_delay, 5000);
    QB_CHECK_EQ_STR(own.last_reason, "snapshot HTTP 429");

    /* Connection lost: stopped, events ignored. */
    qb_sync_stop(&s, QB_FEED_DOWN, "upstream unreachable");
    QB_CHECK_EQ_INT(own.last_state, QB_FEED_DOWN);
    int states = own.states;
    qb_sync_stop(&s, QB_FEED_DOWN, "upstream unreachable");
    QB_CHECK_EQ_INT(own.states, states); /* same state and reason: not repeated */
    depth_frame(f, sizeof f, 113, 113, "[\"1.0\",\"1\"]", "");
    feed(st_p, &p, &s, f, QB_OK);
    QB_CHECK_EQ_INT(s.nbuf, 0);

    /* Stale and back. */
    qb_sync_start(&s, QB_FEED_RESYNCING, "reconnected");
    snapshot(st_p, &p, &s, "{\"lastUpdateId\":200,\"bids\":[],\"asks\":[]}", QB_OK);
    qb_sync_mark_stale(&s, "no update for 30000 ms");
    QB_CHECK_EQ_INT(own.last_state, QB_FEED_STALE);
    depth_frame(f, sizeof f, 201, 201, "[\"1.0\",\"1\"]", "");
    feed(st_p, &p, &s, f, QB_OK);
    QB_CHECK_EQ_INT(own.last_state, QB_FEED_LIVE);

    /* The first event after a snapshot that does not bridge is a gap. */
    qb_sync_resync(&s, "test");
    snapshot(st_p, &p, &s, "{\"lastUpdateId\":300,\"bids\":[],\"asks\":[]}", QB_OK);
    depth_frame(f, sizeof f, 302, 303, "[\"1.0\",\"1\"]", "");
    feed(st_p, &p, &s, f, QB_EGAP);
    QB_CHECK_EQ_STR(own.last_reason, "gap: expected U=301 got U=302 (u=303)");

    qb_sync_fini(&s);
    qb_exchange_state_free(&qb_binance_ops, st_p);
    qb_parser_fini(&p);
}

QB_TEST(buffer_overflow_restarts)
{
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 16, 100), QB_OK);
    void *st_p = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_binance_ops, 1 << 16, &st_p), QB_OK);
    qb_sync_counters cnt = {0};
    rec_owner own = {0};
    qb_sync s;
    QB_CHECK_EQ_INT(qb_sync_init(&s, &qb_seq_binance_spot, rec_owner_ops(), &own, &cnt, 100),
                    QB_OK);
    s.max_events = 3;
    qb_sync_start(&s, QB_FEED_SYNCING, "");
    char f[512];
    for (unsigned long long i = 1; i <= 4; i++) {
        depth_frame(f, sizeof f, i, i, "[\"1.0\",\"1\"]", "");
        feed(st_p, &p, &s, f, QB_OK);
    }
    QB_CHECK_EQ_INT(cnt.buffer_overflows, 1);
    QB_CHECK_EQ_INT(s.nbuf, 1);
    QB_CHECK_EQ_INT(own.last_state, QB_FEED_RESYNCING);
    QB_CHECK(strstr(own.last_reason, "overflow") != NULL);
    /* The kept event (U=4) bridges a snapshot at 3. */
    snapshot(st_p, &p, &s, "{\"lastUpdateId\":3,\"bids\":[],\"asks\":[]}", QB_OK);
    QB_CHECK_EQ_INT(s.book_id, 4);
    qb_sync_fini(&s);
    qb_exchange_state_free(&qb_binance_ops, st_p);
    qb_parser_fini(&p);
}

/* ---- full books -> exact deltas ---------------------------------------------------- */

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* A Bithumb-shaped orderbook message from price grids. */
static void full_msg(qb_buf *out, const long *bp, const long *bs, const long *ap, const long *as,
                     size_t n)
{
    qb_buf_reset(out);
    qb_buf_appendf(out, "{\"type\":\"orderbook\",\"code\":\"KRW-BTC\",\"total_ask_size\":1,"
                        "\"total_bid_size\":1,\"orderbook_units\":[");
    for (size_t i = 0; i < n; i++) {
        qb_buf_appendf(out,
                       "%s{\"ask_price\":%ld,\"bid_price\":%ld,\"ask_size\":%ld.%04ld,"
                       "\"bid_size\":%ld.%04ld}",
                       i ? "," : "", ap[i], bp[i], as[i] / 10000, as[i] % 10000, bs[i] / 10000,
                       bs[i] % 10000);
    }
    static unsigned long long ts = 1725927377287ULL;
    qb_buf_appendf(out, "],\"timestamp\":%llu,\"stream_type\":\"REALTIME\"}", ++ts);
}

QB_TEST(full_books_become_exact_deltas)
{
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 16, 100), QB_OK);
    void *st_p = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_bithumb_ops, 1 << 16, &st_p), QB_OK);
    qb_sync_counters cnt = {0};
    sub_owner own = {0};
    own.book = qb_book_new(100);
    qb_book *expect = qb_book_new(100);
    qb_sync s;
    QB_CHECK_EQ_INT(qb_sync_init(&s, &qb_seq_none, sub_owner_ops(), &own, &cnt, 100), QB_OK);
    qb_sync_start(&s, QB_FEED_SYNCING, "");
    qb_buf msg = QB_BUF_INIT;
    qb_event ev;

    /* Hand-made steps first: change, add, remove, unchanged. */
    long bp[30] = {0}, bs[30] = {0}, ap[30] = {0}, as[30] = {0};
    for (int i = 0; i < 3; i++) {
        bp[i] = 1000 - i;
        ap[i] = 1001 + i;
        bs[i] = as[i] = 10000 * (i + 1);
    }
    full_msg(&msg, bp, bs, ap, as, 3);
    QB_CHECK_EQ_INT(qb_bithumb_ops.parse(st_p, &p, (char *)msg.data, msg.len, &ev), QB_OK);
    QB_CHECK_EQ_INT(qb_sync_on_full(&s, &ev), QB_OK);
    QB_CHECK_EQ_INT(own.snapshots, 1); /* the first full book is the snapshot */
    QB_CHECK_EQ_INT(s.state, QB_SYNC_LIVE);
    bs[0] = 5000; /* changed */
    bp[2] = 997;  /* 998 removed, 997 added */
    full_msg(&msg, bp, bs, ap, as, 3);
    QB_CHECK_EQ_INT(qb_bithumb_ops.parse(st_p, &p, (char *)msg.data, msg.len, &ev), QB_OK);
    QB_CHECK_EQ_INT(qb_sync_on_full(&s, &ev), QB_OK);
    QB_CHECK_EQ_INT(own.deltas, 1);
    QB_CHECK_EQ_INT(own.last_nb, 3); /* 1000 changed, 998 -> 0, 997 new */
    QB_CHECK_EQ_INT(own.last_na, 0);
    QB_CHECK(qb_book_equal(own.book, qb_sync_book(&s)));
    qb_book_replace(expect, ev.bids, ev.n_bids, ev.asks, ev.n_asks);
    QB_CHECK(qb_book_equal(own.book, expect));
    /* Same book again: nothing published. */
    uint64_t id = s.book_id;
    ev.last_id++;
    QB_CHECK_EQ_INT(qb_sync_on_full(&s, &ev), QB_OK);
    QB_CHECK_EQ_INT(own.deltas, 1);
    QB_CHECK_EQ_INT(cnt.full_unchanged, 1);
    QB_CHECK_EQ_INT(s.book_id, id + 1); /* the book id follows the messages */
    /* Everything gone on one side. */
    for (int i = 0; i < 3; i++) {
        as[i] = 0;
    }
    full_msg(&msg, bp, bs, ap, as, 3);
    QB_CHECK_EQ_INT(qb_bithumb_ops.parse(st_p, &p, (char *)msg.data, msg.len, &ev), QB_OK);
    QB_CHECK_EQ_INT(qb_sync_on_full(&s, &ev), QB_OK);
    QB_CHECK_EQ_INT(own.last_na, 3);
    QB_CHECK_EQ_INT(qb_book_depth(own.book, QB_ASK), 0);

    /* Random top-N books: each a random walk from the previous one. */
    int unchanged = 0, resyncs_before = (int)cnt.resyncs;
    long mid = 100000;
    size_t n = 15;
    for (int step = 0; step < 5000; step++) {
        int mode = (int)(rnd() % 10);
        if (mode == 0) {
            /* unchanged */
        } else {
            mid += (long)(rnd() % 5) - 2;
            n = 1 + rnd() % 30;
            for (size_t i = 0; i < n; i++) {
                long gap = 1 + (long)(rnd() % 3);
                bp[i] = (i ? bp[i - 1] : mid) - gap;
                ap[i] = (i ? ap[i - 1] : mid) + gap;
                bs[i] = (rnd() % 4 == 0) ? bs[i] : (long)(rnd() % 50000);
                as[i] = (rnd() % 4 == 0) ? as[i] : (long)(rnd() % 50000);
            }
            if (rnd() % 50 == 0) {
                bp[0] = ap[0] + 5; /* crossed: the sync must refuse it */
                bs[0] = as[0] = 10000;
            }
        }
        full_msg(&msg, bp, bs, ap, as, n);
        QB_CHECK_EQ_INT(qb_bithumb_ops.parse(st_p, &p, (char *)msg.data, msg.len, &ev), QB_OK);
        int before = own.deltas;
        qb_sync_on_full(&s, &ev);
        qb_book_replace(expect, ev.bids, ev.n_bids, ev.asks, ev.n_asks);
        if (qb_book_crossed(expect)) {
            QB_CHECK(s.state != QB_SYNC_LIVE);
            continue;
        }
        QB_CHECK_EQ_INT(s.state, QB_SYNC_LIVE);
        if (own.deltas == before) {
            unchanged++;
        }
        /* The subscriber's book, built only from what was published,
         * equals Bithumb's latest full book. */
        if (!qb_book_equal(own.book, expect)) {
            fprintf(stderr, "step %d: subscriber book differs\n", step);
            QB_CHECK(false);
            break;
        }
    }
    QB_CHECK(!own.apply_failed);
    QB_CHECK(unchanged > 100);
    QB_CHECK((int)cnt.resyncs > resyncs_before); /* the crossed books */
    QB_CHECK_EQ_INT(cnt.book_errors, 0);
    printf("full books: %llu, unchanged %llu, snapshots %d, deltas %d, resyncs %llu\n",
           (unsigned long long)cnt.full_books, (unsigned long long)cnt.full_unchanged,
           own.snapshots, own.deltas, (unsigned long long)cnt.resyncs);
    /* Stopped: ignored. */
    qb_sync_stop(&s, QB_FEED_RESYNCING, "test");
    int d = own.deltas, sn = own.snapshots;
    QB_CHECK_EQ_INT(qb_sync_on_full(&s, &ev), QB_OK);
    QB_CHECK(own.deltas == d && own.snapshots == sn);
    qb_buf_fini(&msg);
    qb_sync_fini(&s);
    qb_book_free(own.book);
    qb_book_free(expect);
    qb_exchange_state_free(&qb_bithumb_ops, st_p);
    qb_parser_fini(&p);
}

int main(void)
{
    qb_log_set_level(QB_LOG_ERROR);
    return qb_test_run_all();
}
