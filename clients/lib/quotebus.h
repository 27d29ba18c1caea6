/*
 * quotebus.h: libquotebus, the C client library of quotebus (the one public
 * header; build with `cc app.c $(pkg-config --cflags --libs quotebus)` or
 * CMake `find_package(quotebus)` + `target_link_libraries(app quotebus::client)`).
 *
 * Two APIs:
 *
 *   qb_subscriber  receive decoded messages of the topics you subscribe to
 *                  (blocking receive with a timeout); per-topic sequence
 *                  gaps are reported on each message (qb_message.gap) and
 *                  in the counters: a slow consumer is reported, not hidden.
 *
 *   qb_mirror      keep exact local copies of order books: the mirror
 *                  subscribes, fetches snapshots from the broker's snapshot
 *                  service (late joiners get the book at once), applies
 *                  deltas, detects gaps and re-fetches by itself, and also
 *                  takes the refresh snapshots of the stream. Best bid/ask,
 *                  the top N levels, seq and status are read with accessors
 *                  from any thread; a change callback runs on its thread.
 *
 *   broker PUB --NNG sub--> [qb_mirror thread] --lock--> books <--lock-- accessors (any thread)
 *   broker REP <--NNG req--/      |
 *                                 +--> on_change(topic)  (mirror thread, no lock held)
 *
 * Conventions (every function below follows them):
 *   - Functions that can fail return an int: QB_OK (0) or a positive
 *     QB_E* code from enum qb_error; qb_strerror() names it.
 *   - Out-params are written only on success.
 *   - _close(NULL) and _free(NULL) are no-ops.
 *   - Strings passed in are copied during the call unless said otherwise.
 *   - Prices and sizes are exact decimals (qb_decimal), never floating point.
 *   - Times are uint64 nanoseconds: wall clock since the Unix epoch (UTC)
 *     for exchange/receive times, "ms ago" for ages.
 *   - The library logs warnings on stderr, one line per event with a stable
 *     id ("mirror.gap", "mirror.snapshot_failed", "mirror.close_stuck",
 *     ...), rate-limited; counters (the _stats_get functions) carry the
 *     same information for programs.
 *
 * The wire protocol and the snapshot service are specified in the project's
 * proto/PROTOCOL.md; this library is one implementation of its subscriber
 * and late-joiner procedures.
 */
#ifndef QUOTEBUS_H
#define QUOTEBUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define QB_API __attribute__((visibility("default")))
#else
#define QB_API
#endif

#define QUOTEBUS_VERSION_MAJOR 0
#define QUOTEBUS_VERSION_MINOR 1
#define QUOTEBUS_VERSION_PATCH 0

/* Default endpoints of a local broker. */
#define QB_DEFAULT_PUB_URL "ipc:///tmp/quotebus/pub.ipc"
#define QB_DEFAULT_SNAPSHOT_URL "ipc:///tmp/quotebus/snapshot.ipc"

/* ---- errors ------------------------------------------------------------
 * X(name, value, text): the project's one error table. The values are part
 * of the ABI and never change; the library checks at build time that they
 * equal the ones used inside quotebus. */
#define QUOTEBUS_ERRORS(X)                                                                         \
    X(QB_OK, 0, "success")                                                                         \
    X(QB_EINVAL, 1, "invalid argument")                                                            \
    X(QB_ENOMEM, 2, "out of memory")                                                               \
    X(QB_ERANGE, 3, "value out of range")                                                          \
    X(QB_EPARSE, 4, "malformed input")                                                             \
    X(QB_EVERSION, 5, "unsupported schema version")                                                \
    X(QB_ETOOBIG, 6, "too large")                                                                  \
    X(QB_ENOTFOUND, 7, "not found")                                                                \
    X(QB_EGAP, 8, "sequence gap")                                                                  \
    X(QB_ECROSSED, 9, "crossed book")                                                              \
    X(QB_ETRANSPORT, 10, "transport error")                                                        \
    X(QB_ECLOSED, 11, "closed")                                                                    \
    X(QB_ETIMEDOUT, 12, "timed out")                                                               \
    X(QB_EAGAIN, 13, "try again")                                                                  \
    X(QB_ESTATE, 14, "invalid state")                                                              \
    X(QB_EIO, 15, "I/O error")                                                                     \
    X(QB_EEOF, 16, "end of data")                                                                  \
    X(QB_EUNSUPPORTED, 17, "not supported")                                                        \
    X(QB_ENOINSTRUMENT, 18, "no such instrument")

/* (Inside quotebus, where these names come from the project's err.h, the
 * enum is left out with QUOTEBUS_NO_ERROR_ENUM.) */
#ifndef QUOTEBUS_NO_ERROR_ENUM
typedef enum qb_error {
#define QUOTEBUS_ERROR_ENUM_(name, value, text) name = value,
    QUOTEBUS_ERRORS(QUOTEBUS_ERROR_ENUM_)
#undef QUOTEBUS_ERROR_ENUM_
} qb_error;
#endif

/* A static string for any code ("unknown error" for unknown ones). Any
 * thread. */
QB_API const char *qb_strerror(int err);

/* The library's version, "0.1.0". Any thread. */
QB_API const char *qb_version(void);

/* ---- decimals ---------------------------------------------------------- */

/* value = mantissa * 10^-scale, exactly; scale in -30..30. {10050, 2} is
 * 100.50. Compare by value with qb_decimal_cmp (1.5 == 1.50). */
typedef struct qb_decimal {
    int64_t mantissa;
    int8_t scale;
} qb_decimal;

/* Longest text qb_decimal_format writes, NUL included. */
#define QB_DECIMAL_STR_MAX 64

/* Writes plain decimal text ("100.50", never an exponent) and a NUL.
 * Returns the length, or -1 when cap is too small (QB_DECIMAL_STR_MAX
 * always suffices). Any thread. */
QB_API int qb_decimal_format(qb_decimal d, char *buf, size_t cap);

/* Parses "[+-]digits[.digits][e[+-]digits]" exactly (the whole string).
 * QB_OK, QB_EPARSE or QB_ERANGE. Any thread. */
QB_API int qb_decimal_parse(const char *text, qb_decimal *out);

/* <0, 0, >0 as a is less than, equal to or greater than b, by value. */
QB_API int qb_decimal_cmp(qb_decimal a, qb_decimal b);

typedef struct qb_price_level {
    qb_decimal price;
    qb_decimal size; /* absolute size at the price; 0 deletes (deltas only) */
} qb_price_level;

/* ---- messages ---------------------------------------------------------- */

typedef enum qb_message_type {
    QB_MESSAGE_SNAPSHOT = 1,
    QB_MESSAGE_DELTA = 2,
    QB_MESSAGE_TRADE = 3,
    QB_MESSAGE_STATUS = 4,
    QB_MESSAGE_TICKER = 5,
} qb_message_type;

/* An instrument's feed state (status messages), PROTOCOL.md 4.5. */
typedef enum qb_feed_status {
    QB_STATUS_SYNCING = 0,   /* connecting or waiting for the first snapshot */
    QB_STATUS_LIVE = 1,      /* in sync, updates flowing */
    QB_STATUS_STALE = 2,     /* in sync, but no update for longer than expected */
    QB_STATUS_RESYNCING = 3, /* gap upstream: a new snapshot is being fetched */
    QB_STATUS_DOWN = 4,      /* the exchange is unreachable */
} qb_feed_status;

typedef enum qb_taker_side {
    QB_TAKER_UNKNOWN = 0,
    QB_TAKER_BUY = 1,
    QB_TAKER_SELL = 2,
} qb_taker_side;

/* "snapshot", "delta", ...; "live", "stale", ...; "buy", "sell", "unknown". */
QB_API const char *qb_message_type_name(qb_message_type t);
QB_API const char *qb_feed_status_name(qb_feed_status s);
QB_API const char *qb_taker_side_name(qb_taker_side s);

/* One decoded message. Allocated by the library (qb_subscriber_recv) and
 * owned by the caller, who frees it with qb_message_free(); every pointer
 * inside points into the same allocation and stays valid until then. A
 * message is immutable and may be passed to and freed by any thread.
 * Fields that do not belong to the message's type are zero. Later versions
 * only append fields (never allocate a qb_message yourself). */
typedef struct qb_message {
    qb_message_type type;
    const char *topic;         /* "book.binance.BTC-USDT" */
    const char *exchange;      /* "binance" */
    const char *symbol;        /* "BTC-USDT" */
    const char *native_symbol; /* "BTCUSDT" */
    uint64_t seq;              /* per topic, +1 per message */
    uint64_t exchange_ts_ns;   /* exchange event time; 0 unknown */
    uint64_t receive_ts_ns;    /* when the adapter received it */
    /* Messages of this topic lost just before this one (a seq jump seen by
     * this subscriber: a slow consumer, or a broker restart); 0 when in
     * sequence. A snapshot rebases and never reports a gap. */
    uint64_t gap;

    /* QB_MESSAGE_SNAPSHOT and QB_MESSAGE_DELTA */
    uint64_t first_id, last_id; /* the exchange's update ids (informational) */
    const qb_price_level *bids; /* snapshot: all, best first; delta: changes */
    size_t n_bids;
    const qb_price_level *asks;
    size_t n_asks;
    bool refresh; /* snapshot repeating the last seq (periodic refresh) */

    /* QB_MESSAGE_TRADE */
    uint64_t trade_id;
    qb_decimal price, qty;
    qb_taker_side side;

    /* QB_MESSAGE_STATUS */
    qb_feed_status status;
    const char *reason; /* for people, not programs */

    /* QB_MESSAGE_TICKER (has_* false when the exchange does not send it) */
    qb_decimal last, bid, bid_qty, ask, ask_qty, volume_24h, change_24h;
    bool has_bid, has_ask, has_volume, has_change;
} qb_message;

/* Frees a message from qb_subscriber_recv. NULL is a no-op. Any thread. */
QB_API void qb_message_free(qb_message *m);

/* ---- subscriber --------------------------------------------------------
 * Thread rules: a subscriber is used by one thread at a time (open,
 * subscribe, recv, close); qb_subscriber_stats_get may be called from any
 * thread while another receives. */

typedef struct qb_subscriber qb_subscriber;

/* Opens a subscriber connected (in the background: the broker need not be
 * up yet; NNG redials after a broker restart) to the broker's publish
 * address url (NULL: QB_DEFAULT_PUB_URL; "tcp://127.0.0.1:7781" works too).
 * It receives nothing until qb_subscriber_subscribe(). Returns QB_OK and
 * writes *out (the caller owns it: qb_subscriber_close), QB_EINVAL (bad
 * url), QB_ETRANSPORT or QB_ENOMEM. */
QB_API int qb_subscriber_open(const char *url, qb_subscriber **out);

/* Subscribes to topics starting with topic: "book." (every book),
 * "book.binance." (every Binance book), "trade.", "status.", ... An argument
 * with two dots that does not end in '.' is an exact topic
 * ("book.binance.BTC-USDT": never BTC-USDTX). "" receives everything.
 * QB_OK, QB_EINVAL (longer than 128 bytes, a byte no topic has, or two
 * dots without a trailing '.' that make no valid topic: PROTOCOL.md
 * section 3), QB_ETRANSPORT. */
QB_API int qb_subscriber_subscribe(qb_subscriber *s, const char *topic);
/* Undoes one qb_subscriber_subscribe(topic). QB_OK, QB_ENOTFOUND. */
QB_API int qb_subscriber_unsubscribe(qb_subscriber *s, const char *topic);

/* Receives the next message, waiting at most timeout_ms (0: only what is
 * queued; negative: forever). Returns QB_OK and writes *out (caller frees
 * with qb_message_free), QB_ETIMEDOUT, QB_ENOMEM, or QB_ETRANSPORT.
 * Invalid frames are skipped and counted (invalid in the stats). Messages
 * the broker could not deliver because this subscriber read too slowly
 * (its queue holds 8192 frames; NNG drops when it is full) show up as
 * qb_message.gap on the next message of the topic. */
QB_API int qb_subscriber_recv(qb_subscriber *s, int timeout_ms, qb_message **out);

typedef struct qb_subscriber_stats {
    uint64_t frames;   /* frames received */
    uint64_t messages; /* messages returned */
    uint64_t invalid;  /* frames dropped as invalid */
    uint64_t gaps;     /* seq jumps seen (slow consumer or broker restart) */
    uint64_t missed;   /* messages missing in those jumps */
} qb_subscriber_stats;

/* Copies the counters. Any thread. */
QB_API void qb_subscriber_stats_get(qb_subscriber *s, qb_subscriber_stats *out);

/* Closes the connection and frees the subscriber. Messages already
 * received stay valid (they are independent allocations). NULL is a
 * no-op. Not while another thread is inside qb_subscriber_recv(s).
 * Returns within about 2 s even when NNG 1.5.2's own close hangs (a known
 * NNG defect when frames arrive during the close, nanomsg/nng#1543): the
 * socket is then left to NNG and a warning "subscriber.close_stuck" is
 * logged on stderr. */
QB_API void qb_subscriber_close(qb_subscriber *s);

/* ---- book mirror -------------------------------------------------------
 * Thread rules: qb_mirror_open/qb_mirror_close on any one thread; the
 * mirror runs its own thread, which receives, fetches snapshots, applies
 * changes under the mirror's lock and calls on_change with no lock held.
 * All accessors (qb_mirror_info, _levels, _list, _wait_live, _check_topic,
 * _stats_get) may be called from any thread, including from on_change
 * (except _wait_live); each takes the lock briefly and copies out. */

typedef struct qb_mirror qb_mirror;

/* The state of one mirrored book. */
typedef enum qb_mirror_state {
    QB_MIRROR_SYNCING = 0,   /* no exact book yet (waiting for a snapshot) */
    QB_MIRROR_LIVE = 1,      /* exact, in sequence */
    QB_MIRROR_RESYNCING = 2, /* a gap was seen: the levels are the last exact
                                state (seq), a new snapshot is on its way */
} qb_mirror_state;

QB_API const char *qb_mirror_state_name(qb_mirror_state s); /* "syncing", ... */

/* Called on the mirror's thread after a book changed (snapshot, delta,
 * state or status change), with no lock held. topic is valid during the
 * call only. It may call the accessors; it must not call qb_mirror_close
 * and should return quickly (the mirror does not receive meanwhile). */
typedef void (*qb_mirror_change_fn)(void *arg, qb_mirror *m, const char *topic);

typedef struct qb_mirror_config {
    const char *connect;       /* broker publish address; NULL: QB_DEFAULT_PUB_URL */
    const char *snapshot;      /* snapshot service; NULL: QB_DEFAULT_SNAPSHOT_URL;
                                  "": none (books then come from the stream's
                                  refresh snapshots only, within ~1 s) */
    const char *const *topics; /* book topics or prefixes: "book.binance.BTC-USDT",
                                  "book.binance.", "book." (at least one) */
    size_t n_topics;
    qb_mirror_change_fn on_change; /* may be NULL */
    void *arg;                     /* passed to on_change */
    int snapshot_timeout_ms;       /* per request; 0: 2000 */
    size_t max_books;              /* books tracked; 0: 10000 (others ignored, counted) */
} qb_mirror_config;

/* Opens a mirror and starts its thread; books become LIVE as snapshots
 * arrive (qb_mirror_wait_live). cfg and its strings are copied. Returns
 * QB_OK and writes *out (caller owns it: qb_mirror_close), QB_EINVAL (no
 * topic, a topic not starting with "book." or refused by
 * qb_subscriber_subscribe's rule, a bad url), QB_ETRANSPORT,
 * QB_ENOMEM. */
QB_API int qb_mirror_open(const qb_mirror_config *cfg, qb_mirror **out);

/* Stops the thread (no on_change after this returns), closes the sockets
 * and frees everything. NULL is a no-op. Not from on_change. Bounded like
 * qb_subscriber_close (about 2 s per socket at worst, "mirror.close_stuck"). */
QB_API void qb_mirror_close(qb_mirror *m);

#define QB_TOPIC_MAX_LEN 128
#define QB_NAME_MAX_LEN 64

/* A copy of one book's summary. */
typedef struct qb_book_info {
    char topic[QB_TOPIC_MAX_LEN + 1];
    char exchange[QB_NAME_MAX_LEN + 1];
    char symbol[QB_NAME_MAX_LEN + 1];
    qb_mirror_state state;
    bool has_status;       /* a status message was seen (from the stream or
                              the snapshot service) */
    qb_feed_status status; /* the instrument's feed state at the adapter */
    uint64_t seq;          /* seq of the last change applied */
    size_t n_bids, n_asks; /* depth */
    bool has_bid, has_ask;
    qb_price_level best_bid, best_ask;
    uint64_t exchange_ts_ns; /* of the last change; 0 unknown */
    uint64_t age_ms;         /* since the last message of this book arrived */
    uint64_t gaps;           /* gaps detected on this book */
    uint64_t snapshots;      /* snapshots applied (service + stream) */
} qb_book_info;

/* Copies the summary of the book with exactly this topic. QB_OK, or
 * QB_ENOTFOUND (not mirrored, or nothing received for it yet). */
QB_API int qb_mirror_info(qb_mirror *m, const char *topic, qb_book_info *out);

typedef enum qb_book_side_sel {
    QB_BIDS = 0,
    QB_ASKS = 1,
} qb_book_side_sel;

/* Copies up to max levels of one side, best first, into out; writes the
 * number copied to *n_out and the book's seq to *seq_out (may be NULL).
 * All from one consistent state of the book. QB_OK, QB_ENOTFOUND,
 * QB_EINVAL. */
QB_API int qb_mirror_levels(qb_mirror *m, const char *topic, qb_book_side_sel side,
                            qb_price_level *out, size_t max, size_t *n_out, uint64_t *seq_out);

/* Copies the summaries of up to max books (in the order they were first
 * seen) into out and returns the number of books mirrored (may exceed max).
 * out may be NULL when max is 0. */
QB_API size_t qb_mirror_list(qb_mirror *m, qb_book_info *out, size_t max);

/* Waits until the book topic is LIVE (or, with topic NULL, until every
 * book the mirror knows is LIVE and it knows at least one). QB_OK or
 * QB_ETIMEDOUT. Not from on_change. */
QB_API int qb_mirror_wait_live(qb_mirror *m, const char *topic, int timeout_ms);

/* Whether one of the configured topics (cfg->topics[i], given exactly as
 * configured: "book.binance.BTC-USDT" or a prefix "book.binance.") names
 * instruments that exist. Never blocks: it reports what the mirror's
 * thread has learnt from the stream and the snapshot service. Any thread,
 * including from on_change. Returns:
 *   QB_OK             a book of it is mirrored (from the stream or the
 *                     service);
 *   QB_ENOINSTRUMENT  no book of it is mirrored, the snapshot service's
 *                     last answer for it was "no such topic" and the mirror
 *                     has been open for 2 s (time for a broker that is
 *                     itself starting to learn its instruments): a misspelt
 *                     exchange or symbol, or an instrument the broker is not
 *                     configured for. Not final: the mirror keeps asking
 *                     (every 5 s at most) and a book that appears later
 *                     turns this back to QB_OK;
 *   QB_EAGAIN         not known yet (within the first 2 s, the service not
 *                     answering, or configured without one: snapshot "");
 *   QB_ENOTFOUND      topic is not one of the configured topics;
 *   QB_EINVAL         m or topic NULL, or hint NULL with hint_cap > 0.
 * On QB_ENOINSTRUMENT, when hint_cap > 0, writes to hint (NUL-terminated,
 * truncated to hint_cap) what the broker has, for people: "binance
 * BTC-USDT ETH-USDT, htx BTC-USDT" or "no books" ("" when the service could
 * not say); hint is not written otherwise. Added in 0.1 (QB_ENOINSTRUMENT
 * too). */
QB_API int qb_mirror_check_topic(qb_mirror *m, const char *topic, char *hint, size_t hint_cap);

typedef struct qb_mirror_stats {
    uint64_t frames;            /* frames received from the stream */
    uint64_t invalid;           /* frames dropped as invalid */
    uint64_t deltas;            /* deltas applied */
    uint64_t gaps;              /* gaps detected (all books) */
    uint64_t snapshot_requests; /* requests sent to the snapshot service */
    uint64_t snapshot_failures; /* requests without a usable reply (timeout,
                                   transport, error reply) */
    uint64_t service_snapshots; /* books applied from the snapshot service */
    uint64_t stream_snapshots;  /* snapshots applied from the stream */
    uint64_t stale_dropped;     /* buffered deltas dropped as already in a snapshot */
    uint64_t untracked;         /* messages of books past max_books */
    uint64_t books;             /* books mirrored (gauge) */
    uint64_t books_live;        /* of which LIVE (gauge) */
    /* Appended in 0.1 after the fields above (their order is ABI): */
    uint64_t restarts;   /* publisher restarts seen on the stream (a book's
                            seq went back): the book was invalidated and
                            resynced ("mirror.publisher_restart") */
    uint64_t reconnects; /* reconnections to the broker (it may be a new
                            process): every book was invalidated and
                            resynced ("mirror.reconnected") */
} qb_mirror_stats;

/* Copies the counters. Any thread. */
QB_API void qb_mirror_stats_get(qb_mirror *m, qb_mirror_stats *out);

#ifdef __cplusplus
}
#endif

#endif
