/*
 * test_proto_rules.c: the protocol's two rules, one table each, asked of
 * every part of quotebus that applies them, which must all answer alike.
 *
 *   topics (proto/topic.h)   qb_topic_parse, qb_topic_sub_len; the frame
 *                            decoder (every receiver's first check); the
 *                            broker's ingest (a real broker, frames over
 *                            ipc); the websocket queue's subscribe request;
 *                            libquotebus's qb_subscriber_subscribe and
 *                            qb_mirror_open; the snapshot service's request
 *                            parser (a real service, requests over ipc).
 *                            (quotebus-sub calls qb_topic_sub_len directly:
 *                            no rule of its own, and no function to call.)
 *   sequence (proto/seq.h)   qb_seq_step, qb_seq_on_stream, and the broker's
 *                            topic table (qb_topics_apply), whose events
 *                            are its answers.
 */
#include "harness.h"

#define QUOTEBUS_NO_ERROR_ENUM
#include "quotebus.h"

#include "broker.h"
#include "err.h"
#include "log.h"
#include "msg.h"
#include "seq.h"
#include "snapshot.h"
#include "topic.h"
#include "topics.h"
#include "wsq.h"

#include <msgpack.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/req.h>

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

/* ---- the topic table ---------------------------------------------------- */

enum { SUB_NO, SUB_RAW, SUB_NUL }; /* qb_topic_sub_len: 0, n, n + 1 */

typedef struct topic_case {
    const char *t;
    size_t n; /* 0: strlen(t) */
    qb_topic_form form;
    int sub; /* SUB_*; -1: not a C string (an embedded NUL) */
} topic_case;

static char ex64[] = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"; /* 64 */
static char t128[160], t129[160], tex65[160], tsym65[160];

static const topic_case *topic_cases(size_t *n_out)
{
    /* book.<64 e>.<58 S>: 128 bytes; status.<57 e>.<64 S>: 129 */
    snprintf(t128, sizeof t128, "book.%s.%.58s", ex64, ex64);
    snprintf(t129, sizeof t129, "status.%.57s.%s", ex64, ex64);
    snprintf(tex65, sizeof tex65, "book.%se.BTC-USDT", ex64);
    snprintf(tsym65, sizeof tsym65, "book.binance.%sS", ex64);
    static topic_case c[] = {
        /* valid topics of every kind and exchange */
        {"book.binance.BTC-USDT", 0, QB_TOPIC_EXACT, SUB_NUL},
        {"book.htx.ETH-BTC", 0, QB_TOPIC_EXACT, SUB_NUL},
        {"book.bithumb.BTC-KRW", 0, QB_TOPIC_EXACT, SUB_NUL},
        {"trade.binance.1000SHIB-USDT", 0, QB_TOPIC_EXACT, SUB_NUL},
        {"status.htx.BTC-USDT", 0, QB_TOPIC_EXACT, SUB_NUL},
        {"status.bithumb.ETH-KRW", 0, QB_TOPIC_EXACT, SUB_NUL},
        {"ticker.binance.BTC-USDT", 0, QB_TOPIC_EXACT, SUB_NUL},
        {"book.b.X", 0, QB_TOPIC_EXACT, SUB_NUL},
        {"book.a_b.x~y!#$%&'()*+,/:;<=>?@[]^`{|}", 0, QB_TOPIC_EXACT, SUB_NUL},
        {t128, 0, QB_TOPIC_EXACT, SUB_NUL},
        /* prefixes */
        {"book.", 0, QB_TOPIC_PREFIX, SUB_RAW},
        {"trade.", 0, QB_TOPIC_PREFIX, SUB_RAW},
        {"book.binance.", 0, QB_TOPIC_PREFIX, SUB_RAW},
        {"status.htx.", 0, QB_TOPIC_PREFIX, SUB_RAW},
        /* raw byte prefixes: no topic, but a subscription */
        {"", 0, QB_TOPIC_INVALID, SUB_RAW},
        {"b", 0, QB_TOPIC_INVALID, SUB_RAW},
        {"book", 0, QB_TOPIC_INVALID, SUB_RAW},
        {"book.bin", 0, QB_TOPIC_INVALID, SUB_RAW},
        {"book.binance", 0, QB_TOPIC_INVALID, SUB_RAW},
        {"candles.", 0, QB_TOPIC_INVALID, SUB_RAW},
        {".book.", 0, QB_TOPIC_INVALID, SUB_RAW},
        {"book.binance.BTC-USDT.", 0, QB_TOPIC_INVALID, SUB_RAW},
        /* empty parts, unknown kinds, a third dot */
        {"book..BTC-USDT", 0, QB_TOPIC_INVALID, SUB_NO},
        {".binance.BTC-USDT", 0, QB_TOPIC_INVALID, SUB_NO},
        {"candles.binance.BTC-USDT", 0, QB_TOPIC_INVALID, SUB_NO},
        {"Book.binance.BTC-USDT", 0, QB_TOPIC_INVALID, SUB_NO},
        {"book.binance.BTC.USDT", 0, QB_TOPIC_INVALID, SUB_NO},
        /* bytes outside the rule */
        {"book.binance.BTC USDT", 0, QB_TOPIC_INVALID, SUB_NO},
        {"book.binance.BTC\"USDT", 0, QB_TOPIC_INVALID, SUB_NO},
        {"book.binance.BTC\\USDT", 0, QB_TOPIC_INVALID, SUB_NO},
        {"book.bin\"ance.", 0, QB_TOPIC_INVALID, SUB_NO},
        {"book.binance.BTC\x01", 0, QB_TOPIC_INVALID, SUB_NO},
        {"book.binance.BTC\x7f", 0, QB_TOPIC_INVALID, SUB_NO},
        {"book.binance.BTC\t", 0, QB_TOPIC_INVALID, SUB_NO},
        {"book.binance.BTC-\xc3\xa9", 0, QB_TOPIC_INVALID, SUB_NO},
        {"book.binance.\xff", 0, QB_TOPIC_INVALID, SUB_NO},
        {"book.binance.BTC\0X", 18, QB_TOPIC_INVALID, -1},
        /* too long: a part past 64 bytes, the whole past 128 */
        {tex65, 0, QB_TOPIC_INVALID, SUB_NO},
        {tsym65, 0, QB_TOPIC_INVALID, SUB_NO},
        {t129, 0, QB_TOPIC_INVALID, SUB_NO},
    };
    *n_out = sizeof c / sizeof c[0];
    return c;
}

static size_t case_len(const topic_case *c)
{
    return c->n ? c->n : strlen(c->t);
}

static size_t sub_want(const topic_case *c)
{
    size_t n = case_len(c);
    return c->sub == SUB_NUL ? n + 1 : c->sub == SUB_RAW ? n : 0;
}

static bool starts_book(const topic_case *c)
{
    return case_len(c) >= 5 && memcmp(c->t, "book.", 5) == 0;
}

static void report(const char *who, const topic_case *c, long got, long want)
{
    if (got != want) {
        fprintf(stderr, "%s: topic \"%.*s\" (%zu bytes): %ld, want %ld\n", who, (int)case_len(c),
                c->t, case_len(c), got, want);
    }
}

/* A frame of topic c: for a valid topic a message of its kind with its
 * parts; for any other the map of a valid message after c's bytes. */
static void topic_frame(const topic_case *c, qb_buf *out)
{
    static qb_level lv[] = {{{10000, 2}, {1, 0}}};
    qb_topic tp;
    bool exact = qb_topic_parse(c->t, case_len(c), &tp) == QB_TOPIC_EXACT;
    qb_msg m;
    memset(&m, 0, sizeof m);
    m.version = QB_PROTO_VERSION;
    m.exchange = exact ? tp.ex : QB_STR("binance");
    m.symbol = exact ? tp.sym : QB_STR("BTC-USDT");
    m.native = QB_STR("NATIVE");
    m.seq = 1;
    qb_topic_kind k = exact ? tp.kind : QB_TOPIC_BOOK;
    m.type = k == QB_TOPIC_TRADE    ? QB_MSG_TRADE
             : k == QB_TOPIC_STATUS ? QB_MSG_STATUS
             : k == QB_TOPIC_TICKER ? QB_MSG_TICKER
                                    : QB_MSG_SNAPSHOT;
    m.bids = lv;
    m.n_bids = 1;
    m.price = (qb_dec){10000, 2};
    m.qty = (qb_dec){1, 0};
    m.side = QB_SIDE_BUY;
    m.state = QB_FEED_LIVE;
    m.ticker.last = (qb_dec){10000, 2};
    qb_buf enc = QB_BUF_INIT;
    QB_CHECK_EQ_INT(qb_msg_encode(&m, &enc), QB_OK);
    qb_buf_reset(out);
    if (exact) {
        QB_CHECK_EQ_INT(qb_buf_append(out, enc.data, enc.len), QB_OK);
    } else {
        const uint8_t *nul = memchr(enc.data, 0, enc.len);
        size_t mapn = enc.len - (size_t)(nul + 1 - enc.data);
        QB_CHECK_EQ_INT(qb_buf_append(out, c->t, case_len(c)), QB_OK);
        QB_CHECK_EQ_INT(qb_buf_append(out, "", 1), QB_OK);
        QB_CHECK_EQ_INT(qb_buf_append(out, nul + 1, mapn), QB_OK);
    }
    qb_buf_fini(&enc);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

static char t_dir[96], t_ingest[160], t_pub[160], t_none[160], t_snap[160];

QB_TEST(topic_rule_proto_and_decoder)
{
    size_t n;
    const topic_case *c = topic_cases(&n);
    qb_decoder *d = qb_decoder_new();
    qb_buf f = QB_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        qb_topic tp;
        long form = (long)qb_topic_parse(c[i].t, case_len(&c[i]), &tp);
        report("qb_topic_parse", &c[i], form, (long)c[i].form);
        QB_CHECK_EQ_INT(form, (long)c[i].form);
        if (c[i].sub >= 0) {
            long sl = (long)qb_topic_sub_len(c[i].t);
            report("qb_topic_sub_len", &c[i], sl, (long)sub_want(&c[i]));
            QB_CHECK_EQ_INT(sl, (long)sub_want(&c[i]));
        }
        /* The decoder: the frame is accepted only under an exact topic. */
        topic_frame(&c[i], &f);
        qb_str t;
        qb_msg m;
        bool ok =
            qb_decoder_begin(d, f.data, f.len, &t) == QB_OK && qb_decoder_next(d, &m) == QB_OK;
        report("qb_decoder", &c[i], ok, c[i].form == QB_TOPIC_EXACT);
        QB_CHECK_EQ_INT(ok, c[i].form == QB_TOPIC_EXACT);
    }
    /* parts of an exact topic and of prefixes */
    qb_topic tp;
    QB_CHECK_EQ_INT(qb_topic_parse("trade.htx.ETH-BTC", 17, &tp), QB_TOPIC_EXACT);
    QB_CHECK(tp.kind == QB_TOPIC_TRADE && !tp.prefix);
    QB_CHECK(tp.ex.n == 3 && memcmp(tp.ex.p, "htx", 3) == 0);
    QB_CHECK(tp.sym.n == 7 && memcmp(tp.sym.p, "ETH-BTC", 7) == 0);
    QB_CHECK_EQ_INT(qb_topic_parse("book.binance.", 13, &tp), QB_TOPIC_PREFIX);
    QB_CHECK(tp.kind == QB_TOPIC_BOOK && tp.prefix && tp.ex.n == 7 && tp.sym.n == 0);
    QB_CHECK_EQ_INT(qb_topic_parse("status.", 7, &tp), QB_TOPIC_PREFIX);
    QB_CHECK(tp.kind == QB_TOPIC_STATUS && tp.prefix && tp.ex.n == 0 && tp.sym.n == 0);
    QB_CHECK_EQ_STR(qb_topic_kind_name(QB_TOPIC_TICKER), "ticker");
    qb_buf_fini(&f);
    qb_decoder_free(d);
}

static qb_broker_stats broker_stats(qb_broker *b)
{
    qb_broker_stats s;
    qb_broker_stats_get(b, &s);
    return s;
}

/* Sends f until the broker has received frames_in > before (the first
 * frames of a new PUB pipe may be dropped). */
static bool broker_send(qb_broker *b, nng_socket pub, const qb_buf *f, uint64_t before, bool retry)
{
    for (int i = 0; i < 3000; i++) {
        if (i == 0 || (retry && i % 50 == 0)) {
            QB_CHECK(nng_send(pub, f->data, f->len, 0) == 0);
        }
        if (broker_stats(b).frames_in > before) {
            return true;
        }
        sleep_ms(1);
    }
    return false;
}

/* Frames whose fate is known: messages taken, or frames dropped. */
static uint64_t broker_outcomes(const qb_broker_stats *s)
{
    return s->messages_in + s->bad_msgpack + s->bad_version + s->oversized + s->bad_topic +
           s->rogue_publisher;
}

QB_TEST(topic_rule_broker_ingest)
{
    const char *ing[] = {t_ingest};
    const char *pub[] = {t_pub};
    qb_broker_config cfg = {.ingest_urls = ing, .n_ingest = 1, .pub_urls = pub, .n_pub = 1};
    qb_broker *b = NULL;
    QB_CHECK_EQ_INT(qb_broker_new(&cfg, &b), QB_OK);
    if (b == NULL) {
        return;
    }
    nng_socket p;
    QB_CHECK(nng_pub0_open(&p) == 0);
    QB_CHECK(nng_dial(p, t_ingest, NULL, 0) == 0);
    size_t n;
    const topic_case *c = topic_cases(&n);
    qb_buf f = QB_BUF_INIT;
    /* Until the pipe is up: a valid frame, resent. */
    topic_frame(&c[0], &f);
    QB_CHECK(broker_send(b, p, &f, 0, true));
    sleep_ms(50); /* a resent copy still on its way */
    qb_broker_stats s = broker_stats(b);
    for (int k = 0; k < 3000 && broker_outcomes(&s) != s.frames_in; k++) {
        sleep_ms(1);
        s = broker_stats(b);
    }
    for (size_t i = 0; i < n; i++) {
        topic_frame(&c[i], &f);
        qb_broker_stats s0 = broker_stats(b);
        QB_CHECK(broker_send(b, p, &f, s0.frames_in, false));
        /* frames_in is counted first; wait for the frame's outcome */
        qb_broker_stats s1 = broker_stats(b);
        for (int k = 0; k < 3000 && broker_outcomes(&s1) == broker_outcomes(&s0); k++) {
            sleep_ms(1);
            s1 = broker_stats(b);
        }
        bool accepted = s1.messages_in > s0.messages_in;
        report("broker ingest", &c[i], accepted, c[i].form == QB_TOPIC_EXACT);
        QB_CHECK_EQ_INT(accepted, c[i].form == QB_TOPIC_EXACT);
        QB_CHECK_EQ_INT(s1.bad_topic - s0.bad_topic + s1.bad_msgpack - s0.bad_msgpack,
                        c[i].form == QB_TOPIC_EXACT ? 0 : 1);
    }
    qb_buf_fini(&f);
    nng_close(p);
    qb_broker_free(b);
}

static int ws_snapshot(void *arg, qb_str topic, qb_buf *out)
{
    (void)arg, (void)topic, (void)out;
    return QB_ENOTFOUND;
}

static void ws_topics(void *arg, void (*fn)(void *, qb_str), void *fn_arg)
{
    (void)arg, (void)fn, (void)fn_arg;
}

static int ws_list(void *arg, qb_buf *out)
{
    (void)arg;
    return qb_buf_append(out, "[]", 2);
}

static void ws_wake(void *arg, qb_wsq_client *c)
{
    (void)arg, (void)c;
}

/* {"op":"subscribe","topics":["<t as a JSON string>"]} */
static void ws_request(const topic_case *c, qb_buf *out)
{
    qb_buf_reset(out);
    qb_buf_appendf(out, "{\"op\":\"subscribe\",\"topics\":[\"");
    for (size_t i = 0; i < case_len(c); i++) {
        unsigned char ch = (unsigned char)c->t[i];
        if (ch == '"' || ch == '\\') {
            qb_buf_appendf(out, "\\%c", ch);
        } else if (ch < 0x20 || ch == 0x7f) {
            qb_buf_appendf(out, "\\u%04x", ch);
        } else {
            qb_buf_append(out, &c->t[i], 1);
        }
    }
    qb_buf_appendf(out, "\"]}");
}

QB_TEST(topic_rule_websocket_subscribe)
{
    qb_wsq_limits lim = {.rate = 1000000,
                         .max_subs = 1000000,
                         .queue_entries = 1 << 20,
                         .soft_bytes = 1 << 30,
                         .hard_bytes = 1u << 30};
    qb_wsq_ops ops = {ws_snapshot, ws_topics, ws_list, ws_wake, NULL};
    qb_wsq *q = qb_wsq_new(&lim, &ops);
    QB_CHECK(q != NULL);
    qb_wsq_client *wc = qb_wsq_client_new(q, false, NULL);
    size_t n;
    const topic_case *c = topic_cases(&n);
    qb_buf r = QB_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        size_t before = qb_wsq_client_subs(wc);
        ws_request(&c[i], &r);
        qb_wsq_client_request(wc, (const char *)r.data, r.len, 1);
        uint8_t *p;
        size_t len;
        bool bin;
        while (qb_wsq_client_peek(wc, &p, &len, &bin)) {
            qb_wsq_client_pop(wc);
        }
        bool accepted = qb_wsq_client_subs(wc) > before;
        report("websocket subscribe", &c[i], accepted, c[i].form != QB_TOPIC_INVALID);
        QB_CHECK_EQ_INT(accepted, c[i].form != QB_TOPIC_INVALID);
    }
    qb_buf_fini(&r);
    qb_wsq_client_free(wc);
    qb_wsq_free(q);
}

QB_TEST(topic_rule_libquotebus_subscribe_and_mirror)
{
    qb_subscriber *s = NULL;
    QB_CHECK_EQ_INT(qb_subscriber_open(t_none, &s), QB_OK);
    if (s == NULL) {
        return;
    }
    size_t n;
    const topic_case *c = topic_cases(&n);
    for (size_t i = 0; i < n; i++) {
        if (c[i].sub < 0) {
            continue; /* not a C string */
        }
        /* "" (everything) and raw prefixes subscribe too */
        long want = c[i].sub == SUB_NO ? QB_EINVAL : QB_OK;
        long got = qb_subscriber_subscribe(s, c[i].t);
        report("qb_subscriber_subscribe", &c[i], got, want);
        QB_CHECK_EQ_INT(got, want);
        /* A mirror takes book topics and prefixes by the same rule; it also
         * subscribes to "status.<ex>.<sym>", 2 bytes longer, which must fit. */
        want = starts_book(&c[i]) && c[i].sub != SUB_NO && case_len(&c[i]) + 2 <= QB_TOPIC_MAX
                   ? QB_OK
                   : QB_EINVAL;
        const char *topics[] = {c[i].t};
        qb_mirror_config mc = {.connect = t_none, .snapshot = "", .topics = topics, .n_topics = 1};
        qb_mirror *m = NULL;
        got = qb_mirror_open(&mc, &m);
        report("qb_mirror_open", &c[i], got, want);
        QB_CHECK_EQ_INT(got, want);
        qb_mirror_close(m);
    }
    qb_subscriber_close(s);
}

typedef struct snap_seen {
    int calls;
    bool exact;
} snap_seen;

static int snap_collect(void *arg, qb_str prefix, bool exact, qb_snapshot_sink *sink)
{
    (void)prefix, (void)sink;
    snap_seen *seen = arg;
    seen->calls++;
    seen->exact = exact;
    return QB_OK; /* no book: "unknown_topic" */
}

static int snap_pack_cb(void *data, const char *p, size_t n)
{
    return qb_buf_append(data, p, n) == QB_OK ? 0 : -1;
}

QB_TEST(topic_rule_snapshot_service_request)
{
    snap_seen seen = {0, false};
    const char *urls[] = {t_snap};
    qb_snapshot_config cfg = {
        .urls = urls, .n_urls = 1, .collect = snap_collect, .collect_arg = &seen};
    qb_snapshot *svc = NULL;
    QB_CHECK_EQ_INT(qb_snapshot_new(&cfg, &svc), QB_OK);
    if (svc == NULL) {
        return;
    }
    nng_socket req;
    QB_CHECK(nng_req0_open(&req) == 0);
    nng_socket_set_ms(req, NNG_OPT_RECVTIMEO, 5000);
    nng_socket_set_ms(req, NNG_OPT_SENDTIMEO, 5000);
    QB_CHECK(nng_dial(req, t_snap, NULL, 0) == 0);
    size_t n;
    const topic_case *c = topic_cases(&n);
    qb_buf b = QB_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        msgpack_packer pk;
        qb_buf_reset(&b);
        msgpack_packer_init(&pk, &b, snap_pack_cb);
        msgpack_pack_map(&pk, 3);
        msgpack_pack_str_with_body(&pk, "v", 1);
        msgpack_pack_int(&pk, 1);
        msgpack_pack_str_with_body(&pk, "op", 2);
        msgpack_pack_str_with_body(&pk, "snapshot", 8);
        msgpack_pack_str_with_body(&pk, "topic", 5);
        msgpack_pack_str_with_body(&pk, c[i].t, case_len(&c[i]));
        int calls = seen.calls;
        void *reply = NULL;
        size_t rn = 0;
        QB_CHECK(nng_send(req, b.data, b.len, 0) == 0);
        QB_CHECK(nng_recv(req, &reply, &rn, NNG_FLAG_ALLOC) == 0);
        nng_free(reply, rn);
        /* Book topics and prefixes, by the subscription rule. */
        bool want = starts_book(&c[i]) && c[i].sub > SUB_NO;
        bool accepted = seen.calls > calls;
        report("snapshot service", &c[i], accepted, want);
        QB_CHECK_EQ_INT(accepted, want);
        if (accepted) {
            QB_CHECK_EQ_INT(seen.exact, c[i].form == QB_TOPIC_EXACT);
        }
    }
    qb_buf_fini(&b);
    nng_close(req);
    qb_snapshot_free(svc);
}

/* ---- the sequence table ------------------------------------------------- */

typedef struct seq_case {
    bool has_last;
    uint64_t last, seq;
    qb_seq_type type;
    qb_seq_result want;
    uint64_t missed;
    qb_seq_result on_stream; /* qb_seq_on_stream's answer */
} seq_case;

static const seq_case seq_cases[] = {
    /* the first message of a topic starts the count */
    {false, 0, 7, QB_SEQ_DELTA, QB_SEQ_REBASE, 0, QB_SEQ_REBASE},
    {false, 0, 7, QB_SEQ_OTHER, QB_SEQ_REBASE, 0, QB_SEQ_REBASE},
    {false, 0, 7, QB_SEQ_SNAPSHOT, QB_SEQ_REBASE, 0, QB_SEQ_REBASE},
    {false, 0, 7, QB_SEQ_REFRESH, QB_SEQ_REBASE, 0, QB_SEQ_REBASE},
    /* deltas and other messages */
    {true, 10, 11, QB_SEQ_DELTA, QB_SEQ_NEXT, 0, QB_SEQ_NEXT},
    {true, 10, 11, QB_SEQ_OTHER, QB_SEQ_NEXT, 0, QB_SEQ_NEXT},
    {true, 0, 1, QB_SEQ_DELTA, QB_SEQ_NEXT, 0, QB_SEQ_NEXT},
    {true, 10, 12, QB_SEQ_DELTA, QB_SEQ_GAP, 1, QB_SEQ_GAP},
    {true, 10, 15, QB_SEQ_OTHER, QB_SEQ_GAP, 4, QB_SEQ_GAP},
    {true, 10, 10, QB_SEQ_DELTA, QB_SEQ_DUPLICATE, 0, QB_SEQ_RESTART},
    {true, 10, 9, QB_SEQ_DELTA, QB_SEQ_DUPLICATE, 0, QB_SEQ_RESTART},
    {true, 10, 10, QB_SEQ_OTHER, QB_SEQ_DUPLICATE, 0, QB_SEQ_RESTART},
    {true, 10, 2, QB_SEQ_OTHER, QB_SEQ_DUPLICATE, 0, QB_SEQ_RESTART},
    /* a restarted publisher numbers from 1 (PROTOCOL.md 1.1) */
    {true, 10, 1, QB_SEQ_DELTA, QB_SEQ_RESTART, 0, QB_SEQ_RESTART},
    {true, 1, 1, QB_SEQ_OTHER, QB_SEQ_RESTART, 0, QB_SEQ_RESTART},
    {true, 500, 1, QB_SEQ_OTHER, QB_SEQ_RESTART, 0, QB_SEQ_RESTART},
    /* snapshots rebase; one below the last is a new publisher */
    {true, 10, 11, QB_SEQ_SNAPSHOT, QB_SEQ_REBASE, 0, QB_SEQ_REBASE},
    {true, 10, 40, QB_SEQ_SNAPSHOT, QB_SEQ_REBASE, 0, QB_SEQ_REBASE},
    {true, 10, 10, QB_SEQ_SNAPSHOT, QB_SEQ_REBASE, 0, QB_SEQ_REBASE},
    {true, 10, 3, QB_SEQ_SNAPSHOT, QB_SEQ_RESTART, 0, QB_SEQ_RESTART},
    /* refresh snapshots repeat the seq of the last message they include */
    {true, 10, 10, QB_SEQ_REFRESH, QB_SEQ_REBASE, 0, QB_SEQ_REBASE},
    {true, 10, 9, QB_SEQ_REFRESH, QB_SEQ_DUPLICATE, 0, QB_SEQ_RESTART},
    {true, 10, 13, QB_SEQ_REFRESH, QB_SEQ_GAP, 3, QB_SEQ_GAP},
    /* the end of the range */
    {true, UINT64_MAX - 1, UINT64_MAX, QB_SEQ_DELTA, QB_SEQ_NEXT, 0, QB_SEQ_NEXT},
    {true, UINT64_MAX, UINT64_MAX, QB_SEQ_DELTA, QB_SEQ_DUPLICATE, 0, QB_SEQ_RESTART},
};

QB_TEST(seq_rule_proto)
{
    for (size_t i = 0; i < sizeof seq_cases / sizeof seq_cases[0]; i++) {
        const seq_case *c = &seq_cases[i];
        uint64_t missed = 99;
        qb_seq_result r = qb_seq_step(c->has_last, c->last, c->seq, c->type, &missed);
        if (r != c->want || missed != c->missed) {
            fprintf(stderr, "seq case %zu: %s missed %llu, want %s missed %llu\n", i,
                    qb_seq_result_name(r), (unsigned long long)missed, qb_seq_result_name(c->want),
                    (unsigned long long)c->missed);
        }
        QB_CHECK_EQ_INT(r, c->want);
        QB_CHECK_EQ_INT(missed, c->missed);
        r = qb_seq_on_stream(c->has_last, c->last, c->seq, c->type, NULL);
        QB_CHECK_EQ_INT(r, c->on_stream);
    }
    QB_CHECK(qb_seq_type_of(QB_MSG_SNAPSHOT, true) == QB_SEQ_REFRESH);
    QB_CHECK(qb_seq_type_of(QB_MSG_SNAPSHOT, false) == QB_SEQ_SNAPSHOT);
    QB_CHECK(qb_seq_type_of(QB_MSG_DELTA, false) == QB_SEQ_DELTA);
    QB_CHECK(qb_seq_type_of(QB_MSG_STATUS, false) == QB_SEQ_OTHER);
}

/* The broker's topic table: deltas and trades after a last seq (set by a
 * snapshot, or by a first trade); its events are the rule's answers. Every
 * snapshot replaces the book and rebases there, whatever the answer. */
QB_TEST(seq_rule_broker_topics)
{
    static qb_level lv[] = {{{10000, 2}, {1, 0}}};
    for (size_t i = 0; i < sizeof seq_cases / sizeof seq_cases[0]; i++) {
        const seq_case *c = &seq_cases[i];
        if (c->type == QB_SEQ_SNAPSHOT || c->type == QB_SEQ_REFRESH) {
            continue;
        }
        qb_topics *t = qb_topics_new(0);
        bool book = c->type == QB_SEQ_DELTA;
        qb_str topic = book ? QB_STR("book.binance.BTC-USDT") : QB_STR("trade.binance.BTC-USDT");
        qb_msg m;
        memset(&m, 0, sizeof m);
        m.exchange = QB_STR("binance");
        m.symbol = QB_STR("BTC-USDT");
        m.native = QB_STR("BTCUSDT");
        m.price = (qb_dec){10000, 2};
        m.qty = (qb_dec){1, 0};
        if (c->has_last) {
            m.type = book ? QB_MSG_SNAPSHOT : QB_MSG_TRADE;
            m.seq = c->last;
            m.bids = lv;
            m.n_bids = 1;
            qb_topics_apply(t, topic, &m, 1);
            m.bids = NULL;
            m.n_bids = 0;
        }
        m.type = book ? QB_MSG_DELTA : QB_MSG_TRADE;
        m.seq = c->seq;
        unsigned ev = qb_topics_apply(t, topic, &m, 2) & (QB_TOPICS_GAP | QB_TOPICS_DUPLICATE);
        unsigned want = c->want == QB_SEQ_GAP         ? QB_TOPICS_GAP
                        : c->want == QB_SEQ_DUPLICATE ? QB_TOPICS_DUPLICATE
                                                      : 0;
        if (ev != want) {
            fprintf(stderr, "broker topics, seq case %zu: events %u, want %u\n", i, ev, want);
        }
        QB_CHECK_EQ_INT(ev, want);
        qb_topic_info info;
        QB_CHECK_EQ_INT(qb_topics_info(t, topic, &info), QB_OK);
        /* last seq: kept on a duplicate, else the message's */
        QB_CHECK_EQ_INT(info.last_seq, c->want == QB_SEQ_DUPLICATE ? c->last : c->seq);
        qb_topics_free(t);
    }
}

int main(void)
{
    snprintf(t_dir, sizeof t_dir, "/tmp/qb-rules-%d", (int)getpid());
    snprintf(t_ingest, sizeof t_ingest, "ipc://%s/ingest.ipc", t_dir);
    snprintf(t_pub, sizeof t_pub, "ipc://%s/pub.ipc", t_dir);
    snprintf(t_none, sizeof t_none, "ipc://%s/none.ipc", t_dir);
    snprintf(t_snap, sizeof t_snap, "ipc://%s/snapshot.ipc", t_dir);
    qb_log_set_component("test_proto_rules");
    qb_log_set_level(QB_LOG_ERROR);
    int rc = qb_test_run_all();
    static const char *const files[] = {"ingest.ipc", "pub.ipc", "snapshot.ipc", "none.ipc"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[192];
        snprintf(p, sizeof p, "%s/%s", t_dir, files[i]);
        unlink(p);
        snprintf(p, sizeof p, "%s/%s.lock", t_dir, files[i]);
        unlink(p);
    }
    rmdir(t_dir);
    return rc;
}
