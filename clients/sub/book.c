/*
 * book.c: quotebus-sub --book (book.h). The mirror's change callback runs
 * on the mirror's thread: under the context's lock it copies the top
 * levels with qb_mirror_levels (one consistent state, with its seq),
 * prints one line, flushed, counts it and wakes the main thread; once
 * --count lines are out it prints nothing more, so the count is exact
 * however fast changes come. The main thread waits on the condition
 * variable (50 ms ticks, for signals) for the count, --timeout-ms since the
 * last line, or --duration-ms, and asks the mirror whether the topic exists
 * (qb_mirror_check_topic) until it knows.
 */
#include "book.h"

#include "log.h"

#include <quotebus.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BOOK_TICK_MS 50

typedef struct book_ctx {
    const char *topic;
    size_t depth;
    int64_t count;
    qb_price_level *lv;     /* mirror thread only: 2 * depth levels */
    pthread_mutex_t lock;   /* guards lines, last_line_ms, and stdout */
    pthread_cond_t changed; /* a line was printed */
    int64_t lines;
    int64_t last_line_ms;
} book_ctx;

static int64_t book_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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
    pthread_mutex_lock(&c->lock);
    if (c->count > 0 && c->lines >= c->count) {
        pthread_mutex_unlock(&c->lock);
        return; /* the main thread is on its way out */
    }
    qb_book_info info;
    size_t nb = 0, na = 0;
    uint64_t seq_b = 0, seq_a = 0;
    if (qb_mirror_info(m, topic, &info) != QB_OK ||
        qb_mirror_levels(m, topic, QB_BIDS, c->lv, c->depth, &nb, &seq_b) != QB_OK ||
        qb_mirror_levels(m, topic, QB_ASKS, c->lv + c->depth, c->depth, &na, &seq_a) != QB_OK ||
        seq_a != seq_b) {
        /* Not there, or changed between the two copies: the next callback
         * prints it. */
        pthread_mutex_unlock(&c->lock);
        return;
    }
    /* Topics are "book.<ex>.<sym>": no character needs escaping in JSON. */
    fprintf(stdout, "{\"topic\":\"%s\",\"seq\":%llu,\"state\":\"%s\",\"bids\":", topic,
            (unsigned long long)seq_b, qb_mirror_state_name(info.state));
    book_side(c->lv, nb);
    fputs(",\"asks\":", stdout);
    book_side(c->lv + c->depth, na);
    fputs("}\n", stdout);
    fflush(stdout);
    c->lines++;
    c->last_line_ms = book_now_ms();
    pthread_cond_signal(&c->changed);
    pthread_mutex_unlock(&c->lock);
}

int sub_book_run(const sub_book_opts *o, volatile sig_atomic_t *stop)
{
    book_ctx c = {.topic = o->topic, .depth = (size_t)o->depth, .count = o->count};
    if ((c.lv = calloc(2 * c.depth, sizeof *c.lv)) == NULL) {
        fprintf(stderr, "quotebus-sub: out of memory\n");
        return 1;
    }
    pthread_mutex_init(&c.lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c.changed, &ca);
    pthread_condattr_destroy(&ca);
    const char *topics[1] = {o->topic};
    qb_mirror_config cfg = {
        .connect = o->connect,
        .snapshot = o->snapshot,
        .topics = topics,
        .n_topics = 1,
        .on_change = book_on_change,
        .arg = &c,
    };
    qb_mirror *m = NULL;
    int rc = qb_mirror_open(&cfg, &m);
    if (rc != QB_OK) {
        fprintf(stderr, "quotebus-sub: mirror %s: %s\n", o->topic, qb_strerror(rc));
        pthread_cond_destroy(&c.changed);
        pthread_mutex_destroy(&c.lock);
        free(c.lv);
        return 1;
    }
    int64_t t0 = book_now_ms();
    bool known = false; /* the topic exists, or was said not to */
    pthread_mutex_lock(&c.lock);
    c.last_line_ms = t0;
    while (!*stop) {
        int64_t now = book_now_ms();
        if ((o->count > 0 && c.lines >= o->count) ||
            (o->duration_ms > 0 && now - t0 >= o->duration_ms) ||
            (o->timeout_ms > 0 && now - c.last_line_ms >= o->timeout_ms)) {
            break;
        }
        if (!known) {
            char has[1024];
            pthread_mutex_unlock(&c.lock);
            int crc = qb_mirror_check_topic(m, o->topic, has, sizeof has);
            if (crc == QB_ENOINSTRUMENT) {
                QB_WARN("sub.no_such_topic", "topic=%s matches no instrument; the broker has: %s",
                        o->topic, has[0] ? has : "(the service did not say)");
            }
            known = crc == QB_OK || crc == QB_ENOINSTRUMENT;
            pthread_mutex_lock(&c.lock);
        }
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_nsec += BOOK_TICK_MS * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c.changed, &c.lock, &dl);
    }
    pthread_mutex_unlock(&c.lock);
    qb_mirror_close(m); /* no callback after this */
    pthread_cond_destroy(&c.changed);
    pthread_mutex_destroy(&c.lock);
    free(c.lv);
    return 0;
}
