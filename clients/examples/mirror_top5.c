/*
 * mirror_top5.c: keep one order book exact with the libquotebus mirror and
 * print its top 5 levels twice a second. The mirror fetches the current
 * book from the broker's snapshot service at once, then follows the
 * stream, healing gaps by itself.
 *
 *   cc mirror_top5.c $(pkg-config --cflags --libs quotebus) -o mirror_top5
 *   ./mirror_top5 [--connect URL] [--snapshot URL] [--seconds N] book.binance.BTC-USDT
 *
 * --pause-ms N makes the change callback sleep N ms (a deliberately slow
 * consumer: the stream then overflows the mirror's queue, and the mirror
 * detects the gaps and re-fetches the book by itself).
 * With --seconds N it exits after N seconds and prints the whole book as
 * "FINAL <topic> <seq> <state>" followed by "bid|ask <price> <size>" lines.
 *
 * A topic that exists nowhere (a misspelt exchange or symbol) is said on
 * stderr, once, as soon as the broker's snapshot service has said so
 * (qb_mirror_check_topic, which never blocks), with what the broker has;
 * the program goes on waiting, as the instrument may still appear.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep with -std=c11 */

#include <quotebus.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static atomic_long changes;
static long pause_ms;

/* Runs on the mirror's thread: keep it short. */
static void on_change(void *arg, qb_mirror *m, const char *topic)
{
    (void)arg;
    (void)m;
    (void)topic;
    atomic_fetch_add(&changes, 1);
    if (pause_ms > 0) {
        struct timespec ts = {pause_ms / 1000, (pause_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void print_side(qb_mirror *m, const char *topic, qb_book_side_sel side, size_t max)
{
    qb_price_level *lv = malloc(max * sizeof *lv);
    size_t n = 0;
    if (lv != NULL && qb_mirror_levels(m, topic, side, lv, max, &n, NULL) == QB_OK) {
        for (size_t i = 0; i < n; i++) {
            char p[QB_DECIMAL_STR_MAX], q[QB_DECIMAL_STR_MAX];
            qb_decimal_format(lv[i].price, p, sizeof p);
            qb_decimal_format(lv[i].size, q, sizeof q);
            printf("%s %s %s\n", side == QB_BIDS ? "bid" : "ask", p, q);
        }
    }
    free(lv);
}

int main(int argc, char **argv)
{
    qb_mirror_config cfg = {.on_change = on_change};
    long seconds = 0;
    int i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--connect") == 0) {
            cfg.connect = argv[i + 1];
        } else if (strcmp(argv[i], "--snapshot") == 0) {
            cfg.snapshot = argv[i + 1];
        } else if (strcmp(argv[i], "--seconds") == 0) {
            seconds = atol(argv[i + 1]);
        } else if (strcmp(argv[i], "--pause-ms") == 0) {
            pause_ms = atol(argv[i + 1]);
        }
    }
    if (i != argc - 1) {
        fprintf(stderr,
                "usage: %s [--connect URL] [--snapshot URL] [--seconds N] [--pause-ms N] "
                "BOOK_TOPIC\n",
                argv[0]);
        return 2;
    }
    const char *topic = argv[i];
    cfg.topics = &topic;
    cfg.n_topics = 1;
    qb_mirror *m;
    int rc = qb_mirror_open(&cfg, &m);
    if (rc != QB_OK) {
        fprintf(stderr, "mirror: %s\n", qb_strerror(rc));
        return 1;
    }
    int known = QB_EAGAIN; /* whether the topic exists: not known yet */
    for (long tick = 0; seconds == 0 || tick < seconds * 2; tick++) {
        struct timespec ts = {0, 500000000L};
        nanosleep(&ts, NULL);
        if (known == QB_EAGAIN) {
            char has[512];
            known = qb_mirror_check_topic(m, topic, has, sizeof has);
            if (known == QB_ENOINSTRUMENT) {
                fprintf(stderr, "mirror_top5: %s: %s; the broker has: %s\n", topic,
                        qb_strerror(known), has);
            }
        }
        qb_book_info info;
        if (qb_mirror_info(m, topic, &info) != QB_OK) {
            printf("%s: %s\n", topic,
                   known == QB_ENOINSTRUMENT ? "no such instrument (yet)" : "nothing yet");
            fflush(stdout);
            continue;
        }
        char bid[QB_DECIMAL_STR_MAX] = "-", ask[QB_DECIMAL_STR_MAX] = "-";
        if (info.has_bid) {
            qb_decimal_format(info.best_bid.price, bid, sizeof bid);
        }
        if (info.has_ask) {
            qb_decimal_format(info.best_ask.price, ask, sizeof ask);
        }
        printf("%s seq=%llu %s bid=%s ask=%s changes=%ld\n", topic, (unsigned long long)info.seq,
               qb_mirror_state_name(info.state), bid, ask, atomic_load(&changes));
        if (seconds == 0) {
            print_side(m, topic, QB_BIDS, 5);
            print_side(m, topic, QB_ASKS, 5);
        }
        fflush(stdout);
    }
    qb_book_info info;
    if (qb_mirror_info(m, topic, &info) == QB_OK) {
        printf("FINAL %s %llu %s\n", topic, (unsigned long long)info.seq,
               qb_mirror_state_name(info.state));
        print_side(m, topic, QB_BIDS, 100000);
        print_side(m, topic, QB_ASKS, 100000);
    }
    qb_mirror_stats st;
    qb_mirror_stats_get(m, &st);
    fprintf(stderr,
            "STATS gaps=%llu service_snapshots=%llu stream_snapshots=%llu requests=%llu "
            "failures=%llu deltas=%llu\n",
            (unsigned long long)st.gaps, (unsigned long long)st.service_snapshots,
            (unsigned long long)st.stream_snapshots, (unsigned long long)st.snapshot_requests,
            (unsigned long long)st.snapshot_failures, (unsigned long long)st.deltas);
    qb_mirror_close(m);
    return 0;
}
