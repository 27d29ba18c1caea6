/*
 * binance_json.h: adapter-private interface between binance.c and the
 * simdjson DOM hot path in binance_json.cc (the only C++ translation
 * unit of the adapter, behind extern "C").
 *
 * The hot path parses the two Binance combined-stream messages that arrive
 * many times a second, {"stream":..,"data":{"e":"depthUpdate",..}} and
 * {"stream":..,"data":{"e":"trade",..}}, into the same qb_event the jsmn path
 * (qb__binance_parse_jsmn) produces, in one simdjson parse and without
 * allocating; the DOM parser validates the whole frame first. It answers
 * QB_EAGAIN ("not mine") for anything else: other message kinds, any
 * malformed or out-of-range input (a NUL byte anywhere included), frames
 * with a backslash, frames larger than the parser. binance.c then
 * parses the frame with jsmn, which gives the authoritative answer (and the
 * error code). So a depthUpdate or trade is parsed once; a rejected frame or
 * a ticker/control/error/serverShutdown frame is walked by both (simdjson
 * validates the frame, then the walk stops at the first field that is not
 * of a hot message).
 */
#ifndef QB_ADAPTER_BINANCE_JSON_H
#define QB_ADAPTER_BINANCE_JSON_H

#include "exchange.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qb__bjson qb__bjson;

/* Binance's private state (qb_binance_ops.state_size, exchange.h): the hot
 * path's parser and its counters. One per qb_parser, on its thread. */
typedef struct qb__binance_state {
    qb__bjson *bjson;      /* made by .init; NULL when that failed: jsmn only */
    uint64_t bjson_hits;   /* frames the simdjson hot path parsed */
    uint64_t bjson_misses; /* frames it handed to jsmn (other kinds, rejects) */
} qb__binance_state;

/* One DOM parser for frames up to max_bytes (depth limit
 * QB_JSON_MAX_DEPTH; structural index, tape and string buffer allocated
 * here, about 14 bytes per byte of max_bytes, touched only as far as the
 * largest frame seen) and one padded copy buffer of max_bytes +
 * SIMDJSON_PADDING: all the memory the hot path ever uses. NULL when out of
 * memory. Owned by the caller (the Binance state: its .fini frees it). */
qb__bjson *qb__bjson_new(size_t max_bytes);
void qb__bjson_free(qb__bjson *b);

/* Parses one Binance websocket message into ev (levels into p->bids /
 * p->asks, the trade into p->trades[0]). QB_OK: ev is a QB_EV_DEPTH or
 * QB_EV_TRADE event identical to what qb__binance_parse_jsmn returns for the
 * same bytes. QB_EAGAIN: not handled (ev and p's level arrays may have been
 * written): parse it with qb__binance_parse_jsmn. Any thread with its own b
 * and p. */
int qb__bjson_parse(qb__bjson *b, qb_parser *p, const char *js, size_t len, qb_event *ev);

/* "simdjson 3.0.1 (stage 1: icelake)": the version and the kernel chosen at
 * run time, for logs and benchmarks. Static storage. */
const char *qb__bjson_describe(void);

/* The jsmn parser of binance.c (ops->parse falls back to it), kept callable
 * for the differential unit test. Same contract as qb_exchange_ops.parse. */
int qb__binance_parse_jsmn(qb_parser *p, const char *js, size_t len, qb_event *ev);

#ifdef __cplusplus
}
#endif

#endif
