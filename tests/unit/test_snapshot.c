/*
 * test_snapshot.c: the broker's snapshot service (broker/snapshot.c) over
 * real NNG REQ/REP sockets on a private ipc path, with a fake collect
 * callback that serves books from a table guarded by its own lock (the
 * role the broker's topic table plays in production).
 */
#include "harness.h"

#include "book.h"
#include "buf.h"
#include "err.h"
#include "msg.h"
#include "snapshot.h"

#include <msgpack.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#define FAKE_BOOKS 3

typedef struct fake_book {
    const char *topic;
    const char *nsym;
    qb_book *book;
    uint64_t seq;
    bool valid;
    qb_feed_state state;
} fake_book;

typedef struct fake_broker {
    pthread_mutex_t lock;
    fake_book books[FAKE_BOOKS];
    atomic_int calls;
} fake_broker;

static qb_dec dec(int64_t m, int s)
{
    return (qb_dec){m, (int8_t)s};
}

/* Book i at version seq: levels derived from seq so a reader can check
 * that the levels it got belong to the seq it was told. */
static void fake_fill(qb_book *b, uint64_t seq, int nlevels)
{
    qb_book_clear(b);
    for (int k = 0; k < nlevels; k++) {
        qb_book_set(b, QB_BID, dec(100000 - k, 2), dec((int64_t)seq * 10 + k + 1, 3));
        qb_book_set(b, QB_ASK, dec(100001 + k, 2), dec((int64_t)seq * 10 + k + 2, 3));
    }
}

static void fake_init(fake_broker *f)
{
    pthread_mutex_init(&f->lock, NULL);
    static const char *topics[FAKE_BOOKS] = {"book.binance.BTC-USDT", "book.binance.ETH-USDT",
                                             "book.htx.BTC-USDT"};
    static const char *nsyms[FAKE_BOOKS] = {"BTCUSDT", "ETHUSDT", "btcusdt"};
    for (int i = 0; i < FAKE_BOOKS; i++) {
        f->books[i].topic = topics[i];
        f->books[i].nsym = nsyms[i];
        f->books[i].book = qb_book_new(0);
        f->books[i].seq = 100 + (uint64_t)i;
        f->books[i].valid = i != 2; /* htx: not in sequence */
        f->books[i].state = i == 2 ? QB_FEED_RESYNCING : QB_FEED_LIVE;
        fake_fill(f->books[i].book, f->books[i].seq, 5 + i);
    }
    atomic_init(&f->calls, 0);
}

static void fake_fini(fake_broker *f)
{
    for (int i = 0; i < FAKE_BOOKS; i++) {
        qb_book_free(f->books[i].book);
    }
    pthread_mutex_destroy(&f->lock);
}

static int fake_collect(void *arg, qb_str prefix, bool exact, qb_snapshot_sink *sink)
{
    fake_broker *f = arg;
    atomic_fetch_add(&f->calls, 1);
    pthread_mutex_lock(&f->lock);
    int rc = QB_OK;
    for (int i = 0; i < FAKE_BOOKS && rc == QB_OK; i++) {
        fake_book *b = &f->books[i];
        size_t n = strlen(b->topic);
        bool match = exact ? (n == prefix.n && memcmp(b->topic, prefix.p, n) == 0)
                           : (n >= prefix.n && memcmp(b->topic, prefix.p, prefix.n) == 0);
        if (!match) {
            continue;
        }
        qb_snapshot_book sb = {
            .topic = {b->topic, n},
            .nsym = {b->nsym, strlen(b->nsym)},
            .seq = b->seq,
            .last_id = b->seq * 7,
            .recv_ts = 1700000000000000000ull,
            .age_ns = 5000000,
            .valid = b->valid,
            .has_state = true,
            .state = b->state,
            .bids = qb_book_levels(b->book, QB_BID),
            .n_bids = qb_book_depth(b->book, QB_BID),
            .asks = qb_book_levels(b->book, QB_ASK),
            .n_asks = qb_book_depth(b->book, QB_ASK),
        };
        rc = qb_snapshot_sink_add(sink, &sb);
        if (rc == QB_ETOOBIG) {
            rc = QB_OK; /* reply full: stop, the service says truncated */
            break;
        }
    }
    pthread_mutex_unlock(&f->lock);
    return rc;
}

static char test_url[256];

static qb_snapshot *start_service(fake_broker *f, size_t max_books, size_t max_reply)
{
    snprintf(test_url, sizeof test_url, "ipc:///tmp/qb-test-snapshot-%d/snap.ipc", (int)getpid());
    const char *urls[] = {test_url};
    qb_snapshot_config cfg = {.urls = urls,
                              .n_urls = 1,
                              .max_books = max_books,
                              .max_reply = max_reply,
                              .collect = fake_collect,
                              .collect_arg = f};
    qb_snapshot *s = NULL;
    int rc = qb_snapshot_new(&cfg, &s);
    QB_CHECK_EQ_INT(rc, QB_OK);
    return s;
}

static int pack_cb(void *data, const char *p, size_t n)
{
    return qb_buf_append(data, p, n) == QB_OK ? 0 : -1;
}

static void pack_request(qb_buf *b, int v, const char *op, const char *topic)
{
    msgpack_packer pk;
    qb_buf_reset(b);
    msgpack_packer_init(&pk, b, pack_cb);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_int(&pk, v);
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, op, strlen(op));
    msgpack_pack_str_with_body(&pk, "topic", 5);
    msgpack_pack_str_with_body(&pk, topic, strlen(topic));
}

static int open_req(nng_socket *s)
{
    int rv = nng_req0_open(s);
    if (rv == 0) {
        nng_socket_set_ms(*s, NNG_OPT_RECVTIMEO, 5000);
        nng_socket_set_ms(*s, NNG_OPT_SENDTIMEO, 5000);
        nng_socket_set_size(*s, NNG_OPT_RECVMAXSZ, 16u << 20);
        rv = nng_dial(*s, test_url, NULL, 0);
    }
    return rv;
}

/* Sends raw bytes, returns the reply (caller frees) or NULL. */
static nng_msg *request_raw(nng_socket s, const void *p, size_t n)
{
    nng_msg *m;
    if (nng_msg_alloc(&m, n) != 0) {
        return NULL;
    }
    memcpy(nng_msg_body(m), p, n);
    if (nng_sendmsg(s, m, 0) != 0) {
        nng_msg_free(m);
        return NULL;
    }
    nng_msg *r = NULL;
    if (nng_recvmsg(s, &r, 0) != 0) {
        return NULL;
    }
    return r;
}

typedef struct reply {
    msgpack_unpacked u;
    bool ok;
    bool truncated;
    char code[64];
    char error[256];
    const msgpack_object *books;
    uint32_t n_books;
} reply;

static const msgpack_object *map_get(const msgpack_object *m, const char *key)
{
    if (m->type != MSGPACK_OBJECT_MAP) {
        return NULL;
    }
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            memcmp(k->via.str.ptr, key, k->via.str.size) == 0) {
            return &m->via.map.ptr[i].val;
        }
    }
    return NULL;
}

static bool parse_reply(nng_msg *r, reply *out)
{
    memset(out, 0, sizeof *out);
    msgpack_unpacked_init(&out->u);
    size_t off = 0;
    if (msgpack_unpack_next(&out->u, nng_msg_body(r), nng_msg_len(r), &off) !=
            MSGPACK_UNPACK_SUCCESS ||
        off != nng_msg_len(r)) {
        return false;
    }
    const msgpack_object *v = map_get(&out->u.data, "v");
    const msgpack_object *ok = map_get(&out->u.data, "ok");
    if (v == NULL || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 != 1 || ok == NULL ||
        ok->type != MSGPACK_OBJECT_BOOLEAN) {
        return false;
    }
    out->ok = ok->via.boolean;
    if (!out->ok) {
        const msgpack_object *c = map_get(&out->u.data, "code");
        const msgpack_object *e = map_get(&out->u.data, "error");
        if (c == NULL || e == NULL || c->type != MSGPACK_OBJECT_STR ||
            e->type != MSGPACK_OBJECT_STR) {
            return false;
        }
        snprintf(out->code, sizeof out->code, "%.*s", (int)c->via.str.size, c->via.str.ptr);
        snprintf(out->error, sizeof out->error, "%.*s", (int)e->via.str.size, e->via.str.ptr);
        return true;
    }
    const msgpack_object *t = map_get(&out->u.data, "truncated");
    const msgpack_object *b = map_get(&out->u.data, "books");
    if (t == NULL || t->type != MSGPACK_OBJECT_BOOLEAN || b == NULL ||
        b->type != MSGPACK_OBJECT_ARRAY) {
        return false;
    }
    out->truncated = t->via.boolean;
    out->books = b->via.array.ptr;
    out->n_books = b->via.array.size;
    return true;
}

static void reply_fini(reply *r)
{
    msgpack_unpacked_destroy(&r->u);
}

/* Checks one book item: decodes its frame with the standard decoder and
 * compares with the fake broker's book i (or, when check_levels is false,
 * only checks the levels' internal consistency with the frame's seq). */
static void check_book_item(const msgpack_object *item, fake_broker *f, int expect_index)
{
    const msgpack_object *topic = map_get(item, "topic");
    const msgpack_object *valid = map_get(item, "valid");
    const msgpack_object *state = map_get(item, "state");
    const msgpack_object *seq = map_get(item, "seq");
    const msgpack_object *frame = map_get(item, "frame");
    QB_CHECK(topic && valid && state && seq && frame && map_get(item, "age_ms"));
    if (!(topic && valid && state && seq && frame)) {
        return;
    }
    fake_book *b = &f->books[expect_index];
    QB_CHECK(topic->type == MSGPACK_OBJECT_STR && topic->via.str.size == strlen(b->topic) &&
             memcmp(topic->via.str.ptr, b->topic, topic->via.str.size) == 0);
    QB_CHECK_EQ_INT(valid->via.boolean, b->valid);
    const char *sn = qb_feed_state_name(b->state);
    QB_CHECK(state->type == MSGPACK_OBJECT_STR && state->via.str.size == strlen(sn) &&
             memcmp(state->via.str.ptr, sn, strlen(sn)) == 0);
    if (!b->valid) {
        QB_CHECK(frame->type == MSGPACK_OBJECT_NIL);
        return;
    }
    QB_CHECK(frame->type == MSGPACK_OBJECT_BIN);
    qb_decoder *d = qb_decoder_new();
    qb_str t;
    qb_msg m;
    QB_CHECK_EQ_INT(qb_decoder_begin(d, frame->via.bin.ptr, frame->via.bin.size, &t), QB_OK);
    QB_CHECK(t.n == strlen(b->topic) && memcmp(t.p, b->topic, t.n) == 0);
    QB_CHECK_EQ_INT(qb_decoder_next(d, &m), QB_OK);
    QB_CHECK_EQ_INT(m.type, QB_MSG_SNAPSHOT);
    QB_CHECK(m.refresh);
    QB_CHECK_EQ_INT(m.seq, seq->via.u64);
    QB_CHECK(m.native.n == strlen(b->nsym) && memcmp(m.native.p, b->nsym, m.native.n) == 0);
    QB_CHECK_EQ_INT(m.last_id, m.seq * 7);
    qb_book *got = qb_book_new(0);
    qb_book *want = qb_book_new(0);
    qb_book_replace(got, m.bids, m.n_bids, m.asks, m.n_asks);
    fake_fill(want, m.seq, 5 + expect_index);
    QB_CHECK(qb_book_equal(got, want));
    QB_CHECK_EQ_INT(qb_decoder_next(d, &m), QB_EEOF);
    qb_book_free(got);
    qb_book_free(want);
    qb_decoder_free(d);
}

static void expect_error(nng_socket s, const void *p, size_t n, const char *code)
{
    nng_msg *r = request_raw(s, p, n);
    QB_CHECK(r != NULL);
    if (r == NULL) {
        return;
    }
    reply rep;
    QB_CHECK(parse_reply(r, &rep));
    QB_CHECK(!rep.ok);
    QB_CHECK_EQ_STR(rep.code, code);
    QB_CHECK(strlen(rep.error) > 10);
    reply_fini(&rep);
    nng_msg_free(r);
}

static nng_msg *request(nng_socket s, qb_buf *b, const char *topic)
{
    pack_request(b, 1, "snapshot", topic);
    return request_raw(s, b->data, b->len);
}

QB_TEST(snapshot_exact_topic_one_book)
{
    fake_broker f;
    fake_init(&f);
    qb_snapshot *svc = start_service(&f, 0, 0);
    nng_socket s;
    QB_CHECK_EQ_INT(open_req(&s), 0);
    qb_buf b = QB_BUF_INIT;
    nng_msg *r = request(s, &b, "book.binance.ETH-USDT");
    QB_CHECK(r != NULL);
    reply rep;
    if (r != NULL && parse_reply(r, &rep)) {
        QB_CHECK(rep.ok);
        QB_CHECK(!rep.truncated);
        QB_CHECK_EQ_INT(rep.n_books, 1);
        if (rep.n_books == 1) {
            check_book_item(&rep.books[0], &f, 1);
            QB_CHECK_EQ_INT(map_get(&rep.books[0], "seq")->via.u64, 101);
        }
        reply_fini(&rep);
    } else {
        QB_CHECK(!"reply parses");
    }
    nng_msg_free(r);
    /* "book.binance.BTC-USD" is exact: it must not match BTC-USDT. */
    pack_request(&b, 1, "snapshot", "book.binance.BTC-USD");
    expect_error(s, b.data, b.len, "unknown_topic");
    nng_close(s);
    qb_snapshot_stats st;
    qb_snapshot_stats_get(svc, &st);
    QB_CHECK_EQ_INT(st.snap_requests, 2);
    QB_CHECK_EQ_INT(st.snap_replies_ok, 1);
    QB_CHECK_EQ_INT(st.snap_unknown_topic, 1);
    QB_CHECK_EQ_INT(st.snap_books, 1);
    qb_snapshot_free(svc);
    qb_buf_fini(&b);
    fake_fini(&f);
}

QB_TEST(snapshot_prefix_several_books)
{
    fake_broker f;
    fake_init(&f);
    qb_snapshot *svc = start_service(&f, 0, 0);
    nng_socket s;
    QB_CHECK_EQ_INT(open_req(&s), 0);
    qb_buf b = QB_BUF_INIT;
    nng_msg *r = request(s, &b, "book.binance.");
    reply rep;
    QB_CHECK(r != NULL && parse_reply(r, &rep));
    if (r != NULL) {
        QB_CHECK(rep.ok);
        QB_CHECK_EQ_INT(rep.n_books, 2);
        for (uint32_t i = 0; i < rep.n_books && i < 2; i++) {
            check_book_item(&rep.books[i], &f, (int)i);
        }
        reply_fini(&rep);
        nng_msg_free(r);
    }
    /* Every book: the htx one is reported, not valid, without a frame. */
    r = request(s, &b, "book.");
    QB_CHECK(r != NULL && parse_reply(r, &rep));
    if (r != NULL) {
        QB_CHECK(rep.ok);
        QB_CHECK_EQ_INT(rep.n_books, 3);
        for (uint32_t i = 0; i < rep.n_books && i < 3; i++) {
            check_book_item(&rep.books[i], &f, (int)i);
        }
        reply_fini(&rep);
        nng_msg_free(r);
    }
    pack_request(&b, 1, "snapshot", "book.kraken.");
    expect_error(s, b.data, b.len, "unknown_topic");
    nng_close(s);
    qb_snapshot_free(svc);
    qb_buf_fini(&b);
    fake_fini(&f);
}

QB_TEST(snapshot_bad_requests_get_error_replies)
{
    fake_broker f;
    fake_init(&f);
    qb_snapshot *svc = start_service(&f, 0, 0);
    nng_socket s;
    QB_CHECK_EQ_INT(open_req(&s), 0);
    qb_buf b = QB_BUF_INIT;
    expect_error(s, "\xc1\xc1garbage", 9, "bad_request");  /* invalid msgpack */
    expect_error(s, "\x93\x01\x02\x03", 4, "bad_request"); /* an array, not a map */
    expect_error(s, "", 0, "bad_request");                 /* empty */
    expect_error(s, "\x80\x80", 2, "bad_request");         /* trailing bytes */
    expect_error(s, "\x81\xa1v\x01", 4, "bad_request");    /* missing op/topic */
    pack_request(&b, 2, "snapshot", "book.");
    expect_error(s, b.data, b.len, "bad_version");
    pack_request(&b, 1, "subscribe", "book.");
    expect_error(s, b.data, b.len, "unknown_op");
    pack_request(&b, 1, "snapshot", "trade.binance.BTC-USDT");
    expect_error(s, b.data, b.len, "bad_topic");
    pack_request(&b, 1, "snapshot", "book.bin ance.");
    expect_error(s, b.data, b.len, "bad_topic");
    /* Oversized: a valid map padded past QB_SNAPSHOT_MAX_REQUEST. */
    char big[QB_SNAPSHOT_MAX_REQUEST * 2];
    memset(big, 'x', sizeof big);
    msgpack_packer pk;
    qb_buf_reset(&b);
    msgpack_packer_init(&pk, &b, pack_cb);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, "snapshot", 8);
    msgpack_pack_str_with_body(&pk, "topic", 5);
    msgpack_pack_str_with_body(&pk, "book.", 5);
    msgpack_pack_str_with_body(&pk, "pad", 3);
    msgpack_pack_str_with_body(&pk, big, sizeof big);
    expect_error(s, b.data, b.len, "too_large");
    /* The service still works after all that. */
    nng_msg *r = request(s, &b, "book.binance.BTC-USDT");
    reply rep;
    QB_CHECK(r != NULL && parse_reply(r, &rep) && rep.ok && rep.n_books == 1);
    if (r != NULL) {
        reply_fini(&rep);
        nng_msg_free(r);
    }
    qb_snapshot_stats st;
    qb_snapshot_stats_get(svc, &st);
    QB_CHECK_EQ_INT(st.snap_bad_requests, 9);
    QB_CHECK_EQ_INT(st.snap_too_large, 1);
    QB_CHECK_EQ_INT(st.snap_replies_ok, 1);
    nng_close(s);
    qb_snapshot_free(svc);
    qb_buf_fini(&b);
    fake_fini(&f);
}

QB_TEST(snapshot_reply_bounds_truncate)
{
    fake_broker f;
    fake_init(&f);
    qb_snapshot *svc = start_service(&f, 2, 0);
    nng_socket s;
    QB_CHECK_EQ_INT(open_req(&s), 0);
    qb_buf b = QB_BUF_INIT;
    nng_msg *r = request(s, &b, "book.");
    reply rep;
    QB_CHECK(r != NULL && parse_reply(r, &rep));
    if (r != NULL) {
        QB_CHECK(rep.ok && rep.truncated);
        QB_CHECK_EQ_INT(rep.n_books, 2);
        reply_fini(&rep);
        nng_msg_free(r);
    }
    nng_close(s);
    qb_snapshot_free(svc);

    /* A byte limit that holds one book but not two. */
    svc = start_service(&f, 0, 400);
    QB_CHECK_EQ_INT(open_req(&s), 0);
    r = request(s, &b, "book.binance.");
    QB_CHECK(r != NULL && parse_reply(r, &rep));
    if (r != NULL) {
        QB_CHECK(rep.ok && rep.truncated);
        QB_CHECK_EQ_INT(rep.n_books, 1);
        QB_CHECK(nng_msg_len(r) <= 400);
        if (rep.n_books == 1) {
            check_book_item(&rep.books[0], &f, 0);
        }
        reply_fini(&rep);
        nng_msg_free(r);
    }
    qb_snapshot_stats st;
    qb_snapshot_stats_get(svc, &st);
    QB_CHECK_EQ_INT(st.snap_truncated, 1);
    nng_close(s);
    qb_snapshot_free(svc);
    qb_buf_fini(&b);
    fake_fini(&f);
}

typedef struct conc_arg {
    fake_broker *f;
    int requests;
    int good;
    atomic_bool *stop;
} conc_arg;

static void *conc_requester(void *p)
{
    conc_arg *a = p;
    nng_socket s;
    if (open_req(&s) != 0) {
        return NULL;
    }
    qb_buf b = QB_BUF_INIT;
    for (int i = 0; i < a->requests; i++) {
        nng_msg *r = request(s, &b, (i % 2) ? "book.binance." : "book.binance.BTC-USDT");
        reply rep;
        if (r != NULL && parse_reply(r, &rep)) {
            bool ok = rep.ok && rep.n_books == ((i % 2) ? 2u : 1u);
            /* check_book_item() verifies the levels belong to the seq. */
            for (uint32_t k = 0; ok && k < rep.n_books; k++) {
                check_book_item(&rep.books[k], a->f, (int)k);
            }
            a->good += ok;
            reply_fini(&rep);
        }
        nng_msg_free(r);
    }
    nng_close(s);
    qb_buf_fini(&b);
    return NULL;
}

static void *conc_writer(void *p)
{
    conc_arg *a = p;
    while (!atomic_load(a->stop)) {
        pthread_mutex_lock(&a->f->lock);
        for (int i = 0; i < 2; i++) {
            a->f->books[i].seq++;
            fake_fill(a->f->books[i].book, a->f->books[i].seq, 5 + i);
        }
        pthread_mutex_unlock(&a->f->lock);
        usleep(200);
    }
    return NULL;
}

QB_TEST(snapshot_concurrent_requesters_while_books_change)
{
    fake_broker f;
    fake_init(&f);
    qb_snapshot *svc = start_service(&f, 0, 0);
    enum { N = 12, R = 60 };
    pthread_t th[N], wr;
    conc_arg args[N];
    atomic_bool stop;
    atomic_init(&stop, false);
    conc_arg wa = {.f = &f, .stop = &stop};
    pthread_create(&wr, NULL, conc_writer, &wa);
    for (int i = 0; i < N; i++) {
        args[i] = (conc_arg){.f = &f, .requests = R, .stop = &stop};
        pthread_create(&th[i], NULL, conc_requester, &args[i]);
    }
    int good = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        good += args[i].good;
    }
    atomic_store(&stop, true);
    pthread_join(wr, NULL);
    QB_CHECK_EQ_INT(good, N * R);
    qb_snapshot_stats st;
    qb_snapshot_stats_get(svc, &st);
    QB_CHECK_EQ_INT(st.snap_replies_ok, N * R);
    QB_CHECK_EQ_INT(st.snap_send_errors, 0);
    qb_snapshot_free(svc);
    fake_fini(&f);
}

QB_TEST(snapshot_free_with_requests_in_flight)
{
    fake_broker f;
    fake_init(&f);
    qb_snapshot *svc = start_service(&f, 0, 0);
    nng_socket s[4];
    qb_buf b = QB_BUF_INIT;
    pack_request(&b, 1, "snapshot", "book.");
    for (int i = 0; i < 4; i++) {
        QB_CHECK_EQ_INT(open_req(&s[i]), 0);
        nng_msg *m;
        nng_msg_alloc(&m, b.len);
        memcpy(nng_msg_body(m), b.data, b.len);
        if (nng_sendmsg(s[i], m, 0) != 0) {
            nng_msg_free(m);
        }
    }
    qb_snapshot_free(svc); /* no leak, no callback after this returns */
    int calls = atomic_load(&f.calls);
    usleep(50000);
    QB_CHECK_EQ_INT(atomic_load(&f.calls), calls);
    for (int i = 0; i < 4; i++) {
        nng_close(s[i]);
    }
    qb_buf_fini(&b);
    fake_fini(&f);
}

QB_TEST(snapshot_requesters_that_vanish)
{
    /* Requesters that send and close at once, many at a time: the service
     * must neither leak their requests nor its replies (ASan), and keep
     * serving the others. */
    fake_broker f;
    fake_init(&f);
    qb_snapshot *svc = start_service(&f, 0, 0);
    qb_buf b = QB_BUF_INIT;
    pack_request(&b, 1, "snapshot", "book.");
    for (int round = 0; round < 20; round++) {
        nng_socket s[12];
        for (int i = 0; i < 12; i++) {
            QB_CHECK_EQ_INT(open_req(&s[i]), 0);
            nng_msg *m;
            nng_msg_alloc(&m, b.len);
            memcpy(nng_msg_body(m), b.data, b.len);
            if (nng_sendmsg(s[i], m, 0) != 0) {
                nng_msg_free(m);
            }
        }
        for (int i = 0; i < 12; i++) {
            nng_close(s[i]);
        }
    }
    nng_socket s;
    QB_CHECK_EQ_INT(open_req(&s), 0);
    nng_msg *r = request(s, &b, "book.binance.");
    reply rep;
    QB_CHECK(r != NULL && parse_reply(r, &rep) && rep.ok && rep.n_books == 2);
    if (r != NULL) {
        reply_fini(&rep);
        nng_msg_free(r);
    }
    nng_close(s);
    qb_snapshot_free(svc);
    qb_buf_fini(&b);
    fake_fini(&f);
}

QB_TEST(snapshot_config_errors)
{
    qb_snapshot *s = (qb_snapshot *)0x1;
    qb_snapshot_config cfg = {0};
    QB_CHECK_EQ_INT(qb_snapshot_new(&cfg, &s), QB_EINVAL);
    QB_CHECK(s == (qb_snapshot *)0x1); /* out-param untouched on failure */
    fake_broker f;
    fake_init(&f);
    const char *bad[] = {"bogus://nowhere"};
    cfg =
        (qb_snapshot_config){.urls = bad, .n_urls = 1, .collect = fake_collect, .collect_arg = &f};
    QB_CHECK(qb_snapshot_new(&cfg, &s) != QB_OK);
    QB_CHECK(s == (qb_snapshot *)0x1);
    qb_snapshot_free(NULL);
    fake_fini(&f);
}

int main(void)
{
    int rc = qb_test_run_all();
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/qb-test-snapshot-%d", (int)getpid());
    rmdir(dir);
    return rc;
}
