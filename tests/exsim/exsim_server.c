/*
 * exsim_server.c: the simulator's libwebsockets server. One vhost, one
 * protocol, one port: plain HTTP requests (REST) and websocket upgrades
 * both land in server_callback, on the single service thread. Nothing here
 * blocks: delayed snapshots wait on an lws_sul timer, stalls are a deadline
 * checked by the housekeeping timer.
 *
 * Websocket connections: each has a bounded ring of references to shared
 * frames (encoded once per event by exsim_market.c). The WRITEABLE
 * callback writes queued frames while the socket is not choked; a server
 * ping goes first when due. Overflow policy of the ring: "close slow
 * consumer" (counted in slow_consumer_closes), never unbounded memory.
 *
 *   market -> frame (refs=n) -> conn A ring [f f f] -> WRITEABLE -> lws_write
 *                            -> conn B ring [f f]   -> ...
 *
 * Per-connection faults live here because they count what one connection
 * was sent: --disconnect-every, --stall-after/--stall-ms, --shutdown-after;
 * and --disconnect-random-ms (a storm of drops at random times, checked by
 * the housekeeping timer).
 *
 * Routing: one port serves every --exchange; a websocket upgrade or an
 * HTTP request goes to the first exchange, in the order bithumb, htx,
 * binance, whose owns_path() claims its path: Bithumb /websocket/v1; HTX
 * /feed and /ws; Binance /stream, /ws/<stream>, /api/v3/... (and the bare
 * /ws, when HTX is not served). Anything else is 404.
 *
 * Keepalive, per exchange: websocket PINGs every --ping-interval-ms with a
 * fresh payload, the pong must echo the latest one, a ping unanswered for
 * --pong-timeout-ms closes (Binance); or application pings (HTX
 * {"ping":ms}, encoded by the exchange) of which at most max_missed may
 * be unanswered when the next is due (HTX: 2, then close; ping_timeouts).
 * Bithumb: no server pings, but a connection without traffic in either
 * direction for --bithumb-idle-ms is closed (idle_closes).
 *
 * HTTP: the request is parsed in LWS_CALLBACK_HTTP, answered by the ops
 * table (possibly after a --snapshot-delay-ms timer, or with an injected
 * 429/500), written as headers then body in two WRITEABLE callbacks.
 */
#include "exsim.h"

#include "clock.h"
#include "buf.h"
#include "err.h"
#include "file.h"
#include "log.h"

#include <libwebsockets.h>

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SERVER_HOUSEKEEPING_US 20000
#define SERVER_STATS_NS 500000000ull
#define SERVER_WRITES_PER_CB 64
#define SERVER_CLOSE_GRACE_S 3

typedef enum server_http_phase {
    SERVER_HTTP_IDLE = 0,
    SERVER_HTTP_DELAY,   /* waiting for the --snapshot-delay-ms timer */
    SERVER_HTTP_HEADERS, /* response ready; headers next */
    SERVER_HTTP_BODY,    /* body next */
} server_http_phase;

/* Per-session data: a websocket connection, or one HTTP transaction. */
typedef struct server_pss {
    qb__exsim_conn *conn;
    /* http */
    qb__exsim *sim;
    struct lws *wsi;
    lws_sorted_usec_list_t sul;
    server_http_phase phase;
    bool is_snapshot;
    qb__exsim_req req;
    qb__exsim_resp resp;
} server_pss;

static struct {
    lws_sorted_usec_list_t sul;
    qb__exsim *sim;
    uint64_t last_stats_ns;
    uint64_t start_ns; /* --disconnect-random-for-ms counts from here */
    uint64_t rng;      /* xorshift64 state of the random disconnects (from --seed) */
} server_hk;

/* ---- frames ---- */

qb_buf *qb__exsim_scratch(qb__exsim *sim)
{
    qb_buf *b = &sim->scratch;
    qb_buf_reset(b);
    if (qb_buf_reserve(b, LWS_PRE + 512) == QB_OK) {
        memset(b->data, 0, LWS_PRE);
        b->len = LWS_PRE;
    }
    return b;
}

qb__exsim_frame *qb__exsim_frame_from_scratch(qb__exsim *sim, bool binary)
{
    qb_buf *b = &sim->scratch;
    if (b->len < LWS_PRE) {
        return NULL;
    }
    qb__exsim_frame *f = malloc(sizeof *f + b->len + 1);
    if (f == NULL) {
        return NULL;
    }
    f->refs = 1;
    f->binary = binary;
    f->len = b->len - LWS_PRE;
    memcpy(f->buf, b->data, b->len);
    f->buf[b->len] = 0;
    return f;
}

void qb__exsim_frame_unref(qb__exsim_frame *f)
{
    if (f && --f->refs == 0) {
        free(f);
    }
}

/* ---- requests ---- */

const char *qb__exsim_req_arg(const qb__exsim_req *req, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < req->nargs; i++) {
        if (strncmp(req->args[i], name, n) == 0 && req->args[i][n] == '=') {
            return req->args[i] + n + 1;
        }
    }
    return NULL;
}

static void server_req_fini(qb__exsim_req *req)
{
    for (int i = 0; i < req->nargs; i++) {
        free(req->args[i]);
    }
    req->nargs = 0;
}

/* Copies the URI path and the (URL-decoded) arguments of the request. */
static int server_req_parse(struct lws *wsi, qb__exsim_req *req, const char *path)
{
    server_req_fini(req);
    req->path[0] = '\0';
    if (path) {
        snprintf(req->path, sizeof req->path, "%s", path);
    } else if (lws_hdr_copy(wsi, req->path, sizeof req->path, WSI_TOKEN_GET_URI) < 0) {
        return QB_ETOOBIG;
    }
    for (int i = 0; i < QB__EXSIM_MAX_ARGS; i++) {
        int n = lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n <= 0) {
            break;
        }
        char *a = malloc((size_t)n + 1);
        if (a == NULL) {
            return QB_ENOMEM;
        }
        if (lws_hdr_copy_fragment(wsi, a, n + 1, WSI_TOKEN_HTTP_URI_ARGS, i) < 0) {
            free(a);
            break;
        }
        req->args[req->nargs++] = a;
    }
    return QB_OK;
}

/* ---- connections ---- */

static void server_conn_wake(qb__exsim_conn *c)
{
    if (c->wsi) {
        lws_callback_on_writable(c->wsi);
    }
}

void qb__exsim_conn_close(qb__exsim_conn *c, int status, const char *reason)
{
    if (c->close_now) {
        return;
    }
    c->close_now = true;
    c->closing = true;
    c->close_status = status;
    snprintf(c->close_reason, sizeof c->close_reason, "%s", reason ? reason : "");
    server_conn_wake(c);
    if (c->wsi) {
        /* a peer that does not read never makes us writeable: lws drops it
         * hard if the graceful close has not happened by then */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, SERVER_CLOSE_GRACE_S);
    }
}

static bool server_queue_push(qb__exsim_conn *c, qb__exsim_frame *f, uint8_t flags)
{
    qb__exsim *sim = c->sim;
    if (c->qlen == c->qcap) {
        size_t max = (size_t)sim->cfg->max_queue;
        if (c->qcap >= max) {
            sim->st.slow_consumer_closes++;
            QB_LOG_RL(QB_LOG_WARN, "exsim_slow_consumer", "conn=%llu queued=%zu policy=close",
                      (unsigned long long)c->id, c->qlen);
            qb__exsim_conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "slow consumer");
            return false;
        }
        size_t nc = c->qcap ? c->qcap * 2 : 256;
        if (nc > max) {
            nc = max;
        }
        qb__exsim_qent *nq = malloc(nc * sizeof *nq);
        if (nq == NULL) {
            qb__exsim_conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "out of memory");
            return false;
        }
        for (size_t i = 0; i < c->qlen; i++) {
            nq[i] = c->q[(c->qhead + i) % c->qcap];
        }
        free(c->q);
        c->q = nq;
        c->qcap = nc;
        c->qhead = 0;
    }
    c->q[(c->qhead + c->qlen) % c->qcap] = (qb__exsim_qent){f, flags};
    c->qlen++;
    f->refs++;
    if (c->stall_until_ns == 0) {
        server_conn_wake(c);
    }
    return true;
}

static void server_queue_notice(qb__exsim_conn *c)
{
    qb__exsim *sim = c->sim;
    bool binary = false;
    qb_buf *b = qb__exsim_scratch(sim);
    if (c->ops == NULL || c->ops->encode_shutdown == NULL ||
        c->ops->encode_shutdown(sim, c->combined, b, &binary) != QB_OK) {
        /* no notice in this protocol (HTX, Bithumb): close once what is
         * queued has been written */
        if (c->qlen > 0) {
            c->q[(c->qhead + c->qlen - 1) % c->qcap].flags |=
                QB__EXSIM_Q_CLOSE | QB__EXSIM_Q_SHUTDOWN;
        } else {
            qb__exsim_conn_close(c, LWS_CLOSE_STATUS_GOINGAWAY, "server shutdown");
        }
        return;
    }
    qb__exsim_frame *f = qb__exsim_frame_from_scratch(sim, binary);
    if (f) {
        server_queue_push(c, f, QB__EXSIM_Q_SHUTDOWN | QB__EXSIM_Q_CLOSE);
        qb__exsim_frame_unref(f);
    }
}

bool qb__exsim_conn_queue(qb__exsim_conn *c, qb__exsim_frame *f, uint8_t flags)
{
    qb__exsim *sim = c->sim;
    const qb__exsim_cfg *cfg = sim->cfg;
    if (c->closing || f == NULL) {
        return false;
    }
    bool data = (flags & (QB__EXSIM_Q_EVENT | QB__EXSIM_Q_TRADE)) != 0;
    if (!data) {
        return server_queue_push(c, f, flags);
    }
    if (c->stall_until_ns != 0 || c->stall_pending) {
        sim->st.fault_stall_dropped++;
        return false;
    }
    uint64_t n = ++c->events_queued;
    uint8_t fl = flags;
    bool close_after = false, shutdown_after = false, stall = false;
    if (cfg->disconnect_every > 0 && n == (uint64_t)cfg->disconnect_every) {
        fl |= QB__EXSIM_Q_CLOSE;
        close_after = true;
    }
    if (cfg->shutdown_after > 0 && n == (uint64_t)cfg->shutdown_after && !close_after) {
        shutdown_after = true;
    }
    if (cfg->stall_after > 0 && cfg->stall_ms > 0 && !c->stalled_once &&
        n == (uint64_t)cfg->stall_after) {
        fl |= QB__EXSIM_Q_STALL;
        stall = true;
    }
    if (!server_queue_push(c, f, fl)) {
        return false;
    }
    if (close_after) {
        sim->st.fault_disconnect++;
        c->closing = true;
        QB_INFO("exsim_fault_disconnect", "conn=%llu after=%llu", (unsigned long long)c->id,
                (unsigned long long)n);
    }
    if (shutdown_after) {
        sim->st.fault_shutdown++;
        server_queue_notice(c);
        c->closing = true;
        QB_INFO("exsim_fault_shutdown", "conn=%llu after=%llu", (unsigned long long)c->id,
                (unsigned long long)n);
    }
    if (stall) {
        /* from now on nothing more is queued; the silence starts when this
         * frame has been written */
        sim->st.fault_stall++;
        c->stalled_once = true;
        c->stall_pending = true;
    }
    return true;
}

void qb__exsim_conn_send_scratch(qb__exsim_conn *c, bool binary)
{
    qb__exsim_frame *f = qb__exsim_frame_from_scratch(c->sim, binary);
    if (f) {
        qb__exsim_conn_queue(c, f, 0);
        qb__exsim_frame_unref(f);
    }
}

void qb__exsim_conn_send_text(qb__exsim_conn *c, const char *text, size_t len)
{
    qb__exsim *sim = c->sim;
    qb_buf *b = qb__exsim_scratch(sim);
    if (qb_buf_append(b, text, len) != QB_OK) {
        return;
    }
    qb__exsim_frame *f = qb__exsim_frame_from_scratch(sim, false);
    if (f) {
        qb__exsim_conn_queue(c, f, 0);
        qb__exsim_frame_unref(f);
    }
}

void qb__exsim_conn_shutdown(qb__exsim_conn *c)
{
    if (c->closing) {
        return;
    }
    server_queue_notice(c);
    c->closing = true;
}

/* ---- subscriptions ---- */

int qb__exsim_subscribe(qb__exsim_conn *c, qb__exsim_stream *st)
{
    for (size_t i = 0; i < c->nstreams; i++) {
        if (c->streams[i] == st) {
            return QB_OK;
        }
    }
    if (c->nstreams >= (size_t)c->sim->cfg->max_streams) {
        return QB_ERANGE;
    }
    if (c->nstreams == c->capstreams) {
        size_t nc = c->capstreams ? c->capstreams * 2 : 8;
        qb__exsim_stream **ns = realloc(c->streams, nc * sizeof *ns);
        if (ns == NULL) {
            return QB_ENOMEM;
        }
        c->streams = ns;
        c->capstreams = nc;
    }
    if (st->nsubs == st->cap) {
        size_t nc = st->cap ? st->cap * 2 : 4;
        qb__exsim_conn **ns = realloc(st->subs, nc * sizeof *ns);
        if (ns == NULL) {
            return QB_ENOMEM;
        }
        st->subs = ns;
        st->cap = nc;
    }
    c->streams[c->nstreams++] = st;
    st->subs[st->nsubs++] = c;
    return QB_OK;
}

void qb__exsim_unsubscribe(qb__exsim_conn *c, qb__exsim_stream *st)
{
    for (size_t i = 0; i < c->nstreams; i++) {
        if (c->streams[i] == st) {
            /* keep the subscription order (LIST_SUBSCRIPTIONS shows it) */
            memmove(&c->streams[i], &c->streams[i + 1],
                    (c->nstreams - i - 1) * sizeof c->streams[0]);
            c->nstreams--;
            break;
        }
    }
    for (size_t i = 0; i < st->nsubs; i++) {
        if (st->subs[i] == c) {
            st->subs[i] = st->subs[--st->nsubs];
            break;
        }
    }
}

static qb__exsim_conn *server_conn_new(qb__exsim *sim, struct lws *wsi)
{
    qb__exsim_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    c->sim = sim;
    c->wsi = wsi;
    c->id = ++sim->next_conn_id;
    c->combined = true;
    c->ping_interval_ms = sim->cfg->ping_interval_ms;
    c->pong_timeout_ms = sim->cfg->pong_timeout_ms;
    c->last_traffic_ns = qb_mono_ns();
    c->next = sim->conns;
    sim->conns = c;
    sim->st.connections++;
    sim->st.connections_total++;
    return c;
}

static void server_conn_free(qb__exsim_conn *c)
{
    qb__exsim *sim = c->sim;
    while (c->nstreams > 0) {
        qb__exsim_unsubscribe(c, c->streams[c->nstreams - 1]);
    }
    free(c->streams);
    for (size_t i = 0; i < c->qlen; i++) {
        qb__exsim_frame_unref(c->q[(c->qhead + i) % c->qcap].f);
    }
    free(c->q);
    qb_buf_fini(&c->rx);
    for (qb__exsim_conn **pp = &sim->conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    sim->st.connections--;
    free(c);
}

/* ---- websocket callbacks ---- */

static int server_ws_writeable(qb__exsim *sim, struct lws *wsi, qb__exsim_conn *c)
{
    if (c->close_now) {
        goto close;
    }
    uint64_t now = qb_mono_ns();
    if (c->stall_until_ns != 0 && now < c->stall_until_ns) {
        return 0; /* stalled: nothing at all, pings included */
    }
    if (c->want_ping) {
        uint8_t pb[LWS_PRE + 32];
        int n = snprintf(c->ping_payload, sizeof c->ping_payload, "%llu",
                         (unsigned long long)(qb_now_ns() / 1000000u));
        memcpy(pb + LWS_PRE, c->ping_payload, (size_t)n);
        if (lws_write(wsi, pb + LWS_PRE, (size_t)n, LWS_WRITE_PING) < n) {
            return -1;
        }
        c->want_ping = false;
        c->ping_seq++;
        c->last_ping_ns = now;
        if (c->unanswered_since_ns == 0) {
            c->unanswered_since_ns = now;
        }
        sim->st.pings_sent++;
    }
    for (int k = 0; k < SERVER_WRITES_PER_CB && c->qlen > 0 && !lws_send_pipe_choked(wsi); k++) {
        qb__exsim_qent e = c->q[c->qhead];
        c->qhead = (c->qhead + 1) % c->qcap;
        c->qlen--;
        qb__exsim_frame *f = e.f;
        int m =
            lws_write(wsi, f->buf + LWS_PRE, f->len, f->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
        if (m < (int)f->len) {
            qb__exsim_frame_unref(f);
            QB_LOG_RL(QB_LOG_WARN, "exsim_write_failed", "conn=%llu", (unsigned long long)c->id);
            return -1;
        }
        sim->st.frames_sent++;
        sim->st.bytes_sent += f->len;
        c->last_traffic_ns = now;
        if (e.flags & QB__EXSIM_Q_EVENT) {
            sim->st.events_sent++;
        }
        if (e.flags & QB__EXSIM_Q_TRADE) {
            sim->st.trades_sent++;
        }
        qb__exsim_frame_unref(f);
        if (e.flags & QB__EXSIM_Q_STALL) {
            c->stall_pending = false;
            c->stall_until_ns = qb_mono_ns() + (uint64_t)sim->cfg->stall_ms * 1000000u;
            QB_INFO("exsim_fault_stall", "conn=%llu events=%llu ms=%lld", (unsigned long long)c->id,
                    (unsigned long long)c->events_queued, (long long)sim->cfg->stall_ms);
            return 0; /* the housekeeping timer wakes it when the stall ends */
        }
        if (e.flags & QB__EXSIM_Q_CLOSE) {
            c->close_now = true;
            c->close_status = LWS_CLOSE_STATUS_NORMAL;
            snprintf(c->close_reason, sizeof c->close_reason, "%s",
                     (e.flags & QB__EXSIM_Q_SHUTDOWN) ? "server shutdown" : "disconnect fault");
            /* let the frame go out before the close */
            lws_callback_on_writable(wsi);
            return 0;
        }
    }
    if (c->qlen > 0 || c->want_ping) {
        lws_callback_on_writable(wsi);
    }
    return 0;
close:
    QB_INFO("exsim_conn_closing", "conn=%llu status=%d reason=\"%s\"", (unsigned long long)c->id,
            c->close_status, c->close_reason);
    lws_close_reason(wsi, (enum lws_close_status)c->close_status, (unsigned char *)c->close_reason,
                     strlen(c->close_reason));
    return -1;
}

static void server_ws_receive(qb__exsim *sim, struct lws *wsi, qb__exsim_conn *c, const void *in,
                              size_t len)
{
    if (lws_is_first_fragment(wsi)) {
        qb_buf_reset(&c->rx);
        c->rx_too_big = false;
    }
    c->last_traffic_ns = qb_mono_ns();
    if (c->closing || c->rx_too_big) {
        return;
    }
    if (c->rx.len + len > (size_t)sim->cfg->max_msg_bytes) {
        c->rx_too_big = true;
        sim->st.bad_input++;
        QB_LOG_RL(QB_LOG_WARN, "exsim_client_msg_too_big", "conn=%llu limit=%lld",
                  (unsigned long long)c->id, (long long)sim->cfg->max_msg_bytes);
        qb__exsim_conn_close(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too big");
        return;
    }
    if (qb_buf_append(&c->rx, in, len) != QB_OK) {
        qb__exsim_conn_close(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "out of memory");
        return;
    }
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) != 0) {
        return;
    }
    bool binary = lws_frame_is_binary(wsi) != 0;
    if (sim->cfg->max_client_msg_rate > 0) {
        /* Binance: more than 5 incoming messages per second disconnects */
        uint64_t now = qb_mono_ns();
        if (now - c->rx_window_ns >= 1000000000u) {
            c->rx_window_ns = now;
            c->rx_in_window = 0;
        }
        if (++c->rx_in_window > (uint64_t)sim->cfg->max_client_msg_rate) {
            sim->st.rate_limit_closes++;
            QB_LOG_RL(QB_LOG_WARN, "exsim_client_rate_limit", "conn=%llu limit=%lld/s",
                      (unsigned long long)c->id, (long long)sim->cfg->max_client_msg_rate);
            qb__exsim_conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too many messages");
            qb_buf_reset(&c->rx);
            return;
        }
    }
    if (qb_buf_reserve(&c->rx, 1) == QB_OK) {
        c->rx.data[c->rx.len] = '\0';
    }
    if (c->ops->ws_message(sim, c, (const char *)c->rx.data, c->rx.len, binary) != 0) {
        qb__exsim_conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "bad request");
    }
    qb_buf_reset(&c->rx);
}

void qb__exsim_conn_pong(qb__exsim_conn *c, const void *in, size_t len)
{
    qb__exsim *sim = c->sim;
    sim->st.pongs_received++;
    c->last_traffic_ns = qb_mono_ns();
    size_t pl = strlen(c->ping_payload), ql = strlen(c->ping_prev);
    if ((pl > 0 && len == pl && memcmp(in, c->ping_payload, pl) == 0) ||
        (c->ops && c->ops->encode_keepalive && ql > 0 && len == ql &&
         memcmp(in, c->ping_prev, ql) == 0)) {
        c->unanswered_since_ns = 0;
        c->missed_pings = 0;
    } else {
        sim->st.pongs_unmatched++;
    }
}

/* ---- HTTP ---- */

static void server_resp_init(qb__exsim_resp *r)
{
    qb_buf_fini(&r->body);
    r->status = 200;
    r->retry_after = 0;
    r->content_type = "application/json;charset=UTF-8";
    if (qb_buf_reserve(&r->body, LWS_PRE + 1024) == QB_OK) {
        memset(r->body.data, 0, LWS_PRE);
        r->body.len = LWS_PRE;
    }
}

/* The exchange serving path (ws: a websocket upgrade), or NULL. */
static const qb__exsim_ops *server_route(const qb__exsim *sim, const char *path, bool ws)
{
    for (size_t i = 0; i < sim->nexch; i++) {
        if (sim->exch[i]->owns_path(path, ws)) {
            return sim->exch[i];
        }
    }
    return NULL;
}

/* Builds the response now (snapshot content is taken at this moment). */
static void server_http_answer(qb__exsim *sim, server_pss *pss)
{
    server_resp_init(&pss->resp);
    const qb__exsim_ops *ops = server_route(sim, pss->req.path, false);
    if (ops == NULL || ops->http_handle == NULL) {
        pss->resp.status = 404;
        qb_buf_appendf(&pss->resp.body, "{\"error\":\"not found\"}");
        pss->phase = SERVER_HTTP_HEADERS;
        lws_callback_on_writable(pss->wsi);
        return;
    }
    if (pss->is_snapshot && sim->snapshot_fail_left > 0) {
        sim->snapshot_fail_left--;
        sim->st.fault_snapshot_fail++;
        int status = (int)sim->cfg->snapshot_fail_status;
        if (status == 0) {
            /* 429 and 500 alternately: the first failure is a 429 */
            status = sim->st.fault_snapshot_fail % 2 ? 429 : 500;
        }
        pss->resp.status = status;
        pss->resp.retry_after = status == 429 ? 1 : 0;
        ops->http_fault(sim, status, &pss->resp);
        const char *sym = qb__exsim_req_arg(&pss->req, "symbol");
        QB_INFO("exsim_fault_snapshot_fail", "status=%d left=%lld symbol=%s", status,
                (long long)sim->snapshot_fail_left, sym ? sym : "-");
    } else {
        ops->http_handle(sim, &pss->req, &pss->resp);
        if (pss->is_snapshot && pss->resp.status == 200) {
            sim->st.snapshots_served++;
            const char *sym = qb__exsim_req_arg(&pss->req, "symbol");
            QB_INFO("exsim_snapshot_served", "symbol=%s", sym ? sym : "-");
        }
    }
    pss->phase = SERVER_HTTP_HEADERS;
    lws_callback_on_writable(pss->wsi);
}

static void server_http_delay_done(lws_sorted_usec_list_t *sul)
{
    server_pss *pss = lws_container_of(sul, server_pss, sul);
    if (pss->phase == SERVER_HTTP_DELAY) {
        server_http_answer(pss->sim, pss);
    }
}

static void server_http_release(server_pss *pss)
{
    lws_sul_cancel(&pss->sul);
    server_req_fini(&pss->req);
    qb_buf_fini(&pss->resp.body);
    pss->phase = SERVER_HTTP_IDLE;
}

static int server_http_request(qb__exsim *sim, struct lws *wsi, server_pss *pss, const char *uri)
{
    sim->st.http_requests++;
    pss->sim = sim;
    pss->wsi = wsi;
    if (server_req_parse(wsi, &pss->req, uri) != QB_OK) {
        lws_return_http_status(wsi, HTTP_STATUS_REQ_URI_TOO_LONG, NULL);
        return -1;
    }
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0) {
        /* only GET exists on this server */
        server_resp_init(&pss->resp);
        pss->resp.status = 405;
        qb_buf_appendf(&pss->resp.body, "{\"code\":-1000,\"msg\":\"Method not allowed.\"}");
        pss->phase = SERVER_HTTP_HEADERS;
        lws_callback_on_writable(wsi);
        return 0;
    }
    const qb__exsim_ops *ops = server_route(sim, pss->req.path, false);
    pss->is_snapshot = ops && ops->http_is_snapshot && ops->http_is_snapshot(&pss->req);
    QB_DEBUG("exsim_http_request", "path=%s snapshot=%d", pss->req.path, pss->is_snapshot);
    if (pss->is_snapshot && sim->cfg->snapshot_delay_ms > 0) {
        sim->st.fault_snapshot_delay++;
        pss->phase = SERVER_HTTP_DELAY;
        lws_sul_schedule(lws_get_context(wsi), 0, &pss->sul, server_http_delay_done,
                         (lws_usec_t)sim->cfg->snapshot_delay_ms * 1000);
        return 0;
    }
    server_http_answer(sim, pss);
    return 0;
}

static int server_http_writeable(struct lws *wsi, server_pss *pss)
{
    if (pss->phase == SERVER_HTTP_HEADERS) {
        uint8_t hb[LWS_PRE + 1024], *start = hb + LWS_PRE, *p = start, *end = hb + sizeof hb - 1;
        size_t blen = pss->resp.body.len - LWS_PRE;
        if (lws_add_http_common_headers(wsi, (unsigned int)pss->resp.status, pss->resp.content_type,
                                        blen, &p, end)) {
            return -1;
        }
        if (pss->resp.retry_after > 0) {
            char ra[16];
            int n = snprintf(ra, sizeof ra, "%d", pss->resp.retry_after);
            if (lws_add_http_header_by_name(wsi, (const unsigned char *)"retry-after:",
                                            (const unsigned char *)ra, n, &p, end)) {
                return -1;
            }
        }
        if (lws_finalize_write_http_header(wsi, start, &p, end)) {
            return -1;
        }
        pss->phase = SERVER_HTTP_BODY;
        lws_callback_on_writable(wsi);
        return 0;
    }
    if (pss->phase == SERVER_HTTP_BODY) {
        size_t blen = pss->resp.body.len - LWS_PRE;
        if (lws_write(wsi, pss->resp.body.data + LWS_PRE, blen, LWS_WRITE_HTTP_FINAL) < (int)blen) {
            return -1;
        }
        server_http_release(pss);
        if (lws_http_transaction_completed(wsi)) {
            return -1;
        }
    }
    return 0;
}

/* ---- the callback ---- */

static int server_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len)
{
    server_pss *pss = user;
    qb__exsim *sim = server_hk.sim;

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return server_http_request(sim, wsi, pss, (const char *)in);

    case LWS_CALLBACK_HTTP_WRITEABLE:
        return pss ? server_http_writeable(wsi, pss) : 0;

    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (pss) {
            server_http_release(pss);
        }
        break;

    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: {
        /* validate the websocket URL before the handshake completes */
        if (strcmp((const char *)in, "websocket") != 0) {
            return 0;
        }
        qb__exsim_req req = {0};
        int status = HTTP_STATUS_BAD_REQUEST;
        int rc = server_req_parse(wsi, &req, NULL);
        if (rc == QB_OK) {
            const qb__exsim_ops *ops = server_route(sim, req.path, true);
            if (ops == NULL) {
                status = HTTP_STATUS_NOT_FOUND;
                rc = -1;
            } else {
                rc = ops->ws_open(sim, NULL, &req, &status);
            }
        }
        server_req_fini(&req);
        if (rc != 0) {
            sim->st.client_errors++;
            QB_LOG_RL(QB_LOG_WARN, "exsim_ws_rejected", "status=%d", status);
            if (lws_return_http_status(wsi, (unsigned int)status, NULL)) {
                return -1;
            }
            return 1;
        }
        return 0;
    }

    case LWS_CALLBACK_ESTABLISHED: {
        qb__exsim_conn *c = server_conn_new(sim, wsi);
        if (c == NULL) {
            return -1;
        }
        pss->conn = c;
        qb__exsim_req req = {0};
        int status = 0;
        int rc = server_req_parse(wsi, &req, NULL);
        if (rc == QB_OK) {
            c->ops = server_route(sim, req.path, true);
            if (c->ops == NULL) {
                c->ops = sim->ops; /* validated at upgrade; never here */
                rc = -1;
            } else {
                QB_INFO("exsim_conn_open", "conn=%llu exchange=%s path=%s",
                        (unsigned long long)c->id, c->ops->name, req.path);
                rc = c->ops->ws_open(sim, c, &req, &status);
            }
            if (c->ping_interval_ms > 0) {
                c->next_ping_ns = qb_mono_ns() + (uint64_t)c->ping_interval_ms * 1000000u;
            }
        }
        server_req_fini(&req);
        if (rc != 0) {
            qb__exsim_conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "bad url");
        }
        return 0;
    }

    case LWS_CALLBACK_RECEIVE:
        if (pss && pss->conn) {
            server_ws_receive(sim, wsi, pss->conn, in, len);
        }
        return 0;

    case LWS_CALLBACK_RECEIVE_PONG:
        if (pss && pss->conn) {
            qb__exsim_conn_pong(pss->conn, in, len);
        }
        return 0;

    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (pss && pss->conn) {
            return server_ws_writeable(sim, wsi, pss->conn);
        }
        return 0;

    case LWS_CALLBACK_CLOSED:
        if (pss && pss->conn) {
            QB_INFO("exsim_conn_closed", "conn=%llu", (unsigned long long)pss->conn->id);
            server_conn_free(pss->conn);
            pss->conn = NULL;
        }
        return 0;

    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols server_protocols[] = {
    {
        .name = "exsim",
        .callback = server_callback,
        .per_session_data_size = sizeof(server_pss),
        .rx_buffer_size = 8192,
        .tx_packet_size = 256 * 1024,
    },
    {0},
};

/* ---- stats ---- */

int qb__exsim_stats_write(qb__exsim *sim)
{
    const char *path = sim->cfg->stats_file;
    if (path == NULL || *path == '\0') {
        return QB_OK;
    }
    qb_buf b = QB_BUF_INIT;
    const char *sep = "";
    int rc = qb_buf_append(&b, "{", 1);
#define SERVER_CNT_PRINT_(n)                                                                       \
    rc = rc ? rc : qb_buf_appendf(&b, "%s\"%s\":%llu", sep, #n, (unsigned long long)sim->st.n);    \
    sep = ",";
    QB__EXSIM_COUNTERS(SERVER_CNT_PRINT_)
#undef SERVER_CNT_PRINT_
    rc = rc ? rc : qb_buf_appendf(&b, ",\"port\":%d,\"symbols\":%zu}\n", sim->port, sim->nsyms);
    if (rc == QB_OK && (rc = qb_file_write_atomic(path, b.data, b.len)) != QB_OK) {
        QB_LOG_RL(QB_LOG_ERROR, "exsim_stats_failed", "path=%s errno=%s", path, strerror(errno));
    }
    qb_buf_fini(&b);
    return rc;
}

/* ---- housekeeping: pings, pong timeouts, stall ends, stats ---- */

/* An application-level ping (exchanges whose keepalive is a message). */
static void server_app_ping(qb__exsim *sim, qb__exsim_conn *c, uint64_t now)
{
    bool binary = false;
    char token[sizeof c->ping_payload];
    qb_buf *b = qb__exsim_scratch(sim);
    if (c->max_missed_pings > 0 && c->missed_pings >= (uint32_t)c->max_missed_pings) {
        /* HTX: "if the server has sent 2 pings without a matching pong,
         * it disconnects" */
        sim->st.ping_timeouts++;
        QB_WARN("exsim_pings_unanswered", "conn=%llu exchange=%s missed=%u",
                (unsigned long long)c->id, c->ops->name, c->missed_pings);
        qb__exsim_conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "pings unanswered");
        return;
    }
    if (c->ops->encode_keepalive(sim, c, token, sizeof token, b, &binary) != QB_OK) {
        return;
    }
    qb__exsim_frame *f = qb__exsim_frame_from_scratch(sim, binary);
    if (f && qb__exsim_conn_queue(c, f, 0)) {
        memcpy(c->ping_prev, c->ping_payload, sizeof c->ping_prev);
        snprintf(c->ping_payload, sizeof c->ping_payload, "%s", token);
        c->missed_pings++;
        c->ping_seq++;
        c->last_ping_ns = now;
        if (c->unanswered_since_ns == 0) {
            c->unanswered_since_ns = now;
        }
        sim->st.pings_sent++;
    }
    qb__exsim_frame_unref(f);
}

/* --disconnect-random-ms: each websocket connection is dropped (close
 * 1001, as an exchange's load balancer would) after a uniform random
 * lifetime of MS/2..3MS/2, drawn when it is first seen; its reconnections
 * get fresh draws. With --disconnect-random-for-ms, only during that first
 * part of the run: the storm ends and the clients must heal. */
static void server_random_drop(qb__exsim *sim, qb__exsim_conn *c, uint64_t now)
{
    const qb__exsim_cfg *cfg = sim->cfg;
    if (cfg->disconnect_random_ms <= 0 || c->wsi == NULL) {
        return;
    }
    if (cfg->disconnect_random_for_ms > 0 &&
        now - server_hk.start_ns >= (uint64_t)cfg->disconnect_random_for_ms * 1000000u) {
        return;
    }
    if (c->random_drop_ns == 0) {
        uint64_t x = server_hk.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        server_hk.rng = x;
        uint64_t mean = (uint64_t)cfg->disconnect_random_ms * 1000000u;
        c->random_drop_ns = now + mean / 2 + x % (mean + 1);
        return;
    }
    if (now >= c->random_drop_ns) {
        sim->st.fault_disconnect_random++;
        QB_INFO("exsim_fault_disconnect_random", "conn=%llu", (unsigned long long)c->id);
        qb__exsim_conn_close(c, LWS_CLOSE_STATUS_GOINGAWAY, "random disconnect");
    }
}

void qb__exsim_server_housekeeping(qb__exsim *sim)
{
    uint64_t now = qb_mono_ns();
    for (qb__exsim_conn *c = sim->conns; c; c = c->next) {
        if (c->close_now) {
            continue;
        }
        server_random_drop(sim, c, now);
        if (c->close_now) {
            continue;
        }
        if (c->stall_until_ns != 0) {
            if (now < c->stall_until_ns) {
                continue;
            }
            c->stall_until_ns = 0;
            if (c->unanswered_since_ns) {
                c->unanswered_since_ns = now;
            }
            if (c->ping_interval_ms > 0) {
                c->next_ping_ns = now + (uint64_t)c->ping_interval_ms * 1000000u;
            }
            c->last_traffic_ns = now;
            QB_INFO("exsim_stall_end", "conn=%llu", (unsigned long long)c->id);
            server_conn_wake(c);
        }
        if (c->pong_timeout_ms > 0 && c->unanswered_since_ns &&
            now - c->unanswered_since_ns >= (uint64_t)c->pong_timeout_ms * 1000000u) {
            sim->st.ping_timeouts++;
            QB_WARN("exsim_pong_timeout", "conn=%llu timeout_ms=%lld", (unsigned long long)c->id,
                    (long long)c->pong_timeout_ms);
            qb__exsim_conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "pong timeout");
            continue;
        }
        if (c->idle_ms > 0 && now - c->last_traffic_ns >= (uint64_t)c->idle_ms * 1000000u) {
            sim->st.idle_closes++;
            QB_WARN("exsim_idle_close", "conn=%llu exchange=%s idle_ms=%lld",
                    (unsigned long long)c->id, c->ops ? c->ops->name : "?", (long long)c->idle_ms);
            qb__exsim_conn_close(c, LWS_CLOSE_STATUS_NORMAL, "idle timeout");
            continue;
        }
        if (c->ops && c->ops->conn_tick) {
            c->ops->conn_tick(sim, c, now);
        }
        if (c->ping_interval_ms > 0 && c->next_ping_ns && now >= c->next_ping_ns) {
            c->next_ping_ns = now + (uint64_t)c->ping_interval_ms * 1000000u;
            if (c->ops && c->ops->encode_keepalive) {
                server_app_ping(sim, c, now);
            } else {
                c->want_ping = true;
                server_conn_wake(c);
            }
        }
    }
    if (now - server_hk.last_stats_ns >= SERVER_STATS_NS) {
        server_hk.last_stats_ns = now;
        qb__exsim_stats_write(sim);
    }
}

static void server_hk_tick(lws_sorted_usec_list_t *sul)
{
    qb__exsim_server_housekeeping(server_hk.sim);
    lws_sul_schedule(server_hk.sim->ctx, 0, sul, server_hk_tick, SERVER_HOUSEKEEPING_US);
}

/* ---- start ---- */

static void server_lws_log(int level, const char *line)
{
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
        n--;
    }
    if (level & LLL_ERR) {
        QB_LOG_RL(QB_LOG_WARN, "lws_error", "%.*s", (int)n, line);
    } else {
        QB_LOG_RL(QB_LOG_DEBUG, "lws_log", "%.*s", (int)n, line);
    }
}

int qb__exsim_server_start(qb__exsim *sim)
{
    const qb__exsim_cfg *cfg = sim->cfg;
    server_hk.sim = sim;
    int lws_levels = LLL_ERR;
    if (qb_log_get_level() >= QB_LOG_DEBUG) {
        lws_levels |= LLL_WARN | LLL_NOTICE;
    }
    lws_set_log_level(lws_levels, server_lws_log);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    /* combined-stream URLs of 1024 streams are long */
    info.max_http_header_data = 0;
    info.max_http_header_data2 = 64 * 1024;
    info.user = sim;
    sim->ctx = lws_create_context(&info);
    if (sim->ctx == NULL) {
        QB_ERROR("exsim_lws_context_failed", "lws_create_context failed");
        return QB_ETRANSPORT;
    }
    info.port = (int)cfg->port;
    info.iface = strcmp(cfg->host, "localhost") == 0 ? "127.0.0.1" : cfg->host;
    info.protocols = server_protocols;
    info.vhost_name = "exsim";
    /* HTTP/1.1 only: keeps websocket upgrades on h1 for every client */
    info.alpn = "http/1.1";
    if (cfg->tls_cert && *cfg->tls_cert) {
        info.ssl_cert_filepath = cfg->tls_cert;
        info.ssl_private_key_filepath = cfg->tls_key;
    }
    sim->vh = lws_create_vhost(sim->ctx, &info);
    if (sim->vh == NULL) {
        QB_ERROR("exsim_listen_failed", "host=%s port=%lld tls=%s", cfg->host, (long long)cfg->port,
                 info.ssl_cert_filepath ? "yes" : "no");
        return QB_ETRANSPORT;
    }
    sim->port = lws_get_vhost_listen_port(sim->vh);
    if (sim->port <= 0) {
        /* lws takes --host as an interface name or a numeric address */
        QB_ERROR("exsim_listen_failed",
                 "host=%s port=%lld: not listening (use a numeric "
                 "address such as 127.0.0.1, or an interface name)",
                 cfg->host, (long long)cfg->port);
        return QB_ETRANSPORT;
    }
    for (size_t i = 0; i < sim->nexch; i++) {
        QB_INFO("exsim_listening", "exchange=%s url=%s://%s:%d%s", sim->exch[i]->name,
                info.ssl_cert_filepath ? "wss" : "ws", cfg->host, sim->port, sim->exch[i]->ws_path);
    }
    if (cfg->port_file && *cfg->port_file) {
        char line[16];
        int ln = snprintf(line, sizeof line, "%d\n", sim->port);
        if (qb_file_write_atomic(cfg->port_file, line, (size_t)ln) != QB_OK) {
            QB_ERROR("exsim_port_file_failed", "path=%s errno=%s", cfg->port_file, strerror(errno));
            return QB_EIO;
        }
    }
    server_hk.last_stats_ns = qb_mono_ns();
    server_hk.start_ns = server_hk.last_stats_ns;
    server_hk.rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)cfg->seed;
    qb__exsim_stats_write(sim);
    lws_sul_schedule(sim->ctx, 0, &server_hk.sul, server_hk_tick, SERVER_HOUSEKEEPING_US);
    return QB_OK;
}

void qb__exsim_server_stop(qb__exsim *sim)
{
    lws_sul_cancel(&server_hk.sul);
}
