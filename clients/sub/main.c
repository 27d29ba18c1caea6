/*
 * main.c: quotebus-sub, the command-line subscriber. Dials the broker's
 * publish socket with an NNG SUB socket, subscribes to the topic prefixes
 * given, decodes every frame (proto/msg.h) and prints each message as one
 * JSON line (qb_msg_to_json; format in proto/PROTOCOL.md). Output is
 * flushed whenever no further frame is waiting, so a line is never held
 * back (`quotebus-sub book.binance. | jq` works) while a burst of messages
 * costs one write instead of one per line.
 *
 *   broker PUB --NNG--> [SUB socket, RECVBUF --recv-buf] --> decode --> seq check --> stdout
 *                                                                         |
 *                                                              gaps: one line on stderr
 *
 * Sequence check per topic: after the first message seen on a topic, a
 * delta, trade, status or ticker whose seq is not last + 1 is reported on
 * stderr ("gap on TOPIC: expected X got Y (N missed)") and becomes the new
 * last; a snapshot rebases silently (a refresh snapshot repeats the last
 * seq). The table of topics is bounded (SUB_MAX_TOPICS; past it, topics are
 * printed but not checked). Invalid frames are counted and reported on
 * stderr, rate-limited; the subscriber goes on.
 *
 * Single-threaded (NNG's own threads aside). SIGINT/SIGTERM set a flag seen
 * within 100 ms (the receive timeout); a closed stdout (EPIPE) ends the
 * program normally. Everything is freed on exit.
 */
#include "clock.h"
#include "book.h"
#include "dialer.h"
#include "nngtls.h"
#include "err.h"
#include "log.h"
#include "nngrecv.h"
#include "msg.h"
#include "nngclose.h"
#include "opts.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SUB_TICK_MS 100
#define SUB_MAX_TOPICS 100000
#define SUB_STATS_INTERVAL_MS 500
#define SUB_CLOSE_MS 1000

static const qb_prog sub_prog = {
    .name = "quotebus-sub",
    .usage = "[OPTIONS] TOPIC_PREFIX...",
    .summary =
        "Subscribes to a quotebus broker and prints every message as one line of JSON, prices\n"
        "and sizes as exact decimal strings. Each TOPIC_PREFIX selects topics:\n"
        "  book.                    every book (snapshots and deltas) of every exchange\n"
        "  book.binance.            every Binance book   (an argument ending in '.' is a prefix)\n"
        "  book.binance.BTC-USDT    exactly that instrument (two dots, no trailing '.'):\n"
        "                           never BTC-USDTX\n"
        "  trade. status. ticker.   trades, feed states, tickers; anything else is a raw prefix\n"
        "Sequence gaps (messages missed, e.g. by a slow reader) are reported on stderr; books\n"
        "heal by themselves from the refresh snapshot each instrument gets every second.",
    .footer = "Examples:\n"
              "  quotebus-sub book.binance. | jq .\n"
              "  quotebus-sub --count 10 book.binance.BTC-USDT trade.binance.BTC-USDT\n"
              "  quotebus-sub --connect tcp://127.0.0.1:7781 status.\n"
              "  quotebus-sub --timeout-ms 5000 book. > books.jsonl\n"
              "\n"
              "Exit status: 0 on --count/--timeout-ms/--duration-ms, SIGINT, SIGTERM or a closed\n"
              "stdout; 1 when the socket cannot be set up; 2 on bad options.",
};

typedef struct sub_opts {
    char *connect;
    char *tls_ca, *tls_cert, *tls_key; /* tls+tcp:// --connect (nngtls.h) */
    char *book;
    char *snapshot;
    int64_t depth;
    int64_t count;
    int64_t timeout_ms;
    int64_t duration_ms;
    int64_t pause_ms;
    int64_t recv_buf;
    char *stats_file;
    char *log_level;
} sub_opts;

/* Last seq per topic: open addressing, linear probing, topics copied in. */
typedef struct sub_topic {
    uint64_t hash;
    uint64_t last_seq;
    uint32_t pipe; /* NNG pipe of the last message (a new one: reconnected) */
    size_t len;
    char topic[]; /* len bytes and a NUL */
} sub_topic;

typedef struct sub_seqs {
    sub_topic **slots;
    size_t cap;
    size_t count;
} sub_seqs;

typedef struct sub_counters {
    uint64_t frames;
    uint64_t messages;
    uint64_t invalid;
    uint64_t gaps;
    uint64_t missed;
    uint64_t out_of_order;
} sub_counters;

static volatile sig_atomic_t sub_stop_sig;

static void sub_on_signal(int sig)
{
    sub_stop_sig = sig;
}

static uint64_t sub_hash(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void sub_seqs_fini(sub_seqs *s)
{
    for (size_t i = 0; i < s->cap; i++) {
        free(s->slots[i]);
    }
    free(s->slots);
    s->slots = NULL;
    s->cap = s->count = 0;
}

static size_t sub_seqs_probe(sub_topic **slots, size_t cap, const char *p, size_t n, uint64_t h)
{
    size_t i = (size_t)h & (cap - 1);
    while (slots[i] != NULL &&
           !(slots[i]->hash == h && slots[i]->len == n && memcmp(slots[i]->topic, p, n) == 0)) {
        i = (i + 1) & (cap - 1);
    }
    return i;
}

/* The topic's entry, created on first sight (*created); NULL when the
 * table is full or memory is short (the topic then goes unchecked). */
static sub_topic *sub_seqs_get(sub_seqs *s, qb_str topic, bool *created)
{
    uint64_t h = sub_hash(topic.p, topic.n);
    *created = false;
    if (s->cap > 0) {
        size_t i = sub_seqs_probe(s->slots, s->cap, topic.p, topic.n, h);
        if (s->slots[i] != NULL) {
            return s->slots[i];
        }
    }
    if (s->count >= SUB_MAX_TOPICS) {
        return NULL;
    }
    if ((s->count + 1) * 2 > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 64;
        sub_topic **ns = calloc(ncap, sizeof *ns);
        if (ns == NULL) {
            return NULL;
        }
        for (size_t i = 0; i < s->cap; i++) {
            if (s->slots[i] != NULL) {
                ns[sub_seqs_probe(ns, ncap, s->slots[i]->topic, s->slots[i]->len,
                                  s->slots[i]->hash)] = s->slots[i];
            }
        }
        free(s->slots);
        s->slots = ns;
        s->cap = ncap;
    }
    sub_topic *e = calloc(1, sizeof *e + topic.n + 1);
    if (e == NULL) {
        return NULL;
    }
    e->hash = h;
    e->len = topic.n;
    memcpy(e->topic, topic.p, topic.n);
    s->slots[sub_seqs_probe(s->slots, s->cap, topic.p, topic.n, h)] = e;
    s->count++;
    *created = true;
    return e;
}

static void sub_check_seq(sub_seqs *seqs, sub_counters *c, qb_str topic, const qb_msg *m,
                          uint32_t pipe)
{
    bool created;
    sub_topic *e = sub_seqs_get(seqs, topic, &created);
    if (e == NULL) {
        return;
    }
    if (!created && m->type != QB_MSG_SNAPSHOT && m->seq != e->last_seq + 1) {
        uint64_t want = e->last_seq + 1;
        if (m->seq > want) {
            c->gaps++;
            c->missed += m->seq - want;
            fprintf(stderr, "quotebus-sub: gap on %.*s: expected %llu got %llu (%llu missed; %s)\n",
                    (int)topic.n, topic.p, (unsigned long long)want, (unsigned long long)m->seq,
                    (unsigned long long)(m->seq - want),
                    e->pipe != pipe ? "after a reconnect to the broker: messages sent while "
                                      "disconnected are lost"
                                    : "same connection: lost before the broker (see its "
                                      "ingest_gaps) or in a full receive buffer");
        } else {
            c->out_of_order++;
            fprintf(stderr,
                    "quotebus-sub: out of order on %.*s: expected %llu got %llu (duplicate, old "
                    "or restarted publisher)\n",
                    (int)topic.n, topic.p, (unsigned long long)want, (unsigned long long)m->seq);
        }
    }
    e->last_seq = m->seq;
    e->pipe = pipe;
}

/* Builds the NNG subscription for one argument (see the help text). */
static int sub_subscribe(nng_socket s, const char *arg)
{
    size_t n = strlen(arg);
    size_t dots = 0;
    for (size_t i = 0; i < n; i++) {
        dots += arg[i] == '.';
    }
    if (n > QB_TOPIC_MAX) {
        fprintf(stderr, "quotebus-sub: topic prefix longer than %d bytes: %s\n", QB_TOPIC_MAX, arg);
        return QB_EINVAL;
    }
    /* An exact topic includes its NUL terminator, so BTC-USDT never
     * matches BTC-USDTX. */
    size_t len = (dots == 2 && arg[n - 1] != '.') ? n + 1 : n;
    int rv = nng_socket_set(s, NNG_OPT_SUB_SUBSCRIBE, arg, len);
    if (rv != 0) {
        fprintf(stderr, "quotebus-sub: subscribe %s: %s\n", arg, nng_strerror(rv));
        return QB_ETRANSPORT;
    }
    return QB_OK;
}

static void sub_write_stats(const char *path, const sub_counters *c)
{
    if (path == NULL) {
        return;
    }
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        return;
    }
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        return;
    }
    fprintf(f,
            "{\"frames\": %llu, \"messages\": %llu, \"invalid\": %llu, \"gaps\": %llu, "
            "\"missed\": %llu, \"out_of_order\": %llu}\n",
            (unsigned long long)c->frames, (unsigned long long)c->messages,
            (unsigned long long)c->invalid, (unsigned long long)c->gaps,
            (unsigned long long)c->missed, (unsigned long long)c->out_of_order);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        remove(tmp);
    }
}

static void sub_sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t sub_now_ms(void)
{
    return qb_mono_ns() / 1000000u;
}

static int sub_parse(sub_opts *o, const qb_opt *table, int argc, char **argv, int *first)
{
    int rc = qb_opts_parse(&sub_prog, table, argc, argv, first);
    if (rc != QB_OK) {
        return rc;
    }
    if (o->book != NULL && *first < argc) {
        fprintf(stderr, "quotebus-sub: --book TOPIC takes no TOPIC_PREFIX arguments\n");
        return QB_EINVAL;
    }
    if (*first >= argc && o->book == NULL) {
        fprintf(stderr, "quotebus-sub: give at least one TOPIC_PREFIX, e.g. book. (see --help)\n");
        return QB_EINVAL;
    }
    for (int i = *first; i < argc; i++) {
        if (argv[i][0] == '-') {
            fprintf(stderr,
                    "quotebus-sub: '%s' is not a topic prefix (put options before the "
                    "topics; see --help)\n",
                    argv[i]);
            return QB_EINVAL;
        }
        if (argv[i][0] == '\0') {
            fprintf(stderr, "quotebus-sub: an empty TOPIC_PREFIX is not allowed; use book., "
                            "trade., status. or ticker. to select a kind\n");
            return QB_EINVAL;
        }
    }
    if (o->count < 0 || o->timeout_ms < 0 || o->duration_ms < 0 || o->pause_ms < 0) {
        fprintf(stderr, "quotebus-sub: --count, --timeout-ms, --duration-ms and --pause-ms "
                        "must not be negative\n");
        return QB_EINVAL;
    }
    if (o->recv_buf < 1 || o->recv_buf > 8192) {
        fprintf(stderr, "quotebus-sub: --recv-buf must be 1..8192 (NNG's limit)\n");
        return QB_EINVAL;
    }
    if (o->log_level != NULL) {
        qb_log_level lvl;
        if (qb_log_level_parse(o->log_level, &lvl) != QB_OK) {
            fprintf(stderr, "quotebus-sub: --log-level must be error, warn, info or debug\n");
            return QB_EINVAL;
        }
        qb_log_set_level(lvl);
    }
    return QB_OK;
}

static void sub_stdout_failed(void)
{
    if (errno != EPIPE) {
        QB_ERROR("sub.stdout_failed", "%s", strerror(errno));
    }
}

/* Prints the messages of one frame. Returns false when output must stop
 * (stdout closed or --count reached). */
static bool sub_frame(nng_msg *msg, qb_decoder *dec, sub_seqs *seqs, sub_counters *c, qb_buf *line,
                      const sub_opts *o)
{
    qb_str topic;
    qb_msg m;
    c->frames++;
    int rc = qb_decoder_begin(dec, nng_msg_body(msg), nng_msg_len(msg), &topic);
    while (rc == QB_OK) {
        rc = qb_decoder_next(dec, &m);
        if (rc != QB_OK) {
            break;
        }
        sub_check_seq(seqs, c, topic, &m, (uint32_t)nng_pipe_id(nng_msg_get_pipe(msg)));
        qb_buf_reset(line);
        if (qb_msg_to_json(&m, line) != QB_OK || qb_buf_append(line, "\n", 1) != QB_OK) {
            QB_LOG_RL(QB_LOG_WARN, "sub.json_failed", "topic=%.*s seq=%llu: cannot format",
                      (int)topic.n, topic.p, (unsigned long long)m.seq);
            continue;
        }
        /* Flushed by the caller as soon as no further frame is waiting,
         * so output is never held back, and a burst costs one write. */
        if (fwrite(line->data, 1, line->len, stdout) != line->len) {
            sub_stdout_failed();
            return false;
        }
        c->messages++;
        if (o->count > 0 && c->messages >= (uint64_t)o->count) {
            return false;
        }
        if (o->pause_ms > 0) {
            if (fflush(stdout) != 0) {
                sub_stdout_failed();
                return false;
            }
            sub_sleep_ms(o->pause_ms);
        }
    }
    if (rc != QB_EEOF) {
        c->invalid++;
        QB_LOG_RL(QB_LOG_WARN, "sub.bad_frame", "invalid frame dropped: %s (len=%zu, total=%llu)",
                  qb_strerror(rc), nng_msg_len(msg), (unsigned long long)c->invalid);
    }
    return true;
}

int main(int argc, char **argv)
{
    qb_log_set_component("sub");
    sub_opts o = {.connect = "ipc:///tmp/quotebus/pub.ipc", .recv_buf = 8192, .depth = 10};
    const qb_opt table[] = {
        {"connect", QB_OPT_STR, &o.connect, "ADDR", "the broker's publish address (NNG URL)"},
        {"tls-ca", QB_OPT_STR, &o.tls_ca, "PEM",
         "tls+tcp:// --connect: CA of the broker's certificate (required for tls+tcp://)"},
        {"tls-cert", QB_OPT_STR, &o.tls_cert, "PEM",
         "tls+tcp:// --connect: client certificate (a broker with --pub-tls-ca requires one)"},
        {"tls-key", QB_OPT_STR, &o.tls_key, "PEM", "tls+tcp:// --connect: its private key"},
        {"count", QB_OPT_INT, &o.count, "N", "exit after N messages (0: never)"},
        {"book", QB_OPT_STR, &o.book, "TOPIC",
         "mirror this book (libquotebus) and print its top --depth levels on each change"},
        {"depth", QB_OPT_INT, &o.depth, "N", "--book: levels per side (default 10)"},
        {"snapshot", QB_OPT_STR, &o.snapshot, "ADDR",
         "--book: the broker's snapshot service (default ipc:///tmp/quotebus/snapshot.ipc)"},
        {"timeout-ms", QB_OPT_INT, &o.timeout_ms, "MS",
         "exit after MS milliseconds without a message (0: never)"},
        {"duration-ms", QB_OPT_INT, &o.duration_ms, "MS", "exit after MS milliseconds (0: never)"},
        {"pause-ms", QB_OPT_INT, &o.pause_ms, "MS",
         "sleep MS milliseconds after each message (a deliberately slow reader, for tests)"},
        {"recv-buf", QB_OPT_INT, &o.recv_buf, "N",
         "receive queue in messages, 1..8192; when full NNG drops the oldest (seen as gaps)"},
        {"stats-file", QB_OPT_STR, &o.stats_file, "PATH",
         "rewrite this JSON file of counters every 500 ms and at exit"},
        {"log-level", QB_OPT_STR, &o.log_level, "LEVEL",
         "error, warn, info or debug (default info)"},
        {0},
    };
    int first = 0;
    int rc = sub_parse(&o, table, argc, argv, &first);
    if (rc != QB_OK) {
        qb_opts_free(table);
        return rc == QB_EEOF ? 0 : 2;
    }

    /* Signals go to the main thread only: blocked while NNG starts its
     * threads, then unblocked here with a handler that just sets a flag. */
    sigset_t sigs, old;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigprocmask(SIG_BLOCK, &sigs, &old);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = sub_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    bool tls = qb_tls_url(o.connect);
    if (tls != (o.tls_ca != NULL) || (o.tls_cert == NULL) != (o.tls_key == NULL) ||
        (!tls && (o.tls_cert != NULL)) || (tls && o.book != NULL)) {
        fprintf(stderr, "quotebus-sub: a tls+tcp:// --connect needs --tls-ca (and --tls-cert "
                        "with --tls-key for a broker that requires client certificates), those "
                        "options need a tls+tcp:// --connect, and --book does not dial TLS\n");
        qb_opts_free(table);
        return 2;
    }
    if (o.book != NULL) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        int brc = sub_book_run(o.connect, o.snapshot, o.book, o.depth, o.duration_ms, o.count,
                               &sub_stop_sig);
        qb_opts_free(table);
        return brc;
    }

    int exit_code = 0;
    sub_counters c = {0};
    sub_seqs seqs = {0};
    qb_buf line = QB_BUF_INIT;
    qb_decoder *dec = qb_decoder_new();
    nng_socket s;
    bool open = false;
    qb_nng_recv *recv = NULL; /* not NNG's receive timeout: it loses frames (nngrecv.h) */
    qb_dialer *dialer = NULL;
    int rv;
    if (dec == NULL) {
        fprintf(stderr, "quotebus-sub: out of memory\n");
        exit_code = 1;
        goto out;
    }
    if ((rv = nng_sub0_open(&s)) != 0) {
        fprintf(stderr, "quotebus-sub: socket: %s\n", nng_strerror(rv));
        exit_code = 1;
        goto out;
    }
    open = true;
    /* RECVBUF: NNG's default queue (128) drops under load; RECVMAXSZ: the
     * broker forwards frames up to QB_MSG_MAX_FRAME, NNG's default 1 MiB
     * limit would drop the connection on a large snapshot. */
    if ((rv = nng_socket_set_int(s, NNG_OPT_RECVBUF, (int)o.recv_buf)) != 0 ||
        (rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, QB_MSG_MAX_FRAME)) != 0) {
        fprintf(stderr, "quotebus-sub: socket options: %s\n", nng_strerror(rv));
        exit_code = 1;
        goto out;
    }
    if (qb_nng_recv_new(s, &recv) != QB_OK) {
        fprintf(stderr, "quotebus-sub: out of memory\n");
        exit_code = 1;
        goto out;
    }
    for (int i = first; i < argc; i++) {
        if (sub_subscribe(s, argv[i]) != QB_OK) {
            exit_code = 2;
            goto out;
        }
    }
    /* Non-blocking dial with a watchdog (common/dialer.h): start even when
     * the broker is not up yet; redials in the background (also after a
     * broker restart), every connect and loss logged. */
    nng_tls_config *tcfg = NULL;
    qb_tls_files tf = {o.tls_cert, o.tls_key, o.tls_ca};
    if (tls && (rv = qb_tls_client_config(&tf, o.connect, &tcfg)) != QB_OK) {
        fprintf(stderr, "quotebus-sub: TLS: %s (see the log above)\n", qb_strerror(rv));
        exit_code = rv == QB_EINVAL ? 2 : 1;
        goto out;
    }
    rv = qb_dialer_start_tls(s, o.connect, "broker", tcfg, &dialer);
    if (tcfg != NULL) {
        nng_tls_config_free(tcfg); /* the dialer holds its own */
    }
    if (rv != QB_OK) {
        fprintf(stderr, "quotebus-sub: connect %s: %s\n", o.connect, qb_strerror(rv));
        exit_code = rv == QB_EINVAL || rv == QB_EUNSUPPORTED ? 2 : 1;
        goto out;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    uint64_t start = sub_now_ms();
    uint64_t last_msg = start;
    uint64_t next_stats = start;
    bool unflushed = false;
    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    for (;;) {
        if (sub_stop_sig != 0) {
            break;
        }
        uint64_t now = sub_now_ms();
        if (o.duration_ms > 0 && now - start >= (uint64_t)o.duration_ms) {
            break;
        }
        if (o.timeout_ms > 0 && now - last_msg >= (uint64_t)o.timeout_ms) {
            break;
        }
        if (o.stats_file != NULL && now >= next_stats) {
            sub_write_stats(o.stats_file, &c);
            next_stats = now + SUB_STATS_INTERVAL_MS;
        }
        nng_msg *msg;
        rv = 0;
        int got = qb_nng_recv_next(recv, unflushed ? 0 : SUB_TICK_MS, &msg, &rv);
        if (got == QB_ETIMEDOUT && unflushed) {
            unflushed = false; /* nothing waiting: write out what we have */
            if (fflush(stdout) != 0) {
                sub_stdout_failed();
                break;
            }
            continue;
        }
        if (got == QB_ETIMEDOUT) {
            continue;
        }
        if (got != QB_OK) {
            if (got != QB_ECLOSED) {
                QB_ERROR("sub.recv_failed", "%s", nng_strerror(rv));
                exit_code = 1;
            }
            break;
        }
        last_msg = sub_now_ms();
        bool more = sub_frame(msg, dec, &seqs, &c, &line, &o);
        nng_msg_free(msg);
        unflushed = true;
        if (!more) {
            break;
        }
    }
    if (fflush(stdout) != 0) {
        sub_stdout_failed();
    }
    QB_INFO("sub.summary",
            "frames=%llu messages=%llu gaps=%llu missed=%llu out_of_order=%llu invalid=%llu",
            (unsigned long long)c.frames, (unsigned long long)c.messages,
            (unsigned long long)c.gaps, (unsigned long long)c.missed,
            (unsigned long long)c.out_of_order, (unsigned long long)c.invalid);
    sub_write_stats(o.stats_file, &c);
out:
    qb_nng_recv_free(recv); /* cancels its pending receive before the close */
    /* The bounded close first (NNG 1.5.2 close race, common/nngclose.h);
     * qb_dialer_stop's own nng_close then finds the socket closed. When the
     * close was abandoned, the dialer is left alone too: its pipe callback
     * may still run, and the process is exiting. */
    if (open && qb_nng_close_bounded(s, "sub", SUB_CLOSE_MS)) {
        qb_dialer_stop(dialer);
        qb_nng_fini();
    }
    qb_decoder_free(dec);
    qb_buf_fini(&line);
    sub_seqs_fini(&seqs);
    qb_opts_free(table);
    return exit_code;
}
