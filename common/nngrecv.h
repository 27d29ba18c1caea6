/*
 * nngrecv.h: receiving from an NNG socket with a deadline, without NNG's
 * receive timeouts.
 *
 * NNG 1.5.2 loses a message when a receive's timeout (NNG_OPT_RECVTIMEO,
 * or an aio timeout) expires at the moment a message is handed to it: the
 * message was taken off the socket's queue, the receive still reports
 * NNG_ETIMEDOUT. Measured (sub0 over ipc, 1 ms timeouts, a 2-core machine
 * kept busy): 2 messages lost in 5 runs of 30000 (47000 expiries), none in
 * 3 runs without a timeout; the broker's 100 ms ingest tick lost about one
 * message every 15-40 minutes of a quiet demo ("unexplained" ingest gaps).
 *
 * So a qb_nng_recv keeps one receive pending on the socket with no timeout
 * at all, and the caller waits for it on its own condition variable with
 * its own deadline: a deadline that passes leaves the receive pending (the
 * next call picks up its message); nothing is ever cancelled except at
 * close.
 *
 * Threads: qb_nng_recv_next from one thread at a time; qb_nng_recv_wake
 * from any thread; the completion runs on NNG's threads.
 */
#ifndef QB_NNGRECV_H
#define QB_NNGRECV_H

#include <nng/nng.h>

typedef struct qb_nng_recv qb_nng_recv;

/* A receiver for s (which the caller keeps open until qb_nng_recv_free).
 * QB_OK or QB_ENOMEM. */
int qb_nng_recv_new(nng_socket s, qb_nng_recv **out);

/* The next message, waiting at most timeout_ms (negative: no limit; 0:
 * only one already received). QB_OK and *msg (the caller owns it);
 * QB_ETIMEDOUT (the deadline passed, or qb_nng_recv_wake); QB_ECLOSED (the
 * socket closed); another receive error as qb_err_from_nng() converts it
 * (mostly QB_ETRANSPORT; nng's code in *nng_err when not NULL; the next
 * call receives again). */
int qb_nng_recv_next(qb_nng_recv *r, int timeout_ms, nng_msg **msg, int *nng_err);

/* Makes a qb_nng_recv_next in progress (or the next one) return
 * QB_ETIMEDOUT at once. Any thread. */
void qb_nng_recv_wake(qb_nng_recv *r);

/* Cancels the pending receive (a message it already took is freed) and
 * frees r. NULL is a no-op. Not concurrently with qb_nng_recv_next. */
void qb_nng_recv_free(qb_nng_recv *r);

#endif
