/*
 * client.c: libquotebus's shared pieces: errors (the public table checked
 * against the project's), version, decimals, message construction, the
 * topic table and SUB socket options. (The bounded socket close is
 * common/nngclose.c; the snapshot service client is snapclient.c, shared
 * with quotebus-sub.)
 *
 * Threads: everything here is either pure or works on state owned by the
 * caller's thread.
 */
#include "client_int.h"

#include "decimal.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* The public error table must be the project's, value for value and
 * entry for entry. */
#define CLIENT_ERR_CHECK_(name, value, text)                                                       \
    _Static_assert((int)name == value, #name " differs between quotebus.h and err.h");
QUOTEBUS_ERRORS(CLIENT_ERR_CHECK_)
#undef CLIENT_ERR_CHECK_
#define CLIENT_COUNT_(name, value, text) +1
_Static_assert(0 QUOTEBUS_ERRORS(CLIENT_COUNT_) == 0 QB_ERRORS(CLIENT_COUNT_),
               "quotebus.h and err.h list a different number of errors");
#undef CLIENT_COUNT_

/* Public value types share the internal layout, so arrays are copied
 * wholesale. */
_Static_assert(sizeof(qb_decimal) == sizeof(qb_dec) &&
                   offsetof(qb_decimal, mantissa) == offsetof(qb_dec, mant) &&
                   offsetof(qb_decimal, scale) == offsetof(qb_dec, scale),
               "qb_decimal layout");
_Static_assert(sizeof(qb_price_level) == sizeof(qb_level) &&
                   offsetof(qb_price_level, size) == offsetof(qb_level, size),
               "qb_price_level layout");
_Static_assert((int)QB_STATUS_LIVE == (int)QB_FEED_LIVE &&
                   (int)QB_STATUS_DOWN == (int)QB_FEED_DOWN &&
                   (int)QB_STATUS_RESYNCING == (int)QB_FEED_RESYNCING,
               "feed states");
_Static_assert((int)QB_MESSAGE_TICKER == (int)QB_MSG_TICKER &&
                   (int)QB_MESSAGE_SNAPSHOT == (int)QB_MSG_SNAPSHOT,
               "message types");
_Static_assert((int)QB_TAKER_SELL == (int)QB_SIDE_SELL, "sides");
_Static_assert(QB_TOPIC_MAX_LEN == QB_TOPIC_MAX, "topic length");

QB_API const char *qb_version(void)
{
    return QB_VERSION;
}

static qb_dec client_dec(qb_decimal d)
{
    return (qb_dec){d.mantissa, d.scale};
}

QB_API int qb_decimal_format(qb_decimal d, char *buf, size_t cap)
{
    return qb_dec_format(client_dec(d), buf, cap);
}

QB_API int qb_decimal_parse(const char *text, qb_decimal *out)
{
    qb_dec d;
    if (text == NULL || out == NULL) {
        return QB_EINVAL;
    }
    int rc = qb_dec_parse(text, strlen(text), &d);
    if (rc == QB_OK) {
        out->mantissa = d.mant;
        out->scale = d.scale;
    }
    return rc;
}

QB_API int qb_decimal_cmp(qb_decimal a, qb_decimal b)
{
    return qb_dec_cmp(client_dec(a), client_dec(b));
}

QB_API const char *qb_message_type_name(qb_message_type t)
{
    return qb_msg_type_name((qb_msg_type)t);
}

QB_API const char *qb_feed_status_name(qb_feed_status s)
{
    return qb_feed_state_name((qb_feed_state)s);
}

QB_API const char *qb_taker_side_name(qb_taker_side s)
{
    return qb_side_name((qb_side)s);
}

QB_API const char *qb_mirror_state_name(qb_mirror_state s)
{
    switch (s) {
    case QB_MIRROR_SYNCING:
        return "syncing";
    case QB_MIRROR_LIVE:
        return "live";
    case QB_MIRROR_RESYNCING:
        return "resyncing";
    }
    return "unknown";
}

/* ---- messages --------------------------------------------------------- */

static qb_decimal client_pub(qb_dec d)
{
    return (qb_decimal){d.mant, d.scale};
}

static char *client_put_str(char **p, qb_str s)
{
    char *r = *p;
    if (s.n > 0) {
        memcpy(r, s.p, s.n);
    }
    r[s.n] = '\0';
    *p += s.n + 1;
    return r;
}

int qbc_message_new(const qb_msg *m, qb_str topic, uint64_t gap, qb_message **out)
{
    size_t nlv = m->n_bids + m->n_asks;
    size_t strs = topic.n + m->exchange.n + m->symbol.n + m->native.n + m->reason.n + 5;
    size_t head =
        (sizeof(qb_message) + _Alignof(qb_price_level) - 1) & ~(_Alignof(qb_price_level) - 1);
    qb_message *r = calloc(1, head + nlv * sizeof(qb_price_level) + strs);
    if (r == NULL) {
        return QB_ENOMEM;
    }
    qb_price_level *lv = (qb_price_level *)((char *)r + head);
    char *p = (char *)(lv + nlv);
    r->type = (qb_message_type)m->type;
    r->topic = client_put_str(&p, topic);
    r->exchange = client_put_str(&p, m->exchange);
    r->symbol = client_put_str(&p, m->symbol);
    r->native_symbol = client_put_str(&p, m->native);
    r->reason = client_put_str(&p, m->reason);
    r->seq = m->seq;
    r->exchange_ts_ns = m->exch_ts;
    r->receive_ts_ns = m->recv_ts;
    r->gap = gap;
    if (m->type == QB_MSG_SNAPSHOT || m->type == QB_MSG_DELTA) {
        r->first_id = m->first_id;
        r->last_id = m->last_id;
        if (m->n_bids) {
            memcpy(lv, m->bids, m->n_bids * sizeof *lv);
        }
        if (m->n_asks) {
            memcpy(lv + m->n_bids, m->asks, m->n_asks * sizeof *lv);
        }
        r->bids = lv;
        r->n_bids = m->n_bids;
        r->asks = lv + m->n_bids;
        r->n_asks = m->n_asks;
        r->refresh = m->refresh;
    } else if (m->type == QB_MSG_TRADE) {
        r->trade_id = m->trade_id;
        r->price = client_pub(m->price);
        r->qty = client_pub(m->qty);
        r->side = (qb_taker_side)m->side;
    } else if (m->type == QB_MSG_STATUS) {
        r->status = (qb_feed_status)m->state;
    } else if (m->type == QB_MSG_TICKER) {
        const qb_ticker *t = &m->ticker;
        r->last = client_pub(t->last);
        r->bid = client_pub(t->bid);
        r->bid_qty = client_pub(t->bid_qty);
        r->ask = client_pub(t->ask);
        r->ask_qty = client_pub(t->ask_qty);
        r->volume_24h = client_pub(t->volume_24h);
        r->change_24h = client_pub(t->change_24h);
        r->has_bid = t->has_bid;
        r->has_ask = t->has_ask;
        r->has_volume = t->has_volume;
        r->has_change = t->has_change;
    }
    *out = r;
    return QB_OK;
}

QB_API void qb_message_free(qb_message *m)
{
    free(m);
}

/* ---- topic table ------------------------------------------------------ */

void qbc_map_init(qbc_map *m, size_t max)
{
    qb_strmap_init(&m->t, max);
}

void qbc_map_fini(qbc_map *m)
{
    for (size_t i = 0; i < m->t.cap; i++) {
        free(m->t.slots[i]); /* the node is the first member of its entry */
    }
    qb_strmap_fini(&m->t);
}

qbc_map_entry *qbc_map_find(const qbc_map *m, const char *key, size_t len)
{
    return (qbc_map_entry *)qb_strmap_find(&m->t, key, len, qb_strmap_hash(key, len));
}

qbc_map_entry *qbc_map_get(qbc_map *m, const char *key, size_t len, bool *created)
{
    uint64_t h = qb_strmap_hash(key, len);
    *created = false;
    qb_strmap_node *n = qb_strmap_find(&m->t, key, len, h);
    if (n != NULL) {
        return (qbc_map_entry *)n;
    }
    if (qb_strmap_reserve(&m->t) != QB_OK) {
        return NULL;
    }
    qbc_map_entry *e = calloc(1, sizeof *e + len + 1);
    if (e == NULL) {
        return NULL;
    }
    memcpy(e->key, key, len);
    e->node = (qb_strmap_node){.hash = h, .key = e->key, .len = len};
    qb_strmap_insert(&m->t, &e->node);
    *created = true;
    return e;
}

/* ---- sockets ---------------------------------------------------------- */

int qbc_sub_options(nng_socket s)
{
    int rv;
    /* RECVBUF: NNG's default queue (128) drops silently under load; 8192
     * is its maximum. RECVMAXSZ: frames go up to QB_MSG_MAX_FRAME; NNG's
     * 1 MiB default would drop the connection on a deep snapshot. */
    if ((rv = nng_socket_set_int(s, NNG_OPT_RECVBUF, 8192)) != 0 ||
        (rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, QB_MSG_MAX_FRAME)) != 0 ||
        (rv = nng_socket_set_ms(s, NNG_OPT_RECONNMINT, 100)) != 0 ||
        (rv = nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, 1000)) != 0) {
        return qb_err_from_nng(rv);
    }
    return QB_OK;
}
