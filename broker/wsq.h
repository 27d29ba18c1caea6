/*
 * wsq.h: the websocket fan-out core of quotebus-broker (library qbbroker):
 * per-topic subscriber lists, reference-counted messages encoded once, the
 * bounded per-client queues with conflation, and the JSON request protocol
 * (proto/PROTOCOL.md, "Websocket protocol"). No sockets here: ws.c is the
 * libwebsockets glue around it, and the unit tests drive it directly.
 *
 *   frame (from the ingest thread, via ws.c's handoff queue)
 *     -> qb_wsq_frame(): decode once; item {frame bytes, JSON text (lazy, once)}
 *     -> for each subscriber of the topic: seq rules, queue policy, item->refs++
 *   client queue (ring of item refs, bounded by entries and bytes)
 *     -> qb_wsq_client_peek()/qb_wsq_client_pop() from the WRITEABLE callback
 *
 * Queue policy per client (all counted, see qb_wsq_stats):
 *   - below soft_bytes: everything is queued;
 *   - over soft_bytes for soft_ms (a burst is tolerated), or at hard_bytes,
 *     or a full ring: "conflate" for books: the
 *     client's queued messages of that book are dropped and further deltas
 *     are not queued; once its queue has drained it gets a fresh snapshot of
 *     the broker's book marked "conflated": true, and deltas continue with
 *     contiguous seq. Trades and tickers: "drop newest" (counted). Status
 *     messages and replies are still queued until the ring is full;
 *   - behind (conflated, or dropping) without catching up for hard_ms, or
 *     more than hard_bytes + soft_bytes queued (replies and status
 *     messages, which are not conflated): the client is marked for closing
 *     with 4001 ("slow consumer"); replies piling up in a full ring (a
 *     client that floods requests without reading) close it with 1008.
 *
 * Threads: everything here runs on one thread (the lws service thread).
 */
#ifndef QB_BROKER_WSQ_H
#define QB_BROKER_WSQ_H

#include "buf.h"
#include "msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct qb_wsq qb_wsq;
typedef struct qb_wsq_client qb_wsq_client;

typedef struct qb_wsq_limits {
    size_t max_subs;      /* subscriptions (exact topics or prefixes) per client; 256 */
    size_t queue_entries; /* messages queued per client at most; 4096 */
    size_t soft_bytes;    /* conflate when this many bytes stay queued soft_ms; 4 MiB */
    uint64_t soft_ms;     /* grace over soft_bytes before conflating; 1000 */
    size_t hard_bytes;    /* conflate at once at this many queued bytes; 16 MiB */
    uint64_t hard_ms;     /* close 4001 when behind this long; 30000 */
    uint32_t rate;        /* requests per second (token bucket, burst = rate); 50 */
    size_t max_topics;    /* topics known to the fan-out; 100000 */
    size_t headroom;      /* bytes kept free before every message (LWS_PRE) */
} qb_wsq_limits;

/* Called back by the core (same thread). */
typedef struct qb_wsq_ops {
    /* Appends a snapshot frame (qb_msg_encode, refresh=true) of the
     * broker's current book of topic to out. QB_OK, or QB_ENOTFOUND when
     * the broker has no valid book for it. */
    int (*snapshot)(void *arg, qb_str topic, qb_buf *out);
    /* Calls fn(fn_arg, topic) for every topic the broker knows. */
    void (*topics)(void *arg, void (*fn)(void *fn_arg, qb_str topic), void *fn_arg);
    /* Appends the JSON array of instruments of the "list" reply. */
    int (*list)(void *arg, qb_buf *out);
    /* The client has something to send (or is to be closed). */
    void (*wake)(void *arg, qb_wsq_client *c);
    void *arg;
} qb_wsq_ops;

#define QB_WSQ_STATS(X)                                                                            \
    X(ws_frames, "frames taken from the ingest thread")                                            \
    X(ws_items_json, "messages encoded to JSON (once each)")                                       \
    X(ws_enqueued, "messages queued to clients (references)")                                      \
    X(ws_sent, "websocket messages written")                                                       \
    X(ws_bytes_sent, "websocket payload bytes written")                                            \
    X(ws_snapshots_subscribe, "snapshots sent for new subscriptions")                              \
    X(ws_snapshots_conflated, "conflated snapshots sent to clients that caught up")                \
    X(ws_snapshots_gap, "snapshots sent to heal a sequence gap")                                   \
    X(ws_snapshots_shared, "snapshot messages reused from the per-topic cache")                    \
    X(ws_conflations, "times a client's book was conflated")                                       \
    X(ws_drop_conflated, "book messages not sent to conflated clients")                            \
    X(ws_drop_trade, "trade/ticker messages dropped for clients past the soft limit")              \
    X(ws_drop_full, "messages dropped: client queue full")                                         \
    X(ws_drop_untracked, "frames of topics past max_topics")                                       \
    X(ws_slow_closes, "clients closed 4001: behind past the hard limit")                           \
    X(ws_flood_closes, "clients closed 1008: replies piled up (request flood)")                    \
    X(ws_requests, "requests received")                                                            \
    X(ws_err_bad_json, "error replies: bad_json")                                                  \
    X(ws_err_bad_request, "error replies: bad_request")                                            \
    X(ws_err_unknown_op, "error replies: unknown_op")                                              \
    X(ws_err_bad_topic, "error replies: bad_topic")                                                \
    X(ws_err_too_many_subscriptions, "error replies: too_many_subscriptions")                      \
    X(ws_err_rate_limited, "error replies: rate_limited")                                          \
    X(ws_err_too_big, "error replies: too_big")                                                    \
    X(ws_clients, "connected websocket clients (gauge)")                                           \
    X(ws_queued_bytes, "bytes queued to all clients (gauge)")                                      \
    X(ws_subscriptions, "subscriptions of all clients (gauge)")

typedef struct qb_wsq_stats {
#define QB_WSQ_STATS_FIELD_(name, help) uint64_t name;
    QB_WSQ_STATS(QB_WSQ_STATS_FIELD_)
#undef QB_WSQ_STATS_FIELD_
} qb_wsq_stats;

/* Fills the defaults into zero fields of *l. */
void qb_wsq_limits_default(qb_wsq_limits *l);

/* A new core (limits copied; zero fields take defaults), or NULL. */
qb_wsq *qb_wsq_new(const qb_wsq_limits *limits, const qb_wsq_ops *ops);
/* Frees the core; every client must have been freed. NULL is a no-op. */
void qb_wsq_free(qb_wsq *q);

/* Fans one validated frame out. frame is copied (once). */
void qb_wsq_frame(qb_wsq *q, const void *frame, size_t len);

/* As qb_wsq_frame, taking ownership of buf (malloc'ed): limits.headroom
 * bytes, then the len bytes of the frame. No copy. */
void qb_wsq_frame_owned(qb_wsq *q, uint8_t *buf, size_t len);

/* Closes clients that stayed behind past hard_ms (marks them; ops->wake). */
void qb_wsq_tick(qb_wsq *q, uint64_t now_ns);

const qb_wsq_stats *qb_wsq_stats_get(const qb_wsq *q);

/* A new client; msgpack selects the quotebus.msgpack.v1 data form. user is
 * the caller's handle (the wsi), returned by qb_wsq_client_user(). */
qb_wsq_client *qb_wsq_client_new(qb_wsq *q, bool msgpack, void *user);
void qb_wsq_client_free(qb_wsq_client *c); /* NULL is a no-op */
void *qb_wsq_client_user(const qb_wsq_client *c);

/* Handles one complete text request (JSON). Replies are queued. */
void qb_wsq_client_request(qb_wsq_client *c, const char *text, size_t len, uint64_t now_ns);
/* Queues an error reply {"type":"error","code":code,"message":msg}. */
void qb_wsq_client_error(qb_wsq_client *c, const char *code, const char *msg);

/* The next message to write: *p (with limits.headroom writable bytes
 * before it), *len, *binary. false when there is nothing to send. */
bool qb_wsq_client_peek(qb_wsq_client *c, uint8_t **p, size_t *len, bool *binary);
/* Drops the message last returned by peek (it was written). */
void qb_wsq_client_pop(qb_wsq_client *c);

/* Non-zero when the client is to be closed with that code and reason. */
int qb_wsq_client_close_code(const qb_wsq_client *c, const char **reason);
size_t qb_wsq_client_queued(const qb_wsq_client *c); /* queued bytes */
size_t qb_wsq_client_subs(const qb_wsq_client *c);   /* subscriptions */

/* (Whether a requested topic is valid, exact or a prefix is
 * qb_topic_parse's answer: proto/topic.h.) */
/* True when topic matches the subscription pat (exact or prefix). */
bool qb_wsq_match(const char *pat, size_t pn, const char *topic, size_t tn);

/* HTTP helpers (pure, for ws.c and the tests). */
/* True when a websocket handshake with this Origin header (NULL: none) may
 * proceed: no Origin (not a browser), an Origin in allow (exact, ASCII
 * case-insensitive; "*" allows all), or same-origin: the Origin's
 * host[:port] equals the Host header. */
bool qb_wsq_origin_ok(const char *origin, const char *host, const char *const *allow,
                      size_t n_allow);
/* True when token is unset (NULL or ""), or auth is "Bearer <token>", or
 * query_token equals it. Constant-time compare. */
bool qb_wsq_token_ok(const char *token, const char *auth, const char *query_token);
/* Maps a URL path to a file path under the web root: "/" -> "/index.html".
 * Only [A-Za-z0-9._-/], no "..", no "//", no hidden files. Writes the
 * relative path (starting with '/') to out; false when refused. */
bool qb_wsq_web_path(const char *url, char *out, size_t cap);
/* Content type by extension ("text/html; charset=utf-8", ...). */
const char *qb_wsq_mime(const char *path);

#endif
