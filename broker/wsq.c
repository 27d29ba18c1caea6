/*
 * wsq.c: the websocket fan-out core of wsq.h (lws service thread only).
 *
 *   topics (strmap.h, never removed)       clients
 *   +---------------------------+          +-----------------------------+
 *   | "book.binance.BTC-USDT"   |  subs[]  | patterns ["book.", ...]     |
 *   |  epoch, snapshot cache[2] |--------->| sub: last seq, need_snap,   |
 *   +---------------------------+  (sub =  |      conflated              |
 *                                 client x | ring: [item*|item*|...]     |
 *                                 topic)   |  bytes, behind_since        |
 *                                          +-----------------------------+
 *   item: refs, frame bytes (msgpack form), JSON parts (made once, lazily,
 *   the first time a JSON client needs them), type and seq of its maps.
 *
 * Every message is one item shared by reference by every client that gets
 * it: the frame is copied once from the handoff queue, the JSON text is
 * encoded once (qb_msg_to_json per map). Snapshots made from the broker's
 * book (new subscription, conflation, gap) are items too, cached per topic
 * until the next message of that topic (the "epoch"), so many clients that
 * need one at the same time share it.
 *
 * Book seq rules per sub (client x book topic; the rule of proto/seq.h,
 * against what the client has): a snapshot from the broker
 * sets last = its seq; deltas with seq <= last are skipped (they are in the
 * snapshot: the broker applies a frame before handing it over, so its book
 * is never behind the handoff queue); seq == last + 1 is sent; a gap marks
 * the sub need_snap and heals it with a broker snapshot right away. Every
 * message a client receives is therefore consistent with its book.
 *
 * Multi-map frames are common: under load an adapter puts up to 64 deltas
 * or trades of one topic in one frame (adapters/publish.c,
 * QB_PUB_BATCH_MAPS), and such a frame reaches this file whole. It is one
 * item holding the seq of its first and last map: msgpack clients get the
 * frame, JSON clients one message per map. The seq rules above apply to
 * the item as a whole: skipped when its last seq <= last, sent when its
 * first seq == last + 1; a frame that straddles the client's snapshot
 * counts as a gap and is healed by a snapshot.
 *
 * The "subscribed" reply also says how many known topics the request's
 * patterns match, and for patterns that match none, the nearest existing
 * topics (the rule of proto/topic.h), so a misspelt topic is not a
 * silent wait.
 */
#include "wsq.h"

#include "clock.h"
#include "err.h"
#include "json.h"
#include "log.h"
#include "seq.h"
#include "strmap.h"
#include "topic.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WSQ_TOKENS 8192

typedef struct wsq_topic wsq_topic;
typedef struct wsq_sub wsq_sub;

typedef struct wsq_item {
    uint32_t refs;
    uint8_t type; /* qb_msg_type of its maps; 0: a reply (JSON only) */
    bool refresh;
    bool conflated;
    uint64_t seq_first, seq_last;
    uint64_t epoch; /* snapshot items: topic epoch they were made in */
    uint64_t gen;   /* snapshot items: q->gen they were made in */
    uint8_t *frame; /* headroom + flen bytes; NULL for replies */
    size_t flen;
    uint8_t *json; /* parts, each after headroom bytes */
    size_t *json_off;
    size_t *json_len;
    uint32_t nparts;
    size_t json_bytes;
    bool json_failed;
} wsq_item;

struct wsq_sub {
    qb_wsq_client *c;
    wsq_topic *t;
    wsq_sub *next_c; /* the client's list */
    size_t idx;      /* index in t->subs */
    uint64_t last;
    bool has_seq;
    bool need_snap;
    bool conflated; /* the pending snapshot is a conflation's */
};

struct wsq_topic {
    qb_strmap_node node; /* first: a topic is freed through its node */
    bool is_book;
    uint64_t epoch;
    wsq_sub **subs;
    size_t nsubs, capsubs;
    size_t njson;
    wsq_item *cache[2]; /* [conflated] */
    char name[];        /* node.len bytes and a NUL */
};

typedef struct wsq_entry {
    wsq_item *it;
    wsq_topic *t; /* NULL: a reply */
    size_t bytes;
} wsq_entry;

struct qb_wsq_client {
    qb_wsq *q;
    void *user;
    bool msgpack;
    char **pat;
    size_t npat;
    wsq_sub *subs;
    size_t nsubs;
    size_t n_need;
    wsq_entry *ring;
    size_t cap, head, n;
    size_t bytes;
    uint32_t part;
    double tokens;
    uint64_t tok_ns;
    uint64_t behind_since;
    uint64_t soft_since; /* when bytes first reached soft_bytes; 0: below */
    int close_code;
    char close_reason[96];
    qb_wsq_client *prev, *next;
};

struct qb_wsq {
    qb_wsq_limits lim;
    qb_wsq_ops ops;
    qb_strmap topics; /* of wsq_topic, at most lim.max_topics */
    qb_wsq_client *clients;
    qb_decoder *dec;
    qb_buf tmp;
    qb_buf snap;
    jsmntok_t *tok;
    /* Bumped when the first client connects: while none is connected the
     * handoff is skipped (ws.c), so topic epochs stand still and cached
     * snapshots must not be trusted across such a pause. */
    uint64_t gen;
    qb_wsq_stats st;
};

void qb_wsq_limits_default(qb_wsq_limits *l)
{
    if (l->max_subs == 0) {
        l->max_subs = 256;
    }
    if (l->queue_entries == 0) {
        l->queue_entries = 8192;
    }
    if (l->soft_bytes == 0) {
        l->soft_bytes = 4u << 20;
    }
    if (l->hard_bytes == 0) {
        l->hard_bytes = 16u << 20;
    }
    if (l->hard_bytes < l->soft_bytes) {
        l->hard_bytes = l->soft_bytes;
    }
    if (l->soft_ms == 0) {
        l->soft_ms = 1000;
    }
    if (l->hard_ms == 0) {
        l->hard_ms = 30000;
    }
    if (l->rate == 0) {
        l->rate = 50;
    }
    if (l->max_topics == 0) {
        l->max_topics = 100000;
    }
}

/* ---- topic text rules ------------------------------------------------ */

/* True when JSON string token i holds an escaped NUL ("\u0000"). */
static bool wsq_has_escaped_nul(const qb_json *j, int i)
{
    size_t n;
    const char *p = qb_json_text(j, i, &n);
    for (size_t k = 0; p != NULL && k + 6 <= n; k++) {
        if (memcmp(p + k, "\\u0000", 6) == 0) {
            return true;
        }
    }
    return false;
}

bool qb_wsq_match(const char *pat, size_t pn, const char *topic, size_t tn)
{
    if (pn > 0 && pat[pn - 1] == '.') {
        return tn >= pn && memcmp(pat, topic, pn) == 0;
    }
    return pn == tn && memcmp(pat, topic, pn) == 0;
}

/* ---- items ------------------------------------------------------------ */

static void wsq_unref(wsq_item *it)
{
    if (it != NULL && --it->refs == 0) {
        free(it->frame);
        free(it->json);
        free(it->json_off);
        free(it->json_len);
        free(it);
    }
}

/* Copies src's parts (concatenated JSON objects given by offsets in tmp)
 * into it->json with headroom before each. */
static int wsq_item_set_json(qb_wsq *q, wsq_item *it, const uint8_t *text, const size_t *off,
                             const size_t *len, uint32_t nparts)
{
    size_t h = q->lim.headroom, total = 0;
    for (uint32_t i = 0; i < nparts; i++) {
        total += h + len[i];
    }
    it->json = malloc(total ? total : 1);
    it->json_off = malloc(nparts * sizeof *it->json_off);
    it->json_len = malloc(nparts * sizeof *it->json_len);
    if (it->json == NULL || it->json_off == NULL || it->json_len == NULL) {
        free(it->json);
        free(it->json_off);
        free(it->json_len);
        it->json = NULL;
        it->json_off = it->json_len = NULL;
        return QB_ENOMEM;
    }
    size_t k = 0;
    it->json_bytes = 0;
    for (uint32_t i = 0; i < nparts; i++) {
        k += h;
        memcpy(it->json + k, text + off[i], len[i]);
        it->json_off[i] = k;
        it->json_len[i] = len[i];
        it->json_bytes += len[i];
        k += len[i];
    }
    it->nparts = nparts;
    return QB_OK;
}

/* Encodes the JSON parts of a data item once. false when impossible. */
static bool wsq_item_json(qb_wsq *q, wsq_item *it)
{
    if (it->json != NULL) {
        return true;
    }
    if (it->json_failed || it->frame == NULL) {
        return false;
    }
    qb_str topic;
    qb_msg m;
    size_t offs[64], lens[64];
    uint32_t n = 0;
    qb_buf_reset(&q->tmp);
    int rc = qb_decoder_begin(q->dec, it->frame + q->lim.headroom, it->flen, &topic);
    while (rc == QB_OK && (rc = qb_decoder_next(q->dec, &m)) == QB_OK) {
        if (n == 64) {
            rc = QB_ETOOBIG;
            break;
        }
        offs[n] = q->tmp.len;
        if (qb_msg_to_json(&m, &q->tmp) != QB_OK) {
            rc = QB_ENOMEM;
            break;
        }
        if (it->conflated && q->tmp.len > offs[n] && q->tmp.data[q->tmp.len - 1] == '}') {
            q->tmp.len--;
            if (qb_buf_append(&q->tmp, ",\"conflated\":true}", 18) != QB_OK) {
                rc = QB_ENOMEM;
                break;
            }
        }
        lens[n] = q->tmp.len - offs[n];
        n++;
    }
    if (rc != QB_EEOF || n == 0 || wsq_item_set_json(q, it, q->tmp.data, offs, lens, n) != QB_OK) {
        it->json_failed = true;
        QB_LOG_RL(QB_LOG_WARN, "ws.json_failed", "cannot encode a %.*s message as JSON: %s",
                  (int)topic.n, topic.p, qb_strerror(rc == QB_EEOF ? QB_ENOMEM : rc));
        return false;
    }
    q->st.ws_items_json++;
    return true;
}

/* A data item from a frame: reads type and seq; takes owned (headroom +
 * len bytes, frame after the headroom) or else copies frame once. owned
 * is freed on failure. */
static wsq_item *wsq_item_from_frame(qb_wsq *q, const void *frame, size_t len, qb_str *topic,
                                     uint8_t *owned)
{
    qb_msg m;
    int rc = qb_decoder_begin(q->dec, frame, len, topic);
    wsq_item *it = NULL;
    if (rc != QB_OK || qb_decoder_next(q->dec, &m) != QB_OK ||
        (it = calloc(1, sizeof *it)) == NULL) {
        free(owned);
        return NULL;
    }
    it->refs = 1;
    it->type = (uint8_t)m.type;
    it->refresh = m.refresh;
    it->seq_first = it->seq_last = m.seq;
    while (qb_decoder_next(q->dec, &m) == QB_OK) {
        it->seq_last = m.seq;
    }
    if (owned != NULL) {
        it->frame = owned;
        it->flen = len;
        return it;
    }
    it->frame = malloc(q->lim.headroom + len);
    if (it->frame == NULL) {
        free(it);
        return NULL;
    }
    memcpy(it->frame + q->lim.headroom, frame, len);
    it->flen = len;
    return it;
}

/* A reply item holding one JSON text. */
static wsq_item *wsq_item_reply(qb_wsq *q, const qb_buf *text)
{
    wsq_item *it = calloc(1, sizeof *it);
    if (it == NULL) {
        return NULL;
    }
    it->refs = 1;
    size_t off = 0, len = text->len;
    if (wsq_item_set_json(q, it, text->data, &off, &len, 1) != QB_OK) {
        free(it);
        return NULL;
    }
    return it;
}

/* ---- topics ----------------------------------------------------------- */

static int wsq_sub_add(qb_wsq_client *c, wsq_topic *t);

/* Finds or creates a topic; a new one gets the matching clients' subs. */
static wsq_topic *wsq_topic_get(qb_wsq *q, qb_str name)
{
    uint64_t h = qb_strmap_hash(name.p, name.n);
    wsq_topic *t = (wsq_topic *)qb_strmap_find(&q->topics, name.p, name.n, h);
    if (t != NULL) {
        return t;
    }
    if (name.n > QB_TOPIC_MAX || qb_strmap_reserve(&q->topics) != QB_OK) {
        return NULL;
    }
    t = calloc(1, sizeof *t + name.n + 1);
    if (t == NULL) {
        return NULL;
    }
    memcpy(t->name, name.p, name.n);
    t->node = (qb_strmap_node){.hash = h, .key = t->name, .len = name.n};
    t->is_book = name.n > 5 && memcmp(name.p, "book.", 5) == 0;
    qb_strmap_insert(&q->topics, &t->node);
    for (qb_wsq_client *c = q->clients; c != NULL; c = c->next) {
        for (size_t k = 0; k < c->npat; k++) {
            if (qb_wsq_match(c->pat[k], strlen(c->pat[k]), t->name, t->node.len)) {
                wsq_sub_add(c, t);
                break;
            }
        }
    }
    return t;
}

static void wsq_topic_uncache(wsq_topic *t)
{
    for (int k = 0; k < 2; k++) {
        wsq_unref(t->cache[k]);
        t->cache[k] = NULL;
    }
}

/* ---- client queues ---------------------------------------------------- */

static void wsq_wake(qb_wsq_client *c)
{
    if (c->q->ops.wake != NULL) {
        c->q->ops.wake(c->q->ops.arg, c);
    }
}

static void wsq_mark_close(qb_wsq_client *c, int code, const char *reason)
{
    if (c->close_code == 0) {
        c->close_code = code;
        snprintf(c->close_reason, sizeof c->close_reason, "%s", reason);
        if (code == 4001) {
            c->q->st.ws_slow_closes++;
        } else if (code == 1008) {
            c->q->st.ws_flood_closes++;
        }
        QB_LOG_RL(QB_LOG_WARN, "ws.client_close", "closing a websocket client: %d %s", code,
                  reason);
        wsq_wake(c);
    }
}

static void wsq_behind(qb_wsq_client *c)
{
    if (c->behind_since == 0) {
        c->behind_since = qb_mono_ns();
    }
}

/* True when the client is to be treated as behind: over soft_bytes for
 * soft_ms already (a short burst is tolerated: a reader that is merely busy
 * for a moment is not conflated), or at hard_bytes, or a full ring. */
static bool wsq_over_soft(const qb_wsq_client *c)
{
    const qb_wsq_limits *l = &c->q->lim;
    if (c->bytes >= l->hard_bytes || c->n >= l->queue_entries) {
        return true;
    }
    return c->soft_since != 0 && qb_mono_ns() - c->soft_since >= l->soft_ms * 1000000u;
}

static void wsq_account(qb_wsq_client *c)
{
    if (c->bytes >= c->q->lim.soft_bytes) {
        if (c->soft_since == 0) {
            c->soft_since = qb_mono_ns();
        }
    } else {
        c->soft_since = 0;
    }
}

/* Bytes this client will send for it; 0 when it cannot be sent. */
static size_t wsq_item_bytes(qb_wsq_client *c, wsq_item *it)
{
    if (it->frame == NULL || !c->msgpack) {
        if (it->frame != NULL && !wsq_item_json(c->q, it)) {
            return 0;
        }
        return it->json_bytes;
    }
    return it->flen;
}

/* Appends a reference to it. false when the ring is full (not queued). */
static bool wsq_push(qb_wsq_client *c, wsq_item *it, wsq_topic *t)
{
    qb_wsq *q = c->q;
    if (c->close_code != 0) {
        return false;
    }
    size_t bytes = wsq_item_bytes(c, it);
    if (bytes == 0 && it->frame != NULL) {
        return false;
    }
    if (c->n >= q->lim.queue_entries) {
        q->st.ws_drop_full++;
        return false;
    }
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        if (ncap > q->lim.queue_entries) {
            ncap = q->lim.queue_entries;
        }
        wsq_entry *nr = malloc(ncap * sizeof *nr);
        if (nr == NULL) {
            q->st.ws_drop_full++;
            return false;
        }
        for (size_t i = 0; i < c->n; i++) {
            nr[i] = c->ring[(c->head + i) % c->cap];
        }
        free(c->ring);
        c->ring = nr;
        c->cap = ncap;
        c->head = 0;
    }
    c->ring[(c->head + c->n) % c->cap] = (wsq_entry){it, t, bytes};
    it->refs++;
    c->n++;
    c->bytes += bytes;
    wsq_account(c);
    q->st.ws_enqueued++;
    if (c->n == 1) {
        wsq_wake(c);
    }
    /* Books conflate before hard_bytes; what still piles up past it
     * (replies, status messages) closes the client. */
    if (c->bytes > q->lim.hard_bytes + q->lim.soft_bytes) {
        wsq_mark_close(c, 4001, "slow consumer: queue past the hard limit");
    }
    return true;
}

/* Removes the queued messages of topic t (all of them when t is NULL and
 * all is true). The head entry is kept when partly written (part > 0). */
static size_t wsq_purge(qb_wsq_client *c, const wsq_topic *t, bool all)
{
    size_t kept = 0, dropped = 0;
    for (size_t i = 0; i < c->n; i++) {
        wsq_entry e = c->ring[(c->head + i) % c->cap];
        bool keep = (i == 0 && c->part > 0) || (!all && e.t != t);
        if (keep) {
            c->ring[(c->head + kept) % c->cap] = e;
            kept++;
        } else {
            c->bytes -= e.bytes;
            wsq_unref(e.it);
            dropped++;
        }
    }
    c->n = kept;
    if (kept == 0) {
        c->part = 0;
    }
    wsq_account(c);
    return dropped;
}

/* ---- subscriptions ------------------------------------------------------ */

static int wsq_sub_add(qb_wsq_client *c, wsq_topic *t)
{
    for (wsq_sub *s = c->subs; s != NULL; s = s->next_c) {
        if (s->t == t) {
            return QB_OK;
        }
    }
    if (t->nsubs == t->capsubs) {
        size_t ncap = t->capsubs ? t->capsubs * 2 : 4;
        wsq_sub **ns = realloc(t->subs, ncap * sizeof *ns);
        if (ns == NULL) {
            return QB_ENOMEM;
        }
        t->subs = ns;
        t->capsubs = ncap;
    }
    wsq_sub *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return QB_ENOMEM;
    }
    s->c = c;
    s->t = t;
    s->idx = t->nsubs;
    s->need_snap = t->is_book;
    t->subs[t->nsubs++] = s;
    if (!c->msgpack) {
        t->njson++;
    }
    s->next_c = c->subs;
    c->subs = s;
    c->nsubs++;
    c->q->st.ws_subscriptions++;
    if (s->need_snap) {
        c->n_need++;
    }
    return QB_OK;
}

static void wsq_sub_remove(wsq_sub *s)
{
    wsq_topic *t = s->t;
    qb_wsq_client *c = s->c;
    t->subs[s->idx] = t->subs[--t->nsubs];
    t->subs[s->idx]->idx = s->idx;
    if (!c->msgpack) {
        t->njson--;
    }
    if (s->need_snap) {
        c->n_need--;
    }
    c->nsubs--;
    c->q->st.ws_subscriptions--;
    free(s);
}

static void wsq_set_need(wsq_sub *s, bool need, bool conflated)
{
    if (need && !s->need_snap) {
        s->c->n_need++;
    } else if (!need && s->need_snap) {
        s->c->n_need--;
    }
    s->need_snap = need;
    s->conflated = need && conflated;
}

/* The broker's current book of t as a (cached) snapshot item. */
static wsq_item *wsq_snapshot_item(qb_wsq *q, wsq_topic *t, bool conflated)
{
    wsq_item *it = t->cache[conflated];
    if (it != NULL && it->epoch == t->epoch && it->gen == q->gen) {
        q->st.ws_snapshots_shared++;
        return it;
    }
    wsq_unref(it);
    t->cache[conflated] = NULL;
    if (q->ops.snapshot == NULL) {
        return NULL;
    }
    qb_buf_reset(&q->snap);
    if (q->ops.snapshot(q->ops.arg, (qb_str){t->name, t->node.len}, &q->snap) != QB_OK) {
        return NULL;
    }
    qb_str topic;
    it = wsq_item_from_frame(q, q->snap.data, q->snap.len, &topic, NULL);
    if (it == NULL) {
        return NULL;
    }
    it->epoch = t->epoch;
    it->gen = q->gen;
    it->conflated = conflated;
    if (conflated) {
        /* msgpack form: one more key in the (fix)map: "conflated": true. */
        uint8_t *map = it->frame + q->lim.headroom + topic.n + 1;
        if ((*map & 0xf0) == 0x80 && (*map & 0x0f) < 15) {
            uint8_t *nf = realloc(it->frame, q->lim.headroom + it->flen + 11);
            if (nf != NULL) {
                it->frame = nf;
                map = nf + q->lim.headroom + topic.n + 1;
                (*map)++;
                memcpy(nf + q->lim.headroom + it->flen,
                       "\xa9"
                       "conflated\xc3",
                       11);
                it->flen += 11;
            }
        }
    }
    t->cache[conflated] = it;
    return it;
}

/* Queues a broker snapshot for s; true when done (s->last updated). */
static bool wsq_sub_snapshot(wsq_sub *s)
{
    qb_wsq *q = s->c->q;
    bool conflated = s->conflated;
    wsq_item *it = wsq_snapshot_item(q, s->t, conflated);
    if (it == NULL || !wsq_push(s->c, it, s->t)) {
        return false;
    }
    s->last = it->seq_last;
    s->has_seq = true;
    if (conflated) {
        q->st.ws_snapshots_conflated++;
    }
    wsq_set_need(s, false, false);
    return true;
}

/* One book item for one sub. */
static void wsq_deliver_book(wsq_sub *s, wsq_item *it)
{
    qb_wsq_client *c = s->c;
    qb_wsq *q = c->q;
    if (s->need_snap) {
        /* A conflated book heals only once the client has drained its
         * queue (qb_wsq_client_peek): not while it is still behind. */
        if (s->conflated || wsq_over_soft(c)) {
            q->st.ws_drop_conflated++;
            return;
        }
        if (it->type == QB_MSG_SNAPSHOT) {
            if (wsq_push(c, it, s->t)) {
                s->last = it->seq_last;
                s->has_seq = true;
                wsq_set_need(s, false, false);
            }
            return;
        }
        if (!wsq_sub_snapshot(s)) {
            q->st.ws_drop_conflated++;
            return;
        }
        q->st.ws_snapshots_subscribe++;
    }
    /* The seq rule (proto/seq.h) against what the client has: s->last can
     * be ahead of the queue (a broker snapshot), so a duplicate here is
     * not a restarted publisher. */
    bool is_snap = it->type == QB_MSG_SNAPSHOT;
    qb_seq_type st = qb_seq_type_of(it->type, it->refresh);
    if (is_snap) {
        if (qb_seq_step(s->has_seq, s->last, it->seq_last, st, NULL) == QB_SEQ_DUPLICATE) {
            return; /* a refresh older than what the client has */
        }
    } else {
        if (qb_seq_step(s->has_seq, s->last, it->seq_last, st, NULL) == QB_SEQ_DUPLICATE) {
            return; /* already in the snapshot the client got */
        }
        if (qb_seq_step(s->has_seq, s->last, it->seq_first, st, NULL) != QB_SEQ_NEXT) {
            /* A gap (ingest loss, or a handoff drop): heal now. */
            wsq_set_need(s, true, false);
            if (!wsq_over_soft(c) && wsq_sub_snapshot(s)) {
                q->st.ws_snapshots_gap++;
                if (it->seq_last > s->last && it->seq_first == s->last + 1 &&
                    wsq_push(c, it, s->t)) {
                    s->last = it->seq_last;
                }
            }
            return;
        }
    }
    if (wsq_over_soft(c)) {
        /* Conflate: drop what is queued of this book, send a fresh
         * snapshot once the client has caught up. */
        size_t n = wsq_purge(c, s->t, false);
        q->st.ws_drop_conflated += n + 1;
        q->st.ws_conflations++;
        wsq_set_need(s, true, true);
        wsq_behind(c);
        return;
    }
    if (wsq_push(c, it, s->t)) {
        s->last = it->seq_last;
        s->has_seq = true;
    }
}

static void wsq_deliver(wsq_sub *s, wsq_item *it)
{
    qb_wsq_client *c = s->c;
    if (c->close_code != 0) {
        return;
    }
    if (s->t->is_book && (it->type == QB_MSG_SNAPSHOT || it->type == QB_MSG_DELTA)) {
        wsq_deliver_book(s, it);
        return;
    }
    if (it->type != QB_MSG_STATUS && wsq_over_soft(c)) {
        c->q->st.ws_drop_trade++;
        wsq_behind(c);
        return;
    }
    wsq_push(c, it, s->t);
}

static void wsq_frame(qb_wsq *q, const void *frame, size_t len, uint8_t *owned)
{
    q->st.ws_frames++;
    qb_str topic;
    wsq_item *it = wsq_item_from_frame(q, frame, len, &topic, owned);
    if (it == NULL) {
        return;
    }
    wsq_topic *t = wsq_topic_get(q, topic);
    if (t == NULL) {
        q->st.ws_drop_untracked++;
        wsq_unref(it);
        return;
    }
    t->epoch++;
    wsq_topic_uncache(t);
    if (t->njson > 0) {
        wsq_item_json(q, it);
    }
    for (size_t i = 0; i < t->nsubs; i++) {
        wsq_deliver(t->subs[i], it);
    }
    wsq_unref(it);
}

void qb_wsq_frame(qb_wsq *q, const void *frame, size_t len)
{
    wsq_frame(q, frame, len, NULL);
}

void qb_wsq_frame_owned(qb_wsq *q, uint8_t *buf, size_t len)
{
    wsq_frame(q, buf + q->lim.headroom, len, buf);
}

void qb_wsq_tick(qb_wsq *q, uint64_t now_ns)
{
    uint64_t bytes = 0;
    for (qb_wsq_client *c = q->clients; c != NULL; c = c->next) {
        bytes += c->bytes;
        uint64_t since = c->behind_since;
        if (c->soft_since != 0 && (since == 0 || c->soft_since < since)) {
            since = c->soft_since;
        }
        if (since != 0 && now_ns - since > q->lim.hard_ms * 1000000u) {
            char why[96];
            snprintf(why, sizeof why, "slow consumer: behind for more than %llu ms",
                     (unsigned long long)q->lim.hard_ms);
            wsq_mark_close(c, 4001, why);
        }
    }
    q->st.ws_queued_bytes = bytes;
}

const qb_wsq_stats *qb_wsq_stats_get(const qb_wsq *q)
{
    return &q->st;
}

/* ---- core lifecycle ---------------------------------------------------- */

qb_wsq *qb_wsq_new(const qb_wsq_limits *limits, const qb_wsq_ops *ops)
{
    qb_wsq *q = calloc(1, sizeof *q);
    if (q == NULL) {
        return NULL;
    }
    if (limits != NULL) {
        q->lim = *limits;
    }
    qb_wsq_limits_default(&q->lim);
    if (ops != NULL) {
        q->ops = *ops;
    }
    qb_strmap_init(&q->topics, q->lim.max_topics);
    q->dec = qb_decoder_new();
    q->tok = malloc(WSQ_TOKENS * sizeof *q->tok);
    if (q->dec == NULL || q->tok == NULL) {
        qb_wsq_free(q);
        return NULL;
    }
    return q;
}

void qb_wsq_free(qb_wsq *q)
{
    if (q == NULL) {
        return;
    }
    while (q->clients != NULL) {
        qb_wsq_client_free(q->clients);
    }
    for (size_t i = 0; i < q->topics.cap; i++) {
        wsq_topic *t = (wsq_topic *)q->topics.slots[i];
        if (t != NULL) {
            wsq_topic_uncache(t);
            free(t->subs);
            free(t);
        }
    }
    qb_strmap_fini(&q->topics);
    qb_decoder_free(q->dec);
    qb_buf_fini(&q->tmp);
    qb_buf_fini(&q->snap);
    free(q->tok);
    free(q);
}

/* ---- clients ---------------------------------------------------------- */

qb_wsq_client *qb_wsq_client_new(qb_wsq *q, bool msgpack, void *user)
{
    qb_wsq_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    c->q = q;
    c->msgpack = msgpack;
    c->user = user;
    c->tokens = q->lim.rate;
    c->tok_ns = qb_mono_ns();
    if (q->clients == NULL) {
        q->gen++;
    }
    c->next = q->clients;
    if (q->clients != NULL) {
        q->clients->prev = c;
    }
    q->clients = c;
    q->st.ws_clients++;
    return c;
}

void qb_wsq_client_free(qb_wsq_client *c)
{
    if (c == NULL) {
        return;
    }
    qb_wsq *q = c->q;
    c->part = 0;
    wsq_purge(c, NULL, true);
    while (c->subs != NULL) {
        wsq_sub *s = c->subs;
        c->subs = s->next_c;
        wsq_sub_remove(s);
    }
    for (size_t i = 0; i < c->npat; i++) {
        free(c->pat[i]);
    }
    free(c->pat);
    free(c->ring);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        q->clients = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    q->st.ws_clients--;
    free(c);
}

void *qb_wsq_client_user(const qb_wsq_client *c)
{
    return c->user;
}

int qb_wsq_client_close_code(const qb_wsq_client *c, const char **reason)
{
    if (reason != NULL) {
        *reason = c->close_reason;
    }
    return c->close_code;
}

size_t qb_wsq_client_queued(const qb_wsq_client *c)
{
    return c->bytes;
}

size_t qb_wsq_client_subs(const qb_wsq_client *c)
{
    return c->npat;
}

bool qb_wsq_client_peek(qb_wsq_client *c, uint8_t **p, size_t *len, bool *binary)
{
    qb_wsq *q = c->q;
    if (c->close_code != 0) {
        return false;
    }
    if (c->n == 0 && c->n_need > 0) {
        /* Caught up: the books that were conflated (or are waiting for a
         * snapshot) get one now. */
        for (wsq_sub *s = c->subs; s != NULL; s = s->next_c) {
            if (s->need_snap) {
                bool conflated = s->conflated;
                if (wsq_sub_snapshot(s) && !conflated) {
                    q->st.ws_snapshots_gap++;
                }
            }
        }
    }
    if (c->n == 0) {
        if (c->n_need == 0) {
            c->behind_since = 0;
        }
        return false;
    }
    wsq_entry *e = &c->ring[c->head];
    wsq_item *it = e->it;
    if (it->frame != NULL && c->msgpack) {
        *p = it->frame + q->lim.headroom;
        *len = it->flen;
        *binary = true;
    } else {
        *p = it->json + it->json_off[c->part];
        *len = it->json_len[c->part];
        *binary = false;
    }
    return true;
}

void qb_wsq_client_pop(qb_wsq_client *c)
{
    if (c->n == 0) {
        return;
    }
    wsq_entry *e = &c->ring[c->head];
    size_t sent;
    if (e->it->frame != NULL && c->msgpack) {
        sent = e->it->flen;
    } else {
        sent = e->it->json_len[c->part];
        if (++c->part < e->it->nparts) {
            c->q->st.ws_sent++;
            c->q->st.ws_bytes_sent += sent;
            return;
        }
    }
    c->q->st.ws_sent++;
    c->q->st.ws_bytes_sent += sent;
    c->part = 0;
    c->bytes -= e->bytes;
    wsq_unref(e->it);
    c->head = (c->head + 1) % c->cap;
    c->n--;
    if (c->n == 0 && c->cap > 256) {
        /* A drained queue gives back a ring that grew in a burst. */
        free(c->ring);
        c->ring = NULL;
        c->cap = 0;
        c->head = 0;
    }
    wsq_account(c);
}

/* ---- requests ---------------------------------------------------------- */

/* Writes the "id" member (with a leading comma) when the request had one
 * that is a number or a short string. */
static void wsq_put_id(qb_buf *out, const char *id, size_t idn, bool id_str)
{
    if (id == NULL) {
        return;
    }
    qb_buf_append(out, ",\"id\":", 6);
    if (id_str) {
        qb_json_append_str(out, id, idn);
    } else {
        qb_buf_append(out, id, idn);
    }
}

static void wsq_reply(qb_wsq_client *c, qb_buf *text)
{
    wsq_item *it = wsq_item_reply(c->q, text);
    if (it == NULL) {
        return;
    }
    if (!wsq_push(c, it, NULL) && c->close_code == 0) {
        wsq_mark_close(c, 1008, "too many requests: replies are not being read");
    }
    wsq_unref(it);
}

typedef struct wsq_req {
    const char *id;
    size_t idn;
    bool id_str;
} wsq_req;

static void wsq_error(qb_wsq_client *c, const wsq_req *r, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void wsq_error(qb_wsq_client *c, const wsq_req *r, const char *code, const char *fmt, ...)
{
    qb_wsq *q = c->q;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    static const struct {
        const char *code;
        size_t off;
    } ctr[] = {
        {"bad_json", offsetof(qb_wsq_stats, ws_err_bad_json)},
        {"bad_request", offsetof(qb_wsq_stats, ws_err_bad_request)},
        {"unknown_op", offsetof(qb_wsq_stats, ws_err_unknown_op)},
        {"bad_topic", offsetof(qb_wsq_stats, ws_err_bad_topic)},
        {"too_many_subscriptions", offsetof(qb_wsq_stats, ws_err_too_many_subscriptions)},
        {"rate_limited", offsetof(qb_wsq_stats, ws_err_rate_limited)},
        {"too_big", offsetof(qb_wsq_stats, ws_err_too_big)},
    };
    for (size_t i = 0; i < sizeof ctr / sizeof ctr[0]; i++) {
        if (strcmp(ctr[i].code, code) == 0) {
            (*(uint64_t *)((char *)&q->st + ctr[i].off))++;
        }
    }
    QB_LOG_RL(QB_LOG_INFO, "ws.request_error", "%s: %s", code, msg);
    qb_buf b = QB_BUF_INIT;
    qb_buf_appendf(&b, "{\"type\":\"error\",\"code\":\"%s\",\"message\":", code);
    qb_json_append_str(&b, msg, strlen(msg));
    if (r != NULL) {
        wsq_put_id(&b, r->id, r->idn, r->id_str);
    }
    qb_buf_append(&b, "}", 1);
    wsq_reply(c, &b);
    qb_buf_fini(&b);
}

void qb_wsq_client_error(qb_wsq_client *c, const char *code, const char *msg)
{
    wsq_error(c, NULL, code, "%s", msg);
}

/* Decoded, validated topics of a request (views into tbuf). */
typedef struct wsq_topics {
    char (*v)[QB_TOPIC_MAX + 1];
    size_t n;
} wsq_topics;

static bool wsq_has_pat(const qb_wsq_client *c, const char *t)
{
    for (size_t i = 0; i < c->npat; i++) {
        if (strcmp(c->pat[i], t) == 0) {
            return true;
        }
    }
    return false;
}

/* Appends ,"NAME":[...] with the n strings of v. */
static void wsq_put_strs(qb_buf *b, const char *name, const qb_str *v, size_t n)
{
    qb_buf_appendf(b, ",\"%s\":[", name);
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            qb_buf_append(b, ",", 1);
        }
        qb_json_append_str(b, v[i].p, v[i].n);
    }
    qb_buf_append(b, "]", 1);
}

/* Appends what the request's patterns match now (PROTOCOL.md section 12):
 * ,"matching":N (topics matched by any of them) and, when some pattern
 * matches no topic, ,"unmatched":[...] and ,"nearest":[...] (the rule of
 * proto/topic.h, over every topic the fan-out knows). One pass over
 * the topics: topics x patterns comparisons, like the subscription itself. */
static void wsq_put_matches(const qb_wsq *q, const wsq_topics *ts, qb_buf *b)
{
    bool *hit = calloc(ts->n, sizeof *hit);
    qb_str *unmatched = calloc(ts->n, sizeof *unmatched);
    if (hit == NULL || unmatched == NULL) {
        free(hit);
        free(unmatched);
        return; /* out of memory: the plain ack */
    }
    size_t matching = 0, n_un = 0;
    for (size_t k = 0; k < q->topics.cap; k++) {
        const wsq_topic *t = (const wsq_topic *)q->topics.slots[k];
        bool any = false;
        for (size_t i = 0; t != NULL && i < ts->n; i++) {
            if (qb_wsq_match(ts->v[i], strlen(ts->v[i]), t->name, t->node.len)) {
                hit[i] = any = true;
            }
        }
        matching += any;
    }
    for (size_t i = 0; i < ts->n; i++) {
        bool dup = false;
        for (size_t k = 0; k < n_un && !dup; k++) {
            dup = strcmp(unmatched[k].p, ts->v[i]) == 0;
        }
        if (!hit[i] && !dup) {
            unmatched[n_un++] = (qb_str){ts->v[i], strlen(ts->v[i])};
        }
    }
    qb_buf_appendf(b, ",\"matching\":%zu", matching);
    if (n_un > 0) {
        qb_topic_nearest nr;
        qb_topic_nearest_init(&nr, unmatched, n_un);
        for (size_t k = 0; k < q->topics.cap; k++) {
            const wsq_topic *t = (const wsq_topic *)q->topics.slots[k];
            if (t != NULL) {
                qb_topic_nearest_offer(&nr, t->name, t->node.len);
            }
        }
        qb_str near[QB_TOPIC_NEAREST_MAX];
        for (size_t i = 0; i < nr.n; i++) {
            near[i] = (qb_str){nr.name[i], strlen(nr.name[i])};
        }
        wsq_put_strs(b, "unmatched", unmatched, n_un);
        wsq_put_strs(b, "nearest", near, nr.n);
    }
    free(hit);
    free(unmatched);
}

/* The reply to a subscribe (with what its topics match) or unsubscribe. */
static void wsq_ack(qb_wsq_client *c, const wsq_req *r, const char *type, const wsq_topics *ts)
{
    bool subscribed = strcmp(type, "subscribed") == 0;
    qb_buf b = QB_BUF_INIT;
    qb_buf_appendf(&b, "{\"type\":\"%s\",\"topics\":[", type);
    for (size_t i = 0; i < ts->n; i++) {
        if (i > 0) {
            qb_buf_append(&b, ",", 1);
        }
        qb_json_append_str(&b, ts->v[i], strlen(ts->v[i]));
    }
    qb_buf_append(&b, "]", 1);
    if (subscribed) {
        wsq_put_matches(c->q, ts, &b);
    }
    wsq_put_id(&b, r->id, r->idn, r->id_str);
    qb_buf_append(&b, "}", 1);
    wsq_reply(c, &b);
    qb_buf_fini(&b);
}

static void wsq_ensure_topic(void *arg, qb_str topic)
{
    wsq_topic_get(arg, topic);
}

static void wsq_subscribe(qb_wsq_client *c, const wsq_req *r, const wsq_topics *ts)
{
    qb_wsq *q = c->q;
    size_t fresh = 0;
    for (size_t i = 0; i < ts->n; i++) {
        bool dup = wsq_has_pat(c, ts->v[i]);
        for (size_t k = 0; k < i && !dup; k++) {
            dup = strcmp(ts->v[k], ts->v[i]) == 0;
        }
        fresh += !dup;
    }
    if (c->npat + fresh > q->lim.max_subs) {
        wsq_error(c, r, "too_many_subscriptions",
                  "%zu subscriptions plus %zu new ones is over the limit of %zu per connection",
                  c->npat, fresh, q->lim.max_subs);
        return;
    }
    char **np = realloc(c->pat, (c->npat + fresh + 1) * sizeof *np);
    if (np == NULL) {
        wsq_error(c, r, "bad_request", "out of memory");
        return;
    }
    c->pat = np;
    /* Topics the broker has but this thread has not seen yet (no client
     * was connected when they appeared) become known first. */
    if (q->ops.topics != NULL) {
        q->ops.topics(q->ops.arg, wsq_ensure_topic, q);
    }
    size_t first_new = c->npat;
    for (size_t i = 0; i < ts->n; i++) {
        if (!wsq_has_pat(c, ts->v[i])) {
            char *d = strdup(ts->v[i]);
            if (d == NULL) {
                break;
            }
            c->pat[c->npat++] = d;
        }
    }
    /* The ack first, then the snapshots, then the data. */
    wsq_ack(c, r, "subscribed", ts);
    for (size_t k = 0; k < q->topics.cap; k++) {
        wsq_topic *t = (wsq_topic *)q->topics.slots[k];
        if (t == NULL) {
            continue;
        }
        for (size_t i = first_new; i < c->npat; i++) {
            if (qb_wsq_match(c->pat[i], strlen(c->pat[i]), t->name, t->node.len)) {
                wsq_sub_add(c, t);
                break;
            }
        }
    }
    for (wsq_sub *s = c->subs; s != NULL; s = s->next_c) {
        if (s->need_snap && !s->has_seq && wsq_sub_snapshot(s)) {
            q->st.ws_snapshots_subscribe++;
        }
    }
}

static void wsq_unsubscribe(qb_wsq_client *c, const wsq_req *r, const wsq_topics *ts)
{
    for (size_t i = 0; i < ts->n; i++) {
        for (size_t k = 0; k < c->npat; k++) {
            if (strcmp(c->pat[k], ts->v[i]) == 0) {
                free(c->pat[k]);
                c->pat[k] = c->pat[--c->npat];
                break;
            }
        }
    }
    wsq_sub **pp = &c->subs;
    while (*pp != NULL) {
        wsq_sub *s = *pp;
        bool still = false;
        for (size_t k = 0; k < c->npat && !still; k++) {
            still = qb_wsq_match(c->pat[k], strlen(c->pat[k]), s->t->name, s->t->node.len);
        }
        if (still) {
            pp = &s->next_c;
            continue;
        }
        *pp = s->next_c;
        wsq_purge(c, s->t, false);
        wsq_sub_remove(s);
    }
    wsq_ack(c, r, "unsubscribed", ts);
}

static void wsq_list(qb_wsq_client *c, const wsq_req *r)
{
    qb_buf b = QB_BUF_INIT;
    qb_buf_append(&b, "{\"type\":\"list\"", 14);
    wsq_put_id(&b, r->id, r->idn, r->id_str);
    qb_buf_append(&b, ",\"instruments\":", 15);
    if (c->q->ops.list == NULL || c->q->ops.list(c->q->ops.arg, &b) != QB_OK) {
        qb_buf_append(&b, "[]", 2);
    }
    qb_buf_append(&b, "}", 1);
    wsq_reply(c, &b);
    qb_buf_fini(&b);
}

void qb_wsq_client_request(qb_wsq_client *c, const char *text, size_t len, uint64_t now_ns)
{
    qb_wsq *q = c->q;
    q->st.ws_requests++;
    if (c->close_code != 0) {
        return;
    }
    wsq_req r = {0};
    qb_json j;
    int rc = qb_json_parse(&j, text, len, q->tok, WSQ_TOKENS);
    if (rc == QB_ETOOBIG) {
        wsq_error(c, NULL, "bad_request", "request too complex (more than %d JSON tokens)",
                  WSQ_TOKENS);
        return;
    }
    if (rc != QB_OK) {
        wsq_error(c, NULL, "bad_json", "the request is not valid JSON");
        return;
    }
    if (!qb_json_is_object(&j, 0)) {
        wsq_error(c, NULL, "bad_request", "the request must be a JSON object");
        return;
    }
    int idt = qb_json_get(&j, 0, "id");
    if (idt >= 0) {
        size_t n;
        const char *p = qb_json_text(&j, idt, &n);
        bool is_str = qb_json_is_str(&j, idt);
        bool prim = j.tok[idt].type == JSMN_PRIMITIVE;
        if ((is_str || prim) && n <= 64) {
            r.id = p;
            r.idn = n;
            r.id_str = is_str;
        }
    }
    /* Token bucket: rate per second, burst of rate. */
    double dt = (double)(now_ns - c->tok_ns) / 1e9;
    c->tok_ns = now_ns;
    c->tokens += dt * q->lim.rate;
    if (c->tokens > q->lim.rate) {
        c->tokens = q->lim.rate;
    }
    if (c->tokens < 1.0) {
        wsq_error(c, &r, "rate_limited", "more than %u requests per second; request ignored",
                  q->lim.rate);
        return;
    }
    c->tokens -= 1.0;

    int opt = qb_json_get(&j, 0, "op");
    if (opt < 0) {
        wsq_error(c, &r, "bad_request", "the request has no \"op\"");
        return;
    }
    if (!qb_json_is_str(&j, opt)) {
        wsq_error(c, &r, "bad_request", "\"op\" must be a string");
        return;
    }
    bool sub = qb_json_str_eq(&j, opt, "subscribe");
    bool unsub = qb_json_str_eq(&j, opt, "unsubscribe");
    if (qb_json_str_eq(&j, opt, "list")) {
        wsq_list(c, &r);
        return;
    }
    if (!sub && !unsub) {
        size_t n;
        const char *p = qb_json_text(&j, opt, &n);
        char shown[40];
        snprintf(shown, sizeof shown, "%.*s", (int)(n > 32 ? 32 : n), p);
        wsq_error(c, &r, "unknown_op", "unknown op \"%s\" (known: subscribe, unsubscribe, list)",
                  shown);
        return;
    }
    int tt = qb_json_get(&j, 0, "topics");
    if (tt < 0 || !qb_json_is_array(&j, tt)) {
        wsq_error(c, &r, "bad_request", "\"topics\" must be an array of topic strings");
        return;
    }
    int n = j.tok[tt].size;
    if (n == 0) {
        wsq_error(c, &r, "bad_request", "\"topics\" is empty");
        return;
    }
    if ((size_t)n > q->lim.max_subs) {
        wsq_error(c, &r, "too_many_subscriptions",
                  "%d topics in one request; at most %zu subscriptions per connection", n,
                  q->lim.max_subs);
        return;
    }
    wsq_topics ts = {malloc((size_t)n * sizeof *ts.v), 0};
    if (ts.v == NULL) {
        wsq_error(c, &r, "bad_request", "out of memory");
        return;
    }
    for (int i = 0; i < n; i++) {
        int e = qb_json_at(&j, tt, i);
        if (e < 0 || !qb_json_is_str(&j, e)) {
            wsq_error(c, &r, "bad_request", "\"topics\" must hold strings only");
            goto out;
        }
        char *dst = ts.v[ts.n];
        int crc = qb_json_str_copy(&j, e, dst, QB_TOPIC_MAX + 1);
        size_t tl = crc == QB_OK ? strlen(dst) : 0;
        /* The topic rule (proto/topic.h) already keeps out '"' and '\', so
         * a topic goes into JSON replies as is; a "\u0000" would cut the
         * copy short, so it is looked for in the raw text. */
        if (crc != QB_OK || qb_topic_parse(dst, tl, NULL) == QB_TOPIC_INVALID ||
            wsq_has_escaped_nul(&j, e)) {
            size_t rn;
            const char *raw = qb_json_text(&j, e, &rn);
            char shown[48];
            snprintf(shown, sizeof shown, "%.*s%s", (int)(rn > 40 ? 40 : rn), raw,
                     rn > 40 ? "..." : "");
            wsq_error(c, &r, "bad_topic",
                      "bad topic \"%s\": want kind.exchange.SYMBOL or a prefix ending in '.' "
                      "(kinds: book, trade, status, ticker; printable ASCII, at most %d bytes)",
                      shown, QB_TOPIC_MAX);
            goto out;
        }
        ts.n++;
    }
    if (sub) {
        wsq_subscribe(c, &r, &ts);
    } else {
        wsq_unsubscribe(c, &r, &ts);
    }
out:
    free(ts.v);
}

/* ---- HTTP helpers ------------------------------------------------------ */

static int wsq_lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch;
}

static bool wsq_ieq(const char *a, const char *b)
{
    while (*a && *b && wsq_lower((unsigned char)*a) == wsq_lower((unsigned char)*b)) {
        a++;
        b++;
    }
    return *a == '\0' && *b == '\0';
}

bool qb_wsq_origin_ok(const char *origin, const char *host, const char *const *allow,
                      size_t n_allow)
{
    if (origin == NULL || origin[0] == '\0') {
        return true;
    }
    for (size_t i = 0; i < n_allow; i++) {
        if (strcmp(allow[i], "*") == 0 || wsq_ieq(allow[i], origin)) {
            return true;
        }
    }
    const char *p = strstr(origin, "://");
    if (p == NULL || host == NULL || host[0] == '\0') {
        return false;
    }
    p += 3;
    if (strchr(p, '/') != NULL) {
        return false; /* an Origin has no path */
    }
    return wsq_ieq(p, host);
}

static bool wsq_ct_eq(const char *a, size_t an, const char *b, size_t bn)
{
    unsigned diff = an != bn;
    size_t n = an < bn ? an : bn;
    for (size_t i = 0; i < n; i++) {
        diff |= (unsigned char)a[i] ^ (unsigned char)b[i];
    }
    return diff == 0;
}

bool qb_wsq_token_ok(const char *token, const char *auth, const char *query_token)
{
    if (token == NULL || token[0] == '\0') {
        return true;
    }
    size_t tn = strlen(token);
    if (auth != NULL && strncmp(auth, "Bearer ", 7) == 0 &&
        wsq_ct_eq(auth + 7, strlen(auth + 7), token, tn)) {
        return true;
    }
    return query_token != NULL && wsq_ct_eq(query_token, strlen(query_token), token, tn);
}

bool qb_wsq_web_path(const char *url, char *out, size_t cap)
{
    if (url == NULL || url[0] != '/') {
        return false;
    }
    if (strcmp(url, "/") == 0) {
        url = "/index.html";
    }
    size_t n = strlen(url);
    if (n + 1 > cap || n > 200) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = url[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-' || ch == '/';
        if (!ok) {
            return false;
        }
        if (ch == '/' && (url[i + 1] == '/' || url[i + 1] == '.')) {
            return false; /* "//", "/.", "/..", hidden files */
        }
    }
    if (url[n - 1] == '/') {
        return false; /* directories are not listed */
    }
    memcpy(out, url, n + 1);
    return true;
}

const char *qb_wsq_mime(const char *path)
{
    static const struct {
        const char *ext, *type;
    } m[] = {
        {".html", "text/html; charset=utf-8"},
        {".htm", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
        {".md", "text/plain; charset=utf-8"},
        {".woff2", "font/woff2"},
    };
    const char *dot = strrchr(path, '.');
    if (dot != NULL && strchr(dot, '/') == NULL) {
        for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
            if (wsq_ieq(dot, m[i].ext)) {
                return m[i].type;
            }
        }
    }
    return "application/octet-stream";
}
