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

/* Mirrors topic (a "book.<ex>.<sym>" topic) from the broker at connect
 * (snapshot service at snapshot; NULL: the library's default) and prints
 * one JSON line per change to stdout: {"topic","seq","state","bids","asks"}
 * with the top depth levels as exact decimal strings. Returns when *stop
 * becomes non-zero, after duration_ms (0: never) or after count lines (0:
 * never). Returns the exit code (0, or 1 when the mirror cannot open).
 * Main thread. */
int sub_book_run(const char *connect, const char *snapshot, const char *topic, int64_t depth,
                 int64_t duration_ms, int64_t count, volatile sig_atomic_t *stop);

#endif
