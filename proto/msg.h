/*
 * msg.h: the normalized messages of the quotebus wire protocol, version 1
 * (spec: proto/PROTOCOL.md), their msgpack encoder and an allocation-free
 * decoder.
 *
 * A frame (one NNG message) is:
 *
 *   topic bytes | 0x00 | msgpack map | [msgpack map ...]
 *   "book.binance.BTC-USDT" NUL {"v":1,"type":"delta","seq":42,...}
 *
 * The topic comes first so that NNG's byte-prefix subscriptions select it:
 * "book." is every book, "book.binance." every Binance book, and the exact
 * topic followed by its NUL terminator is one instrument (so "BTC-USDT\0"
 * never matches "BTC-USDTX"). All maps in one frame share its topic.
 * qb_msg_encode writes a frame of one map; qb_msg_encode_map appends more
 * (quotebus-adapter batches up to 64 deltas of a topic per frame, see
 * PROTOCOL.md "Frames and batching"); decoders must iterate every map.
 *
 * Topics:   book.<ex>.<sym>    snapshot and delta messages (one sequence)
 *           trade.<ex>.<sym>   trades
 *           status.<ex>.<sym>  feed state changes
 *           ticker.<ex>.<sym>  tickers
 * Sequence: "seq" is per topic and contiguous (+1 per message). A snapshot
 * replaces the subscriber's book and rebases the sequence: the next delta
 * has snapshot seq + 1. A refresh snapshot ("refresh": true) repeats the
 * seq of the last message it includes.
 *
 * Ownership: qb_msg holds views (pointers into caller memory); the encoder
 * reads them, the decoder points them into the frame being decoded and into
 * the decoder's own level arrays. Threads: a qb_decoder belongs to one
 * thread; the encoder functions are pure.
 */
#ifndef QB_MSG_H
#define QB_MSG_H

#include "book.h"
#include "buf.h"
#include "decimal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QB_PROTO_VERSION 1
#define QB_TOPIC_MAX 128            /* bytes, without the NUL */
#define QB_MSG_MAX_FRAME (8u << 20) /* larger frames are rejected */
#define QB_MSG_MAX_LEVELS 20000     /* per side, per message */

typedef struct qb_str {
    const char *p;
    size_t n;
} qb_str;

#define QB_STR(lit) ((qb_str){(lit), sizeof(lit) - 1})

typedef enum qb_msg_type {
    QB_MSG_SNAPSHOT = 1,
    QB_MSG_DELTA = 2,
    QB_MSG_TRADE = 3,
    QB_MSG_STATUS = 4,
    QB_MSG_TICKER = 5,
} qb_msg_type;

typedef enum qb_feed_state {
    QB_FEED_SYNCING = 0,   /* connecting or waiting for the first snapshot */
    QB_FEED_LIVE = 1,      /* book in sync, updates flowing */
    QB_FEED_STALE = 2,     /* in sync but no update for longer than expected */
    QB_FEED_RESYNCING = 3, /* gap, checksum mismatch, crossed book: re-snapshot */
    QB_FEED_DOWN = 4,      /* upstream unreachable */
} qb_feed_state;

typedef enum qb_side {
    QB_SIDE_UNKNOWN = 0,
    QB_SIDE_BUY = 1, /* taker bought */
    QB_SIDE_SELL = 2,
} qb_side;

/* Ticker fields that an exchange may not send carry has_* = false. */
typedef struct qb_ticker {
    qb_dec last;
    qb_dec bid, bid_qty, ask, ask_qty;
    qb_dec volume_24h; /* base currency */
    qb_dec change_24h; /* price change, quote currency */
    bool has_bid, has_ask, has_volume, has_change;
} qb_ticker;

typedef struct qb_msg {
    qb_msg_type type;
    uint32_t version; /* QB_PROTO_VERSION when encoding */
    qb_str exchange;  /* "binance" */
    qb_str symbol;    /* "BTC-USDT" */
    qb_str native;    /* "BTCUSDT" */
    uint64_t seq;     /* per topic, contiguous */
    uint64_t exch_ts; /* exchange event time, ns since the epoch; 0 unknown */
    uint64_t recv_ts; /* adapter receive time, ns since the epoch */

    /* QB_MSG_SNAPSHOT, QB_MSG_DELTA */
    uint64_t first_id; /* exchange's first update id in this message */
    uint64_t last_id;  /* exchange's last update id (book version) */
    const qb_level *bids;
    size_t n_bids;
    const qb_level *asks;
    size_t n_asks;
    bool refresh; /* snapshot that repeats the last seq (periodic refresh) */

    /* QB_MSG_TRADE */
    uint64_t trade_id;
    qb_dec price;
    qb_dec qty;
    qb_side side; /* taker side */

    /* QB_MSG_STATUS */
    qb_feed_state state;
    qb_str reason;

    /* QB_MSG_TICKER */
    qb_ticker ticker;
} qb_msg;

const char *qb_msg_type_name(qb_msg_type t);     /* "snapshot", ... */
const char *qb_feed_state_name(qb_feed_state s); /* "live", ... */
const char *qb_side_name(qb_side s);             /* "buy", "sell", "unknown" */
/* The topic kind of a message type: "book", "trade", "status", "ticker". */
const char *qb_msg_topic_kind(qb_msg_type t);

/* Writes "<kind>.<exchange>.<symbol>" and a NUL into buf. Returns the topic
 * length without the NUL, or -1 when it does not fit or a part is empty or
 * has a byte the topic rule (topic.h: '.', '"', '\', a space, a control or
 * non-ASCII byte) excludes. */
int qb_topic_format(char *buf, size_t cap, const char *kind, qb_str exchange, qb_str symbol);

/* Appends one whole frame (topic, NUL, one map) for m to out.
 * Returns QB_OK, QB_EINVAL (bad fields) or QB_ENOMEM (QB_ETOOBIG only if
 * the encoder's size bound were wrong: never for a valid message); on error
 * out is as it was. The bytes are msgpack-c packer output (its pack
 * template, see msg_encode.c), identical to msgpack_pack_* through a callback. */
int qb_msg_encode(const qb_msg *m, qb_buf *out);
/* Appends just the msgpack map of m (to batch several maps in one frame). */
int qb_msg_encode_map(const qb_msg *m, qb_buf *out);

typedef struct qb_decoder qb_decoder;

/* A decoder owns its scratch level arrays (at most QB_MSG_MAX_LEVELS per
 * side); NULL when out of memory. */
qb_decoder *qb_decoder_new(void);
void qb_decoder_free(qb_decoder *d); /* NULL is a no-op */

/* Starts decoding a frame: checks the size limit and splits off the topic
 * (a view into frame, without its NUL). frame must stay alive and unchanged
 * while messages from it are used. QB_EPARSE, QB_ETOOBIG. */
int qb_decoder_begin(qb_decoder *d, const void *frame, size_t len, qb_str *topic);

/* Decodes the next map of the frame into *out (views valid until the next
 * qb_decoder_begin/next on d). Returns QB_OK, QB_EEOF at the end of the
 * frame, QB_EPARSE (invalid msgpack, missing or ill-typed field, topic that
 * does not match the message), QB_EVERSION, QB_ETOOBIG (too many levels).
 * Unknown map keys are ignored (forward compatibility). */
int qb_decoder_next(qb_decoder *d, qb_msg *out);

/* Appends m as one line of JSON (no newline) with prices and sizes as exact
 * decimal strings; the format is in PROTOCOL.md ("JSON form"). */
int qb_msg_to_json(const qb_msg *m, qb_buf *out);

#endif
