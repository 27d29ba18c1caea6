/*
 * event_msg.c: parsed exchange events and synced books to wire messages
 * (event_msg.h). Runs on whichever thread calls it (the adapter's lws
 * service thread; the benchmark's and fuzz targets' only thread). Pure
 * field copies: the hot path's cost is publish.c's encode, not this.
 */
#include "event_msg.h"

#include <string.h>

void qb__msg_head(const qb_msg_origin *o, qb_msg_type type, qb_msg *out)
{
    memset(out, 0, sizeof *out);
    out->type = type;
    out->version = QB_PROTO_VERSION;
    out->exchange = o->exchange;
    out->symbol = o->symbol;
    out->native = o->native;
}

void qb__event_delta_msg(const qb_msg_origin *o, uint64_t seq, const qb_event *ev, qb_msg *out)
{
    qb__msg_head(o, QB_MSG_DELTA, out);
    out->seq = seq;
    out->recv_ts = ev->recv_ts;
    out->exch_ts = ev->exch_ts;
    out->first_id = ev->first_id;
    out->last_id = ev->last_id;
    out->bids = ev->bids;
    out->n_bids = ev->n_bids;
    out->asks = ev->asks;
    out->n_asks = ev->n_asks;
}

void qb__book_snapshot_msg(const qb_msg_origin *o, uint64_t seq, bool refresh, uint64_t recv_ts,
                           uint64_t exch_ts, uint64_t book_id, const qb_book *b, qb_msg *out)
{
    qb__msg_head(o, QB_MSG_SNAPSHOT, out);
    out->seq = seq;
    out->refresh = refresh;
    out->recv_ts = recv_ts;
    out->exch_ts = exch_ts;
    out->first_id = book_id;
    out->last_id = book_id;
    out->bids = qb_book_levels(b, QB_BID);
    out->n_bids = qb_book_depth(b, QB_BID);
    out->asks = qb_book_levels(b, QB_ASK);
    out->n_asks = qb_book_depth(b, QB_ASK);
}

void qb__event_trade_msg(const qb_msg_origin *o, uint64_t seq, const qb_event *ev,
                         const qb_trade *t, qb_msg *out)
{
    qb__msg_head(o, QB_MSG_TRADE, out);
    out->seq = seq;
    out->recv_ts = ev->recv_ts;
    out->exch_ts = t->ts ? t->ts : ev->exch_ts;
    out->trade_id = t->id;
    out->price = t->price;
    out->qty = t->qty;
    out->side = t->side;
}

void qb__event_ticker_msg(const qb_msg_origin *o, uint64_t seq, const qb_event *ev, qb_msg *out)
{
    qb__msg_head(o, QB_MSG_TICKER, out);
    out->seq = seq;
    out->recv_ts = ev->recv_ts;
    out->exch_ts = ev->exch_ts;
    out->ticker = ev->ticker;
}

void qb__status_msg(const qb_msg_origin *o, uint64_t seq, uint64_t recv_ts, qb_feed_state st,
                    const char *reason, qb_msg *out)
{
    qb__msg_head(o, QB_MSG_STATUS, out);
    out->seq = seq;
    out->recv_ts = recv_ts;
    out->state = st;
    out->reason = (qb_str){reason, strlen(reason)};
}
