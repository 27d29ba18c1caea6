/*
 * ws.c: the HTTP + websocket endpoint of ws.h (libwebsockets 4.1).
 *
 * Threads and handoff:
 *
 *   ingest thread (broker.c, under the broker's state lock)
 *     qb_ws_offer(): no client connected -> nothing (the hot path pays one
 *       atomic load); else malloc(LWS_PRE + len), memcpy the frame once,
 *       lock; push to the handoff ring or, when it holds handoff_max frames
 *       or handoff_bytes, drop the frame ("drop newest", counted: the
 *       subscribers see the seq gap and wsq.c heals them with a snapshot);
 *       lws_cancel_service() when the ring was empty; unlock.
 *        |
 *        v
 *   lws service thread (the only one calling lws_*):
 *     LWS_CALLBACK_EVENT_WAIT_CANCELLED: take the whole ring under the lock,
 *       then, unlocked, qb_wsq_frame_owned() each frame (no second copy)
 *     WRITEABLE: up to 64 queued messages per callback, while the socket
 *       takes them (lws_send_pipe_choked); lws keeps the unsent rest of a
 *       partial write itself and calls back when it has gone
 *     a 250 ms timer (lws_sul): qb_wsq_tick (slow-client hard limit),
 *       counters copied to atomics for qb_ws_stats_get
 *
 * Books are the broker's (ingest thread); snapshots for new subscribers and
 * for conflated clients are copied under the broker's one state lock
 * (qb_broker_snapshot_frame: a memcpy of the levels, encoded after the
 * unlock). Because the ingest thread hands a frame over while still holding
 * that lock, a copied book is never older than a frame already in the
 * handoff ring; wsq.c skips the deltas the snapshot already contains.
 *
 * Handshake policy (LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION): only /ws;
 * Origin not allowed or bad token: accepted then closed 1008 with a reason
 * (a browser sees the reason, which a refused handshake would hide); more
 * than max_clients: closed 1013. Incoming messages over max_msg: 1009.
 * HTTP: GET only (405 and a close otherwise); files from web_root through
 * qb_wsq_web_path() (no traversal, no hidden files, no listings), /metrics
 * (token when set), /health (both written by metrics.c); a GET of /ws without a websocket upgrade
 * gets 426 with "Upgrade: websocket".
 *
 * Request heads (request line and header fields), measured as received:
 *
 *      0 .. 16 KiB   served                      WS_HTTP_HEAD_MAX
 *   16 .. 32 KiB     431, then the connection is closed
 *   over 32 KiB      closed by libwebsockets without an answer
 *
 * lws 4.1.6 keeps a head in a per-connection table (max_http_header_data,
 * 4 KiB by default, here WS_HTTP_HEAD_TABLE) and closes a connection whose
 * head overflows it, with no callback; its API does not say how big a
 * head was either (header fields it does not know are in the table too,
 * unnamed). So the table is made larger than the limit, and the limit is
 * checked here on the bytes the connection delivered (ws_http_head_bytes):
 * every request of a keep-alive connection and every websocket upgrade
 * (LWS_CALLBACK_HTTP_CONFIRM_UPGRADE) is measured. HTTP/2 (TLS, ALPN h2)
 * streams share a connection: only their header fields lws knows by name
 * are counted, and lws's own limit (the table) applies to the rest.
 */
#include "ws.h"

#include "clock.h"
#include "err.h"
#include "json.h"
#include "listeners.h"
#include "log.h"
#include "metrics.h"
#include "topic.h"

#include <libwebsockets.h>

#include <errno.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define WS_TICK_US (250 * LWS_US_PER_MS)
#define WS_WRITES_PER_CB 64
/* Request heads: larger ones get 431 (16 KiB, Node's default; a browser's
 * head with large cookies fits); lws's table holds twice that, so a head
 * up to there is answered rather than dropped (per connection in its
 * header phase: the table is freed once the head is handled). */
#define WS_HTTP_HEAD_MAX (16 * 1024)
#define WS_HTTP_HEAD_TABLE (32 * 1024)

typedef struct ws_frame {
    uint8_t *buf; /* LWS_PRE + len */
    size_t len;
} ws_frame;

typedef struct ws_pss {
    qb_wsq_client *c;
    int reject_code;
    char reject_reason[64];
    uint8_t *rx;
    size_t rxn, rxcap;
    bool rx_binary;
    bool rx_skip;
    uint8_t *body; /* HTTP: LWS_PRE + body_len */
    size_t body_len;
    bool close_after; /* HTTP: close the connection once body is sent */
} ws_pss;

typedef struct ws_counters {
#define WS_ATOMIC_FIELD_(name, help) _Atomic uint64_t name;
    QB_WS_STATS(WS_ATOMIC_FIELD_)
#undef WS_ATOMIC_FIELD_
} ws_counters;

struct qb_ws {
    /* configuration (copied) */
    char *host, *web_root, *token, *cert, *key;
    char **origins;
    size_t n_origins;
    int port;
    size_t max_clients, max_msg, handoff_max, handoff_bytes;
    unsigned idle_s;
    qb_wsq_limits limits;
    qb_broker *broker;
    qb_snapshot *snapshot;
    struct qb_listeners *listeners;

    /* handoff (ingest -> service thread) */
    pthread_mutex_t mu;
    ws_frame *ring;
    size_t head, n, bytes;
    bool closed;
    atomic_size_t n_clients; /* websocket clients (read by the ingest thread) */

    /* service thread */
    pthread_t thread;
    pthread_cond_t ready_cv;
    bool ready;
    int start_rc;
    atomic_bool stop;
    struct lws_context *ctx;
    lws_sorted_usec_list_t sul;
    lws_retry_bo_t retry;
    qb_wsq *q;
    ws_frame *batch;
    qb_buf snap_scratch;
    uint64_t start_ns;

    ws_counters c;
    _Atomic uint64_t qmirror[sizeof(qb_wsq_stats) / sizeof(uint64_t)];
};

static void ws_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* ---- handoff ---------------------------------------------------------- */

void qb_ws_offer(void *arg, const void *frame, size_t len)
{
    qb_ws *ws = arg;
    if (atomic_load_explicit(&ws->n_clients, memory_order_relaxed) == 0) {
        return;
    }
    uint8_t *buf = malloc(LWS_PRE + len);
    if (buf == NULL) {
        ws_add(&ws->c.ws_handoff_drops, 1);
        return;
    }
    memcpy(buf + LWS_PRE, frame, len);
    pthread_mutex_lock(&ws->mu);
    if (ws->closed || ws->n >= ws->handoff_max || ws->bytes + len > ws->handoff_bytes) {
        pthread_mutex_unlock(&ws->mu);
        free(buf);
        ws_add(&ws->c.ws_handoff_drops, 1);
        QB_LOG_RL(QB_LOG_WARN, "ws.handoff_full",
                  "websocket handoff queue full (%zu frames): frame dropped; clients heal by "
                  "snapshot",
                  ws->handoff_max);
        return;
    }
    ws->ring[(ws->head + ws->n) % ws->handoff_max] = (ws_frame){buf, len};
    ws->n++;
    ws->bytes += len;
    if (ws->n == 1) {
        lws_cancel_service(ws->ctx); /* under the lock: ctx outlives it */
    }
    pthread_mutex_unlock(&ws->mu);
    ws_add(&ws->c.ws_handoff_frames, 1);
}

static void ws_drain(qb_ws *ws)
{
    size_t n;
    pthread_mutex_lock(&ws->mu);
    n = ws->n;
    for (size_t i = 0; i < n; i++) {
        ws->batch[i] = ws->ring[(ws->head + i) % ws->handoff_max];
    }
    ws->head = (ws->head + n) % ws->handoff_max;
    ws->n = 0;
    ws->bytes = 0;
    pthread_mutex_unlock(&ws->mu);
    for (size_t i = 0; i < n; i++) {
        qb_wsq_frame_owned(ws->q, ws->batch[i].buf, ws->batch[i].len);
    }
}

/* ---- wsq callbacks (service thread) ------------------------------------ */

static int ws_op_snapshot(void *arg, qb_str topic, qb_buf *out)
{
    qb_ws *ws = arg;
    return qb_broker_snapshot_frame(ws->broker, topic, &ws->snap_scratch, out);
}

typedef struct ws_topics_arg {
    void (*fn)(void *, qb_str);
    void *fn_arg;
} ws_topics_arg;

static int ws_topics_one(void *arg, qb_str topic, const qb_topic_info *info, const qb_book *book)
{
    (void)info;
    (void)book;
    ws_topics_arg *a = arg;
    a->fn(a->fn_arg, topic);
    return 0;
}

static void ws_op_topics(void *arg, void (*fn)(void *, qb_str), void *fn_arg)
{
    qb_ws *ws = arg;
    ws_topics_arg a = {fn, fn_arg};
    qb_broker_each_topic(ws->broker, ws_topics_one, &a);
}

static int ws_op_list(void *arg, qb_buf *out)
{
    qb_ws *ws = arg;
    return qb__metrics_list(ws->broker, out);
}

static void ws_op_wake(void *arg, qb_wsq_client *c)
{
    (void)arg;
    lws_callback_on_writable(qb_wsq_client_user(c));
}

/* ---- HTTP ------------------------------------------------------------- */

/* The sources of /metrics and /health for one request: the endpoint's
 * counters as they are now, the fan-out core's live ones. */
static void ws_metrics_src(qb_ws *ws, qb_metrics_src *s)
{
    memset(s, 0, sizeof *s);
    s->broker = ws->broker;
    s->snapshot = ws->snapshot;
    s->listeners = ws->listeners;
    s->q = qb_wsq_stats_get(ws->q);
#define WS_SRC_LOAD_(name, help) s->c.name = atomic_load(&ws->c.name);
    QB_WS_STATS(WS_SRC_LOAD_)
#undef WS_SRC_LOAD_
    s->start_ns = ws->start_ns;
}

/* An HTTP/2 stream (TLS with ALPN h2): no reason phrases, no Connection
 * header, several requests on one connection. */
static bool ws_http2(struct lws *wsi)
{
    return lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_COLON_PATH) > 0;
}

enum {
    WS_REPLY_UPGRADE = 1, /* "Upgrade: websocket" (426) */
    WS_REPLY_CLOSE = 2,   /* "Connection: close", and closed once sent */
};

/* Writes the head of a reply with a body of len bytes at *p. lws 4.1.6
 * knows reason phrases up to 417 only: the status lines of 426 and 431
 * are written here (HTTP/1; HTTP/2 has no phrases). */
static int ws_http_head(struct lws *wsi, unsigned status, const char *type, size_t len,
                        unsigned flags, uint8_t **p, uint8_t *end)
{
    const char *phrase = status == 426   ? "Upgrade Required"
                         : status == 431 ? "Request Header Fields Too Large"
                                         : NULL;
    bool h1 = !ws_http2(wsi);
    int bad;
    if (phrase != NULL && h1) {
        char line[64];
        int n = snprintf(line, sizeof line, "HTTP/1.1 %u %s", status, phrase);
        bad = lws_add_http_header_by_name(wsi, NULL, (unsigned char *)line, n, p, end);
    } else {
        bad = lws_add_http_header_status(wsi, status, p, end);
    }
    if (bad ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, (const unsigned char *)type,
                                     (int)strlen(type), p, end) ||
        lws_add_http_header_content_length(wsi, (lws_filepos_t)len, p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)"no-store", 8, p, end)) {
        return -1;
    }
    /* Upgrade and Connection are HTTP/1 only (connection-specific in HTTP/2). */
    if ((flags & WS_REPLY_UPGRADE) && h1 &&
        (lws_add_http_header_by_token(wsi, WSI_TOKEN_UPGRADE, (const unsigned char *)"websocket", 9,
                                      p, end) ||
         lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"Upgrade",
                                      7, p, end))) {
        return -1;
    }
    if (status == 405 && lws_add_http_header_by_name(wsi, (const unsigned char *)"allow:",
                                                     (const unsigned char *)"GET", 3, p, end)) {
        return -1;
    }
    if ((flags & WS_REPLY_CLOSE) && h1 &&
        lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close", 5,
                                     p, end)) {
        return -1;
    }
    return 0;
}

/* Sends the head now and the body from HTTP_WRITEABLE (lws's way). */
static int ws_http_reply(struct lws *wsi, ws_pss *pss, unsigned status, const char *type,
                         const qb_buf *body, unsigned flags)
{
    uint8_t hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
    free(pss->body);
    pss->body = malloc(LWS_PRE + body->len + 1);
    if (pss->body == NULL) {
        return -1;
    }
    memcpy(pss->body + LWS_PRE, body->data, body->len);
    pss->body_len = body->len;
    pss->close_after = (flags & WS_REPLY_CLOSE) != 0;
    if (ws_http_head(wsi, status, type, body->len, flags, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end)) {
        return -1;
    }
    lws_callback_on_writable(wsi);
    return 0;
}

/* Bytes of the head of wsi's current request as the connection delivered
 * them: what was read from the socket (TCP_INFO's bytes received minus
 * those still queued, SIOCINQ) since the previous request of the
 * connection, whose count is kept in the wsi's opaque user data (lws
 * renews the pss for each keep-alive request; the broker uses the opaque
 * data for nothing else). Over TLS that includes the records' framing and,
 * on a connection's first request, the client's handshake (0.5 to 2 KB).
 * At least the total of the header fields lws knows by name, which is all
 * an HTTP/2 stream (its connection shared) or a socket without TCP_INFO
 * gives: there, fields lws does not know are not counted. Once per
 * request: it moves the mark. */
static size_t ws_http_head_bytes(struct lws *wsi)
{
    size_t fields = 0;
    for (int t = 0; t < (int)WSI_TOKEN_COUNT; t++) {
        int n = lws_hdr_total_length(wsi, (enum lws_token_indexes)t);
        fields += n > 0 ? (size_t)n : 0;
    }
    int fd = lws_get_socket_fd(wsi);
    struct tcp_info ti;
    socklen_t tl = sizeof ti;
    int queued = 0;
    if (ws_http2(wsi) || fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) != 0 ||
        tl < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof ti.tcpi_bytes_received ||
        ioctl(fd, SIOCINQ, &queued) != 0) {
        return fields;
    }
    /* Modulo the pointer's width: a difference below 4 GiB is exact. */
    uintptr_t got = (uintptr_t)(ti.tcpi_bytes_received - (uint64_t)(queued > 0 ? queued : 0));
    uintptr_t mark = (uintptr_t)lws_get_opaque_user_data(wsi);
    lws_set_opaque_user_data(wsi, (void *)got);
    size_t wire = (size_t)(got - mark);
    return wire > fields ? wire : fields;
}

/* True (after counting and logging) when the request head is over the
 * limit: the caller answers 431. */
static bool ws_http_head_too_large(qb_ws *ws, struct lws *wsi)
{
    size_t n = ws_http_head_bytes(wsi);
    if (n <= WS_HTTP_HEAD_MAX) {
        return false;
    }
    ws_add(&ws->c.http_head_too_large, 1);
    QB_LOG_RL(QB_LOG_INFO, "ws.head_too_large",
              "HTTP request head of %zu bytes (limit %d): answered 431", n, WS_HTTP_HEAD_MAX);
    return true;
}

/* A refusal that ends the connection (405, 431): on HTTP/1 written at
 * once, head and text, and the connection closed (the caller returns
 * what this returns, -1): nothing of the request is read further, a
 * request body included, which lws would otherwise make the reply wait
 * for. Also the only way to answer a websocket upgrade
 * (LWS_CALLBACK_HTTP_CONFIRM_UPGRADE). On HTTP/2, an ordinary reply that
 * ends the stream. */
static int ws_http_refuse(struct lws *wsi, ws_pss *pss, unsigned status, const char *text)
{
    if (ws_http2(wsi)) {
        qb_buf body = QB_BUF_INIT;
        qb_buf_appendf(&body, "%s", text);
        int rc = pss ? ws_http_reply(wsi, pss, status, "text/plain; charset=utf-8", &body,
                                     WS_REPLY_CLOSE)
                     : -1;
        qb_buf_fini(&body);
        return rc;
    }
    uint8_t buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
    size_t blen = strlen(text);
    bool head_only = lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) > 0;
    if (ws_http_head(wsi, status, "text/plain; charset=utf-8", blen, WS_REPLY_CLOSE, &p, end) ||
        lws_finalize_http_header(wsi, &p, end) || (size_t)(end - p) < blen) {
        return -1;
    }
    if (!head_only) {
        memcpy(p, text, blen);
        p += blen;
    }
    (void)lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_FINAL);
    return -1;
}

static bool ws_token_ok(qb_ws *ws, struct lws *wsi)
{
    if (ws->token == NULL || ws->token[0] == '\0') {
        return true;
    }
    char auth[512] = "", qtok[512] = "";
    bool has_auth = lws_hdr_copy(wsi, auth, sizeof auth, WSI_TOKEN_HTTP_AUTHORIZATION) > 0;
    /* Returns a pointer into qtok just past "token=". */
    const char *q = lws_get_urlarg_by_name(wsi, "token=", qtok, sizeof qtok);
    return qb_wsq_token_ok(ws->token, has_auth ? auth : NULL, q);
}

static int ws_http(qb_ws *ws, struct lws *wsi, ws_pss *pss, const char *url)
{
    ws_add(&ws->c.http_requests, 1);
    qb_buf body = QB_BUF_INIT;
    int rc;
    if (ws_http_head_too_large(ws, wsi)) {
        rc = ws_http_refuse(wsi, pss, 431, "request head over 16 KiB\n");
    } else if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0) {
        rc = ws_http_refuse(wsi, pss, 405, "only GET is served here\n");
    } else if (strcmp(url, "/ws") == 0) {
        /* A websocket upgrade never gets here (FILTER_PROTOCOL_CONNECTION). */
        ws_add(&ws->c.http_upgrade_required, 1);
        qb_buf_appendf(&body, "/ws is the websocket endpoint: connect with a websocket client "
                              "(Upgrade: websocket; proto/PROTOCOL.md section 12)\n");
        rc = ws_http_reply(wsi, pss, 426, "text/plain; charset=utf-8", &body, WS_REPLY_UPGRADE);
    } else if (strcmp(url, "/metrics") == 0 || strcmp(url, "/health") == 0) {
        bool metrics = url[1] == 'm';
        if (metrics && !ws_token_ok(ws, wsi)) {
            ws_add(&ws->c.http_forbidden, 1);
            qb_buf_appendf(&body, "a bearer token is required (Authorization: Bearer T or "
                                  "?token=T)\n");
            rc = ws_http_reply(wsi, pss, 401, "text/plain; charset=utf-8", &body, 0);
        } else if (metrics) {
            qb_metrics_src src;
            ws_metrics_src(ws, &src);
            qb__metrics_write(&src, &body);
            rc = ws_http_reply(wsi, pss, 200, "text/plain; version=0.0.4; charset=utf-8", &body, 0);
        } else {
            qb_metrics_src src;
            ws_metrics_src(ws, &src);
            qb__metrics_health(&src, &body);
            rc = ws_http_reply(wsi, pss, 200, "application/json", &body, 0);
        }
    } else {
        char rel[256], full[4096];
        struct stat stt;
        if (ws->web_root == NULL || !qb_wsq_web_path(url, rel, sizeof rel) ||
            snprintf(full, sizeof full, "%s%s", ws->web_root, rel) >= (int)sizeof full ||
            stat(full, &stt) != 0 || !S_ISREG(stt.st_mode)) {
            ws_add(&ws->c.http_not_found, 1);
            qb_buf_appendf(&body, "not found\n");
            rc = ws_http_reply(wsi, pss, 404, "text/plain; charset=utf-8", &body, 0);
        } else {
            qb_buf_fini(&body);
            int n = lws_serve_http_file(wsi, full, qb_wsq_mime(rel), NULL, 0);
            if (n < 0 || (n > 0 && lws_http_transaction_completed(wsi))) {
                return -1;
            }
            return 0;
        }
    }
    qb_buf_fini(&body);
    return rc;
}

/* ---- websocket ---------------------------------------------------------- */

static int ws_filter(qb_ws *ws, struct lws *wsi, ws_pss *pss)
{
    char uri[256] = "", origin[512] = "", host[512] = "";
    if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, "/ws") != 0) {
        ws_add(&ws->c.http_not_found, 1);
        QB_LOG_RL(QB_LOG_INFO, "ws.bad_path", "websocket handshake on %s refused (only /ws)", uri);
        return -1;
    }
    bool has_origin = lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN) > 0;
    lws_hdr_copy(wsi, host, sizeof host, WSI_TOKEN_HOST);
    if (!qb_wsq_origin_ok(has_origin ? origin : NULL, host, (const char *const *)ws->origins,
                          ws->n_origins)) {
        ws_add(&ws->c.ws_rejected_origin, 1);
        pss->reject_code = 1008;
        snprintf(pss->reject_reason, sizeof pss->reject_reason, "origin not allowed");
        QB_LOG_RL(QB_LOG_WARN, "ws.origin_refused",
                  "websocket from Origin %.100s refused (Host %.100s; allow more with "
                  "--http-origin)",
                  origin, host);
    } else if (!ws_token_ok(ws, wsi)) {
        ws_add(&ws->c.ws_rejected_token, 1);
        pss->reject_code = 1008;
        snprintf(pss->reject_reason, sizeof pss->reject_reason, "bad or missing token");
        QB_LOG_RL(QB_LOG_WARN, "ws.token_refused", "websocket with a bad or missing token");
    } else if (atomic_load(&ws->n_clients) >= ws->max_clients) {
        ws_add(&ws->c.ws_rejected_full, 1);
        pss->reject_code = 1013;
        snprintf(pss->reject_reason, sizeof pss->reject_reason, "too many clients");
        QB_LOG_RL(QB_LOG_WARN, "ws.too_many_clients", "websocket refused: %zu clients already",
                  ws->max_clients);
    }
    return 0;
}

static int ws_close(struct lws *wsi, int code, const char *reason)
{
    lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)reason, strlen(reason));
    return -1;
}

static int ws_writeable(qb_ws *ws, struct lws *wsi, ws_pss *pss)
{
    (void)ws;
    if (pss->reject_code != 0) {
        return ws_close(wsi, pss->reject_code, pss->reject_reason);
    }
    qb_wsq_client *c = pss->c;
    if (c == NULL) {
        return 0;
    }
    const char *why;
    int code = qb_wsq_client_close_code(c, &why);
    if (code != 0) {
        return ws_close(wsi, code, why);
    }
    for (int k = 0; k < WS_WRITES_PER_CB; k++) {
        uint8_t *p;
        size_t len;
        bool binary;
        if (!qb_wsq_client_peek(c, &p, &len, &binary)) {
            code = qb_wsq_client_close_code(c, &why);
            return code != 0 ? ws_close(wsi, code, why) : 0;
        }
        int n = lws_write(wsi, p, len, binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
        if (n < (int)len) {
            QB_LOG_RL(QB_LOG_INFO, "ws.write_failed", "websocket write failed; closing");
            return -1;
        }
        qb_wsq_client_pop(c);
        if (lws_send_pipe_choked(wsi)) {
            break;
        }
    }
    lws_callback_on_writable(wsi);
    return 0;
}

static int ws_receive(qb_ws *ws, struct lws *wsi, ws_pss *pss, const void *in, size_t len)
{
    if (pss->c == NULL) {
        return 0; /* rejected, closing */
    }
    if (lws_is_first_fragment(wsi)) {
        pss->rxn = 0;
        pss->rx_binary = lws_frame_is_binary(wsi);
    }
    if (pss->rxn + len > ws->max_msg) {
        ws_add(&ws->c.ws_too_big_closes, 1);
        QB_LOG_RL(QB_LOG_WARN, "ws.too_big", "websocket message over %zu bytes: closing 1009",
                  ws->max_msg);
        char why[64];
        snprintf(why, sizeof why, "message over %zu bytes", ws->max_msg);
        return ws_close(wsi, 1009, why);
    }
    if (pss->rxn + len > pss->rxcap) {
        size_t ncap = pss->rxcap ? pss->rxcap : 1024;
        while (ncap < pss->rxn + len) {
            ncap *= 2;
        }
        uint8_t *nb = realloc(pss->rx, ncap);
        if (nb == NULL) {
            return -1;
        }
        pss->rx = nb;
        pss->rxcap = ncap;
    }
    memcpy(pss->rx + pss->rxn, in, len);
    pss->rxn += len;
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0) {
        return 0;
    }
    if (pss->rx_binary) {
        qb_wsq_client_error(pss->c, "bad_request",
                            "binary messages are not requests: send JSON text");
    } else {
        qb_wsq_client_request(pss->c, (const char *)pss->rx, pss->rxn, qb_mono_ns());
    }
    pss->rxn = 0;
    /* Replies free the buffer of a big request sooner. */
    if (pss->rxcap > 16384) {
        free(pss->rx);
        pss->rx = NULL;
        pss->rxcap = 0;
    }
    return 0;
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    ws_pss *pss = user;
    qb_ws *ws = lws_context_user(lws_get_context(wsi));
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        /* Sent once per protocol: the second drain finds nothing. */
        if (ws != NULL && ws->q != NULL) {
            ws_drain(ws);
        }
        return 0;
    case LWS_CALLBACK_HTTP:
        return ws_http(ws, wsi, pss, in ? (const char *)in : "/");
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (pss == NULL || pss->body == NULL) {
            return 0;
        }
        if (lws_write(wsi, pss->body + LWS_PRE, pss->body_len, LWS_WRITE_HTTP_FINAL) <
            (int)pss->body_len) {
            return -1;
        }
        free(pss->body);
        pss->body = NULL;
        if (pss->close_after) {
            return -1;
        }
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        /* The head of a websocket upgrade is measured like any request's. */
        if (ws_http_head_too_large(ws, wsi)) {
            return ws_http_refuse(wsi, NULL, 431, "request head over 16 KiB\n");
        }
        return 0;
    case LWS_CALLBACK_HTTP_FILE_COMPLETION:
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
        if (pss != NULL) {
            free(pss->body);
            pss->body = NULL;
        }
        return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return ws_filter(ws, wsi, pss);
    case LWS_CALLBACK_ESTABLISHED: {
        if (pss->reject_code != 0) {
            lws_callback_on_writable(wsi);
            return 0;
        }
        bool msgpack = strcmp(lws_get_protocol(wsi)->name, "quotebus.msgpack.v1") == 0;
        pss->c = qb_wsq_client_new(ws->q, msgpack, wsi);
        if (pss->c == NULL) {
            return -1;
        }
        atomic_fetch_add(&ws->n_clients, 1);
        ws_add(&ws->c.ws_accepted, 1);
        QB_DEBUG("ws.connect", "websocket client connected (%s)", msgpack ? "msgpack" : "json");
        return 0;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return ws_writeable(ws, wsi, pss);
    case LWS_CALLBACK_RECEIVE:
        return ws_receive(ws, wsi, pss, in, len);
    case LWS_CALLBACK_CLOSED:
        if (pss != NULL && pss->c != NULL) {
            qb_wsq_client_free(pss->c);
            pss->c = NULL;
            atomic_fetch_sub(&ws->n_clients, 1);
        }
        if (pss != NULL) {
            free(pss->rx);
            pss->rx = NULL;
        }
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols ws_protocols[] = {
    /* The first is also the HTTP handler and the default websocket
     * protocol of a client that asks for none. */
    {"quotebus.json.v1", ws_callback, sizeof(ws_pss), 16384, 0, NULL, 0},
    {"quotebus.msgpack.v1", ws_callback, sizeof(ws_pss), 16384, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- service thread ----------------------------------------------------- */

static void ws_tick(lws_sorted_usec_list_t *sul)
{
    qb_ws *ws = lws_container_of(sul, qb_ws, sul);
    qb_wsq_tick(ws->q, qb_mono_ns());
    const uint64_t *src = (const uint64_t *)(const void *)qb_wsq_stats_get(ws->q);
    for (size_t i = 0; i < sizeof(qb_wsq_stats) / sizeof(uint64_t); i++) {
        atomic_store_explicit(&ws->qmirror[i], src[i], memory_order_relaxed);
    }
    lws_sul_schedule(ws->ctx, 0, &ws->sul, ws_tick, WS_TICK_US);
}

static void ws_lws_log(int level, const char *line)
{
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
        n--;
    }
    QB_LOG_RL(level == LLL_ERR ? QB_LOG_WARN : QB_LOG_INFO, "lws", "%.*s", (int)n, line);
}

static void ws_ready(qb_ws *ws, int rc)
{
    pthread_mutex_lock(&ws->mu);
    ws->start_rc = rc;
    ws->ready = true;
    pthread_cond_signal(&ws->ready_cv);
    pthread_mutex_unlock(&ws->mu);
}

/* false when host:port is certainly taken (EADDRINUSE). lws 4.1.6 leaks a
 * little when lws_create_context fails to bind, and a busy port is the
 * common failure, so it is found out here first. Hosts that are not
 * numeric addresses (lws also takes interface names) are left to lws. */
static bool ws_port_free(const char *host, int port)
{
    struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    bool any = strcmp(host, "*") == 0;
    if (getaddrinfo(any ? NULL : host, ps, &hints, &ai) != 0 || ai == NULL) {
        return true;
    }
    bool ok = true;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno == EADDRINUSE) {
            ok = false;
        }
        close(fd);
    }
    freeaddrinfo(ai);
    return ok;
}

static void *ws_main(void *arg)
{
    qb_ws *ws = arg;
    qb_wsq_ops ops = {
        .snapshot = ws_op_snapshot,
        .topics = ws_op_topics,
        .list = ws_op_list,
        .wake = ws_op_wake,
        .arg = ws,
    };
    ws->limits.headroom = LWS_PRE;
    ws->q = qb_wsq_new(&ws->limits, &ops);
    if (ws->q == NULL) {
        ws_ready(ws, QB_ENOMEM);
        return NULL;
    }
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = ws->port;
    bool any = strcmp(ws->host, "0.0.0.0") == 0 || strcmp(ws->host, "::") == 0 ||
               strcmp(ws->host, "*") == 0;
    info.iface = any ? NULL : ws->host;
    info.protocols = ws_protocols;
    info.user = ws;
    if (strchr(ws->host, ':') == NULL && strcmp(ws->host, "*") != 0) {
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    }
    if (ws->cert != NULL) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = ws->cert;
        info.ssl_private_key_filepath = ws->key;
    }
    info.timeout_secs = 10;
    info.max_http_header_data = WS_HTTP_HEAD_TABLE;
    ws->retry.secs_since_valid_ping = (uint16_t)ws->idle_s;
    ws->retry.secs_since_valid_hangup = (uint16_t)(ws->idle_s * 2);
    info.retry_and_idle_policy = &ws->retry;
    info.vhost_name = "quotebus";
    if (!ws_port_free(ws->host, ws->port)) {
        QB_ERROR("ws.listen_failed", "cannot serve HTTP/websocket on %s:%d: address in use",
                 ws->host, ws->port);
        qb_wsq_free(ws->q);
        ws->q = NULL;
        ws_ready(ws, QB_ETRANSPORT);
        return NULL;
    }
    struct lws_context *ctx = lws_create_context(&info);
    if (ctx == NULL) {
        QB_ERROR("ws.listen_failed",
                 "cannot serve HTTP/websocket on %s:%d%s (see the lws lines "
                 "above)",
                 ws->host, ws->port, ws->cert ? " with TLS" : "");
        qb_wsq_free(ws->q);
        ws->q = NULL;
        ws_ready(ws, QB_ETRANSPORT);
        return NULL;
    }
    pthread_mutex_lock(&ws->mu);
    ws->ctx = ctx;
    pthread_mutex_unlock(&ws->mu);
    lws_sul_schedule(ctx, 0, &ws->sul, ws_tick, WS_TICK_US);
    QB_INFO("ws.listening", "http%s://%s:%d/ (page), /ws (websocket), /metrics, /health",
            ws->cert ? "s" : "", ws->host, ws->port);
    ws_ready(ws, QB_OK);
    while (!atomic_load(&ws->stop)) {
        lws_service(ctx, 0);
    }
    lws_sul_cancel(&ws->sul);
    pthread_mutex_lock(&ws->mu);
    ws->closed = true;
    pthread_mutex_unlock(&ws->mu);
    lws_context_destroy(ctx); /* closes every connection: CLOSED frees its client */
    return NULL;
}

static char *ws_dup(const char *s)
{
    return s != NULL && s[0] != '\0' ? strdup(s) : NULL;
}

int qb_ws_new(const qb_ws_config *cfg, qb_ws **out)
{
    if (cfg == NULL || cfg->broker == NULL || cfg->host == NULL || cfg->port <= 0 ||
        cfg->port > 65535 || ((cfg->cert == NULL) != (cfg->key == NULL))) {
        return QB_EINVAL;
    }
    qb_ws *ws = calloc(1, sizeof *ws);
    if (ws == NULL) {
        return QB_ENOMEM;
    }
    pthread_mutex_init(&ws->mu, NULL);
    pthread_cond_init(&ws->ready_cv, NULL);
    ws->start_ns = qb_mono_ns();
    ws->host = strdup(cfg->host);
    ws->web_root = ws_dup(cfg->web_root);
    ws->token = ws_dup(cfg->token);
    ws->cert = ws_dup(cfg->cert);
    ws->key = ws_dup(cfg->key);
    ws->port = cfg->port;
    ws->max_clients = cfg->max_clients ? cfg->max_clients : 1000;
    ws->max_msg = cfg->max_msg ? cfg->max_msg : 64 * 1024;
    ws->idle_s = cfg->idle_s ? cfg->idle_s : 30;
    ws->handoff_max = cfg->handoff_max ? cfg->handoff_max : 16384;
    ws->handoff_bytes = cfg->handoff_bytes ? cfg->handoff_bytes : (64u << 20);
    ws->limits = cfg->limits;
    ws->broker = cfg->broker;
    ws->snapshot = cfg->snapshot;
    ws->listeners = cfg->listeners;
    ws->ring = calloc(ws->handoff_max, sizeof *ws->ring);
    ws->batch = calloc(ws->handoff_max, sizeof *ws->batch);
    ws->origins = calloc(cfg->n_origins + 1, sizeof *ws->origins);
    bool oom = ws->host == NULL || ws->ring == NULL || ws->batch == NULL || ws->origins == NULL;
    for (size_t i = 0; !oom && i < cfg->n_origins; i++) {
        if ((ws->origins[i] = strdup(cfg->origins[i])) == NULL) {
            oom = true;
        }
        ws->n_origins = i + 1;
    }
    if (oom) {
        qb_ws_free(ws);
        return QB_ENOMEM;
    }
    lws_set_log_level(LLL_ERR | LLL_WARN, ws_lws_log);
    if (pthread_create(&ws->thread, NULL, ws_main, ws) != 0) {
        qb_ws_free(ws);
        return QB_ENOMEM;
    }
    pthread_mutex_lock(&ws->mu);
    while (!ws->ready) {
        pthread_cond_wait(&ws->ready_cv, &ws->mu);
    }
    int rc = ws->start_rc;
    pthread_mutex_unlock(&ws->mu);
    if (rc != QB_OK) {
        pthread_join(ws->thread, NULL);
        ws->ready = false; /* no thread to stop */
        qb_ws_free(ws);
        return rc;
    }
    *out = ws;
    return QB_OK;
}

void qb_ws_free(qb_ws *ws)
{
    if (ws == NULL) {
        return;
    }
    if (ws->ready) {
        atomic_store(&ws->stop, true);
        pthread_mutex_lock(&ws->mu);
        if (ws->ctx != NULL && !ws->closed) {
            lws_cancel_service(ws->ctx);
        }
        pthread_mutex_unlock(&ws->mu);
        pthread_join(ws->thread, NULL);
    }
    for (size_t i = 0; ws->ring != NULL && i < ws->n; i++) {
        free(ws->ring[(ws->head + i) % ws->handoff_max].buf);
    }
    qb_wsq_free(ws->q);
    qb_buf_fini(&ws->snap_scratch);
    free(ws->ring);
    free(ws->batch);
    for (size_t i = 0; i < ws->n_origins; i++) {
        free(ws->origins[i]);
    }
    free(ws->origins);
    free(ws->host);
    free(ws->web_root);
    free(ws->token);
    free(ws->cert);
    free(ws->key);
    pthread_mutex_destroy(&ws->mu);
    pthread_cond_destroy(&ws->ready_cv);
    free(ws);
}

void qb_ws_stats_get(qb_ws *ws, qb_ws_stats *out)
{
#define WS_LOAD_(name, help) out->name = atomic_load_explicit(&ws->c.name, memory_order_relaxed);
    QB_WS_STATS(WS_LOAD_)
#undef WS_LOAD_
    uint64_t *dst = (uint64_t *)(void *)&out->q;
    for (size_t i = 0; i < sizeof(qb_wsq_stats) / sizeof(uint64_t); i++) {
        dst[i] = atomic_load_explicit(&ws->qmirror[i], memory_order_relaxed);
    }
}
