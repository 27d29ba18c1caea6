/*
 * adapter.h: the exchange adapter framework (one process per exchange).
 *
 *   qb_adapter_new(cfg) -> qb_adapter_run() ... qb_adapter_stop() -> qb_adapter_free()
 *   qb_adapter_check(cfg): the validation part of qb_adapter_new alone
 *
 * A qb_adapter owns one lws context and its single service thread (the
 * thread that calls qb_adapter_run), which does everything: websocket
 * receive, parse, book sync, encode, nng_sendmsg (non-blocking), REST
 * snapshots, timers (lws_sul). Instruments are spread over websocket
 * connections of at most cfg.streams_per_conn streams (book and trades,
 * plus the ticker when cfg.xcfg.tickers); each connection
 * reconnects by itself with exponential backoff and jitter.
 *
 * Thread safety: qb_adapter_stop() may be called from any thread or a
 * signal handler; every other function only from the thread that created
 * the adapter.
 */
#ifndef QB_ADAPTER_ADAPTER_H
#define QB_ADAPTER_ADAPTER_H

#include "exchange.h"
#include "nngtls.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct qb_adapter qb_adapter;

typedef struct qb_adapter_cfg {
    const qb_exchange_ops *ops;
    const char *const *symbols; /* normalized ("BTC-USDT"), or native ("btcusdt")
                                   when the exchange has from_native */
    size_t nsymbols;
    const char *ws_url;      /* without the ?streams= part */
    const char *rest_url;    /* base, e.g. https://api.binance.com */
    const char *broker;      /* NNG address the PUB socket dials */
    qb_tls_files broker_tls; /* tls+tcp:// broker: the broker's CA, our certificate and key */
    const char *ca_file;     /* extra trusted CA (PEM), or NULL */
    const char *stats_file;  /* or NULL */
    unsigned depth_limit;    /* REST snapshot depth */
    unsigned streams_per_conn;
    uint64_t max_conn_age_ms; /* proactive reconnect */
    uint64_t stale_ms;
    uint64_t refresh_ms;            /* 0 disables refresh snapshots */
    uint32_t batch_maps;            /* most deltas/trades per NNG frame (1..64); 0: 64 */
    size_t max_frame;               /* bytes per websocket message */
    size_t max_levels;              /* per side, book and messages */
    size_t max_body;                /* REST body cap */
    qb_exchange_cfg xcfg;           /* exchange-specific: HTX levels, symbol map, tickers */
    uint64_t keepalive_ms;          /* client keepalive period; 0: the exchange's default
                                       (ops->keepalive_ms; exchanges without one ignore it) */
    uint32_t max_connects_per_min;  /* process connect budget; 0: ops->connects_per_min */
    uint32_t max_snapshots_per_min; /* snapshot request budget; 0: ops->snapshots_per_min */
    bool no_tls_read_ahead;         /* true: OpenSSL reads one TLS record per read() (ws_conn.c) */
} qb_adapter_cfg;

#define QB_ADAPTER_MAX_BODY_DEFAULT (8u << 20)

/* Creates the adapter: lws context, NNG PUB socket (dialing cfg->broker
 * without blocking), instruments, connections; nothing is connected until
 * qb_adapter_run(). The strings in cfg are copied. On success *out owns
 * everything (qb_adapter_free). QB_EINVAL (bad symbol or URL), QB_ENOMEM,
 * QB_ETRANSPORT (lws or NNG setup failed). */
int qb_adapter_new(const qb_adapter_cfg *cfg, qb_adapter **out);

/* Validates cfg with the very code qb_adapter_new runs before it opens
 * anything (symbols through the exchange's own rules, duplicates, the
 * connections' URLs), then frees what it built: no socket, no lws context,
 * no connection, no stats file. QB_OK when qb_adapter_new would not refuse
 * cfg as invalid; QB_EINVAL with the reason logged at error level
 * (bad_symbol, ...); QB_ENOMEM. Any thread. (quotebus-adapter --check.) */
int qb_adapter_check(const qb_adapter_cfg *cfg);

/* Runs the service loop until qb_adapter_stop(). Returns QB_OK. */
int qb_adapter_run(qb_adapter *a);

/* Asks the loop to stop; async-signal-safe. */
void qb_adapter_stop(qb_adapter *a);

/* Closes every connection, writes the final stats file, frees everything.
 * NULL is a no-op. */
void qb_adapter_free(qb_adapter *a);

#endif
