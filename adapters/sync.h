/*
 * sync.h: the per-instrument snapshot + delta synchronisation state machine.
 *
 * It knows nothing about sockets: events and snapshots are pushed in, and it
 * answers through four callbacks (publish a snapshot, publish a delta,
 * publish a state change, fetch a snapshot after a delay). adapter.c wires
 * them to publish.c and rest.c; tests/unit/test_binance.c wires them to
 * recorders and feeds recorded frames directly.
 *
 *          start/stop                snapshot usable
 *   STOPPED ---------> WAITING ------------------------> LIVE
 *      ^    (buffer events, fetch)   (replay buffer)       |
 *      |                  ^                                |
 *      |                  +------ gap / crossed / book ----+
 *      +---- stop (connection lost) from any state           error: resync
 *
 * WAITING buffers depth events (bounded: QB_SYNC_BUFFER_EVENTS events and
 * QB_SYNC_BUFFER_BYTES bytes; overflow policy "restart": the buffer is
 * dropped, counted in buffer_overflows, and the sync restarts from the
 * current event). The sequence rules are pluggable (qb_seq_rule); the
 * algorithm is Binance's "local order book" procedure generalised:
 *   1. buffer events; ask for a snapshot when the first one arrives (or
 *      after QB_SYNC_FALLBACK_MS when the market is quiet);
 *   2. snapshot older than the first buffered event -> fetch again;
 *   3. book := snapshot; publish it; replay the buffer: drop stale events,
 *      the first applied one must bridge the snapshot, every later one must
 *      follow its predecessor;
 *   4. live: same checks per event; after each one the book must not be
 *      crossed. Any failure resyncs this instrument only.
 * Lost frames (qb_sync_suspect): a frame that could not be decoded or
 * parsed cannot be attributed to an instrument, so every LIVE book of its
 * connection becomes "suspect": it stays live, nothing is published, and
 * its next depth event decides with the same sequence rule as any other
 * (rule->follows): it chains on the book -> confirmed, nothing of this
 * instrument was lost (the frame was another symbol's, a trade, a ping);
 * it does not -> the usual gap resync of this instrument alone, its reason
 * naming the lost frame. A book with no event within the owner's timeout
 * (qb_sync_suspect_expire, QB_SYNC_SUSPECT_MS) resyncs: its lost update
 * may have been the last. A WAITING instrument needs nothing: the replay
 * checks every buffered event's chain against the snapshot.
 * Full-book exchanges (Bithumb: every message is the whole top-N book) use
 * qb_sync_on_full() instead: the first full book is the snapshot, each later
 * one is turned into the exact difference from the current book (levels
 * added or changed with their new size, levels gone with size 0), applied
 * and published as one delta, so the book equals the exchange's latest
 * message after every step. A full book identical to the current one
 * publishes nothing (counted in full_unchanged).
 * One thread (the lws service thread); no locking.
 */
#ifndef QB_ADAPTER_SYNC_H
#define QB_ADAPTER_SYNC_H

#include "exchange.h"

#define QB_SYNC_BUFFER_EVENTS 10000
#define QB_SYNC_BUFFER_BYTES (64u << 20)
#define QB_SYNC_FALLBACK_MS 1000 /* first fetch when no event arrives */
#define QB_SYNC_REFETCH_MS 250   /* snapshot older than the buffer: fetch again */
/* A suspect book (qb_sync_suspect) with no depth event for this long is
 * resynced. HTX mbp.150 sends an update every 100 ms (empty when nothing
 * changed), Binance @100ms one per 100 ms with changes: 2 s is many events
 * on any traded symbol, and a quiet one pays one snapshot. */
#define QB_SYNC_SUSPECT_MS 2000

typedef enum qb_sync_state {
    QB_SYNC_STOPPED = 0,
    QB_SYNC_WAITING = 1,
    QB_SYNC_LIVE = 2,
} qb_sync_state;

/* Counters, usually shared by every instrument of a process. */
typedef struct qb_sync_counters {
    uint64_t deltas_applied;
    uint64_t deltas_dropped_stale; /* u <= book id */
    uint64_t deltas_buffered;
    uint64_t gaps;
    uint64_t resyncs;
    uint64_t snapshots_ok;
    uint64_t snapshots_failed;
    uint64_t snapshots_stale; /* older than the buffer: fetched again */
    uint64_t crossed;
    uint64_t buffer_overflows;
    uint64_t book_errors;        /* level rejected by the book (full side, bad value) */
    uint64_t full_books;         /* full books received (qb_sync_on_full) */
    uint64_t full_unchanged;     /* ... identical to the book: nothing published */
    uint64_t suspects;           /* live books made suspect by a lost frame */
    uint64_t suspects_confirmed; /* ... whose next event chained: no resync */
    uint64_t suspects_broken;    /* ... whose next event broke the chain: resynced */
    uint64_t suspects_expired;   /* ... with no event within QB_SYNC_SUSPECT_MS: resynced */
} qb_sync_counters;

typedef struct qb_sync qb_sync;

typedef struct qb_sync_ops {
    /* The book was replaced by a snapshot with id snap_id. */
    void (*on_snapshot)(qb_sync *s, const qb_event *snap);
    /* ev was applied to the book. */
    void (*on_delta)(qb_sync *s, const qb_event *ev);
    /* The feed state changed (reason "" when none). */
    void (*on_state)(qb_sync *s, qb_feed_state st, const char *reason);
    /* Please deliver a snapshot (qb_sync_on_snapshot) after delay_ms; a
     * later call with a shorter delay moves the fetch earlier. */
    void (*want_snapshot)(qb_sync *s, uint32_t delay_ms);
} qb_sync_ops;

struct qb_sync {
    const qb_seq_rule *rule;
    const qb_sync_ops *ops;
    void *user; /* owner's back pointer */
    qb_sync_counters *cnt;
    qb_book *book;
    qb_sync_state state;
    qb_feed_state feed;             /* last state reported through on_state */
    char reason[QB_EVENT_INFO_MAX]; /* and its reason */
    uint64_t book_id;               /* id of the last applied update */
    bool need_bridge;               /* the next applied event must bridge the snapshot */
    bool fetch_asked;               /* want_snapshot(0) already sent in this cycle */
    bool suspect;                   /* LIVE, a frame was lost since the last event */
    char suspect_why[64];           /* what was lost ("corrupt gzip frame") */
    qb_buf buf;                     /* buffered events, packed (see sync.c) */
    qb_buf replay;                  /* second buffer swapped in while replaying */
    size_t nbuf;
    size_t max_events;
    size_t max_bytes;
    size_t max_levels;
    qb_book *next; /* full books: the incoming book (allocated on first use) */
    qb_buf diff;   /* full books: the computed delta's levels */
};

/* Initialises s with an empty book of at most max_levels per side.
 * cnt must outlive s. QB_OK or QB_ENOMEM. */
int qb_sync_init(qb_sync *s, const qb_seq_rule *rule, const qb_sync_ops *ops, void *user,
                 qb_sync_counters *cnt, size_t max_levels);
void qb_sync_fini(qb_sync *s);

/* Starts (or restarts) a sync cycle: empties book and buffer, reports st
 * (QB_FEED_SYNCING on start, QB_FEED_RESYNCING after a reconnect) with
 * reason, and asks for a snapshot within QB_SYNC_FALLBACK_MS. */
void qb_sync_start(qb_sync *s, qb_feed_state st, const char *reason);

/* Stops: empties book and buffer, reports st (RESYNCING or DOWN) unless it
 * is already the reported state with no reason change. */
void qb_sync_stop(qb_sync *s, qb_feed_state st, const char *reason);

/* Feeds one depth event. Returns QB_OK (applied, buffered or dropped as
 * stale) or the reason the instrument resynced (QB_EGAP, QB_ECROSSED,
 * QB_ERANGE for a book error); the resync has been handled already. */
int qb_sync_on_delta(qb_sync *s, const qb_event *ev);

/* Feeds a full book (a QB_EV_BOOK_FULL event; its last_id becomes the
 * book id, no sequence check). WAITING: it is the snapshot
 * (qb_sync_on_snapshot). LIVE: the exact difference from the current book
 * is applied and reported through on_delta as one DEPTH event (the full
 * book's ids and times) whose levels are the changes, bids then asks, best
 * first; no call when nothing changed (the book id still advances). STOPPED: ignored.
 * QB_OK, or why the instrument resynced (QB_ECROSSED, QB_ERANGE,
 * QB_ETOOBIG, QB_ENOMEM): the next full book is then the new snapshot. */
int qb_sync_on_full(qb_sync *s, const qb_event *full);

/* Feeds a snapshot. QB_OK when applied (the book is live, the buffer has
 * been replayed), QB_EAGAIN when it was older than the buffer (a new fetch
 * was asked), QB_ESTATE when no snapshot was expected, another code when
 * the snapshot was unusable (a new fetch was asked). */
int qb_sync_on_snapshot(qb_sync *s, const qb_event *snap);

/* A snapshot fetch failed: count it, report st (RESYNCING or DOWN) with
 * reason and ask again after retry_ms. */
void qb_sync_on_snapshot_error(qb_sync *s, qb_feed_state st, const char *reason, uint32_t retry_ms);

/* A frame that nobody can attribute was lost on this instrument's
 * connection (why: "corrupt gzip frame"). LIVE (or stale): the book
 * becomes suspect and stays live; its next depth event confirms it (chains:
 * nothing lost, counted suspects_confirmed) or resyncs it (a gap, counted
 * suspects_broken, reason "gap after a lost frame (why): ..."). Returns
 * true when the book is now suspect (the caller arms QB_SYNC_SUSPECT_MS
 * and then calls qb_sync_suspect_expire); false otherwise (not live, or
 * no sequence to check: full books), nothing to do. */
bool qb_sync_suspect(qb_sync *s, const char *why);
/* The suspect book saw no depth event within QB_SYNC_SUSPECT_MS: resyncs
 * it (counted suspects_expired). No-op when it is no longer suspect. */
void qb_sync_suspect_expire(qb_sync *s);

/* Forces a resync with reason (e.g. the exchange signalled trouble). */
void qb_sync_resync(qb_sync *s, const char *reason);

/* No update for too long: LIVE -> STALE (reported). */
void qb_sync_mark_stale(qb_sync *s, const char *reason);
/* An update arrived: STALE -> LIVE (reported). */
void qb_sync_touch(qb_sync *s);

static inline const qb_book *qb_sync_book(const qb_sync *s)
{
    return s->book;
}

#endif
