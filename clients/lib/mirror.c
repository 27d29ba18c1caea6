/*
 * mirror.c: qb_mirror (quotebus.h): local exact copies of order books, kept
 * by the late-joiner procedure of PROTOCOL.md section 11.3.
 *
 *   [SUB book.X + status.X] --frames--> mirror thread --lock--> books[] <--lock-- accessors
 *   [REQ snapshot service ] <--requests-/     |
 *                                             +--> on_change(topic), no lock held
 *
 * The procedure, per book:
 *   1. Subscribe first (the SUB socket is connected before the first
 *      request), so every delta after the snapshot is queued.
 *   2. Request the snapshot (the configured topics/prefixes once at start,
 *      then one exact topic per book that needs one). While the request is
 *      in flight the stream's frames wait in the SUB socket's queue (8192
 *      frames): that queue is the buffer of the procedure.
 *   3. Apply the snapshot: replace the book, seq = the snapshot's seq, LIVE.
 *   4. Read on: deltas with seq <= the book's seq are already in it and are
 *      dropped (stale_dropped); seq + 1 is applied; anything else is a gap:
 *      the book goes RESYNCING (its levels stay readable as the last exact
 *      state) and is requested again, at once.
 *   Stream snapshots (refresh or not) are applied too, so books heal within
 *   ~1 s even when the snapshot service is absent or down.
 *
 * Why deltas received while a book has no snapshot can be dropped: the
 * broker applies a frame to its book before forwarding it, so any snapshot
 * requested after such a delta arrived already contains it.
 *
 * Publisher restarts (PROTOCOL.md 11.4, rules 7 and 8). The book's seq can
 * be ahead of the stream (after a service snapshot), which is why step 4
 * drops deltas at or below it; but a restarted adapter or broker numbers
 * from 1 again, and its deltas would be dropped as "stale" until one lands
 * on the old book's seq + 1 and is applied to the wrong book. So each book
 * also keeps stream_seq, the last seq seen on the STREAM: on one
 * publisher's stream seqs only go up (a refresh repeats the current one).
 * A book message below stream_seq, or a delta equal to it, is a new
 * publisher (qb_seq_on_stream; the book's own seq goes through qb_seq_step,
 * both proto/seq.h): counted (restarts), logged (mirror.publisher_restart), the
 * book invalidated (RESYNCING: every snapshot is accepted again, deltas
 * wait) and requested; a snapshot that revealed it is applied at once.
 * And when the SUB socket gets a new pipe after having had one
 * (reconnects: the broker may be a new process), every book is
 * invalidated and requested the same way and its stream_seq forgotten.
 * The pipe callback runs on an NNG thread and only counts (ADD_PRE, which
 * NNG runs before the pipe can deliver a frame); the mirror thread checks
 * the count before every frame and acts on it.
 *
 * Topics that exist nowhere. A configured topic or prefix the service
 * answers "unknown_topic" is asked again with its own backoff (250 ms
 * doubling to 5 s) until it has a book, and the first such answer also
 * fetches "book." once, the list of what the broker has. From
 * MIRROR_NO_SUCH_MS after open, qb_mirror_check_topic reports such a topic
 * as QB_ENOINSTRUMENT with that list, so an application can tell its user
 * at once instead of waiting for ever; a book that appears later turns it
 * back to QB_OK.
 *
 * Failures: a request that times out or fails marks the service down for a
 * backoff (250 ms doubling to 4 s) during which no request is sent and
 * books heal from the stream only; a book the service does not know yet
 * ("unknown_topic", or not valid at the broker) is retried with its own
 * backoff (100 ms doubling to 1 s). At most MIRROR_REQUESTS_PER_TURN
 * requests are sent before the thread reads the stream again, so a mass
 * resync (broker restart) cannot starve the queue.
 *
 * Bounds: max_books books (policy "ignore": further topics are counted as
 * untracked); each book at most QB_BOOK_DEFAULT_MAX_LEVELS per side (an
 * overflow is a resync).
 */
#include "client_int.h"

#include "book.h"
#include "clock.h"
#include "log.h"
#include "nngclose.h"
#include "nngrecv.h"

#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MIRROR_DEFAULT_MAX_BOOKS 10000
#define MIRROR_DEFAULT_TIMEOUT_MS 2000
#define MIRROR_TICK_MS 50
#define MIRROR_REQUESTS_PER_TURN 8
#define MIRROR_BOOK_BACKOFF_MIN_MS 100
#define MIRROR_BOOK_BACKOFF_MAX_MS 1000
#define MIRROR_SVC_BACKOFF_MIN_MS 250
#define MIRROR_SVC_BACKOFF_MAX_MS 4000
#define MIRROR_CONNECT_WAIT_MS 2000
#define MIRROR_CLOSE_WAIT_MS 2000
#define MIRROR_UNKNOWN_RETRY_MIN_MS 250
#define MIRROR_UNKNOWN_RETRY_MAX_MS 5000
/* A configured topic the service does not know is "no such instrument"
 * from this long after open: a broker that is itself starting learns its
 * instruments within about a second of its adapters connecting. */
#define MIRROR_NO_SUCH_MS 2000

typedef struct mirror_book {
    char topic[QB_TOPIC_MAX + 1];
    size_t topic_len;
    char ex[QB_NAME_MAX_LEN + 1];
    char sym[QB_NAME_MAX_LEN + 1];
    size_t index;
    qb_book *book;
    qb_mirror_state state;
    uint64_t seq;
    bool has_status;
    qb_feed_state status;
    uint64_t last_mono; /* qb_mono_ns of the last message */
    uint64_t exch_ts;
    uint64_t gaps, snapshots;
    uint64_t stream_seq; /* last seq seen on the stream (valid when has_stream_seq) */
    bool has_stream_seq;
    uint32_t pipe; /* NNG pipe of the last stream message (a new one: reconnected) */
    /* Mirror thread only: */
    bool want; /* needs a snapshot from the service */
    uint64_t next_try;
    unsigned backoff_ms;
} mirror_book;

typedef struct mirror_prefix {
    char *topic;
    /* Mirror thread only: */
    bool pending; /* to be requested (again) from the service */
    uint64_t next_try;
    unsigned retry_ms; /* backoff while the service says unknown_topic */
    /* Under the lock (qb_mirror_check_topic): */
    bool unknown; /* the service's last answer to it was unknown_topic */
    char *hint;   /* what the broker has (qbc_snap_instruments), or NULL */
} mirror_prefix;

typedef struct mirror_counters {
    _Atomic uint64_t frames, invalid, deltas, gaps, snapshot_requests, snapshot_failures,
        service_snapshots, stream_snapshots, stale_dropped, untracked, restarts, reconnects;
} mirror_counters;

struct qb_mirror {
    qb_nng_recv *recv; /* the mirror thread's receiver of sub (nngrecv.h) */
    uint32_t cur_pipe; /* mirror thread: the pipe of the frame being applied */
    char *connect;
    char *snapshot; /* NULL: no service */
    mirror_prefix *prefixes;
    size_t n_prefixes;
    qb_mirror_change_fn on_change;
    void *arg;
    int timeout_ms;
    size_t max_books;
    uint64_t opened; /* qb_mono_ns at qb_mirror_open */

    nng_socket sub, req;
    bool sub_open, req_open;
    atomic_int sub_pipes;
    atomic_uint sub_connects; /* pipes ever added (ADD_PRE), NNG threads */
    unsigned connects_seen;   /* mirror thread only */
    qb_decoder *dec;
    pthread_t thread;
    bool thread_started;
    atomic_bool stop;

    pthread_mutex_t lock; /* guards map, books, n_books and every book */
    qbc_map map;          /* topic -> mirror_book* */
    mirror_book **books;
    size_t n_books, cap_books;

    uint64_t svc_down_until; /* mirror thread only */
    unsigned svc_backoff_ms;
    mirror_counters c;
};

static void mirror_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t mirror_ms(unsigned ms)
{
    return (uint64_t)ms * 1000000u;
}

static void mirror_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- book table (lock held) ------------------------------------------- */

/* The book of a "book.<ex>.<sym>" topic, created on first sight; NULL when
 * the topic is malformed, the table is full or memory is short. */
static mirror_book *mirror_book_get(qb_mirror *m, const char *topic, size_t n)
{
    bool created;
    qbc_map_entry *e = n <= QB_TOPIC_MAX ? qbc_map_find(&m->map, topic, n) : NULL;
    if (e != NULL) {
        return e->value;
    }
    qb_topic tp;
    if (qb_topic_parse(topic, n, &tp) != QB_TOPIC_EXACT || tp.kind != QB_TOPIC_BOOK) {
        return NULL;
    }
    if (m->n_books >= m->max_books) {
        return NULL;
    }
    if (m->n_books == m->cap_books) {
        size_t ncap = m->cap_books ? m->cap_books * 2 : 16;
        mirror_book **nb = realloc(m->books, ncap * sizeof *nb);
        if (nb == NULL) {
            return NULL;
        }
        m->books = nb;
        m->cap_books = ncap;
    }
    mirror_book *b = calloc(1, sizeof *b);
    if (b == NULL) {
        return NULL;
    }
    b->book = qb_book_new(0);
    e = b->book ? qbc_map_get(&m->map, topic, n, &created) : NULL;
    if (e == NULL) {
        qb_book_free(b->book);
        free(b);
        return NULL;
    }
    e->value = b;
    memcpy(b->topic, topic, n);
    b->topic_len = n;
    memcpy(b->ex, tp.ex.p, tp.ex.n);
    memcpy(b->sym, tp.sym.p, tp.sym.n);
    b->index = m->n_books;
    b->state = QB_MIRROR_SYNCING;
    b->backoff_ms = MIRROR_BOOK_BACKOFF_MIN_MS;
    m->books[m->n_books++] = b;
    return b;
}

static mirror_book *mirror_book_find(qb_mirror *m, const char *topic)
{
    qbc_map_entry *e = qbc_map_find(&m->map, topic, strlen(topic));
    return e ? e->value : NULL;
}

/* Schedules a snapshot request for b. now: at once; else after its backoff. */
static void mirror_want(qb_mirror *m, mirror_book *b, bool now)
{
    if (m->snapshot == NULL) {
        return;
    }
    uint64_t t = qb_mono_ns();
    if (!b->want || now) {
        b->want = true;
        if (now) {
            b->backoff_ms = MIRROR_BOOK_BACKOFF_MIN_MS;
            b->next_try = t;
        } else if (b->next_try < t) {
            b->next_try = t;
        }
    }
}

static void mirror_backoff(mirror_book *b)
{
    b->next_try = qb_mono_ns() + mirror_ms(b->backoff_ms);
    b->backoff_ms = b->backoff_ms * 2 > MIRROR_BOOK_BACKOFF_MAX_MS ? MIRROR_BOOK_BACKOFF_MAX_MS
                                                                   : b->backoff_ms * 2;
}

/* Replaces b's levels with a snapshot's; LIVE at its seq. */
static int mirror_replace(mirror_book *b, const qb_msg *msg)
{
    int rc = qb_book_replace(b->book, msg->bids, msg->n_bids, msg->asks, msg->n_asks);
    if (rc != QB_OK || qb_book_crossed(b->book)) {
        b->state = QB_MIRROR_RESYNCING;
        return rc != QB_OK ? rc : QB_ECROSSED;
    }
    b->seq = msg->seq;
    b->state = QB_MIRROR_LIVE;
    b->want = false;
    b->backoff_ms = MIRROR_BOOK_BACKOFF_MIN_MS;
    b->snapshots++;
    b->exch_ts = msg->exch_ts;
    return QB_OK;
}

static void mirror_gap(qb_mirror *m, mirror_book *b, const char *why, uint64_t want_seq,
                       uint64_t got_seq)
{
    b->gaps++;
    mirror_add(&m->c.gaps, 1);
    b->state = QB_MIRROR_RESYNCING;
    /* The likely cause: a new connection to the broker since the book's
     * last message loses what was sent meanwhile; otherwise the loss is
     * upstream (the broker's ingest_gaps) or in a full receive buffer. */
    const char *cause = b->pipe != 0 && b->pipe != m->cur_pipe
                            ? "after a reconnect to the broker: messages sent while disconnected "
                              "are lost"
                            : "same connection: lost before the broker (see its ingest_gaps) or "
                              "in a full receive buffer";
    QB_LOG_RL(QB_LOG_WARN, "mirror.gap", "topic=%s %s (expected seq %llu, got %llu; %s): resyncing",
              b->topic, why, (unsigned long long)want_seq, (unsigned long long)got_seq, cause);
    mirror_want(m, b, true);
}

/* The book no longer matches the stream: RESYNCING (levels stay readable as
 * the last exact state; since the book is not LIVE, any snapshot, stream or
 * service, is accepted and deltas wait), snapshot requested at once. */
static void mirror_invalidate(qb_mirror *m, mirror_book *b)
{
    if (b->state == QB_MIRROR_LIVE) {
        b->state = QB_MIRROR_RESYNCING;
    }
    mirror_want(m, b, true);
}

/* Rule 7: a book message below the stream's last seq, or a delta equal to
 * it, comes from a restarted publisher. Returns true when msg is one. */
static bool mirror_restart_check(qb_mirror *m, mirror_book *b, const qb_msg *msg)
{
    bool restart =
        qb_seq_on_stream(b->has_stream_seq, b->stream_seq, msg->seq,
                         qb_seq_type_of(msg->type, msg->refresh), NULL) == QB_SEQ_RESTART;
    if (restart) {
        mirror_add(&m->c.restarts, 1);
        QB_LOG_RL(QB_LOG_WARN, "mirror.publisher_restart",
                  "topic=%s: %s seq %llu after seq %llu on the stream: the publisher restarted; "
                  "book invalidated, resyncing",
                  b->topic, msg->type == QB_MSG_DELTA ? "delta" : "snapshot",
                  (unsigned long long)msg->seq, (unsigned long long)b->stream_seq);
        mirror_invalidate(m, b);
    }
    b->stream_seq = msg->seq;
    b->has_stream_seq = true;
    return restart;
}

/* Applies one stream message to b. Returns true when b changed. */
static bool mirror_apply(qb_mirror *m, mirror_book *b, const qb_msg *msg, uint64_t now)
{
    if (msg->type == QB_MSG_STATUS) {
        bool changed = !b->has_status || b->status != msg->state;
        b->has_status = true;
        b->status = msg->state;
        return changed;
    }
    if (msg->type != QB_MSG_SNAPSHOT && msg->type != QB_MSG_DELTA) {
        return false;
    }
    b->last_mono = now; /* the age of a book counts from its last book message */
    bool restart = mirror_restart_check(m, b, msg);
    /* The seq rule (proto/seq.h) against our book: its seq can come from
     * the service, ahead of the stream, so a duplicate here is stale. */
    qb_seq_result r = qb_seq_step(b->state == QB_MIRROR_LIVE, b->seq, msg->seq,
                                  qb_seq_type_of(msg->type, msg->refresh), NULL);
    if (msg->type == QB_MSG_SNAPSHOT) {
        if (r == QB_SEQ_DUPLICATE) {
            /* A refresh older than our book (queued before a service
             * snapshot). */
            mirror_add(&m->c.stale_dropped, 1);
            return false;
        }
        if (r == QB_SEQ_GAP) {
            /* A refresh ahead of our book: deltas were lost on the way. */
            b->gaps++;
            mirror_add(&m->c.gaps, 1);
        }
        if (mirror_replace(b, msg) != QB_OK) {
            mirror_want(m, b, true);
        } else {
            mirror_add(&m->c.stream_snapshots, 1);
        }
        return true;
    }
    if (b->state != QB_MIRROR_LIVE) {
        /* No exact book: the snapshot asked for (after this delta was
         * received) will contain it. */
        mirror_want(m, b, false);
        return restart;
    }
    if (r == QB_SEQ_DUPLICATE || r == QB_SEQ_RESTART) {
        /* At or below our book's seq: in it already (a restarted publisher
         * was caught on the stream above, rule 7). */
        mirror_add(&m->c.stale_dropped, 1);
        return false;
    }
    if (r != QB_SEQ_NEXT) {
        mirror_gap(m, b, "sequence gap", b->seq + 1, msg->seq);
        return true;
    }
    int rc = qb_book_apply(b->book, msg->bids, msg->n_bids, msg->asks, msg->n_asks);
    if (rc != QB_OK || qb_book_crossed(b->book)) {
        mirror_gap(m, b, rc != QB_OK ? "change not applicable" : "book crossed", b->seq + 1,
                   msg->seq);
        return true;
    }
    b->seq = msg->seq;
    b->exch_ts = msg->exch_ts;
    mirror_add(&m->c.deltas, 1);
    return true;
}

static void mirror_notify(qb_mirror *m, const char *topic)
{
    if (m->on_change != NULL) {
        m->on_change(m->arg, m, topic);
    }
}

/* Processes one frame of the stream. */
static void mirror_frame(qb_mirror *m, nng_msg *frame)
{
    qb_str topic;
    qb_msg msg;
    char changed_topic[QB_TOPIC_MAX + 1];
    bool changed = false;
    mirror_add(&m->c.frames, 1);
    m->cur_pipe = (uint32_t)nng_pipe_id(nng_msg_get_pipe(frame));
    int rc = qb_decoder_begin(m->dec, nng_msg_body(frame), nng_msg_len(frame), &topic);
    if (rc != QB_OK) {
        mirror_add(&m->c.invalid, 1);
        return;
    }
    /* status.<ex>.<sym> belongs to book.<ex>.<sym>. */
    char book_topic[QB_TOPIC_MAX + 8];
    size_t bn;
    qb_topic tp;
    if (qb_topic_parse(topic.p, topic.n, &tp) != QB_TOPIC_EXACT ||
        (tp.kind != QB_TOPIC_STATUS && tp.kind != QB_TOPIC_BOOK)) {
        return; /* another kind: not ours */
    }
    bn = (size_t)snprintf(book_topic, sizeof book_topic, "book.%.*s.%.*s", (int)tp.ex.n, tp.ex.p,
                          (int)tp.sym.n, tp.sym.p);
    uint64_t now = qb_mono_ns();
    pthread_mutex_lock(&m->lock);
    mirror_book *b = bn <= QB_TOPIC_MAX ? mirror_book_get(m, book_topic, bn) : NULL;
    if (b == NULL) {
        mirror_add(&m->c.untracked, 1);
    } else {
        while ((rc = qb_decoder_next(m->dec, &msg)) == QB_OK) {
            changed |= mirror_apply(m, b, &msg, now);
            b->pipe = m->cur_pipe;
        }
        if (rc != QB_EEOF) {
            /* Maps before the bad one were applied; a bad book change
             * cannot be trusted: resync. */
            mirror_add(&m->c.invalid, 1);
            if (b->state == QB_MIRROR_LIVE) {
                mirror_gap(m, b, "invalid frame", b->seq + 1, 0);
                changed = true;
            }
        }
        memcpy(changed_topic, b->topic, b->topic_len + 1);
    }
    pthread_mutex_unlock(&m->lock);
    if (changed) {
        mirror_notify(m, changed_topic);
    }
}

/* ---- snapshot requests (mirror thread, no lock held) ------------------ */

static bool mirror_svc_up(qb_mirror *m, uint64_t now)
{
    return m->snapshot != NULL && now >= m->svc_down_until;
}

static void mirror_svc_failed(qb_mirror *m, const char *topic, int rc)
{
    mirror_add(&m->c.snapshot_failures, 1);
    m->svc_down_until = qb_mono_ns() + mirror_ms(m->svc_backoff_ms);
    QB_LOG_RL(QB_LOG_WARN, "mirror.snapshot_failed",
              "snapshot request for %s: %s; retrying in %u ms (books heal from the stream "
              "meanwhile)",
              topic, qb_strerror(rc), m->svc_backoff_ms);
    m->svc_backoff_ms = m->svc_backoff_ms * 2 > MIRROR_SVC_BACKOFF_MAX_MS
                            ? MIRROR_SVC_BACKOFF_MAX_MS
                            : m->svc_backoff_ms * 2;
}

/* Applies the books of a successful reply; notifies each changed book. */
static void mirror_apply_reply(qb_mirror *m, const qbc_snap_reply *r)
{
    for (size_t i = 0; i < r->n_books; i++) {
        const qbc_snap_book *sb = &r->books[i];
        char topic[QB_TOPIC_MAX + 1];
        bool changed = false;
        if (sb->topic.n > QB_TOPIC_MAX) {
            continue;
        }
        memcpy(topic, sb->topic.p, sb->topic.n);
        topic[sb->topic.n] = '\0';
        uint64_t now = qb_mono_ns();
        pthread_mutex_lock(&m->lock);
        mirror_book *b = mirror_book_get(m, topic, sb->topic.n);
        if (b == NULL) {
            mirror_add(&m->c.untracked, 1);
            pthread_mutex_unlock(&m->lock);
            continue;
        }
        if (sb->has_state && (!b->has_status || b->status != sb->state)) {
            b->has_status = true;
            b->status = sb->state;
            changed = true;
        }
        uint64_t age = mirror_ms((unsigned)(sb->age_ms > 3600000 ? 3600000 : sb->age_ms));
        if (b->last_mono == 0 && now > age) {
            b->last_mono = now - age;
        }
        qb_str ft;
        qb_msg msg;
        if (!sb->valid) {
            /* The broker has no exact book right now (it is resyncing
             * itself): retry later; a stream refresh may come first. */
            if (b->state != QB_MIRROR_LIVE) {
                b->want = true;
                mirror_backoff(b);
            }
        } else if (qb_decoder_begin(m->dec, sb->frame, sb->frame_len, &ft) != QB_OK ||
                   ft.n != sb->topic.n || memcmp(ft.p, sb->topic.p, ft.n) != 0 ||
                   qb_decoder_next(m->dec, &msg) != QB_OK || msg.type != QB_MSG_SNAPSHOT) {
            mirror_add(&m->c.invalid, 1);
            QB_LOG_RL(QB_LOG_WARN, "mirror.bad_snapshot", "topic=%s: invalid frame in reply",
                      topic);
            b->want = true;
            mirror_backoff(b);
        } else if (qb_seq_step(b->state == QB_MIRROR_LIVE, b->seq, msg.seq, QB_SEQ_REFRESH, NULL) ==
                   QB_SEQ_DUPLICATE) {
            b->want = false; /* ours is newer already */
        } else if (mirror_replace(b, &msg) == QB_OK) {
            mirror_add(&m->c.service_snapshots, 1);
            changed = true;
        } else {
            b->want = true;
            mirror_backoff(b);
            changed = true;
        }
        pthread_mutex_unlock(&m->lock);
        if (changed) {
            mirror_notify(m, topic);
        }
    }
}

/* One request. QB_OK (answered), QB_ENOINSTRUMENT (answered
 * "unknown_topic"), or the error of a service that failed (stop
 * requesting). */
static int mirror_request(qb_mirror *m, const char *topic, mirror_book *b)
{
    qbc_snap_reply r;
    mirror_add(&m->c.snapshot_requests, 1);
    int rc = qbc_snap_request(m->req, topic, m->timeout_ms, &r);
    if (rc != QB_OK) {
        mirror_svc_failed(m, topic, rc);
        if (b != NULL) {
            pthread_mutex_lock(&m->lock);
            b->next_try = m->svc_down_until;
            pthread_mutex_unlock(&m->lock);
        }
        return rc;
    }
    m->svc_backoff_ms = MIRROR_SVC_BACKOFF_MIN_MS;
    if (r.ok) {
        mirror_apply_reply(m, &r);
    } else {
        mirror_add(&m->c.snapshot_failures, 1);
        rc = qbc_snap_unknown(&r) ? QB_ENOINSTRUMENT : QB_OK;
        if (!qbc_snap_unknown(&r)) {
            QB_LOG_RL(QB_LOG_WARN, "mirror.snapshot_error", "snapshot request for %s: %s: %s",
                      topic, r.code, r.error);
        }
    }
    if (b != NULL) {
        pthread_mutex_lock(&m->lock);
        if (b->want) { /* not satisfied: unknown yet, or not valid */
            mirror_backoff(b);
        }
        pthread_mutex_unlock(&m->lock);
    }
    qbc_snap_reply_fini(&r);
    return rc;
}

/* The service knows no book of configured topic p: ask it again later,
 * and (once) ask what the broker has, for qb_mirror_check_topic. */
static void mirror_prefix_unknown(qb_mirror *m, mirror_prefix *p, uint64_t now)
{
    p->next_try = now + mirror_ms(p->retry_ms);
    p->retry_ms = p->retry_ms * 2 > MIRROR_UNKNOWN_RETRY_MAX_MS ? MIRROR_UNKNOWN_RETRY_MAX_MS
                                                                : p->retry_ms * 2;
    pthread_mutex_lock(&m->lock);
    bool need_hint = p->hint == NULL;
    p->unknown = true;
    pthread_mutex_unlock(&m->lock);
    if (!need_hint) {
        return;
    }
    qbc_snap_reply r;
    qb_buf text = QB_BUF_INIT;
    mirror_add(&m->c.snapshot_requests, 1);
    int rc = qbc_snap_request(m->req, "book.", m->timeout_ms, &r);
    if (rc != QB_OK) {
        mirror_svc_failed(m, "book.", rc);
        return;
    }
    if ((r.ok || qbc_snap_unknown(&r)) && qbc_snap_instruments(&r, &text) == QB_OK &&
        qb_buf_append(&text, "", 1) == QB_OK) {
        pthread_mutex_lock(&m->lock);
        free(p->hint);
        p->hint = (char *)text.data; /* NUL-terminated above; the buffer is ours */
        text = (qb_buf)QB_BUF_INIT;
        pthread_mutex_unlock(&m->lock);
    }
    qb_buf_fini(&text);
    qbc_snap_reply_fini(&r);
}

static void mirror_requests(qb_mirror *m)
{
    uint64_t now = qb_mono_ns();
    int budget = MIRROR_REQUESTS_PER_TURN;
    for (size_t i = 0; i < m->n_prefixes && budget > 0; i++) {
        mirror_prefix *p = &m->prefixes[i];
        if (!p->pending || p->next_try > now || !mirror_svc_up(m, now)) {
            continue;
        }
        budget--;
        int rc = mirror_request(m, p->topic, NULL);
        now = qb_mono_ns();
        if (rc == QB_OK) {
            p->pending = false;
            p->retry_ms = MIRROR_UNKNOWN_RETRY_MIN_MS;
            pthread_mutex_lock(&m->lock);
            p->unknown = false;
            pthread_mutex_unlock(&m->lock);
        } else if (rc == QB_ENOINSTRUMENT) {
            mirror_prefix_unknown(m, p, now);
            now = qb_mono_ns();
        }
    }
    /* Books wanting a snapshot, oldest index first; a snapshot of the
     * exact topic each. */
    for (size_t i = 0; budget > 0 && mirror_svc_up(m, now); i++) {
        char topic[QB_TOPIC_MAX + 1];
        mirror_book *b = NULL;
        pthread_mutex_lock(&m->lock);
        for (; i < m->n_books; i++) {
            if (m->books[i]->want && m->books[i]->next_try <= now) {
                b = m->books[i];
                memcpy(topic, b->topic, b->topic_len + 1);
                break;
            }
        }
        pthread_mutex_unlock(&m->lock);
        if (b == NULL) {
            break;
        }
        budget--;
        mirror_request(m, topic, b);
        now = qb_mono_ns();
    }
}

/* ---- thread ----------------------------------------------------------- */

/* Rule 8: after the SUB socket got a new pipe (not its first), the broker
 * may be a new process numbering anew: invalidate every book, forget its
 * stream seq, request everything again (the service may answer
 * unknown_topic or fail until the new broker has books: the backoffs
 * handle it). Called before every frame; cheap when nothing happened. */
static void mirror_reconnect_check(qb_mirror *m)
{
    unsigned c = atomic_load(&m->sub_connects);
    if (c == m->connects_seen) {
        return;
    }
    bool reconnected = c > 1; /* a pipe after the first one */
    m->connects_seen = c;
    if (!reconnected) {
        return;
    }
    mirror_add(&m->c.reconnects, 1);
    pthread_mutex_lock(&m->lock);
    size_t n = m->n_books;
    for (size_t i = 0; i < n; i++) {
        mirror_book *b = m->books[i];
        b->has_stream_seq = false;
        mirror_invalidate(m, b);
    }
    pthread_mutex_unlock(&m->lock);
    for (size_t i = 0; i < m->n_prefixes; i++) {
        m->prefixes[i].pending = m->snapshot != NULL;
        m->prefixes[i].next_try = 0;
    }
    QB_LOG_RL(QB_LOG_WARN, "mirror.reconnected",
              "reconnected to the broker (%s): %zu books invalidated, resyncing", m->connect, n);
    /* Books are only added and their topics never change on this thread:
     * no lock needed to read them here. */
    for (size_t i = 0; i < n; i++) {
        mirror_notify(m, m->books[i]->topic);
    }
}

static void *mirror_main(void *arg)
{
    qb_mirror *m = arg;
    /* Subscribe first: wait (bounded) until the SUB socket is connected,
     * so the first snapshot is followed by every delta after it. */
    for (int waited = 0; waited < MIRROR_CONNECT_WAIT_MS && atomic_load(&m->sub_pipes) == 0 &&
                         !atomic_load(&m->stop);
         waited += 10) {
        mirror_sleep_ms(10);
    }
    while (!atomic_load(&m->stop)) {
        mirror_reconnect_check(m);
        mirror_requests(m);
        /* Drain what is queued, then wait a tick. */
        for (int n = 0; n < 4096 && !atomic_load(&m->stop); n++) {
            nng_msg *frame;
            /* Not NNG's receive timeout: it loses a frame now and then
             * (nngrecv.h). */
            if (qb_nng_recv_next(m->recv, n == 0 ? MIRROR_TICK_MS : 0, &frame, NULL) != QB_OK) {
                break;
            }
            mirror_reconnect_check(m);
            mirror_frame(m, frame);
            nng_msg_free(frame);
            if ((n & 255) == 255) {
                mirror_requests(m); /* a gap found mid-queue is healed promptly */
            }
        }
    }
    return NULL;
}

static void mirror_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    qb_mirror *m = arg;
    (void)p;
    if (ev == NNG_PIPE_EV_ADD_PRE) {
        /* Before the pipe can deliver anything: see mirror_reconnect_check. */
        atomic_fetch_add(&m->sub_connects, 1);
        return;
    }
    atomic_fetch_add(&m->sub_pipes, ev == NNG_PIPE_EV_ADD_POST ? 1 : -1);
}

static void mirror_free(qb_mirror *m)
{
    qb_nng_recv_free(m->recv); /* the mirror thread is gone: cancel its receive */
    m->recv = NULL;
    /* Bounded close: NNG 1.5.2 can hang closing a SUB socket while frames
     * arrive (see common/nngclose.h). Our pipe callbacks go first. */
    if (m->sub_open) {
        nng_pipe_notify(m->sub, NNG_PIPE_EV_ADD_PRE, NULL, NULL);
        nng_pipe_notify(m->sub, NNG_PIPE_EV_ADD_POST, NULL, NULL);
        nng_pipe_notify(m->sub, NNG_PIPE_EV_REM_POST, NULL, NULL);
        if (!qb_nng_close_bounded(m->sub, NULL, MIRROR_CLOSE_WAIT_MS)) {
            QB_WARN("mirror.close_stuck",
                    "NNG did not close the subscriber socket within %d ms (NNG 1.5.2 defect, "
                    "nanomsg/nng#1543); abandoned to NNG",
                    MIRROR_CLOSE_WAIT_MS);
        }
    }
    if (m->req_open && !qb_nng_close_bounded(m->req, NULL, MIRROR_CLOSE_WAIT_MS)) {
        QB_WARN("mirror.close_stuck", "NNG did not close the snapshot socket within %d ms",
                MIRROR_CLOSE_WAIT_MS);
    }
    for (size_t i = 0; i < m->n_books; i++) {
        qb_book_free(m->books[i]->book);
        free(m->books[i]);
    }
    free(m->books);
    qbc_map_fini(&m->map);
    for (size_t i = 0; i < m->n_prefixes; i++) {
        free(m->prefixes[i].topic);
        free(m->prefixes[i].hint);
    }
    free(m->prefixes);
    free(m->connect);
    free(m->snapshot);
    qb_decoder_free(m->dec);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static int mirror_subscribe(qb_mirror *m, const char *topic)
{
    char st[QB_TOPIC_MAX + 8];
    size_t n = qb_topic_sub_len(topic);
    snprintf(st, sizeof st, "status.%s", topic + 5);
    size_t sn = qb_topic_sub_len(st);
    if (n == 0 || sn == 0) {
        return QB_EINVAL;
    }
    if (nng_socket_set(m->sub, NNG_OPT_SUB_SUBSCRIBE, topic, n) != 0 ||
        nng_socket_set(m->sub, NNG_OPT_SUB_SUBSCRIBE, st, sn) != 0) {
        return QB_ETRANSPORT;
    }
    return QB_OK;
}

QB_API int qb_mirror_open(const qb_mirror_config *cfg, qb_mirror **out)
{
    if (cfg == NULL || out == NULL || cfg->n_topics == 0 || cfg->topics == NULL) {
        return QB_EINVAL;
    }
    for (size_t i = 0; i < cfg->n_topics; i++) {
        const char *t = cfg->topics[i];
        /* A book topic or prefix: the subscription rule (proto/topic.h). */
        if (t == NULL || strncmp(t, "book.", 5) != 0 || qb_topic_sub_len(t) == 0) {
            return QB_EINVAL;
        }
    }
    qb_mirror *m = calloc(1, sizeof *m);
    if (m == NULL) {
        return QB_ENOMEM;
    }
    pthread_mutex_init(&m->lock, NULL);
    atomic_init(&m->stop, false);
    atomic_init(&m->sub_pipes, 0);
    atomic_init(&m->sub_connects, 0u);
    m->on_change = cfg->on_change;
    m->arg = cfg->arg;
    m->timeout_ms =
        cfg->snapshot_timeout_ms > 0 ? cfg->snapshot_timeout_ms : MIRROR_DEFAULT_TIMEOUT_MS;
    m->max_books = cfg->max_books ? cfg->max_books : MIRROR_DEFAULT_MAX_BOOKS;
    m->opened = qb_mono_ns();
    m->svc_backoff_ms = MIRROR_SVC_BACKOFF_MIN_MS;
    qbc_map_init(&m->map, m->max_books);
    int rc = QB_ENOMEM, rv;
    m->connect = strdup(cfg->connect ? cfg->connect : QB_DEFAULT_PUB_URL);
    const char *snap = cfg->snapshot ? cfg->snapshot : QB_DEFAULT_SNAPSHOT_URL;
    m->snapshot = snap[0] ? strdup(snap) : NULL;
    m->prefixes = calloc(cfg->n_topics, sizeof *m->prefixes);
    m->dec = qb_decoder_new();
    if (m->connect == NULL || (snap[0] && m->snapshot == NULL) || m->prefixes == NULL ||
        m->dec == NULL) {
        goto fail;
    }
    for (size_t i = 0; i < cfg->n_topics; i++) {
        m->prefixes[i].topic = strdup(cfg->topics[i]);
        if (m->prefixes[i].topic == NULL) {
            goto fail;
        }
        m->prefixes[i].pending = m->snapshot != NULL;
        m->prefixes[i].retry_ms = MIRROR_UNKNOWN_RETRY_MIN_MS;
        m->n_prefixes++;
    }
    if ((rv = nng_sub0_open(&m->sub)) != 0) {
        rc = qb_err_from_nng(rv);
        goto fail;
    }
    m->sub_open = true;
    if ((rc = qbc_sub_options(m->sub)) != QB_OK ||
        (rc = qb_nng_recv_new(m->sub, &m->recv)) != QB_OK) {
        goto fail;
    }
    for (size_t i = 0; i < m->n_prefixes; i++) {
        if ((rc = mirror_subscribe(m, m->prefixes[i].topic)) != QB_OK) {
            goto fail;
        }
    }
    nng_pipe_notify(m->sub, NNG_PIPE_EV_ADD_PRE, mirror_pipe_cb, m);
    nng_pipe_notify(m->sub, NNG_PIPE_EV_ADD_POST, mirror_pipe_cb, m);
    nng_pipe_notify(m->sub, NNG_PIPE_EV_REM_POST, mirror_pipe_cb, m);
    if ((rv = nng_dial(m->sub, m->connect, NULL, NNG_FLAG_NONBLOCK)) != 0) {
        rc = qb_err_from_nng(rv);
        goto fail;
    }
    if (m->snapshot != NULL) {
        if ((rc = qbc_snap_open(m->snapshot, NULL, NULL, &m->req)) != QB_OK) {
            goto fail;
        }
        m->req_open = true;
    }
    /* The mirror's thread takes no signals: they stay with the
     * application's threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rv = pthread_create(&m->thread, NULL, mirror_main, m);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rv != 0) {
        rc = QB_ENOMEM;
        goto fail;
    }
    m->thread_started = true;
    *out = m;
    return QB_OK;
fail:
    mirror_free(m);
    return rc;
}

QB_API void qb_mirror_close(qb_mirror *m)
{
    if (m == NULL) {
        return;
    }
    atomic_store(&m->stop, true);
    if (m->recv != NULL) {
        qb_nng_recv_wake(m->recv);
    }
    if (m->thread_started) {
        pthread_join(m->thread, NULL);
    }
    mirror_free(m);
}

/* ---- accessors (any thread) ------------------------------------------- */

static qb_price_level mirror_level(const qb_level *l)
{
    qb_price_level r;
    memcpy(&r, l, sizeof r);
    return r;
}

static void mirror_info_fill(const mirror_book *b, uint64_t now, qb_book_info *o)
{
    memset(o, 0, sizeof *o);
    memcpy(o->topic, b->topic, b->topic_len + 1);
    snprintf(o->exchange, sizeof o->exchange, "%s", b->ex);
    snprintf(o->symbol, sizeof o->symbol, "%s", b->sym);
    o->state = b->state;
    o->has_status = b->has_status;
    o->status = (qb_feed_status)b->status;
    o->seq = b->seq;
    if (b->state != QB_MIRROR_SYNCING) {
        o->n_bids = qb_book_depth(b->book, QB_BID);
        o->n_asks = qb_book_depth(b->book, QB_ASK);
        if (o->n_bids > 0) {
            o->has_bid = true;
            o->best_bid = mirror_level(qb_book_levels(b->book, QB_BID));
        }
        if (o->n_asks > 0) {
            o->has_ask = true;
            o->best_ask = mirror_level(qb_book_levels(b->book, QB_ASK));
        }
    }
    o->exchange_ts_ns = b->exch_ts;
    o->age_ms = b->last_mono == 0 || now < b->last_mono ? 0 : (now - b->last_mono) / 1000000u;
    o->gaps = b->gaps;
    o->snapshots = b->snapshots;
}

QB_API int qb_mirror_info(qb_mirror *m, const char *topic, qb_book_info *out)
{
    if (m == NULL || topic == NULL || out == NULL) {
        return QB_EINVAL;
    }
    uint64_t now = qb_mono_ns();
    pthread_mutex_lock(&m->lock);
    mirror_book *b = mirror_book_find(m, topic);
    if (b != NULL) {
        mirror_info_fill(b, now, out);
    }
    pthread_mutex_unlock(&m->lock);
    return b != NULL ? QB_OK : QB_ENOTFOUND;
}

QB_API int qb_mirror_levels(qb_mirror *m, const char *topic, qb_book_side_sel side,
                            qb_price_level *out, size_t max, size_t *n_out, uint64_t *seq_out)
{
    if (m == NULL || topic == NULL || n_out == NULL || (out == NULL && max > 0) ||
        (side != QB_BIDS && side != QB_ASKS)) {
        return QB_EINVAL;
    }
    pthread_mutex_lock(&m->lock);
    mirror_book *b = mirror_book_find(m, topic);
    if (b != NULL) {
        qb_book_side s = side == QB_BIDS ? QB_BID : QB_ASK;
        size_t n = b->state == QB_MIRROR_SYNCING ? 0 : qb_book_depth(b->book, s);
        if (n > max) {
            n = max;
        }
        if (n > 0) {
            memcpy(out, qb_book_levels(b->book, s), n * sizeof *out);
        }
        *n_out = n;
        if (seq_out != NULL) {
            *seq_out = b->seq;
        }
    }
    pthread_mutex_unlock(&m->lock);
    return b != NULL ? QB_OK : QB_ENOTFOUND;
}

QB_API size_t qb_mirror_list(qb_mirror *m, qb_book_info *out, size_t max)
{
    if (m == NULL) {
        return 0;
    }
    uint64_t now = qb_mono_ns();
    pthread_mutex_lock(&m->lock);
    size_t n = m->n_books;
    for (size_t i = 0; i < n && i < max && out != NULL; i++) {
        mirror_info_fill(m->books[i], now, &out[i]);
    }
    pthread_mutex_unlock(&m->lock);
    return n;
}

/* True when book topic t (NUL-terminated) is selected by the configured
 * topic pat: equal to an exact one, or starting with a prefix. */
static bool mirror_selects(const char *pat, const char *t)
{
    size_t pn = strlen(pat);
    if (qb_topic_sub_len(pat) > pn) {
        return strcmp(pat, t) == 0; /* exact: the subscription has the NUL */
    }
    return strncmp(pat, t, pn) == 0;
}

QB_API int qb_mirror_check_topic(qb_mirror *m, const char *topic, char *hint, size_t hint_cap)
{
    if (m == NULL || topic == NULL || (hint == NULL && hint_cap > 0)) {
        return QB_EINVAL;
    }
    int rc = QB_ENOTFOUND;
    uint64_t now = qb_mono_ns();
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->n_prefixes && rc == QB_ENOTFOUND; i++) {
        const mirror_prefix *p = &m->prefixes[i];
        if (strcmp(p->topic, topic) != 0) {
            continue;
        }
        rc = QB_EAGAIN;
        for (size_t k = 0; k < m->n_books && rc == QB_EAGAIN; k++) {
            if (mirror_selects(p->topic, m->books[k]->topic)) {
                rc = QB_OK;
            }
        }
        if (rc == QB_EAGAIN && p->unknown && now - m->opened >= mirror_ms(MIRROR_NO_SUCH_MS)) {
            rc = QB_ENOINSTRUMENT;
            if (hint_cap > 0) {
                snprintf(hint, hint_cap, "%s", p->hint ? p->hint : "");
            }
        }
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

QB_API int qb_mirror_wait_live(qb_mirror *m, const char *topic, int timeout_ms)
{
    if (m == NULL) {
        return QB_EINVAL;
    }
    uint64_t deadline = qb_mono_ns() + mirror_ms(timeout_ms > 0 ? (unsigned)timeout_ms : 0);
    for (;;) {
        bool live;
        pthread_mutex_lock(&m->lock);
        if (topic != NULL) {
            mirror_book *b = mirror_book_find(m, topic);
            live = b != NULL && b->state == QB_MIRROR_LIVE;
        } else {
            live = m->n_books > 0;
            for (size_t i = 0; live && i < m->n_books; i++) {
                live = m->books[i]->state == QB_MIRROR_LIVE;
            }
        }
        pthread_mutex_unlock(&m->lock);
        if (live) {
            return QB_OK;
        }
        if (qb_mono_ns() >= deadline) {
            return QB_ETIMEDOUT;
        }
        mirror_sleep_ms(5);
    }
}

QB_API void qb_mirror_stats_get(qb_mirror *m, qb_mirror_stats *out)
{
    mirror_counters *c = &m->c;
    out->frames = atomic_load(&c->frames);
    out->invalid = atomic_load(&c->invalid);
    out->deltas = atomic_load(&c->deltas);
    out->gaps = atomic_load(&c->gaps);
    out->snapshot_requests = atomic_load(&c->snapshot_requests);
    out->snapshot_failures = atomic_load(&c->snapshot_failures);
    out->service_snapshots = atomic_load(&c->service_snapshots);
    out->stream_snapshots = atomic_load(&c->stream_snapshots);
    out->stale_dropped = atomic_load(&c->stale_dropped);
    out->untracked = atomic_load(&c->untracked);
    out->restarts = atomic_load(&c->restarts);
    out->reconnects = atomic_load(&c->reconnects);
    pthread_mutex_lock(&m->lock);
    out->books = m->n_books;
    uint64_t live = 0;
    for (size_t i = 0; i < m->n_books; i++) {
        live += m->books[i]->state == QB_MIRROR_LIVE;
    }
    out->books_live = live;
    pthread_mutex_unlock(&m->lock);
}
