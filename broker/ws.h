/*
 * ws.h: the broker's HTTP and websocket endpoint (library qbbroker):
 * libwebsockets 4.1 on its own service thread. `/` and the files of the
 * web page, `/ws` the websocket (protocol: proto/PROTOCOL.md, "Websocket
 * protocol"; fan-out core: wsq.h), `/metrics` (Prometheus text), `/health`
 * (JSON).
 *
 *   ingest thread --qb_ws_offer (tap)--> [handoff queue, bounded] --lws_cancel_service-->
 *   lws thread: drain -> qb_wsq_frame -> client queues -> WRITEABLE -> lws_write
 *
 * Threads: qb_ws_new/qb_ws_free from one (main) thread; qb_ws_offer from
 * the broker's ingest thread (as its tap); qb_ws_stats_get from any thread.
 * Only the service thread calls lws_* (lws_cancel_service excepted).
 */
#ifndef QB_BROKER_WS_H
#define QB_BROKER_WS_H

#include "broker.h"
#include "snapshot.h"
#include "wsq.h"

#include <stddef.h>
#include <stdint.h>

typedef struct qb_ws qb_ws;

typedef struct qb_ws_config {
    const char *host; /* IP address to bind ("127.0.0.1"; "0.0.0.0" or "::" for all) */
    int port;
    const char *web_root;       /* directory of index.html etc.; NULL: / answers 404 */
    const char *const *origins; /* extra allowed Origins ("*": all) */
    size_t n_origins;
    const char *token;              /* bearer token for /ws and /metrics; NULL: none */
    const char *cert;               /* TLS certificate (PEM); NULL: plain HTTP */
    const char *key;                /* TLS private key (PEM) */
    size_t max_clients;             /* websocket clients; more are closed 1013; 1000 */
    size_t max_msg;                 /* largest incoming message; larger: close 1009; 64 KiB */
    unsigned idle_s;                /* ping after this many idle seconds, hang up after twice; 30 */
    size_t handoff_max;             /* frames waiting for the service thread; 16384 */
    size_t handoff_bytes;           /* bytes waiting for the service thread; 64 MiB */
    qb_wsq_limits limits;           /* per-client limits (zero fields: defaults) */
    qb_broker *broker;              /* books, stats (required) */
    qb_snapshot *snapshot;          /* for /metrics (optional) */
    struct qb_listeners *listeners; /* for /metrics and /health (optional) */
} qb_ws_config;

/* Counters of the endpoint (service thread's, copied every 250 ms). */
#define QB_WS_STATS(X)                                                                             \
    X(ws_handoff_frames, "frames handed to the service thread")                                    \
    X(ws_handoff_drops, "frames dropped: handoff queue full (drop newest; clients heal by seq)")   \
    X(ws_accepted, "websocket connections accepted")                                               \
    X(ws_rejected_origin, "websocket connections closed 1008: Origin not allowed")                 \
    X(ws_rejected_token, "websocket connections closed 1008: bad or missing token")                \
    X(ws_rejected_full, "websocket connections closed 1013: too many clients")                     \
    X(ws_too_big_closes, "websocket connections closed 1009: message too big")                     \
    X(http_requests, "HTTP requests")                                                              \
    X(http_not_found, "HTTP requests answered 404")                                                \
    X(http_forbidden, "HTTP requests answered 401/403")                                            \
    X(http_upgrade_required, "HTTP requests answered 426: /ws without a websocket upgrade")        \
    X(http_head_too_large, "HTTP requests answered 431: request head over 16 KiB")

typedef struct qb_ws_stats {
#define QB_WS_STATS_FIELD_(name, help) uint64_t name;
    QB_WS_STATS(QB_WS_STATS_FIELD_)
#undef QB_WS_STATS_FIELD_
    qb_wsq_stats q;
} qb_ws_stats;

/* Starts the service thread, which listens on host:port. Returns QB_OK and
 * writes *out, or QB_EINVAL / QB_ETRANSPORT (cannot listen, TLS files
 * unusable: logged) / QB_ENOMEM; nothing is left running on error. cfg is
 * read during the call (strings are copied). The broker must outlive the
 * endpoint. Register qb_ws_offer as the broker's tap afterwards. */
int qb_ws_new(const qb_ws_config *cfg, qb_ws **out);

/* Stops the service thread (clients are closed), frees everything. Clear
 * the broker's tap first. NULL is a no-op. */
void qb_ws_free(qb_ws *ws);

/* qb_broker_tap_fn: copies the frame into the handoff queue (when at least
 * one websocket client is connected) and wakes the service thread. */
void qb_ws_offer(void *ws, const void *frame, size_t len);

/* Copies the counters. Any thread. */
void qb_ws_stats_get(qb_ws *ws, qb_ws_stats *out);

#endif
