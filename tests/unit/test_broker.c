/*
 * test_broker.c: the broker's ingest and fan-out core (broker/broker.h)
 * through its real code path: a qb_broker listening on temporary ipc paths
 * (/tmp/qb-test-<pid>/), frames published with a real NNG PUB socket dialing
 * its ingest, received with real NNG SUB sockets dialing its publish side.
 *
 * Every test first synchronises: it publishes a probe trade until a
 * subscriber receives one, so both connections are up; after that, frames
 * from one publisher are received in order, so "the valid frame after a bad
 * one arrived" proves the bad one was processed (dropped and counted).
 * Batched frames (many maps per frame): applied once per map, validated
 * whole, and the stash-overflow fallback. The environment (a broker, a
 * publisher, subscribers, the probe) is broker_env.h, shared with
 * test_publish.c.
 */
#include "harness.h"

#include "book.h"
#include "broker.h"
#include "broker_env.h"
#include "buf.h"
#include "clock.h"
#include "err.h"
#include "log.h"
#include "msg.h"
#include "topics.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- tests -------------------------------------------------------------- */

QB_TEST(broker_forwards_valid_frames_byte_identical)
{
    t_env e;
    if (!t_start(&e, 0, t_all, t_all_len, 3, NULL, NULL, 0)) {
        return;
    }
    qb_level bids[] = {L("100.50", "1.25"), L("100.40", "2")};
    qb_level asks[] = {L("100.60", "0.5")};
    qb_msg snap = t_msg(QB_MSG_SNAPSHOT, "BTC-USDT", "BTCUSDT", 1);
    snap.bids = bids;
    snap.n_bids = 2;
    snap.asks = asks;
    snap.n_asks = 1;
    snap.last_id = 1000;
    qb_level d_b[] = {L("100.50", "0")};
    qb_msg delta = t_msg(QB_MSG_DELTA, "BTC-USDT", "BTCUSDT", 2);
    delta.bids = d_b;
    delta.n_bids = 1;
    delta.first_id = 1001;
    delta.last_id = 1001;
    qb_msg trade = t_msg(QB_MSG_TRADE, "BTC-USDT", "BTCUSDT", 1);
    trade.trade_id = 77;
    trade.price = D("100.55");
    trade.qty = D("0.001");
    trade.side = QB_SIDE_SELL;
    qb_msg status = t_msg(QB_MSG_STATUS, "BTC-USDT", "BTCUSDT", 1);
    status.state = QB_FEED_LIVE;
    status.reason = QB_STR("synced");

    const qb_msg *all[] = {&snap, &delta, &trade, &status};
    qb_buf bufs[4] = {QB_BUF_INIT, QB_BUF_INIT, QB_BUF_INIT, QB_BUF_INIT};
    qb_broker_stats before = t_stats(&e);
    for (int i = 0; i < 4; i++) {
        t_encode(all[i], &bufs[i]);
        t_send_buf(&e, &bufs[i]);
    }
    for (int i = 0; i < 4; i++) {
        nng_msg *r = t_recv(e.sub);
        QB_CHECK(t_frame_is(r, &bufs[i]));
        if (r) {
            nng_msg_free(r);
        }
    }
    qb_broker_stats after = t_stats(&e);
    QB_CHECK_EQ_INT(after.frames_in - before.frames_in, 4);
    QB_CHECK_EQ_INT(after.frames_out - before.frames_out, 4);
    QB_CHECK_EQ_INT(after.messages_in - before.messages_in, 4);
    size_t bytes = 0;
    for (int i = 0; i < 4; i++) {
        bytes += bufs[i].len;
    }
    QB_CHECK_EQ_INT(after.bytes_in - before.bytes_in, bytes);
    QB_CHECK_EQ_INT(after.bad_msgpack + after.bad_version + after.bad_topic + after.oversized, 0);
    QB_CHECK_EQ_INT(after.ingest_gaps + after.duplicates + after.crossed, 0);

    qb_topic_info ti;
    QB_CHECK_EQ_INT(qb_broker_topic_get(e.b, "status.binance.BTC-USDT", &ti, NULL), QB_OK);
    QB_CHECK(ti.has_status && ti.feed_state == QB_FEED_LIVE);
    QB_CHECK_EQ_INT(qb_broker_topic_get(e.b, "trade.binance.BTC-USDT", &ti, NULL), QB_OK);
    QB_CHECK(!ti.is_book && ti.last_seq == 1);
    QB_CHECK_EQ_INT(qb_broker_topic_get(e.b, "book.binance.NOPE", &ti, NULL), QB_ENOTFOUND);
    for (int i = 0; i < 4; i++) {
        qb_buf_fini(&bufs[i]);
    }
    t_stop(&e);
}

QB_TEST(broker_drops_and_counts_bad_frames_valid_ones_still_arrive)
{
    t_env e;
    if (!t_start(&e, 0, t_all, t_all_len, 3, NULL, NULL, 0)) {
        return;
    }
    qb_buf good[7];
    for (int i = 0; i < 7; i++) {
        good[i] = (qb_buf)QB_BUF_INIT;
        qb_msg m = t_msg(QB_MSG_TRADE, "BTC-USDT", "BTCUSDT", (uint64_t)i + 1);
        m.trade_id = (uint64_t)i + 100;
        m.price = D("100");
        m.qty = D("1");
        t_encode(&m, &good[i]);
    }
    qb_broker_stats before = t_stats(&e);

    /* 1. invalid msgpack after a good topic */
    static const char t1[] = "book.binance.BTC-USDT\0\xc1\xff";
    /* 2. a topic and no message */
    static const char t2[] = "book.binance.BTC-USDT";
    /* 3. unsupported version: a real frame with v patched to 99 */
    qb_buf badver = QB_BUF_INIT;
    qb_msg vm = t_msg(QB_MSG_TRADE, "BTC-USDT", "BTCUSDT", 50);
    vm.price = D("1");
    vm.qty = D("1");
    t_encode(&vm, &badver);
    size_t tl = strlen("trade.binance.BTC-USDT") + 1;
    QB_CHECK(badver.data[tl + 1] == 0xa1 && badver.data[tl + 2] == 'v' && badver.data[tl + 3] == 1);
    badver.data[tl + 3] = 99;
    /* 4. topic that does not match its message (same length, other symbol) */
    qb_buf mism = QB_BUF_INIT;
    t_encode(&vm, &mism);
    memcpy(mism.data, "trade.binance.ETH-USDT", 22);
    /* 5. malformed topics: unknown kind; no NUL at all */
    qb_buf badkind = QB_BUF_INIT;
    t_encode(&vm, &badkind);
    memcpy(badkind.data, "xxxxx", 5);
    static const char t5b[] = "no terminator here";
    /* 6. oversized: one byte over the limit */
    size_t big = (size_t)QB_MSG_MAX_FRAME + 1;
    char *huge = malloc(big);
    QB_CHECK(huge != NULL);
    memset(huge, 0x91, big);
    memcpy(huge, "book.binance.BTC-USDT", 22);
    /* 7. msgpack array header claiming 2^32-1 elements */
    static const char t7[] = "book.binance.BTC-USDT\0\xdd\xff\xff\xff\xff\x01";

    t_send_buf(&e, &good[0]);
    t_send(&e, t1, sizeof t1 - 1);
    t_send(&e, t2, sizeof t2);
    t_send_buf(&e, &good[1]);
    t_send_buf(&e, &badver);
    t_send_buf(&e, &good[2]);
    t_send_buf(&e, &mism);
    t_send_buf(&e, &good[3]);
    t_send_buf(&e, &badkind);
    t_send(&e, t5b, sizeof t5b - 1);
    t_send_buf(&e, &good[4]);
    if (huge) {
        t_send(&e, huge, big);
    }
    t_send_buf(&e, &good[5]);
    t_send(&e, t7, sizeof t7 - 1);
    t_send_buf(&e, &good[6]);

    for (int i = 0; i < 7; i++) {
        nng_msg *r = t_recv(e.sub);
        QB_CHECK(t_frame_is(r, &good[i]));
        if (r) {
            nng_msg_free(r);
        }
    }
    /* Nothing else was forwarded. */
    QB_CHECK(nng_socket_set_ms(e.sub, NNG_OPT_RECVTIMEO, 200) == 0);
    nng_msg *extra = t_recv(e.sub);
    QB_CHECK(extra == NULL);
    if (extra) {
        nng_msg_free(extra);
    }
    qb_broker_stats after = t_stats(&e);
    QB_CHECK_EQ_INT(after.frames_in - before.frames_in, 15);
    QB_CHECK_EQ_INT(after.frames_out - before.frames_out, 7);
    QB_CHECK_EQ_INT(after.bad_msgpack - before.bad_msgpack, 3); /* t1, t2, t7 */
    QB_CHECK_EQ_INT(after.bad_version - before.bad_version, 1);
    QB_CHECK_EQ_INT(after.bad_topic - before.bad_topic, 3); /* mismatch, bad kind, no NUL */
    QB_CHECK_EQ_INT(after.oversized - before.oversized, 1);
    QB_CHECK_EQ_INT(after.ingest_disconnects - before.ingest_disconnects, 0);
    /* The dropped frames changed no state: the trade topic went 1..7. */
    qb_topic_info ti;
    QB_CHECK_EQ_INT(qb_broker_topic_get(e.b, "trade.binance.BTC-USDT", &ti, NULL), QB_OK);
    QB_CHECK_EQ_INT(ti.last_seq, 7);
    QB_CHECK_EQ_INT(ti.messages, 7);
    QB_CHECK_EQ_INT(after.ingest_gaps - before.ingest_gaps, 0);
    QB_CHECK_EQ_INT(qb_broker_topic_get(e.b, "trade.binance.ETH-USDT", &ti, NULL), QB_ENOTFOUND);

    free(huge);
    qb_buf_fini(&badver);
    qb_buf_fini(&mism);
    qb_buf_fini(&badkind);
    for (int i = 0; i < 7; i++) {
        qb_buf_fini(&good[i]);
    }
    t_stop(&e);
}

/* Sends one book message and waits until the subscriber has it. */
static void t_book_send(t_env *e, qb_msg *m, qb_buf *b)
{
    t_encode(m, b);
    t_send_buf(e, b);
    nng_msg *r = t_recv(e->sub);
    QB_CHECK(t_frame_is(r, b));
    if (r) {
        nng_msg_free(r);
    }
}

static void t_check_book(t_env *e, const char *topic, const qb_book *want, bool valid, uint64_t seq)
{
    qb_topic_info ti;
    qb_book *got = qb_book_new(0);
    QB_CHECK_EQ_INT(qb_broker_topic_get(e->b, topic, &ti, got), QB_OK);
    QB_CHECK(ti.is_book);
    QB_CHECK_EQ_INT(ti.book_valid, valid);
    QB_CHECK_EQ_INT(ti.last_seq, seq);
    if (want != NULL) {
        QB_CHECK(qb_book_equal(got, want));
    }
    qb_book_free(got);
}

QB_TEST(broker_book_follows_snapshot_and_deltas_gaps_duplicates_crossed)
{
    t_env e;
    static const char *const pfx[] = {"book.binance.BTC-USDT"};
    static const size_t pl[] = {22}; /* with the NUL */
    if (!t_start(&e, 0, pfx, pl, 1, NULL, NULL, 0)) {
        return;
    }
    const char *topic = "book.binance.BTC-USDT";
    qb_buf b = QB_BUF_INIT;
    qb_book *want = qb_book_new(0);
    qb_broker_stats s0 = t_stats(&e);

    /* snapshot seq 10 */
    qb_level sb[] = {L("100.0", "1"), L("99.5", "2"), L("99.0", "3")};
    qb_level sa[] = {L("100.5", "1"), L("101.0", "4")};
    qb_msg m = t_msg(QB_MSG_SNAPSHOT, "BTC-USDT", "BTCUSDT", 10);
    m.bids = sb;
    m.n_bids = 3;
    m.asks = sa;
    m.n_asks = 2;
    t_book_send(&e, &m, &b);
    QB_CHECK_EQ_INT(qb_book_replace(want, sb, 3, sa, 2), QB_OK);
    t_check_book(&e, topic, want, true, 10);

    /* deltas 11, 12: update, delete, insert */
    qb_level d1b[] = {L("100.0", "1.5"), L("99.5", "0")};
    qb_level d1a[] = {L("100.25", "0.7")};
    m = t_msg(QB_MSG_DELTA, "BTC-USDT", "BTCUSDT", 11);
    m.bids = d1b;
    m.n_bids = 2;
    m.asks = d1a;
    m.n_asks = 1;
    t_book_send(&e, &m, &b);
    QB_CHECK_EQ_INT(qb_book_apply(want, d1b, 2, d1a, 1), QB_OK);
    qb_level d2b[] = {L("99.75", "0.1")};
    m = t_msg(QB_MSG_DELTA, "BTC-USDT", "BTCUSDT", 12);
    m.bids = d2b;
    m.n_bids = 1;
    t_book_send(&e, &m, &b);
    QB_CHECK_EQ_INT(qb_book_apply(want, d2b, 1, NULL, 0), QB_OK);
    t_check_book(&e, topic, want, true, 12);
    QB_CHECK(qb_book_depth(want, QB_BID) == 3 && qb_book_depth(want, QB_ASK) == 3);

    /* duplicate: seq 11 again, with content that would change the book */
    qb_level dup[] = {L("100.0", "9")};
    m = t_msg(QB_MSG_DELTA, "BTC-USDT", "BTCUSDT", 11);
    m.bids = dup;
    m.n_bids = 1;
    t_book_send(&e, &m, &b); /* still forwarded */
    t_check_book(&e, topic, want, true, 12);
    qb_broker_stats s1 = t_stats(&e);
    QB_CHECK_EQ_INT(s1.duplicates - s0.duplicates, 1);
    QB_CHECK_EQ_INT(s1.ingest_gaps - s0.ingest_gaps, 0);

    /* gap: 13 is lost, 14 arrives: counted, book invalid, forwarded */
    qb_level g[] = {L("98.0", "1")};
    m = t_msg(QB_MSG_DELTA, "BTC-USDT", "BTCUSDT", 14);
    m.bids = g;
    m.n_bids = 1;
    t_book_send(&e, &m, &b);
    t_check_book(&e, topic, NULL, false, 14);
    m = t_msg(QB_MSG_DELTA, "BTC-USDT", "BTCUSDT", 15);
    m.bids = g;
    m.n_bids = 1;
    t_book_send(&e, &m, &b);
    t_check_book(&e, topic, NULL, false, 15); /* in sequence again, still invalid */
    qb_broker_stats s2 = t_stats(&e);
    QB_CHECK_EQ_INT(s2.ingest_gaps - s0.ingest_gaps, 1);
    QB_CHECK_EQ_INT(s2.books, 1);
    QB_CHECK_EQ_INT(s2.books_valid, 0);

    /* refresh snapshot (repeats seq 15): valid again, then deltas apply */
    qb_level rb[] = {L("97.0", "1"), L("96.0", "2")};
    qb_level ra[] = {L("97.5", "3")};
    m = t_msg(QB_MSG_SNAPSHOT, "BTC-USDT", "BTCUSDT", 15);
    m.refresh = true;
    m.bids = rb;
    m.n_bids = 2;
    m.asks = ra;
    m.n_asks = 1;
    t_book_send(&e, &m, &b);
    QB_CHECK_EQ_INT(qb_book_replace(want, rb, 2, ra, 1), QB_OK);
    t_check_book(&e, topic, want, true, 15);
    qb_level d3a[] = {L("97.5", "0"), L("98.0", "1")};
    m = t_msg(QB_MSG_DELTA, "BTC-USDT", "BTCUSDT", 16);
    m.asks = d3a;
    m.n_asks = 2;
    t_book_send(&e, &m, &b);
    QB_CHECK_EQ_INT(qb_book_apply(want, NULL, 0, d3a, 2), QB_OK);
    t_check_book(&e, topic, want, true, 16);
    qb_broker_stats s3 = t_stats(&e);
    QB_CHECK_EQ_INT(s3.books_valid, 1);

    /* crossed: a bid at or above the best ask */
    qb_level cx[] = {L("98.0", "1")};
    m = t_msg(QB_MSG_DELTA, "BTC-USDT", "BTCUSDT", 17);
    m.bids = cx;
    m.n_bids = 1;
    t_book_send(&e, &m, &b);
    t_check_book(&e, topic, NULL, false, 17);
    qb_broker_stats s4 = t_stats(&e);
    QB_CHECK_EQ_INT(s4.crossed - s0.crossed, 1);
    QB_CHECK_EQ_INT(s4.books_valid, 0);
    QB_CHECK_EQ_INT(s4.ingest_gaps - s0.ingest_gaps, 1);
    QB_CHECK_EQ_INT(s4.frames_out - s0.frames_out, 9); /* every valid frame forwarded */

    qb_book_free(want);
    qb_buf_fini(&b);
    t_stop(&e);
}

QB_TEST(broker_first_delta_before_any_snapshot_leaves_book_invalid)
{
    t_env e;
    if (!t_start(&e, 0, t_all, t_all_len, 3, NULL, NULL, 0)) {
        return;
    }
    qb_buf b = QB_BUF_INIT;
    qb_level d[] = {L("1", "1")};
    qb_msg m = t_msg(QB_MSG_DELTA, "ETH-USDT", "ETHUSDT", 500);
    m.bids = d;
    m.n_bids = 1;
    t_book_send(&e, &m, &b);
    t_check_book(&e, "book.binance.ETH-USDT", NULL, false, 500);
    qb_broker_stats s = t_stats(&e);
    QB_CHECK_EQ_INT(s.ingest_gaps + s.duplicates, 0);
    qb_buf_fini(&b);
    t_stop(&e);
}

QB_TEST(broker_exact_topic_subscription_excludes_longer_symbol)
{
    t_env e;
    /* sub: the exact topic with its NUL; sub2: the exchange prefix. */
    static const char *const exact[] = {"book.binance.BTC-USDT"};
    static const size_t exact_len[] = {22};
    static const char *const pfx[] = {"book.binance."};
    static const size_t pfx_len[] = {13};
    if (!t_start(&e, 0, exact, exact_len, 1, pfx, pfx_len, 1)) {
        return;
    }
    qb_buf x = QB_BUF_INIT, y = QB_BUF_INIT;
    qb_level lv[] = {L("1", "1")};
    qb_msg m = t_msg(QB_MSG_SNAPSHOT, "BTC-USDTX", "BTCUSDTX", 1);
    m.bids = lv;
    m.n_bids = 1;
    t_encode(&m, &x);
    m = t_msg(QB_MSG_SNAPSHOT, "BTC-USDT", "BTCUSDT", 1);
    m.bids = lv;
    m.n_bids = 1;
    t_encode(&m, &y);
    t_send_buf(&e, &x);
    t_send_buf(&e, &y);
    /* exact: only BTC-USDT */
    nng_msg *r = t_recv(e.sub);
    QB_CHECK(t_frame_is(r, &y));
    if (r) {
        nng_msg_free(r);
    }
    /* prefix: both, in order */
    r = t_recv(e.sub2);
    QB_CHECK(t_frame_is(r, &x));
    if (r) {
        nng_msg_free(r);
    }
    r = t_recv(e.sub2);
    QB_CHECK(t_frame_is(r, &y));
    if (r) {
        nng_msg_free(r);
    }
    QB_CHECK(nng_socket_set_ms(e.sub, NNG_OPT_RECVTIMEO, 200) == 0);
    r = t_recv(e.sub);
    QB_CHECK(r == NULL);
    if (r) {
        nng_msg_free(r);
    }
    qb_buf_fini(&x);
    qb_buf_fini(&y);
    t_stop(&e);
}

QB_TEST(broker_multi_map_frames_are_validated_whole)
{
    t_env e;
    if (!t_start(&e, 0, t_all, t_all_len, 3, NULL, NULL, 0)) {
        return;
    }
    qb_buf ok = QB_BUF_INIT, bad = QB_BUF_INIT, after = QB_BUF_INIT;
    qb_msg a = t_msg(QB_MSG_TRADE, "SOL-USDT", "SOLUSDT", 1);
    a.price = D("10");
    a.qty = D("1");
    qb_msg b2 = a;
    b2.seq = 2;
    QB_CHECK_EQ_INT(qb_msg_encode(&a, &ok), QB_OK);
    QB_CHECK_EQ_INT(qb_msg_encode_map(&b2, &ok), QB_OK);
    /* seq 3 valid, then a map of another symbol: the whole frame is bad */
    qb_msg c = a;
    c.seq = 3;
    qb_msg wrong = t_msg(QB_MSG_TRADE, "ETH-USDT", "ETHUSDT", 4);
    wrong.price = D("1");
    wrong.qty = D("1");
    QB_CHECK_EQ_INT(qb_msg_encode(&c, &bad), QB_OK);
    QB_CHECK_EQ_INT(qb_msg_encode_map(&wrong, &bad), QB_OK);
    qb_msg d = a;
    d.seq = 3;
    QB_CHECK_EQ_INT(qb_msg_encode(&d, &after), QB_OK);

    qb_broker_stats s0 = t_stats(&e);
    t_send_buf(&e, &ok);
    t_send_buf(&e, &bad);
    t_send_buf(&e, &after);
    nng_msg *r = t_recv(e.sub);
    QB_CHECK(t_frame_is(r, &ok));
    if (r) {
        nng_msg_free(r);
    }
    r = t_recv(e.sub);
    QB_CHECK(t_frame_is(r, &after));
    if (r) {
        nng_msg_free(r);
    }
    qb_broker_stats s1 = t_stats(&e);
    QB_CHECK_EQ_INT(s1.messages_in - s0.messages_in, 3);
    QB_CHECK_EQ_INT(s1.frames_out - s0.frames_out, 2);
    QB_CHECK_EQ_INT(s1.bad_msgpack + s1.bad_topic - s0.bad_msgpack - s0.bad_topic, 1);
    /* seq 3 came from the later frame: the bad frame applied nothing */
    QB_CHECK_EQ_INT(s1.ingest_gaps + s1.duplicates - s0.ingest_gaps - s0.duplicates, 0);
    qb_topic_info ti;
    QB_CHECK_EQ_INT(qb_broker_topic_get(e.b, "trade.binance.SOL-USDT", &ti, NULL), QB_OK);
    QB_CHECK_EQ_INT(ti.last_seq, 3);
    QB_CHECK_EQ_INT(ti.messages, 3);
    qb_buf_fini(&ok);
    qb_buf_fini(&bad);
    qb_buf_fini(&after);
    t_stop(&e);
}

QB_TEST(broker_topics_past_the_limit_are_forwarded_without_state)
{
    t_env e;
    /* 2 topics: the probe's trade topic and one more. */
    if (!t_start(&e, 2, t_all, t_all_len, 3, NULL, NULL, 0)) {
        return;
    }
    qb_buf b = QB_BUF_INIT;
    const char *syms[] = {"AAA-USDT", "BBB-USDT", "CCC-USDT"};
    const char *nat[] = {"AAAUSDT", "BBBUSDT", "CCCUSDT"};
    qb_broker_stats s0 = t_stats(&e);
    for (int i = 0; i < 3; i++) {
        qb_msg m = t_msg(QB_MSG_TRADE, syms[i], nat[i], 1);
        m.price = D("1");
        m.qty = D("1");
        t_encode(&m, &b);
        t_send_buf(&e, &b);
        nng_msg *r = t_recv(e.sub);
        QB_CHECK(t_frame_is(r, &b));
        if (r) {
            nng_msg_free(r);
        }
    }
    qb_broker_stats s1 = t_stats(&e);
    QB_CHECK_EQ_INT(s1.topics, 2);
    QB_CHECK_EQ_INT(s1.untracked - s0.untracked, 2);
    QB_CHECK_EQ_INT(s1.frames_out - s0.frames_out, 3);
    qb_topic_info ti;
    QB_CHECK_EQ_INT(qb_broker_topic_get(e.b, "trade.binance.AAA-USDT", &ti, NULL), QB_OK);
    QB_CHECK_EQ_INT(qb_broker_topic_get(e.b, "trade.binance.BBB-USDT", &ti, NULL), QB_ENOTFOUND);
    qb_buf_fini(&b);
    t_stop(&e);
}

QB_TEST(broker_many_frames_no_loss_with_sized_buffers)
{
    /* 5000 frames published back to back reach the subscriber in order,
     * none lost: NNG's default queues (16 on pub, 128 on sub) would drop. */
    t_env e;
    if (!t_start(&e, 0, t_all, t_all_len, 3, NULL, NULL, 0)) {
        return;
    }
    enum { N = 5000 };
    qb_buf b = QB_BUF_INIT;
    for (int i = 1; i <= N; i++) {
        qb_level lv[] = {L("100", "1")};
        qb_msg m =
            t_msg(i == 1 ? QB_MSG_SNAPSHOT : QB_MSG_DELTA, "BTC-USDT", "BTCUSDT", (uint64_t)i);
        lv[0].size.mant = i;
        m.bids = lv;
        m.n_bids = 1;
        t_encode(&m, &b);
        t_send_buf(&e, &b);
    }
    int got = 0;
    bool in_order = true;
    qb_decoder *dec = qb_decoder_new();
    nng_msg *r;
    while (got < N && (r = t_recv(e.sub)) != NULL) {
        qb_str topic;
        qb_msg m;
        if (qb_decoder_begin(dec, nng_msg_body(r), nng_msg_len(r), &topic) != QB_OK ||
            qb_decoder_next(dec, &m) != QB_OK || m.seq != (uint64_t)got + 1) {
            in_order = false;
        }
        got++;
        nng_msg_free(r);
    }
    QB_CHECK_EQ_INT(got, N);
    QB_CHECK(in_order);
    qb_broker_stats s = t_stats(&e);
    QB_CHECK_EQ_INT(s.ingest_gaps, 0);
    QB_CHECK_EQ_INT(s.books_valid, 1);
    qb_decoder_free(dec);
    qb_buf_fini(&b);
    t_stop(&e);
}

QB_TEST(broker_topics_table_rules_without_sockets)
{
    qb_topics *t = qb_topics_new(0);
    QB_CHECK(t != NULL);
    qb_str tt = QB_STR("trade.binance.BTC-USDT");
    qb_msg m = t_msg(QB_MSG_TRADE, "BTC-USDT", "BTCUSDT", 5);
    QB_CHECK_EQ_INT(qb_topics_apply(t, tt, &m, 1), QB_TOPICS_NEW);
    m.seq = 6;
    QB_CHECK_EQ_INT(qb_topics_apply(t, tt, &m, 2), 0);
    m.seq = 6;
    QB_CHECK_EQ_INT(qb_topics_apply(t, tt, &m, 3), QB_TOPICS_DUPLICATE);
    m.seq = 9;
    QB_CHECK_EQ_INT(qb_topics_apply(t, tt, &m, 4), QB_TOPICS_GAP);
    m.seq = 10;
    QB_CHECK_EQ_INT(qb_topics_apply(t, tt, &m, 5), 0);
    /* many topics: the table grows and finds every one again */
    char name[64];
    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof name, "trade.binance.S%d-USDT", i);
        QB_CHECK_EQ_INT(qb_topics_apply(t, (qb_str){name, strlen(name)}, &m, 6), QB_TOPICS_NEW);
    }
    for (int i = 0; i < 3000; i++) {
        qb_topic_info ti;
        snprintf(name, sizeof name, "trade.binance.S%d-USDT", i);
        QB_CHECK_EQ_INT(qb_topics_info(t, (qb_str){name, strlen(name)}, &ti), QB_OK);
    }
    QB_CHECK_EQ_INT(qb_topics_count(t), 3001);
    qb_topics_free(t);
    qb_topics_free(NULL);
}

/* A resync is counted when the feed's state changes to resyncing, not for
 * every "resyncing for N s" progress status the adapter repeats meanwhile. */
QB_TEST(broker_topics_count_resyncs_once_per_transition)
{
    qb_topics *t = qb_topics_new(0);
    QB_CHECK(t != NULL);
    qb_str tt = QB_STR("status.binance.BTC-USDT");
    qb_msg m = t_msg(QB_MSG_STATUS, "BTC-USDT", "BTCUSDT", 1);
    const qb_feed_state states[] = {QB_FEED_SYNCING,   QB_FEED_LIVE,      QB_FEED_RESYNCING,
                                    QB_FEED_RESYNCING, QB_FEED_RESYNCING, QB_FEED_LIVE,
                                    QB_FEED_RESYNCING, QB_FEED_LIVE};
    unsigned begun = 0;
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
        m.seq = i + 1;
        m.state = states[i];
        begun += (qb_topics_apply(t, tt, &m, i + 1) & QB_TOPICS_RESYNC) != 0;
    }
    qb_topic_info ti;
    QB_CHECK_EQ_INT(qb_topics_info(t, tt, &ti), QB_OK);
    QB_CHECK_EQ_INT(ti.resyncs, 2);
    QB_CHECK_EQ_INT(begun, 2);
    qb_topics_free(t);
}

QB_TEST(broker_stats_file_is_json_with_every_counter)
{
    char path[256];
    mkdir(t_dir, 0755);
    snprintf(path, sizeof path, "%s/stats.json", t_dir);
    qb_broker_stats s;
    memset(&s, 0, sizeof s);
    s.frames_in = 42;
    s.books_valid = 3;
    QB_CHECK_EQ_INT(qb_broker_stats_write(&s, "\"adapter_starts\": 2", path), QB_OK);
    FILE *f = fopen(path, "r");
    QB_CHECK(f != NULL);
    char text[4096] = {0};
    if (f) {
        size_t n = fread(text, 1, sizeof text - 1, f);
        text[n] = '\0';
        fclose(f);
    }
    QB_CHECK(strstr(text, "\"frames_in\": 42") != NULL);
    QB_CHECK(strstr(text, "\"books_valid\": 3") != NULL);
    QB_CHECK(strstr(text, "\"adapter_starts\": 2}") != NULL);
    static const char *const keys[] = {"frames_out", "bytes_in",  "bad_msgpack", "bad_version",
                                       "oversized",  "bad_topic", "ingest_gaps", "duplicates",
                                       "crossed",    "topics",    "books"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char k[64];
        snprintf(k, sizeof k, "\"%s\": ", keys[i]);
        QB_CHECK(strstr(text, k) != NULL);
    }
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    QB_CHECK(access(tmp, F_OK) != 0); /* renamed into place */
    remove(path);
}

QB_TEST(broker_new_fails_cleanly_on_a_bad_address)
{
    const char *ing[] = {"bogus://nowhere"};
    const char *pub[] = {t_pub};
    qb_broker_config cfg = {.ingest_urls = ing, .n_ingest = 1, .pub_urls = pub, .n_pub = 1};
    qb_broker *b = NULL;
    QB_CHECK(qb_broker_new(&cfg, &b) != QB_OK);
    QB_CHECK(b == NULL);
    cfg.n_ingest = 0;
    QB_CHECK_EQ_INT(qb_broker_new(&cfg, &b), QB_EINVAL);
}

/* ---- batched frames ---------------------------------------------------- */

/* One frame of 200 deltas (more than any single map): applied in one pass,
 * forwarded once; then a frame of 10 valid deltas + one bad map: nothing
 * of it applied or forwarded. */
QB_TEST(broker_batched_book_frame_applies_every_map_once)
{
    t_env e;
    static const char *const pfx[] = {"book.binance.BTC-USDT"};
    static const size_t pl[] = {22};
    if (!t_start(&e, 0, pfx, pl, 1, NULL, NULL, 0)) {
        return;
    }
    const char *topic = "book.binance.BTC-USDT";
    qb_buf b = QB_BUF_INIT;
    qb_book *want = qb_book_new(0);
    qb_level sb[] = {L("100.0", "1"), L("99.99", "2")};
    qb_level sa[] = {L("100.01", "1")};
    qb_msg m = t_msg(QB_MSG_SNAPSHOT, "BTC-USDT", "BTCUSDT", 1);
    m.bids = sb;
    m.n_bids = 2;
    m.asks = sa;
    m.n_asks = 1;
    t_book_send(&e, &m, &b);
    QB_CHECK_EQ_INT(qb_book_replace(want, sb, 2, sa, 1), QB_OK);

    qb_broker_stats s0 = t_stats(&e);
    qb_buf_reset(&b);
    for (uint64_t k = 0; k < 200; k++) {
        qb_level db[3], da[2];
        t_delta_levels(k, db, da);
        m = t_msg(QB_MSG_DELTA, "BTC-USDT", "BTCUSDT", 2 + k);
        m.bids = db;
        m.n_bids = 3;
        m.asks = da;
        m.n_asks = 2;
        QB_CHECK_EQ_INT(k == 0 ? qb_msg_encode(&m, &b) : qb_msg_encode_map(&m, &b), QB_OK);
        QB_CHECK_EQ_INT(qb_book_apply(want, db, 3, da, 2), QB_OK);
    }
    t_send_buf(&e, &b);
    nng_msg *r = t_recv(e.sub);
    QB_CHECK(t_frame_is(r, &b)); /* forwarded as is */
    if (r) {
        nng_msg_free(r);
    }
    qb_broker_stats s1 = t_stats(&e);
    QB_CHECK_EQ_INT(s1.messages_in - s0.messages_in, 200);
    QB_CHECK_EQ_INT(s1.frames_out - s0.frames_out, 1);
    QB_CHECK_EQ_INT(s1.ingest_gaps - s0.ingest_gaps, 0);
    t_check_book(&e, topic, want, true, 201);

    /* 10 more valid deltas, then a map with a negative price (hand-patched
     * after encoding: the encoder refuses it) */
    qb_buf bad = QB_BUF_INIT, after = QB_BUF_INIT;
    for (uint64_t k = 0; k < 11; k++) {
        qb_level db[3], da[2];
        t_delta_levels(500 + k, db, da);
        m = t_msg(QB_MSG_DELTA, "BTC-USDT", "BTCUSDT", 202 + k);
        m.bids = db;
        m.n_bids = 3;
        m.asks = da;
        m.n_asks = 2;
        if (k == 10) {
            m.first_id = 0x7b; /* marker: fid is the fixint 0x7b */
        }
        QB_CHECK_EQ_INT(k == 0 ? qb_msg_encode(&m, &bad) : qb_msg_encode_map(&m, &bad), QB_OK);
    }
    /* the last map's "fid" 0x7b becomes the string-typed 0xa0 (empty str) */
    uint8_t *fid = memmem(bad.data + bad.len / 2, bad.len / 2,
                          "\xa3"
                          "fid"
                          "\x7b",
                          5);
    QB_CHECK(fid != NULL);
    if (fid) {
        fid[4] = 0xa0;
    }
    m = t_msg(QB_MSG_DELTA, "BTC-USDT", "BTCUSDT", 202);
    qb_level one[] = {L("99.5", "1")};
    m.bids = one;
    m.n_bids = 1;
    QB_CHECK_EQ_INT(qb_msg_encode(&m, &after), QB_OK);
    QB_CHECK_EQ_INT(qb_book_apply(want, one, 1, NULL, 0), QB_OK);
    t_send_buf(&e, &bad);
    t_send_buf(&e, &after);
    r = t_recv(e.sub);
    QB_CHECK(t_frame_is(r, &after)); /* the bad frame was not forwarded */
    if (r) {
        nng_msg_free(r);
    }
    qb_broker_stats s2 = t_stats(&e);
    QB_CHECK_EQ_INT(s2.messages_in - s1.messages_in, 1);
    QB_CHECK_EQ_INT(s2.bad_msgpack + s2.bad_topic - s1.bad_msgpack - s1.bad_topic, 1);
    t_check_book(&e, topic, want, true, 202);
    qb_book_free(want);
    qb_buf_fini(&b);
    qb_buf_fini(&bad);
    qb_buf_fini(&after);
    t_stop(&e);
}

/* More maps than the stash holds (BROKER_STASH_MAPS 4096): the broker falls
 * back to a second decode and still applies every map once. */
QB_TEST(broker_frame_beyond_the_stash_bound_is_still_applied)
{
    t_env e;
    if (!t_start(&e, 0, t_all, t_all_len, 3, NULL, NULL, 0)) {
        return;
    }
    qb_buf b = QB_BUF_INIT;
    for (uint64_t k = 0; k < 5000; k++) {
        qb_msg m = t_msg(QB_MSG_TRADE, "ADA-USDT", "ADAUSDT", 1 + k);
        m.trade_id = k;
        m.price = D("0.5");
        m.qty = D("3");
        m.side = QB_SIDE_SELL;
        QB_CHECK_EQ_INT(k == 0 ? qb_msg_encode(&m, &b) : qb_msg_encode_map(&m, &b), QB_OK);
    }
    qb_broker_stats s0 = t_stats(&e);
    t_send_buf(&e, &b);
    nng_msg *r = t_recv(e.sub);
    QB_CHECK(t_frame_is(r, &b));
    if (r) {
        nng_msg_free(r);
    }
    qb_broker_stats s1 = t_stats(&e);
    QB_CHECK_EQ_INT(s1.messages_in - s0.messages_in, 5000);
    qb_topic_info ti;
    QB_CHECK_EQ_INT(qb_broker_topic_get(e.b, "trade.binance.ADA-USDT", &ti, NULL), QB_OK);
    QB_CHECK_EQ_INT(ti.last_seq, 5000);
    QB_CHECK_EQ_INT(ti.messages, 5000);
    qb_buf_fini(&b);
    t_stop(&e);
}

/* ---- topic ownership: a second publisher ---------------------------------- */

/* Sends b from socket s (a second publisher). */
static void t_send_from(nng_socket s, const qb_buf *b)
{
    nng_msg *m;
    if (nng_msg_alloc(&m, b->len) != 0) {
        abort();
    }
    memcpy(nng_msg_body(m), b->data, b->len);
    if (nng_sendmsg(s, m, 0) != 0) {
        nng_msg_free(m);
        QB_CHECK(!"nng_sendmsg failed");
    }
}

/* Receives on s until a frame of topic arrives (true; its body copied to
 * out when out is non-NULL) or nothing more comes within 2 s. */
static bool t_recv_topic(nng_socket s, const char *topic, qb_buf *out)
{
    size_t tl = strlen(topic) + 1;
    nng_msg *r;
    while ((r = t_recv(s)) != NULL) {
        bool hit = nng_msg_len(r) >= tl && memcmp(nng_msg_body(r), topic, tl) == 0;
        if (hit && out != NULL) {
            qb_buf_reset(out);
            QB_CHECK_EQ_INT(qb_buf_append(out, nng_msg_body(r), nng_msg_len(r)), QB_OK);
        }
        nng_msg_free(r);
        if (hit) {
            return true;
        }
    }
    return false;
}

/* Receives on s until a frame of each of topics a and b arrived (their order
 * depends on two publishers); b's body is copied to out. */
static bool t_recv_both(nng_socket s, const char *a, const char *b, qb_buf *out)
{
    size_t al = strlen(a) + 1, bl = strlen(b) + 1;
    bool seen_a = false, seen_b = false;
    nng_msg *r;
    while (!(seen_a && seen_b) && (r = t_recv(s)) != NULL) {
        const uint8_t *p = nng_msg_body(r);
        size_t n = nng_msg_len(r);
        if (n >= al && memcmp(p, a, al) == 0) {
            seen_a = true;
        } else if (n >= bl && memcmp(p, b, bl) == 0) {
            seen_b = true;
            qb_buf_reset(out);
            QB_CHECK_EQ_INT(qb_buf_append(out, p, n), QB_OK);
        }
        nng_msg_free(r);
    }
    return seen_a && seen_b;
}

QB_TEST(broker_topic_belongs_to_its_first_publisher_until_it_disconnects)
{
    t_env e;
    if (!t_start(&e, 0, t_all, t_all_len, 3, NULL, NULL, 0)) {
        return;
    }
    qb_level bids[] = {L("100.50", "1")};
    qb_level asks[] = {L("100.60", "2")};
    qb_msg snap = t_msg(QB_MSG_SNAPSHOT, "BTC-USDT", "BTCUSDT", 1);
    snap.bids = bids;
    snap.n_bids = 1;
    snap.asks = asks;
    snap.n_asks = 1;
    qb_buf b = QB_BUF_INIT, got = QB_BUF_INIT;
    t_book_send(&e, &snap, &b); /* publisher A owns book.binance.BTC-USDT */
    qb_book *want_a = qb_book_new(0);
    qb_book_replace(want_a, bids, 1, asks, 1);

    /* Publisher B: the spoofed book of the field test (bid 1, ask 2). */
    nng_socket rogue;
    QB_CHECK(nng_pub0_open(&rogue) == 0);
    QB_CHECK(nng_dial(rogue, t_ingest, NULL, 0) == 0);
    qb_level rb[] = {L("1", "1")};
    qb_level ra[] = {L("2", "1")};
    qb_msg spoof = snap;
    spoof.bids = rb;
    spoof.asks = ra;
    qb_broker_stats s0 = t_stats(&e);
    t_encode(&spoof, &b);
    t_send_from(rogue, &b);
    /* then a topic nobody owns yet: B owns it, so it arrives, after the
     * spoofed frame was handled (one pipe keeps its order) */
    qb_msg tr = t_msg(QB_MSG_TRADE, "ETH-USDT", "ETHUSDT", 1);
    tr.trade_id = 9;
    tr.price = D("10");
    tr.qty = D("1");
    tr.side = QB_SIDE_BUY;
    t_encode(&tr, &b);
    t_send_from(rogue, &b);
    /* The refusal is on the bus, naming the topic and both publishers. */
    QB_CHECK(t_recv_both(e.sub, "trade.binance.ETH-USDT", "status.quotebus.broker", &got));
    qb_broker_stats s1 = t_stats(&e);
    QB_CHECK_EQ_INT(s1.rogue_publisher - s0.rogue_publisher, 1);
    t_check_book(&e, "book.binance.BTC-USDT", want_a, true, 1);
    qb_topic_info ti;
    QB_CHECK_EQ_INT(qb_broker_topic_get(e.b, "book.binance.BTC-USDT", &ti, NULL), QB_OK);
    QB_CHECK_EQ_INT(ti.refused, 1);
    QB_CHECK(ti.owner != 0);
    QB_CHECK(got.len > 0 && memmem(got.data, got.len, "book.binance.BTC-USDT", 21) != NULL);
    char me[32];
    snprintf(me, sizeof me, "owned by pid %d", (int)getpid());
    if (memmem(got.data, got.len, me, strlen(me)) == NULL) {
        for (size_t i = 0; i < got.len; i++) {
            fputc(got.data[i] >= 0x20 && got.data[i] < 0x7f ? got.data[i] : '.', stderr);
        }
        fputc('\n', stderr);
        QB_CHECK(!"the owner is not named");
    }

    /* A delta of A still applies; a second spoof within 10 s is counted
     * but said no more. */
    qb_level db[] = {L("100.50", "3")};
    qb_msg delta = t_msg(QB_MSG_DELTA, "BTC-USDT", "BTCUSDT", 2);
    delta.bids = db;
    delta.n_bids = 1;
    t_encode(&spoof, &b);
    t_send_from(rogue, &b);
    t_book_send(&e, &delta, &b);
    qb_book_apply(want_a, db, 1, NULL, 0);
    t_encode(&tr, &b);
    t_send_from(rogue, &b); /* a duplicate trade of B's own topic: a marker */
    QB_CHECK(t_recv_topic(e.sub, "trade.binance.ETH-USDT", NULL));
    QB_CHECK_EQ_INT(t_stats(&e).rogue_publisher - s0.rogue_publisher, 2);
    t_check_book(&e, "book.binance.BTC-USDT", want_a, true, 2);

    /* The broker's own topics: never from a publisher; the broker's own
     * frames pass on any topic and own nothing. */
    qb_msg bs = t_msg(QB_MSG_STATUS, "broker", "broker", 99);
    bs.exchange = QB_STR("quotebus");
    bs.state = QB_FEED_DOWN;
    bs.reason = QB_STR("spoofed");
    t_encode(&bs, &b);
    t_send_from(rogue, &b);
    t_send_from(rogue, &b); /* B's frames are in order: wait on a marker */
    t_encode(&tr, &b);
    t_send_from(rogue, &b);
    QB_CHECK(t_recv_topic(e.sub, "trade.binance.ETH-USDT", NULL));
    QB_CHECK_EQ_INT(t_stats(&e).rogue_publisher - s0.rogue_publisher, 4);
    QB_CHECK_EQ_INT(
        qb_broker_publish_status(e.b, "binance", "ETH-USDT", NULL, QB_FEED_DOWN, "from the broker"),
        QB_OK);
    QB_CHECK(t_recv_topic(e.sub, "status.binance.ETH-USDT", NULL));
    QB_CHECK_EQ_INT(t_stats(&e).rogue_publisher - s0.rogue_publisher, 4);

    /* A disconnects (an adapter restart): B may take the topic over once
     * NNG has destroyed A's pipe (its reaper thread, soon after the close;
     * the listeners' probes come and go meanwhile, so B simply retries). */
    nng_close(e.pub);
    e.pub = rogue;
    qb_book *want_b = qb_book_new(0);
    qb_book_replace(want_b, rb, 1, ra, 1);
    t_encode(&spoof, &b);
    QB_CHECK(nng_socket_set_ms(e.sub, NNG_OPT_RECVTIMEO, 100) == 0);
    bool taken = false;
    for (int i = 0; i < 40 && !taken; i++) {
        t_send_from(rogue, &b);
        taken = t_recv_topic(e.sub, "book.binance.BTC-USDT", NULL);
    }
    QB_CHECK(taken);
    t_check_book(&e, "book.binance.BTC-USDT", want_b, true, 1);
    QB_CHECK(t_stats(&e).rogue_publisher - s0.rogue_publisher >= 4);
    qb_book_free(want_a);
    qb_book_free(want_b);
    qb_buf_fini(&b);
    qb_buf_fini(&got);
    t_stop(&e);
}

int main(void)
{
    t_paths_init();
    qb_log_set_component("test_broker");
    qb_log_set_level(QB_LOG_ERROR);
    int rc = qb_test_run_all();
    t_paths_remove();
    return rc;
}
