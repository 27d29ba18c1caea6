/*
 * exchange.h: the contract between the adapter framework and one exchange.
 *
 * An exchange adapter is one .c file that fills one qb_exchange_ops table
 * (binance.c fills qb_binance_ops), the way NNG's pub0_sock_ops fills a
 * protocol. The framework (adapter.c, ws_conn.c, rest.c, sync.c, publish.c)
 * owns everything else: connections, reconnects, timers, the per-instrument
 * book sync, publishing and counters.
 *
 * Data flow of one websocket message, all on the lws service thread:
 *
 *   ws_conn (reassembled frame)
 *     -> ops->decode   (optional: gunzip for HTX; identity when NULL)
 *     -> ops->parse    (JSON -> one qb_event, views into the qb_parser)
 *     -> adapter       (route by native symbol)
 *     -> sync.c        (depth: buffer / bridge / sequence rule / book)
 *     -> publish.c     (qb_msg -> msgpack -> NNG pub)
 *
 * Parsing allocates nothing: a qb_parser owns a token array and two level
 * arrays, sized once for the largest accepted frame; every event is a view
 * into them (valid until the next parse on the same parser). Bad input never
 * crashes: the parse functions return QB_EPARSE / QB_ETOOBIG / QB_ERANGE and
 * the caller counts and logs it.
 *
 * What one exchange needs beyond that (Binance's simdjson parser, HTX's
 * zlib stream) is its private state, as NNG's .sock_size: the table says
 * .state_size, the owner of the parser allocates that many bytes per
 * exchange instance (qb_exchange_state_new: one per adapter, or per test),
 * .init/.fini set it up and tear it down, and decode/parse/parse_snapshot
 * get it as their first argument. The shared structs hold nothing of any
 * one exchange.
 *
 * The three exchanges use the table in three ways:
 *   binance.c  REST snapshot (.snapshot_url, weighed by depth:
 *              .snapshot_weight) + U/u chained deltas;
 *   htx.c      gzip frames (.decode, inflate.c, its zlib stream in the
 *              exchange state), JSON ping answered through a
 *              QB_EV_REPLY event, snapshot by "req" on the same websocket
 *              (.snapshot_ws_request, at most one per .ws_request_interval_ms
 *              per connection), prevSeqNum chaining (qb_seq_htx);
 *   bithumb.c  every book message is a full top-N snapshot (QB_EV_BOOK_FULL,
 *              .full_book): sync.c turns consecutive ones into exact deltas;
 *              text keepalive (.keepalive_text every .keepalive_ms).
 * A frame lost on the way (undecodable, oversized, unparseable) makes the
 * connection's books suspect (.suspect_on_lost_frame; only one book when
 * .lost_frame_kind can still read its channel) until each one's sequence
 * rule confirms or breaks its chain (sync.h).
 * Exchange-specific settings (HTX levels, symbol map, tickers on/off) reach
 * the ops functions through a qb_exchange_cfg.
 *
 * An exchange's own command-line options (Binance --depth-limit, HTX
 * --levels and --symbol-map, Bithumb --keepalive-ms) live in its file too:
 * .opts is a table of common/opts.h options whose values are the file's
 * statics, and .opts_apply checks them and writes them into the adapter
 * configuration. quotebus-adapter (main.c) splices every registered
 * exchange's .opts, in registry order, into its own table (so --help, the
 * command line and --config know them all, whichever exchange runs), then
 * calls every .opts_apply: a new exchange with options edits no other file.
 */
#ifndef QB_ADAPTER_EXCHANGE_H
#define QB_ADAPTER_EXCHANGE_H

#include "book.h"
#include "buf.h"
#include "decimal.h"
#include "json.h"
#include "msg.h"
#include "opts.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QB_NATIVE_MAX 32 /* native symbol bytes, NUL included */
#define QB_EVENT_INFO_MAX 192

typedef enum qb_ev_kind {
    QB_EV_UNKNOWN = 0, /* valid JSON, but not a message we use (ignored, counted) */
    QB_EV_DEPTH,       /* incremental book update: first_id..last_id, levels */
    QB_EV_SNAPSHOT,    /* full book: last_id, levels */
    QB_EV_TRADE,       /* one trade */
    QB_EV_SHUTDOWN,    /* the server announces it will close: reconnect now */
    QB_EV_CONTROL,     /* subscription ack and the like (info holds a summary) */
    QB_EV_ERROR,       /* the exchange reported an error (info holds code/msg) */
    QB_EV_REPLY,       /* the frame asks for an answer (reply holds it), e.g. HTX ping */
    QB_EV_TICKER,      /* a ticker (ticker holds it) */
    QB_EV_BOOK_FULL,   /* a full top-N book that replaces the previous one (Bithumb) */
    QB_EV_HEARTBEAT,   /* keepalive answer (Bithumb {"status":"UP"}): counted only */
} qb_ev_kind;

/* One trade of a QB_EV_TRADE event (HTX sends several per message). */
typedef struct qb_trade {
    uint64_t id;  /* exchange trade id (HTX tradeId, Bithumb sequential_id); 0 none */
    uint64_t ts;  /* trade time, ns since the epoch; 0 unknown */
    qb_dec price; /* > 0 */
    qb_dec qty;   /* >= 0 */
    qb_side side; /* taker side */
} qb_trade;

/* One parsed exchange message. Pointers are views into the qb_parser (or,
 * for buffered events, into the sync buffer); valid until the next parse. */
typedef struct qb_event {
    qb_ev_kind kind;
    char native[QB_NATIVE_MAX]; /* exchange symbol as sent ("BTCUSDT"), "" if none */
    uint64_t first_id;          /* DEPTH: first update id (Binance U) */
    uint64_t last_id;           /* DEPTH: last update id (u); SNAPSHOT: lastUpdateId */
    uint64_t prev_id;           /* DEPTH: previous last id when the exchange sends it */
    bool has_prev;
    uint64_t exch_ts; /* exchange event time, ns since the epoch; 0 unknown */
    uint64_t recv_ts; /* local receive time, ns since the epoch (set by caller) */
    const qb_level *bids;
    size_t n_bids;
    const qb_level *asks;
    size_t n_asks;
    uint64_t trade_id; /* TRADE: the first trade (same as trades[0]) */
    qb_dec price;
    qb_dec qty;
    qb_side side;
    const qb_trade *trades; /* TRADE: every trade of the message, in order */
    size_t n_trades;
    qb_ticker ticker;             /* TICKER */
    qb_str reply;                 /* REPLY: bytes to send back on the same connection */
    char info[QB_EVENT_INFO_MAX]; /* CONTROL / ERROR / SHUTDOWN: human readable */
    bool rate_limited;            /* ERROR: a request was refused as too frequent (retry soon) */
} qb_event;

/* Parser scratch state, one per connection (or per test). */
typedef struct qb_parser {
    jsmntok_t *tok;
    int tok_cap;
    qb_level *bids;
    qb_level *asks;
    size_t level_cap; /* per side */
    qb_trade *trades;
    size_t trade_cap;
    size_t max_bytes; /* frame cap: decoded (inflated) output too */
    qb_buf scratch;   /* decode output (gzip) */
    char reply[64];   /* REPLY text */
} qb_parser;

/* Sizes the parser for frames up to max_bytes (also the cap on a decoded,
 * e.g. inflated, frame) and documents of up to max_levels levels per side:
 * tokens for max(max_bytes/6, 6*max_levels) (exchange JSON has >= 6 bytes
 * per token; a level is 3 tokens); a document needing more is rejected with
 * QB_ETOOBIG, never parsed partially. Room for QB_PARSER_TRADES trades per
 * message. QB_OK or QB_ENOMEM. */
#define QB_PARSER_TRADES 4096
int qb_parser_init(qb_parser *p, size_t max_bytes, size_t max_levels);
void qb_parser_fini(qb_parser *p);

/* qb_exchange_ops.lost_frame_kind results. */
enum { QB_LOST_UNKNOWN = 0, QB_LOST_BOOK = 1, QB_LOST_OTHER = 2 };

/* Sequence rule: how an exchange's update ids chain (sync.c applies it).
 * All functions are pure. */
typedef struct qb_seq_rule {
    const char *name;
    /* True when a buffered/live event is entirely older than the book
     * (Binance spot: u <= lastUpdateId) and is dropped. */
    bool (*is_stale)(const qb_event *ev, uint64_t book_id);
    /* True when ev may be the first event applied on top of a snapshot with
     * id book_id (Binance spot: U <= lastUpdateId+1 <= u). */
    bool (*bridges)(const qb_event *ev, uint64_t book_id);
    /* True when ev directly follows an event whose last id was prev
     * (Binance spot: U == prev + 1). */
    bool (*follows)(const qb_event *ev, uint64_t prev);
    /* False when the snapshot is older than the first buffered event, so
     * updates in between are missing and the snapshot must be fetched
     * again (Binance spot: lastUpdateId + 1 < U). */
    bool (*snapshot_usable)(uint64_t snap_id, const qb_event *first_buffered);
    /* Writes the gap reason ("gap: expected U=5 got U=7"). */
    void (*describe_gap)(const qb_event *ev, uint64_t prev, char *buf, size_t cap);
} qb_seq_rule;

struct qb_adapter_cfg; /* adapter.h */

/* Exchange-specific settings, from the command line (main.c). */
typedef struct qb_exchange_cfg {
    unsigned levels;               /* HTX: mbp levels (5, 20, 150, 400) */
    const char *const *symbol_map; /* "native=BASE-QUOTE" entries (HTX) */
    size_t nsymbol_map;
    bool tickers; /* subscribe to the ticker streams too */
} qb_exchange_cfg;

typedef struct qb_exchange_ops {
    const char *name;                /* exchange id on the wire: "binance" */
    const char *help;                /* --help: what is used, lines after the first
                                        indented by 11 spaces */
    const char *default_ws_url;      /* --ws-url default; its path is the exchange's path on
                                        quotebus-exsim too (--exsim, main.c) */
    const char *default_rest_url;    /* --rest-url default, NULL when none */
    unsigned max_streams_per_conn;   /* the exchange's hard limit */
    unsigned streams_per_symbol;     /* streams one instrument needs (book, trades) */
    unsigned ticker_streams;         /* more streams per instrument with tickers on */
    unsigned max_depth_limit;        /* largest snapshot depth the exchange serves */
    bool full_book;                  /* book messages are full snapshots (no fetch) */
    bool suspect_on_lost_frame;      /* an unattributable lost frame makes the connection's
                                        books suspect (sync.h, qb_sync_suspect) */
    uint32_t ws_request_interval_ms; /* min gap between snapshot requests per connection */
    uint32_t keepalive_ms;           /* send keepalive_text this often (0: never) */
    const char *keepalive_text;
    /* Per-process budgets (budget.c), shared by all connections; 0 unlimited.
     * --max-connects-per-min / --max-snapshots-per-min override them. */
    uint32_t connects_per_min;  /* websocket connection attempts */
    uint32_t snapshots_per_min; /* snapshot requests (REST or websocket req) */
    /* Exchanges that weigh requests (Binance: by depth limit): the weight
     * budget per minute; the snapshot budget is then this over
     * snapshot_weight(limit) requests, and snapshots_per_min is unused. */
    uint32_t snapshot_weight_per_min;
    /* The weight of one snapshot request of depth limit (NULL: no weights). */
    uint32_t (*snapshot_weight)(unsigned limit);
    /* What a frame that failed to parse was (js, len: the decoded text,
     * maybe truncated or invalid), as far as its channel can still be
     * read: QB_LOST_BOOK with native written (a book update of that
     * symbol), QB_LOST_OTHER (a channel that carries no book: trades,
     * tickers), QB_LOST_UNKNOWN (NULL: always unknown). */
    int (*lost_frame_kind)(const char *js, size_t len, char *native, size_t cap);

    /* Normalized "BTC-USDT" -> native "BTCUSDT". QB_OK, QB_EINVAL (with a
     * reason in err when err is not NULL). */
    int (*to_native)(const qb_exchange_cfg *xc, const char *norm, char *out, size_t cap, char *err,
                     size_t errcap);
    /* Native -> normalized, for symbols given in native form (NULL: not
     * supported). QB_OK, QB_EINVAL (unknown or ambiguous, reason in err). */
    int (*from_native)(const qb_exchange_cfg *xc, const char *native, char *out, size_t cap,
                       char *err, size_t errcap);
    /* Appends the websocket URL for one connection carrying natives[0..n). */
    int (*ws_url)(const qb_exchange_cfg *xc, const char *base, const char *const *natives, size_t n,
                  qb_buf *out);
    /* Appends the messages to send right after connecting, each followed by
     * one NUL byte (nothing appended, or NULL: the URL subscribes to all). */
    int (*subscribe_msg)(const qb_exchange_cfg *xc, const char *base, const char *const *natives,
                         size_t n, qb_buf *out);
    /* Private state of one exchange instance (NNG's .sock_size): bytes,
     * zeroed, that the owner allocates (qb_exchange_state_new) and passes
     * as st to init, decode, parse, parse_snapshot and fini; one per
     * qb_parser, used on that parser's thread only. 0: none (st NULL). */
    size_t state_size;
    /* Sets up st for frames of up to max_bytes (the qb_parser's cap).
     * QB_OK or QB_ENOMEM (st then holds nothing to free: fini is not
     * called). NULL: nothing to set up. */
    int (*init)(void *st, size_t max_bytes);
    /* Frees what init allocated (not st itself). NULL: nothing. */
    void (*fini)(void *st);
    /* Turns a received frame into JSON text (NULL: the frame is the text).
     * *out points into p->scratch or into in. */
    int (*decode)(void *st, qb_parser *p, const uint8_t *in, size_t len, const char **out,
                  size_t *out_len);
    /* Parses one websocket message into ev. QB_OK (ev->kind says what it
     * is), QB_EPARSE, QB_ETOOBIG, QB_ERANGE. */
    int (*parse)(void *st, qb_parser *p, const char *js, size_t len, qb_event *ev);
    /* Appends the REST snapshot URL for one instrument (NULL when the
     * snapshot comes over the websocket). */
    int (*snapshot_url)(const char *rest_base, const char *native, unsigned limit, qb_buf *out);
    /* Appends the websocket request for a snapshot (NULL when over REST). */
    int (*snapshot_ws_request)(const qb_exchange_cfg *xc, const char *native, qb_buf *out);
    /* Parses a snapshot document into ev (kind QB_EV_SNAPSHOT, last_id,
     * levels); ev->native is left to the caller. */
    int (*parse_snapshot)(void *st, qb_parser *p, const char *js, size_t len, qb_event *ev);
    const qb_seq_rule *seq;
    /* The exchange's own command-line options, {0}-terminated (NULL:
     * none); each ptr is a static of the exchange's file, holding the
     * option's default until qb_opts_parse writes it. Main thread, at
     * start-up only; qb_opts_free frees their strings and lists. */
    const qb_opt *opts;
    /* Checks what opts parsed and writes it into cfg (cfg's strings then
     * point into the opts' storage). QB_OK, or QB_EINVAL with the reason
     * for the user in err ("--levels must be 5, 20, 150 or 400"). main.c
     * calls it for every registered exchange, whichever one runs, as the
     * options were once all its own. NULL: nothing to apply. */
    int (*opts_apply)(struct qb_adapter_cfg *cfg, char *err, size_t errcap);
} qb_exchange_ops;

/* qb_binance_ops, qb_htx_ops, ...: one per line of exchanges.def. */
#define QB_EXCHANGE(id, symbols) extern const qb_exchange_ops qb_##id##_ops;
#include "exchanges.def"
extern const qb_seq_rule qb_seq_binance_spot;
extern const qb_seq_rule qb_seq_htx;
extern const qb_seq_rule qb_seq_none; /* full books: no ids to chain */

/* The registry (exchanges.def: one line per exchange), in its order,
 * NULL-terminated. */
extern const qb_exchange_ops *const qb_exchanges[];
/* The ops table for an exchange id, or NULL. */
const qb_exchange_ops *qb_exchange_find(const char *name);
/* "binance, htx, ...": the registry's ids, for messages and --help.
 * Static storage. */
const char *qb_exchange_names(void);
/* The exchange's default symbols ("BTC-USDT,ETH-USDT"; exchanges.def),
 * comma separated, normalized. Static storage. */
const char *qb_exchange_default_symbols(const qb_exchange_ops *ops);

/* Allocates ops->state_size zeroed bytes and runs ops->init on them for
 * frames of up to max_bytes. QB_OK and *out (NULL when state_size is 0;
 * the caller owns it: qb_exchange_state_free), or QB_ENOMEM (*out not
 * written). Any thread; the state is then used by one thread at a time. */
int qb_exchange_state_new(const qb_exchange_ops *ops, size_t max_bytes, void **out);
/* ops->fini, then frees st. NULL is a no-op. */
void qb_exchange_state_free(const qb_exchange_ops *ops, void *st);

/* Helpers shared by exchange parsers (binance.c, later htx.c, ...). */

/* Parses an array of [price, size] pairs (strings or numbers) into out
 * (at most cap). Rejects negative sizes, non-positive prices, bad numbers.
 * QB_OK, QB_EPARSE, QB_ERANGE, QB_ETOOBIG (more than cap levels). */
int qb__parse_levels(const qb_json *j, int arr, qb_level *out, size_t cap, size_t *n);
/* A decimal from a string or number token. QB_OK, QB_EPARSE, QB_ERANGE. */
int qb__parse_dec(const qb_json *j, int i, qb_dec *out);
/* ms since the epoch -> ns, QB_ERANGE on overflow. */
int qb__ms_to_ns(uint64_t ms, uint64_t *ns);
/* Copies a token's text into out as printable ASCII ('?' otherwise), cut
 * to cap-1 bytes. For log lines and event info. */
void qb__info_text(const qb_json *j, int i, char *out, size_t cap);
/* Exact a - b (QB_ERANGE on overflow). */
int qb__dec_sub(qb_dec a, qb_dec b, qb_dec *out);

#endif
