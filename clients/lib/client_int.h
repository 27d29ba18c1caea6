/*
 * client_int.h: private helpers shared by libquotebus's files (not
 * installed). The library's .c files see both the public header (with its
 * error enum left out: the same names and values come from common/err.h,
 * checked in client.c) and the project's internal headers; public types
 * have names of their own (qb_message, qb_decimal, qb_price_level, ...)
 * so nothing collides with proto/ (qb_msg, qb_dec, qb_level, ...).
 */
#ifndef QB_CLIENT_INT_H
#define QB_CLIENT_INT_H

#define QUOTEBUS_NO_ERROR_ENUM
#include "quotebus.h"

#include "err.h"
#include "msg.h"
#include "snapclient.h"

#include <nng/nng.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A bounded hash table from topic (copied) to a caller value. Open
 * addressing with linear probing; one thread at a time. */
typedef struct qbc_map_entry {
    uint64_t hash;
    size_t len;
    void *value;
    char key[]; /* len bytes and a NUL */
} qbc_map_entry;

typedef struct qbc_map {
    qbc_map_entry **slots;
    size_t cap, count, max;
} qbc_map;

void qbc_map_init(qbc_map *m, size_t max);
/* Frees the table and its keys (not the values). */
void qbc_map_fini(qbc_map *m);
/* The entry of key, or NULL. */
qbc_map_entry *qbc_map_find(const qbc_map *m, const char *key, size_t len);
/* The entry of key, created (value NULL) when absent; NULL when the table
 * is full (max) or memory is short. *created tells which. */
qbc_map_entry *qbc_map_get(qbc_map *m, const char *key, size_t len, bool *created);

/* The NNG subscription bytes for a user topic argument: an exact topic
 * (two dots, not ending in '.') includes its NUL. Returns the length to
 * subscribe with, or 0 when the topic is too long. */
size_t qbc_sub_len(const char *topic);

/* Sets the options every quotebus SUB socket needs (8192-deep queue, 8 MiB
 * frames, fast redial). */
int qbc_sub_options(nng_socket s);

/* Closes s, waiting at most timeout_ms. NNG 1.5.2 can hang for ever in
 * nng_close() of a SUB socket while frames are arriving (its pipe reaper
 * waits on a task that never runs: nanomsg/nng#1543, fixed upstream after
 * 1.5.2). The close runs on a helper thread; when it does not finish in
 * time the socket is abandoned to NNG (it stays reachable from NNG's own
 * tables) and this returns QB_ETIMEDOUT, so an application never hangs in
 * a _close() of this library. The caller must have removed every callback
 * it registered on s. */
int qbc_close_socket(nng_socket s, int timeout_ms);

/* Builds a library-owned message from a decoded one (one allocation). */
int qbc_message_new(const qb_msg *m, qb_str topic, uint64_t gap, qb_message **out);

#endif
