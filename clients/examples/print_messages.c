/*
 * print_messages.c: the smallest libquotebus subscriber. Prints one line per
 * message of the topics given, and reports lost messages (gaps).
 *
 *   cc print_messages.c $(pkg-config --cflags --libs quotebus) -o print_messages
 *   ./print_messages [--connect URL] [--count N] book.binance. trade.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep with -std=c11 */

#include <quotebus.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *url = NULL; /* NULL: the local broker */
    long count = 0;
    int i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--connect") == 0) {
            url = argv[i + 1];
        } else if (strcmp(argv[i], "--count") == 0) {
            count = atol(argv[i + 1]);
        }
    }
    if (i >= argc) {
        fprintf(stderr, "usage: %s [--connect URL] [--count N] TOPIC_PREFIX...\n", argv[0]);
        return 2;
    }
    qb_subscriber *s;
    int rc = qb_subscriber_open(url, &s);
    if (rc != QB_OK) {
        fprintf(stderr, "open: %s\n", qb_strerror(rc));
        return 1;
    }
    for (; i < argc; i++) {
        if ((rc = qb_subscriber_subscribe(s, argv[i])) != QB_OK) {
            fprintf(stderr, "subscribe %s: %s\n", argv[i], qb_strerror(rc));
            qb_subscriber_close(s);
            return 2;
        }
    }
    for (long n = 0; count == 0 || n < count;) {
        qb_message *m;
        rc = qb_subscriber_recv(s, 10000, &m);
        if (rc == QB_ETIMEDOUT) {
            fprintf(stderr, "no message for 10 s\n");
            break;
        }
        if (rc != QB_OK) {
            fprintf(stderr, "recv: %s\n", qb_strerror(rc));
            break;
        }
        char px[QB_DECIMAL_STR_MAX] = "-";
        if (m->type == QB_MESSAGE_TRADE) {
            qb_decimal_format(m->price, px, sizeof px);
        } else if ((m->type == QB_MESSAGE_SNAPSHOT || m->type == QB_MESSAGE_DELTA) &&
                   m->n_bids > 0) {
            qb_decimal_format(m->bids[0].price, px, sizeof px);
        }
        printf("%s %s seq=%llu %s%s\n", m->topic, qb_message_type_name(m->type),
               (unsigned long long)m->seq, px, m->gap ? " (messages lost before this one)" : "");
        qb_message_free(m); /* the caller owns each message */
        n++;
    }
    qb_subscriber_stats st;
    qb_subscriber_stats_get(s, &st);
    fprintf(stderr, "messages=%llu gaps=%llu missed=%llu\n", (unsigned long long)st.messages,
            (unsigned long long)st.gaps, (unsigned long long)st.missed);
    qb_subscriber_close(s);
    return 0;
}
