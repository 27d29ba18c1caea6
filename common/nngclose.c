/*
 * nngclose.c: nng_close() with a time bound (see nngclose.h).
 *
 * The helper thread and the waiter share one heap block; whichever of them
 * is last frees it: the waiter after a completed close, the helper after an
 * abandoned one (the waiter has set "abandoned" under the mutex).
 */
#include "nngclose.h"

#include "log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

typedef struct nngclose_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    nng_socket s;
    bool done;
    bool abandoned;
} nngclose_state;

static atomic_uint nngclose_abandoned;

void qb_nng_note_abandoned(void)
{
    atomic_fetch_add(&nngclose_abandoned, 1);
}

void qb_nng_fini(void)
{
    if (atomic_load(&nngclose_abandoned) == 0) {
        nng_fini();
    }
}

static void nngclose_destroy(nngclose_state *c)
{
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

static void *nngclose_main(void *arg)
{
    nngclose_state *c = arg;
    nng_close(c->s);
    pthread_mutex_lock(&c->mu);
    c->done = true;
    bool abandoned = c->abandoned;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (abandoned) {
        nngclose_destroy(c);
    }
    return NULL;
}

bool qb_nng_close_bounded(nng_socket s, const char *what, unsigned ms)
{
    nngclose_state *c = calloc(1, sizeof *c);
    pthread_t t;
    if (c == NULL) {
        nng_close(s);
        return true;
    }
    pthread_mutex_init(&c->mu, NULL);
    /* the monotonic clock: a wall-clock step must not stretch the bound */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    c->s = s;
    if (pthread_create(&t, NULL, nngclose_main, c) != 0) {
        nng_close(s);
        nngclose_destroy(c);
        return true;
    }
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mu);
    while (!c->done) {
        if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) != 0) {
            break;
        }
    }
    bool done = c->done;
    if (!done) {
        c->abandoned = true;
    }
    pthread_mutex_unlock(&c->mu);
    if (done) {
        pthread_join(t, NULL);
        nngclose_destroy(c);
        return true;
    }
    pthread_detach(t);
    atomic_fetch_add(&nngclose_abandoned, 1);
    if (what == NULL) {
        return false;
    }
    QB_WARN("nng.close_stuck",
            "%s socket: nng_close did not return in %u ms (NNG 1.5.2 close race, "
            "nanomsg/nng#1543); abandoning it",
            what, ms);
    return false;
}
