/*
 * book.h: quotebus-sub --book, the mirrored book printed on each change,
 * through the client library libquotebus (quotebus.h). Kept apart from
 * main.c: quotebus.h and the internal headers (err.h, msg.h) define some
 * of the same names, so no file includes both.
 */
#ifndef QB_SUB_BOOK_H
#define QB_SUB_BOOK_H

#include <signal.h>
#include <stdint.h>

typedef struct sub_book_opts {
    const char *connect;  /* the broker's publish address */
    const char *snapshot; /* its snapshot service; "": none */
    const char *topic;    /* one instrument: "book.<ex>.<sym>" (checked by the caller) */
    int64_t depth;        /* levels per side, 1..100000 */
    int64_t count;        /* exit after exactly this many lines; 0: never */
    int64_t timeout_ms;   /* exit after this long without a line; 0: never */
    int64_t duration_ms;  /* exit after this long; 0: never */
} sub_book_opts;

/* Mirrors o->topic and prints one JSON line per change to stdout:
 * {"topic","seq","state","bids","asks"} with the top depth levels as exact
 * decimal strings; never more than o->count lines. When the snapshot
 * service says the topic matches no instrument (2 s after start), says so
 * once on stderr (sub.no_such_topic, with what the broker has) and goes on
 * waiting. Returns when *stop becomes non-zero, or on o->count, timeout_ms
 * or duration_ms: the exit code, 0 (all of these) or 1 when the mirror
 * cannot open. Main thread. */
int sub_book_run(const sub_book_opts *o, volatile sig_atomic_t *stop);

#endif
