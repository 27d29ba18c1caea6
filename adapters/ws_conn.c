/*
 * ws_conn.c: one websocket client connection of the adapter.
 *
 * Lifecycle (lws service thread only):
 *
 *   start -> connect --ESTABLISHED--> up --CLOSED--> backoff -> connect ...
 *              |                        |
 *              +--CONNECTION_ERROR------+--> backoff (500 ms doubling to 30 s,
 *                                            +-25 % jitter)
 *
 * - The backoff's attempt counter resets only after a connection stayed up
 *   QB_WS_HEALTHY_MS (30 s): a server that accepts and drops at once still
 *   backs off.
 * - Every attempt, immediate ones included, first takes a token from the
 *   process-wide connect budget (a->budget, budget.c; ops->connects_per_min
 *   or --max-connects-per-min): without one it waits for the token (+jitter)
 *   and the instruments go down with "reconnect budget exhausted, next
 *   attempt in N s" (counted budget_waits).
 * - Proactive reconnect after max_conn_age_ms (Binance closes at 24 h) and
 *   on serverShutdown: close and reconnect at once, no backoff.
 * - Server pings: lws 4.1 answers PING frames itself on client connections
 *   too (the rx parser stashes the payload, up to 125 bytes, and sends a
 *   PONG with the same payload from the next writeable event), as Binance
 *   requires; nothing to do here.
 * - Messages are reassembled from fragments (lws_is_first_fragment /
 *   lws_is_final_fragment) into rx, capped at max_frame: a larger message
 *   is dropped as a whole (counted "oversized", logged rate-limited) and the
 *   connection stays up; the sequence rule catches the lost delta.
 * - Keepalive for exchanges that want client traffic (Bithumb closes an
 *   idle connection after ~120 s): ops->keepalive_text every
 *   cfg.keepalive_ms (default ops->keepalive_ms) while the connection is up.
 * - Send queue: a ring of QB_WS_TXQ + 4 per instrument messages (HTX sends
 *   three subscriptions per instrument and a req per resync); overflow
 *   policy "drop newest" (counted ws_tx_dropped; snapshot requests have a
 *   watchdog, subscriptions are resent on the next connect).
 * - Every timer is cancelled on close and at shutdown (lws_sul_cancel).
 * - TLS read-ahead (unless cfg.no_tls_read_ahead): once established, the
 *   connection's OpenSSL object reads as much as its buffer holds per
 *   read() instead of one record header and then one body (two system calls
 *   per exchange message, the largest part of the adapter's cost at high
 *   rates). Records read ahead are invisible to poll() and to
 *   SSL_pending(), the only thing lws 4.1.6 checks, so lws alone would leave
 *   them until the next bytes arrive: a stalled book. The adapter's loop
 *   therefore calls qb__wsconn_drain_tls after every lws_service(): while
 *   SSL_has_pending() reports input and OpenSSL is not waiting for the rest
 *   of a record, it hands lws a POLLIN for the socket (lws_service_fd), and
 *   lws reads the next record without a system call. At most
 *   QB_WS_TLS_DRAIN_MAX per connection and pass (fairness with timers and
 *   other connections); if input remains, the loop is woken
 *   (lws_cancel_service) instead of sleeping. If lws consumed nothing in a
 *   whole pass (a state in which it does not read), the loop does not spin:
 *   counted tls_drain_stuck, logged, and left to the next socket event.
 *   Tested end to end by test_pipeline.py --case tls_burst_end (the last
 *   burst of a feed followed by silence must arrive in full).
 */
#include "adapter_int.h"

#include "clock.h"
#include "err.h"
#include "log.h"

#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QB_WS_BACKOFF_MIN_MS 500
#define QB_WS_BACKOFF_MAX_MS 30000
#define QB_WS_HEALTHY_MS 30000
#define QB_WS_TLS_DRAIN_MAX 64 /* records serviced from OpenSSL's buffer per pass */

static void wsconn_connect_cb(lws_sorted_usec_list_t *sul);

int qb__wsconn_init(qb_wsconn *c, qb_adapter *a, unsigned idx, size_t ninst)
{
    memset(c, 0, sizeof *c);
    c->obj.kind = QB_LWS_WS;
    c->a = a;
    c->idx = idx;
    size_t cap = QB_WS_TXQ + 4 * (ninst < 100000 ? ninst : 100000);
    c->tx = calloc(cap, sizeof *c->tx);
    if (c->tx == NULL) {
        return QB_ENOMEM;
    }
    c->tx_cap = (unsigned)cap;
    return QB_OK;
}

void qb__wsconn_fini(qb_wsconn *c)
{
    qb__wsconn_cancel_timers(c);
    free(c->insts);
    free(c->url);
    qb_buf_fini(&c->rx);
    for (unsigned i = 0; c->tx && i < c->tx_cap; i++) {
        qb_buf_fini(&c->tx[i]);
    }
    free(c->tx);
    c->tx = NULL;
    c->tx_cap = 0;
    c->insts = NULL;
    c->url = NULL;
}

void qb__wsconn_cancel_timers(qb_wsconn *c)
{
    lws_sul_cancel(&c->sul_connect);
    lws_sul_cancel(&c->sul_age);
    lws_sul_cancel(&c->sul_healthy);
    lws_sul_cancel(&c->sul_keepalive);
}

static void wsconn_schedule(qb_wsconn *c, uint64_t delay_ms)
{
    if (c->a->stopping) {
        return;
    }
    c->retry_pending = true;
    lws_sul_schedule(c->a->ctx, 0, &c->sul_connect, wsconn_connect_cb,
                     (lws_usec_t)delay_ms * LWS_US_PER_MS);
}

/* Schedules the next attempt: at once after a deliberate recycle,
 * otherwise exponential backoff with jitter. */
static void wsconn_retry(qb_wsconn *c)
{
    uint64_t delay;
    if (c->reconnect_now) {
        c->reconnect_now = false;
        delay = 0;
    } else {
        uint64_t base = QB_WS_BACKOFF_MIN_MS;
        for (uint32_t k = 0; k < c->attempts && base < QB_WS_BACKOFF_MAX_MS; k++) {
            base *= 2;
        }
        if (base > QB_WS_BACKOFF_MAX_MS) {
            base = QB_WS_BACKOFF_MAX_MS;
        }
        delay = qb__adapter_rand(c->a, base - base / 4, base + base / 4);
        c->attempts++;
    }
    c->a->cnt.reconnects++;
    QB_INFO("ws_reconnect_scheduled", "conn=%u in %llu ms (attempt %u)", c->idx,
            (unsigned long long)delay, c->attempts);
    wsconn_schedule(c, delay);
}

static void wsconn_failed(qb_wsconn *c, const char *why)
{
    if (c->failed) {
        return;
    }
    c->failed = true;
    c->wsi = NULL;
    c->a->cnt.connect_errors++;
    snprintf(c->err, sizeof c->err, "%s", why ? why : "connection failed");
    if (c->a->stopping) {
        QB_INFO("ws_connect_failed", "conn=%u %s while stopping", c->idx, c->err);
        return;
    }
    /* The very first attempt may come before the upstream listens (the
     * demo starts its simulator together with the adapters; so do
     * orchestrators): said at info, the books stay "syncing", and the
     * retry after the first backoff step warns if it fails too. */
    bool first = c->connects == 0 && c->attempts == 0;
    QB_LOG_RL(first ? QB_LOG_INFO : QB_LOG_WARN, "ws_connect_failed", "conn=%u url=%.160s%s: %s%s",
              c->idx, c->url, strlen(c->url) > 160 ? "..." : "", c->err,
              first ? " (first attempt; retrying)" : "");
    if (first) {
        wsconn_retry(c);
        return;
    }
    /* The reason names the endpoint (scheme://host:port, without the path
     * and its stream list): lws's own text ("Unable to connect") does not. */
    const char *host = strstr(c->url, "://");
    host = host ? host + 3 : c->url;
    int end = (int)strcspn(host, "/?");
    int start = (int)(host - c->url);
    char reason[QB_EVENT_INFO_MAX];
    snprintf(reason, sizeof reason, "upstream unreachable: %s (%.*s)", c->err,
             start + end > 120 ? 120 : start + end, c->url);
    qb__adapter_on_conn_down(c, QB_FEED_DOWN, reason);
    wsconn_retry(c);
}

static void wsconn_connect_cb(lws_sorted_usec_list_t *sul)
{
    qb_wsconn *c = lws_container_of(sul, qb_wsconn, sul_connect);
    c->retry_pending = false;
    if (c->a->stopping || c->wsi) {
        return;
    }
    /* The process-wide connect budget (budget.c): an attempt beyond it
     * waits for its token, with jitter so waiting connections spread. */
    uint64_t wait_ns = qb_budget_connect(&c->a->budget, qb_mono_ns());
    if (wait_ns) {
        uint64_t ms = wait_ns / 1000000u + 1;
        ms += qb__adapter_rand(c->a, 0, ms / 10 + 50);
        char reason[QB_EVENT_INFO_MAX];
        snprintf(reason, sizeof reason, "reconnect budget exhausted, next attempt in %llu s",
                 (unsigned long long)((ms + 999) / 1000));
        QB_LOG_RL(QB_LOG_WARN, "ws_connect_budget", "conn=%u %s (%u per min)", c->idx, reason,
                  c->a->budget.connects.per_min);
        qb__adapter_on_conn_down(c, QB_FEED_DOWN, reason);
        wsconn_schedule(c, ms);
        return;
    }
    /* lws_parse_uri cuts its input: work on a copy that lives as long as
     * the attempt (lws copies what it keeps). */
    char *u = strdup(c->url);
    if (u == NULL) {
        wsconn_schedule(c, QB_WS_BACKOFF_MAX_MS);
        return;
    }
    const char *prot, *ads, *path;
    int port;
    if (lws_parse_uri(u, &prot, &ads, &port, &path)) {
        free(u);
        wsconn_failed(c, "bad URL");
        return;
    }
    char *fullpath = malloc(strlen(path) + 2);
    if (fullpath == NULL) {
        free(u);
        wsconn_schedule(c, QB_WS_BACKOFF_MAX_MS);
        return;
    }
    fullpath[0] = '/';
    strcpy(fullpath + 1, path);

    struct lws_client_connect_info i;
    memset(&i, 0, sizeof i);
    i.context = c->a->ctx;
    i.address = ads;
    i.port = port;
    i.path = fullpath;
    i.host = ads;
    i.origin = ads;
    i.ssl_connection =
        (strcmp(prot, "wss") == 0 || strcmp(prot, "https") == 0) ? LCCSCF_USE_SSL : 0;
    i.ssl_connection |= LCCSCF_PRIORITIZE_READS;
    i.protocol = NULL;
    i.local_protocol_name = "qb-ws";
    i.opaque_user_data = c;
    i.pwsi = &c->wsi;
    c->failed = false;
    c->established = false;
    c->in_connect = true;
    QB_INFO("ws_connecting", "conn=%u %s://%s:%d/%.120s%s", c->idx, prot, ads, port, path,
            strlen(path) > 120 ? "..." : "");
    struct lws *wsi = lws_client_connect_via_info(&i);
    c->in_connect = false;
    free(fullpath);
    free(u);
    if (wsi == NULL) {
        c->wsi = NULL;
        wsconn_failed(c, c->err[0] && c->failed ? c->err : "connect failed");
        return;
    }
    c->wsi = wsi;
    if (c->failed) {
        /* The error came synchronously; the attempt is over. */
        c->wsi = NULL;
    }
}

void qb__wsconn_start(qb_wsconn *c)
{
    wsconn_schedule(c, 0);
}

static void wsconn_age_cb(lws_sorted_usec_list_t *sul)
{
    qb_wsconn *c = lws_container_of(sul, qb_wsconn, sul_age);
    qb__wsconn_recycle(c, "max connection age reached");
}

static void wsconn_healthy_cb(lws_sorted_usec_list_t *sul)
{
    qb_wsconn *c = lws_container_of(sul, qb_wsconn, sul_healthy);
    if (c->established) {
        c->attempts = 0;
        QB_DEBUG("ws_healthy", "conn=%u stayed up: backoff reset", c->idx);
    }
}

static void wsconn_keepalive_cb(lws_sorted_usec_list_t *sul)
{
    qb_wsconn *c = lws_container_of(sul, qb_wsconn, sul_keepalive);
    qb_adapter *a = c->a;
    if (a->stopping || !c->established) {
        return;
    }
    const char *t = a->ops->keepalive_text;
    if (t && qb__wsconn_send(c, t, strlen(t)) == QB_OK) {
        a->cnt.keepalives++;
    }
    lws_sul_schedule(a->ctx, 0, &c->sul_keepalive, wsconn_keepalive_cb,
                     (lws_usec_t)a->cfg.keepalive_ms * LWS_US_PER_MS);
}

void qb__wsconn_recycle(qb_wsconn *c, const char *why)
{
    if (c->a->stopping) {
        QB_INFO("ws_recycle", "conn=%u: %s while stopping: not reconnecting", c->idx, why);
        return;
    }
    QB_INFO("ws_recycle", "conn=%u: %s: reconnecting now", c->idx, why);
    c->reconnect_now = true;
    if (c->wsi) {
        c->close_now = true;
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
}

int qb__wsconn_send(qb_wsconn *c, const char *text, size_t len)
{
    if (c->tx_n == c->tx_cap) {
        c->tx_dropped++;
        QB_LOG_RL(QB_LOG_WARN, "ws_txq_full", "conn=%u dropped a %zu byte message", c->idx, len);
        return QB_EAGAIN;
    }
    qb_buf *b = &c->tx[(c->tx_head + c->tx_n) % c->tx_cap];
    qb_buf_reset(b);
    if (qb_buf_reserve(b, LWS_PRE + len) != QB_OK) {
        return QB_ENOMEM;
    }
    memset(b->data, 0, LWS_PRE);
    memcpy(b->data + LWS_PRE, text, len);
    b->len = LWS_PRE + len;
    c->tx_n++;
    if (c->wsi && c->established) {
        lws_callback_on_writable(c->wsi);
    }
    return QB_OK;
}

static void wsconn_rx(qb_wsconn *c, struct lws *wsi, const void *in, size_t len)
{
    qb_adapter *a = c->a;
    if (lws_is_first_fragment(wsi)) {
        qb_buf_reset(&c->rx);
        c->rx_drop = false;
        c->rx_total = 0;
    }
    c->rx_total += len;
    if (!c->rx_drop) {
        if (c->rx.len + len > a->cfg.max_frame) {
            c->rx_drop = true;
            qb_buf_reset(&c->rx);
        } else if (qb_buf_append(&c->rx, in, len) != QB_OK) {
            c->rx_drop = true;
            qb_buf_reset(&c->rx);
        }
    }
    if (!lws_is_final_fragment(wsi)) {
        return;
    }
    uint64_t now = qb_now_ns();
    a->cnt.frames++;
    a->cnt.bytes += c->rx_total;
    if (c->rx_drop) {
        a->cnt.oversized++;
        QB_LOG_RL(QB_LOG_WARN, "frame_oversized", "conn=%u dropped a %zu byte message (max %zu)",
                  c->idx, c->rx_total, a->cfg.max_frame);
        c->rx_drop = false;
        qb__adapter_on_frame_lost(c, "oversized frame dropped");
        return;
    }
    qb__adapter_on_message(c, c->rx.data, c->rx.len, now);
    qb_buf_reset(&c->rx);
}

/* True when OpenSSL holds input of c that poll() cannot see and lws would
 * not read without a socket event. */
static bool wsconn_tls_buffered(const qb_wsconn *c)
{
    if (c->wsi == NULL || !c->established) {
        return false;
    }
    SSL *s = lws_get_ssl(c->wsi);
    return s != NULL && SSL_has_pending(s) && !SSL_want_read(s);
}

bool qb__wsconn_drain_tls(qb_wsconn *c)
{
    qb_adapter *a = c->a;
    uint64_t calls = c->rx_calls;
    for (unsigned k = 0; k < QB_WS_TLS_DRAIN_MAX && wsconn_tls_buffered(c); k++) {
        struct lws_pollfd pfd = {
            .fd = lws_get_socket_fd(c->wsi), .events = POLLIN, .revents = POLLIN};
        a->cnt.tls_drained++;
        if (lws_service_fd(a->ctx, &pfd) < 0) {
            return false;
        }
    }
    if (!wsconn_tls_buffered(c)) {
        return false;
    }
    if (c->rx_calls == calls) {
        a->cnt.tls_drain_stuck++;
        QB_LOG_RL(QB_LOG_WARN, "tls_drain_stuck",
                  "conn=%u lws read none of the TLS input OpenSSL holds; waiting for the "
                  "next socket event",
                  c->idx);
        return false;
    }
    return true;
}

int qb__wsconn_lws_cb(struct lws *wsi, enum lws_callback_reasons reason, qb_wsconn *c, void *in,
                      size_t len)
{
    qb_adapter *a = c->a;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        char why[160];
        snprintf(why, sizeof why, "%s", in ? (const char *)in : "connection error");
        wsconn_failed(c, why);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        c->wsi = wsi;
        c->established = true;
        c->close_now = false;
        c->connects++;
        a->cnt.connects++;
        QB_INFO("ws_established", "conn=%u symbols=%zu", c->idx, c->ninst);
        lws_sul_schedule(a->ctx, 0, &c->sul_healthy, wsconn_healthy_cb,
                         (lws_usec_t)QB_WS_HEALTHY_MS * LWS_US_PER_MS);
        if (a->cfg.max_conn_age_ms) {
            lws_sul_schedule(a->ctx, 0, &c->sul_age, wsconn_age_cb,
                             (lws_usec_t)a->cfg.max_conn_age_ms * LWS_US_PER_MS);
        }
        if (a->cfg.keepalive_ms && a->ops->keepalive_text) {
            lws_sul_schedule(a->ctx, 0, &c->sul_keepalive, wsconn_keepalive_cb,
                             (lws_usec_t)a->cfg.keepalive_ms * LWS_US_PER_MS);
        }
        qb_buf_reset(&c->rx);
        c->rx_drop = false;
        if (!a->cfg.no_tls_read_ahead && lws_get_ssl(wsi) != NULL) {
            SSL_set_read_ahead(lws_get_ssl(wsi), 1);
        }
        qb__adapter_on_conn_up(c);
        if (c->tx_n) {
            lws_callback_on_writable(wsi);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        c->rx_calls++;
        if (c->close_now) {
            return -1;
        }
        wsconn_rx(c, wsi, in, len);
        return c->close_now ? -1 : 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (c->close_now) {
            return -1;
        }
        if (c->tx_n) {
            /* One message per WRITEABLE, as lws requires. */
            qb_buf *b = &c->tx[c->tx_head];
            size_t n = b->len - LWS_PRE;
            if (lws_write(wsi, b->data + LWS_PRE, n, LWS_WRITE_TEXT) < (int)n) {
                return -1;
            }
            qb_buf_reset(b);
            c->tx_head = (c->tx_head + 1) % c->tx_cap;
            c->tx_n--;
            if (c->tx_n) {
                lws_callback_on_writable(wsi);
            }
        }
        return 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: {
        unsigned code =
            len >= 2 ? ((unsigned)((const uint8_t *)in)[0] << 8 | ((const uint8_t *)in)[1]) : 0;
        QB_INFO("ws_peer_close", "conn=%u close code %u", c->idx, code);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_CLOSED: {
        c->established = false;
        c->tx_head = c->tx_n = 0; /* requests for the old session are void */
        c->wsi = NULL;
        c->close_now = false;
        lws_sul_cancel(&c->sul_age);
        lws_sul_cancel(&c->sul_healthy);
        lws_sul_cancel(&c->sul_keepalive);
        c->next_req_mono = 0;
        if (a->stopping) {
            QB_INFO("ws_closed", "conn=%u connection closed while stopping", c->idx);
            return 0;
        }
        a->cnt.disconnects++;
        QB_WARN("ws_closed", "conn=%u connection closed%s", c->idx,
                c->reconnect_now ? " (recycled)" : "");
        qb__adapter_on_conn_down(c, QB_FEED_RESYNCING,
                                 c->reconnect_now ? "reconnecting (recycled connection)"
                                                  : "reconnecting (connection lost)");
        wsconn_retry(c);
        return 0;
    }
    case LWS_CALLBACK_WSI_DESTROY:
        if (c->wsi == wsi) {
            c->wsi = NULL;
        }
        return 0;
    default:
        return 0;
    }
}
