/*
 * main.c: `quotebus-adapter <exchange>`: options (command line and --config
 * JSON), logging, signal handling, then the adapter framework's service
 * loop on the main thread. SIGINT/SIGTERM set the stop flag and wake the
 * loop (lws_cancel_service); everything is freed on the way out.
 */
#include "adapter.h"

#include "err.h"
#include "log.h"
#include "opts.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static qb_adapter *main_adapter;

static void main_on_signal(int sig)
{
    (void)sig;
    if (main_adapter) {
        qb_adapter_stop(main_adapter);
    }
}

static const char main_summary[] =
    "Connects to one exchange's public market-data websocket, keeps an exact local\n"
    "order book per symbol (REST/websocket snapshot + deltas, sequence checks,\n"
    "resync on any gap), and publishes normalized msgpack messages (snapshot,\n"
    "delta, trade, status) on an NNG PUB socket that dials the broker's ingest.\n"
    "Every --refresh-ms each live book is republished as a refresh snapshot\n"
    "(same seq), so the broker and subscribers heal any loss within that time.\n"
    "Exchanges: binance (spot).";

static const char main_footer[] =
    "Examples:\n"
    "  quotebus-adapter binance\n"
    "      BTC-USDT and ETH-USDT from Binance into ipc:///tmp/quotebus/ingest.ipc\n"
    "  quotebus-adapter binance --symbols BTC-USDT,SOL-USDT --log-level debug\n"
    "  quotebus-adapter binance --ws-url ws://127.0.0.1:9443/stream \\\n"
    "      --rest-url http://127.0.0.1:9443 --broker tcp://127.0.0.1:7783\n"
    "      against the offline simulator (quotebus-exsim)\n"
    "  quotebus-adapter binance --ws-url wss://127.0.0.1:9443/stream \\\n"
    "      --rest-url https://127.0.0.1:9443 --ca-file test-ca.pem\n"
    "  quotebus-adapter --config adapter.json binance\n"
    "      with adapter.json = {\"symbols\": [\"BTC-USDT\"], \"stats-file\": \"/tmp/a.json\"}\n"
    "\n"
    "--stats-file is rewritten atomically every 500 ms and at exit: one JSON object of\n"
    "counters (frames, bytes, bad_json, oversized, unknown, deltas_applied,\n"
    "deltas_dropped_stale, gaps, resyncs, snapshots_ok, snapshots_failed, crossed,\n"
    "reconnects, published, trades, ...) and \"symbols\": {SYM: {state,\n"
    "last_update_id, bids, asks, ...}}.";

int main(int argc, char **argv)
{
    char *ws_url = NULL, *rest_url = NULL;
    char *broker = "ipc:///tmp/quotebus/ingest.ipc";
    char *ca_file = NULL, *stats_file = NULL, *log_level = "info";
    qb_strlist symbols = {0};
    int64_t depth_limit = 1000, streams_per_conn = 1024;
    int64_t max_conn_age_ms = (23 * 60 + 30) * 60 * 1000LL;
    int64_t stale_ms = 30000, refresh_ms = 1000, max_frame = 1 << 20, max_levels = 20000;
    static const char *const default_symbols[] = {"BTC-USDT", "ETH-USDT"};
    if (qb_strlist_set_default(&symbols, default_symbols, 2) != QB_OK) {
        return 1;
    }
    const qb_opt opts[] = {
        {"symbols", QB_OPT_LIST, &symbols, "LIST", "normalized symbols, comma separated"},
        {"ws-url", QB_OPT_STR, &ws_url, "URL",
         "websocket base URL; ?streams=... is appended [binance: "
         "wss://stream.binance.com:9443/stream]"},
        {"rest-url", QB_OPT_STR, &rest_url, "URL",
         "REST base URL for snapshots; /api/v3/depth?symbol=X&limit=N is appended "
         "[binance: https://api.binance.com]"},
        {"depth-limit", QB_OPT_INT, &depth_limit, "N", "snapshot depth (levels per side)"},
        {"broker", QB_OPT_STR, &broker, "ADDR", "NNG address of the broker ingest (dialed)"},
        {"ca-file", QB_OPT_STR, &ca_file, "PEM",
         "extra trusted CA certificate(s), on top of the system store"},
        {"streams-per-conn", QB_OPT_INT, &streams_per_conn, "N",
         "streams per websocket connection (2 per symbol; exchange max 1024)"},
        {"max-conn-age-ms", QB_OPT_INT, &max_conn_age_ms, "MS",
         "reconnect proactively after this long (Binance closes at 24 h)"},
        {"stale-ms", QB_OPT_INT, &stale_ms, "MS",
         "status stale after this long without an update (0 disables)"},
        {"refresh-ms", QB_OPT_INT, &refresh_ms, "MS",
         "refresh snapshot of every live book this often (0 disables)"},
        {"max-frame", QB_OPT_INT, &max_frame, "BYTES",
         "largest websocket message accepted; larger ones are dropped and counted"},
        {"max-levels", QB_OPT_INT, &max_levels, "N", "book levels per side (at most 20000)"},
        {"stats-file", QB_OPT_STR, &stats_file, "PATH",
         "write JSON counters here every 500 ms and at exit"},
        {"log-level", QB_OPT_STR, &log_level, "LEVEL", "error, warn, info or debug"},
        {0},
    };
    const qb_prog prog = {
        .name = "quotebus-adapter",
        .usage = "[OPTIONS] EXCHANGE",
        .summary = main_summary,
        .footer = main_footer,
    };
    int first = 0;
    int rc = qb_opts_parse(&prog, opts, argc, argv, &first);
    int code = 0;
    qb_adapter *a = NULL;
    if (rc == QB_EEOF) {
        goto out;
    }
    if (rc != QB_OK) {
        code = 2;
        goto out;
    }
    qb_log_set_component("adapter");
    qb_log_level lvl;
    if (qb_log_level_parse(log_level, &lvl) != QB_OK) {
        fprintf(stderr, "quotebus-adapter: --log-level must be error, warn, info or debug\n");
        code = 2;
        goto out;
    }
    qb_log_set_level(lvl);
    if (argc - first != 1) {
        fprintf(stderr, "quotebus-adapter: expected one EXCHANGE (%s), see --help\n",
                qb_exchange_names());
        code = 2;
        goto out;
    }
    const qb_exchange_ops *ops = qb_exchange_find(argv[first]);
    if (ops == NULL) {
        fprintf(stderr, "quotebus-adapter: unknown exchange '%s' (supported: %s)\n", argv[first],
                qb_exchange_names());
        code = 2;
        goto out;
    }
    if (symbols.n == 0 || depth_limit < 1 || streams_per_conn < 1 || max_conn_age_ms < 0 ||
        stale_ms < 0 || refresh_ms < 0 || max_frame < 1024 || max_frame > (1LL << 30) ||
        max_levels < 1 || max_levels > 20000) {
        fprintf(stderr, "quotebus-adapter: an option is out of range, see --help\n");
        code = 2;
        goto out;
    }
    static char component[64];
    snprintf(component, sizeof component, "adapter.%s", ops->name);
    qb_log_set_component(component);
    qb_adapter_cfg cfg = {
        .ops = ops,
        .symbols = (const char *const *)symbols.v,
        .nsymbols = symbols.n,
        .ws_url = ws_url ? ws_url : ops->default_ws_url,
        .rest_url = rest_url ? rest_url : ops->default_rest_url,
        .broker = broker,
        .ca_file = ca_file,
        .stats_file = stats_file,
        .depth_limit = (unsigned)depth_limit,
        .streams_per_conn = (unsigned)(streams_per_conn > 1 << 20 ? 1 << 20 : streams_per_conn),
        .max_conn_age_ms = (uint64_t)max_conn_age_ms,
        .stale_ms = (uint64_t)stale_ms,
        .refresh_ms = (uint64_t)refresh_ms,
        .max_frame = (size_t)max_frame,
        .max_levels = (size_t)max_levels,
        .max_body = QB_ADAPTER_MAX_BODY_DEFAULT,
    };
    rc = qb_adapter_new(&cfg, &a);
    if (rc != QB_OK) {
        QB_ERROR("adapter_init_failed", "%s", qb_strerror(rc));
        code = rc == QB_EINVAL ? 2 : 1;
        goto out;
    }
    main_adapter = a;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = main_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    qb_adapter_run(a);
    main_adapter = NULL;
out:
    qb_adapter_free(a);
    qb_opts_free(opts);
    return code;
}
