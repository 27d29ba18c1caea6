/*
 * book.c: quotebus-sub --book (book.h). The mirror's change callback runs
 * on the mirror's thread: it copies the top levels with qb_mirror_levels
 * (one consistent state, with its seq) and prints one line, flushed. The
 * main thread only waits for a signal, the duration or the line count.
 */
#include "book.h"

#include <quotebus.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct book_ctx {
    const char *topic;
    size_t depth;
    qb_price_level *lv;
    _Atomic int64_t lines;
} book_ctx;

static void book_side(const qb_price_level *lv, size_t n)
{
    char p[QB_DECIMAL_STR_MAX], q[QB_DECIMAL_STR_MAX];
    fputc('[', stdout);
    for (size_t i = 0; i < n; i++) {
        qb_decimal_format(lv[i].price, p, sizeof p);
        qb_decimal_format(lv[i].size, q, sizeof q);
        fprintf(stdout, "%s[\"%s\",\"%s\"]", i ? "," : "", p, q);
    }
    fputc(']', stdout);
}

static void book_on_change(void *arg, qb_mirror *m, const char *topic)
{
    book_ctx *c = arg;
    if (strcmp(topic, c->topic) != 0) {
        return;
    }
    qb_book_info info;
    size_t nb = 0, na = 0;
    uint64_t seq_b = 0, seq_a = 0;
    if (qb_mirror_info(m, topic, &info) != QB_OK ||
        qb_mirror_levels(m, topic, QB_BIDS, c->lv, c->depth, &nb, &seq_b) != QB_OK ||
        qb_mirror_levels(m, topic, QB_ASKS, c->lv + c->depth, c->depth, &na, &seq_a) != QB_OK) {
        return;
    }
    if (seq_a != seq_b) {
        return; /* changed between the two copies: the next callback prints it */
    }
    /* Topics are "book.<ex>.<sym>": no character needs escaping in JSON. */
    fprintf(stdout, "{\"topic\":\"%s\",\"seq\":%llu,\"state\":\"%s\",\"bids\":", topic,
            (unsigned long long)seq_b, qb_mirror_state_name(info.state));
    book_side(c->lv, nb);
    fputs(",\"asks\":", stdout);
    book_side(c->lv + c->depth, na);
    fputs("}\n", stdout);
    fflush(stdout);
    atomic_fetch_add(&c->lines, 1);
}

int sub_book_run(const char *connect, const char *snapshot, const char *topic, int64_t depth,
                 int64_t duration_ms, int64_t count, volatile sig_atomic_t *stop)
{
    if (strncmp(topic, "book.", 5) != 0 || depth <= 0 || depth > 100000) {
        fprintf(stderr, "quotebus-sub: --book needs a book.<ex>.<sym> topic and --depth 1..100000\n");
        return 2;
    }
    book_ctx c = {.topic = topic, .depth = (size_t)depth};
    atomic_init(&c.lines, 0);
    if ((c.lv = calloc(2 * c.depth, sizeof *c.lv)) == NULL) {
        fprintf(stderr, "quotebus-sub: out of memory\n");
        return 1;
    }
    const char *topics[1] = {topic};
    qb_mirror_config cfg = {
        .connect = connect,
        .snapshot = snapshot,
        .topics = topics,
        .n_topics = 1,
        .on_change = book_on_change,
        .arg = &c,
    };
    qb_mirror *m = NULL;
    int rc = qb_mirror_open(&cfg, &m);
    if (rc != QB_OK) {
        fprintf(stderr, "quotebus-sub: mirror %s: libquotebus error %d\n", topic, rc);
        free(c.lv);
        return 1;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!*stop) {
        struct timespec now, tick = {0, 50 * 1000000L};
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t el = (int64_t)(now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if ((duration_ms > 0 && el >= duration_ms) ||
            (count > 0 && atomic_load(&c.lines) >= count)) {
            break;
        }
        nanosleep(&tick, NULL);
    }
    qb_mirror_close(m);
    free(c.lv);
    return 0;
}
