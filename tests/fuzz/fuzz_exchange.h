/*
 * fuzz_exchange.h: the body shared by the exchange parser targets
 * (fuzz_binance.c, fuzz_htx.c, fuzz_bithumb.c). It drives the same entry
 * points as the adapter (and the unit tests): ops->decode (HTX gzip),
 * ops->parse, ops->parse_snapshot, and the per-instrument sync state machine
 * (adapters/sync.c) with the exchange's sequence rule, one instrument, a
 * fresh qb_sync per input.
 *
 * Input: records separated by QB_FUZZ_SEP ("\n@@\n"). A record starting with
 *   'S'  the rest is a snapshot document (ops->parse_snapshot: Binance REST
 *        depth, HTX req answer), fed to qb_sync_on_snapshot;
 *   'G'  the rest is a binary frame for ops->decode (raw gzip bytes);
 *   'Z'  the rest is text that the harness gzips, then ops->decode;
 *   else the record is a websocket text frame for ops->parse.
 * Depth events go to qb_sync_on_delta, snapshots to qb_sync_on_snapshot,
 * full books (Bithumb) to qb_sync_on_full.
 *
 * Checked invariants (abort = finding), besides memory safety and UB:
 *   - a parsed event honours exchange.h: level prices > 0, sizes >= 0,
 *     counts within the parser's capacity, trades price > 0, qty >= 0;
 *   - the book is sorted strictly best first, no zero or negative sizes,
 *     never deeper than max_levels, never crossed while the sync is LIVE;
 *   - everything the sync publishes (snapshot and delta callbacks), mapped
 *     to a message by the adapter's own functions (adapters/event_msg.h:
 *     the book after a snapshot, the event of a delta), encodes as a wire
 *     message (qb_msg_encode) and decodes back to the same levels: what the
 *     adapter accepted, the broker can carry.
 */
#ifndef QB_FUZZ_EXCHANGE_H
#define QB_FUZZ_EXCHANGE_H

#include "fuzz.h"

#include "buf.h"
#include "err.h"
#include "event_msg.h"
#include "exchange.h"
#include "log.h"
#include "msg.h"
#include "sync.h"

#include <zlib.h>

#define FUZZ_MAX_BYTES (1u << 20)
#define FUZZ_MAX_LEVELS 400

typedef struct fuzz_ex {
    qb_parser p;
    void *st; /* the exchange's private state (one exchange per fuzz target) */
    qb_buf gz;
    qb_buf enc;
    qb_decoder *dec;
    int ready;
} fuzz_ex;

static fuzz_ex fuzz_ex_state;

static void fuzz_ex_init(const qb_exchange_ops *ops)
{
    if (fuzz_ex_state.ready) {
        return;
    }
    qb_log_set_level(QB_LOG_ERROR);
    if (qb_parser_init(&fuzz_ex_state.p, FUZZ_MAX_BYTES, FUZZ_MAX_LEVELS) != QB_OK ||
        qb_exchange_state_new(ops, FUZZ_MAX_BYTES, &fuzz_ex_state.st) != QB_OK) {
        abort();
    }
    fuzz_ex_state.dec = qb_decoder_new();
    if (fuzz_ex_state.dec == NULL) {
        abort();
    }
    fuzz_ex_state.ready = 1;
}

static void fuzz_ex_check_levels(const qb_level *l, size_t n)
{
    QB_FUZZ_CHECK(n == 0 || l != NULL);
    for (size_t i = 0; i < n; i++) {
        QB_FUZZ_CHECK(l[i].price.mant > 0);
        QB_FUZZ_CHECK(!qb_dec_is_neg(l[i].size));
        char s[QB_DEC_STR_MAX];
        QB_FUZZ_CHECK(qb_dec_format(l[i].price, s, sizeof s) > 0);
        QB_FUZZ_CHECK(qb_dec_format(l[i].size, s, sizeof s) > 0);
    }
}

static void fuzz_ex_check_book(const qb_sync *s)
{
    const qb_book *b = qb_sync_book(s);
    for (int side = QB_BID; side <= QB_ASK; side++) {
        size_t n = qb_book_depth(b, (qb_book_side)side);
        const qb_level *l = qb_book_levels(b, (qb_book_side)side);
        QB_FUZZ_CHECK(n <= FUZZ_MAX_LEVELS);
        for (size_t i = 0; i < n; i++) {
            QB_FUZZ_CHECK(l[i].size.mant > 0);
            QB_FUZZ_CHECK(l[i].price.mant > 0);
            if (i > 0) {
                int c = qb_dec_cmp(l[i - 1].price, l[i].price);
                QB_FUZZ_CHECK(side == QB_BID ? c > 0 : c < 0);
            }
        }
    }
    if (s->state == QB_SYNC_LIVE) {
        QB_FUZZ_CHECK(!qb_book_crossed(b));
    }
}

static const qb_msg_origin fuzz_ex_origin = {
    .exchange = QB_STR("fuzz"),
    .symbol = QB_STR("BTC-USDT"),
    .native = QB_STR("BTCUSDT"),
};

/* Encodes what the sync published, as publish.c does, and decodes it back. */
static void fuzz_ex_roundtrip(const qb_msg *m)
{
    char topic[96];
    QB_FUZZ_CHECK(qb_topic_format(topic, sizeof topic, "book", m->exchange, m->symbol) > 0);
    qb_buf_reset(&fuzz_ex_state.enc);
    QB_FUZZ_CHECK(qb_buf_append(&fuzz_ex_state.enc, topic, strlen(topic) + 1) == QB_OK);
    QB_FUZZ_CHECK(qb_msg_encode_map(m, &fuzz_ex_state.enc) == QB_OK);
    qb_str t;
    qb_msg out;
    QB_FUZZ_CHECK(qb_decoder_begin(fuzz_ex_state.dec, fuzz_ex_state.enc.data, fuzz_ex_state.enc.len,
                                   &t) == QB_OK);
    QB_FUZZ_CHECK(qb_decoder_next(fuzz_ex_state.dec, &out) == QB_OK);
    QB_FUZZ_CHECK(out.type == m->type && out.n_bids == m->n_bids && out.n_asks == m->n_asks);
    for (size_t i = 0; i < out.n_bids; i++) {
        QB_FUZZ_CHECK(qb_dec_cmp(out.bids[i].price, m->bids[i].price) == 0);
        QB_FUZZ_CHECK(qb_dec_cmp(out.bids[i].size, m->bids[i].size) == 0);
    }
    for (size_t i = 0; i < out.n_asks; i++) {
        QB_FUZZ_CHECK(qb_dec_cmp(out.asks[i].price, m->asks[i].price) == 0);
        QB_FUZZ_CHECK(qb_dec_cmp(out.asks[i].size, m->asks[i].size) == 0);
    }
}

/* The adapter publishes the book the snapshot built (adapter.c). */
static void fuzz_ex_on_snapshot(qb_sync *s, const qb_event *snap)
{
    qb_msg m;
    qb__book_snapshot_msg(&fuzz_ex_origin, 1, false, snap->recv_ts, snap->exch_ts, s->book_id,
                          qb_sync_book(s), &m);
    fuzz_ex_roundtrip(&m);
}

static void fuzz_ex_on_delta(qb_sync *s, const qb_event *ev)
{
    (void)s;
    qb_msg m;
    qb__event_delta_msg(&fuzz_ex_origin, 1, ev, &m);
    fuzz_ex_roundtrip(&m);
}

static void fuzz_ex_on_state(qb_sync *s, qb_feed_state st, const char *reason)
{
    (void)s;
    QB_FUZZ_CHECK(reason != NULL && strlen(reason) < QB_EVENT_INFO_MAX);
    QB_FUZZ_CHECK((int)st >= QB_FEED_SYNCING && (int)st <= QB_FEED_DOWN);
}

static void fuzz_ex_want(qb_sync *s, uint32_t delay_ms)
{
    (void)s;
    (void)delay_ms;
}

static const qb_sync_ops fuzz_ex_sync_ops = {
    .on_snapshot = fuzz_ex_on_snapshot,
    .on_delta = fuzz_ex_on_delta,
    .on_state = fuzz_ex_on_state,
    .want_snapshot = fuzz_ex_want,
};

/* gzips in[0..n) into fuzz_ex_state.gz; false when zlib refuses. */
static int fuzz_ex_gzip(const uint8_t *in, size_t n)
{
    qb_buf *g = &fuzz_ex_state.gz;
    qb_buf_reset(g);
    size_t cap = n + n / 8 + 64;
    if (qb_buf_reserve(g, cap) != QB_OK) {
        return 0;
    }
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        return 0;
    }
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)n;
    zs.next_out = g->data;
    zs.avail_out = (uInt)cap;
    int zr = deflate(&zs, Z_FINISH);
    g->len = cap - zs.avail_out;
    deflateEnd(&zs);
    return zr == Z_STREAM_END;
}

static void fuzz_ex_check_event(const qb_event *ev)
{
    QB_FUZZ_CHECK(memchr(ev->native, '\0', sizeof ev->native) != NULL);
    QB_FUZZ_CHECK(memchr(ev->info, '\0', sizeof ev->info) != NULL);
    if (ev->kind == QB_EV_DEPTH || ev->kind == QB_EV_SNAPSHOT || ev->kind == QB_EV_BOOK_FULL) {
        QB_FUZZ_CHECK(ev->n_bids <= fuzz_ex_state.p.level_cap);
        QB_FUZZ_CHECK(ev->n_asks <= fuzz_ex_state.p.level_cap);
        fuzz_ex_check_levels(ev->bids, ev->n_bids);
        fuzz_ex_check_levels(ev->asks, ev->n_asks);
    }
    if (ev->kind == QB_EV_TRADE) {
        QB_FUZZ_CHECK(ev->n_trades >= 1 && ev->n_trades <= fuzz_ex_state.p.trade_cap);
        for (size_t i = 0; i < ev->n_trades; i++) {
            QB_FUZZ_CHECK(ev->trades[i].price.mant > 0);
            QB_FUZZ_CHECK(!qb_dec_is_neg(ev->trades[i].qty));
        }
    }
    if (ev->kind == QB_EV_REPLY) {
        QB_FUZZ_CHECK(ev->reply.n > 0 && ev->reply.n <= sizeof fuzz_ex_state.p.reply);
    }
}

static int fuzz_exchange_run(const qb_exchange_ops *ops, const uint8_t *data, size_t size)
{
    fuzz_ex_init(ops);
    qb_sync_counters cnt;
    memset(&cnt, 0, sizeof cnt);
    qb_sync s;
    if (qb_sync_init(&s, ops->seq, &fuzz_ex_sync_ops, NULL, &cnt, FUZZ_MAX_LEVELS) != QB_OK) {
        abort();
    }
    qb_sync_start(&s, QB_FEED_SYNCING, "");
    size_t pos = 0;
    const uint8_t *rec;
    size_t len;
    while (qb_fuzz_next_record(data, size, &pos, &rec, &len)) {
        qb_event ev;
        int rc;
        const char *js = (const char *)rec;
        size_t jl = len;
        int snapshot = len > 0 && rec[0] == 'S';
        if (len > 0 && (rec[0] == 'G' || rec[0] == 'Z')) {
            const uint8_t *in = rec + 1;
            size_t n = len - 1;
            if (rec[0] == 'Z') {
                if (!fuzz_ex_gzip(rec + 1, len - 1)) {
                    continue;
                }
                in = fuzz_ex_state.gz.data;
                n = fuzz_ex_state.gz.len;
            }
            if (ops->decode == NULL) {
                continue;
            }
            rc = ops->decode(fuzz_ex_state.st, &fuzz_ex_state.p, in, n, &js, &jl);
            if (rc != QB_OK) {
                continue;
            }
            QB_FUZZ_CHECK(jl <= FUZZ_MAX_BYTES);
            if (rec[0] == 'Z') {
                QB_FUZZ_CHECK(jl == len - 1 && memcmp(js, rec + 1, jl) == 0);
            }
        } else if (snapshot) {
            js++;
            jl--;
        }
        if (snapshot) {
            if (ops->parse_snapshot == NULL) {
                continue;
            }
            rc = ops->parse_snapshot(fuzz_ex_state.st, &fuzz_ex_state.p, js, jl, &ev);
        } else {
            rc = ops->parse(fuzz_ex_state.st, &fuzz_ex_state.p, js, jl, &ev);
        }
        if (rc != QB_OK) {
            continue;
        }
        fuzz_ex_check_event(&ev);
        if (snapshot || ev.kind == QB_EV_SNAPSHOT) {
            if (snapshot) {
                ev.kind = QB_EV_SNAPSHOT;
            }
            if (s.state == QB_SYNC_STOPPED || s.state == QB_SYNC_LIVE) {
                qb_sync_start(&s, QB_FEED_RESYNCING, "fuzz");
            }
            qb_sync_on_snapshot(&s, &ev);
        } else if (ev.kind == QB_EV_DEPTH) {
            qb_sync_on_delta(&s, &ev);
        } else if (ev.kind == QB_EV_BOOK_FULL) {
            if (s.state == QB_SYNC_STOPPED) {
                qb_sync_start(&s, QB_FEED_RESYNCING, "fuzz");
            }
            qb_sync_on_full(&s, &ev);
        } else if (ev.kind == QB_EV_SHUTDOWN) {
            qb_sync_stop(&s, QB_FEED_RESYNCING, ev.info);
            qb_sync_start(&s, QB_FEED_RESYNCING, "reconnect");
        }
        fuzz_ex_check_book(&s);
    }
    qb_sync_fini(&s);
    return 0;
}

#endif
