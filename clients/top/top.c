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
 *
 * Numbers: each book is shown at its own fixed precision. No quotebus
 * message carries an instrument's tick or lot size, so top learns them as
 * the most significant decimals seen in the book's prices and in its sizes
 * (the best levels and the top TOP_PREC_LEVELS of each side, every frame;
 * Binance's "60036.66000000" has 2), kept per book and never decreasing
 * (top_prec). A value is then written with exactly that many decimals,
 * which only adds or drops zeros. Within one symbol's block the numeric
 * columns are padded on the right so that their points line up even when
 * two exchanges quote the pair at different precisions.
 *
 * The BEST row is the consolidated quote over the live books; when its bid
 * reaches its ask (one exchange bids at or above another's ask: an
 * arbitrage, or a feed that is wrong) the row's state says "!crossed", as
 * the web page's note does. Its own log lines (--log-level; default warn,
 * since the screen and stderr usually share a terminal) say when a symbol's
 * consolidated quote becomes crossed and when it uncrosses.
 */
#include "quotebus.h"

#include "log.h"
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
        "other than live, or no update for --stale-ms); a consolidated quote whose best bid\n"
        "reaches its best ask (across exchanges) is marked '!crossed'. Each book's prices and\n"
        "sizes are shown at its own precision (the most decimals it has shown), aligned at\n"
        "the point. When stdout is not a terminal, each screen is printed as plain lines,\n"
        "ending with \"--\". Keys: q or Ctrl-C quits.",
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
    char *log_level;
} top_opts;

/* Levels per side read to learn a book's precision. */
#define TOP_PREC_LEVELS 20

/* One book's display precision: the most significant decimals seen in its
 * prices (px) and sizes (qty). Indexed like qb_mirror_list's output, which
 * keeps the order books were first seen; topic says whose it is. */
typedef struct top_prec {
    char topic[QB_TOPIC_MAX_LEN + 1];
    int px, qty;
} top_prec;

/* One row of the screen: a book and its precision. */
typedef struct top_row {
    const qb_book_info *b;
    const top_prec *prec;
} top_row;

/* Symbols whose consolidated quote is crossed now (for the log lines on a
 * change); at most TOP_MAX_CROSSED are remembered. */
#define TOP_MAX_CROSSED 64
static char top_crossed[TOP_MAX_CROSSED][QB_NAME_MAX_LEN + 1];
static int top_ncrossed;

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

/* Significant decimals of d: trailing zeros of the fraction do not count
 * ({6003666000000, 8}, 60036.66000000, has 2). */
static int top_digits(qb_decimal d)
{
    int scale = d.scale;
    int64_t m = d.mantissa;
    while (scale > 0 && m % 10 == 0) {
        m /= 10;
        scale--;
    }
    return scale > 0 ? scale : 0;
}

static void top_see(int *most, qb_decimal d)
{
    int n = top_digits(d);
    if (n > *most) {
        *most = n;
    }
}

/* Writes d with exactly `scale` decimals ("-" for NULL). Only zeros are
 * added or dropped; a value with more significant decimals than scale keeps
 * them all. */
static void top_fmt(char *buf, size_t cap, const qb_decimal *d, int scale)
{
    char text[QB_DECIMAL_STR_MAX];
    if (d == NULL || qb_decimal_format(*d, text, sizeof text) < 0) {
        snprintf(buf, cap, "-");
        return;
    }
    char *dot = strchr(text, '.');
    const char *frac = dot ? dot + 1 : "";
    if (dot) {
        *dot = '\0';
    }
    int nf = (int)strlen(frac);
    while (nf > scale && frac[nf - 1] == '0') {
        nf--;
    }
    int zeros = scale > nf ? scale - nf : 0;
    if (nf + zeros == 0) {
        snprintf(buf, cap, "%s", text);
    } else {
        snprintf(buf, cap, "%s.%.*s%.*s", text, nf, frac, zeros, "000000000000000000000000000000");
    }
}

/* Characters from the decimal point to the end of a number ("60036.66": 3,
 * "100": 0), or -1 when text is not a number ("-", an exchange name). */
static int top_tail(const char *text)
{
    const char *p = text;
    if (*p == '-') {
        p++;
    }
    if (*p < '0' || *p > '9') {
        return -1;
    }
    const char *dot = strchr(p, '.');
    return dot ? (int)strlen(dot) : 0;
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
    const qb_book_info *a = ((const top_row *)pa)->b, *b = ((const top_row *)pb)->b;
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

/* The five numeric columns of a row: BID SIZE, BID, ASK, ASK SIZE, SPREAD
 * (on the BEST row the size columns name the exchanges). */
#define TOP_COLS 5
typedef struct top_cells {
    char c[TOP_COLS][QB_DECIMAL_STR_MAX + 40];
} top_cells;

/* Learns the precision of the books in all[0..n) that are shown; prec is
 * parallel to all (qb_mirror_list keeps the order books were first seen). */
static void top_learn(qb_mirror *m, const qb_book_info *all, size_t n, top_prec *prec, char **syms,
                      int nsyms)
{
    qb_price_level lv[TOP_PREC_LEVELS];
    for (size_t i = 0; i < n; i++) {
        const qb_book_info *b = &all[i];
        top_prec *p = &prec[i];
        if (strcmp(p->topic, b->topic) != 0) {
            snprintf(p->topic, sizeof p->topic, "%s", b->topic);
            p->px = p->qty = 0;
        }
        if (!top_matches(b, syms, nsyms)) {
            continue;
        }
        if (b->has_bid) {
            top_see(&p->px, b->best_bid.price);
            top_see(&p->qty, b->best_bid.size);
        }
        if (b->has_ask) {
            top_see(&p->px, b->best_ask.price);
            top_see(&p->qty, b->best_ask.size);
        }
        for (int side = 0; side < 2; side++) {
            size_t got = 0;
            if (qb_mirror_levels(m, b->topic, side ? QB_ASKS : QB_BIDS, lv, TOP_PREC_LEVELS, &got,
                                 NULL) != QB_OK) {
                continue;
            }
            for (size_t j = 0; j < got; j++) {
                top_see(&p->px, lv[j].price);
                top_see(&p->qty, lv[j].size);
            }
        }
    }
}

/* Remembers whether sym's consolidated quote is crossed; returns true when
 * that changed. */
static bool top_crossed_changed(const char *sym, bool crossed)
{
    for (int i = 0; i < top_ncrossed; i++) {
        if (strcmp(top_crossed[i], sym) == 0) {
            if (!crossed) {
                top_ncrossed--;
                memcpy(top_crossed[i], top_crossed[top_ncrossed], sizeof top_crossed[i]);
                return true;
            }
            return false;
        }
    }
    if (crossed && top_ncrossed < TOP_MAX_CROSSED) {
        snprintf(top_crossed[top_ncrossed++], sizeof top_crossed[0], "%s", sym);
        return true;
    }
    return false;
}

/* Pads the numbers of column col (rows[0..n)) on the right with spaces so
 * that, right aligned, their decimal points line up. */
static void top_align(top_cells *cells, size_t n, int col)
{
    int most = 0;
    for (size_t i = 0; i < n; i++) {
        int t = top_tail(cells[i].c[col]);
        most = t > most ? t : most;
    }
    for (size_t i = 0; i < n; i++) {
        char *c = cells[i].c[col];
        int t = top_tail(c);
        size_t len = strlen(c);
        for (int pad = t < 0 ? 0 : most - t; pad > 0 && len + 1 < sizeof cells[i].c[col]; pad--) {
            c[len++] = ' ';
        }
        c[len] = '\0';
    }
}

/* Draws one symbol's block: its books (rows[0..n), one symbol) and the
 * consolidated BEST row. cells has room for n + 1 rows. */
static void top_block(const top_row *rows, size_t n, const top_opts *o, top_cells *cells,
                      const char *eol)
{
    const char *sym = rows[0].b->symbol;
    const top_row *best_bid = NULL, *best_ask = NULL;
    char age[32], state[48];
    for (size_t i = 0; i < n; i++) {
        const qb_book_info *b = rows[i].b;
        const top_prec *p = rows[i].prec;
        qb_decimal spread;
        bool has_spread =
            b->has_bid && b->has_ask && top_sub(b->best_ask.price, b->best_bid.price, &spread) == 0;
        top_fmt(cells[i].c[0], sizeof cells[i].c[0], b->has_bid ? &b->best_bid.size : NULL, p->qty);
        top_fmt(cells[i].c[1], sizeof cells[i].c[1], b->has_bid ? &b->best_bid.price : NULL, p->px);
        top_fmt(cells[i].c[2], sizeof cells[i].c[2], b->has_ask ? &b->best_ask.price : NULL, p->px);
        top_fmt(cells[i].c[3], sizeof cells[i].c[3], b->has_ask ? &b->best_ask.size : NULL, p->qty);
        top_fmt(cells[i].c[4], sizeof cells[i].c[4], has_spread ? &spread : NULL, p->px);
        if (top_mark(b, o->stale_ms) != NULL) {
            continue; /* not trusted: left out of the consolidated quote */
        }
        if (b->has_bid && (best_bid == NULL ||
                           qb_decimal_cmp(b->best_bid.price, best_bid->b->best_bid.price) > 0)) {
            best_bid = &rows[i];
        }
        if (b->has_ask && (best_ask == NULL ||
                           qb_decimal_cmp(b->best_ask.price, best_ask->b->best_ask.price) < 0)) {
            best_ask = &rows[i];
        }
    }
    /* The consolidated quote: the bid and ask columns hold the best prices
     * across live exchanges, the size columns say where they are. */
    qb_decimal spread;
    bool has_spread =
        best_bid && best_ask &&
        top_sub(best_ask->b->best_ask.price, best_bid->b->best_bid.price, &spread) == 0;
    bool crossed = best_bid && best_ask &&
                   qb_decimal_cmp(best_bid->b->best_bid.price, best_ask->b->best_ask.price) >= 0;
    int spread_scale = 0;
    if (best_bid && best_ask) {
        spread_scale =
            best_bid->prec->px > best_ask->prec->px ? best_bid->prec->px : best_ask->prec->px;
    }
    top_cells *bc = &cells[n];
    snprintf(bc->c[0], sizeof bc->c[0], "%s", best_bid ? best_bid->b->exchange : "-");
    top_fmt(bc->c[1], sizeof bc->c[1], best_bid ? &best_bid->b->best_bid.price : NULL,
            best_bid ? best_bid->prec->px : 0);
    top_fmt(bc->c[2], sizeof bc->c[2], best_ask ? &best_ask->b->best_ask.price : NULL,
            best_ask ? best_ask->prec->px : 0);
    snprintf(bc->c[3], sizeof bc->c[3], "%s", best_ask ? best_ask->b->exchange : "-");
    top_fmt(bc->c[4], sizeof bc->c[4], has_spread ? &spread : NULL, spread_scale);
    for (int col = 0; col < TOP_COLS; col++) {
        top_align(cells, n + 1, col);
    }

    printf("%s%s%s", eol, sym, eol);
    printf(TOP_ROW "%s", "EXCHANGE", "BID SIZE", "BID", "ASK", "ASK SIZE", "SPREAD", "AGE", "STATE",
           eol);
    for (size_t i = 0; i < n; i++) {
        const qb_book_info *b = rows[i].b;
        const char *mark = top_mark(b, o->stale_ms);
        top_age(age, sizeof age, b->age_ms);
        snprintf(state, sizeof state, "%s%s", mark ? "!" : "", mark ? mark : "live");
        printf(TOP_ROW "%s", b->exchange, cells[i].c[0], cells[i].c[1], cells[i].c[2],
               cells[i].c[3], cells[i].c[4], age, state, eol);
    }
    printf(TOP_ROW "%s", "BEST", bc->c[0], bc->c[1], bc->c[2], bc->c[3], bc->c[4], "-",
           crossed      ? "!crossed"
           : has_spread ? "consolidated"
                        : "-",
           eol);
    if (top_crossed_changed(sym, crossed)) {
        if (crossed) {
            QB_INFO("top.crossed", "sym=%s bid=%s@%s ask=%s@%s", sym, best_bid->b->exchange,
                    bc->c[1], best_ask->b->exchange, bc->c[2]);
        } else {
            QB_INFO("top.uncrossed", "sym=%s", sym);
        }
    }
}

static void top_draw(qb_mirror *m, const top_opts *o, char **syms, int nsyms, qb_book_info *all,
                     top_prec *prec, top_row *rows, top_cells *cells)
{
    size_t total = qb_mirror_list(m, all, TOP_MAX_BOOKS);
    size_t n = total < TOP_MAX_BOOKS ? total : TOP_MAX_BOOKS, k = 0, live = 0;
    top_learn(m, all, n, prec, syms, nsyms);
    for (size_t i = 0; i < n; i++) {
        live += all[i].state == QB_MIRROR_LIVE;
        if (top_matches(&all[i], syms, nsyms)) {
            rows[k++] = (top_row){.b = &all[i], .prec = &prec[i]};
        }
    }
    qsort(rows, k, sizeof *rows, top_cmp);
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
    for (size_t i = 0; i < k;) {
        size_t j = i;
        while (j < k && strcmp(rows[j].b->symbol, rows[i].b->symbol) == 0) {
            j++;
        }
        top_block(rows + i, j - i, o, cells, eol);
        i = j;
    }
    QB_DEBUG("top.frame", "books=%zu live=%zu shown=%zu", total, live, k);
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
         "the broker's publish address" QB_OPT_DEFAULT(QB_DEFAULT_PUB_URL)},
        {"snapshot", QB_OPT_STR, &o.snapshot, "ADDR",
         "the broker's snapshot service; \"\" for none" QB_OPT_DEFAULT(QB_DEFAULT_SNAPSHOT_URL)},
        {"interval-ms", QB_OPT_INT, &o.interval_ms, "MS", "screen refresh period"},
        {"stale-ms", QB_OPT_INT, &o.stale_ms, "MS",
         "mark a book stale after MS without an update (0: never)"},
        {"frames", QB_OPT_INT, &o.frames, "N", "exit after drawing N screens (0: never)"},
        {"log-level", QB_OPT_STR, &o.log_level, "LEVEL",
         "error, warn, info or debug, for quotebus-top's own lines on stderr (warn because "
         "the screen usually shares the terminal; info says when a consolidated quote "
         "crosses)" QB_OPT_DEFAULT("warn")},
        {0},
    };
    qb_log_set_component("top");
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
    qb_log_level lvl = QB_LOG_WARN;
    if (o.log_level != NULL && qb_log_level_parse(o.log_level, &lvl) != QB_OK) {
        fprintf(stderr, "quotebus-top: --log-level must be error, warn, info or debug\n");
        qb_opts_free(table);
        return 2;
    }
    qb_log_set_level(lvl);
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
    top_prec *prec = calloc(TOP_MAX_BOOKS, sizeof *prec);
    top_row *rows = malloc(TOP_MAX_BOOKS * sizeof *rows);
    top_cells *cells = malloc((TOP_MAX_BOOKS + 1) * sizeof *cells);
    if (all == NULL || prec == NULL || rows == NULL || cells == NULL) {
        free(all);
        free(prec);
        free(rows);
        free(cells);
        qb_mirror_close(m);
        qb_opts_free(table);
        return 1;
    }
    QB_INFO("top.started", "connect=%s snapshot=%s symbols=%d", o.connect,
            o.snapshot ? o.snapshot : "(default)", argc - first);
    top_enter();
    int64_t frames = 0;
    while (!top_stop) {
        top_draw(m, &o, argv + first, argc - first, all, prec, rows, cells);
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
    free(prec);
    free(rows);
    free(cells);
    qb_opts_free(table);
    return 0;
}
