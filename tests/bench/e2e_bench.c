/*
 * e2e_bench.c (qb-bench-e2e): end-to-end latency, loss and memory load for
 * quotebus against raw NNG, all with the same frames.
 *
 *   qb-bench-e2e fwd --in URL --out URL
 *       The trivial two-hop baseline: NNG SUB listening on --in (subscribed
 *       to everything), PUB listening on --out, nng_recvmsg -> nng_sendmsg of
 *       the same message, nothing else. Runs until SIGINT/SIGTERM.
 *   qb-bench-e2e run --pub URL [--listen] --sub URL --subs N --rate R
 *                    --seconds S [--levels L] [--label TEXT]
 *                    [--adapter-pub [--batch-maps N]] [--burst K]
 *       One process, N+1 threads: a publisher (PUB; dials URL, or listens on
 *       it with --listen for the one-hop baseline) and N subscriber threads
 *       (one SUB socket each, dialing --sub). Messages: topic
 *       book.binance.BTC-USDT, a snapshot (seq 1, then refresh snapshots
 *       until every subscriber has one), then deltas of L bids + L asks with
 *       seq 2, 3, ... on a fixed schedule at R deltas/s, arriving in groups
 *       of K (--burst, default 1: group g is due at g*K/R s; absolute
 *       deadlines). The publisher works in "service passes" like the
 *       adapter's lws loop: it sleeps until the next group is due, then
 *       publishes every delta due by now (one or more groups: input that
 *       was already waiting) and ends the pass.
 *         default:       each delta is its own frame (qb_msg_encode +
 *                        nng_sendmsg): the raw transport, one message per
 *                        frame.
 *         --adapter-pub: the adapter's real publisher (adapters/publish.c,
 *                        compiled in): qb__pub_send per delta and
 *                        qb__pub_flush at the end of every pass, i.e. the
 *                        batching the adapter does (QB_PUB_BATCH_MAPS maps
 *                        or QB_PUB_BATCH_BYTES bytes per frame at most;
 *                        --batch-maps N changes the map bound, 1 = the
 *                        adapter's code without batching).
 *       recv_ts ("rts") = qb_now_ns() right before each delta's encode; each
 *       subscriber decodes every map of every frame (qb_decoder) and records
 *       qb_now_ns() - rts per delta into a log-linear histogram (about 3 %
 *       resolution, so a 60 s run at 250k/s needs no per-sample memory),
 *       counts seq gaps and deltas. Prints one markdown row (see the end of
 *       e2e_run for the columns): achieved deltas/s, frames/s and maps per
 *       frame as published, per-subscriber worst received/loss, and
 *       p50/p99/p99.9/max of all subscribers' latencies together (us).
 *   qb-bench-e2e fill --pub URL --instruments N --levels L
 *       Publishes one snapshot of L levels per side for each of N instruments
 *       (book.binance.I0000-USDT ...), paced 1 ms apart, then exits (the
 *       memory benchmark reads the broker's VmRSS afterwards).
 * All sockets: NNG_OPT_SENDBUF/RECVBUF 8192 (the maximum).
 */
#include "buf.h"
#include "clock.h"
#include "err.h"
#include "msg.h"

/* The adapter's batching publisher itself (qb__pub_*), compiled in so the
 * "quotebus" rows publish exactly the way quotebus-adapter does. */
#define QB_PUB_NO_LWS 1 /* no lws here: qb__pub_input_waiting is left out */
#include "../../adapters/publish.c"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOPIC_SYM "BTC-USDT"

static volatile sig_atomic_t e2e_stop;
static void e2e_on_signal(int sig)
{
    (void)sig;
    e2e_stop = 1;
}

static void die_nng(const char *what, int rv)
{
    fprintf(stderr, "qb-bench-e2e: %s: %s\n", what, nng_strerror(rv));
    exit(1);
}

static const char *arg(int argc, char **argv, const char *name, const char *dflt)
{
    for (int i = 2; i + 1 < argc; i++) {
        if (strcmp(argv[i], name) == 0) {
            return argv[i + 1];
        }
    }
    return dflt;
}

static bool flag(int argc, char **argv, const char *name)
{
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], name) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- fwd -------------------------------------------------------------------- */

static int e2e_fwd(const char *in, const char *out)
{
    nng_socket s, p;
    int rv;
    if ((rv = nng_sub0_open(&s)) != 0 || (rv = nng_pub0_open(&p)) != 0) {
        die_nng("open", rv);
    }
    nng_socket_set_int(s, NNG_OPT_RECVBUF, 8192);
    nng_socket_set_int(p, NNG_OPT_SENDBUF, 8192);
    nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 16u << 20);
    nng_socket_set(s, NNG_OPT_SUB_SUBSCRIBE, "", 0);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 100);
    if ((rv = nng_listen(s, in, NULL, 0)) != 0 || (rv = nng_listen(p, out, NULL, 0)) != 0) {
        die_nng("listen", rv);
    }
    signal(SIGINT, e2e_on_signal);
    signal(SIGTERM, e2e_on_signal);
    unsigned long long n = 0;
    while (!e2e_stop) {
        nng_msg *m;
        if (nng_recvmsg(s, &m, 0) != 0) {
            continue;
        }
        if (nng_sendmsg(p, m, 0) != 0) {
            nng_msg_free(m);
        }
        n++;
    }
    fprintf(stderr, "qb-bench-e2e fwd: forwarded %llu\n", n);
    nng_close(s);
    nng_close(p);
    return 0;
}

/* ---- frames ------------------------------------------------------------------ */

static qb_level *levels_make(int side, size_t n, uint64_t salt)
{
    qb_level *v = calloc(n, sizeof *v);
    for (size_t i = 0; i < n; i++) {
        int64_t p = side == 0 ? 5999999 - (int64_t)i : 6000001 + (int64_t)i;
        v[i].price = (qb_dec){p, 2};
        v[i].size = (qb_dec){(int64_t)((salt * 2654435761u + i * 40503u) % 5000000) + 1, 6};
    }
    return v;
}

static void msg_fill(qb_msg *m, qb_msg_type t, const char *sym, uint64_t seq)
{
    memset(m, 0, sizeof *m);
    m->type = t;
    m->version = QB_PROTO_VERSION;
    m->exchange = (qb_str){"binance", 7};
    m->symbol = (qb_str){sym, strlen(sym)};
    m->native = (qb_str){"BTCUSDT", 7};
    m->seq = seq;
}

static int send_frame(nng_socket p, const qb_buf *b, int flags)
{
    nng_msg *m;
    int rv = nng_msg_alloc(&m, b->len);
    if (rv != 0) {
        return rv;
    }
    memcpy(nng_msg_body(m), b->data, b->len);
    rv = nng_sendmsg(p, m, flags);
    if (rv != 0) {
        nng_msg_free(m);
    }
    return rv;
}

/* ---- run: subscribers ------------------------------------------------------------ */

/* Log-linear latency histogram (ns): values below 32 exact, above that 32
 * buckets per power of two (resolution 1/32). */
#define HIST_SUB 32
#define HIST_N (HIST_SUB + 59 * HIST_SUB + HIST_SUB)

static unsigned hist_index(uint64_t v)
{
    if (v < HIST_SUB) {
        return (unsigned)v;
    }
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - 5;
    return (unsigned)(HIST_SUB + shift * HIST_SUB + (int)((v >> shift) - HIST_SUB));
}

/* The middle of bucket i, in ns. */
static double hist_value(unsigned i)
{
    if (i < HIST_SUB) {
        return (double)i;
    }
    unsigned shift = (i - HIST_SUB) / HIST_SUB;
    uint64_t top = HIST_SUB + (i - HIST_SUB) % HIST_SUB;
    return (double)(top << shift) + (double)(1ull << shift) / 2.0;
}

typedef struct sub_state {
    pthread_t th;
    nng_socket s;
    const char *url;
    uint64_t hist[HIST_N]; /* latency per delta received */
    uint64_t nlat, maxlat;
    uint64_t snaps, deltas, gaps, lost, bad, frames;
    _Atomic uint64_t last_seq;
    atomic_bool ready;
} sub_state;

static atomic_bool e2e_subs_stop;

static void *sub_main(void *arg)
{
    sub_state *st = arg;
    qb_decoder *d = qb_decoder_new();
    while (!atomic_load(&e2e_subs_stop)) {
        nng_msg *m;
        if (nng_recvmsg(st->s, &m, 0) != 0) {
            continue;
        }
        uint64_t now = qb_now_ns();
        st->frames++;
        qb_str topic;
        qb_msg msg;
        if (qb_decoder_begin(d, nng_msg_body(m), nng_msg_len(m), &topic) != QB_OK) {
            st->bad++;
            nng_msg_free(m);
            continue;
        }
        while (qb_decoder_next(d, &msg) == QB_OK) {
            if (msg.type == QB_MSG_SNAPSHOT) {
                st->snaps++;
                if (!msg.refresh || st->last_seq == 0) {
                    atomic_store_explicit(&st->last_seq, msg.seq, memory_order_relaxed);
                }
                atomic_store(&st->ready, true);
            } else if (msg.type == QB_MSG_DELTA) {
                if (st->last_seq != 0 && msg.seq != st->last_seq + 1) {
                    st->gaps++;
                    if (msg.seq > st->last_seq + 1) {
                        st->lost += msg.seq - st->last_seq - 1;
                    }
                }
                atomic_store_explicit(&st->last_seq, msg.seq, memory_order_relaxed);
                st->deltas++;
                uint64_t lat = now > msg.recv_ts ? now - msg.recv_ts : 0;
                st->hist[hist_index(lat)]++;
                st->nlat++;
                if (lat > st->maxlat) {
                    st->maxlat = lat;
                }
            }
        }
        nng_msg_free(m);
    }
    qb_decoder_free(d);
    return NULL;
}

/* The p-quantile of a histogram holding n values, in us (a bucket's
 * middle, but never above the largest value seen). */
static double pct(const uint64_t *h, uint64_t n, double p, uint64_t max)
{
    if (n == 0) {
        return 0;
    }
    uint64_t k = (uint64_t)(p * (double)(n - 1) + 0.5), c = 0;
    for (unsigned i = 0; i < HIST_N; i++) {
        c += h[i];
        if (c > k) {
            double v = hist_value(i);
            return (v > (double)max ? (double)max : v) / 1000.0;
        }
    }
    return 0;
}

static void sleep_until_mono(uint64_t t)
{
    uint64_t now = qb_mono_ns();
    if (t > now) {
        struct timespec ts = {(time_t)((t - now) / 1000000000u), (long)((t - now) % 1000000000u)};
        nanosleep(&ts, NULL);
    }
}

static int e2e_run(int argc, char **argv)
{
    const char *pub_url = arg(argc, argv, "--pub", NULL);
    const char *sub_url = arg(argc, argv, "--sub", NULL);
    bool listen = flag(argc, argv, "--listen");
    bool adapter_pub = flag(argc, argv, "--adapter-pub");
    int nsubs = atoi(arg(argc, argv, "--subs", "1"));
    double rate = atof(arg(argc, argv, "--rate", "1000"));
    double seconds = atof(arg(argc, argv, "--seconds", "5"));
    size_t levels = (size_t)atoi(arg(argc, argv, "--levels", "10"));
    int burst = atoi(arg(argc, argv, "--burst", "1"));
    int batch_maps = atoi(arg(argc, argv, "--batch-maps", "0")); /* 0: publish.c's default */
    const char *label = arg(argc, argv, "--label", "run");
    if (pub_url == NULL || sub_url == NULL || nsubs < 1 || nsubs > 64 || rate <= 0 ||
        seconds <= 0 || levels < 1 || levels > 1000 || burst < 1 || burst > 100000 ||
        (listen && adapter_pub)) {
        fprintf(stderr, "qb-bench-e2e run: bad arguments (see the file's comment)\n");
        return 2;
    }
    uint64_t total = (uint64_t)(rate * seconds);
    nng_socket p = NNG_SOCKET_INITIALIZER;
    qb_pub *ap = NULL;
    qb_pub_counters pc = {0};
    int rv;
    if (adapter_pub) {
        qb_log_set_level(QB_LOG_ERROR);
        if (qb__pub_open(&ap, pub_url, NULL, &pc) != QB_OK) {
            fprintf(stderr, "qb-bench-e2e: adapter publisher failed to open %s\n", pub_url);
            return 1;
        }
        if (batch_maps > 0) {
            qb__pub_set_batch(ap, (uint32_t)batch_maps, QB_PUB_BATCH_BYTES);
        }
    } else {
        if ((rv = nng_pub0_open(&p)) != 0) {
            die_nng("pub open", rv);
        }
        nng_socket_set_int(p, NNG_OPT_SENDBUF, 8192);
        if (listen) {
            rv = nng_listen(p, pub_url, NULL, 0);
        } else {
            rv = nng_dial(p, pub_url, NULL, NNG_FLAG_NONBLOCK);
        }
        if (rv != 0) {
            die_nng(pub_url, rv);
        }
    }
    sub_state *subs = calloc((size_t)nsubs, sizeof *subs);
    for (int i = 0; i < nsubs; i++) {
        sub_state *st = &subs[i];
        if ((rv = nng_sub0_open(&st->s)) != 0) {
            die_nng("sub open", rv);
        }
        nng_socket_set_int(st->s, NNG_OPT_RECVBUF, 8192);
        nng_socket_set_size(st->s, NNG_OPT_RECVMAXSZ, 16u << 20);
        nng_socket_set_ms(st->s, NNG_OPT_RECVTIMEO, 100);
        nng_socket_set(st->s, NNG_OPT_SUB_SUBSCRIBE, "book.", 5);
        if ((rv = nng_dial(st->s, sub_url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
            die_nng(sub_url, rv);
        }
        pthread_create(&st->th, NULL, sub_main, st);
    }
    qb_level *bids = levels_make(0, levels, 1), *asks = levels_make(1, levels, 2);
    qb_buf b = QB_BUF_INIT;
    qb_msg m;
    /* Snapshot, then refreshes every 50 ms until every subscriber is in. */
    bool all = false;
    uint64_t deadline = qb_mono_ns() + 10000000000ull;
    for (int k = 0; !all && qb_mono_ns() < deadline; k++) {
        msg_fill(&m, QB_MSG_SNAPSHOT, TOPIC_SYM, 1);
        m.refresh = k > 0;
        m.recv_ts = qb_now_ns();
        m.bids = bids;
        m.n_bids = levels;
        m.asks = asks;
        m.n_asks = levels;
        if (ap != NULL) {
            qb__pub_send(ap, &m); /* a snapshot goes out at once */
        } else {
            qb_buf_reset(&b);
            qb_msg_encode(&m, &b);
            send_frame(p, &b, 0);
        }
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
        all = true;
        for (int i = 0; i < nsubs; i++) {
            all = all && atomic_load(&subs[i].ready);
        }
    }
    if (!all) {
        fprintf(stderr, "qb-bench-e2e: subscribers not connected after 10 s\n");
        return 1;
    }
    pc = (qb_pub_counters){0};
    size_t frame_len = 0;
    uint64_t send_fail = 0, frames = 0, passes = 0;
    /* group g (deltas g*burst .. g*burst+burst-1) is due at t0 + g*interval */
    uint64_t interval = (uint64_t)(1e9 * burst / rate);
    uint64_t t0 = qb_mono_ns();
    uint64_t sent = 0;
    while (sent < total) {
        sleep_until_mono(t0 + (sent / (uint64_t)burst) * interval);
        uint64_t now = qb_mono_ns();
        /* one service pass: every delta whose group is due by now */
        while (sent < total && t0 + (sent / (uint64_t)burst) * interval <= now) {
            /* every delta changes the sizes of its L+L levels */
            for (size_t i = 0; i < levels; i++) {
                bids[i].size.mant = (int64_t)((sent * 7919u + i) % 5000000) + 1;
                asks[i].size.mant = (int64_t)((sent * 104729u + i) % 5000000) + 1;
            }
            msg_fill(&m, QB_MSG_DELTA, TOPIC_SYM, 2 + sent);
            m.first_id = m.last_id = 2 + sent;
            m.bids = bids;
            m.n_bids = levels;
            m.asks = asks;
            m.n_asks = levels;
            m.recv_ts = qb_now_ns();
            if (ap != NULL) {
                qb__pub_send(ap, &m);
            } else {
                qb_buf_reset(&b);
                qb_msg_encode(&m, &b);
                frame_len = b.len;
                if (send_frame(p, &b, 0) != 0) {
                    send_fail++;
                }
                frames++;
            }
            sent++;
        }
        if (ap != NULL) {
            qb__pub_flush(ap); /* the end of the pass */
        }
        passes++;
    }
    uint64_t t1 = qb_mono_ns();
    if (ap != NULL) {
        frames = pc.frames;
        send_fail = pc.publish_errors;
    }
    /* Drain: up to 3 s, until every subscriber has the last delta. */
    uint64_t drain_end = qb_mono_ns() + 3000000000ull;
    while (qb_mono_ns() < drain_end) {
        bool done = true;
        for (int i = 0; i < nsubs; i++) {
            done =
                done && atomic_load_explicit(&subs[i].last_seq, memory_order_relaxed) >= 1 + total;
        }
        if (done) {
            break;
        }
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&e2e_subs_stop, true);
    uint64_t nall = 0, maxlat = 0;
    uint64_t min_recv = UINT64_MAX, max_lost = 0, gaps = 0;
    static uint64_t hist[HIST_N];
    memset(hist, 0, sizeof hist);
    for (int i = 0; i < nsubs; i++) {
        pthread_join(subs[i].th, NULL);
        nall += subs[i].nlat;
        for (unsigned k = 0; k < HIST_N; k++) {
            hist[k] += subs[i].hist[k];
        }
        if (subs[i].maxlat > maxlat) {
            maxlat = subs[i].maxlat;
        }
        uint64_t lost = total - (subs[i].deltas < total ? subs[i].deltas : total);
        if (subs[i].deltas < min_recv) {
            min_recv = subs[i].deltas;
        }
        if (lost > max_lost) {
            max_lost = lost;
        }
        gaps += subs[i].gaps;
    }
    double secs = (double)(t1 - t0) / 1e9;
    double achieved = (double)sent / secs;
    if (ap != NULL) {
        /* a one-delta frame of the same message, for the frame size column */
        qb_buf_reset(&b);
        qb_msg_encode(&m, &b);
        frame_len = b.len;
    }
    /* | label | subs | rate | achieved deltas/s | frame B (1 delta) | sent | min recv | max lost
     * | gaps | p50 | p99 | p99.9 | max | frames/s | deltas/frame | passes | send errors | */
    printf("| %s | %d | %.0f | %.0f | %zu | %llu | %llu | %llu | %llu | %.1f | %.1f | %.1f | %.1f "
           "| %.0f | %.2f | %llu | %llu |\n",
           label, nsubs, rate, achieved, frame_len, (unsigned long long)sent,
           (unsigned long long)min_recv, (unsigned long long)max_lost, (unsigned long long)gaps,
           pct(hist, nall, 0.50, maxlat), pct(hist, nall, 0.99, maxlat),
           pct(hist, nall, 0.999, maxlat), (double)maxlat / 1000.0, (double)frames / secs,
           frames ? (double)sent / (double)frames : 0.0, (unsigned long long)passes,
           (unsigned long long)send_fail);
    fflush(stdout);
    for (int i = 0; i < nsubs; i++) {
        nng_close(subs[i].s);
    }
    if (ap != NULL) {
        qb__pub_close(ap);
    } else {
        nng_close(p);
    }
    free(subs);
    free(bids);
    free(asks);
    qb_buf_fini(&b);
    return 0;
}

/* ---- fill ---------------------------------------------------------------------- */

static int e2e_fill(int argc, char **argv)
{
    const char *pub_url = arg(argc, argv, "--pub", NULL);
    int n = atoi(arg(argc, argv, "--instruments", "1000"));
    size_t levels = (size_t)atoi(arg(argc, argv, "--levels", "1000"));
    if (pub_url == NULL || n < 1 || levels < 1 || levels > QB_MSG_MAX_LEVELS) {
        fprintf(stderr, "qb-bench-e2e fill: bad arguments\n");
        return 2;
    }
    nng_socket p;
    int rv;
    if ((rv = nng_pub0_open(&p)) != 0) {
        die_nng("pub open", rv);
    }
    nng_socket_set_int(p, NNG_OPT_SENDBUF, 8192);
    if ((rv = nng_dial(p, pub_url, NULL, 0)) != 0) {
        die_nng(pub_url, rv);
    }
    struct timespec settle = {0, 300000000};
    nanosleep(&settle, NULL); /* the broker's SUB pipe is up */
    qb_level *bids = levels_make(0, levels, 3), *asks = levels_make(1, levels, 4);
    qb_buf b = QB_BUF_INIT;
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        char sym[32];
        snprintf(sym, sizeof sym, "I%04d-USDT", i);
        qb_msg m;
        msg_fill(&m, QB_MSG_SNAPSHOT, sym, 1);
        m.recv_ts = qb_now_ns();
        m.bids = bids;
        m.n_bids = levels;
        m.asks = asks;
        m.n_asks = levels;
        qb_buf_reset(&b);
        if (qb_msg_encode(&m, &b) != QB_OK) {
            fprintf(stderr, "encode failed\n");
            return 1;
        }
        bytes += b.len;
        send_frame(p, &b, 0);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    printf("fill: %d snapshots of %zu levels/side, %zu bytes each\n", n, levels, bytes / (size_t)n);
    nanosleep(&settle, NULL);
    nng_close(p);
    free(bids);
    free(asks);
    qb_buf_fini(&b);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "fwd") == 0) {
        const char *in = arg(argc, argv, "--in", NULL), *out = arg(argc, argv, "--out", NULL);
        if (in == NULL || out == NULL) {
            return 2;
        }
        return e2e_fwd(in, out);
    }
    if (argc >= 2 && strcmp(argv[1], "run") == 0) {
        return e2e_run(argc, argv);
    }
    if (argc >= 2 && strcmp(argv[1], "fill") == 0) {
        return e2e_fill(argc, argv);
    }
    printf("usage: qb-bench-e2e fwd --in URL --out URL\n"
           "       qb-bench-e2e run --pub URL [--listen] --sub URL [--subs N] [--rate R]\n"
           "                        [--seconds S] [--levels L] [--label TEXT]\n"
           "                        [--adapter-pub [--batch-maps N]] [--burst K]\n"
           "       qb-bench-e2e fill --pub URL [--instruments N] [--levels L]\n"
           "see tests/bench/e2e_bench.c and tests/bench/run-all.sh\n");
    return strcmp(argc >= 2 ? argv[1] : "", "--help") == 0 ? 0 : 2;
}
