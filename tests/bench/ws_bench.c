/*
 * ws_bench.c (qb-bench-ws): websocket latency and fan-out through the
 * broker's /ws endpoint (docs/BENCHMARKS.md section 5).
 *
 * One process: a publisher thread, --threads client service threads and the
 * main thread (starts them, decides when the deltas start, collects).
 *
 *   publisher thread: an NNG PUB socket that dials the broker's ingest (as an
 *     adapter does, like qb-bench-e2e run). Frames come from qb_msg_encode on
 *     book.binance.BTC-USDT: a snapshot (seq 1) so the broker has a valid
 *     book, refresh snapshots every 200 ms while the clients connect, then,
 *     once every client holds its first snapshot (or --connect-timeout
 *     passed), --seconds of deltas (--levels bids + asks, every size changes)
 *     at --rate msg/s on absolute deadlines, `rts` = qb_now_ns() right
 *     before the encode. The measurement window is exactly that delta
 *     period: the broker's utime+stime (/proc/PID/stat) and each client
 *     service thread's CPU (pthread_getcpuclockid) are read at both ends.
 *   client service threads: each owns one lws 4.1 client context and an
 *     even slice of the --clients connections to --url (opened
 *     --connect-batch at a time per thread); every connection subscribes to
 *     the topic with {"op":"subscribe"}. JSON mode (default) asks for
 *     quotebus.json.v1 and parses every data message with jsmn
 *     (common/json.h: type, seq, rts, refresh, conflated); --msgpack asks
 *     for quotebus.msgpack.v1 and decodes each binary message with
 *     qb_decoder (a "conflated" key is found by its msgpack string bytes,
 *     the decoder has no field for it). Latency = qb_now_ns() when the last
 *     fragment of a message arrives - rts (one clock, one machine); a delta
 *     whose seq is not last + 1 is a gap; a snapshot rebases (counted, and
 *     as conflated when marked so). A thread ends when the deltas are sent
 *     and each of its ready clients has the last one, or 3 s after.
 *
 * Output: one markdown row (--header prints the header first) with
 * delivered deltas/s over all clients, loss, conflation, latency
 * percentiles in µs, broker CPU (% of one core over the window), broker
 * VmRSS/VmHWM at the end, and the client's own CPU (service threads
 * summed); when the busiest service thread used more than 85 % of a core
 * the row says "client-bound" (the figures are then the client's limit,
 * not the broker's). RLIMIT_NOFILE is raised to the hard limit first (1000
 * clients need > 1024 fds). Exit status: 0, 1 on setup failure (or no
 * client got in), 2 on bad options.
 */
#include "buf.h"
#include "clock.h"
#include "err.h"
#include "json.h"
#include "msg.h"
#include "opts.h"

#include <libwebsockets.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define WSB_SYM "BTC-USDT"
#define WSB_TOPIC "book.binance.BTC-USDT"

/* options */
static struct {
    char *url;
    char *ingest;
    int64_t clients, rate, levels, batch, broker_pid, connect_timeout, threads;
    char *seconds;
    char *label;
    bool msgpack, header;
    char *log_level;
} wsb_cfg;

struct wsb_thr;

typedef struct wsb_client {
    struct lws *wsi;
    struct wsb_thr *thr;
    int idx;
    bool established, subscribed_sent, ready, closed;
    bool closed_early; /* closed before the end of the run (not by us) */
    uint64_t last_seq;
    uint64_t deltas, snaps, conflated, gaps, bad;
    qb_buf rx; /* reassembly of fragmented messages */
} wsb_client;

/* One client service thread: its own lws context and a slice of the
 * clients; everything below is touched by that thread only, except the
 * atomics (read by the main thread) and cpu0/cpu1 (publisher, through
 * pthread_getcpuclockid). */
typedef struct wsb_thr {
    pthread_t th;
    struct lws_context *ctx;
    lws_sorted_usec_list_t sul; /* 50 ms wake-up: phase changes, drain end */
    wsb_client *clients;
    int n, next_connect, pending;
    atomic_int ready, failed;
    uint64_t *lat; /* ns, one per delta received in the window */
    size_t nlat, cap;
    qb_decoder *dec;
    jsmntok_t *tok;
    int ntok;
    bool destroying; /* lws_context_destroy closes everything: quiet */
    uint64_t cpu0, cpu1;
    int rc;
} wsb_thr;

static wsb_client *wsb_clients;
static wsb_thr *wsb_thrs;
static int wsb_nthr;
static const char *wsb_host, *wsb_path;
static int wsb_port;
static bool wsb_tls;

/* publisher <-> main */
static atomic_int wsb_phase; /* 0 connecting, 1 deltas, 2 deltas done, 3 stop */
static atomic_bool wsb_measuring;
static uint64_t wsb_last_seq_sent;
static uint64_t wsb_sent, wsb_t0, wsb_t1, wsb_bcpu0, wsb_bcpu1;
static size_t wsb_frame_len;
static volatile sig_atomic_t wsb_interrupted;

static void wsb_on_signal(int sig)
{
    (void)sig;
    wsb_interrupted = 1;
}

/* ---- /proc ------------------------------------------------------------------- */

/* utime+stime of pid in ns, 0 when unreadable. */
static uint64_t wsb_proc_cpu_ns(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* comm may contain spaces */
    if (p == NULL) {
        return 0;
    }
    unsigned long long ut = 0, st = 0;
    /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) {
        return 0;
    }
    long hz = sysconf(_SC_CLK_TCK);
    return (uint64_t)((ut + st) * (1000000000ull / (unsigned long long)hz));
}

/* VmRSS / VmHWM of pid in KiB (0 when unreadable). */
static void wsb_proc_mem(long pid, long *rss, long *hwm)
{
    char path[64], line[256];
    *rss = *hwm = 0;
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return;
    }
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            *rss = atol(line + 6);
        } else if (strncmp(line, "VmHWM:", 6) == 0) {
            *hwm = atol(line + 6);
        }
    }
    fclose(f);
}

static uint64_t wsb_thread_cpu_ns(pthread_t th)
{
    clockid_t cid;
    struct timespec ts;
    if (pthread_getcpuclockid(th, &cid) != 0 || clock_gettime(cid, &ts) != 0) {
        return 0;
    }
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- publisher ----------------------------------------------------------------- */

static qb_level *wsb_levels(int side, size_t n)
{
    qb_level *v = calloc(n, sizeof *v);
    for (size_t i = 0; v != NULL && i < n; i++) {
        int64_t p = side == 0 ? 5999999 - (int64_t)i : 6000001 + (int64_t)i;
        v[i].price = (qb_dec){p, 2};
        v[i].size = (qb_dec){(int64_t)((i * 40503u) % 5000000) + 1, 6};
    }
    return v;
}

static void wsb_msg(qb_msg *m, qb_msg_type t, uint64_t seq, qb_level *b, qb_level *a, size_t n)
{
    memset(m, 0, sizeof *m);
    m->type = t;
    m->version = QB_PROTO_VERSION;
    m->exchange = (qb_str){"binance", 7};
    m->symbol = (qb_str){WSB_SYM, strlen(WSB_SYM)};
    m->native = (qb_str){"BTCUSDT", 7};
    m->seq = seq;
    m->first_id = m->last_id = seq;
    m->bids = b;
    m->n_bids = n;
    m->asks = a;
    m->n_asks = n;
}

static int wsb_send(nng_socket p, const qb_buf *b)
{
    nng_msg *m;
    int rv = nng_msg_alloc(&m, b->len);
    if (rv != 0) {
        return rv;
    }
    memcpy(nng_msg_body(m), b->data, b->len);
    rv = nng_sendmsg(p, m, 0);
    if (rv != 0) {
        nng_msg_free(m);
    }
    return rv;
}

static void wsb_sleep_until(uint64_t t)
{
    uint64_t now = qb_mono_ns();
    if (t > now) {
        struct timespec ts = {(time_t)((t - now) / 1000000000u), (long)((t - now) % 1000000000u)};
        nanosleep(&ts, NULL);
    }
}

static void *wsb_pub_main(void *arg)
{
    nng_socket p = *(nng_socket *)arg;
    size_t n = (size_t)wsb_cfg.levels;
    qb_level *bids = wsb_levels(0, n), *asks = wsb_levels(1, n);
    qb_buf b = QB_BUF_INIT;
    qb_msg m;
    /* snapshot + refreshes until main says go (phase 1) */
    for (int k = 0; atomic_load(&wsb_phase) == 0 && !wsb_interrupted; k++) {
        wsb_msg(&m, QB_MSG_SNAPSHOT, 1, bids, asks, n);
        m.refresh = k > 0;
        m.recv_ts = qb_now_ns();
        qb_buf_reset(&b);
        qb_msg_encode(&m, &b);
        wsb_send(p, &b);
        for (int i = 0; i < 20 && atomic_load(&wsb_phase) == 0; i++) {
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
    }
    double secs = atof(wsb_cfg.seconds);
    uint64_t total = (uint64_t)((double)wsb_cfg.rate * secs);
    uint64_t interval = 1000000000ull / (uint64_t)wsb_cfg.rate;
    struct timespec settle = {0, 200000000}; /* the last refresh reaches everyone */
    nanosleep(&settle, NULL);
    wsb_bcpu0 = wsb_cfg.broker_pid > 0 ? wsb_proc_cpu_ns((long)wsb_cfg.broker_pid) : 0;
    for (int i = 0; i < wsb_nthr; i++) {
        wsb_thrs[i].cpu0 = wsb_thread_cpu_ns(wsb_thrs[i].th);
    }
    atomic_store(&wsb_measuring, true);
    uint64_t t0 = qb_mono_ns();
    wsb_t0 = t0;
    uint64_t sent = 0;
    while (sent < total && !wsb_interrupted) {
        wsb_sleep_until(t0 + sent * interval);
        uint64_t now = qb_mono_ns();
        while (sent < total && t0 + sent * interval <= now) {
            for (size_t i = 0; i < n; i++) {
                bids[i].size.mant = (int64_t)((sent * 7919u + i) % 5000000) + 1;
                asks[i].size.mant = (int64_t)((sent * 104729u + i) % 5000000) + 1;
            }
            wsb_msg(&m, QB_MSG_DELTA, 2 + sent, bids, asks, n);
            m.recv_ts = qb_now_ns();
            qb_buf_reset(&b);
            qb_msg_encode(&m, &b);
            wsb_frame_len = b.len;
            wsb_send(p, &b);
            sent++;
        }
    }
    wsb_t1 = qb_mono_ns();
    wsb_bcpu1 = wsb_cfg.broker_pid > 0 ? wsb_proc_cpu_ns((long)wsb_cfg.broker_pid) : 0;
    for (int i = 0; i < wsb_nthr; i++) {
        wsb_thrs[i].cpu1 = wsb_thread_cpu_ns(wsb_thrs[i].th);
    }
    wsb_sent = sent;
    wsb_last_seq_sent = 1 + sent;
    atomic_store(&wsb_phase, 2);
    qb_buf_fini(&b);
    free(bids);
    free(asks);
    return NULL;
}

/* ---- websocket clients ------------------------------------------------------------ */

static void wsb_on_data_msg(wsb_client *c, qb_msg_type type, uint64_t seq, uint64_t rts,
                            bool refresh, bool conflated, uint64_t now)
{
    if (type == QB_MSG_SNAPSHOT) {
        c->snaps++;
        if (conflated) {
            c->conflated++;
            c->last_seq = seq;
        } else if (!refresh || c->last_seq == 0 || seq > c->last_seq) {
            c->last_seq = seq;
        }
        if (!c->ready) {
            c->ready = true;
            atomic_fetch_add(&c->thr->ready, 1);
        }
    } else if (type == QB_MSG_DELTA) {
        if (c->last_seq != 0 && seq != c->last_seq + 1) {
            c->gaps++;
        }
        c->last_seq = seq;
        c->deltas++;
        wsb_thr *t = c->thr;
        if (atomic_load(&wsb_measuring) && t->nlat < t->cap) {
            t->lat[t->nlat++] = now > rts ? now - rts : 0;
        }
    }
}

static void wsb_on_json(wsb_client *c, const char *s, size_t len, uint64_t now)
{
    qb_json j;
    int rc;
    wsb_thr *th = c->thr;
    while ((rc = qb_json_parse(&j, s, len, th->tok, th->ntok)) == QB_ETOOBIG &&
           th->ntok < (1 << 22)) {
        jsmntok_t *t = realloc(th->tok, (size_t)th->ntok * 4 * sizeof *t);
        if (t == NULL) {
            break;
        }
        th->ntok *= 4;
        th->tok = t;
    }
    if (rc != QB_OK || !qb_json_is_object(&j, 0)) {
        c->bad++;
        return;
    }
    int ti = qb_json_get(&j, 0, "type");
    if (ti < 0) {
        c->bad++;
        return;
    }
    qb_msg_type type;
    if (qb_json_str_eq(&j, ti, "delta")) {
        type = QB_MSG_DELTA;
    } else if (qb_json_str_eq(&j, ti, "snapshot")) {
        type = QB_MSG_SNAPSHOT;
    } else {
        if (qb_json_str_eq(&j, ti, "error")) {
            size_t n;
            const char *t = qb_json_text(&j, qb_json_get(&j, 0, "message"), &n);
            fprintf(stderr, "qb-bench-ws: client %d: error reply: %.*s\n", c->idx, t ? (int)n : 0,
                    t ? t : "");
            c->bad++;
        }
        return; /* subscribed, trades, status ... */
    }
    uint64_t seq = 0, rts = 0;
    bool refresh = false, conflated = false;
    int k;
    if ((k = qb_json_get(&j, 0, "seq")) < 0 || qb_json_u64(&j, k, &seq) != QB_OK ||
        (k = qb_json_get(&j, 0, "rts")) < 0 || qb_json_u64(&j, k, &rts) != QB_OK) {
        c->bad++;
        return;
    }
    if ((k = qb_json_get(&j, 0, "refresh")) >= 0) {
        qb_json_bool(&j, k, &refresh);
    }
    if ((k = qb_json_get(&j, 0, "conflated")) >= 0) {
        qb_json_bool(&j, k, &conflated);
    }
    wsb_on_data_msg(c, type, seq, rts, refresh, conflated, now);
}

static void wsb_on_msgpack(wsb_client *c, const unsigned char *s, size_t len, uint64_t now)
{
    qb_str topic;
    qb_msg m;
    qb_decoder *dec = c->thr->dec;
    if (qb_decoder_begin(dec, s, len, &topic) != QB_OK) {
        c->bad++;
        return;
    }
    bool conflated = false;
    /* msgpack fixstr "conflated" (0xa9 + 9 bytes) followed by true (0xc3) */
    static const char key[] = "\xa9"
                              "conflated"
                              "\xc3";
    if (memmem(s, len, key, sizeof key - 1) != NULL) {
        conflated = true;
    }
    int rc;
    while ((rc = qb_decoder_next(dec, &m)) == QB_OK) {
        wsb_on_data_msg(c, m.type, m.seq, m.recv_ts, m.refresh,
                        conflated && m.type == QB_MSG_SNAPSHOT, now);
    }
    if (rc != QB_EEOF) {
        c->bad++;
    }
}

static void wsb_connect_more(wsb_thr *t)
{
    while (t->next_connect < t->n && t->pending < wsb_cfg.batch) {
        wsb_client *c = &t->clients[t->next_connect];
        struct lws_client_connect_info ci;
        memset(&ci, 0, sizeof ci);
        ci.context = t->ctx;
        ci.address = wsb_host;
        ci.port = wsb_port;
        ci.path = wsb_path;
        ci.host = wsb_host;
        ci.ssl_connection = wsb_tls ? LCCSCF_USE_SSL | LCCSCF_ALLOW_SELFSIGNED |
                                          LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK
                                    : 0;
        ci.protocol = wsb_cfg.msgpack ? "quotebus.msgpack.v1" : "quotebus.json.v1";
        ci.local_protocol_name = "qb-bench-ws";
        ci.userdata = c;
        ci.pwsi = &c->wsi;
        t->next_connect++;
        t->pending++;
        if (lws_client_connect_via_info(&ci) == NULL) {
            /* CONNECTION_ERROR may or may not have been called: count here
             * only when it was not */
            if (!c->closed) {
                c->closed = true;
                atomic_fetch_add(&t->failed, 1);
                t->pending--;
            }
        }
    }
}

static int wsb_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
    wsb_client *c = user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (c != NULL && !c->closed) {
            c->closed = true;
            atomic_fetch_add(&c->thr->failed, 1);
            c->thr->pending--;
            fprintf(stderr, "qb-bench-ws: client %d: connection error: %s\n", c->idx,
                    in ? (const char *)in : "?");
        }
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        c->established = true;
        c->thr->pending--;
        lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE: {
        if (c->subscribed_sent) {
            return 0;
        }
        unsigned char buf[LWS_PRE + 128];
        int n = snprintf((char *)buf + LWS_PRE, 128,
                         "{\"op\":\"subscribe\",\"topics\":[\"%s\"],\"id\":%d}", WSB_TOPIC, c->idx);
        if (lws_write(wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_TEXT) < n) {
            return -1;
        }
        c->subscribed_sent = true;
        return 0;
    }
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        const char *p = in;
        size_t n = len;
        bool first = lws_is_first_fragment(wsi), final = lws_is_final_fragment(wsi);
        if (!(first && final)) {
            if (first) {
                qb_buf_reset(&c->rx);
            }
            qb_buf_append(&c->rx, in, len);
            if (!final) {
                return 0;
            }
            p = (const char *)c->rx.data;
            n = c->rx.len;
        }
        uint64_t now = qb_now_ns();
        if (lws_frame_is_binary(wsi)) {
            wsb_on_msgpack(c, (const unsigned char *)p, n, now);
        } else {
            wsb_on_json(c, p, n, now);
        }
        return 0;
    }
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c != NULL && !c->closed) {
            c->closed = true;
            if (!c->thr->destroying) {
                c->closed_early = true;
                fprintf(stderr, "qb-bench-ws: client %d closed\n", c->idx);
            }
        }
        if (c != NULL) {
            c->wsi = NULL;
        }
        return 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (len >= 2) {
            const unsigned char *b = in;
            fprintf(stderr, "qb-bench-ws: client %d: close %d %.*s\n", c ? c->idx : -1,
                    (b[0] << 8) | b[1], (int)len - 2, (const char *)in + 2);
        }
        return 0;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols wsb_protocols[] = {
    {"qb-bench-ws", wsb_callback, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static int wsb_parse_url(char *url)
{
    const char *prot, *addr, *path;
    int port;
    if (lws_parse_uri(url, &prot, &addr, &port, &path) != 0) {
        return -1;
    }
    wsb_tls = strcmp(prot, "wss") == 0;
    wsb_host = addr;
    wsb_port = port;
    static char pbuf[512];
    snprintf(pbuf, sizeof pbuf, "/%s", path);
    wsb_path = pbuf;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(const uint64_t *v, size_t n, double p)
{
    if (n == 0) {
        return 0;
    }
    size_t k = (size_t)(p * (double)(n - 1) + 0.5);
    return (double)v[k] / 1000.0;
}

static void wsb_thr_tick(lws_sorted_usec_list_t *sul)
{
    wsb_thr *t = lws_container_of(sul, wsb_thr, sul);
    lws_sul_schedule(t->ctx, 0, &t->sul, wsb_thr_tick, 50 * LWS_US_PER_MS);
}

/* A client service thread: connects its slice, serves it until the deltas
 * are sent and every ready client has the last one (or 3 s more passed). */
static void *wsb_thr_main(void *arg)
{
    wsb_thr *t = arg;
    lws_sul_schedule(t->ctx, 0, &t->sul, wsb_thr_tick, 50 * LWS_US_PER_MS);
    uint64_t drain_end = 0;
    while (!wsb_interrupted) {
        wsb_connect_more(t);
        lws_service(t->ctx, 0);
        int ph = atomic_load(&wsb_phase);
        if (ph == 3) {
            break;
        }
        if (ph == 2) {
            uint64_t now = qb_mono_ns();
            if (drain_end == 0) {
                drain_end = now + 3000000000ull;
            }
            bool done = true;
            for (int i = 0; i < t->n && done; i++) {
                const wsb_client *c = &t->clients[i];
                done = c->closed || !c->ready || c->last_seq >= wsb_last_seq_sent;
            }
            if (done || now > drain_end) {
                break;
            }
        }
    }
    lws_sul_cancel(&t->sul);
    t->destroying = true;
    lws_context_destroy(t->ctx);
    return NULL;
}

int main(int argc, char **argv)
{
    wsb_cfg.clients = 1;
    wsb_cfg.rate = 100;
    wsb_cfg.levels = 10;
    wsb_cfg.batch = 50;
    wsb_cfg.connect_timeout = 60;
    wsb_cfg.threads = 1;
    static const qb_opt opts[] = {
        {"url", QB_OPT_STR, &wsb_cfg.url, "URL",
         "the broker's websocket" QB_OPT_DEFAULT("ws://127.0.0.1:7780/ws")},
        {"ingest", QB_OPT_STR, &wsb_cfg.ingest, "ADDR",
         "the broker's ingest, dialled by the publisher" QB_OPT_DEFAULT(
             "ipc:///tmp/quotebus/private/ingest.ipc")},
        {"clients", QB_OPT_INT, &wsb_cfg.clients, "N", "websocket connections"},
        {"rate", QB_OPT_INT, &wsb_cfg.rate, "N", "deltas per second"},
        {"seconds", QB_OPT_STR, &wsb_cfg.seconds, "S",
         "length of the measurement window" QB_OPT_DEFAULT("10")},
        {"levels", QB_OPT_INT, &wsb_cfg.levels, "N", "bids and asks per delta"},
        {"msgpack", QB_OPT_BOOL, &wsb_cfg.msgpack, NULL,
         "use the quotebus.msgpack.v1 subprotocol (without it: quotebus.json.v1)"},
        {"threads", QB_OPT_INT, &wsb_cfg.threads, "N",
         "client service threads (lws contexts), clients split evenly"},
        {"connect-batch", QB_OPT_INT, &wsb_cfg.batch, "N", "connections being opened at once"},
        {"connect-timeout", QB_OPT_INT, &wsb_cfg.connect_timeout, "S",
         "start the deltas after this long even when not every client is in"},
        {"broker-pid", QB_OPT_INT, &wsb_cfg.broker_pid, "PID",
         "the broker's pid, for its CPU and memory (0: not reported)"},
        {"label", QB_OPT_STR, &wsb_cfg.label, "TEXT",
         "first column of the row" QB_OPT_DEFAULT("quotebus-ws")},
        {"header", QB_OPT_BOOL, &wsb_cfg.header, NULL, "print the markdown table header first"},
        {"log-level", QB_OPT_STR, &wsb_cfg.log_level, "LEVEL",
         "lws log: error or warn" QB_OPT_DEFAULT("error")},
        {0},
    };
    static const qb_prog prog = {
        "qb-bench-ws", "[OPTIONS]",
        "Websocket latency and fan-out through quotebus-broker's /ws: an in-process publisher\n"
        "dials the broker's ingest and sends one book's deltas at --rate; --clients websocket\n"
        "connections subscribe to it. Prints one markdown row: delivered msg/s, loss,\n"
        "conflation, latency rts -> client (us), broker CPU/RSS (--broker-pid), client CPU.",
        "Example (run-ws.sh does all of this):\n"
        "  quotebus-broker --no-spawn --ingest ipc:///tmp/w/in.ipc --pub ipc:///tmp/w/out.ipc \\\n"
        "      --snapshot off --http-listen 127.0.0.1:17780 --http-max-clients 1100 &\n"
        "  qb-bench-ws --url ws://127.0.0.1:17780/ws --ingest ipc:///tmp/w/in.ipc \\\n"
        "      --clients 1000 --rate 100 --seconds 10 --broker-pid $! --header"};
    int first_pos;
    int rc = qb_opts_parse(&prog, opts, argc, argv, &first_pos);
    if (rc == QB_EEOF) {
        return 0;
    }
    if (rc != QB_OK) {
        return 2;
    }
    char *url = strdup(wsb_cfg.url ? wsb_cfg.url : "ws://127.0.0.1:7780/ws");
    const char *ingest = wsb_cfg.ingest ? wsb_cfg.ingest : "ipc:///tmp/quotebus/private/ingest.ipc";
    const char *label = wsb_cfg.label ? wsb_cfg.label : "quotebus-ws";
    if (wsb_cfg.seconds == NULL) {
        wsb_cfg.seconds = strdup("10");
    }
    double secs = atof(wsb_cfg.seconds);
    if (wsb_cfg.clients < 1 || wsb_cfg.clients > 100000 || wsb_cfg.rate < 1 ||
        wsb_cfg.rate > 1000000 || secs <= 0 || wsb_cfg.levels < 1 || wsb_cfg.levels > 1000 ||
        wsb_cfg.batch < 1 || wsb_parse_url(url) != 0) {
        fprintf(stderr, "qb-bench-ws: bad options (see --help)\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    if ((uint64_t)rl.rlim_cur < (uint64_t)wsb_cfg.clients + 64) {
        fprintf(stderr, "qb-bench-ws: RLIMIT_NOFILE %llu is too small for %lld clients\n",
                (unsigned long long)rl.rlim_cur, (long long)wsb_cfg.clients);
        return 1;
    }
    signal(SIGINT, wsb_on_signal);
    signal(SIGTERM, wsb_on_signal);
    signal(SIGPIPE, SIG_IGN);
    bool lws_warn = wsb_cfg.log_level && strcmp(wsb_cfg.log_level, "warn") == 0;
    lws_set_log_level(LLL_ERR | (lws_warn ? LLL_WARN : 0), NULL);

    if (wsb_cfg.threads < 1 || wsb_cfg.threads > 64) {
        wsb_cfg.threads = 1;
    }
    wsb_nthr = (int)(wsb_cfg.threads < wsb_cfg.clients ? wsb_cfg.threads : wsb_cfg.clients);
    wsb_clients = calloc((size_t)wsb_cfg.clients, sizeof *wsb_clients);
    wsb_thrs = calloc((size_t)wsb_nthr, sizeof *wsb_thrs);
    if (wsb_clients == NULL || wsb_thrs == NULL) {
        fprintf(stderr, "qb-bench-ws: out of memory\n");
        return 1;
    }
    size_t per_client_lat = (size_t)((double)wsb_cfg.rate * secs) + 16;
    for (int k = 0, first = 0; k < wsb_nthr; k++) {
        wsb_thr *t = &wsb_thrs[k];
        t->n = (int)(wsb_cfg.clients / wsb_nthr) + (k < wsb_cfg.clients % wsb_nthr ? 1 : 0);
        t->clients = wsb_clients + first;
        for (int i = 0; i < t->n; i++) {
            t->clients[i].idx = first + i;
            t->clients[i].thr = t;
        }
        first += t->n;
        t->cap = per_client_lat * (size_t)t->n;
        t->lat = malloc(t->cap * sizeof *t->lat);
        t->ntok = 8192;
        t->tok = malloc((size_t)t->ntok * sizeof *t->tok);
        t->dec = qb_decoder_new();
        struct lws_context_creation_info info;
        memset(&info, 0, sizeof info);
        info.port = CONTEXT_PORT_NO_LISTEN;
        info.protocols = wsb_protocols;
        info.fd_limit_per_thread = (unsigned int)t->n + 64;
        if (wsb_tls) {
            info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        }
        t->ctx = lws_create_context(&info);
        if (t->lat == NULL || t->tok == NULL || t->dec == NULL || t->ctx == NULL) {
            fprintf(stderr, "qb-bench-ws: out of memory or lws_create_context failed\n");
            return 1;
        }
    }

    nng_socket pub;
    int rv;
    if ((rv = nng_pub0_open(&pub)) != 0) {
        fprintf(stderr, "qb-bench-ws: nng_pub0_open: %s\n", nng_strerror(rv));
        return 1;
    }
    nng_socket_set_int(pub, NNG_OPT_SENDBUF, 8192);
    if ((rv = nng_dial(pub, ingest, NULL, NNG_FLAG_NONBLOCK)) != 0) {
        fprintf(stderr, "qb-bench-ws: dial %s: %s\n", ingest, nng_strerror(rv));
        return 1;
    }
    pthread_t pth;
    pthread_create(&pth, NULL, wsb_pub_main, &pub);

    /* connect: give the broker 300 ms to get the first snapshot */
    struct timespec ts = {0, 300000000};
    nanosleep(&ts, NULL);
    uint64_t start = qb_mono_ns();
    uint64_t connect_deadline = start + (uint64_t)wsb_cfg.connect_timeout * 1000000000ull;
    uint64_t connect_ns = 0;
    for (int k = 0; k < wsb_nthr; k++) {
        pthread_create(&wsb_thrs[k].th, NULL, wsb_thr_main, &wsb_thrs[k]);
    }
    int wsb_ready = 0, wsb_failed = 0;
    while (!wsb_interrupted && atomic_load(&wsb_phase) == 0) {
        wsb_ready = wsb_failed = 0;
        for (int k = 0; k < wsb_nthr; k++) {
            wsb_ready += atomic_load(&wsb_thrs[k].ready);
            wsb_failed += atomic_load(&wsb_thrs[k].failed);
        }
        uint64_t now = qb_mono_ns();
        if ((wsb_ready > 0 && wsb_ready + wsb_failed >= wsb_cfg.clients) ||
            now > connect_deadline) {
            connect_ns = now - start;
            atomic_store(&wsb_phase, 1);
            break;
        }
        struct timespec t10 = {0, 10000000};
        nanosleep(&t10, NULL);
    }
    if (wsb_interrupted) {
        atomic_store(&wsb_phase, 3);
    }
    pthread_join(pth, NULL); /* deltas sent: phase 2 (or interrupted) */
    for (int k = 0; k < wsb_nthr; k++) {
        pthread_join(wsb_thrs[k].th, NULL);
    }
    atomic_store(&wsb_measuring, false);
    atomic_store(&wsb_phase, 3);
    wsb_ready = wsb_failed = 0;
    for (int k = 0; k < wsb_nthr; k++) {
        wsb_ready += atomic_load(&wsb_thrs[k].ready);
        wsb_failed += atomic_load(&wsb_thrs[k].failed);
    }

    /* summary */
    uint64_t delivered = 0, lost = 0, conflated = 0, gaps = 0, bad = 0, snaps = 0;
    int with_loss = 0, closed = 0;
    for (int i = 0; i < wsb_cfg.clients; i++) {
        wsb_client *c = &wsb_clients[i];
        if (!c->ready) {
            continue;
        }
        uint64_t got = c->deltas;
        delivered += got;
        if (got < wsb_sent) {
            lost += wsb_sent - got;
            with_loss++;
        }
        conflated += c->conflated;
        gaps += c->gaps;
        bad += c->bad;
        snaps += c->snaps;
        closed += c->closed_early;
    }
    double window = (double)(wsb_t1 - wsb_t0) / 1e9;
    if (window <= 0) {
        window = 1e-9;
    }
    size_t nlat = 0;
    for (int k = 0; k < wsb_nthr; k++) {
        nlat += wsb_thrs[k].nlat;
    }
    uint64_t *lat = malloc((nlat + 1) * sizeof *lat);
    double ccpu = 0, ccpu_max = 0; /* % of one core: all service threads, the busiest */
    for (int k = 0, at = 0; k < wsb_nthr; k++) {
        wsb_thr *t = &wsb_thrs[k];
        memcpy(lat + at, t->lat, t->nlat * sizeof *lat);
        at += (int)t->nlat;
        double c = (double)(t->cpu1 - t->cpu0) / 1e9 / window * 100;
        ccpu += c;
        ccpu_max = c > ccpu_max ? c : ccpu_max;
    }
    qsort(lat, nlat, sizeof *lat, cmp_u64);
    long rss = 0, hwm = 0;
    if (wsb_cfg.broker_pid > 0) {
        wsb_proc_mem((long)wsb_cfg.broker_pid, &rss, &hwm);
    }
    double bcpu =
        wsb_cfg.broker_pid > 0 ? (double)(wsb_bcpu1 - wsb_bcpu0) / 1e9 / window * 100 : -1;
    /* a starved (not busy) client or broker shows as high load, not CPU */
    char loadavg[64] = "?";
    FILE *lf = fopen("/proc/loadavg", "r");
    if (lf != NULL) {
        if (fgets(loadavg, sizeof loadavg, lf) != NULL) {
            char *sp = strchr(loadavg, ' ');
            sp = sp ? strchr(sp + 1, ' ') : NULL;
            sp = sp ? strchr(sp + 1, ' ') : NULL;
            if (sp != NULL) {
                *sp = '\0';
            }
        }
        fclose(lf);
    }
    char bcpu_s[32] = "-", rss_s[32] = "-", hwm_s[32] = "-"; /* without --broker-pid */
    if (wsb_cfg.broker_pid > 0) {
        snprintf(bcpu_s, sizeof bcpu_s, "%.1f", bcpu);
        snprintf(rss_s, sizeof rss_s, "%.1f", (double)rss / 1024.0);
        snprintf(hwm_s, sizeof hwm_s, "%.1f", (double)hwm / 1024.0);
    }
    if (wsb_cfg.header) {
        printf(
            "| run | mode | clients (in) | rate/s | s | sent | delivered msg/s | lost | clients "
            "with loss | conflated snapshots | p50 us | p99 us | p99.9 us | max us | broker CPU %% "
            "| broker VmRSS MiB | VmHWM MiB | client CPU %% (threads) |\n");
        printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    }
    printf("| %s | %s | %lld (%d) | %lld | %.0f | %llu | %.0f | %llu | %d | %llu | %.0f | %.0f | "
           "%.0f | "
           "%.0f | %s | %s | %s | %.0f (%d)%s |\n",
           label, wsb_cfg.msgpack ? "msgpack" : "json", (long long)wsb_cfg.clients, wsb_ready,
           (long long)wsb_cfg.rate, window, (unsigned long long)wsb_sent,
           (double)delivered / window, (unsigned long long)lost, with_loss,
           (unsigned long long)conflated, pct_us(lat, nlat, 0.50), pct_us(lat, nlat, 0.99),
           pct_us(lat, nlat, 0.999), nlat ? (double)lat[nlat - 1] / 1000.0 : 0.0, bcpu_s, rss_s,
           hwm_s, ccpu, wsb_nthr, ccpu_max > 85 ? " client-bound!" : "");
    fflush(stdout);
    fprintf(stderr,
            "qb-bench-ws: %s: %d/%lld clients in after %.1f s (%d failed, %d closed), frame %zu B, "
            "%llu gaps, %llu snapshots, %llu bad; client: %d service thread(s), %.0f %% of a core "
            "in all, the busiest %.0f %%%s; load average %s\n",
            label, wsb_ready, (long long)wsb_cfg.clients, (double)connect_ns / 1e9, wsb_failed,
            closed, wsb_frame_len, (unsigned long long)gaps, (unsigned long long)snaps,
            (unsigned long long)bad, wsb_nthr, ccpu, ccpu_max,
            ccpu_max > 85 ? ": THE CLIENT IS THE BOTTLENECK, figures understate the broker"
                          : ": not the bottleneck",
            loadavg);
    nng_close(pub);
    for (int k = 0; k < wsb_nthr; k++) {
        free(wsb_thrs[k].lat);
        free(wsb_thrs[k].tok);
        qb_decoder_free(wsb_thrs[k].dec);
    }
    free(wsb_thrs);
    free(lat);
    for (int i = 0; i < wsb_cfg.clients; i++) {
        qb_buf_fini(&wsb_clients[i].rx);
    }
    free(wsb_clients);
    free(url);
    qb_opts_free(opts);
    return wsb_ready > 0 ? 0 : 1;
}
