/*
 * exsim.h: private header of quotebus-exsim, the exchange simulator used by
 * the integration tests and by the offline demo.
 *
 * Layout (one process, one lws service thread runs everything below):
 *
 *   exsim_main.c     options, signals, the service loop, start-up/shutdown
 *   exsim_server.c   the lws server: websocket connections (bounded send
 *                    queues of shared frames, server pings, stalls,
 *                    disconnect faults), HTTP requests (delayed or failing
 *                    snapshots), the stats file
 *   exsim_market.c   symbols and their books: the deterministic synthetic
 *                    generator, the replay engine, the per-event faults
 *                    (gap, dup, reorder, malformed, oversized), the dump
 *   exsim_<ex>.c     one file per exchange: an ops table (wire protocol:
 *                    URLs, subscribe messages, payload encoders, REST):
 *                    exsim_binance.c, exsim_htx.c, exsim_bithumb.c
 *
 * One process serves several exchanges on one port (--exchange, default
 * every exchange of the registry, qb__exsim_exchanges), routed by the
 * request path: each ops table claims its paths (owns_path). Symbols and
 * streams belong to one exchange (the same coin is an independent book per
 * exchange), connections to the exchange whose path they opened.
 *
 * Data flow of one depth event:
 *
 *   market timer -> generate (book updated, ids advanced) -> faults decide
 *   send/skip/dup/hold -> for each stream of the symbol with subscribers:
 *   ops encodes the frame once (combined and/or raw form) -> the shared,
 *   reference-counted frame is queued on every subscriber -> the WRITEABLE
 *   callback writes it (LWS_PRE headroom is part of the frame).
 *
 * Because the generator, the REST handler and the writers run on the one
 * service thread, a snapshot is always exactly the book after the last
 * generated event, and its lastUpdateId is that event's final id.
 *
 * Everything here is internal to the simulator (prefix qb__exsim_).
 */
#ifndef QB_EXSIM_H
#define QB_EXSIM_H

#include "book.h"
#include "buf.h"
#include "decimal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lws;
struct lws_context;
struct lws_vhost;

#define QB__EXSIM_MAX_CHANGES 48     /* level entries in one generated event */
#define QB__EXSIM_SYM_MAX 32         /* native symbol, NUL included */
#define QB__EXSIM_STREAM_MAX 96      /* stream name, NUL included */
#define QB__EXSIM_MAX_ARGS 16        /* URL arguments kept per request */
#define QB__EXSIM_STREAMS_PER_SYM 16 /* stream names per symbol (bounds sim->nstreams) */
#define QB__EXSIM_PENDING_REQS 8     /* delayed req answers per connection */

typedef struct qb__exsim qb__exsim;
typedef struct qb__exsim_conn qb__exsim_conn;
typedef struct qb__exsim_sym qb__exsim_sym;
typedef struct qb__exsim_stream qb__exsim_stream;
typedef struct qb__exsim_frame qb__exsim_frame;

/* What a stream carries; decides which generated data is fanned out to it. */
typedef enum qb__exsim_kind {
    QB__EXSIM_K_DEPTH = 0,    /* book deltas, every event (Binance @depth@100ms) */
    QB__EXSIM_K_TRADE = 1,    /* trades */
    QB__EXSIM_K_OTHER = 2,    /* only replayed frames (tickers, klines, ...) */
    QB__EXSIM_K_DEPTH_1S = 3, /* book deltas merged per second (Binance @depth);
                                 replay: recorded frames only */
    QB__EXSIM_K_TICKER = 4,   /* 24 h statistics, every --ticker-every events */
} qb__exsim_kind;

/* One depth event: the level changes of one exchange message. In replay
 * mode raw/raw_len is the recorded payload, sent as recorded. */
typedef struct qb__exsim_event {
    uint64_t index;    /* 1-based depth event number of the symbol */
    uint64_t first_id; /* U */
    uint64_t last_id;  /* u (HTX: seqNum) */
    uint64_t prev_id;  /* last_id of the previous event (HTX: prevSeqNum) */
    uint64_t time_ms;  /* E */
    size_t n_bids, n_asks;
    qb_level *bids; /* generator: QB__EXSIM_MAX_CHANGES each; replay: exact */
    qb_level *asks;
    const char *raw;
    size_t raw_len;
} qb__exsim_event;

typedef struct qb__exsim_trade {
    uint64_t id;
    uint64_t time_ms;
    qb_dec price;
    qb_dec qty;
    bool buyer_maker;
} qb__exsim_trade;

/* A parsed HTTP request or websocket upgrade. Arguments are URL-decoded
 * "name=value" strings (lws splits and decodes them). */
typedef struct qb__exsim_req {
    char path[512];
    int nargs;
    char *args[QB__EXSIM_MAX_ARGS];
} qb__exsim_req;

/* Value of argument name in req, or NULL. */
const char *qb__exsim_req_arg(const qb__exsim_req *req, const char *name);

/* An HTTP response built by an ops function. */
typedef struct qb__exsim_resp {
    int status;
    int retry_after; /* seconds; 0 = no Retry-After header */
    const char *content_type;
    qb_buf body;
} qb__exsim_resp;

/* The per-exchange protocol, one table per exchange file (like NNG's
 * pub0_sock_ops). All functions run on the service thread. Encoders
 * append the frame payload to out (which already holds LWS_PRE bytes of
 * headroom) and return QB_OK or an error; *binary is set for binary
 * frames (gzip exchanges). */
typedef struct qb__exsim_ops {
    const char *name;    /* exchange id: "binance" */
    const char *ws_path; /* the real endpoint's websocket path, which adapters
                            open here too ("/stream"; quotebus-adapter --exsim) */

    /* Routing: true when this exchange serves the websocket path (ws) or
     * the HTTP path (!ws). Paths never overlap between exchanges. */
    bool (*owns_path)(const char *path, bool ws);
    /* True when native is a well-formed symbol of this exchange
     * (BTCUSDT, btcusdt, KRW-BTC). */
    bool (*symbol_ok)(const char *native);
    /* Writes the symbol's base and quote, upper case (market parameters). */
    void (*base_quote)(const char *native, char *base, char *quote, size_t cap);
    /* Market shape: book depth cap per side (0 = --max-levels; the smaller
     * wins), sequence ids with jumps (HTX seqNum), empty "nothing changed"
     * events (HTX mbp.150), tiny sizes now and then (exponent form). */
    unsigned max_depth;
    bool sparse_ids;
    bool empty_events;
    bool small_sizes;

    /* A websocket upgrade for req. With c == NULL only validates (the
     * handshake is refused when it returns nonzero, with an HTTP status in
     * *http_status); with c set, subscribes the connection's initial
     * streams. */
    int (*ws_open)(qb__exsim *sim, qb__exsim_conn *c, const qb__exsim_req *req, int *http_status);
    /* One complete client message (text or binary). Bad input must be
     * answered or ignored, counted, never trusted. Returns nonzero to close
     * the connection. */
    int (*ws_message)(qb__exsim *sim, qb__exsim_conn *c, const char *msg, size_t len, bool binary);

    /* True when req asks for a depth snapshot (subject to snapshot faults). */
    bool (*http_is_snapshot)(const qb__exsim_req *req);
    /* Answers any HTTP request (snapshots included). */
    void (*http_handle)(qb__exsim *sim, const qb__exsim_req *req, qb__exsim_resp *resp);
    /* Fills the exchange's error body for an injected failure status. */
    void (*http_fault)(qb__exsim *sim, int status, qb__exsim_resp *resp);

    int (*encode_depth)(qb__exsim *sim, const qb__exsim_stream *st, const qb__exsim_event *ev,
                        bool combined, qb_buf *out, bool *binary);
    int (*encode_trade)(qb__exsim *sim, const qb__exsim_stream *st, const qb__exsim_trade *t,
                        bool combined, qb_buf *out, bool *binary);
    /* A recorded payload (replay) for st. */
    int (*encode_raw)(qb__exsim *sim, const qb__exsim_stream *st, const char *payload, size_t len,
                      bool combined, qb_buf *out, bool *binary);
    /* The exchange's "going away" notice (Binance serverShutdown). */
    int (*encode_shutdown)(qb__exsim *sim, bool combined, qb_buf *out, bool *binary);
    /* A frame that is not valid JSON, and one of about bytes of valid JSON
     * that no correct client applies. */
    int (*encode_malformed)(qb__exsim *sim, const qb__exsim_stream *st, bool combined, qb_buf *out,
                            bool *binary);
    int (*encode_oversized)(qb__exsim *sim, const qb__exsim_stream *st, size_t bytes, bool combined,
                            qb_buf *out, bool *binary);

    /* Loads a recorded capture (--replay): registers symbols, snapshots and
     * frames with qb__exsim_replay_*(). */
    int (*replay_load)(qb__exsim *sim, const char *path);

    /* Optional: the keepalive as an application message (HTX {"ping":ts});
     * NULL means websocket PING frames (Binance). Writes the frame to out
     * and, into token, what the client's answer must echo; ws_message then
     * reports the answer with qb__exsim_conn_pong(). */
    int (*encode_keepalive)(qb__exsim *sim, qb__exsim_conn *c, char *token, size_t cap, qb_buf *out,
                            bool *binary);

    /* Optional: a 24 h ticker frame for st (K_TICKER) from sym's state. */
    int (*encode_ticker)(qb__exsim *sim, const qb__exsim_stream *st, bool combined, qb_buf *out,
                         bool *binary);
    /* Optional (gzip exchanges): a frame that is not valid gzip, and one
     * whose gzip inflates to about bytes (a bomb). */
    int (*encode_corrupt)(qb__exsim *sim, const qb__exsim_stream *st, qb_buf *out, bool *binary);
    int (*encode_bomb)(qb__exsim *sim, const qb__exsim_stream *st, size_t bytes, qb_buf *out,
                       bool *binary);
    /* Optional: per-connection timer work (delayed replies), called by the
     * housekeeping timer for connections of this exchange. */
    void (*conn_tick)(qb__exsim *sim, qb__exsim_conn *c, uint64_t now_ns);
    /* Optional: sees every generated depth event of sym (already applied
     * to the book) before the faults decide what is sent (HTX: the top-N
     * projections of mbp.5/mbp.20). */
    void (*on_event)(qb__exsim *sim, qb__exsim_sym *sym, const qb__exsim_event *ev);
    /* Optional: releases the exchange's process-wide state at exit. */
    void (*fini)(void);
} qb__exsim_ops;

extern const qb__exsim_ops qb__exsim_binance_ops;
extern const qb__exsim_ops qb__exsim_htx_ops;
extern const qb__exsim_ops qb__exsim_bithumb_ops;

/* The registry (exsim_main.c): every exchange the simulator speaks, one
 * line each, NULL-terminated, in the order of the default --exchange list
 * (its first is the primary exchange: --replay). Routing asks them from
 * the last to the first (exsim_main.c). */
extern const qb__exsim_ops *const qb__exsim_exchanges[];

#define QB__EXSIM_MAX_EXCHANGES 3

/* ---- options (exsim_main.c fills them) ---- */
typedef struct qb__exsim_cfg {
    char *host;
    int64_t port;
    char *port_file;
    char *tls_cert;
    char *tls_key;
    char *stats_file;
    char *dump;
    char *replay;
    char **exchanges; /* --exchange list */
    size_t nexchanges;
    int64_t seed;
    int64_t rate;
    int64_t trade_rate;
    int64_t changes; /* level changes per generated event; 0 = 1..4 at random */
    int64_t events;
    int64_t max_levels;
    int64_t ping_interval_ms;
    int64_t pong_timeout_ms;
    int64_t max_queue;
    int64_t max_msg_bytes;
    int64_t max_streams;
    int64_t max_symbols;
    int64_t max_client_msg_rate; /* client messages per second (0 = no limit) */
    int64_t ticker_every;        /* a ticker after every N depth events (0 = none) */
    /* HTX */
    int64_t htx_ping_interval_ms;
    int64_t htx_max_missed_pings;
    int64_t htx_req_interval_ms;
    int64_t req_fail;
    int64_t corrupt_gzip_every;
    int64_t gzip_bomb_every;
    int64_t gzip_bomb_bytes;
    /* Bithumb */
    int64_t bithumb_idle_ms;
    int64_t bithumb_units;
    /* faults */
    int64_t gap_every;
    int64_t drop_ppm;      /* --drop-rate: depth events dropped at random, per million */
    int64_t drop_after_ms; /* ... from MS ms after each symbol's generation started */
    int64_t drop_for_ms;   /* ... for MS ms from then (0 = for ever) */
    bool drop_corrupt;     /* gzip exchanges: a dropped event arrives as a corrupt gzip frame */
    int64_t dup_every;
    int64_t reorder_every;
    int64_t malformed_every;
    int64_t oversized_every;
    int64_t oversized_bytes;
    int64_t disconnect_every;
    int64_t disconnect_random_ms;     /* random drops: each connection lives ~U(MS/2, 3MS/2) */
    int64_t disconnect_random_for_ms; /* ... during the first MS of the run (0 = always) */
    int64_t bad_input_every;          /* a bad frame after every N-th depth event */
    unsigned bad_input_kinds;         /* QB__EXSIM_BAD_* bits, cycled through in order */
    int64_t stall_after;
    int64_t stall_ms;
    int64_t snapshot_fail;
    int64_t snapshot_fail_status;
    int64_t snapshot_delay_ms;
    int64_t shutdown_after;
    char **symbols; /* allowed symbols (NULL/0 = any) */
    size_t nsymbols;
} qb__exsim_cfg;

/* --bad-input-kinds: frames no correct client may apply (exsim_market.c). */
enum {
    QB__EXSIM_BAD_TRUNCATED = 1u << 0, /* the event's real frame cut in half, then the whole one */
    QB__EXSIM_BAD_UTF8 = 1u << 1,      /* invalid UTF-8 in the strings of a depth-shaped frame */
    QB__EXSIM_BAD_NEST = 1u << 2,      /* a JSON nesting bomb where the levels go */
    QB__EXSIM_BAD_BIGNUM = 1u << 3,    /* numbers of thousands of digits (price, id, time) */
    QB__EXSIM_BAD_ALL = 0xfu,
};

/* ---- counters (the --stats-file object) ---- */
#define QB__EXSIM_COUNTERS(X)                                                                      \
    X(connections)                                                                                 \
    X(connections_total)                                                                           \
    X(http_requests)                                                                               \
    X(events_generated)                                                                            \
    X(events_sent)                                                                                 \
    X(trades_generated)                                                                            \
    X(trades_sent)                                                                                 \
    X(frames_sent)                                                                                 \
    X(bytes_sent)                                                                                  \
    X(snapshots_served)                                                                            \
    X(subscribe_requests)                                                                          \
    X(client_errors)                                                                               \
    X(bad_input)                                                                                   \
    X(slow_consumer_closes)                                                                        \
    X(rate_limit_closes)                                                                           \
    X(pings_sent)                                                                                  \
    X(pongs_received)                                                                              \
    X(pongs_unmatched)                                                                             \
    X(ping_timeouts)                                                                               \
    X(fault_gap)                                                                                   \
    X(fault_drop)                                                                                  \
    X(fault_dup)                                                                                   \
    X(fault_reorder)                                                                               \
    X(fault_malformed)                                                                             \
    X(fault_oversized)                                                                             \
    X(fault_disconnect)                                                                            \
    X(fault_disconnect_random)                                                                     \
    X(fault_bad_input)                                                                             \
    X(fault_bad_truncated)                                                                         \
    X(fault_bad_utf8)                                                                              \
    X(fault_bad_nest)                                                                              \
    X(fault_bad_bignum)                                                                            \
    X(fault_stall)                                                                                 \
    X(fault_stall_dropped)                                                                         \
    X(fault_snapshot_fail)                                                                         \
    X(fault_snapshot_delay)                                                                        \
    X(fault_shutdown)                                                                              \
    X(dumps_written)                                                                               \
    X(tickers_generated)                                                                           \
    X(reqs_served)                                                                                 \
    X(req_rate_limited)                                                                            \
    X(fault_req_fail)                                                                              \
    X(fault_corrupt_gzip)                                                                          \
    X(fault_gzip_bomb)                                                                             \
    X(idle_closes)                                                                                 \
    X(text_pings)                                                                                  \
    X(empty_updates)

typedef struct qb__exsim_stats {
#define QB__EXSIM_CNT_FIELD_(n) uint64_t n;
    QB__EXSIM_COUNTERS(QB__EXSIM_CNT_FIELD_)
#undef QB__EXSIM_CNT_FIELD_
} qb__exsim_stats;

/* ---- streams, symbols ---- */
struct qb__exsim_stream {
    const qb__exsim_ops *ops;        /* the exchange it belongs to */
    char name[QB__EXSIM_STREAM_MAX]; /* exactly as clients spell it */
    unsigned param;                  /* exchange-specific (Bithumb: units, HTX: levels) */
    void *xdata;                     /* exchange-specific state, free()d with the stream */
    qb__exsim_kind kind;
    qb__exsim_sym *sym;
    qb__exsim_conn **subs; /* subscribed connections */
    size_t nsubs, cap;
    qb__exsim_stream *next; /* sim's list */
};

typedef struct qb__exsim_replay_rec {
    qb__exsim_stream *st;
    char *payload; /* the recorded data object */
    size_t len;
    bool is_depth;
    qb__exsim_event *ev; /* parsed depth event (levels, ids) or NULL */
} qb__exsim_replay_rec;

struct qb__exsim_sym {
    const qb__exsim_ops *ops;     /* the exchange it belongs to */
    char name[QB__EXSIM_SYM_MAX]; /* native: BTCUSDT, btcusdt, KRW-BTC */
    qb_book *book;
    size_t depth;          /* levels per side at most */
    uint64_t last_time_ms; /* time of the last depth event */
    uint64_t last_id;      /* lastUpdateId of the book */
    uint64_t n_events;     /* depth events generated (or replayed) */
    uint64_t n_trades;
    bool active;   /* generating */
    bool finished; /* reached --events (or end of replay) */
    uint64_t start_ns;
    /* synthetic generator state (integers in units of 10^-8) */
    uint64_t rng;
    int64_t mid;     /* in ticks */
    int64_t tick;    /* price tick, 1e-8 units */
    int64_t lot;     /* quantity lot, 1e-8 units */
    int64_t qty_max; /* lots */
    /* the pair's reference price, shared by every exchange's book of the
     * pair (exsim_market.c, market_ref_mid) */
    uint64_t ref_rng;
    uint64_t ref_k;       /* index of the current span of the reference path */
    int64_t ref_from;     /* the reference at the start of that span, in ticks */
    int64_t ref_to;       /* ... and at its end */
    int64_t venue_offset; /* this book's own offset from the reference: 0 or 1 tick */
    uint64_t next_trade_id;
    uint64_t idrng;   /* seqNum jumps and empty events (independent of rng) */
    uint64_t droprng; /* --drop-rate draws (independent of rng and idrng) */
    /* 24 h ticker state (1e-8 units; quote volume in 1e-16 units) */
    int64_t t_open, t_high, t_low, t_last, t_prev_close;
    int64_t t_vol;
    unsigned __int128 t_quote_vol;
    uint64_t t_count;
    uint64_t t_last_trade_ms;
    bool t_last_buyer_maker;
    int64_t t_last_qty;
    uint64_t n_tickers;
    /* reorder fault: the event held back, sent after the next one */
    qb__exsim_event *held;
    /* replay */
    qb__exsim_replay_rec *recs;
    size_t nrecs, caprecs, cursor;
    bool replay_synced; /* first event applied per the Binance procedure */
    /* K_DEPTH_1S: changes merged since the last one-second flush */
    struct qb__exsim_agg *agg;
    /* the symbol's streams (fan-out walks only these) */
    qb__exsim_stream **streams;
    size_t nstreams, capstreams;
    qb__exsim_sym *next;
};

/* ---- connections ---- */
typedef struct qb__exsim_qent {
    qb__exsim_frame *f;
    uint8_t flags; /* QB__EXSIM_Q_* */
} qb__exsim_qent;

#define QB__EXSIM_Q_EVENT 1    /* counts as an event sent */
#define QB__EXSIM_Q_TRADE 2    /* counts as a trade sent */
#define QB__EXSIM_Q_CLOSE 4    /* close the connection after writing it */
#define QB__EXSIM_Q_SHUTDOWN 8 /* the shutdown notice */
#define QB__EXSIM_Q_STALL 16   /* start the stall fault once written */

struct qb__exsim_conn {
    qb__exsim *sim;
    const qb__exsim_ops *ops; /* the exchange of its path */
    struct lws *wsi;
    uint64_t id;
    bool combined; /* /stream (wrapped) or /ws (raw) */
    /* subscriptions */
    qb__exsim_stream **streams;
    size_t nstreams, capstreams;
    /* bounded send queue (ring of shared frames); overflow policy: close
     * the connection (slow consumer) */
    qb__exsim_qent *q;
    size_t qcap, qhead, qlen;
    uint64_t events_queued; /* data frames queued, for the per-connection faults */
    bool closing;           /* no more data is queued */
    bool close_now;         /* close at the next WRITEABLE */
    int close_status;
    char close_reason[64];
    /* receive reassembly */
    qb_buf rx;
    bool rx_too_big;
    uint64_t rx_window_ns; /* start of the current one-second window */
    uint32_t rx_in_window;
    /* pings */
    uint64_t next_ping_ns;
    uint64_t ping_seq;
    uint64_t last_ping_ns;
    uint64_t unanswered_since_ns; /* 0 = no ping outstanding */
    char ping_payload[32];
    char ping_prev[32]; /* application pings: the one before (still valid) */
    bool want_ping;
    /* keepalive policy (set from the exchange at open): websocket PINGs
     * with a pong timeout (Binance), or application pings of which at most
     * max_missed may go unanswered (HTX: 2) */
    int64_t ping_interval_ms;
    int64_t pong_timeout_ms;
    int64_t max_missed_pings;
    uint32_t missed_pings;
    /* idle close (Bithumb: 120 s without traffic in either direction) */
    int64_t idle_ms;
    uint64_t last_traffic_ns;
    /* request/reply state of the exchange (HTX req pacing, delayed and
     * failing req; Bithumb: the one request of a connection) */
    uint64_t last_req_ns;
    struct qb__exsim_pending_req {
        uint64_t due_ns;
        char topic[QB__EXSIM_STREAM_MAX];
        char id[72];
    } reqq[QB__EXSIM_PENDING_REQS]; /* delayed req answers, in order */
    size_t nreq;
    /* random disconnect fault: when this connection is dropped (0: not yet drawn) */
    uint64_t random_drop_ns;
    /* stall fault */
    bool stalled_once;
    bool stall_pending; /* the stall starts when its frame is written */
    uint64_t stall_until_ns;
    qb__exsim_conn *next; /* sim's list */
};

struct qb__exsim {
    const qb__exsim_ops *ops; /* the first --exchange (replay, defaults) */
    const qb__exsim_ops *exch[QB__EXSIM_MAX_EXCHANGES];
    size_t nexch;
    qb__exsim_cfg *cfg;
    qb__exsim_stats st;
    struct lws_context *ctx;
    struct lws_vhost *vh;
    int port;
    qb__exsim_sym *syms;
    size_t nsyms;
    qb__exsim_stream *streams;
    size_t nstreams; /* bounded: QB__EXSIM_STREAMS_PER_SYM per allowed symbol */
    qb__exsim_conn *conns;
    uint64_t next_conn_id;
    bool replay_mode;
    int64_t snapshot_fail_left;
    int64_t req_fail_left;
    qb_buf scratch; /* frame encoding */
    bool dump_pending;
    bool stopping;
};

/* ---- exsim_market.c ---- */

/* Returns ops' symbol named native (created with a fresh synthetic book
 * when create is set, the mode allows it, the name is allowed and fewer
 * than --max-symbols exist), or NULL. */
qb__exsim_sym *qb__exsim_sym_get(qb__exsim *sim, const qb__exsim_ops *ops, const char *native,
                                 bool create);
/* Starts generation (or replay) for sym if it is not running. */
void qb__exsim_sym_activate(qb__exsim *sim, qb__exsim_sym *sym);
/* Returns ops' stream named name (created when absent), or NULL on ENOMEM
 * or when the simulator already holds --max-symbols * 16 streams. */
qb__exsim_stream *qb__exsim_stream_get(qb__exsim *sim, const qb__exsim_ops *ops, const char *name,
                                       qb__exsim_sym *sym, qb__exsim_kind kind);
/* The market timer: generates or replays what is due. Service thread. */
void qb__exsim_market_start(qb__exsim *sim);
void qb__exsim_market_stop(qb__exsim *sim);
void qb__exsim_market_free(qb__exsim *sim);
/* Writes --dump atomically (no-op without --dump). */
int qb__exsim_dump_write(qb__exsim *sim);

/* Replay loading (called by ops->replay_load). A symbol with its recorded
 * snapshot (levels best first or any order, last_id = lastUpdateId). */
qb__exsim_sym *qb__exsim_replay_symbol(qb__exsim *sim, const char *native, const qb_level *bids,
                                       size_t nb, const qb_level *asks, size_t na,
                                       uint64_t last_id);
/* Appends a recorded frame for sym on stream st; ev (taken over, may be
 * NULL; one malloc block, see qb__exsim_event_new) is the parsed depth
 * event. payload is copied. */
int qb__exsim_replay_frame(qb__exsim *sim, qb__exsim_sym *sym, qb__exsim_stream *st,
                           const char *payload, size_t len, qb__exsim_event *ev);

/* One malloc block holding an event and room for nb bids and na asks
 * (n_bids/n_asks start at 0). free() it. NULL on ENOMEM. */
qb__exsim_event *qb__exsim_event_new(size_t nb, size_t na);

/* Formats v (units of 10^-8) as a JSON number. QB__EXSIM_NUM_PLAIN:
 * shortest plain decimal ("95340000", "0.0007"); QB__EXSIM_NUM_JAVA: like
 * Java's Double.toString, the way HTX prints: at least one fractional
 * digit ("716.0"), exponent form below 10^-3 and from 10^7 ("1.58E-4").
 * Exact: the text denotes exactly v * 10^-8. */
typedef enum { QB__EXSIM_NUM_PLAIN = 0, QB__EXSIM_NUM_JAVA = 1 } qb__exsim_numfmt;
int qb__exsim_num(qb_buf *b, int64_t v, qb__exsim_numfmt fmt);
/* The same for an unsigned 128-bit value in units of 10^-16, printed with
 * at most 8 decimals (truncated; ticker turnover). */
int qb__exsim_num128(qb_buf *b, unsigned __int128 v16);
/* The depth event time stamp clock (ms since the epoch). */
uint64_t qb__exsim_now_ms(void);

/* Integer price/size in units of 10^-8 to a qb_dec of scale 8. */
static inline qb_dec qb__exsim_dec8(int64_t v)
{
    return (qb_dec){v, 8};
}

/* ---- exsim_server.c ---- */
int qb__exsim_server_start(qb__exsim *sim);
void qb__exsim_server_stop(qb__exsim *sim);
void qb__exsim_server_housekeeping(qb__exsim *sim);
int qb__exsim_stats_write(qb__exsim *sim);

/* Subscribes c to st (idempotent). QB_OK, QB_ERANGE past --max-streams. */
int qb__exsim_subscribe(qb__exsim_conn *c, qb__exsim_stream *st);
/* Unsubscribes c from st (no-op when not subscribed). */
void qb__exsim_unsubscribe(qb__exsim_conn *c, qb__exsim_stream *st);

/* Frames: a shared, reference-counted, ready-to-write websocket payload. */
struct qb__exsim_frame {
    int refs;
    bool binary;
    size_t len;    /* payload bytes (after LWS_PRE) */
    uint8_t buf[]; /* LWS_PRE + len */
};
/* An encoder returning QB_EEOF has nothing to send for that stream (HTX
 * mbp.5: the top 5 did not change); the fan-out skips it silently. */
/* Makes a frame from sim->scratch (which holds LWS_PRE + payload). */
qb__exsim_frame *qb__exsim_frame_from_scratch(qb__exsim *sim, bool binary);
void qb__exsim_frame_unref(qb__exsim_frame *f);
/* Resets sim->scratch to LWS_PRE bytes of headroom and returns it. */
qb_buf *qb__exsim_scratch(qb__exsim *sim);

/* Queues f on c (takes a reference). flags: QB__EXSIM_Q_*. Applies the
 * per-connection faults (disconnect, stall, shutdown) for event frames.
 * Returns false when the frame was not queued. */
bool qb__exsim_conn_queue(qb__exsim_conn *c, qb__exsim_frame *f, uint8_t flags);
/* Queues a copy of text (control responses). */
void qb__exsim_conn_send_text(qb__exsim_conn *c, const char *text, size_t len);
/* Closes c at its next WRITEABLE with a websocket close status. */
void qb__exsim_conn_close(qb__exsim_conn *c, int status, const char *reason);
/* A keepalive answer from c (a PONG frame's payload, or an application
 * pong's token): clears the pending ping when it echoes the latest one. */
void qb__exsim_conn_pong(qb__exsim_conn *c, const void *payload, size_t len);
/* Sends the exchange's shutdown notice and closes. */
void qb__exsim_conn_shutdown(qb__exsim_conn *c);
/* Queues the frame in sim->scratch (control reply, not an event). */
void qb__exsim_conn_send_scratch(qb__exsim_conn *c, bool binary);

#endif
