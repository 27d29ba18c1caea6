/*
 * test_publish.c: the adapter's batching publisher (adapters/publish.c)
 * through a real broker (broker_env.h) to a subscriber that iterates maps
 * like libquotebus and quotebus-sub do: deltas of one topic batched up to
 * the map and byte bounds, flushed by a status and at the end of a service
 * pass (held while more input waits, at most QB_PUB_HOLD_PASSES passes),
 * order kept across topics, every map forwarded by the broker.
 */
#include "harness.h"

#include "broker.h"
#include "broker_env.h"
#include "buf.h"
#include "err.h"
#include "log.h"
#include "msg.h"
#include "topics.h"

#include <nng/nng.h>

/* The adapter's batching publisher, compiled into this test (it needs only
 * NNG and qbcommon, which qbbroker brings): the publisher -> broker ->
 * subscriber path of batched frames is tested here, end to end. */
#define QB_PUB_NO_LWS 1 /* no lws here: qb__pub_input_waiting is left out */
#include "../../adapters/publish.c"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Receives frames on s until none comes for 300 ms; iterates every map like
 * libquotebus and quotebus-sub do. Per topic kind: maps, frames, and
 * whether every book (trade) seq was +1 of the one before. */
typedef struct t_rx {
    uint64_t frames, maps, book_maps, trade_maps, status_maps, book_frames;
    uint64_t last_book, last_trade;
    bool book_contig, trade_contig;
    size_t max_len;
    uint64_t order_errors; /* a status before book deltas published earlier */
} t_rx;

static void t_rx_all(nng_socket s, t_rx *rx)
{
    memset(rx, 0, sizeof *rx);
    rx->book_contig = rx->trade_contig = true;
    qb_decoder *d = qb_decoder_new();
    QB_CHECK(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 300) == 0);
    nng_msg *r;
    while ((r = t_recv(s)) != NULL) {
        qb_str topic;
        qb_msg m;
        rx->frames++;
        if (nng_msg_len(r) > rx->max_len) {
            rx->max_len = nng_msg_len(r);
        }
        QB_CHECK_EQ_INT(qb_decoder_begin(d, nng_msg_body(r), nng_msg_len(r), &topic), QB_OK);
        bool book = false;
        int rc;
        while ((rc = qb_decoder_next(d, &m)) == QB_OK) {
            rx->maps++;
            if (m.type == QB_MSG_DELTA || m.type == QB_MSG_SNAPSHOT) {
                book = true;
                rx->book_maps++;
                if (m.type == QB_MSG_DELTA && m.seq != rx->last_book + 1) {
                    rx->book_contig = false;
                }
                rx->last_book = m.seq;
            } else if (m.type == QB_MSG_TRADE) {
                rx->trade_maps++;
                if (rx->last_trade != 0 && m.seq != rx->last_trade + 1) {
                    rx->trade_contig = false;
                }
                rx->last_trade = m.seq;
            } else if (m.type == QB_MSG_STATUS) {
                rx->status_maps++;
                /* the test publishes the status after book seq 150 */
                if (m.seq == 2 && rx->last_book != 150) {
                    rx->order_errors++;
                }
            }
        }
        QB_CHECK_EQ_INT(rc, QB_EEOF);
        rx->book_frames += book;
        nng_msg_free(r);
    }
    QB_CHECK(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 2000) == 0);
    qb_decoder_free(d);
}

QB_TEST(publisher_batches_deltas_and_the_broker_forwards_every_map)
{
    t_env e;
    if (!t_start(&e, 0, t_all, t_all_len, 3, NULL, NULL, 0)) {
        return;
    }
    qb_pub_counters pc = {0};
    qb_pub *p = NULL;
    QB_CHECK_EQ_INT(qb__pub_open(&p, t_ingest, NULL, &pc), QB_OK);
    if (p == NULL) {
        t_stop(&e);
        return;
    }
    /* wait until the publisher's pipe is up: a status goes out at once */
    bool up = false;
    QB_CHECK(nng_socket_set_ms(e.sub, NNG_OPT_RECVTIMEO, 20) == 0);
    for (int i = 0; i < 250 && !up; i++) {
        qb_msg st = t_msg(QB_MSG_STATUS, "BTC-USDT", "BTCUSDT", 1);
        st.state = QB_FEED_SYNCING;
        QB_CHECK_EQ_INT(qb__pub_send(p, &st), QB_OK);
        nng_msg *r = t_recv(e.sub);
        if (r) {
            up = true;
            nng_msg_free(r);
        }
    }
    QB_CHECK(up);
    t_sleep_ms(50);
    t_rx rx;
    t_rx_all(e.sub, &rx); /* drain */
    qb_broker_stats s0 = t_stats(&e);
    pc = (qb_pub_counters){0};

    /* one "service pass": snapshot 1, deltas 2..150 interleaved with trades
     * 1..149, a status (seq 2), then deltas 151..200, then the flush */
    qb_level sb[] = {L("100.0", "1")}, sa[] = {L("100.01", "1")};
    qb_msg m = t_msg(QB_MSG_SNAPSHOT, "BTC-USDT", "BTCUSDT", 1);
    m.bids = sb;
    m.n_bids = 1;
    m.asks = sa;
    m.n_asks = 1;
    QB_CHECK_EQ_INT(qb__pub_send(p, &m), QB_OK);
    for (uint64_t k = 2; k <= 200; k++) {
        qb_level db[3], da[2];
        t_delta_levels(k, db, da);
        m = t_msg(QB_MSG_DELTA, "BTC-USDT", "BTCUSDT", k);
        m.bids = db;
        m.n_bids = 3;
        m.asks = da;
        m.n_asks = 2;
        QB_CHECK_EQ_INT(qb__pub_send(p, &m), QB_OK);
        if (k < 150) {
            qb_msg t = t_msg(QB_MSG_TRADE, "BTC-USDT", "BTCUSDT", k - 1);
            t.trade_id = k;
            t.price = D("100");
            t.qty = D("0.1");
            t.side = QB_SIDE_BUY;
            QB_CHECK_EQ_INT(qb__pub_send(p, &t), QB_OK);
        }
        if (k == 150) {
            qb_msg st = t_msg(QB_MSG_STATUS, "BTC-USDT", "BTCUSDT", 2);
            st.state = QB_FEED_LIVE;
            QB_CHECK_EQ_INT(qb__pub_send(p, &st), QB_OK);
        }
    }
    QB_CHECK_EQ_INT(pc.published, 349 - 50); /* 151..200 wait for the flush */
    QB_CHECK_EQ_INT(qb__pub_flush(p), QB_OK);
    QB_CHECK_EQ_INT(pc.published, 1 + 199 + 148 + 1);
    QB_CHECK(pc.frames < 40); /* batched: 349 maps in far fewer frames */
    QB_CHECK_EQ_INT(pc.publish_errors, 0);
    QB_CHECK_EQ_INT(pc.encode_errors, 0);
    t_rx_all(e.sub, &rx);
    QB_CHECK_EQ_INT(rx.maps, 349);
    QB_CHECK_EQ_INT(rx.frames, pc.frames);
    QB_CHECK_EQ_INT(rx.book_maps, 200);
    QB_CHECK_EQ_INT(rx.trade_maps, 148);
    QB_CHECK_EQ_INT(rx.status_maps, 1);
    QB_CHECK(rx.book_contig);
    QB_CHECK(rx.trade_contig);
    QB_CHECK_EQ_INT(rx.last_book, 200);
    QB_CHECK_EQ_INT(rx.order_errors, 0);
    /* book frames: the snapshot, 2..65 (64 maps: sent when full), 66..129,
     * 130..150 (flushed by the status), 151..200 (flushed at the end) */
    QB_CHECK_EQ_INT(rx.book_frames, 5);
    QB_CHECK_EQ_INT(rx.frames, 9); /* + 3 trade frames (64, 64, 20) + the status */
    qb_broker_stats s1 = t_stats(&e);
    QB_CHECK_EQ_INT(s1.messages_in - s0.messages_in, 349);
    QB_CHECK_EQ_INT(s1.frames_in - s0.frames_in, pc.frames);
    QB_CHECK_EQ_INT(s1.ingest_gaps - s0.ingest_gaps, 0);
    qb_topic_info ti;
    QB_CHECK_EQ_INT(qb_broker_topic_get(e.b, "book.binance.BTC-USDT", &ti, NULL), QB_OK);
    QB_CHECK_EQ_INT(ti.last_seq, 200);
    QB_CHECK(ti.book_valid);

    /* the byte bound: 20+20-level deltas (~450 bytes) with max 2000 bytes */
    qb__pub_set_batch(p, 1000, 2000);
    pc = (qb_pub_counters){0};
    qb_level big[20];
    for (int i = 0; i < 20; i++) {
        big[i] = (qb_level){{9000 - i, 2}, {123456789, 8}};
    }
    for (uint64_t k = 201; k <= 300; k++) {
        m = t_msg(QB_MSG_DELTA, "BTC-USDT", "BTCUSDT", k);
        m.bids = big;
        m.n_bids = 20;
        m.asks = NULL;
        m.n_asks = 0;
        QB_CHECK_EQ_INT(qb__pub_send(p, &m), QB_OK);
    }
    qb__pub_flush(p);
    t_rx_all(e.sub, &rx);
    QB_CHECK_EQ_INT(rx.maps, 100);
    QB_CHECK_EQ_INT(rx.last_book, 300);
    QB_CHECK(rx.frames >= 10 && rx.frames <= 30);
    QB_CHECK(rx.max_len <= 2000);

    /* no batching (max_maps 1): one frame per delta */
    qb__pub_set_batch(p, 1, QB_PUB_BATCH_BYTES);
    pc = (qb_pub_counters){0};
    for (uint64_t k = 301; k <= 310; k++) {
        m = t_msg(QB_MSG_DELTA, "BTC-USDT", "BTCUSDT", k);
        m.bids = big;
        m.n_bids = 1;
        QB_CHECK_EQ_INT(qb__pub_send(p, &m), QB_OK);
    }
    QB_CHECK_EQ_INT(pc.frames, 10);
    t_rx_all(e.sub, &rx);
    QB_CHECK_EQ_INT(rx.frames, 10);
    QB_CHECK_EQ_INT(rx.maps, 10);

    /* the end of a pass: held while more input waits, bounded by passes */
    qb__pub_set_batch(p, QB_PUB_BATCH_MAPS, QB_PUB_BATCH_BYTES);
    pc = (qb_pub_counters){0};
    m = t_msg(QB_MSG_DELTA, "BTC-USDT", "BTCUSDT", 311);
    m.bids = big;
    m.n_bids = 1;
    QB_CHECK_EQ_INT(qb__pub_send(p, &m), QB_OK);
    qb__pub_pass_end(p, true);
    QB_CHECK_EQ_INT(pc.frames, 0); /* more input waits: held */
    qb__pub_pass_end(p, false);
    QB_CHECK_EQ_INT(pc.frames, 1); /* nothing waits: sent */
    m.seq = 312;
    QB_CHECK_EQ_INT(qb__pub_send(p, &m), QB_OK);
    int passes = 0;
    while (pc.frames == 1 && passes < 1000) {
        qb__pub_pass_end(p, true);
        passes++;
    }
    QB_CHECK(passes <= QB_PUB_HOLD_PASSES); /* the safety bound */
    QB_CHECK_EQ_INT(pc.frames, 2);
    t_rx_all(e.sub, &rx);
    QB_CHECK_EQ_INT(rx.maps, 2);
    qb__pub_close(p);
    t_stop(&e);
}

int main(void)
{
    t_paths_init();
    qb_log_set_component("test_publish");
    qb_log_set_level(QB_LOG_ERROR);
    int rc = qb_test_run_all();
    t_paths_remove();
    return rc;
}
