/*
 * snapclient.c: the snapshot service client of snapclient.h: request
 * encoding (msgpack-c's packer), one NNG aio with one deadline for the
 * send and the receive, and reply parsing into views of the reply message.
 * Runs on the caller's thread; no state of its own.
 */
#include "snapclient.h"

#include "err.h"
#include "topic.h"

#include <msgpack.h>
#include <nng/protocol/reqrep0/req.h>

#include <stdlib.h>
#include <string.h>

int qbc_snap_open(const char *url, nng_pipe_cb pipe_cb, void *cb_arg, nng_socket *out)
{
    nng_socket s;
    int rv = nng_req0_open(&s);
    if (rv != 0) {
        return qb_err_from_nng(rv);
    }
    /* Replies are bounded by the service (8 MiB by default). */
    if ((rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 2 * (size_t)QB_MSG_MAX_FRAME)) != 0 ||
        (rv = nng_socket_set_ms(s, NNG_OPT_RECONNMINT, 100)) != 0 ||
        (rv = nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, 1000)) != 0 ||
        (pipe_cb != NULL &&
         ((rv = nng_pipe_notify(s, NNG_PIPE_EV_ADD_POST, pipe_cb, cb_arg)) != 0 ||
          (rv = nng_pipe_notify(s, NNG_PIPE_EV_REM_POST, pipe_cb, cb_arg)) != 0))) {
        nng_close(s);
        return QB_ETRANSPORT;
    }
    if ((rv = nng_dial(s, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
        nng_close(s);
        return qb_err_from_nng(rv);
    }
    *out = s;
    return QB_OK;
}

static int snapclient_write_cb(void *data, const char *p, size_t n)
{
    return qb_buf_append(data, p, n) == QB_OK ? 0 : -1;
}

static const msgpack_object *snapclient_get(const msgpack_object *m, const char *key)
{
    size_t n = strlen(key);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
            memcmp(k->via.str.ptr, key, n) == 0) {
            return &m->via.map.ptr[i].val;
        }
    }
    return NULL;
}

static void snapclient_copy_str(char *dst, size_t cap, const msgpack_object *o)
{
    dst[0] = '\0';
    if (o != NULL && o->type == MSGPACK_OBJECT_STR) {
        size_t n = o->via.str.size < cap - 1 ? o->via.str.size : cap - 1;
        memcpy(dst, o->via.str.ptr, n);
        dst[n] = '\0';
    }
}

static bool snapclient_state(const msgpack_object *o, qb_feed_state *out)
{
    static const qb_feed_state all[] = {QB_FEED_SYNCING, QB_FEED_LIVE, QB_FEED_STALE,
                                        QB_FEED_RESYNCING, QB_FEED_DOWN};
    if (o == NULL || o->type != MSGPACK_OBJECT_STR) {
        return false;
    }
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const char *n = qb_feed_state_name(all[i]);
        if (strlen(n) == o->via.str.size && memcmp(n, o->via.str.ptr, o->via.str.size) == 0) {
            *out = all[i];
            return true;
        }
    }
    return false;
}

int qbc_snap_parse(const void *data, size_t len, qbc_snap_reply *r)
{
    memset(r, 0, sizeof *r);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rc = QB_EPARSE;
    if (msgpack_unpack_next(&u, data, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len ||
        u.data.type != MSGPACK_OBJECT_MAP) {
        goto out;
    }
    const msgpack_object *v = snapclient_get(&u.data, "v");
    const msgpack_object *ok = snapclient_get(&u.data, "ok");
    if (v == NULL || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || ok == NULL ||
        ok->type != MSGPACK_OBJECT_BOOLEAN) {
        goto out;
    }
    if (v->via.u64 != QB_PROTO_VERSION) {
        rc = QB_EVERSION;
        goto out;
    }
    r->ok = ok->via.boolean;
    if (!r->ok) {
        snapclient_copy_str(r->code, sizeof r->code, snapclient_get(&u.data, "code"));
        snapclient_copy_str(r->error, sizeof r->error, snapclient_get(&u.data, "error"));
        rc = QB_OK;
        goto out;
    }
    const msgpack_object *t = snapclient_get(&u.data, "truncated");
    const msgpack_object *b = snapclient_get(&u.data, "books");
    if (b == NULL || b->type != MSGPACK_OBJECT_ARRAY) {
        goto out;
    }
    r->truncated = t != NULL && t->type == MSGPACK_OBJECT_BOOLEAN && t->via.boolean;
    if (b->via.array.size > 0) {
        r->books = calloc(b->via.array.size, sizeof *r->books);
        if (r->books == NULL) {
            rc = QB_ENOMEM;
            goto out;
        }
    }
    for (uint32_t i = 0; i < b->via.array.size; i++) {
        const msgpack_object *it = &b->via.array.ptr[i];
        if (it->type != MSGPACK_OBJECT_MAP) {
            goto bad;
        }
        const msgpack_object *topic = snapclient_get(it, "topic");
        const msgpack_object *valid = snapclient_get(it, "valid");
        const msgpack_object *seq = snapclient_get(it, "seq");
        const msgpack_object *frame = snapclient_get(it, "frame");
        const msgpack_object *age = snapclient_get(it, "age_ms");
        if (topic == NULL || topic->type != MSGPACK_OBJECT_STR || valid == NULL ||
            valid->type != MSGPACK_OBJECT_BOOLEAN || seq == NULL ||
            seq->type != MSGPACK_OBJECT_POSITIVE_INTEGER || frame == NULL) {
            goto bad;
        }
        qbc_snap_book *sb = &r->books[r->n_books++];
        /* str and bin objects reference the input (the reply message). */
        sb->topic = (qb_str){topic->via.str.ptr, topic->via.str.size};
        sb->valid = valid->via.boolean;
        sb->seq = seq->via.u64;
        sb->age_ms = age != NULL && age->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? age->via.u64 : 0;
        sb->has_state = snapclient_state(snapclient_get(it, "state"), &sb->state);
        if (sb->valid) {
            if (frame->type != MSGPACK_OBJECT_BIN) {
                goto bad;
            }
            sb->frame = frame->via.bin.ptr;
            sb->frame_len = frame->via.bin.size;
        }
    }
    rc = QB_OK;
    goto out;
bad:
    free(r->books);
    r->books = NULL;
    r->n_books = 0;
    rc = QB_EPARSE;
out:
    msgpack_unpacked_destroy(&u);
    return rc;
}

void qbc_snap_reply_fini(qbc_snap_reply *r)
{
    free(r->books);
    if (r->msg != NULL) {
        nng_msg_free(r->msg);
    }
    memset(r, 0, sizeof *r);
}

int qbc_snap_request(nng_socket req, const char *topic, int timeout_ms, qbc_snap_reply *r)
{
    qb_buf b = QB_BUF_INIT;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, snapclient_write_cb);
    int prc = msgpack_pack_map(&pk, 3);
    prc |= msgpack_pack_str_with_body(&pk, "v", 1);
    prc |= msgpack_pack_uint32(&pk, QB_PROTO_VERSION);
    prc |= msgpack_pack_str_with_body(&pk, "op", 2);
    prc |= msgpack_pack_str_with_body(&pk, "snapshot", 8);
    prc |= msgpack_pack_str_with_body(&pk, "topic", 5);
    prc |= msgpack_pack_str_with_body(&pk, topic, strlen(topic));
    nng_msg *m = NULL;
    if (prc != 0 || nng_msg_alloc(&m, b.len) != 0) {
        qb_buf_fini(&b);
        return QB_ENOMEM;
    }
    memcpy(nng_msg_body(m), b.data, b.len);
    qb_buf_fini(&b);
    nng_aio *aio;
    if (nng_aio_alloc(&aio, NULL, NULL) != 0) {
        nng_msg_free(m);
        return QB_ENOMEM;
    }
    /* One aio, one deadline for the send and the receive. A new request
     * on a REQ socket abandons the previous one, so a late reply to a
     * timed-out request is never mistaken for this one's. */
    nng_aio_set_timeout(aio, timeout_ms);
    nng_aio_set_msg(aio, m);
    nng_send_aio(req, aio);
    nng_aio_wait(aio);
    int rv = nng_aio_result(aio);
    if (rv != 0) {
        nng_msg_free(nng_aio_get_msg(aio));
        nng_aio_free(aio);
        return qb_err_from_nng(rv);
    }
    nng_aio_set_timeout(aio, timeout_ms);
    nng_recv_aio(req, aio);
    nng_aio_wait(aio);
    rv = nng_aio_result(aio);
    if (rv != 0) {
        nng_aio_free(aio);
        return qb_err_from_nng(rv);
    }
    nng_msg *rep = nng_aio_get_msg(aio);
    nng_aio_free(aio);
    int rc = qbc_snap_parse(nng_msg_body(rep), nng_msg_len(rep), r);
    if (rc != QB_OK) {
        nng_msg_free(rep);
        return rc;
    }
    r->msg = rep;
    return QB_OK;
}

bool qbc_snap_unknown(const qbc_snap_reply *r)
{
    return !r->ok && strcmp(r->code, QBC_SNAP_UNKNOWN_TOPIC) == 0;
}

int qbc_snap_instruments(const qbc_snap_reply *r, qb_buf *out)
{
    qb_str *topics = NULL;
    if (r->ok && r->n_books > 0) {
        topics = malloc(r->n_books * sizeof *topics);
        if (topics == NULL) {
            return QB_ENOMEM;
        }
        for (size_t i = 0; i < r->n_books; i++) {
            topics[i] = r->books[i].topic;
        }
    }
    int rc = qb_topic_instruments(out, topics, r->ok ? r->n_books : 0);
    if (rc == QB_OK && r->ok && r->truncated) {
        rc = qb_buf_append(out, " (and more)", 11);
    }
    free(topics);
    return rc;
}
