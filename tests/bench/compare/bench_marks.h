/*
 * bench_marks.h: the measurement loop shared by the consumer-side programs
 * of run-compare.sh (qb-bench-consumer, qb-bench-nng-recv).
 *
 * Protocol with the driver: the program blocks SIGUSR1, SIGINT and SIGTERM
 * in its main thread before any other thread exists (bench_marks_block, so
 * NNG's threads and its own inherit the mask and only the main thread takes
 * them), then waits in bench_marks_wait. Each SIGUSR1 appends one line
 *   mark <monotonic ns> <cpu s> <fields of the program>
 * to the marks file, cpu = user + system time of the whole process (every
 * thread). The wait ends after progress was seen and then none for idle_s
 * seconds (the feed stopped), on SIGINT/SIGTERM, or after max_run_s.
 *
 * Header-only (static functions): two small programs, no library.
 */
#ifndef QB_BENCH_MARKS_H
#define QB_BENCH_MARKS_H

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>

static inline double bench_marks_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* User + system CPU seconds of the whole process (all threads). */
static inline double bench_marks_cpu_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) {
        return 0;
    }
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Blocks SIGUSR1, SIGINT and SIGTERM in the calling thread (and every
 * thread it creates later); fills *set for bench_marks_wait. Returns 0 or
 * -1 with errno set. */
static inline int bench_marks_block(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGUSR1);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    int rc = pthread_sigmask(SIG_BLOCK, set, NULL);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

/* The program's side of a mark: writes its fields (after "<cpu s> ") to f
 * when f is not NULL, and returns its progress counter (deltas applied,
 * frames received) for the idle test. */
typedef uint64_t (*bench_marks_fn)(void *arg, FILE *f);

/* Waits as described at the top; marks may be NULL (no lines). Returns why
 * it ended: "idle", "signal", "max-run" or "error"; *n_marks counts the
 * lines written. */
static inline const char *bench_marks_wait(const sigset_t *set, FILE *marks, double idle_s,
                                           double max_run_s, bench_marks_fn fn, void *arg,
                                           int *n_marks)
{
    double t_start = bench_marks_mono_s(), t_last_change = t_start;
    uint64_t last = 0;
    *n_marks = 0;
    for (;;) {
        struct timespec tick = {0, 200000000L};
        int sig = sigtimedwait(set, NULL, &tick);
        double now = bench_marks_mono_s();
        uint64_t progress;
        if (sig == SIGUSR1 && marks != NULL) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            fprintf(marks, "mark %lld %.6f ", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec,
                    bench_marks_cpu_s());
            progress = fn(arg, marks);
            fputc('\n', marks);
            fflush(marks);
            (*n_marks)++;
        } else if (sig == SIGINT || sig == SIGTERM) {
            return "signal";
        } else if (sig < 0 && errno != EAGAIN && errno != EINTR) {
            perror("sigtimedwait");
            return "error";
        } else {
            progress = fn(arg, NULL);
        }
        if (progress != last) {
            last = progress;
            t_last_change = now;
        } else if (last > 0 && now - t_last_change >= idle_s) {
            return "idle";
        }
        if (now - t_start >= max_run_s) {
            return "max-run";
        }
    }
}

#endif /* QB_BENCH_MARKS_H */
