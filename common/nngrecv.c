/*
 * nngrecv.c: see nngrecv.h. One aio, always without a timeout; its
 * completion callback stores the result and signals the waiter:
 *
 *   next(): a receive done?  take it
 *           none in flight?  nng_recvmsg(NONBLOCK) (a zero timeout is never
 *                            queued, so it cannot race: a backlog is drained
 *                            without a thread hand-off per message), else
 *                            start the aio
 *           wait(cv, deadline)
 *   NNG thread: aio done -> lock, done = true, signal
 *
 * While the aio is in flight the socket's queue is empty (NNG hands a new
 * message to a waiting receive first), so taking the aio's message before
 * any NONBLOCK receive keeps the order.
 */
#include "nngrecv.h"

#include "err.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

struct qb_nng_recv {
    nng_socket sock;
    nng_aio *aio;
    pthread_mutex_t mtx;
    pthread_cond_t cv;
    bool pending; /* a receive is in flight */
    bool done;    /* it completed; result below */
    bool woken;
    int rv;
    nng_msg *msg;
};

static void nngrecv_cb(void *arg)
{
    qb_nng_recv *r = arg;
    int rv = nng_aio_result(r->aio);
    nng_msg *m = rv == 0 ? nng_aio_get_msg(r->aio) : NULL;
    nng_aio_set_msg(r->aio, NULL);
    pthread_mutex_lock(&r->mtx);
    r->rv = rv;
    r->msg = m;
    r->done = true;
    r->pending = false;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mtx);
}

int qb_nng_recv_new(nng_socket s, qb_nng_recv **out)
{
    qb_nng_recv *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return QB_ENOMEM;
    }
    if (nng_aio_alloc(&r->aio, nngrecv_cb, r) != 0) {
        free(r);
        return QB_ENOMEM;
    }
    nng_aio_set_timeout(r->aio, NNG_DURATION_INFINITE);
    r->sock = s;
    pthread_mutex_init(&r->mtx, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    *out = r;
    return QB_OK;
}

int qb_nng_recv_next(qb_nng_recv *r, int timeout_ms, nng_msg **msg, int *nng_err)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    if (timeout_ms > 0) {
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&r->mtx);
    if (!r->pending && !r->done) {
        nng_msg *m;
        int rv = nng_recvmsg(r->sock, &m, NNG_FLAG_NONBLOCK);
        if (rv == 0) {
            pthread_mutex_unlock(&r->mtx);
            *msg = m;
            return QB_OK;
        }
        if (rv != NNG_EAGAIN && rv != NNG_ETIMEDOUT) {
            pthread_mutex_unlock(&r->mtx);
            if (nng_err != NULL) {
                *nng_err = rv;
            }
            return qb_err_from_nng(rv);
        }
        if (timeout_ms == 0) {
            pthread_mutex_unlock(&r->mtx);
            return QB_ETIMEDOUT;
        }
        r->pending = true;
        pthread_mutex_unlock(&r->mtx);
        nng_recv_aio(r->sock, r->aio);
        pthread_mutex_lock(&r->mtx);
    }
    while (!r->done && !r->woken && timeout_ms != 0) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&r->cv, &r->mtx);
        } else if (pthread_cond_timedwait(&r->cv, &r->mtx, &dl) != 0) {
            break;
        }
    }
    r->woken = false;
    if (!r->done) {
        pthread_mutex_unlock(&r->mtx);
        return QB_ETIMEDOUT;
    }
    int rv = r->rv;
    nng_msg *m = r->msg;
    r->done = false;
    r->msg = NULL;
    pthread_mutex_unlock(&r->mtx);
    if (rv == 0) {
        *msg = m;
        return QB_OK;
    }
    if (nng_err != NULL) {
        *nng_err = rv;
    }
    return qb_err_from_nng(rv);
}

void qb_nng_recv_wake(qb_nng_recv *r)
{
    pthread_mutex_lock(&r->mtx);
    r->woken = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mtx);
}

void qb_nng_recv_free(qb_nng_recv *r)
{
    if (r == NULL) {
        return;
    }
    nng_aio_stop(r->aio); /* cancels a pending receive; waits for its callback */
    if (r->msg != NULL) {
        nng_msg_free(r->msg);
    }
    nng_aio_free(r->aio);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mtx);
    free(r);
}
