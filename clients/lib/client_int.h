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
#include "seq.h"
#include "snapclient.h"
#include "strmap.h"
#include "topic.h"

#include <nng/nng.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A bounded hash table from topic (copied) to a caller value: entries
 * with the key inline over common/strmap.h (full: new topics refused, see
 * qbc_map_get). One thread at a time. */
typedef struct qbc_map_entry {
    qb_strmap_node node; /* first: an entry is freed through its node */
    void *value;
    char key[]; /* len bytes and a NUL */
} qbc_map_entry;

typedef struct qbc_map {
    qb_strmap t;
} qbc_map;

void qbc_map_init(qbc_map *m, size_t max);
/* Frees the table and its keys (not the values). */
void qbc_map_fini(qbc_map *m);
/* The entry of key, or NULL. */
qbc_map_entry *qbc_map_find(const qbc_map *m, const char *key, size_t len);
/* The entry of key, created (value NULL) when absent; NULL when the table
 * is full (max) or memory is short. *created tells which. */
qbc_map_entry *qbc_map_get(qbc_map *m, const char *key, size_t len, bool *created);

/* (The NNG subscription bytes of a topic argument: qb_topic_sub_len,
 * proto/topic.h.) */

/* Sets the options every quotebus SUB socket needs (8192-deep queue, 8 MiB
 * frames, fast redial). */
int qbc_sub_options(nng_socket s);

/* Builds a library-owned message from a decoded one (one allocation). */
int qbc_message_new(const qb_msg *m, qb_str topic, uint64_t gap, qb_message **out);

#endif
