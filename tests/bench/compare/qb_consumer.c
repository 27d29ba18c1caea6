/*
 * qb_consumer.c (qb-bench-consumer): what a user's C program pays to hold an
 * exact order book through quotebus (docs/BENCHMARKS.md section 6, "what users run
 * today"). It is the consumer side of tests/bench/compare/run-compare.sh,
 * next to python_client.py and ccxt_client.mjs, which hold the same book
 * straight from the exchange.
 *
 *   qb-bench-consumer --connect URL [--snapshot URL] [--topic TOPIC]
 *                     [--marks FILE] [--book-out FILE] [--idle S]
 *                     [--max-run S] [--label NAME]
 * (common/opts.h: --help, --version and --config FILE as every binary)
 *
 * The program is the product's documented way to hold a book: one
 * qb_mirror (libquotebus) on the broker's publish address, late-joining
 * through the broker's snapshot service, applying every delta under its
 * lock on the mirror thread. No change callback: the program reads the
 * book when it wants (here: at the end), as mirror_top5.c does.
 *
 * Measurement (bench_marks.h): the main thread blocks SIGUSR1/SIGINT/
 * SIGTERM (before the mirror starts, so NNG's and the mirror's threads
 * inherit the mask) and waits in sigtimedwait. Each SIGUSR1 appends one
 * line to --marks:
 *   mark <monotonic ns> <cpu s> <deltas applied> <frames> <gaps>
 * with cpu = user + system time of the whole process (getrusage
 * RUSAGE_SELF: every thread, the mirror's and NNG's included). The driver
 * sends SIGUSR1 to every consumer (and samples the adapter and the broker)
 * at the start and at the end of a window; messages per CPU-second of the
 * window = delta deltas / delta cpu. "Messages" are deltas applied to the
 * book (qb_mirror_stats.deltas): one per exchange depth event, the unit
 * the Python client counts.
 *
 * End: after deltas were applied and then none for --idle seconds (the
 * simulator stopped its feed), or on SIGINT/SIGTERM, or after --max-run.
 * Then the whole book goes to --book-out as JSON ({"seq", "state",
 * "lastUpdateId": null (the mirror does not expose exchange ids), "bids",
 * "asks": [price, size] strings, best first}), the driver compares it
 * with the simulator's --dump, and one JSON line of totals goes to stdout.
 */
#define _POSIX_C_SOURCE 200809L /* sigtimedwait, clock_gettime */

#include "bench_marks.h"

#include "opts.h" /* the project's option parser; its error codes are quotebus.h's */

#include <quotebus.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONSUMER_MAX_LEVELS 200000

typedef struct consumer_state {
    qb_mirror *m;
} consumer_state;

/* bench_marks_fn: "<deltas applied> <frames> <gaps>"; progress = deltas. */
static uint64_t consumer_mark(void *arg, FILE *f)
{
    consumer_state *c = arg;
    qb_mirror_stats st;
    qb_mirror_stats_get(c->m, &st);
    if (f != NULL) {
        fprintf(f, "%llu %llu %llu", (unsigned long long)st.deltas, (unsigned long long)st.frames,
                (unsigned long long)st.gaps);
    }
    return st.deltas;
}

/* Writes one side as [["price","size"],...]; returns the level count or
 * -1 when it could not be read. */
static long consumer_dump_side(FILE *f, qb_mirror *m, const char *topic, qb_book_side_sel side,
                               qb_price_level *lv, uint64_t *seq)
{
    size_t n = 0;
    if (qb_mirror_levels(m, topic, side, lv, CONSUMER_MAX_LEVELS, &n, seq) != QB_OK) {
        fputs("[]", f);
        return -1;
    }
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        char p[QB_DECIMAL_STR_MAX], q[QB_DECIMAL_STR_MAX];
        qb_decimal_format(lv[i].price, p, sizeof p);
        qb_decimal_format(lv[i].size, q, sizeof q);
        fprintf(f, "%s[\"%s\",\"%s\"]", i ? "," : "", p, q);
    }
    fputc(']', f);
    return (long)n;
}

int main(int argc, char **argv)
{
    char *connect = NULL, *snapshot = NULL, *topic_opt = NULL, *marks_path = NULL;
    char *book_out = NULL, *label_opt = NULL;
    int64_t idle_s = 3, max_run_s = 600;
    const qb_opt opts[] = {
        {"connect", QB_OPT_STR, &connect, "URL", "the broker's publish address (required)"},
        {"snapshot", QB_OPT_STR, &snapshot, "URL",
         "the broker's snapshot service" QB_OPT_DEFAULT("the library's default")},
        {"topic", QB_OPT_STR, &topic_opt, "TOPIC",
         "the book to hold" QB_OPT_DEFAULT("book.binance.BTC-USDT")},
        {"marks", QB_OPT_STR, &marks_path, "FILE", "append a mark line here at each SIGUSR1"},
        {"book-out", QB_OPT_STR, &book_out, "FILE", "the final book as JSON, at the end"},
        {"idle", QB_OPT_INT, &idle_s, "S", "end S seconds after the last delta"},
        {"max-run", QB_OPT_INT, &max_run_s, "S", "end after S seconds in any case"},
        {"label", QB_OPT_STR, &label_opt, "NAME",
         "the client name in the JSON line" QB_OPT_DEFAULT("consumer")},
        {0},
    };
    static const qb_prog prog = {
        "qb-bench-consumer", "--connect URL [OPTIONS]",
        "Holds one exact book with the libquotebus mirror and measures its own CPU per\n"
        "delta applied; SIGUSR1 appends a mark line (mono_ns cpu_s deltas frames gaps) to\n"
        "--marks. Ends --idle seconds after the last delta, on SIGINT/SIGTERM or after\n"
        "--max-run, printing one JSON line of totals (tests/bench/compare/run-compare.sh).",
        NULL};
    int first_pos;
    int rc = qb_opts_parse(&prog, opts, argc, argv, &first_pos);
    if (rc != QB_OK || first_pos != argc || connect == NULL) {
        if (rc == QB_OK) {
            fprintf(stderr, "qb-bench-consumer: %s (see --help)\n",
                    connect == NULL ? "--connect is required" : "unexpected argument");
        }
        qb_opts_free(opts);
        return rc == QB_EEOF ? 0 : 2;
    }
    const char *topic = topic_opt ? topic_opt : "book.binance.BTC-USDT";
    const char *label = label_opt ? label_opt : "consumer";

    sigset_t set;
    if (bench_marks_block(&set) != 0) {
        perror("pthread_sigmask");
        qb_opts_free(opts);
        return 1;
    }
    FILE *marks = NULL;
    if (marks_path != NULL && (marks = fopen(marks_path, "a")) == NULL) {
        perror(marks_path);
        qb_opts_free(opts);
        return 1;
    }
    qb_price_level *lv = malloc(CONSUMER_MAX_LEVELS * sizeof *lv);
    if (lv == NULL) {
        fprintf(stderr, "out of memory\n");
        if (marks != NULL) {
            fclose(marks);
        }
        qb_opts_free(opts);
        return 1;
    }

    qb_mirror_config cfg = {
        .connect = connect, .snapshot = snapshot, .topics = &topic, .n_topics = 1};
    qb_mirror *m;
    rc = qb_mirror_open(&cfg, &m);
    if (rc != QB_OK) {
        fprintf(stderr, "qb_mirror_open: %s\n", qb_strerror(rc));
        if (marks != NULL) {
            fclose(marks);
        }
        free(lv);
        qb_opts_free(opts);
        return 1;
    }

    consumer_state cs = {.m = m};
    int n_marks;
    const char *end = bench_marks_wait(&set, marks, (double)idle_s, (double)max_run_s,
                                       consumer_mark, &cs, &n_marks);

    qb_book_info info;
    int have = qb_mirror_info(m, topic, &info) == QB_OK;
    long nb = -1, na = -1;
    if (book_out != NULL) {
        FILE *f = fopen(book_out, "w");
        if (f == NULL) {
            perror(book_out);
        } else {
            uint64_t seq_b = 0, seq_a = 0;
            fputs("{\"lastUpdateId\":null,\"bids\":", f);
            nb = consumer_dump_side(f, m, topic, QB_BIDS, lv, &seq_b);
            fputs(",\"asks\":", f);
            na = consumer_dump_side(f, m, topic, QB_ASKS, lv, &seq_a);
            /* the two sides are read under two locks: equal seqs prove they
             * come from the same state of the book */
            fprintf(f, ",\"seq\":%llu,\"seq_asks\":%llu,\"state\":\"%s\"}\n",
                    (unsigned long long)seq_b, (unsigned long long)seq_a,
                    have ? qb_mirror_state_name(info.state) : "none");
            fclose(f);
        }
    }
    qb_mirror_stats st;
    qb_mirror_stats_get(m, &st);
    printf("{\"client\":\"%s\",\"end\":\"%s\",\"marks\":%d,\"cpu_secs_total\":%.3f,"
           "\"deltas\":%llu,\"frames\":%llu,\"gaps\":%llu,\"service_snapshots\":%llu,"
           "\"stream_snapshots\":%llu,\"snapshot_failures\":%llu,\"restarts\":%llu,"
           "\"reconnects\":%llu,\"seq\":%llu,\"state\":\"%s\",\"bids\":%ld,\"asks\":%ld}\n",
           label, end, n_marks, bench_marks_cpu_s(), (unsigned long long)st.deltas,
           (unsigned long long)st.frames, (unsigned long long)st.gaps,
           (unsigned long long)st.service_snapshots, (unsigned long long)st.stream_snapshots,
           (unsigned long long)st.snapshot_failures, (unsigned long long)st.restarts,
           (unsigned long long)st.reconnects, have ? (unsigned long long)info.seq : 0ULL,
           have ? qb_mirror_state_name(info.state) : "none", nb, na);
    fflush(stdout);
    qb_mirror_close(m);
    if (marks != NULL) {
        fclose(marks);
    }
    free(lv);
    qb_opts_free(opts);
    return have && info.state == QB_MIRROR_LIVE ? 0 : 1;
}
