/*
 * fuzz_config.c: fuzz target of the config-file loader (common/opts.c,
 * qb_opts_parse with --config FILE), through its real entry point: the input
 * is written to a temporary file and parsed against a table holding every
 * option type (string, integer, bool, comma list, multi), then a command
 * line on top, as every binary does. Nothing is refactored for the fuzzer.
 *
 * Invariants: the parse returns one of the documented codes; on QB_OK the
 * values are consistent (list entries non-empty, NUL-terminated strings);
 * qb_opts_free releases everything (the leak checker sees the rest).
 * The loader reports each rejected file on stderr: run-fuzzers.sh passes
 * -close_fd_mask=2 so that output does not slow the fuzzer down.
 */
#include "fuzz.h"

#include "err.h"
#include "opts.h"

#include <unistd.h>

static char fc_path[64];
static int fc_fd = -1;

static void fc_cleanup(void)
{
    unlink(fc_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fc_fd < 0) {
        snprintf(fc_path, sizeof fc_path, "/tmp/qb-fuzz-config-XXXXXX");
        fc_fd = mkstemp(fc_path);
        if (fc_fd < 0) {
            abort();
        }
        atexit(fc_cleanup);
    }
    if (ftruncate(fc_fd, 0) != 0 || pwrite(fc_fd, data, size, 0) != (ssize_t)size) {
        abort();
    }
    char *s = NULL, *s2 = NULL;
    int64_t n = 7;
    bool b = false;
    qb_strlist list = {0}, multi = {0};
    const char *defs[] = {"a", "b"};
    if (qb_strlist_set_default(&list, defs, 2) != QB_OK) {
        abort();
    }
    const qb_opt opts[] = {
        {"ws-url", QB_OPT_STR, &s, "URL", "a string"},
        {"log-level", QB_OPT_STR, &s2, "LEVEL", "another string"},
        {"depth-limit", QB_OPT_INT, &n, "N", "an integer"},
        {"no-tickers", QB_OPT_BOOL, &b, NULL, "a flag"},
        {"symbols", QB_OPT_LIST, &list, "LIST", "a list"},
        {"adapter-arg", QB_OPT_MULTI, &multi, "ARG", "repeatable"},
        {0},
    };
    static const qb_prog prog = {"qb-fuzz-config", "[OPTIONS]", "fuzz", NULL};
    char a0[] = "qb-fuzz-config", a1[] = "--config", a3[] = "--symbols", a4[] = "X-Y", a5[] = "pos";
    char *argv[] = {a0, a1, fc_path, a3, a4, a5, NULL};
    int first = 0;
    int rc = qb_opts_parse(&prog, opts, 6, argv, &first);
    QB_FUZZ_CHECK(rc == QB_OK || rc == QB_EINVAL || rc == QB_EPARSE || rc == QB_ETOOBIG ||
                  rc == QB_ENOMEM || rc == QB_EIO);
    if (rc == QB_OK) {
        QB_FUZZ_CHECK(first == 5 && strcmp(argv[first], "pos") == 0);
        /* The command line's list replaces the file's. */
        QB_FUZZ_CHECK(list.n == 1 && strcmp(list.v[0], "X-Y") == 0);
        for (size_t i = 0; i < multi.n; i++) {
            QB_FUZZ_CHECK(multi.v[i] != NULL);
        }
        QB_FUZZ_CHECK(s == NULL || strlen(s) < 4096);
    }
    qb_opts_free(opts);
    return 0;
}
