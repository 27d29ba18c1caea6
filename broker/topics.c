/*
 * topics.c: the per-topic state table of topics.h.
 *
 * An open-addressing hash table (FNV-1a, linear probing) of pointers to
 * entries; each entry carries its topic bytes inline, so a lookup hashes the
 * frame's topic view and compares bytes, with no allocation and no copy.
 * Topics are never removed (a broker serves a fixed universe of instruments),
 * so there are no tombstones. The slot array doubles at 50% load, during
 * warm-up only; it never grows past what max_topics needs.
 *
 *   slots: [ . | e1 | . | . | e2 | e3 | . | ... ]     e = topics_entry *
 *                 |              |
 *                 v              v
 *   { hash, seq, book*, valid, len, "book.binance.BTC-USDT" }
 *
 * Runs on the broker's ingest thread (see topics.h for the rules).
 */
#include "topics.h"

#include "err.h"

#include <stdlib.h>
#include <string.h>

typedef struct topics_entry {
    uint64_t hash;
    qb_book *book; /* book topics only */
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
    size_t len;
    char topic[]; /* len bytes and a NUL */
} topics_entry;

struct qb_topics {
    topics_entry **slots;
    size_t cap; /* power of two */
    size_t count;
    size_t max;
    size_t books;
    size_t books_valid;
    uint64_t gap_want; /* the seq expected by the last QB_TOPICS_GAP */
};

#define TOPICS_MIN_CAP 64

static uint64_t topics_hash(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

qb_topics *qb_topics_new(size_t max_topics)
{
    qb_topics *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return NULL;
    }
    t->max = max_topics ? max_topics : QB_TOPICS_DEFAULT_MAX;
    t->cap = TOPICS_MIN_CAP;
    t->slots = calloc(t->cap, sizeof *t->slots);
    if (t->slots == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

void qb_topics_free(qb_topics *t)
{
    if (t == NULL) {
        return;
    }
    for (size_t i = 0; i < t->cap; i++) {
        topics_entry *e = t->slots[i];
        if (e != NULL) {
            qb_book_free(e->book);
            free(e);
        }
    }
    free(t->slots);
    free(t);
}

/* The slot holding topic, or the empty slot where it would go. */
static size_t topics_probe(const qb_topics *t, const char *p, size_t n, uint64_t h)
{
    size_t mask = t->cap - 1;
    size_t i = (size_t)h & mask;
    for (;;) {
        const topics_entry *e = t->slots[i];
        if (e == NULL || (e->hash == h && e->len == n && memcmp(e->topic, p, n) == 0)) {
            return i;
        }
        i = (i + 1) & mask;
    }
}

static int topics_grow(qb_topics *t)
{
    size_t ncap = t->cap * 2;
    topics_entry **ns = calloc(ncap, sizeof *ns);
    if (ns == NULL) {
        return QB_ENOMEM;
    }
    for (size_t i = 0; i < t->cap; i++) {
        topics_entry *e = t->slots[i];
        if (e != NULL) {
            size_t j = (size_t)e->hash & (ncap - 1);
            while (ns[j] != NULL) {
                j = (j + 1) & (ncap - 1);
            }
            ns[j] = e;
        }
    }
    free(t->slots);
    t->slots = ns;
    t->cap = ncap;
    return QB_OK;
}

static topics_entry *topics_find(const qb_topics *t, qb_str topic)
{
    uint64_t h = topics_hash(topic.p, topic.n);
    return t->slots[topics_probe(t, topic.p, topic.n, h)];
}

/* Finds or creates the entry; NULL when untracked (limit or no memory). */
static topics_entry *topics_get(qb_topics *t, qb_str topic, bool is_book, bool *created)
{
    uint64_t h = topics_hash(topic.p, topic.n);
    size_t i = topics_probe(t, topic.p, topic.n, h);
    if (t->slots[i] != NULL) {
        return t->slots[i];
    }
    if (t->count >= t->max) {
        return NULL;
    }
    if ((t->count + 1) * 2 > t->cap) {
        if (topics_grow(t) != QB_OK) {
            return NULL;
        }
        i = topics_probe(t, topic.p, topic.n, h);
    }
    topics_entry *e = calloc(1, sizeof *e + topic.n + 1);
    if (e == NULL) {
        return NULL;
    }
    if (is_book && (e->book = qb_book_new(0)) == NULL) {
        free(e);
        return NULL;
    }
    e->hash = h;
    e->is_book = is_book;
    e->len = topic.n;
    memcpy(e->topic, topic.p, topic.n);
    e->topic[topic.n] = '\0';
    t->slots[i] = e;
    t->count++;
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

/* Seq rule shared by every non-snapshot message: 0 when in sequence. */
static unsigned topics_check_seq(qb_topics *t, topics_entry *e, uint64_t seq)
{
    if (!e->has_seq) {
        e->has_seq = true;
        e->last_seq = seq;
        return 0;
    }
    if (seq == 1 && e->last_seq >= 1) {
        /* A publisher that restarted (an adapter restarted by the
         * supervisor) numbers its topics from 1 again: rebase, as a
         * snapshot would, so the broker's view of the feed (status in
         * /metrics, /health, the snapshot service) follows it at once
         * instead of ignoring it as duplicates until the seq catches up. */
        e->last_seq = seq;
        return 0;
    }
    if (seq <= e->last_seq) {
        return QB_TOPICS_DUPLICATE;
    }
    unsigned ev = 0;
    if (seq != e->last_seq + 1) {
        ev = QB_TOPICS_GAP;
        t->gap_want = e->last_seq + 1;
    }
    e->last_seq = seq;
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
    unsigned seq_ev = topics_check_seq(t, e, m->seq);
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
    return t->count;
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
    for (size_t i = 0; i < t->cap; i++) {
        const topics_entry *e = t->slots[i];
        if (e == NULL) {
            continue;
        }
        topics_info_of(e, &info);
        int rc = fn(arg, (qb_str){e->topic, e->len}, &info, e->book);
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
