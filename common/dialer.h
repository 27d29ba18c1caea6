/*
 * dialer.h: an NNG dial that never gives up, with connection logging.
 *
 * NNG redials a lost connection by itself, but we have seen (once, under
 * heavy load, after a kill -9 of the broker) a publisher whose dialer never
 * delivered to the restarted broker again. qb_dialer makes that impossible
 * to go unnoticed or unhealed: it tracks the socket's pipes through
 * nng_pipe_notify (logging every connect and disconnect with a stable id),
 * and a watchdog timer (an NNG sleep aio, no thread of its own) closes and
 * re-creates the dialer when the socket has had no pipe for
 * QB_DIALER_REDIAL_MS. Reconnect backoff is set to 100 ms .. 2 s.
 *
 * A tls+tcp:// URL dials with a TLS configuration (nngtls.h), set on every
 * dialer the watchdog creates.
 *
 * One qb_dialer per socket (pipe notifications are per socket). Start and
 * stop from one thread; the callbacks run on NNG's threads and touch only
 * atomics and the dialer handle.
 */
#ifndef QB_DIALER_H
#define QB_DIALER_H

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>
#include <stdint.h>

#define QB_DIALER_REDIAL_MS 3000

typedef struct qb_dialer qb_dialer;

/* Dials url from s (non-blocking: the broker may not be up yet) and starts
 * the watchdog. what names the peer in logs ("broker"). The caller owns the
 * result; qb_dialer_stop() closes s and frees it. Returns QB_OK,
 * QB_ENOMEM, or the converted NNG error (bad URL). */
int qb_dialer_start(nng_socket s, const char *url, const char *what, qb_dialer **out);

/* qb_dialer_start with a TLS configuration set on the dialer (tls may be
 * NULL: plain). The qb_dialer takes its own hold on tls (the caller keeps
 * and frees its own). Same results. */
int qb_dialer_start_tls(nng_socket s, const char *url, const char *what, nng_tls_config *tls,
                        qb_dialer **out);

/* Announces a deliberate close, for a caller that closes s itself first
 * (a bounded close, nngclose.h): stops the watchdog, and the disconnects
 * the close causes are not warned about (a normal exit is not a lost
 * connection). qb_dialer_stop must still follow when the close completed.
 * NULL is a no-op. */
void qb_dialer_shutdown(qb_dialer *d);

/* Stops the watchdog (waits for a running callback), CLOSES THE SOCKET s
 * (so that no pipe callback can still be running), then frees d. The socket
 * must not be used after this. NULL is a no-op. */
void qb_dialer_stop(qb_dialer *d);

/* Pipes connected now. Any thread. */
int qb_dialer_pipes(const qb_dialer *d);

/* How many connections were ever made (a change means a (re)connect: the
 * peer may be a new process that knows nothing yet). Any thread. */
uint64_t qb_dialer_connects(const qb_dialer *d);

#endif
