/*
 * sync.c: the snapshot + delta state machine of sync.h.
 *
 * Buffered events are packed into one reusable byte buffer, so buffering
 * allocates only when the buffer grows past its largest size so far:
 *
 *   buf: | rec hdr | bids ... | asks ... | rec hdr | bids | asks | ...
 *
 * While a snapshot is applied the buffer is swapped with a second one
 * (replay) and fed back through qb_sync_on_delta(): if a gap shows up in
 * the middle, the remaining events land in the fresh buffer of the next
 * cycle exactly as live ones would. Runs on the lws service thread only.
 */
#include "sync.h"

#include "err.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

typedef struct sync_rec {
    uint64_t first_id, last_id, prev_id, exch_ts, recv_ts;
    uint32_t n_bids, n_asks;
    uint32_t has_prev;
    uint32_t pad_;
} sync_rec;

int qb_sync_init(qb_sync *s, const qb_seq_rule *rule, const qb_sync_ops *ops, void *user,
                 qb_sync_counters *cnt, size_t max_levels)
{
    memset(s, 0, sizeof *s);
    s->book = qb_book_new(max_levels);
    if (s->book == NULL) {
        return QB_ENOMEM;
    }
    s->rule = rule;
    s->ops = ops;
    s->user = user;
    s->cnt = cnt;
    s->state = QB_SYNC_STOPPED;
    s->feed = QB_FEED_SYNCING;
    s->max_events = QB_SYNC_BUFFER_EVENTS;
    s->max_bytes = QB_SYNC_BUFFER_BYTES;
    s->max_levels = max_levels;
    return QB_OK;
}

void qb_sync_fini(qb_sync *s)
{
    qb_book_free(s->book);
    s->book = NULL;
    qb_book_free(s->next);
    s->next = NULL;
    qb_buf_fini(&s->buf);
    qb_buf_fini(&s->replay);
    qb_buf_fini(&s->diff);
}

static void sync_report(qb_sync *s, qb_feed_state st, const char *reason)
{
    if (reason == NULL) {
        reason = "";
    }
    s->feed = st;
    snprintf(s->reason, sizeof s->reason, "%s", reason);
    if (s->ops->on_state) {
        s->ops->on_state(s, st, s->reason);
    }
}

static void sync_clear(qb_sync *s)
{
    qb_book_clear(s->book);
    qb_buf_reset(&s->buf);
    s->nbuf = 0;
    s->book_id = 0;
    s->need_bridge = false;
    s->fetch_asked = false;
    s->suspect = false;
}

void qb_sync_start(qb_sync *s, qb_feed_state st, const char *reason)
{
    if (st == QB_FEED_RESYNCING) {
        s->cnt->resyncs++; /* e.g. after a reconnect */
    }
    sync_clear(s);
    s->state = QB_SYNC_WAITING;
    sync_report(s, st, reason);
    s->ops->want_snapshot(s, QB_SYNC_FALLBACK_MS);
}

void qb_sync_stop(qb_sync *s, qb_feed_state st, const char *reason)
{
    bool same = s->state == QB_SYNC_STOPPED && s->feed == st &&
                strcmp(s->reason, reason ? reason : "") == 0;
    sync_clear(s);
    s->state = QB_SYNC_STOPPED;
    if (!same) {
        sync_report(s, st, reason);
    }
}

/* Appends ev to the buffer; QB_ETOOBIG when a bound is reached. */
static int sync_buffer(qb_sync *s, const qb_event *ev)
{
    size_t need = sizeof(sync_rec) + (ev->n_bids + ev->n_asks) * sizeof(qb_level);
    if (s->nbuf >= s->max_events || s->buf.len + need > s->max_bytes) {
        return QB_ETOOBIG;
    }
    if (qb_buf_reserve(&s->buf, need) != QB_OK) {
        return QB_ENOMEM;
    }
    sync_rec r = {
        .first_id = ev->first_id,
        .last_id = ev->last_id,
        .prev_id = ev->prev_id,
        .exch_ts = ev->exch_ts,
        .recv_ts = ev->recv_ts,
        .n_bids = (uint32_t)ev->n_bids,
        .n_asks = (uint32_t)ev->n_asks,
        .has_prev = ev->has_prev,
    };
    uint8_t *p = s->buf.data + s->buf.len;
    memcpy(p, &r, sizeof r);
    p += sizeof r;
    if (ev->n_bids) {
        memcpy(p, ev->bids, ev->n_bids * sizeof(qb_level));
        p += ev->n_bids * sizeof(qb_level);
    }
    if (ev->n_asks) {
        memcpy(p, ev->asks, ev->n_asks * sizeof(qb_level));
    }
    s->buf.len += need;
    s->nbuf++;
    return QB_OK;
}

/* Reads the record at *off of b into ev (views into b); advances *off. */
static void sync_rec_read(const qb_buf *b, size_t *off, qb_event *ev)
{
    sync_rec r;
    memcpy(&r, b->data + *off, sizeof r);
    memset(ev, 0, sizeof *ev);
    ev->kind = QB_EV_DEPTH;
    ev->first_id = r.first_id;
    ev->last_id = r.last_id;
    ev->prev_id = r.prev_id;
    ev->has_prev = r.has_prev != 0;
    ev->exch_ts = r.exch_ts;
    ev->recv_ts = r.recv_ts;
    /* sync_rec is 56 bytes and qb_level 16: the level arrays stay aligned
     * because realloc'ed storage is max-aligned. */
    const qb_level *lv = (const qb_level *)(const void *)(b->data + *off + sizeof r);
    ev->bids = lv;
    ev->n_bids = r.n_bids;
    ev->asks = lv + r.n_bids;
    ev->n_asks = r.n_asks;
    *off += sizeof r + ((size_t)r.n_bids + r.n_asks) * sizeof(qb_level);
}

/* Buffers ev while waiting for a snapshot; asks for the snapshot when it
 * is the first event of the cycle. */
static int sync_wait_event(qb_sync *s, const qb_event *ev)
{
    int rc = sync_buffer(s, ev);
    if (rc != QB_OK) {
        /* Overflow policy "restart": the snapshot is taking too long; the
         * oldest events are useless without it, drop them all and start
         * the cycle again from this event. */
        s->cnt->buffer_overflows++;
        QB_LOG_RL(QB_LOG_WARN, "sync_buffer_overflow", "events=%zu bytes=%zu: restarting sync",
                  s->nbuf, s->buf.len);
        qb_buf_reset(&s->buf);
        s->nbuf = 0;
        s->cnt->resyncs++;
        sync_report(s, QB_FEED_RESYNCING, "buffer overflow while waiting for the snapshot");
        if (sync_buffer(s, ev) != QB_OK) {
            return QB_ETOOBIG;
        }
    }
    s->cnt->deltas_buffered++;
    if (!s->fetch_asked) {
        s->fetch_asked = true;
        s->ops->want_snapshot(s, 0);
    }
    return QB_OK;
}

static void sync_restart(qb_sync *s, const char *reason, const qb_event *keep)
{
    s->cnt->resyncs++;
    sync_clear(s);
    s->state = QB_SYNC_WAITING;
    sync_report(s, QB_FEED_RESYNCING, reason);
    if (keep) {
        /* The event that showed the problem is newer than the book: it is
         * the first event of the next cycle. */
        sync_wait_event(s, keep);
    } else {
        s->fetch_asked = true;
        s->ops->want_snapshot(s, 0);
    }
}

void qb_sync_resync(qb_sync *s, const char *reason)
{
    sync_restart(s, reason, NULL);
}

bool qb_sync_suspect(qb_sync *s, const char *why)
{
    /* Full books carry no chain (and need none: the next one is complete). */
    if (s->state != QB_SYNC_LIVE || s->rule == &qb_seq_none) {
        return false;
    }
    if (!s->suspect) {
        s->cnt->suspects++;
    }
    s->suspect = true;
    snprintf(s->suspect_why, sizeof s->suspect_why, "%s", why ? why : "lost frame");
    return true;
}

void qb_sync_suspect_expire(qb_sync *s)
{
    if (s->state != QB_SYNC_LIVE || !s->suspect) {
        return;
    }
    char why[QB_EVENT_INFO_MAX];
    snprintf(why, sizeof why, "lost frame (%s) not confirmed by a sequenced update within %d ms",
             s->suspect_why, QB_SYNC_SUSPECT_MS);
    s->cnt->suspects_expired++;
    sync_restart(s, why, NULL);
}

static int sync_apply(qb_sync *s, const qb_event *ev)
{
    const qb_seq_rule *r = s->rule;
    if (r->is_stale(ev, s->book_id)) {
        s->cnt->deltas_dropped_stale++;
        return QB_OK;
    }
    bool ok = s->need_bridge ? r->bridges(ev, s->book_id) : r->follows(ev, s->book_id);
    if (s->suspect) {
        /* The one place a lost frame is judged: by the same chain rule. */
        s->suspect = false;
        if (ok) {
            s->cnt->suspects_confirmed++;
        } else {
            s->cnt->suspects_broken++;
        }
    } else {
        s->suspect_why[0] = '\0';
    }
    if (!ok) {
        char why[QB_EVENT_INFO_MAX];
        size_t off = 0;
        if (s->suspect_why[0]) {
            off =
                (size_t)snprintf(why, sizeof why, "gap after a lost frame (%s): ", s->suspect_why);
            off = off < sizeof why ? off : sizeof why - 1;
        }
        r->describe_gap(ev, s->book_id, why + off, sizeof why - off);
        s->cnt->gaps++;
        QB_LOG_RL(QB_LOG_WARN, "gap_detected", "%s%s", why,
                  s->need_bridge ? " (first event after snapshot)" : "");
        sync_restart(s, why, ev);
        return QB_EGAP;
    }
    int rc = qb_book_apply(s->book, ev->bids, ev->n_bids, ev->asks, ev->n_asks);
    if (rc != QB_OK) {
        char why[QB_EVENT_INFO_MAX];
        snprintf(why, sizeof why, "book rejected update %llu..%llu: %s",
                 (unsigned long long)ev->first_id, (unsigned long long)ev->last_id,
                 qb_strerror(rc));
        s->cnt->book_errors++;
        QB_LOG_RL(QB_LOG_WARN, "book_error", "%s", why);
        sync_restart(s, why, NULL);
        return QB_ERANGE;
    }
    if (qb_book_crossed(s->book)) {
        char why[QB_EVENT_INFO_MAX], b[QB_DEC_STR_MAX], a[QB_DEC_STR_MAX];
        qb_dec_format(qb_book_levels(s->book, QB_BID)[0].price, b, sizeof b);
        qb_dec_format(qb_book_levels(s->book, QB_ASK)[0].price, a, sizeof a);
        snprintf(why, sizeof why, "crossed book after update %llu..%llu: bid %s >= ask %s",
                 (unsigned long long)ev->first_id, (unsigned long long)ev->last_id, b, a);
        s->cnt->crossed++;
        QB_LOG_RL(QB_LOG_WARN, "book_crossed", "%s", why);
        sync_restart(s, why, NULL);
        return QB_ECROSSED;
    }
    s->book_id = ev->last_id;
    s->need_bridge = false;
    s->cnt->deltas_applied++;
    if (s->feed == QB_FEED_STALE) {
        sync_report(s, QB_FEED_LIVE, "");
    }
    s->ops->on_delta(s, ev);
    return QB_OK;
}

int qb_sync_on_delta(qb_sync *s, const qb_event *ev)
{
    switch (s->state) {
    case QB_SYNC_STOPPED:
        return QB_OK;
    case QB_SYNC_WAITING:
        return sync_wait_event(s, ev);
    case QB_SYNC_LIVE:
        return sync_apply(s, ev);
    }
    return QB_ESTATE;
}

int qb_sync_on_snapshot(qb_sync *s, const qb_event *snap)
{
    if (s->state != QB_SYNC_WAITING) {
        return QB_ESTATE;
    }
    s->fetch_asked = false;
    if (s->nbuf > 0) {
        size_t off = 0;
        qb_event first;
        sync_rec_read(&s->buf, &off, &first);
        if (!s->rule->snapshot_usable(snap->last_id, &first)) {
            s->cnt->snapshots_stale++;
            QB_DEBUG("snapshot_stale", "snapshot %llu older than first buffered U=%llu",
                     (unsigned long long)snap->last_id, (unsigned long long)first.first_id);
            s->fetch_asked = true;
            s->ops->want_snapshot(s, QB_SYNC_REFETCH_MS);
            return QB_EAGAIN;
        }
    }
    int rc = qb_book_replace(s->book, snap->bids, snap->n_bids, snap->asks, snap->n_asks);
    if (rc == QB_OK && qb_book_crossed(s->book)) {
        s->cnt->crossed++;
        rc = QB_ECROSSED;
    }
    if (rc != QB_OK) {
        char why[QB_EVENT_INFO_MAX];
        snprintf(why, sizeof why, "snapshot %llu unusable: %s", (unsigned long long)snap->last_id,
                 qb_strerror(rc));
        qb_book_clear(s->book);
        qb_sync_on_snapshot_error(s, QB_FEED_RESYNCING, why, QB_SYNC_FALLBACK_MS);
        return rc;
    }
    s->cnt->snapshots_ok++;
    s->book_id = snap->last_id;
    s->need_bridge = true;
    s->state = QB_SYNC_LIVE;
    s->ops->on_snapshot(s, snap);
    sync_report(s, QB_FEED_LIVE, "");

    /* Replay: swap the buffer out so events fed back may re-buffer. */
    qb_buf tmp = s->buf;
    size_t n = s->nbuf;
    s->buf = s->replay;
    qb_buf_reset(&s->buf);
    s->nbuf = 0;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        qb_event ev;
        sync_rec_read(&tmp, &off, &ev);
        qb_sync_on_delta(s, &ev);
    }
    qb_buf_reset(&tmp);
    s->replay = tmp;
    return QB_OK;
}

/* Appends to out the changes that turn side `side` of `cur` into that of
 * `nxt`; both are sorted best first, so one merge walk does it. */
static size_t sync_diff_side(const qb_book *cur, const qb_book *nxt, qb_book_side side,
                             qb_level *out)
{
    const qb_level *a = qb_book_levels(cur, side), *b = qb_book_levels(nxt, side);
    size_t na = qb_book_depth(cur, side), nb = qb_book_depth(nxt, side);
    size_t i = 0, k = 0, n = 0;
    while (i < na || k < nb) {
        int c;
        if (i == na) {
            c = 1;
        } else if (k == nb) {
            c = -1;
        } else {
            c = qb_dec_cmp(a[i].price, b[k].price);
            if (side == QB_BID) {
                c = -c; /* bids: best (highest) first */
            }
        }
        if (c < 0) {
            /* Only in the current book: gone. */
            out[n].price = a[i].price;
            out[n].size = (qb_dec){0, a[i].size.scale};
            n++;
            i++;
        } else if (c > 0) {
            out[n++] = b[k++]; /* new level */
        } else {
            if (!qb_dec_identical(a[i].size, b[k].size)) {
                out[n++] = b[k];
            }
            i++;
            k++;
        }
    }
    return n;
}

int qb_sync_on_full(qb_sync *s, const qb_event *full)
{
    if (s->state == QB_SYNC_STOPPED) {
        return QB_OK;
    }
    s->cnt->full_books++;
    if (s->state == QB_SYNC_WAITING) {
        qb_event snap = *full;
        snap.kind = QB_EV_SNAPSHOT;
        return qb_sync_on_snapshot(s, &snap);
    }
    if (s->next == NULL && (s->next = qb_book_new(s->max_levels)) == NULL) {
        sync_restart(s, "out of memory", NULL);
        return QB_ENOMEM;
    }
    int rc = qb_book_replace(s->next, full->bids, full->n_bids, full->asks, full->n_asks);
    if (rc != QB_OK) {
        char why[QB_EVENT_INFO_MAX];
        snprintf(why, sizeof why, "full book rejected: %s", qb_strerror(rc));
        s->cnt->book_errors++;
        QB_LOG_RL(QB_LOG_WARN, "book_error", "%s", why);
        sync_restart(s, why, NULL);
        return QB_ERANGE;
    }
    size_t nb_cur = qb_book_depth(s->book, QB_BID), na_cur = qb_book_depth(s->book, QB_ASK);
    size_t nb_nxt = qb_book_depth(s->next, QB_BID), na_nxt = qb_book_depth(s->next, QB_ASK);
    size_t cap = nb_cur + na_cur + nb_nxt + na_nxt;
    qb_buf_reset(&s->diff);
    if (qb_buf_reserve(&s->diff, (cap ? cap : 1) * sizeof(qb_level)) != QB_OK) {
        sync_restart(s, "out of memory", NULL);
        return QB_ENOMEM;
    }
    qb_level *lv = (qb_level *)(void *)s->diff.data;
    size_t nb = sync_diff_side(s->book, s->next, QB_BID, lv);
    size_t na = sync_diff_side(s->book, s->next, QB_ASK, lv + nb);
    if (nb == 0 && na == 0) {
        s->cnt->full_unchanged++;
        s->book_id = full->last_id; /* the book is as of this message */
        if (s->feed == QB_FEED_STALE) {
            sync_report(s, QB_FEED_LIVE, "");
        }
        return QB_OK;
    }
    if (nb > QB_MSG_MAX_LEVELS || na > QB_MSG_MAX_LEVELS) {
        sync_restart(s, "full book difference too large for one delta", NULL);
        return QB_ETOOBIG;
    }
    qb_event d;
    memset(&d, 0, sizeof d);
    d.kind = QB_EV_DEPTH;
    d.first_id = d.last_id = full->last_id;
    memcpy(d.native, full->native, sizeof d.native);
    d.exch_ts = full->exch_ts;
    d.recv_ts = full->recv_ts;
    d.bids = lv;
    d.n_bids = nb;
    d.asks = lv + nb;
    d.n_asks = na;
    rc = sync_apply(s, &d);
    if (rc != QB_OK) {
        return rc;
    }
    if (!qb_book_equal(s->book, s->next)) {
        /* Cannot happen unless the diff is wrong; never publish a book that
         * differs from the exchange's. */
        s->cnt->book_errors++;
        QB_LOG_RL(QB_LOG_ERROR, "full_diff_mismatch", "book differs from the full book after diff");
        sync_restart(s, "full book difference did not reproduce the book", NULL);
        return QB_ERANGE;
    }
    return QB_OK;
}

void qb_sync_on_snapshot_error(qb_sync *s, qb_feed_state st, const char *reason, uint32_t retry_ms)
{
    if (s->state != QB_SYNC_WAITING) {
        return;
    }
    s->cnt->snapshots_failed++;
    sync_report(s, st, reason);
    s->fetch_asked = true;
    s->ops->want_snapshot(s, retry_ms);
}

void qb_sync_mark_stale(qb_sync *s, const char *reason)
{
    if (s->state == QB_SYNC_LIVE && s->feed == QB_FEED_LIVE) {
        sync_report(s, QB_FEED_STALE, reason);
    }
}

void qb_sync_touch(qb_sync *s)
{
    if (s->state == QB_SYNC_LIVE && s->feed == QB_FEED_STALE) {
        sync_report(s, QB_FEED_LIVE, "");
    }
}
