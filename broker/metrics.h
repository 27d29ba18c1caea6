/*
 * metrics.h: the broker's state as reports, private to qbbroker: the
 * Prometheus text of GET /metrics, the JSON of GET /health and the
 * instrument list of the websocket "list" request. ws.c (the lws glue)
 * serves them; metrics.c writes them.
 *
 * Threads: the lws service thread only (the fan-out core's counters are
 * read live, without a lock). Each call reads the broker's topic table
 * through qb_broker_each_topic (under the broker's state lock) and
 * allocates a temporary array of the instruments, freed before it returns.
 */
#ifndef QB_METRICS_H
#define QB_METRICS_H

#include "broker.h"
#include "buf.h"
#include "snapshot.h"
#include "ws.h"
#include "wsq.h"

#include <stdint.h>

struct qb_listeners;

/* What the reports read, borrowed from the endpoint for one call. */
typedef struct qb_metrics_src {
    qb_broker *broker;
    qb_snapshot *snapshot;          /* NULL: no snapshot service */
    struct qb_listeners *listeners; /* NULL: listeners not watched */
    const qb_wsq_stats *q;          /* the fan-out core's live counters */
    qb_ws_stats c;                  /* the endpoint's own counters (c.q is not read) */
    uint64_t start_ns;              /* qb_mono_ns() when the endpoint started */
} qb_metrics_src;

/* Appends the /metrics body (Prometheus text format 0.0.4) to o. */
void qb__metrics_write(const qb_metrics_src *s, qb_buf *o);

/* Appends the /health body (one JSON object and a newline) to o. */
void qb__metrics_health(const qb_metrics_src *s, qb_buf *o);

/* Appends the JSON array of the instruments (exchange + symbol, sorted,
 * the broker's own status topic left out) to out, for the websocket "list"
 * request. Returns what qb_buf_append returns for the closing bracket. */
int qb__metrics_list(qb_broker *broker, qb_buf *out);

#endif
