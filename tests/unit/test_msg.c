/*
 * test_msg.c: proto/msg.c and proto/msg_json.c. Round trips of every message
 * type, deterministic bytes, several maps per frame, unknown keys, every
 * truncated prefix and every single-byte mutation of valid frames, version
 * and topic checks, hostile counts and nesting, level limits, the JSON form,
 * and the worked hex examples of proto/PROTOCOL.md (decoded with the real
 * decoder and compared with the JSON shown under each); the encoder
 * (msgpack-c's pack template instantiated with an inline sink) against
 * msgpack-c's own callback packer, byte for byte, on randomized messages of
 * every kind (0..2000 levels, every name and reason length, batched maps)
 * and on the largest message the encoder accepts.
 */
#include "buf.h"
#include "err.h"
#include "harness.h"
#include "json.h"
#include "msg.h"
#include "oracle_msg.h"

#include <msgpack.h>

#ifndef QB_SOURCE_DIR
#error "QB_SOURCE_DIR must point at the source tree (tests/unit/CMakeLists.txt)"
#endif

/* ---- sample messages --------------------------------------------------- */

static const qb_level sample_bids[] = {{{10050, 2}, {125, 2}}, {{10049, 2}, {3, 0}}};
static const qb_level sample_asks[] = {{{10060, 2}, {0, 8}}};

static qb_msg sample(qb_msg_type type)
{
    qb_msg m;
    memset(&m, 0, sizeof m);
    m.type = type;
    m.version = QB_PROTO_VERSION;
    m.exchange = QB_STR("binance");
    m.symbol = QB_STR("BTC-USDT");
    m.native = QB_STR("BTCUSDT");
    m.seq = 42;
    m.exch_ts = 1700000000000000000ull;
    m.recv_ts = 1700000000000100000ull;
    switch (type) {
    case QB_MSG_SNAPSHOT:
    case QB_MSG_DELTA:
        m.first_id = 10;
        m.last_id = UINT64_MAX;
        m.bids = sample_bids;
        m.n_bids = 2;
        m.asks = sample_asks;
        m.n_asks = 1;
        m.refresh = type == QB_MSG_SNAPSHOT;
        break;
    case QB_MSG_TRADE:
        m.trade_id = 5;
        m.price = (qb_dec){1005, 1};
        m.qty = (qb_dec){1, 30};
        m.side = QB_SIDE_SELL;
        break;
    case QB_MSG_STATUS:
        m.state = QB_FEED_RESYNCING;
        m.reason = QB_STR("gap: expected U=101, got 105");
        break;
    case QB_MSG_TICKER:
        m.ticker.last = (qb_dec){10055, 2};
        m.ticker.has_ask = true;
        m.ticker.ask = (qb_dec){10060, 2};
        m.ticker.ask_qty = (qb_dec){5, 1};
        m.ticker.has_change = true;
        m.ticker.change_24h = (qb_dec){-INT64_MAX, -30};
        break;
    }
    return m;
}

static bool str_eq(qb_str a, qb_str b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

static bool levels_eq(const qb_level *a, size_t na, const qb_level *b, size_t nb)
{
    if (na != nb) {
        return false;
    }
    for (size_t i = 0; i < na; i++) {
        if (!qb_dec_identical(a[i].price, b[i].price) || !qb_dec_identical(a[i].size, b[i].size)) {
            return false;
        }
    }
    return true;
}

/* Field-by-field equality of the fields the type carries. */
static bool msg_eq(const qb_msg *a, const qb_msg *b)
{
    if (a->type != b->type || a->version != b->version || !str_eq(a->exchange, b->exchange) ||
        !str_eq(a->symbol, b->symbol) || !str_eq(a->native, b->native) || a->seq != b->seq ||
        a->exch_ts != b->exch_ts || a->recv_ts != b->recv_ts) {
        return false;
    }
    switch (a->type) {
    case QB_MSG_SNAPSHOT:
    case QB_MSG_DELTA:
        return a->first_id == b->first_id && a->last_id == b->last_id &&
               levels_eq(a->bids, a->n_bids, b->bids, b->n_bids) &&
               levels_eq(a->asks, a->n_asks, b->asks, b->n_asks) &&
               (a->type == QB_MSG_DELTA || a->refresh == b->refresh);
    case QB_MSG_TRADE:
        return a->trade_id == b->trade_id && qb_dec_identical(a->price, b->price) &&
               qb_dec_identical(a->qty, b->qty) && a->side == b->side;
    case QB_MSG_STATUS:
        return a->state == b->state && str_eq(a->reason, b->reason);
    case QB_MSG_TICKER: {
        const qb_ticker *x = &a->ticker, *y = &b->ticker;
        return qb_dec_identical(x->last, y->last) && x->has_bid == y->has_bid &&
               x->has_ask == y->has_ask && x->has_volume == y->has_volume &&
               x->has_change == y->has_change &&
               (!x->has_bid ||
                (qb_dec_identical(x->bid, y->bid) && qb_dec_identical(x->bid_qty, y->bid_qty))) &&
               (!x->has_ask ||
                (qb_dec_identical(x->ask, y->ask) && qb_dec_identical(x->ask_qty, y->ask_qty))) &&
               (!x->has_volume || qb_dec_identical(x->volume_24h, y->volume_24h)) &&
               (!x->has_change || qb_dec_identical(x->change_24h, y->change_24h));
    }
    }
    return false;
}

/* Decodes a frame holding exactly one map. Returns the first error. */
static int decode_one(qb_decoder *d, const void *frame, size_t len, qb_msg *out)
{
    qb_str topic;
    int rc = qb_decoder_begin(d, frame, len, &topic);
    if (rc != QB_OK) {
        return rc;
    }
    rc = qb_decoder_next(d, out);
    if (rc != QB_OK) {
        return rc;
    }
    qb_msg extra;
    rc = qb_decoder_next(d, &extra);
    return rc == QB_EEOF ? QB_OK : (rc == QB_OK ? QB_EINVAL : rc);
}

/* ---- a small builder for hand-made (hostile) frames -------------------- */

typedef struct frame {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} frame;

static void frame_init(frame *f, const char *topic)
{
    msgpack_sbuffer_init(&f->sb);
    msgpack_packer_init(&f->pk, &f->sb, msgpack_sbuffer_write);
    msgpack_sbuffer_write(&f->sb, topic, strlen(topic) + 1);
}

static void frame_raw(frame *f, const void *p, size_t n)
{
    msgpack_sbuffer_write(&f->sb, p, n);
}

static void frame_str(frame *f, const char *s)
{
    msgpack_pack_str(&f->pk, strlen(s));
    msgpack_pack_str_body(&f->pk, s, strlen(s));
}

static void frame_kv_str(frame *f, const char *k, const char *v)
{
    frame_str(f, k);
    frame_str(f, v);
}

static void frame_kv_u64(frame *f, const char *k, uint64_t v)
{
    frame_str(f, k);
    msgpack_pack_uint64(&f->pk, v);
}

/* The eight common fields of a book.binance.BTC-USDT message. */
static void frame_common(frame *f, const char *type, uint64_t version)
{
    frame_kv_u64(f, "v", version);
    frame_kv_str(f, "type", type);
    frame_kv_str(f, "ex", "binance");
    frame_kv_str(f, "sym", "BTC-USDT");
    frame_kv_str(f, "nsym", "BTCUSDT");
    frame_kv_u64(f, "seq", 1);
    frame_kv_u64(f, "ets", 0);
    frame_kv_u64(f, "rts", 2);
}

static void frame_fini(frame *f)
{
    msgpack_sbuffer_destroy(&f->sb);
}

/* ---- tests ---------------------------------------------------------------- */

QB_TEST(names_and_topics)
{
    QB_CHECK_EQ_STR(qb_msg_type_name(QB_MSG_SNAPSHOT), "snapshot");
    QB_CHECK_EQ_STR(qb_msg_type_name(QB_MSG_TICKER), "ticker");
    QB_CHECK_EQ_STR(qb_feed_state_name(QB_FEED_RESYNCING), "resyncing");
    QB_CHECK_EQ_STR(qb_feed_state_name(QB_FEED_DOWN), "down");
    QB_CHECK_EQ_STR(qb_side_name(QB_SIDE_BUY), "buy");
    QB_CHECK_EQ_STR(qb_side_name(QB_SIDE_UNKNOWN), "unknown");
    QB_CHECK_EQ_STR(qb_msg_topic_kind(QB_MSG_SNAPSHOT), "book");
    QB_CHECK_EQ_STR(qb_msg_topic_kind(QB_MSG_DELTA), "book");
    QB_CHECK_EQ_STR(qb_msg_topic_kind(QB_MSG_TRADE), "trade");
    QB_CHECK_EQ_STR(qb_msg_topic_kind(QB_MSG_STATUS), "status");
    QB_CHECK_EQ_STR(qb_msg_topic_kind(QB_MSG_TICKER), "ticker");
    QB_CHECK(qb_msg_topic_kind((qb_msg_type)99) == NULL);

    char t[QB_TOPIC_MAX + 1];
    QB_CHECK_EQ_INT(qb_topic_format(t, sizeof t, "book", QB_STR("binance"), QB_STR("BTC-USDT")),
                    21);
    QB_CHECK_EQ_STR(t, "book.binance.BTC-USDT");
    QB_CHECK_EQ_INT(qb_topic_format(t, 21, "book", QB_STR("binance"), QB_STR("BTC-USDT")), -1);
    QB_CHECK_EQ_INT(qb_topic_format(t, 22, "book", QB_STR("binance"), QB_STR("BTC-USDT")), 21);
    QB_CHECK_EQ_INT(qb_topic_format(t, sizeof t, "book", QB_STR(""), QB_STR("BTC")), -1);
    QB_CHECK_EQ_INT(qb_topic_format(t, sizeof t, "book", QB_STR("bin.ance"), QB_STR("BTC")), -1);
    QB_CHECK_EQ_INT(qb_topic_format(t, sizeof t, "book", QB_STR("bin"), QB_STR("BT\nC")), -1);
    QB_CHECK_EQ_INT(qb_topic_format(t, sizeof t, "book", QB_STR("bin"), QB_STR("BT C")), -1);
    QB_CHECK_EQ_INT(qb_topic_format(t, sizeof t, "book", QB_STR("bin"), ((qb_str){"B\0C", 3})), -1);
    QB_CHECK_EQ_INT(qb_topic_format(t, sizeof t, "", QB_STR("bin"), QB_STR("BTC")), -1);
    char longsym[QB_TOPIC_MAX + 8];
    memset(longsym, 'A', sizeof longsym);
    QB_CHECK_EQ_INT(
        qb_topic_format(t, sizeof t, "book", QB_STR("bin"), ((qb_str){longsym, QB_TOPIC_MAX - 9})),
        QB_TOPIC_MAX);
    QB_CHECK_EQ_INT(
        qb_topic_format(t, sizeof t, "book", QB_STR("bin"), ((qb_str){longsym, QB_TOPIC_MAX - 8})),
        -1);
}

QB_TEST(round_trip_every_type)
{
    qb_decoder *d = qb_decoder_new();
    QB_CHECK(d != NULL);
    qb_msg_type types[] = {QB_MSG_SNAPSHOT, QB_MSG_DELTA, QB_MSG_TRADE, QB_MSG_STATUS,
                           QB_MSG_TICKER};
    const char *topics[] = {"book.binance.BTC-USDT", "book.binance.BTC-USDT",
                            "trade.binance.BTC-USDT", "status.binance.BTC-USDT",
                            "ticker.binance.BTC-USDT"};
    for (int i = 0; i < 5; i++) {
        qb_msg m = sample(types[i]), o;
        qb_buf b = QB_BUF_INIT, b2 = QB_BUF_INIT;
        QB_CHECK_EQ_INT(qb_msg_encode(&m, &b), QB_OK);
        /* the topic and its NUL come first */
        size_t tl = strlen(topics[i]);
        QB_CHECK(b.len > tl && memcmp(b.data, topics[i], tl) == 0 && b.data[tl] == 0);
        /* deterministic bytes */
        QB_CHECK_EQ_INT(qb_msg_encode(&m, &b2), QB_OK);
        QB_CHECK(b.len == b2.len && memcmp(b.data, b2.data, b.len) == 0);
        qb_str topic;
        QB_CHECK_EQ_INT(qb_decoder_begin(d, b.data, b.len, &topic), QB_OK);
        QB_CHECK(str_eq(topic, (qb_str){topics[i], tl}));
        QB_CHECK_EQ_INT(qb_decoder_next(d, &o), QB_OK);
        QB_CHECK(msg_eq(&m, &o));
        QB_CHECK_EQ_INT(qb_decoder_next(d, &o), QB_EEOF);
        QB_CHECK_EQ_INT(qb_decoder_next(d, &o), QB_EEOF);
        /* encoding the decoded message gives the same bytes */
        qb_buf_reset(&b2);
        QB_CHECK_EQ_INT(qb_decoder_begin(d, b.data, b.len, &topic), QB_OK);
        QB_CHECK_EQ_INT(qb_decoder_next(d, &o), QB_OK);
        QB_CHECK_EQ_INT(qb_msg_encode(&o, &b2), QB_OK);
        QB_CHECK(b.len == b2.len && memcmp(b.data, b2.data, b.len) == 0);
        qb_buf_fini(&b);
        qb_buf_fini(&b2);
    }
    /* version 0 in a message to encode means the current version */
    qb_msg m = sample(QB_MSG_TRADE), o;
    m.version = 0;
    qb_buf b = QB_BUF_INIT;
    QB_CHECK_EQ_INT(qb_msg_encode(&m, &b), QB_OK);
    QB_CHECK_EQ_INT(decode_one(d, b.data, b.len, &o), QB_OK);
    QB_CHECK_EQ_INT(o.version, QB_PROTO_VERSION);
    /* empty books, zero timestamps, every ticker subset, every state, side */
    for (int mask = 0; mask < 16; mask++) {
        qb_msg t = sample(QB_MSG_TICKER);
        t.ticker.has_bid = mask & 1;
        t.ticker.bid = (qb_dec){1, 0};
        t.ticker.bid_qty = (qb_dec){2, 0};
        t.ticker.has_ask = mask & 2;
        t.ticker.has_volume = mask & 4;
        t.ticker.volume_24h = (qb_dec){0, 3};
        t.ticker.has_change = mask & 8;
        qb_buf_reset(&b);
        QB_CHECK_EQ_INT(qb_msg_encode(&t, &b), QB_OK);
        QB_CHECK_EQ_INT(decode_one(d, b.data, b.len, &o), QB_OK);
        QB_CHECK(msg_eq(&t, &o));
    }
    for (int s = QB_FEED_SYNCING; s <= QB_FEED_DOWN; s++) {
        qb_msg t = sample(QB_MSG_STATUS);
        t.state = (qb_feed_state)s;
        t.reason = (qb_str){NULL, 0};
        qb_buf_reset(&b);
        QB_CHECK_EQ_INT(qb_msg_encode(&t, &b), QB_OK);
        QB_CHECK_EQ_INT(decode_one(d, b.data, b.len, &o), QB_OK);
        QB_CHECK_EQ_INT(o.state, s);
        QB_CHECK_EQ_INT(o.reason.n, 0);
    }
    for (int s = QB_SIDE_UNKNOWN; s <= QB_SIDE_SELL; s++) {
        qb_msg t = sample(QB_MSG_TRADE);
        t.side = (qb_side)s;
        qb_buf_reset(&b);
        QB_CHECK_EQ_INT(qb_msg_encode(&t, &b), QB_OK);
        QB_CHECK_EQ_INT(decode_one(d, b.data, b.len, &o), QB_OK);
        QB_CHECK(msg_eq(&t, &o));
    }
    qb_msg e = sample(QB_MSG_SNAPSHOT);
    e.n_bids = e.n_asks = 0;
    e.bids = e.asks = NULL;
    e.exch_ts = e.seq = e.first_id = 0;
    qb_buf_reset(&b);
    QB_CHECK_EQ_INT(qb_msg_encode(&e, &b), QB_OK);
    QB_CHECK_EQ_INT(decode_one(d, b.data, b.len, &o), QB_OK);
    QB_CHECK(msg_eq(&e, &o));
    qb_buf_fini(&b);
    qb_decoder_free(d);
    qb_decoder_free(NULL);
}

QB_TEST(encode_rejects_bad_fields)
{
    qb_buf b = QB_BUF_INIT;
    QB_CHECK_EQ_INT(qb_buf_append(&b, "xyz", 3), QB_OK);
    qb_msg m;
    qb_level bad_price[] = {{{0, 2}, {1, 0}}};
    qb_level bad_size[] = {{{1, 2}, {-1, 0}}};
    qb_level bad_scale[] = {{{1, 31}, {1, 0}}};
#define EXPECT_EINVAL(mutation)                                                                    \
    do {                                                                                           \
        m = sample(QB_MSG_DELTA);                                                                  \
        mutation;                                                                                  \
        QB_CHECK_EQ_INT(qb_msg_encode(&m, &b), QB_EINVAL);                                         \
        QB_CHECK_EQ_INT(qb_msg_encode_map(&m, &b), QB_EINVAL);                                     \
        QB_CHECK_EQ_INT(b.len, 3); /* nothing appended */                                          \
    } while (0)
    EXPECT_EINVAL(m.exchange = QB_STR(""));
    EXPECT_EINVAL(m.symbol = QB_STR("BTC.USDT"));
    EXPECT_EINVAL(m.symbol = QB_STR("BTC USDT"));
    EXPECT_EINVAL(m.native = QB_STR(""));
    EXPECT_EINVAL(m.version = 2);
    EXPECT_EINVAL(m.type = (qb_msg_type)0);
    EXPECT_EINVAL(m.type = (qb_msg_type)6);
    EXPECT_EINVAL((m.bids = bad_price, m.n_bids = 1));
    EXPECT_EINVAL((m.asks = bad_size, m.n_asks = 1));
    EXPECT_EINVAL((m.asks = bad_scale, m.n_asks = 1));
    EXPECT_EINVAL((m.asks = NULL, m.n_asks = 1));
    EXPECT_EINVAL((m.type = QB_MSG_TRADE, m.price = (qb_dec){0, 0}, m.qty = (qb_dec){1, 0}));
    EXPECT_EINVAL((m.type = QB_MSG_TRADE, m.price = (qb_dec){1, 0}, m.qty = (qb_dec){-1, 0}));
    EXPECT_EINVAL((m.type = QB_MSG_TRADE, m.price = (qb_dec){1, 0}, m.side = (qb_side)3));
    EXPECT_EINVAL((m.type = QB_MSG_STATUS, m.state = (qb_feed_state)5));
    EXPECT_EINVAL((m.type = QB_MSG_TICKER, m.ticker.last = (qb_dec){INT64_MIN, 0}));
    char longname[65];
    memset(longname, 'a', sizeof longname);
    EXPECT_EINVAL(m.exchange = ((qb_str){longname, 65}));
    m = sample(QB_MSG_DELTA);
    m.exchange = (qb_str){longname, 64};
    QB_CHECK_EQ_INT(qb_msg_encode(&m, &b), QB_OK);
#undef EXPECT_EINVAL
    qb_buf_fini(&b);
}

/* msg_encode.c checks each level while it packs it (no separate validation pass):
 * a bad field in any level of either side, first, middle or last, must
 * still fail the encode with QB_EINVAL and leave the buffer as it was; the
 * limits themselves (scale +-QB_DEC_MAX_SCALE, size 0) are accepted. */
QB_TEST(encode_rejects_bad_level_anywhere)
{
    enum { N = 41 };
    qb_level lv[2][N];
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < N; i++) {
            lv[s][i] = (qb_level){{5000000 + i, 2}, {(int64_t)i * 1000, 8}};
        }
    }
    qb_buf b = QB_BUF_INIT;
    QB_CHECK_EQ_INT(qb_buf_append(&b, "xyz", 3), QB_OK);
    qb_msg m = sample(QB_MSG_DELTA);
    m.bids = lv[0];
    m.asks = lv[1];
    m.n_bids = N;
    m.n_asks = N;
    QB_CHECK_EQ_INT(qb_msg_encode(&m, &b), QB_OK);
    size_t good_len = b.len;
    b.len = 3;
    static const struct {
        int field; /* 0 price mant, 1 price scale, 2 size mant, 3 size scale */
        int64_t v;
        bool ok;
    } cases[] = {
        {0, 0, false},
        {0, -1, false},
        {0, INT64_MIN, false},
        {0, 1, true},
        {0, INT64_MAX, true},
        {1, 31, false},
        {1, -31, false},
        {1, 127, false},
        {1, -128, false},
        {1, QB_DEC_MAX_SCALE, true},
        {1, -QB_DEC_MAX_SCALE, true},
        {2, -1, false},
        {2, INT64_MIN, false},
        {2, 0, true},
        {3, 31, false},
        {3, -31, false},
        {3, 127, false},
        {3, -128, false},
        {3, 30, true},
        {3, -30, true},
    };
    unsigned long checked = 0;
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < N; i++) {
            for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
                qb_level keep = lv[s][i];
                qb_level *l = &lv[s][i];
                switch (cases[c].field) {
                case 0:
                    l->price.mant = cases[c].v;
                    break;
                case 1:
                    l->price.scale = (int8_t)cases[c].v;
                    break;
                case 2:
                    l->size.mant = cases[c].v;
                    break;
                default:
                    l->size.scale = (int8_t)cases[c].v;
                    break;
                }
                int want = cases[c].ok ? QB_OK : QB_EINVAL;
                QB_CHECK_EQ_INT(qb_msg_encode(&m, &b), want);
                QB_CHECK(b.len == (cases[c].ok ? b.len : 3u));
                b.len = 3;
                QB_CHECK_EQ_INT(qb_msg_encode_map(&m, &b), want);
                QB_CHECK(cases[c].ok || b.len == 3);
                QB_CHECK(memcmp(b.data, "xyz", 3) == 0);
                b.len = 3;
                *l = keep;
                checked++;
            }
        }
    }
    QB_CHECK_EQ_INT(qb_msg_encode(&m, &b), QB_OK);
    QB_CHECK_EQ_INT(b.len, good_len);
    /* qb_msg_encode checks exchange and symbol once (qb_topic_format), then
     * only their MSG_NAME_MAX limit: 64 bytes pass, 65 do not */
    char name[65];
    memset(name, 'a', sizeof name);
    for (int k = 0; k < 2; k++) {
        qb_str *f = k ? &m.symbol : &m.exchange;
        qb_str keep = *f;
        *f = (qb_str){name, 65};
        b.len = 3;
        QB_CHECK_EQ_INT(qb_msg_encode(&m, &b), QB_EINVAL);
        QB_CHECK_EQ_INT(qb_msg_encode_map(&m, &b), QB_EINVAL);
        QB_CHECK_EQ_INT(b.len, 3);
        *f = (qb_str){name, 64};
        QB_CHECK_EQ_INT(qb_msg_encode(&m, &b), QB_OK);
        *f = keep;
    }
    printf("bad levels: %lu encodes checked\n", checked);
    qb_buf_fini(&b);
}

QB_TEST(several_maps_in_one_frame)
{
    qb_buf b = QB_BUF_INIT;
    QB_CHECK_EQ_INT(qb_buf_append(&b, "book.binance.BTC-USDT", 22), QB_OK);
    qb_msg m[3] = {sample(QB_MSG_SNAPSHOT), sample(QB_MSG_DELTA), sample(QB_MSG_DELTA)};
    m[1].seq = 43;
    m[2].seq = 44;
    m[2].n_bids = 0;
    for (int i = 0; i < 3; i++) {
        QB_CHECK_EQ_INT(qb_msg_encode_map(&m[i], &b), QB_OK);
    }
    qb_decoder *d = qb_decoder_new();
    qb_str topic;
    qb_msg o;
    QB_CHECK_EQ_INT(qb_decoder_begin(d, b.data, b.len, &topic), QB_OK);
    for (int i = 0; i < 3; i++) {
        QB_CHECK_EQ_INT(qb_decoder_next(d, &o), QB_OK);
        QB_CHECK(msg_eq(&m[i], &o));
    }
    QB_CHECK_EQ_INT(qb_decoder_next(d, &o), QB_EEOF);
    /* a map of another topic inside the frame is rejected */
    qb_msg t = sample(QB_MSG_TRADE);
    QB_CHECK_EQ_INT(qb_msg_encode_map(&t, &b), QB_OK);
    QB_CHECK_EQ_INT(qb_decoder_begin(d, b.data, b.len, &topic), QB_OK);
    for (int i = 0; i < 3; i++) {
        QB_CHECK_EQ_INT(qb_decoder_next(d, &o), QB_OK);
    }
    QB_CHECK_EQ_INT(qb_decoder_next(d, &o), QB_EPARSE);
    QB_CHECK_EQ_INT(qb_decoder_next(d, &o), QB_EPARSE); /* sticky */
    /* trailing junk after a valid map */
    qb_buf_reset(&b);
    QB_CHECK_EQ_INT(qb_msg_encode(&m[1], &b), QB_OK);
    QB_CHECK_EQ_INT(qb_buf_append(&b, "\x01", 1), QB_OK);
    QB_CHECK_EQ_INT(qb_decoder_begin(d, b.data, b.len, &topic), QB_OK);
    QB_CHECK_EQ_INT(qb_decoder_next(d, &o), QB_OK);
    QB_CHECK_EQ_INT(qb_decoder_next(d, &o), QB_EPARSE);
    /* a topic with no map at all */
    QB_CHECK_EQ_INT(qb_decoder_begin(d, "book.binance.BTC-USDT", 22, &topic), QB_OK);
    QB_CHECK_EQ_INT(qb_decoder_next(d, &o), QB_EPARSE);
    qb_buf_fini(&b);
    qb_decoder_free(d);
}

QB_TEST(unknown_keys_are_ignored)
{
    frame f;
    frame_init(&f, "book.binance.BTC-USDT");
    msgpack_pack_map(&f.pk, 8 + 4 + 6);
    frame_kv_str(&f, "zz_future", "x");
    frame_common(&f, "delta", 1);
    frame_str(&f, "nested");
    msgpack_pack_array(&f.pk, 2);
    msgpack_pack_map(&f.pk, 1);
    frame_kv_u64(&f, "a", 1);
    msgpack_pack_array(&f.pk, 0);
    frame_str(&f, "f");
    msgpack_pack_double(&f.pk, 1.5);
    frame_str(&f, "bin");
    msgpack_pack_bin(&f.pk, 3);
    msgpack_pack_bin_body(&f.pk, "\x00\x01\x02", 3);
    frame_str(&f, "ext");
    msgpack_pack_ext(&f.pk, 4, 7);
    msgpack_pack_ext_body(&f.pk, "abcd", 4);
    msgpack_pack_uint64(&f.pk, 12345); /* a non-string key */
    msgpack_pack_nil(&f.pk);
    frame_kv_u64(&f, "fid", 3);
    frame_kv_u64(&f, "lid", 4);
    frame_str(&f, "bids");
    msgpack_pack_array(&f.pk, 1);
    msgpack_pack_array(&f.pk, 4);
    msgpack_pack_int64(&f.pk, 5);
    msgpack_pack_int64(&f.pk, 0);
    msgpack_pack_int64(&f.pk, 6);
    msgpack_pack_int64(&f.pk, -2); /* negative scale: 600 */
    frame_str(&f, "asks");
    msgpack_pack_array(&f.pk, 0);
    qb_decoder *d = qb_decoder_new();
    qb_msg o;
    QB_CHECK_EQ_INT(decode_one(d, f.sb.data, f.sb.size, &o), QB_OK);
    QB_CHECK_EQ_INT(o.type, QB_MSG_DELTA);
    QB_CHECK_EQ_INT(o.first_id, 3);
    QB_CHECK_EQ_INT(o.n_bids, 1);
    QB_CHECK(qb_dec_identical(o.bids[0].size, (qb_dec){6, -2}));
    QB_CHECK_EQ_INT(o.n_asks, 0);
    frame_fini(&f);
    qb_decoder_free(d);
}

/* Builds a book map with one field replaced by raw bytes (or left out). */
static void frame_book_with(frame *f, const char *key, const void *raw, size_t n)
{
    frame_init(f, "book.binance.BTC-USDT");
    bool replace_common = key && (!strcmp(key, "v") || !strcmp(key, "type"));
    msgpack_pack_map(&f->pk, 12 + (key && !replace_common && !raw ? -1 : 0) +
                                 (key && replace_common && !raw ? -1 : 0));
    if (replace_common) {
        if (raw) {
            frame_str(f, key);
            frame_raw(f, raw, n);
        }
        if (strcmp(key, "v") != 0) {
            frame_kv_u64(f, "v", 1);
        }
        if (strcmp(key, "type") != 0) {
            frame_kv_str(f, "type", "delta");
        }
        frame_kv_str(f, "ex", "binance");
        frame_kv_str(f, "sym", "BTC-USDT");
        frame_kv_str(f, "nsym", "BTCUSDT");
        frame_kv_u64(f, "seq", 1);
        frame_kv_u64(f, "ets", 0);
        frame_kv_u64(f, "rts", 2);
    } else {
        frame_common(f, "delta", 1);
    }
    const char *keys[] = {"fid", "lid", "bids", "asks"};
    for (int i = 0; i < 4; i++) {
        if (key && strcmp(key, keys[i]) == 0) {
            if (raw) {
                frame_str(f, key);
                frame_raw(f, raw, n);
            }
            continue;
        }
        frame_str(f, keys[i]);
        if (i < 2) {
            msgpack_pack_uint64(&f->pk, 7);
        } else {
            msgpack_pack_array(&f->pk, 0);
        }
    }
}

static int decode_book_with(const char *key, const void *raw, size_t n)
{
    frame f;
    frame_book_with(&f, key, raw, n);
    qb_decoder *d = qb_decoder_new();
    qb_msg o;
    int rc = decode_one(d, f.sb.data, f.sb.size, &o);
    qb_decoder_free(d);
    frame_fini(&f);
    return rc;
}

QB_TEST(field_validation)
{
    /* the builder itself makes a valid frame */
    QB_CHECK_EQ_INT(decode_book_with(NULL, NULL, 0), QB_OK);
    /* version: missing, 2, 0, wrong type -> QB_EVERSION */
    QB_CHECK_EQ_INT(decode_book_with("v", NULL, 0), QB_EVERSION);
    QB_CHECK_EQ_INT(decode_book_with("v", "\x02", 1), QB_EVERSION);
    QB_CHECK_EQ_INT(decode_book_with("v", "\x00", 1), QB_EVERSION);
    QB_CHECK_EQ_INT(decode_book_with("v", "\xa1\x31", 2), QB_EVERSION);
    QB_CHECK_EQ_INT(decode_book_with("v", "\xff", 1), QB_EVERSION);
    /* type */
    QB_CHECK_EQ_INT(decode_book_with("type", NULL, 0), QB_EPARSE);
    QB_CHECK_EQ_INT(decode_book_with("type",
                                     "\xa3"
                                     "foo",
                                     4),
                    QB_EPARSE);
    QB_CHECK_EQ_INT(decode_book_with("type", "\x02", 1), QB_EPARSE);
    QB_CHECK_EQ_INT(decode_book_with("type", "\xa5trade", 6), QB_EPARSE); /* topic kind */
    QB_CHECK_EQ_INT(decode_book_with("type",
                                     "\xa5"
                                     "delta",
                                     6),
                    QB_OK);
    /* required ids: missing, negative, string */
    QB_CHECK_EQ_INT(decode_book_with("fid", NULL, 0), QB_EPARSE);
    QB_CHECK_EQ_INT(decode_book_with("lid", "\xff", 1), QB_EPARSE);
    QB_CHECK_EQ_INT(decode_book_with("lid", "\xa1\x31", 2), QB_EPARSE);
    QB_CHECK_EQ_INT(decode_book_with("lid", "\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9), QB_OK);
    /* levels */
    QB_CHECK_EQ_INT(decode_book_with("bids", NULL, 0), QB_EPARSE);
    QB_CHECK_EQ_INT(decode_book_with("bids", "\xc0", 1), QB_EPARSE);
    QB_CHECK_EQ_INT(decode_book_with("bids", "\x91\x94\x01\x00\x01\x00", 6), QB_OK);
    QB_CHECK_EQ_INT(decode_book_with("bids", "\x91\x94\x00\x00\x01\x00", 6), QB_EPARSE); /* px 0 */
    QB_CHECK_EQ_INT(decode_book_with("bids", "\x91\x94\xff\x00\x01\x00", 6), QB_EPARSE); /* px<0 */
    QB_CHECK_EQ_INT(decode_book_with("bids", "\x91\x94\x01\x00\xff\x00", 6), QB_EPARSE); /* sz<0 */
    QB_CHECK_EQ_INT(decode_book_with("bids", "\x91\x94\x01\x00\x00\x00", 6), QB_OK);     /* sz 0 */
    QB_CHECK_EQ_INT(decode_book_with("bids", "\x91\x94\x01\x1e\x01\xe2", 6), QB_OK);     /* +-30 */
    QB_CHECK_EQ_INT(decode_book_with("bids", "\x91\x94\x01\x1f\x01\x00", 6), QB_EPARSE); /* 31 */
    QB_CHECK_EQ_INT(decode_book_with("bids", "\x91\x94\x01\x00\x01\xe1", 6), QB_EPARSE); /* -31 */
    QB_CHECK_EQ_INT(decode_book_with("bids", "\x91\x93\x01\x00\x01", 5), QB_EPARSE);
    QB_CHECK_EQ_INT(decode_book_with("bids", "\x91\x95\x01\x00\x01\x00\x00", 7), QB_EPARSE);
    QB_CHECK_EQ_INT(decode_book_with("bids", "\x91\x94\xa1\x31\x00\x01\x00", 7), QB_EPARSE);
    QB_CHECK_EQ_INT(decode_book_with("bids", "\x91\x94\xcb\x3f\xf0\0\0\0\0\0\0\x00\x01\x00", 14),
                    QB_EPARSE); /* a float mantissa */
    QB_CHECK_EQ_INT(
        decode_book_with("bids", "\x91\x94\xcf\xff\xff\xff\xff\xff\xff\xff\xff\x00\x01\x00", 14),
        QB_EPARSE); /* mantissa beyond int64 */
    QB_CHECK_EQ_INT(decode_book_with("bids", "\x91\x94\xd3\x80\0\0\0\0\0\0\0\x00\x01\x00", 14),
                    QB_EPARSE); /* INT64_MIN */
    QB_CHECK_EQ_INT(decode_book_with("bids", "\x91\xc0", 2), QB_EPARSE);
    /* a duplicate key is ambiguous: rejected */
    frame f;
    frame_init(&f, "book.binance.BTC-USDT");
    msgpack_pack_map(&f.pk, 13);
    frame_common(&f, "delta", 1);
    frame_kv_u64(&f, "fid", 1);
    frame_kv_u64(&f, "lid", 1);
    frame_kv_u64(&f, "lid", 2);
    frame_str(&f, "bids");
    msgpack_pack_array(&f.pk, 0);
    frame_str(&f, "asks");
    msgpack_pack_array(&f.pk, 0);
    qb_decoder *d = qb_decoder_new();
    qb_msg o;
    QB_CHECK_EQ_INT(decode_one(d, f.sb.data, f.sb.size, &o), QB_EPARSE);
    frame_fini(&f);
    /* a top-level value that is not a map */
    frame_init(&f, "book.binance.BTC-USDT");
    msgpack_pack_array(&f.pk, 1);
    msgpack_pack_uint64(&f.pk, 1);
    QB_CHECK_EQ_INT(decode_one(d, f.sb.data, f.sb.size, &o), QB_EPARSE);
    frame_fini(&f);
    qb_decoder_free(d);
}

QB_TEST(topic_checks)
{
    qb_decoder *d = qb_decoder_new();
    qb_msg m = sample(QB_MSG_DELTA), o;
    qb_buf b = QB_BUF_INIT;
    qb_str topic;
    /* the topic must match the message */
    const char *wrong[] = {"book.binance.ETH-USDT",  "book.binance.BTC-USDTX",  "book.htx.BTC-USDT",
                           "trade.binance.BTC-USDT", "book.binance.BTC-USDT.x", "book.binance"};
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        qb_buf_reset(&b);
        QB_CHECK_EQ_INT(qb_buf_append(&b, wrong[i], strlen(wrong[i]) + 1), QB_OK);
        QB_CHECK_EQ_INT(qb_msg_encode_map(&m, &b), QB_OK);
        QB_CHECK_EQ_INT(decode_one(d, b.data, b.len, &o), QB_EPARSE);
    }
    /* no NUL, empty topic, non-printable, too long */
    QB_CHECK_EQ_INT(qb_decoder_begin(d, "book.binance.BTC-USDT", 21, &topic), QB_EPARSE);
    QB_CHECK_EQ_INT(qb_decoder_begin(d, "\0\x80", 2, &topic), QB_EPARSE);
    QB_CHECK_EQ_INT(qb_decoder_begin(d, "bo ok\0\x80", 7, &topic), QB_EPARSE);
    QB_CHECK_EQ_INT(qb_decoder_begin(d, "bo\x01ok\0\x80", 7, &topic), QB_EPARSE);
    QB_CHECK_EQ_INT(qb_decoder_begin(d, "bo\xc3\xa9ok\0\x80", 8, &topic), QB_EPARSE);
    QB_CHECK_EQ_INT(qb_decoder_begin(d, "", 0, &topic), QB_EPARSE);
    QB_CHECK_EQ_INT(qb_decoder_begin(d, NULL, 0, &topic), QB_EPARSE);
    QB_CHECK_EQ_INT(qb_decoder_next(d, &o), QB_EPARSE); /* after a failed begin */
    char big[QB_TOPIC_MAX + 3];
    memset(big, 'a', sizeof big);
    big[QB_TOPIC_MAX] = 0;
    QB_CHECK_EQ_INT(qb_decoder_begin(d, big, sizeof big, &topic), QB_OK);
    QB_CHECK_EQ_INT(topic.n, QB_TOPIC_MAX);
    big[QB_TOPIC_MAX] = 'a';
    big[QB_TOPIC_MAX + 1] = 0;
    QB_CHECK_EQ_INT(qb_decoder_begin(d, big, sizeof big, &topic), QB_EPARSE);
    /* frame size limit */
    QB_CHECK_EQ_INT(qb_decoder_begin(d, big, (size_t)QB_MSG_MAX_FRAME + 1, &topic), QB_ETOOBIG);
    QB_CHECK_EQ_INT(qb_decoder_next(d, &o), QB_ETOOBIG);
    qb_buf_fini(&b);
    qb_decoder_free(d);
}

/* Every proper prefix of a one-map frame is rejected; every single-byte
 * mutation decodes or is rejected, never crashes (ASan/UBSan watch), and a
 * mutant that decodes re-encodes and prints as JSON. */
QB_TEST(prefixes_and_mutations)
{
    qb_decoder *d = qb_decoder_new();
    qb_msg_type types[] = {QB_MSG_SNAPSHOT, QB_MSG_DELTA, QB_MSG_TRADE, QB_MSG_STATUS,
                           QB_MSG_TICKER};
    long accepted = 0, rejected = 0;
    for (int t = 0; t < 5; t++) {
        qb_msg m = sample(types[t]), o;
        qb_buf b = QB_BUF_INIT, out = QB_BUF_INIT;
        QB_CHECK_EQ_INT(qb_msg_encode(&m, &b), QB_OK);
        for (size_t n = 0; n < b.len; n++) {
            /* a fresh copy of exactly n bytes, so ASan sees any over-read */
            uint8_t *p = malloc(n ? n : 1);
            memcpy(p, b.data, n);
            int rc = decode_one(d, p, n, &o);
            if (rc == QB_OK) {
                fprintf(stderr, "  prefix %zu of %zu accepted (type %d)\n", n, b.len, t);
            }
            QB_CHECK(rc != QB_OK);
            free(p);
        }
        uint8_t *p = malloc(b.len);
        for (size_t i = 0; i < b.len; i++) {
            for (int v = 0; v < 256; v++) {
                memcpy(p, b.data, b.len);
                if (p[i] == v) {
                    continue;
                }
                p[i] = (uint8_t)v;
                qb_str topic;
                if (qb_decoder_begin(d, p, b.len, &topic) != QB_OK) {
                    rejected++;
                    continue;
                }
                int rc;
                while ((rc = qb_decoder_next(d, &o)) == QB_OK) {
                    accepted++;
                    qb_buf_reset(&out);
                    QB_CHECK_EQ_INT(qb_msg_encode(&o, &out), QB_OK);
                    qb_buf_reset(&out);
                    QB_CHECK_EQ_INT(qb_msg_to_json(&o, &out), QB_OK);
                }
                if (rc != QB_EEOF) {
                    rejected++;
                }
            }
        }
        free(p);
        qb_buf_fini(&b);
        qb_buf_fini(&out);
    }
    /* most mutations break something; some (a digit of a value) do not */
    QB_CHECK(accepted > 0 && rejected > accepted);
    printf("     mutations: %ld decoded, %ld rejected\n", accepted, rejected);
    qb_decoder_free(d);
}

/* Declared lengths far beyond the frame must be rejected before msgpack-c
 * allocates count * sizeof(msgpack_object) for them. */
QB_TEST(huge_declared_counts)
{
    const struct {
        const char *bytes;
        size_t n;
    } bombs[] = {
        {"\xdd\xff\xff\xff\xff\x01\x02\x03\x04\x05", 10}, /* array32 4G */
        {"\xdf\xff\xff\xff\xff\x01\x02\x03\x04\x05", 10}, /* map32 4G */
        {"\xdb\xff\xff\xff\xff\x01\x02\x03\x04\x05", 10}, /* str32 4G */
        {"\xc6\xff\xff\xff\xff\x01", 6},                  /* bin32 4G */
        {"\xc9\xff\xff\xff\xff\x01\x02", 7},              /* ext32 4G */
        {"\xdc\xff\xff\xc0\xc0\xc0", 6},                  /* array16 64k */
        {"\xde\xff\xff\xc0\xc0", 5},                      /* map16 64k */
    };
    qb_decoder *d = qb_decoder_new();
    qb_msg o;
    for (size_t i = 0; i < sizeof bombs / sizeof bombs[0]; i++) {
        /* as the value of an unknown key, and as the bids array */
        frame f;
        frame_init(&f, "book.binance.BTC-USDT");
        msgpack_pack_map(&f.pk, 2);
        frame_kv_u64(&f, "v", 1);
        frame_str(&f, "x");
        frame_raw(&f, bombs[i].bytes, bombs[i].n);
        QB_CHECK_EQ_INT(decode_one(d, f.sb.data, f.sb.size, &o), QB_EPARSE);
        frame_fini(&f);
        QB_CHECK_EQ_INT(decode_book_with("bids", bombs[i].bytes, bombs[i].n), QB_EPARSE);
        /* and as the top-level object */
        frame_init(&f, "book.binance.BTC-USDT");
        frame_raw(&f, bombs[i].bytes, bombs[i].n);
        QB_CHECK_EQ_INT(decode_one(d, f.sb.data, f.sb.size, &o), QB_EPARSE);
        frame_fini(&f);
    }
    /* a 1 MB frame of nils under a map claiming 4G pairs */
    size_t n = 1u << 20;
    uint8_t *big = malloc(n);
    memcpy(big, "book.binance.BTC-USDT\0\xdf\xff\xff\xff\xff", 27);
    memset(big + 27, 0xc0, n - 27);
    QB_CHECK_EQ_INT(decode_one(d, big, n, &o), QB_EPARSE);
    /* a 1 MB frame whose map holds more objects than any valid message */
    memcpy(big, "book.binance.BTC-USDT\0\x81\xa1x\xdd\x00\x0f\xff\xff", 30);
    memset(big + 30, 0xc0, n - 30);
    QB_CHECK_EQ_INT(decode_one(d, big, n, &o), QB_EPARSE);
    memcpy(big, "book.binance.BTC-USDT\0\x81\xa1x\xdd\x00\x0f\xff\xc3", 30);
    QB_CHECK_EQ_INT(decode_one(d, big, n, &o), QB_ETOOBIG);
    free(big);
    qb_decoder_free(d);
}

QB_TEST(nesting_bombs_rejected)
{
    qb_decoder *d = qb_decoder_new();
    qb_msg o;
    size_t depth = 100000;
    size_t n = 32 + depth + 1;
    uint8_t *p = malloc(n);
    /* as the value of an unknown key: [[[[...nil...]]]] */
    memcpy(p, "book.binance.BTC-USDT\0\x81\xa1x", 25);
    memset(p + 25, 0x91, depth);
    p[25 + depth] = 0xc0;
    QB_CHECK_EQ_INT(decode_one(d, p, 26 + depth, &o), QB_EPARSE);
    /* maps */
    memset(p + 25, 0x81, depth);
    QB_CHECK_EQ_INT(decode_one(d, p, 26 + depth, &o), QB_EPARSE);
    /* at the top level */
    memset(p + 22, 0x81, depth);
    QB_CHECK_EQ_INT(decode_one(d, p, 22 + depth, &o), QB_EPARSE);
    free(p);
    /* moderate nesting inside an unknown key is fine (forward compatible) */
    frame f;
    frame_book_with(&f, NULL, NULL, 0);
    /* rebuild with one more key holding [[[[[[[[1]]]]]]]] */
    frame_fini(&f);
    frame_init(&f, "book.binance.BTC-USDT");
    msgpack_pack_map(&f.pk, 13);
    frame_common(&f, "delta", 1);
    frame_kv_u64(&f, "fid", 1);
    frame_kv_u64(&f, "lid", 1);
    frame_str(&f, "bids");
    msgpack_pack_array(&f.pk, 0);
    frame_str(&f, "asks");
    msgpack_pack_array(&f.pk, 0);
    frame_str(&f, "deep");
    for (int i = 0; i < 8; i++) {
        msgpack_pack_array(&f.pk, 1);
    }
    msgpack_pack_uint64(&f.pk, 1);
    QB_CHECK_EQ_INT(decode_one(d, f.sb.data, f.sb.size, &o), QB_OK);
    frame_fini(&f);
    qb_decoder_free(d);
}

static qb_level *make_levels(size_t n)
{
    qb_level *lv = malloc(n * sizeof *lv);
    for (size_t i = 0; i < n; i++) {
        lv[i] = (qb_level){{(int64_t)(1000000 + i), 2}, {(int64_t)i, 8}};
    }
    return lv;
}

QB_TEST(level_count_limits)
{
    qb_decoder *d = qb_decoder_new();
    qb_msg m = sample(QB_MSG_SNAPSHOT), o;
    qb_level *lv = make_levels(QB_MSG_MAX_LEVELS + 1);
    qb_buf b = QB_BUF_INIT;
    m.bids = lv;
    m.n_bids = QB_MSG_MAX_LEVELS;
    m.asks = lv;
    m.n_asks = QB_MSG_MAX_LEVELS;
    QB_CHECK_EQ_INT(qb_msg_encode(&m, &b), QB_OK);
    QB_CHECK_EQ_INT(decode_one(d, b.data, b.len, &o), QB_OK);
    QB_CHECK(msg_eq(&m, &o));
    /* one more is refused by the encoder ... */
    m.n_asks = QB_MSG_MAX_LEVELS + 1;
    qb_buf_reset(&b);
    QB_CHECK_EQ_INT(qb_msg_encode(&m, &b), QB_EINVAL);
    /* ... and by the decoder */
    frame f;
    frame_init(&f, "book.binance.BTC-USDT");
    msgpack_pack_map(&f.pk, 12);
    frame_common(&f, "delta", 1);
    frame_kv_u64(&f, "fid", 1);
    frame_kv_u64(&f, "lid", 1);
    frame_str(&f, "bids");
    msgpack_pack_array(&f.pk, 0);
    frame_str(&f, "asks");
    msgpack_pack_array(&f.pk, QB_MSG_MAX_LEVELS + 1);
    for (size_t i = 0; i < QB_MSG_MAX_LEVELS + 1; i++) {
        msgpack_pack_array(&f.pk, 4);
        msgpack_pack_int64(&f.pk, lv[i].price.mant);
        msgpack_pack_int64(&f.pk, lv[i].price.scale);
        msgpack_pack_int64(&f.pk, lv[i].size.mant);
        msgpack_pack_int64(&f.pk, lv[i].size.scale);
    }
    QB_CHECK_EQ_INT(decode_one(d, f.sb.data, f.sb.size, &o), QB_ETOOBIG);
    frame_fini(&f);
    qb_buf_fini(&b);
    free(lv);
    qb_decoder_free(d);
}

static const char *json_of(const qb_msg *m, qb_buf *b)
{
    qb_buf_reset(b);
    if (qb_msg_to_json(m, b) != QB_OK || qb_buf_append(b, "", 1) != QB_OK) {
        return "(error)";
    }
    b->len--;
    return (const char *)b->data;
}

QB_TEST(json_form)
{
    qb_buf b = QB_BUF_INIT;
    qb_level bids[] = {{{10050, 2}, {125, 2}}};
    qb_level asks[] = {{{10060, 2}, {0, 8}}};
    qb_msg m = sample(QB_MSG_DELTA);
    m.seq = 42;
    m.first_id = 10;
    m.last_id = 12;
    m.bids = bids;
    m.n_bids = 1;
    m.asks = asks;
    m.n_asks = 1;
    QB_CHECK_EQ_STR(json_of(&m, &b),
                    "{\"topic\":\"book.binance.BTC-USDT\",\"v\":1,\"type\":\"delta\",\"ex\":"
                    "\"binance\",\"sym\":\"BTC-USDT\",\"nsym\":\"BTCUSDT\",\"seq\":42,\"ets\":"
                    "1700000000000000000,\"rts\":1700000000000100000,\"fid\":10,\"lid\":12,"
                    "\"bids\":[[\"100.50\",\"1.25\"]],\"asks\":[[\"100.60\",\"0.00000000\"]]}");
    m.type = QB_MSG_SNAPSHOT;
    m.refresh = true;
    m.n_bids = 0;
    QB_CHECK(strstr(json_of(&m, &b), "\"bids\":[],\"asks\":[[\"100.60\",\"0.00000000\"]],"
                                     "\"refresh\":true}") != NULL);
    qb_msg t = sample(QB_MSG_TRADE);
    t.qty = (qb_dec){1, 1};
    t.side = QB_SIDE_BUY;
    QB_CHECK(strstr(json_of(&t, &b), ",\"tid\":5,\"px\":\"100.5\",\"qty\":\"0.1\",\"side\":"
                                     "\"buy\"}") != NULL);
    qb_msg k = sample(QB_MSG_TICKER);
    QB_CHECK(strstr(json_of(&k, &b),
                    ",\"last\":\"100.55\",\"ask\":\"100.60\",\"askq\":\"0.5\",\"chg\":\"-"
                    "9223372036854775807000000000000000000000000000000\"}") != NULL);
    /* reason strings are escaped; invalid UTF-8 becomes U+FFFD */
    qb_msg s = sample(QB_MSG_STATUS);
    s.state = QB_FEED_DOWN;
    s.reason = (qb_str){"a\"b\\c\nd\x01\x7f\xc3\xa9\xff\xf0\x9f\x98\x80z", 17};
    const char *js = json_of(&s, &b);
    QB_CHECK(strstr(js, ",\"state\":\"down\",\"reason\":\"a\\\"b\\\\c\\nd\\u0001\\u007f"
                        "\xc3\xa9\\ufffd\xf0\x9f\x98\x80z\"}") != NULL);
    /* every form parses as JSON, and the escaped reason decodes back */
    qb_msg all[] = {m, t, k, s};
    for (int i = 0; i < 4; i++) {
        js = json_of(&all[i], &b);
        jsmntok_t tok[128];
        qb_json j;
        QB_CHECK_EQ_INT(qb_json_parse(&j, js, strlen(js), tok, 128), QB_OK);
        QB_CHECK(qb_json_str_eq(&j, qb_json_get(&j, 0, "ex"), "binance"));
        if (all[i].type == QB_MSG_STATUS) {
            char r[64];
            QB_CHECK_EQ_INT(qb_json_str_copy(&j, qb_json_get(&j, 0, "reason"), r, sizeof r), QB_OK);
            QB_CHECK_EQ_STR(r, "a\"b\\c\nd\x01\x7f\xc3\xa9\xef\xbf\xbd\xf0\x9f\x98\x80z");
        }
    }
    /* a failure leaves the buffer as it was */
    qb_buf_reset(&b);
    qb_msg bad = sample(QB_MSG_TRADE);
    bad.exchange = QB_STR("");
    QB_CHECK_EQ_INT(qb_msg_to_json(&bad, &b), QB_EINVAL);
    QB_CHECK_EQ_INT(b.len, 0);
    qb_buf_fini(&b);
}

/* ---- the worked examples of PROTOCOL.md ------------------------------- */

/* The body of the next fenced block with info string `info` at or after p;
 * *end gets the position after the closing fence. */
static const char *fence(const char *p, const char *info, size_t *n, const char **end)
{
    char open[32];
    snprintf(open, sizeof open, "\n```%s\n", info);
    const char *s = strstr(p, open);
    if (s == NULL) {
        return NULL;
    }
    s += strlen(open);
    const char *e = strstr(s, "\n```");
    if (e == NULL) {
        return NULL;
    }
    *n = (size_t)(e - s);
    *end = e + 4;
    return s;
}

QB_TEST(protocol_md_examples)
{
    size_t len;
    char *doc = qb_test_read_file(QB_SOURCE_DIR "/proto/PROTOCOL.md", &len);
    QB_CHECK(doc != NULL);
    if (doc == NULL) {
        return;
    }
    qb_decoder *d = qb_decoder_new();
    qb_buf js = QB_BUF_INIT, re = QB_BUF_INIT;
    int examples = 0;
    bool seen[6] = {false};
    const char *p = doc;
    size_t n;
    const char *end;
    const char *hex;
    while ((hex = fence(p, "hex", &n, &end)) != NULL) {
        /* hex bytes separated by white space */
        uint8_t fb[4096];
        size_t fl = 0;
        bool ok = true;
        for (size_t i = 0; i < n && ok;) {
            if (hex[i] == ' ' || hex[i] == '\n') {
                i++;
                continue;
            }
            unsigned v;
            if (i + 1 >= n || sscanf(hex + i, "%2x", &v) != 1 || fl >= sizeof fb) {
                ok = false;
                break;
            }
            fb[fl++] = (uint8_t)v;
            i += 2;
        }
        QB_CHECK(ok);
        size_t jn;
        const char *jend;
        const char *json = fence(end, "json", &jn, &jend);
        QB_CHECK(json != NULL);
        if (!ok || json == NULL) {
            break;
        }
        /* the JSON block must directly follow its hex block */
        const char *next_hex = strstr(end, "\n```hex\n");
        QB_CHECK(next_hex == NULL || json < next_hex);
        qb_str topic;
        qb_msg m;
        QB_CHECK_EQ_INT(qb_decoder_begin(d, fb, fl, &topic), QB_OK);
        qb_buf_reset(&js);
        int rc, maps = 0;
        while ((rc = qb_decoder_next(d, &m)) == QB_OK) {
            if (maps++) {
                QB_CHECK_EQ_INT(qb_buf_append(&js, "\n", 1), QB_OK);
            }
            QB_CHECK_EQ_INT(qb_msg_to_json(&m, &js), QB_OK);
            seen[m.type] = true;
            /* and our encoder writes exactly the documented bytes */
            qb_buf_reset(&re);
            QB_CHECK_EQ_INT(qb_msg_encode(&m, &re), QB_OK);
            QB_CHECK(maps > 1 || (re.len == fl && memcmp(re.data, fb, fl) == 0));
        }
        QB_CHECK_EQ_INT(rc, QB_EEOF);
        QB_CHECK(maps >= 1);
        if (js.len != jn || memcmp(js.data, json, jn) != 0) {
            fprintf(stderr, "  example %d: documented\n%.*s\n  decoded\n%.*s\n", examples + 1,
                    (int)jn, json, (int)js.len, (const char *)js.data);
            QB_CHECK(0);
        }
        examples++;
        p = jend;
    }
    /* one worked example of each message kind */
    QB_CHECK(examples >= 5);
    for (int t = QB_MSG_SNAPSHOT; t <= QB_MSG_TICKER; t++) {
        if (!seen[t]) {
            fprintf(stderr, "  no example of %s\n", qb_msg_type_name((qb_msg_type)t));
        }
        QB_CHECK(seen[t]);
    }
    printf("     %d examples checked\n", examples);
    qb_buf_fini(&js);
    qb_buf_fini(&re);
    qb_decoder_free(d);
    free(doc);
}

/* ---- the encoder against a plain msgpack-c packer ------------------------
 * proto/msg_encode.c packs with msgpack-c's pack template, instantiated with an
 * inline sink into a buffer reserved to an upper bound of the map's size.
 * This is the straightforward packer (pack.h's msgpack_pack_*, same key
 * order, same calls, a callback that appends with reallocation), kept as
 * the reference: for randomized
 * messages of every type, with integers at every boundary of msgpack's
 * forms, both must give the same bytes (so the bound and the fast callback
 * lose nothing), and the decoder must give the message back. */
/* The reference packer: ref_pack_map (oracle_msg.h). */

static uint64_t rnd_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

/* An unsigned value near a boundary of msgpack's integer forms, or random. */
static uint64_t rnd_u64(void)
{
    static const uint64_t edges[] = {0,     1,     127,         128,           255,       256,
                                     65535, 65536, 4294967295u, 4294967296ull, UINT64_MAX};
    uint64_t r = rnd();
    if (r % 3 == 0) {
        return edges[(r >> 8) % (sizeof edges / sizeof edges[0])] - ((r >> 16) & 1);
    }
    return rnd() >> (rnd() % 64);
}

static int64_t rnd_i64(int64_t lo, int64_t hi)
{
    static const int64_t edges[] = {0,
                                    -1,
                                    -31,
                                    -32,
                                    -33,
                                    -127,
                                    -128,
                                    -129,
                                    -32767,
                                    -32768,
                                    -32769,
                                    INT32_MIN,
                                    (int64_t)INT32_MIN - 1,
                                    127,
                                    128,
                                    65535,
                                    65536,
                                    INT64_MAX,
                                    -INT64_MAX};
    int64_t v;
    uint64_t r = rnd();
    if (r % 2 == 0) {
        v = edges[(r >> 8) % (sizeof edges / sizeof edges[0])];
    } else {
        v = (int64_t)(rnd() >> (rnd() % 64));
        if (r & 2) {
            v = -v;
        }
    }
    if (v == INT64_MIN) {
        v = -INT64_MAX;
    }
    return v < lo ? lo : (v > hi ? hi : v);
}

static qb_dec rnd_dec(int64_t lo)
{
    return (qb_dec){rnd_i64(lo, INT64_MAX), (int8_t)rnd_i64(-QB_DEC_MAX_SCALE, QB_DEC_MAX_SCALE)};
}

/* Every ticker field random, presence flags included (the same draws in the
 * same order in every randomized test). */
static void rnd_ticker(qb_ticker *t)
{
    t->last = rnd_dec(INT64_MIN + 1);
    t->has_bid = rnd() & 1;
    t->bid = rnd_dec(INT64_MIN + 1);
    t->bid_qty = rnd_dec(INT64_MIN + 1);
    t->has_ask = rnd() & 1;
    t->ask = rnd_dec(INT64_MIN + 1);
    t->ask_qty = rnd_dec(INT64_MIN + 1);
    t->has_volume = rnd() & 1;
    t->volume_24h = rnd_dec(INT64_MIN + 1);
    t->has_change = rnd() & 1;
    t->change_24h = rnd_dec(INT64_MIN + 1);
}

static void rnd_name(char *buf, size_t max, bool dots)
{
    size_t n = 1 + rnd() % max;
    for (size_t i = 0; i < n; i++) {
        char c = (char)('!' + rnd() % 94);
        /* without dots: a topic part, whose bytes exclude '.', '"' and '\\' */
        buf[i] = (!dots && (c == '.' || c == '"' || c == '\\')) ? 'x' : c;
    }
    buf[n] = '\0';
}

QB_TEST(encoder_matches_msgpack_c_packer)
{
    enum { ROUNDS = 3000 };
    qb_decoder *d = qb_decoder_new();
    qb_buf mine = QB_BUF_INIT;
    msgpack_sbuffer ref;
    msgpack_sbuffer_init(&ref);
    qb_level *lv[2] = {calloc(300, sizeof(qb_level)), calloc(300, sizeof(qb_level))};
    char ex[40], sym[40], nat[70], reason[300];
    size_t checked = 0, mism = 0;
    for (int r = 0; r < ROUNDS; r++) {
        qb_msg m;
        memset(&m, 0, sizeof m);
        m.type = (qb_msg_type)(1 + rnd() % 5);
        m.version = QB_PROTO_VERSION;
        rnd_name(ex, 20, false);
        rnd_name(sym, 36, false); /* fixstr and str8 */
        rnd_name(nat, 64, true);
        m.exchange = (qb_str){ex, strlen(ex)};
        m.symbol = (qb_str){sym, strlen(sym)};
        m.native = (qb_str){nat, strlen(nat)};
        m.seq = rnd_u64();
        m.exch_ts = rnd_u64();
        m.recv_ts = rnd_u64();
        switch (m.type) {
        case QB_MSG_SNAPSHOT:
        case QB_MSG_DELTA: {
            size_t counts[2];
            for (int s = 0; s < 2; s++) {
                uint64_t k = rnd() % 8;
                counts[s] = k == 0 ? 0 : (k < 6 ? rnd() % 16 : rnd() % 300); /* fix/array16 */
                for (size_t i = 0; i < counts[s]; i++) {
                    lv[s][i].price = rnd_dec(1);
                    lv[s][i].size = rnd_dec(0);
                }
            }
            m.first_id = rnd_u64();
            m.last_id = rnd_u64();
            m.bids = lv[0];
            m.n_bids = counts[0];
            m.asks = lv[1];
            m.n_asks = counts[1];
            m.refresh = m.type == QB_MSG_SNAPSHOT && (rnd() & 1);
            break;
        }
        case QB_MSG_TRADE:
            m.trade_id = rnd_u64();
            m.price = rnd_dec(1);
            m.qty = rnd_dec(0);
            m.side = (qb_side)(rnd() % 3);
            break;
        case QB_MSG_STATUS: {
            m.state = (qb_feed_state)(rnd() % 5);
            size_t n = rnd() % 257; /* fixstr, str8, str16 */
            for (size_t i = 0; i < n; i++) {
                reason[i] = (char)(' ' + rnd() % 95);
            }
            m.reason = (qb_str){n ? reason : NULL, n};
            break;
        }
        case QB_MSG_TICKER:
            rnd_ticker(&m.ticker);
            break;
        }
        qb_buf_reset(&mine);
        QB_CHECK_EQ_INT(qb_msg_encode(&m, &mine), QB_OK);
        /* the reference: topic NUL, then msgpack-c's packer */
        char topic[QB_TOPIC_MAX + 1];
        int tn =
            qb_topic_format(topic, sizeof topic, qb_msg_topic_kind(m.type), m.exchange, m.symbol);
        QB_CHECK(tn > 0);
        msgpack_sbuffer_clear(&ref);
        msgpack_sbuffer_write(&ref, topic, (size_t)tn + 1);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &ref, msgpack_sbuffer_write);
        QB_CHECK_EQ_INT(ref_pack_map(&m, &pk), 0);
        if (ref.size != mine.len || memcmp(ref.data, mine.data, mine.len) != 0) {
            mism++;
        }
        /* and the decoder gives the message back */
        qb_msg back;
        int rc = decode_one(d, mine.data, mine.len, &back);
        QB_CHECK_EQ_INT(rc, QB_OK);
        if (m.type == QB_MSG_STATUS && m.reason.p == NULL) {
            m.reason = (qb_str){"", 0};
        }
        if (rc == QB_OK && !msg_eq(&m, &back)) {
            mism++;
        }
        checked++;
    }
    QB_CHECK_EQ_INT(mism, 0);
    QB_CHECK_EQ_INT(checked, ROUNDS);
    /* a failed encode leaves the buffer as it was */
    qb_msg bad = sample(QB_MSG_DELTA);
    qb_level neg = {{-1, 0}, {1, 0}};
    bad.bids = &neg;
    bad.n_bids = 1;
    size_t before = mine.len;
    QB_CHECK_EQ_INT(qb_msg_encode_map(&bad, &mine), QB_EINVAL);
    QB_CHECK_EQ_INT(mine.len, before);
    free(lv[0]);
    free(lv[1]);
    msgpack_sbuffer_destroy(&ref);
    qb_buf_fini(&mine);
    qb_decoder_free(d);
}

/* The reference bytes of one map (no topic), appended to ref. */
static void ref_append_map(const qb_msg *m, msgpack_sbuffer *ref)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, ref, msgpack_sbuffer_write);
    QB_CHECK_EQ_INT(ref_pack_map(m, &pk), 0);
}

/* A name of exactly n bytes (n >= 1), no dots when !dots. */
static void rnd_name_n(char *buf, size_t n, bool dots)
{
    for (size_t i = 0; i < n; i++) {
        char c = (char)('!' + rnd() % 94);
        /* without dots: a topic part, whose bytes exclude '.', '"' and '\\' */
        buf[i] = (!dots && (c == '.' || c == '"' || c == '\\')) ? 'x' : c;
    }
    buf[n] = '\0';
}

/* A count of levels: 0, a boundary of msgpack's array forms, or random up
 * to 2000. */
static size_t rnd_count(void)
{
    static const size_t edges[] = {0, 1, 15, 16, 17, 255, 256, 1000, 2000};
    uint64_t r = rnd();
    return r % 3 == 0 ? edges[(r >> 8) % (sizeof edges / sizeof edges[0])] : (size_t)(rnd() % 2001);
}

/* The encoder (msgpack-c's pack template with the inline sink, proto/msg_encode.c)
 * against pack.h's packer through a callback (msgpack_sbuffer), on the
 * sizes that matter for the sink and the reservation: 0..2000 levels per
 * side, names of every length 1..64 (fixstr/str8 at 32), reasons of 0..256
 * bytes, integers at every form boundary, and several maps batched into one
 * frame after a topic (the buffer not empty, its capacity anywhere). Must be
 * byte-identical; a sink that drops, repeats or misplaces one byte fails
 * here. */
QB_TEST(encoder_matches_msgpack_c_packer_batches_and_sizes)
{
    enum { ROUNDS = 400, MAXLV = 2000 };
    char ex[8][70], sym[8][70], nat[8][70], reason[8][300];
    qb_level *lvs[8][2];
    for (int k = 0; k < 8; k++) {
        lvs[k][0] = calloc(MAXLV, sizeof(qb_level));
        lvs[k][1] = calloc(MAXLV, sizeof(qb_level));
    }
    msgpack_sbuffer ref;
    msgpack_sbuffer_init(&ref);
    qb_buf keep = QB_BUF_INIT; /* reused across rounds: capacity anywhere */
    size_t mism = 0, maps = 0;
    for (int r = 0; r < ROUNDS; r++) {
        qb_buf fresh = QB_BUF_INIT;
        qb_buf *out = (r & 1) ? &keep : &fresh;
        qb_buf_reset(out);
        msgpack_sbuffer_clear(&ref);
        /* one topic for the frame, then 1..8 maps of that topic */
        qb_msg_type kind = (qb_msg_type)(1 + rnd() % 5);
        size_t exn = 1 + rnd() % 64, symn = 1 + rnd() % 64;
        if (rnd() % 4 == 0) {
            exn = symn = 64;
        }
        if (exn + symn > QB_TOPIC_MAX - 8) {
            symn = QB_TOPIC_MAX - 8 - exn; /* "status." + ex + "." + sym fits */
        }
        rnd_name_n(ex[0], exn, false);
        rnd_name_n(sym[0], symn, false);
        int nmaps = 1 + (int)(rnd() % 8);
        for (int k = 0; k < nmaps; k++) {
            qb_msg m;
            memset(&m, 0, sizeof m);
            bool book = kind == QB_MSG_SNAPSHOT || kind == QB_MSG_DELTA;
            m.type = book ? (qb_msg_type)(1 + rnd() % 2) : kind;
            m.version = (rnd() & 1) ? QB_PROTO_VERSION : 0;
            m.exchange = (qb_str){ex[0], exn};
            m.symbol = (qb_str){sym[0], symn};
            size_t natn = 1 + rnd() % 64;
            rnd_name_n(nat[k], natn, true);
            m.native = (qb_str){nat[k], natn};
            m.seq = rnd_u64();
            m.exch_ts = rnd_u64();
            m.recv_ts = rnd_u64();
            switch (m.type) {
            case QB_MSG_SNAPSHOT:
            case QB_MSG_DELTA: {
                size_t c[2] = {rnd_count(), rnd_count()};
                for (int s = 0; s < 2; s++) {
                    for (size_t i = 0; i < c[s]; i++) {
                        lvs[k][s][i].price = rnd_dec(1);
                        lvs[k][s][i].size = rnd_dec(0);
                    }
                }
                m.first_id = rnd_u64();
                m.last_id = rnd_u64();
                m.bids = lvs[k][0];
                m.n_bids = c[0];
                m.asks = lvs[k][1];
                m.n_asks = c[1];
                m.refresh = m.type == QB_MSG_SNAPSHOT && (rnd() & 1);
                break;
            }
            case QB_MSG_TRADE:
                m.trade_id = rnd_u64();
                m.price = rnd_dec(1);
                m.qty = rnd_dec(0);
                m.side = (qb_side)(rnd() % 3);
                break;
            case QB_MSG_STATUS: {
                m.state = (qb_feed_state)(rnd() % 5);
                static const size_t rl[] = {0, 31, 32, 255, 256};
                size_t n = (rnd() & 1) ? rl[rnd() % 5] : rnd() % 257;
                for (size_t i = 0; i < n; i++) {
                    reason[k][i] = (char)(' ' + rnd() % 95);
                }
                m.reason = (qb_str){n ? reason[k] : NULL, n};
                break;
            }
            case QB_MSG_TICKER:
                rnd_ticker(&m.ticker);
                break;
            }
            if (k == 0) {
                QB_CHECK_EQ_INT(qb_msg_encode(&m, out), QB_OK);
                char topic[QB_TOPIC_MAX + 1];
                int tn = qb_topic_format(topic, sizeof topic, qb_msg_topic_kind(m.type), m.exchange,
                                         m.symbol);
                QB_CHECK(tn > 0);
                msgpack_sbuffer_write(&ref, topic, (size_t)tn + 1);
            } else {
                QB_CHECK_EQ_INT(qb_msg_encode_map(&m, out), QB_OK);
            }
            ref_append_map(&m, &ref);
            maps++;
        }
        if (ref.size != out->len || memcmp(ref.data, out->data, out->len) != 0) {
            if (mism++ == 0) {
                size_t i = 0;
                while (i < ref.size && i < out->len && ref.data[i] == (char)out->data[i]) {
                    i++;
                }
                fprintf(stderr, "  round %d: %zu bytes, reference %zu, first difference at %zu\n",
                        r, out->len, ref.size, i);
            }
        }
        qb_buf_fini(&fresh);
    }
    QB_CHECK_EQ_INT(mism, 0);
    QB_CHECK(maps >= ROUNDS);
    for (int k = 0; k < 8; k++) {
        free(lvs[k][0]);
        free(lvs[k][1]);
    }
    qb_buf_fini(&keep);
    msgpack_sbuffer_destroy(&ref);
}

/* The largest map the encoder accepts: QB_MSG_MAX_LEVELS levels per side,
 * every integer in its 9-byte form, every name at its maximum; and the
 * largest status and ticker. Same bytes as the reference, so the upper
 * bound reserved before packing holds (the sink never refuses a write of a
 * valid message). A bad level anywhere (here the last) is still refused
 * with nothing appended. */
QB_TEST(encoder_worst_case_sizes)
{
    size_t n = QB_MSG_MAX_LEVELS;
    qb_level *lv = malloc(n * sizeof *lv);
    QB_CHECK(lv != NULL);
    if (lv == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int8_t sc = (int8_t)(i & 1 ? -QB_DEC_MAX_SCALE : QB_DEC_MAX_SCALE);
        lv[i].price = (qb_dec){INT64_MAX - (int64_t)i, sc};
        lv[i].size = (qb_dec){(int64_t)1 << 62, -QB_DEC_MAX_SCALE};
    }
    char name[3][65];
    memset(name, 'N', sizeof name);
    char reason[257];
    memset(reason, 'r', sizeof reason);
    qb_msg m;
    memset(&m, 0, sizeof m);
    m.version = QB_PROTO_VERSION;
    m.exchange = (qb_str){name[0], 64};
    m.symbol = (qb_str){name[1], 64};
    m.native = (qb_str){name[2], 64};
    m.seq = m.exch_ts = m.recv_ts = m.first_id = m.last_id = m.trade_id = UINT64_MAX;
    m.bids = m.asks = lv;
    m.n_bids = m.n_asks = n;
    m.reason = (qb_str){reason, 256};
    qb_dec big = {-INT64_MAX, -QB_DEC_MAX_SCALE};
    m.ticker = (qb_ticker){big, big, big, big, big, big, big, true, true, true, true};
    m.price = (qb_dec){INT64_MAX, QB_DEC_MAX_SCALE};
    m.qty = (qb_dec){INT64_MAX, QB_DEC_MAX_SCALE};
    m.side = QB_SIDE_SELL;
    m.state = QB_FEED_RESYNCING;
    msgpack_sbuffer ref;
    msgpack_sbuffer_init(&ref);
    static const qb_msg_type types[] = {QB_MSG_SNAPSHOT, QB_MSG_DELTA, QB_MSG_TRADE, QB_MSG_STATUS,
                                        QB_MSG_TICKER};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        m.type = types[t];
        qb_buf b = QB_BUF_INIT;
        QB_CHECK_EQ_INT(qb_msg_encode_map(&m, &b), QB_OK);
        msgpack_sbuffer_clear(&ref);
        ref_append_map(&m, &ref);
        QB_CHECK(ref.size == b.len && memcmp(ref.data, b.data, b.len) == 0);
        qb_buf_fini(&b);
    }
    /* the last level bad: refused, nothing appended */
    qb_buf b = QB_BUF_INIT;
    QB_CHECK_EQ_INT(qb_buf_append(&b, "xyz", 3), QB_OK);
    m.type = QB_MSG_DELTA;
    static const qb_level bad[] = {{{0, 0}, {1, 0}},   {{1, 0}, {-1, 0}},       {{1, 31}, {1, 0}},
                                   {{1, -31}, {1, 0}}, {{1, 0}, {1, 31}},       {{1, 0}, {1, -31}},
                                   {{-5, 0}, {1, 0}},  {{1, 0}, {INT64_MIN, 0}}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qb_level keep = lv[n - 1];
        lv[n - 1] = bad[i];
        QB_CHECK_EQ_INT(qb_msg_encode_map(&m, &b), QB_EINVAL);
        QB_CHECK_EQ_INT(qb_msg_encode(&m, &b), QB_EINVAL);
        QB_CHECK_EQ_INT(b.len, 3);
        lv[n - 1] = keep;
    }
    /* the edges that are fine */
    lv[n - 1] = (qb_level){{1, -QB_DEC_MAX_SCALE}, {0, QB_DEC_MAX_SCALE}};
    QB_CHECK_EQ_INT(qb_msg_encode_map(&m, &b), QB_OK);
    qb_buf_fini(&b);
    msgpack_sbuffer_destroy(&ref);
    free(lv);
}

/* Batches as the adapter's publisher builds them: one topic, many maps
 * appended with qb_msg_encode_map; the decoder iterates all of them. */
QB_TEST(batched_frame_of_many_deltas)
{
    qb_decoder *d = qb_decoder_new();
    qb_buf b = QB_BUF_INIT;
    qb_msg m = sample(QB_MSG_DELTA);
    QB_CHECK_EQ_INT(qb_msg_encode(&m, &b), QB_OK);
    for (int i = 1; i < 64; i++) {
        m.seq = 42 + (uint64_t)i;
        QB_CHECK_EQ_INT(qb_msg_encode_map(&m, &b), QB_OK);
    }
    qb_str topic;
    QB_CHECK_EQ_INT(qb_decoder_begin(d, b.data, b.len, &topic), QB_OK);
    QB_CHECK(topic.n == strlen("book.binance.BTC-USDT"));
    qb_msg out;
    uint64_t want = 42;
    int rc;
    while ((rc = qb_decoder_next(d, &out)) == QB_OK) {
        QB_CHECK_EQ_INT(out.seq, want);
        QB_CHECK_EQ_INT(out.n_bids, 2);
        want++;
    }
    QB_CHECK_EQ_INT(rc, QB_EEOF);
    QB_CHECK_EQ_INT(want, 42 + 64);
    qb_buf_fini(&b);
    qb_decoder_free(d);
}

/* ---- new decoder against the reference --------------------------------- */

/* Both views point into the same frame (or are both empty). */
static bool view_same(qb_str a, qb_str b)
{
    return a.n == b.n && (a.n == 0 || a.p == b.p);
}

/* Every field of qb_msg, not only those the type carries. */
static bool msg_same(const qb_msg *a, const qb_msg *b)
{
    const qb_ticker *x = &a->ticker, *y = &b->ticker;
    return msg_eq(a, b) && view_same(a->exchange, b->exchange) && view_same(a->symbol, b->symbol) &&
           view_same(a->native, b->native) && view_same(a->reason, b->reason) &&
           a->first_id == b->first_id && a->last_id == b->last_id && a->n_bids == b->n_bids &&
           a->n_asks == b->n_asks && (a->bids == NULL) == (b->bids == NULL) &&
           (a->asks == NULL) == (b->asks == NULL) &&
           levels_eq(a->bids, a->n_bids, b->bids, b->n_bids) &&
           levels_eq(a->asks, a->n_asks, b->asks, b->n_asks) && a->refresh == b->refresh &&
           a->trade_id == b->trade_id && qb_dec_identical(a->price, b->price) &&
           qb_dec_identical(a->qty, b->qty) && a->side == b->side && a->state == b->state &&
           qb_dec_identical(x->last, y->last) && qb_dec_identical(x->bid, y->bid) &&
           qb_dec_identical(x->bid_qty, y->bid_qty) && qb_dec_identical(x->ask, y->ask) &&
           qb_dec_identical(x->ask_qty, y->ask_qty) &&
           qb_dec_identical(x->volume_24h, y->volume_24h) &&
           qb_dec_identical(x->change_24h, y->change_24h) && x->has_bid == y->has_bid &&
           x->has_ask == y->has_ask && x->has_volume == y->has_volume &&
           x->has_change == y->has_change;
}

static long diff_frames, diff_maps_ok, diff_mismatch;

/* Decodes p[0..n) with both decoders; true when every step agrees. Counts
 * decoded maps in diff_maps_ok. */
static bool decode_both(qb_decoder *d, ref_decoder *r, const uint8_t *p, size_t n)
{
    qb_str t1 = {0}, t2 = {0};
    int a = qb_decoder_begin(d, p, n, &t1);
    int b = ref_decoder_begin(r, p, n, &t2);
    diff_frames++;
    if (a != b || (a == QB_OK && !view_same(t1, t2))) {
        return false;
    }
    for (int i = 0; i < 1000; i++) {
        qb_msg m1, m2;
        memset(&m1, 0x5a, sizeof m1);
        memset(&m2, 0x5a, sizeof m2);
        a = qb_decoder_next(d, &m1);
        b = ref_decoder_next(r, &m2);
        if (a != b) {
            return false;
        }
        if (a != QB_OK) {
            /* sticky */
            return qb_decoder_next(d, &m1) == ref_decoder_next(r, &m2);
        }
        if (!msg_same(&m1, &m2)) {
            return false;
        }
        diff_maps_ok++;
    }
    return true;
}

static void diff_report(const uint8_t *p, size_t n, const char *what)
{
    diff_mismatch++;
    if (diff_mismatch > 5) {
        return;
    }
    fprintf(stderr, "  old/new decoders disagree (%s), %zu bytes:", what, n);
    for (size_t i = 0; i < n && i < 400; i++) {
        fprintf(stderr, " %02x", p[i]);
    }
    fprintf(stderr, "\n");
}

/* Checks p[0..n) on a fresh allocation of exactly n bytes (ASan sees any
 * over-read). */
static void diff_check(qb_decoder *d, ref_decoder *r, const uint8_t *p, size_t n, const char *what)
{
    uint8_t *c = malloc(n ? n : 1);
    memcpy(c, p, n);
    if (!decode_both(d, r, c, n)) {
        diff_report(c, n, what);
    }
    free(c);
}

/* The valid frames the differential tests start from. */
typedef struct {
    qb_buf b[16];
    int n;
} base_frames;

static void base_frames_init(base_frames *s)
{
    memset(s, 0, sizeof *s);
    qb_msg_type types[] = {QB_MSG_SNAPSHOT, QB_MSG_DELTA, QB_MSG_TRADE, QB_MSG_STATUS,
                           QB_MSG_TICKER};
    for (int t = 0; t < 5; t++) {
        qb_msg m = sample(types[t]);
        QB_CHECK_EQ_INT(qb_msg_encode(&m, &s->b[s->n++]), QB_OK);
    }
    /* a ticker with every optional field, a status with an empty reason */
    qb_msg m = sample(QB_MSG_TICKER);
    m.ticker.has_bid = m.ticker.has_ask = m.ticker.has_volume = m.ticker.has_change = true;
    m.ticker.bid = (qb_dec){-5, 3};
    m.ticker.bid_qty = (qb_dec){INT64_MAX, -18};
    QB_CHECK_EQ_INT(qb_msg_encode(&m, &s->b[s->n++]), QB_OK);
    m = sample(QB_MSG_STATUS);
    m.reason = QB_STR("");
    QB_CHECK_EQ_INT(qb_msg_encode(&m, &s->b[s->n++]), QB_OK);
    /* a 20+20-level delta; a batch of three maps */
    qb_level lv[40];
    for (int i = 0; i < 40; i++) {
        lv[i] = (qb_level){{6325112000000 + i * 100000, 8}, {1234000 + i, 8}};
    }
    m = sample(QB_MSG_DELTA);
    m.bids = lv;
    m.n_bids = 20;
    m.asks = lv + 20;
    m.n_asks = 20;
    QB_CHECK_EQ_INT(qb_msg_encode(&m, &s->b[s->n++]), QB_OK);
    m = sample(QB_MSG_DELTA);
    qb_buf *bb = &s->b[s->n++];
    QB_CHECK_EQ_INT(qb_msg_encode(&m, bb), QB_OK);
    m.n_bids = 0;
    m.bids = NULL;
    m.seq++;
    QB_CHECK_EQ_INT(qb_msg_encode_map(&m, bb), QB_OK);
    m = sample(QB_MSG_SNAPSHOT);
    m.seq++;
    QB_CHECK_EQ_INT(qb_msg_encode_map(&m, bb), QB_OK);
    /* a hand-made map: unknown keys of every kind, ints in wide forms */
    frame f;
    frame_init(&f, "book.binance.BTC-USDT");
    msgpack_pack_map(&f.pk, 8 + 4 + 6);
    frame_kv_str(&f, "zz_future", "x");
    frame_common(&f, "delta", 1);
    frame_str(&f, "nested");
    msgpack_pack_array(&f.pk, 2);
    msgpack_pack_map(&f.pk, 1);
    frame_kv_u64(&f, "a", 1);
    msgpack_pack_array(&f.pk, 0);
    frame_str(&f, "f");
    msgpack_pack_double(&f.pk, 1.5);
    frame_str(&f, "bin");
    msgpack_pack_bin(&f.pk, 3);
    msgpack_pack_bin_body(&f.pk, "\x00\x01\x02", 3);
    frame_str(&f, "ext");
    msgpack_pack_ext(&f.pk, 4, 7);
    msgpack_pack_ext_body(&f.pk, "abcd", 4);
    msgpack_pack_uint64(&f.pk, 12345);
    msgpack_pack_nil(&f.pk);
    frame_kv_u64(&f, "fid", 3);
    frame_kv_u64(&f, "lid", 4);
    frame_str(&f, "bids");
    msgpack_pack_array(&f.pk, 1);
    frame_raw(&f, "\xdc\x00\x04\xd3\x00\x00\x00\x00\x00\x00\x00\x05\xd0\x00\xcc\x07\xd1\xff\xff",
              19); /* array16 of 4: int64 5, int8 0, uint8 7, int16 -1 */
    frame_str(&f, "asks");
    msgpack_pack_array(&f.pk, 0);
    qb_buf_append(&s->b[s->n++], f.sb.data, f.sb.size);
    frame_fini(&f);
    /* map16, str8 keys, levels as array16 and array32, a level of array16 */
    frame_init(&f, "book.binance.BTC-USDT");
    frame_raw(&f,
              "\xde\x00\x0c\xd9\x01v\x01\xda\x00\x04type\xd9\x05"
              "delta",
              21);
    frame_kv_str(&f, "ex", "binance");
    frame_kv_str(&f, "sym", "BTC-USDT");
    frame_kv_str(&f, "nsym", "BTCUSDT");
    frame_kv_u64(&f, "seq", 1);
    frame_kv_u64(&f, "ets", 0);
    frame_kv_u64(&f, "rts", 2);
    frame_kv_u64(&f, "fid", 3);
    frame_raw(&f, "\xdb\x00\x00\x00\x03lid\x04", 9);
    frame_raw(&f,
              "\xa4"
              "bids\xdc\x00\x01\xdc\x00\x04\x05\x00\x01\x00",
              15);
    frame_raw(&f,
              "\xa4"
              "asks\xdd\x00\x00\x00\x01\x94\x06\x00\x01\x00",
              15);
    qb_buf_append(&s->b[s->n++], f.sb.data, f.sb.size);
    frame_fini(&f);
}

static void base_frames_fini(base_frames *s)
{
    for (int i = 0; i < s->n; i++) {
        qb_buf_fini(&s->b[i]);
    }
}

QB_TEST(old_new_agree_on_valid_and_truncated)
{
    qb_decoder *d = qb_decoder_new();
    ref_decoder *r = ref_decoder_new();
    base_frames s;
    base_frames_init(&s);
    diff_mismatch = 0;
    long ok_before = diff_maps_ok;
    for (int i = 0; i < s.n; i++) {
        /* every base frame is valid */
        qb_msg o;
        QB_CHECK_EQ_INT(qb_decoder_begin(d, s.b[i].data, s.b[i].len, NULL), QB_OK);
        QB_CHECK_EQ_INT(qb_decoder_next(d, &o), QB_OK);
        /* the whole frame, then every truncation of it */
        for (size_t n = s.b[i].len + 1; n-- > 0;) {
            diff_check(d, r, s.b[i].data, n, "truncated");
        }
    }
    QB_CHECK_EQ_INT(diff_mismatch, 0);
    QB_CHECK(diff_maps_ok - ok_before >= s.n); /* the whole frames decoded */
    base_frames_fini(&s);
    ref_decoder_free(r);
    qb_decoder_free(d);
}

static uint64_t diff_rng = 0x9e3779b97f4a7c15ull;

static uint64_t diff_rand(void)
{
    diff_rng ^= diff_rng << 13;
    diff_rng ^= diff_rng >> 7;
    diff_rng ^= diff_rng << 17;
    return diff_rng;
}

/* Random mutations of the base frames: byte replacements (random values
 * and msgpack type bytes), insertions, deletions, truncations, copies of a
 * span elsewhere; 1..4 per frame. QB_MSG_DIFF_FRAMES sets how many
 * (default 1M: about 1 s, 5 s under ASan). */
QB_TEST(old_new_agree_on_random_mutations)
{
    long total = 1000000;
    const char *env = getenv("QB_MSG_DIFF_FRAMES");
    if (env != NULL && atol(env) > 0) {
        total = atol(env);
    }
    static const uint8_t special[] = {
        0x00, 0x01, 0x7f, 0x80, 0x81, 0x8f, 0x90, 0x91, 0x94, 0x9f, 0xa0, 0xa1, 0xbf, 0xc0,
        0xc1, 0xc2, 0xc3, 0xc4, 0xc7, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd3, 0xd4,
        0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff, '.',  'v',  0x02};
    qb_decoder *d = qb_decoder_new();
    ref_decoder *r = ref_decoder_new();
    base_frames s;
    base_frames_init(&s);
    diff_mismatch = 0;
    long maps_before = diff_maps_ok, frames_before = diff_frames;
    size_t cap = 8192;
    uint8_t *buf = malloc(cap), *tmp = malloc(cap);
    for (long it = 0; it < total; it++) {
        const qb_buf *src = &s.b[diff_rand() % (uint64_t)s.n];
        size_t n = src->len;
        memcpy(buf, src->data, n);
        int muts = 1 + (int)(diff_rand() % 4);
        for (int k = 0; k < muts && n > 0; k++) {
            size_t at = diff_rand() % n;
            switch (diff_rand() % 8) {
            case 0:
            case 1:
                buf[at] = (uint8_t)diff_rand();
                break;
            case 2:
            case 3:
                buf[at] = special[diff_rand() % sizeof special];
                break;
            case 4: /* insert a byte */
                if (n + 1 < cap) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = special[diff_rand() % sizeof special];
                    n++;
                }
                break;
            case 5: /* delete a span */
            {
                size_t len = 1 + diff_rand() % 4;
                if (len > n - at) {
                    len = n - at;
                }
                memmove(buf + at, buf + at + len, n - at - len);
                n -= len;
            } break;
            case 6: /* truncate */
                n = at;
                break;
            case 7: /* copy a span over another place */
            {
                size_t from = diff_rand() % n, len = 1 + diff_rand() % 16;
                if (len > n - from) {
                    len = n - from;
                }
                if (len > n - at) {
                    len = n - at;
                }
                memcpy(tmp, buf + from, len);
                memcpy(buf + at, tmp, len);
            } break;
            }
        }
        if (!decode_both(d, r, buf, n)) {
            diff_report(buf, n, "mutation");
        }
    }
    QB_CHECK_EQ_INT(diff_mismatch, 0);
    QB_CHECK_EQ_INT(diff_frames - frames_before, total);
    printf("     %ld mutated frames, %ld maps decoded by both, %ld disagreements\n", total,
           diff_maps_ok - maps_before, diff_mismatch);
    free(buf);
    free(tmp);
    base_frames_fini(&s);
    ref_decoder_free(r);
    qb_decoder_free(d);
}

/* Frames at the edges of the limits: nesting around msgpack-c's 32 open
 * containers (empty and non-empty innermost, arrays, maps, as keys, with a
 * bad version so the order of checks shows), the item limit, the level
 * limit. */
QB_TEST(old_new_agree_on_limits)
{
    qb_decoder *d = qb_decoder_new();
    ref_decoder *r = ref_decoder_new();
    diff_mismatch = 0;
    size_t cap = 3u << 20;
    uint8_t *p = malloc(cap);
    static const char pre[] = "book.binance.BTC-USDT";
    size_t tn = sizeof pre; /* with the NUL */
    memcpy(p, pre, tn);
    int deep_rejected = 0, deep_accepted = 0;
    for (int version = 1; version <= 2; version++) {
        for (int depth = 28; depth <= 36; depth++) {
            for (int shape = 0; shape < 6; shape++) {
                size_t n = tn;
                /* map of 2: "v": version, then key -> nested value */
                p[n++] = 0x82;
                p[n++] = 0xa1;
                p[n++] = 'v';
                p[n++] = (uint8_t)version;
                if (shape == 4) {
                    /* a nested key */
                    for (int i = 0; i < depth; i++) {
                        p[n++] = 0x91;
                    }
                    p[n++] = 0xc0;
                    p[n++] = 0xc0;
                } else {
                    p[n++] = 0xa1;
                    p[n++] = 'x';
                    for (int i = 0; i < depth; i++) {
                        p[n++] = shape == 1 ? 0x81 : 0x91;
                        if (shape == 1) {
                            p[n++] = 0xc0; /* key */
                        }
                        if (shape == 5 && i == depth / 2) {
                            p[n++] = 0xc0; /* an array of 2: close early */
                            p[n - 2] = 0x92;
                        }
                    }
                    if (shape == 2) {
                        p[n++] = 0x90; /* empty innermost */
                    } else if (shape == 3) {
                        p[n++] = 0x80;
                    } else {
                        p[n++] = 0x01;
                    }
                }
                if (!decode_both(d, r, p, n)) {
                    diff_report(p, n, "nesting");
                }
                qb_msg o;
                int rc = qb_decoder_begin(d, p, n, NULL);
                rc = rc ? rc : qb_decoder_next(d, &o);
                if (rc == QB_EPARSE) {
                    deep_rejected++;
                } else {
                    deep_accepted++;
                }
            }
        }
    }
    QB_CHECK(deep_rejected > 0 && deep_accepted > 0);
    /* the item limit: an unknown key holding an array of k nils, k around
     * MSG_MAX_ITEMS (265536); also with array32 counts that lie */
    static const long ks[] = {265530, 265533, 265534, 265535, 265536, 265537, 300000};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        for (int lie = -1; lie <= 1; lie++) {
            size_t n = tn;
            p[n++] = 0x82;
            p[n++] = 0xa1;
            p[n++] = 'v';
            p[n++] = 0x01;
            p[n++] = 0xa1;
            p[n++] = 'x';
            uint32_t cnt = (uint32_t)(ks[i] + lie);
            p[n++] = 0xdd;
            p[n++] = (uint8_t)(cnt >> 24);
            p[n++] = (uint8_t)(cnt >> 16);
            p[n++] = (uint8_t)(cnt >> 8);
            p[n++] = (uint8_t)cnt;
            memset(p + n, 0xc0, (size_t)ks[i]);
            n += (size_t)ks[i];
            diff_check(d, r, p, n, "items");
        }
    }
    /* the level limit: bids of QB_MSG_MAX_LEVELS - 1 .. + 1 levels, valid or
     * with a bad last level, and of fixints */
    for (long k = QB_MSG_MAX_LEVELS - 1; k <= QB_MSG_MAX_LEVELS + 1; k++) {
        for (int bad = 0; bad < 3; bad++) {
            frame f;
            frame_init(&f, "book.binance.BTC-USDT");
            msgpack_pack_map(&f.pk, 12);
            frame_common(&f, "delta", 1);
            frame_kv_u64(&f, "fid", 1);
            frame_kv_u64(&f, "lid", 1);
            frame_str(&f, "asks");
            msgpack_pack_array(&f.pk, 0);
            frame_str(&f, "bids");
            msgpack_pack_array(&f.pk, (size_t)k);
            for (long i = 0; i < k; i++) {
                if (bad == 2) {
                    msgpack_pack_uint64(&f.pk, 1);
                    continue;
                }
                msgpack_pack_array(&f.pk, 4);
                msgpack_pack_int64(&f.pk, 100 + i);
                msgpack_pack_int64(&f.pk, 2);
                msgpack_pack_int64(&f.pk, bad && i == k - 1 ? -1 : 5);
                msgpack_pack_int64(&f.pk, 0);
            }
            diff_check(d, r, (const uint8_t *)f.sb.data, f.sb.size, "levels");
            frame_fini(&f);
        }
    }
    QB_CHECK_EQ_INT(diff_mismatch, 0);
    free(p);
    ref_decoder_free(r);
    qb_decoder_free(d);
}

int main(void)
{
    return qb_test_run_all();
}
