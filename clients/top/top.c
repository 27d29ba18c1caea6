/*
 * top.c: quotebus-top, a terminal view, refreshed live, of each exchange's
 * best bid and ask for the symbols asked for, the consolidated best bid and
 * ask across exchanges, the spread, and the age of each exchange's last
 * update; books that are not live (syncing, resyncing, a feed state other
 * than live, or older than --stale-ms) are marked.
 *
 *   libquotebus mirror (own thread, book.*) --qb_mirror_list--> [main thread: draw every
 *                                                                --interval-ms, read keys]
 *
 * The screen is plain ANSI (alternate screen, cursor home, clear to end of
 * line): no curses, works in any terminal and under tmux. The terminal is
 * put in raw mode (termios: no echo, no line buffering; signals kept) when
 * stdin is a terminal and restored on every exit path, including SIGINT,
 * SIGTERM and SIGHUP. q or Ctrl-C quits.
 *
 * Single-threaded apart from the mirror's thread; prices are qb_decimal
 * throughout (the spread is an exact decimal subtraction).
 */
#include "quotebus.h"

#include "opts.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define TOP_MAX_BOOKS 4096

static const qb_prog top_prog = {
    .name = "quotebus-top",
    .usage = "[OPTIONS] [SYMBOL...]",
    .summary =
        "A live terminal view of quotebus books: for each symbol, every exchange's best bid\n"
        "and ask with sizes, the spread, the age of the last update and the book's state,\n"
        "and the consolidated best bid and ask across exchanges. SYMBOL is a normalized\n"
        "symbol (BTC-USDT) or a base currency (BTC: every BTC-* book); none: every book.\n"
        "Books that are not live are marked with '!' (syncing, resyncing, a feed state\n"
        "other than live, or no update for --stale-ms). Keys: q or Ctrl-C quits.",
    .footer = "Examples:\n"
              "  quotebus-top BTC ETH\n"
              "  quotebus-top --connect tcp://127.0.0.1:7781 --snapshot tcp://127.0.0.1:7782 "
              "BTC-USDT\n"
              "\n"
              "Exit status: 0 on q, Ctrl-C, SIGTERM or --frames; 1 when the library cannot\n"
              "start; 2 on bad options.",
};

typedef struct top_opts {
    char *connect;
    char *snapshot;
    int64_t interval_ms;
    int64_t stale_ms;
    int64_t frames;
} top_opts;

static volatile sig_atomic_t top_stop;
static struct termios top_saved_tio;
static int top_raw; /* 1 while the terminal is in raw mode */
static int top_screen;

static void top_on_signal(int sig)
{
    top_stop = sig;
}

static void top_restore(void)
{
    if (top_screen) {
        /* Show the cursor, leave the alternate screen. */
        fputs("\x1b[?25h\x1b[?1049l", stdout);
        fflush(stdout);
        top_screen = 0;
    }
    if (top_raw) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &top_saved_tio);
        top_raw = 0;
    }
}

static void top_enter(void)
{
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &top_saved_tio) == 0) {
        struct termios t = top_saved_tio;
        t.c_lflag &= ~(tcflag_t)(ICANON | ECHO); /* keep ISIG: Ctrl-C is SIGINT */
        t.c_cc[VMIN] = 0;
        t.c_cc[VTIME] = 0;
        if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) == 0) {
            top_raw = 1;
        }
    }
    if (isatty(STDOUT_FILENO)) {
        fputs("\x1b[?1049h\x1b[?25l", stdout);
        top_screen = 1;
    }
    atexit(top_restore);
}

/* Exact a - b (for the spread), via 128-bit mantissas at the larger scale.
 * Returns 0 on success, -1 when it does not fit. */
static int top_sub(qb_decimal a, qb_decimal b, qb_decimal *out)
{
    int scale = a.scale > b.scale ? a.scale : b.scale;
    __int128 ma = a.mantissa, mb = b.mantissa;
    for (int i = a.scale; i < scale; i++) {
        ma *= 10;
    }
    for (int i = b.scale; i < scale; i++) {
        mb *= 10;
    }
    __int128 d = ma - mb;
    if (d > INT64_MAX || d < -INT64_MAX) {
        return -1;
    }
    out->mantissa = (int64_t)d;
    out->scale = (int8_t)scale;
    return 0;
}

static void top_fmt(char *buf, size_t cap, const qb_decimal *d)
{
    if (d == NULL || qb_decimal_format(*d, buf, cap) < 0) {
        snprintf(buf, cap, "-");
    }
}

static bool top_matches(const qb_book_info *b, char **syms, int nsyms)
{
    if (nsyms == 0) {
        return true;
    }
    for (int i = 0; i < nsyms; i++) {
        size_t n = strlen(syms[i]);
        if (strcmp(b->symbol, syms[i]) == 0 ||
            (strncmp(b->symbol, syms[i], n) == 0 && b->symbol[n] == '-')) {
            return true;
        }
    }
    return false;
}

static int top_cmp(const void *pa, const void *pb)
{
    const qb_book_info *a = pa, *b = pb;
    int c = strcmp(a->symbol, b->symbol);
    return c != 0 ? c : strcmp(a->exchange, b->exchange);
}

/* Why a book is not trustworthy right now, or NULL when it is live. */
static const char *top_mark(const qb_book_info *b, int64_t stale_ms)
{
    if (b->state != QB_MIRROR_LIVE) {
        return qb_mirror_state_name(b->state);
    }
    if (b->has_status && b->status != QB_STATUS_LIVE) {
        return qb_feed_status_name(b->status);
    }
    if (stale_ms > 0 && b->age_ms > (uint64_t)stale_ms) {
        return "stale";
    }
    return NULL;
}

static void top_age(char *buf, size_t cap, uint64_t ms)
{
    if (ms < 10000) {
        snprintf(buf, cap, "%llums", (unsigned long long)ms);
    } else if (ms < 600000) {
        snprintf(buf, cap, "%llus", (unsigned long long)(ms / 1000));
    } else {
        snprintf(buf, cap, "%llum", (unsigned long long)(ms / 60000));
    }
}

#define TOP_ROW "  %-10s %16s %16s %16s %16s %14s %7s  %s"

static void top_draw(qb_mirror *m, const top_opts *o, char **syms, int nsyms, qb_book_info *all)
{
    size_t total = qb_mirror_list(m, all, TOP_MAX_BOOKS);
    size_t n = total < TOP_MAX_BOOKS ? total : TOP_MAX_BOOKS, k = 0, live = 0;
    for (size_t i = 0; i < n; i++) {
        live += all[i].state == QB_MIRROR_LIVE;
        if (top_matches(&all[i], syms, nsyms)) {
            all[k++] = all[i];
        }
    }
    qsort(all, k, sizeof *all, top_cmp);
    time_t now = time(NULL);
    struct tm tm;
    char clock[16];
    gmtime_r(&now, &tm);
    strftime(clock, sizeof clock, "%H:%M:%S", &tm);
    const char *eol = top_screen ? "\x1b[K\n" : "\n";
    if (top_screen) {
        fputs("\x1b[H", stdout);
    }
    printf("quotebus-top  %s  books %zu  live %zu  %s UTC  (q quits)%s", o->connect, total, live,
           clock, eol);
    if (k == 0) {
        printf("%s  waiting for books%s%s", eol, nsyms ? " of the symbols asked for" : "", eol);
    }
    char b1[QB_DECIMAL_STR_MAX], b2[QB_DECIMAL_STR_MAX], b3[QB_DECIMAL_STR_MAX],
        b4[QB_DECIMAL_STR_MAX], b5[QB_DECIMAL_STR_MAX], age[32];
    for (size_t i = 0; i < k;) {
        size_t j = i;
        const qb_book_info *best_bid = NULL, *best_ask = NULL;
        printf("%s%s%s", eol, all[i].symbol, eol);
        printf(TOP_ROW "%s", "EXCHANGE", "BID SIZE", "BID", "ASK", "ASK SIZE", "SPREAD", "AGE",
               "STATE", eol);
        for (; j < k && strcmp(all[j].symbol, all[i].symbol) == 0; j++) {
            const qb_book_info *b = &all[j];
            const char *mark = top_mark(b, o->stale_ms);
            qb_decimal spread;
            bool has_spread = b->has_bid && b->has_ask &&
                              top_sub(b->best_ask.price, b->best_bid.price, &spread) == 0;
            top_fmt(b1, sizeof b1, b->has_bid ? &b->best_bid.size : NULL);
            top_fmt(b2, sizeof b2, b->has_bid ? &b->best_bid.price : NULL);
            top_fmt(b3, sizeof b3, b->has_ask ? &b->best_ask.price : NULL);
            top_fmt(b4, sizeof b4, b->has_ask ? &b->best_ask.size : NULL);
            top_fmt(b5, sizeof b5, has_spread ? &spread : NULL);
            top_age(age, sizeof age, b->age_ms);
            char state[48];
            snprintf(state, sizeof state, "%s%s", mark ? "!" : "", mark ? mark : "live");
            printf(TOP_ROW "%s", b->exchange, b1, b2, b3, b4, b5, age, state, eol);
            if (mark != NULL) {
                continue; /* not trusted: left out of the consolidated quote */
            }
            if (b->has_bid && (best_bid == NULL ||
                               qb_decimal_cmp(b->best_bid.price, best_bid->best_bid.price) > 0)) {
                best_bid = b;
            }
            if (b->has_ask && (best_ask == NULL ||
                               qb_decimal_cmp(b->best_ask.price, best_ask->best_ask.price) < 0)) {
                best_ask = b;
            }
        }
        qb_decimal spread;
        bool has_spread = best_bid && best_ask &&
                          top_sub(best_ask->best_ask.price, best_bid->best_bid.price, &spread) == 0;
        top_fmt(b2, sizeof b2, best_bid ? &best_bid->best_bid.price : NULL);
        top_fmt(b3, sizeof b3, best_ask ? &best_ask->best_ask.price : NULL);
        top_fmt(b5, sizeof b5, has_spread ? &spread : NULL);
        /* The consolidated quote: the bid and ask columns hold the best
         * prices across live exchanges, the size columns say where they are. */
        printf(TOP_ROW "%s", "BEST", best_bid ? best_bid->exchange : "-", b2, b3,
               best_ask ? best_ask->exchange : "-", b5, "-", has_spread ? "consolidated" : "-",
               eol);
        i = j;
    }
    if (top_screen) {
        fputs("\x1b[J", stdout);
    } else {
        fputs("--\n", stdout);
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    top_opts o = {.interval_ms = 250, .stale_ms = 5000};
    const qb_opt table[] = {
        {"connect", QB_OPT_STR, &o.connect, "ADDR",
         "the broker's publish address [" QB_DEFAULT_PUB_URL "]"},
        {"snapshot", QB_OPT_STR, &o.snapshot, "ADDR",
         "the broker's snapshot service; \"\" for none [" QB_DEFAULT_SNAPSHOT_URL "]"},
        {"interval-ms", QB_OPT_INT, &o.interval_ms, "MS", "screen refresh period"},
        {"stale-ms", QB_OPT_INT, &o.stale_ms, "MS",
         "mark a book stale after MS without an update (0: never)"},
        {"frames", QB_OPT_INT, &o.frames, "N", "exit after drawing N screens (0: never)"},
        {0},
    };
    int first = 0;
    int rc = qb_opts_parse(&top_prog, table, argc, argv, &first);
    if (rc != QB_OK) {
        qb_opts_free(table);
        return rc == QB_EEOF ? 0 : 2;
    }
    if (o.interval_ms < 10 || o.interval_ms > 60000 || o.stale_ms < 0 || o.frames < 0) {
        fprintf(stderr, "quotebus-top: --interval-ms must be 10..60000, --stale-ms and --frames "
                        ">= 0\n");
        qb_opts_free(table);
        return 2;
    }
    if (o.connect == NULL) {
        o.connect = strdup(QB_DEFAULT_PUB_URL);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = top_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    const char *topics[] = {"book."};
    qb_mirror_config cfg = {
        .connect = o.connect,
        .snapshot = o.snapshot, /* NULL: default */
        .topics = topics,
        .n_topics = 1,
    };
    qb_mirror *m = NULL;
    rc = qb_mirror_open(&cfg, &m);
    if (rc != QB_OK) {
        fprintf(stderr, "quotebus-top: cannot start: %s\n", qb_strerror(rc));
        qb_opts_free(table);
        return rc == QB_EINVAL ? 2 : 1;
    }
    qb_book_info *all = malloc(TOP_MAX_BOOKS * sizeof *all);
    if (all == NULL) {
        qb_mirror_close(m);
        qb_opts_free(table);
        return 1;
    }
    top_enter();
    int64_t frames = 0;
    while (!top_stop) {
        top_draw(m, &o, argv + first, argc - first, all);
        if (o.frames > 0 && ++frames >= o.frames) {
            break;
        }
        struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
        int pr = poll(&p, top_raw ? 1 : 0, (int)o.interval_ms);
        if (pr > 0 && (p.revents & POLLIN)) {
            char keys[64];
            ssize_t n = read(STDIN_FILENO, keys, sizeof keys);
            for (ssize_t i = 0; i < n; i++) {
                if (keys[i] == 'q' || keys[i] == 'Q' || keys[i] == 3 /* ^C without ISIG */) {
                    top_stop = 1;
                }
            }
        }
    }
    top_restore();
    qb_mirror_close(m);
    free(all);
    qb_opts_free(table);
    return 0;
}
