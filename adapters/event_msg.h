/*
 * event_msg.h: the one mapping from what the adapter knows (a parsed
 * qb_event of exchange.h, or a synced qb_book) to the qb_msg (proto/msg.h)
 * that publish.c encodes. adapter.c publishes through it; the benchmark
 * (tests/bench/adapter_bench.c) and the exchange fuzz targets
 * (tests/fuzz/fuzz_exchange.h) call the same functions, so what they encode
 * is what the adapter ships.
 *
 *   qb_event DEPTH (after sync.c) --qb__event_delta_msg-->   QB_MSG_DELTA
 *   qb_book (after a snapshot)    --qb__book_snapshot_msg--> QB_MSG_SNAPSHOT
 *   qb_event TRADE, trades[k]     --qb__event_trade_msg-->   QB_MSG_TRADE
 *   qb_event TICKER               --qb__event_ticker_msg-->  QB_MSG_TICKER
 *   feed state + reason           --qb__status_msg-->        QB_MSG_STATUS
 *
 * Pure functions: no allocation, no clock, no counters, any thread. The
 * message holds views (strings, levels) into its sources: it is valid while
 * the origin's strings and the event (or book) are. Numbering (the per-topic
 * seq), deduplication and what is not published at all (empty deltas,
 * duplicate trades) stay with the caller (adapter.c).
 */
#ifndef QB_ADAPTER_EVENT_MSG_H
#define QB_ADAPTER_EVENT_MSG_H

#include "book.h"
#include "exchange.h"
#include "msg.h"

#include <stdbool.h>
#include <stdint.h>

/* Who publishes: the header fields of every message of one instrument. */
typedef struct qb_msg_origin {
    qb_str exchange; /* exchange id ("binance") */
    qb_str symbol;   /* normalized symbol ("BTC-USDT") */
    qb_str native;   /* the exchange's symbol ("BTCUSDT") */
} qb_msg_origin;

/* Zeroes *out and sets its type, protocol version and origin strings (views
 * into o's strings). The common head of every function below. */
void qb__msg_head(const qb_msg_origin *o, qb_msg_type type, qb_msg *out);

/* A QB_MSG_DELTA numbered seq from a depth event as sync.c passes it on
 * (ids, times, levels: views into ev's parser). */
void qb__event_delta_msg(const qb_msg_origin *o, uint64_t seq, const qb_event *ev, qb_msg *out);

/* A QB_MSG_SNAPSHOT numbered seq of the whole book b, whose last applied
 * update is book_id (first_id = last_id = book_id); refresh marks a
 * periodic re-send of an unchanged book. Levels are views into b. */
void qb__book_snapshot_msg(const qb_msg_origin *o, uint64_t seq, bool refresh, uint64_t recv_ts,
                           uint64_t exch_ts, uint64_t book_id, const qb_book *b, qb_msg *out);

/* A QB_MSG_TRADE numbered seq from the trade t of the trade event ev (one
 * of ev->trades): its own time when the exchange gives one, else the
 * event's. */
void qb__event_trade_msg(const qb_msg_origin *o, uint64_t seq, const qb_event *ev,
                         const qb_trade *t, qb_msg *out);

/* A QB_MSG_TICKER numbered seq from a ticker event. */
void qb__event_ticker_msg(const qb_msg_origin *o, uint64_t seq, const qb_event *ev, qb_msg *out);

/* A QB_MSG_STATUS numbered seq: state st, reason (a NUL-terminated view),
 * received at recv_ts. */
void qb__status_msg(const qb_msg_origin *o, uint64_t seq, uint64_t recv_ts, qb_feed_state st,
                    const char *reason, qb_msg *out);

#endif
