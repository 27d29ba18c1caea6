/*
 * snapclient.h: the client of the broker's snapshot service (PROTOCOL.md
 * section 11), shared by libquotebus (mirror.c) and quotebus-sub (private,
 * not installed; built as the static library qbsnapclient, linked into
 * both). It uses only the project's internal types (qb_str, qb_feed_state,
 * qb_buf), never quotebus.h, so quotebus-sub's main.c can include it.
 *
 *   caller --qbc_snap_request(topic)--> REQ socket --NNG--> broker REP
 *          <--qbc_snap_reply (views into the reply message)--
 *
 * A request blocks the calling thread for at most its timeout; one thread
 * at a time per socket (a REQ socket abandons an earlier request when a new
 * one is sent, so a late reply is never taken for the next one's).
 */
#ifndef QB_CLIENTS_SNAPCLIENT_H
#define QB_CLIENTS_SNAPCLIENT_H

#include "buf.h"
#include "msg.h"

#include <nng/nng.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Error code of the service's "no book has that topic or prefix" reply. */
#define QBC_SNAP_UNKNOWN_TOPIC "unknown_topic"

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

/* Opens a REQ socket for the service at url, with the options every
 * requester needs (replies up to twice QB_MSG_MAX_FRAME, fast redial), and
 * dials it without blocking (the service need not be up yet). With pipe_cb
 * non-NULL, it is registered for NNG_PIPE_EV_ADD_POST and _REM_POST before
 * the dial, so no connection is missed (the caller removes it before the
 * close). QB_OK and *out (the caller closes it), QB_EINVAL (a bad url),
 * QB_ETRANSPORT or QB_ENOMEM. */
int qbc_snap_open(const char *url, nng_pipe_cb pipe_cb, void *cb_arg, nng_socket *out);

/* Sends a snapshot request for topic (exact or prefix) on the REQ socket
 * and waits at most timeout_ms for the reply. QB_OK (reply parsed: ok or
 * an error reply, see r->ok), QB_ETIMEDOUT, QB_ETRANSPORT, QB_EPARSE
 * (malformed reply), QB_ENOMEM. On QB_OK free with qbc_snap_reply_fini. */
int qbc_snap_request(nng_socket req, const char *topic, int timeout_ms, qbc_snap_reply *r);
void qbc_snap_reply_fini(qbc_snap_reply *r);
/* Parses a reply body (exposed for tests). */
int qbc_snap_parse(const void *data, size_t len, qbc_snap_reply *r);

/* True for the error reply "unknown_topic": no book has that exact topic
 * or starts with that prefix. */
bool qbc_snap_unknown(const qbc_snap_reply *r);

/* Appends what the service's reply to a "book." request says the broker
 * has, for people: "binance BTC-USDT ETH-USDT, htx BTC-USDT" (the format of
 * qb_topic_instruments), "no books" for an unknown_topic reply. QB_OK or
 * QB_ENOMEM. */
int qbc_snap_instruments(const qbc_snap_reply *r, qb_buf *out);

#endif
