/*
 * subscriber.c: qb_subscriber (quotebus.h): an NNG SUB socket, a decoder,
 * and the per-topic sequence check that turns lost messages into a
 * visible qb_message.gap.
 *
 *   broker PUB --NNG--> [SUB, 8192 frames, drop when full] --recv--> frame --maps--> qb_message
 *                                                               seq check per topic
 *
 * A frame may hold several maps (PROTOCOL.md 2): the frame is kept and its
 * maps are returned one per qb_subscriber_recv call. Each qb_message is one
 * allocation holding copies of everything it points to, so the caller may
 * keep it as long as it likes (at the cost of one malloc per message; the
 * mirror, which needs no copies, decodes in place instead).
 *
 * The seq table is bounded (SUBSCRIBER_MAX_TOPICS, policy "stop checking":
 * topics past it are delivered with gap 0). Threads: one thread at a time;
 * the counters are atomics so qb_subscriber_stats_get works from any.
 */
#include "client_int.h"

#include "clock.h"
#include "log.h"
#include "nngclose.h"
#include "nngrecv.h"

#include <nng/protocol/pubsub0/sub.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SUBSCRIBER_MAX_TOPICS 100000

struct qb_subscriber {
    nng_socket sock;
    qb_nng_recv *recv; /* one receive kept pending, no NNG timeout (nngrecv.h) */
    qb_decoder *dec;
    nng_msg *cur; /* frame being returned map by map */
    qb_str cur_topic;
    qbc_map seqs; /* topic -> last seq (value holds seq + 1; NULL: none) */
    _Atomic uint64_t frames, messages, invalid, gaps, missed;
};

static void subscriber_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

QB_API int qb_subscriber_open(const char *url, qb_subscriber **out)
{
    if (out == NULL) {
        return QB_EINVAL;
    }
    if (url == NULL) {
        url = QB_DEFAULT_PUB_URL;
    }
    qb_subscriber *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return QB_ENOMEM;
    }
    qbc_map_init(&s->seqs, SUBSCRIBER_MAX_TOPICS);
    int rc = QB_ENOMEM, rv;
    s->dec = qb_decoder_new();
    if (s->dec == NULL) {
        goto fail_nosock;
    }
    if ((rv = nng_sub0_open(&s->sock)) != 0) {
        rc = qb_err_from_nng(rv);
        goto fail_nosock;
    }
    if ((rc = qbc_sub_options(s->sock)) != QB_OK ||
        (rc = qb_nng_recv_new(s->sock, &s->recv)) != QB_OK) {
        goto fail;
    }
    /* Non-blocking dial: works before the broker is up, and NNG redials
     * after a broker restart. */
    if ((rv = nng_dial(s->sock, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
        rc = qb_err_from_nng(rv);
        goto fail;
    }
    *out = s;
    return QB_OK;
fail:
    qb_nng_recv_free(s->recv);
    nng_close(s->sock);
fail_nosock:
    qb_decoder_free(s->dec);
    qbc_map_fini(&s->seqs);
    free(s);
    return rc;
}

QB_API void qb_subscriber_close(qb_subscriber *s)
{
    if (s == NULL) {
        return;
    }
    qb_nng_recv_free(s->recv); /* cancels the pending receive */
    /* Bounded: NNG 1.5.2 may hang closing a SUB socket while frames are
     * arriving (see common/nngclose.h); then the socket is abandoned. */
    if (!qb_nng_close_bounded(s->sock, NULL, 2000)) {
        QB_WARN("subscriber.close_stuck",
                "NNG did not close the socket within 2000 ms (NNG 1.5.2 defect, "
                "nanomsg/nng#1543); abandoned to NNG");
    }
    if (s->cur != NULL) {
        nng_msg_free(s->cur);
    }
    qb_decoder_free(s->dec);
    qbc_map_fini(&s->seqs);
    free(s);
}

QB_API int qb_subscriber_subscribe(qb_subscriber *s, const char *topic)
{
    if (s == NULL || topic == NULL) {
        return QB_EINVAL;
    }
    size_t n = qb_topic_sub_len(topic);
    if (n == 0 && topic[0] != '\0') {
        return QB_EINVAL;
    }
    int rv = nng_socket_set(s->sock, NNG_OPT_SUB_SUBSCRIBE, topic, n);
    return rv == 0 ? QB_OK : QB_ETRANSPORT;
}

QB_API int qb_subscriber_unsubscribe(qb_subscriber *s, const char *topic)
{
    if (s == NULL || topic == NULL) {
        return QB_EINVAL;
    }
    size_t n = qb_topic_sub_len(topic);
    if (n == 0 && topic[0] != '\0') {
        return QB_EINVAL;
    }
    int rv = nng_socket_set(s->sock, NNG_OPT_SUB_UNSUBSCRIBE, topic, n);
    return qb_err_from_nng(rv);
}

/* Returns the number of messages missed before m on its topic. */
static uint64_t subscriber_gap(qb_subscriber *s, qb_str topic, const qb_msg *m)
{
    bool created;
    qbc_map_entry *e = qbc_map_get(&s->seqs, topic.p, topic.n, &created);
    if (e == NULL) {
        return 0;
    }
    uint64_t gap = 0;
    uint64_t next = (uint64_t)(uintptr_t)e->value; /* seq + 1; 0: none yet */
    /* The seq rule (proto/seq.h) on the stream: going back is a restarted
     * publisher (counted from its seq), never a gap. */
    if (qb_seq_on_stream(next != 0, next - 1, m->seq, qb_seq_type_of(m->type, m->refresh), &gap) ==
        QB_SEQ_GAP) {
        subscriber_add(&s->gaps, 1);
        subscriber_add(&s->missed, gap);
    }
    e->value = (void *)(uintptr_t)(m->seq + 1);
    return gap;
}

QB_API int qb_subscriber_recv(qb_subscriber *s, int timeout_ms, qb_message **out)
{
    if (s == NULL || out == NULL) {
        return QB_EINVAL;
    }
    uint64_t deadline =
        timeout_ms < 0 ? UINT64_MAX : qb_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        if (s->cur != NULL) {
            qb_msg m;
            int rc = qb_decoder_next(s->dec, &m);
            if (rc == QB_OK) {
                qb_message *r;
                uint64_t gap = subscriber_gap(s, s->cur_topic, &m);
                if (qbc_message_new(&m, s->cur_topic, gap, &r) != QB_OK) {
                    return QB_ENOMEM;
                }
                subscriber_add(&s->messages, 1);
                *out = r;
                return QB_OK;
            }
            if (rc != QB_EEOF) {
                subscriber_add(&s->invalid, 1);
            }
            nng_msg_free(s->cur);
            s->cur = NULL;
        }
        int wait;
        if (timeout_ms < 0) {
            wait = -1;
        } else {
            uint64_t now = qb_mono_ns();
            wait = now >= deadline ? 0 : (int)((deadline - now + 999999u) / 1000000u);
        }
        /* Not an aio timeout: NNG 1.5.2 loses a frame now and then when
         * one expires (nngrecv.h). */
        nng_msg *msg;
        int rc = qb_nng_recv_next(s->recv, wait, &msg, NULL);
        if (rc != QB_OK) {
            return rc;
        }
        subscriber_add(&s->frames, 1);
        if (qb_decoder_begin(s->dec, nng_msg_body(msg), nng_msg_len(msg), &s->cur_topic) != QB_OK) {
            subscriber_add(&s->invalid, 1);
            nng_msg_free(msg);
            continue;
        }
        s->cur = msg;
    }
}

QB_API void qb_subscriber_stats_get(qb_subscriber *s, qb_subscriber_stats *out)
{
    out->frames = atomic_load_explicit(&s->frames, memory_order_relaxed);
    out->messages = atomic_load_explicit(&s->messages, memory_order_relaxed);
    out->invalid = atomic_load_explicit(&s->invalid, memory_order_relaxed);
    out->gaps = atomic_load_explicit(&s->gaps, memory_order_relaxed);
    out->missed = atomic_load_explicit(&s->missed, memory_order_relaxed);
}
