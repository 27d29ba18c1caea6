/*
 * test_binance.c: the Binance spot parser (adapters/binance.c,
 * binance_json.cc) without network; the sync state machine itself is
 * test_sync.c.
 *
 * The recorded real session (QB_SHARED_DATA/recorded/binance_spot_NKNUSDT_
 * cryptofeed_20211012.txt: one REST snapshot and 150 depth events) goes
 * through the real parse and sync code in the order it arrived; the final
 * book is compared with a reference built by a naive, independent loop over
 * the same text (oracle_binance.h: string scanning, no jsmn, no qb_book).
 * Synthetic frames cover a lost frame judged by the U/u chain, malformed
 * input; every prefix and single-byte mutation of every recorded frame goes
 * through the parser (and, when it still parses as depth, through a live
 * sync) so ASan sees every path. Skips (77) when the shared data is missing.
 */
#include "harness.h"

#include "err.h"
#include "exchange.h"
#include "log.h"
#include "oracle_binance.h"
#include "sync.h"
#include "sync_owner.h"

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
    void *st_p = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_binance_ops, 1 << 16, &st_p), QB_OK);
    const char *t =
        "{\"stream\":\"bnbbtc@ticker\",\"data\":{\"e\":\"24hrTicker\",\"E\":1672515782136,"
        "\"s\":\"BNBBTC\",\"p\":\"-0.0015\",\"P\":\"250.00\",\"w\":\"0.0018\",\"x\":\"0.0009\","
        "\"c\":\"0.0025\",\"Q\":\"10\",\"b\":\"0.0024\",\"B\":\"10\",\"a\":\"0.0026\",\"A\":"
        "\"100\","
        "\"o\":\"0.0010\",\"h\":\"0.0025\",\"l\":\"0.0010\",\"v\":\"10000\",\"q\":\"18\",\"O\":0,"
        "\"C\":86400000,\"F\":0,\"L\":18150,\"n\":18151}}";
    qb_event ev;
    QB_CHECK_EQ_INT(qb_binance_ops.parse(st_p, &p, t, strlen(t), &ev), QB_OK);
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
    QB_CHECK_EQ_INT(qb_binance_ops.parse(st_p, &p, t2, strlen(t2), &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_TICKER);
    QB_CHECK(!ev.ticker.has_bid && ev.ticker.has_ask);
    const char *bad[] = {
        "{\"e\":\"24hrTicker\",\"E\":1,\"s\":\"X\"}",                          /* no last */
        "{\"e\":\"24hrTicker\",\"E\":1,\"s\":\"X\",\"c\":\"x\"}",              /* bad number */
        "{\"e\":\"24hrTicker\",\"E\":1,\"s\":\"X\",\"c\":\"1\",\"v\":\"-1\"}", /* negative volume */
        "{\"e\":\"24hrTicker\",\"s\":\"X\",\"c\":\"1\"}",                      /* no time */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        QB_CHECK(qb_binance_ops.parse(st_p, &p, bad[i], strlen(bad[i]), &ev) != QB_OK);
    }
    qb_exchange_state_free(&qb_binance_ops, st_p);
    qb_parser_fini(&p);
}

QB_TEST(recorded_session_syncs_exactly)
{
    need_recording();
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 20, 20000), QB_OK);
    void *st_p = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_binance_ops, 1 << 20, &st_p), QB_OK);
    qb_sync_counters cnt = {0};
    rec_owner own = {.check_crossed = true};
    qb_sync s;
    QB_CHECK_EQ_INT(qb_sync_init(&s, &qb_seq_binance_spot, rec_owner_ops(), &own, &cnt, 20000),
                    QB_OK);
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
    QB_CHECK_EQ_INT(
        qb_binance_ops.parse(st_p, &p, rec[first_depth].payload, rec[first_depth].len, &ev), QB_OK);
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
    QB_CHECK_EQ_INT(
        qb_binance_ops.parse_snapshot(st_p, &p, snap_line->payload, snap_line->len, &snap), QB_OK);
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
        int rc = qb_binance_ops.parse(st_p, &p, rec[i].payload, rec[i].len, &ev);
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
    qb_exchange_state_free(&qb_binance_ops, st_p);
    qb_parser_fini(&p);
}

/* Binance spot's U/u chain judges a lost frame like HTX's prevSeqNum:
 * the next event's U == last u + 1 confirms the book, anything else
 * resyncs it, naming the lost frame. */
QB_TEST(lost_frame_suspect_confirms_or_resyncs)
{
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 16, 100), QB_OK);
    void *st_p = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_binance_ops, 1 << 16, &st_p), QB_OK);
    qb_sync_counters cnt = {0};
    rec_owner own = {0};
    qb_sync s;
    QB_CHECK_EQ_INT(qb_sync_init(&s, &qb_seq_binance_spot, rec_owner_ops(), &own, &cnt, 100),
                    QB_OK);
    qb_sync_start(&s, QB_FEED_SYNCING, "");
    char f[512];
    snapshot(st_p, &p, &s,
             "{\"lastUpdateId\":100,\"bids\":[[\"10.0\",\"1\"]],\"asks\":[[\"11.0\",\"2\"]]}",
             QB_OK);
    depth_frame(f, sizeof f, 101, 101, "[\"10.0\",\"2\"]", "");
    feed(st_p, &p, &s, f, QB_OK);
    QB_CHECK(qb_binance_ops.suspect_on_lost_frame);
    int states = own.states;
    QB_CHECK(qb_sync_suspect(&s, "oversized frame dropped"));
    depth_frame(f, sizeof f, 102, 103, "[\"10.0\",\"3\"]", "");
    feed(st_p, &p, &s, f, QB_OK); /* U = 101 + 1: nothing of this book was lost */
    QB_CHECK(!s.suspect);
    QB_CHECK_EQ_INT(cnt.suspects_confirmed, 1);
    QB_CHECK_EQ_INT(own.states, states);
    QB_CHECK_EQ_INT(cnt.resyncs, 0);
    QB_CHECK(qb_sync_suspect(&s, "oversized frame dropped"));
    depth_frame(f, sizeof f, 106, 107, "[\"10.0\",\"4\"]", "");
    feed(st_p, &p, &s, f, QB_EGAP); /* 104..105 were in the lost frame */
    QB_CHECK_EQ_INT(cnt.suspects_broken, 1);
    QB_CHECK_EQ_INT(cnt.resyncs, 1);
    QB_CHECK_EQ_STR(own.last_reason,
                    "gap after a lost frame (oversized frame dropped): gap: expected U=104 got "
                    "U=106 (u=107)");
    /* A plain gap does not name a lost frame. */
    snapshot(st_p, &p, &s, "{\"lastUpdateId\":110,\"bids\":[],\"asks\":[]}", QB_OK);
    depth_frame(f, sizeof f, 111, 111, "[\"1.0\",\"1\"]", "");
    feed(st_p, &p, &s, f, QB_OK);
    depth_frame(f, sizeof f, 113, 113, "[\"1.0\",\"1\"]", "");
    feed(st_p, &p, &s, f, QB_EGAP);
    QB_CHECK_EQ_STR(own.last_reason, "gap: expected U=112 got U=113 (u=113)");

    /* An unparseable frame whose stream is readable names its book. */
    char nat[QB_NATIVE_MAX];
    static const char cut[] = "{\"stream\":\"solusdt@depth@100ms\",\"data\":{\"e\":\"dep";
    QB_CHECK_EQ_INT(qb_binance_ops.lost_frame_kind(cut, strlen(cut), nat, sizeof nat),
                    QB_LOST_BOOK);
    QB_CHECK_EQ_STR(nat, "SOLUSDT");
    static const char trd[] = "{\"stream\":\"solusdt@trade\",\"data\":{\"e\":\"tr";
    QB_CHECK_EQ_INT(qb_binance_ops.lost_frame_kind(trd, strlen(trd), nat, sizeof nat),
                    QB_LOST_OTHER);
    static const char raw[] = "{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"SOLU";
    QB_CHECK_EQ_INT(qb_binance_ops.lost_frame_kind(raw, strlen(raw), nat, sizeof nat),
                    QB_LOST_UNKNOWN);
    qb_sync_fini(&s);
    qb_exchange_state_free(&qb_binance_ops, st_p);
    qb_parser_fini(&p);
}

QB_TEST(trades_shutdown_control_error)
{
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 16, 100), QB_OK);
    void *st_p = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_binance_ops, 1 << 16, &st_p), QB_OK);
    qb_event ev;
    size_t len;
    char *t = qb_test_read_file(SAMPLES "binance_trade_doc_1.json", &len);
    if (t == NULL) {
        QB_SKIP_ALL("shared exchange data not found at " SAMPLES);
    }
    QB_CHECK_EQ_INT(qb_binance_ops.parse(st_p, &p, t, len, &ev), QB_OK);
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
    QB_CHECK_EQ_INT(qb_binance_ops.parse(st_p, &p, buy, strlen(buy), &ev), QB_OK);
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
            QB_CHECK_EQ_INT(qb_binance_ops.parse(st_p, &p, t, len, &ev), QB_OK);
            QB_CHECK_EQ_INT(ev.kind, QB_EV_SHUTDOWN);
            free(t);
        }
    }
    t = qb_test_read_file(SAMPLES "binance_subscribe_response_doc_1.json", &len);
    QB_CHECK(t != NULL);
    if (t) {
        QB_CHECK_EQ_INT(qb_binance_ops.parse(st_p, &p, t, len, &ev), QB_OK);
        QB_CHECK_EQ_INT(ev.kind, QB_EV_CONTROL);
        QB_CHECK_EQ_STR(ev.info, "id=1 result=null");
        free(t);
    }
    const char *err = "{\"code\":-1121,\"msg\":\"Invalid symbol.\"}";
    QB_CHECK_EQ_INT(qb_binance_ops.parse(st_p, &p, err, strlen(err), &ev), QB_OK);
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
            QB_CHECK_EQ_INT(qb_binance_ops.parse(st_p, &p, t, len, &ev), QB_OK);
            QB_CHECK_EQ_INT(ev.kind, QB_EV_UNKNOWN);
            free(t);
        }
    }
    /* The doc's snapshot sample. */
    t = qb_test_read_file(SAMPLES "binance_rest_depth_snapshot_doc_1.json", &len);
    QB_CHECK(t != NULL);
    if (t) {
        QB_CHECK_EQ_INT(qb_binance_ops.parse_snapshot(st_p, &p, t, len, &ev), QB_OK);
        QB_CHECK_EQ_INT(ev.last_id, 1027024);
        QB_CHECK_EQ_INT(ev.n_bids, 1);
        QB_CHECK(qb_dec_identical(ev.asks[0].price, dec("4.00000200")));
        free(t);
    }
    qb_exchange_state_free(&qb_binance_ops, st_p);
    qb_parser_fini(&p);
}

QB_TEST(bad_input_rejected)
{
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 4096, 4), QB_OK);
    void *st_p = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_binance_ops, 4096, &st_p), QB_OK);
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
        int rc = qb_binance_ops.parse(st_p, &p, bad[i], strlen(bad[i]), &ev);
        if (rc == QB_OK) {
            fprintf(stderr, "accepted bad input #%zu: %s\n", i, bad[i]);
        }
        QB_CHECK(rc != QB_OK);
    }
    /* Unknown fields and streams are ignored, not errors. */
    const char *extra = "{\"stream\":\"btcusdt@depth@100ms\",\"data\":{\"e\":\"depthUpdate\","
                        "\"new\":{\"x\":[1,2,{}]},\"E\":1,\"s\":\"BTCUSDT\",\"U\":1,\"u\":2,"
                        "\"b\":[[\"1.5\",\"2\",\"extra\"]],\"a\":[]},\"more\":true}";
    QB_CHECK_EQ_INT(qb_binance_ops.parse(st_p, &p, extra, strlen(extra), &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_DEPTH);
    QB_CHECK_EQ_INT(ev.n_bids, 1);
    const char *unk = "{\"stream\":\"btcusdt@whatever\",\"data\":{\"e\":\"novel\"}}";
    QB_CHECK_EQ_INT(qb_binance_ops.parse(st_p, &p, unk, strlen(unk), &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_UNKNOWN);
    const char *plain = "{\"hello\":\"world\"}";
    QB_CHECK_EQ_INT(qb_binance_ops.parse(st_p, &p, plain, strlen(plain), &ev), QB_OK);
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
    QB_CHECK_EQ_INT(qb_binance_ops.parse(st_p, &p, big, k, &ev), QB_ETOOBIG);
    /* Deep nesting: bounded by tokens, no recursion. */
    char deep[2000];
    memset(deep, '[', 1000);
    memset(deep + 1000, ']', 1000);
    int rc = qb_binance_ops.parse(st_p, &p, deep, sizeof deep, &ev);
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
        QB_CHECK(qb_binance_ops.parse_snapshot(st_p, &p, bad_snap[i], strlen(bad_snap[i]), &ev) !=
                 QB_OK);
    }
    qb_exchange_state_free(&qb_binance_ops, st_p);
    qb_parser_fini(&p);
}

/* Parses js; when it is depth, feeds it to a live sync too. */
static unsigned long fuzz_ok, fuzz_err;
static void fuzz_one(void *st, qb_parser *p, qb_sync *s, const char *js, size_t len, bool snap)
{
    qb_event ev;
    int rc = snap ? qb_binance_ops.parse_snapshot(st, p, js, len, &ev)
                  : qb_binance_ops.parse(st, p, js, len, &ev);
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
    void *st_p = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_binance_ops, 1 << 20, &st_p), QB_OK);
    qb_sync_counters cnt = {0};
    rec_owner own = {0};
    qb_sync s;
    QB_CHECK_EQ_INT(qb_sync_init(&s, &qb_seq_binance_spot, rec_owner_ops(), &own, &cnt, 20000),
                    QB_OK);
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
                fuzz_one(st_p, &p, &s, buf, n, true);
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
            QB_CHECK_EQ_INT(qb_binance_ops.parse_snapshot(st_p, &p, js, len, &ev), QB_OK);
            QB_CHECK_EQ_INT(ev.n_bids, 12);
            QB_CHECK_EQ_INT(ev.n_asks, 12);
        }
        for (size_t n = 0; n <= len; n++) {
            memcpy(buf, js, n); /* a copy, so ASan sees reads past the prefix */
            fuzz_one(st_p, &p, &s, buf, n, snap);
        }
        memcpy(buf, js, len);
        for (size_t k = 0; k < len; k++) {
            char orig = buf[k];
            for (size_t m = 0; m < sizeof subst; m++) {
                buf[k] = (char)subst[m];
                fuzz_one(st_p, &p, &s, buf, len, snap);
            }
            buf[k] = (char)(orig ^ 0x20);
            fuzz_one(st_p, &p, &s, buf, len, snap);
            buf[k] = orig;
        }
    }
    printf("fuzz: %lu parsed, %lu rejected\n", fuzz_ok, fuzz_err);
    QB_CHECK(fuzz_ok > 0 && fuzz_err > 0);
    free(buf);
    qb_sync_fini(&s);
    qb_exchange_state_free(&qb_binance_ops, st_p);
    qb_parser_fini(&p);
}

/* ---- simdjson hot path vs jsmn: differential ------------------------------------
 *
 * qb_binance_ops.parse (simdjson DOM for depthUpdate/trade, jsmn for
 * the rest and for every frame the hot path does not accept) against
 * qb__binance_parse_jsmn (the jsmn parser alone) on every Binance frame of
 * the shared data and on mutations of each: every prefix, byte
 * substitutions, inserted garbage, duplicated keys, wrong types, huge
 * numbers, deep nesting, invalid UTF-8. Both must return the same code and,
 * on QB_OK, the same event (kind, symbol, ids, times, every level, the
 * trade, info).
 *
 * No difference is allowed, for any frame. The hot path (simdjson DOM)
 * validates the whole frame, and declines where jsmn's rules differ
 * (binance_json.cc: containers it does not read, a level's third element,
 * jsmn's token budget, "-0" integers), so mutations inside the values it
 * does not read ("pu", "T", "M", unknown keys, later duplicates, root fields
 * after "data", a level's third element) must also give jsmn's answer:
 * bad primitives, control and non-ASCII bytes in primitives, deep nesting
 * and token floods under an unknown key, scalar floods past jsmn's token
 * budget, malformed continuations glued after a token (":2}}", "]"...).
 * Everything simdjson is stricter about (invalid UTF-8 anywhere,
 * leading zeros in U/u/E/t/T, lone surrogates) makes the hot path decline,
 * so jsmn answers and the results are identical.
 * The recorded frames are also counted as hot-path hits and misses: every
 * depthUpdate and trade of both recordings must be a hit.
 */
#include "binance_json.h"

static qb_parser d_new, d_old;
static void *st_d_new, *st_d_old; /* their Binance states */

/* The Binance private state behind an opaque st (the hot path's parser
 * and counters). */
static qb__binance_state *bn_state(void *st)
{
    return st;
}
static unsigned long d_frames, d_same_ok, d_same_err, d_fast, d_bad;

typedef struct d_range {
    size_t lo, hi;
} d_range;

static bool d_dec_eq(qb_dec a, qb_dec b)
{
    return a.mant == b.mant && a.scale == b.scale;
}

static bool d_levels_eq(const qb_level *a, const qb_level *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!d_dec_eq(a[i].price, b[i].price) || !d_dec_eq(a[i].size, b[i].size)) {
            return false;
        }
    }
    return true;
}

static bool d_event_eq(const qb_event *a, const qb_event *b)
{
    if (a->kind != b->kind || strcmp(a->native, b->native) != 0 || a->first_id != b->first_id ||
        a->last_id != b->last_id || a->prev_id != b->prev_id || a->has_prev != b->has_prev ||
        a->exch_ts != b->exch_ts || a->n_bids != b->n_bids || a->n_asks != b->n_asks ||
        a->trade_id != b->trade_id || !d_dec_eq(a->price, b->price) || !d_dec_eq(a->qty, b->qty) ||
        a->side != b->side || a->n_trades != b->n_trades || strcmp(a->info, b->info) != 0 ||
        a->rate_limited != b->rate_limited ||
        memcmp(&a->ticker, &b->ticker, sizeof a->ticker) != 0) {
        return false;
    }
    if ((a->n_bids && !d_levels_eq(a->bids, b->bids, a->n_bids)) ||
        (a->n_asks && !d_levels_eq(a->asks, b->asks, a->n_asks))) {
        return false;
    }
    for (size_t i = 0; i < a->n_trades; i++) {
        const qb_trade *x = &a->trades[i], *y = &b->trades[i];
        if (x->id != y->id || x->ts != y->ts || !d_dec_eq(x->price, y->price) ||
            !d_dec_eq(x->qty, y->qty) || x->side != y->side) {
            return false;
        }
    }
    return true;
}

/* The byte span of token i, quotes included. */
static d_range d_span(const qb_json *j, int i)
{
    const jsmntok_t *t = &j->tok[i];
    bool str = t->type == JSMN_STRING;
    return (d_range){(size_t)t->start - str, (size_t)t->end + str};
}

/* Runs both parsers: same code and, on QB_OK, the same event. [lo, hi) is
 * the span of the original that was changed (hi == lo: an insertion at lo;
 * lo > hi: none), for the message. */
static void d_one(const char *js, size_t len, size_t lo, size_t hi)
{
    qb_event a, b;
    uint64_t hits = bn_state(st_d_new)->bjson_hits;
    int ra = qb_binance_ops.parse(st_d_new, &d_new, js, len, &a);
    bool fast = bn_state(st_d_new)->bjson_hits != hits;
    int rb = qb__binance_parse_jsmn(&d_old, js, len, &b);
    d_frames++;
    d_fast += fast;
    if (ra == rb && (ra != QB_OK || d_event_eq(&a, &b))) {
        ra == QB_OK ? d_same_ok++ : d_same_err++;
        return;
    }
    if (d_bad++ < 20) {
        fprintf(stderr, "DIFF simdjson %s (fast %d) vs jsmn %s at [%zu,%zu): %.*s\n",
                qb_strerror(ra), fast, qb_strerror(rb), lo, hi, (int)(len < 400 ? len : 400), js);
    }
}

static uint64_t d_rng = 0x9e3779b97f4a7c15ull;
static uint64_t d_rand(void)
{
    d_rng ^= d_rng << 13;
    d_rng ^= d_rng >> 7;
    d_rng ^= d_rng << 17;
    return d_rng;
}

static char d_buf[1 << 18];

/* Replaces js[lo, hi) with ins. */
static void d_splice(const char *js, size_t len, size_t lo, size_t hi, const char *ins, size_t ilen)
{
    if (len - (hi - lo) + ilen > sizeof d_buf) {
        return;
    }
    memcpy(d_buf, js, lo);
    memcpy(d_buf + lo, ins, ilen);
    memcpy(d_buf + lo + ilen, js + hi, len - hi);
    d_one(d_buf, len - (hi - lo) + ilen, lo, hi);
}

/* Mutations of one valid frame: every prefix, 400 random insertions, every
 * key's value replaced and every pair duplicated, deep nesting; with full
 * also every byte substituted (21 ways): about 25 parses per byte, so one
 * recorded frame in eight gets it (ASan+UBSan time, 120 s limit). */
static void d_mutate(const char *js, size_t len, bool full)
{
    d_one(js, len, 1, 0);
    for (size_t n = 0; n < len; n++) {
        memcpy(d_buf, js, n); /* a copy, so ASan sees reads past the prefix */
        d_one(d_buf, n, n, len);
    }
    static const unsigned char subst[] = {'"', '[', ']', '{',  '}', ',', ':', '0',  '9',  '-',
                                          '.', 'e', ' ', '\\', 0,   'x', 't', 0xff, 0x80, 0xc3};
    for (size_t k = 0; k < len && full; k++) {
        for (size_t m = 0; m < sizeof subst; m++) {
            char c = (char)subst[m];
            d_splice(js, len, k, k + 1, &c, 1);
        }
        char c = (char)(js[k] ^ 0x20);
        d_splice(js, len, k, k + 1, &c, 1);
    }
    static const char *const garbage[] = {"x",  ",",    "]",        "}", "\"", "[1]",
                                          "{}", "\xff", "\xc0\x80", " ", "1",  "\"\":0,"};
    for (int r = 0; r < 400; r++) {
        size_t at = (size_t)(d_rand() % (len + 1));
        const char *g = garbage[d_rand() % (sizeof garbage / sizeof garbage[0])];
        d_splice(js, len, at, at, g, strlen(g));
    }
    /* duplicated keys, wrong types, huge numbers: on each key's value */
    static jsmntok_t tok[1 << 16];
    qb_json j;
    if (qb_json_parse(&j, js, len, tok, 1 << 16) != QB_OK) {
        return;
    }
    static const char *const values[] = {
        "0", "-1", "1.5", "\"1\"", "\"\"", "true", "null", "[]", "{}", "[[\"1\",\"2\"]]",
        "18446744073709551615", "18446744073709551616", "007", "99999999999999999999999999",
        "\"99999999999999999999999999.5\"", "\"1e400\"", "\"\xff\xfe\"", "\"\xed\xa0\x80\"",
        "\"BTC\xc3\xa9\"", "1e3", "-0", "\"0.00000000\"", "\"-1\"",
        /* jsmn's strict primitive rule and its string rule, for the values
         * the hot path only checks ("pu", "T", "M", unknown keys...) */
        "x1", "1x", "1\x01", "\x01", "1\x7f", "1\xc3\xa9", "\xc3\xa9", "nul", "-", "t", "f", "n",
        "+1", ".5", "1\t", "\"a\x01b\"", "\"\x7f\"", "\"\xc3\xa9\"", "[1,[2]]", "{\"a\":1}"};
    /* malformed continuations glued after a token, with brackets that
     * close early or late (the fuzzer's "p":"E-8f":123..}} class, which
     * On-Demand accepted): after every key's value, and with full after
     * every token */
    static const char *const tails[] = {":2}", ":2]", ":2}}",   ":2]}",  "]",   "}",  "]}",
                                        "}}",  ":",   ":\"x\"", "\"x\"", ":[}", ",}", ",]"};
    for (int i = 1; i < j.ntok; i++) {
        bool value = j.tok[i - 1].type == JSMN_STRING && j.tok[i - 1].size == 1;
        if (full || value) {
            size_t at = d_span(&j, i).hi;
            for (size_t t = 0; t < sizeof tails / sizeof tails[0]; t++) {
                d_splice(js, len, at, at, tails[t], strlen(tails[t]));
            }
        }
    }
    for (int i = 1; i < j.ntok; i++) {
        if (j.tok[i].type == JSMN_STRING && j.tok[i].size == 1) { /* a key */
            d_range key = d_span(&j, i);
            d_range val = d_span(&j, i + 1);
            for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
                d_splice(js, len, val.lo, val.hi, values[v], strlen(values[v]));
            }
            /* a level's third element */
            if (j.tok[i + 1].type == JSMN_ARRAY && j.tok[i + 1].size > 0 &&
                j.tok[i + 2].type == JSMN_ARRAY) {
                size_t end = (size_t)j.tok[i + 2].end - 1; /* its ']' */
                for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
                    char third[64];
                    int n = snprintf(third, sizeof third, ",%s", values[v]);
                    d_splice(js, len, end, end, third, (size_t)n);
                }
            }
            /* the pair again, right after itself: a duplicated key */
            char dup[4096];
            size_t dl = val.hi - key.lo;
            if (dl + 1 < sizeof dup) {
                memcpy(dup, js + key.lo, dl);
                dup[dl] = ',';
                d_splice(js, len, val.hi + 1 <= len && js[val.hi] == ',' ? val.hi + 1 : key.lo,
                         val.hi + 1 <= len && js[val.hi] == ',' ? val.hi + 1 : key.lo, dup, dl + 1);
            }
        }
    }
    /* every value under an unknown key right after "e" (so the hot path
     * still sees "e" first) and as a root field after "data" */
    const char *d = strstr(js, "\"data\":{");
    const char *e = d != NULL ? strstr(d + 8, ",") : NULL;
    if (e != NULL && js[len - 1] == '}') {
        size_t after = (size_t)(e - js) + 1;
        for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
            char ins[64];
            int n = snprintf(ins, sizeof ins, "\"zz\":%s,", values[v]);
            d_splice(js, len, after, after, ins, (size_t)n);
            n = snprintf(ins, sizeof ins, ",\"zz\":%s", values[v]);
            d_splice(js, len, len - 1, len - 1, ins, (size_t)n);
        }
    }
    /* deep nesting and token floods in an unknown key, and deep nesting
     * where the hot path reads */
    if (d != NULL) {
        size_t at = (size_t)(d - js) + 8;
        char deep[400];
        for (int depth = 60; depth <= 70; depth += 5) {
            int n = snprintf(deep, sizeof deep, "\"zz\":");
            for (int k = 0; k < depth; k++) {
                deep[n++] = '[';
            }
            for (int k = 0; k < depth; k++) {
                deep[n++] = ']';
            }
            deep[n++] = ',';
            if (e != NULL) {
                /* after "e":"...", so the hot path still sees "e" first */
                size_t after = (size_t)(e - js) + 1;
                d_splice(js, len, after, after, deep, (size_t)n);
            }
            d_splice(js, len, at, at, deep, (size_t)n); /* "e" no longer first */
        }
        static int floods;
        if (e != NULL && len < 2000 && floods++ < 8) {
            static char flood[1 << 18];
            size_t n = (size_t)snprintf(flood, sizeof flood, "\"zz\":[");
            while (n < 120000) {
                memcpy(flood + n, "1,", 2);
                n += 2;
            }
            memcpy(flood + n, "1],", 3);
            n += 3;
            size_t after = (size_t)(e - js) + 1;
            d_splice(js, len, after, after, flood, n);
            /* scalars only: 25000 keys need 50000 tokens, past jsmn's
             * budget of max(max_bytes/6, 6*max_levels)+64 = 43754 here
             * (ETOOBIG); 20000 keys (40000 tokens) fit */
            for (int keys = 20000; keys <= 25000; keys += 5000) {
                n = 0;
                for (int k = 0; k < keys; k++) {
                    memcpy(flood + n, "\"z\":1,", 6);
                    n += 6;
                }
                d_splice(js, len, after, after, flood, n);
            }
        }
    }
}

/* Hot-path hits and misses of the valid depthUpdate/trade frames (jsmn's
 * verdict) of the shared data: [spot recording, usdm recording,
 * samples][depth, trade]. Only combined-stream frames ({"stream":..,
 * "data":..}, what the adapter subscribes to) are the hot path's; the two
 * raw-stream doc samples are counted apart (d_rec_raw: jsmn by design). */
static unsigned long d_rec_hits, d_rec_misses, d_rec_raw, d_rec_kind[3][2];
static void d_count_hit(const char *js, size_t len, int recording)
{
    qb_event a, b;
    if (qb__binance_parse_jsmn(&d_old, js, len, &b) != QB_OK ||
        (b.kind != QB_EV_DEPTH && b.kind != QB_EV_TRADE)) {
        return;
    }
    uint64_t hits = bn_state(st_d_new)->bjson_hits;
    QB_CHECK_EQ_INT(qb_binance_ops.parse(st_d_new, &d_new, js, len, &a), QB_OK);
    d_rec_kind[recording][b.kind == QB_EV_TRADE]++;
    if (len < 10 || memcmp(js, "{\"stream\":", 10) != 0) {
        d_rec_raw++;
    } else if (bn_state(st_d_new)->bjson_hits != hits) {
        d_rec_hits++;
    } else {
        d_rec_misses++;
        fprintf(stderr, "hot path miss: %.*s\n", (int)(len < 300 ? len : 300), js);
    }
}

static void d_mutate_file(const char *name, bool wrap)
{
    char path[512];
    snprintf(path, sizeof path, SAMPLES "%s", name);
    size_t len;
    char *t = qb_test_read_file(path, &len);
    QB_CHECK(t != NULL);
    if (t == NULL) {
        return;
    }
    if (wrap) {
        static char w[1 << 16];
        int n = snprintf(w, sizeof w, "{\"stream\":\"bnbbtc@trade\",\"data\":%s}", t);
        d_count_hit(w, (size_t)n, 2);
        d_mutate(w, (size_t)n, true);
    }
    d_count_hit(t, len, 2);
    d_mutate(t, len, true);
    free(t);
}

/* The DOM hot path on malformed frames (binance_json.cc): the fuzzer found
 * {"stream":..,"data":{..valid depth..},"stream":"!","a":9213679,"p":"E-8f":
 * 12368013,..}} (corpus binance/diff-string-glued-byte), which On-Demand
 * accepted and jsmn rejects: after "p":"E-8f" the ':' is a syntax error,
 * and with one '}' too many On-Demand's object loop just ended. Each frame
 * below must make the hot path decline (QB_EAGAIN, qb__bjson_parse called
 * directly) and ops->parse must return jsmn's error code. The bases are
 * accepted by both (checked first). Variants: an extra '}' or ']' after a
 * malformed root field, inside data, inside a level array, after the
 * document, and "-0" where an integer is read (the DOM stores it as 0,
 * qb_json_u64 rejects it). */
#define M_DEP_HEAD                                                                                 \
    "{\"stream\":\"btcusdt@depth@100ms\",\"data\":{\"e\":\"depthUpdate\",\"E\":1,\"s\":"           \
    "\"BTCUSDT\",\"U\":9,\"u\":10,"
#define M_DEP_BA "\"b\":[[\"1\",\"1\"]],\"a\":[[\"0.5\",\"1\"]]"
#define M_DEP M_DEP_HEAD M_DEP_BA "}}"
#define M_TRD_HEAD                                                                                 \
    "{\"stream\":\"btcusdt@trade\",\"data\":{\"e\":\"trade\",\"E\":1,\"s\":\"BTCUSDT\",\"t\":7,"   \
    "\"p\":\"50000.10\",\"q\":\"0.001\",\"T\":2,\"m\":false"
#define M_TRD M_TRD_HEAD ",\"M\":true}}"

/* Allocation counter for the no-allocation-per-message check (the test
 * program's malloc family wraps glibc's; not under ASan, which owns them). */
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__) && !defined(__has_feature)
#define M_COUNT_ALLOC 1
#elif defined(__GLIBC__) && defined(__has_feature)
#if !__has_feature(address_sanitizer)
#define M_COUNT_ALLOC 1
#endif
#endif
#ifdef M_COUNT_ALLOC
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t k, size_t n);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t a, size_t n);
static unsigned long m_allocs;
void *malloc(size_t n)
{
    m_allocs++;
    return __libc_malloc(n);
}
void *calloc(size_t k, size_t n)
{
    m_allocs++;
    return __libc_calloc(k, n);
}
void *realloc(void *p, size_t n)
{
    m_allocs++;
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t a, size_t n)
{
    m_allocs++;
    return __libc_memalign(a, n);
}
int posix_memalign(void **out, size_t a, size_t n)
{
    m_allocs++;
    *out = __libc_memalign(a, n);
    return *out != NULL ? 0 : 12; /* ENOMEM */
}
#endif

QB_TEST(dom_rejects_malformed)
{
    qb_parser pn, pj;
    QB_CHECK_EQ_INT(qb_parser_init(&pn, 1 << 16, 1000), QB_OK);
    void *st_pn = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_binance_ops, 1 << 16, &st_pn), QB_OK);
    QB_CHECK_EQ_INT(qb_parser_init(&pj, 1 << 16, 1000), QB_OK);
    void *st_pj = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_binance_ops, 1 << 16, &st_pj), QB_OK);
    qb_event a, b;
    /* the bases: both accept, the hot path parses them */
    static const char *const good[] = {M_DEP, M_TRD};
    for (size_t i = 0; i < 2; i++) {
        QB_CHECK_EQ_INT(qb_binance_ops.parse(st_pn, &pn, good[i], strlen(good[i]), &a), QB_OK);
        QB_CHECK(bn_state(st_pn)->bjson != NULL);
        if (bn_state(st_pn)->bjson == NULL) {
            return;
        }
        QB_CHECK_EQ_INT(qb__bjson_parse(bn_state(st_pn)->bjson, &pn, good[i], strlen(good[i]), &a),
                        QB_OK);
        QB_CHECK_EQ_INT(qb__binance_parse_jsmn(&pj, good[i], strlen(good[i]), &b), QB_OK);
    }
    static const char *const bad[] = {
        /* the fuzzer's frame, and the minimal repros */
        "{\"stream\":\"btcusdt@d`pth@100ms\",\"data\":{\"e\":\"depthUpdate\",\"E\":1,\"s\":"
        "\"BTCUSDT\",\"U\":9,\"u\":10,\"b\":[[\"1\",\"1\"]],\"a\":[[\"0.5\",\"1\"]]},\"stream\":"
        "\"!\",\"a\":9213679,\"p\":\"E-8f\":12368013,\"l\":12368013,\"T\":1633998534486,\"m\":"
        "false,\"M\":true}}",
        "{\"a\":1,\"p\":\"x\":2}}",
        "{\"a\":1,\"p\":\"x\"]",
        /* after a malformed root field */
        M_DEP_HEAD M_DEP_BA "},\"p\":\"x\":2}}",
        M_DEP_HEAD M_DEP_BA "},\"p\":\"x\":2}]",
        M_DEP_HEAD M_DEP_BA "},\"p\":\"x\"]",
        M_DEP_HEAD M_DEP_BA "},\"p\":\"x\"]}",
        M_DEP_HEAD M_DEP_BA "},\"p\":\"x\"}}",
        M_DEP_HEAD M_DEP_BA "},\"p\":}",
        M_DEP_HEAD M_DEP_BA "},\"p\"}}",
        M_DEP_HEAD M_DEP_BA "},\"p\":[1,}}",
        /* after the document */
        M_DEP "}",
        M_DEP "]",
        M_DEP " }",
        M_DEP "}}",
        M_DEP ",{}",
        M_DEP "x",
        M_TRD "}",
        M_TRD "]",
        /* inside data */
        M_DEP_HEAD M_DEP_BA ",\"p\":\"x\":2}}}",
        M_DEP_HEAD M_DEP_BA ",\"p\":\"x\":2}}",
        M_DEP_HEAD M_DEP_BA ",\"p\":\"x\"]}}",
        M_DEP_HEAD M_DEP_BA ",\"p\":\"x\"]}",
        M_DEP_HEAD M_DEP_BA "]}}",
        M_DEP_HEAD M_DEP_BA "}}}}",
        M_DEP_HEAD "\"pu\":\"x\":2," M_DEP_BA "}}}",
        M_DEP_HEAD "\"pu\":\"x\"]," M_DEP_BA "}}",
        M_TRD_HEAD ",\"M\":true}}}",
        M_TRD_HEAD ",\"M\":\"x\":1}}}",
        M_TRD_HEAD ",\"M\":\"x\"]}}",
        M_TRD_HEAD ",\"M\":true]}}",
        M_TRD_HEAD "}},\"M\":true}}",
        /* inside the level arrays */
        M_DEP_HEAD "\"b\":[[\"1\",\"1\"]]],\"a\":[[\"0.5\",\"1\"]]}}",
        M_DEP_HEAD "\"b\":[[\"1\",\"1\"]]},\"a\":[[\"0.5\",\"1\"]]}}",
        M_DEP_HEAD "\"b\":[[\"1\",\"1\"}],\"a\":[[\"0.5\",\"1\"]]}}",
        M_DEP_HEAD "\"b\":[[\"1\":\"1\"]],\"a\":[[\"0.5\",\"1\"]]}}",
        M_DEP_HEAD "\"b\":[[\"1\",\"1\":2]],\"a\":[[\"0.5\",\"1\"]]}}",
        M_DEP_HEAD "\"b\":[[\"1\",\"1\"]]]}}",
        M_DEP_HEAD "\"b\":[[\"1\",\"1\"]],\"a\":[[\"0.5\",\"1\"]]]}}",
        M_DEP_HEAD "\"b\":[[\"1\",\"1\"]],\"a\":[[\"0.5\",\"1\"]}}",
        M_DEP_HEAD "\"b\":[[\"1\",\"1\"]],\"a\":[[\"0.5\",\"1\"]]]",
        M_DEP_HEAD "\"b\":[[\"1\",\"1\"]],\"a\":[[\"0.5\",\"1\"",
        M_DEP_HEAD "\"b\":[[\"1\",\"1\"]],\"a\":[[\"0.5\",\"1\"]]}]",
        /* "-0" where an integer is read */
        "{\"stream\":\"btcusdt@depth@100ms\",\"data\":{\"e\":\"depthUpdate\",\"E\":1,\"s\":"
        "\"BTCUSDT\",\"U\":-0,\"u\":10," M_DEP_BA "}}",
        "{\"stream\":\"btcusdt@depth@100ms\",\"data\":{\"e\":\"depthUpdate\",\"E\":-0,\"s\":"
        "\"BTCUSDT\",\"U\":9,\"u\":10," M_DEP_BA "}}",
        "{\"stream\":\"btcusdt@trade\",\"data\":{\"e\":\"trade\",\"E\":1,\"s\":\"BTCUSDT\","
        "\"t\":-0,\"p\":\"50000.10\",\"q\":\"0.001\",\"T\":2,\"m\":false}}",
    };
    /* jsmn takes a comma before a closing bracket: the DOM rejects it, so
     * the hot path declines and ops->parse returns jsmn's QB_OK event */
    static const char *const lenient[] = {
        M_DEP_HEAD M_DEP_BA "},}",
        M_DEP_HEAD M_DEP_BA ",}}",
        M_DEP_HEAD "\"b\":[[\"1\",\"1\"],],\"a\":[[\"0.5\",\"1\"]]}}",
        M_DEP_HEAD "\"b\":[[\"1\",\"1\",]],\"a\":[[\"0.5\",\"1\"]]}}",
    };
    for (size_t i = 0; i < sizeof lenient / sizeof lenient[0]; i++) {
        size_t len = strlen(lenient[i]);
        QB_CHECK_EQ_INT(qb__bjson_parse(bn_state(st_pn)->bjson, &pn, lenient[i], len, &a),
                        QB_EAGAIN);
        QB_CHECK_EQ_INT(qb_binance_ops.parse(st_pn, &pn, lenient[i], len, &a),
                        qb__binance_parse_jsmn(&pj, lenient[i], len, &b));
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len = strlen(bad[i]);
        int rb = qb__binance_parse_jsmn(&pj, bad[i], len, &b);
        int rh = qb__bjson_parse(bn_state(st_pn)->bjson, &pn, bad[i], len, &a);
        int ra = qb_binance_ops.parse(st_pn, &pn, bad[i], len, &a);
        if (rb == QB_OK || rh != QB_EAGAIN || ra != rb) {
            fprintf(stderr, "case %zu: jsmn %s, hot path %s, ops->parse %s: %s\n", i,
                    qb_strerror(rb), qb_strerror(rh), qb_strerror(ra), bad[i]);
        }
        QB_CHECK(rb != QB_OK);
        QB_CHECK_EQ_INT(rh, QB_EAGAIN);
        QB_CHECK_EQ_INT(ra, rb);
    }
#ifdef M_COUNT_ALLOC
    /* no allocation per message once the parser exists: hits and declines */
    unsigned long before = m_allocs;
    for (int r = 0; r < 1000; r++) {
        for (size_t i = 0; i < 2; i++) {
            QB_CHECK_EQ_INT(
                qb__bjson_parse(bn_state(st_pn)->bjson, &pn, good[i], strlen(good[i]), &a), QB_OK);
        }
        (void)qb__bjson_parse(bn_state(st_pn)->bjson, &pn, bad[0], strlen(bad[0]), &a);
    }
    QB_CHECK_EQ_INT(m_allocs - before, 0);
    printf("allocations in 3000 hot-path parses: %lu (counter live: %d)\n", m_allocs - before,
           before > 0);
#endif
    qb_exchange_state_free(&qb_binance_ops, st_pn);
    qb_parser_fini(&pn);
    qb_exchange_state_free(&qb_binance_ops, st_pj);
    qb_parser_fini(&pj);
}

QB_TEST(simdjson_matches_jsmn)
{
    need_recording();
    QB_CHECK_EQ_INT(qb_parser_init(&d_new, 1 << 18, 1000), QB_OK);
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_binance_ops, 1 << 18, &st_d_new), QB_OK);
    QB_CHECK_EQ_INT(qb_parser_init(&d_old, 1 << 18, 1000), QB_OK);
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_binance_ops, 1 << 18, &st_d_old), QB_OK);
    /* every Binance frame of the shared data */
    for (size_t i = 0; i < nrec; i++) {
        if (!rec[i].is_rest) {
            d_count_hit(rec[i].payload, rec[i].len, 0);
            d_mutate(rec[i].payload, rec[i].len, i % 8 == 1);
        }
    }
    size_t ulen;
    char *utext = qb_test_read_file(QB_SHARED_DATA "/recorded/binance_usdm_SUSHIUSDT_cryptofeed_"
                                                   "20210722.txt",
                                    &ulen);
    if (utext != NULL) {
        static rec_line urec[512];
        size_t nu = load_recording(utext, urec, 512);
        for (size_t i = 0; i < nu; i++) {
            if (!urec[i].is_rest) {
                d_count_hit(urec[i].payload, urec[i].len, 1);
            }
            if (!urec[i].is_rest && urec[i].len < 4096) {
                d_mutate(urec[i].payload, urec[i].len, i % 8 == 1);
            }
        }
        free(utext);
    }
    static const char *const samples[] = {"binance_depthUpdate_real_combined_1.json",
                                          "binance_depthUpdate_real_combined_2.json",
                                          "binance_depthUpdate_real_combined_3.json",
                                          "binancefut_depthUpdate_real_combined_1.json",
                                          "binance_bookTicker_real_combined_1.json",
                                          "binance_aggTrade_real_combined_1.json",
                                          "binance_kline_real_combined_1.json",
                                          "binance_serverShutdown_combined_doc_1.json",
                                          "binance_serverShutdown_doc_1.json",
                                          "binance_subscribe_response_doc_1.json",
                                          "binance_partialDepth_doc_1.json",
                                          "binance_depthUpdate_doc_1.json",
                                          "binancefut_depthUpdate_real_combined_2.json",
                                          "binancefut_depthUpdate_real_combined_3.json"};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        d_mutate_file(samples[i], false);
    }
    d_mutate_file("binance_trade_doc_1.json", true);
    static const char *const synth[] = {
        "{\"stream\":\"btcusdt@trade\",\"data\":{\"e\":\"trade\",\"E\":1,\"s\":\"BTCUSDT\","
        "\"t\":7,\"p\":\"50000.10\",\"q\":\"0.001\",\"T\":2,\"m\":false,\"M\":true}}",
        "{\"stream\":\"btcusdt@ticker\",\"data\":{\"e\":\"24hrTicker\",\"E\":1,\"s\":\"BTCUSDT\","
        "\"p\":\"-1.5\",\"c\":\"100.5\",\"b\":\"100\",\"B\":\"2\",\"a\":\"101\",\"A\":\"3\","
        "\"v\":\"1000\"}}",
        "{\"stream\":\"btcusdt@depth@100ms\",\"data\":{\"e\":\"depthUpdate\",\"E\":1,\"s\":"
        "\"BTCUSDT\",\"U\":5,\"u\":9,\"b\":[[\"1.5\",\"2\",\"x\"],[2.5,0]],\"a\":[],\"pu\":4}}",
        "{\"code\":-1121,\"msg\":\"Invalid symbol.\"}",
        "{\"result\":null,\"id\":1}",
    };
    for (size_t i = 0; i < sizeof synth / sizeof synth[0]; i++) {
        d_mutate(synth[i], strlen(synth[i]), true);
    }
    printf("differential: %lu frames, %lu same ok, %lu same error, %lu through simdjson, "
           "%lu differences; valid combined depthUpdate/trade: %lu hot-path hits, %lu misses "
           "(+%lu raw-stream); %s\n",
           d_frames, d_same_ok, d_same_err, d_fast, d_bad, d_rec_hits, d_rec_misses, d_rec_raw,
           qb__bjson_describe());
    QB_CHECK(d_frames > 100000);
    QB_CHECK(d_fast > 1000);
    QB_CHECK_EQ_INT(d_bad, 0);
    printf("valid depthUpdate/trade frames: spot recording %lu + %lu, usdm recording %lu + %lu, "
           "samples %lu + %lu\n",
           d_rec_kind[0][0], d_rec_kind[0][1], d_rec_kind[1][0], d_rec_kind[1][1], d_rec_kind[2][0],
           d_rec_kind[2][1]);
    QB_CHECK(d_rec_hits > 100);
    QB_CHECK_EQ_INT(d_rec_misses, 0);
    qb_exchange_state_free(&qb_binance_ops, st_d_new);
    qb_parser_fini(&d_new);
    qb_exchange_state_free(&qb_binance_ops, st_d_old);
    qb_parser_fini(&d_old);
}

/* binance_json.cc does not scan frames for NUL bytes: simdjson's DOM
 * parser rejects every document with a 0x00 byte (in a string: an
 * unescaped control byte; elsewhere: an atom of its own, or a bad
 * terminator right after a number or literal). Proven here on the data:
 * a NUL substituted for every byte and inserted before every byte (and at
 * the end) of every recorded Binance frame and of frames holding every
 * kind of token (numbers of each form, true, false, null, empty
 * containers) makes the hot path decline (QB_EAGAIN, called directly), and
 * ops->parse then gives jsmn's answer (jsmn stops at the NUL: an error, or
 * QB_OK when the NUL follows a complete document). */
static unsigned long n_frames, n_declined;
static void n_one(void *stn, qb_parser *pn, qb_parser *pj, const char *js, size_t len)
{
    qb_event a, b;
    int rh = qb__bjson_parse(bn_state(stn)->bjson, pn, js, len, &a);
    int ra = qb_binance_ops.parse(stn, pn, js, len, &a);
    int rb = qb__binance_parse_jsmn(pj, js, len, &b);
    n_frames++;
    n_declined += rh == QB_EAGAIN;
    if (rh != QB_EAGAIN || ra != rb || (ra == QB_OK && !d_event_eq(&a, &b))) {
        fprintf(stderr, "NUL frame: hot path %s, ops->parse %s, jsmn %s: %.*s\n", qb_strerror(rh),
                qb_strerror(ra), qb_strerror(rb), (int)(len < 300 ? len : 300), js);
    }
    QB_CHECK_EQ_INT(rh, QB_EAGAIN);
    QB_CHECK_EQ_INT(ra, rb);
}

static void n_frame(void *stn, qb_parser *pn, qb_parser *pj, const char *js, size_t len)
{
    static char buf[1 << 17];
    if (len + 1 > sizeof buf) {
        return;
    }
    for (size_t k = 0; k <= len; k++) {
        if (k < len) {
            memcpy(buf, js, len);
            buf[k] = '\0';
            n_one(stn, pn, pj, buf, len);
        }
        memcpy(buf, js, k);
        buf[k] = '\0';
        memcpy(buf + k + 1, js + k, len - k);
        n_one(stn, pn, pj, buf, len + 1);
    }
}

QB_TEST(nul_always_declines)
{
    need_recording();
    qb_parser pn, pj;
    QB_CHECK_EQ_INT(qb_parser_init(&pn, 1 << 18, 1000), QB_OK);
    void *st_pn = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_binance_ops, 1 << 18, &st_pn), QB_OK);
    QB_CHECK_EQ_INT(qb_parser_init(&pj, 1 << 18, 1000), QB_OK);
    void *st_pj = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_binance_ops, 1 << 18, &st_pj), QB_OK);
    static const char *const synth[] = {
        M_DEP,
        M_TRD,
        "{\"stream\":\"btcusdt@depth@100ms\",\"data\":{\"e\":\"depthUpdate\",\"E\":1,\"s\":"
        "\"BTCUSDT\",\"U\":9,\"u\":10,\"pu\":-1.5e3,\"x\":null,\"y\":true,\"z\":false,\"w\":0,"
        "\"v\":-7,\"t\":18446744073709551615,\"r\":1E+2,\"q\":\"\"," M_DEP_BA "},\"k\":0.5}",
        "{\"stream\":\"btcusdt@depth@100ms\",\"data\":{\"e\":\"depthUpdate\",\"E\":1,\"s\":"
        "\"BTCUSDT\",\"U\":9,\"u\":10,\"b\":[],\"a\":[]}}",
        "{\"stream\":\"s\",\"data\":{\"e\":\"trade\",\"E\":1,\"s\":\"BTCUSDT\",\"t\":7,\"p\":\"1\","
        "\"q\":\"0\",\"T\":2,\"m\":true}}",
    };
    /* the hot path must accept each base (else declining proves nothing) */
    for (size_t i = 0; i < sizeof synth / sizeof synth[0]; i++) {
        qb_event a;
        QB_CHECK_EQ_INT(qb_binance_ops.parse(st_pn, &pn, synth[i], strlen(synth[i]), &a), QB_OK);
        QB_CHECK(bn_state(st_pn)->bjson != NULL);
        if (bn_state(st_pn)->bjson == NULL) {
            return;
        }
        QB_CHECK_EQ_INT(
            qb__bjson_parse(bn_state(st_pn)->bjson, &pn, synth[i], strlen(synth[i]), &a), QB_OK);
        n_frame(st_pn, &pn, &pj, synth[i], strlen(synth[i]));
    }
    unsigned long hot = 0;
    for (size_t i = 0; i < nrec; i++) {
        if (!rec[i].is_rest) {
            qb_event a;
            hot += qb__bjson_parse(bn_state(st_pn)->bjson, &pn, rec[i].payload, rec[i].len, &a) ==
                   QB_OK;
            n_frame(st_pn, &pn, &pj, rec[i].payload, rec[i].len);
        }
    }
    printf("NUL bytes: %lu frames (recorded frames %lu accepted by the hot path without the "
           "NUL), %lu declined\n",
           n_frames, hot, n_declined);
    QB_CHECK(hot > 100);
    QB_CHECK_EQ_INT(n_declined, n_frames);
    qb_exchange_state_free(&qb_binance_ops, st_pn);
    qb_parser_fini(&pn);
    qb_exchange_state_free(&qb_binance_ops, st_pj);
    qb_parser_fini(&pj);
}

int main(void)
{
    qb_log_set_level(QB_LOG_ERROR);
    int rc = qb_test_run_all();
    free(rec_text);
    return rc;
}
