/*
 * snapshot.h: the broker's snapshot service for late joiners (spec:
 * proto/PROTOCOL.md section 11), a self-contained module: it knows nothing
 * of the broker's internals and reaches its books through one callback.
 *
 *   requester REQ --NNG--> [REP socket, N contexts (nng_ctx + nng_aio)]
 *                                 | parse request (msgpack map, <= 4 KiB)
 *                                 | collect(arg, prefix, exact, sink)      <- broker, under ITS
 * lock: |     qb_snapshot_sink_add() per book        copies levels only | (lock released) encode
 * one standard | snapshot frame per book, bounded reply
 *                                 v
 *                          reply {"v":1,"ok":true,"books":[...]} or an error reply
 *
 * Threads: requests are served on NNG's aio callback threads, never on the
 * broker's ingest thread, so the fan-out is never blocked by a requester.
 * The collect callback runs on those NNG threads, from several contexts at
 * once: it must take the broker's own lock around its walk of the books.
 * Inside collect, qb_snapshot_sink_add() only copies (levels and a few
 * fields into the context's scratch arena): the encoding happens after
 * collect has returned, so the broker's lock is held for a memcpy of the
 * matching books and no longer.
 *
 * Bounds (each has a named policy and a counter): a request larger than
 * QB_SNAPSHOT_MAX_REQUEST gets the error reply "too_large" (larger than
 * QB_SNAPSHOT_RECVMAXSZ, NNG closes the connection); a reply holds at most
 * max_books books and max_reply bytes: past either, policy "truncate": the
 * books that fit are sent with "truncated": true (the requester asks for a
 * narrower prefix or exact topics for the rest); at most n_contexts
 * requests are served at once, others wait in NNG's queue.
 */
#ifndef QB_BROKER_SNAPSHOT_H
#define QB_BROKER_SNAPSHOT_H

#include "book.h"
#include "msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QB_SNAPSHOT_DEFAULT_IPC "ipc:///tmp/quotebus/snapshot.ipc"
#define QB_SNAPSHOT_DEFAULT_TCP "tcp://127.0.0.1:7782"
#define QB_SNAPSHOT_MAX_REQUEST 4096                   /* bytes; larger: "too_large" reply */
#define QB_SNAPSHOT_RECVMAXSZ (64u << 10)              /* bytes; larger: NNG drops the pipe */
#define QB_SNAPSHOT_DEFAULT_MAX_BOOKS 1000             /* books per reply */
#define QB_SNAPSHOT_DEFAULT_MAX_REPLY QB_MSG_MAX_FRAME /* bytes per reply */
#define QB_SNAPSHOT_DEFAULT_CONTEXTS 8

/* One book as the broker knows it, handed to qb_snapshot_sink_add(). All
 * pointers are read during the call only (copied). */
typedef struct qb_snapshot_book {
    qb_str topic;     /* "book.binance.BTC-USDT" (no NUL) */
    qb_str nsym;      /* exchange's native symbol; empty: the symbol is sent */
    uint64_t seq;     /* seq of the last message applied to this book */
    uint64_t last_id; /* exchange update id of that message (lid), 0 unknown */
    uint64_t exch_ts; /* its exchange time, ns since the epoch, 0 unknown */
    uint64_t recv_ts; /* its adapter receive time, ns since the epoch */
    uint64_t age_ns;  /* time since the topic's last message */
    bool valid;       /* in sequence since a good snapshot; false: levels ignored */
    bool has_state;   /* a status message was seen for the instrument */
    qb_feed_state state;
    const qb_level *bids; /* best first */
    size_t n_bids;
    const qb_level *asks; /* best first */
    size_t n_asks;
} qb_snapshot_book;

typedef struct qb_snapshot_sink qb_snapshot_sink;

/* Adds one book to the reply being built. Returns QB_OK; QB_ETOOBIG when
 * the reply is full (max_books, or the levels cannot fit in max_reply):
 * the book is not added, the reply is marked truncated and collect should
 * stop; QB_EINVAL for a topic that is not a valid book topic (skipped,
 * counted); QB_ENOMEM. Only from inside a collect callback. */
int qb_snapshot_sink_add(qb_snapshot_sink *sink, const qb_snapshot_book *book);

/* Implemented by the broker: calls qb_snapshot_sink_add() for every book
 * topic equal to prefix (exact == true; the topic has no NUL) or starting
 * with it (exact == false), under its own lock, and returns QB_OK (also
 * when none matched: the service then replies "unknown_topic"), or an
 * error (the service replies "unavailable"). Called on NNG threads,
 * possibly concurrently. */
typedef int (*qb_snapshot_collect_fn)(void *arg, qb_str prefix, bool exact, qb_snapshot_sink *sink);

typedef struct qb_snapshot_config {
    const char *const *urls; /* REP listens here (ipc://..., tcp://...) */
    size_t n_urls;
    size_t n_contexts; /* concurrent requests served; 0: default */
    size_t max_books;  /* per reply; 0: default */
    size_t max_reply;  /* bytes per reply; 0: default (8 MiB) */
    qb_snapshot_collect_fn collect;
    void *collect_arg;
    /* Claims, probes and repairs the listeners (listeners.h), as in
     * qb_broker_config; NULL: the service makes and runs its own. */
    struct qb_listeners *listeners;
} qb_snapshot_config;

/* Counters since start, X(name, help). */
#define QB_SNAPSHOT_STATS(X)                                                                       \
    X(snap_requests, "snapshot requests received")                                                 \
    X(snap_replies_ok, "snapshot replies with books")                                              \
    X(snap_unknown_topic, "snapshot requests matching no book")                                    \
    X(snap_bad_requests, "snapshot requests rejected: malformed, bad version, op or topic")        \
    X(snap_too_large, "snapshot requests rejected: over QB_SNAPSHOT_MAX_REQUEST")                  \
    X(snap_unavailable, "snapshot requests failed: collect error or out of memory")                \
    X(snap_truncated, "snapshot replies cut at max_books or max_reply")                            \
    X(snap_books, "books sent in snapshot replies")                                                \
    X(snap_bytes, "bytes of snapshot replies sent")                                                \
    X(snap_send_errors, "snapshot replies that could not be sent")

typedef struct qb_snapshot_stats {
#define QB_SNAPSHOT_STATS_FIELD_(name, help) uint64_t name;
    QB_SNAPSHOT_STATS(QB_SNAPSHOT_STATS_FIELD_)
#undef QB_SNAPSHOT_STATS_FIELD_
} qb_snapshot_stats;

typedef struct qb_snapshot qb_snapshot;

/* Opens the REP socket, claims and listens on every url (qb_listeners_add:
 * directories of ipc:// paths created) and starts serving. Returns QB_OK
 * and writes *out, or QB_EINVAL (no url, no collect), QB_ESTATE (an ipc
 * address is claimed by another process; logged), QB_ETRANSPORT (cannot
 * listen; logged), QB_ENOMEM;
 * on error nothing is left open. cfg is read during the call only;
 * collect_arg must stay valid until qb_snapshot_free() returns. */
int qb_snapshot_new(const qb_snapshot_config *cfg, qb_snapshot **out);

/* Stops serving (waits for callbacks in progress, so collect is never
 * called after this returns), closes the socket and frees everything.
 * NULL is a no-op. Not from inside collect. */
void qb_snapshot_free(qb_snapshot *s);

/* Copies the counters. Any thread. */
void qb_snapshot_stats_get(qb_snapshot *s, qb_snapshot_stats *out);

#endif
