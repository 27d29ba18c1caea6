/*
 * nngclose.h: nng_close() with a time bound.
 *
 * NNG 1.5.2 can deadlock in nng_close() when a message is in flight on a
 * pipe as the socket closes (nanomsg/nng#1543, fixed after 1.5.2; seen in
 * a few percent of closes under live traffic). qb_nng_close_bounded() runs
 * the close on a helper thread and waits for it at most ms; past that the
 * socket is abandoned (logged once with the id nng.close_stuck) and the
 * caller goes on - the programs use it on the way to process exit,
 * libquotebus in its _close functions.
 */
#ifndef QB_NNGCLOSE_H
#define QB_NNGCLOSE_H

#include <nng/nng.h>
#include <stdbool.h>

/* Closes s, waiting at most ms. Returns true when the close completed;
 * false when it was abandoned (the helper thread finishes it, if ever, and
 * frees its own state). what names the socket in the log line; NULL logs
 * nothing (libquotebus logs under its own documented ids). Waits on the
 * monotonic clock. Any thread; s must not be used afterwards either way. */
bool qb_nng_close_bounded(nng_socket s, const char *what, unsigned ms);

/* Counts an NNG object abandoned elsewhere (a thread left stuck inside
 * NNG), so that qb_nng_fini() skips nng_fini(). Any thread. */
void qb_nng_note_abandoned(void);

/* At process exit: nng_fini() (which waits for NNG's reaper to free the
 * pipes and messages of closed sockets, so that a leak checker sees none),
 * unless a close was abandoned (nng_fini would wait for it forever).
 * Main thread, after every socket is closed. */
void qb_nng_fini(void);

#endif
