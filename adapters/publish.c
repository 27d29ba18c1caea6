/*
 * publish.c: the adapter's NNG PUB socket.
 *
 * One PUB socket dials the broker's ingest address through qb_dialer
 * (common/dialer.h: non-blocking, logs every connect and disconnect, and a
 * watchdog re-creates the dialer if no connection exists for 3 s; the
 * dialer keeps retrying in the background while the broker is down, and
 * messages published meanwhile are dropped by NNG, which is what a PUB
 * does; the broker heals from the periodic refresh snapshots). Each message
 * is encoded once with qb_msg_encode into a buffer reused for the life of
 * the process, copied into an nng_msg and sent without blocking. Runs on the
 * lws service thread only. Send buffer: NNG_OPT_SENDBUF 8192 messages (the
 * maximum; NNG's default silently drops under bursts).
 */
#include "adapter_int.h"

#include "dialer.h"
#include "err.h"
#include "log.h"

#include <nng/protocol/pubsub0/pub.h>
#include <stdlib.h>
#include <string.h>

struct qb_pub {
    nng_socket sock;
    qb_dialer *dialer; /* owns the socket's lifetime: qb_dialer_stop closes it */
    qb_buf enc;
    qb_pub_counters *cnt;
};

int qb__pub_open(qb_pub **out, const char *url, qb_pub_counters *cnt)
{
    qb_pub *p = calloc(1, sizeof *p);
    if (p == NULL) {
        return QB_ENOMEM;
    }
    p->cnt = cnt;
    int rv = nng_pub0_open(&p->sock);
    if (rv != 0) {
        QB_ERROR("nng_open_failed", "pub0: %s", nng_strerror(rv));
        free(p);
        return qb_err_from_nng(rv);
    }
    if ((rv = nng_socket_set_int(p->sock, NNG_OPT_SENDBUF, 8192)) != 0) {
        QB_ERROR("nng_option_failed", "sendbuf: %s", nng_strerror(rv));
        nng_close(p->sock);
        free(p);
        return qb_err_from_nng(rv);
    }
    int rc = qb_dialer_start(p->sock, url, "broker", &p->dialer);
    if (rc != QB_OK) {
        QB_ERROR("nng_dial_failed", "broker=%s: %s", url, qb_strerror(rc));
        nng_close(p->sock);
        free(p);
        return rc;
    }
    QB_INFO("broker_dial", "dialing broker at %s (non-blocking, retried by NNG)", url);
    *out = p;
    return QB_OK;
}

void qb__pub_close(qb_pub *p)
{
    if (p == NULL) {
        return;
    }
    qb_dialer_stop(p->dialer); /* closes the socket */
    qb_buf_fini(&p->enc);
    free(p);
}

int qb__pub_send(qb_pub *p, const qb_msg *m)
{
    qb_buf_reset(&p->enc);
    int rc = qb_msg_encode(m, &p->enc);
    if (rc != QB_OK) {
        p->cnt->encode_errors++;
        QB_LOG_RL(QB_LOG_ERROR, "encode_failed", "type=%s symbol=%.*s: %s",
                  qb_msg_type_name(m->type), (int)m->symbol.n, m->symbol.p, qb_strerror(rc));
        return rc;
    }
    nng_msg *msg;
    int rv = nng_msg_alloc(&msg, p->enc.len);
    if (rv == 0) {
        memcpy(nng_msg_body(msg), p->enc.data, p->enc.len);
        rv = nng_sendmsg(p->sock, msg, NNG_FLAG_NONBLOCK);
        if (rv != 0) {
            nng_msg_free(msg); /* a send takes ownership only on success */
        }
    }
    if (rv != 0) {
        p->cnt->publish_errors++;
        QB_LOG_RL(QB_LOG_WARN, "publish_failed", "type=%s: %s", qb_msg_type_name(m->type),
                  nng_strerror(rv));
        return qb_err_from_nng(rv);
    }
    p->cnt->published++;
    return QB_OK;
}
