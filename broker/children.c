/*
 * children.c: quotebus-broker's children (main_int.h): the command lines of
 * the exchange simulator (--demo) and of one quotebus-adapter per
 * --adapter value, added to the supervisor (supervisor.h), which starts
 * and restarts them.
 *
 * The demo plan: quotebus-exsim on --demo-port serves every exchange, and
 * every adapter gets --exsim ws://127.0.0.1:PORT (its own path on the
 * simulator) instead of the exchange's address. Adapters dial the ipc
 * ingest when there is one. Before anything starts, each adapter's command
 * line runs once as `quotebus-adapter --check ...` (qb__children_check):
 * status 2 refuses the --adapter value; a check that gives no verdict (no
 * binary, a hang) is logged and the adapter started anyway.
 *
 * Threads: the main thread only.
 */
#include "main_int.h"

#include "err.h"
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#define CHILDREN_CHECK_TIMEOUT_MS 5000

/* "EXCHANGE:SYM,SYM" or "EXCHANGE": checks the shape; writes the exchange
 * (NUL-terminated) and a pointer to the symbol list (NULL when none). */
static int children_adapter_spec(const char *spec, char *ex, size_t cap, const char **syms)
{
    const char *colon = strchr(spec, ':');
    size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
    if (n == 0 || n >= cap) {
        return QB_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        char c = spec[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            return QB_EINVAL;
        }
    }
    if (colon != NULL && colon[1] == '\0') {
        return QB_EINVAL;
    }
    memcpy(ex, spec, n);
    ex[n] = '\0';
    *syms = colon ? colon + 1 : NULL;
    return QB_OK;
}

int qb__children_check(const char *const *argv, int *status, char *line, size_t cap)
{
    const char *cargv[32 + 64 + 2];
    size_t k = 0;
    cargv[k++] = argv[0];
    cargv[k++] = "--check";
    for (size_t i = 1; argv[i] != NULL && k + 1 < sizeof cargv / sizeof cargv[0]; i++) {
        cargv[k++] = argv[i];
    }
    cargv[k] = NULL;
    return qb_super_run(cargv, CHILDREN_CHECK_TIMEOUT_MS, status, line, cap);
}

int qb__children_add(const main_opts *o, qb_super *sup, main_sup_ctx *ctx, char *demo_ws,
                     size_t cap)
{
    ctx->sup = sup;
    char adapter_bin[4096];
    if (qb_super_find_binary("quotebus-adapter", adapter_bin, sizeof adapter_bin) != QB_OK) {
        QB_ERROR("broker.no_adapter", "quotebus-adapter not found next to quotebus-broker nor on "
                                      "PATH (use --no-spawn to run adapters separately)");
        return QB_ENOTFOUND;
    }
    if (o->demo) {
        char sim_bin[4096], port[16];
        if (qb_super_find_binary("quotebus-exsim", sim_bin, sizeof sim_bin) != QB_OK) {
            QB_ERROR("broker.no_exsim", "quotebus-exsim not found next to quotebus-broker nor on "
                                        "PATH (needed by --demo)");
            return QB_ENOTFOUND;
        }
        snprintf(port, sizeof port, "%lld", (long long)o->demo_port);
        const char *argv[] = {sim_bin, "--port", port, NULL};
        int rc = qb_super_add(sup, "exsim", argv);
        if (rc != QB_OK) {
            return rc;
        }
        snprintf(demo_ws, cap, "ws://127.0.0.1:%lld", (long long)o->demo_port);
    }
    for (size_t i = 0; i < o->adapters.n; i++) {
        char ex[64], name[96];
        const char *syms;
        if (children_adapter_spec(o->adapters.v[i], ex, sizeof ex, &syms) != QB_OK) {
            fprintf(stderr, "quotebus-broker: bad --adapter '%s': expected EXCHANGE:SYM,SYM\n",
                    o->adapters.v[i]);
            return QB_EINVAL;
        }
        const char *argv[32 + 64];
        size_t k = 0;
        argv[k++] = adapter_bin;
        if (syms != NULL) {
            argv[k++] = "--symbols";
            argv[k++] = syms;
        }
        /* The children dial an ipc ingest when there is one (no TLS files
         * needed: the directory's mode keeps other users out). */
        const char *ingest = o->ingest.v[0];
        for (size_t u = o->ingest.n; u-- > 0;) {
            if (strncmp(o->ingest.v[u], "ipc://", 6) == 0) {
                ingest = o->ingest.v[u];
            }
        }
        argv[k++] = "--broker";
        argv[k++] = ingest;
        if (o->log_level != NULL) {
            argv[k++] = "--log-level";
            argv[k++] = o->log_level;
        }
        if (o->demo) {
            /* One simulator serves every exchange, each on its own path
             * like the real endpoints; the adapter knows its path (and
             * whether it has REST): only the simulator's address goes. */
            argv[k++] = "--exsim";
            argv[k++] = demo_ws;
        }
        if (o->adapter_args.n > 64) {
            fprintf(stderr, "quotebus-broker: at most 64 --adapter-arg values\n");
            return QB_EINVAL;
        }
        for (size_t a = 0; a < o->adapter_args.n; a++) {
            argv[k++] = o->adapter_args.v[a];
        }
        /* EXCHANGE last: with options first, the command line parses the
         * same whether or not the option parser permutes arguments. */
        argv[k++] = ex;
        argv[k] = NULL;
        snprintf(name, sizeof name, "adapter %s", ex);
        if (ctx->n_ad == MAIN_MAX_ADAPTERS) {
            fprintf(stderr, "quotebus-broker: at most %d --adapter values\n", MAIN_MAX_ADAPTERS);
            return QB_EINVAL;
        }
        char line[192];
        int st = 0;
        int crc = qb__children_check(argv, &st, line, sizeof line);
        if (crc == QB_OK && WIFEXITED(st) && WEXITSTATUS(st) == QB_SUPER_EXIT_PERMANENT) {
            fprintf(stderr, "quotebus-broker: bad --adapter '%s': %s\n", o->adapters.v[i],
                    line[0] ? line : "quotebus-adapter --check exited with status 2");
            return QB_EINVAL;
        }
        if (crc != QB_OK || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            /* Not a verdict on the options (no binary, no memory, a hang):
             * the supervisor runs it and handles what happens. */
            char how[64];
            if (crc != QB_OK) {
                snprintf(how, sizeof how, "%s", qb_strerror(crc));
            } else if (WIFEXITED(st)) {
                snprintf(how, sizeof how, "exit status %d", WEXITSTATUS(st));
            } else {
                snprintf(how, sizeof how, "signal %d", WTERMSIG(st));
            }
            QB_WARN("broker.adapter_check",
                    "adapter=\"%s\" quotebus-adapter --check: %s%s%s; starting it anyway",
                    o->adapters.v[i], how, line[0] ? ": " : "", line);
        }
        main_adapter *ma = &ctx->ad[ctx->n_ad];
        ma->idx = (o->demo ? 1 : 0) + ctx->n_ad;
        snprintf(ma->ex, sizeof ma->ex, "%s", ex);
        ma->syms = syms;
        ctx->n_ad++;
        int rc = qb_super_add(sup, name, argv);
        if (rc != QB_OK) {
            return rc;
        }
    }
    return QB_OK;
}
