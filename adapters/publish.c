/*
 * publish.c: the adapter's NNG PUB socket and its batching of maps into
 * frames.
 *
 * One PUB socket dials the broker's ingest address through qb_dialer
 * (common/dialer.h: non-blocking, logs every connect and disconnect, and a
 * watchdog re-creates the dialer if no connection exists for 3 s; the
 * dialer keeps retrying in the background while the broker is down, and
 * messages published meanwhile are dropped by NNG, which is what a PUB
 * does; the broker heals from the periodic refresh snapshots). A
 * tls+tcp:// broker is dialed with mutual TLS (common/nngtls.h: the broker's
 * certificate verified against --broker-tls-ca and the URL's host, ours
 * presented from --broker-tls-cert/--broker-tls-key). Runs on the
 * lws service thread only. Send buffer: NNG_OPT_SENDBUF 8192 messages (the
 * maximum; NNG's default silently drops under bursts).
 *
 * Batching (PROTOCOL.md, "Frames and batching"): a frame is
 * topic NUL map map ..., so deltas and trades are appended to an open
 * batch of their topic instead of each becoming an NNG message:
 *
 *   qb__pub_send(delta/trade) -> batch of its topic (topic NUL map ...)
 *        | batch reaches max_maps maps or max_bytes bytes -> sent now
 *   qb__pub_pass_end(more_input) -> at the end of every lws service pass
 *        (adapter.c): every open batch sent, oldest first (qb__pub_flush),
 *        unless input is already waiting (qb__pub_input_waiting: lws holds
 *        buffered or TLS-decrypted input, or an exchange connection's
 *        socket is readable now; lws hands over about one websocket message
 *        per pass; adapter.c also passes more_input when records OpenSSL read
 *        ahead are left for the next pass, see ws_conn.c), in which case the
 *        next pass continues the batches
 *   qb__pub_send(snapshot, status, ticker) -> every open batch sent first,
 *        then the message as its own frame (order kept across topics)
 *
 * So a message waits only while input that had already arrived is still
 * being handled: under light traffic a delta leaves at the end of its own
 * pass, with no timer and no added latency. A safety bound sends batches
 * anyway after QB_PUB_HOLD_PASSES passes or QB_PUB_HOLD_US microseconds
 * (should lws report buffered input for long).
 * Bounds (the overflow policy: flush, never drop or block): at most
 * max_maps maps (QB_PUB_BATCH_MAPS) and about max_bytes bytes
 * (QB_PUB_BATCH_BYTES; a single map larger than that is sent alone) per
 * frame, and at most QB_PUB_OPEN_BATCHES topics open at once (a new topic
 * beyond that flushes every open batch first). Seq stays +1 per map: the
 * caller numbers messages, this file only packs them. Counters: published
 * (maps), frames (NNG messages sent), publish_errors (maps lost to a failed
 * send), encode_errors.
 */
#include "adapter_int.h"

#include "clock.h"
#include "dialer.h"
#include "err.h"
#include "log.h"
#include "nngtls.h"

#include <nng/protocol/pubsub0/pub.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

/* Connections polled per pass (more are simply not looked at: their input
 * then waits for the next pass, the flush still happens). */
#define PUB_POLL_MAX 64

typedef struct pub_batch {
    qb_buf buf;    /* topic NUL map map ... */
    size_t tlen;   /* topic length without the NUL */
    uint32_t maps; /* 0: the slot is free */
} pub_batch;

struct qb_pub {
    nng_socket sock;
    qb_dialer *dialer; /* owns the socket's lifetime: qb_dialer_stop closes it */
    qb_buf enc;        /* unbatched frames */
    qb_pub_counters *cnt;
    uint32_t max_maps;
    size_t max_bytes;
    pub_batch batch[QB_PUB_OPEN_BATCHES];
    unsigned order[QB_PUB_OPEN_BATCHES]; /* open slots, oldest first */
    unsigned nopen;
    unsigned held_passes; /* passes ended without a flush */
    uint64_t held_since;  /* qb_mono_ns() of the first map held since */
};

int qb__pub_open(qb_pub **out, const char *url, const qb_tls_files *tls, qb_pub_counters *cnt)
{
    nng_tls_config *tcfg = NULL;
    if (qb_tls_url(url)) {
        int trc = qb_tls_client_config(tls, url, &tcfg);
        if (trc != QB_OK) {
            QB_ERROR("nng_dial_failed",
                     "broker=%s: TLS setup failed (--broker-tls-ca, "
                     "--broker-tls-cert, --broker-tls-key): %s",
                     url, qb_strerror(trc));
            return trc;
        }
    } else if (qb_tls_files_any(tls)) {
        QB_WARN("broker_tls_unused",
                "broker=%s is not a tls+tcp:// address: the "
                "--broker-tls-* files are not used",
                url);
    }
    qb_pub *p = calloc(1, sizeof *p);
    if (p == NULL) {
        if (tcfg != NULL) {
            nng_tls_config_free(tcfg);
        }
        return QB_ENOMEM;
    }
    p->cnt = cnt;
    p->max_maps = QB_PUB_BATCH_MAPS;
    p->max_bytes = QB_PUB_BATCH_BYTES;
    int rv = nng_pub0_open(&p->sock);
    if (rv != 0) {
        QB_ERROR("nng_open_failed", "pub0: %s", nng_strerror(rv));
        if (tcfg != NULL) {
            nng_tls_config_free(tcfg);
        }
        free(p);
        return qb_err_from_nng(rv);
    }
    if ((rv = nng_socket_set_int(p->sock, NNG_OPT_SENDBUF, 8192)) != 0) {
        QB_ERROR("nng_option_failed", "sendbuf: %s", nng_strerror(rv));
        nng_close(p->sock);
        if (tcfg != NULL) {
            nng_tls_config_free(tcfg);
        }
        free(p);
        return qb_err_from_nng(rv);
    }
    int rc = qb_dialer_start_tls(p->sock, url, "broker", tcfg, &p->dialer);
    if (tcfg != NULL) {
        nng_tls_config_free(tcfg); /* the dialer holds its own */
    }
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

uint64_t qb__pub_connects(const qb_pub *p)
{
    return p->dialer != NULL ? qb_dialer_connects(p->dialer) : 0;
}

void qb__pub_set_batch(qb_pub *p, uint32_t max_maps, size_t max_bytes)
{
    qb__pub_flush(p);
    p->max_maps = max_maps < 1 ? 1 : max_maps;
    p->max_bytes = max_bytes;
}

void qb__pub_close(qb_pub *p)
{
    if (p == NULL) {
        return;
    }
    qb__pub_flush(p);          /* best effort: NNG may still be connected */
    qb_dialer_stop(p->dialer); /* closes the socket */
    qb_buf_fini(&p->enc);
    for (unsigned i = 0; i < QB_PUB_OPEN_BATCHES; i++) {
        qb_buf_fini(&p->batch[i].buf);
    }
    free(p);
}

/* Copies data into an nng_msg and sends it without blocking; counts. */
static int pub_send_frame(qb_pub *p, const uint8_t *data, size_t len, uint32_t maps)
{
    nng_msg *msg;
    int rv = nng_msg_alloc(&msg, len);
    if (rv == 0) {
        memcpy(nng_msg_body(msg), data, len);
        rv = nng_sendmsg(p->sock, msg, NNG_FLAG_NONBLOCK);
        if (rv != 0) {
            nng_msg_free(msg); /* a send takes ownership only on success */
        }
    }
    if (rv != 0) {
        p->cnt->publish_errors += maps;
        QB_LOG_RL(QB_LOG_WARN, "publish_failed", "frame of %u message(s), %zu bytes: %s",
                  (unsigned)maps, len, nng_strerror(rv));
        return qb_err_from_nng(rv);
    }
    p->cnt->published += maps;
    p->cnt->frames++;
    return QB_OK;
}

static int pub_send_batch(qb_pub *p, pub_batch *b)
{
    int rc = pub_send_frame(p, b->buf.data, b->buf.len, b->maps);
    b->maps = 0;
    qb_buf_reset(&b->buf);
    return rc;
}

int qb__pub_flush(qb_pub *p)
{
    int rc = QB_OK;
    for (unsigned i = 0; i < p->nopen; i++) {
        int r = pub_send_batch(p, &p->batch[p->order[i]]);
        if (r != QB_OK) {
            rc = r;
        }
    }
    p->nopen = 0;
    p->held_passes = 0;
    p->held_since = 0;
    return rc;
}

#ifndef QB_PUB_NO_LWS /* benchmarks and tests compile this file without lws */
bool qb__pub_input_waiting(qb_pub *p, qb_adapter *a)
{
    if (p->nopen == 0) {
        return false; /* nothing held: no need to know */
    }
    if (lws_service_adjust_timeout(a->ctx, 1, 0) == 0) {
        return true;
    }
    struct pollfd fds[PUB_POLL_MAX];
    nfds_t n = 0;
    for (size_t i = 0; i < a->nconn && n < PUB_POLL_MAX; i++) {
        if (a->conns[i].wsi != NULL) {
            int fd = (int)lws_get_socket_fd(a->conns[i].wsi);
            if (fd >= 0) {
                fds[n++] = (struct pollfd){.fd = fd, .events = POLLIN};
            }
        }
    }
    return n > 0 && poll(fds, n, 0) > 0;
}
#endif

void qb__pub_pass_end(qb_pub *p, bool more_input)
{
    if (p->nopen == 0) {
        p->held_passes = 0;
        return;
    }
    if (more_input && ++p->held_passes < QB_PUB_HOLD_PASSES &&
        qb_mono_ns() - p->held_since < (uint64_t)QB_PUB_HOLD_US * 1000u) {
        return;
    }
    qb__pub_flush(p);
}

static void pub_encode_failed(qb_pub *p, const qb_msg *m, int rc)
{
    p->cnt->encode_errors++;
    QB_LOG_RL(QB_LOG_ERROR, "encode_failed", "type=%s symbol=%.*s: %s", qb_msg_type_name(m->type),
              (int)m->symbol.n, m->symbol.p, qb_strerror(rc));
}

/* The open batch of topic, or NULL. */
static pub_batch *pub_find(qb_pub *p, const char *topic, size_t tn, unsigned *pos)
{
    for (unsigned i = 0; i < p->nopen; i++) {
        pub_batch *b = &p->batch[p->order[i]];
        if (b->tlen == tn && memcmp(b->buf.data, topic, tn) == 0) {
            *pos = i;
            return b;
        }
    }
    return NULL;
}

/* Sends the batch at order position pos now and closes its slot. */
static int pub_flush_at(qb_pub *p, unsigned pos)
{
    int rc = pub_send_batch(p, &p->batch[p->order[pos]]);
    memmove(&p->order[pos], &p->order[pos + 1], (p->nopen - pos - 1) * sizeof p->order[0]);
    p->nopen--;
    return rc;
}

static int pub_batch_add(qb_pub *p, const qb_msg *m)
{
    char topic[QB_TOPIC_MAX + 1];
    const char *kind = qb_msg_topic_kind(m->type);
    int tn = kind ? qb_topic_format(topic, sizeof topic, kind, m->exchange, m->symbol) : -1;
    if (tn < 0) {
        pub_encode_failed(p, m, QB_EINVAL);
        return QB_EINVAL;
    }
    unsigned pos = 0;
    pub_batch *b = pub_find(p, topic, (size_t)tn, &pos);
    if (b == NULL) {
        if (p->nopen == QB_PUB_OPEN_BATCHES) {
            qb__pub_flush(p); /* overflow policy: send everything open */
        }
        unsigned slot = 0;
        while (p->batch[slot].maps != 0) {
            slot++; /* nopen < QB_PUB_OPEN_BATCHES: a free slot exists */
        }
        b = &p->batch[slot];
        qb_buf_reset(&b->buf);
        if (qb_buf_append(&b->buf, topic, (size_t)tn + 1) != QB_OK) {
            pub_encode_failed(p, m, QB_ENOMEM);
            return QB_ENOMEM;
        }
        b->tlen = (size_t)tn;
        pos = p->nopen;
        if (p->nopen == 0) {
            p->held_since = qb_mono_ns();
        }
        p->order[p->nopen++] = slot;
    }
    size_t before = b->buf.len;
    int rc = qb_msg_encode_map(m, &b->buf);
    if (rc != QB_OK) {
        pub_encode_failed(p, m, rc);
        if (b->maps == 0) { /* the slot was opened for this message */
            memmove(&p->order[pos], &p->order[pos + 1], (p->nopen - pos - 1) * sizeof p->order[0]);
            p->nopen--;
        }
        return rc;
    }
    if (b->maps > 0 && b->buf.len > p->max_bytes) {
        /* this map would overfill the frame: send what was there, then
         * start the next frame with this map */
        size_t mlen = b->buf.len - before;
        int src = pub_send_frame(p, b->buf.data, before, b->maps);
        memmove(b->buf.data + b->tlen + 1, b->buf.data + before, mlen);
        b->buf.len = b->tlen + 1 + mlen;
        b->maps = 0;
        (void)src; /* counted and logged by pub_send_frame */
    }
    b->maps++;
    if (b->maps >= p->max_maps || b->buf.len >= p->max_bytes) {
        return pub_flush_at(p, pos);
    }
    return QB_OK;
}

int qb__pub_send(qb_pub *p, const qb_msg *m)
{
    if (m->type == QB_MSG_DELTA || m->type == QB_MSG_TRADE) {
        return pub_batch_add(p, m);
    }
    /* Snapshots, status and tickers go out at once as their own frame,
     * after everything published before them. */
    qb__pub_flush(p);
    qb_buf_reset(&p->enc);
    int rc = qb_msg_encode(m, &p->enc);
    if (rc != QB_OK) {
        pub_encode_failed(p, m, rc);
        return rc;
    }
    return pub_send_frame(p, p->enc.data, p->enc.len, 1);
}
