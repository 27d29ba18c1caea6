/*
 * listeners.h: the broker's listening endpoints (ingest, pub, snapshot;
 * ipc and tcp), claimed exclusively and kept accepting.
 *
 * Two defences against NNG 1.5.2's broken listeners (nanomsg/nng#1518: a
 * connection closed during the SP handshake, e.g. a raw connect-and-close
 * or garbage on an ipc path, makes the listener stop handing new
 * connections to its socket for good, while dialers still "connect"):
 *
 * 1. Claim before touching. Every ipc:// address is claimed with an
 *    exclusive flock(2) on "<path>.lock" (the pid of the holder written in
 *    it) before nng_listen() runs, so a second broker started by mistake
 *    fails with the running instance's pid instead of probing (and
 *    breaking) its sockets, which NNG's own "is the path stale?" check does.
 *
 * 2. Probe and repair. A probe thread connects to every listener through
 *    its real address every QB_LISTENERS_PROBE_MS (a plain socket doing
 *    the SP handshake as the peer protocol; TLS listeners: an NNG dialer)
 *    and waits, at most QB_LISTENERS_PROBE_WAIT_MS, for the pipe to arrive
 *    at the listening socket (its NNG_PIPE_EV_ADD_POST from that
 *    listener): a listener whose connections complete the handshake but
 *    never reach the socket fails the probe, and so does an address where
 *    nothing listens any more (an ipc file removed); a local resource error
 *    (out of file descriptors) is no evidence and never tears one down. Any other pipe from the
 * same listener during the wait counts as well. QB_LISTENERS_FAILS failed probes in a row close the
 * listener (its pipes go with it; their peers redial) and listen again on the same address, logged
 *    (listener.repaired), counted, and reported to the event callback
 *    (the broker's status message on the bus). Detection bound:
 *    QB_LISTENERS_FAILS x (QB_LISTENERS_PROBE_MS + QB_LISTENERS_PROBE_WAIT_MS)
 *    = 2 x (500 + 250) ms = 1.5 s, plus the re-listen.
 *
 * Threads: qb_listeners_new/_add/_watch/_start/_stop/_free on one thread
 * (main); the probe thread runs between _start and _stop; qb_listeners_get
 * from any thread; the pipe callbacks run on NNG's threads.
 */
#ifndef QB_LISTENERS_H
#define QB_LISTENERS_H

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QB_LISTENERS_MAX 16
#define QB_LISTENERS_PROBE_MS 500u
#define QB_LISTENERS_PROBE_WAIT_MS 250u
#define QB_LISTENERS_FAILS 2u
/* What the README promises: a broken listener accepts again within this. */
#define QB_LISTENERS_BOUND_MS 2000u

typedef struct qb_listeners qb_listeners;

/* One listener's state, for /metrics, /health and tests. */
typedef struct qb_listener_info {
    char role[16];           /* "ingest", "pub", "snapshot" */
    char url[256];           /* the address as configured */
    bool up;                 /* listening, and the last probe reached the socket */
    uint64_t probes;         /* probes sent */
    uint64_t probe_fails;    /* probes whose pipe never reached the socket */
    uint64_t repairs;        /* times the listener was closed and re-created */
    uint64_t relisten_fails; /* re-creations that failed (retried next probe) */
} qb_listener_info;

/* Called on the probe thread after a listener was re-created (repaired:
 * true) or could not be (false). Must not call back into qb_listeners. */
typedef void (*qb_listeners_event_fn)(void *arg, const qb_listener_info *info, bool repaired);

/* Called for every pipe added to or removed from a watched socket
 * (NNG_PIPE_EV_ADD_POST, NNG_PIPE_EV_REM_POST), on NNG's threads; the
 * probes' own pipes are left out (told apart by the peer's pid on ipc, its
 * port on tcp), so connection counters count clients only. */
typedef void (*qb_listeners_pipe_fn)(void *arg, nng_pipe p, nng_pipe_ev ev);

/* A new, empty set. QB_OK or QB_ENOMEM. */
int qb_listeners_new(qb_listeners **out);

/* Takes the pipe notifications of s (ADD_POST, REM_POST) for the probes;
 * fn (may be NULL) gets them too. Call once per socket, before _add on it:
 * NNG keeps one callback per event per socket. QB_OK or QB_ETRANSPORT. */
int qb_listeners_watch(qb_listeners *ls, nng_socket s, qb_listeners_pipe_fn fn, void *arg);

/* Claims url (ipc: the lock file; the directory is created, mode 0755, or
 * 0700 when private is true) and listens on it with s, which must be
 * watched. role names it in logs and metrics. Returns QB_OK; QB_ESTATE
 * when another process holds the claim (logged with its pid: nothing of
 * the other instance was touched); QB_EINVAL for an address NNG refuses;
 * QB_ETRANSPORT when it cannot listen (busy port); QB_EIO when the
 * directory or lock file cannot be made. */
int qb_listeners_add(qb_listeners *ls, nng_socket s, const char *role, const char *url,
                     bool private_dir);

/* qb_listeners_add for a tls+tcp:// url: the listener is created with the
 * server TLS configuration tls (nngtls.h; clients must present a
 * certificate), and the probe dials it with probe_tls (a client
 * configuration presenting the broker's certificate; NULL: this listener
 * is not probed). Both are held until qb_listeners_free (the caller keeps
 * and frees its own holds). A TLS listener is repaired only once a probe of
 * it has succeeded: a certificate that cannot act as a client certificate
 * (no clientAuth usage) leaves it unprobed (logged once,
 * listener.probe_unproven) instead of re-created every few seconds. Same
 * results as qb_listeners_add. */
int qb_listeners_add_tls(qb_listeners *ls, nng_socket s, const char *role, const char *url,
                         bool private_dir, nng_tls_config *tls, nng_tls_config *probe_tls);

/* Sets the repair event callback (before _start). */
void qb_listeners_set_event_cb(qb_listeners *ls, qb_listeners_event_fn fn, void *arg);

/* Starts the probe thread (probe_ms 0: QB_LISTENERS_PROBE_MS). QB_OK or
 * QB_ENOMEM. */
int qb_listeners_start(qb_listeners *ls, unsigned probe_ms);

/* Stops the probe thread (returns within one probe). Call before the
 * watched sockets close. Idempotent. */
void qb_listeners_stop(qb_listeners *ls);

/* Copies the state of listener i (0 <= i < n); returns the number of
 * listeners. out may be NULL to just count. Any thread. */
size_t qb_listeners_get(qb_listeners *ls, size_t i, qb_listener_info *out);

/* Stops the thread, closes the probe sockets and releases the claims (the
 * lock files stay, unlocked). NULL is a no-op. The listening sockets are
 * their owners' to close. */
void qb_listeners_free(qb_listeners *ls);

#endif
