/*
 * test_opts.c: common/opts.c. Defaults, command line over config file,
 * list and multi semantics, positionals anywhere, unknown config keys and
 * flags rejected, --help/--version return QB_EEOF, --help shows every
 * default one way, config errors name the program and the file (a
 * directory says so). Config files are written to temporary files.
 */
#include "err.h"
#include "harness.h"
#include "opts.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* One program's options, reset before each parse. */
typedef struct cfg {
    char *url;
    int64_t count;
    bool verbose;
    qb_strlist syms;
    qb_strlist brokers;
    char *level;
    qb_opt opts[7];
} cfg;

static void cfg_init(cfg *c)
{
    memset(c, 0, sizeof *c);
    c->url = "wss://default.example/ws";
    c->count = 7;
    static const char *const defsyms[] = {"BTC-USDT", "ETH-USDT"};
    qb_strlist_set_default(&c->syms, defsyms, 2);
    c->opts[0] = (qb_opt){"ws-url", QB_OPT_STR, &c->url, "URL", "upstream websocket URL"};
    c->opts[1] = (qb_opt){"count", QB_OPT_INT, &c->count, "N", "how many"};
    c->opts[2] = (qb_opt){"verbose", QB_OPT_BOOL, &c->verbose, NULL, "say more"};
    c->opts[3] = (qb_opt){"symbols", QB_OPT_LIST, &c->syms, "SYM,...", "symbols"};
    c->opts[4] = (qb_opt){"broker", QB_OPT_MULTI, &c->brokers, "ADDR", "broker address"};
    c->opts[5] = (qb_opt){"log-level", QB_OPT_STR, &c->level, "LEVEL",
                          "error, warn, info or debug" QB_OPT_DEFAULT("info")};
    c->opts[6] = (qb_opt){0};
}

static const qb_prog prog = {"qb-test", "[OPTIONS] EXCHANGE", "A test program.", "Footer."};

/* Parses a NULL-terminated argument list (argv[0] added). */
static int run(cfg *c, int *first, char **posv, int *posn, const char *const *args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"qb-test";
    for (; args[argc - 1]; argc++) {
        argv[argc] = (char *)args[argc - 1];
    }
    argv[argc] = NULL;
    int fp = -1;
    int rc = qb_opts_parse(&prog, c->opts, argc, argv, &fp);
    if (first) {
        *first = fp;
    }
    if (rc == QB_OK && posv) {
        *posn = 0;
        for (int i = fp; i < argc; i++) {
            posv[(*posn)++] = argv[i];
        }
    }
    return rc;
}

/* Runs with stdout and stderr sent to /dev/null (help text, error lines). */
static int run_quiet(cfg *c, const char *const *args)
{
    fflush(stdout);
    fflush(stderr);
    int o = dup(1), e = dup(2), null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    int rc = run(c, NULL, NULL, NULL, args);
    fflush(stdout);
    fflush(stderr);
    dup2(o, 1);
    dup2(e, 2);
    close(o);
    close(e);
    close(null);
    return rc;
}

/* Runs with stdout (or stderr) captured into out (NUL-terminated), the
 * other stream sent to /dev/null. */
static int run_capture(cfg *c, const char *const *args, int fd_to_capture, char *out, size_t cap)
{
    char path[] = "/tmp/qb-test-opts-out-XXXXXX";
    int fd = mkstemp(path);
    fflush(stdout);
    fflush(stderr);
    int o = dup(1), e = dup(2), null = open("/dev/null", O_WRONLY);
    dup2(fd_to_capture == 1 ? fd : null, 1);
    dup2(fd_to_capture == 2 ? fd : null, 2);
    int rc = run(c, NULL, NULL, NULL, args);
    fflush(stdout);
    fflush(stderr);
    dup2(o, 1);
    dup2(e, 2);
    close(o);
    close(e);
    close(null);
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, out, cap - 1);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    return rc;
}

static char cfg_path[64];

static const char *write_config(const char *json)
{
    strcpy(cfg_path, "/tmp/qb-test-opts-XXXXXX");
    int fd = mkstemp(cfg_path);
    if (fd < 0) {
        return NULL;
    }
    ssize_t w = write(fd, json, strlen(json));
    close(fd);
    return w == (ssize_t)strlen(json) ? cfg_path : NULL;
}

QB_TEST(defaults_without_arguments)
{
    cfg c;
    cfg_init(&c);
    int first = -1;
    QB_CHECK_EQ_INT(run(&c, &first, NULL, NULL, (const char *[]){NULL}), QB_OK);
    QB_CHECK_EQ_INT(first, 1);
    QB_CHECK_EQ_STR(c.url, "wss://default.example/ws");
    QB_CHECK_EQ_INT(c.count, 7);
    QB_CHECK(!c.verbose);
    QB_CHECK_EQ_INT(c.syms.n, 2);
    QB_CHECK_EQ_STR(c.syms.v[1], "ETH-USDT");
    QB_CHECK_EQ_INT(c.brokers.n, 0);
    qb_opts_free(c.opts);
    QB_CHECK(c.url == NULL && c.syms.n == 0);
}

QB_TEST(flags_and_positionals)
{
    cfg c;
    cfg_init(&c);
    char *pos[8];
    int npos = 0;
    QB_CHECK_EQ_INT(
        run(&c, NULL, pos, &npos,
            (const char *[]){"--ws-url", "wss://x/ws", "binance", "--count=3", "--verbose",
                             "--symbols", "SOL-USDT,XRP-USDT", "--symbols=ADA-USDT", "--broker",
                             "tcp://a:1,tcp://b:2", "--broker", "ipc:///c", "extra", NULL}),
        QB_OK);
    QB_CHECK_EQ_STR(c.url, "wss://x/ws");
    QB_CHECK_EQ_INT(c.count, 3);
    QB_CHECK(c.verbose);
    /* list: comma split, repeatable, the first user value replaced the defaults */
    QB_CHECK_EQ_INT(c.syms.n, 3);
    if (c.syms.n == 3) {
        QB_CHECK_EQ_STR(c.syms.v[0], "SOL-USDT");
        QB_CHECK_EQ_STR(c.syms.v[1], "XRP-USDT");
        QB_CHECK_EQ_STR(c.syms.v[2], "ADA-USDT");
    }
    /* multi: one value per occurrence, no split */
    QB_CHECK_EQ_INT(c.brokers.n, 2);
    if (c.brokers.n == 2) {
        QB_CHECK_EQ_STR(c.brokers.v[0], "tcp://a:1,tcp://b:2");
        QB_CHECK_EQ_STR(c.brokers.v[1], "ipc:///c");
    }
    /* positionals anywhere end up at the end, in order */
    QB_CHECK_EQ_INT(npos, 2);
    if (npos == 2) {
        QB_CHECK_EQ_STR(pos[0], "binance");
        QB_CHECK_EQ_STR(pos[1], "extra");
    }
    qb_opts_free(c.opts);

    /* "--" ends the options */
    cfg_init(&c);
    QB_CHECK_EQ_INT(run(&c, NULL, pos, &npos, (const char *[]){"--", "--count", NULL}), QB_OK);
    QB_CHECK_EQ_INT(npos, 1);
    QB_CHECK_EQ_INT(c.count, 7);
    qb_opts_free(c.opts);

    /* --verbose=false */
    cfg_init(&c);
    c.verbose = true;
    QB_CHECK_EQ_INT(run(&c, NULL, NULL, NULL, (const char *[]){"--verbose=false", NULL}), QB_OK);
    QB_CHECK(!c.verbose);
    qb_opts_free(c.opts);
}

QB_TEST(config_file_then_flags_override)
{
    const char *path =
        write_config("{\"ws-url\": \"wss://cfg/ws\", \"count\": 11, \"verbose\": true,"
                     " \"symbols\": [\"A-B\", \"C-D\"], \"broker\": \"tcp://x:1\"}");
    QB_CHECK(path != NULL);
    cfg c;
    cfg_init(&c);
    QB_CHECK_EQ_INT(run(&c, NULL, NULL, NULL, (const char *[]){"--config", path, NULL}), QB_OK);
    QB_CHECK_EQ_STR(c.url, "wss://cfg/ws");
    QB_CHECK_EQ_INT(c.count, 11);
    QB_CHECK(c.verbose);
    QB_CHECK_EQ_INT(c.syms.n, 2);
    QB_CHECK_EQ_INT(c.brokers.n, 1);
    qb_opts_free(c.opts);

    /* flags win, wherever --config appears */
    cfg_init(&c);
    QB_CHECK_EQ_INT(
        run(&c, NULL, NULL, NULL,
            (const char *[]){"--count", "12", "--config", path, "--symbols", "E-F", NULL}),
        QB_OK);
    QB_CHECK_EQ_STR(c.url, "wss://cfg/ws");
    QB_CHECK_EQ_INT(c.count, 12);
    /* a list on the command line replaces the file's list */
    QB_CHECK_EQ_INT(c.syms.n, 1);
    if (c.syms.n == 1) {
        QB_CHECK_EQ_STR(c.syms.v[0], "E-F");
    }
    qb_opts_free(c.opts);

    /* --config after a positional is still read */
    cfg_init(&c);
    char *pos[4];
    int npos = 0;
    QB_CHECK_EQ_INT(run(&c, NULL, pos, &npos, (const char *[]){"binance", "--config", path, NULL}),
                    QB_OK);
    QB_CHECK_EQ_INT(c.count, 11);
    QB_CHECK_EQ_INT(npos, 1);
    qb_opts_free(c.opts);
    unlink(path);

    /* a comma string in the file for a list; strings for numbers */
    path = write_config("{\"symbols\": \"X-Y,Z-W\", \"count\": \"5\"}");
    cfg_init(&c);
    QB_CHECK_EQ_INT(run(&c, NULL, NULL, NULL, (const char *[]){"--config", path, NULL}), QB_OK);
    QB_CHECK_EQ_INT(c.syms.n, 2);
    QB_CHECK_EQ_INT(c.count, 5);
    qb_opts_free(c.opts);
    unlink(path);
}

QB_TEST(bad_config_rejected)
{
    const char *bad[] = {
        "{\"ws-url\": \"x\", \"wsurl\": \"typo\"}", /* unknown key */
        "{\"config\": \"/etc/other\"}",             /* no nesting */
        "{\"count\": \"many\"}",                    /* not a number */
        "{\"count\": 1.5}",
        "{\"ws-url\": 5}", /* wrong type */
        "{\"ws-url\": [\"a\"]}",
        "{\"verbose\": \"maybe\"}",
        "{\"symbols\": [1, 2]}",
        "[\"ws-url\", \"x\"]", /* not an object */
        "{\"ws-url\": \"x\"",  /* truncated */
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *path = write_config(bad[i]);
        cfg c;
        cfg_init(&c);
        int rc = run_quiet(&c, (const char *[]){"--config", path, NULL});
        if (rc == QB_OK || rc == QB_EEOF) {
            fprintf(stderr, "  config '%s' accepted\n", bad[i]);
        }
        QB_CHECK(rc != QB_OK && rc != QB_EEOF);
        qb_opts_free(c.opts);
        unlink(path);
    }
    cfg c;
    cfg_init(&c);
    QB_CHECK(run_quiet(&c, (const char *[]){"--config", "/nonexistent/qb.json", NULL}) != QB_OK);
    qb_opts_free(c.opts);
}

QB_TEST(bad_flags_rejected)
{
    const char *const *bad[] = {
        (const char *[]){"--nope", NULL},
        (const char *[]){"--count", "abc", NULL},
        (const char *[]){"--count", "99999999999999999999999", NULL},
        (const char *[]){"--count", NULL},
        (const char *[]){"--verbose=perhaps", NULL},
        (const char *[]){"binance", "--nope", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg c;
        cfg_init(&c);
        int rc = run_quiet(&c, bad[i]);
        QB_CHECK(rc != QB_OK && rc != QB_EEOF);
        qb_opts_free(c.opts);
    }
}

QB_TEST(help_and_version_return_eof)
{
    const char *const *args[] = {
        (const char *[]){"--help", NULL},
        (const char *[]){"-h", NULL},
        (const char *[]){"--version", NULL},
        (const char *[]){"--count", "3", "--help", NULL},
        (const char *[]){"binance", "--help", NULL},
    };
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
        cfg c;
        cfg_init(&c);
        QB_CHECK_EQ_INT(run_quiet(&c, args[i]), QB_EEOF);
        qb_opts_free(c.opts);
    }
    /* the help text names every option */
    cfg c;
    cfg_init(&c);
    char text[4096];
    QB_CHECK_EQ_INT(run_capture(&c, (const char *[]){"--help", NULL}, 1, text, sizeof text),
                    QB_EEOF);
    QB_CHECK(strstr(text, "Usage: qb-test [OPTIONS] EXCHANGE") != NULL);
    QB_CHECK(strstr(text, "--ws-url URL") != NULL);
    QB_CHECK(strstr(text, "--config FILE") != NULL);
    QB_CHECK(strstr(text, "Footer.") != NULL);
    qb_opts_free(c.opts);
}

/* Returns the --help line of option name (without its newline) in line. */
static bool help_line(const char *text, const char *name, char *line, size_t cap)
{
    char key[64];
    snprintf(key, sizeof key, "  --%s ", name);
    const char *p = strstr(text, key);
    if (p == NULL) {
        return false;
    }
    size_t n = strcspn(p, "\n");
    snprintf(line, cap, "%.*s", (int)n, p);
    return true;
}

QB_TEST(help_shows_each_default_one_way)
{
    cfg c;
    cfg_init(&c);
    c.verbose = false;
    char text[4096], line[512];
    QB_CHECK_EQ_INT(run_capture(&c, (const char *[]){"--help", NULL}, 1, text, sizeof text),
                    QB_EEOF);
    /* string, number, list: the initial value; QB_OPT_DEFAULT: its text */
    QB_CHECK(help_line(text, "ws-url", line, sizeof line));
    QB_CHECK(strstr(line, "upstream websocket URL (default: wss://default.example/ws)") != NULL);
    QB_CHECK(help_line(text, "count", line, sizeof line));
    QB_CHECK(strstr(line, "how many (default: 7)") != NULL);
    QB_CHECK(help_line(text, "symbols", line, sizeof line));
    QB_CHECK(strstr(line, "symbols (default: BTC-USDT,ETH-USDT)") != NULL);
    QB_CHECK(help_line(text, "log-level", line, sizeof line));
    QB_CHECK(strstr(line, "error, warn, info or debug (default: info)") != NULL);
    QB_CHECK(strchr(line, QB_OPT_DEFAULT_MARK[0]) == NULL);
    /* no default: an empty list, a false flag */
    QB_CHECK(help_line(text, "broker", line, sizeof line));
    QB_CHECK(strstr(line, "default") == NULL);
    QB_CHECK(help_line(text, "verbose", line, sizeof line));
    QB_CHECK(strstr(line, "default") == NULL);
    /* the one style only: no "[...]" defaults */
    QB_CHECK(strstr(text, "Options:") != NULL && strchr(strstr(text, "Options:"), '[') == NULL);
    qb_opts_free(c.opts);

    /* a repeatable value's defaults are set apart by " | " (they hold commas) */
    cfg_init(&c);
    static const char *const defs[] = {"tcp://a:1,tcp://b:2", "ipc:///c"};
    qb_strlist_set_default(&c.brokers, defs, 2);
    QB_CHECK_EQ_INT(run_capture(&c, (const char *[]){"--help", NULL}, 1, text, sizeof text),
                    QB_EEOF);
    QB_CHECK(help_line(text, "broker", line, sizeof line));
    QB_CHECK(strstr(line, "(default: tcp://a:1,tcp://b:2 | ipc:///c)") != NULL);
    qb_opts_free(c.opts);
}

QB_TEST(config_errors_name_the_program_and_file)
{
    char err[4096], want[256];
    /* an unknown key, a bad value, bad JSON */
    const char *bad[] = {"{\"wsurl\": \"x\"}", "{\"count\": \"many\"}", "{\"ws-url\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *path = write_config(bad[i]);
        cfg c;
        cfg_init(&c);
        int rc = run_capture(&c, (const char *[]){"--config", path, NULL}, 2, err, sizeof err);
        QB_CHECK(rc != QB_OK && rc != QB_EEOF);
        snprintf(want, sizeof want, "qb-test: config %s: ", path);
        if (strncmp(err, want, strlen(want)) != 0) {
            fprintf(stderr, "  config '%s': stderr '%s' does not begin with '%s'\n", bad[i], err,
                    want);
        }
        QB_CHECK(strncmp(err, want, strlen(want)) == 0);
        qb_opts_free(c.opts);
        unlink(path);
    }
    /* a missing file */
    cfg c;
    cfg_init(&c);
    QB_CHECK(run_capture(&c, (const char *[]){"--config", "/nonexistent/qb.json", NULL}, 2, err,
                         sizeof err) != QB_OK);
    QB_CHECK(strstr(err, "qb-test: config /nonexistent/qb.json: No such file or directory") == err);
    qb_opts_free(c.opts);
    /* a directory: said so, not "not a valid JSON object" */
    char dir[] = "/tmp/qb-test-opts-dir-XXXXXX";
    QB_CHECK(mkdtemp(dir) != NULL);
    cfg_init(&c);
    int rc = run_capture(&c, (const char *[]){"--config", dir, NULL}, 2, err, sizeof err);
    QB_CHECK(rc != QB_OK && rc != QB_EEOF);
    snprintf(want, sizeof want, "qb-test: config %s: is a directory", dir);
    if (strstr(err, want) != err) {
        fprintf(stderr, "  directory: stderr '%s'\n", err);
    }
    QB_CHECK(strstr(err, want) == err);
    qb_opts_free(c.opts);
    rmdir(dir);
    /* a bad flag names the program too */
    cfg_init(&c);
    QB_CHECK(run_capture(&c, (const char *[]){"--count", "abc", NULL}, 2, err, sizeof err) !=
             QB_OK);
    QB_CHECK(strstr(err, "qb-test: --count expects an integer") == err);
    qb_opts_free(c.opts);
}

QB_TEST(strlist_helpers)
{
    qb_strlist l = {0};
    QB_CHECK_EQ_INT(qb_strlist_add(&l, "a"), QB_OK);
    QB_CHECK_EQ_INT(qb_strlist_add(&l, "b"), QB_OK);
    QB_CHECK_EQ_INT(l.n, 2);
    QB_CHECK(!l.from_default);
    static const char *const d[] = {"x"};
    QB_CHECK_EQ_INT(qb_strlist_set_default(&l, d, 1), QB_OK);
    QB_CHECK_EQ_INT(l.n, 1);
    QB_CHECK(l.from_default);
    QB_CHECK_EQ_STR(l.v[0], "x");
    qb_strlist_clear(&l);
    QB_CHECK(l.n == 0 && l.v == NULL);
    qb_strlist_clear(&l);
}

int main(void)
{
    return qb_test_run_all();
}
