/*
 * dialer.c: see dialer.h. The watchdog runs every 500 ms on an NNG aio
 * callback; everything it shares with the pipe callbacks is atomic.
 */
#include "dialer.h"

#include "clock.h"
#include "err.h"
#include "log.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define DIALER_TICK_MS 500

struct qb_dialer {
    nng_socket sock;
    nng_dialer dialer;
    nng_tls_config *tls; /* held; NULL: plain */
    char *url;
    const char *what;
    nng_aio *aio;
    atomic_int pipes;
    atomic_bool stopping;
    _Atomic uint64_t last_pipe_ns; /* monotonic: last time a pipe existed */
    _Atomic uint64_t redials;
    _Atomic uint64_t connects;
};

static void dialer_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    qb_dialer *d = arg;
    (void)p;
    if (ev == NNG_PIPE_EV_ADD_POST) {
        atomic_fetch_add(&d->pipes, 1);
        atomic_fetch_add(&d->connects, 1);
        atomic_store(&d->last_pipe_ns, qb_mono_ns());
        QB_INFO("nng_connected", "connected to %s at %s", d->what, d->url);
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        atomic_fetch_sub(&d->pipes, 1);
        atomic_store(&d->last_pipe_ns, qb_mono_ns());
        if (!atomic_load(&d->stopping)) {
            QB_WARN("nng_disconnected", "lost connection to %s at %s (NNG redials)", d->what,
                    d->url);
        }
    }
}

/* Creates and starts (non-blocking) a dialer of d->url, with d->tls. */
static int dialer_dial(qb_dialer *d)
{
    nng_dialer nd;
    int rv = nng_dialer_create(&nd, d->sock, d->url);
    if (rv != 0) {
        return rv;
    }
    if (d->tls != NULL && (rv = nng_dialer_set_ptr(nd, NNG_OPT_TLS_CONFIG, d->tls)) != 0) {
        nng_dialer_close(nd);
        return rv;
    }
    if ((rv = nng_dialer_start(nd, NNG_FLAG_NONBLOCK)) != 0) {
        nng_dialer_close(nd);
        return rv;
    }
    d->dialer = nd;
    return 0;
}

static void dialer_tick_cb(void *arg)
{
    qb_dialer *d = arg;
    if (atomic_load(&d->stopping) || nng_aio_result(d->aio) != 0) {
        return;
    }
    uint64_t now = qb_mono_ns();
    if (atomic_load(&d->pipes) <= 0 &&
        now - atomic_load(&d->last_pipe_ns) > (uint64_t)QB_DIALER_REDIAL_MS * 1000000ull) {
        nng_dialer_close(d->dialer);
        int rv = dialer_dial(d);
        atomic_fetch_add(&d->redials, 1);
        atomic_store(&d->last_pipe_ns, now);
        QB_LOG_RL(QB_LOG_WARN, "nng_redial", "no connection to %s at %s for %d ms: re-dialed (%s)",
                  d->what, d->url, QB_DIALER_REDIAL_MS, rv ? nng_strerror(rv) : "ok");
    }
    nng_sleep_aio(DIALER_TICK_MS, d->aio);
}

int qb_dialer_start(nng_socket s, const char *url, const char *what, qb_dialer **out)
{
    return qb_dialer_start_tls(s, url, what, NULL, out);
}

int qb_dialer_start_tls(nng_socket s, const char *url, const char *what, nng_tls_config *tls,
                        qb_dialer **out)
{
    qb_dialer *d = calloc(1, sizeof *d);
    if (d == NULL || (d->url = strdup(url)) == NULL) {
        free(d);
        return QB_ENOMEM;
    }
    d->sock = s;
    d->what = what;
    if (tls != NULL) {
        nng_tls_config_hold(tls);
        d->tls = tls;
    }
    atomic_store(&d->last_pipe_ns, qb_mono_ns());
    nng_socket_set_ms(s, NNG_OPT_RECONNMINT, 100);
    nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, 2000);
    int rv;
    if ((rv = nng_pipe_notify(s, NNG_PIPE_EV_ADD_POST, dialer_pipe_cb, d)) != 0 ||
        (rv = nng_pipe_notify(s, NNG_PIPE_EV_REM_POST, dialer_pipe_cb, d)) != 0 ||
        (rv = dialer_dial(d)) != 0 || (rv = nng_aio_alloc(&d->aio, dialer_tick_cb, d)) != 0) {
        nng_pipe_notify(s, NNG_PIPE_EV_ADD_POST, NULL, NULL);
        nng_pipe_notify(s, NNG_PIPE_EV_REM_POST, NULL, NULL);
        if (d->tls != NULL) {
            nng_tls_config_free(d->tls);
        }
        free(d->url);
        free(d);
        return qb_err_from_nng(rv);
    }
    nng_sleep_aio(DIALER_TICK_MS, d->aio);
    *out = d;
    return QB_OK;
}

void qb_dialer_shutdown(qb_dialer *d)
{
    if (d == NULL) {
        return;
    }
    atomic_store(&d->stopping, true);
    nng_aio_stop(d->aio);
}

void qb_dialer_stop(qb_dialer *d)
{
    if (d == NULL) {
        return;
    }
    atomic_store(&d->stopping, true);
    nng_aio_stop(d->aio);
    nng_aio_free(d->aio);
    /* nng_close() returns after the socket's pipes are gone, so no pipe
     * callback can run on d after it. */
    nng_close(d->sock);
    if (d->tls != NULL) {
        nng_tls_config_free(d->tls);
    }
    free(d->url);
    free(d);
}

int qb_dialer_pipes(const qb_dialer *d)
{
    return atomic_load(&((qb_dialer *)d)->pipes);
}

uint64_t qb_dialer_connects(const qb_dialer *d)
{
    return atomic_load(&((qb_dialer *)d)->connects);
}
