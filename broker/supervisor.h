/*
 * supervisor.h: child processes of quotebus-broker (library qbbroker): the
 * adapters (and, in --demo, the exchange simulator).
 *
 * Each child is an argv started with fork+execv. One that exits is started
 * again after a backoff that doubles from policy.backoff_min_ms up to
 * policy.backoff_max_ms and resets once a run has lasted policy.healthy_ms.
 * Every start, exit and scheduled restart is logged with a stable id
 * (child.start, child.exit, child.restart). One that exits with status
 * QB_SUPER_EXIT_PERMANENT (2: bad options, the exit status of every
 * quotebus binary for them) would fail the same way on every restart, so
 * it is never restarted: it is logged once at error level
 * (child.permanent), stays "failed" until the broker exits, and its owner
 * hears QB_SUPER_FAILED. qb_super_run runs a short-lived program (such as
 * quotebus-adapter --check) to completion, for checks before any child
 * starts. A child gets SIGTERM when the
 * broker dies (PR_SET_PDEATHSIG), so a kill -9 of the broker never leaves
 * orphan adapters that would publish beside their replacements. The owner
 * kills a hung child with qb_super_kill (counted as a hung kill; restarted
 * through the same backoff) and hears of every start and exit through the
 * event callback (main.c turns them into status messages on the bus).
 *
 * Threads: the main thread only (the owner of SIGCHLD handling).
 */
#ifndef QB_BROKER_SUPERVISOR_H
#define QB_BROKER_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct qb_super qb_super;

/* The exit status that means "bad options": never restarted. */
#define QB_SUPER_EXIT_PERMANENT 2

/* What happened to a child, for the event callback. */
typedef enum qb_super_event {
    QB_SUPER_START = 0, /* started (first time or again); detail "started (pid N)" */
    QB_SUPER_EXIT,      /* exited; detail "exited with signal 9", "exit code 1" or, after
                         * qb_super_kill, the reason given to it; delay_ms = restart delay
                         * (UINT64_MAX while stopping: no restart) */
    QB_SUPER_FAILED,    /* exited with QB_SUPER_EXIT_PERMANENT: never restarted; detail
                         * "exit code 2"; delay_ms UINT64_MAX */
} qb_super_event;

/* Called on the main thread from qb_super_poll / qb_super_stop, for child
 * i (order of qb_super_add). detail is valid during the call only. */
typedef void (*qb_super_event_fn)(void *arg, size_t i, qb_super_event ev, const char *detail,
                                  uint64_t delay_ms);

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

/* Sends SIGTERM to every running child, the last added first, waits up to
 * grace_ms for them to exit, then SIGKILLs and reaps the rest. No restarts afterwards. Failed
 * children stay "failed" (qb_super_failed still counts them). */
void qb_super_stop(qb_super *s, uint64_t grace_ms);

/* Starts and restarts so far, and running children, of the children whose
 * name begins with prefix ("" for all). */
uint64_t qb_super_starts(const qb_super *s, const char *prefix);
uint64_t qb_super_restarts(const qb_super *s, const char *prefix);
size_t qb_super_running(const qb_super *s, const char *prefix);

/* Children whose name begins with prefix that exited with
 * QB_SUPER_EXIT_PERMANENT and are not restarted. */
size_t qb_super_failed(const qb_super *s, const char *prefix);

/* The state of child i, a static string: "pending" (not started yet),
 * "running", "waiting" (restart due after the backoff), "failed" (exited
 * with QB_SUPER_EXIT_PERMANENT, not restarted) or "stopped"; NULL when
 * there is no child i. */
const char *qb_super_state(const qb_super *s, size_t i);

/* The argv of child i as given to qb_super_add (NULL-terminated, owned by
 * the supervisor, valid until qb_super_free), or NULL when there is none. */
const char *const *qb_super_argv(const qb_super *s, size_t i);

/* The pid of child i (in order of qb_super_add), or -1 when not running. */
int qb_super_pid(const qb_super *s, size_t i);

/* Sets (fn NULL: clears) the event callback. */
void qb_super_set_event_cb(qb_super *s, qb_super_event_fn fn, void *arg);

/* SIGKILLs running child i (a hung one) and counts it in
 * qb_super_hung_kills; reason (copied) becomes the detail of its
 * QB_SUPER_EXIT event. Its restart then goes through the usual backoff.
 * QB_OK, or QB_ENOTFOUND when child i is not running. */
int qb_super_kill(qb_super *s, size_t i, const char *reason);

/* Hung kills so far of the children whose name begins with prefix. */
uint64_t qb_super_hung_kills(const qb_super *s, const char *prefix);

/* The monotonic ms at which running child i was started, or 0 when not
 * running. */
uint64_t qb_super_started_ms(const qb_super *s, size_t i);

/* Runs argv (argv[0] the program's path) to completion, set up as a child
 * (signals unblocked, SIGTERM on the broker's death), with stdout to
 * /dev/null and stderr captured: its first non-empty line (without the
 * newline, truncated to fit) is written to line (cap >= 1; "" when none).
 * A run still going after timeout_ms is SIGKILLed. Returns QB_OK with the
 * waitpid status in *status, QB_ETIMEDOUT (killed, reaped), or QB_EIO
 * (pipe, /dev/null, fork or waitpid failed). Not a supervised child:
 * nothing is counted, no event. Main thread (blocks up to timeout_ms). */
int qb_super_run(const char *const *argv, uint64_t timeout_ms, int *status, char *line, size_t cap);

/* Finds an executable: next to /proc/self/exe first, then on PATH. Writes
 * its path to out and returns QB_OK, or QB_ENOTFOUND. */
int qb_super_find_binary(const char *name, char *out, size_t cap);

#endif
