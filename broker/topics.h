/*
 * topics.h: the broker's per-topic state table (library qbbroker).
 *
 * One entry per topic seen on ingest, found by the topic bytes (a view into
 * the received frame: no copy, no allocation once the topic exists). An entry
 * holds the topic's last sequence number and last update time; a book topic
 * also holds the instrument's current qb_book and whether it is valid (in
 * sequence since its last snapshot); a status topic holds the last feed state.
 *
 * The table is bounded (max_topics, a hard limit: overflow policy "forward
 * without state"): a new topic past the limit is not tracked and
 * qb_topics_apply() reports QB_TOPICS_UNTRACKED; its frames are still
 * forwarded by the caller.
 *
 * Sequence rules on ingest (proto/seq.h): a snapshot replaces the book and
 * rebases the sequence (a refresh snapshot repeats the last seq); a delta
 * with seq == last + 1 is applied; seq <= last is a duplicate or old message
 * (counted, not applied), except seq 1: a restarted publisher, which
 * rebases; seq > last + 1 is an ingest gap (counted; the book
 * is invalid until the next snapshot). A book that is crossed after a
 * snapshot or delta, or that a change cannot be applied to, is invalid until
 * the next snapshot. Other topics (trade, status, ticker) follow the same
 * seq rules without a book. A status topic also keeps its current state and
 * reason, and counts transitions per state (every feed state change is
 * visible in /metrics with its reason).
 *
 * Each entry also records its publisher (broker.c, PROTOCOL.md 1): the id of
 * the NNG pipe that owns the topic, 0 for none, and how many frames of the
 * topic were refused from other pipes. The table only stores them; the
 * broker decides who may publish.
 *
 * Threads: a table belongs to one thread at a time (the broker's ingest
 * thread; readers from other threads go through qb_broker's lock).
 */
#ifndef QB_BROKER_TOPICS_H
#define QB_BROKER_TOPICS_H

#include "book.h"
#include "msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QB_TOPICS_DEFAULT_MAX 100000
#define QB_TOPICS_NSYM_MAX 63    /* longer native symbols are cut */
#define QB_TOPICS_REASON_MAX 127 /* longer status reasons are cut */
#define QB_TOPICS_NSTATES 5      /* qb_feed_state values counted (QB_FEED_SYNCING..DOWN) */

typedef struct qb_topics qb_topics;

/* Events reported by qb_topics_apply(), as bit flags. */
enum {
    QB_TOPICS_DUPLICATE = 1u << 0,  /* seq <= last: duplicate or old message */
    QB_TOPICS_GAP = 1u << 1,        /* seq > last + 1: messages missed on ingest */
    QB_TOPICS_CROSSED = 1u << 2,    /* the book was crossed after this message */
    QB_TOPICS_BOOK_ERROR = 1u << 3, /* a change could not be applied (full side, bad level) */
    QB_TOPICS_UNTRACKED = 1u << 4,  /* new topic past max_topics (or out of memory) */
    QB_TOPICS_NEW = 1u << 5,        /* first message of this topic */
    QB_TOPICS_RESYNC = 1u << 6,     /* a status changed the feed's state to resyncing */
};

/* A copy of one topic's state, for inspection. */
typedef struct qb_topic_info {
    uint64_t last_seq;
    uint64_t last_update_ns; /* qb_mono_ns() of the last message */
    uint64_t messages;       /* messages applied to this entry */
    bool has_seq;            /* false until the first message */
    bool is_book;
    bool book_valid; /* book topics: in sequence since a good snapshot */
    bool has_status; /* status topics: a status message was seen */
    qb_feed_state feed_state;
    uint64_t last_id;        /* book topics: lid of the last message applied */
    uint64_t exch_ts;        /* ets of the last message (0 unknown) */
    uint64_t recv_ts;        /* rts of the last message */
    uint64_t resyncs;        /* status topics: changes of the feed's state to resyncing */
    uint64_t state_since_ns; /* status topics: qb_mono_ns() of the last transition */
    /* Status topics: transitions into each state, indexed by qb_feed_state
     * (the first status counts; the same state with a new reason does not). */
    uint64_t state_changes[QB_TOPICS_NSTATES];
    uint32_t owner;                        /* NNG pipe id of its publisher, 0: none */
    uint64_t refused;                      /* frames refused from other publishers */
    char nsym[QB_TOPICS_NSYM_MAX + 1];     /* native symbol of the last message */
    char reason[QB_TOPICS_REASON_MAX + 1]; /* status topics: last reason */
} qb_topic_info;

/* After qb_topics_apply returned QB_TOPICS_GAP: the seq that was expected
 * (the message's own seq is the one received). Same thread as apply. */
uint64_t qb_topics_gap_expected(const qb_topics *t);

/* Returns a new empty table holding at most max_topics topics (0 means
 * QB_TOPICS_DEFAULT_MAX), or NULL when out of memory. Owned by the caller;
 * qb_topics_free(). */
qb_topics *qb_topics_new(size_t max_topics);
void qb_topics_free(qb_topics *t); /* NULL is a no-op */

/* Applies one decoded message m received on topic (the frame's topic, which
 * the decoder has matched to m) at monotonic time now_ns. Returns a mask of
 * QB_TOPICS_* events (0: in sequence, nothing to report). Reads m's views
 * only during the call. Allocates only for a new topic or a book that grows
 * past its previous size. */
unsigned qb_topics_apply(qb_topics *t, qb_str topic, const qb_msg *m, uint64_t now_ns);

/* The owner (publisher's NNG pipe id, 0: none) of a tracked topic: QB_OK
 * and *owner, or QB_ENOTFOUND (topic not tracked). One hash lookup, no
 * allocation. */
int qb_topics_owner(const qb_topics *t, qb_str topic, uint32_t *owner);

/* Makes owner the owner of a tracked topic: QB_OK or QB_ENOTFOUND. */
int qb_topics_set_owner(qb_topics *t, qb_str topic, uint32_t owner);

/* Counts one frame of topic refused from a publisher that does not own it.
 * Returns true when the topic's last notice (a log line, a status message)
 * is at least interval_ns old, and then records now_ns as its last notice;
 * also true for a topic that is not tracked (the caller bounds those). */
bool qb_topics_refused(qb_topics *t, qb_str topic, uint64_t now_ns, uint64_t interval_ns);

/* Counts, maintained on every apply. */
size_t qb_topics_count(const qb_topics *t);       /* tracked topics */
size_t qb_topics_books(const qb_topics *t);       /* tracked book topics */
size_t qb_topics_books_valid(const qb_topics *t); /* of which valid */

/* Looks a topic up: writes *info and returns QB_OK, or QB_ENOTFOUND. */
int qb_topics_info(const qb_topics *t, qb_str topic, qb_topic_info *info);

/* The book of a book topic (valid or not), or NULL when the topic is not a
 * tracked book topic. Owned by the table; valid until the next apply. */
const qb_book *qb_topics_book(const qb_topics *t, qb_str topic);

/* Calls fn for every tracked topic (in no particular order) with its state
 * and, for book topics, its book (NULL otherwise), until fn returns
 * non-zero (returned). Views are valid during the call only. */
typedef int (*qb_topics_each_fn)(void *arg, qb_str topic, const qb_topic_info *info,
                                 const qb_book *book);
int qb_topics_each(const qb_topics *t, qb_topics_each_fn fn, void *arg);

#endif
