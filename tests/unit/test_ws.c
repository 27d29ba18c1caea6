/*
 * test_ws.c: the websocket fan-out core (broker/wsq.h) in-process, without
 * sockets: seq rules and snapshots for new subscribers, conflation of a
 * client that does not read (and its fresh "conflated" snapshot once it
 * drains) while a fast client on the same book gets every message, the
 * hard limit, trade drops, unsubscribe, limits, encode-once sharing, the
 * request parser fed every prefix and single-byte mutation of sample
 * requests, and the HTTP helpers (origin, token, paths, content types).
 */
#include "harness.h"

#include "book.h"
#include "clock.h"
#include "decimal.h"
#include "err.h"
#include "json.h"
#include "msg.h"
#include "topic.h"
#include "ws.h"
#include "wsq.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define T_HEAD 16 /* headroom, as LWS_PRE would be */

/* The "broker" of these tests: one book per topic, kept by the test. */
typedef struct t_env {
    qb_book *book;
    uint64_t seq;
    bool valid;
    int snapshots; /* ops.snapshot calls that produced one */
    int wakes;
    qb_wsq *q;
} t_env;

static qb_dec D(const char *s)
{
    qb_dec d;
    qb_dec_parse(s, strlen(s), &d);
    return d;
}

static const char *const T_TOPIC = "book.binance.BTC-USDT";

static void t_frame(qb_msg_type type, uint64_t seq, const qb_level *b, size_t nb, const qb_level *a,
                    size_t na, bool refresh, qb_buf *out)
{
    qb_msg m;
    memset(&m, 0, sizeof m);
    m.type = type;
    m.version = QB_PROTO_VERSION;
    m.exchange = QB_STR("binance");
    m.symbol = QB_STR("BTC-USDT");
    m.native = QB_STR("BTCUSDT");
    m.seq = seq;
    m.recv_ts = 1;
    m.first_id = m.last_id = seq * 10;
    m.bids = b;
    m.n_bids = nb;
    m.asks = a;
    m.n_asks = na;
    m.refresh = refresh;
    qb_buf_reset(out);
    QB_CHECK(qb_msg_encode(&m, out) == QB_OK);
}

static int t_snapshot(void *arg, qb_str topic, qb_buf *out)
{
    t_env *e = arg;
    if (!e->valid || topic.n != strlen(T_TOPIC) || memcmp(topic.p, T_TOPIC, topic.n) != 0) {
        return QB_ENOTFOUND;
    }
    qb_buf tmp = QB_BUF_INIT;
    t_frame(QB_MSG_SNAPSHOT, e->seq, qb_book_levels(e->book, QB_BID),
            qb_book_depth(e->book, QB_BID), qb_book_levels(e->book, QB_ASK),
            qb_book_depth(e->book, QB_ASK), true, &tmp);
    qb_buf_append(out, tmp.data, tmp.len);
    qb_buf_fini(&tmp);
    e->snapshots++;
    return QB_OK;
}

static void t_topics(void *arg, void (*fn)(void *, qb_str), void *fn_arg)
{
    t_env *e = arg;
    if (e->valid) {
        fn(fn_arg, (qb_str){T_TOPIC, strlen(T_TOPIC)});
    }
}

static int t_list(void *arg, qb_buf *out)
{
    (void)arg;
    return qb_buf_append(out, "[]", 2);
}

static void t_wake(void *arg, qb_wsq_client *c)
{
    (void)c;
    ((t_env *)arg)->wakes++;
}

static void t_env_init(t_env *e, const qb_wsq_limits *lim)
{
    memset(e, 0, sizeof *e);
    e->book = qb_book_new(0);
    qb_wsq_ops ops = {t_snapshot, t_topics, t_list, t_wake, e};
    qb_wsq_limits l = lim ? *lim : (qb_wsq_limits){0};
    l.headroom = T_HEAD;
    e->q = qb_wsq_new(&l, &ops);
    QB_CHECK(e->q != NULL);
}

static void t_env_fini(t_env *e)
{
    qb_wsq_free(e->q);
    qb_book_free(e->book);
}

/* The broker applies, then hands the frame over (as broker.c does). */
static void t_feed_snapshot(t_env *e, uint64_t seq)
{
    qb_level b[] = {{D("100.0"), D("1")}, {D("99.5"), D("2")}};
    qb_level a[] = {{D("100.5"), D("1")}, {D("101.0"), D("3")}};
    qb_book_replace(e->book, b, 2, a, 2);
    e->seq = seq;
    e->valid = true;
    qb_buf f = QB_BUF_INIT;
    t_frame(QB_MSG_SNAPSHOT, seq, b, 2, a, 2, false, &f);
    qb_wsq_frame(e->q, f.data, f.len);
    qb_buf_fini(&f);
}

static bool t_skip_handoff; /* simulate a handoff drop of the next delta */

static void t_feed_delta(t_env *e)
{
    uint64_t seq = e->seq + 1;
    char px[32], qty[32];
    snprintf(px, sizeof px, "%llu.5", (unsigned long long)(90 - seq % 7));
    snprintf(qty, sizeof qty, "%llu", (unsigned long long)(seq % 5));
    qb_level b[] = {{D(px), D(qty)}};
    qb_book_apply(e->book, b, 1, NULL, 0);
    e->seq = seq;
    qb_buf f = QB_BUF_INIT;
    t_frame(QB_MSG_DELTA, seq, b, 1, NULL, 0, false, &f);
    if (!t_skip_handoff) {
        qb_wsq_frame(e->q, f.data, f.len);
    }
    t_skip_handoff = false;
    qb_buf_fini(&f);
}

/* A JSON client's view: type, seq, conflated of each message it reads. */
typedef struct t_reader {
    qb_wsq_client *c;
    int snapshots, deltas, conflated, replies, errors;
    uint64_t last;
    bool has_last;
    int seq_errors;
    char last_type[32];
    char last_code[48];
} t_reader;

static void t_read_one(t_reader *r, const uint8_t *p, size_t n)
{
    jsmntok_t tok[256];
    qb_json j;
    QB_CHECK(qb_json_parse(&j, (const char *)p, n, tok, 256) == QB_OK);
    int ty = qb_json_get(&j, 0, "type");
    QB_CHECK(ty >= 0);
    qb_json_str_copy(&j, ty, r->last_type, sizeof r->last_type);
    uint64_t seq = 0;
    int st = qb_json_get(&j, 0, "seq");
    if (st >= 0) {
        qb_json_u64(&j, st, &seq);
    }
    if (strcmp(r->last_type, "snapshot") == 0) {
        r->snapshots++;
        int cf = qb_json_get(&j, 0, "conflated");
        bool conf = false;
        if (cf >= 0) {
            qb_json_bool(&j, cf, &conf);
        }
        r->conflated += conf;
        r->last = seq;
        r->has_last = true;
    } else if (strcmp(r->last_type, "delta") == 0) {
        r->deltas++;
        if (!r->has_last || seq != r->last + 1) {
            r->seq_errors++;
        }
        r->last = seq;
    } else {
        r->replies++;
        if (strcmp(r->last_type, "error") == 0) {
            r->errors++;
            int code = qb_json_get(&j, 0, "code");
            qb_json_str_copy(&j, code, r->last_code, sizeof r->last_code);
        }
    }
}

/* Reads everything queued (as the WRITEABLE callback would). */
static int t_drain(t_reader *r)
{
    int n = 0;
    uint8_t *p;
    size_t len;
    bool bin;
    while (qb_wsq_client_peek(r->c, &p, &len, &bin)) {
        QB_CHECK(!bin);
        t_read_one(r, p, len);
        qb_wsq_client_pop(r->c);
        n++;
    }
    return n;
}

static void t_req(qb_wsq_client *c, const char *s)
{
    qb_wsq_client_request(c, s, strlen(s), qb_mono_ns());
}

QB_TEST(wsq_subscribe_before_and_after_data_snapshot_first_then_contiguous)
{
    t_env e;
    t_env_init(&e, NULL);
    t_reader a = {.c = qb_wsq_client_new(e.q, false, NULL)};
    t_req(a.c, "{\"op\":\"subscribe\",\"topics\":[\"book.\"],\"id\":1}");
    QB_CHECK_EQ_INT(t_drain(&a), 1);
    QB_CHECK_EQ_STR(a.last_type, "subscribed");
    /* Deltas before any snapshot are not sent (no valid book yet). */
    t_feed_delta(&e);
    QB_CHECK_EQ_INT(t_drain(&a), 0);
    t_feed_snapshot(&e, 10);
    for (int i = 0; i < 20; i++) {
        t_feed_delta(&e);
    }
    QB_CHECK_EQ_INT(t_drain(&a), 21);
    QB_CHECK_EQ_INT(a.snapshots, 1);
    QB_CHECK_EQ_INT(a.deltas, 20);
    QB_CHECK_EQ_INT(a.seq_errors, 0);

    /* A late joiner: the broker's book as a snapshot, then contiguous. */
    t_reader b = {.c = qb_wsq_client_new(e.q, false, NULL)};
    t_req(b.c, "{\"op\":\"subscribe\",\"topics\":[\"book.binance.BTC-USDT\"]}");
    for (int i = 0; i < 5; i++) {
        t_feed_delta(&e);
    }
    t_drain(&b);
    QB_CHECK_EQ_INT(b.replies, 1);
    QB_CHECK_EQ_INT(b.snapshots, 1);
    QB_CHECK_EQ_INT(b.deltas, 5);
    QB_CHECK_EQ_INT(b.seq_errors, 0);
    QB_CHECK_EQ_INT(b.conflated, 0);
    t_drain(&a);
    QB_CHECK_EQ_INT(a.deltas, 25);
    QB_CHECK_EQ_INT(a.seq_errors, 0);
    qb_wsq_client_free(a.c);
    qb_wsq_client_free(b.c);
    t_env_fini(&e);
}

QB_TEST(wsq_slow_client_is_conflated_fast_client_gets_everything)
{
    qb_wsq_limits lim = {.soft_bytes = 8192, .hard_bytes = 16384, .hard_ms = 60000};
    t_env e;
    t_env_init(&e, &lim);
    t_feed_snapshot(&e, 100);
    t_reader fast = {.c = qb_wsq_client_new(e.q, false, NULL)};
    t_reader slow = {.c = qb_wsq_client_new(e.q, false, NULL)};
    t_req(fast.c, "{\"op\":\"subscribe\",\"topics\":[\"book.binance.\"]}");
    t_req(slow.c, "{\"op\":\"subscribe\",\"topics\":[\"book.binance.\"]}");
    size_t peak = 0;
    for (int i = 0; i < 5000; i++) {
        t_feed_delta(&e);
        t_drain(&fast);
        size_t q = qb_wsq_client_queued(slow.c);
        peak = q > peak ? q : peak;
    }
    /* The slow client's queue stays bounded by the hard limit (plus one
     * message); the fast one got every delta, in order. */
    QB_CHECK(peak < 16384 + 1024);
    QB_CHECK_EQ_INT(fast.deltas, 5000);
    QB_CHECK_EQ_INT(fast.seq_errors, 0);
    QB_CHECK_EQ_INT(fast.conflated, 0);
    const qb_wsq_stats *st = qb_wsq_stats_get(e.q);
    QB_CHECK(st->ws_conflations >= 1);
    QB_CHECK(st->ws_drop_conflated > 4000);
    QB_CHECK_EQ_INT(qb_wsq_client_close_code(slow.c, NULL), 0);
    /* The slow client reads again: what was queued, then a conflated
     * snapshot at the broker's seq, then contiguous deltas. */
    t_drain(&slow);
    QB_CHECK_EQ_INT(slow.conflated, 1);
    QB_CHECK_EQ_INT(slow.last, e.seq);
    QB_CHECK_EQ_INT(slow.seq_errors, 0);
    for (int i = 0; i < 10; i++) {
        t_feed_delta(&e);
    }
    t_drain(&slow);
    QB_CHECK_EQ_INT(slow.seq_errors, 0);
    QB_CHECK_EQ_INT(slow.last, e.seq);
    QB_CHECK_EQ_INT(qb_wsq_client_queued(slow.c), 0);
    qb_wsq_client_free(fast.c);
    qb_wsq_client_free(slow.c);
    t_env_fini(&e);
}

QB_TEST(wsq_burst_over_soft_limit_within_grace_is_not_conflated)
{
    qb_wsq_limits lim = {.soft_bytes = 4096, .soft_ms = 60000, .hard_bytes = 1 << 20};
    t_env e;
    t_env_init(&e, &lim);
    t_feed_snapshot(&e, 1);
    t_reader r = {.c = qb_wsq_client_new(e.q, false, NULL)};
    t_req(r.c, "{\"op\":\"subscribe\",\"topics\":[\"book.\"]}");
    for (int i = 0; i < 300; i++) {
        t_feed_delta(&e);
    }
    QB_CHECK(qb_wsq_client_queued(r.c) > 4096);
    t_drain(&r);
    QB_CHECK_EQ_INT(r.deltas, 300);
    QB_CHECK_EQ_INT(r.conflated, 0);
    QB_CHECK_EQ_INT(r.seq_errors, 0);
    QB_CHECK_EQ_INT(qb_wsq_stats_get(e.q)->ws_conflations, 0);
    /* Past hard_bytes it conflates at once, grace or not. */
    for (int i = 0; i < 20000 && qb_wsq_stats_get(e.q)->ws_conflations == 0; i++) {
        t_feed_delta(&e);
    }
    QB_CHECK_EQ_INT(qb_wsq_stats_get(e.q)->ws_conflations, 1);
    QB_CHECK(qb_wsq_client_queued(r.c) <= (1u << 20) + 1024);
    t_drain(&r);
    QB_CHECK_EQ_INT(r.conflated, 1);
    QB_CHECK_EQ_INT(r.seq_errors, 0);
    QB_CHECK_EQ_INT(r.last, e.seq);
    qb_wsq_client_free(r.c);
    t_env_fini(&e);
}

QB_TEST(wsq_lost_frame_heals_with_a_snapshot_no_wrong_book)
{
    t_env e;
    t_env_init(&e, NULL);
    t_feed_snapshot(&e, 1);
    t_reader r = {.c = qb_wsq_client_new(e.q, false, NULL)};
    t_req(r.c, "{\"op\":\"subscribe\",\"topics\":[\"book.\"]}");
    t_feed_delta(&e);
    t_skip_handoff = true; /* the broker applied it; the handoff dropped it */
    t_feed_delta(&e);
    t_feed_delta(&e);
    t_feed_delta(&e);
    t_drain(&r);
    /* subscribe snapshot, delta 2, then a snapshot at 4 (heals the gap),
     * then delta 5: never a delta that does not follow. */
    QB_CHECK_EQ_INT(r.seq_errors, 0);
    QB_CHECK_EQ_INT(r.snapshots, 2);
    QB_CHECK_EQ_INT(r.last, e.seq);
    QB_CHECK_EQ_INT(qb_wsq_stats_get(e.q)->ws_snapshots_gap, 1);
    qb_wsq_client_free(r.c);
    t_env_fini(&e);
}

QB_TEST(wsq_client_behind_past_hard_time_is_closed_4001)
{
    qb_wsq_limits lim = {.soft_bytes = 4096, .hard_ms = 1000};
    t_env e;
    t_env_init(&e, &lim);
    t_feed_snapshot(&e, 1);
    t_reader slow = {.c = qb_wsq_client_new(e.q, false, NULL)};
    t_req(slow.c, "{\"op\":\"subscribe\",\"topics\":[\"book.\"]}");
    for (int i = 0; i < 500; i++) {
        t_feed_delta(&e);
    }
    qb_wsq_tick(e.q, qb_mono_ns());
    QB_CHECK_EQ_INT(qb_wsq_client_close_code(slow.c, NULL), 0);
    qb_wsq_tick(e.q, qb_mono_ns() + 2000000000ull);
    const char *why = NULL;
    QB_CHECK_EQ_INT(qb_wsq_client_close_code(slow.c, &why), 4001);
    QB_CHECK(why != NULL && strstr(why, "slow consumer") != NULL);
    QB_CHECK_EQ_INT(qb_wsq_stats_get(e.q)->ws_slow_closes, 1);
    /* A closing client gets nothing more. */
    uint8_t *p;
    size_t n;
    bool bin;
    QB_CHECK(!qb_wsq_client_peek(slow.c, &p, &n, &bin));
    qb_wsq_client_free(slow.c);
    t_env_fini(&e);
}

QB_TEST(wsq_trades_dropped_past_soft_limit_status_kept)
{
    qb_wsq_limits lim = {.soft_bytes = 4096, .hard_bytes = 8192};
    t_env e;
    t_env_init(&e, &lim);
    t_reader r = {.c = qb_wsq_client_new(e.q, false, NULL)};
    t_req(r.c, "{\"op\":\"subscribe\",\"topics\":[\"trade.binance.\",\"status.\"]}");
    t_drain(&r);
    qb_buf f = QB_BUF_INIT;
    for (uint64_t s = 1; s <= 200; s++) {
        qb_msg m;
        memset(&m, 0, sizeof m);
        m.type = QB_MSG_TRADE;
        m.version = 1;
        m.exchange = QB_STR("binance");
        m.symbol = QB_STR("BTC-USDT");
        m.native = QB_STR("BTCUSDT");
        m.seq = s;
        m.trade_id = s;
        m.price = D("100.5");
        m.qty = D("0.1");
        m.side = QB_SIDE_BUY;
        qb_buf_reset(&f);
        qb_msg_encode(&m, &f);
        qb_wsq_frame(e.q, f.data, f.len);
    }
    QB_CHECK(qb_wsq_stats_get(e.q)->ws_drop_trade > 100);
    qb_msg m;
    memset(&m, 0, sizeof m);
    m.type = QB_MSG_STATUS;
    m.version = 1;
    m.exchange = QB_STR("binance");
    m.symbol = QB_STR("BTC-USDT");
    m.native = QB_STR("BTCUSDT");
    m.seq = 1;
    m.state = QB_FEED_RESYNCING;
    m.reason = QB_STR("gap");
    qb_buf_reset(&f);
    qb_msg_encode(&m, &f);
    size_t before = qb_wsq_client_queued(r.c);
    qb_wsq_frame(e.q, f.data, f.len);
    QB_CHECK(qb_wsq_client_queued(r.c) > before);
    qb_buf_fini(&f);
    qb_wsq_client_free(r.c);
    t_env_fini(&e);
}

QB_TEST(wsq_unsubscribe_stops_flow_and_purges_queue)
{
    t_env e;
    t_env_init(&e, NULL);
    t_feed_snapshot(&e, 1);
    t_reader r = {.c = qb_wsq_client_new(e.q, false, NULL)};
    t_req(r.c, "{\"op\":\"subscribe\",\"topics\":[\"book.binance.BTC-USDT\"]}");
    t_feed_delta(&e);
    t_feed_delta(&e);
    t_req(r.c, "{\"op\":\"unsubscribe\",\"topics\":[\"book.binance.BTC-USDT\"],\"id\":\"u\"}");
    t_feed_delta(&e);
    t_drain(&r);
    QB_CHECK_EQ_INT(r.snapshots + r.deltas, 0); /* purged, and nothing after */
    QB_CHECK_EQ_STR(r.last_type, "unsubscribed");
    QB_CHECK_EQ_INT(qb_wsq_client_subs(r.c), 0);
    qb_wsq_client_free(r.c);
    t_env_fini(&e);
}

QB_TEST(wsq_limits_subscriptions_and_rate)
{
    qb_wsq_limits lim = {.max_subs = 3, .rate = 5};
    t_env e;
    t_env_init(&e, &lim);
    t_reader r = {.c = qb_wsq_client_new(e.q, false, NULL)};
    t_req(r.c, "{\"op\":\"subscribe\",\"topics\":[\"trade.a.X\",\"trade.a.Y\",\"trade.a.Z\","
               "\"trade.a.W\"]}");
    t_drain(&r);
    QB_CHECK_EQ_STR(r.last_code, "too_many_subscriptions");
    t_req(r.c, "{\"op\":\"subscribe\",\"topics\":[\"trade.a.X\",\"trade.a.X\",\"trade.a.Y\"]}");
    t_drain(&r);
    QB_CHECK_EQ_STR(r.last_type, "subscribed");
    QB_CHECK_EQ_INT(qb_wsq_client_subs(r.c), 2);
    /* 2 of the 5 tokens are spent: 3 more pass, then rate_limited. */
    uint64_t now = qb_mono_ns();
    for (int i = 0; i < 4; i++) {
        qb_wsq_client_request(r.c, "{\"op\":\"list\"}", 13, now);
    }
    t_drain(&r);
    QB_CHECK_EQ_STR(r.last_code, "rate_limited");
    QB_CHECK_EQ_INT(qb_wsq_stats_get(e.q)->ws_err_rate_limited, 1);
    qb_wsq_client_free(r.c);
    t_env_fini(&e);
}

QB_TEST(wsq_messages_are_encoded_once_and_shared)
{
    t_env e;
    t_env_init(&e, NULL);
    t_feed_snapshot(&e, 1);
    qb_wsq_client *a = qb_wsq_client_new(e.q, false, NULL);
    qb_wsq_client *b = qb_wsq_client_new(e.q, false, NULL);
    qb_wsq_client *m = qb_wsq_client_new(e.q, true, NULL);
    t_req(a, "{\"op\":\"subscribe\",\"topics\":[\"book.\"]}");
    t_req(b, "{\"op\":\"subscribe\",\"topics\":[\"book.\"]}");
    t_req(m, "{\"op\":\"subscribe\",\"topics\":[\"book.\"]}");
    uint8_t *pa, *pb, *pm;
    size_t na, nb, nm;
    bool bin;
    for (int k = 0; k < 2; k++) { /* ack, subscribe snapshot */
        QB_CHECK(qb_wsq_client_peek(a, &pa, &na, &bin));
        qb_wsq_client_pop(a);
        QB_CHECK(qb_wsq_client_peek(b, &pb, &nb, &bin));
        qb_wsq_client_pop(b);
        QB_CHECK(qb_wsq_client_peek(m, &pm, &nm, &bin));
        qb_wsq_client_pop(m);
    }
    QB_CHECK(pa == pb); /* the same snapshot item (cache per topic) */
    QB_CHECK_EQ_INT(e.snapshots, 1);
    uint64_t json_before = qb_wsq_stats_get(e.q)->ws_items_json;
    qb_buf f = QB_BUF_INIT;
    qb_level lv[] = {{D("99"), D("1")}};
    t_frame(QB_MSG_DELTA, 2, lv, 1, NULL, 0, false, &f);
    qb_wsq_frame(e.q, f.data, f.len);
    QB_CHECK(qb_wsq_client_peek(a, &pa, &na, &bin) && !bin);
    QB_CHECK(qb_wsq_client_peek(b, &pb, &nb, &bin) && !bin);
    QB_CHECK(pa == pb && na == nb);
    QB_CHECK_EQ_INT(qb_wsq_stats_get(e.q)->ws_items_json, json_before + 1);
    /* msgpack: the frame bytes as received. */
    QB_CHECK(qb_wsq_client_peek(m, &pm, &nm, &bin) && bin);
    QB_CHECK(nm == f.len && memcmp(pm, f.data, f.len) == 0);
    qb_buf_fini(&f);
    qb_wsq_client_free(a);
    qb_wsq_client_free(b);
    qb_wsq_client_free(m);
    t_env_fini(&e);
}

QB_TEST(wsq_msgpack_conflated_snapshot_decodes_with_flag)
{
    qb_wsq_limits lim = {.soft_bytes = 4096, .hard_bytes = 8192};
    t_env e;
    t_env_init(&e, &lim);
    t_feed_snapshot(&e, 1);
    qb_wsq_client *m = qb_wsq_client_new(e.q, true, NULL);
    t_req(m, "{\"op\":\"subscribe\",\"topics\":[\"book.\"]}");
    for (int i = 0; i < 300; i++) {
        t_feed_delta(&e);
    }
    uint8_t *p;
    size_t n;
    bool bin;
    bool found = false;
    qb_decoder *dec = qb_decoder_new();
    while (qb_wsq_client_peek(m, &p, &n, &bin)) {
        if (bin) {
            qb_str topic;
            qb_msg msg;
            QB_CHECK(qb_decoder_begin(dec, p, n, &topic) == QB_OK);
            QB_CHECK(qb_decoder_next(dec, &msg) == QB_OK);
            if (msg.type == QB_MSG_SNAPSHOT && memmem(p, n,
                                                      "\xa9"
                                                      "conflated\xc3",
                                                      11) != NULL) {
                found = true;
                QB_CHECK(msg.refresh);
                QB_CHECK_EQ_INT(msg.seq, e.seq);
                QB_CHECK(qb_decoder_next(dec, &msg) == QB_EEOF);
            }
        }
        qb_wsq_client_pop(m);
    }
    QB_CHECK(found);
    qb_decoder_free(dec);
    qb_wsq_client_free(m);
    t_env_fini(&e);
}

/* Every prefix and single-byte mutation of sample requests: no crash, and
 * exactly one reply per request, itself valid JSON with a "type". */
QB_TEST(wsq_request_parser_prefixes_and_mutations)
{
    static const char *const samples[] = {
        "{\"op\":\"subscribe\",\"topics\":[\"book.binance.BTC-USDT\",\"trade.binance.\"],\"id\":7}",
        "{\"op\":\"unsubscribe\",\"topics\":[\"book.binance.BTC-USDT\"],\"id\":\"x\\\"y\"}",
        "{\"op\":\"list\",\"id\":9}",
        "{\"op\":\"subscribe\",\"topics\":[\"book.\\u0062inance.\"]}",
    };
    static const uint8_t repl[] = {0x00, '"', '\\', '{', '}',  '[',  ']',
                                   ',',  ':', '.',  'x', 0xff, 0x01, ' '};
    qb_wsq_limits lim = {.rate = 1000000,
                         .max_subs = 1000000,
                         .queue_entries = 1 << 20,
                         .soft_bytes = 1 << 30,
                         .hard_bytes = 1u << 30};
    t_env e;
    t_env_init(&e, &lim);
    t_feed_snapshot(&e, 1);
    t_reader r = {.c = qb_wsq_client_new(e.q, false, NULL)};
    char buf[256];
    long requests = 0;
    for (size_t s = 0; s < sizeof samples / sizeof samples[0]; s++) {
        size_t n = strlen(samples[s]);
        for (size_t k = 0; k <= n; k++) {
            int before = r.replies;
            qb_wsq_client_request(r.c, samples[s], k, qb_mono_ns());
            requests++;
            t_drain(&r);
            QB_CHECK_EQ_INT(r.replies, before + 1);
        }
        for (size_t i = 0; i < n; i++) {
            for (size_t v = 0; v < sizeof repl; v++) {
                memcpy(buf, samples[s], n);
                buf[i] = (char)repl[v];
                int before = r.replies;
                qb_wsq_client_request(r.c, buf, n, qb_mono_ns());
                requests++;
                t_drain(&r);
                QB_CHECK_EQ_INT(r.replies, before + 1);
                /* Delta of the book still flows in sequence. */
            }
        }
    }
    QB_CHECK(requests > 500);
    QB_CHECK_EQ_INT(r.seq_errors, 0);
    QB_CHECK_EQ_INT(qb_wsq_client_close_code(r.c, NULL), 0);
    qb_wsq_client_free(r.c);
    t_env_fini(&e);
}

QB_TEST(wsq_topic_rules)
{
    static const struct {
        const char *t;
        int kind;
    } cases[] = {
        {"book.binance.BTC-USDT", QB_TOPIC_EXACT},
        {"book.", QB_TOPIC_PREFIX},
        {"book.binance.", QB_TOPIC_PREFIX},
        {"trade.htx.", QB_TOPIC_PREFIX},
        {"status.bithumb.BTC-KRW", QB_TOPIC_EXACT},
        {"ticker.x.Y", QB_TOPIC_EXACT},
        {"", 0},
        {"book", 0},
        {"book..X", 0},
        {".book.", 0},
        {"book.binance", 0},
        {"book.binance.BTC-USDT.", 0},
        {"book.binance.BTC USDT", 0},
        {"book.binance.BTC\"", 0},
        {"candles.binance.X", 0},
        {"book.binance.BTC-USDT\x01", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int k = (int)qb_topic_parse(cases[i].t, strlen(cases[i].t), NULL);
        if (k != cases[i].kind) {
            fprintf(stderr, "topic \"%s\": kind %d, want %d\n", cases[i].t, k, cases[i].kind);
        }
        QB_CHECK_EQ_INT(k, cases[i].kind);
    }
    char big[200];
    memset(big, 'a', sizeof big);
    memcpy(big, "book.", 5);
    QB_CHECK_EQ_INT((int)qb_topic_parse(big, sizeof big, NULL), 0);
    QB_CHECK(qb_wsq_match("book.", 5, "book.x.Y", 8));
    QB_CHECK(!qb_wsq_match("book.binance.BTC-USDT", 21, "book.binance.BTC-USDTX", 22));
    QB_CHECK(qb_wsq_match("book.binance.BTC-USDT", 21, "book.binance.BTC-USDT", 21));
    QB_CHECK(!qb_wsq_match("trade.", 6, "book.x.Y", 8));
}

/* The topics of a broker with three exchanges, for the "subscribed" reply. */
static const char *const t_known_topics[] = {
    "book.binance.BTC-USDT",  "book.binance.ETH-USDT",   "book.binance.DOGE-USDT",
    "book.htx.BTC-USDT",      "book.htx.ETH-BTC",        "book.bithumb.BTC-KRW",
    "trade.binance.BTC-USDT", "status.binance.BTC-USDT",
};

static void t_known(void *arg, void (*fn)(void *, qb_str), void *fn_arg)
{
    (void)arg;
    for (size_t i = 0; i < sizeof t_known_topics / sizeof t_known_topics[0]; i++) {
        fn(fn_arg, (qb_str){t_known_topics[i], strlen(t_known_topics[i])});
    }
}

/* Sends one request and checks that the reply is exactly want. */
static void t_reply_is(qb_wsq_client *c, const char *req, const char *want)
{
    t_req(c, req);
    uint8_t *p;
    size_t len;
    bool bin;
    QB_CHECK(qb_wsq_client_peek(c, &p, &len, &bin));
    char got[2048];
    snprintf(got, sizeof got, "%.*s", (int)len, (const char *)p);
    QB_CHECK_EQ_STR(got, want);
    qb_wsq_client_pop(c);
    while (qb_wsq_client_peek(c, &p, &len, &bin)) {
        qb_wsq_client_pop(c); /* snapshots of what was subscribed */
    }
}

QB_TEST(wsq_subscribed_reply_counts_matches_and_names_nearest_topics)
{
    t_env e;
    memset(&e, 0, sizeof e);
    e.book = qb_book_new(0);
    qb_wsq_ops ops = {t_snapshot, t_known, t_list, t_wake, &e};
    qb_wsq_limits l = {.headroom = T_HEAD};
    e.q = qb_wsq_new(&l, &ops);
    qb_wsq_client *c = qb_wsq_client_new(e.q, false, NULL);
    /* Every pattern matches: only the count is added. */
    t_reply_is(c, "{\"op\":\"subscribe\",\"topics\":[\"book.binance.\"],\"id\":1}",
               "{\"type\":\"subscribed\",\"topics\":[\"book.binance.\"],\"matching\":3,\"id\":1}");
    /* An unknown exchange and symbol: same exchange first (none), same
     * symbol elsewhere (none), then the same base, then byte order. */
    t_reply_is(c, "{\"op\":\"subscribe\",\"topics\":[\"book.kraken.DOGE-EUR\"]}",
               "{\"type\":\"subscribed\",\"topics\":[\"book.kraken.DOGE-EUR\"],\"matching\":0,"
               "\"unmatched\":[\"book.kraken.DOGE-EUR\"],\"nearest\":[\"book.binance.DOGE-USDT\","
               "\"book.binance.BTC-USDT\",\"book.binance.ETH-USDT\",\"book.bithumb.BTC-KRW\","
               "\"book.htx.BTC-USDT\"]}");
    /* A misspelt symbol of a known exchange: that exchange's books first
     * (same quote), then the same quote elsewhere; the count covers the
     * patterns that do match, each topic once. */
    t_reply_is(c,
               "{\"op\":\"subscribe\",\"topics\":[\"book.binance.FOO-USDT\",\"trade.binance.\","
               "\"book.htx.BTC-USDT\",\"book.htx.\"],\"id\":\"x\"}",
               "{\"type\":\"subscribed\",\"topics\":[\"book.binance.FOO-USDT\",\"trade.binance.\","
               "\"book.htx.BTC-USDT\",\"book.htx.\"],\"matching\":3,\"unmatched\":["
               "\"book.binance.FOO-USDT\"],\"nearest\":[\"book.binance.BTC-USDT\","
               "\"book.binance.DOGE-USDT\",\"book.binance.ETH-USDT\",\"book.htx.BTC-USDT\","
               "\"book.bithumb.BTC-KRW\"],\"id\":\"x\"}");
    /* Same symbol on other exchanges before other symbols; ASCII case is
     * ignored in the comparison (a lower-case symbol finds its book). */
    t_reply_is(c, "{\"op\":\"subscribe\",\"topics\":[\"book.kraken.btc-usdt\"]}",
               "{\"type\":\"subscribed\",\"topics\":[\"book.kraken.btc-usdt\"],\"matching\":0,"
               "\"unmatched\":[\"book.kraken.btc-usdt\"],\"nearest\":[\"book.binance.BTC-USDT\","
               "\"book.htx.BTC-USDT\",\"book.bithumb.BTC-KRW\",\"book.binance.DOGE-USDT\","
               "\"book.binance.ETH-USDT\"]}");
    /* A kind with no topic at all: unmatched, nothing near (same kind only);
     * a duplicate pattern is listed once. */
    t_reply_is(c,
               "{\"op\":\"subscribe\",\"topics\":[\"ticker.binance.BTC-USDT\","
               "\"ticker.binance.BTC-USDT\",\"book.nope.\"]}",
               "{\"type\":\"subscribed\",\"topics\":[\"ticker.binance.BTC-USDT\","
               "\"ticker.binance.BTC-USDT\",\"book.nope.\"],\"matching\":0,\"unmatched\":["
               "\"ticker.binance.BTC-USDT\",\"book.nope.\"],\"nearest\":[\"book.binance.BTC-USDT\","
               "\"book.binance.DOGE-USDT\",\"book.binance.ETH-USDT\",\"book.bithumb.BTC-KRW\","
               "\"book.htx.BTC-USDT\"]}");
    /* The unsubscribe reply is unchanged. */
    t_reply_is(c, "{\"op\":\"unsubscribe\",\"topics\":[\"book.nope.\"],\"id\":2}",
               "{\"type\":\"unsubscribed\",\"topics\":[\"book.nope.\"],\"id\":2}");
    qb_wsq_client_free(c);
    t_env_fini(&e);
}

QB_TEST(ws_http_origin_token_paths_mime)
{
    const char *allow[] = {"http://localhost:8000"};
    QB_CHECK(qb_wsq_origin_ok(NULL, "127.0.0.1:7780", NULL, 0));
    QB_CHECK(qb_wsq_origin_ok("http://127.0.0.1:7780", "127.0.0.1:7780", NULL, 0));
    QB_CHECK(qb_wsq_origin_ok("https://Example.COM", "example.com", NULL, 0));
    QB_CHECK(!qb_wsq_origin_ok("http://evil.example", "127.0.0.1:7780", NULL, 0));
    QB_CHECK(!qb_wsq_origin_ok("http://127.0.0.1:7781", "127.0.0.1:7780", NULL, 0));
    QB_CHECK(!qb_wsq_origin_ok("http://127.0.0.1:7780/x", "127.0.0.1:7780", NULL, 0));
    QB_CHECK(!qb_wsq_origin_ok("null", "127.0.0.1:7780", NULL, 0));
    QB_CHECK(!qb_wsq_origin_ok("http://127.0.0.1:7780", "", NULL, 0));
    QB_CHECK(qb_wsq_origin_ok("http://localhost:8000", "127.0.0.1:7780", allow, 1));
    QB_CHECK(!qb_wsq_origin_ok("http://localhost:8001", "127.0.0.1:7780", allow, 1));
    const char *any[] = {"*"};
    QB_CHECK(qb_wsq_origin_ok("http://evil.example", "127.0.0.1:7780", any, 1));

    QB_CHECK(qb_wsq_token_ok(NULL, NULL, NULL));
    QB_CHECK(qb_wsq_token_ok("", NULL, NULL));
    QB_CHECK(qb_wsq_token_ok("s3cret", "Bearer s3cret", NULL));
    QB_CHECK(qb_wsq_token_ok("s3cret", NULL, "s3cret"));
    QB_CHECK(!qb_wsq_token_ok("s3cret", NULL, NULL));
    QB_CHECK(!qb_wsq_token_ok("s3cret", "Bearer s3cre", NULL));
    QB_CHECK(!qb_wsq_token_ok("s3cret", "Bearer s3cretX", NULL));
    QB_CHECK(!qb_wsq_token_ok("s3cret", "Basic s3cret", NULL));
    QB_CHECK(!qb_wsq_token_ok("s3cret", NULL, ""));

    char out[256];
    QB_CHECK(qb_wsq_web_path("/", out, sizeof out));
    QB_CHECK_EQ_STR(out, "/index.html");
    QB_CHECK(qb_wsq_web_path("/app.js", out, sizeof out));
    QB_CHECK_EQ_STR(out, "/app.js");
    QB_CHECK(qb_wsq_web_path("/img/logo.svg", out, sizeof out));
    static const char *const bad[] = {
        "",      "app.js",     "/../etc/passwd", "/a/../b", "/.git/config", "//etc/passwd",
        "/dir/", "/a%2e%2e/b", "/a b",           "/a\\b",   "/a?x",         "/\x01"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        QB_CHECK(!qb_wsq_web_path(bad[i], out, sizeof out));
    }
    QB_CHECK(!qb_wsq_web_path("/app.js", out, 4));
    QB_CHECK_EQ_STR(qb_wsq_mime("/index.html"), "text/html; charset=utf-8");
    QB_CHECK_EQ_STR(qb_wsq_mime("/app.js"), "text/javascript; charset=utf-8");
    QB_CHECK_EQ_STR(qb_wsq_mime("/style.CSS"), "text/css; charset=utf-8");
    QB_CHECK_EQ_STR(qb_wsq_mime("/x"), "application/octet-stream");
    QB_CHECK_EQ_STR(qb_wsq_mime("/a.b/x"), "application/octet-stream");
}

/* ---- the HTTP/websocket server in-process (ws.c over a real broker) ---- */

static int t_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    return ntohs(a.sin_port);
}

/* Sends req raw, returns what came back within 2 s (caller frees). */
static char *t_http(int port, const char *req)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return strdup("");
    }
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    send(fd, req, strlen(req), 0);
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap + 1);
    for (;;) {
        ssize_t r = recv(fd, out + n, cap - n, 0);
        if (r <= 0) {
            break;
        }
        n += (size_t)r;
        if (n == cap || strstr(out, "\r\n\r\n") == NULL) {
            out[n] = '\0';
            if (n == cap) {
                break;
            }
            continue;
        }
        out[n] = '\0';
        /* Enough once the body (Content-Length) is in. */
        const char *cl = strcasestr(out, "content-length:");
        const char *body = strstr(out, "\r\n\r\n") + 4;
        if (cl != NULL && (size_t)(out + n - body) >= (size_t)atol(cl + 15)) {
            break;
        }
        if (strncmp(out, "HTTP/1.1 101", 12) == 0 && (size_t)(out + n - body) >= 2) {
            break;
        }
    }
    out[n] = '\0';
    close(fd);
    return out;
}

QB_TEST(ws_server_http_routes_and_handshake_policy)
{
    char dir[] = "/tmp/qb-test-ws-XXXXXX";
    QB_CHECK(mkdtemp(dir) != NULL);
    char ing[256], pub[256], web[300], idx[320], secret[300];
    snprintf(ing, sizeof ing, "ipc://%s/in.ipc", dir);
    snprintf(pub, sizeof pub, "ipc://%s/pub.ipc", dir);
    snprintf(web, sizeof web, "%s/web", dir);
    snprintf(idx, sizeof idx, "%s/index.html", web);
    snprintf(secret, sizeof secret, "%s/secret.txt", dir);
    mkdir(web, 0755);
    FILE *f = fopen(idx, "w");
    fputs("<html>quotebus</html>", f);
    fclose(f);
    f = fopen(secret, "w");
    fputs("secret", f);
    fclose(f);
    const char *ingv[] = {ing}, *pubv[] = {pub};
    qb_broker_config bc = {.ingest_urls = ingv, .n_ingest = 1, .pub_urls = pubv, .n_pub = 1};
    qb_broker *b = NULL;
    QB_CHECK_EQ_INT(qb_broker_new(&bc, &b), QB_OK);
    int port = t_free_port();
    qb_ws_config wc = {.host = "127.0.0.1",
                       .port = port,
                       .web_root = web,
                       .token = "tok",
                       .max_clients = 1,
                       .broker = b};
    qb_ws *ws = NULL;
    QB_CHECK_EQ_INT(qb_ws_new(&wc, &ws), QB_OK);
    /* The same port again: refused cleanly. */
    qb_ws *ws2 = NULL;
    QB_CHECK_EQ_INT(qb_ws_new(&wc, &ws2), QB_ETRANSPORT);
    QB_CHECK(ws2 == NULL);
    qb_broker_set_tap(b, qb_ws_offer, ws);

    char *r = t_http(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    QB_CHECK(strncmp(r, "HTTP/1.1 200", 12) == 0);
    QB_CHECK(strcasestr(r, "text/html") != NULL && strstr(r, "<html>quotebus</html>") != NULL);
    free(r);
    r = t_http(port, "GET /../secret.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    QB_CHECK(strstr(r, "secret") == NULL || strstr(r, "\r\n\r\nsecret") == NULL);
    QB_CHECK(strstr(r, "\r\n\r\nsecret") == NULL);
    free(r);
    r = t_http(port, "GET /%2e%2e/secret.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    QB_CHECK(strstr(r, "\r\n\r\nsecret") == NULL);
    free(r);
    r = t_http(port, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    QB_CHECK(strncmp(r, "HTTP/1.1 200", 12) == 0 && strstr(r, "\"status\":\"ok\"") != NULL);
    free(r);
    r = t_http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    QB_CHECK(strncmp(r, "HTTP/1.1 401", 12) == 0);
    free(r);
    r = t_http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n\r\n");
    QB_CHECK(strncmp(r, "HTTP/1.1 200", 12) == 0 && strstr(r, "quotebus_ws_clients 0") != NULL);
    free(r);
    r = t_http(port, "GET /metrics?token=tok HTTP/1.1\r\nHost: x\r\n\r\n");
    QB_CHECK(strncmp(r, "HTTP/1.1 200", 12) == 0);
    free(r);
    /* A websocket from a foreign Origin: upgraded, then closed 1008 with
     * the reason (close frame: 0x88, length, 0x03f0 = 1008). */
    r = t_http(port, "GET /ws?token=tok HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\nOrigin: http://evil.example\r\n\r\n");
    const char *body = strstr(r, "\r\n\r\n");
    QB_CHECK(strncmp(r, "HTTP/1.1 101", 12) == 0 && body != NULL);
    if (body != NULL) {
        const unsigned char *fr = (const unsigned char *)body + 4;
        QB_CHECK(fr[0] == 0x88 && fr[2] == 0x03 && fr[3] == 0xf0);
    }
    free(r);
    /* No token: 1008 as well. */
    r = t_http(port, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n");
    body = strstr(r, "\r\n\r\n");
    QB_CHECK(body != NULL && (unsigned char)body[4] == 0x88 && (unsigned char)body[7] == 0xf0);
    free(r);
    qb_ws_stats st;
    usleep(300000); /* the counters are copied every 250 ms */
    qb_ws_stats_get(ws, &st);
    QB_CHECK_EQ_INT(st.ws_rejected_origin, 1);
    QB_CHECK_EQ_INT(st.ws_rejected_token, 1);
    QB_CHECK(st.http_requests >= 7);

    qb_broker_set_tap(b, NULL, NULL);
    qb_ws_free(ws);
    qb_broker_free(b);
    remove(idx);
    remove(secret);
    rmdir(web);
    rmdir(dir);
}

int main(void)
{
    return qb_test_run_all();
}
