/*
 * nng_recv.c (qb-bench-nng-recv): the floor under every quotebus consumer
 * program, the CPU that NNG 1.5.2 alone costs a process to receive the
 * broker's frames, with no decoding and no book (section
 * 6G of docs/BENCHMARKS.md). tests/bench/compare/run-compare.sh runs it next to
 * one qb-bench-consumer on the same broker, topic and window: both receive
 * the same frames, so the consumer's deltas per frame turn this program's
 * CPU per frame into CPU per delta, the least any consumer can pay.
 *
 *   qb-bench-nng-recv --connect URL [--topic TOPIC] [--mode block|aio]
 *                     [--marks FILE] [--idle S] [--max-run S] [--label NAME]
 * (common/opts.h: --help, --version and --config FILE as every binary)
 *
 * The socket is set up exactly as libquotebus sets up its SUB sockets
 * (clients/lib/client.c qbc_sub_options: receive queue 8192 frames, frames
 * up to 8 MiB, reconnect 100 ms to 1 s; an exact topic subscribed with its
 * NUL terminator). Two ways to receive, so that the floor is the cheaper of
 * the two ways NNG 1.5.2 offers:
 *   block  one thread blocks in nng_recvmsg and frees each frame, as the
 *          mirror thread of qb_mirror does before it decodes (with the
 *          mirror's 50 ms receive timeout, NNG_OPT_RECVTIMEO, which is also
 *          how the thread sees the stop flag);
 *   aio    no thread of ours: nng_recv_aio with a completion callback that
 *          counts and frees the frame and re-arms the aio, on NNG's own
 *          task thread (one hand-off fewer than a thread of ours).
 *
 * Measurement (bench_marks.h), as qb-bench-consumer: the main thread blocks
 * SIGUSR1/SIGINT/SIGTERM before the receive thread and NNG's threads exist
 * (so they inherit the mask) and waits in sigtimedwait; each SIGUSR1 appends
 *   mark <monotonic ns> <cpu s> 0 <frames> 0 <bytes>
 * to --marks (the deltas and gaps fields of qb-bench-consumer's line are 0:
 * nothing is decoded), cpu = user + system time of the whole process.
 * End: after frames arrived and then none for --idle seconds, on
 * SIGINT/SIGTERM, or after --max-run; one JSON line of totals to stdout.
 */
#define _POSIX_C_SOURCE 200809L /* sigtimedwait, clock_gettime */

#include "bench_marks.h"
#include "err.h"
#include "opts.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NNG_RECV_MAX_FRAME (8u << 20) /* QB_MSG_MAX_FRAME */

typedef struct nng_recv_state {
    nng_socket sock;
    nng_aio *aio; /* --mode aio */
    _Atomic uint64_t frames, bytes;
    _Atomic int stop;
} nng_recv_state;

/* bench_marks_fn: "0 <frames> 0 <bytes>"; progress = frames. */
static uint64_t nng_recv_mark(void *arg, FILE *f)
{
    nng_recv_state *s = arg;
    uint64_t frames = atomic_load(&s->frames), bytes = atomic_load(&s->bytes);
    if (f != NULL) {
        fprintf(f, "0 %llu 0 %llu", (unsigned long long)frames, (unsigned long long)bytes);
    }
    return frames;
}

/* The receive thread: one blocking nng_recvmsg per frame, counted and
 * freed. Ends at the stop flag (seen within the receive timeout). */
static void *nng_recv_main(void *arg)
{
    nng_recv_state *s = arg;
    while (!atomic_load(&s->stop)) {
        nng_msg *m;
        int rv = nng_recvmsg(s->sock, &m, 0);
        if (rv != 0) { /* NNG_ETIMEDOUT: look at the stop flag */
            continue;
        }
        atomic_fetch_add_explicit(&s->bytes, nng_msg_len(m), memory_order_relaxed);
        atomic_fetch_add_explicit(&s->frames, 1, memory_order_relaxed);
        nng_msg_free(m);
    }
    return NULL;
}

/* --mode aio: the completion callback, on an NNG task thread. Re-arms
 * until the socket is closed (NNG_ECLOSED) or the aio is stopped. */
static void nng_recv_aio_cb(void *arg)
{
    nng_recv_state *s = arg;
    int rv = nng_aio_result(s->aio);
    if (rv == 0) {
        nng_msg *m = nng_aio_get_msg(s->aio);
        atomic_fetch_add_explicit(&s->bytes, nng_msg_len(m), memory_order_relaxed);
        atomic_fetch_add_explicit(&s->frames, 1, memory_order_relaxed);
        nng_msg_free(m);
    } else if (rv == NNG_ECLOSED || rv == NNG_ECANCELED || atomic_load(&s->stop)) {
        return;
    }
    nng_recv_aio(s->sock, s->aio);
}

int main(int argc, char **argv)
{
    char *connect = NULL, *topic_opt = NULL, *mode_opt = NULL, *marks_path = NULL;
    char *label_opt = NULL;
    int64_t idle_s = 3, max_run_s = 600;
    const qb_opt opts[] = {
        {"connect", QB_OPT_STR, &connect, "URL", "the broker's publish address (required)"},
        {"topic", QB_OPT_STR, &topic_opt, "TOPIC",
         "the topic to receive" QB_OPT_DEFAULT("book.binance.BTC-USDT")},
        {"mode", QB_OPT_STR, &mode_opt, "block|aio",
         "a thread in nng_recvmsg, or nng_recv_aio callbacks on NNG's threads" QB_OPT_DEFAULT(
             "block")},
        {"marks", QB_OPT_STR, &marks_path, "FILE", "append a mark line here at each SIGUSR1"},
        {"idle", QB_OPT_INT, &idle_s, "S", "end S seconds after the last frame"},
        {"max-run", QB_OPT_INT, &max_run_s, "S", "end after S seconds in any case"},
        {"label", QB_OPT_STR, &label_opt, "NAME",
         "the client name in the JSON line" QB_OPT_DEFAULT("nng-recv")},
        {0},
    };
    static const qb_prog prog = {
        "qb-bench-nng-recv", "--connect URL [OPTIONS]",
        "Receives the broker's frames of TOPIC with NNG alone (no decoding, no book),\n"
        "with libquotebus's socket options, and measures its own CPU; SIGUSR1 appends a\n"
        "mark line (mono_ns cpu_s 0 frames 0 bytes) to --marks. Ends --idle seconds\n"
        "after the last frame, on SIGINT/SIGTERM or after --max-run, printing one JSON\n"
        "line of totals (tests/bench/compare/run-compare.sh, table G).",
        NULL};
    int first_pos;
    int rc = qb_opts_parse(&prog, opts, argc, argv, &first_pos);
    const char *mode = mode_opt ? mode_opt : "block";
    const char *why = connect == NULL                                ? "--connect is required"
                      : first_pos != argc                            ? "unexpected argument"
                      : strcmp(mode, "block") && strcmp(mode, "aio") ? "--mode is block or aio"
                                                                     : NULL;
    if (rc != QB_OK || why != NULL) {
        if (rc == QB_OK) {
            fprintf(stderr, "qb-bench-nng-recv: %s (see --help)\n", why);
        }
        qb_opts_free(opts);
        return rc == QB_EEOF ? 0 : 2;
    }
    const char *topic = topic_opt ? topic_opt : "book.binance.BTC-USDT";
    const char *label = label_opt ? label_opt : "nng-recv";

    sigset_t set;
    FILE *marks = NULL;
    static nng_recv_state s;
    bool aio_mode = !strcmp(mode, "aio"), open = false;
    pthread_t th;
    int ret = 1, rv;
    if (bench_marks_block(&set) != 0) {
        perror("pthread_sigmask");
        goto out;
    }
    if (marks_path != NULL && (marks = fopen(marks_path, "a")) == NULL) {
        perror(marks_path);
        goto out;
    }
    /* An exact topic (two dots) is subscribed with its NUL, as
     * libquotebus does (qb_topic_sub_len). */
    size_t tn = strlen(topic), dots = 0;
    for (size_t i = 0; i < tn; i++) {
        dots += topic[i] == '.';
    }
    size_t sub_len = (dots == 2 && tn > 0 && topic[tn - 1] != '.') ? tn + 1 : tn;
    const char *what = "nng_sub0_open";
    if ((rv = nng_sub0_open(&s.sock)) == 0) {
        open = true;
        what = "socket options";
        if ((rv = nng_socket_set(s.sock, NNG_OPT_SUB_SUBSCRIBE, topic, sub_len)) == 0 &&
            (rv = nng_socket_set_int(s.sock, NNG_OPT_RECVBUF, 8192)) == 0 &&
            (rv = nng_socket_set_size(s.sock, NNG_OPT_RECVMAXSZ, NNG_RECV_MAX_FRAME)) == 0 &&
            (rv = nng_socket_set_ms(s.sock, NNG_OPT_RECONNMINT, 100)) == 0 &&
            (rv = nng_socket_set_ms(s.sock, NNG_OPT_RECONNMAXT, 1000)) == 0 &&
            (aio_mode || (rv = nng_socket_set_ms(s.sock, NNG_OPT_RECVTIMEO, 50)) == 0)) {
            what = connect;
            rv = nng_dial(s.sock, connect, NULL, NNG_FLAG_NONBLOCK);
        }
    }
    if (rv == 0 && aio_mode && (rv = nng_aio_alloc(&s.aio, nng_recv_aio_cb, &s)) != 0) {
        what = "nng_aio_alloc";
    }
    if (rv != 0) {
        fprintf(stderr, "qb-bench-nng-recv: %s: %s\n", what, nng_strerror(rv));
        goto out;
    }
    if (aio_mode) {
        nng_recv_aio(s.sock, s.aio);
    } else if (pthread_create(&th, NULL, nng_recv_main, &s) != 0) {
        fprintf(stderr, "qb-bench-nng-recv: pthread_create failed\n");
        goto out;
    }

    int n_marks;
    const char *end = bench_marks_wait(&set, marks, (double)idle_s, (double)max_run_s,
                                       nng_recv_mark, &s, &n_marks);
    atomic_store(&s.stop, 1);
    if (aio_mode) {
        nng_aio_stop(s.aio); /* waits for a running callback; no re-arm after */
    } else {
        pthread_join(th, NULL); /* within the receive timeout */
    }
    printf("{\"client\":\"%s\",\"mode\":\"%s\",\"end\":\"%s\",\"marks\":%d,"
           "\"cpu_secs_total\":%.3f,\"frames\":%llu,\"bytes\":%llu}\n",
           label, mode, end, n_marks, bench_marks_cpu_s(),
           (unsigned long long)atomic_load(&s.frames), (unsigned long long)atomic_load(&s.bytes));
    fflush(stdout);
    ret = atomic_load(&s.frames) > 0 ? 0 : 1;
    /* Receiving has stopped; the socket and the aio are left to the process
     * exit: nng_close() of a SUB socket with a live pipe sometimes never
     * returns in NNG 1.5.2 (seen here after the receive thread had been
     * joined; libquotebus bounds it with a closer thread, qb_nng_close_bounded),
     * and a benchmark must not hang its driver. Both stay reachable (the
     * static s, NNG's socket table), so this is no leak. */
    open = false;
out:
    if (open) {
        nng_close(s.sock); /* before any frame: the dial failed or was not made */
        if (s.aio != NULL) {
            nng_aio_free(s.aio);
        }
    }
    if (marks != NULL) {
        fclose(marks);
    }
    qb_opts_free(opts);
    return ret;
}
