/*
 * snapshot.c: the snapshot service of snapshot.h (protocol: proto/PROTOCOL.md
 * section 11).
 *
 * One REP socket, n_contexts independent nng_ctx, each with its own aio and
 * its own scratch (sink arena, reply buffer), so requests are served in
 * parallel on NNG's callback threads and no context ever waits for another:
 *
 *   ctx i:  recv --cb--> parse --> collect (broker lock: copies) --> encode --> send --cb--> recv
 * ...
 *
 * Per request: the request map is parsed (msgpack, at most 4 KiB), the
 * broker's collect callback copies the matching books into the context's
 * sink (levels into one arena, fields into an entry array), and only then,
 * with the broker's lock released, each book is encoded as one standard
 * snapshot frame (qb_msg_encode, refresh=true, seq = the broker's last
 * applied seq) and embedded as a msgpack bin in the reply. Books that do
 * not fit in max_reply are left out and the reply says "truncated".
 *
 * Scratch buffers are kept between requests (no allocation once warm) and
 * released after a request that needed more than SNAPSHOT_KEEP bytes, so a
 * rare huge reply does not pin memory in every context.
 *
 * Shutdown: a closing flag, then nng_close() (every pending or new
 * operation of a context completes with an error, and the callback does
 * not re-arm), then nng_aio_free() of each context (waits for a running
 * callback). A reply that fails to send is freed in the callback.
 */
#include "snapshot.h"

#include "buf.h"
#include "err.h"
#include "listeners.h"
#include "log.h"
#include "nngclose.h"
#include "topic.h"

#include <msgpack.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SNAPSHOT_KEEP (1u << 20)
/* The smallest encoding of a level: fixarray(4) and four fixints. */
#define SNAPSHOT_MIN_LEVEL_BYTES 5

typedef struct snapshot_entry {
    size_t topic_off, topic_len; /* into sink->strs */
    size_t nsym_off, nsym_len;
    size_t bid_off, n_bids; /* into sink->lv */
    size_t ask_off, n_asks;
    uint64_t seq, last_id, exch_ts, recv_ts, age_ns;
    bool valid, has_state;
    qb_feed_state state;
} snapshot_entry;

struct qb_snapshot_sink {
    snapshot_entry *e;
    size_t n, cap;
    qb_level *lv;
    size_t n_lv, cap_lv;
    qb_buf strs;
    size_t max_books;
    size_t max_levels; /* levels that could possibly fit in max_reply */
    bool truncated;
    uint64_t bad_topics;
};

typedef struct snapshot_ctx {
    struct qb_snapshot *svc;
    nng_ctx ctx;
    nng_aio *aio;
    bool ctx_open;
    bool sending;
    qb_snapshot_sink sink;
    qb_buf frame; /* one encoded book frame */
    qb_buf body;  /* the books array's items */
    qb_buf out;   /* the whole reply */
} snapshot_ctx;

typedef struct snapshot_counters {
#define SNAPSHOT_ATOMIC_FIELD_(name, help) _Atomic uint64_t name;
    QB_SNAPSHOT_STATS(SNAPSHOT_ATOMIC_FIELD_)
#undef SNAPSHOT_ATOMIC_FIELD_
} snapshot_counters;

struct qb_snapshot {
    nng_socket sock;
    bool sock_open;
    atomic_bool closing;
    snapshot_ctx *ctxs;
    size_t n_ctxs;
    size_t max_books;
    size_t max_reply;
    qb_snapshot_collect_fn collect;
    void *collect_arg;
    snapshot_counters c;
    struct qb_listeners *listeners;
    bool own_listeners; /* made here (cfg->listeners was NULL) */
};

static void snapshot_count(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* ---- sink ------------------------------------------------------------- */

static void snapshot_sink_reset(qb_snapshot_sink *s, size_t max_books, size_t max_reply)
{
    s->n = 0;
    s->n_lv = 0;
    qb_buf_reset(&s->strs);
    s->max_books = max_books;
    s->max_levels = max_reply / SNAPSHOT_MIN_LEVEL_BYTES;
    s->truncated = false;
    s->bad_topics = 0;
}

static void snapshot_sink_fini(qb_snapshot_sink *s)
{
    free(s->e);
    free(s->lv);
    qb_buf_fini(&s->strs);
    memset(s, 0, sizeof *s);
}

/* Releases scratch that grew past SNAPSHOT_KEEP. */
static void snapshot_sink_trim(qb_snapshot_sink *s)
{
    if (s->cap_lv * sizeof(qb_level) > SNAPSHOT_KEEP) {
        free(s->lv);
        s->lv = NULL;
        s->cap_lv = 0;
    }
    if (s->cap * sizeof(snapshot_entry) > SNAPSHOT_KEEP) {
        free(s->e);
        s->e = NULL;
        s->cap = 0;
    }
    if (s->strs.cap > SNAPSHOT_KEEP) {
        qb_buf_fini(&s->strs);
    }
}

/* Splits "book.<ex>.<sym>" (the rule of proto/topic.h); false when it is
 * not a book topic. */
static bool snapshot_book_topic(qb_str t, qb_str *ex, qb_str *sym)
{
    qb_topic tp;
    if (qb_topic_parse(t.p, t.n, &tp) != QB_TOPIC_EXACT || tp.kind != QB_TOPIC_BOOK) {
        return false;
    }
    *ex = tp.ex;
    *sym = tp.sym;
    return true;
}

int qb_snapshot_sink_add(qb_snapshot_sink *s, const qb_snapshot_book *b)
{
    qb_str ex, sym;
    if (s == NULL || b == NULL) {
        return QB_EINVAL;
    }
    if (!snapshot_book_topic(b->topic, &ex, &sym) || b->nsym.n > 64) {
        s->bad_topics++;
        return QB_EINVAL;
    }
    size_t nb = b->valid ? b->n_bids : 0, na = b->valid ? b->n_asks : 0;
    if (s->n >= s->max_books || s->n_lv + nb + na > s->max_levels) {
        s->truncated = true;
        return QB_ETOOBIG;
    }
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16;
        snapshot_entry *ne = realloc(s->e, ncap * sizeof *ne);
        if (ne == NULL) {
            return QB_ENOMEM;
        }
        s->e = ne;
        s->cap = ncap;
    }
    if (s->n_lv + nb + na > s->cap_lv) {
        size_t ncap = s->cap_lv ? s->cap_lv : 1024;
        while (ncap < s->n_lv + nb + na) {
            ncap *= 2;
        }
        qb_level *nl = realloc(s->lv, ncap * sizeof *nl);
        if (nl == NULL) {
            return QB_ENOMEM;
        }
        s->lv = nl;
        s->cap_lv = ncap;
    }
    snapshot_entry *e = &s->e[s->n];
    memset(e, 0, sizeof *e);
    e->topic_off = s->strs.len;
    e->topic_len = b->topic.n;
    if (qb_buf_append(&s->strs, b->topic.p, b->topic.n) != QB_OK) {
        return QB_ENOMEM;
    }
    e->nsym_off = s->strs.len;
    e->nsym_len = b->nsym.n;
    if (b->nsym.n > 0 && qb_buf_append(&s->strs, b->nsym.p, b->nsym.n) != QB_OK) {
        return QB_ENOMEM;
    }
    e->bid_off = s->n_lv;
    e->n_bids = nb;
    if (nb > 0) {
        memcpy(s->lv + s->n_lv, b->bids, nb * sizeof *b->bids);
        s->n_lv += nb;
    }
    e->ask_off = s->n_lv;
    e->n_asks = na;
    if (na > 0) {
        memcpy(s->lv + s->n_lv, b->asks, na * sizeof *b->asks);
        s->n_lv += na;
    }
    e->seq = b->seq;
    e->last_id = b->last_id;
    e->exch_ts = b->exch_ts;
    e->recv_ts = b->recv_ts;
    e->age_ns = b->age_ns;
    e->valid = b->valid;
    e->has_state = b->has_state;
    e->state = b->state;
    s->n++;
    return QB_OK;
}

/* ---- reply encoding --------------------------------------------------- */

static int snapshot_write_cb(void *data, const char *p, size_t n)
{
    return qb_buf_append(data, p, n) == QB_OK ? 0 : -1;
}

static int snapshot_pack_str(msgpack_packer *pk, const char *p, size_t n)
{
    return msgpack_pack_str_with_body(pk, p, n);
}

static int snapshot_pack_key(msgpack_packer *pk, const char *k)
{
    return snapshot_pack_str(pk, k, strlen(k));
}

/* Writes the error reply {"v":1,"ok":false,"code":...,"error":...} to out. */
static int snapshot_error_reply(qb_buf *out, const char *code, const char *text)
{
    msgpack_packer pk;
    qb_buf_reset(out);
    msgpack_packer_init(&pk, out, snapshot_write_cb);
    int rc = msgpack_pack_map(&pk, 4);
    rc |= snapshot_pack_key(&pk, "v");
    rc |= msgpack_pack_uint32(&pk, QB_PROTO_VERSION);
    rc |= snapshot_pack_key(&pk, "ok");
    rc |= msgpack_pack_false(&pk);
    rc |= snapshot_pack_key(&pk, "code");
    rc |= snapshot_pack_key(&pk, code);
    rc |= snapshot_pack_key(&pk, "error");
    rc |= snapshot_pack_key(&pk, text);
    return rc == 0 ? QB_OK : QB_ENOMEM;
}

static const char *snapshot_state_name(const snapshot_entry *e)
{
    return e->has_state ? qb_feed_state_name(e->state) : "unknown";
}

/* Encodes one book item ({"topic","valid","state","seq","age_ms","frame"})
 * into body. */
static int snapshot_pack_book(snapshot_ctx *c, const snapshot_entry *e, msgpack_packer *pk)
{
    qb_snapshot_sink *s = &c->sink;
    qb_str topic = {(const char *)s->strs.data + e->topic_off, e->topic_len};
    qb_str ex, sym;
    bool valid = e->valid;
    qb_buf_reset(&c->frame);
    if (valid && snapshot_book_topic(topic, &ex, &sym)) {
        qb_msg m;
        memset(&m, 0, sizeof m);
        m.type = QB_MSG_SNAPSHOT;
        m.version = QB_PROTO_VERSION;
        m.exchange = ex;
        m.symbol = sym;
        m.native =
            e->nsym_len > 0 ? (qb_str){(const char *)s->strs.data + e->nsym_off, e->nsym_len} : sym;
        m.seq = e->seq;
        m.exch_ts = e->exch_ts;
        m.recv_ts = e->recv_ts;
        m.first_id = e->last_id;
        m.last_id = e->last_id;
        m.bids = s->lv + e->bid_off;
        m.n_bids = e->n_bids;
        m.asks = s->lv + e->ask_off;
        m.n_asks = e->n_asks;
        m.refresh = true;
        int rc = qb_msg_encode(&m, &c->frame);
        if (rc == QB_ENOMEM) {
            return rc;
        }
        if (rc != QB_OK) {
            /* A book the encoder refuses (e.g. more levels than a message
             * may carry) is reported as not valid rather than sent wrong. */
            QB_LOG_RL(QB_LOG_WARN, "snapshot.encode_failed", "topic=%.*s: %s", (int)topic.n,
                      topic.p, qb_strerror(rc));
            valid = false;
            qb_buf_reset(&c->frame);
        }
    }
    int rc = msgpack_pack_map(pk, 6);
    rc |= snapshot_pack_key(pk, "topic");
    rc |= snapshot_pack_str(pk, topic.p, topic.n);
    rc |= snapshot_pack_key(pk, "valid");
    rc |= valid ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    rc |= snapshot_pack_key(pk, "state");
    rc |= snapshot_pack_key(pk, snapshot_state_name(e));
    rc |= snapshot_pack_key(pk, "seq");
    rc |= msgpack_pack_uint64(pk, e->seq);
    rc |= snapshot_pack_key(pk, "age_ms");
    rc |= msgpack_pack_uint64(pk, e->age_ns / 1000000u);
    rc |= snapshot_pack_key(pk, "frame");
    if (valid) {
        rc |= msgpack_pack_bin_with_body(pk, c->frame.data, c->frame.len);
    } else {
        rc |= msgpack_pack_nil(pk);
    }
    return rc == 0 ? QB_OK : QB_ENOMEM;
}

/* Builds the success reply from the sink into c->out. */
static int snapshot_ok_reply(qb_snapshot *svc, snapshot_ctx *c, size_t *books_out)
{
    qb_snapshot_sink *s = &c->sink;
    msgpack_packer pk;
    size_t n = 0;
    bool truncated = s->truncated;
    qb_buf_reset(&c->body);
    msgpack_packer_init(&pk, &c->body, snapshot_write_cb);
    for (size_t i = 0; i < s->n; i++) {
        size_t mark = c->body.len;
        int rc = snapshot_pack_book(c, &s->e[i], &pk);
        if (rc != QB_OK) {
            return rc;
        }
        /* 64 bytes: the reply's header and the array header. */
        if (c->body.len + 64 > svc->max_reply) {
            c->body.len = mark;
            truncated = true;
            break;
        }
        n++;
    }
    qb_buf_reset(&c->out);
    msgpack_packer_init(&pk, &c->out, snapshot_write_cb);
    int rc = msgpack_pack_map(&pk, 4);
    rc |= snapshot_pack_key(&pk, "v");
    rc |= msgpack_pack_uint32(&pk, QB_PROTO_VERSION);
    rc |= snapshot_pack_key(&pk, "ok");
    rc |= msgpack_pack_true(&pk);
    rc |= snapshot_pack_key(&pk, "truncated");
    rc |= truncated ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    rc |= snapshot_pack_key(&pk, "books");
    rc |= msgpack_pack_array(&pk, (size_t)n);
    if (rc != 0 || qb_buf_append(&c->out, c->body.data, c->body.len) != QB_OK) {
        return QB_ENOMEM;
    }
    if (truncated) {
        snapshot_count(&svc->c.snap_truncated, 1);
    }
    *books_out = n;
    return QB_OK;
}

/* ---- request ---------------------------------------------------------- */

typedef struct snapshot_req {
    bool has_v, has_op, has_topic;
    uint64_t v;
    qb_str op, topic;
} snapshot_req;

static bool snapshot_key_is(const msgpack_object *k, const char *name)
{
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, name, n) == 0;
}

/* Parses the request map. Returns NULL when valid, else the error code and
 * writes the message into why. */
static const char *snapshot_parse(const void *data, size_t len, snapshot_req *r, char *why,
                                  size_t cap)
{
    memset(r, 0, sizeof *r);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    const char *code = NULL;
    msgpack_unpack_return ur = msgpack_unpack_next(&u, data, len, &off);
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len || u.data.type != MSGPACK_OBJECT_MAP) {
        code = "bad_request";
        snprintf(why, cap, "the request must be one msgpack map (%s)",
                 ur != MSGPACK_UNPACK_SUCCESS ? "not valid msgpack"
                 : off != len                 ? "trailing bytes after the map"
                                              : "not a map");
        goto out;
    }
    const msgpack_object_map *m = &u.data.via.map;
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
        if (snapshot_key_is(k, "v")) {
            if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
                code = "bad_request";
                snprintf(why, cap, "\"v\" must be an unsigned integer");
                goto out;
            }
            r->has_v = true;
            r->v = v->via.u64;
        } else if (snapshot_key_is(k, "op") || snapshot_key_is(k, "topic")) {
            if (v->type != MSGPACK_OBJECT_STR) {
                code = "bad_request";
                snprintf(why, cap, "\"%.*s\" must be a string", (int)k->via.str.size,
                         k->via.str.ptr);
                goto out;
            }
            qb_str sv = {v->via.str.ptr, v->via.str.size};
            if (k->via.str.size == 2) {
                r->has_op = true;
                r->op = sv;
            } else {
                r->has_topic = true;
                r->topic = sv;
            }
        }
        /* Unknown keys are ignored (forward compatibility). */
    }
    if (!r->has_v || !r->has_op || !r->has_topic) {
        code = "bad_request";
        snprintf(why, cap, "the request needs \"v\", \"op\" and \"topic\"");
        goto out;
    }
    if (r->v != QB_PROTO_VERSION) {
        code = "bad_version";
        snprintf(why, cap, "unsupported version %llu (this service speaks 1)",
                 (unsigned long long)r->v);
        goto out;
    }
    if (!(r->op.n == 8 && memcmp(r->op.p, "snapshot", 8) == 0)) {
        code = "unknown_op";
        snprintf(why, cap, "unknown op \"%.*s\" (known: \"snapshot\")",
                 (int)(r->op.n > 32 ? 32 : r->op.n), r->op.p);
        goto out;
    }
    /* The subscription rule of section 3 (proto/topic.h), for book topics. */
    char t[QB_TOPIC_MAX + 1];
    bool ok = r->topic.n >= 5 && r->topic.n <= QB_TOPIC_MAX &&
              memcmp(r->topic.p, "book.", 5) == 0 && memchr(r->topic.p, '\0', r->topic.n) == NULL;
    if (ok) {
        memcpy(t, r->topic.p, r->topic.n);
        t[r->topic.n] = '\0';
        ok = qb_topic_sub_len(t) != 0;
    }
    if (!ok) {
        code = "bad_topic";
        snprintf(why, cap,
                 "topic must be a book topic or prefix of printable ASCII (no '\"' or '\\'), "
                 "at most %d bytes, starting with \"book.\"",
                 QB_TOPIC_MAX);
        goto out;
    }
out:
    if (code != NULL) {
        /* r's views point into the request bytes, not into the zone. */
        memset(r, 0, sizeof *r);
    } else {
        /* op/topic point into data (msgpack_unpack_next references the
         * input for str), which the caller keeps alive. */
    }
    msgpack_unpacked_destroy(&u);
    return code;
}

/* Serves one request into c->out (always a reply, success or error). */
static int snapshot_serve(qb_snapshot *svc, snapshot_ctx *c, const void *data, size_t len)
{
    char why[256];
    snapshot_count(&svc->c.snap_requests, 1);
    if (len > QB_SNAPSHOT_MAX_REQUEST) {
        snapshot_count(&svc->c.snap_too_large, 1);
        snprintf(why, sizeof why, "request of %zu bytes is over the %d byte limit", len,
                 QB_SNAPSHOT_MAX_REQUEST);
        QB_LOG_RL(QB_LOG_WARN, "snapshot.too_large", "%s", why);
        return snapshot_error_reply(&c->out, "too_large", why);
    }
    snapshot_req r;
    const char *code = snapshot_parse(data, len, &r, why, sizeof why);
    if (code != NULL) {
        snapshot_count(&svc->c.snap_bad_requests, 1);
        QB_LOG_RL(QB_LOG_WARN, "snapshot.bad_request", "%s: %s", code, why);
        return snapshot_error_reply(&c->out, code, why);
    }
    /* Exact, the same rule as for subscriptions (validated above). */
    bool exact = qb_topic_parse(r.topic.p, r.topic.n, NULL) == QB_TOPIC_EXACT;
    snapshot_sink_reset(&c->sink, svc->max_books, svc->max_reply);
    int rc = svc->collect(svc->collect_arg, r.topic, exact, &c->sink);
    size_t books = 0;
    if (rc == QB_OK && c->sink.n > 0) {
        rc = snapshot_ok_reply(svc, c, &books);
    } else if (rc == QB_OK) {
        snapshot_count(&svc->c.snap_unknown_topic, 1);
        snprintf(why, sizeof why, "no book %s \"%.*s\"",
                 exact ? "has the topic" : "matches the prefix", (int)r.topic.n, r.topic.p);
        rc = snapshot_error_reply(&c->out, "unknown_topic", why);
        snapshot_sink_trim(&c->sink);
        return rc;
    }
    if (rc != QB_OK) {
        snapshot_count(&svc->c.snap_unavailable, 1);
        snprintf(why, sizeof why, "snapshot failed: %s", qb_strerror(rc));
        QB_LOG_RL(QB_LOG_WARN, "snapshot.unavailable", "topic=%.*s: %s", (int)r.topic.n, r.topic.p,
                  why);
        rc = snapshot_error_reply(&c->out, "unavailable", why);
    } else {
        snapshot_count(&svc->c.snap_replies_ok, 1);
        snapshot_count(&svc->c.snap_books, books);
    }
    snapshot_sink_trim(&c->sink);
    return rc;
}

/* ---- NNG plumbing ----------------------------------------------------- */

static void snapshot_trim_bufs(snapshot_ctx *c)
{
    if (c->out.cap > SNAPSHOT_KEEP) {
        qb_buf_fini(&c->out);
    }
    if (c->body.cap > SNAPSHOT_KEEP) {
        qb_buf_fini(&c->body);
    }
    if (c->frame.cap > SNAPSHOT_KEEP) {
        qb_buf_fini(&c->frame);
    }
}

static void snapshot_cb(void *arg)
{
    snapshot_ctx *c = arg;
    qb_snapshot *svc = c->svc;
    int rv = nng_aio_result(c->aio);
    bool closing = atomic_load(&svc->closing);
    if (c->sending) {
        c->sending = false;
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(c->aio));
            nng_aio_set_msg(c->aio, NULL);
            if (!closing) {
                snapshot_count(&svc->c.snap_send_errors, 1);
            }
        }
        if (!closing && rv != NNG_ECLOSED) {
            nng_ctx_recv(c->ctx, c->aio);
        }
        return;
    }
    if (rv != 0) {
        if (!closing && rv != NNG_ECLOSED && rv != NNG_ECANCELED) {
            QB_LOG_RL(QB_LOG_WARN, "snapshot.recv_failed", "%s", nng_strerror(rv));
            nng_ctx_recv(c->ctx, c->aio);
        }
        return;
    }
    nng_msg *req = nng_aio_get_msg(c->aio);
    nng_aio_set_msg(c->aio, NULL);
    int rc = snapshot_serve(svc, c, nng_msg_body(req), nng_msg_len(req));
    nng_msg_free(req);
    nng_msg *rep = NULL;
    if (rc != QB_OK) {
        /* Out of memory for the reply itself: try a short error reply. */
        snapshot_count(&svc->c.snap_unavailable, 1);
        rc = snapshot_error_reply(&c->out, "unavailable", "out of memory");
    }
    if (rc == QB_OK && nng_msg_alloc(&rep, c->out.len) == 0) {
        memcpy(nng_msg_body(rep), c->out.data, c->out.len);
        snapshot_count(&svc->c.snap_bytes, c->out.len);
    }
    snapshot_trim_bufs(c);
    if (rep == NULL) {
        /* No reply possible: the requester times out and retries. */
        snapshot_count(&svc->c.snap_send_errors, 1);
        nng_ctx_recv(c->ctx, c->aio);
        return;
    }
    c->sending = true;
    nng_aio_set_msg(c->aio, rep);
    nng_ctx_send(c->ctx, c->aio);
}

void qb_snapshot_free(qb_snapshot *s)
{
    if (s == NULL) {
        return;
    }
    atomic_store(&s->closing, true);
    if (s->own_listeners) {
        qb_listeners_stop(s->listeners); /* no probe while the socket closes */
    }
    /* Stop every context's aio first: this aborts its pending operation
     * and waits for a running callback; a callback that raced with the stop
     * may have left a reply in the aio (an operation started on a stopped
     * aio never completes), which is freed here. */
    for (size_t i = 0; i < s->n_ctxs; i++) {
        snapshot_ctx *c = &s->ctxs[i];
        if (c->aio != NULL) {
            nng_aio_stop(c->aio);
            nng_msg *m = nng_aio_get_msg(c->aio);
            if (m != NULL) {
                nng_aio_set_msg(c->aio, NULL);
                nng_msg_free(m);
            }
        }
        if (c->ctx_open) {
            nng_ctx_close(c->ctx);
            c->ctx_open = false;
        }
    }
    if (s->sock_open) {
        /* Bounded (nngclose.h): NNG 1.5.2 can hang closing a socket with a
         * pipe mid-transfer, and the listener probes keep pipes coming. */
        (void)qb_nng_close_bounded(s->sock, "snapshot", 1000);
    }
    for (size_t i = 0; i < s->n_ctxs; i++) {
        snapshot_ctx *c = &s->ctxs[i];
        if (c->aio != NULL) {
            nng_aio_free(c->aio);
        }
        snapshot_sink_fini(&c->sink);
        qb_buf_fini(&c->frame);
        qb_buf_fini(&c->body);
        qb_buf_fini(&c->out);
    }
    free(s->ctxs);
    if (s->own_listeners) {
        qb_listeners_free(s->listeners); /* after the socket: releases the ipc claims */
    }
    free(s);
}

int qb_snapshot_new(const qb_snapshot_config *cfg, qb_snapshot **out)
{
    if (cfg == NULL || out == NULL || cfg->n_urls == 0 || cfg->urls == NULL ||
        cfg->collect == NULL) {
        return QB_EINVAL;
    }
    qb_snapshot *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return QB_ENOMEM;
    }
    s->n_ctxs = cfg->n_contexts ? cfg->n_contexts : QB_SNAPSHOT_DEFAULT_CONTEXTS;
    s->max_books = cfg->max_books ? cfg->max_books : QB_SNAPSHOT_DEFAULT_MAX_BOOKS;
    s->max_reply = cfg->max_reply ? cfg->max_reply : QB_SNAPSHOT_DEFAULT_MAX_REPLY;
    s->collect = cfg->collect;
    s->collect_arg = cfg->collect_arg;
    atomic_init(&s->closing, false);
    int rv, rc = QB_ETRANSPORT;
    s->ctxs = calloc(s->n_ctxs, sizeof *s->ctxs);
    if (s->ctxs == NULL) {
        rc = QB_ENOMEM;
        goto fail;
    }
    if ((rv = nng_rep0_open(&s->sock)) != 0) {
        QB_ERROR("snapshot.socket_failed", "rep socket: %s", nng_strerror(rv));
        goto fail;
    }
    s->sock_open = true;
    if ((rv = nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, QB_SNAPSHOT_RECVMAXSZ)) != 0) {
        QB_ERROR("snapshot.socket_failed", "recv-size-max: %s", nng_strerror(rv));
        goto fail;
    }
    for (size_t i = 0; i < s->n_ctxs; i++) {
        snapshot_ctx *c = &s->ctxs[i];
        c->svc = s;
        if ((rv = nng_aio_alloc(&c->aio, snapshot_cb, c)) != 0 ||
            (rv = nng_ctx_open(&c->ctx, s->sock)) != 0) {
            QB_ERROR("snapshot.socket_failed", "context: %s", nng_strerror(rv));
            rc = qb_err_from_nng(rv);
            goto fail;
        }
        c->ctx_open = true;
    }
    s->listeners = cfg->listeners;
    if (s->listeners == NULL) {
        if ((rc = qb_listeners_new(&s->listeners)) != QB_OK) {
            goto fail;
        }
        s->own_listeners = true;
    }
    if ((rc = qb_listeners_watch(s->listeners, s->sock, NULL, NULL)) != QB_OK) {
        goto fail;
    }
    for (size_t i = 0; i < cfg->n_urls; i++) {
        if ((rc = qb_listeners_add(s->listeners, s->sock, "snapshot", cfg->urls[i], false)) !=
            QB_OK) {
            goto fail;
        }
    }
    if (s->own_listeners && (rc = qb_listeners_start(s->listeners, 0)) != QB_OK) {
        goto fail;
    }
    for (size_t i = 0; i < s->n_ctxs; i++) {
        nng_ctx_recv(s->ctxs[i].ctx, s->ctxs[i].aio);
    }
    *out = s;
    return QB_OK;
fail:
    qb_snapshot_free(s);
    return rc;
}

void qb_snapshot_stats_get(qb_snapshot *s, qb_snapshot_stats *out)
{
#define SNAPSHOT_COPY_(name, help)                                                                 \
    out->name = atomic_load_explicit(&s->c.name, memory_order_relaxed);
    QB_SNAPSHOT_STATS(SNAPSHOT_COPY_)
#undef SNAPSHOT_COPY_
}
