/*
 * main.c: `quotebus-adapter <exchange>`: options (command line and --config
 * JSON), logging, signal handling, then the adapter framework's service
 * loop on the main thread. SIGINT/SIGTERM set the stop flag and wake the
 * loop (lws_cancel_service); everything is freed on the way out.
 *
 * --check runs every validation of a start (the options here, then the
 * exchange's symbol rules through qb_adapter_check, the same code
 * qb_adapter_new runs) and exits before opening anything: 0 and silence
 * when valid, 2 and the usual error on stderr when not. quotebus-broker
 * runs it for each --adapter before it starts any child.
 *
 * Whatever --help says per exchange (the list, default symbols and URLs,
 * limits, the simulator's paths) is made from the registry
 * (exchanges.def, exchange.h) and the ops tables, never spelled out here.
 * So are the exchanges' own options (ops->opts, in the exchange's file):
 * they are spliced into the table after --exsim, every exchange's in
 * registry order, whichever exchange runs, and each exchange's
 * ops->opts_apply then checks them and writes them into the adapter
 * configuration.
 */
#include "adapter.h"

#include "err.h"
#include "log.h"
#include "opts.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static qb_adapter *main_adapter;

static void main_on_signal(int sig)
{
    (void)sig;
    if (main_adapter) {
        qb_adapter_stop(main_adapter);
    }
}

static const char main_summary_head[] =
    "Connects to one exchange's public market-data websocket, keeps an exact local\n"
    "order book per symbol (REST/websocket snapshot + deltas, sequence checks,\n"
    "resync on any gap), and publishes normalized msgpack messages (snapshot,\n"
    "delta, trade, status) on an NNG PUB socket that dials the broker's ingest.\n"
    "Every --refresh-ms each live book is republished as a refresh snapshot\n"
    "(same seq), so the broker and subscribers heal any loss within that time.\n"
    "Tickers (last, best bid/ask when given, 24 h volume and change) are published\n"
    "on ticker.<exchange>.<symbol> unless --no-tickers.\n"
    "Exchanges:";

static const char main_footer[] =
    "Examples:\n"
    "  quotebus-adapter binance\n"
    "      BTC-USDT and ETH-USDT from Binance into ipc:///tmp/quotebus/private/ingest.ipc\n"
    "  quotebus-adapter binance --symbols BTC-USDT,SOL-USDT --log-level debug\n"
    "  quotebus-adapter htx --symbols BTC-USDT,ethbtc --levels 150\n"
    "      HTX; symbols in HTX's own form are split by the known quote list\n"
    "  quotebus-adapter htx --symbols xyzhusd --symbol-map xyzhusd=XYZ-HUSD\n"
    "      a native symbol the quote list cannot split unambiguously\n"
    "  quotebus-adapter bithumb --symbols BTC-KRW,XRP-KRW\n"
    "  quotebus-adapter binance --broker tls+tcp://broker.lan:7783 --broker-tls-ca ca.pem \\\n"
    "      --broker-tls-cert adapter.pem --broker-tls-key adapter.key\n"
    "      into a broker whose ingest requires mutual TLS (scripts/make-certs.sh)\n"
    "  quotebus-adapter htx --exsim ws://127.0.0.1:7790\n"
    "      against the offline simulator (quotebus-exsim, on port 7790 as in\n"
    "      quotebus-broker --demo; it serves every exchange, each on its path)\n"
    "  quotebus-adapter binance --exsim wss://127.0.0.1:7790 --ca-file test-ca.pem\n"
    "      a simulator serving TLS (quotebus-exsim --tls-cert PEM --tls-key PEM)\n"
    "  quotebus-adapter --config adapter.json binance\n"
    "      with adapter.json = {\"symbols\": [\"BTC-USDT\"], \"stats-file\": \"/tmp/a.json\"}\n"
    "  quotebus-adapter --check --symbols BTC-USDT,SOL-USDT binance\n"
    "      validate only (quotebus-broker does so for each --adapter before starting any)\n"
    "\n"
    "Exit status: 0 after SIGINT/SIGTERM (or a valid --check), 1 when setting up fails,\n"
    "2 on bad options (unknown exchange, bad symbol, a value out of range): a supervising\n"
    "quotebus-broker does not restart an adapter that exits with 2.\n"
    "\n"
    "--stats-file is rewritten atomically every 500 ms and at exit: one JSON object of\n"
    "counters (frames, bytes, bad_json, oversized, unknown, deltas_applied,\n"
    "deltas_dropped_stale, gaps, resyncs, snapshots_ok, snapshots_failed, crossed,\n"
    "reconnects, published, trades, trades_duplicate, tickers, bad_gzip,\n"
    "gzip_oversized, lost_frames, suspects, suspects_confirmed, suspects_broken,\n"
    "suspects_expired, snapshot_queue, heals, heal_max_ms, pongs, heartbeats, keepalives,\n"
    "requests_paced, requests_rate_limited, empty_updates, budget_waits, http_429, http_418, "
    "full_books, full_unchanged, ...) and "
    "\"symbols\": {SYM: "
    "{state,\n"
    "last_update_id, bids, asks, resyncing_ms, queue_pos, suspect, resyncs, heals,\n"
    "last_heal_ms, max_heal_ms, ...}}.";

/* Appends to a --help text being built (cut at cap, always terminated). */
static void main_catf(char *buf, size_t cap, const char *fmt, ...)
{
    size_t n = strlen(buf);
    if (n + 1 >= cap) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
}

/* The path of a URL ("/stream" of "wss://stream.binance.com:9443/stream"),
 * "" when it has none. */
static const char *main_url_path(const char *url)
{
    const char *host = strstr(url, "://");
    host = host ? host + 3 : url;
    return host + strcspn(host, "/?");
}

/* The per-exchange parts of --help, from the registry, in its order. */
static struct {
    char summary[2048];
    char symbols[384];
    char ws_url[384];
    char exsim[384];
    char streams[256];
    char connects[384];
} main_help;

static void main_help_init(void)
{
    main_catf(main_help.summary, sizeof main_help.summary, "%s", main_summary_head);
    main_catf(main_help.symbols, sizeof main_help.symbols,
              "normalized symbols, comma separated (htx: the native form, e.g. btcusdt, "
              "too)" QB_OPT_DEFAULT_MARK);
    main_catf(main_help.ws_url, sizeof main_help.ws_url,
              "websocket URL (binance: ?streams=... appended)" QB_OPT_DEFAULT_MARK);
    main_catf(main_help.exsim, sizeof main_help.exsim,
              "the offline simulator (quotebus-exsim) at URL = ws[s]://HOST:PORT, which serves "
              "each exchange on its real endpoint's path: the websocket is URL + that path (");
    main_catf(main_help.streams, sizeof main_help.streams,
              "streams per websocket connection (2 per symbol, 3 with tickers; ");
    main_catf(main_help.connects, sizeof main_help.connects,
              "websocket connection attempts per minute, all connections of the process "
              "(0: the exchange default: ");
    for (size_t i = 0; qb_exchanges[i] != NULL; i++) {
        const qb_exchange_ops *x = qb_exchanges[i];
        const char *sep = i ? ", " : "";
        main_catf(main_help.summary, sizeof main_help.summary, "\n  %-8s %s", x->name, x->help);
        main_catf(main_help.symbols, sizeof main_help.symbols, "%s%s: %s", i ? "; " : "", x->name,
                  qb_exchange_default_symbols(x));
        main_catf(main_help.ws_url, sizeof main_help.ws_url, "%s%s: %s", sep, x->name,
                  x->default_ws_url);
        main_catf(main_help.exsim, sizeof main_help.exsim, "%s%s %s", sep, x->name,
                  main_url_path(x->default_ws_url));
        main_catf(main_help.streams, sizeof main_help.streams, i ? "%s%s %u" : "%s%s max %u", sep,
                  x->name, x->max_streams_per_conn);
        main_catf(main_help.connects, sizeof main_help.connects, "%s%s %u", sep, x->name,
                  x->connects_per_min);
    }
    main_catf(main_help.exsim, sizeof main_help.exsim,
              "), REST (if any) http[s]://HOST:PORT; --ws-url and --rest-url win");
    main_catf(main_help.streams, sizeof main_help.streams, ")");
    main_catf(main_help.connects, sizeof main_help.connects, "); beyond it attempts wait");
}

/* --exsim URL: the exchange's endpoints on the simulator, into ws (cap
 * bytes each) and rest (the same host, http or https; "" when the exchange
 * has no REST). False when URL is not ws:// or wss://. */
static bool main_exsim_urls(const qb_exchange_ops *ops, const char *url, char *ws, char *rest,
                            size_t cap)
{
    bool tls = strncmp(url, "wss://", 6) == 0;
    if (!tls && strncmp(url, "ws://", 5) != 0) {
        return false;
    }
    const char *host = url + (tls ? 6 : 5);
    size_t hl = strcspn(host, "/");
    snprintf(ws, cap, "%s%.*s%s", tls ? "wss://" : "ws://", (int)hl, host,
             main_url_path(ops->default_ws_url));
    snprintf(rest, cap, "%s%.*s", ops->default_rest_url ? (tls ? "https://" : "http://") : "",
             ops->default_rest_url ? (int)hl : 0, host);
    return true;
}

/* Appends the {0}-terminated src to dst (n entries, cap slots, one kept
 * for the terminator). False when it does not fit. */
static bool main_opts_append(qb_opt *dst, size_t *n, size_t cap, const qb_opt *src)
{
    for (; src != NULL && src->name != NULL; src++) {
        if (*n + 1 >= cap) {
            return false;
        }
        dst[(*n)++] = *src;
    }
    dst[*n] = (qb_opt){0};
    return true;
}

int main(int argc, char **argv)
{
    char *ws_url = NULL, *rest_url = NULL, *exsim = NULL;
    char *broker = "ipc:///tmp/quotebus/private/ingest.ipc";
    char *broker_tls_cert = NULL, *broker_tls_key = NULL, *broker_tls_ca = NULL;
    char *ca_file = NULL, *stats_file = NULL, *log_level = "info";
    qb_strlist symbols = {0};
    bool no_tickers = false, no_tls_read_ahead = false, check = false;
    int64_t max_connects_per_min = 0, max_snapshots_per_min = 0;
    int64_t streams_per_conn = 1024;
    int64_t max_conn_age_ms = (23 * 60 + 30) * 60 * 1000LL;
    int64_t stale_ms = 30000, refresh_ms = 1000, max_frame = 1 << 20, max_levels = 20000;
    int64_t batch_maps = 64;
    main_help_init();
    /* The common options around the exchanges' own (ops->opts), in the
     * order --help lists them. */
    const qb_opt head[] = {
        {"symbols", QB_OPT_LIST, &symbols, "LIST", main_help.symbols},
        {"ws-url", QB_OPT_STR, &ws_url, "URL", main_help.ws_url},
        {"rest-url", QB_OPT_STR, &rest_url, "URL",
         "binance: REST base URL for snapshots; /api/v3/depth?symbol=X&limit=N is "
         "appended" QB_OPT_DEFAULT("https://api.binance.com")},
        {"exsim", QB_OPT_STR, &exsim, "URL", main_help.exsim},
        {0},
    };
    const qb_opt tail[] = {
        {"no-tickers", QB_OPT_BOOL, &no_tickers, NULL,
         "do not subscribe to tickers (binance: 2 streams per symbol instead of 3)"},
        {"no-tls-read-ahead", QB_OPT_BOOL, &no_tls_read_ahead, NULL,
         "let OpenSSL read one TLS record per system call (without it: reads ahead, "
         "fewer system calls per message)"},
        {"broker", QB_OPT_STR, &broker, "ADDR", "NNG address of the broker ingest (dialed)"},
        {"broker-tls-ca", QB_OPT_STR, &broker_tls_ca, "PEM",
         "tls+tcp:// --broker: CA of the broker's certificate (required for tls+tcp://)"},
        {"broker-tls-cert", QB_OPT_STR, &broker_tls_cert, "PEM",
         "tls+tcp:// --broker: this adapter's client certificate (the broker requires one)"},
        {"broker-tls-key", QB_OPT_STR, &broker_tls_key, "PEM",
         "tls+tcp:// --broker: the private key of --broker-tls-cert"},
        {"ca-file", QB_OPT_STR, &ca_file, "PEM",
         "extra trusted CA certificate(s), on top of the system store"},
        {"streams-per-conn", QB_OPT_INT, &streams_per_conn, "N", main_help.streams},
        {"max-conn-age-ms", QB_OPT_INT, &max_conn_age_ms, "MS",
         "reconnect proactively after this long (Binance closes at 24 h)"},
        {"stale-ms", QB_OPT_INT, &stale_ms, "MS",
         "status stale after this long without an update (0 disables)"},
        {"refresh-ms", QB_OPT_INT, &refresh_ms, "MS",
         "refresh snapshot of every live book this often (0 disables)"},
        {"batch-maps", QB_OPT_INT, &batch_maps, "N",
         "most deltas/trades of one topic per NNG frame, 1..64 (1: one message per frame); "
         "a batch only forms while more exchange input is already waiting"},
        {"max-frame", QB_OPT_INT, &max_frame, "BYTES",
         "largest websocket message accepted, and for htx the largest inflated frame; "
         "larger ones are dropped and counted"},
        {"max-levels", QB_OPT_INT, &max_levels, "N", "book levels per side (at most 20000)"},
        {"max-connects-per-min", QB_OPT_INT, &max_connects_per_min, "N", main_help.connects},
        {"max-snapshots-per-min", QB_OPT_INT, &max_snapshots_per_min, "N",
         "snapshot requests per minute, all symbols (0: the exchange default: binance 5000 "
         "weight over one request's weight at --depth-limit, 100 at 1000; htx 300); queued "
         "longest-broken first; HTTP 429/418 Retry-After pauses every snapshot request"},
        {"stats-file", QB_OPT_STR, &stats_file, "PATH",
         "write JSON counters here every 500 ms and at exit"},
        {"log-level", QB_OPT_STR, &log_level, "LEVEL", "error, warn, info or debug"},
        {"check", QB_OPT_BOOL, &check, NULL,
         "only validate the options, exchange and symbols as a start would (connects "
         "nowhere): exit 0 silently when valid, else 2 with the error"},
        {0},
    };
    qb_opt opts[64];
    size_t nopts = 0;
    bool fits = main_opts_append(opts, &nopts, sizeof opts / sizeof opts[0], head);
    for (size_t i = 0; qb_exchanges[i] != NULL; i++) {
        fits = fits &&
               main_opts_append(opts, &nopts, sizeof opts / sizeof opts[0], qb_exchanges[i]->opts);
    }
    fits = fits && main_opts_append(opts, &nopts, sizeof opts / sizeof opts[0], tail);
    if (!fits) {
        /* Nothing parsed yet: nothing to free (the defaults are literals). */
        fprintf(stderr, "quotebus-adapter: more options than main.c's table holds\n");
        return 1;
    }
    const qb_prog prog = {
        .name = "quotebus-adapter",
        .usage = "[OPTIONS] EXCHANGE",
        .summary = main_help.summary,
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
    /* A check says only what is wrong (errors), whatever --log-level says. */
    qb_log_set_level(check ? QB_LOG_ERROR : lvl);
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
    if (symbols.n == 0) {
        /* The exchange's defaults (exchanges.def: they differ per exchange). */
        char defs[128];
        snprintf(defs, sizeof defs, "%s", qb_exchange_default_symbols(ops));
        for (char *save = NULL, *t = strtok_r(defs, ",", &save); t;
             t = strtok_r(NULL, ",", &save)) {
            if (qb_strlist_add(&symbols, t) != QB_OK) {
                code = 1;
                goto out;
            }
        }
    }
    qb_adapter_cfg cfg = {
        .ops = ops,
        .symbols = (const char *const *)symbols.v,
        .nsymbols = symbols.n,
        .broker = broker,
        .broker_tls = {.cert = broker_tls_cert, .key = broker_tls_key, .ca = broker_tls_ca},
        .ca_file = ca_file,
        .stats_file = stats_file,
        .streams_per_conn = (unsigned)(streams_per_conn > 1 << 20 ? 1 << 20 : streams_per_conn),
        .max_conn_age_ms = (uint64_t)max_conn_age_ms,
        .stale_ms = (uint64_t)stale_ms,
        .refresh_ms = (uint64_t)refresh_ms,
        .batch_maps = (uint32_t)batch_maps,
        .max_frame = (size_t)max_frame,
        .max_levels = (size_t)max_levels,
        .max_body = QB_ADAPTER_MAX_BODY_DEFAULT,
        .max_connects_per_min = (uint32_t)max_connects_per_min,
        .max_snapshots_per_min = (uint32_t)max_snapshots_per_min,
        .no_tls_read_ahead = no_tls_read_ahead,
        .xcfg = {.tickers = !no_tickers},
    };
    /* Every exchange's options, whichever exchange runs: each was accepted,
     * checked and passed on for any exchange when main.c held them all. */
    for (size_t i = 0; qb_exchanges[i] != NULL; i++) {
        char why[256];
        if (qb_exchanges[i]->opts_apply != NULL &&
            qb_exchanges[i]->opts_apply(&cfg, why, sizeof why) != QB_OK) {
            fprintf(stderr, "quotebus-adapter: %s\n", why);
            code = 2;
            goto out;
        }
    }
    if (symbols.n == 0 || streams_per_conn < 1 || max_conn_age_ms < 0 || stale_ms < 0 ||
        refresh_ms < 0 || batch_maps < 1 || batch_maps > 64 || max_frame < 1024 ||
        max_frame > (1LL << 30) || max_levels < 1 || max_levels > 20000 ||
        max_connects_per_min < 0 || max_connects_per_min > 1000000 || max_snapshots_per_min < 0 ||
        max_snapshots_per_min > 1000000) {
        fprintf(stderr, "quotebus-adapter: an option is out of range, see --help\n");
        code = 2;
        goto out;
    }
    bool broker_tls = qb_tls_url(broker);
    if ((broker_tls_cert == NULL) != (broker_tls_key == NULL) ||
        (broker_tls && broker_tls_ca == NULL) ||
        (!broker_tls && (broker_tls_cert || broker_tls_key || broker_tls_ca))) {
        fprintf(stderr, "quotebus-adapter: %s\n",
                !broker_tls ? "--broker-tls-* need a tls+tcp:// --broker"
                : broker_tls_ca == NULL
                    ? "a tls+tcp:// --broker needs --broker-tls-ca (and --broker-tls-cert, "
                      "--broker-tls-key for a broker that requires client certificates)"
                    : "--broker-tls-cert and --broker-tls-key go together");
        code = 2;
        goto out;
    }
    const char *tls_files[] = {broker_tls_ca, broker_tls_cert, broker_tls_key};
    for (size_t i = 0; i < 3; i++) {
        if (tls_files[i] != NULL && access(tls_files[i], R_OK) != 0) {
            fprintf(stderr, "quotebus-adapter: cannot read %s: %s\n", tls_files[i],
                    strerror(errno));
            code = 2;
            goto out;
        }
    }
    char exsim_ws[256], exsim_rest[256];
    if (exsim != NULL && !main_exsim_urls(ops, exsim, exsim_ws, exsim_rest, sizeof exsim_ws)) {
        fprintf(stderr, "quotebus-adapter: --exsim '%s' is not ws://HOST:PORT or wss://HOST:PORT\n",
                exsim);
        code = 2;
        goto out;
    }
    /* --ws-url / --rest-url, else --exsim's, else the exchange's own. */
    const char *use_ws = ws_url ? ws_url : exsim ? exsim_ws : ops->default_ws_url;
    const char *use_rest = rest_url                 ? rest_url
                           : exsim && exsim_rest[0] ? exsim_rest
                                                    : ops->default_rest_url;
    static char component[64];
    snprintf(component, sizeof component, "adapter.%s", ops->name);
    qb_log_set_component(component);
    cfg.ws_url = use_ws;
    cfg.rest_url = use_rest;
    rc = check ? qb_adapter_check(&cfg) : qb_adapter_new(&cfg, &a);
    if (rc == QB_OK && check) {
        goto out;
    }
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
