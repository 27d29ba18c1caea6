/*
 * main_int.h: what quotebus-broker's process files share, private to the
 * executable: the parsed options (main_opts, filled by main.c's parser),
 * the supervisor callback's state (main_sup_ctx) and the children's entry
 * points in children.c, which builds the simulator's and the adapters'
 * command lines and adds them to the supervisor.
 *
 * Threads: the main thread only.
 */
#ifndef QB_MAIN_INT_H
#define QB_MAIN_INT_H

#include "broker.h"
#include "opts.h"
#include "supervisor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAIN_MAX_ADAPTERS 16

/* One spawned adapter, for the hung check and the supervisor's statuses. */
typedef struct main_adapter {
    size_t idx;       /* child index in the supervisor */
    char ex[64];      /* exchange id */
    const char *syms; /* "BTC-USDT,ETH-USDT" (points into the options), or NULL */
    uint64_t starts;
    char failed[257]; /* the status reason once it exited with status 2, else "" */
} main_adapter;

/* The supervisor event callback's state (main thread only). */
typedef struct main_sup_ctx {
    qb_broker *b; /* NULL until the broker runs */
    qb_super *sup;
    main_adapter ad[MAIN_MAX_ADAPTERS];
    size_t n_ad;
    uint64_t silence_ms; /* --adapter-silence-ms; 0 disables */
} main_sup_ctx;

typedef struct main_opts {
    qb_strlist ingest;
    qb_strlist pub;
    char *ingest_tls_cert, *ingest_tls_key, *ingest_tls_ca;
    char *pub_tls_cert, *pub_tls_key, *pub_tls_ca;
    qb_strlist adapters;
    qb_strlist adapter_args;
    bool no_spawn;
    bool demo;
    int64_t demo_port;
    int64_t max_topics;
    int64_t adapter_silence_ms;
    char *stats_file;
    char *log_level;
    char *http_listen;
    char *web_root;
    qb_strlist http_origins;
    char *http_token;
    char *http_cert;
    char *http_key;
    int64_t http_max_clients;
    int64_t http_max_subs;
    int64_t http_max_msg;
    int64_t http_rate;
    int64_t http_queue_soft;
    int64_t http_queue_hard;
    int64_t http_soft_ms;
    int64_t http_slow_ms;
    int64_t http_idle_s;
    qb_strlist snapshot;
    /* derived */
    char http_host[256];
    int http_port;
    char web_root_found[4096];
} main_opts;

/* Adds the simulator (--demo: quotebus-exsim on o->demo_port, its ws://
 * address written to demo_ws, cap bytes) and one adapter per --adapter
 * value to sup, recording each adapter in ctx (ctx->sup = sup). Each
 * adapter's command line is first validated by qb__children_check.
 * Returns QB_OK, QB_ENOTFOUND (no quotebus-adapter or quotebus-exsim
 * binary: logged), QB_EINVAL (a refused --adapter value: said on stderr,
 * nothing is started) or qb_super_add's error. */
int qb__children_add(const main_opts *o, qb_super *sup, main_sup_ctx *ctx, char *demo_ws,
                     size_t cap);

/* Runs the adapter command line argv (argv[0] quotebus-adapter, EXCHANGE
 * last) as `quotebus-adapter --check ...`: the adapter validates its
 * options, exchange and symbols as a start would and exits (0 valid, 2 bad
 * options) without connecting anywhere. line gets its first stderr line.
 * qb_super_run's result; *status the check's waitpid status. */
int qb__children_check(const char *const *argv, int *status, char *line, size_t cap);

#endif
