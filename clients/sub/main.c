/*
 * main.c: quotebus-sub, the command-line subscriber. Dials the broker's
 * publish socket with an NNG SUB socket, subscribes to the topic prefixes
 * given, decodes every frame (proto/msg.h) and prints each message as one
 * JSON line (qb_msg_to_json; format in proto/PROTOCOL.md). Output is
 * flushed whenever no further frame is waiting, so a line is never held
 * back (`quotebus-sub book.binance. | jq` works) while a burst of messages
 * costs one write instead of one per line.
 *
 *   broker PUB --NNG--> [SUB socket, RECVBUF --recv-buf] --> decode --> book gate --> seq check -->
 * stdout broker REP <--REQ-- snapshot requests (snapclient.h)        |                        | at
 * start, a book's first delta   skipped: counted      gaps: one line on stderr
 *
 * Every book starts with a snapshot (not with --raw): the late-joiner
 * procedure of PROTOCOL.md 11.4, for printing. Subscribe first; once
 * connected (bounded wait), ask the snapshot service for every book
 * argument and print each valid book of the reply as its topic's first
 * line (a refresh snapshot, "seq" = the broker's). From then on, per book,
 * a delta at or below that seq, or a refresh snapshot at or below it, is
 * already in the printed book and is skipped; the first newer message ends
 * the rule for the book, and so does a message from another connection (a
 * broker reached anew numbers anew). A book the reply did not cover is
 * asked for on its first delta. Until a book has a snapshot (from the
 * service or the stream), its deltas are skipped; without a service every
 * book starts with the stream's next snapshot (within ~1 s, the refresh
 * interval). Skipped messages are counted (skipped). --raw prints every
 * message as it arrives.
 *
 * Topics that do not exist are said, not waited on in silence: 2 s after
 * start, each argument that has received nothing is checked with the
 * service (trade., status., ticker. ones through their instrument's book
 * topic); one that matches no instrument is logged once as
 * sub.no_such_topic with what the broker has (proto/topic.h). The
 * service address defaults to the one beside --connect (sub_snapshot_url).
 *
 * Sequence check per topic: after the first message printed on a topic, a
 * delta, trade, status or ticker whose seq is not last + 1 is reported on
 * stderr ("gap on TOPIC: expected X got Y (N missed)") and becomes the new
 * last; a snapshot rebases silently (a refresh snapshot repeats the last
 * seq). The table of topics is bounded (SUB_MAX_TOPICS; past it, topics are
 * printed but neither checked nor gated). Invalid frames are counted and
 * reported on stderr, rate-limited; the subscriber goes on.
 *
 * --book mirrors one book through libquotebus instead (book.c).
 *
 * Single-threaded (NNG's own threads aside). SIGINT/SIGTERM set a flag seen
 * within 100 ms (the receive tick); a closed stdout (EPIPE) ends the
 * program normally, as do --count, --timeout-ms and --duration-ms: none of
 * them is a warning (the dialer is told before the socket closes). Every
 * thing is freed on exit.
 */
#include "clock.h"
#include "book.h"
#include "dialer.h"
#include "nngtls.h"
#include "err.h"
#include "file.h"
#include "log.h"
#include "nngrecv.h"
#include "msg.h"
#include "nngclose.h"
#include "opts.h"
#include "snapclient.h"
#include "strmap.h"
#include "seq.h"
#include "topic.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SUB_TICK_MS 100
#define SUB_MAX_TOPICS 100000
#define SUB_STATS_INTERVAL_MS 500
#define SUB_CLOSE_MS 1000
/* At start, how long to wait for the broker (and its snapshot service)
 * before printing what arrives without asking the service first. The
 * stream queues in the SUB socket meanwhile. */
#define SUB_CONNECT_WAIT_MS 1000
#define SUB_SNAPSHOT_TIMEOUT_MS 2000
/* An argument that received nothing this long after start is checked
 * with the snapshot service (sub.no_such_topic). */
#define SUB_NO_TOPIC_MS 2000

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
        "Each book starts with a snapshot: the broker's current book from its snapshot service\n"
        "(then only the deltas after it), or the stream's next snapshot; --raw prints every\n"
        "message exactly as it arrives instead. A topic that matches no instrument is said on\n"
        "stderr after 2 s. Sequence gaps (messages missed, e.g. by a slow reader) are reported\n"
        "on stderr; books heal by themselves from the refresh snapshot each instrument gets\n"
        "every second.",
    .footer = "Examples:\n"
              "  quotebus-sub book.binance. | jq .\n"
              "  quotebus-sub --count 10 book.binance.BTC-USDT trade.binance.BTC-USDT\n"
              "  quotebus-sub --connect tcp://127.0.0.1:7781 status.\n"
              "  quotebus-sub --timeout-ms 5000 book. > books.jsonl\n"
              "  quotebus-sub --book book.binance.BTC-USDT --depth 5 --count 3\n"
              "\n"
              "Exit status: 0 on --count/--timeout-ms/--duration-ms, SIGINT, SIGTERM or a closed\n"
              "stdout (also with --book); 1 when the socket cannot be set up; 2 on bad options.",
};

typedef struct sub_opts {
    char *connect;
    char *tls_ca, *tls_cert, *tls_key; /* tls+tcp:// --connect (nngtls.h) */
    char *book;
    char *snapshot; /* as given; NULL: beside --connect (sub_snapshot_url) */
    bool raw;
    int64_t depth;
    int64_t count;
    int64_t timeout_ms;
    int64_t duration_ms;
    int64_t pause_ms;
    int64_t recv_buf;
    char *stats_file;
    char *log_level;
} sub_opts;

/* Per topic: the seq check and the book gate. Open addressing, linear
 * probing, topics copied in. */
typedef struct sub_topic {
    qb_strmap_node node; /* first: an entry is freed through its node */
    uint64_t last_seq;   /* of the last message printed (valid when has_last) */
    uint64_t base_seq;   /* of the service's snapshot (valid when has_base) */
    uint32_t pipe;       /* NNG pipe of the last message (a new one: reconnected) */
    uint32_t base_pipe;  /* the connection has_base holds for; 0: the next one seen */
    bool has_last;
    bool started;  /* book: a snapshot was printed */
    bool has_base; /* book: skip what the service's snapshot holds */
    bool asked;    /* book: the service was asked for it */
    char topic[];  /* node.len bytes and a NUL */
} sub_topic;

/* The topics seen, at most SUB_MAX_TOPICS (common/strmap.h). */
typedef qb_strmap sub_seqs;

typedef struct sub_counters {
    uint64_t frames;
    uint64_t messages;
    uint64_t invalid;
    uint64_t gaps;
    uint64_t missed;
    uint64_t out_of_order;
    uint64_t skipped;           /* book messages not printed: before the book's
                                   snapshot, or already in it */
    uint64_t service_snapshots; /* books printed from the snapshot service */
} sub_counters;

/* The JSON mode's state (main thread). */
typedef struct sub_ctx {
    const sub_opts *o;
    char **args; /* the TOPIC_PREFIX arguments */
    int n_args;
    bool *arg_seen; /* a message matching args[i] arrived */
    int unseen;
    bool gate;      /* books start with a snapshot (not --raw) */
    bool req_open;  /* a snapshot service is configured */
    nng_socket req; /* its REQ socket */
    uint32_t pipe;  /* SUB pipe of the last frame; 0: none yet */
    bool stop;      /* output must stop (count reached, stdout closed) */
    sub_seqs seqs;
    sub_counters c;
    qb_buf line;
    qb_decoder *dec;     /* the stream */
    qb_decoder *svc_dec; /* frames in service replies */
} sub_ctx;

static volatile sig_atomic_t sub_stop_sig;
/* Connections of the REQ socket (NNG's pipe callbacks; static, so a
 * callback of an abandoned close still has it). */
static atomic_int sub_req_pipes;

static void sub_on_signal(int sig)
{
    sub_stop_sig = sig;
}

static void sub_req_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    (void)p;
    (void)arg;
    atomic_fetch_add(&sub_req_pipes, ev == NNG_PIPE_EV_ADD_POST ? 1 : -1);
}

static void sub_seqs_fini(sub_seqs *s)
{
    for (size_t i = 0; i < s->cap; i++) {
        free(s->slots[i]); /* the node is the first member of its entry */
    }
    qb_strmap_fini(s);
}

/* The topic's entry, created on first sight; NULL when the table is full
 * or memory is short (the topic then goes unchecked). Entries never move. */
static sub_topic *sub_seqs_get(sub_seqs *s, qb_str topic)
{
    uint64_t h = qb_strmap_hash(topic.p, topic.n);
    qb_strmap_node *n = qb_strmap_find(s, topic.p, topic.n, h);
    if (n != NULL) {
        return (sub_topic *)n;
    }
    if (qb_strmap_reserve(s) != QB_OK) {
        return NULL;
    }
    sub_topic *e = calloc(1, sizeof *e + topic.n + 1);
    if (e == NULL) {
        return NULL;
    }
    memcpy(e->topic, topic.p, topic.n);
    e->node = (qb_strmap_node){.hash = h, .key = e->topic, .len = topic.n};
    qb_strmap_insert(s, &e->node);
    return e;
}

static void sub_check_seq(sub_topic *e, sub_counters *c, const qb_msg *m, uint32_t pipe)
{
    /* The seq rule (proto/seq.h) on the stream; snapshots report nothing. */
    uint64_t missed = 0;
    qb_seq_result r = qb_seq_on_stream(e->has_last, e->last_seq, m->seq,
                                       qb_seq_type_of(m->type, m->refresh), &missed);
    if (m->type != QB_MSG_SNAPSHOT && (r == QB_SEQ_GAP || r == QB_SEQ_RESTART)) {
        uint64_t want = e->last_seq + 1;
        if (r == QB_SEQ_GAP) {
            c->gaps++;
            c->missed += missed;
            fprintf(stderr, "quotebus-sub: gap on %s: expected %llu got %llu (%llu missed; %s)\n",
                    e->topic, (unsigned long long)want, (unsigned long long)m->seq,
                    (unsigned long long)missed,
                    e->pipe != 0 && e->pipe != pipe
                        ? "after a reconnect to the broker: messages sent while disconnected "
                          "are lost"
                        : "same connection: lost before the broker (see its ingest_gaps) or in "
                          "a full receive buffer");
        } else {
            c->out_of_order++;
            fprintf(stderr,
                    "quotebus-sub: out of order on %s: expected %llu got %llu (duplicate, old "
                    "or restarted publisher)\n",
                    e->topic, (unsigned long long)want, (unsigned long long)m->seq);
        }
    }
    e->last_seq = m->seq;
    e->has_last = true;
    e->pipe = pipe;
}

/* True when topic is selected by the argument arg. */
static bool sub_arg_matches(const char *arg, qb_str topic)
{
    size_t n = strlen(arg);
    if (qb_topic_sub_len(arg) == n + 1) { /* an exact topic (proto/topic.h) */
        return n == topic.n && memcmp(arg, topic.p, n) == 0;
    }
    return topic.n >= n && memcmp(arg, topic.p, n) == 0;
}

/* Builds the NNG subscription for one argument (see the help text). */
static int sub_subscribe(nng_socket s, const char *arg)
{
    size_t n = strlen(arg);
    if (n > QB_TOPIC_MAX) {
        fprintf(stderr, "quotebus-sub: topic prefix longer than %d bytes: %s\n", QB_TOPIC_MAX, arg);
        return QB_EINVAL;
    }
    /* An exact topic includes its NUL terminator, so BTC-USDT never
     * matches BTC-USDTX (proto/topic.h). */
    size_t len = qb_topic_sub_len(arg);
    if (len == 0 && n > 0) {
        fprintf(stderr,
                "quotebus-sub: not a topic or prefix: %s (want kind.exchange.SYMBOL or a prefix; "
                "printable ASCII without '\"' or '\\')\n",
                arg);
        return QB_EINVAL;
    }
    int rv = nng_socket_set(s, NNG_OPT_SUB_SUBSCRIBE, arg, len);
    if (rv != 0) {
        fprintf(stderr, "quotebus-sub: subscribe %s: %s\n", arg, nng_strerror(rv));
        return QB_ETRANSPORT;
    }
    return QB_OK;
}

/* The snapshot service to use: --snapshot as given ("off" or "": none),
 * else the one beside --connect in the broker's default layout:
 * ipc://DIR/pub.ipc -> ipc://DIR/snapshot.ipc, tcp://HOST:PORT ->
 * tcp://HOST:PORT+1 (7781 -> 7782). NULL: none (tls+tcp://, other names).
 * A guess is safe: the service is asked only once connected, and a wrong
 * address never connects. */
static const char *sub_snapshot_url(const sub_opts *o, char *buf, size_t cap)
{
    if (o->snapshot != NULL) {
        return o->snapshot[0] == '\0' || strcmp(o->snapshot, "off") == 0 ? NULL : o->snapshot;
    }
    static const char pub[] = "/pub.ipc";
    size_t n = strlen(o->connect), pn = sizeof pub - 1;
    if (strncmp(o->connect, "ipc://", 6) == 0 && n > 6 + pn &&
        strcmp(o->connect + n - pn, pub) == 0) {
        int w = snprintf(buf, cap, "%.*s/snapshot.ipc", (int)(n - pn), o->connect);
        return w > 0 && (size_t)w < cap ? buf : NULL;
    }
    const char *colon = strrchr(o->connect, ':');
    if (strncmp(o->connect, "tcp://", 6) == 0 && colon > o->connect + 6) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (*end == '\0' && port > 0 && port < 65535) {
            int w = snprintf(buf, cap, "%.*s:%ld", (int)(colon - o->connect), o->connect, port + 1);
            return w > 0 && (size_t)w < cap ? buf : NULL;
        }
    }
    return NULL;
}

static void sub_write_stats(const char *path, const sub_counters *c)
{
    if (path == NULL) {
        return;
    }
    qb_buf b = QB_BUF_INIT;
    if (qb_buf_appendf(&b,
                       "{\"frames\": %llu, \"messages\": %llu, \"invalid\": %llu, \"gaps\": %llu, "
                       "\"missed\": %llu, \"out_of_order\": %llu, \"skipped\": %llu, "
                       "\"service_snapshots\": %llu}\n",
                       (unsigned long long)c->frames, (unsigned long long)c->messages,
                       (unsigned long long)c->invalid, (unsigned long long)c->gaps,
                       (unsigned long long)c->missed, (unsigned long long)c->out_of_order,
                       (unsigned long long)c->skipped,
                       (unsigned long long)c->service_snapshots) == QB_OK) {
        (void)qb_file_write_atomic(path, b.data, b.len);
    }
    qb_buf_fini(&b);
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
    if (o->book != NULL &&
        (strncmp(o->book, "book.", 5) != 0 || qb_topic_sub_len(o->book) != strlen(o->book) + 1)) {
        fprintf(stderr,
                "quotebus-sub: --book mirrors one instrument (book.EXCHANGE.SYMBOL, e.g. "
                "book.binance.BTC-USDT), not '%s'; for every message of a prefix: "
                "quotebus-sub %s\n",
                o->book, o->book);
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
    if (o->depth < 1 || o->depth > 100000) {
        fprintf(stderr, "quotebus-sub: --depth must be 1..100000\n");
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

/* Prints one message (e: its topic's entry, or NULL past SUB_MAX_TOPICS).
 * Returns false when output must stop (stdout closed or --count reached). */
static bool sub_print(sub_ctx *x, sub_topic *e, qb_str topic, const qb_msg *m, uint32_t pipe)
{
    if (e != NULL) {
        sub_check_seq(e, &x->c, m, pipe);
    }
    qb_buf_reset(&x->line);
    if (qb_msg_to_json(m, &x->line) != QB_OK || qb_buf_append(&x->line, "\n", 1) != QB_OK) {
        QB_LOG_RL(QB_LOG_WARN, "sub.json_failed", "topic=%.*s seq=%llu: cannot format",
                  (int)topic.n, topic.p, (unsigned long long)m->seq);
        return true;
    }
    /* Flushed by the main loop as soon as no further frame is waiting, so
     * output is never held back, and a burst costs one write. */
    if (fwrite(x->line.data, 1, x->line.len, stdout) != x->line.len) {
        sub_stdout_failed();
        return false;
    }
    x->c.messages++;
    if (x->o->count > 0 && x->c.messages >= (uint64_t)x->o->count) {
        return false;
    }
    if (x->o->pause_ms > 0) {
        if (fflush(stdout) != 0) {
            sub_stdout_failed();
            return false;
        }
        sub_sleep_ms(x->o->pause_ms);
    }
    return true;
}

static bool sub_svc_ready(const sub_ctx *x)
{
    return x->req_open && atomic_load(&sub_req_pipes) > 0;
}

/* Asks the service for the books of q (an exact topic or a prefix) and
 * prints each valid book not started yet as its topic's first line; those
 * books then skip what the snapshot holds. A failed request is logged
 * (rate-limited) and the books start from the stream. Sets x->stop when
 * output must stop. */
static void sub_prime(sub_ctx *x, const char *q)
{
    qbc_snap_reply r;
    int rc = qbc_snap_request(x->req, q, SUB_SNAPSHOT_TIMEOUT_MS, &r);
    if (rc != QB_OK) {
        QB_LOG_RL(QB_LOG_WARN, "sub.snapshot_failed",
                  "snapshot request for %s: %s; its books start with the stream's next snapshot", q,
                  qb_strerror(rc));
        return;
    }
    if (!r.ok && !qbc_snap_unknown(&r)) {
        QB_LOG_RL(QB_LOG_WARN, "sub.snapshot_error", "snapshot request for %s: %s: %s", q, r.code,
                  r.error);
    }
    for (size_t i = 0; r.ok && i < r.n_books && !x->stop; i++) {
        const qbc_snap_book *sb = &r.books[i];
        sub_topic *e = sub_seqs_get(&x->seqs, sb->topic);
        qb_str ft;
        qb_msg m;
        if (e == NULL) {
            continue;
        }
        e->asked = true;
        if (!sb->valid || e->started) {
            continue; /* not exact at the broker now: the stream's snapshot starts it */
        }
        if (qb_decoder_begin(x->svc_dec, sb->frame, sb->frame_len, &ft) != QB_OK ||
            ft.n != sb->topic.n || memcmp(ft.p, sb->topic.p, ft.n) != 0 ||
            qb_decoder_next(x->svc_dec, &m) != QB_OK || m.type != QB_MSG_SNAPSHOT) {
            x->c.invalid++;
            QB_LOG_RL(QB_LOG_WARN, "sub.bad_snapshot", "topic=%s: invalid frame in the reply",
                      e->topic);
            continue;
        }
        e->started = true;
        e->has_base = true;
        e->base_seq = m.seq;
        e->base_pipe = 0;
        x->c.service_snapshots++;
        if (!sub_print(x, e, sb->topic, &m, x->pipe)) {
            x->stop = true;
        }
    }
    qbc_snap_reply_fini(&r);
}

/* The service's book query for an argument: the argument itself for
 * book., and the instrument's book topic (or prefix) for trade., status.
 * and ticker.; false for raw prefixes and the broker's own topics. */
static bool sub_book_query(const char *arg, char *out, size_t cap)
{
    qb_topic_parts p;
    qb_topic_split(arg, strlen(arg), &p);
    if (p.kind.n == strlen(arg)) {
        return false; /* no dot: a raw prefix */
    }
    if (qb_topic_kind_of(p.kind) == QB_TOPIC_NOKIND ||
        (p.ex.n == 8 && memcmp(p.ex.p, "quotebus", 8) == 0)) {
        return false;
    }
    int w = snprintf(out, cap, "book.%s", arg + p.kind.n + 1);
    return w > 0 && (size_t)w < cap;
}

/* Checks every argument that received nothing (the file comment). Once. */
static void sub_check_topics(sub_ctx *x)
{
    qb_buf has = QB_BUF_INIT;
    bool listed = false;
    for (int i = 0; i < x->n_args; i++) {
        char q[QB_TOPIC_MAX + 8];
        qbc_snap_reply r;
        if (x->arg_seen[i] || !sub_book_query(x->args[i], q, sizeof q) ||
            qbc_snap_request(x->req, q, SUB_SNAPSHOT_TIMEOUT_MS, &r) != QB_OK) {
            continue;
        }
        bool unknown = qbc_snap_unknown(&r);
        qbc_snap_reply_fini(&r);
        if (!unknown) {
            continue; /* it exists, it is only quiet */
        }
        if (!listed) {
            listed = true;
            if (qbc_snap_request(x->req, "book.", SUB_SNAPSHOT_TIMEOUT_MS, &r) == QB_OK) {
                if (r.ok || qbc_snap_unknown(&r)) {
                    qbc_snap_instruments(&r, &has);
                }
                qbc_snap_reply_fini(&r);
            }
        }
        QB_WARN("sub.no_such_topic", "topic=%s matches no instrument; the broker has: %.*s",
                x->args[i], has.len ? (int)has.len : 25,
                has.len ? (const char *)has.data : "(the service did not say)");
    }
    qb_buf_fini(&has);
}

/* Whether book message m of topic e is printed (the gate of the file
 * comment). May ask the service for e's book first, and print it. */
static bool sub_book_admit(sub_ctx *x, sub_topic *e, const qb_msg *m, uint32_t pipe)
{
    if (e->has_base && e->base_pipe != pipe) {
        if (e->base_pipe == 0) {
            e->base_pipe = pipe;
        } else {
            e->has_base = false; /* another connection: maybe a new broker */
        }
    }
    if (!e->started && m->type == QB_MSG_DELTA && !e->asked && sub_svc_ready(x)) {
        /* The broker applied this delta before sending it: the snapshot
         * asked for now holds it, and skips it below. */
        e->asked = true;
        sub_prime(x, e->topic);
        if (e->has_base) {
            e->base_pipe = pipe;
        }
    }
    if (!e->started) {
        if (m->type != QB_MSG_SNAPSHOT) {
            return false;
        }
        e->started = true;
        return true;
    }
    if (e->has_base) {
        if (m->seq <= e->base_seq && (m->type == QB_MSG_DELTA || m->refresh)) {
            return false;
        }
        e->has_base = false;
    }
    return true;
}

static void sub_args_seen(sub_ctx *x, qb_str topic)
{
    for (int i = 0; i < x->n_args; i++) {
        if (!x->arg_seen[i] && sub_arg_matches(x->args[i], topic)) {
            x->arg_seen[i] = true;
            x->unseen--;
        }
    }
}

/* Prints the messages of one frame. Returns false when output must stop
 * (stdout closed or --count reached). */
static bool sub_frame(sub_ctx *x, nng_msg *msg)
{
    qb_str topic;
    qb_msg m;
    sub_topic *e = NULL;
    uint32_t pipe = (uint32_t)nng_pipe_id(nng_msg_get_pipe(msg));
    x->c.frames++;
    x->pipe = pipe;
    int rc = qb_decoder_begin(x->dec, nng_msg_body(msg), nng_msg_len(msg), &topic);
    if (rc == QB_OK) {
        if (x->unseen > 0) {
            sub_args_seen(x, topic);
        }
        e = sub_seqs_get(&x->seqs, topic);
    }
    while (rc == QB_OK) {
        rc = qb_decoder_next(x->dec, &m);
        if (rc != QB_OK) {
            break;
        }
        bool book = m.type == QB_MSG_SNAPSHOT || m.type == QB_MSG_DELTA;
        if (x->gate && book && e != NULL && !sub_book_admit(x, e, &m, pipe)) {
            x->c.skipped++;
            if (x->stop) {
                return false;
            }
            continue;
        }
        if (x->stop || !sub_print(x, e, topic, &m, pipe)) {
            return false;
        }
    }
    if (rc != QB_EEOF) {
        x->c.invalid++;
        QB_LOG_RL(QB_LOG_WARN, "sub.bad_frame", "invalid frame dropped: %s (len=%zu, total=%llu)",
                  qb_strerror(rc), nng_msg_len(msg), (unsigned long long)x->c.invalid);
    }
    return true;
}

/* Waits (bounded, signals seen) until the SUB socket, and the snapshot
 * service when one is configured, are connected. */
static void sub_wait_connected(const sub_ctx *x, const qb_dialer *dialer)
{
    for (int waited = 0; waited < SUB_CONNECT_WAIT_MS && sub_stop_sig == 0; waited += 10) {
        if (qb_dialer_pipes(dialer) > 0 && (!x->req_open || sub_svc_ready(x))) {
            return;
        }
        sub_sleep_ms(10);
    }
}

/* Asks the service for every book argument at start (the file comment). */
static void sub_prime_args(sub_ctx *x)
{
    for (int i = 0; i < x->n_args && !x->stop; i++) {
        const char *a = x->args[i];
        if (strncmp(a, "book.", 5) == 0) {
            sub_prime(x, a);
        } else if (strncmp("book.", a, strlen(a)) == 0) {
            sub_prime(x, "book."); /* "b", "book": raw prefixes of every book */
        }
    }
}

int main(int argc, char **argv)
{
    qb_log_set_component("sub");
    sub_opts o = {.connect = "ipc:///tmp/quotebus/pub.ipc", .recv_buf = 8192, .depth = 10};
    const qb_opt table[] = {
        {.name = "connect",
         .type = QB_OPT_STR,
         .ptr = &o.connect,
         .arg = "ADDR",
         .help = "the broker's publish address (NNG URL)"},
        {.name = "tls-ca",
         .type = QB_OPT_STR,
         .ptr = &o.tls_ca,
         .arg = "PEM",
         .help = "tls+tcp:// --connect: CA of the broker's certificate (required for tls+tcp://)"},
        {.name = "tls-cert",
         .type = QB_OPT_STR,
         .ptr = &o.tls_cert,
         .arg = "PEM",
         .help =
             "tls+tcp:// --connect: client certificate (a broker with --pub-tls-ca requires one)"},
        {.name = "tls-key",
         .type = QB_OPT_STR,
         .ptr = &o.tls_key,
         .arg = "PEM",
         .help = "tls+tcp:// --connect: its private key"},
        {.name = "count",
         .type = QB_OPT_INT,
         .ptr = &o.count,
         .arg = "N",
         .help = "exit after printing N lines (0: never)"},
        {.name = "raw",
         .type = QB_OPT_BOOL,
         .ptr = &o.raw,
         .arg = NULL,
         .help = "print every message exactly as it arrives (no snapshot first; deltas before "
                 "a book's first snapshot included)"},
        {.name = "book",
         .type = QB_OPT_STR,
         .ptr = &o.book,
         .arg = "TOPIC",
         .help =
             "mirror this one book (libquotebus) and print its top --depth levels on each change"},
        {.name = "depth",
         .type = QB_OPT_INT,
         .ptr = &o.depth,
         .arg = "N",
         .help = "--book: levels per side"},
        {.name = "snapshot",
         .type = QB_OPT_STR,
         .ptr = &o.snapshot,
         .arg = "ADDR",
         .help = "the broker's snapshot service (off: none)" QB_OPT_DEFAULT(
             "beside --connect: ipc://DIR/snapshot.ipc or tcp://HOST:PORT+1")},
        {.name = "timeout-ms",
         .type = QB_OPT_INT,
         .ptr = &o.timeout_ms,
         .arg = "MS",
         .help = "exit after MS milliseconds without printing a line (0: never)"},
        {.name = "duration-ms",
         .type = QB_OPT_INT,
         .ptr = &o.duration_ms,
         .arg = "MS",
         .help = "exit after MS milliseconds (0: never)"},
        {.name = "pause-ms",
         .type = QB_OPT_INT,
         .ptr = &o.pause_ms,
         .arg = "MS",
         .help =
             "sleep MS milliseconds after each message (a deliberately slow reader, for tests)"},
        {.name = "recv-buf",
         .type = QB_OPT_INT,
         .ptr = &o.recv_buf,
         .arg = "N",
         .help =
             "receive queue in messages, 1..8192; when full NNG drops the oldest (seen as gaps)"},
        {.name = "stats-file",
         .type = QB_OPT_STR,
         .ptr = &o.stats_file,
         .arg = "PATH",
         .help = "rewrite this JSON file of counters every 500 ms and at exit"},
        {.name = "log-level",
         .type = QB_OPT_STR,
         .ptr = &o.log_level,
         .arg = "LEVEL",
         .help = "error, warn, info or debug" QB_OPT_DEFAULT("info")},
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
    char snap_buf[1024];
    const char *snap_url = sub_snapshot_url(&o, snap_buf, sizeof snap_buf);
    if (o.book != NULL) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        sub_book_opts bo = {
            .connect = o.connect,
            .snapshot = snap_url != NULL ? snap_url : "",
            .topic = o.book,
            .depth = o.depth,
            .count = o.count,
            .timeout_ms = o.timeout_ms,
            .duration_ms = o.duration_ms,
        };
        int brc = sub_book_run(&bo, &sub_stop_sig);
        qb_opts_free(table);
        return brc;
    }

    int exit_code = 0;
    sub_ctx x = {
        .o = &o,
        .args = argv + first,
        .n_args = argc - first,
        .gate = !o.raw,
        .line = QB_BUF_INIT,
    };
    x.arg_seen = calloc((size_t)x.n_args, sizeof *x.arg_seen);
    x.unseen = x.n_args;
    qb_strmap_init(&x.seqs, SUB_MAX_TOPICS);
    x.dec = qb_decoder_new();
    x.svc_dec = qb_decoder_new();
    nng_socket s;
    bool open = false;
    qb_nng_recv *recv = NULL; /* not NNG's receive timeout: it loses frames (nngrecv.h) */
    qb_dialer *dialer = NULL;
    int rv;
    if (x.dec == NULL || x.svc_dec == NULL || x.arg_seen == NULL) {
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
    if (snap_url != NULL) {
        if ((rv = qbc_snap_open(snap_url, sub_req_pipe_cb, NULL, &x.req)) != QB_OK) {
            fprintf(stderr, "quotebus-sub: snapshot service %s: %s\n", snap_url, qb_strerror(rv));
            exit_code = rv == QB_EINVAL ? 2 : 1;
            goto out;
        }
        x.req_open = true;
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
    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    /* Subscribed first: what arrives meanwhile waits in the SUB socket. */
    sub_wait_connected(&x, dialer);
    if (x.gate && sub_svc_ready(&x)) {
        sub_prime_args(&x);
    }
    uint64_t last_msg = sub_now_ms(); /* a line printed, or the start */
    uint64_t next_stats = start;
    uint64_t printed = x.c.messages;
    bool checked = !x.req_open;
    bool unflushed = x.c.messages > 0;
    while (!x.stop) {
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
            sub_write_stats(o.stats_file, &x.c);
            next_stats = now + SUB_STATS_INTERVAL_MS;
        }
        if (!checked && now - start >= SUB_NO_TOPIC_MS && sub_svc_ready(&x) &&
            qb_dialer_pipes(dialer) > 0) {
            checked = true;
            if (x.unseen > 0) {
                sub_check_topics(&x);
            }
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
        bool more = sub_frame(&x, msg);
        nng_msg_free(msg);
        if (x.c.messages != printed) {
            printed = x.c.messages;
            last_msg = sub_now_ms();
            unflushed = true;
        }
        if (!more) {
            break;
        }
    }
    if (fflush(stdout) != 0) {
        sub_stdout_failed();
    }
    QB_INFO("sub.summary",
            "frames=%llu messages=%llu gaps=%llu missed=%llu out_of_order=%llu invalid=%llu "
            "skipped=%llu service_snapshots=%llu",
            (unsigned long long)x.c.frames, (unsigned long long)x.c.messages,
            (unsigned long long)x.c.gaps, (unsigned long long)x.c.missed,
            (unsigned long long)x.c.out_of_order, (unsigned long long)x.c.invalid,
            (unsigned long long)x.c.skipped, (unsigned long long)x.c.service_snapshots);
    sub_write_stats(o.stats_file, &x.c);
out:
    qb_nng_recv_free(recv); /* cancels its pending receive before the close */
    /* A normal exit: the disconnect the close causes is not a lost
     * connection (qb_dialer_shutdown). Then the bounded close (NNG 1.5.2
     * close race, common/nngclose.h); qb_dialer_stop's own nng_close then
     * finds the socket closed. When the close was abandoned, the dialer is
     * left alone too: its pipe callback may still run, and the process is
     * exiting. */
    qb_dialer_shutdown(dialer);
    bool closed = true;
    if (x.req_open) {
        nng_pipe_notify(x.req, NNG_PIPE_EV_ADD_POST, NULL, NULL);
        nng_pipe_notify(x.req, NNG_PIPE_EV_REM_POST, NULL, NULL);
        closed = qb_nng_close_bounded(x.req, "snapshot", SUB_CLOSE_MS);
    }
    if (open && qb_nng_close_bounded(s, "sub", SUB_CLOSE_MS)) {
        qb_dialer_stop(dialer);
    } else {
        closed = closed && !open;
    }
    if (closed) {
        qb_nng_fini();
    }
    qb_decoder_free(x.dec);
    qb_decoder_free(x.svc_dec);
    free(x.arg_seen);
    qb_buf_fini(&x.line);
    sub_seqs_fini(&x.seqs);
    qb_opts_free(table);
    return exit_code;
}
