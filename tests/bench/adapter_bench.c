/*
 * adapter_bench.c (qb-bench-adapter): ns per message for the adapter's hot
 * path, through the real entry points the adapter calls for every frame:
 * ops->decode (HTX gzip), ops->parse, qb_sync_on_delta / qb_sync_on_full
 * (sequence checks + book apply, or Bithumb's full-book diff), and the
 * sync owner's on_delta building the qb_msg with the adapter's own mapping
 * (qb__event_delta_msg, adapters/event_msg.c) and either encoding it
 * (qb_msg_encode into a reused buffer: the "parse to encoded message"
 * budget of 2 us) or publishing it
 * (qb__pub_send: encode + nng_sendmsg on a PUB socket dialing an ipc path
 * nobody listens on, so NNG discards the message after the send call).
 *
 * Inputs are generated (seeded, deterministic): a 1000-level-per-side book
 * around 60000.00, then per message 20 bids + 20 asks picked among the top
 * 200 levels of each side, 10 % of them deletions. --order sets how each
 * side's levels are listed within one update:
 *   binance (default): distinct prices, best first (bids descending, asks
 *            ascending). That is what the spot stream the adapter reads
 *            sends: in ../shared/exchange-data, every multi-level side of
 *            the recorded nknusdt@depth@100ms updates (54 bid sides all
 *            descending, 46 ask sides all ascending) and of the spot
 *            samples; HTX mbp incrementals are listed the same way (the 4
 *            real samples huobi_mbp_incremental_real_*: bids descending,
 *            asks ascending), so the HTX input uses the same order. No
 *            recorded message repeats a price within a side.
 *   ascending: distinct prices, both sides ascending: Binance USD-M
 *            futures (the recorded sushiusdt@depth@100ms: 103 bid and 99
 *            ask sides, all ascending; binancefut samples likewise).
 *   random:  independent picks, repeats possible (the generator of
 *            commit 2bce9df; no exchange sends this).
 * --htx-numbers short writes HTX prices and sizes as HTX does (JSON numbers
 * in shortest form: 9138.6, 9144.0, 9138.61 in huobi_mbp_incremental_real_*),
 * so a side's prices have mixed scales (the default); fixed writes two
 * price decimals always, one scale (the figures of commit 2bce9df).
 *   binance: combined-stream depthUpdate text (Binance number formatting);
 *   htx:     mbp incremental JSON (seqNum/prevSeqNum chain), gzip'd by zlib
 *            beforehand like HTX's frames (decode inflates it per message);
 *   bithumb: v1 "orderbook" full books of 15 units (the feed's size), each
 *            a random walk of the previous one (a few units changed).
 * Each run: reset the sync with a snapshot (untimed), then time N messages;
 * the figure is the median over runs. --callgrind runs 1 pass of N messages
 * with no warm-up; instruction counts then come from
 *   valgrind --tool=callgrind --toggle-collect=bench_loop ...
 * divided by N.
 */
#include "adapter_int.h"
#include "buf.h"
#include "clock.h"
#include "err.h"
#include "event_msg.h"
#include "exchange.h"
#include "log.h"
#include "msg.h"
#include "sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static int BOOK_LEVELS = 1000; /* --book-levels */

static uint64_t adapter_bench_rng = 88172645463325252ULL;
static uint64_t rnd(void)
{
    adapter_bench_rng ^= adapter_bench_rng << 13;
    adapter_bench_rng ^= adapter_bench_rng >> 7;
    adapter_bench_rng ^= adapter_bench_rng << 17;
    return adapter_bench_rng;
}

typedef struct frame {
    uint8_t *data;
    size_t len;
} frame;

typedef struct bench_owner {
    const char *exchange;
    qb_pub *pub; /* publish mode */
    qb_buf enc;  /* encode mode */
    uint64_t seq;
    uint64_t published;
    uint64_t bytes;
} bench_owner;

static void own_snapshot(qb_sync *s, const qb_event *snap)
{
    (void)s;
    (void)snap;
}

/* What adapter_sync_on_delta does (adapters/adapter.c): the same mapping
 * (adapters/event_msg.c), then encode or publish. */
static void own_delta(qb_sync *s, const qb_event *ev)
{
    bench_owner *o = s->user;
    if (ev->n_bids == 0 && ev->n_asks == 0) {
        return;
    }
    qb_msg_origin org = {
        .exchange = {o->exchange, strlen(o->exchange)},
        .symbol = QB_STR("BTC-USDT"),
        .native = QB_STR("BTCUSDT"),
    };
    qb_msg m;
    qb__event_delta_msg(&org, ++o->seq, ev, &m);
    if (o->pub) {
        qb__pub_send(o->pub, &m);
    } else {
        qb_buf_reset(&o->enc);
        if (qb_msg_encode(&m, &o->enc) == QB_OK) {
            o->bytes += o->enc.len;
        }
    }
    o->published++;
}

static void own_state(qb_sync *s, qb_feed_state st, const char *reason)
{
    (void)s;
    (void)st;
    (void)reason;
}

static void own_want(qb_sync *s, uint32_t delay_ms)
{
    (void)s;
    (void)delay_ms;
}

static const qb_sync_ops bench_ops = {own_snapshot, own_delta, own_state, own_want};

/* ---- generators ------------------------------------------------------------ */

/* Price index k of a side: bids 59999.99 - k*0.01, asks 60000.01 + k*0.01,
 * as integer hundredths. */
static long px(int side, int k)
{
    return side == 0 ? 5999999 - k : 6000001 + k;
}

typedef enum bench_order { ORDER_BINANCE, ORDER_ASCENDING, ORDER_RANDOM } bench_order;
static bench_order ORDER = ORDER_BINANCE; /* --order */
static bool HTX_SHORT = true;             /* --htx-numbers short (default) */

/* v in units of 10^-decimals as HTX writes a JSON number: shortest form,
 * at least one decimal ("9144.0", "9138.6", "0.033785"). */
static void htx_number(qb_buf *b, long v, int decimals)
{
    long unit = 1;
    for (int k = 0; k < decimals; k++) {
        unit *= 10;
    }
    long ip = v / unit, fp = v % unit;
    int d = decimals;
    while (d > 1 && fp % 10 == 0) {
        fp /= 10;
        d--;
    }
    qb_buf_appendf(b, "%ld.%0*ld", ip, d, fp);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Price indexes (0 = best) of one update's side: n of them among the top
 * `top`, listed as --order says. Snapshots (top 0) are 0..n-1, best first. */
static void levels_pick(int *k, int side, int n, int top)
{
    if (top == 0) {
        for (int i = 0; i < n; i++) {
            k[i] = i;
        }
        return;
    }
    if (ORDER == ORDER_RANDOM) {
        for (int i = 0; i < n; i++) {
            k[i] = (int)(rnd() % (unsigned)top);
        }
        return;
    }
    bool used[200] = {false}; /* top <= 200, n <= top (checked in main) */
    for (int i = 0; i < n; i++) {
        int v;
        do {
            v = (int)(rnd() % (unsigned)top);
        } while (used[v]);
        used[v] = true;
        k[i] = v;
    }
    qsort(k, (size_t)n, sizeof *k, cmp_int); /* best first */
    if (ORDER == ORDER_ASCENDING && side == 0) {
        for (int i = 0; i < n / 2; i++) { /* bids ascending: worst first */
            int t = k[i];
            k[i] = k[n - 1 - i];
            k[n - 1 - i] = t;
        }
    }
}

static void levels_json(qb_buf *b, int side, int n, int top, bool quoted, bool binance_fmt)
{
    int *k = malloc((size_t)n * sizeof *k);
    if (k == NULL) {
        exit(1);
    }
    levels_pick(k, side, n, top);
    for (int i = 0; i < n; i++) {
        long p = px(side, k[i]);
        long q = (top && rnd() % 10 == 0) ? 0 : (long)(rnd() % 5000000) + 1; /* 1e-6 units */
        if (binance_fmt) {
            qb_buf_appendf(b, "%s[\"%ld.%02ld000000\",\"%ld.%06ld00\"]", i ? "," : "", p / 100,
                           p % 100, q / 1000000, q % 1000000);
        } else if (HTX_SHORT && !quoted) {
            qb_buf_appendf(b, "%s[", i ? "," : "");
            htx_number(b, p, 2);
            qb_buf_appendf(b, ",");
            htx_number(b, q, 6);
            qb_buf_appendf(b, "]");
        } else if (quoted) {
            qb_buf_appendf(b, "%s[\"%ld.%02ld\",\"%ld.%06ld\"]", i ? "," : "", p / 100, p % 100,
                           q / 1000000, q % 1000000);
        } else {
            qb_buf_appendf(b, "%s[%ld.%02ld,%ld.%06ld]", i ? "," : "", p / 100, p % 100,
                           q / 1000000, q % 1000000);
        }
    }
    free(k);
}

static frame frame_of(qb_buf *b)
{
    frame f = {malloc(b->len + 1), b->len};
    memcpy(f.data, b->data, b->len);
    f.data[b->len] = 0;
    return f;
}

static frame gzip_frame(const qb_buf *b)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY);
    size_t cap = deflateBound(&z, b->len) + 64;
    frame f = {malloc(cap), 0};
    z.next_in = b->data;
    z.avail_in = (uInt)b->len;
    z.next_out = f.data;
    z.avail_out = (uInt)cap;
    deflate(&z, Z_FINISH);
    f.len = cap - z.avail_out;
    deflateEnd(&z);
    return f;
}

/* ---- the timed loop ------------------------------------------------------------ */

typedef enum bench_kind { K_BINANCE, K_HTX, K_BITHUMB } bench_kind;

typedef struct bench {
    bench_kind kind;
    const qb_exchange_ops *ops;
    qb_parser parser;
    void *xstate; /* the exchange's private state (ops->state_size) */
    qb_sync sync;
    qb_sync_counters cnt;
    frame snap;
    frame *msgs;
    size_t n;
    uint64_t errors;
    size_t in_bytes;
} bench;

__attribute__((noinline)) void bench_loop(bench *b);
__attribute__((noinline)) void bench_loop(bench *b)
{
    for (size_t i = 0; i < b->n; i++) {
        const char *js = (const char *)b->msgs[i].data;
        size_t jl = b->msgs[i].len;
        uint64_t recv = qb_now_ns();
        if (b->ops->decode && b->ops->decode(b->xstate, &b->parser, b->msgs[i].data, b->msgs[i].len,
                                             &js, &jl) != QB_OK) {
            b->errors++;
            continue;
        }
        qb_event ev;
        if (b->ops->parse(b->xstate, &b->parser, js, jl, &ev) != QB_OK) {
            b->errors++;
            continue;
        }
        ev.recv_ts = recv;
        int rc = ev.kind == QB_EV_BOOK_FULL ? qb_sync_on_full(&b->sync, &ev)
                                            : qb_sync_on_delta(&b->sync, &ev);
        if (rc != QB_OK) {
            b->errors++;
        }
    }
}

/* Puts the sync back to LIVE on the generated 1000-level book (untimed). */
static void bench_reset(bench *b)
{
    qb_sync_start(&b->sync, QB_FEED_SYNCING, "");
    qb_event ev;
    int rc;
    if (b->kind == K_BINANCE) {
        rc = b->ops->parse_snapshot(b->xstate, &b->parser, (char *)b->snap.data, b->snap.len, &ev);
    } else {
        rc = b->ops->parse(b->xstate, &b->parser, (char *)b->snap.data, b->snap.len, &ev);
    }
    if (rc != QB_OK) {
        fprintf(stderr, "snapshot parse failed: %s\n", qb_strerror(rc));
        exit(1);
    }
    rc = b->kind == K_BITHUMB ? qb_sync_on_full(&b->sync, &ev) : qb_sync_on_snapshot(&b->sync, &ev);
    if (rc != QB_OK || b->sync.state != QB_SYNC_LIVE) {
        fprintf(stderr, "snapshot not applied: %s\n", qb_strerror(rc));
        exit(1);
    }
}

static void bench_make(bench *b, bench_kind kind, size_t n, int levels)
{
    memset(b, 0, sizeof *b);
    b->kind = kind;
    b->n = n;
    b->msgs = calloc(n, sizeof *b->msgs);
    qb_buf t = QB_BUF_INIT;
    const uint64_t base = 1000000000ULL;
    if (kind == K_BINANCE) {
        b->ops = &qb_binance_ops;
        qb_buf_appendf(&t, "{\"lastUpdateId\":%llu,\"bids\":[", (unsigned long long)base);
        levels_json(&t, 0, BOOK_LEVELS, 0, true, true);
        qb_buf_appendf(&t, "],\"asks\":[");
        levels_json(&t, 1, BOOK_LEVELS, 0, true, true);
        qb_buf_appendf(&t, "]}");
        b->snap = frame_of(&t);
        for (size_t i = 0; i < n; i++) {
            qb_buf_reset(&t);
            unsigned long long u = base + 1 + i;
            qb_buf_appendf(&t,
                           "{\"stream\":\"btcusdt@depth@100ms\",\"data\":{\"e\":\"depthUpdate\","
                           "\"E\":%llu,\"s\":\"BTCUSDT\",\"U\":%llu,\"u\":%llu,\"b\":[",
                           1700000000000ULL + i, u, u);
            levels_json(&t, 0, levels, 200, true, true);
            qb_buf_appendf(&t, "],\"a\":[");
            levels_json(&t, 1, levels, 200, true, true);
            qb_buf_appendf(&t, "]}}");
            b->msgs[i] = frame_of(&t);
            b->in_bytes += t.len;
        }
    } else if (kind == K_HTX) {
        b->ops = &qb_htx_ops;
        qb_buf_appendf(&t, "{\"id\":\"1\",\"status\":\"ok\",\"ts\":1593561601666,\"rep\":"
                           "\"market.btcusdt.mbp.400\",\"data\":{\"bids\":[");
        levels_json(&t, 0, BOOK_LEVELS > 400 ? 400 : BOOK_LEVELS, 0, false, false);
        qb_buf_appendf(&t, "],\"asks\":[");
        levels_json(&t, 1, BOOK_LEVELS > 400 ? 400 : BOOK_LEVELS, 0, false, false);
        qb_buf_appendf(&t, "],\"seqNum\":%llu}}", (unsigned long long)base);
        b->snap = frame_of(&t);
        for (size_t i = 0; i < n; i++) {
            qb_buf_reset(&t);
            unsigned long long seq = base + 1 + i;
            qb_buf_appendf(
                &t,
                "{\"ch\":\"market.btcusdt.mbp.400\",\"ts\":%llu,\"tick\":{\"seqNum\":%llu,"
                "\"prevSeqNum\":%llu,\"asks\":[",
                1593561600691ULL + i, seq, seq - 1);
            levels_json(&t, 1, levels, 200, false, false);
            qb_buf_appendf(&t, "],\"bids\":[");
            levels_json(&t, 0, levels, 200, false, false);
            qb_buf_appendf(&t, "]}}");
            b->msgs[i] = gzip_frame(&t);
            b->in_bytes += b->msgs[i].len;
        }
    } else {
        b->ops = &qb_bithumb_ops;
        const int u = 15;
        long bp[15], bs[15], ap[15], as[15];
        for (int k = 0; k < u; k++) {
            bp[k] = 95339000 - 1000 * k;
            ap[k] = 95340000 + 1000 * k;
            bs[k] = (long)(rnd() % 100000) + 1;
            as[k] = (long)(rnd() % 100000) + 1;
        }
        for (size_t i = 0; i <= n; i++) {
            if (i > 0) {
                /* a few units change size; sometimes the top moves */
                for (int c = 0; c < 3; c++) {
                    int k = (int)(rnd() % (unsigned)u);
                    if (rnd() & 1) {
                        bs[k] = (long)(rnd() % 100000) + 1;
                    } else {
                        as[k] = (long)(rnd() % 100000) + 1;
                    }
                }
            }
            qb_buf_reset(&t);
            qb_buf_appendf(&t, "{\"type\":\"orderbook\",\"code\":\"KRW-BTC\",\"total_ask_size\":1,"
                               "\"total_bid_size\":1,\"orderbook_units\":[");
            for (int k = 0; k < u; k++) {
                qb_buf_appendf(&t,
                               "%s{\"ask_price\":%ld,\"bid_price\":%ld,\"ask_size\":%ld.%04ld,"
                               "\"bid_size\":%ld.%04ld}",
                               k ? "," : "", ap[k], bp[k], as[k] / 10000, as[k] % 10000,
                               bs[k] / 10000, bs[k] % 10000);
            }
            qb_buf_appendf(&t, "],\"timestamp\":%llu,\"stream_type\":\"REALTIME\"}",
                           1725927377287ULL + i);
            if (i == 0) {
                b->snap = frame_of(&t);
            } else {
                b->msgs[i - 1] = frame_of(&t);
                b->in_bytes += t.len;
            }
        }
    }
    qb_buf_fini(&t);
    if (qb_parser_init(&b->parser, 1 << 20, 2 * BOOK_LEVELS) != QB_OK ||
        qb_exchange_state_new(b->ops, 1 << 20, &b->xstate) != QB_OK) {
        exit(1);
    }
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void loadavg(char *out, size_t cap)
{
    FILE *f = fopen("/proc/loadavg", "r");
    out[0] = 0;
    if (f) {
        if (fgets(out, (int)cap, f) == NULL) {
            out[0] = 0;
        }
        fclose(f);
        char *sp = strchr(out, ' ');
        sp = sp ? strchr(sp + 1, ' ') : NULL;
        sp = sp ? strchr(sp + 1, ' ') : NULL;
        if (sp) {
            *sp = 0;
        }
    }
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
    printf("usage: qb-bench-adapter [--runs R] [--count N] [--levels L] [--exchange binance|htx|"
           "bithumb|all]\n"
           "                        [--book-levels B] [--order binance|ascending|random]\n"
           "                        [--htx-numbers fixed|short]\n"
           "                        [--publish] [--callgrind] [--markdown]\n"
           "  ns per message for decode + parse + sync/book apply + encode (--publish: + NNG\n"
           "  send on a PUB socket with no peer) through the adapters' real entry points.\n"
           "  Median over R runs (default 7) of N messages (default 20000); L levels per\n"
           "  side per Binance/HTX update (default 20); B levels per side in the\n"
           "  book the updates apply to (default 1000, HTX snapshot capped at 400). --callgrind: "
           "one pass, no warm-up.\n"
           "  --order: how an update lists each side's levels (Binance and HTX): binance\n"
           "  (default; distinct prices, best first, as Binance spot and HTX send them),\n"
           "  ascending (distinct, both sides ascending: Binance USD-M futures), random\n"
           "  (independent picks with repeats). --htx-numbers short (default): HTX numbers\n"
           "  in shortest form as HTX sends them (mixed scales); fixed: always 2 decimals.\n");
}

int main(int argc, char **argv)
{
    int runs = 7, levels = 20;
    size_t count = 20000;
    bool publish = false, callgrind = false, markdown = false;
    const char *which = "all";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
            runs = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--count") && i + 1 < argc) {
            count = (size_t)atol(argv[++i]);
        } else if (!strcmp(argv[i], "--levels") && i + 1 < argc) {
            levels = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--exchange") && i + 1 < argc) {
            which = argv[++i];
        } else if (!strcmp(argv[i], "--book-levels") && i + 1 < argc) {
            BOOK_LEVELS = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--order") && i + 1 < argc) {
            const char *o = argv[++i];
            if (!strcmp(o, "binance")) {
                ORDER = ORDER_BINANCE;
            } else if (!strcmp(o, "ascending")) {
                ORDER = ORDER_ASCENDING;
            } else if (!strcmp(o, "random")) {
                ORDER = ORDER_RANDOM;
            } else {
                usage();
                return 2;
            }
        } else if (!strcmp(argv[i], "--htx-numbers") && i + 1 < argc) {
            const char *o = argv[++i];
            if (!strcmp(o, "short") || !strcmp(o, "fixed")) {
                HTX_SHORT = !strcmp(o, "short");
            } else {
                usage();
                return 2;
            }
        } else if (!strcmp(argv[i], "--publish")) {
            publish = true;
        } else if (!strcmp(argv[i], "--callgrind")) {
            callgrind = true;
        } else if (!strcmp(argv[i], "--markdown")) {
            markdown = true;
        } else if (!strcmp(argv[i], "--help")) {
            usage();
            return 0;
        } else {
            usage();
            return 2;
        }
    }
    if (runs < 1 || runs > 101 || count < 1 || levels < 1 || levels > 200 || BOOK_LEVELS < 200 ||
        BOOK_LEVELS > 100000) {
        usage();
        return 2;
    }
    qb_log_set_level(QB_LOG_ERROR);
    char la0[64], la1[64];
    loadavg(la0, sizeof la0);
    static const char *const names[] = {"binance", "htx", "bithumb"};
    static const char *const what[] = {"Binance depthUpdate", "HTX gzip mbp", "Bithumb orderbook"};
    if (markdown) {
        printf("| message | in bytes | wall ns/msg median | min | max | CPU ns/msg median | "
               "msgs/s per CPU-second | errors |\n|---|---|---|---|---|---|---|---|\n");
    }
    for (int k = 0; k < 3; k++) {
        if (strcmp(which, "all") != 0 && strcmp(which, names[k]) != 0) {
            continue;
        }
        bench b;
        bench_make(&b, (bench_kind)k, count, levels);
        bench_owner own = {0};
        own.exchange = names[k];
        qb_pub_counters pc = {0};
        if (publish) {
            char url[128];
            snprintf(url, sizeof url, "ipc:///tmp/qb-bench-adapter-nobody-%d.ipc", (int)getpid());
            if (qb__pub_open(&own.pub, url, NULL, &pc) != QB_OK) {
                return 1;
            }
        }
        if (qb_sync_init(&b.sync, b.ops->seq, &bench_ops, &own, &b.cnt, 2 * BOOK_LEVELS) != QB_OK) {
            return 1;
        }
        double ns[101], cns[101], cpu_ratio = 0;
        int r_total = callgrind ? 1 : runs + 1; /* first run is the warm-up */
        int nr = 0;
        for (int r = 0; r < r_total; r++) {
            bench_reset(&b);
            uint64_t pub0 = own.published;
            double c0 = cpu_s();
            uint64_t t0 = qb_mono_ns();
            bench_loop(&b);
            uint64_t t1 = qb_mono_ns();
            double c1 = cpu_s();
            if (own.published - pub0 == 0) {
                fprintf(stderr, "%s: nothing published (errors %llu)\n", names[k],
                        (unsigned long long)b.errors);
                return 1;
            }
            if (callgrind || r > 0) {
                cns[nr] = (c1 - c0) * 1e9 / (double)b.n;
                ns[nr++] = (double)(t1 - t0) / (double)b.n;
                cpu_ratio = (c1 - c0) / ((double)(t1 - t0) / 1e9);
            }
        }
        qsort(ns, (size_t)nr, sizeof ns[0], cmp_d);
        qsort(cns, (size_t)nr, sizeof cns[0], cmp_d);
        double med = ns[nr / 2], cmed = cns[nr / 2];
        if (markdown) {
            printf("| %s | %zu | %.0f | %.0f | %.0f | %.0f | %.0f | %llu |\n", what[k],
                   b.in_bytes / b.n, med, ns[0], ns[nr - 1], cmed, 1e9 / cmed,
                   (unsigned long long)b.errors);
        } else {
            printf("%-8s %s: in %zu B/msg, %.0f ns/msg median of %d (min %.0f max %.0f), "
                   "CPU %.0f ns/msg = %.0f msgs/s per core (CPU/wall %.2f), published %llu, sync "
                   "errors %llu, gaps %llu\n",
                   names[k], publish ? "publish" : "encode", b.in_bytes / b.n, med, nr, ns[0],
                   ns[nr - 1], cmed, 1e9 / cmed, cpu_ratio, (unsigned long long)own.published,
                   (unsigned long long)b.errors, (unsigned long long)b.cnt.gaps);
        }
        if (own.pub) {
            qb__pub_close(own.pub);
        }
        qb_buf_fini(&own.enc);
        qb_sync_fini(&b.sync);
        qb_exchange_state_free(b.ops, b.xstate);
        qb_parser_fini(&b.parser);
        for (size_t i = 0; i < b.n; i++) {
            free(b.msgs[i].data);
        }
        free(b.msgs);
        free(b.snap.data);
    }
    loadavg(la1, sizeof la1);
    printf("%sload average before %s, after %s; %d levels/side per Binance/HTX update, "
           "book %d levels/side, order %s, HTX numbers %s, %s%s\n",
           markdown ? "\n" : "", la0, la1, levels, BOOK_LEVELS,
           ORDER == ORDER_BINANCE     ? "binance"
           : ORDER == ORDER_ASCENDING ? "ascending"
                                      : "random",
           HTX_SHORT ? "short" : "fixed", publish ? "encode + NNG send" : "encode",
           markdown ? "\n" : "");
    return 0;
}
