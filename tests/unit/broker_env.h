/*
 * broker_env.h: a real broker for the unit tests that need one
 * (test_broker.c, test_publish.c; header only, like harness.h, so its
 * checks count in the including test).
 *
 *   t_paths_init();                        in main: /tmp/qb-test-<pid>/sub/{ingest,pub}.ipc
 *   t_env e;
 *   t_start(&e, 0, t_all, t_all_len, 3, NULL, NULL, 0);   broker + publisher + subscriber
 *   ... t_send / t_recv / t_stats ...
 *   t_stop(&e);
 *   t_paths_remove();                      in main, after qb_test_run_all()
 *
 * t_start synchronises before it returns: it publishes a probe trade until
 * every subscriber received one, so both connections are up; after that,
 * frames from one publisher are received in order.
 */
#ifndef QB_TEST_BROKER_ENV_H
#define QB_TEST_BROKER_ENV_H

#include "harness.h"

#include "broker.h"
#include "buf.h"
#include "decimal.h"
#include "err.h"
#include "msg.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char t_dir[128];
static char t_ingest[192];
static char t_pub[192];
static uint64_t t_probe_seq;

static inline void t_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static inline qb_dec D(const char *s)
{
    qb_dec d = {0, 0};
    if (qb_dec_parse(s, strlen(s), &d) != QB_OK) {
        fprintf(stderr, "bad decimal in test: %s\n", s);
        abort();
    }
    return d;
}

static inline qb_level L(const char *px, const char *qty)
{
    return (qb_level){D(px), D(qty)};
}

/* A message skeleton: exchange binance, the given symbol. */
static inline qb_msg t_msg(qb_msg_type type, const char *sym, const char *native, uint64_t seq)
{
    qb_msg m;
    memset(&m, 0, sizeof m);
    m.type = type;
    m.version = QB_PROTO_VERSION;
    m.exchange = QB_STR("binance");
    m.symbol = (qb_str){sym, strlen(sym)};
    m.native = (qb_str){native, strlen(native)};
    m.seq = seq;
    m.exch_ts = 1700000000000000000ull;
    m.recv_ts = 1700000000000000001ull;
    return m;
}

static inline void t_encode(const qb_msg *m, qb_buf *out)
{
    qb_buf_reset(out);
    int rc = qb_msg_encode(m, out);
    if (rc != QB_OK) {
        fprintf(stderr, "encode failed: %s\n", qb_strerror(rc));
        abort();
    }
}

typedef struct t_env {
    qb_broker *b;
    nng_socket pub;  /* the test's publisher: dials ingest */
    nng_socket sub;  /* the test's subscriber: dials pub, given prefixes */
    nng_socket sub2; /* optional second subscriber */
    bool has_sub2;
} t_env;

static inline void t_send(t_env *e, const void *p, size_t n)
{
    nng_msg *m;
    if (nng_msg_alloc(&m, n) != 0) {
        abort();
    }
    memcpy(nng_msg_body(m), p, n);
    if (nng_sendmsg(e->pub, m, 0) != 0) {
        nng_msg_free(m);
        QB_CHECK(!"nng_sendmsg failed");
    }
}

static inline void t_send_buf(t_env *e, const qb_buf *b)
{
    t_send(e, b->data, b->len);
}

/* Receives one frame (2 s timeout); NULL on timeout. */
static inline nng_msg *t_recv(nng_socket s)
{
    nng_msg *m = NULL;
    if (nng_recvmsg(s, &m, 0) != 0) {
        return NULL;
    }
    return m;
}

static inline bool t_frame_is(nng_msg *m, const qb_buf *want)
{
    return m != NULL && nng_msg_len(m) == want->len &&
           memcmp(nng_msg_body(m), want->data, want->len) == 0;
}

static inline void t_open_sub(nng_socket *s, const char *const *prefixes, const size_t *lens,
                              size_t n)
{
    QB_CHECK(nng_sub0_open(s) == 0);
    QB_CHECK(nng_socket_set_int(*s, NNG_OPT_RECVBUF, 8192) == 0);
    QB_CHECK(nng_socket_set_size(*s, NNG_OPT_RECVMAXSZ, QB_MSG_MAX_FRAME) == 0);
    QB_CHECK(nng_socket_set_ms(*s, NNG_OPT_RECVTIMEO, 2000) == 0);
    for (size_t i = 0; i < n; i++) {
        QB_CHECK(nng_socket_set(*s, NNG_OPT_SUB_SUBSCRIBE, prefixes[i], lens[i]) == 0);
    }
    /* Every subscriber also gets the probe topic (see t_sync). */
    QB_CHECK(nng_socket_set(*s, NNG_OPT_SUB_SUBSCRIBE, "trade.test.PROBE", 17) == 0);
    QB_CHECK(nng_dial(*s, t_pub, NULL, 0) == 0);
}

/* Publishes probe trades until s receives one, then drains s (the probes
 * sent while waiting). */
static inline bool t_sync_one(t_env *e, nng_socket s)
{
    qb_buf b = QB_BUF_INIT;
    bool ok = false;
    QB_CHECK(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 20) == 0);
    for (int i = 0; i < 250 && !ok; i++) {
        qb_msg m = t_msg(QB_MSG_TRADE, "PROBE", "PROBE", ++t_probe_seq);
        m.exchange = QB_STR("test");
        m.trade_id = t_probe_seq;
        m.price = D("1");
        m.qty = D("1");
        m.side = QB_SIDE_BUY;
        t_encode(&m, &b);
        t_send_buf(e, &b);
        nng_msg *r = t_recv(s);
        if (r != NULL) {
            ok = true;
            nng_msg_free(r);
        }
    }
    /* Drain the probes still in flight. */
    t_sleep_ms(50);
    nng_msg *r;
    while ((r = t_recv(s)) != NULL) {
        nng_msg_free(r);
    }
    QB_CHECK(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 2000) == 0);
    qb_buf_fini(&b);
    return ok;
}

/* Starts a broker and a publisher and a subscriber of the given prefixes
 * (plus an optional second subscriber), all synchronised. */
static inline bool t_start(t_env *e, size_t max_topics, const char *const *pfx, const size_t *lens,
                           size_t n, const char *const *pfx2, const size_t *lens2, size_t n2)
{
    memset(e, 0, sizeof *e);
    const char *ing[] = {t_ingest};
    const char *pub[] = {t_pub};
    qb_broker_config cfg = {
        .ingest_urls = ing, .n_ingest = 1, .pub_urls = pub, .n_pub = 1, .max_topics = max_topics};
    int rc = qb_broker_new(&cfg, &e->b);
    QB_CHECK_EQ_INT(rc, QB_OK);
    if (rc != QB_OK) {
        return false;
    }
    QB_CHECK(nng_pub0_open(&e->pub) == 0);
    QB_CHECK(nng_socket_set_int(e->pub, NNG_OPT_SENDBUF, 8192) == 0);
    QB_CHECK(nng_dial(e->pub, t_ingest, NULL, 0) == 0);
    t_open_sub(&e->sub, pfx, lens, n);
    bool ok = t_sync_one(e, e->sub);
    if (pfx2 != NULL) {
        e->has_sub2 = true;
        t_open_sub(&e->sub2, pfx2, lens2, n2);
        ok = ok && t_sync_one(e, e->sub2);
        /* sub got sub2's probes too: drain them. */
        QB_CHECK(nng_socket_set_ms(e->sub, NNG_OPT_RECVTIMEO, 50) == 0);
        nng_msg *r;
        while ((r = t_recv(e->sub)) != NULL) {
            nng_msg_free(r);
        }
        QB_CHECK(nng_socket_set_ms(e->sub, NNG_OPT_RECVTIMEO, 2000) == 0);
    }
    QB_CHECK(ok);
    return ok;
}

static inline void t_stop(t_env *e)
{
    nng_close(e->pub);
    nng_close(e->sub);
    if (e->has_sub2) {
        nng_close(e->sub2);
    }
    qb_broker_free(e->b);
}

static inline qb_broker_stats t_stats(t_env *e)
{
    qb_broker_stats s;
    qb_broker_stats_get(e->b, &s);
    return s;
}

static const char *const t_all[] = {"book.", "trade.binance.", "status."};
static const size_t t_all_len[] = {5, 14, 7};

/* Levels of delta k: every delta changes 3 bids and 2 asks of the book. */
static inline void t_delta_levels(uint64_t k, qb_level *bids, qb_level *asks)
{
    for (int i = 0; i < 3; i++) {
        bids[i] = (qb_level){{10000 - i, 2}, {(int64_t)((k * 7 + (uint64_t)i) % 50), 1}};
    }
    for (int i = 0; i < 2; i++) {
        asks[i] = (qb_level){{10001 + i, 2}, {(int64_t)((k * 13 + (uint64_t)i) % 50 + 1), 1}};
    }
}

/* The ipc paths of this process's broker: the broker creates the directory
 * itself (mkdir -p of ipc paths); t_paths_remove removes it. */
static inline void t_paths_init(void)
{
    snprintf(t_dir, sizeof t_dir, "/tmp/qb-test-%d", (int)getpid());
    snprintf(t_ingest, sizeof t_ingest, "ipc://%s/sub/ingest.ipc", t_dir);
    snprintf(t_pub, sizeof t_pub, "ipc://%s/sub/pub.ipc", t_dir);
}

static inline void t_paths_remove(void)
{
    char p[256];
    snprintf(p, sizeof p, "%s/sub", t_dir);
    rmdir(p);
    rmdir(t_dir);
}

#endif
