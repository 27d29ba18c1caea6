/*
 * test_bithumb.c: the Bithumb websocket v1 adapter without network
 * (adapters/bithumb.c); the full-book -> delta conversion of sync.c
 * (qb_sync_on_full) is test_sync.c.
 *
 * Real/documented frames (QB_SHARED_DATA samples/bithumb_v1_*, skipped with
 * 77 when absent): orderbook, trade, ticker, {"status":"UP"}, the request
 * format. Every prefix and single-byte mutation of every sample goes
 * through the parser and the full-book sync, whose subscriber (applying
 * only what the sync publishes) must hold the latest full book (run under
 * ASan+UBSan).
 */
#include "harness.h"

#include "err.h"
#include "exchange.h"
#include "json.h"
#include "log.h"
#include "sync.h"
#include "sync_owner.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SAMPLES QB_SHARED_DATA "/samples/"

static char *sample(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, SAMPLES "%s", name);
    char *t = qb_test_read_file(path, len);
    if (t == NULL) {
        QB_SKIP_ALL("shared exchange data not found at " SAMPLES);
    }
    return t;
}

/* ---- tests ------------------------------------------------------------------------ */

QB_TEST(symbols_and_request)
{
    char n[QB_NATIVE_MAX], err[200];
    QB_CHECK_EQ_INT(qb_bithumb_ops.to_native(NULL, "BTC-KRW", n, sizeof n, err, sizeof err), QB_OK);
    QB_CHECK_EQ_STR(n, "KRW-BTC");
    QB_CHECK_EQ_INT(qb_bithumb_ops.to_native(NULL, "eth-krw", n, sizeof n, err, sizeof err), QB_OK);
    QB_CHECK_EQ_STR(n, "KRW-ETH");
    QB_CHECK_EQ_INT(qb_bithumb_ops.to_native(NULL, "XRP-BTC", n, sizeof n, err, sizeof err), QB_OK);
    QB_CHECK_EQ_STR(n, "BTC-XRP");
    QB_CHECK_EQ_INT(qb_bithumb_ops.from_native(NULL, "KRW-BTC", n, sizeof n, err, sizeof err),
                    QB_OK);
    QB_CHECK_EQ_STR(n, "BTC-KRW");
    const char *bad[] = {"BTCKRW", "-KRW", "BTC-", "A-B-C", "BTC_KRW-X", "KRW-BTC.3", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        QB_CHECK(qb_bithumb_ops.to_native(NULL, bad[i], n, sizeof n, err, sizeof err) != QB_OK);
        QB_CHECK(qb_bithumb_ops.from_native(NULL, bad[i], n, sizeof n, err, sizeof err) != QB_OK);
    }
    QB_CHECK(strstr(err, "KRW-BTC") != NULL);
    /* The native code given as a symbol: refused, with the fix. */
    QB_CHECK_EQ_INT(qb_bithumb_ops.to_native(NULL, "KRW-BTC", n, sizeof n, err, sizeof err),
                    QB_EINVAL);
    QB_CHECK(strstr(err, "give BTC-KRW") != NULL);

    /* The request: one JSON array, ticket, three types, format DEFAULT. */
    const char *natives[] = {"KRW-BTC", "KRW-ETH"};
    qb_exchange_cfg xc = {.tickers = true};
    qb_buf b = QB_BUF_INIT;
    QB_CHECK_EQ_INT(qb_bithumb_ops.subscribe_msg(&xc, "wss://x", natives, 2, &b), QB_OK);
    QB_CHECK(b.len > 1 && b.data[b.len - 1] == '\0');
    QB_CHECK_EQ_INT(strlen((char *)b.data), b.len - 1); /* exactly one message */
    const char *m = (const char *)b.data;
    QB_CHECK(strncmp(m, "[{\"ticket\":\"quotebus-", 20) == 0);
    const char *tail = strstr(m, "\"},");
    QB_CHECK(tail != NULL);
    if (tail) {
        QB_CHECK_EQ_STR(tail, "\"},{\"type\":\"orderbook\",\"codes\":[\"KRW-BTC\",\"KRW-ETH\"]},"
                              "{\"type\":\"trade\",\"codes\":[\"KRW-BTC\",\"KRW-ETH\"]},"
                              "{\"type\":\"ticker\",\"codes\":[\"KRW-BTC\",\"KRW-ETH\"]},"
                              "{\"format\":\"DEFAULT\"}]");
    }
    jsmntok_t tok[64];
    qb_json j;
    QB_CHECK_EQ_INT(qb_json_parse(&j, m, b.len - 1, tok, 64), QB_OK);
    QB_CHECK(qb_json_is_array(&j, 0) && j.tok[0].size == 5);
    /* The doc's own sample has the same shape. */
    size_t len;
    char *doc = sample("bithumb_v1_subscribe_orderbook_doc_1.json", &len);
    qb_json jd;
    QB_CHECK_EQ_INT(qb_json_parse(&jd, doc, len, tok, 64), QB_OK);
    QB_CHECK(qb_json_is_array(&jd, 0) && jd.tok[0].size == 3);
    QB_CHECK(qb_json_get(&jd, qb_json_at(&jd, 0, 0), "ticket") >= 0);
    QB_CHECK(qb_json_str_eq(&jd, qb_json_get(&jd, qb_json_at(&jd, 0, 1), "type"), "orderbook"));
    QB_CHECK(qb_json_str_eq(&jd, qb_json_get(&jd, qb_json_at(&jd, 0, 2), "format"), "DEFAULT"));
    free(doc);
    /* Tickets differ per request; tickers off drops the ticker type. */
    qb_buf b2 = QB_BUF_INIT;
    xc.tickers = false;
    QB_CHECK_EQ_INT(qb_bithumb_ops.subscribe_msg(&xc, "wss://x", natives, 1, &b2), QB_OK);
    QB_CHECK(strstr((char *)b2.data, "ticker\"") == NULL);
    const char *t1 = strstr((char *)b.data, "\"},"), *t2 = strstr((char *)b2.data, "\"},");
    QB_CHECK(t1 && t2 &&
             !((t1 - (char *)b.data) == (t2 - (char *)b2.data) &&
               memcmp(b.data, b2.data, (size_t)(t1 - (char *)b.data)) == 0));
    qb_buf_fini(&b);
    qb_buf_fini(&b2);
    QB_CHECK(qb_exchange_find("bithumb") == &qb_bithumb_ops);
    QB_CHECK(qb_bithumb_ops.full_book && qb_bithumb_ops.keepalive_ms > 0 &&
             qb_bithumb_ops.keepalive_ms < 120000);
    QB_CHECK_EQ_STR(qb_bithumb_ops.keepalive_text, "PING");
}

QB_TEST(samples_parse)
{
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 16, 100), QB_OK);
    void *st_p = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_bithumb_ops, 1 << 16, &st_p), QB_OK);
    qb_event ev;
    size_t len;
    char *t = sample("bithumb_v1_orderbook_ccxt_1.json", &len);
    QB_CHECK_EQ_INT(qb_bithumb_ops.parse(st_p, &p, t, len, &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_BOOK_FULL);
    QB_CHECK_EQ_STR(ev.native, "KRW-BTC");
    QB_CHECK_EQ_INT(ev.n_bids, 1);
    QB_CHECK_EQ_INT(ev.n_asks, 1);
    QB_CHECK(qb_dec_identical(ev.bids[0].price, dec("95339000")));
    QB_CHECK(qb_dec_identical(ev.bids[0].size, dec("0.0024")));
    QB_CHECK(qb_dec_identical(ev.asks[0].price, dec("95340000")));
    QB_CHECK(qb_dec_identical(ev.asks[0].size, dec("0.0007")));
    /* "1783657882348968": 16 digits, microseconds; also the book's id. */
    QB_CHECK_EQ_INT(ev.exch_ts, 1783657882348968000ULL);
    QB_CHECK_EQ_INT(ev.last_id, 1783657882348968ULL);
    free(t);

    t = sample("bithumb_v1_trade_ccxt_1.json", &len);
    QB_CHECK_EQ_INT(qb_bithumb_ops.parse(st_p, &p, t, len, &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_TRADE);
    QB_CHECK_EQ_STR(ev.native, "KRW-BTC");
    QB_CHECK_EQ_INT(ev.n_trades, 1);
    QB_CHECK_EQ_INT(ev.trades[0].id, 862683813820523888ULL);
    QB_CHECK_EQ_INT(ev.trades[0].side, QB_SIDE_SELL); /* ASK: the taker sold */
    QB_CHECK(qb_dec_identical(ev.trades[0].price, dec("95539000")));
    QB_CHECK(qb_dec_identical(ev.trades[0].qty, dec("0.00022664")));
    QB_CHECK_EQ_INT(ev.trades[0].ts, 1783658381138ULL * 1000000ULL);
    /* BID: the taker bought. */
    char *bid = strdup(t);
    char *ab = strstr(bid, "\"ASK\"");
    memcpy(ab, "\"BID\"", 5);
    QB_CHECK_EQ_INT(qb_bithumb_ops.parse(st_p, &p, bid, len, &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.trades[0].side, QB_SIDE_BUY);
    free(bid);
    free(t);

    t = sample("bithumb_v1_ticker_snapshot_doc_1.json", &len);
    QB_CHECK_EQ_INT(qb_bithumb_ops.parse(st_p, &p, t, len, &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_TICKER);
    QB_CHECK_EQ_STR(ev.native, "KRW-BTC");
    QB_CHECK(qb_dec_identical(ev.ticker.last, dec("493100")));
    QB_CHECK(ev.ticker.has_volume && qb_dec_identical(ev.ticker.volume_24h, dec("13380.57687512")));
    /* signed_change_price is versus the previous day's close, not 24 h. */
    QB_CHECK(!ev.ticker.has_change);
    QB_CHECK(!ev.ticker.has_bid && !ev.ticker.has_ask);
    QB_CHECK_EQ_INT(ev.exch_ts, 1725927377287ULL * 1000000ULL);
    free(t);

    t = sample("bithumb_v1_status_up_doc_1.json", &len);
    QB_CHECK_EQ_INT(qb_bithumb_ops.parse(st_p, &p, t, len, &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_HEARTBEAT);
    free(t);

    const char *err = "{\"error\":{\"name\":\"INVALID_PARAM\",\"message\":\"bad codes\"}}";
    QB_CHECK_EQ_INT(qb_bithumb_ops.parse(st_p, &p, err, strlen(err), &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_ERROR);
    QB_CHECK_EQ_STR(ev.info, "error=INVALID_PARAM message=bad codes");
    const char *other = "{\"type\":\"myTrade\",\"code\":\"KRW-BTC\"}";
    QB_CHECK_EQ_INT(qb_bithumb_ops.parse(st_p, &p, other, strlen(other), &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_UNKNOWN);
    /* A shorter side padded with zero units; a numeric ms timestamp. */
    const char *pad = "{\"type\":\"orderbook\",\"code\":\"KRW-XRP\",\"timestamp\":1725927377287,"
                      "\"orderbook_units\":[{\"ask_price\":801,\"bid_price\":800,\"ask_size\":5,"
                      "\"bid_size\":7.5},{\"ask_price\":802,\"bid_price\":0,\"ask_size\":1,"
                      "\"bid_size\":0}]}";
    QB_CHECK_EQ_INT(qb_bithumb_ops.parse(st_p, &p, pad, strlen(pad), &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.n_bids, 1);
    QB_CHECK_EQ_INT(ev.n_asks, 2);
    QB_CHECK_EQ_INT(ev.exch_ts, 1725927377287ULL * 1000000ULL);

    const char *bad[] = {
        "",
        "[]",
        "{\"type\":\"orderbook\"}",
        "{\"type\":\"orderbook\",\"code\":\"KRW-BTC\"}",
        "{\"type\":\"orderbook\",\"code\":\"KRW BTC\",\"orderbook_units\":[]}",
        "{\"type\":\"orderbook\",\"code\":\"KRW-BTC\",\"orderbook_units\":[{\"ask_price\":1}]}",
        "{\"type\":\"orderbook\",\"code\":\"KRW-BTC\",\"orderbook_units\":[{\"ask_price\":1,"
        "\"bid_price\":1,\"ask_size\":-1,\"bid_size\":1}]}",
        "{\"type\":\"orderbook\",\"code\":\"KRW-BTC\",\"orderbook_units\":[{\"ask_price\":0,"
        "\"bid_price\":1,\"ask_size\":1,\"bid_size\":1}]}",
        "{\"type\":\"orderbook\",\"code\":\"KRW-BTC\",\"orderbook_units\":[{\"ask_price\":\"1\","
        "\"bid_price\":1,\"ask_size\":1,\"bid_size\":1}]}",
        "{\"type\":\"orderbook\",\"code\":\"KRW-BTC\",\"orderbook_units\":[[1,2,3,4]]}",
        "{\"type\":\"orderbook\",\"code\":\"KRW-BTC\",\"orderbook_units\":[],\"timestamp\":-5}",
        "{\"type\":\"trade\",\"code\":\"KRW-BTC\",\"trade_price\":1,\"trade_volume\":1,"
        "\"ask_bid\":\"X\",\"sequential_id\":1,\"trade_timestamp\":1}",
        "{\"type\":\"trade\",\"code\":\"KRW-BTC\",\"trade_price\":1,\"trade_volume\":1,"
        "\"ask_bid\":\"ASK\",\"trade_timestamp\":1}",
        "{\"type\":\"trade\",\"code\":\"KRW-BTC\",\"trade_price\":1,\"trade_volume\":1,"
        "\"ask_bid\":\"ASK\",\"sequential_id\":\"123456789012345678901234567\",\"trade_timestamp\":"
        "1}",
        "{\"type\":\"trade\",\"code\":\"KRW-BTC\",\"trade_price\":0,\"trade_volume\":1,"
        "\"ask_bid\":\"ASK\",\"sequential_id\":1,\"trade_timestamp\":1}",
        "{\"type\":\"trade\",\"code\":\"KRW-BTC\",\"trade_price\":1,\"trade_volume\":1,"
        "\"ask_bid\":\"ASK\",\"sequential_id\":1}",
        "{\"type\":\"ticker\",\"code\":\"KRW-BTC\"}",
        "{\"type\":\"ticker\",\"code\":\"KRW-BTC\",\"trade_price\":1,\"acc_trade_volume_24h\":-2}",
        "{\"type\":\"orderbook\",\"code\":\"KRW-BTC\",\"orderbook_units\":[{\"ask_price\":1,",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = qb_bithumb_ops.parse(st_p, &p, bad[i], strlen(bad[i]), &ev);
        if (rc == QB_OK) {
            fprintf(stderr, "accepted: %s\n", bad[i]);
        }
        QB_CHECK(rc != QB_OK);
    }
    qb_exchange_state_free(&qb_bithumb_ops, st_p);
    qb_parser_fini(&p);
}

QB_TEST(every_prefix_and_mutation)
{
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 16, 100), QB_OK);
    void *st_p = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_bithumb_ops, 1 << 16, &st_p), QB_OK);
    qb_sync_counters cnt = {0};
    sub_owner own = {0};
    own.book = qb_book_new(100);
    qb_sync s;
    QB_CHECK_EQ_INT(qb_sync_init(&s, &qb_seq_none, sub_owner_ops(), &own, &cnt, 100), QB_OK);
    qb_sync_start(&s, QB_FEED_SYNCING, "");
    const char *files[] = {"bithumb_v1_orderbook_ccxt_1.json", "bithumb_v1_trade_ccxt_1.json",
                           "bithumb_v1_ticker_snapshot_doc_1.json",
                           "bithumb_v1_status_up_doc_1.json"};
    static const unsigned char subst[] = {'"', '[', ']', '{', '}',  ',', ':',  '0', '9',
                                          '-', '.', 'e', ' ', '\\', 0,   0xff, 0x80};
    unsigned long ok = 0, bad = 0;
    char *buf = malloc(1 << 16);
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        size_t len;
        char *js = sample(files[f], &len);
        for (size_t n = 0; n <= len; n++) {
            memcpy(buf, js, n); /* a copy, so ASan sees reads past the prefix */
            qb_event ev;
            if (qb_bithumb_ops.parse(st_p, &p, buf, n, &ev) == QB_OK) {
                ok++;
                if (ev.kind == QB_EV_BOOK_FULL) {
                    qb_sync_on_full(&s, &ev);
                }
            } else {
                bad++;
            }
        }
        memcpy(buf, js, len);
        for (size_t k = 0; k < len; k++) {
            char orig = buf[k];
            for (size_t m = 0; m <= sizeof subst; m++) {
                buf[k] = m < sizeof subst ? (char)subst[m] : (char)(orig ^ 0x20);
                qb_event ev;
                if (qb_bithumb_ops.parse(st_p, &p, buf, len, &ev) == QB_OK) {
                    ok++;
                    if (ev.kind == QB_EV_BOOK_FULL) {
                        qb_sync_on_full(&s, &ev);
                        if (s.state == QB_SYNC_LIVE) {
                            QB_CHECK(qb_book_equal(own.book, qb_sync_book(&s)));
                        }
                    }
                } else {
                    bad++;
                }
            }
            buf[k] = orig;
        }
        free(js);
    }
    printf("fuzz: %lu parsed, %lu rejected\n", ok, bad);
    QB_CHECK(ok > 0 && bad > 0);
    QB_CHECK(!own.apply_failed);
    free(buf);
    qb_sync_fini(&s);
    qb_book_free(own.book);
    qb_exchange_state_free(&qb_bithumb_ops, st_p);
    qb_parser_fini(&p);
}

int main(void)
{
    qb_log_set_level(QB_LOG_ERROR);
    return qb_test_run_all();
}
