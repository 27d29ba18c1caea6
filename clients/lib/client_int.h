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

/* ---- snapshot service client (PROTOCOL.md section 11) ---- */

typedef struct qbc_snap_book {
    qb_str topic;
    bool valid;
    bool has_state;
    qb_feed_state state;
    uint64_t seq;
    uint64_t age_ms;
    const void *frame; /* a standard snapshot frame, or NULL when !valid */
    size_t frame_len;
} qbc_snap_book;

typedef struct qbc_snap_reply {
    bool ok;
    bool truncated;
    char code[32];
    char error[256];
    qbc_snap_book *books;
    size_t n_books;
    nng_msg *msg; /* the views point into it */
} qbc_snap_reply;

/* Sends a snapshot request for topic (exact or prefix) on the REQ socket
 * and waits at most timeout_ms for the reply. QB_OK (reply parsed: ok or
 * an error reply, see r->ok), QB_ETIMEDOUT, QB_ETRANSPORT, QB_EPARSE
 * (malformed reply), QB_ENOMEM. Free with qbc_snap_reply_fini. */
int qbc_snap_request(nng_socket req, const char *topic, int timeout_ms, qbc_snap_reply *r);
void qbc_snap_reply_fini(qbc_snap_reply *r);
/* Parses a reply body (exposed for tests). */
int qbc_snap_parse(const void *data, size_t len, qbc_snap_reply *r);

#endif
