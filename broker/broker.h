/*
 * broker.h: the broker's ingest and fan-out core (library qbbroker), the
 * part of quotebus-broker that moves messages; broker/main.c wraps it with
 * options, child supervision and stats files.
 *
 *   adapters --NNG pub--> [ingest SUB, listens] --ingest thread--> [PUB, listens] --> subscribers
 *                                     |  validate (qb_decoder, every map)
 *                                     |  per-topic state (topics.h): seq checks, books
 *                                     |  forward the SAME nng_msg (encoded once)
 *
 * One ingest thread receives each frame, validates all of it, updates the
 * per-topic state and hands the very nng_msg it received to the PUB socket:
 * NNG's pub0 takes a reference per subscriber pipe (nni_msg_clone), so a
 * frame is never copied or re-encoded per subscriber. Invalid frames are
 * dropped, counted by kind and logged at most once per kind per second.
 *
 * Topic ownership (PROTOCOL.md 1): the first connection (NNG pipe) that
 * publishes a topic owns it; a valid frame of that topic from any other
 * pipe is refused whole, before any state changes (rogue_publisher), with a
 * log line (ingest.rogue_publisher) and a status message on
 * status.quotebus.broker naming the topic and both publishers, each at most
 * once per topic per QB_BROKER_ROGUE_NOTICE_MS. Ownership passes to another
 * pipe only once the owner's pipe has closed (an adapter restarted). Frames
 * the broker publishes itself (qb_broker_publish) are never refused and own
 * nothing; the broker's own topics (exchange "quotebus") belong to it alone.
 * tls+tcp:// addresses require mutual TLS (qb_broker_config).
 *
 * Overflow policies (all bounded): each subscriber pipe queues at most
 * QB_BROKER_SENDBUF frames ("drop oldest", NNG pub0; the subscriber sees the
 * gap by seq and heals from the next refresh snapshot); the ingest queue
 * holds at most QB_BROKER_RECVBUF frames ("drop oldest", NNG sub0; the broker
 * sees the gap by seq); the topic table holds at most max_topics topics
 * ("forward without state").
 *
 * Readers of the books on other threads (the websocket endpoint ws.h, the
 * snapshot service snapshot.h) take the one state lock, which the ingest
 * thread holds only while it applies a frame (and hands it to the tap, so
 * a copied book is never older than a frame already handed over); they
 * hold it for a memcpy of the levels and encode after unlocking.
 *
 * Threads: qb_broker_new/qb_broker_free on one thread; qb_broker_stats_get,
 * qb_broker_topic_get, qb_broker_each_topic, qb_broker_snapshot_frame and
 * qb_broker_set_tap from any thread.
 */
#ifndef QB_BROKER_H
#define QB_BROKER_H

#include "book.h"
#include "buf.h"
#include "nngtls.h"
#include "topics.h"

#include <stddef.h>
#include <stdint.h>

/* The largest queue NNG 1.5.2 accepts; its defaults (16 on pub0, 128 on
 * sub0) drop silently under a few hundred messages in flight. */
#define QB_BROKER_RECVBUF 8192
#define QB_BROKER_SENDBUF 8192

typedef struct qb_broker qb_broker;

/* The broker's own status topic, "status.quotebus.broker": events of the
 * broker itself (a listener re-created), PROTOCOL.md 4.5. */
#define QB_BROKER_STATUS_EX "quotebus"
#define QB_BROKER_STATUS_SYM "broker"

/* A refused publisher is logged and said on the bus at most once per topic
 * per this period (and at most QB_BROKER_ROGUE_NOTICES topics per period). */
#define QB_BROKER_ROGUE_NOTICE_MS 10000u
#define QB_BROKER_ROGUE_NOTICES 32u

typedef struct qb_broker_config {
    const char *const *ingest_urls; /* SUB listens here (ipc://..., tcp://...) */
    size_t n_ingest;
    const char *const *pub_urls; /* PUB listens here */
    size_t n_pub;
    size_t max_topics; /* 0: QB_TOPICS_DEFAULT_MAX */
    /* Mutual TLS of the tls+tcp:// addresses of each list (nngtls.h): the
     * broker's certificate and key, and the CA that must have signed every
     * client's certificate (clients without one are refused in the
     * handshake). All three are required when the list has a tls+tcp://
     * address; unused otherwise. */
    qb_tls_files ingest_tls;
    qb_tls_files pub_tls;
    /* Claims, probes and repairs the listeners (listeners.h); the caller
     * starts it after adding every socket, stops it before qb_broker_free
     * and frees it after. NULL: the broker makes and runs its own. */
    struct qb_listeners *listeners;
} qb_broker_config;

/* Counters since start (monotonic) and gauges (topics, books, books_valid),
 * X(name, help): one list for the struct, the stats file and the logs. */
#define QB_BROKER_STATS(X)                                                                         \
    X(frames_in, "frames received on ingest, valid or not")                                        \
    X(frames_out, "frames handed to the PUB socket")                                               \
    X(bytes_in, "bytes received on ingest")                                                        \
    X(messages_in, "valid messages (maps; a frame holds one or more)")                             \
    X(bad_msgpack, "frames dropped: invalid msgpack, missing or ill-typed field")                  \
    X(bad_version, "frames dropped: unsupported schema version")                                   \
    X(oversized, "frames dropped: over QB_MSG_MAX_FRAME or too many levels")                       \
    X(bad_topic, "frames dropped: malformed topic, or topic not matching its message")             \
    X(rogue_publisher, "frames dropped: a topic published by another connection than its owner")   \
    X(resyncs, "resyncs begun: a feed's state changed to resyncing")                               \
    X(ingest_gaps, "seq jumps on ingest (messages the broker missed)")                             \
    X(duplicates, "messages with seq <= the last one (not applied)")                               \
    X(crossed, "books found crossed after a change (invalid until the next snapshot)")             \
    X(book_errors, "changes a book could not take (invalid until the next snapshot)")              \
    X(untracked, "frames of topics past --max-topics (forwarded without state)")                   \
    X(send_errors, "frames the PUB socket refused (dropped)")                                      \
    X(ingest_connects, "publisher connections accepted on ingest")                                 \
    X(ingest_disconnects, "publisher connections closed on ingest")                                \
    X(topics, "tracked topics (gauge)")                                                            \
    X(books, "tracked books (gauge)")                                                              \
    X(books_valid, "tracked books in sequence (gauge)")

typedef struct qb_broker_stats {
#define QB_BROKER_STATS_FIELD_(name, help) uint64_t name;
    QB_BROKER_STATS(QB_BROKER_STATS_FIELD_)
#undef QB_BROKER_STATS_FIELD_
} qb_broker_stats;

/* Opens both sockets (sizing their buffers), creates the directories of
 * ipc:// paths (an ingest address's directory mode 0700: only the broker's
 * user may connect), listens on every address and starts the ingest thread.
 * Returns QB_OK and writes *out, or an error (QB_EINVAL for a bad config or
 * an unusable TLS file,
 * QB_ETRANSPORT when an address cannot be listened on, QB_ENOMEM), having
 * logged the reason; on error nothing is left open. cfg is read during the
 * call only. */
int qb_broker_new(const qb_broker_config *cfg, qb_broker **out);

/* Stops the ingest thread (within its 100 ms receive tick), closes the
 * sockets and frees everything. NULL is a no-op. NNG 1.5.2 can hang in
 * nng_close() while traffic is in flight (nanomsg/nng#1543): each close is
 * given 1 s, after which that socket is abandoned (logged as
 * broker.close_stuck) so that shutdown always completes. */
void qb_broker_free(qb_broker *b);

/* Publishes a frame the broker itself encoded (qb_msg_encode; the
 * supervisor's status messages) through its own ingest, like an adapter:
 * it is validated, applied to the topic state and fanned out in order with
 * every other frame. The first call opens a PUB socket dialing the ingest
 * (the ipc:// address if any), synchronously. frame is copied. QB_OK or
 * QB_ETRANSPORT (logged, rate-limited). Any thread. */
int qb_broker_publish(qb_broker *b, const void *frame, size_t len);

/* Publishes, through qb_broker_publish, a status message the broker itself
 * encodes on "status.<ex>.<sym>": state, reason, native symbol nsym (NULL:
 * the topic's last known one, else sym), seq = the topic's last seq + 1.
 * QB_OK, QB_EINVAL (not a valid topic), QB_ETRANSPORT. Any thread. */
int qb_broker_publish_status(qb_broker *b, const char *ex, const char *sym, const char *nsym,
                             qb_feed_state state, const char *reason);

/* The supervisor's adapter counters, set by its owner (main) and read by
 * /metrics (quotebus_adapter_restarts_total, ..._hung_kills_total,
 * quotebus_adapters_failed) and /health: failed counts adapters stopped for
 * good (exit status 2: bad options). Any thread. */
void qb_broker_set_adapter_counts(qb_broker *b, uint64_t restarts, uint64_t hung_kills,
                                  uint64_t failed);
void qb_broker_adapter_counts(qb_broker *b, uint64_t *restarts, uint64_t *hung_kills,
                              uint64_t *failed);

/* Copies the current counters. Any thread. */
void qb_broker_stats_get(qb_broker *b, qb_broker_stats *out);

/* Looks up a topic's state; when book is non-NULL and the topic is a book
 * topic, replaces *book's contents with a copy of the broker's book. Returns
 * QB_OK, QB_ENOTFOUND or QB_ENOMEM. Any thread (takes the state lock). */
int qb_broker_topic_get(qb_broker *b, const char *topic, qb_topic_info *info, qb_book *book);

/* Writes s as one JSON object (plus the extra "key": value pairs in
 * extra_json, which may be NULL or "") to path atomically
 * (qb_file_write_atomic). QB_OK, QB_ENOMEM or QB_EIO. */
int qb_broker_stats_write(const qb_broker_stats *s, const char *extra_json, const char *path);

/* Called by the ingest thread for every valid frame, after its messages
 * are applied to the books and under the state lock (so a book copied
 * with qb_broker_snapshot_frame() is never older than a frame already
 * handed over). Must be quick and must not call back into the broker. */
typedef void (*qb_broker_tap_fn)(void *arg, const void *frame, size_t len);

/* Sets (or with fn NULL clears) the tap. After it returns, the previous tap
 * is never called again. Any thread. */
void qb_broker_set_tap(qb_broker *b, qb_broker_tap_fn fn, void *arg);

/* Calls fn for every tracked topic under the state lock (qb_topics_each);
 * fn must be quick and must not call into the broker. Any thread. */
int qb_broker_each_topic(qb_broker *b, qb_topics_each_fn fn, void *arg);

/* Appends one snapshot frame (refresh=true, seq = the last applied seq, lid
 * = the book's version) of the broker's current book of topic to out.
 * scratch holds the copied levels (reused between calls). QB_OK,
 * QB_ENOTFOUND (not a book topic, unknown, or its book not valid), or
 * QB_ENOMEM. The lock is held for a memcpy of the levels only. Any thread. */
int qb_broker_snapshot_frame(qb_broker *b, qb_str topic, qb_buf *scratch, qb_buf *out);

/* The snapshot service's collect callback (snapshot.h, arg = the broker):
 * adds every book topic matching prefix to sink, under the state lock. */
struct qb_snapshot_sink;
int qb_broker_snapshot_collect(void *arg, qb_str prefix, bool exact, struct qb_snapshot_sink *sink);

#endif
