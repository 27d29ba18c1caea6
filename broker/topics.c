/*
 * topics.c: the per-topic state table of topics.h.
 *
 * The entries live in the project's bounded string map (common/strmap.h:
 * FNV-1a, linear probing, full at max_topics: new topics refused); each
 * entry embeds its map node and carries its topic bytes inline, so a lookup
 * hashes the frame's topic view and compares bytes, with no allocation and
 * no copy. Topics are never removed (a broker serves a fixed universe of
 * instruments). The slot array doubles at 50% load, during warm-up only.
 *
 *   slots: [ . | e1 | . | . | e2 | e3 | . | ... ]     e = &topics_entry.node
 *                 |              |
 *                 v              v
 *   { node {hash, key, len}, seq, book*, valid, "book.binance.BTC-USDT" }
 *
 * Runs on the broker's ingest thread (see topics.h for the rules).
 */
#include "topics.h"

#include "err.h"
#include "seq.h"
#include "strmap.h"

#include <stdlib.h>
#include <string.h>

typedef struct topics_entry {
    qb_strmap_node node; /* first: an entry is freed through its node */
    qb_book *book;       /* book topics only */
    uint64_t last_seq;
    uint64_t last_update_ns;
    uint64_t messages;
    bool has_seq;
    bool is_book;
    bool book_valid;
    bool has_status;
    qb_feed_state feed_state;
    uint64_t last_id, exch_ts, recv_ts, resyncs;
    uint64_t state_changes[QB_TOPICS_NSTATES];
    uint64_t state_since_ns;
    uint64_t refused, refused_note_ns; /* frames refused from non-owners, last notice */
    uint32_t owner;                    /* NNG pipe id of the publisher, 0: none */
    uint8_t nsym_len, reason_len;
    char nsym[QB_TOPICS_NSYM_MAX + 1];
    char reason[QB_TOPICS_REASON_MAX + 1];
    char topic[]; /* node.len bytes and a NUL */
} topics_entry;

struct qb_topics {
    qb_strmap map; /* of topics_entry */
    size_t books;
    size_t books_valid;
    uint64_t gap_want; /* the seq expected by the last QB_TOPICS_GAP */
};

qb_topics *qb_topics_new(size_t max_topics)
{
    qb_topics *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return NULL;
    }
    qb_strmap_init(&t->map, max_topics ? max_topics : QB_TOPICS_DEFAULT_MAX);
    return t;
}

void qb_topics_free(qb_topics *t)
{
    if (t == NULL) {
        return;
    }
    for (size_t i = 0; i < t->map.cap; i++) {
        topics_entry *e = (topics_entry *)t->map.slots[i];
        if (e != NULL) {
            qb_book_free(e->book);
            free(e);
        }
    }
    qb_strmap_fini(&t->map);
    free(t);
}

static topics_entry *topics_find(const qb_topics *t, qb_str topic)
{
    uint64_t h = qb_strmap_hash(topic.p, topic.n);
    return (topics_entry *)qb_strmap_find(&t->map, topic.p, topic.n, h);
}

/* Finds or creates the entry; NULL when untracked (limit or no memory). */
static topics_entry *topics_get(qb_topics *t, qb_str topic, bool is_book, bool *created)
{
    uint64_t h = qb_strmap_hash(topic.p, topic.n);
    topics_entry *e = (topics_entry *)qb_strmap_find(&t->map, topic.p, topic.n, h);
    if (e != NULL) {
        return e;
    }
    if (qb_strmap_reserve(&t->map) != QB_OK) {
        return NULL;
    }
    e = calloc(1, sizeof *e + topic.n + 1);
    if (e == NULL) {
        return NULL;
    }
    if (is_book && (e->book = qb_book_new(0)) == NULL) {
        free(e);
        return NULL;
    }
    e->is_book = is_book;
    memcpy(e->topic, topic.p, topic.n);
    e->topic[topic.n] = '\0';
    e->node = (qb_strmap_node){.hash = h, .key = e->topic, .len = topic.n};
    qb_strmap_insert(&t->map, &e->node);
    if (is_book) {
        t->books++;
    }
    *created = true;
    return e;
}

static void topics_set_valid(qb_topics *t, topics_entry *e, bool valid)
{
    if (e->book_valid != valid) {
        e->book_valid = valid;
        if (valid) {
            t->books_valid++;
        } else {
            t->books_valid--;
        }
    }
}

/* After a change: a crossed book is invalid until the next snapshot. */
static unsigned topics_check_book(qb_topics *t, topics_entry *e, int rc)
{
    if (rc != QB_OK) {
        topics_set_valid(t, e, false);
        return QB_TOPICS_BOOK_ERROR;
    }
    if (qb_book_crossed(e->book)) {
        topics_set_valid(t, e, false);
        return QB_TOPICS_CROSSED;
    }
    return 0;
}

/* The seq rule (proto/seq.h) for every non-snapshot message: 0 when in
 * sequence. A restarted publisher (an adapter restarted by the supervisor
 * numbers its topics from 1 again) rebases, as a snapshot would, so the
 * broker's view of the feed (status in /metrics, /health, the snapshot
 * service) follows it at once instead of ignoring it as duplicates until
 * the seq catches up. */
static unsigned topics_check_seq(qb_topics *t, topics_entry *e, const qb_msg *m)
{
    qb_seq_result r =
        qb_seq_step(e->has_seq, e->last_seq, m->seq, qb_seq_type_of(m->type, m->refresh), NULL);
    if (r == QB_SEQ_DUPLICATE) {
        return QB_TOPICS_DUPLICATE;
    }
    unsigned ev = 0;
    if (r == QB_SEQ_GAP) {
        ev = QB_TOPICS_GAP;
        t->gap_want = e->last_seq + 1;
    }
    e->has_seq = true;
    e->last_seq = m->seq;
    return ev;
}

uint64_t qb_topics_gap_expected(const qb_topics *t)
{
    return t->gap_want;
}

unsigned qb_topics_apply(qb_topics *t, qb_str topic, const qb_msg *m, uint64_t now_ns)
{
    bool is_book = m->type == QB_MSG_SNAPSHOT || m->type == QB_MSG_DELTA;
    bool created = false;
    topics_entry *e = topics_get(t, topic, is_book, &created);
    if (e == NULL) {
        return QB_TOPICS_UNTRACKED;
    }
    unsigned ev = created ? QB_TOPICS_NEW : 0;
    e->messages++;
    e->last_update_ns = now_ns;
    /* The native symbol rarely changes: compare before copying. */
    size_t nl = m->native.n > QB_TOPICS_NSYM_MAX ? QB_TOPICS_NSYM_MAX : m->native.n;
    if (nl != e->nsym_len || memcmp(e->nsym, m->native.p, nl) != 0) {
        memcpy(e->nsym, m->native.p, nl);
        e->nsym[nl] = '\0';
        e->nsym_len = (uint8_t)nl;
    }

    if (m->type == QB_MSG_SNAPSHOT && e->is_book) {
        /* A snapshot (refresh or not) replaces the book and rebases. */
        int rc = qb_book_replace(e->book, m->bids, m->n_bids, m->asks, m->n_asks);
        e->has_seq = true;
        e->last_seq = m->seq;
        e->last_id = m->last_id;
        e->exch_ts = m->exch_ts;
        e->recv_ts = m->recv_ts;
        unsigned bad = topics_check_book(t, e, rc);
        if (bad == 0) {
            topics_set_valid(t, e, true);
        }
        return ev | bad;
    }

    bool was_first = !e->has_seq;
    unsigned seq_ev = topics_check_seq(t, e, m);
    ev |= seq_ev;
    if (!(seq_ev & QB_TOPICS_DUPLICATE)) {
        /* The book's version: the last message applied (or skipped by a
         * gap, when the book is invalid anyway). */
        e->last_id = m->last_id;
        e->exch_ts = m->exch_ts;
        e->recv_ts = m->recv_ts;
    }
    if (m->type == QB_MSG_DELTA && e->is_book) {
        if (seq_ev & QB_TOPICS_GAP) {
            topics_set_valid(t, e, false);
        } else if (seq_ev == 0 && !was_first && e->book_valid) {
            int rc = qb_book_apply(e->book, m->bids, m->n_bids, m->asks, m->n_asks);
            ev |= topics_check_book(t, e, rc);
        }
        /* A first delta before any snapshot leaves the book invalid. */
        return ev;
    }
    if (m->type == QB_MSG_STATUS && !(seq_ev & QB_TOPICS_DUPLICATE)) {
        if (!e->has_status || e->feed_state != m->state) {
            /* The decoder accepts only known states; the bound is a guard. */
            if ((unsigned)m->state < QB_TOPICS_NSTATES) {
                e->state_changes[m->state]++;
            }
            e->state_since_ns = now_ns;
            /* A resync is counted once when it begins, not once per status
             * the adapter repeats while it lasts ("resyncing for N s"). */
            if (m->state == QB_FEED_RESYNCING) {
                e->resyncs++;
                ev |= QB_TOPICS_RESYNC;
            }
        }
        e->has_status = true;
        e->feed_state = m->state;
        size_t rl = m->reason.n > QB_TOPICS_REASON_MAX ? QB_TOPICS_REASON_MAX : m->reason.n;
        if (rl > 0) {
            memcpy(e->reason, m->reason.p, rl);
        }
        e->reason[rl] = '\0';
        e->reason_len = (uint8_t)rl;
    }
    return ev;
}

int qb_topics_owner(const qb_topics *t, qb_str topic, uint32_t *owner)
{
    const topics_entry *e = topics_find(t, topic);
    if (e == NULL) {
        return QB_ENOTFOUND;
    }
    *owner = e->owner;
    return QB_OK;
}

int qb_topics_set_owner(qb_topics *t, qb_str topic, uint32_t owner)
{
    topics_entry *e = topics_find(t, topic);
    if (e == NULL) {
        return QB_ENOTFOUND;
    }
    e->owner = owner;
    return QB_OK;
}

bool qb_topics_refused(qb_topics *t, qb_str topic, uint64_t now_ns, uint64_t interval_ns)
{
    topics_entry *e = topics_find(t, topic);
    if (e == NULL) {
        return true;
    }
    e->refused++;
    if (e->refused_note_ns != 0 && now_ns - e->refused_note_ns < interval_ns) {
        return false;
    }
    e->refused_note_ns = now_ns;
    return true;
}

size_t qb_topics_count(const qb_topics *t)
{
    return t->map.count;
}

size_t qb_topics_books(const qb_topics *t)
{
    return t->books;
}

size_t qb_topics_books_valid(const qb_topics *t)
{
    return t->books_valid;
}

static void topics_info_of(const topics_entry *e, qb_topic_info *info)
{
    *info = (qb_topic_info){
        .last_seq = e->last_seq,
        .last_update_ns = e->last_update_ns,
        .messages = e->messages,
        .has_seq = e->has_seq,
        .is_book = e->is_book,
        .book_valid = e->book_valid,
        .has_status = e->has_status,
        .feed_state = e->feed_state,
        .last_id = e->last_id,
        .exch_ts = e->exch_ts,
        .recv_ts = e->recv_ts,
        .resyncs = e->resyncs,
        .state_since_ns = e->state_since_ns,
        .owner = e->owner,
        .refused = e->refused,
    };
    memcpy(info->state_changes, e->state_changes, sizeof info->state_changes);
    memcpy(info->nsym, e->nsym, (size_t)e->nsym_len + 1);
    memcpy(info->reason, e->reason, (size_t)e->reason_len + 1);
}

int qb_topics_info(const qb_topics *t, qb_str topic, qb_topic_info *info)
{
    const topics_entry *e = topics_find(t, topic);
    if (e == NULL) {
        return QB_ENOTFOUND;
    }
    topics_info_of(e, info);
    return QB_OK;
}

int qb_topics_each(const qb_topics *t, qb_topics_each_fn fn, void *arg)
{
    qb_topic_info info;
    for (size_t i = 0; i < t->map.cap; i++) {
        const topics_entry *e = (const topics_entry *)t->map.slots[i];
        if (e == NULL) {
            continue;
        }
        topics_info_of(e, &info);
        int rc = fn(arg, (qb_str){e->topic, e->node.len}, &info, e->book);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

const qb_book *qb_topics_book(const qb_topics *t, qb_str topic)
{
    const topics_entry *e = topics_find(t, topic);
    return e != NULL ? e->book : NULL;
}
