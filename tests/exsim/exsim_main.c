/*
 * exsim_main.c: quotebus-exsim, the exchange simulator: options, signals,
 * the lws service loop and the orderly shutdown (final dump and stats).
 *
 * Threads: main() runs the lws service loop; everything else (market
 * timer, connections, HTTP) runs inside it. The signal handler only sets a
 * flag and calls lws_cancel_service() to wake the loop. On SIGINT/SIGTERM
 * every connection is sent the exchange's shutdown notice (Binance
 * serverShutdown; HTX and Bithumb have none: a close) and closed, for at
 * most 500 ms, then --dump and --stats-file are written.
 *
 * One process serves every exchange of --exchange (default all three) on
 * one port; exsim_server.c routes by path.
 */
#include "exsim.h"

#include "clock.h"
#include "err.h"
#include "log.h"
#include "opts.h"

#include <libwebsockets.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAIN_DRAIN_NS 500000000ull /* at exit, time for serverShutdown to go out */

/* The signal that stops the simulator (SIGINT or SIGTERM), 0 until then. */
static volatile sig_atomic_t main_interrupted;
static struct lws_context *main_ctx;

static void main_on_signal(int sig)
{
    main_interrupted = sig;
    if (main_ctx) {
        lws_cancel_service(main_ctx);
    }
}

static const char *main_signal_name(int sig)
{
    switch (sig) {
    case SIGINT:
        return "SIGINT";
    case SIGTERM:
        return "SIGTERM";
    case 0:
        return "none";
    default:
        return "other";
    }
}

/* The registry: one line per exchange (exsim.h). */
const qb__exsim_ops *const qb__exsim_exchanges[] = {
    &qb__exsim_binance_ops,
    &qb__exsim_htx_ops,
    &qb__exsim_bithumb_ops,
    NULL,
};

static const qb__exsim_ops *main_find_ops(const char *name)
{
    for (size_t i = 0; qb__exsim_exchanges[i] != NULL; i++) {
        if (strcmp(qb__exsim_exchanges[i]->name, name) == 0) {
            return qb__exsim_exchanges[i];
        }
    }
    return NULL;
}

/* "binance, htx, bithumb": the registry's names, for messages. */
static const char *main_known_names(void)
{
    static char names[256];
    if (names[0] == '\0') {
        for (size_t i = 0; qb__exsim_exchanges[i] != NULL; i++) {
            size_t n = strlen(names);
            snprintf(names + n, sizeof names - n, "%s%s", i ? ", " : "",
                     qb__exsim_exchanges[i]->name);
        }
    }
    return names;
}

int main(int argc, char **argv)
{
    qb__exsim_cfg cfg = {
        .host = "127.0.0.1",
        .port = 7790,
        .seed = 1,
        .rate = 10,
        .trade_rate = 2,
        .max_levels = 200,
        .ping_interval_ms = 20000,
        .pong_timeout_ms = 60000,
        .max_queue = 65536,
        .max_msg_bytes = 65536,
        .max_streams = 1024,
        .max_symbols = 256,
        .oversized_bytes = 2 * 1024 * 1024,
        .snapshot_fail_status = 429,
        .ticker_every = 10,
        .htx_ping_interval_ms = 5000,
        .htx_max_missed_pings = 2,
        .htx_req_interval_ms = 100,
        .gzip_bomb_bytes = 16 * 1024 * 1024,
        .bithumb_idle_ms = 120000,
    };
    char *log_level = "info";
    qb_strlist symbols = {0};
    qb_strlist exchanges = {0};
    qb_strlist bad_kinds = {0};
    char *drop_rate = NULL;
    static const char *const main_default_bad_kinds[] = {"truncated", "utf8", "nest", "bignum"};
    qb_strlist_set_default(&bad_kinds, main_default_bad_kinds, 4);
    const char *main_default_exchanges[QB__EXSIM_MAX_EXCHANGES];
    size_t main_nexchanges = 0;
    for (; qb__exsim_exchanges[main_nexchanges] != NULL; main_nexchanges++) {
        main_default_exchanges[main_nexchanges] = qb__exsim_exchanges[main_nexchanges]->name;
    }
    qb_strlist_set_default(&exchanges, main_default_exchanges, main_nexchanges);

    const qb_opt opts[] = {
        {"exchange", QB_OPT_LIST, &exchanges, "LIST",
         "exchanges to serve on the one port, routed by path"},
        {"host", QB_OPT_STR, &cfg.host, "ADDR", "address to listen on"},
        {"port", QB_OPT_INT, &cfg.port, "N", "port to listen on (0: ephemeral)"},
        {"port-file", QB_OPT_STR, &cfg.port_file, "FILE", "write the listening port to FILE"},
        {"tls-cert", QB_OPT_STR, &cfg.tls_cert, "PEM", "serve wss/https with this certificate"},
        {"tls-key", QB_OPT_STR, &cfg.tls_key, "PEM", "private key of --tls-cert"},
        {"seed", QB_OPT_INT, &cfg.seed, "N", "seed of the synthetic market"},
        {"rate", QB_OPT_INT, &cfg.rate, "N", "depth events (replay: frames) per second per symbol"},
        {"trade-rate", QB_OPT_INT, &cfg.trade_rate, "N", "trades per second per symbol (0: none)"},
        {"changes", QB_OPT_INT, &cfg.changes, "N",
         "random level changes per depth event, 1..40 (0: 1 to 4 at random)"},
        {"events", QB_OPT_INT, &cfg.events, "N",
         "stop after N depth events per symbol, then write --dump (0: never stop)"},
        {"max-levels", QB_OPT_INT, &cfg.max_levels, "N", "maximum book depth per side"},
        {"symbols", QB_OPT_LIST, &symbols, "LIST",
         "only these native symbols exist" QB_OPT_DEFAULT("any well-formed symbol")},
        {"replay", QB_OPT_STR, &cfg.replay, "FILE",
         "replay a cryptofeed capture instead of the synthetic market"},
        {"dump", QB_OPT_STR, &cfg.dump, "FILE",
         "write the final books as JSON lines when generation stops and at exit"},
        {"stats-file", QB_OPT_STR, &cfg.stats_file, "FILE",
         "rewrite JSON counters every 500 ms and at exit"},
        {"ping-interval-ms", QB_OPT_INT, &cfg.ping_interval_ms, "MS",
         "websocket PING period (0: no pings)"},
        {"pong-timeout-ms", QB_OPT_INT, &cfg.pong_timeout_ms, "MS",
         "close a connection whose ping is unanswered this long (0: never)"},
        {"max-queue", QB_OPT_INT, &cfg.max_queue, "N",
         "frames queued per connection before it is closed as a slow consumer"},
        {"max-msg-bytes", QB_OPT_INT, &cfg.max_msg_bytes, "N",
         "largest client message; bigger ones close the connection (1009)"},
        {"max-streams", QB_OPT_INT, &cfg.max_streams, "N", "streams per connection"},
        {"max-symbols", QB_OPT_INT, &cfg.max_symbols, "N",
         "symbols the simulator creates at most (more get 'Invalid symbol')"},
        {"max-client-msg-rate", QB_OPT_INT, &cfg.max_client_msg_rate, "N",
         "close a connection sending more than N messages per second (Binance: 5; 0: off)"},
        {"gap-every", QB_OPT_INT, &cfg.gap_every, "N",
         "fault: depth event k*N is applied but never sent"},
        {"drop-rate", QB_OPT_STR, &drop_rate, "R",
         "fault: each depth event is dropped (applied, never sent) with probability R, a "
         "decimal 0..1 (e.g. 0.02), drawn per symbol from --seed; logged "
         "exsim_fault_drop" QB_OPT_DEFAULT("0")},
        {"drop-after-ms", QB_OPT_INT, &cfg.drop_after_ms, "MS",
         "fault: --drop-rate only from MS ms after each symbol's generation started"},
        {"drop-for-ms", QB_OPT_INT, &cfg.drop_for_ms, "MS",
         "fault: --drop-rate only for MS ms (from --drop-after-ms; 0: for ever)"},
        {"drop-corrupt", QB_OPT_BOOL, &cfg.drop_corrupt, NULL,
         "fault (HTX): a --drop-rate event is sent as a corrupt gzip frame instead of not at "
         "all (the client cannot tell whose update it lost)"},
        {"dup-every", QB_OPT_INT, &cfg.dup_every, "N", "fault: depth event k*N is sent twice"},
        {"reorder-every", QB_OPT_INT, &cfg.reorder_every, "N",
         "fault: depth event k*N is sent after event k*N+1"},
        {"malformed-every", QB_OPT_INT, &cfg.malformed_every, "N",
         "fault: a malformed JSON frame after every N-th depth event"},
        {"oversized-every", QB_OPT_INT, &cfg.oversized_every, "N",
         "fault: an oversized (valid JSON, stale ids) frame after every N-th depth event"},
        {"oversized-bytes", QB_OPT_INT, &cfg.oversized_bytes, "N", "size of the oversized frames"},
        {"disconnect-every", QB_OPT_INT, &cfg.disconnect_every, "N",
         "fault: close each connection after it was sent N events"},
        {"disconnect-random-ms", QB_OPT_INT, &cfg.disconnect_random_ms, "MS",
         "fault: drop each connection at random after MS/2..3MS/2 (its successors too)"},
        {"disconnect-random-for-ms", QB_OPT_INT, &cfg.disconnect_random_for_ms, "MS",
         "fault: --disconnect-random-ms only during the first MS ms of the run (0: for ever)"},
        {"bad-input-every", QB_OPT_INT, &cfg.bad_input_every, "N",
         "fault: a bad frame after every N-th depth event, cycling through --bad-input-kinds"},
        {"bad-input-kinds", QB_OPT_LIST, &bad_kinds, "LIST",
         "truncated (a copy of the event's frame cut in half), utf8 (invalid UTF-8), nest (JSON "
         "nesting bomb), "
         "bignum (numbers of thousands of digits)"},
        {"stall-after", QB_OPT_INT, &cfg.stall_after, "N",
         "fault: after N events a connection gets nothing (pings included) for --stall-ms"},
        {"stall-ms", QB_OPT_INT, &cfg.stall_ms, "MS", "length of the stall"},
        {"snapshot-fail", QB_OPT_INT, &cfg.snapshot_fail, "N",
         "fault: the first N depth snapshot requests fail"},
        {"snapshot-fail-status", QB_OPT_INT, &cfg.snapshot_fail_status, "CODE",
         "HTTP status of failed snapshots: 429 (with Retry-After: 1), 500, or 0: 429 and 500 "
         "alternately"},
        {"snapshot-delay-ms", QB_OPT_INT, &cfg.snapshot_delay_ms, "MS",
         "fault: answer depth snapshots this late"},
        {"shutdown-after", QB_OPT_INT, &cfg.shutdown_after, "N",
         "fault: send serverShutdown to a connection after N events, then close it"},
        {"ticker-every", QB_OPT_INT, &cfg.ticker_every, "N",
         "a ticker frame after every N depth events per symbol (0: none)"},
        {"htx-ping-interval-ms", QB_OPT_INT, &cfg.htx_ping_interval_ms, "MS",
         "HTX: {\"ping\":ms} period (0: no pings)"},
        {"htx-max-missed-pings", QB_OPT_INT, &cfg.htx_max_missed_pings, "N",
         "HTX: close when a ping is due and N pings are unanswered"},
        {"htx-req-interval-ms", QB_OPT_INT, &cfg.htx_req_interval_ms, "MS",
         "HTX: one req per MS per connection; faster ones get too-many-request"},
        {"req-fail", QB_OPT_INT, &cfg.req_fail, "N",
         "fault (HTX): the first N req snapshots answer status error"},
        {"corrupt-gzip-every", QB_OPT_INT, &cfg.corrupt_gzip_every, "N",
         "fault (HTX): a binary frame that is not valid gzip after every N-th depth event"},
        {"gzip-bomb-every", QB_OPT_INT, &cfg.gzip_bomb_every, "N",
         "fault (HTX): a small gzip frame inflating to --gzip-bomb-bytes after every N-th event"},
        {"gzip-bomb-bytes", QB_OPT_INT, &cfg.gzip_bomb_bytes, "N", "inflated size of the bombs"},
        {"bithumb-idle-ms", QB_OPT_INT, &cfg.bithumb_idle_ms, "MS",
         "Bithumb: close a connection without traffic in either direction for MS (0: never)"},
        {"log-level", QB_OPT_STR, &log_level, "LEVEL", "error, warn, info or debug"},
        {0},
    };
    const qb_prog prog = {
        .name = "quotebus-exsim",
        .usage = "[OPTIONS]",
        .summary =
            "Exchange simulator: serves exchanges' exact websocket and REST protocols on one "
            "port,\n"
            "routed by path: Binance spot (/stream?streams=..., /ws/<stream>, SUBSCRIBE, server\n"
            "pings, GET /api/v3/depth), HTX (/feed and /ws: gzip binary frames, {\"ping\"},\n"
            "sub/req/unsub, market.<sym>.mbp.150, trade.detail, detail, ticker) and Bithumb\n"
            "(/websocket/v1: JSON array requests, full top-30 orderbook snapshots, trade, ticker,\n"
            "PING -> {\"status\":\"UP\"}), from a deterministic synthetic market or a recorded\n"
            "Binance capture, with fault injection.",
        .footer =
            "Examples:\n"
            "  quotebus-exsim --port 7790   # binance ws://127.0.0.1:7790/stream, htx\n"
            "      # ws://127.0.0.1:7790/feed, bithumb ws://127.0.0.1:7790/websocket/v1\n"
            "  quotebus-exsim --exchange htx --port 0 --port-file p --corrupt-gzip-every 500\n"
            "  quotebus-exsim --port 0 --port-file p --tls-cert c.pem --tls-key k.pem \\\n"
            "      --rate 2000 --events 20000 --dump books.jsonl --gap-every 500",
    };

    qb_log_set_component("exsim");
    int first_pos = 0;
    int rc = qb_opts_parse(&prog, opts, argc, argv, &first_pos);
    if (rc == QB_EEOF) {
        qb_opts_free(opts);
        return 0;
    }
    if (rc != QB_OK) {
        qb_opts_free(opts);
        return 2;
    }
    int exit_code = 0;
    qb_log_level lvl;
    if (qb_log_level_parse(log_level, &lvl) != QB_OK) {
        fprintf(stderr, "quotebus-exsim: bad --log-level '%s'\n", log_level);
        exit_code = 2;
        goto out_opts;
    }
    qb_log_set_level(lvl);
    if (first_pos < argc) {
        fprintf(stderr, "quotebus-exsim: unexpected argument '%s' (see --help)\n", argv[first_pos]);
        exit_code = 2;
        goto out_opts;
    }
    static const char *const main_bad_names[] = {"truncated", "utf8", "nest", "bignum"};
    for (size_t i = 0; i < bad_kinds.n; i++) {
        unsigned bit = 0;
        for (unsigned k = 0; k < 4; k++) {
            if (strcmp(bad_kinds.v[i], main_bad_names[k]) == 0) {
                bit = 1u << k;
            }
        }
        if (bit == 0) {
            fprintf(stderr,
                    "quotebus-exsim: unknown --bad-input-kinds '%s' (known: truncated, utf8, "
                    "nest, bignum)\n",
                    bad_kinds.v[i]);
            exit_code = 2;
            goto out_opts;
        }
        cfg.bad_input_kinds |= bit;
    }
    const qb__exsim_ops *ops = NULL;
    const qb__exsim_ops *chosen[QB__EXSIM_MAX_EXCHANGES];
    size_t nchosen = 0;
    for (size_t i = 0; i < exchanges.n; i++) {
        const qb__exsim_ops *o = main_find_ops(exchanges.v[i]);
        if (o == NULL) {
            fprintf(stderr, "quotebus-exsim: unknown --exchange '%s' (known: %s)\n", exchanges.v[i],
                    main_known_names());
            exit_code = 2;
            goto out_opts;
        }
        bool dup = false;
        for (size_t k = 0; k < nchosen; k++) {
            dup = dup || chosen[k] == o;
        }
        if (!dup) {
            chosen[nchosen++] = o;
        }
        if (ops == NULL) {
            ops = o;
        }
    }
    if (ops == NULL) {
        fprintf(stderr, "quotebus-exsim: --exchange needs at least one exchange\n");
        exit_code = 2;
        goto out_opts;
    }
    if (cfg.rate <= 0 || cfg.trade_rate < 0 || cfg.changes < 0 || cfg.changes > 40 ||
        cfg.max_levels <= 0 || cfg.port < 0 || cfg.port > 65535 || cfg.max_queue < 16 ||
        cfg.max_msg_bytes < 256 || cfg.max_streams <= 0 || cfg.max_symbols <= 0 ||
        cfg.oversized_bytes < 64 || cfg.events < 0 || cfg.ticker_every < 0 ||
        cfg.htx_ping_interval_ms < 0 || cfg.htx_max_missed_pings < 0 ||
        cfg.htx_req_interval_ms < 0 || cfg.req_fail < 0 || cfg.gzip_bomb_bytes < 1024 ||
        cfg.bithumb_idle_ms < 0 || cfg.disconnect_random_ms < 0 ||
        cfg.disconnect_random_for_ms < 0 || cfg.bad_input_every < 0 ||
        (cfg.snapshot_fail_status != 429 && cfg.snapshot_fail_status != 500 &&
         cfg.snapshot_fail_status != 0) ||
        ((cfg.tls_cert && *cfg.tls_cert) != (cfg.tls_key && *cfg.tls_key))) {
        fprintf(stderr,
                "quotebus-exsim: invalid option values (rate > 0, max-levels > 0, port 0-65535, "
                "--snapshot-fail-status 429 or 500, --tls-cert with --tls-key; see --help)\n");
        exit_code = 2;
        goto out_opts;
    }
    if (drop_rate && *drop_rate) {
        /* Parts per million, exactly: no floating point in the simulator. */
        qb_dec d;
        if (qb_dec_parse(drop_rate, strlen(drop_rate), &d) != QB_OK || d.mant < 0 ||
            qb_dec_rescale(d, 6, &d) != QB_OK || d.mant > 1000000 || cfg.drop_for_ms < 0 ||
            cfg.drop_after_ms < 0) {
            fprintf(stderr,
                    "quotebus-exsim: --drop-rate '%s': want a decimal 0..1 with at "
                    "most 6 places (and --drop-after-ms, --drop-for-ms >= 0)\n",
                    drop_rate);
            exit_code = 2;
            goto out_opts;
        }
        cfg.drop_ppm = d.mant;
    }
    cfg.symbols = symbols.v;
    cfg.nsymbols = symbols.n;

    qb__exsim sim;
    memset(&sim, 0, sizeof sim);
    sim.ops = ops;
    /* routing order: the registry from its last line to its first
     * (bithumb, htx, binance), so HTX's bare /ws wins over Binance's when
     * both are served */
    size_t nall = 0;
    while (qb__exsim_exchanges[nall] != NULL) {
        nall++;
    }
    for (size_t i = nall; i-- > 0;) {
        for (size_t k = 0; k < nchosen; k++) {
            if (chosen[k] == qb__exsim_exchanges[i]) {
                sim.exch[sim.nexch++] = chosen[k];
            }
        }
    }
    cfg.exchanges = exchanges.v;
    cfg.nexchanges = exchanges.n;
    sim.cfg = &cfg;
    sim.snapshot_fail_left = cfg.snapshot_fail;
    sim.req_fail_left = cfg.req_fail;
    sim.replay_mode = cfg.replay && *cfg.replay;
    if (sim.replay_mode && ops->replay_load == NULL) {
        fprintf(stderr, "quotebus-exsim: --replay is supported for --exchange binance only\n");
        exit_code = 2;
        goto out_sim;
    }
    if (sim.replay_mode && (rc = ops->replay_load(&sim, cfg.replay)) != QB_OK) {
        QB_ERROR("exsim_replay_failed", "path=%s err=%s", cfg.replay, qb_strerror(rc));
        exit_code = 1;
        goto out_sim;
    }

    signal(SIGPIPE, SIG_IGN);
    if (qb__exsim_server_start(&sim) != QB_OK) {
        exit_code = 1;
        goto out_ctx;
    }
    main_ctx = sim.ctx;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = main_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    qb__exsim_market_start(&sim);

    while (!main_interrupted) {
        if (lws_service(sim.ctx, 0) < 0) {
            QB_ERROR("exsim_service_failed", "lws_service failed");
            exit_code = 1;
            break;
        }
    }
    QB_INFO("exsim_stopping", "signal=%d (%s) connections=%llu", (int)main_interrupted,
            main_signal_name((int)main_interrupted), (unsigned long long)sim.st.connections);
    qb__exsim_market_stop(&sim);
    /* Like Binance: every client gets serverShutdown before the server goes
     * away; give the writes a moment (bounded) to leave. */
    for (qb__exsim_conn *c = sim.conns; c; c = c->next) {
        qb__exsim_conn_shutdown(c);
    }
    uint64_t deadline = qb_mono_ns() + MAIN_DRAIN_NS;
    while (sim.conns && qb_mono_ns() < deadline && exit_code == 0) {
        if (lws_service(sim.ctx, 0) < 0) {
            break;
        }
    }
    qb__exsim_server_stop(&sim);
    qb__exsim_dump_write(&sim);
out_ctx:
    main_ctx = NULL;
    if (sim.ctx) {
        /* closes every connection: their CLOSED callbacks free them */
        lws_context_destroy(sim.ctx);
        sim.ctx = NULL;
    }
    qb__exsim_stats_write(&sim);
out_sim:
    qb__exsim_market_free(&sim);
    qb_buf_fini(&sim.scratch);
    for (size_t i = 0; i < sim.nexch; i++) {
        if (sim.exch[i]->fini) {
            sim.exch[i]->fini();
        }
    }
out_opts:
    qb_opts_free(opts);
    return exit_code;
}
