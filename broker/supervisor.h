/*
 * supervisor.h: child processes of quotebus-broker (library qbbroker): the
 * adapters (and, in --demo, the exchange simulator).
 *
 * Each child is an argv started with fork+execv. One that exits is started
 * again after a backoff that doubles from policy.backoff_min_ms up to
 * policy.backoff_max_ms and resets once a run has lasted policy.healthy_ms.
 * Every start, exit and scheduled restart is logged with a stable id
 * (child.start, child.exit, child.restart). A child gets SIGTERM when the
 * broker dies (PR_SET_PDEATHSIG), so a kill -9 of the broker never leaves
 * orphan adapters that would publish beside their replacements.
 *
 * Threads: the main thread only (the owner of SIGCHLD handling).
 */
#ifndef QB_BROKER_SUPERVISOR_H
#define QB_BROKER_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct qb_super qb_super;

typedef struct qb_super_policy {
    uint64_t backoff_min_ms; /* first restart delay; default 1000 */
    uint64_t backoff_max_ms; /* cap; default 30000 */
    uint64_t healthy_ms;     /* a run this long resets the backoff; default 60000 */
} qb_super_policy;

/* Returns a supervisor with no children, or NULL when out of memory.
 * policy NULL (or zero fields) means the defaults. */
qb_super *qb_super_new(const qb_super_policy *policy);

/* Stops every child still running (as qb_super_stop with 5 s) and frees.
 * NULL is a no-op. */
void qb_super_free(qb_super *s);

/* Adds a child, not started yet (qb_super_poll starts it). name is for logs
 * and counters ("adapter binance"); argv is NULL-terminated with argv[0] the
 * program's path; both are copied. QB_OK, QB_EINVAL or QB_ENOMEM. */
int qb_super_add(qb_super *s, const char *name, const char *const *argv);

/* Reaps exited children (logs, schedules their restart) and starts the ones
 * that are due. Call on SIGCHLD and at least every 100 ms. now_ms is a
 * monotonic time in ms. */
void qb_super_poll(qb_super *s, uint64_t now_ms);

/* Sends SIGTERM to every running child, waits up to grace_ms for them to
 * exit, then SIGKILLs and reaps the rest. No restarts afterwards. */
void qb_super_stop(qb_super *s, uint64_t grace_ms);

/* Starts and restarts so far, and running children, of the children whose
 * name begins with prefix ("" for all). */
uint64_t qb_super_starts(const qb_super *s, const char *prefix);
uint64_t qb_super_restarts(const qb_super *s, const char *prefix);
size_t qb_super_running(const qb_super *s, const char *prefix);

/* The pid of child i (in order of qb_super_add), or -1 when not running. */
int qb_super_pid(const qb_super *s, size_t i);

/* Finds an executable: next to /proc/self/exe first, then on PATH. Writes
 * its path to out and returns QB_OK, or QB_ENOTFOUND. */
int qb_super_find_binary(const char *name, char *out, size_t cap);

#endif
