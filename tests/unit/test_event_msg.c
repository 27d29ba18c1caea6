/*
 * test_event_msg.c: the event -> message mapping (adapters/event_msg.c),
 * the one the adapter publishes through and the benchmark and fuzz targets
 * reuse. Each test builds an event (or a book) by hand, maps it, checks
 * every field of the message, then encodes it (qb_msg_encode) and decodes
 * it back: what the mapping builds is a valid wire message of its type.
 */
#include "harness.h"

#include "book.h"
#include "buf.h"
#include "err.h"
#include "event_msg.h"
#include "msg.h"

static const qb_msg_origin origin = {
    .exchange = QB_STR("binance"),
    .symbol = QB_STR("BTC-USDT"),
    .native = QB_STR("BTCUSDT"),
};

static qb_dec dec(int64_t mant, int8_t scale)
{
    return (qb_dec){.mant = mant, .scale = scale};
}

static int dec_eq(qb_dec a, qb_dec b)
{
    return a.mant == b.mant && a.scale == b.scale;
}

static void check_head(const qb_msg *m, qb_msg_type type, uint64_t seq)
{
    QB_CHECK_EQ_INT(m->type, type);
    QB_CHECK_EQ_INT(m->version, QB_PROTO_VERSION);
    QB_CHECK(m->exchange.p == origin.exchange.p && m->exchange.n == origin.exchange.n);
    QB_CHECK(m->symbol.p == origin.symbol.p && m->symbol.n == origin.symbol.n);
    QB_CHECK(m->native.p == origin.native.p && m->native.n == origin.native.n);
    QB_CHECK_EQ_INT(m->seq, seq);
}

/* Encodes m, decodes it back into *out (views into buf and d). */
static int roundtrip(const qb_msg *m, qb_buf *buf, qb_decoder *d, qb_msg *out)
{
    qb_buf_reset(buf);
    if (qb_msg_encode(m, buf) != QB_OK) {
        return 0;
    }
    qb_str topic;
    return qb_decoder_begin(d, buf->data, buf->len, &topic) == QB_OK &&
           qb_decoder_next(d, out) == QB_OK;
}

QB_TEST(event_msg_delta_copies_ids_times_and_levels)
{
    qb_level bids[2] = {{dec(6000001, 2), dec(15, 1)}, {dec(6000000, 2), dec(0, 0)}};
    qb_level asks[1] = {{dec(6000002, 2), dec(3, 0)}};
    qb_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = QB_EV_DEPTH;
    ev.first_id = 101;
    ev.last_id = 105;
    ev.recv_ts = 2000;
    ev.exch_ts = 1000;
    ev.bids = bids;
    ev.n_bids = 2;
    ev.asks = asks;
    ev.n_asks = 1;
    qb_msg m;
    memset(&m, 0xa5, sizeof m);
    qb__event_delta_msg(&origin, 7, &ev, &m);
    check_head(&m, QB_MSG_DELTA, 7);
    QB_CHECK_EQ_INT(m.first_id, 101);
    QB_CHECK_EQ_INT(m.last_id, 105);
    QB_CHECK_EQ_INT(m.recv_ts, 2000);
    QB_CHECK_EQ_INT(m.exch_ts, 1000);
    QB_CHECK(m.bids == bids && m.n_bids == 2 && m.asks == asks && m.n_asks == 1);
    QB_CHECK(!m.refresh);
    QB_CHECK_EQ_INT(m.trade_id, 0);

    qb_buf buf;
    memset(&buf, 0, sizeof buf);
    qb_decoder *d = qb_decoder_new();
    QB_CHECK(d != NULL);
    qb_msg out;
    QB_CHECK(d != NULL && roundtrip(&m, &buf, d, &out));
    if (d != NULL) {
        QB_CHECK_EQ_INT(out.type, QB_MSG_DELTA);
        QB_CHECK_EQ_INT(out.seq, 7);
        QB_CHECK_EQ_INT(out.first_id, 101);
        QB_CHECK_EQ_INT(out.last_id, 105);
        QB_CHECK(out.n_bids == 2 && out.n_asks == 1);
        QB_CHECK(out.n_bids == 2 && dec_eq(out.bids[0].price, bids[0].price) &&
                 dec_eq(out.bids[1].size, bids[1].size));
    }
    qb_decoder_free(d);
    qb_buf_fini(&buf);
}

QB_TEST(event_msg_snapshot_is_the_whole_book)
{
    qb_book *b = qb_book_new(10);
    QB_CHECK(b != NULL);
    if (b == NULL) {
        return;
    }
    QB_CHECK(qb_book_set(b, QB_BID, dec(100, 0), dec(1, 0)) == QB_OK);
    QB_CHECK(qb_book_set(b, QB_BID, dec(99, 0), dec(2, 0)) == QB_OK);
    QB_CHECK(qb_book_set(b, QB_ASK, dec(101, 0), dec(3, 0)) == QB_OK);
    qb_msg m;
    qb__book_snapshot_msg(&origin, 3, true, 20, 10, 555, b, &m);
    check_head(&m, QB_MSG_SNAPSHOT, 3);
    QB_CHECK(m.refresh);
    QB_CHECK_EQ_INT(m.recv_ts, 20);
    QB_CHECK_EQ_INT(m.exch_ts, 10);
    QB_CHECK_EQ_INT(m.first_id, 555);
    QB_CHECK_EQ_INT(m.last_id, 555);
    QB_CHECK(m.bids == qb_book_levels(b, QB_BID) && m.n_bids == 2);
    QB_CHECK(m.asks == qb_book_levels(b, QB_ASK) && m.n_asks == 1);

    qb_buf buf;
    memset(&buf, 0, sizeof buf);
    qb_decoder *d = qb_decoder_new();
    qb_msg out;
    QB_CHECK(d != NULL && roundtrip(&m, &buf, d, &out));
    if (d != NULL) {
        QB_CHECK(out.type == QB_MSG_SNAPSHOT && out.refresh && out.n_bids == 2 && out.n_asks == 1);
        QB_CHECK(dec_eq(out.bids[0].price, dec(100, 0)) && dec_eq(out.asks[0].size, dec(3, 0)));
    }
    qb_decoder_free(d);
    qb_buf_fini(&buf);
    qb_book_free(b);
}

QB_TEST(event_msg_trade_takes_its_own_time_else_the_events)
{
    qb_trade tr[2] = {
        {.id = 11, .ts = 500, .price = dec(12345, 1), .qty = dec(2, 3), .side = QB_SIDE_BUY},
        {.id = 12, .ts = 0, .price = dec(12346, 1), .qty = dec(1, 0), .side = QB_SIDE_SELL},
    };
    qb_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = QB_EV_TRADE;
    ev.recv_ts = 900;
    ev.exch_ts = 800;
    ev.trades = tr;
    ev.n_trades = 2;
    qb_msg m;
    qb__event_trade_msg(&origin, 4, &ev, &tr[0], &m);
    check_head(&m, QB_MSG_TRADE, 4);
    QB_CHECK_EQ_INT(m.trade_id, 11);
    QB_CHECK_EQ_INT(m.exch_ts, 500);
    QB_CHECK_EQ_INT(m.recv_ts, 900);
    QB_CHECK(dec_eq(m.price, tr[0].price) && dec_eq(m.qty, tr[0].qty));
    QB_CHECK_EQ_INT(m.side, QB_SIDE_BUY);
    QB_CHECK(m.n_bids == 0 && m.n_asks == 0);
    qb__event_trade_msg(&origin, 5, &ev, &tr[1], &m);
    check_head(&m, QB_MSG_TRADE, 5);
    QB_CHECK_EQ_INT(m.trade_id, 12);
    QB_CHECK_EQ_INT(m.exch_ts, 800);
    QB_CHECK_EQ_INT(m.side, QB_SIDE_SELL);

    qb_buf buf;
    memset(&buf, 0, sizeof buf);
    qb_decoder *d = qb_decoder_new();
    qb_msg out;
    QB_CHECK(d != NULL && roundtrip(&m, &buf, d, &out));
    if (d != NULL) {
        QB_CHECK(out.type == QB_MSG_TRADE && out.trade_id == 12 && out.side == QB_SIDE_SELL);
        QB_CHECK(dec_eq(out.price, tr[1].price));
    }
    qb_decoder_free(d);
    qb_buf_fini(&buf);
}

QB_TEST(event_msg_ticker_and_status)
{
    qb_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = QB_EV_TICKER;
    ev.recv_ts = 30;
    ev.exch_ts = 25;
    ev.ticker.last = dec(6000000, 2);
    ev.ticker.bid = dec(5999999, 2);
    ev.ticker.has_bid = true;
    qb_msg m;
    qb__event_ticker_msg(&origin, 9, &ev, &m);
    check_head(&m, QB_MSG_TICKER, 9);
    QB_CHECK_EQ_INT(m.recv_ts, 30);
    QB_CHECK_EQ_INT(m.exch_ts, 25);
    QB_CHECK(dec_eq(m.ticker.last, ev.ticker.last) && m.ticker.has_bid && !m.ticker.has_ask);

    qb__status_msg(&origin, 2, 77, QB_FEED_RESYNCING, "gap", &m);
    check_head(&m, QB_MSG_STATUS, 2);
    QB_CHECK_EQ_INT(m.recv_ts, 77);
    QB_CHECK_EQ_INT(m.exch_ts, 0);
    QB_CHECK_EQ_INT(m.state, QB_FEED_RESYNCING);
    QB_CHECK(m.reason.n == 3 && memcmp(m.reason.p, "gap", 3) == 0);

    qb_buf buf;
    memset(&buf, 0, sizeof buf);
    qb_decoder *d = qb_decoder_new();
    qb_msg out;
    QB_CHECK(d != NULL && roundtrip(&m, &buf, d, &out));
    if (d != NULL) {
        QB_CHECK(out.type == QB_MSG_STATUS && out.state == QB_FEED_RESYNCING && out.seq == 2);
    }
    qb_decoder_free(d);
    qb_buf_fini(&buf);
}

int main(void)
{
    return qb_test_run_all();
}
