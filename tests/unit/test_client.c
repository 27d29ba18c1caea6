/*
 * test_client.c: libquotebus (clients/lib) against real NNG sockets in this
 * process: a test "broker" made of an NNG PUB socket and the real snapshot
 * service module (broker/snapshot.c) over books this test keeps (applied
 * before they are published, as the broker does). No other processes.
 */
#include "harness.h"

#define QUOTEBUS_NO_ERROR_ENUM
#include "quotebus.h"

#include "book.h"
#include "buf.h"
#include "clock.h"
#include "err.h"
#include "msg.h"
#include "snapshot.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>

#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FEEDS 4

typedef struct feed {
    char topic[64];
    char ex[16], sym[16];
    qb_book *book;
    uint64_t seq;
    bool live; /* has a book at the "broker" */
} feed;

typedef struct tbroker {
    char dir[128];
    char pub_url[160];
    char snap_url[160];
    nng_socket pub;
    qb_snapshot *svc;
    pthread_mutex_t lock;
    feed feeds[MAX_FEEDS];
    int n_feeds;
    atomic_int pipes;
    uint64_t rng;
    qb_buf buf;
} tbroker;

static uint64_t rnd(tbroker *t)
{
    t->rng ^= t->rng << 13;
    t->rng ^= t->rng >> 7;
    t->rng ^= t->rng << 17;
    return t->rng;
}

static int tb_collect(void *arg, qb_str prefix, bool exact, qb_snapshot_sink *sink)
{
    tbroker *t = arg;
    int rc = QB_OK;
    pthread_mutex_lock(&t->lock);
    for (int i = 0; i < t->n_feeds && rc == QB_OK; i++) {
        feed *f = &t->feeds[i];
        size_t n = strlen(f->topic);
        bool match = exact ? (n == prefix.n && memcmp(f->topic, prefix.p, n) == 0)
                           : (n >= prefix.n && memcmp(f->topic, prefix.p, prefix.n) == 0);
        if (!match || !f->live) {
            continue;
        }
        qb_snapshot_book sb = {
            .topic = {f->topic, n},
            .seq = f->seq,
            .valid = true,
            .has_state = true,
            .state = QB_FEED_LIVE,
            .bids = qb_book_levels(f->book, QB_BID),
            .n_bids = qb_book_depth(f->book, QB_BID),
            .asks = qb_book_levels(f->book, QB_ASK),
            .n_asks = qb_book_depth(f->book, QB_ASK),
        };
        rc = qb_snapshot_sink_add(sink, &sb);
        if (rc == QB_ETOOBIG) {
            rc = QB_OK;
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

static void tb_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    tbroker *t = arg;
    atomic_fetch_add(&t->pipes, ev == NNG_PIPE_EV_ADD_POST ? 1 : -1);
}

static void tb_start(tbroker *t, bool with_service)
{
    memset(t, 0, sizeof *t);
    static int instance;
    snprintf(t->dir, sizeof t->dir, "/tmp/qb-test-client-%d-%d", (int)getpid(), instance++);
    mkdir(t->dir, 0755);
    snprintf(t->pub_url, sizeof t->pub_url, "ipc://%s/pub.ipc", t->dir);
    snprintf(t->snap_url, sizeof t->snap_url, "ipc://%s/snap.ipc", t->dir);
    pthread_mutex_init(&t->lock, NULL);
    t->rng = 88172645463325252ull;
    QB_CHECK_EQ_INT(nng_pub0_open(&t->pub), 0);
    nng_socket_set_int(t->pub, NNG_OPT_SENDBUF, 8192);
    nng_pipe_notify(t->pub, NNG_PIPE_EV_ADD_POST, tb_pipe_cb, t);
    nng_pipe_notify(t->pub, NNG_PIPE_EV_REM_POST, tb_pipe_cb, t);
    QB_CHECK_EQ_INT(nng_listen(t->pub, t->pub_url, NULL, 0), 0);
    if (with_service) {
        const char *urls[] = {t->snap_url};
        qb_snapshot_config cfg = {
            .urls = urls, .n_urls = 1, .collect = tb_collect, .collect_arg = t};
        QB_CHECK_EQ_INT(qb_snapshot_new(&cfg, &t->svc), QB_OK);
    }
}

static void tb_stop(tbroker *t)
{
    qb_snapshot_free(t->svc);
    nng_close(t->pub);
    for (int i = 0; i < t->n_feeds; i++) {
        qb_book_free(t->feeds[i].book);
    }
    qb_buf_fini(&t->buf);
    pthread_mutex_destroy(&t->lock);
    char p[200];
    snprintf(p, sizeof p, "%s/pub.ipc", t->dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/snap.ipc", t->dir);
    unlink(p);
    rmdir(t->dir);
}

static feed *tb_feed(tbroker *t, const char *ex, const char *sym)
{
    feed *f = &t->feeds[t->n_feeds++];
    snprintf(f->ex, sizeof f->ex, "%s", ex);
    snprintf(f->sym, sizeof f->sym, "%s", sym);
    snprintf(f->topic, sizeof f->topic, "book.%s.%s", ex, sym);
    f->book = qb_book_new(0);
    f->seq = 1000 * (uint64_t)t->n_feeds;
    return f;
}

static void tb_send(tbroker *t, const qb_msg *m)
{
    qb_buf_reset(&t->buf);
    QB_CHECK_EQ_INT(qb_msg_encode(m, &t->buf), QB_OK);
    QB_CHECK_EQ_INT(nng_send(t->pub, t->buf.data, t->buf.len, 0), 0);
}

static qb_msg tb_msg(feed *f, qb_msg_type type)
{
    qb_msg m;
    memset(&m, 0, sizeof m);
    m.type = type;
    m.version = 1;
    m.exchange = (qb_str){f->ex, strlen(f->ex)};
    m.symbol = (qb_str){f->sym, strlen(f->sym)};
    m.native = m.symbol;
    m.recv_ts = 1700000000000000000ull;
    return m;
}

/* A snapshot of f's book (refresh: repeats the seq; else rebases +1). */
static void tb_snapshot(tbroker *t, feed *f, bool refresh, bool publish)
{
    pthread_mutex_lock(&t->lock);
    if (!f->live) {
        /* First snapshot: a few levels on each side. */
        for (int k = 0; k < 20; k++) {
            qb_book_set(f->book, QB_BID, (qb_dec){999900 - k * 100, 2}, (qb_dec){1000 + k, 3});
            qb_book_set(f->book, QB_ASK, (qb_dec){1000100 + k * 100, 2}, (qb_dec){2000 + k, 3});
        }
        f->live = true;
    }
    if (!refresh) {
        f->seq++;
    }
    pthread_mutex_unlock(&t->lock);
    qb_msg m = tb_msg(f, QB_MSG_SNAPSHOT);
    m.seq = f->seq;
    m.refresh = refresh;
    m.bids = qb_book_levels(f->book, QB_BID);
    m.n_bids = qb_book_depth(f->book, QB_BID);
    m.asks = qb_book_levels(f->book, QB_ASK);
    m.n_asks = qb_book_depth(f->book, QB_ASK);
    if (publish) {
        tb_send(t, &m);
    }
}

/* One delta: applied to the "broker" book first, then (maybe) published. */
static void tb_delta(tbroker *t, feed *f, bool publish)
{
    qb_level bids[3], asks[3];
    for (int k = 0; k < 3; k++) {
        uint64_t r = rnd(t);
        bids[k].price = (qb_dec){999900 - (int64_t)(r % 40) * 100, 2};
        bids[k].size = (qb_dec){(int64_t)((r >> 8) % 4) * 250, 3}; /* 0 deletes */
        asks[k].price = (qb_dec){1000100 + (int64_t)((r >> 16) % 40) * 100, 2};
        asks[k].size = (qb_dec){(int64_t)((r >> 24) % 4) * 125, 3};
    }
    pthread_mutex_lock(&t->lock);
    QB_CHECK_EQ_INT(qb_book_apply(f->book, bids, 3, asks, 3), QB_OK);
    f->seq++;
    pthread_mutex_unlock(&t->lock);
    qb_msg m = tb_msg(f, QB_MSG_DELTA);
    m.seq = f->seq;
    m.bids = bids;
    m.n_bids = 3;
    m.asks = asks;
    m.n_asks = 3;
    if (publish) {
        tb_send(t, &m);
    }
}

static void wait_pipes(tbroker *t, int n)
{
    for (int i = 0; i < 400 && atomic_load(&t->pipes) < n; i++) {
        usleep(5000);
    }
    QB_CHECK(atomic_load(&t->pipes) >= n);
}

/* True when the mirror's book equals the feed's book exactly, at its seq. */
static bool mirror_equals(qb_mirror *m, feed *f)
{
    static qb_price_level lv[2][4096];
    size_t n[2];
    uint64_t seq[2];
    if (qb_mirror_levels(m, f->topic, QB_BIDS, lv[0], 4096, &n[0], &seq[0]) != QB_OK ||
        qb_mirror_levels(m, f->topic, QB_ASKS, lv[1], 4096, &n[1], &seq[1]) != QB_OK) {
        return false;
    }
    qb_book_info info;
    if (qb_mirror_info(m, f->topic, &info) != QB_OK || info.state != QB_MIRROR_LIVE) {
        return false;
    }
    if (seq[0] != f->seq || seq[1] != f->seq) {
        return false;
    }
    qb_book *b = qb_book_new(0);
    qb_book_replace(b, (const qb_level *)lv[0], n[0], (const qb_level *)lv[1], n[1]);
    bool eq = qb_book_equal(b, f->book) && n[0] == qb_book_depth(f->book, QB_BID) &&
              n[1] == qb_book_depth(f->book, QB_ASK);
    qb_book_free(b);
    return eq;
}

static bool wait_equal(qb_mirror *m, feed *f, int ms)
{
    for (int i = 0; i < ms / 5; i++) {
        if (mirror_equals(m, f)) {
            return true;
        }
        usleep(5000);
    }
    return mirror_equals(m, f);
}

QB_TEST(client_errors_and_decimals)
{
    QB_CHECK_EQ_STR(qb_strerror(QB_EGAP), "sequence gap");
    QB_CHECK_EQ_STR(qb_strerror(QB_ETIMEDOUT), "timed out");
    QB_CHECK_EQ_STR(qb_version(), QB_VERSION);
    qb_decimal d = {0, 0};
    QB_CHECK_EQ_INT(qb_decimal_parse("100.50", &d), QB_OK);
    QB_CHECK(d.mantissa == 10050 && d.scale == 2);
    QB_CHECK_EQ_INT(qb_decimal_parse("1x", &d), QB_EPARSE);
    QB_CHECK(d.mantissa == 10050); /* untouched on failure */
    char buf[QB_DECIMAL_STR_MAX];
    QB_CHECK(qb_decimal_format((qb_decimal){92, 8}, buf, sizeof buf) > 0);
    QB_CHECK_EQ_STR(buf, "0.00000092");
    QB_CHECK(qb_decimal_cmp((qb_decimal){15, 1}, (qb_decimal){150, 2}) == 0);
    QB_CHECK_EQ_STR(qb_mirror_state_name(QB_MIRROR_RESYNCING), "resyncing");
    QB_CHECK_EQ_STR(qb_feed_status_name(QB_STATUS_STALE), "stale");
}

QB_TEST(client_subscriber_exact_topic_and_gaps)
{
    tbroker t;
    tb_start(&t, false);
    feed *a = tb_feed(&t, "binance", "BTC-USDT");
    feed *x = tb_feed(&t, "binance", "BTC-USDTX");
    qb_subscriber *s = NULL;
    QB_CHECK_EQ_INT(qb_subscriber_open(t.pub_url, &s), QB_OK);
    QB_CHECK_EQ_INT(qb_subscriber_subscribe(s, "book.binance.BTC-USDT"), QB_OK);
    wait_pipes(&t, 1);
    usleep(20000);
    tb_snapshot(&t, x, false, true);
    tb_snapshot(&t, a, false, true);
    tb_delta(&t, x, true);
    tb_delta(&t, a, true);
    tb_delta(&t, a, false); /* lost on the way */
    tb_delta(&t, a, false);
    tb_delta(&t, a, true);
    qb_message *m = NULL;
    QB_CHECK_EQ_INT(qb_subscriber_recv(s, 2000, &m), QB_OK);
    if (m != NULL) {
        QB_CHECK_EQ_INT(m->type, QB_MESSAGE_SNAPSHOT);
        QB_CHECK_EQ_STR(m->topic, "book.binance.BTC-USDT");
        QB_CHECK_EQ_STR(m->symbol, "BTC-USDT");
        QB_CHECK_EQ_INT(m->n_bids, 20);
        QB_CHECK(m->bids[0].price.mantissa == 999900 && m->bids[0].price.scale == 2);
        QB_CHECK_EQ_INT(m->gap, 0);
    }
    qb_message *m2 = NULL, *m3 = NULL;
    QB_CHECK_EQ_INT(qb_subscriber_recv(s, 2000, &m2), QB_OK);
    QB_CHECK_EQ_INT(qb_subscriber_recv(s, 2000, &m3), QB_OK);
    /* Messages stay valid after later receives. */
    QB_CHECK_EQ_STR(m->exchange, "binance");
    qb_message_free(m);
    if (m2 != NULL && m3 != NULL) {
        QB_CHECK_EQ_INT(m2->type, QB_MESSAGE_DELTA);
        QB_CHECK_EQ_INT(m2->gap, 0);
        QB_CHECK_EQ_INT(m3->seq, m2->seq + 3);
        QB_CHECK_EQ_INT(m3->gap, 2);
    }
    qb_message_free(m2);
    qb_message_free(m3);
    qb_message *none = (qb_message *)0x1;
    QB_CHECK_EQ_INT(qb_subscriber_recv(s, 50, &none), QB_ETIMEDOUT);
    QB_CHECK(none == (qb_message *)0x1);
    qb_subscriber_stats st;
    qb_subscriber_stats_get(s, &st);
    QB_CHECK_EQ_INT(st.messages, 3);
    QB_CHECK_EQ_INT(st.gaps, 1);
    QB_CHECK_EQ_INT(st.missed, 2);
    QB_CHECK_EQ_INT(qb_subscriber_unsubscribe(s, "book.binance.BTC-USDT"), QB_OK);
    QB_CHECK_EQ_INT(qb_subscriber_unsubscribe(s, "book.binance.BTC-USDT"), QB_ENOTFOUND);
    qb_subscriber_close(s);
    qb_subscriber_close(NULL);
    tb_stop(&t);
}

QB_TEST(client_subscriber_bad_args)
{
    qb_subscriber *s = (qb_subscriber *)0x1;
    QB_CHECK_EQ_INT(qb_subscriber_open("bogus://x", &s), QB_EINVAL);
    QB_CHECK(s == (qb_subscriber *)0x1);
    qb_mirror *m = (qb_mirror *)0x1;
    const char *topics[] = {"trade.binance."};
    qb_mirror_config cfg = {.topics = topics, .n_topics = 1};
    QB_CHECK_EQ_INT(qb_mirror_open(&cfg, &m), QB_EINVAL);
    cfg.n_topics = 0;
    QB_CHECK_EQ_INT(qb_mirror_open(&cfg, &m), QB_EINVAL);
    QB_CHECK(m == (qb_mirror *)0x1);
    qb_mirror_close(NULL);
}

typedef struct change_log {
    atomic_int calls;
    atomic_int live_seen;
} change_log;

static void on_change(void *arg, qb_mirror *m, const char *topic)
{
    change_log *c = arg;
    qb_book_info info;
    atomic_fetch_add(&c->calls, 1);
    /* Accessors work from the callback. */
    if (qb_mirror_info(m, topic, &info) == QB_OK && info.state == QB_MIRROR_LIVE) {
        atomic_fetch_add(&c->live_seen, 1);
    }
}

static qb_mirror *open_mirror(tbroker *t, const char *topic, bool service, change_log *cl)
{
    const char *topics[] = {topic};
    qb_mirror_config cfg = {
        .connect = t->pub_url,
        .snapshot = service ? t->snap_url : "",
        .topics = topics,
        .n_topics = 1,
        .on_change = cl ? on_change : NULL,
        .arg = cl,
        .snapshot_timeout_ms = 1000,
    };
    qb_mirror *m = NULL;
    QB_CHECK_EQ_INT(qb_mirror_open(&cfg, &m), QB_OK);
    return m;
}

QB_TEST(client_mirror_late_joiner_exact)
{
    tbroker t;
    tb_start(&t, true);
    feed *a = tb_feed(&t, "binance", "BTC-USDT");
    feed *b = tb_feed(&t, "binance", "ETH-USDT");
    feed *c = tb_feed(&t, "htx", "BTC-USDT"); /* not under the prefix */
    tb_snapshot(&t, a, false, true);
    tb_snapshot(&t, b, false, true);
    tb_snapshot(&t, c, false, true);
    for (int i = 0; i < 20000; i++) { /* nobody listening: the late joiner missed all */
        tb_delta(&t, i % 2 ? a : b, true);
    }
    change_log cl = {0};
    qb_mirror *m = open_mirror(&t, "book.binance.", true, &cl);
    QB_CHECK_EQ_INT(qb_mirror_wait_live(m, a->topic, 5000), QB_OK);
    QB_CHECK_EQ_INT(qb_mirror_wait_live(m, b->topic, 5000), QB_OK);
    QB_CHECK(mirror_equals(m, a));
    for (int i = 0; i < 5000; i++) {
        tb_delta(&t, i % 3 ? a : b, true);
        tb_delta(&t, c, true);
        if (i % 500 == 499) {
            /* Paced: an unpaced burst of 10000 frames could overflow the
             * mirror's 8192-frame queue on a loaded machine (a real, counted
             * gap, which this test is not about). */
            QB_CHECK(wait_equal(m, a, 5000));
        }
    }
    QB_CHECK(wait_equal(m, a, 5000));
    QB_CHECK(wait_equal(m, b, 5000));
    qb_book_info info;
    QB_CHECK_EQ_INT(qb_mirror_info(m, c->topic, &info), QB_ENOTFOUND);
    QB_CHECK_EQ_INT(qb_mirror_info(m, a->topic, &info), QB_OK);
    QB_CHECK_EQ_STR(info.exchange, "binance");
    QB_CHECK_EQ_STR(info.symbol, "BTC-USDT");
    QB_CHECK(info.has_bid && info.has_ask);
    QB_CHECK(qb_decimal_cmp(info.best_bid.price, info.best_ask.price) < 0);
    QB_CHECK(info.has_status && info.status == QB_STATUS_LIVE);
    qb_book_info all[4];
    QB_CHECK_EQ_INT(qb_mirror_list(m, all, 4), 2);
    qb_mirror_stats st;
    qb_mirror_stats_get(m, &st);
    QB_CHECK(st.service_snapshots >= 2);
    QB_CHECK_EQ_INT(st.gaps, 0);
    QB_CHECK(st.deltas >= 4000);
    QB_CHECK_EQ_INT(st.books_live, 2);
    QB_CHECK(atomic_load(&cl.calls) > 1000 && atomic_load(&cl.live_seen) > 1000);
    qb_mirror_close(m);
    tb_stop(&t);
}

QB_TEST(client_mirror_gap_heals_from_service)
{
    tbroker t;
    tb_start(&t, true);
    feed *a = tb_feed(&t, "binance", "BTC-USDT");
    tb_snapshot(&t, a, false, true);
    qb_mirror *m = open_mirror(&t, "book.binance.BTC-USDT", true, NULL);
    QB_CHECK_EQ_INT(qb_mirror_wait_live(m, a->topic, 5000), QB_OK);
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 300; i++) {
            tb_delta(&t, a, i != 150); /* one lost per round */
        }
        QB_CHECK(wait_equal(m, a, 5000));
    }
    qb_mirror_stats st;
    qb_mirror_stats_get(m, &st);
    QB_CHECK(st.gaps >= 5);
    QB_CHECK(st.service_snapshots >= 6);
    QB_CHECK_EQ_INT(st.stream_snapshots, 0); /* healed by the service alone */
    qb_book_info info;
    QB_CHECK_EQ_INT(qb_mirror_info(m, a->topic, &info), QB_OK);
    QB_CHECK(info.gaps >= 5);
    qb_mirror_close(m);
    tb_stop(&t);
}

QB_TEST(client_mirror_without_service_uses_stream_refresh)
{
    tbroker t;
    tb_start(&t, false);
    feed *a = tb_feed(&t, "binance", "BTC-USDT");
    tb_snapshot(&t, a, false, true);
    qb_mirror *m = open_mirror(&t, "book.binance.BTC-USDT", false, NULL);
    wait_pipes(&t, 1);
    usleep(20000);
    for (int i = 0; i < 200; i++) {
        tb_delta(&t, a, true);
    }
    usleep(100000);
    qb_book_info info;
    /* Deltas alone never make a book. */
    QB_CHECK(qb_mirror_info(m, a->topic, &info) == QB_OK && info.state == QB_MIRROR_SYNCING);
    tb_snapshot(&t, a, true, true); /* periodic refresh */
    for (int i = 0; i < 200; i++) {
        tb_delta(&t, a, true);
    }
    QB_CHECK(wait_equal(m, a, 3000));
    /* A gap without a service: resyncing until the next refresh. */
    tb_delta(&t, a, false);
    tb_delta(&t, a, true);
    for (int i = 0; i < 50 && !(qb_mirror_info(m, a->topic, &info) == QB_OK &&
                                info.state == QB_MIRROR_RESYNCING);
         i++) {
        usleep(5000);
    }
    QB_CHECK_EQ_INT(info.state, QB_MIRROR_RESYNCING);
    QB_CHECK(info.has_bid); /* the last exact levels stay readable */
    tb_snapshot(&t, a, true, true);
    QB_CHECK(wait_equal(m, a, 3000));
    qb_mirror_stats st;
    qb_mirror_stats_get(m, &st);
    QB_CHECK_EQ_INT(st.snapshot_requests, 0);
    QB_CHECK_EQ_INT(st.stream_snapshots, 2);
    QB_CHECK_EQ_INT(st.gaps, 1);
    qb_mirror_close(m);
    tb_stop(&t);
}

QB_TEST(client_mirror_unknown_topic_then_appears)
{
    tbroker t;
    tb_start(&t, true);
    feed *a = tb_feed(&t, "htx", "ETH-USDT");
    qb_mirror *m = open_mirror(&t, "book.htx.ETH-USDT", true, NULL);
    wait_pipes(&t, 1);
    usleep(100000); /* the first request got "unknown_topic" */
    qb_book_info info;
    QB_CHECK_EQ_INT(qb_mirror_info(m, a->topic, &info), QB_ENOTFOUND);
    tb_snapshot(&t, a, false, false); /* the broker has it; the snapshot frame was lost */
    for (int i = 0; i < 100; i++) {
        tb_delta(&t, a, true);
    }
    QB_CHECK(wait_equal(m, a, 5000));
    qb_mirror_stats st;
    qb_mirror_stats_get(m, &st);
    QB_CHECK(st.snapshot_failures >= 1); /* the unknown_topic reply */
    QB_CHECK(st.service_snapshots >= 1);
    qb_mirror_close(m);
    tb_stop(&t);
}

/* Polls qb_mirror_check_topic until it returns want (or ms pass); the
 * result, and the time it took. */
static int wait_check(qb_mirror *m, const char *topic, int want, int ms, char *hint, size_t cap,
                      uint64_t *took_ms)
{
    uint64_t t0 = qb_mono_ns();
    int rc;
    while ((rc = qb_mirror_check_topic(m, topic, hint, cap)) != want &&
           qb_mono_ns() - t0 < (uint64_t)ms * 1000000u) {
        usleep(20000);
    }
    *took_ms = (qb_mono_ns() - t0) / 1000000u;
    return rc;
}

QB_TEST(client_mirror_check_topic_says_no_such_instrument)
{
    tbroker t;
    tb_start(&t, true);
    feed *a = tb_feed(&t, "binance", "BTC-USDT");
    feed *b = tb_feed(&t, "htx", "ETH-USDT");
    tb_snapshot(&t, a, false, false); /* the broker has both books */
    tb_snapshot(&t, b, false, false);
    const char *topics[] = {"book.binance.FOO-BAR", "book.binance.BTC-USDT", "book.kraken."};
    qb_mirror_config cfg = {
        .connect = t.pub_url,
        .snapshot = t.snap_url,
        .topics = topics,
        .n_topics = 3,
        .snapshot_timeout_ms = 1000,
    };
    qb_mirror *m = NULL;
    QB_CHECK_EQ_INT(qb_mirror_open(&cfg, &m), QB_OK);
    uint64_t t_open = qb_mono_ns();
    char hint[256] = "untouched";
    /* Not known yet; not configured; bad arguments. hint is not written. */
    QB_CHECK_EQ_INT(qb_mirror_check_topic(m, "book.binance.FOO-BAR", hint, sizeof hint), QB_EAGAIN);
    QB_CHECK_EQ_INT(qb_mirror_check_topic(m, "book.binance.ETH-USDT", hint, sizeof hint),
                    QB_ENOTFOUND);
    QB_CHECK_EQ_INT(qb_mirror_check_topic(m, "book.binance.FOO-BAR", NULL, 4), QB_EINVAL);
    QB_CHECK_EQ_INT(qb_mirror_check_topic(NULL, "book.binance.FOO-BAR", NULL, 0), QB_EINVAL);
    QB_CHECK_EQ_STR(hint, "untouched");
    uint64_t took;
    /* A configured topic the service has: known as soon as its book is. */
    QB_CHECK_EQ_INT(wait_check(m, "book.binance.BTC-USDT", QB_OK, 3000, NULL, 0, &took), QB_OK);
    /* The misspelt ones: said, with what the broker has, but not before
     * 2 s after open (a broker still starting learns its instruments). */
    QB_CHECK_EQ_INT(
        wait_check(m, "book.binance.FOO-BAR", QB_ENOINSTRUMENT, 5000, hint, sizeof hint, &took),
        QB_ENOINSTRUMENT);
    QB_CHECK((qb_mono_ns() - t_open) / 1000000u >= 1950);
    QB_CHECK_EQ_STR(hint, "binance BTC-USDT, htx ETH-USDT");
    QB_CHECK_EQ_STR(qb_strerror(QB_ENOINSTRUMENT), "no such instrument");
    QB_CHECK_EQ_INT(qb_mirror_check_topic(m, "book.kraken.", hint, 8), QB_ENOINSTRUMENT);
    QB_CHECK_EQ_STR(hint, "binance"); /* truncated to the buffer */
    /* Not final: the instrument appears (on the stream) and is known. */
    pthread_mutex_lock(&t.lock); /* the service reads the feeds meanwhile */
    feed *f = tb_feed(&t, "binance", "FOO-BAR");
    pthread_mutex_unlock(&t.lock);
    tb_snapshot(&t, f, false, true);
    QB_CHECK_EQ_INT(wait_check(m, "book.binance.FOO-BAR", QB_OK, 3000, NULL, 0, &took), QB_OK);
    QB_CHECK_EQ_INT(qb_mirror_check_topic(m, "book.kraken.", NULL, 0), QB_ENOINSTRUMENT);
    qb_mirror_close(m);

    /* Without a service nothing can be said: QB_EAGAIN, also after 2 s. */
    cfg.snapshot = "";
    QB_CHECK_EQ_INT(qb_mirror_open(&cfg, &m), QB_OK);
    usleep(2200000);
    QB_CHECK_EQ_INT(qb_mirror_check_topic(m, "book.kraken.", NULL, 0), QB_EAGAIN);
    qb_mirror_close(m);
    tb_stop(&t);
}

QB_TEST(client_mirror_service_down_heals_from_stream)
{
    tbroker t;
    tb_start(&t, false);
    feed *a = tb_feed(&t, "binance", "BTC-USDT");
    tb_snapshot(&t, a, false, true);
    const char *topics[] = {"book.binance."};
    qb_mirror_config cfg = {.connect = t.pub_url,
                            .snapshot = t.snap_url, /* nobody listens there */
                            .topics = topics,
                            .n_topics = 1,
                            .snapshot_timeout_ms = 200};
    qb_mirror *m = NULL;
    QB_CHECK_EQ_INT(qb_mirror_open(&cfg, &m), QB_OK);
    wait_pipes(&t, 1);
    usleep(20000);
    for (int i = 0; i < 100; i++) {
        tb_delta(&t, a, true);
    }
    tb_snapshot(&t, a, true, true);
    for (int i = 0; i < 100; i++) {
        tb_delta(&t, a, true);
    }
    QB_CHECK(wait_equal(m, a, 5000));
    usleep(300000);
    qb_mirror_stats st;
    qb_mirror_stats_get(m, &st);
    QB_CHECK(st.snapshot_failures >= 1);
    QB_CHECK_EQ_INT(st.service_snapshots, 0);
    qb_mirror_close(m);
    tb_stop(&t);
}

typedef struct churn_arg {
    tbroker *t;
    feed *f;
    atomic_bool *stop;
    atomic_bool *pause;
} churn_arg;

static void *churn_publisher(void *p)
{
    churn_arg *a = p;
    int i = 0;
    while (!atomic_load(a->stop)) {
        if (atomic_load(a->pause)) {
            usleep(1000);
            continue;
        }
        tb_delta(a->t, a->f, true);
        if (++i % 500 == 0) {
            tb_snapshot(a->t, a->f, true, true);
        }
        if (i % 50 == 0) {
            usleep(1000);
        }
    }
    return NULL;
}

QB_TEST(client_churn_open_close_while_data_flows)
{
    tbroker t;
    tb_start(&t, true);
    feed *a = tb_feed(&t, "binance", "BTC-USDT");
    tb_snapshot(&t, a, false, true);
    atomic_bool stop, pause;
    atomic_init(&stop, false);
    atomic_init(&pause, false);
    churn_arg ca = {&t, a, &stop, &pause};
    pthread_t th;
    pthread_create(&th, NULL, churn_publisher, &ca);
    int live = 0;
    const char *dbg = getenv("QB_TEST_DEBUG");
    for (int i = 0; i < 30; i++) {
        change_log cl = {0};
        if (dbg) {
            fprintf(stderr, "churn %d\n", i);
        }
        qb_mirror *m =
            open_mirror(&t, i % 2 ? "book.binance." : "book.binance.BTC-USDT", true, &cl);
        qb_subscriber *s = NULL;
        QB_CHECK_EQ_INT(qb_subscriber_open(t.pub_url, &s), QB_OK);
        qb_subscriber_subscribe(s, "book.");
        qb_message *msg;
        if (qb_subscriber_recv(s, 200, &msg) == QB_OK) {
            qb_message_free(msg);
        }
        if (i % 3 == 0) {
            live += qb_mirror_wait_live(m, a->topic, 3000) == QB_OK;
        }
        /* NNG 1.5.2 can hang closing a SUB socket while frames arrive
         * (nanomsg/nng#1543, see clients/lib/mirror.c): the publisher
         * pauses around the closes. Frames are still queued unread. */
        atomic_store(&pause, true);
        usleep(20000);
        qb_subscriber_close(s);
        qb_mirror_close(m);
        atomic_store(&pause, false);
    }
    atomic_store(&stop, true);
    pthread_join(th, NULL);
    QB_CHECK_EQ_INT(live, 10);
    tb_stop(&t);
}

/* ---- publisher restarts (PROTOCOL.md 11.4 rules 7 and 8) --------------
 * Every state the test publisher's book passes through is recorded as a
 * hash per seq (old and new streams share seqs); the mirror's change
 * callback (on the mirror thread, where books cannot change under it)
 * checks that whenever a book is LIVE its levels are one of those states at
 * its seq. The bug this guards against: a mirror applying a restarted
 * publisher's delta old_seq + 1 onto the old book, LIVE and wrong. */

#define HIST_SEQS 4096
#define HIST_SLOTS 4

typedef struct hist {
    pthread_mutex_t lock;
    uint64_t h[HIST_SEQS][HIST_SLOTS];
    int n[HIST_SEQS];
    const char *topic;
    atomic_int checked, wrong;
} hist;

static uint64_t hash_dec(uint64_t h, int64_t mant, int scale)
{
    while (mant != 0 && mant % 10 == 0) { /* by value: 1.50 == 1.5 */
        mant /= 10;
        scale--;
    }
    if (mant == 0) {
        scale = 0;
    }
    h = (h ^ (uint64_t)mant) * 1099511628211ull;
    return (h ^ (uint64_t)(uint8_t)scale) * 1099511628211ull;
}

static uint64_t hash_side(uint64_t h, const qb_price_level *lv, size_t n)
{
    h = (h ^ n) * 1099511628211ull;
    for (size_t i = 0; i < n; i++) {
        h = hash_dec(h, lv[i].price.mantissa, lv[i].price.scale);
        h = hash_dec(h, lv[i].size.mantissa, lv[i].size.scale);
    }
    return h;
}

static uint64_t hash_feed(feed *f)
{
    /* qb_level and qb_price_level have the same layout (the library
     * copies one into the other). */
    uint64_t h = 14695981039346656037ull;
    h = hash_side(h, (const qb_price_level *)qb_book_levels(f->book, QB_BID),
                  qb_book_depth(f->book, QB_BID));
    return hash_side(h, (const qb_price_level *)qb_book_levels(f->book, QB_ASK),
                     qb_book_depth(f->book, QB_ASK));
}

/* Records f's current book as a state at seq. */
static void hist_record(hist *hs, feed *f, uint64_t seq)
{
    pthread_mutex_lock(&hs->lock);
    QB_CHECK(seq < HIST_SEQS);
    if (seq < HIST_SEQS && hs->n[seq] < HIST_SLOTS) {
        hs->h[seq][hs->n[seq]++] = hash_feed(f);
    }
    pthread_mutex_unlock(&hs->lock);
}

static void hist_on_change(void *arg, qb_mirror *m, const char *topic)
{
    hist *hs = arg;
    static qb_price_level lv[2][4096];
    qb_book_info info;
    size_t n[2];
    if (strcmp(topic, hs->topic) != 0 || qb_mirror_info(m, topic, &info) != QB_OK ||
        info.state != QB_MIRROR_LIVE) {
        return;
    }
    if (qb_mirror_levels(m, topic, QB_BIDS, lv[0], 4096, &n[0], NULL) != QB_OK ||
        qb_mirror_levels(m, topic, QB_ASKS, lv[1], 4096, &n[1], NULL) != QB_OK) {
        atomic_fetch_add(&hs->wrong, 1);
        return;
    }
    uint64_t h = hash_side(hash_side(14695981039346656037ull, lv[0], n[0]), lv[1], n[1]);
    bool ok = false;
    pthread_mutex_lock(&hs->lock);
    for (int i = 0; info.seq < HIST_SEQS && i < hs->n[info.seq]; i++) {
        ok |= hs->h[info.seq][i] == h;
    }
    pthread_mutex_unlock(&hs->lock);
    atomic_fetch_add(&hs->checked, 1);
    if (!ok) {
        atomic_fetch_add(&hs->wrong, 1);
        fprintf(stderr, "LIVE with a wrong book at seq %llu\n", (unsigned long long)info.seq);
    }
}

static qb_mirror *open_hist_mirror(tbroker *t, const char *topic, bool service, hist *hs)
{
    const char *topics[] = {topic};
    qb_mirror_config cfg = {
        .connect = t->pub_url,
        .snapshot = service ? t->snap_url : "",
        .topics = topics,
        .n_topics = 1,
        .on_change = hist_on_change,
        .arg = hs,
        .snapshot_timeout_ms = 1000,
    };
    qb_mirror *m = NULL;
    QB_CHECK_EQ_INT(qb_mirror_open(&cfg, &m), QB_OK);
    return m;
}

static void hist_init(hist *hs, const char *topic)
{
    memset(hs, 0, sizeof *hs);
    pthread_mutex_init(&hs->lock, NULL);
    hs->topic = topic;
}

/* A restarted publisher: a different book, numbered from seq0 + 1 on. */
static void tb_restart_feed(tbroker *t, feed *f, uint64_t seq0, int variant)
{
    pthread_mutex_lock(&t->lock);
    qb_book_clear(f->book);
    for (int k = 0; k < 20; k++) {
        qb_book_set(f->book, QB_BID, (qb_dec){999900 - k * 100, 2},
                    (qb_dec){7000 + 10 * variant + k, 3});
        qb_book_set(f->book, QB_ASK, (qb_dec){1000100 + k * 100, 2},
                    (qb_dec){9000 + 10 * variant + k, 3});
    }
    f->seq = seq0;
    f->live = true;
    pthread_mutex_unlock(&t->lock);
}

/* tb_snapshot, with the state recorded before it can arrive. */
static void hsnap(tbroker *t, hist *hs, feed *f, bool refresh, bool publish)
{
    hist_record(hs, f, refresh ? f->seq : f->seq + 1);
    tb_snapshot(t, f, refresh, publish);
}

/* tb_delta, with the state recorded before it is published. */
static void hdelta(tbroker *t, hist *hs, feed *f, bool publish)
{
    qb_level bids[3], asks[3];
    for (int k = 0; k < 3; k++) {
        uint64_t r = rnd(t);
        bids[k].price = (qb_dec){999900 - (int64_t)(r % 40) * 100, 2};
        bids[k].size = (qb_dec){(int64_t)((r >> 8) % 4) * 250, 3};
        asks[k].price = (qb_dec){1000100 + (int64_t)((r >> 16) % 40) * 100, 2};
        asks[k].size = (qb_dec){(int64_t)((r >> 24) % 4) * 125, 3};
    }
    pthread_mutex_lock(&t->lock); /* recorded before the service can show it */
    QB_CHECK_EQ_INT(qb_book_apply(f->book, bids, 3, asks, 3), QB_OK);
    f->seq++;
    hist_record(hs, f, f->seq);
    pthread_mutex_unlock(&t->lock);
    qb_msg m = tb_msg(f, QB_MSG_DELTA);
    m.seq = f->seq;
    m.bids = bids;
    m.n_bids = 3;
    m.asks = asks;
    m.n_asks = 3;
    if (publish) {
        tb_send(t, &m);
    }
}

/* Waits until the mirror has received at least frames frames. */
static void wait_frames(qb_mirror *m, uint64_t frames)
{
    qb_mirror_stats st;
    for (int i = 0; i < 1000; i++) {
        qb_mirror_stats_get(m, &st);
        if (st.frames >= frames) {
            return;
        }
        usleep(5000);
    }
    QB_CHECK(st.frames >= frames);
}

/* The "broker" restarts: a new PUB socket on the same address. */
static void tb_reopen_pub(tbroker *t)
{
    nng_close(t->pub);
    atomic_store(&t->pipes, 0);
    QB_CHECK_EQ_INT(nng_pub0_open(&t->pub), 0);
    nng_socket_set_int(t->pub, NNG_OPT_SENDBUF, 8192);
    nng_pipe_notify(t->pub, NNG_PIPE_EV_ADD_POST, tb_pipe_cb, t);
    nng_pipe_notify(t->pub, NNG_PIPE_EV_REM_POST, tb_pipe_cb, t);
    QB_CHECK_EQ_INT(nng_listen(t->pub, t->pub_url, NULL, 0), 0);
}

QB_TEST(client_mirror_publisher_restart_stream)
{
    tbroker t;
    tb_start(&t, false);
    feed *a = tb_feed(&t, "binance", "BTC-USDT");
    hist hs;
    hist_init(&hs, a->topic);
    tb_restart_feed(&t, a, 1000, 0);
    qb_mirror *m = open_hist_mirror(&t, a->topic, false, &hs);
    wait_pipes(&t, 1);
    usleep(20000);
    hsnap(&t, &hs, a, false, true);
    for (int i = 0; i < 300; i++) {
        hdelta(&t, &hs, a, true);
    }
    QB_CHECK(wait_equal(m, a, 3000));

    /* Restart 1: the new publisher's first snapshot (seq 1) arrives. */
    tb_restart_feed(&t, a, 0, 1);
    hsnap(&t, &hs, a, false, true);
    for (int i = 0; i < 200; i++) {
        hdelta(&t, &hs, a, true);
    }
    QB_CHECK(wait_equal(m, a, 3000));
    qb_mirror_stats st;
    qb_mirror_stats_get(m, &st);
    QB_CHECK_EQ_INT(st.restarts, 1);
    QB_CHECK_EQ_INT(st.reconnects, 0);

    /* Restart 2: the new snapshot is lost; deltas 2.. run past the old
     * book's seq + 1. The mirror must not apply them to the old book. */
    uint64_t old = a->seq;
    tb_restart_feed(&t, a, 0, 2);
    hsnap(&t, &hs, a, false, false);
    qb_mirror_stats_get(m, &st);
    uint64_t frames = st.frames;
    for (uint64_t s = 2; s <= old + 5; s++) {
        hdelta(&t, &hs, a, true);
    }
    wait_frames(m, frames + old + 4);
    qb_book_info info;
    QB_CHECK_EQ_INT(qb_mirror_info(m, a->topic, &info), QB_OK);
    QB_CHECK_EQ_INT(info.state, QB_MIRROR_RESYNCING);
    qb_mirror_stats_get(m, &st);
    QB_CHECK_EQ_INT(st.restarts, 2);
    /* The next refresh makes it exact. */
    hsnap(&t, &hs, a, true, true);
    for (int i = 0; i < 50; i++) {
        hdelta(&t, &hs, a, true);
    }
    QB_CHECK(wait_equal(m, a, 3000));
    QB_CHECK_EQ_INT(atomic_load(&hs.wrong), 0);
    QB_CHECK(atomic_load(&hs.checked) > 500);
    qb_mirror_close(m);
    pthread_mutex_destroy(&hs.lock);
    tb_stop(&t);
}

QB_TEST(client_mirror_publisher_restart_service)
{
    tbroker t;
    tb_start(&t, true);
    feed *a = tb_feed(&t, "binance", "BTC-USDT");
    hist hs;
    hist_init(&hs, a->topic);
    tb_restart_feed(&t, a, 1000, 0);
    hsnap(&t, &hs, a, false, true);
    qb_mirror *m = open_hist_mirror(&t, a->topic, true, &hs);
    QB_CHECK_EQ_INT(qb_mirror_wait_live(m, a->topic, 5000), QB_OK);
    for (int i = 0; i < 300; i++) {
        hdelta(&t, &hs, a, true);
    }
    QB_CHECK(wait_equal(m, a, 3000));
    /* Restart with the new snapshot lost: delta 2 tells, the service
     * (which has the new book) heals; the old book is never LIVE again. */
    uint64_t old = a->seq;
    tb_restart_feed(&t, a, 0, 1);
    hsnap(&t, &hs, a, false, false);
    for (uint64_t s = 2; s <= old + 50; s++) {
        hdelta(&t, &hs, a, true);
        if (s % 50 == 0) {
            usleep(1000);
        }
    }
    QB_CHECK(wait_equal(m, a, 5000));
    qb_mirror_stats st;
    qb_mirror_stats_get(m, &st);
    QB_CHECK(st.restarts >= 1);
    QB_CHECK(st.service_snapshots >= 2);
    QB_CHECK_EQ_INT(st.stream_snapshots, 0); /* healed by the service */
    QB_CHECK_EQ_INT(atomic_load(&hs.wrong), 0);
    qb_mirror_close(m);
    pthread_mutex_destroy(&hs.lock);
    tb_stop(&t);
}

QB_TEST(client_mirror_broker_reconnect_invalidates)
{
    tbroker t;
    tb_start(&t, false);
    feed *a = tb_feed(&t, "binance", "BTC-USDT");
    hist hs;
    hist_init(&hs, a->topic);
    tb_restart_feed(&t, a, 1000, 0);
    qb_mirror *m = open_hist_mirror(&t, a->topic, false, &hs);
    wait_pipes(&t, 1);
    usleep(20000);
    hsnap(&t, &hs, a, false, true);
    for (int i = 0; i < 300; i++) {
        hdelta(&t, &hs, a, true);
    }
    QB_CHECK(wait_equal(m, a, 3000));
    /* A new broker whose stream of this book goes on at the old seq + 1
     * with another book (its snapshot lost): seqs never go back, so only
     * the reconnection tells the mirror. */
    uint64_t old = a->seq;
    tb_reopen_pub(&t);
    tb_restart_feed(&t, a, old - 1, 1);
    hsnap(&t, &hs, a, false, false);
    wait_pipes(&t, 1);
    usleep(50000);
    qb_mirror_stats st;
    qb_mirror_stats_get(m, &st);
    uint64_t frames = st.frames;
    for (int i = 0; i < 20; i++) {
        hdelta(&t, &hs, a, true);
    }
    wait_frames(m, frames + 20);
    qb_book_info info;
    QB_CHECK_EQ_INT(qb_mirror_info(m, a->topic, &info), QB_OK);
    QB_CHECK(info.state != QB_MIRROR_LIVE);
    qb_mirror_stats_get(m, &st);
    QB_CHECK_EQ_INT(st.reconnects, 1);
    QB_CHECK_EQ_INT(st.restarts, 0);
    hsnap(&t, &hs, a, true, true);
    for (int i = 0; i < 50; i++) {
        hdelta(&t, &hs, a, true);
    }
    QB_CHECK(wait_equal(m, a, 3000));
    QB_CHECK_EQ_INT(atomic_load(&hs.wrong), 0);
    qb_mirror_close(m);
    pthread_mutex_destroy(&hs.lock);
    tb_stop(&t);
}

int main(void)
{
    /* QB_TEST_FILTER=substring runs only the matching tests (debugging). */
    const char *filter = getenv("QB_TEST_FILTER");
    if (filter != NULL) {
        int n = 0;
        for (int i = 0; i < qb_ntests_; i++) {
            if (strstr(qb_tests_[i].name, filter) != NULL) {
                qb_tests_[n++] = qb_tests_[i];
            }
        }
        qb_ntests_ = n;
    }
    return qb_test_run_all();
}
