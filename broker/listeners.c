/*
 * listeners.c: claims, probes and repairs the broker's listeners
 * (listeners.h has the why).
 *
 *   main: _watch(sock) -> _add(sock, url): [flock url.lock] -> nng_listen
 *   probe thread, every probe_ms, for each listener L:
 *       adds0 = L.adds
 *       nng_dialer_start(probe socket of the peer protocol, L's dial URL)
 *       wait <= QB_LISTENERS_PROBE_WAIT_MS for L.adds > adds0
 *            (NNG thread: pipe ADD_POST from L -> L.adds++ -> signal)
 *       nng_dialer_close
 *       QB_LISTENERS_FAILS misses in a row -> nng_listener_close(L),
 *       nng_listen(url) again (ipc: close unlinked the path; we still hold
 *       its claim, so no other broker can have taken it meanwhile)
 *
 * The probe dials the address the listener is bound to (tcp: its actual
 * port, an unspecified host replaced by loopback), so a listener on
 * tcp://0.0.0.0:0 is probed too. A probe's pipe is a real connection: on
 * the pub socket it is sent frames for the few milliseconds it lives; on
 * ingest it sends nothing; on the snapshot service it asks nothing.
 *
 * Locking: ls->mtx guards the listener states that the probe thread
 * changes (the listener handle, up, counters) and the condition variable;
 * the pipe callback only reads listener ids (atomics) and bumps adds.
 */
#include "listeners.h"

#include "clock.h"
#include "err.h"
#include "file.h"
#include "log.h"
#include "nngclose.h"

#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <netdb.h>
#include <time.h>
#include <unistd.h>

#define LISTENERS_MAX_SOCKETS 8
#define LISTENERS_CLOSE_MS 1000u

/* A watched socket: its owner's pipe callback and the probe socket of the
 * peer protocol (opened by the probe thread on first use). */
typedef struct listeners_sock {
    qb_listeners *ls;
    nng_socket s;
    qb_listeners_pipe_fn fn;
    void *arg;
    nng_socket probe;
    bool probe_open;
} listeners_sock;

typedef struct listeners_one {
    listeners_sock *w;
    char role[16];
    char url[256];
    char dial_url[300]; /* what the probe dials */
    nng_listener l;
    _Atomic uint32_t lid;  /* nng_listener_id(l), 0 while not listening */
    _Atomic uint64_t adds; /* pipes added from this listener */
    /* The probe in flight (probe thread writes, pipe callback reads): its
     * connection is told apart from real clients by the peer's pid (ipc)
     * or its local port (tcp), and its pipe is then kept out of the
     * owner's callback (connection counters, publisher table). */
    atomic_bool probing;
    _Atomic uint32_t probe_port; /* tcp: the probe's local port */
    _Atomic uint32_t probe_pipe; /* the server side of the probe, until removed */
    int lock_fd;                 /* ipc: the claim; -1 otherwise */
    nng_tls_config *tls;         /* tls+tcp: the server configuration (held), else NULL */
    nng_tls_config *probe_tls;   /* tls+tcp: the probe's client configuration (held) */
    bool proven;                 /* a probe reached the socket once (probe thread) */
    unsigned fails;              /* probe misses in a row (probe thread) */
    bool up;
    uint64_t probes, probe_fails, repairs, relisten_fails;
} listeners_one;

struct qb_listeners {
    pthread_mutex_t mtx;
    pthread_cond_t cv;
    listeners_sock socks[LISTENERS_MAX_SOCKETS];
    size_t n_socks;
    listeners_one one[QB_LISTENERS_MAX];
    size_t n;
    qb_listeners_event_fn ev_fn;
    void *ev_arg;
    pthread_t thread;
    bool running;
    bool stop;
    unsigned probe_ms;
};

int qb_listeners_new(qb_listeners **out)
{
    qb_listeners *ls = calloc(1, sizeof *ls);
    if (ls == NULL) {
        return QB_ENOMEM;
    }
    pthread_mutex_init(&ls->mtx, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ls->cv, &ca);
    pthread_condattr_destroy(&ca);
    *out = ls;
    return QB_OK;
}

/* NNG thread: a pipe came or went on a watched socket. */
/* The path of an ipc:// URL, or NULL. */
static const char *listeners_ipc_path(const char *url)
{
    return strncmp(url, "ipc://", 6) == 0 ? url + 6 : NULL;
}

/* True when pipe p (from listener o, a probe in flight) is the probe's. */
static bool listeners_is_probe(listeners_one *o, nng_pipe p)
{
    if (!atomic_load(&o->probing)) {
        return false;
    }
    if (listeners_ipc_path(o->url) != NULL) {
        int pid = 0;
        return nng_pipe_get_int(p, NNG_OPT_IPC_PEER_PID, &pid) == 0 && pid == (int)getpid();
    }
    nng_sockaddr sa;
    if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) != 0) {
        return false;
    }
    uint16_t port = sa.s_family == NNG_AF_INET    ? sa.s_in.sa_port
                    : sa.s_family == NNG_AF_INET6 ? sa.s_in6.sa_port
                                                  : 0;
    return port != 0 && ntohs(port) == atomic_load(&o->probe_port);
}

static void listeners_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    listeners_sock *w = arg;
    qb_listeners *ls = w->ls;
    uint32_t pid = (uint32_t)nng_pipe_id(p);
    if (ev == NNG_PIPE_EV_ADD_POST) {
        uint32_t id = (uint32_t)nng_listener_id(nng_pipe_listener(p));
        for (size_t i = 0; i < ls->n; i++) {
            listeners_one *o = &ls->one[i];
            if (o->w == w && id != 0 && atomic_load(&o->lid) == id) {
                bool probe = listeners_is_probe(o, p);
                if (probe) {
                    atomic_store(&o->probe_pipe, pid);
                }
                atomic_fetch_add(&o->adds, 1);
                pthread_mutex_lock(&ls->mtx);
                pthread_cond_broadcast(&ls->cv);
                pthread_mutex_unlock(&ls->mtx);
                if (probe) {
                    return;
                }
                break;
            }
        }
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        for (size_t i = 0; i < ls->n; i++) {
            uint32_t want = pid;
            if (ls->one[i].w == w &&
                atomic_compare_exchange_strong(&ls->one[i].probe_pipe, &want, 0)) {
                return;
            }
        }
    }
    if (w->fn != NULL) {
        w->fn(w->arg, p, ev);
    }
}

int qb_listeners_watch(qb_listeners *ls, nng_socket s, qb_listeners_pipe_fn fn, void *arg)
{
    if (ls->n_socks == LISTENERS_MAX_SOCKETS) {
        return QB_EINVAL;
    }
    listeners_sock *w = &ls->socks[ls->n_socks];
    *w = (listeners_sock){.ls = ls, .s = s, .fn = fn, .arg = arg};
    int rv;
    if ((rv = nng_pipe_notify(s, NNG_PIPE_EV_ADD_POST, listeners_pipe_cb, w)) != 0 ||
        (rv = nng_pipe_notify(s, NNG_PIPE_EV_REM_POST, listeners_pipe_cb, w)) != 0) {
        QB_ERROR("listener.watch_failed", "pipe notifications: %s", nng_strerror(rv));
        return qb_err_from_nng(rv);
    }
    ls->n_socks++;
    return QB_OK;
}

/* Claims an ipc path: flock on "<path>.lock". QB_OK (fd in *fd), QB_ESTATE
 * (held by another process: logged with its pid) or QB_EIO. */
static int listeners_claim(const char *role, const char *url, const char *path, bool priv, int *fd)
{
    char lock[600];
    if (snprintf(lock, sizeof lock, "%s.lock", path) >= (int)sizeof lock) {
        return QB_EINVAL;
    }
    int f = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, priv ? 0600 : 0644);
    if (f < 0) {
        QB_ERROR("listener.lock_failed", "%s %s: cannot open %s: %s", role, url, lock,
                 strerror(errno));
        return QB_EIO;
    }
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(f, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(f);
        if (e == EWOULDBLOCK) {
            QB_ERROR("listener.in_use",
                     "%s %s is in use by another quotebus process (pid %s, lock %s): not "
                     "touching it (stop that process, or give this one other addresses)",
                     role, url, pid[0] ? pid : "unknown", lock);
            return QB_ESTATE;
        }
        QB_ERROR("listener.lock_failed", "%s %s: flock %s: %s", role, url, lock, strerror(e));
        return QB_EIO;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(f, 0) != 0 || pwrite(f, pid, (size_t)n, 0) != n) {
        QB_WARN("listener.lock_write", "%s: cannot write the pid: %s", lock, strerror(errno));
    }
    *fd = f;
    return QB_OK;
}

/* The URL the probe dials: the bound tcp address (unspecified host ->
 * loopback), the ipc path as is. */
static void listeners_dial_url(listeners_one *o)
{
    snprintf(o->dial_url, sizeof o->dial_url, "%s", o->url);
    if (strncmp(o->url, "tcp", 3) != 0 && strncmp(o->url, "tls+tcp", 7) != 0) {
        return;
    }
    const char *scheme_end = strstr(o->url, "://");
    nng_sockaddr sa;
    if (scheme_end == NULL || nng_listener_get_addr(o->l, NNG_OPT_LOCADDR, &sa) != 0) {
        return;
    }
    int sl = (int)(scheme_end - o->url);
    char host[INET6_ADDRSTRLEN];
    if (sa.s_family == NNG_AF_INET) {
        struct in_addr a;
        memcpy(&a, &sa.s_in.sa_addr, sizeof a);
        if (a.s_addr == htonl(INADDR_ANY)) {
            a.s_addr = htonl(INADDR_LOOPBACK);
        }
        inet_ntop(AF_INET, &a, host, sizeof host);
        snprintf(o->dial_url, sizeof o->dial_url, "%.*s://%s:%u", sl, o->url, host,
                 (unsigned)ntohs(sa.s_in.sa_port));
    } else if (sa.s_family == NNG_AF_INET6) {
        struct in6_addr a;
        memcpy(&a, sa.s_in6.sa_addr, sizeof a);
        if (IN6_IS_ADDR_UNSPECIFIED(&a)) {
            a = in6addr_loopback;
        }
        inet_ntop(AF_INET6, &a, host, sizeof host);
        snprintf(o->dial_url, sizeof o->dial_url, "%.*s://[%s]:%u", sl, o->url, host,
                 (unsigned)ntohs(sa.s_in6.sa_port));
    }
}

/* nng_listen on o's socket and URL; QB_OK or a qb_err (logged by the
 * caller). Sets lid and the probe's dial URL. */
static int listeners_listen(listeners_one *o, int *nng_rv)
{
    nng_listener l;
    int rv;
    if (o->tls == NULL) {
        rv = nng_listen(o->w->s, o->url, &l, 0);
    } else if ((rv = nng_listener_create(&l, o->w->s, o->url)) == 0) {
        if ((rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, o->tls)) != 0 ||
            (rv = nng_listener_start(l, 0)) != 0) {
            nng_listener_close(l);
        }
    }
    *nng_rv = rv;
    if (rv != 0) {
        return qb_err_from_nng(rv);
    }
    o->l = l;
    atomic_store(&o->lid, (uint32_t)nng_listener_id(l));
    listeners_dial_url(o);
    return QB_OK;
}

int qb_listeners_add(qb_listeners *ls, nng_socket s, const char *role, const char *url,
                     bool private_dir)
{
    return qb_listeners_add_tls(ls, s, role, url, private_dir, NULL, NULL);
}

int qb_listeners_add_tls(qb_listeners *ls, nng_socket s, const char *role, const char *url,
                         bool private_dir, nng_tls_config *tls, nng_tls_config *probe_tls)
{
    listeners_sock *w = NULL;
    for (size_t i = 0; i < ls->n_socks; i++) {
        if (nng_socket_id(ls->socks[i].s) == nng_socket_id(s)) {
            w = &ls->socks[i];
        }
    }
    if (w == NULL || ls->n == QB_LISTENERS_MAX || strlen(url) >= sizeof ls->one[0].url) {
        QB_ERROR("listener.listen_failed", "%s %s: too many listeners or too long", role, url);
        return QB_EINVAL;
    }
    listeners_one *o = &ls->one[ls->n];
    memset(o, 0, sizeof *o);
    o->w = w;
    o->lock_fd = -1;
    snprintf(o->role, sizeof o->role, "%s", role);
    snprintf(o->url, sizeof o->url, "%s", url);
    o->tls = tls;
    o->probe_tls = tls != NULL ? probe_tls : NULL;
    const char *path = listeners_ipc_path(url);
    if (path != NULL) {
        if (qb_file_mkdir_parents(path, private_dir ? 0700 : 0755) != QB_OK) {
            QB_ERROR("listener.listen_failed", "%s %s: cannot create the directory: %s", role, url,
                     strerror(errno));
            return QB_EIO;
        }
        int rc = listeners_claim(role, url, path, private_dir, &o->lock_fd);
        if (rc != QB_OK) {
            return rc;
        }
    }
    int nrv;
    int rc = listeners_listen(o, &nrv);
    if (rc != QB_OK) {
        QB_ERROR("listener.listen_failed", "%s %s: %s", role, url, nng_strerror(nrv));
        if (o->lock_fd >= 0) {
            close(o->lock_fd);
        }
        return rc;
    }
    o->up = true;
    if (o->tls != NULL) {
        nng_tls_config_hold(o->tls);
    }
    if (o->probe_tls != NULL) {
        nng_tls_config_hold(o->probe_tls);
    }
    ls->n++;
    QB_INFO("listener.listening", "%s %s", role, url);
    return QB_OK;
}

void qb_listeners_set_event_cb(qb_listeners *ls, qb_listeners_event_fn fn, void *arg)
{
    ls->ev_fn = fn;
    ls->ev_arg = arg;
}

/* Opens w's probe socket: the peer protocol of the watched socket. */
static int listeners_probe_socket(listeners_sock *w)
{
    if (w->probe_open) {
        return 0;
    }
    char *peer = NULL;
    int rv = nng_socket_get_string(w->s, NNG_OPT_PEERNAME, &peer);
    if (rv != 0) {
        return rv;
    }
    if (strcmp(peer, "pub") == 0) {
        rv = nng_pub0_open(&w->probe);
    } else if (strcmp(peer, "sub") == 0) {
        rv = nng_sub0_open(&w->probe);
    } else if (strcmp(peer, "req") == 0) {
        rv = nng_req0_open(&w->probe);
    } else if (strcmp(peer, "rep") == 0) {
        rv = nng_rep0_open(&w->probe);
    } else {
        rv = NNG_ENOTSUP;
    }
    nng_strfree(peer);
    if (rv == 0) {
        w->probe_open = true;
        /* A sub probe on the pub socket: keep what it is sent small. */
        (void)nng_socket_set_int(w->probe, NNG_OPT_RECVBUF, 1);
    }
    return rv;
}

static uint64_t listeners_ms(void)
{
    return qb_mono_ns() / 1000000u;
}

/* Waits on the condition variable until deadline_ms (monotonic) or a
 * signal; ls->mtx held. */
static void listeners_wait(qb_listeners *ls, uint64_t deadline_ms)
{
    struct timespec ts = {(time_t)(deadline_ms / 1000u), (long)(deadline_ms % 1000u) * 1000000L};
    (void)pthread_cond_timedwait(&ls->cv, &ls->mtx, &ts);
}

/* One probe of o: true when a pipe from o reached its socket. Probe
 * thread. */
/* Connects a plain socket to o's address (ipc path, or tcp host:port of
 * its dial URL), with send/receive timeouts of ms. The fd, or -1 with errno
 * set. */
static int listeners_raw_connect(const listeners_one *o, unsigned ms)
{
    int fd = -1;
    const char *path = listeners_ipc_path(o->dial_url);
    if (path != NULL) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof sa.sun_path) {
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(sa.sun_path, path, strlen(path) + 1);
        if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
            return -1;
        }
        struct timeval tv = {(time_t)(ms / 1000u), (suseconds_t)(ms % 1000u) * 1000};
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        return fd;
    }
    /* tcp://HOST:PORT, HOST possibly [v6]. */
    const char *h = strstr(o->dial_url, "://");
    const char *colon = h != NULL ? strrchr(h + 3, ':') : NULL;
    if (colon == NULL) {
        errno = EINVAL;
        return -1;
    }
    h += 3;
    char host[256];
    size_t hn = (size_t)(colon - h);
    if (hn >= 2 && h[0] == '[' && h[hn - 1] == ']') {
        h++;
        hn -= 2;
    }
    if (hn == 0 || hn >= sizeof host) {
        errno = EINVAL;
        return -1;
    }
    memcpy(host, h, hn);
    host[hn] = '\0';
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || res == NULL) {
        errno = EINVAL;
        return -1;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        struct timeval tv = {(time_t)(ms / 1000u), (suseconds_t)(ms % 1000u) * 1000};
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
            int e = errno;
            close(fd);
            fd = -1;
            errno = e;
        }
    }
    freeaddrinfo(res);
    return fd;
}

/* The probe of a plain (ipc, tcp) listener, on a plain socket doing the
 * SP handshake itself: NNG's own dialer is not used because, on NNG 1.5.2,
 * each closed probe pipe of a busy pub socket was seen to leave both of
 * its file descriptors behind (20000 after 23 minutes). The connection is
 * closed only after the listener's header arrived, so the probe itself
 * never closes a connection during the handshake (nng#1518's trigger).
 * Returns 1 (reached the socket), 0 (missed), -1 (could not tell: a local
 * resource error). */
static int listeners_probe_raw(qb_listeners *ls, listeners_one *o)
{
    int peer = 0;
    if (nng_socket_get_int(o->w->s, NNG_OPT_PEER, &peer) != 0) {
        return -1;
    }
    uint64_t adds0 = atomic_load(&o->adds);
    int fd = listeners_raw_connect(o, 1000);
    if (fd < 0) {
        int e = errno;
        if (e == ECONNREFUSED || e == ENOENT) {
            QB_LOG_RL(QB_LOG_WARN, "listener.probe_refused", "%s %s: %s", o->role, o->url,
                      strerror(e));
            return 0; /* nothing listens there any more (e.g. the ipc file was removed) */
        }
        QB_LOG_RL(QB_LOG_WARN, "listener.probe_failed", "%s %s: connect: %s", o->role, o->url,
                  strerror(e));
        return -1;
    }
    struct sockaddr_storage la;
    socklen_t ll = sizeof la;
    uint32_t port = 0;
    if (getsockname(fd, (struct sockaddr *)&la, &ll) == 0) {
        port = la.ss_family == AF_INET    ? ntohs(((struct sockaddr_in *)&la)->sin_port)
               : la.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&la)->sin6_port)
                                          : 0;
    }
    atomic_store(&o->probe_port, port);
    atomic_store(&o->probing, true); /* before the listener can see our header */
    uint8_t hdr[8] = {0, 'S', 'P', 0, (uint8_t)(peer >> 8), (uint8_t)peer, 0, 0};
    uint8_t got[8];
    size_t n = 0;
    int rc = 0;
    if (send(fd, hdr, sizeof hdr, MSG_NOSIGNAL) == (ssize_t)sizeof hdr) {
        while (n < sizeof got) {
            ssize_t k = recv(fd, got + n, sizeof got - n, 0);
            if (k <= 0) {
                break;
            }
            n += (size_t)k;
        }
    }
    if (n == sizeof got) {
        uint64_t deadline = listeners_ms() + QB_LISTENERS_PROBE_WAIT_MS;
        pthread_mutex_lock(&ls->mtx);
        while (atomic_load(&o->adds) == adds0 && !ls->stop && listeners_ms() < deadline) {
            listeners_wait(ls, deadline);
        }
        rc = atomic_load(&o->adds) != adds0 || ls->stop ? 1 : 0;
        pthread_mutex_unlock(&ls->mtx);
    }
    close(fd);
    atomic_store(&o->probing, false);
    return rc;
}

static bool listeners_probe(qb_listeners *ls, listeners_one *o)
{
    if (o->tls == NULL) {
        int r = listeners_probe_raw(ls, o);
        if (r > 0) {
            o->proven = true;
        }
        return r != 0;
    }
    int rv = listeners_probe_socket(o->w);
    if (rv != 0) {
        QB_LOG_RL(QB_LOG_WARN, "listener.probe_failed", "%s %s: probe socket: %s", o->role, o->url,
                  nng_strerror(rv));
        return true; /* cannot tell: not a reason to tear the listener down */
    }
    if (o->tls != NULL && o->probe_tls == NULL) {
        return true; /* a TLS listener without a probe configuration: not probed */
    }
    uint64_t adds0 = atomic_load(&o->adds);
    nng_dialer d;
    if ((rv = nng_dialer_create(&d, o->w->probe, o->dial_url)) != 0 ||
        (o->probe_tls != NULL &&
         (rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, o->probe_tls)) != 0)) {
        QB_LOG_RL(QB_LOG_WARN, "listener.probe_failed", "%s %s: dialer %s: %s", o->role, o->url,
                  o->dial_url, nng_strerror(rv));
        return true;
    }
    (void)nng_dialer_start(d, NNG_FLAG_NONBLOCK);
    uint64_t deadline = listeners_ms() + QB_LISTENERS_PROBE_WAIT_MS;
    pthread_mutex_lock(&ls->mtx);
    while (atomic_load(&o->adds) == adds0 && !ls->stop && listeners_ms() < deadline) {
        listeners_wait(ls, deadline);
    }
    bool ok = atomic_load(&o->adds) != adds0;
    bool stopping = ls->stop;
    pthread_mutex_unlock(&ls->mtx);
    nng_dialer_close(d);
    if (ok) {
        o->proven = true;
    } else if (o->tls != NULL && !o->proven && !stopping) {
        if (o->probes == 0) {
            QB_WARN("listener.probe_unproven",
                    "%s %s: the probe (presenting the broker's own certificate as a client "
                    "certificate) did not get through; this listener is not repaired until "
                    "one does (give the certificate the clientAuth usage too, as "
                    "scripts/make-certs.sh does)",
                    o->role, o->url);
        }
        return true;
    }
    return ok || stopping;
}

/* Closes o's listener and listens again. Probe thread. */
static void listeners_repair(qb_listeners *ls, listeners_one *o)
{
    if (atomic_load(&o->lid) != 0) {
        atomic_store(&o->lid, 0);
        nng_listener_close(o->l);
    }
    int nrv;
    int rc = listeners_listen(o, &nrv);
    qb_listener_info info;
    pthread_mutex_lock(&ls->mtx);
    if (rc == QB_OK) {
        o->repairs++;
        o->up = true;
        o->fails = 0;
    } else {
        o->relisten_fails++;
        o->up = false;
    }
    pthread_mutex_unlock(&ls->mtx);
    (void)qb_listeners_get(ls, (size_t)(o - ls->one), &info);
    if (rc == QB_OK) {
        QB_WARN("listener.repaired",
                "%s %s stopped handing connections to the broker (a connection closed during "
                "the handshake: nanomsg/nng#1518); re-created it (repairs=%llu; its clients "
                "reconnect)",
                o->role, o->url, (unsigned long long)info.repairs);
    } else {
        QB_LOG_RL(QB_LOG_ERROR, "listener.relisten_failed",
                  "%s %s: cannot listen again: %s (retrying)", o->role, o->url, nng_strerror(nrv));
    }
    if (ls->ev_fn != NULL) {
        ls->ev_fn(ls->ev_arg, &info, rc == QB_OK);
    }
}

static void *listeners_main(void *arg)
{
    qb_listeners *ls = arg;
    pthread_mutex_lock(&ls->mtx);
    while (!ls->stop) {
        uint64_t next = listeners_ms() + ls->probe_ms;
        for (size_t i = 0; i < ls->n && !ls->stop; i++) {
            listeners_one *o = &ls->one[i];
            pthread_mutex_unlock(&ls->mtx);
            bool listening = atomic_load(&o->lid) != 0;
            bool ok = listening && listeners_probe(ls, o);
            pthread_mutex_lock(&ls->mtx);
            if (ls->stop) {
                break;
            }
            o->probes += listening ? 1 : 0;
            if (ok) {
                o->fails = 0;
                o->up = true;
                continue;
            }
            o->probe_fails += listening ? 1 : 0;
            if (listening && ++o->fails < QB_LISTENERS_FAILS) {
                QB_DEBUG("listener.probe_missed", "%s %s: probe %u missed", o->role, o->url,
                         o->fails);
                continue;
            }
            o->up = false;
            pthread_mutex_unlock(&ls->mtx);
            listeners_repair(ls, o);
            pthread_mutex_lock(&ls->mtx);
        }
        while (!ls->stop && listeners_ms() < next) {
            listeners_wait(ls, next);
        }
    }
    pthread_mutex_unlock(&ls->mtx);
    return NULL;
}

int qb_listeners_start(qb_listeners *ls, unsigned probe_ms)
{
    ls->probe_ms = probe_ms ? probe_ms : QB_LISTENERS_PROBE_MS;
    if (pthread_create(&ls->thread, NULL, listeners_main, ls) != 0) {
        return QB_ENOMEM;
    }
    ls->running = true;
    return QB_OK;
}

void qb_listeners_stop(qb_listeners *ls)
{
    if (ls == NULL || !ls->running) {
        return;
    }
    pthread_mutex_lock(&ls->mtx);
    ls->stop = true;
    pthread_cond_broadcast(&ls->cv);
    pthread_mutex_unlock(&ls->mtx);
    pthread_join(ls->thread, NULL);
    ls->running = false;
}

size_t qb_listeners_get(qb_listeners *ls, size_t i, qb_listener_info *out)
{
    pthread_mutex_lock(&ls->mtx);
    size_t n = ls->n;
    if (out != NULL && i < n) {
        const listeners_one *o = &ls->one[i];
        memset(out, 0, sizeof *out);
        snprintf(out->role, sizeof out->role, "%s", o->role);
        snprintf(out->url, sizeof out->url, "%s", o->url);
        out->up = o->up;
        out->probes = o->probes;
        out->probe_fails = o->probe_fails;
        out->repairs = o->repairs;
        out->relisten_fails = o->relisten_fails;
    }
    pthread_mutex_unlock(&ls->mtx);
    return n;
}

void qb_listeners_free(qb_listeners *ls)
{
    if (ls == NULL) {
        return;
    }
    qb_listeners_stop(ls);
    for (size_t i = 0; i < ls->n_socks; i++) {
        if (ls->socks[i].probe_open) {
            (void)qb_nng_close_bounded(ls->socks[i].probe, "listener probe", LISTENERS_CLOSE_MS);
        }
    }
    for (size_t i = 0; i < ls->n; i++) {
        if (ls->one[i].lock_fd >= 0) {
            close(ls->one[i].lock_fd);
        }
        if (ls->one[i].tls != NULL) {
            nng_tls_config_free(ls->one[i].tls);
        }
        if (ls->one[i].probe_tls != NULL) {
            nng_tls_config_free(ls->one[i].probe_tls);
        }
    }
    pthread_cond_destroy(&ls->cv);
    pthread_mutex_destroy(&ls->mtx);
    free(ls);
}
