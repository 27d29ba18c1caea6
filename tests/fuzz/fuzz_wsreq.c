/*
 * fuzz_wsreq.c: fuzz target of the broker's websocket request handling
 * (broker/wsq.c: qb_wsq_client_request, the JSON request protocol of
 * proto/PROTOCOL.md, and the per-client queues it fills) and of the pure
 * HTTP helpers ws.c calls on every handshake (qb_wsq_web_path,
 * qb_wsq_origin_ok, qb_wsq_token_ok). The core has no sockets, so this is
 * the same code the endpoint runs, driven directly.
 *
 * Input: records separated by QB_FUZZ_SEP. A record starting with
 *   'B'  the rest is a request from client B (msgpack data form);
 *   'F'  the rest is a wire frame; when it decodes (as the broker validates
 *        before fanning out) it goes to qb_wsq_frame;
 *   'D'  both clients' queues are drained (peek/pop, as WRITEABLE does);
 *   'T'  the clock moves 1 s and qb_wsq_tick runs;
 *   'W'  the rest is a URL for qb_wsq_web_path;
 *   'O'  the rest is "origin|host" for qb_wsq_origin_ok;
 *   'K'  the rest is "authorization|query-token" for qb_wsq_token_ok;
 *   else the record is a request from client A (JSON data form).
 * Invariants: web paths never escape the root (no "..", start with '/');
 * queued messages are non-empty; subscriptions stay within max_subs.
 */
#include "fuzz.h"

#include "buf.h"
#include "err.h"
#include "log.h"
#include "msg.h"
#include "wsq.h"

#define FW_HEADROOM 16

static qb_decoder *fw_dec;

static int fw_snapshot(void *arg, qb_str topic, qb_buf *out)
{
    (void)arg;
    /* A small valid book for book.<ex>.<sym> topics, as the broker has. */
    const char *d1 = memchr(topic.p, '.', topic.n);
    if (topic.n < 5 || memcmp(topic.p, "book.", 5) != 0 || d1 == NULL) {
        return QB_ENOTFOUND;
    }
    const char *ex = d1 + 1;
    const char *end = topic.p + topic.n;
    const char *d2 = memchr(ex, '.', (size_t)(end - ex));
    if (d2 == NULL) {
        return QB_ENOTFOUND;
    }
    static const qb_level bids[] = {{{100, 0}, {2, 0}}}, asks[] = {{{101, 0}, {3, 0}}};
    qb_msg m;
    memset(&m, 0, sizeof m);
    m.type = QB_MSG_SNAPSHOT;
    m.version = QB_PROTO_VERSION;
    m.exchange = (qb_str){ex, (size_t)(d2 - ex)};
    m.symbol = (qb_str){d2 + 1, (size_t)(end - d2 - 1)};
    m.native = m.symbol;
    m.seq = 5;
    m.last_id = 9;
    m.bids = bids;
    m.n_bids = 1;
    m.asks = asks;
    m.n_asks = 1;
    m.refresh = true;
    return qb_msg_encode(&m, out) == QB_OK ? QB_OK : QB_ENOTFOUND;
}

static void fw_topics(void *arg, void (*fn)(void *, qb_str), void *fn_arg)
{
    (void)arg;
    fn(fn_arg, QB_STR("book.binance.BTC-USDT"));
    fn(fn_arg, QB_STR("trade.binance.BTC-USDT"));
    fn(fn_arg, QB_STR("status.htx.ETH-USDT"));
}

static int fw_list(void *arg, qb_buf *out)
{
    (void)arg;
    return qb_buf_append(out, "[]", 2);
}

static void fw_wake(void *arg, qb_wsq_client *c)
{
    (void)arg;
    (void)c;
}

static void fw_drain(qb_wsq_client *c)
{
    uint8_t *p;
    size_t len;
    bool binary;
    int guard = 0;
    while (qb_wsq_client_peek(c, &p, &len, &binary)) {
        QB_FUZZ_CHECK(len > 0 && p != NULL);
        /* The headroom must be writable (lws_write puts its header there). */
        memset(p - FW_HEADROOM, 0, FW_HEADROOM);
        volatile uint8_t last = p[len - 1];
        (void)last;
        qb_wsq_client_pop(c);
        QB_FUZZ_CHECK(++guard < 1000000);
    }
}

/* No component is empty ("//"), "." or ".." (nor hidden: ".x"). */
static int fw_path_safe(const char *path)
{
    const char *c = path + 1;
    for (;;) {
        const char *e = strchr(c, '/');
        size_t n = e ? (size_t)(e - c) : strlen(c);
        if (n == 0 || c[0] == '.') {
            return 0;
        }
        if (e == NULL) {
            return 1;
        }
        c = e + 1;
    }
}

static char *fw_cstr(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL) {
        abort();
    }
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fw_dec == NULL) {
        qb_log_set_level(QB_LOG_ERROR);
        fw_dec = qb_decoder_new();
        if (fw_dec == NULL) {
            abort();
        }
    }
    static const qb_wsq_ops ops = {
        .snapshot = fw_snapshot,
        .topics = fw_topics,
        .list = fw_list,
        .wake = fw_wake,
        .arg = NULL,
    };
    qb_wsq_limits lim;
    memset(&lim, 0, sizeof lim);
    lim.max_subs = 8;
    lim.queue_entries = 64;
    lim.soft_bytes = 4096;
    lim.hard_bytes = 16384;
    lim.hard_ms = 3000;
    lim.rate = 20;
    lim.max_topics = 32;
    lim.headroom = FW_HEADROOM;
    qb_wsq *q = qb_wsq_new(&lim, &ops);
    if (q == NULL) {
        abort();
    }
    qb_wsq_client *a = qb_wsq_client_new(q, false, NULL);
    qb_wsq_client *b = qb_wsq_client_new(q, true, NULL);
    if (a == NULL || b == NULL) {
        abort();
    }
    uint64_t now = 1000000000ull;
    size_t pos = 0;
    const uint8_t *rec;
    size_t len;
    while (qb_fuzz_next_record(data, size, &pos, &rec, &len)) {
        now += 1000000; /* 1 ms per record */
        char kind = len ? (char)rec[0] : 0;
        const uint8_t *r = rec + (len ? 1 : 0);
        size_t rn = len ? len - 1 : 0;
        switch (kind) {
        case 'B':
            qb_wsq_client_request(b, (const char *)r, rn, now);
            break;
        case 'F': {
            qb_str t;
            qb_msg m;
            if (qb_decoder_begin(fw_dec, r, rn, &t) != QB_OK) {
                break;
            }
            int rc, ok = 1;
            while ((rc = qb_decoder_next(fw_dec, &m)) == QB_OK) {
            }
            ok = rc == QB_EEOF;
            if (ok) {
                qb_wsq_frame(q, r, rn);
            }
            break;
        }
        case 'D':
            fw_drain(a);
            fw_drain(b);
            break;
        case 'T':
            now += 1000000000ull;
            qb_wsq_tick(q, now);
            break;
        case 'W': {
            char *u = fw_cstr(r, rn);
            char out[256];
            if (qb_wsq_web_path(u, out, sizeof out)) {
                QB_FUZZ_CHECK(out[0] == '/');
                QB_FUZZ_CHECK(fw_path_safe(out));
                QB_FUZZ_CHECK(qb_wsq_mime(out) != NULL);
            }
            free(u);
            break;
        }
        case 'O':
        case 'K': {
            char *u = fw_cstr(r, rn);
            char *bar = strchr(u, '|');
            const char *second = NULL;
            if (bar) {
                *bar = '\0';
                second = bar + 1;
            }
            if (kind == 'O') {
                static const char *const allow[] = {"http://localhost:8000"};
                (void)qb_wsq_origin_ok(u, second, allow, 1);
            } else {
                QB_FUZZ_CHECK(qb_wsq_token_ok(NULL, u, second));
                (void)qb_wsq_token_ok("s3cret", u, second);
            }
            free(u);
            break;
        }
        default:
            qb_wsq_client_request(a, (const char *)rec, len, now);
            break;
        }
        QB_FUZZ_CHECK(qb_wsq_client_subs(a) <= lim.max_subs);
        QB_FUZZ_CHECK(qb_wsq_client_subs(b) <= lim.max_subs);
        const char *reason;
        (void)qb_wsq_client_close_code(a, &reason);
    }
    fw_drain(a);
    fw_drain(b);
    qb_wsq_client_free(a);
    qb_wsq_client_free(b);
    qb_wsq_free(q);
    return 0;
}
