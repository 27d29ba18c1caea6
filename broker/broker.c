/*
 * broker.c: the ingest thread and the fan-out of broker.h.
 *
 * Per frame, on the ingest thread:
 *
 *   nng_recvmsg(ingest) -> size and topic checks
 *     -> qb_decoder over every map, each decoded once into the stash
 *     -> invalid: count by kind, log (once per kind per second), nng_msg_free
 *     -> valid:   owner check (the frame's pipe against the topic's owner)
 *     -> refused: count, notice (log + status, rate-limited), nng_msg_free
 *     -> valid:   lock; qb_topics_apply each stashed map; unlock
 *                 nng_sendmsg(pub, the same msg)   (ownership passes to NNG)
 *
 * Validation runs over the whole frame before any state changes, so a frame
 * with a bad later map changes nothing and is not forwarded. A frame may
 * carry many maps (the adapters batch deltas, PROTOCOL.md "Frames and
 * batching"), and the decoder's views live only until its next call, so
 * every decoded message is copied into the stash as it is validated: the
 * qb_msg itself and its levels (strings stay views into the frame, which
 * lives until the send). Applying then reads the stash: one decode per map.
 * The stash is bounded (BROKER_STASH_MAPS messages, BROKER_STASH_LEVELS
 * levels); a frame beyond either bound (or an allocation failure) falls
 * back to decoding the frame a second time to apply it, so hostile frames
 * cannot make the stash grow with them. The state lock is uncontended
 * except while another thread inspects a topic.
 *
 * Topic ownership (broker.h, PROTOCOL.md 1). Each topic's state holds the
 * id of the pipe that publishes it (topics.h). The hot path is one lookup
 * and one compare per frame (frame pipe == owner), made by the ingest
 * thread without the lock (it is the table's only writer). Anything else
 * is the cold path, also on the ingest thread:
 *
 *   pipe is the broker's own (qb_broker_publish)   -> accept, own nothing
 *   topic of the broker's own exchange "quotebus"  -> refuse
 *   topic new or without owner                     -> accept, pipe owns it
 *   owner's pipe still open                        -> refuse
 *   owner's pipe closed                            -> accept, pipe owns it
 *
 * "Still open" asks NNG's own pipe registry (nng_pipe_socket: a pipe is
 * found until NNG has run its REM_POST callback and destroyed it), and for
 * an ipc pipe also whether its peer process still runs (NNG 1.5.2's reaper
 * can stall, see broker_owner_open), so the pipe callbacks (NNG threads)
 * never touch the topic table, and no set of pipes is kept here: a pipe id
 * is never reused while the process runs (NNG allocates them upwards from
 * a random start, 31 bits). A frame
 * still queued from a pipe that has just closed is accepted as long as the
 * topic has not changed hands: it was sent before the close.
 * Who a pipe is (ipc: the peer's pid and uid; tcp: its address) is read
 * when it connects (broker_pipe_cb) into a small ring, so a publisher that
 * sent one frame and left is still named in the refusal notice.
 *
 * Allocation per message: none in this file once warm (one decoder and one
 * stash reused, topic lookups keyed by the frame's own topic bytes), none in
 * the decoder once warm (proto/msg_decode.c reads the frame in place with MsgPuck
 * into level arrays it keeps, grown only for a deeper book). NNG
 * allocates the nng_msg on receive, pub0 only takes references to it per
 * subscriber pipe.
 */
#include "broker.h"

#include "clock.h"
#include "err.h"
#include "file.h"
#include "listeners.h"
#include "log.h"
#include "msg.h"
#include "nngclose.h"
#include "nngrecv.h"
#include "nngtls.h"
#include "snapshot.h"
#include "topic.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Frames up to this size reach the decoder (which rejects anything over
 * QB_MSG_MAX_FRAME, counted as oversized). NNG's default receive limit
 * (1 MiB) would refuse legitimate large snapshots; a frame above this limit
 * makes NNG close that publisher's connection before we ever see it (the
 * publisher redials; counted only as ingest_disconnects), so the headroom
 * above QB_MSG_MAX_FRAME lets moderately oversized frames be counted
 * instead of silently costing a connection. */
#define BROKER_RECVMAXSZ ((size_t)QB_MSG_MAX_FRAME * 2)

/* How long shutdown waits for nng_close (see qb_nng_close_bounded, common/nngclose.h). */
#define BROKER_CLOSE_MS 1000u
/* Receive timeout of the ingest thread: how soon it notices a stop. */
#define BROKER_TICK_MS 100
/* Stash bounds (see the top of the file): beyond them a frame is decoded a
 * second time instead. 64 maps of 20+20 levels is a typical batch. */
#define BROKER_STASH_MAPS 4096u
#define BROKER_STASH_LEVELS (64u * 1024u) /* 2 MiB of qb_level */
/* Publishers remembered by pipe id for the refusal notices (a ring: the
 * newest connections; probes of the listeners count too, 4 a second). */
#define BROKER_PEERS 128u
/* How long a refused frame relies on the last "is the owner still open?"
 * answer for the same owner. */
#define BROKER_OWNER_CHECK_NS (100u * 1000000u)

typedef enum broker_drop {
    BROKER_DROP_MSGPACK = 0,
    BROKER_DROP_VERSION,
    BROKER_DROP_OVERSIZED,
    BROKER_DROP_TOPIC,
    BROKER_DROP_KINDS,
} broker_drop;

static const char *const broker_drop_ids[BROKER_DROP_KINDS] = {
    "ingest.bad_msgpack",
    "ingest.bad_version",
    "ingest.oversized",
    "ingest.bad_topic",
};

/* Event log kinds with their own once-per-second limiter. */
enum {
    BROKER_EV_GAP = 0,
    BROKER_EV_DUP,
    BROKER_EV_CROSSED,
    BROKER_EV_BOOKERR,
    BROKER_EV_UNTRACKED,
    BROKER_EV_SEND,
    BROKER_EV_RECV,
    BROKER_EV_OWNER,
    BROKER_EV_KINDS
};

/* Allows one line per second; counts what it held back. Ingest thread only. */
typedef struct broker_gate {
    uint64_t last_ns;
    uint64_t held;
} broker_gate;

/* Who is at the other end of an ingest pipe, for the refusal notices. */
typedef struct broker_peer {
    uint32_t pipe;
    char desc[80];
} broker_peer;

typedef struct broker_counters {
#define BROKER_ATOMIC_FIELD_(name, help) _Atomic uint64_t name;
    QB_BROKER_STATS(BROKER_ATOMIC_FIELD_)
#undef BROKER_ATOMIC_FIELD_
} broker_counters;

struct qb_broker {
    nng_socket ingest;
    nng_socket pub;
    bool ingest_open;
    bool pub_open;
    pthread_t thread;
    bool thread_started;
    atomic_bool stop;     /* asks the ingest thread to return */
    pthread_mutex_t lock; /* guards topics */
    qb_topics *topics;
    qb_decoder *dec;
    qb_nng_recv *recv; /* the ingest thread's receiver (nngrecv.h) */
    /* The decoded messages of the frame being handled (ingest thread). */
    qb_msg *stash;
    size_t stash_n, stash_cap;
    qb_level *stash_lv;
    size_t stash_nlv, stash_lvcap;
    bool stash_over; /* this frame did not fit: apply decodes again */
    broker_counters c;
    qb_broker_tap_fn tap; /* guarded by lock */
    void *tap_arg;
    broker_gate drop_gates[BROKER_DROP_KINDS];
    broker_gate ev_gates[BROKER_EV_KINDS];
    qb_listeners *listeners;   /* the listeners of ingest and pub (probed, repaired) */
    bool own_listeners;        /* created here (cfg->listeners was NULL) */
    char self_url[96];         /* inproc:// listener of ingest that qb_broker_publish dials */
    _Atomic uint32_t self_lid; /* its listener id: frames the broker publishes itself */
    pthread_mutex_t self_lock; /* guards self, self_open */
    nng_socket self;           /* PUB dialing self_url (opened on first use) */
    bool self_open;
    uint32_t self_pipe;        /* ingest thread: the pipe of self_url, once seen */
    uint32_t owner_check_pipe; /* ingest thread: the last broker_owner_open answer */
    uint64_t owner_check_ns;
    bool owner_check_open;
    uint64_t rogue_window_ns;    /* ingest thread: start of the notice window */
    unsigned rogue_notices;      /* notices given in it (<= QB_BROKER_ROGUE_NOTICES) */
    uint64_t rogue_held;         /* notices held back by that bound */
    pthread_mutex_t status_lock; /* orders qb_broker_publish_status: seq, then send */
    uint64_t status_seq;         /* guarded by status_lock: last seq it gave its own topic */
    pthread_mutex_t peers_lock;  /* guards peers, peers_next (NNG threads, ingest) */
    broker_peer peers[BROKER_PEERS];
    unsigned peers_next;
    _Atomic uint64_t adapter_restarts; /* set by the supervisor's owner */
    _Atomic uint64_t adapter_hung_kills;
    _Atomic uint64_t adapters_failed;
};

/* Single writer per counter (the ingest thread, or NNG's pipe callbacks for
 * the connection counters): a relaxed load+store is enough and costs a
 * plain add on x86. Readers see a recent value. */
static inline void broker_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void broker_set(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, v, memory_order_relaxed);
}

/* True when a line may be logged now; *held gets the lines held back. */
static bool broker_gate_pass(broker_gate *g, uint64_t *held)
{
    uint64_t now = qb_mono_ns();
    if (g->last_ns != 0 && now - g->last_ns < 1000000000ull) {
        g->held++;
        return false;
    }
    g->last_ns = now;
    *held = g->held;
    g->held = 0;
    return true;
}

/* Copies at most 64 bytes of untrusted text, printable ASCII only. */
static void broker_sanitize(const void *p, size_t n, char *out, size_t cap)
{
    const unsigned char *s = p;
    size_t k = 0;
    for (size_t i = 0; i < n && k + 4 < cap && i < 64; i++) {
        out[k++] = (s[i] >= 0x20 && s[i] < 0x7f) ? (char)s[i] : '?';
    }
    if (n > 64 && k + 4 < cap) {
        out[k++] = '.';
        out[k++] = '.';
        out[k++] = '.';
    }
    out[k] = '\0';
}

/* Describes an open pipe's peer: "pid 123 uid 1000" (ipc), "tcp
 * 127.0.0.1:40000", "tls 10.0.0.5:40000", "the broker itself" (inproc).
 * false when NNG no longer knows the pipe. */
static bool broker_peer_live(nng_pipe p, char *out, size_t cap)
{
    uint64_t pid, uid; /* NNG 1.5.2 gives both as uint64 */
    if (nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_PID, &pid) == 0) {
        if (nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_UID, &uid) == 0) {
            snprintf(out, cap, "pid %llu uid %llu", (unsigned long long)pid,
                     (unsigned long long)uid);
        } else {
            snprintf(out, cap, "pid %llu", (unsigned long long)pid);
        }
        return true;
    }
    nng_sockaddr sa;
    if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) != 0) {
        return false;
    }
    bool verified;
    const char *tr = nng_pipe_get_bool(p, NNG_OPT_TLS_VERIFIED, &verified) == 0 ? "tls" : "tcp";
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa.s_family == NNG_AF_INET) {
        inet_ntop(AF_INET, &sa.s_in.sa_addr, host, sizeof host);
        snprintf(out, cap, "%s %s:%u", tr, host, (unsigned)ntohs(sa.s_in.sa_port));
    } else if (sa.s_family == NNG_AF_INET6) {
        inet_ntop(AF_INET6, sa.s_in6.sa_addr, host, sizeof host);
        snprintf(out, cap, "%s [%s]:%u", tr, host, (unsigned)ntohs(sa.s_in6.sa_port));
    } else if (sa.s_family == NNG_AF_INPROC) {
        snprintf(out, cap, "the broker itself");
    } else {
        snprintf(out, cap, "connection %u", (unsigned)nng_pipe_id(p));
    }
    return true;
}

/* Describes pipe id: open, else as it was when it connected (the ring),
 * else by its id. Ingest thread (cold path). */
static void broker_peer_desc(qb_broker *b, uint32_t id, char *out, size_t cap)
{
    nng_pipe p = NNG_PIPE_INITIALIZER;
    p.id = id;
    if (broker_peer_live(p, out, cap)) {
        return;
    }
    snprintf(out, cap, "connection %u, closed", (unsigned)id);
    pthread_mutex_lock(&b->peers_lock);
    for (unsigned i = 0; i < BROKER_PEERS; i++) {
        if (b->peers[i].pipe == id && id != 0) {
            snprintf(out, cap, "%s, closed", b->peers[i].desc);
            break;
        }
    }
    pthread_mutex_unlock(&b->peers_lock);
}

/* qb_listeners_pipe_fn of the ingest socket (NNG threads). */
static void broker_pipe_cb(void *arg, nng_pipe p, nng_pipe_ev ev)
{
    qb_broker *b = arg;
    if (ev == NNG_PIPE_EV_ADD_POST) {
        broker_add(&b->c.ingest_connects, 1);
        broker_peer bp = {.pipe = (uint32_t)nng_pipe_id(p)};
        if (broker_peer_live(p, bp.desc, sizeof bp.desc)) {
            pthread_mutex_lock(&b->peers_lock);
            b->peers[b->peers_next++ % BROKER_PEERS] = bp;
            pthread_mutex_unlock(&b->peers_lock);
        }
        QB_DEBUG("ingest.connect", "publisher connected: %s", bp.desc);
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        broker_add(&b->c.ingest_disconnects, 1);
        QB_DEBUG("ingest.disconnect", "publisher disconnected");
    }
}

/* Finds the fixstr value of a fixstr key in p[0..n) by its bytes (cold
 * path diagnostics only; no msgpack-c here, since a hostile header can make
 * msgpack-c allocate gigabytes before the decoder's scan has vetted it). */
static bool broker_find_str(const char *p, size_t n, const char *key, qb_str *out)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i + 1 + kl + 1 <= n; i++) {
        if ((unsigned char)p[i] == (0xa0 | kl) && memcmp(p + i + 1, key, kl) == 0) {
            unsigned char h = (unsigned char)p[i + 1 + kl];
            size_t vl = h & 0x1f;
            if ((h & 0xe0) == 0xa0 && i + 2 + kl + vl <= n) {
                *out = (qb_str){p + i + 2 + kl, vl};
                return true;
            }
        }
    }
    return false;
}

/* Cold path, after the decoder said QB_EPARSE: tells a frame whose maps are
 * fine but routed under the wrong topic (bad_topic) from malformed content
 * (bad_msgpack). It reads type, ex and sym from the bytes, and if the topic
 * they make differs from the frame's, decodes a copy of the frame under
 * that topic: a clean decode proves the topic was the only fault. */
static broker_drop broker_classify_parse(qb_broker *b, const char *frame, size_t len, qb_str topic)
{
    const char *body = frame + topic.n + 1;
    size_t bn = len - topic.n - 1;
    qb_str ty, ex, sy;
    if (!broker_find_str(body, bn, "type", &ty) || !broker_find_str(body, bn, "ex", &ex) ||
        !broker_find_str(body, bn, "sym", &sy)) {
        return BROKER_DROP_MSGPACK;
    }
    const char *kind = NULL;
    if ((ty.n == 8 && memcmp(ty.p, "snapshot", 8) == 0) ||
        (ty.n == 5 && memcmp(ty.p, "delta", 5) == 0)) {
        kind = "book";
    } else if (ty.n == 5 && memcmp(ty.p, "trade", 5) == 0) {
        kind = "trade";
    } else if (ty.n == 6 && memcmp(ty.p, "status", 6) == 0) {
        kind = "status";
    } else if (ty.n == 6 && memcmp(ty.p, "ticker", 6) == 0) {
        kind = "ticker";
    }
    char want[QB_TOPIC_MAX + 2];
    int wl = kind ? qb_topic_format(want, sizeof want, kind, ex, sy) : -1;
    if (wl < 0 || ((size_t)wl == topic.n && memcmp(want, topic.p, topic.n) == 0)) {
        return BROKER_DROP_MSGPACK;
    }
    char *copy = malloc((size_t)wl + 1 + bn);
    if (copy == NULL) {
        return BROKER_DROP_MSGPACK;
    }
    memcpy(copy, want, (size_t)wl + 1);
    memcpy(copy + wl + 1, body, bn);
    broker_drop kind_out = BROKER_DROP_MSGPACK;
    qb_str t2;
    qb_msg m;
    int rc = qb_decoder_begin(b->dec, copy, (size_t)wl + 1 + bn, &t2);
    while (rc == QB_OK) {
        rc = qb_decoder_next(b->dec, &m);
    }
    if (rc == QB_EEOF) {
        kind_out = BROKER_DROP_TOPIC;
    }
    free(copy);
    return kind_out;
}

static void broker_drop_frame(qb_broker *b, broker_drop kind, const void *frame, size_t len,
                              int err)
{
    static const size_t offs[BROKER_DROP_KINDS] = {
        offsetof(broker_counters, bad_msgpack),
        offsetof(broker_counters, bad_version),
        offsetof(broker_counters, oversized),
        offsetof(broker_counters, bad_topic),
    };
    _Atomic uint64_t *ctr = (_Atomic uint64_t *)((char *)&b->c + offs[kind]);
    broker_add(ctr, 1);
    uint64_t held;
    if (broker_gate_pass(&b->drop_gates[kind], &held)) {
        char head[80];
        broker_sanitize(frame, len, head, sizeof head);
        qb_log(QB_LOG_WARN, broker_drop_ids[kind],
               "frame dropped: %s len=%zu head=\"%s\" total=%llu (lines held back: %llu)",
               qb_strerror(err), len, head,
               (unsigned long long)atomic_load_explicit(ctr, memory_order_relaxed),
               (unsigned long long)held);
    }
}

static void broker_event_log(qb_broker *b, int kind, qb_log_level lvl, const char *id, qb_str topic,
                             const qb_msg *m, const char *what)
{
    uint64_t held;
    if (lvl <= qb_log_get_level() && broker_gate_pass(&b->ev_gates[kind], &held)) {
        qb_log(lvl, id, "topic=%.*s type=%s seq=%llu: %s (lines held back: %llu)", (int)topic.n,
               topic.p, qb_msg_type_name(m->type), (unsigned long long)m->seq, what,
               (unsigned long long)held);
    }
}

/* Grows a stash array to hold need elements, at most max. */
static bool broker_stash_grow(void **arr, size_t *cap, size_t need, size_t max, size_t elem)
{
    if (need <= *cap) {
        return true;
    }
    if (need > max) {
        return false;
    }
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        c *= 2;
    }
    if (c > max) {
        c = max;
    }
    void *p = realloc(*arr, c * elem);
    if (p == NULL) {
        return false;
    }
    *arr = p;
    *cap = c;
    return true;
}

/* Copies a decoded message (and its levels) into the stash; on overflow
 * marks the frame for the second-decode fallback instead. Level pointers
 * are set by broker_stash_fix once the frame is complete (the level array
 * may move while it grows). */
static void broker_stash_push(qb_broker *b, const qb_msg *m)
{
    if (b->stash_over) {
        return;
    }
    size_t nl = m->n_bids + m->n_asks;
    if (!broker_stash_grow((void **)&b->stash, &b->stash_cap, b->stash_n + 1, BROKER_STASH_MAPS,
                           sizeof *b->stash) ||
        !broker_stash_grow((void **)&b->stash_lv, &b->stash_lvcap, b->stash_nlv + nl,
                           BROKER_STASH_LEVELS, sizeof *b->stash_lv)) {
        b->stash_over = true;
        return;
    }
    qb_msg *s = &b->stash[b->stash_n++];
    *s = *m;
    if (m->n_bids) {
        memcpy(b->stash_lv + b->stash_nlv, m->bids, m->n_bids * sizeof *m->bids);
    }
    b->stash_nlv += m->n_bids;
    if (m->n_asks) {
        memcpy(b->stash_lv + b->stash_nlv, m->asks, m->n_asks * sizeof *m->asks);
    }
    b->stash_nlv += m->n_asks;
    s->bids = s->asks = NULL;
}

static void broker_stash_fix(qb_broker *b)
{
    size_t off = 0;
    for (size_t i = 0; i < b->stash_n; i++) {
        qb_msg *s = &b->stash[i];
        s->bids = s->n_bids ? b->stash_lv + off : NULL;
        off += s->n_bids;
        s->asks = s->n_asks ? b->stash_lv + off : NULL;
        off += s->n_asks;
    }
}

/* Validates every map of the frame, stashing each decoded message. QB_OK
 * and *topic, or a drop kind. */
static int broker_validate(qb_broker *b, const char *frame, size_t len, qb_str *topic,
                           broker_drop *kind, int *err)
{
    if (len > QB_MSG_MAX_FRAME) {
        *kind = BROKER_DROP_OVERSIZED;
        *err = QB_ETOOBIG;
        return -1;
    }
    const char *nul = memchr(frame, '\0', len < QB_TOPIC_MAX + 1 ? len : QB_TOPIC_MAX + 1);
    /* The topic rule (proto/topic.h): the decoder then checks that every
     * message matches it. */
    if (nul == NULL || qb_topic_parse(frame, (size_t)(nul - frame), NULL) != QB_TOPIC_EXACT) {
        *kind = BROKER_DROP_TOPIC;
        *err = QB_EPARSE;
        return -1;
    }
    int rc = qb_decoder_begin(b->dec, frame, len, topic);
    if (rc != QB_OK) {
        *kind = rc == QB_ETOOBIG ? BROKER_DROP_OVERSIZED : BROKER_DROP_TOPIC;
        *err = rc;
        return -1;
    }
    size_t n = 0;
    qb_msg m;
    b->stash_n = b->stash_nlv = 0;
    b->stash_over = false;
    while (rc == QB_OK) {
        rc = qb_decoder_next(b->dec, &m);
        if (rc == QB_OK) {
            n++;
            broker_stash_push(b, &m);
        }
    }
    if (rc == QB_EEOF && n == 0) {
        rc = QB_EPARSE; /* a topic with no message */
    }
    if (rc == QB_EEOF) {
        return QB_OK;
    }
    *err = rc;
    switch (rc) {
    case QB_EVERSION:
        *kind = BROKER_DROP_VERSION;
        break;
    case QB_ETOOBIG:
        *kind = BROKER_DROP_OVERSIZED;
        break;
    case QB_EPARSE:
        *kind = broker_classify_parse(b, frame, len, (qb_str){frame, (size_t)(nul - frame)});
        break;
    default:
        *kind = BROKER_DROP_MSGPACK;
        break;
    }
    return -1;
}

/* Applies one validated message to the topic state. Lock held. */
static void broker_apply_one(qb_broker *b, qb_str topic, const qb_msg *m, uint64_t now)
{
    broker_add(&b->c.messages_in, 1);
    unsigned ev = qb_topics_apply(b->topics, topic, m, now);
    if (ev & QB_TOPICS_RESYNC) {
        broker_add(&b->c.resyncs, 1);
        ev &= ~(unsigned)QB_TOPICS_RESYNC;
    }
    if (ev == 0 || ev == QB_TOPICS_NEW) {
        return;
    }
    if (ev & QB_TOPICS_GAP) {
        broker_add(&b->c.ingest_gaps, 1);
        uint64_t want = qb_topics_gap_expected(b->topics);
        char what[320];
        snprintf(what, sizeof what,
                 "sequence gap on ingest: expected seq %llu, received %llu (%llu missed: lost "
                 "between the adapter and the broker, e.g. the adapter's connection to the "
                 "ingest was re-established)%s",
                 (unsigned long long)want, (unsigned long long)m->seq,
                 (unsigned long long)(m->seq - want),
                 m->type == QB_MSG_DELTA ? "; book invalid until the next snapshot" : "");
        broker_event_log(b, BROKER_EV_GAP, QB_LOG_WARN, "ingest.gap", topic, m, what);
    }
    if (ev & QB_TOPICS_DUPLICATE) {
        broker_add(&b->c.duplicates, 1);
        broker_event_log(b, BROKER_EV_DUP, QB_LOG_INFO, "ingest.duplicate", topic, m,
                         "duplicate or old seq; not applied, still forwarded");
    }
    if (ev & QB_TOPICS_CROSSED) {
        broker_add(&b->c.crossed, 1);
        broker_event_log(b, BROKER_EV_CROSSED, QB_LOG_WARN, "ingest.crossed", topic, m,
                         "book crossed; invalid until the next snapshot");
    }
    if (ev & QB_TOPICS_BOOK_ERROR) {
        broker_add(&b->c.book_errors, 1);
        broker_event_log(b, BROKER_EV_BOOKERR, QB_LOG_WARN, "ingest.book_error", topic, m,
                         "change not applicable; book invalid until the next snapshot");
    }
    if (ev & QB_TOPICS_UNTRACKED) {
        broker_add(&b->c.untracked, 1);
        broker_event_log(b, BROKER_EV_UNTRACKED, QB_LOG_WARN, "ingest.untracked", topic, m,
                         "topic table full (--max-topics); forwarded without state");
    }
}

/* Applies a validated frame to the topic state: from the stash filled by
 * broker_validate, or (stash overflow) by decoding the frame again. Called
 * with the lock held. */
static void broker_apply(qb_broker *b, const char *frame, size_t len, qb_str topic)
{
    uint64_t now = qb_mono_ns();
    if (!b->stash_over) {
        broker_stash_fix(b);
        for (size_t i = 0; i < b->stash_n; i++) {
            broker_apply_one(b, topic, &b->stash[i], now);
        }
    } else {
        qb_msg m;
        if (qb_decoder_begin(b->dec, frame, len, &topic) != QB_OK) {
            return; /* cannot happen: validated just before */
        }
        while (qb_decoder_next(b->dec, &m) == QB_OK) {
            broker_apply_one(b, topic, &m, now);
        }
    }
    broker_set(&b->c.topics, qb_topics_count(b->topics));
    broker_set(&b->c.books, qb_topics_books(b->topics));
    broker_set(&b->c.books_valid, qb_topics_books_valid(b->topics));
}

/* The verdict on a valid frame by who sent it (see the top of the file). */
typedef enum broker_own {
    BROKER_OWN_OK,     /* from the topic's owner */
    BROKER_OWN_SELF,   /* from the broker itself: accepted, owns nothing */
    BROKER_OWN_CLAIM,  /* accepted; the pipe becomes the owner */
    BROKER_OWN_REFUSE, /* another pipe owns the topic (owner 0: the broker) */
} broker_own;

/* True when pipe id is the broker's own (qb_broker_publish's inproc pipe). */
static bool broker_is_self(qb_broker *b, uint32_t id)
{
    if (id != 0 && id == b->self_pipe) {
        return true;
    }
    nng_pipe p = NNG_PIPE_INITIALIZER;
    p.id = id;
    int lid = nng_listener_id(nng_pipe_listener(p));
    if (lid > 0 && (uint32_t)lid == atomic_load(&b->self_lid)) {
        b->self_pipe = id;
        return true;
    }
    return false;
}

/* "<kind>.quotebus.<sym>": the broker's own topics. */
static bool broker_reserved(qb_str topic)
{
    qb_topic tp;
    size_t n = strlen(QB_BROKER_STATUS_EX);
    return qb_topic_parse(topic.p, topic.n, &tp) == QB_TOPIC_EXACT && tp.ex.n == n &&
           memcmp(tp.ex.p, QB_BROKER_STATUS_EX, n) == 0;
}

/* True when process pid no longer runs (gone, or a zombie). */
static bool broker_pid_gone(uint64_t pid)
{
    if (pid == 0 || pid > INT32_MAX) {
        return false; /* not known (another pid namespace) */
    }
    if (kill((pid_t)pid, 0) != 0) {
        return errno == ESRCH;
    }
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%llu/stat", (unsigned long long)pid);
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f != NULL) {
        fclose(f);
    }
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return rp != NULL && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
}

/* True while the owner's pipe id is open. NNG knows a pipe until its reaper
 * thread has destroyed it (and run REM_POST), closed or not (nni_pipe_find
 * "doesn't care if the pipe is closed"); NNG 1.5.2's reaper can stall for
 * good (a close with traffic in flight, nanomsg/nng#1543), after which no
 * pipe is ever destroyed. So a pipe NNG still knows is closed all the same
 * when its peer is gone: on ipc, the peer process has exited; on tcp and
 * tls+tcp, the connection no longer has a peer address (getpeername fails
 * once the socket is shut down). Otherwise a reconnected or restarted
 * adapter would be refused for ever. Checked at most every
 * BROKER_OWNER_CHECK_NS per owner (a flood of refused frames costs no
 * system calls). Ingest thread. */
static bool broker_owner_open(qb_broker *b, uint32_t id)
{
    uint64_t now = qb_mono_ns();
    if (id == b->owner_check_pipe && now - b->owner_check_ns < BROKER_OWNER_CHECK_NS) {
        return b->owner_check_open;
    }
    nng_pipe p = NNG_PIPE_INITIALIZER;
    p.id = id;
    uint64_t pid = 0;
    bool open = nng_socket_id(nng_pipe_socket(p)) > 0;
    if (open && nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_PID, &pid) == 0) {
        open = !broker_pid_gone(pid);
    } else if (open) {
        nng_sockaddr sa;
        open = nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) == 0;
    }
    b->owner_check_pipe = id;
    b->owner_check_ns = now;
    b->owner_check_open = open;
    return open;
}

/* Decides who may publish this frame; *owner gets the current owner. Ingest
 * thread, without the lock (reads only). */
static broker_own broker_owner_check(qb_broker *b, qb_str topic, uint32_t pipe, uint32_t *owner)
{
    uint32_t cur = 0;
    bool tracked = qb_topics_owner(b->topics, topic, &cur) == QB_OK;
    if (tracked && cur == pipe && pipe != 0) {
        return BROKER_OWN_OK; /* the common case: one compare */
    }
    *owner = cur;
    if (broker_is_self(b, pipe)) {
        return BROKER_OWN_SELF;
    }
    if (broker_reserved(topic)) {
        *owner = 0;
        return BROKER_OWN_REFUSE;
    }
    if (!tracked || cur == 0 || !broker_owner_open(b, cur)) {
        return BROKER_OWN_CLAIM;
    }
    return BROKER_OWN_REFUSE;
}

/* Counts a refused frame and, at most once per topic per
 * QB_BROKER_ROGUE_NOTICE_MS (and QB_BROKER_ROGUE_NOTICES topics per such
 * period), logs it and says it on status.quotebus.broker. Ingest thread. */
static void broker_refuse(qb_broker *b, qb_str topic, uint32_t pipe, uint32_t owner)
{
    broker_add(&b->c.rogue_publisher, 1);
    uint64_t now = qb_mono_ns();
    const uint64_t period = (uint64_t)QB_BROKER_ROGUE_NOTICE_MS * 1000000u;
    pthread_mutex_lock(&b->lock);
    bool due = qb_topics_refused(b->topics, topic, now, period);
    pthread_mutex_unlock(&b->lock);
    if (!due) {
        return;
    }
    if (b->rogue_window_ns == 0 || now - b->rogue_window_ns >= period) {
        b->rogue_window_ns = now;
        b->rogue_notices = 0;
    }
    if (b->rogue_notices >= QB_BROKER_ROGUE_NOTICES) {
        b->rogue_held++;
        return;
    }
    b->rogue_notices++;
    char from[96], own[96];
    broker_peer_desc(b, pipe, from, sizeof from);
    if (owner == 0) {
        snprintf(own, sizeof own, "the broker itself");
    } else {
        broker_peer_desc(b, owner, own, sizeof own);
    }
    uint64_t held = b->rogue_held;
    b->rogue_held = 0;
    qb_log(QB_LOG_WARN, "ingest.rogue_publisher",
           "topic=%.*s from=\"%s\" owner=\"%s\": frame refused: the topic is published by "
           "another connection (refused frames: %llu; notices held back: %llu)",
           (int)topic.n, topic.p, from, own,
           (unsigned long long)atomic_load_explicit(&b->c.rogue_publisher, memory_order_relaxed),
           (unsigned long long)held);
    char reason[400]; /* cut to 256 bytes by qb_broker_publish_status */
    snprintf(reason, sizeof reason,
             "rejected frames for %.*s from another publisher (%s): the topic is owned by %s",
             (int)topic.n, topic.p, from, own);
    (void)qb_broker_publish_status(b, QB_BROKER_STATUS_EX, QB_BROKER_STATUS_SYM, NULL, QB_FEED_LIVE,
                                   reason);
}

/* After a frame was applied: makes pipe the owner of topic (a new topic,
 * one without owner, or one whose owner's pipe closed). Lock held. */
static void broker_claim(qb_broker *b, qb_str topic, uint32_t pipe, uint32_t prev)
{
    if (qb_topics_set_owner(b->topics, topic, pipe) != QB_OK || prev == 0) {
        return; /* untracked topic, or its first owner */
    }
    uint64_t held;
    if (broker_gate_pass(&b->ev_gates[BROKER_EV_OWNER], &held)) {
        qb_log(QB_LOG_INFO, "ingest.owner_changed",
               "topic=%.*s: now published by connection %u (the previous publisher, "
               "connection %u, has disconnected) (lines held back: %llu)",
               (int)topic.n, topic.p, (unsigned)pipe, (unsigned)prev, (unsigned long long)held);
    }
}

static void broker_handle(qb_broker *b, nng_msg *msg)
{
    const char *frame = nng_msg_body(msg);
    size_t len = nng_msg_len(msg);
    broker_add(&b->c.frames_in, 1);
    broker_add(&b->c.bytes_in, len);

    qb_str topic = {NULL, 0};
    broker_drop kind;
    int err = QB_OK;
    if (broker_validate(b, frame, len, &topic, &kind, &err) != QB_OK) {
        broker_drop_frame(b, kind, frame, len, err);
        nng_msg_free(msg);
        return;
    }
    int pid = nng_pipe_id(nng_msg_get_pipe(msg));
    uint32_t pipe = pid > 0 ? (uint32_t)pid : 0, owner = 0;
    broker_own own = broker_owner_check(b, topic, pipe, &owner);
    if (own == BROKER_OWN_REFUSE) {
        broker_refuse(b, topic, pipe, owner);
        nng_msg_free(msg);
        return;
    }
    pthread_mutex_lock(&b->lock);
    broker_apply(b, frame, len, topic);
    if (own == BROKER_OWN_CLAIM && pipe != 0) {
        broker_claim(b, topic, pipe, owner);
    }
    /* Under the lock: whoever copies a book sees it at least as new as
     * every frame already handed to the tap (ws.c relies on it). */
    if (b->tap != NULL) {
        b->tap(b->tap_arg, frame, len);
    }
    pthread_mutex_unlock(&b->lock);

    /* The same message goes out: pub0 clones it by reference per pipe.
     * Counted first, so whoever has received the frame also sees it in
     * frames_out (taken back if the send fails). */
    broker_add(&b->c.frames_out, 1);
    int rv = nng_sendmsg(b->pub, msg, 0);
    if (rv != 0) {
        nng_msg_free(msg); /* a failed send leaves ownership with us */
        broker_set(&b->c.frames_out,
                   atomic_load_explicit(&b->c.frames_out, memory_order_relaxed) - 1);
        broker_add(&b->c.send_errors, 1);
        uint64_t held;
        if (broker_gate_pass(&b->ev_gates[BROKER_EV_SEND], &held)) {
            qb_log(QB_LOG_WARN, "pub.send_failed", "frame dropped: %s (lines held back: %llu)",
                   nng_strerror(rv), (unsigned long long)held);
        }
        return;
    }
}

static void *broker_ingest_main(void *arg)
{
    qb_broker *b = arg;
    while (!atomic_load_explicit(&b->stop, memory_order_acquire)) {
        nng_msg *msg;
        int rv = 0;
        /* Not NNG's receive timeout: it loses a message now and then
         * (nngrecv.h). */
        int rc = qb_nng_recv_next(b->recv, BROKER_TICK_MS, &msg, &rv);
        if (rc == QB_ECLOSED) {
            break;
        }
        if (rc == QB_ETIMEDOUT) {
            continue; /* a tick to look at the stop flag */
        }
        if (rc != QB_OK) {
            uint64_t held;
            if (broker_gate_pass(&b->ev_gates[BROKER_EV_RECV], &held)) {
                qb_log(QB_LOG_WARN, "ingest.recv_failed", "%s (lines held back: %llu)",
                       nng_strerror(rv), (unsigned long long)held);
            }
            continue;
        }
        broker_handle(b, msg);
    }
    return NULL;
}

/* Listens on every url of one socket. priv: ipc directories mode 0700.
 * tls+tcp:// urls get a server configuration from tls (and the probe a
 * client one presenting the same certificate). */
static int broker_listen(qb_broker *b, nng_socket s, const char *const *urls, size_t n,
                         const char *role, bool priv, const qb_tls_files *tls)
{
    nng_tls_config *srv = NULL, *probe = NULL;
    int rc = QB_OK;
    for (size_t i = 0; i < n && rc == QB_OK; i++) {
        bool is_tls = qb_tls_url(urls[i]);
        if (is_tls && srv == NULL) {
            if ((rc = qb_tls_server_config(tls, &srv)) != QB_OK) {
                QB_ERROR("listener.listen_failed", "%s %s: TLS setup failed", role, urls[i]);
                break;
            }
            if (qb_tls_probe_config(tls, &probe) != QB_OK) {
                QB_WARN("listener.probe_off",
                        "%s %s: no probe configuration: this listener "
                        "is not probed",
                        role, urls[i]);
            }
        }
        rc = qb_listeners_add_tls(b->listeners, s, role, urls[i], priv, is_tls ? srv : NULL, probe);
    }
    if (srv != NULL) {
        nng_tls_config_free(srv); /* the listeners hold their own */
    }
    if (probe != NULL) {
        nng_tls_config_free(probe);
    }
    return rc;
}

static int broker_nng_fail(const char *what, int rv)
{
    QB_ERROR("broker.socket_failed", "%s: %s", what, nng_strerror(rv));
    return qb_err_from_nng(rv);
}

int qb_broker_new(const qb_broker_config *cfg, qb_broker **out)
{
    if (cfg == NULL || cfg->n_ingest == 0 || cfg->n_pub == 0) {
        return QB_EINVAL;
    }
    qb_broker *b = calloc(1, sizeof *b);
    if (b == NULL) {
        return QB_ENOMEM;
    }
    pthread_mutex_init(&b->lock, NULL);
    pthread_mutex_init(&b->self_lock, NULL);
    pthread_mutex_init(&b->peers_lock, NULL);
    pthread_mutex_init(&b->status_lock, NULL);
    int rc = QB_ENOMEM;
    /* qb_broker_publish dials an inproc:// listener of the ingest socket:
     * no file or port another process could reach, and its frames are
     * told apart from every adapter's by that listener's id. */
    snprintf(b->self_url, sizeof b->self_url, "inproc://quotebus-broker-self-%ld-%p",
             (long)getpid(), (void *)b);
    b->listeners = cfg->listeners;
    if (b->listeners == NULL) {
        if (qb_listeners_new(&b->listeners) != QB_OK) {
            goto fail;
        }
        b->own_listeners = true;
    }
    int rv;
    if ((b->topics = qb_topics_new(cfg->max_topics)) == NULL ||
        (b->dec = qb_decoder_new()) == NULL) {
        goto fail;
    }

    /* Ingest: SUB, everything. RECVBUF at NNG's maximum: sub0 keeps only
     * 128 messages by default and drops the oldest silently beyond that. */
    if ((rv = nng_sub0_open(&b->ingest)) != 0) {
        rc = broker_nng_fail("ingest socket", rv);
        goto fail;
    }
    b->ingest_open = true;
    if ((rv = nng_socket_set(b->ingest, NNG_OPT_SUB_SUBSCRIBE, "", 0)) != 0 ||
        (rv = nng_socket_set_int(b->ingest, NNG_OPT_RECVBUF, QB_BROKER_RECVBUF)) != 0 ||
        (rv = nng_socket_set_size(b->ingest, NNG_OPT_RECVMAXSZ, BROKER_RECVMAXSZ)) != 0) {
        rc = broker_nng_fail("ingest socket options", rv);
        goto fail;
    }
    if ((rc = qb_nng_recv_new(b->ingest, &b->recv)) != QB_OK) {
        goto fail;
    }
    if ((rc = qb_listeners_watch(b->listeners, b->ingest, broker_pipe_cb, b)) != QB_OK) {
        goto fail;
    }
    nng_listener self_l;
    if ((rv = nng_listen(b->ingest, b->self_url, &self_l, 0)) != 0) {
        rc = broker_nng_fail("ingest self listener", rv);
        goto fail;
    }
    atomic_store(&b->self_lid, (uint32_t)nng_listener_id(self_l));

    /* Publish: PUB. SENDBUF is the per-subscriber queue (pub0 keeps 16 by
     * default and drops the oldest when a subscriber falls behind). */
    if ((rv = nng_pub0_open(&b->pub)) != 0) {
        rc = broker_nng_fail("pub socket", rv);
        goto fail;
    }
    b->pub_open = true;
    if ((rv = nng_socket_set_int(b->pub, NNG_OPT_SENDBUF, QB_BROKER_SENDBUF)) != 0) {
        rc = broker_nng_fail("pub socket options", rv);
        goto fail;
    }
    if ((rc = qb_listeners_watch(b->listeners, b->pub, NULL, NULL)) != QB_OK) {
        goto fail;
    }

    /* Subscribers first, so nothing forwarded early is lost to an
     * unready pub side. */
    if ((rc = broker_listen(b, b->pub, cfg->pub_urls, cfg->n_pub, "pub", false, &cfg->pub_tls)) !=
            QB_OK ||
        (rc = broker_listen(b, b->ingest, cfg->ingest_urls, cfg->n_ingest, "ingest", true,
                            &cfg->ingest_tls)) != QB_OK) {
        goto fail;
    }
    if (b->own_listeners && (rc = qb_listeners_start(b->listeners, 0)) != QB_OK) {
        goto fail;
    }
    if (pthread_create(&b->thread, NULL, broker_ingest_main, b) != 0) {
        rc = QB_ENOMEM;
        goto fail;
    }
    b->thread_started = true;
    *out = b;
    return QB_OK;
fail:
    qb_broker_free(b);
    return rc;
}

void qb_broker_free(qb_broker *b)
{
    if (b == NULL) {
        return;
    }
    if (b->own_listeners) {
        qb_listeners_stop(b->listeners); /* no probe while the sockets close */
    }
    /* The ingest thread sees the stop flag at once (woken) or within a
     * receive tick; the sockets are closed only once its pending receive is
     * cancelled, which makes NNG 1.5.2's close race (qb_nng_close_bounded)
     * rarer. */
    if (b->thread_started) {
        atomic_store_explicit(&b->stop, true, memory_order_release);
        qb_nng_recv_wake(b->recv);
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 2;
        if (pthread_timedjoin_np(b->thread, NULL, &dl) != 0) {
            /* Stuck inside NNG: it may still touch b, so b is
             * deliberately not freed (the process is exiting). */
            QB_WARN("broker.ingest_stuck", "ingest thread did not stop; leaving it");
            qb_nng_note_abandoned();
            return;
        }
    }
    if (b->self_open) {
        qb_nng_close_bounded(b->self, "self", BROKER_CLOSE_MS);
    }
    qb_nng_recv_free(b->recv); /* the thread is gone: cancel its pending receive */
    if (b->ingest_open) {
        qb_nng_close_bounded(b->ingest, "ingest", BROKER_CLOSE_MS);
    }
    if (b->pub_open) {
        qb_nng_close_bounded(b->pub, "pub", BROKER_CLOSE_MS);
    }
    qb_decoder_free(b->dec);
    free(b->stash);
    free(b->stash_lv);
    qb_topics_free(b->topics);
    pthread_mutex_destroy(&b->lock);
    pthread_mutex_destroy(&b->self_lock);
    pthread_mutex_destroy(&b->peers_lock);
    pthread_mutex_destroy(&b->status_lock);
    if (b->own_listeners) {
        qb_listeners_free(b->listeners); /* after the sockets: releases the ipc claims */
    }
    free(b);
}

int qb_broker_publish(qb_broker *b, const void *frame, size_t len)
{
    pthread_mutex_lock(&b->self_lock);
    int rv = 0;
    if (!b->self_open) {
        if ((rv = nng_pub0_open(&b->self)) == 0) {
            b->self_open = true;
            if ((rv = nng_socket_set_int(b->self, NNG_OPT_SENDBUF, QB_BROKER_SENDBUF)) == 0) {
                rv = nng_dial(b->self, b->self_url, NULL, 0); /* synchronous: connected */
            }
            if (rv != 0) {
                qb_nng_close_bounded(b->self, "self", BROKER_CLOSE_MS);
                b->self_open = false;
            }
        }
    }
    if (rv == 0) {
        rv = nng_send(b->self, (void *)frame, len, 0);
    }
    pthread_mutex_unlock(&b->self_lock);
    if (rv != 0) {
        QB_LOG_RL(QB_LOG_WARN, "broker.self_publish_failed", "%s: %s", b->self_url,
                  nng_strerror(rv));
        return QB_ETRANSPORT;
    }
    return QB_OK;
}

int qb_broker_publish_status(qb_broker *b, const char *ex, const char *sym, const char *nsym,
                             qb_feed_state state, const char *reason)
{
    qb_str exs = {ex, strlen(ex)}, syms = {sym, strlen(sym)};
    char topic[QB_TOPIC_MAX + 8];
    if (qb_topic_format(topic, sizeof topic, "status", exs, syms) <= 0) {
        return QB_EINVAL;
    }
    qb_topic_info info;
    uint64_t seq = 1;
    char known[QB_TOPICS_NSYM_MAX + 1] = "";
    /* One at a time, seq and send together: the ingest thread itself
     * publishes here (broker_refuse) before its earlier statuses are
     * applied, so on the broker's own topic the seq is counted here too. */
    pthread_mutex_lock(&b->status_lock);
    if (qb_broker_topic_get(b, topic, &info, NULL) == QB_OK) {
        seq = info.last_seq + 1;
        snprintf(known, sizeof known, "%s", info.nsym);
    }
    bool own = strcmp(ex, QB_BROKER_STATUS_EX) == 0;
    if (own && seq <= b->status_seq) {
        seq = b->status_seq + 1;
    }
    if (nsym == NULL) {
        nsym = known[0] != '\0' ? known : sym;
    }
    qb_msg m = {
        .type = QB_MSG_STATUS,
        .version = QB_PROTO_VERSION,
        .exchange = exs,
        .symbol = syms,
        .native = {nsym, strlen(nsym)},
        .seq = seq,
        .recv_ts = qb_now_ns(),
        .state = state,
        .reason = {reason, strnlen(reason, 256)},
    };
    qb_buf frame = {0};
    int rc = qb_msg_encode(&m, &frame);
    if (rc == QB_OK) {
        rc = qb_broker_publish(b, frame.data, frame.len);
    }
    if (rc == QB_OK && own) {
        b->status_seq = seq;
    }
    pthread_mutex_unlock(&b->status_lock);
    qb_buf_fini(&frame);
    return rc;
}

void qb_broker_set_adapter_counts(qb_broker *b, uint64_t restarts, uint64_t hung_kills,
                                  uint64_t failed)
{
    atomic_store_explicit(&b->adapter_restarts, restarts, memory_order_relaxed);
    atomic_store_explicit(&b->adapter_hung_kills, hung_kills, memory_order_relaxed);
    atomic_store_explicit(&b->adapters_failed, failed, memory_order_relaxed);
}

void qb_broker_adapter_counts(qb_broker *b, uint64_t *restarts, uint64_t *hung_kills,
                              uint64_t *failed)
{
    *restarts = atomic_load_explicit(&b->adapter_restarts, memory_order_relaxed);
    *hung_kills = atomic_load_explicit(&b->adapter_hung_kills, memory_order_relaxed);
    *failed = atomic_load_explicit(&b->adapters_failed, memory_order_relaxed);
}

void qb_broker_stats_get(qb_broker *b, qb_broker_stats *out)
{
#define BROKER_LOAD_(name, help) out->name = atomic_load_explicit(&b->c.name, memory_order_relaxed);
    QB_BROKER_STATS(BROKER_LOAD_)
#undef BROKER_LOAD_
}

int qb_broker_topic_get(qb_broker *b, const char *topic, qb_topic_info *info, qb_book *book)
{
    qb_str t = {topic, strlen(topic)};
    pthread_mutex_lock(&b->lock);
    qb_topic_info tmp;
    int rc = qb_topics_info(b->topics, t, &tmp);
    if (rc == QB_OK && book != NULL) {
        const qb_book *src = qb_topics_book(b->topics, t);
        if (src != NULL) {
            rc = qb_book_replace(book, qb_book_levels(src, QB_BID), qb_book_depth(src, QB_BID),
                                 qb_book_levels(src, QB_ASK), qb_book_depth(src, QB_ASK));
        }
    }
    pthread_mutex_unlock(&b->lock);
    if (rc == QB_OK && info != NULL) {
        *info = tmp;
    }
    return rc;
}

void qb_broker_set_tap(qb_broker *b, qb_broker_tap_fn fn, void *arg)
{
    pthread_mutex_lock(&b->lock);
    b->tap = fn;
    b->tap_arg = arg;
    pthread_mutex_unlock(&b->lock);
}

int qb_broker_each_topic(qb_broker *b, qb_topics_each_fn fn, void *arg)
{
    pthread_mutex_lock(&b->lock);
    int rc = qb_topics_each(b->topics, fn, arg);
    pthread_mutex_unlock(&b->lock);
    return rc;
}

int qb_broker_snapshot_frame(qb_broker *b, qb_str topic, qb_buf *scratch, qb_buf *out)
{
    qb_topic tp;
    if (qb_topic_parse(topic.p, topic.n, &tp) != QB_TOPIC_EXACT || tp.kind != QB_TOPIC_BOOK) {
        return QB_ENOTFOUND;
    }
    qb_str ex = tp.ex, sym = tp.sym;
    qb_topic_info info;
    size_t nb = 0, na = 0;
    int rc;
    /* Under the lock: a memcpy of the levels and the fields; the encoding
     * happens after. */
    pthread_mutex_lock(&b->lock);
    rc = qb_topics_info(b->topics, topic, &info);
    const qb_book *book = rc == QB_OK ? qb_topics_book(b->topics, topic) : NULL;
    if (rc == QB_OK && (book == NULL || !info.book_valid || !info.has_seq)) {
        rc = QB_ENOTFOUND;
    }
    if (rc == QB_OK) {
        nb = qb_book_depth(book, QB_BID);
        na = qb_book_depth(book, QB_ASK);
        qb_buf_reset(scratch);
        rc = qb_buf_reserve(scratch, (nb + na) * sizeof(qb_level));
        if (rc == QB_OK) {
            memcpy(scratch->data, qb_book_levels(book, QB_BID), nb * sizeof(qb_level));
            memcpy(scratch->data + nb * sizeof(qb_level), qb_book_levels(book, QB_ASK),
                   na * sizeof(qb_level));
        }
    }
    pthread_mutex_unlock(&b->lock);
    if (rc != QB_OK) {
        return rc;
    }
    const qb_level *lv = (const qb_level *)(const void *)scratch->data;
    qb_msg m;
    memset(&m, 0, sizeof m);
    m.type = QB_MSG_SNAPSHOT;
    m.version = QB_PROTO_VERSION;
    m.exchange = ex;
    m.symbol = sym;
    m.native = info.nsym[0] ? (qb_str){info.nsym, strlen(info.nsym)} : sym;
    m.seq = info.last_seq;
    m.exch_ts = info.exch_ts;
    m.recv_ts = info.recv_ts;
    m.first_id = info.last_id;
    m.last_id = info.last_id;
    m.bids = lv;
    m.n_bids = nb;
    m.asks = lv + nb;
    m.n_asks = na;
    m.refresh = true;
    return qb_msg_encode(&m, out);
}

/* qb_snapshot_collect_fn: under the lock, every matching book. */
typedef struct broker_collect {
    qb_str prefix;
    bool exact;
    qb_snapshot_sink *sink;
    uint64_t now;
    int rc;
    const qb_topics *topics;
} broker_collect;

static int broker_collect_one(void *arg, qb_str topic, const qb_topic_info *info,
                              const qb_book *book)
{
    broker_collect *bc = arg;
    if (book == NULL || topic.n < bc->prefix.n ||
        memcmp(topic.p, bc->prefix.p, bc->prefix.n) != 0 ||
        (bc->exact && topic.n != bc->prefix.n)) {
        return 0;
    }
    qb_snapshot_book sb = {
        .topic = topic,
        .nsym = {info->nsym, strlen(info->nsym)},
        .seq = info->last_seq,
        .last_id = info->last_id,
        .exch_ts = info->exch_ts,
        .recv_ts = info->recv_ts,
        .age_ns = bc->now - info->last_update_ns,
        .valid = info->book_valid && info->has_seq,
        .has_state = false,
        .bids = qb_book_levels(book, QB_BID),
        .n_bids = qb_book_depth(book, QB_BID),
        .asks = qb_book_levels(book, QB_ASK),
        .n_asks = qb_book_depth(book, QB_ASK),
    };
    /* The feed state is the instrument's status topic's. */
    char st[QB_TOPIC_MAX + 8];
    qb_topic_info si;
    int sl = snprintf(st, sizeof st, "status.%.*s", (int)(topic.n - 5), topic.p + 5);
    if (sl > 0 && qb_topics_info(bc->topics, (qb_str){st, (size_t)sl}, &si) == QB_OK &&
        si.has_status) {
        sb.has_state = true;
        sb.state = si.feed_state;
    }
    int rc = qb_snapshot_sink_add(bc->sink, &sb);
    if (rc == QB_ETOOBIG || rc == QB_ENOMEM) {
        bc->rc = rc == QB_ENOMEM ? rc : QB_OK;
        return 1; /* reply full (marked truncated) or out of memory: stop */
    }
    return 0;
}

int qb_broker_snapshot_collect(void *arg, qb_str prefix, bool exact, qb_snapshot_sink *sink)
{
    qb_broker *b = arg;
    broker_collect bc = {prefix, exact, sink, qb_mono_ns(), QB_OK, NULL};
    pthread_mutex_lock(&b->lock);
    bc.topics = b->topics;
    qb_topics_each(b->topics, broker_collect_one, &bc);
    pthread_mutex_unlock(&b->lock);
    return bc.rc;
}

int qb_broker_stats_write(const qb_broker_stats *s, const char *extra_json, const char *path)
{
    qb_buf b = QB_BUF_INIT;
    int rc = qb_buf_append(&b, "{", 1);
    const char *sep = "";
#define BROKER_JSON_(name, help)                                                                   \
    rc = rc ? rc : qb_buf_appendf(&b, "%s\"" #name "\": %llu", sep, (unsigned long long)s->name);  \
    sep = ", ";
    QB_BROKER_STATS(BROKER_JSON_)
#undef BROKER_JSON_
    if (rc == QB_OK && extra_json != NULL && extra_json[0] != '\0') {
        rc = qb_buf_appendf(&b, ", %s", extra_json);
    }
    rc = rc ? rc : qb_buf_append(&b, "}\n", 2);
    rc = rc ? rc : qb_file_write_atomic(path, b.data, b.len);
    qb_buf_fini(&b);
    return rc;
}
