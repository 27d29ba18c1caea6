/*
 * msg_encode.c: the msgpack encoder of the wire protocol (msg.h, spec in
 * PROTOCOL.md) on msgpack-c 4.0's packer, and the names and topic the
 * encoder writes (qb_msg_type_name, qb_topic_format, ...). The decoder is
 * msg_decode.c; what both share (field limits, the nsym rule) is in
 * msg_int.h.
 *
 * Encoding: msgpack-c's packer template (pack_template.h) instantiated
 * with an inline sink into a qb_buf reserved to an upper bound up front
 * (see "encoder" below). Keys are written in one fixed order per type
 * and integers in msgpack-c's smallest form, so equal messages give equal
 * bytes. A failed encode leaves the output buffer as it was.
 *
 * The names live in this file, not a third one, because qb_msg_encode
 * calls them on every message: here the compiler can inline them.
 *
 * Threads: the encoder is pure, any thread.
 */
#include "msg.h"
#include "msg_int.h"

#include "err.h"
#include "topic.h"

#include <msgpack.h>
#include <string.h>

/* ---- names ------------------------------------------------------------ */

const char *qb_msg_type_name(qb_msg_type t)
{
    switch (t) {
    case QB_MSG_SNAPSHOT:
        return "snapshot";
    case QB_MSG_DELTA:
        return "delta";
    case QB_MSG_TRADE:
        return "trade";
    case QB_MSG_STATUS:
        return "status";
    case QB_MSG_TICKER:
        return "ticker";
    }
    return "unknown";
}

const char *qb_feed_state_name(qb_feed_state s)
{
    switch (s) {
    case QB_FEED_SYNCING:
        return "syncing";
    case QB_FEED_LIVE:
        return "live";
    case QB_FEED_STALE:
        return "stale";
    case QB_FEED_RESYNCING:
        return "resyncing";
    case QB_FEED_DOWN:
        return "down";
    }
    return "unknown";
}

const char *qb_side_name(qb_side s)
{
    switch (s) {
    case QB_SIDE_BUY:
        return "buy";
    case QB_SIDE_SELL:
        return "sell";
    case QB_SIDE_UNKNOWN:
        return "unknown";
    }
    return "unknown";
}

const char *qb_msg_topic_kind(qb_msg_type t)
{
    switch (t) {
    case QB_MSG_SNAPSHOT:
    case QB_MSG_DELTA:
        return "book";
    case QB_MSG_TRADE:
        return "trade";
    case QB_MSG_STATUS:
        return "status";
    case QB_MSG_TICKER:
        return "ticker";
    }
    return NULL;
}

/* A part for qb_topic_format: the byte rule of topic.h, no '.', any
 * length the whole topic allows (a message's ex and sym are held to
 * QB_TOPIC_PART_MAX by qb_topic_part_ok, in msg_fields_ok and the decoder). */
static bool msg_format_part_ok(const char *p, size_t n)
{
    return n <= QB_TOPIC_MAX && qb__topic_part_bytes_ok(p, n);
}

int qb_topic_format(char *buf, size_t cap, const char *kind, qb_str exchange, qb_str symbol)
{
    if (buf == NULL || kind == NULL) {
        return -1;
    }
    size_t nk = strlen(kind);
    if (!msg_format_part_ok(kind, nk) || !msg_format_part_ok(exchange.p, exchange.n) ||
        !msg_format_part_ok(symbol.p, symbol.n)) {
        return -1;
    }
    size_t n = nk + 1 + exchange.n + 1 + symbol.n;
    if (n > QB_TOPIC_MAX || n + 1 > cap) {
        return -1;
    }
    char *p = buf;
    memcpy(p, kind, nk);
    p += nk;
    *p++ = '.';
    memcpy(p, exchange.p, exchange.n);
    p += exchange.n;
    *p++ = '.';
    memcpy(p, symbol.p, symbol.n);
    p += symbol.n;
    *p = '\0';
    return (int)n;
}

/* ---- encoder ---------------------------------------------------------- */

/* The encoder is msgpack-c's packer, instantiated a second time from
 * msgpack-c's own template with an inline sink instead of a callback.
 *
 * msgpack-c builds msgpack_pack_* by defining four macros (function name,
 * user type, append) and including <msgpack/pack_template.h>, which holds
 * every msgpack form decision (fixint / uint8..64 / int8..64, fixstr /
 * str8..32, fixarray / array16/32, fixmap / map16/32) and #undefs the
 * macros at its end. pack.h instantiates it once with
 * "return (*pk->callback)(pk->data, buf, len)" as the append: one indirect
 * call per integer or header, about 300 per 20+20-level delta, ~10 % of
 * the adapter's time (docs/BENCHMARKS.md, section 1). Below the same template is
 * included again with our names:
 *
 *   msgpack_pack_inline_func(_uint64)  ->  static inline int msg_pk_uint64
 *   msgpack_pack_user                  ->  msg_sink *
 *   msgpack_pack_append_buffer(x,b,n)  ->  return msg_sink_put(x, b, n)
 *
 * so the bytes are msgpack-c's by construction (the template is the
 * library's, not a rewrite of it), and every append is a bounds check and a
 * constant-size memcpy the compiler turns into plain stores. Measured on a
 * Binance 20+20-level delta: 12.5 k -> 5.1 k instructions per qb_msg_encode
 * (callgrind, qb-bench-adapter), 726 -> 224 ns. The append macro
 * "returns" like pack.h's: the template uses it as the last statement of
 * each branch (inside braces of if/else and do/while(0)).
 * The template's _timestamp calls msgpack_pack_ext by name: it is mapped
 * to msg_pk_ext while the template is included (unused here anyway).
 *
 * The sink writes into a qb_buf that qb_msg_encode_map reserved to an
 * upper bound of the map's size (MSG_FIXED_MAX + MSG_LEVEL_MAX per level),
 * up to the buffer's capacity: no allocation or reallocation per element.
 * If the bound were ever too small, msg_sink_put refuses the write (never
 * past the end; the levels: msg_pack_levels checks a side's worst case
 * before writing it), marks the sink and the encode fails with QB_ETOOBIG,
 * leaving the buffer as it was. Levels are validated while they are packed
 * (one pass; a bad one fails the encode with QB_EINVAL, the buffer
 * restored), so an invalid message may have grown the buffer's capacity.
 * test_msg compares these bytes with pack.h's own packer (msgpack_sbuffer)
 * on every message kind, randomized, including the worst-case message for
 * the bound. */
typedef struct msg_sink {
    uint8_t *p;
    uint8_t *end;
    bool overflow;
} msg_sink;

__attribute__((always_inline)) static inline int msg_sink_put(msg_sink *s, const void *b, size_t n)
{
    if ((size_t)(s->end - s->p) < n) {
        s->overflow = true;
        return -1;
    }
    memcpy(s->p, b, n);
    s->p += n;
    return 0;
}

/* clang-format off */
#define msgpack_pack_inline_func(name) \
    __attribute__((always_inline)) static inline int msg_pk ## name
#define msgpack_pack_user msg_sink *
#define msgpack_pack_append_buffer(user, buf, len) return msg_sink_put((user), (buf), (len))
#define msgpack_pack_ext msg_pk_ext
#include <msgpack/pack_template.h>
#undef msgpack_pack_ext
/* clang-format on */

/* The same template once more (this file's second instance), as
 * msg_pku_*: appends without a bounds check, for the levels only.
 * msg_pack_levels checks once per side that n x MSG_LEVEL_MAX bytes (the
 * most a level can take: fixarray + 4 x 9) remain and then writes the
 * levels with msg_pku_*: same bytes (the same template code), one check per
 * side instead of five per level. */
__attribute__((always_inline)) static inline int msg_sink_put_unchecked(msg_sink *s, const void *b,
                                                                        size_t n)
{
    memcpy(s->p, b, n);
    s->p += n;
    return 0;
}

/* clang-format off */
#define msgpack_pack_inline_func(name) \
    __attribute__((always_inline)) static inline int msg_pku ## name
#define msgpack_pack_user msg_sink *
#define msgpack_pack_append_buffer(user, buf, len) return msg_sink_put_unchecked((user), (buf), (len))
#define msgpack_pack_ext msg_pku_ext
#include <msgpack/pack_template.h>
#undef msgpack_pack_ext
/* clang-format on */

static bool msg_dec_ok(qb_dec d)
{
    return d.scale >= -QB_DEC_MAX_SCALE && d.scale <= QB_DEC_MAX_SCALE && d.mant != INT64_MIN;
}

/* The side's count and pointer. Each level (price > 0, size >= 0, both
 * scales in range) is checked by msg_pack_levels while it packs it: one
 * pass over the levels instead of two; a bad level fails the encode with
 * QB_EINVAL and the buffer is restored, as before. */
static bool msg_levels_ok(const qb_level *lv, size_t n)
{
    return n <= QB_MSG_MAX_LEVELS && (n == 0 || lv != NULL);
}

/* parts_ok: exchange and symbol passed qb_topic_format's byte rule
 * already (qb_msg_encode), so only their length limit is left to check. */
static bool msg_fields_ok(const qb_msg *m, bool parts_ok)
{
    if (m->version != 0 && m->version != QB_PROTO_VERSION) {
        return false;
    }
    if (parts_ok) {
        if (m->exchange.n > MSG_NAME_MAX || m->symbol.n > MSG_NAME_MAX) {
            return false;
        }
    } else if (!qb_topic_part_ok(m->exchange.p, m->exchange.n) ||
               !qb_topic_part_ok(m->symbol.p, m->symbol.n)) {
        return false;
    }
    if (!msg_native_ok(m->native)) {
        return false;
    }
    switch (m->type) {
    case QB_MSG_SNAPSHOT:
    case QB_MSG_DELTA:
        return msg_levels_ok(m->bids, m->n_bids) && msg_levels_ok(m->asks, m->n_asks);
    case QB_MSG_TRADE:
        return msg_dec_ok(m->price) && msg_dec_ok(m->qty) && m->price.mant > 0 &&
               m->qty.mant >= 0 &&
               (m->side == QB_SIDE_BUY || m->side == QB_SIDE_SELL || m->side == QB_SIDE_UNKNOWN);
    case QB_MSG_STATUS:
        return m->state >= QB_FEED_SYNCING && m->state <= QB_FEED_DOWN &&
               m->reason.n <= MSG_REASON_MAX && (m->reason.n == 0 || m->reason.p != NULL);
    case QB_MSG_TICKER: {
        const qb_ticker *t = &m->ticker;
        return msg_dec_ok(t->last) &&
               (!t->has_bid || (msg_dec_ok(t->bid) && msg_dec_ok(t->bid_qty))) &&
               (!t->has_ask || (msg_dec_ok(t->ask) && msg_dec_ok(t->ask_qty))) &&
               (!t->has_volume || msg_dec_ok(t->volume_24h)) &&
               (!t->has_change || msg_dec_ok(t->change_24h));
    }
    }
    return false;
}

/* Worst case of everything but the levels (MSG_LEVEL_MAX each, msg_int.h):
 * keys, 3 names of at most MSG_NAME_MAX, a reason of at most MSG_REASON_MAX,
 * integers, tickers. */
#define MSG_FIXED_MAX 1024u

/* A key: always a string literal (its length is known at compile time). */
#define msg_pack_key(pk, lit) msg_pk_str_with_body((pk), (lit), sizeof(lit) - 1)

/* pack.h's msgpack_pack_str_with_body, which is outside the template.
 * Always inlined: a key's length is then a constant and its memcpy plain
 * stores (GCC left 4 of the 12 key writes of a delta as calls). */
__attribute__((always_inline)) static inline int msg_pk_str_with_body(msg_sink *pk, const void *b,
                                                                      size_t l)
{
    int rc = msg_pk_str(pk, l);
    return rc ? rc : msg_pk_str_body(pk, b, l);
}

static int msg_pack_qstr(msg_sink *pk, qb_str s)
{
    int rc = msg_pk_str(pk, s.n);
    return rc ? rc : msg_pk_str_body(pk, s.p, s.n);
}

static int msg_pack_cstr(msg_sink *pk, const char *s)
{
    return msg_pk_str_with_body(pk, s, strlen(s));
}

static int msg_pack_dec(msg_sink *pk, qb_dec d)
{
    int rc = msg_pk_array(pk, 2);
    rc = rc ? rc : msg_pk_int64(pk, d.mant);
    return rc ? rc : msg_pk_int64(pk, d.scale);
}

/* A bad level (see msg_levels_ok): not a sink overflow, so QB_EINVAL. */
#define MSG_BAD_LEVEL 2

static int msg_pack_levels(msg_sink *out, const qb_level *lv, size_t n)
{
    /* A local copy of the sink: the byte stores through it may alias
     * anything reachable, so through out the compiler would reload p and
     * end after every store; a local whose address does not escape stays
     * in registers. */
    msg_sink sink = *out, *pk = &sink;
    if (msg_pk_array(pk, n) != 0) {
        *out = sink;
        return -1;
    }
    /* Validation without a branch per field (bitwise | of the
     * comparisons), in the packing pass: scales in range (a scale is an
     * int8_t, so msg_pku_int8 writes what msg_pk_int64 would: the
     * template's int8 and int64 forms agree on [-128, 127]), price > 0,
     * size >= 0 (which exclude INT64_MIN). */
    unsigned bad = 0;
    /* Room for n worst-case levels (n <= QB_MSG_MAX_LEVELS: no overflow),
     * checked once for the side; then every write is in bounds. */
    if ((size_t)(sink.end - sink.p) / MSG_LEVEL_MAX < n) {
        sink.overflow = true; /* nothing written past the end */
        *out = sink;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const qb_level *l = &lv[i];
        bad |= (unsigned)(l->price.scale + QB_DEC_MAX_SCALE) > 2u * QB_DEC_MAX_SCALE;
        bad |= (unsigned)(l->size.scale + QB_DEC_MAX_SCALE) > 2u * QB_DEC_MAX_SCALE;
        bad |= (unsigned)(l->price.mant <= 0);
        bad |= (unsigned)(l->size.mant < 0);
        /* Mantissas through the template's _uint64: for a valid level both
         * are >= 0, where its forms are exactly _int64's (fixint, uint8..64)
         * with one compare less; an invalid one fails the encode anyway. */
        msg_pku_array(pk, 4);
        msg_pku_uint64(pk, (uint64_t)l->price.mant);
        msg_pku_int8(pk, l->price.scale);
        msg_pku_uint64(pk, (uint64_t)l->size.mant);
        msg_pku_int8(pk, l->size.scale);
    }
    *out = sink;
    return bad ? MSG_BAD_LEVEL : 0;
}

static int msg_pack_map(const qb_msg *m, msg_sink *pk)
{
    /* v type ex sym nsym seq ets rts */
    size_t n = 8;
    const qb_ticker *t = &m->ticker;
    switch (m->type) {
    case QB_MSG_SNAPSHOT:
        n += 5; /* fid lid bids asks refresh */
        break;
    case QB_MSG_DELTA:
        n += 4;
        break;
    case QB_MSG_TRADE:
        n += 4; /* tid px qty side */
        break;
    case QB_MSG_STATUS:
        n += 2; /* state reason */
        break;
    case QB_MSG_TICKER:
        n += 1 + (t->has_bid ? 2 : 0) + (t->has_ask ? 2 : 0) + t->has_volume + t->has_change;
        break;
    }
    int rc = msg_pk_map(pk, n);
    rc = rc ? rc : msg_pack_key(pk, "v");
    rc = rc ? rc : msg_pk_uint64(pk, QB_PROTO_VERSION);
    rc = rc ? rc : msg_pack_key(pk, "type");
    rc = rc ? rc : msg_pack_cstr(pk, qb_msg_type_name(m->type));
    rc = rc ? rc : msg_pack_key(pk, "ex");
    rc = rc ? rc : msg_pack_qstr(pk, m->exchange);
    rc = rc ? rc : msg_pack_key(pk, "sym");
    rc = rc ? rc : msg_pack_qstr(pk, m->symbol);
    rc = rc ? rc : msg_pack_key(pk, "nsym");
    rc = rc ? rc : msg_pack_qstr(pk, m->native);
    rc = rc ? rc : msg_pack_key(pk, "seq");
    rc = rc ? rc : msg_pk_uint64(pk, m->seq);
    rc = rc ? rc : msg_pack_key(pk, "ets");
    rc = rc ? rc : msg_pk_uint64(pk, m->exch_ts);
    rc = rc ? rc : msg_pack_key(pk, "rts");
    rc = rc ? rc : msg_pk_uint64(pk, m->recv_ts);
    switch (m->type) {
    case QB_MSG_SNAPSHOT:
    case QB_MSG_DELTA:
        rc = rc ? rc : msg_pack_key(pk, "fid");
        rc = rc ? rc : msg_pk_uint64(pk, m->first_id);
        rc = rc ? rc : msg_pack_key(pk, "lid");
        rc = rc ? rc : msg_pk_uint64(pk, m->last_id);
        rc = rc ? rc : msg_pack_key(pk, "bids");
        rc = rc ? rc : msg_pack_levels(pk, m->bids, m->n_bids);
        rc = rc ? rc : msg_pack_key(pk, "asks");
        rc = rc ? rc : msg_pack_levels(pk, m->asks, m->n_asks);
        if (m->type == QB_MSG_SNAPSHOT) {
            rc = rc ? rc : msg_pack_key(pk, "refresh");
            rc = rc ? rc : (m->refresh ? msg_pk_true(pk) : msg_pk_false(pk));
        }
        break;
    case QB_MSG_TRADE:
        rc = rc ? rc : msg_pack_key(pk, "tid");
        rc = rc ? rc : msg_pk_uint64(pk, m->trade_id);
        rc = rc ? rc : msg_pack_key(pk, "px");
        rc = rc ? rc : msg_pack_dec(pk, m->price);
        rc = rc ? rc : msg_pack_key(pk, "qty");
        rc = rc ? rc : msg_pack_dec(pk, m->qty);
        rc = rc ? rc : msg_pack_key(pk, "side");
        rc = rc ? rc : msg_pack_cstr(pk, qb_side_name(m->side));
        break;
    case QB_MSG_STATUS:
        rc = rc ? rc : msg_pack_key(pk, "state");
        rc = rc ? rc : msg_pack_cstr(pk, qb_feed_state_name(m->state));
        rc = rc ? rc : msg_pack_key(pk, "reason");
        rc = rc ? rc : msg_pack_qstr(pk, m->reason.p ? m->reason : (qb_str){"", 0});
        break;
    case QB_MSG_TICKER:
        rc = rc ? rc : msg_pack_key(pk, "last");
        rc = rc ? rc : msg_pack_dec(pk, t->last);
        if (t->has_bid) {
            rc = rc ? rc : msg_pack_key(pk, "bid");
            rc = rc ? rc : msg_pack_dec(pk, t->bid);
            rc = rc ? rc : msg_pack_key(pk, "bidq");
            rc = rc ? rc : msg_pack_dec(pk, t->bid_qty);
        }
        if (t->has_ask) {
            rc = rc ? rc : msg_pack_key(pk, "ask");
            rc = rc ? rc : msg_pack_dec(pk, t->ask);
            rc = rc ? rc : msg_pack_key(pk, "askq");
            rc = rc ? rc : msg_pack_dec(pk, t->ask_qty);
        }
        if (t->has_volume) {
            rc = rc ? rc : msg_pack_key(pk, "vol");
            rc = rc ? rc : msg_pack_dec(pk, t->volume_24h);
        }
        if (t->has_change) {
            rc = rc ? rc : msg_pack_key(pk, "chg");
            rc = rc ? rc : msg_pack_dec(pk, t->change_24h);
        }
        break;
    }
    return rc;
}

static int msg_encode_map(const qb_msg *m, qb_buf *out, bool parts_ok)
{
    if (!msg_fields_ok(m, parts_ok)) {
        return QB_EINVAL;
    }
    size_t bound = MSG_FIXED_MAX;
    if (m->type == QB_MSG_SNAPSHOT || m->type == QB_MSG_DELTA) {
        bound += MSG_LEVEL_MAX * (m->n_bids + m->n_asks); /* <= 2 x QB_MSG_MAX_LEVELS */
    }
    if (qb_buf_reserve(out, bound) != QB_OK) {
        return QB_ENOMEM; /* the buffer is unchanged */
    }
    size_t start = out->len;
    msg_sink pk = {out->data + out->len, out->data + out->cap, false};
    if (msg_pack_map(m, &pk) != 0) {
        out->len = start;
        /* Only an overflow of the sink fails: the bound was too small. */
        return pk.overflow ? QB_ETOOBIG : QB_EINVAL;
    }
    out->len = (size_t)(pk.p - out->data);
    return QB_OK;
}

int qb_msg_encode_map(const qb_msg *m, qb_buf *out)
{
    if (m == NULL || out == NULL) {
        return QB_EINVAL;
    }
    return msg_encode_map(m, out, false);
}

int qb_msg_encode(const qb_msg *m, qb_buf *out)
{
    if (m == NULL || out == NULL) {
        return QB_EINVAL;
    }
    char topic[QB_TOPIC_MAX + 1];
    const char *kind = qb_msg_topic_kind(m->type);
    int tn = kind ? qb_topic_format(topic, sizeof topic, kind, m->exchange, m->symbol) : -1;
    if (tn < 0) {
        return QB_EINVAL;
    }
    size_t start = out->len;
    int rc = qb_buf_append(out, topic, (size_t)tn + 1); /* with its NUL */
    if (rc == QB_OK) {
        rc = msg_encode_map(m, out, true); /* exchange and symbol checked above */
    }
    if (rc != QB_OK) {
        out->len = start;
    }
    return rc;
}
