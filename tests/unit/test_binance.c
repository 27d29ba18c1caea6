/*
 * test_binance.c: the Binance spot parser and the sync state machine
 * (adapters/binance.c, adapters/sync.c), without network.
 *
 * The recorded real session (QB_SHARED_DATA/recorded/binance_spot_NKNUSDT_
 * cryptofeed_20211012.txt: one REST snapshot and 150 depth events) goes
 * through the real parse and sync code in the order it arrived; the final
 * book is compared with a reference built by a naive, independent loop over
 * the same text (string scanning, no jsmn, no qb_book). Synthetic frames
 * cover gaps, duplicates, crossed books, overflow, malformed input; every
 * prefix and single-byte mutation of every recorded frame goes through the
 * parser (and, when it still parses as depth, through a live sync) so ASan
 * sees every path. Skips (77) when the shared data is missing.
 */
#include "harness.h"

#include "err.h"
#include "exchange.h"
#include "log.h"
#include "sync.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REC_FILE QB_SHARED_DATA "/recorded/binance_spot_NKNUSDT_cryptofeed_20211012.txt"
#define SAMPLES QB_SHARED_DATA "/samples/"

/* ---- helpers ------------------------------------------------------------- */


typedef struct rec_line {
    const char *payload;
    size_t len;
    bool is_rest;
} rec_line;

/* Splits the cryptofeed capture into payloads (client-sent lines skipped). */
static size_t load_recording(char *text, rec_line *out, size_t cap)
{
    size_t n = 0;
    char *p = text;
    while (*p && n < cap) {
        char *eol = strchr(p, '\n');
        if (eol) {
            *eol = '\0';
        }
        if (strncmp(p, "wss://", 6) != 0 || strstr(p, " <- ") == NULL) {
            bool rest = strncmp(p, "https://", 8) == 0;
            char *colon = strstr(p, ": {");
            if (colon) {
                out[n].payload = colon + 2;
                out[n].len = strlen(colon + 2);
                out[n].is_rest = rest;
                n++;
            }
        }
        if (!eol) {
            break;
        }
        p = eol + 1;
    }
    return n;
}

static qb_dec dec(const char *s)
{
    qb_dec d = {0, 0};
    int rc = qb_dec_parse(s, strlen(s), &d);
    QB_CHECK_EQ_INT(rc, QB_OK);
    return d;
}

/* ---- a recording sync owner ------------------------------------------------ */

typedef struct rec_owner {
    int snapshots, deltas, states, wants;
    uint32_t last_want_delay;
    qb_feed_state last_state;
    char last_reason[QB_EVENT_INFO_MAX];
    uint64_t last_first, last_last;
    uint64_t first_applied;
    bool crossed_seen;
    bool check_crossed;
} rec_owner;

static void own_snapshot(qb_sync *s, const qb_event *snap)
{
    rec_owner *o = s->user;
    o->snapshots++;
    (void)snap;
}

static void own_delta(qb_sync *s, const qb_event *ev)
{
    rec_owner *o = s->user;
    if (o->deltas == 0) {
        o->first_applied = ev->first_id;
    }
    o->deltas++;
    o->last_first = ev->first_id;
    o->last_last = ev->last_id;
    if (o->check_crossed && qb_book_crossed(qb_sync_book(s))) {
        o->crossed_seen = true;
    }
}

static void own_state(qb_sync *s, qb_feed_state st, const char *reason)
{
    rec_owner *o = s->user;
    o->states++;
    o->last_state = st;
    snprintf(o->last_reason, sizeof o->last_reason, "%s", reason);
}

static void own_want(qb_sync *s, uint32_t delay_ms)
{
    rec_owner *o = s->user;
    o->wants++;
    o->last_want_delay = delay_ms;
}

static const qb_sync_ops own_ops = {
    .on_snapshot = own_snapshot,
    .on_delta = own_delta,
    .on_state = own_state,
    .want_snapshot = own_want,
};

/* ---- naive reference book ----------------------------------------------------- */

typedef struct ref_level {
    char price[40];
    char size[40];
} ref_level;

typedef struct ref_side {
    ref_level *v;
    size_t n, cap;
} ref_side;

static void ref_set(ref_side *s, const char *price, const char *size)
{
    bool zero = true;
    for (const char *c = size; *c; c++) {
        if (*c >= '1' && *c <= '9') {
            zero = false;
        }
    }
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->v[i].price, price) == 0) {
            if (zero) {
                s->v[i] = s->v[--s->n];
            } else {
                snprintf(s->v[i].size, sizeof s->v[i].size, "%s", size);
            }
            return;
        }
    }
    if (zero) {
        return;
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
    }
    snprintf(s->v[s->n].price, sizeof s->v[s->n].price, "%s", price);
    snprintf(s->v[s->n].size, sizeof s->v[s->n].size, "%s", size);
    s->n++;
}

/* Applies every ["p","q"] of the array following `key` in text (naive scan:
 * the recorded data has no nested arrays there and no escapes). */
static void ref_apply(ref_side *s, const char *text, const char *key)
{
    const char *p = strstr(text, key);
    if (p == NULL) {
        return;
    }
    p += strlen(key);
    while (*p == '[') {
        p++;
        if (*p == ']') {
            return;
        }
        /* "price","size"] */
        char price[40], size[40];
        const char *q1 = strchr(p, '"') + 1;
        const char *q2 = strchr(q1, '"');
        snprintf(price, sizeof price, "%.*s", (int)(q2 - q1), q1);
        const char *q3 = strchr(q2 + 1, '"') + 1;
        const char *q4 = strchr(q3, '"');
        snprintf(size, sizeof size, "%.*s", (int)(q4 - q3), q3);
        ref_set(s, price, size);
        p = strchr(q4, ']') + 1;
        if (*p == ',') {
            p++;
        }
        if (*p == ']') {
            return;
        }
    }
}

static unsigned long long ref_num(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

/* True when book holds exactly the reference levels (same text). */
static bool ref_equal(const qb_book *b, qb_book_side side, const ref_side *r)
{
    if (qb_book_depth(b, side) != r->n) {
        fprintf(stderr, "depth %zu != reference %zu\n", qb_book_depth(b, side), r->n);
        return false;
    }
    const qb_level *lv = qb_book_levels(b, side);
    for (size_t i = 0; i < r->n; i++) {
        char p[QB_DEC_STR_MAX], s[QB_DEC_STR_MAX];
        bool found = false;
        for (size_t k = 0; k < r->n && !found; k++) {
            qb_dec_format(lv[k].price, p, sizeof p);
            if (strcmp(p, r->v[i].price) == 0) {
                qb_dec_format(lv[k].size, s, sizeof s);
                if (strcmp(s, r->v[i].size) != 0) {
                    fprintf(stderr, "level %s: size %s != reference %s\n", p, s, r->v[i].size);
                    return false;
                }
                found = true;
            }
        }
        if (!found) {
            fprintf(stderr, "reference level %s missing\n", r->v[i].price);
            return false;
        }
    }
    /* Best first, strictly ordered. */
    for (size_t k = 1; k < r->n; k++) {
        int c = qb_dec_cmp(lv[k - 1].price, lv[k].price);
        if ((side == QB_BID && c <= 0) || (side == QB_ASK && c >= 0)) {
            fprintf(stderr, "book side not sorted at %zu\n", k);
            return false;
        }
    }
    return true;
}

/* ---- state shared by the recorded tests ----------------------------------------- */

static char *rec_text;
static rec_line rec[512];
static size_t nrec;

static void need_recording(void)
{
    if (rec_text) {
        return;
    }
    size_t len;
    rec_text = qb_test_read_file(REC_FILE, &len);
    if (rec_text == NULL) {
        QB_SKIP_ALL("shared exchange data not found at " REC_FILE);
    }
    nrec = load_recording(rec_text, rec, 512);
}

/* ---- tests ------------------------------------------------------------------------ */

QB_TEST(symbols_and_urls)
{
    char n[QB_NATIVE_MAX];
    QB_CHECK_EQ_INT(qb_binance_ops.to_native(NULL, "BTC-USDT", n, sizeof n, NULL, 0), QB_OK);
    QB_CHECK_EQ_STR(n, "BTCUSDT");
    QB_CHECK_EQ_INT(qb_binance_ops.to_native(NULL, "eth-btc", n, sizeof n, NULL, 0), QB_OK);
    QB_CHECK_EQ_STR(n, "ETHBTC");
    QB_CHECK(qb_binance_ops.to_native(NULL, "BTCUSDT", n, sizeof n, NULL, 0) != QB_OK);
    QB_CHECK(qb_binance_ops.to_native(NULL, "-USDT", n, sizeof n, NULL, 0) != QB_OK);
    QB_CHECK(qb_binance_ops.to_native(NULL, "BTC-", n, sizeof n, NULL, 0) != QB_OK);
    QB_CHECK(qb_binance_ops.to_native(NULL, "A-B-C", n, sizeof n, NULL, 0) != QB_OK);
    QB_CHECK(qb_binance_ops.to_native(NULL, "BT/C-USDT", n, sizeof n, NULL, 0) != QB_OK);
    QB_CHECK(qb_binance_ops.to_native(NULL, "VERYLONGBASECOIN-VERYLONGQUOTECOIN", n, sizeof n, NULL,
                                      0) != QB_OK);

    const char *natives[] = {"BTCUSDT", "ETHUSDT"};
    const qb_exchange_cfg nt = {.tickers = false};
    qb_buf b = QB_BUF_INIT;
    QB_CHECK_EQ_INT(
        qb_binance_ops.ws_url(&nt, "wss://stream.binance.com:9443/stream", natives, 2, &b), QB_OK);
    qb_buf_append(&b, "", 1);
    QB_CHECK_EQ_STR((char *)b.data, "wss://stream.binance.com:9443/stream?streams="
                                    "btcusdt@depth@100ms/btcusdt@trade/"
                                    "ethusdt@depth@100ms/ethusdt@trade");
    qb_buf_reset(&b);
    QB_CHECK_EQ_INT(qb_binance_ops.subscribe_msg(&nt, "wss://x/stream", natives, 2, &b), QB_OK);
    QB_CHECK_EQ_INT(b.len, 0); /* all in the URL */

    /* Many symbols: a URL of at most ~2 KB, the rest in one SUBSCRIBE. */
    static char names[300][16];
    const char *many[300];
    for (int i = 0; i < 300; i++) {
        snprintf(names[i], sizeof names[i], "SYM%03dUSDT", i);
        many[i] = names[i];
    }
    QB_CHECK_EQ_INT(qb_binance_ops.ws_url(&nt, "wss://x/stream", many, 300, &b), QB_OK);
    QB_CHECK(b.len <= 2048 && b.len > 1500);
    qb_buf_append(&b, "", 1);
    size_t in_url = 0;
    for (const char *q = (char *)b.data; (q = strstr(q, "@trade")) != NULL; q++) {
        in_url++;
    }
    qb_buf_reset(&b);
    QB_CHECK_EQ_INT(qb_binance_ops.subscribe_msg(&nt, "wss://x/stream", many, 300, &b), QB_OK);
    qb_buf_append(&b, "", 1);
    size_t in_sub = 0;
    for (const char *q = (char *)b.data; (q = strstr(q, "@trade")) != NULL; q++) {
        in_sub++;
    }
    QB_CHECK_EQ_INT(in_url + in_sub, 300);
    QB_CHECK(strncmp((char *)b.data, "{\"method\":\"SUBSCRIBE\",\"params\":[\"sym", 36) == 0);
    QB_CHECK(strstr((char *)b.data, "\"sym299usdt@depth@100ms\",\"sym299usdt@trade\"],\"id\":1}") !=
             NULL);
    qb_buf_reset(&b);
    QB_CHECK_EQ_INT(qb_binance_ops.snapshot_url("https://api.binance.com", "BTCUSDT", 1000, &b),
                    QB_OK);
    qb_buf_append(&b, "", 1);
    QB_CHECK_EQ_STR((char *)b.data,
                    "https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=1000");
    qb_buf_fini(&b);
    QB_CHECK(qb_exchange_find("binance") == &qb_binance_ops);
    QB_CHECK(qb_exchange_find("nope") == NULL);
}

/* Tickers on (the default): a third stream per symbol, in the URL and in
 * the SUBSCRIBE for the symbols that do not fit. */
QB_TEST(ticker_streams_and_parse)
{
    const qb_exchange_cfg tk = {.tickers = true};
    const char *natives[] = {"BTCUSDT", "ETHUSDT"};
    qb_buf b = QB_BUF_INIT;
    QB_CHECK_EQ_INT(qb_binance_ops.ws_url(&tk, "wss://x/stream", natives, 2, &b), QB_OK);
    qb_buf_append(&b, "", 1);
    QB_CHECK_EQ_STR((char *)b.data, "wss://x/stream?streams="
                                    "btcusdt@depth@100ms/btcusdt@trade/btcusdt@ticker/"
                                    "ethusdt@depth@100ms/ethusdt@trade/ethusdt@ticker");
    static char names[300][16];
    const char *many[300];
    for (int i = 0; i < 300; i++) {
        snprintf(names[i], sizeof names[i], "SYM%03dUSDT", i);
        many[i] = names[i];
    }
    qb_buf_reset(&b);
    QB_CHECK_EQ_INT(qb_binance_ops.ws_url(&tk, "wss://x/stream", many, 300, &b), QB_OK);
    QB_CHECK(b.len <= 2048);
    qb_buf_append(&b, "", 1);
    size_t url_t = 0, url_k = 0, sub_t = 0, sub_k = 0;
    for (const char *q = (char *)b.data; (q = strstr(q, "@trade")) != NULL; q++) {
        url_t++;
    }
    for (const char *q = (char *)b.data; (q = strstr(q, "@ticker")) != NULL; q++) {
        url_k++;
    }
    qb_buf_reset(&b);
    QB_CHECK_EQ_INT(qb_binance_ops.subscribe_msg(&tk, "wss://x/stream", many, 300, &b), QB_OK);
    QB_CHECK(b.len > 0 && b.data[b.len - 1] == '\0'); /* each message NUL-terminated */
    for (const char *q = (char *)b.data; (q = strstr(q, "@trade")) != NULL; q++) {
        sub_t++;
    }
    for (const char *q = (char *)b.data; (q = strstr(q, "@ticker")) != NULL; q++) {
        sub_k++;
    }
    QB_CHECK_EQ_INT(url_t + sub_t, 300);
    QB_CHECK_EQ_INT(url_k + sub_k, 300);
    QB_CHECK_EQ_INT(url_t, url_k);
    qb_buf_fini(&b);

    /* The doc's 24hrTicker payload, combined-stream form. */
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 16, 100), QB_OK);
    const char *t =
        "{\"stream\":\"bnbbtc@ticker\",\"data\":{\"e\":\"24hrTicker\",\"E\":1672515782136,"
        "\"s\":\"BNBBTC\",\"p\":\"-0.0015\",\"P\":\"250.00\",\"w\":\"0.0018\",\"x\":\"0.0009\","
        "\"c\":\"0.0025\",\"Q\":\"10\",\"b\":\"0.0024\",\"B\":\"10\",\"a\":\"0.0026\",\"A\":"
        "\"100\","
        "\"o\":\"0.0010\",\"h\":\"0.0025\",\"l\":\"0.0010\",\"v\":\"10000\",\"q\":\"18\",\"O\":0,"
        "\"C\":86400000,\"F\":0,\"L\":18150,\"n\":18151}}";
    qb_event ev;
    QB_CHECK_EQ_INT(qb_binance_ops.parse(&p, t, strlen(t), &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_TICKER);
    QB_CHECK_EQ_STR(ev.native, "BNBBTC");
    QB_CHECK(qb_dec_identical(ev.ticker.last, dec("0.0025")));
    QB_CHECK(ev.ticker.has_bid && ev.ticker.has_ask && ev.ticker.has_volume &&
             ev.ticker.has_change);
    QB_CHECK(qb_dec_identical(ev.ticker.bid, dec("0.0024")));
    QB_CHECK(qb_dec_identical(ev.ticker.bid_qty, dec("10")));
    QB_CHECK(qb_dec_identical(ev.ticker.ask, dec("0.0026")));
    QB_CHECK(qb_dec_identical(ev.ticker.ask_qty, dec("100")));
    QB_CHECK(qb_dec_identical(ev.ticker.volume_24h, dec("10000")));
    QB_CHECK(qb_dec_identical(ev.ticker.change_24h, dec("-0.0015")));
    QB_CHECK_EQ_INT(ev.exch_ts, 1672515782136ULL * 1000000ULL);
    /* An empty bid side ("0") is absent, not a zero price. */
    const char *t2 = "{\"e\":\"24hrTicker\",\"E\":1,\"s\":\"X\",\"c\":\"5\",\"b\":\"0\","
                     "\"B\":\"0\",\"a\":\"6\",\"A\":\"1\",\"v\":\"0\",\"p\":\"0\"}";
    QB_CHECK_EQ_INT(qb_binance_ops.parse(&p, t2, strlen(t2), &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_TICKER);
    QB_CHECK(!ev.ticker.has_bid && ev.ticker.has_ask);
    const char *bad[] = {
        "{\"e\":\"24hrTicker\",\"E\":1,\"s\":\"X\"}",                          /* no last */
        "{\"e\":\"24hrTicker\",\"E\":1,\"s\":\"X\",\"c\":\"x\"}",              /* bad number */
        "{\"e\":\"24hrTicker\",\"E\":1,\"s\":\"X\",\"c\":\"1\",\"v\":\"-1\"}", /* negative volume */
        "{\"e\":\"24hrTicker\",\"s\":\"X\",\"c\":\"1\"}",                      /* no time */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        QB_CHECK(qb_binance_ops.parse(&p, bad[i], strlen(bad[i]), &ev) != QB_OK);
    }
    qb_parser_fini(&p);
}

QB_TEST(recorded_session_syncs_exactly)
{
    need_recording();
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 20, 20000), QB_OK);
    qb_sync_counters cnt = {0};
    rec_owner own = {.check_crossed = true};
    qb_sync s;
    QB_CHECK_EQ_INT(qb_sync_init(&s, &qb_seq_binance_spot, &own_ops, &own, &cnt, 20000), QB_OK);
    qb_sync_start(&s, QB_FEED_SYNCING, "");
    QB_CHECK_EQ_INT(own.last_state, QB_FEED_SYNCING);
    QB_CHECK_EQ_INT(own.wants, 1);

    /* Arrival order of the recording: the first depth event came before
     * the REST snapshot (it was buffered), the rest after. */
    const rec_line *snap_line = NULL;
    size_t ndepth = 0, nother = 0, first_depth = 0;
    for (size_t i = 0; i < nrec; i++) {
        if (rec[i].is_rest) {
            snap_line = &rec[i];
        } else if (strstr(rec[i].payload, "\"depthUpdate\"")) {
            if (ndepth++ == 0) {
                first_depth = i;
            }
        } else {
            nother++;
        }
    }
    QB_CHECK(snap_line != NULL);
    QB_CHECK_EQ_INT(ndepth, 150);
    if (snap_line == NULL) {
        return;
    }

    qb_event ev;
    QB_CHECK_EQ_INT(qb_binance_ops.parse(&p, rec[first_depth].payload, rec[first_depth].len, &ev),
                    QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_DEPTH);
    QB_CHECK_EQ_STR(ev.native, "NKNUSDT");
    QB_CHECK_EQ_INT(ev.first_id, 499869750ULL);
    QB_CHECK_EQ_INT(ev.last_id, 499869752ULL);
    QB_CHECK_EQ_INT(ev.exch_ts, 1633998512068ULL * 1000000ULL);
    QB_CHECK_EQ_INT(ev.n_bids, 3);
    QB_CHECK_EQ_INT(ev.n_asks, 0);
    QB_CHECK(qb_dec_identical(ev.bids[0].price, dec("0.35130000")));
    QB_CHECK(qb_dec_identical(ev.bids[0].size, dec("6195.00000000")));
    QB_CHECK_EQ_INT(qb_sync_on_delta(&s, &ev), QB_OK);
    QB_CHECK_EQ_INT(cnt.deltas_buffered, 1);
    QB_CHECK_EQ_INT(own.wants, 2);
    QB_CHECK_EQ_INT(own.last_want_delay, 0);

    /* The snapshot (the parser's arrays are reused: the sync copied the
     * buffered event). */
    qb_event snap;
    QB_CHECK_EQ_INT(qb_binance_ops.parse_snapshot(&p, snap_line->payload, snap_line->len, &snap),
                    QB_OK);
    QB_CHECK_EQ_INT(snap.kind, QB_EV_SNAPSHOT);
    QB_CHECK_EQ_INT(snap.last_id, 499869752ULL);
    /* The recording keeps 609 bids and 1000 asks of the limit=1000 reply. */
    QB_CHECK_EQ_INT(snap.n_bids, 609);
    QB_CHECK_EQ_INT(snap.n_asks, 1000);
    QB_CHECK_EQ_INT(qb_sync_on_snapshot(&s, &snap), QB_OK);
    QB_CHECK_EQ_INT(s.state, QB_SYNC_LIVE);
    QB_CHECK_EQ_INT(own.snapshots, 1);
    QB_CHECK_EQ_INT(own.last_state, QB_FEED_LIVE);
    /* The buffered first event (u == lastUpdateId) was dropped. */
    QB_CHECK_EQ_INT(cnt.deltas_dropped_stale, 1);
    QB_CHECK_EQ_INT(own.deltas, 0);

    /* Reference: snapshot + events with u > lastUpdateId, naive loop. */
    ref_side rb = {0}, ra = {0};
    ref_apply(&rb, snap_line->payload, "\"bids\":[");
    ref_apply(&ra, snap_line->payload, "\"asks\":[");
    unsigned long long last_u = ref_num(snap_line->payload, "\"lastUpdateId\":");

    for (size_t i = first_depth + 1; i < nrec; i++) {
        if (rec[i].is_rest) {
            continue;
        }
        int rc = qb_binance_ops.parse(&p, rec[i].payload, rec[i].len, &ev);
        QB_CHECK_EQ_INT(rc, QB_OK);
        if (rc != QB_OK) {
            continue;
        }
        if (ev.kind != QB_EV_DEPTH) {
            QB_CHECK_EQ_INT(ev.kind, QB_EV_UNKNOWN); /* bookTicker, aggTrade, kline */
            continue;
        }
        QB_CHECK_EQ_INT(qb_sync_on_delta(&s, &ev), QB_OK);
        if (ref_num(rec[i].payload, "\"u\":") > last_u) {
            ref_apply(&rb, rec[i].payload, "\"b\":[");
            ref_apply(&ra, rec[i].payload, "\"a\":[");
            last_u = ref_num(rec[i].payload, "\"u\":");
        }
    }
    QB_CHECK_EQ_INT(own.first_applied, 499869753ULL);
    QB_CHECK_EQ_INT(own.deltas, 149);
    QB_CHECK_EQ_INT(cnt.deltas_applied, 149);
    QB_CHECK_EQ_INT(cnt.gaps, 0);
    QB_CHECK_EQ_INT(cnt.resyncs, 0);
    QB_CHECK_EQ_INT(cnt.crossed, 0);
    QB_CHECK(!own.crossed_seen);
    QB_CHECK_EQ_INT(s.state, QB_SYNC_LIVE);
    QB_CHECK_EQ_INT(s.book_id, last_u);
    QB_CHECK(ref_equal(qb_sync_book(&s), QB_BID, &rb));
    QB_CHECK(ref_equal(qb_sync_book(&s), QB_ASK, &ra));
    free(rb.v);
    free(ra.v);
    qb_sync_fini(&s);
    qb_parser_fini(&p);
}

/* Builds a depth frame. */
static int depth_frame(char *buf, size_t cap, unsigned long long U, unsigned long long u,
                       const char *bids, const char *asks)
{
    return snprintf(buf, cap,
                    "{\"stream\":\"btcusdt@depth@100ms\",\"data\":{\"e\":\"depthUpdate\","
                    "\"E\":1700000000000,\"s\":\"BTCUSDT\",\"U\":%llu,\"u\":%llu,\"b\":[%s],"
                    "\"a\":[%s]}}",
                    U, u, bids, asks);
}

static void feed(qb_parser *p, qb_sync *s, const char *js, int expect_rc)
{
    qb_event ev;
    QB_CHECK_EQ_INT(qb_binance_ops.parse(p, js, strlen(js), &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_DEPTH);
    QB_CHECK_EQ_INT(qb_sync_on_delta(s, &ev), expect_rc);
}

static void snapshot(qb_parser *p, qb_sync *s, const char *js, int expect_rc)
{
    qb_event ev;
    QB_CHECK_EQ_INT(qb_binance_ops.parse_snapshot(p, js, strlen(js), &ev), QB_OK);
    QB_CHECK_EQ_INT(qb_sync_on_snapshot(s, &ev), expect_rc);
}

QB_TEST(gap_triggers_resync_and_duplicates_drop)
{
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 16, 100), QB_OK);
    qb_sync_counters cnt = {0};
    rec_owner own = {0};
    qb_sync s;
    QB_CHECK_EQ_INT(qb_sync_init(&s, &qb_seq_binance_spot, &own_ops, &own, &cnt, 100), QB_OK);
    qb_sync_start(&s, QB_FEED_SYNCING, "");
    char f[512];

    /* Snapshot with no buffered events: live, next event must bridge. */
    snapshot(&p, &s,
             "{\"lastUpdateId\":100,\"bids\":[[\"10.0\",\"1\"]],\"asks\":[[\"11.0\",\"2\"]]}",
             QB_OK);
    QB_CHECK_EQ_INT(s.state, QB_SYNC_LIVE);
    depth_frame(f, sizeof f, 95, 100, "[\"10.0\",\"5\"]", "");
    feed(&p, &s, f, QB_OK); /* u <= lastUpdateId: dropped */
    QB_CHECK_EQ_INT(cnt.deltas_dropped_stale, 1);
    QB_CHECK(qb_dec_cmp(qb_book_get(qb_sync_book(&s), QB_BID, dec("10")), dec("1")) == 0);
    depth_frame(f, sizeof f, 99, 103, "[\"10.0\",\"3\"]", "");
    feed(&p, &s, f, QB_OK); /* bridges: 99 <= 101 <= 103 */
    depth_frame(f, sizeof f, 104, 104, "[\"9.5\",\"4\"]", "[\"11.0\",\"0\"]");
    feed(&p, &s, f, QB_OK);
    QB_CHECK_EQ_INT(cnt.deltas_applied, 2);
    QB_CHECK(qb_dec_cmp(qb_book_get(qb_sync_book(&s), QB_BID, dec("10")), dec("3")) == 0);
    QB_CHECK_EQ_INT(qb_book_depth(qb_sync_book(&s), QB_ASK), 0);

    /* Duplicate of the last event and an old one: dropped, book unchanged. */
    feed(&p, &s, f, QB_OK);
    depth_frame(f, sizeof f, 99, 103, "[\"10.0\",\"77\"]", "");
    feed(&p, &s, f, QB_OK);
    QB_CHECK_EQ_INT(cnt.deltas_dropped_stale, 3);
    QB_CHECK_EQ_INT(cnt.deltas_applied, 2);
    QB_CHECK(qb_dec_cmp(qb_book_get(qb_sync_book(&s), QB_BID, dec("10")), dec("3")) == 0);

    /* Deleting a level that is not there is normal. */
    depth_frame(f, sizeof f, 105, 105, "[\"1.0\",\"0\"]", "");
    feed(&p, &s, f, QB_OK);
    QB_CHECK_EQ_INT(cnt.deltas_applied, 3);

    /* A gap: U=108 after u=105. */
    int wants = own.wants;
    depth_frame(f, sizeof f, 108, 110, "[\"10.0\",\"9\"]", "");
    feed(&p, &s, f, QB_EGAP);
    QB_CHECK_EQ_INT(cnt.gaps, 1);
    QB_CHECK_EQ_INT(cnt.resyncs, 1);
    QB_CHECK_EQ_INT(s.state, QB_SYNC_WAITING);
    QB_CHECK_EQ_INT(own.last_state, QB_FEED_RESYNCING);
    QB_CHECK_EQ_STR(own.last_reason, "gap: expected U=106 got U=108 (u=110)");
    QB_CHECK_EQ_INT(own.wants, wants + 1);
    QB_CHECK_EQ_INT(own.last_want_delay, 0);
    QB_CHECK_EQ_INT(s.nbuf, 1); /* the gap event starts the new buffer */
    QB_CHECK_EQ_INT(qb_book_depth(qb_sync_book(&s), QB_BID), 0);

    /* A snapshot older than the buffer is fetched again. */
    snapshot(&p, &s, "{\"lastUpdateId\":106,\"bids\":[],\"asks\":[]}", QB_EAGAIN);
    QB_CHECK_EQ_INT(cnt.snapshots_stale, 1);
    QB_CHECK_EQ_INT(own.last_want_delay, QB_SYNC_REFETCH_MS);
    QB_CHECK_EQ_INT(s.state, QB_SYNC_WAITING);

    /* lastUpdateId == U-1 is usable: the buffered event bridges. */
    depth_frame(f, sizeof f, 111, 111, "[\"9.0\",\"1\"]", "");
    feed(&p, &s, f, QB_OK);
    QB_CHECK_EQ_INT(s.nbuf, 2);
    int deltas = own.deltas;
    snapshot(&p, &s, "{\"lastUpdateId\":107,\"bids\":[[\"10.0\",\"2\"]],\"asks\":[[\"12\",\"1\"]]}",
             QB_OK);
    QB_CHECK_EQ_INT(s.state, QB_SYNC_LIVE);
    QB_CHECK_EQ_INT(own.deltas, deltas + 2);
    QB_CHECK_EQ_INT(s.book_id, 111);
    QB_CHECK(qb_dec_cmp(qb_book_get(qb_sync_book(&s), QB_BID, dec("10")), dec("9")) == 0);
    QB_CHECK_EQ_INT(cnt.snapshots_ok, 2);

    /* Crossed after an event: resync, counted. */
    depth_frame(f, sizeof f, 112, 112, "[\"12.5\",\"1\"]", "");
    feed(&p, &s, f, QB_ECROSSED);
    QB_CHECK_EQ_INT(cnt.crossed, 1);
    QB_CHECK_EQ_INT(s.state, QB_SYNC_WAITING);
    QB_CHECK_EQ_INT(own.last_state, QB_FEED_RESYNCING);
    QB_CHECK(strstr(own.last_reason, "crossed") != NULL);

    /* Snapshot failure: counted, reported, retried later. */
    qb_sync_on_snapshot_error(&s, QB_FEED_RESYNCING, "snapshot HTTP 429", 5000);
    QB_CHECK_EQ_INT(cnt.snapshots_failed, 1);
    QB_CHECK_EQ_INT(own.last_want_delay, 5000);
    QB_CHECK_EQ_STR(own.last_reason, "snapshot HTTP 429");

    /* Connection lost: stopped, events ignored. */
    qb_sync_stop(&s, QB_FEED_DOWN, "upstream unreachable");
    QB_CHECK_EQ_INT(own.last_state, QB_FEED_DOWN);
    int states = own.states;
    qb_sync_stop(&s, QB_FEED_DOWN, "upstream unreachable");
    QB_CHECK_EQ_INT(own.states, states); /* same state and reason: not repeated */
    depth_frame(f, sizeof f, 113, 113, "[\"1.0\",\"1\"]", "");
    feed(&p, &s, f, QB_OK);
    QB_CHECK_EQ_INT(s.nbuf, 0);

    /* Stale and back. */
    qb_sync_start(&s, QB_FEED_RESYNCING, "reconnected");
    snapshot(&p, &s, "{\"lastUpdateId\":200,\"bids\":[],\"asks\":[]}", QB_OK);
    qb_sync_mark_stale(&s, "no update for 30000 ms");
    QB_CHECK_EQ_INT(own.last_state, QB_FEED_STALE);
    depth_frame(f, sizeof f, 201, 201, "[\"1.0\",\"1\"]", "");
    feed(&p, &s, f, QB_OK);
    QB_CHECK_EQ_INT(own.last_state, QB_FEED_LIVE);

    /* The first event after a snapshot that does not bridge is a gap. */
    qb_sync_resync(&s, "test");
    snapshot(&p, &s, "{\"lastUpdateId\":300,\"bids\":[],\"asks\":[]}", QB_OK);
    depth_frame(f, sizeof f, 302, 303, "[\"1.0\",\"1\"]", "");
    feed(&p, &s, f, QB_EGAP);
    QB_CHECK_EQ_STR(own.last_reason, "gap: expected U=301 got U=302 (u=303)");

    qb_sync_fini(&s);
    qb_parser_fini(&p);
}

QB_TEST(buffer_overflow_restarts)
{
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 16, 100), QB_OK);
    qb_sync_counters cnt = {0};
    rec_owner own = {0};
    qb_sync s;
    QB_CHECK_EQ_INT(qb_sync_init(&s, &qb_seq_binance_spot, &own_ops, &own, &cnt, 100), QB_OK);
    s.max_events = 3;
    qb_sync_start(&s, QB_FEED_SYNCING, "");
    char f[512];
    for (unsigned long long i = 1; i <= 4; i++) {
        depth_frame(f, sizeof f, i, i, "[\"1.0\",\"1\"]", "");
        feed(&p, &s, f, QB_OK);
    }
    QB_CHECK_EQ_INT(cnt.buffer_overflows, 1);
    QB_CHECK_EQ_INT(s.nbuf, 1);
    QB_CHECK_EQ_INT(own.last_state, QB_FEED_RESYNCING);
    QB_CHECK(strstr(own.last_reason, "overflow") != NULL);
    /* The kept event (U=4) bridges a snapshot at 3. */
    snapshot(&p, &s, "{\"lastUpdateId\":3,\"bids\":[],\"asks\":[]}", QB_OK);
    QB_CHECK_EQ_INT(s.book_id, 4);
    qb_sync_fini(&s);
    qb_parser_fini(&p);
}

QB_TEST(trades_shutdown_control_error)
{
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 16, 100), QB_OK);
    qb_event ev;
    size_t len;
    char *t = qb_test_read_file(SAMPLES "binance_trade_doc_1.json", &len);
    if (t == NULL) {
        QB_SKIP_ALL("shared exchange data not found at " SAMPLES);
    }
    QB_CHECK_EQ_INT(qb_binance_ops.parse(&p, t, len, &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_TRADE);
    QB_CHECK_EQ_STR(ev.native, "BNBBTC");
    QB_CHECK_EQ_INT(ev.trade_id, 12345);
    QB_CHECK(qb_dec_identical(ev.price, dec("0.001")));
    QB_CHECK(qb_dec_identical(ev.qty, dec("100")));
    QB_CHECK_EQ_INT(ev.side, QB_SIDE_SELL); /* m=true: buyer is maker, taker sold */
    QB_CHECK_EQ_INT(ev.exch_ts, 1672515782136ULL * 1000000ULL);
    free(t);

    const char *buy = "{\"stream\":\"btcusdt@trade\",\"data\":{\"e\":\"trade\",\"E\":1,\"s\":"
                      "\"BTCUSDT\",\"t\":7,\"p\":\"50000.10\",\"q\":\"0.001\",\"T\":2,\"m\":false,"
                      "\"M\":true,\"x\":\"new-field\"}}";
    QB_CHECK_EQ_INT(qb_binance_ops.parse(&p, buy, strlen(buy), &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_TRADE);
    QB_CHECK_EQ_INT(ev.side, QB_SIDE_BUY);
    QB_CHECK_EQ_INT(ev.exch_ts, 2000000);

    const char *files[] = {"binance_serverShutdown_combined_doc_1.json",
                           "binance_serverShutdown_doc_1.json"};
    for (int i = 0; i < 2; i++) {
        char path[512];
        snprintf(path, sizeof path, SAMPLES "%s", files[i]);
        t = qb_test_read_file(path, &len);
        QB_CHECK(t != NULL);
        if (t) {
            QB_CHECK_EQ_INT(qb_binance_ops.parse(&p, t, len, &ev), QB_OK);
            QB_CHECK_EQ_INT(ev.kind, QB_EV_SHUTDOWN);
            free(t);
        }
    }
    t = qb_test_read_file(SAMPLES "binance_subscribe_response_doc_1.json", &len);
    QB_CHECK(t != NULL);
    if (t) {
        QB_CHECK_EQ_INT(qb_binance_ops.parse(&p, t, len, &ev), QB_OK);
        QB_CHECK_EQ_INT(ev.kind, QB_EV_CONTROL);
        QB_CHECK_EQ_STR(ev.info, "id=1 result=null");
        free(t);
    }
    const char *err = "{\"code\":-1121,\"msg\":\"Invalid symbol.\"}";
    QB_CHECK_EQ_INT(qb_binance_ops.parse(&p, err, strlen(err), &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_ERROR);
    QB_CHECK_EQ_STR(ev.info, "code=-1121 msg=Invalid symbol.");

    /* Other real streams are valid but unused. */
    const char *others[] = {
        "binance_bookTicker_real_combined_1.json", "binance_aggTrade_real_combined_1.json",
        "binance_kline_real_combined_1.json", "binance_partialDepth_doc_1.json"};
    for (int i = 0; i < 4; i++) {
        char path[512];
        snprintf(path, sizeof path, SAMPLES "%s", others[i]);
        t = qb_test_read_file(path, &len);
        QB_CHECK(t != NULL);
        if (t) {
            QB_CHECK_EQ_INT(qb_binance_ops.parse(&p, t, len, &ev), QB_OK);
            QB_CHECK_EQ_INT(ev.kind, QB_EV_UNKNOWN);
            free(t);
        }
    }
    /* The doc's snapshot sample. */
    t = qb_test_read_file(SAMPLES "binance_rest_depth_snapshot_doc_1.json", &len);
    QB_CHECK(t != NULL);
    if (t) {
        QB_CHECK_EQ_INT(qb_binance_ops.parse_snapshot(&p, t, len, &ev), QB_OK);
        QB_CHECK_EQ_INT(ev.last_id, 1027024);
        QB_CHECK_EQ_INT(ev.n_bids, 1);
        QB_CHECK(qb_dec_identical(ev.asks[0].price, dec("4.00000200")));
        free(t);
    }
    qb_parser_fini(&p);
}

QB_TEST(bad_input_rejected)
{
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 4096, 4), QB_OK);
    qb_event ev;
    static const char *const bad[] = {
        "",
        "{",
        "}",
        "[]x",
        "{\"stream\":\"x\",\"data\":{}} {}",
        "{\"stream\":1,\"data\":{}}",
        "{\"stream\":\"x\",\"data\":[]}",
        "nul",
        "{'a':1}",
        /* depth with a missing or ill-typed field */
        "{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"BTCUSDT\",\"U\":1,\"b\":[],\"a\":[]}",
        "{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"BTCUSDT\",\"U\":\"1\",\"u\":1,\"b\":[],\"a\":[]}",
        "{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"BTCUSDT\",\"U\":1,\"u\":1,\"b\":{},\"a\":[]}",
        "{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"BTCUSDT\",\"U\":1,\"u\":1,\"b\":[[\"1\"]],\"a\":[]"
        "}",
        "{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"BTC USDT\",\"U\":1,\"u\":1,\"b\":[],\"a\":[]}",
        "{\"e\":\"depthUpdate\",\"E\":1,\"s\":5,\"U\":1,\"u\":1,\"b\":[],\"a\":[]}",
        /* U > u */
        "{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"BTCUSDT\",\"U\":5,\"u\":4,\"b\":[],\"a\":[]}",
        /* huge numbers */
        "{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"BTCUSDT\",\"U\":1,\"u\":99999999999999999999999,"
        "\"b\":[],\"a\":[]}",
        "{\"e\":\"depthUpdate\",\"E\":18446744073709551615,\"s\":\"BTCUSDT\",\"U\":1,\"u\":1,"
        "\"b\":[],\"a\":[]}",
        "{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"BTCUSDT\",\"U\":-1,\"u\":1,\"b\":[],\"a\":[]}",
        "{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"BTCUSDT\",\"U\":1.5,\"u\":2,\"b\":[],\"a\":[]}",
        /* invalid decimals */
        "{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"BTCUSDT\",\"U\":1,\"u\":1,"
        "\"b\":[[\"abc\",\"1\"]],\"a\":[]}",
        "{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"BTCUSDT\",\"U\":1,\"u\":1,"
        "\"b\":[[\"1.2.3\",\"1\"]],\"a\":[]}",
        "{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"BTCUSDT\",\"U\":1,\"u\":1,"
        "\"b\":[[\"1\",\"\"]],\"a\":[]}",
        "{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"BTCUSDT\",\"U\":1,\"u\":1,"
        "\"b\":[[\"1\",\"-2\"]],\"a\":[]}",
        "{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"BTCUSDT\",\"U\":1,\"u\":1,"
        "\"b\":[[\"0\",\"2\"]],\"a\":[]}",
        "{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"BTCUSDT\",\"U\":1,\"u\":1,"
        "\"b\":[[\"1e999\",\"2\"]],\"a\":[]}",
        "{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"BTCUSDT\",\"U\":1,\"u\":1,"
        "\"b\":[[\"123456789012345678901234567890\",\"2\"]],\"a\":[]}",
        "{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"BTCUSDT\",\"U\":1,\"u\":1,"
        "\"b\":[[true,\"2\"]],\"a\":[]}",
        /* more levels than the parser holds (4) */
        "{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"BTCUSDT\",\"U\":1,\"u\":1,\"b\":[[\"1\",\"1\"],"
        "[\"2\",\"1\"],[\"3\",\"1\"],[\"4\",\"1\"],[\"5\",\"1\"]],\"a\":[]}",
        /* trade without m, with a bad price */
        "{\"e\":\"trade\",\"E\":1,\"s\":\"BTCUSDT\",\"t\":1,\"p\":\"1\",\"q\":\"1\",\"T\":1}",
        "{\"e\":\"trade\",\"E\":1,\"s\":\"BTCUSDT\",\"t\":1,\"p\":\"x\",\"q\":\"1\",\"T\":1,"
        "\"m\":true}",
        "{\"e\":\"trade\",\"E\":1,\"s\":\"BTCUSDT\",\"t\":1,\"p\":\"1\",\"q\":\"1\",\"T\":1,"
        "\"m\":\"yes\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = qb_binance_ops.parse(&p, bad[i], strlen(bad[i]), &ev);
        if (rc == QB_OK) {
            fprintf(stderr, "accepted bad input #%zu: %s\n", i, bad[i]);
        }
        QB_CHECK(rc != QB_OK);
    }
    /* Unknown fields and streams are ignored, not errors. */
    const char *extra = "{\"stream\":\"btcusdt@depth@100ms\",\"data\":{\"e\":\"depthUpdate\","
                        "\"new\":{\"x\":[1,2,{}]},\"E\":1,\"s\":\"BTCUSDT\",\"U\":1,\"u\":2,"
                        "\"b\":[[\"1.5\",\"2\",\"extra\"]],\"a\":[]},\"more\":true}";
    QB_CHECK_EQ_INT(qb_binance_ops.parse(&p, extra, strlen(extra), &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_DEPTH);
    QB_CHECK_EQ_INT(ev.n_bids, 1);
    const char *unk = "{\"stream\":\"btcusdt@whatever\",\"data\":{\"e\":\"novel\"}}";
    QB_CHECK_EQ_INT(qb_binance_ops.parse(&p, unk, strlen(unk), &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_UNKNOWN);
    const char *plain = "{\"hello\":\"world\"}";
    QB_CHECK_EQ_INT(qb_binance_ops.parse(&p, plain, strlen(plain), &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_UNKNOWN);

    /* More tokens than the parser holds: too big, not a crash. */
    char big[4096];
    size_t k = 0;
    big[k++] = '[';
    while (k < sizeof big - 3) {
        big[k++] = '1';
        big[k++] = ',';
    }
    big[k - 1] = ']';
    QB_CHECK_EQ_INT(qb_binance_ops.parse(&p, big, k, &ev), QB_ETOOBIG);
    /* Deep nesting: bounded by tokens, no recursion. */
    char deep[2000];
    memset(deep, '[', 1000);
    memset(deep + 1000, ']', 1000);
    int rc = qb_binance_ops.parse(&p, deep, sizeof deep, &ev);
    QB_CHECK(rc == QB_ETOOBIG || rc == QB_EPARSE);

    /* Snapshot rejects. */
    static const char *const bad_snap[] = {
        "{\"bids\":[],\"asks\":[]}",
        "{\"lastUpdateId\":\"x\",\"bids\":[],\"asks\":[]}",
        "{\"lastUpdateId\":1,\"bids\":[[\"1\",\"x\"]],\"asks\":[]}",
        "{\"lastUpdateId\":1,\"bids\":[]}",
        "{\"code\":-1003,\"msg\":\"Too many requests\"}",
    };
    for (size_t i = 0; i < sizeof bad_snap / sizeof bad_snap[0]; i++) {
        QB_CHECK(qb_binance_ops.parse_snapshot(&p, bad_snap[i], strlen(bad_snap[i]), &ev) != QB_OK);
    }
    qb_parser_fini(&p);
}

/* Parses js; when it is depth, feeds it to a live sync too. */
static unsigned long fuzz_ok, fuzz_err;
static void fuzz_one(qb_parser *p, qb_sync *s, const char *js, size_t len, bool snap)
{
    qb_event ev;
    int rc = snap ? qb_binance_ops.parse_snapshot(p, js, len, &ev)
                  : qb_binance_ops.parse(p, js, len, &ev);
    if (rc != QB_OK) {
        fuzz_err++;
        return;
    }
    fuzz_ok++;
    if (ev.kind == QB_EV_DEPTH) {
        qb_sync_on_delta(s, &ev);
        if (s->state != QB_SYNC_LIVE) {
            qb_event e0 = {.kind = QB_EV_SNAPSHOT, .last_id = ev.first_id ? ev.first_id - 1 : 0};
            qb_sync_on_snapshot(s, &e0);
        }
    } else if (ev.kind == QB_EV_SNAPSHOT && s->state == QB_SYNC_WAITING) {
        qb_sync_on_snapshot(s, &ev);
    }
}

QB_TEST(every_prefix_and_mutation)
{
    need_recording();
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 20, 20000), QB_OK);
    qb_sync_counters cnt = {0};
    rec_owner own = {0};
    qb_sync s;
    QB_CHECK_EQ_INT(qb_sync_init(&s, &qb_seq_binance_spot, &own_ops, &own, &cnt, 20000), QB_OK);
    qb_sync_start(&s, QB_FEED_SYNCING, "");
    static const unsigned char subst[] = {'"', '[', ']', '{', '}',  ',', ':',  '0', '9',
                                          '-', '.', 'e', ' ', '\\', 0,   0xff, 0x80};
    char *buf = malloc(1 << 17);
    char small[4096];
    for (size_t i = 0; i < nrec; i++) {
        const char *js = rec[i].payload;
        size_t len = rec[i].len;
        bool snap = rec[i].is_rest;
        if (snap) {
            /* The 48 KB snapshot: prefixes every 997 bytes only (jsmn
             * without parent links rescans the open array on every comma,
             * so a parse of it costs milliseconds); the full treatment goes
             * to a valid snapshot cut to its first 12 levels per side. */
            for (size_t n = 0; n <= len; n += 997) {
                memcpy(buf, js, n);
                fuzz_one(&p, &s, buf, n, true);
            }
            const char *bids = strstr(js, "\"bids\":[");
            const char *asks = strstr(js, "\"asks\":[");
            const char *bcut = bids, *acut = asks;
            for (int k = 0; k < 12; k++) {
                bcut = strstr(bcut + 1, "],");
                acut = strstr(acut + 1, "],");
            }
            int n = snprintf(small, sizeof small, "%.*s]],%.*s]]}", (int)(bcut - js), js,
                             (int)(acut - asks), asks);
            js = small;
            len = (size_t)n;
            qb_event ev;
            QB_CHECK_EQ_INT(qb_binance_ops.parse_snapshot(&p, js, len, &ev), QB_OK);
            QB_CHECK_EQ_INT(ev.n_bids, 12);
            QB_CHECK_EQ_INT(ev.n_asks, 12);
        }
        for (size_t n = 0; n <= len; n++) {
            memcpy(buf, js, n); /* a copy, so ASan sees reads past the prefix */
            fuzz_one(&p, &s, buf, n, snap);
        }
        memcpy(buf, js, len);
        for (size_t k = 0; k < len; k++) {
            char orig = buf[k];
            for (size_t m = 0; m < sizeof subst; m++) {
                buf[k] = (char)subst[m];
                fuzz_one(&p, &s, buf, len, snap);
            }
            buf[k] = (char)(orig ^ 0x20);
            fuzz_one(&p, &s, buf, len, snap);
            buf[k] = orig;
        }
    }
    printf("fuzz: %lu parsed, %lu rejected\n", fuzz_ok, fuzz_err);
    QB_CHECK(fuzz_ok > 0 && fuzz_err > 0);
    free(buf);
    qb_sync_fini(&s);
    qb_parser_fini(&p);
}

int main(void)
{
    qb_log_set_level(QB_LOG_ERROR);
    int rc = qb_test_run_all();
    free(rec_text);
    return rc;
}
