/*
 * main.c: quotebus-broker, the process. Parses options, starts the ingest
 * and fan-out core (broker.h) and, unless --no-spawn, supervises the
 * adapters (supervisor.h) - and in --demo the exchange simulator too; their
 * command lines are built and checked by children.c (main_int.h).
 *
 * Also the HTTP/websocket endpoint (ws.h, its own lws service thread, fed
 * by the ingest thread through the broker's tap) and the snapshot service
 * (snapshot.h, on NNG's threads), both reading the broker's books under
 * its state lock.
 *
 * Threads: the main thread owns signals (SIGINT, SIGTERM, SIGCHLD are
 * blocked in every thread and taken here with sigtimedwait), the children,
 * the stats file (every 500 ms) and the stats log line (every 10 s); the
 * ingest thread (broker.c) and NNG's own threads move the messages.
 *
 * Hung adapters: every tick, an adapter alive but with no frame of its
 * exchange on ingest (any topic "<kind>.<ex>.*", the topic state's last
 * update) for --adapter-silence-ms since its start is SIGKILLed; the
 * supervisor restarts it. Its exits and restarts are published on its
 * status topics through the broker's own ingest (PROTOCOL.md 4.5).
 *
 * Bad adapter options: before any child starts, each --adapter value's
 * command line runs once as `quotebus-adapter --check ...` (the adapter
 * alone knows its exchanges and symbol rules); status 2 ends the broker
 * with status 2 and the adapter's message. An adapter that still exits with
 * status 2 later (say, its --config file was edited) is not restarted by
 * the supervisor: its symbols get status down with the reason (its --check
 * run again gives the adapter's message), and the stats file lists it.
 *
 * Shutdown: stop the children (SIGTERM, 5 s, SIGKILL), clear the tap, stop
 * the websocket endpoint and the snapshot service, stop the core (close
 * ingest, join, close pub), write the stats file a last time, free all.
 */
#include "broker.h"
#include "listeners.h"
#include "main_int.h"
#include "snapshot.h"
#include "supervisor.h"
#include "ws.h"

#include "clock.h"
#include "err.h"
#include "json.h"
#include "log.h"
#include "nngclose.h"
#include "opts.h"
#include "topic.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAIN_STATS_INTERVAL_MS 500
#define MAIN_SUMMARY_INTERVAL_MS 10000
#define MAIN_STOP_GRACE_MS 5000

static const qb_prog main_prog = {
    .name = "quotebus-broker",
    .usage = "[OPTIONS]",
    .summary =
        "The quotebus broker. Adapters publish normalized market data into its ingest socket;\n"
        "it validates every frame (bad msgpack, unknown version, oversized, bad topic: dropped\n"
        "and counted), checks per-topic sequence numbers, keeps the current book of every\n"
        "instrument, and fans each frame out, encoded once, to every subscriber of its topic.\n"
        "Without arguments it also starts the adapters given by --adapter as child processes\n"
        "(restarting one that dies, with backoff from 1 s to 30 s; see Supervision below) and\n"
        "stops them on exit.\n"
        "Books heal by themselves after any loss: adapters re-send every book as a refresh\n"
        "snapshot each second, so every subscriber is complete again within about 1 s.",
    .footer =
        "Examples:\n"
        "  quotebus-broker                        main job: every exchange with its default\n"
        "                                         symbols (--adapter's default), live\n"
        "  quotebus-broker --demo                 offline demo with the exchange simulator;\n"
        "                                         then open http://127.0.0.1:7780/ in a browser\n"
        "  quotebus-sub book.binance.             (another terminal) print Binance books as JSON\n"
        "  quotebus-broker --adapter binance:BTC-USDT,ETH-USDT,SOL-USDT --adapter htx:BTC-USDT\n"
        "  quotebus-broker --no-spawn --ingest ipc:///run/qb/in.ipc --pub tcp://0.0.0.0:7781\n"
        "  quotebus-broker --no-spawn --ingest tls+tcp://0.0.0.0:7783 \\\n"
        "        --ingest-tls-cert broker.pem --ingest-tls-key broker.key --ingest-tls-ca ca.pem\n"
        "                                         adapters on other hosts, with client\n"
        "                                         certificates (scripts/make-certs.sh DIR)\n"
        "  quotebus-broker --http-listen 0.0.0.0:7780 --http-origin https://desk.example \\\n"
        "        --http-token s3cret --http-cert cert.pem --http-key key.pem\n"
        "  quotebus-broker --config broker.json   with broker.json like\n"
        "      {\"adapter\": [\"binance:BTC-USDT,ETH-USDT\"], \"stats-file\": \"/tmp/qb.json\"}\n"
        "\n"
        "HTTP (--http-listen): / the live order book page, /ws the websocket (JSON, or\n"
        "msgpack with subprotocol quotebus.msgpack.v1; proto/PROTOCOL.md), /metrics\n"
        "(Prometheus text), /health (JSON). A websocket client that falls behind gets its\n"
        "pending book updates replaced by a fresh snapshot (\"conflated\": true); one that\n"
        "stays behind past --http-slow-ms is closed (4001). GET only (405); a plain GET of\n"
        "/ws is answered 426 (Upgrade: websocket); a request head over 16 KiB gets 431, and\n"
        "one over 32 KiB is closed unanswered (libwebsockets' header buffer).\n"
        "The snapshot service (--snapshot, NNG REP) answers late joiners with current books.\n"
        "\n"
        "Supervision: before starting anything, each --adapter value is checked by\n"
        "quotebus-adapter --check (unknown exchange, bad symbol, bad --adapter-arg): a refused\n"
        "one ends the broker with status 2 and the adapter's message. A child that dies is\n"
        "restarted with backoff (1 s doubling to 30 s), except one that exits with status 2\n"
        "(bad options: it would fail the same way forever): it is logged once (child.permanent)\n"
        "and not restarted; its symbols get status down with the reason on the bus, and the\n"
        "stats file counts it (adapters_failed; per adapter, state and reason in \"adapters\").\n"
        "\n"
        "Ingest: by default only ipc:///tmp/quotebus/private/ingest.ipc, whose directory is\n"
        "made mode 0700 (only this user's processes can publish). Each topic belongs to the\n"
        "connection that publishes it first; frames of it from any other connection are refused\n"
        "(rogue_publisher), logged (ingest.rogue_publisher) and said on status.quotebus.broker,\n"
        "until the owner disconnects (an adapter restart). A tcp:// ingest lets any local process\n"
        "publish; tls+tcp:// with --ingest-tls-* admits only holders of a client certificate.\n"
        "\n"
        "Addresses are NNG URLs (ipc://PATH, tcp://HOST:PORT, tls+tcp://HOST:PORT); directories\n"
        "of ipc paths are created. Exit status: 0 after SIGINT/SIGTERM, 1 when a socket\n"
        "cannot be set up, 2 on bad options (an --adapter value quotebus-adapter --check\n"
        "refuses included).",
};

/* "HOST:PORT" ("[::1]:7780" for IPv6) into host and port. */
static int main_hostport(const char *s, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || colon[1] == '\0') {
        return QB_EINVAL;
    }
    const char *h = s;
    size_t hn = (size_t)(colon - s);
    if (h[0] == '[' && hn >= 2 && h[hn - 1] == ']') {
        h++;
        hn -= 2;
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p <= 0 || p > 65535 || hn == 0 || hn >= cap) {
        return QB_EINVAL;
    }
    memcpy(host, h, hn);
    host[hn] = '\0';
    *port = (int)p;
    return QB_OK;
}

/* The page's directory: --web-root, else the first that holds index.html
 * of: the share directory of the prefix the binary is in
 * (<prefix>/bin/../share/quotebus/web: an installed broker, wherever its
 * prefix was moved), the source tree it was built from (a broker in its
 * build directory serves the page of its own sources, never an older
 * installed one), then the configured install prefix. */
static void main_web_root(main_opts *o)
{
    o->web_root_found[0] = '\0';
    if (o->web_root != NULL) {
        snprintf(o->web_root_found, sizeof o->web_root_found, "%s", o->web_root);
        return;
    }
    char exe[3000];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char cand[3][4096];
    size_t nc = 0;
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0';
            snprintf(cand[nc++], sizeof cand[0], "%s/../share/quotebus/web", exe);
        }
    }
#ifdef QB_WEB_SOURCE_DIR
    snprintf(cand[nc++], sizeof cand[0], "%s", QB_WEB_SOURCE_DIR);
#endif
#ifdef QB_WEB_INSTALL_DIR
    snprintf(cand[nc++], sizeof cand[0], "%s", QB_WEB_INSTALL_DIR);
#endif
    for (size_t i = 0; i < nc; i++) {
        char idx[4200];
        snprintf(idx, sizeof idx, "%s/index.html", cand[i]);
        if (access(idx, R_OK) == 0) {
            char *real = realpath(cand[i], NULL);
            snprintf(o->web_root_found, sizeof o->web_root_found, "%s", real ? real : cand[i]);
            free(real);
            return;
        }
    }
}

static int main_parse(main_opts *o, const qb_opt *table, int argc, char **argv)
{
    /* ipc only, in a directory only this user may enter (mode 0700): no
     * other user's process can publish (PROTOCOL.md 1). */
    static const char *const def_ingest[] = {"ipc:///tmp/quotebus/private/ingest.ipc"};
    static const char *const def_pub[] = {"ipc:///tmp/quotebus/pub.ipc", "tcp://127.0.0.1:7781"};
    /* Every exchange of the adapters' registry with its default symbols,
     * side by side: global and Korean prices of the same coins
     * (quotebus-top BTC compares them). */
    static const char *const def_adapter[] = {
#define QB_EXCHANGE(id, symbols) #id ":" symbols,
#include "../adapters/exchanges.def"
    };
    static const char *const def_snapshot[] = {QB_SNAPSHOT_DEFAULT_IPC, QB_SNAPSHOT_DEFAULT_TCP};
    if (qb_strlist_set_default(&o->snapshot, def_snapshot, 2) != QB_OK ||
        qb_strlist_set_default(&o->ingest, def_ingest, 1) != QB_OK ||
        qb_strlist_set_default(&o->pub, def_pub, 2) != QB_OK ||
        qb_strlist_set_default(&o->adapters, def_adapter,
                               sizeof def_adapter / sizeof def_adapter[0]) != QB_OK) {
        return QB_ENOMEM;
    }
    int pos = 0;
    int rc = qb_opts_parse(&main_prog, table, argc, argv, &pos);
    if (rc != QB_OK) {
        return rc;
    }
    if (pos < argc) {
        fprintf(stderr, "quotebus-broker: unexpected argument '%s' (see --help)\n", argv[pos]);
        return QB_EINVAL;
    }
    if (o->ingest.n == 0 || o->pub.n == 0) {
        fprintf(stderr, "quotebus-broker: --ingest and --pub need at least one address\n");
        return QB_EINVAL;
    }
    if (o->demo && o->no_spawn) {
        fprintf(stderr, "quotebus-broker: --demo starts the simulator and adapters; it cannot be "
                        "combined with --no-spawn\n");
        return QB_EINVAL;
    }
    const struct {
        const char *name;
        const qb_strlist *urls;
        qb_tls_files f;
    } tls[] = {{"ingest", &o->ingest, {o->ingest_tls_cert, o->ingest_tls_key, o->ingest_tls_ca}},
               {"pub", &o->pub, {o->pub_tls_cert, o->pub_tls_key, o->pub_tls_ca}}};
    for (size_t t = 0; t < 2; t++) {
        bool any_url = false;
        for (size_t i = 0; i < tls[t].urls->n; i++) {
            any_url = any_url || qb_tls_url(tls[t].urls->v[i]);
        }
        bool all = tls[t].f.cert && tls[t].f.key && tls[t].f.ca;
        if (any_url != all || (!any_url && qb_tls_files_any(&tls[t].f))) {
            fprintf(stderr,
                    "quotebus-broker: a tls+tcp:// --%s address needs --%s-tls-cert, "
                    "--%s-tls-key and --%s-tls-ca (client certificates are required), and "
                    "those options need a tls+tcp:// --%s address\n",
                    tls[t].name, tls[t].name, tls[t].name, tls[t].name, tls[t].name);
            return QB_EINVAL;
        }
    }
    if (o->demo_port <= 0 || o->demo_port > 65535) {
        fprintf(stderr, "quotebus-broker: --demo-port must be 1..65535\n");
        return QB_EINVAL;
    }
    if (o->max_topics <= 0) {
        fprintf(stderr, "quotebus-broker: --max-topics must be positive\n");
        return QB_EINVAL;
    }
    if (o->http_listen == NULL || strcmp(o->http_listen, "off") != 0) {
        const char *hl = o->http_listen ? o->http_listen : "127.0.0.1:7780";
        if (main_hostport(hl, o->http_host, sizeof o->http_host, &o->http_port) != QB_OK) {
            fprintf(stderr, "quotebus-broker: --http-listen must be HOST:PORT or off\n");
            return QB_EINVAL;
        }
    }
    if ((o->http_cert == NULL) != (o->http_key == NULL)) {
        fprintf(stderr, "quotebus-broker: --http-cert and --http-key go together\n");
        return QB_EINVAL;
    }
    const struct {
        const char *name;
        int64_t v, min;
    } lims[] = {
        {"--http-max-clients", o->http_max_clients, 1},
        {"--http-max-subs", o->http_max_subs, 1},
        {"--http-max-msg", o->http_max_msg, 256},
        {"--http-rate", o->http_rate, 1},
        {"--http-queue-soft", o->http_queue_soft, 4096},
        {"--http-queue-hard", o->http_queue_hard, 4096},
        {"--http-slow-ms", o->http_slow_ms, 100},
        {"--http-soft-ms", o->http_soft_ms, 1},
        {"--http-idle", o->http_idle_s, 1},
    };
    for (size_t i = 0; i < sizeof lims / sizeof lims[0]; i++) {
        if (lims[i].v < lims[i].min || lims[i].v > (int64_t)1 << 40) {
            fprintf(stderr, "quotebus-broker: %s must be at least %lld\n", lims[i].name,
                    (long long)lims[i].min);
            return QB_EINVAL;
        }
    }
    if (o->http_queue_hard < o->http_queue_soft) {
        fprintf(stderr, "quotebus-broker: --http-queue-hard must be >= --http-queue-soft\n");
        return QB_EINVAL;
    }
    if (o->http_idle_s > 30000) {
        fprintf(stderr, "quotebus-broker: --http-idle must be at most 30000 s\n");
        return QB_EINVAL;
    }
    if (o->log_level != NULL) {
        qb_log_level lvl;
        if (qb_log_level_parse(o->log_level, &lvl) != QB_OK) {
            fprintf(stderr, "quotebus-broker: --log-level must be error, warn, info or debug\n");
            return QB_EINVAL;
        }
        qb_log_set_level(lvl);
    }
    return QB_OK;
}

/* Publishes, for every symbol of adapter a, a status message the broker
 * itself encodes: state, reason, seq = the topic's last seq + 1. */
static void main_sup_status(main_sup_ctx *ctx, const main_adapter *a, qb_feed_state state,
                            const char *reason)
{
    if (ctx->b == NULL || a->syms == NULL) {
        return;
    }
    const char *p = a->syms;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char sym[64];
        if (n > 0 && n < sizeof sym) {
            memcpy(sym, p, n);
            sym[n] = '\0';
            (void)qb_broker_publish_status(ctx->b, a->ex, sym, NULL, state, reason);
        }
        p += n;
        if (*p == ',') {
            p++;
        }
    }
}

/* qb_super_event_fn: every start after the first and every exit of an
 * adapter becomes a status message on its topics (PROTOCOL.md 4.5); an
 * exit with status 2 (QB_SUPER_FAILED: never restarted) a last "down" whose
 * reason quotes the adapter's own message, from its --check run again on
 * the same command line (the adapter's stderr goes to the log, not here). */
static void main_sup_event(void *arg, size_t i, qb_super_event ev, const char *detail,
                           uint64_t delay_ms)
{
    main_sup_ctx *ctx = arg;
    main_adapter *a = NULL;
    for (size_t k = 0; k < ctx->n_ad; k++) {
        if (ctx->ad[k].idx == i) {
            a = &ctx->ad[k];
        }
    }
    if (a == NULL) {
        return;
    }
    char reason[256];
    if (ev == QB_SUPER_START) {
        if (a->starts++ == 0) {
            return; /* the first start: the adapter's own statuses say syncing */
        }
        snprintf(reason, sizeof reason, "adapter restarted: %s", detail);
        main_sup_status(ctx, a, QB_FEED_SYNCING, reason);
    } else if (ev == QB_SUPER_FAILED) {
        char line[192] = "";
        int st = 0;
        const char *const *argv = ctx->sup != NULL ? qb_super_argv(ctx->sup, i) : NULL;
        if (argv == NULL || qb__children_check(argv, &st, line, sizeof line) != QB_OK ||
            !WIFEXITED(st) || WEXITSTATUS(st) != QB_SUPER_EXIT_PERMANENT || line[0] == '\0') {
            snprintf(line, sizeof line, "see the log");
        }
        snprintf(a->failed, sizeof a->failed,
                 "adapter exited with status %d (bad options): %s; not restarting",
                 QB_SUPER_EXIT_PERMANENT, line);
        main_sup_status(ctx, a, QB_FEED_DOWN, a->failed);
    } else if (delay_ms != UINT64_MAX) {
        snprintf(reason, sizeof reason, "adapter %s; restarting in %llu ms", detail,
                 (unsigned long long)delay_ms);
        main_sup_status(ctx, a, QB_FEED_DOWN, reason);
    }
}

typedef struct main_last {
    const char *ex;
    uint64_t last_ns;
} main_last;

/* qb_topics_each_fn: the newest frame of topics "<kind>.<ex>.<sym>". */
static int main_last_each(void *arg, qb_str topic, const qb_topic_info *info, const qb_book *book)
{
    (void)book;
    main_last *l = arg;
    qb_topic tp;
    size_t el = strlen(l->ex);
    if (qb_topic_parse(topic.p, topic.n, &tp) == QB_TOPIC_EXACT && tp.ex.n == el &&
        memcmp(tp.ex.p, l->ex, el) == 0 && info->last_update_ns > l->last_ns) {
        l->last_ns = info->last_update_ns;
    }
    return 0;
}

/* Kills (SIGKILL, then the usual backoff) every running adapter that has
 * sent nothing for --adapter-silence-ms since its start. */
static void main_check_hung(main_sup_ctx *ctx, qb_super *sup, uint64_t now_ms)
{
    if (ctx->silence_ms == 0 || ctx->b == NULL) {
        return;
    }
    for (size_t k = 0; k < ctx->n_ad; k++) {
        main_adapter *a = &ctx->ad[k];
        uint64_t started = qb_super_started_ms(sup, a->idx);
        if (started == 0) {
            continue;
        }
        main_last l = {a->ex, 0};
        qb_broker_each_topic(ctx->b, main_last_each, &l);
        uint64_t last = l.last_ns / 1000000u;
        if (last < started) {
            last = started;
        }
        if (now_ms > last && now_ms - last >= ctx->silence_ms) {
            char reason[128];
            snprintf(reason, sizeof reason, "hung: silent for %llu s, killed",
                     (unsigned long long)((now_ms - last) / 1000u));
            qb_super_kill(sup, a->idx, reason);
        }
    }
}

/* The supervisor's part of the stats file, as extra JSON pairs:
 * "adapters_failed" and, per --adapter, its exchange, symbols, state
 * (qb_super_state) and, once failed, the reason published on the bus.
 * Appends to out; QB_OK or QB_ENOMEM. */
static int main_sup_stats(const main_sup_ctx *ctx, qb_buf *out)
{
    const qb_super *sup = ctx->sup;
    int rc = qb_buf_appendf(out, ", \"adapters_failed\": %zu, \"adapters\": [",
                            sup ? qb_super_failed(sup, "adapter") : (size_t)0);
    for (size_t k = 0; sup != NULL && k < ctx->n_ad && rc == QB_OK; k++) {
        const main_adapter *a = &ctx->ad[k];
        const char *state = qb_super_state(sup, a->idx);
        const char *syms = a->syms ? a->syms : "";
        if (state == NULL) {
            state = "none"; /* not added (qb_super_add failed) */
        }
        rc = qb_buf_appendf(out, "%s{\"exchange\": ", k ? ", " : "");
        rc = rc ? rc : qb_json_append_str(out, a->ex, strlen(a->ex));
        rc = rc ? rc : qb_buf_appendf(out, ", \"symbols\": ");
        rc = rc ? rc : qb_json_append_str(out, syms, strlen(syms));
        rc = rc ? rc : qb_buf_appendf(out, ", \"state\": \"%s\", \"reason\": ", state);
        rc = rc ? rc : qb_json_append_str(out, a->failed, strlen(a->failed));
        rc = rc ? rc : qb_buf_appendf(out, "}");
    }
    return rc ? rc : qb_buf_appendf(out, "]");
}

static void main_write_stats(qb_broker *b, const main_sup_ctx *ctx, qb_ws *ws, qb_snapshot *snap,
                             const char *path, uint64_t start_ms)
{
    qb_super *sup = ctx->sup;
    qb_broker_stats s;
    qb_broker_stats_get(b, &s);
    if (sup != NULL) {
        qb_broker_set_adapter_counts(b, qb_super_restarts(sup, "adapter"),
                                     qb_super_hung_kills(sup, "adapter"),
                                     qb_super_failed(sup, "adapter"));
    }
    char extra[8192];
    int k = snprintf(extra, sizeof extra,
                     "\"adapter_starts\": %llu, \"adapter_restarts\": %llu, "
                     "\"adapter_hung_kills\": %llu, "
                     "\"children_running\": %zu, \"uptime_ms\": %llu",
                     (unsigned long long)(sup ? qb_super_starts(sup, "adapter") : 0),
                     (unsigned long long)(sup ? qb_super_restarts(sup, "adapter") : 0),
                     (unsigned long long)(sup ? qb_super_hung_kills(sup, "adapter") : 0),
                     sup ? qb_super_running(sup, "") : (size_t)0,
                     (unsigned long long)(qb_mono_ns() / 1000000u - start_ms));
    if (ws != NULL) {
        qb_ws_stats w;
        qb_ws_stats_get(ws, &w);
#define MAIN_WS_(name, help)                                                                       \
    k += snprintf(extra + k, sizeof extra - (size_t)k, ", \"" #name "\": %llu",                    \
                  (unsigned long long)w.name);
        QB_WS_STATS(MAIN_WS_)
#undef MAIN_WS_
#define MAIN_WSQ_(name, help)                                                                      \
    k += snprintf(extra + k, sizeof extra - (size_t)k, ", \"" #name "\": %llu",                    \
                  (unsigned long long)w.q.name);
        QB_WSQ_STATS(MAIN_WSQ_)
#undef MAIN_WSQ_
    }
    if (snap != NULL) {
        qb_snapshot_stats ss;
        qb_snapshot_stats_get(snap, &ss);
#define MAIN_SNAP_(name, help)                                                                     \
    k += snprintf(extra + k, sizeof extra - (size_t)k, ", \"" #name "\": %llu",                    \
                  (unsigned long long)ss.name);
        QB_SNAPSHOT_STATS(MAIN_SNAP_)
#undef MAIN_SNAP_
    }
    qb_buf all = QB_BUF_INIT;
    if (path != NULL &&
        (qb_buf_append(&all, extra, strlen(extra)) != QB_OK || main_sup_stats(ctx, &all) != QB_OK ||
         qb_buf_append(&all, "", 1) != QB_OK ||
         qb_broker_stats_write(&s, (const char *)all.data, path) != QB_OK)) {
        QB_LOG_RL(QB_LOG_WARN, "broker.stats_write_failed", "%s: %s", path, strerror(errno));
    }
    qb_buf_fini(&all);
}

static void main_log_summary(qb_broker *b, qb_super *sup)
{
    qb_broker_stats s;
    qb_broker_stats_get(b, &s);
    QB_INFO("broker.stats",
            "frames_in=%llu frames_out=%llu bytes_in=%llu topics=%llu books=%llu "
            "books_valid=%llu ingest_gaps=%llu duplicates=%llu crossed=%llu bad_msgpack=%llu "
            "bad_version=%llu oversized=%llu bad_topic=%llu rogue_publisher=%llu "
            "adapters_running=%zu "
            "adapter_restarts=%llu",
            (unsigned long long)s.frames_in, (unsigned long long)s.frames_out,
            (unsigned long long)s.bytes_in, (unsigned long long)s.topics,
            (unsigned long long)s.books, (unsigned long long)s.books_valid,
            (unsigned long long)s.ingest_gaps, (unsigned long long)s.duplicates,
            (unsigned long long)s.crossed, (unsigned long long)s.bad_msgpack,
            (unsigned long long)s.bad_version, (unsigned long long)s.oversized,
            (unsigned long long)s.bad_topic, (unsigned long long)s.rogue_publisher,
            sup ? qb_super_running(sup, "adapter") : (size_t)0,
            (unsigned long long)(sup ? qb_super_restarts(sup, "adapter") : 0));
}

/* qb_listeners_event_fn: a re-created (or not re-creatable) listener is
 * said on the bus, on the broker's own status topic (PROTOCOL.md 4.5). */
static void main_listener_event(void *arg, const qb_listener_info *info, bool repaired)
{
    qb_broker *b = arg;
    char reason[512]; /* cut to 256 bytes by qb_broker_publish_status */
    if (repaired) {
        snprintf(reason, sizeof reason,
                 "listener %s %s re-created: it had stopped handing connections to the broker "
                 "(repairs: %llu)",
                 info->role, info->url, (unsigned long long)info->repairs);
    } else {
        snprintf(reason, sizeof reason, "listener %s %s is down: cannot listen again (retrying)",
                 info->role, info->url);
    }
    (void)qb_broker_publish_status(b, QB_BROKER_STATUS_EX, QB_BROKER_STATUS_SYM, NULL,
                                   repaired ? QB_FEED_LIVE : QB_FEED_DOWN, reason);
}

/* Waits up to timeout_ms for a TCP listener on 127.0.0.1:port, or a stop
 * signal (returns false). */
static bool main_wait_port(int port, uint64_t timeout_ms, const sigset_t *sigs, qb_super *sup)
{
    uint64_t deadline = qb_mono_ns() / 1000000u + timeout_ms;
    while (qb_mono_ns() / 1000000u < deadline) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0) {
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
            close(fd);
            if (ok) {
                return true;
            }
        }
        struct timespec ts = {0, 50 * 1000000L};
        int sig = sigtimedwait(sigs, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            return false;
        }
        qb_super_poll(sup, qb_mono_ns() / 1000000u);
    }
    QB_WARN("broker.demo_slow",
            "the simulator is not accepting on port %d yet; starting the "
            "adapters anyway (they retry)",
            port);
    return true;
}

/* How the user runs NAME, a binary installed beside this one: its bare
 * name when this binary's directory is on PATH, else its path relative to
 * the current directory when below it (build/bin/quotebus-sub after
 * ./scripts/run), else its absolute path. So a command of the banner can
 * be pasted as it is. */
static void main_sibling_cmd(const char *name, char *out, size_t cap)
{
    char dir[1024];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    char *slash = NULL;
    if (n > 0) {
        dir[n] = '\0';
        slash = strrchr(dir, '/');
    }
    if (slash == NULL) {
        snprintf(out, cap, "%s", name);
        return;
    }
    *slash = '\0';
    const char *path = getenv("PATH");
    while (path != NULL && *path != '\0') {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        char entry[2048];
        if (len > 0 && len < sizeof entry) {
            memcpy(entry, path, len);
            entry[len] = '\0';
            char *real = realpath(entry, NULL);
            bool same = real != NULL && strcmp(real, dir) == 0;
            free(real);
            if (same) {
                snprintf(out, cap, "%s", name);
                return;
            }
        }
        path = end ? end + 1 : NULL;
    }
    char cwd[2048];
    size_t k = getcwd(cwd, sizeof cwd) != NULL ? strlen(cwd) : 0;
    if (k > 1 && strncmp(dir, cwd, k) == 0 && dir[k] == '/') {
        snprintf(out, cap, "%s/%s", dir + k + 1, name);
    } else {
        snprintf(out, cap, "%s/%s", dir, name);
    }
}

#define MAIN_BANNER_RULE                                                                           \
    "==============================================================================="

/* The start banner, on stdout: where to connect and what to try (up to 3),
 * framed and set off by blank lines so that it stands out between the
 * build's output before it and the log lines (stderr) after it. http_url
 * is NULL when the page is off, snap when the snapshot service is. */
static void main_print_banner(const main_opts *o, const char *http_url, const qb_snapshot *snap)
{
    printf("\n" MAIN_BANNER_RULE "\n");
    printf("  quotebus-broker %s is running%s\n\n", QB_VERSION,
           o->demo ? ": offline demo (simulated exchanges, no internet needed)" : "");
    for (size_t i = 0; i < o->pub.n; i++) {
        printf("  %-24s%s\n", i == 0 ? "subscribers (NNG SUB)" : "", o->pub.v[i]);
    }
    if (http_url != NULL) {
        printf("  %-24s%s  (and /ws, /metrics, /health)\n", "web page", http_url);
    } else {
        printf("  %-24s%s\n", "web page", "off");
    }
    for (size_t i = 0; snap != NULL && i < o->snapshot.n; i++) {
        printf("  %-24s%s\n", i == 0 ? "snapshot service" : "", o->snapshot.v[i]);
    }
    if (snap == NULL) {
        printf("  %-24s%s\n", "snapshot service", "off");
    }

    /* The clients' defaults are the broker's: name an address only when it
     * is not the default one. */
    char connect[1200] = "", snapshot[1200] = "";
    if (strcmp(o->pub.v[0], "ipc:///tmp/quotebus/pub.ipc") != 0) {
        snprintf(connect, sizeof connect, " --connect %s", o->pub.v[0]);
    }
    if (snap != NULL && strcmp(o->snapshot.v[0], "ipc:///tmp/quotebus/snapshot.ipc") != 0) {
        snprintf(snapshot, sizeof snapshot, " --snapshot %s", o->snapshot.v[0]);
    }
    char sub[2048], top[2048], cmd[3][sizeof sub + sizeof connect + sizeof snapshot + 16];
    const char *what[3];
    int n = 0;
    main_sibling_cmd("quotebus-sub", sub, sizeof sub);
    main_sibling_cmd("quotebus-top", top, sizeof top);
    snprintf(cmd[n], sizeof cmd[n], "%s%s %s", sub, connect, o->demo ? "book.binance." : "book.");
    what[n++] = o->demo ? "every Binance book, one JSON line per message"
                        : "every book, one JSON line per message";
    snprintf(cmd[n], sizeof cmd[n], "%s%s%s BTC", top, connect, snapshot);
    what[n++] = "best bid and ask of BTC on every exchange, side by side";
    if (http_url != NULL) {
        snprintf(cmd[n], sizeof cmd[n], "%s", http_url);
        what[n++] = "the live order books, in a browser";
    }
    printf("\n  try:\n");
    for (int i = 0; i < n; i++) {
        printf("    %s:\n        %s\n", what[i], cmd[i]);
    }
    printf(MAIN_BANNER_RULE "\n\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    qb_log_set_component("broker");
    main_opts o = {
        .demo_port = 7790,
        .max_topics = QB_TOPICS_DEFAULT_MAX,
        .adapter_silence_ms = 60000,
        .http_max_clients = 1000,
        .http_max_subs = 256,
        .http_max_msg = 64 * 1024,
        .http_rate = 50,
        .http_queue_soft = 4 << 20,
        .http_queue_hard = 16 << 20,
        .http_soft_ms = 1000,
        .http_slow_ms = 30000,
        .http_idle_s = 30,
    };
    const qb_opt table[] = {
        {"ingest", QB_OPT_LIST, &o.ingest, "ADDR",
         "listen for adapters (NNG SUB) on these addresses; repeatable"},
        {"ingest-tls-cert", QB_OPT_STR, &o.ingest_tls_cert, "PEM",
         "tls+tcp:// --ingest: the broker's certificate (scripts/make-certs.sh)"},
        {"ingest-tls-key", QB_OPT_STR, &o.ingest_tls_key, "PEM",
         "tls+tcp:// --ingest: the private key of --ingest-tls-cert"},
        {"ingest-tls-ca", QB_OPT_STR, &o.ingest_tls_ca, "PEM",
         "tls+tcp:// --ingest: only adapters with a certificate signed by this CA connect"},
        {"pub", QB_OPT_LIST, &o.pub, "ADDR",
         "listen for subscribers (NNG PUB) on these addresses; repeatable"},
        {"pub-tls-cert", QB_OPT_STR, &o.pub_tls_cert, "PEM",
         "tls+tcp:// --pub: the broker's certificate"},
        {"pub-tls-key", QB_OPT_STR, &o.pub_tls_key, "PEM",
         "tls+tcp:// --pub: the private key of --pub-tls-cert"},
        {"pub-tls-ca", QB_OPT_STR, &o.pub_tls_ca, "PEM",
         "tls+tcp:// --pub: only subscribers with a certificate signed by this CA connect"},
        {"adapter", QB_OPT_MULTI, &o.adapters, "EXCHANGE:SYM,SYM",
         "start this adapter as a child process; repeatable"},
        {"adapter-arg", QB_OPT_MULTI, &o.adapter_args, "ARG",
         "extra argument appended to every adapter's command line; repeatable"},
        {"no-spawn", QB_OPT_BOOL, &o.no_spawn, NULL,
         "do not start adapters (they run separately and dial --ingest)"},
        {"demo", QB_OPT_BOOL, &o.demo, NULL,
         "offline demo: also start quotebus-exsim and point the adapters at it"},
        {"demo-port", QB_OPT_INT, &o.demo_port, "PORT", "port of the demo simulator"},
        {"adapter-silence-ms", QB_OPT_INT, &o.adapter_silence_ms, "MS",
         "kill and restart an adapter alive but silent this long (0: never)"},
        {"max-topics", QB_OPT_INT, &o.max_topics, "N",
         "most topics with state; more are forwarded without state"},
        {"stats-file", QB_OPT_STR, &o.stats_file, "PATH",
         "rewrite this JSON file of counters every 500 ms and at exit"},
        {"log-level", QB_OPT_STR, &o.log_level, "LEVEL",
         "error, warn, info or debug; passed on to the adapters" QB_OPT_DEFAULT("info")},
        {"snapshot", QB_OPT_LIST, &o.snapshot, "ADDR",
         "serve snapshots (NNG REP) on these addresses; repeatable; \"off\" disables"},
        {"http-listen", QB_OPT_STR, &o.http_listen, "HOST:PORT",
         "serve the page, /ws, /metrics, /health here; \"off\" disables" QB_OPT_DEFAULT(
             "127.0.0.1:7780")},
        {"web-root", QB_OPT_STR, &o.web_root, "DIR",
         "directory of the web page" QB_OPT_DEFAULT(
             "<prefix>/share/quotebus/web, else the source tree's clients/web")},
        {"http-origin", QB_OPT_LIST, &o.http_origins, "ORIGIN",
         "also accept websockets from this Origin (e.g. http://localhost:8000; * for "
         "any)" QB_OPT_DEFAULT("the page's own origin only")},
        {"http-token", QB_OPT_STR, &o.http_token, "TOKEN",
         "require this bearer token on /ws and /metrics (Authorization: Bearer or ?token=)"},
        {"http-cert", QB_OPT_STR, &o.http_cert, "PEM", "TLS certificate: serve https/wss"},
        {"http-key", QB_OPT_STR, &o.http_key, "PEM", "TLS private key for --http-cert"},
        {"http-max-clients", QB_OPT_INT, &o.http_max_clients, "N",
         "most websocket clients; more are closed with 1013"},
        {"http-max-subs", QB_OPT_INT, &o.http_max_subs, "N",
         "most subscriptions per websocket client"},
        {"http-max-msg", QB_OPT_INT, &o.http_max_msg, "BYTES",
         "largest websocket request; larger closes with 1009"},
        {"http-rate", QB_OPT_INT, &o.http_rate, "N", "websocket requests per second per client"},
        {"http-queue-soft", QB_OPT_INT, &o.http_queue_soft, "BYTES",
         "a client with this many bytes queued for --http-soft-ms is conflated"},
        {"http-soft-ms", QB_OPT_INT, &o.http_soft_ms, "MS",
         "how long a client may stay over --http-queue-soft before conflation"},
        {"http-queue-hard", QB_OPT_INT, &o.http_queue_hard, "BYTES",
         "a client with this many bytes queued is conflated at once"},
        {"http-slow-ms", QB_OPT_INT, &o.http_slow_ms, "MS",
         "a client behind (over the soft limit, conflated) this long is closed with 4001"},
        {"http-idle", QB_OPT_INT, &o.http_idle_s, "SECONDS",
         "ping an idle websocket after this long, hang up after twice"},
        {0},
    };
    int rc = main_parse(&o, table, argc, argv);
    if (rc != QB_OK) {
        qb_opts_free(table);
        return rc == QB_EEOF ? 0 : 2;
    }

    /* Block the signals before any thread exists (NNG's included), so only
     * sigtimedwait below ever takes them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int exit_code = 0;
    qb_super *sup = NULL;
    qb_broker *b = NULL;
    qb_ws *ws = NULL;
    qb_snapshot *snap = NULL;
    qb_listeners *listeners = NULL;
    uint64_t start_ms = qb_mono_ns() / 1000000u;
    char demo_ws[128] = "";
    main_sup_ctx sup_ctx;
    memset(&sup_ctx, 0, sizeof sup_ctx);
    sup_ctx.silence_ms = o.adapter_silence_ms > 0 ? (uint64_t)o.adapter_silence_ms : 0;
    bool spawn = !o.no_spawn;
    if (spawn) {
        if ((sup = qb_super_new(NULL)) == NULL) {
            exit_code = 1;
            goto out;
        }
        rc = qb__children_add(&o, sup, &sup_ctx, demo_ws, sizeof demo_ws);
        if (rc != QB_OK) {
            exit_code = rc == QB_EINVAL ? 2 : 1;
            goto out;
        }
    }

    if (qb_listeners_new(&listeners) != QB_OK) {
        exit_code = 1;
        goto out;
    }
    qb_broker_config cfg = {
        .ingest_urls = (const char *const *)o.ingest.v,
        .n_ingest = o.ingest.n,
        .pub_urls = (const char *const *)o.pub.v,
        .n_pub = o.pub.n,
        .max_topics = (size_t)o.max_topics,
        .ingest_tls = {o.ingest_tls_cert, o.ingest_tls_key, o.ingest_tls_ca},
        .pub_tls = {o.pub_tls_cert, o.pub_tls_key, o.pub_tls_ca},
        .listeners = listeners,
    };
    if ((rc = qb_broker_new(&cfg, &b)) != QB_OK) {
        if (rc == QB_ESTATE) {
            fprintf(stderr, "quotebus-broker: another quotebus-broker is running on these "
                            "addresses (see the log above for its pid); not starting\n");
        } else {
            fprintf(stderr, "quotebus-broker: cannot start: %s (see the log above)\n",
                    qb_strerror(rc));
        }
        exit_code = 1;
        goto out;
    }
    sup_ctx.b = b;
    if (sup != NULL) {
        qb_super_set_event_cb(sup, main_sup_event, &sup_ctx);
    }

    bool snap_off = o.snapshot.n == 0 || (o.snapshot.n == 1 && strcmp(o.snapshot.v[0], "off") == 0);
    if (!snap_off) {
        qb_snapshot_config scfg = {
            .urls = (const char *const *)o.snapshot.v,
            .n_urls = o.snapshot.n,
            .collect = qb_broker_snapshot_collect,
            .collect_arg = b,
            .listeners = listeners,
        };
        rc = qb_snapshot_new(&scfg, &snap);
        if (rc != QB_OK && o.snapshot.from_default) {
            /* The default addresses are shared by every broker on the
             * machine (tests run several): busy defaults are not fatal.
             * A claimed ipc address was not touched (listeners.h). */
            QB_WARN("broker.snapshot_off", "snapshot service not started: the default addresses "
                                           "are busy (another broker?); give --snapshot ADDR");
        } else if (rc != QB_OK) {
            fprintf(stderr,
                    "quotebus-broker: cannot start the snapshot service: %s (see the log "
                    "above; --snapshot off disables it)\n",
                    qb_strerror(rc));
            exit_code = 1;
            goto out;
        }
    }
    if (o.http_port != 0) {
        main_web_root(&o);
        if (o.web_root_found[0] == '\0') {
            QB_WARN("broker.no_web_root", "the web page was not found (--web-root DIR); / will "
                                          "answer 404");
        } else {
            QB_INFO("broker.web_root", "serving the page from %s", o.web_root_found);
        }
        qb_ws_config wcfg = {
            .host = o.http_host,
            .port = o.http_port,
            .web_root = o.web_root_found[0] ? o.web_root_found : NULL,
            .origins = (const char *const *)o.http_origins.v,
            .n_origins = o.http_origins.n,
            .token = o.http_token,
            .cert = o.http_cert,
            .key = o.http_key,
            .max_clients = (size_t)o.http_max_clients,
            .max_msg = (size_t)o.http_max_msg,
            .idle_s = (unsigned)o.http_idle_s,
            .limits =
                {
                    .max_subs = (size_t)o.http_max_subs,
                    .soft_bytes = (size_t)o.http_queue_soft,
                    .hard_bytes = (size_t)o.http_queue_hard,
                    .soft_ms = (uint64_t)o.http_soft_ms,
                    .hard_ms = (uint64_t)o.http_slow_ms,
                    .rate = (uint32_t)o.http_rate,
                    .max_topics = (size_t)o.max_topics,
                },
            .broker = b,
            .snapshot = snap,
            .listeners = listeners,
        };
        rc = qb_ws_new(&wcfg, &ws);
        if (rc == QB_ETRANSPORT && o.http_listen == NULL && o.http_cert == NULL) {
            QB_WARN("broker.http_off", "HTTP/websocket endpoint not started: the default "
                                       "127.0.0.1:7780 is busy (another broker?); give "
                                       "--http-listen HOST:PORT");
            ws = NULL;
        } else if (rc != QB_OK) {
            fprintf(stderr,
                    "quotebus-broker: cannot serve HTTP on %s:%d: %s (see the log above; "
                    "--http-listen off disables it)\n",
                    o.http_host, o.http_port, qb_strerror(rc));
            exit_code = 1;
            goto out;
        }
        if (ws != NULL) {
            qb_broker_set_tap(b, qb_ws_offer, ws);
        }
    }

    qb_listeners_set_event_cb(listeners, main_listener_event, b);
    if (qb_listeners_start(listeners, 0) != QB_OK) {
        exit_code = 1;
        goto out;
    }

    char where[1024];
    size_t k = 0;
    where[0] = '\0';
    for (size_t i = 0; i < o.pub.n && k < sizeof where; i++) {
        int w = snprintf(where + k, sizeof where - k, "%s%s", i ? " or " : "", o.pub.v[i]);
        k += w > 0 ? (size_t)w : 0;
    }
    char http_url[512];
    snprintf(http_url, sizeof http_url, "http%s://%s%s%s:%d/", o.http_cert ? "s" : "",
             strchr(o.http_host, ':') ? "[" : "", o.http_host, strchr(o.http_host, ':') ? "]" : "",
             o.http_port);
    main_print_banner(&o, ws != NULL ? http_url : NULL, snap);
    QB_INFO("broker.started", "version=%s pub=%s ingest=%s spawn=%s demo=%s", QB_VERSION, where,
            o.ingest.v[0], spawn ? "yes" : "no", o.demo ? "yes" : "no");

    bool stop = false;
    if (sup != NULL && o.demo) {
        /* The simulator first, so the adapters' first connection succeeds. */
        qb_super_poll(sup, qb_mono_ns() / 1000000u);
        stop = !main_wait_port((int)o.demo_port, 5000, &sigs, sup);
    }
    uint64_t next_stats = 0, next_summary = start_ms + MAIN_SUMMARY_INTERVAL_MS;
    while (!stop) {
        uint64_t now = qb_mono_ns() / 1000000u;
        if (sup != NULL) {
            qb_super_poll(sup, now);
            main_check_hung(&sup_ctx, sup, now);
        }
        if (now >= next_stats) {
            main_write_stats(b, &sup_ctx, ws, snap, o.stats_file, start_ms);
            next_stats = now + MAIN_STATS_INTERVAL_MS;
        }
        if (now >= next_summary) {
            main_log_summary(b, sup);
            next_summary = now + MAIN_SUMMARY_INTERVAL_MS;
        }
        struct timespec ts = {0, 100 * 1000000L};
        int sig = sigtimedwait(&sigs, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            QB_INFO("broker.stopping", "signal %s: shutting down", strsignal(sig));
            stop = true;
        }
    }

out:
    if (sup != NULL) {
        qb_super_set_event_cb(sup, NULL, NULL);
        qb_super_stop(sup, MAIN_STOP_GRACE_MS);
    }
    /* No probe or repair while the sockets close; the claims go after. */
    qb_listeners_stop(listeners);
    if (b != NULL) {
        /* The last stats file, with the endpoint's counters, before the
         * endpoint goes. */
        qb_broker_set_tap(b, NULL, NULL);
        main_write_stats(b, &sup_ctx, ws, snap, o.stats_file, start_ms);
    }
    qb_ws_free(ws);
    ws = NULL;
    qb_snapshot_free(snap);
    snap = NULL;
    if (b != NULL) {
        qb_broker_stats final;
        qb_broker_stats_get(b, &final);
        qb_broker_free(b);
        QB_INFO("broker.stopped", "frames_in=%llu frames_out=%llu",
                (unsigned long long) final.frames_in, (unsigned long long) final.frames_out);
    }
    qb_listeners_free(listeners);
    qb_super_free(sup);
    qb_opts_free(table);
    /* NNG frees the pipes of closed sockets on its reaper thread, possibly
     * after nng_close() returned: wait for it (unless a close was
     * abandoned), so nothing is left for a leak checker. */
    qb_nng_fini();
    return exit_code;
}
