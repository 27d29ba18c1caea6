/*
 * qb_consumer.c (qb-bench-consumer): what a user's C program pays to hold an
 * exact order book through quotebus (issue 8 part 6, "what users run
 * today"). It is the consumer side of tests/bench/compare/run-compare.sh,
 * next to python_client.py and ccxt_client.mjs, which hold the same book
 * straight from the exchange.
 *
 *   qb-bench-consumer --connect URL [--snapshot URL] [--topic TOPIC]
 *                     [--marks FILE] [--book-out FILE] [--idle S]
 *                     [--max-run S] [--label NAME]
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
        fprintf(f, "%llu %llu %llu", (unsigned long long)st.deltas,
                (unsigned long long)st.frames, (unsigned long long)st.gaps);
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

static void consumer_usage(FILE *f, const char *prog)
{
    fprintf(f,
            "usage: %s --connect URL [--snapshot URL] [--topic TOPIC] [--marks FILE]\n"
            "          [--book-out FILE] [--idle S] [--max-run S] [--label NAME]\n"
            "Holds one exact book with the libquotebus mirror and measures its own CPU per\n"
            "delta applied; SIGUSR1 appends a mark line (mono_ns cpu_s deltas frames gaps) to\n"
            "--marks. Defaults: --topic book.binance.BTC-USDT, --snapshot the library's\n"
            "default, --idle 3, --max-run 600.\n",
            prog);
}

int main(int argc, char **argv)
{
    const char *connect = NULL, *snapshot = NULL, *topic = "book.binance.BTC-USDT";
    const char *marks_path = NULL, *book_out = NULL, *label = "consumer";
    double idle_s = 3, max_run_s = 600;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help")) {
            consumer_usage(stdout, argv[0]);
            return 0;
        }
        if (!strcmp(a, "--version")) {
            printf("qb-bench-consumer (libquotebus %s)\n", qb_version());
            return 0;
        }
        if (i + 1 >= argc) {
            consumer_usage(stderr, argv[0]);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--connect")) {
            connect = v;
        } else if (!strcmp(a, "--snapshot")) {
            snapshot = v;
        } else if (!strcmp(a, "--topic")) {
            topic = v;
        } else if (!strcmp(a, "--marks")) {
            marks_path = v;
        } else if (!strcmp(a, "--book-out")) {
            book_out = v;
        } else if (!strcmp(a, "--label")) {
            label = v;
        } else if (!strcmp(a, "--idle")) {
            idle_s = atof(v);
        } else if (!strcmp(a, "--max-run")) {
            max_run_s = atof(v);
        } else {
            consumer_usage(stderr, argv[0]);
            return 2;
        }
    }
    if (connect == NULL) {
        consumer_usage(stderr, argv[0]);
        return 2;
    }

    sigset_t set;
    if (bench_marks_block(&set) != 0) {
        perror("pthread_sigmask");
        return 1;
    }
    FILE *marks = NULL;
    if (marks_path != NULL && (marks = fopen(marks_path, "a")) == NULL) {
        perror(marks_path);
        return 1;
    }
    qb_price_level *lv = malloc(CONSUMER_MAX_LEVELS * sizeof *lv);
    if (lv == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }

    qb_mirror_config cfg = {.connect = connect, .snapshot = snapshot, .topics = &topic,
                            .n_topics = 1};
    qb_mirror *m;
    int rc = qb_mirror_open(&cfg, &m);
    if (rc != QB_OK) {
        fprintf(stderr, "qb_mirror_open: %s\n", qb_strerror(rc));
        free(lv);
        return 1;
    }

    consumer_state cs = {.m = m};
    int n_marks;
    const char *end = bench_marks_wait(&set, marks, idle_s, max_run_s, consumer_mark, &cs, &n_marks);

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
    return have && info.state == QB_MIRROR_LIVE ? 0 : 1;
}
