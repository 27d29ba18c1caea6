/*
 * oracle_msg.c: reference implementations that test_msg.c checks
 * proto/msg's encoder and decoder against (oracle_msg.h). Test code only:
 * never linked into a program.
 */
#include "oracle_msg.h"

#include "err.h"
#include "msg.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- the reference encoder: msgpack-c's plain callback packer ------------- */

static int ref_key(msgpack_packer *pk, const char *key)
{
    size_t n = strlen(key);
    int rc = msgpack_pack_str(pk, n);
    return rc ? rc : msgpack_pack_str_body(pk, key, n);
}

static int ref_qstr(msgpack_packer *pk, qb_str s)
{
    int rc = msgpack_pack_str(pk, s.n);
    return rc ? rc : msgpack_pack_str_body(pk, s.p, s.n);
}

static int ref_dec(msgpack_packer *pk, qb_dec d)
{
    int rc = msgpack_pack_array(pk, 2);
    rc = rc ? rc : msgpack_pack_int64(pk, d.mant);
    return rc ? rc : msgpack_pack_int64(pk, d.scale);
}

static int ref_levels(msgpack_packer *pk, const qb_level *lv, size_t n)
{
    int rc = msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = msgpack_pack_array(pk, 4);
        rc = rc ? rc : msgpack_pack_int64(pk, lv[i].price.mant);
        rc = rc ? rc : msgpack_pack_int64(pk, lv[i].price.scale);
        rc = rc ? rc : msgpack_pack_int64(pk, lv[i].size.mant);
        rc = rc ? rc : msgpack_pack_int64(pk, lv[i].size.scale);
    }
    return rc;
}

int ref_pack_map(const qb_msg *m, msgpack_packer *pk)
{
    size_t n = 8;
    const qb_ticker *t = &m->ticker;
    switch (m->type) {
    case QB_MSG_SNAPSHOT:
        n += 5;
        break;
    case QB_MSG_DELTA:
        n += 4;
        break;
    case QB_MSG_TRADE:
        n += 4;
        break;
    case QB_MSG_STATUS:
        n += 2;
        break;
    case QB_MSG_TICKER:
        n += 1 + (t->has_bid ? 2 : 0) + (t->has_ask ? 2 : 0) + t->has_volume + t->has_change;
        break;
    }
    int rc = msgpack_pack_map(pk, n);
    rc = rc ? rc : ref_key(pk, "v");
    rc = rc ? rc : msgpack_pack_uint64(pk, QB_PROTO_VERSION);
    rc = rc ? rc : ref_key(pk, "type");
    rc = rc ? rc : ref_key(pk, qb_msg_type_name(m->type));
    rc = rc ? rc : ref_key(pk, "ex");
    rc = rc ? rc : ref_qstr(pk, m->exchange);
    rc = rc ? rc : ref_key(pk, "sym");
    rc = rc ? rc : ref_qstr(pk, m->symbol);
    rc = rc ? rc : ref_key(pk, "nsym");
    rc = rc ? rc : ref_qstr(pk, m->native);
    rc = rc ? rc : ref_key(pk, "seq");
    rc = rc ? rc : msgpack_pack_uint64(pk, m->seq);
    rc = rc ? rc : ref_key(pk, "ets");
    rc = rc ? rc : msgpack_pack_uint64(pk, m->exch_ts);
    rc = rc ? rc : ref_key(pk, "rts");
    rc = rc ? rc : msgpack_pack_uint64(pk, m->recv_ts);
    switch (m->type) {
    case QB_MSG_SNAPSHOT:
    case QB_MSG_DELTA:
        rc = rc ? rc : ref_key(pk, "fid");
        rc = rc ? rc : msgpack_pack_uint64(pk, m->first_id);
        rc = rc ? rc : ref_key(pk, "lid");
        rc = rc ? rc : msgpack_pack_uint64(pk, m->last_id);
        rc = rc ? rc : ref_key(pk, "bids");
        rc = rc ? rc : ref_levels(pk, m->bids, m->n_bids);
        rc = rc ? rc : ref_key(pk, "asks");
        rc = rc ? rc : ref_levels(pk, m->asks, m->n_asks);
        if (m->type == QB_MSG_SNAPSHOT) {
            rc = rc ? rc : ref_key(pk, "refresh");
            rc = rc ? rc : (m->refresh ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
        }
        break;
    case QB_MSG_TRADE:
        rc = rc ? rc : ref_key(pk, "tid");
        rc = rc ? rc : msgpack_pack_uint64(pk, m->trade_id);
        rc = rc ? rc : ref_key(pk, "px");
        rc = rc ? rc : ref_dec(pk, m->price);
        rc = rc ? rc : ref_key(pk, "qty");
        rc = rc ? rc : ref_dec(pk, m->qty);
        rc = rc ? rc : ref_key(pk, "side");
        rc = rc ? rc : ref_key(pk, qb_side_name(m->side));
        break;
    case QB_MSG_STATUS:
        rc = rc ? rc : ref_key(pk, "state");
        rc = rc ? rc : ref_key(pk, qb_feed_state_name(m->state));
        rc = rc ? rc : ref_key(pk, "reason");
        rc = rc ? rc : ref_qstr(pk, m->reason.p ? m->reason : (qb_str){"", 0});
        break;
    case QB_MSG_TICKER:
        rc = rc ? rc : ref_key(pk, "last");
        rc = rc ? rc : ref_dec(pk, t->last);
        if (t->has_bid) {
            rc = rc ? rc : ref_key(pk, "bid");
            rc = rc ? rc : ref_dec(pk, t->bid);
            rc = rc ? rc : ref_key(pk, "bidq");
            rc = rc ? rc : ref_dec(pk, t->bid_qty);
        }
        if (t->has_ask) {
            rc = rc ? rc : ref_key(pk, "ask");
            rc = rc ? rc : ref_dec(pk, t->ask);
            rc = rc ? rc : ref_key(pk, "askq");
            rc = rc ? rc : ref_dec(pk, t->ask_qty);
        }
        if (t->has_volume) {
            rc = rc ? rc : ref_key(pk, "vol");
            rc = rc ? rc : ref_dec(pk, t->volume_24h);
        }
        if (t->has_change) {
            rc = rc ? rc : ref_key(pk, "chg");
            rc = rc ? rc : ref_dec(pk, t->change_24h);
        }
        break;
    }
    return rc;
}

/* ---- the previous decoder, as the reference ---------------------------- */

/* proto/msg.c's decoder before it moved to MsgPuck (msgpack-c's object tree
 * after a bounds pre-scan), kept verbatim but renamed (qb_ -> ref_, msg_ ->
 * ref_). The tests below feed both decoders the same frames (valid ones,
 * every truncation, a million random mutations, limit cases) and require
 * the same result code at every step and the same decoded fields. */
#define REF_NAME_MAX 64
#define REF_REASON_MAX 256
#define REF_MAX_ITEMS (2u * 5u * QB_MSG_MAX_LEVELS + 65536u)
#define REF_ZONE_CHUNK (64u << 10)

static bool ref_str_is(qb_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && memcmp(s.p, lit, n) == 0;
}

/* A topic part: non-empty printable ASCII without '.', space or NUL. */
static bool ref_part_ok(const char *p, size_t n, size_t max)
{
    if (p == NULL || n == 0 || n > max) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c >= 0x7f || c == '.') {
            return false;
        }
    }
    return true;
}

/* nsym: like a part, but '.' is allowed (it is not in the topic). */
static bool ref_native_ok(qb_str s)
{
    if (s.p == NULL || s.n == 0 || s.n > REF_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c <= 0x20 || c >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* ---- decoder ---------------------------------------------------------- */

struct ref_decoder {
    const uint8_t *frame;
    size_t len;
    size_t off;   /* start of the next map */
    size_t nmaps; /* maps decoded from this frame */
    int err;      /* sticky error of this frame, QB_OK while fine */
    qb_str topic;
    msgpack_zone zone; /* reused; holds the object tree of the last map */
    bool zone_ok;
    qb_level *lv[2]; /* scratch levels: bids, asks */
    size_t cap[2];
};

ref_decoder *ref_decoder_new(void)
{
    ref_decoder *d = calloc(1, sizeof *d);
    if (d == NULL) {
        return NULL;
    }
    /* One chunk holds the tree of a map of ~1000 levels: no malloc per
     * map once warm (msgpack_zone_clear keeps the first chunk). */
    if (!msgpack_zone_init(&d->zone, REF_ZONE_CHUNK)) {
        free(d);
        return NULL;
    }
    d->zone_ok = true;
    d->err = QB_EEOF;
    return d;
}

void ref_decoder_free(ref_decoder *d)
{
    if (d == NULL) {
        return;
    }
    if (d->zone_ok) {
        msgpack_zone_destroy(&d->zone);
    }
    free(d->lv[0]);
    free(d->lv[1]);
    free(d);
}

int ref_decoder_begin(ref_decoder *d, const void *fr, size_t len, qb_str *topic)
{
    d->frame = fr;
    d->len = 0;
    d->off = 0;
    d->nmaps = 0;
    d->err = QB_EPARSE;
    if (len > QB_MSG_MAX_FRAME) {
        d->err = QB_ETOOBIG;
        return QB_ETOOBIG;
    }
    if (fr == NULL) {
        return QB_EPARSE;
    }
    const uint8_t *p = fr;
    size_t lim = len < QB_TOPIC_MAX + 1 ? len : QB_TOPIC_MAX + 1;
    const uint8_t *nul = memchr(p, 0, lim);
    if (nul == NULL || nul == p) {
        return QB_EPARSE; /* no terminator within QB_TOPIC_MAX, or empty */
    }
    size_t tn = (size_t)(nul - p);
    for (size_t i = 0; i < tn; i++) {
        /* printable ASCII without '"' and '\\' (PROTOCOL.md section 3) */
        if (p[i] <= 0x20 || p[i] >= 0x7f || p[i] == '"' || p[i] == '\\') {
            return QB_EPARSE;
        }
    }
    d->len = len;
    d->off = tn + 1;
    d->topic = (qb_str){(const char *)p, tn};
    d->err = QB_OK;
    if (topic) {
        *topic = d->topic;
    }
    return QB_OK;
}

static inline int ref_need(size_t off, size_t n, size_t len)
{
    return n <= len - off ? QB_OK : QB_EPARSE;
}

static inline uint32_t ref_be(const uint8_t *p, int n)
{
    uint32_t v = 0;
    for (int i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Walks one msgpack object at p[0..len) without building it; see the top
 * of the file. Writes the object's length to *end. Iterative: "pending" is
 * the number of objects still to read, and each needs at least one byte. */
static int ref_scan(const uint8_t *p, size_t len, size_t *end)
{
    size_t off = 0;
    uint64_t pending = 1, items = 0;
    while (pending > 0) {
        if (off >= len) {
            return QB_EPARSE; /* truncated */
        }
        uint8_t b = p[off++];
        pending--;
        if (++items > REF_MAX_ITEMS) {
            return QB_ETOOBIG;
        }
        /* Fast paths for what levels are made of (fixints, sized ints,
         * short strings): no children, so only the payload bound matters;
         * a truncation is found by the next read either way. */
        if (b <= 0x7f || b >= 0xe0) {
            continue;
        }
        if (b >= 0xcc && b <= 0xd3) { /* (u)int 8/16/32/64: 1 << (b & 3) bytes */
            size_t sz = (size_t)1 << (b & 3);
            if (sz > len - off) {
                return QB_EPARSE;
            }
            off += sz;
            continue;
        }
        if ((b & 0xe0) == 0xa0) { /* fixstr */
            size_t sz = b & 0x1f;
            if (sz > len - off) {
                return QB_EPARSE;
            }
            off += sz;
            continue;
        }
        size_t skip = 0;  /* payload bytes */
        uint64_t add = 0; /* child objects */
        int lenb = 0;     /* bytes of a length or count field */
        int extra = 0;    /* fixed bytes after the length (ext type) */
        int kind = 0;     /* 0 payload, 1 array, 2 map */
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            /* fixint, nil, bool */
        } else if (b >= 0x80 && b <= 0x8f) {
            add = 2u * (b & 0x0f);
        } else if (b >= 0x90 && b <= 0x9f) {
            add = b & 0x0f;
        } else if (b >= 0xa0 && b <= 0xbf) {
            skip = b & 0x1f;
        } else {
            switch (b) {
            case 0xc4:
            case 0xd9:
                lenb = 1;
                break; /* bin8, str8 */
            case 0xc5:
            case 0xda:
                lenb = 2;
                break; /* bin16, str16 */
            case 0xc6:
            case 0xdb:
                lenb = 4;
                break; /* bin32, str32 */
            case 0xc7:
                lenb = 1;
                extra = 1;
                break; /* ext8 */
            case 0xc8:
                lenb = 2;
                extra = 1;
                break; /* ext16 */
            case 0xc9:
                lenb = 4;
                extra = 1;
                break; /* ext32 */
            case 0xca:
                skip = 4;
                break; /* float32 */
            case 0xcb:
                skip = 8;
                break; /* float64 */
            case 0xcc:
            case 0xd0:
                skip = 1;
                break; /* (u)int8 */
            case 0xcd:
            case 0xd1:
                skip = 2;
                break;
            case 0xce:
            case 0xd2:
                skip = 4;
                break;
            case 0xcf:
            case 0xd3:
                skip = 8;
                break;
            case 0xd4:
                skip = 2;
                break; /* fixext1..16 */
            case 0xd5:
                skip = 3;
                break;
            case 0xd6:
                skip = 5;
                break;
            case 0xd7:
                skip = 9;
                break;
            case 0xd8:
                skip = 17;
                break;
            case 0xdc:
                lenb = 2;
                kind = 1;
                break; /* array16/32 */
            case 0xdd:
                lenb = 4;
                kind = 1;
                break;
            case 0xde:
                lenb = 2;
                kind = 2;
                break; /* map16/32 */
            case 0xdf:
                lenb = 4;
                kind = 2;
                break;
            default:
                return QB_EPARSE; /* 0xc1 */
            }
        }
        if (lenb) {
            if (ref_need(off, (size_t)lenb, len) != QB_OK) {
                return QB_EPARSE;
            }
            uint32_t v = ref_be(p + off, lenb);
            off += (size_t)lenb;
            if (kind == 1) {
                add = v;
            } else if (kind == 2) {
                add = 2u * (uint64_t)v;
            } else {
                skip = (size_t)v + (size_t)extra;
            }
        }
        if (ref_need(off, skip, len) != QB_OK) {
            return QB_EPARSE;
        }
        off += skip;
        /* Every pending object needs one byte at least: a count that
         * cannot fit in what remains is a lie (or a truncation). */
        if (add > (uint64_t)(len - off) || pending + add > (uint64_t)(len - off)) {
            return QB_EPARSE;
        }
        if (add > REF_MAX_ITEMS) {
            return QB_ETOOBIG;
        }
        pending += add;
    }
    *end = off;
    return QB_OK;
}

/* Known keys; a table so the decoder can find each in one pass. */
enum {
    RK_V,
    RK_TYPE,
    RK_EX,
    RK_SYM,
    RK_NSYM,
    RK_SEQ,
    RK_ETS,
    RK_RTS,
    RK_FID,
    RK_LID,
    RK_BIDS,
    RK_ASKS,
    RK_REFRESH,
    RK_TID,
    RK_PX,
    RK_QTY,
    RK_SIDE,
    RK_STATE,
    RK_REASON,
    RK_LAST,
    RK_BID,
    RK_BIDQ,
    RK_ASK,
    RK_ASKQ,
    RK_VOL,
    RK_CHG,
    RK_COUNT
};

static const char *const ref_keys[RK_COUNT] = {
    "v",      "type", "ex",   "sym",     "nsym", "seq",  "ets", "rts",  "fid",
    "lid",    "bids", "asks", "refresh", "tid",  "px",   "qty", "side", "state",
    "reason", "last", "bid",  "bidq",    "ask",  "askq", "vol", "chg",
};

static const uint8_t ref_key_lens[RK_COUNT] = {
    1, 4, 2, 3, 4, 3, 3, 3, 3, 3, 4, 4, 7, 3, 2, 3, 4, 5, 6, 4, 3, 4, 3, 4, 3, 3,
};

static int ref_key_index(const msgpack_object *k)
{
    if (k->type != MSGPACK_OBJECT_STR || k->via.str.size > 7 || k->via.str.size == 0) {
        return -1; /* the longest key is "refresh" */
    }
    size_t n = k->via.str.size;
    const char *p = k->via.str.ptr;
    for (int i = 0; i < RK_COUNT; i++) {
        if (ref_key_lens[i] == n && ref_keys[i][0] == p[0] && memcmp(p, ref_keys[i], n) == 0) {
            return i;
        }
    }
    return -1;
}

static int ref_get_u64(const msgpack_object *o, uint64_t *out)
{
    if (o == NULL || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        return QB_EPARSE;
    }
    *out = o->via.u64;
    return QB_OK;
}

static int ref_get_i64(const msgpack_object *o, int64_t *out)
{
    if (o == NULL) {
        return QB_EPARSE;
    }
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)INT64_MAX) {
            return QB_EPARSE;
        }
        *out = (int64_t)o->via.u64;
        return QB_OK;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return QB_OK;
    }
    return QB_EPARSE;
}

static int ref_get_str(const msgpack_object *o, qb_str *out)
{
    if (o == NULL || o->type != MSGPACK_OBJECT_STR) {
        return QB_EPARSE;
    }
    *out = (qb_str){o->via.str.size ? o->via.str.ptr : "", o->via.str.size};
    return QB_OK;
}

/* A mantissa and a scale as two msgpack integers. */
static int ref_get_dec2(const msgpack_object *m, const msgpack_object *s, qb_dec *out)
{
    int64_t mant, scale;
    if (ref_get_i64(m, &mant) != QB_OK || ref_get_i64(s, &scale) != QB_OK || mant == INT64_MIN ||
        scale < -QB_DEC_MAX_SCALE || scale > QB_DEC_MAX_SCALE) {
        return QB_EPARSE;
    }
    *out = (qb_dec){mant, (int8_t)scale};
    return QB_OK;
}

/* [mantissa, scale] */
static int ref_get_dec(const msgpack_object *o, qb_dec *out)
{
    if (o == NULL || o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 2) {
        return QB_EPARSE;
    }
    return ref_get_dec2(&o->via.array.ptr[0], &o->via.array.ptr[1], out);
}

static int ref_get_levels(ref_decoder *d, int side, const msgpack_object *o, const qb_level **lv,
                          size_t *n)
{
    if (o == NULL || o->type != MSGPACK_OBJECT_ARRAY) {
        return QB_EPARSE;
    }
    size_t cnt = o->via.array.size;
    if (cnt > QB_MSG_MAX_LEVELS) {
        return QB_ETOOBIG;
    }
    if (cnt > d->cap[side]) {
        size_t cap = d->cap[side] ? d->cap[side] : 256;
        while (cap < cnt) {
            cap *= 2;
        }
        if (cap > QB_MSG_MAX_LEVELS) {
            cap = QB_MSG_MAX_LEVELS;
        }
        qb_level *p = realloc(d->lv[side], cap * sizeof *p);
        if (p == NULL) {
            return QB_ENOMEM;
        }
        d->lv[side] = p;
        d->cap[side] = cap;
    }
    for (size_t i = 0; i < cnt; i++) {
        const msgpack_object *e = &o->via.array.ptr[i];
        if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 4) {
            return QB_EPARSE;
        }
        const msgpack_object *f = e->via.array.ptr;
        qb_level l;
        if (ref_get_dec2(&f[0], &f[1], &l.price) != QB_OK ||
            ref_get_dec2(&f[2], &f[3], &l.size) != QB_OK || l.price.mant <= 0 || l.size.mant < 0) {
            return QB_EPARSE;
        }
        d->lv[side][i] = l;
    }
    *lv = cnt ? d->lv[side] : NULL;
    *n = cnt;
    return QB_OK;
}

static int ref_lookup(qb_str s, const char *const *names, int count)
{
    for (int i = 0; i < count; i++) {
        if (ref_str_is(s, names[i])) {
            return i;
        }
    }
    return -1;
}

static int ref_from_object(ref_decoder *d, const msgpack_object *root, qb_msg *out)
{
    if (root->type != MSGPACK_OBJECT_MAP) {
        return QB_EPARSE;
    }
    const msgpack_object *f[RK_COUNT] = {0};
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object_kv *kv = &root->via.map.ptr[i];
        int k = ref_key_index(&kv->key);
        if (k < 0) {
            continue; /* unknown key: forward compatibility */
        }
        if (f[k] != NULL) {
            return QB_EPARSE; /* a duplicate key is ambiguous */
        }
        f[k] = &kv->val;
    }
    /* Version first: a future version may change everything else. */
    uint64_t v;
    if (ref_get_u64(f[RK_V], &v) != QB_OK || v != QB_PROTO_VERSION) {
        return QB_EVERSION;
    }
    qb_msg m;
    memset(&m, 0, sizeof m);
    m.version = (uint32_t)v;
    qb_str type;
    if (ref_get_str(f[RK_TYPE], &type) != QB_OK) {
        return QB_EPARSE;
    }
    static const char *const types[] = {"snapshot", "delta", "trade", "status", "ticker"};
    int ti = ref_lookup(type, types, 5);
    if (ti < 0) {
        return QB_EPARSE;
    }
    m.type = (qb_msg_type)(ti + 1);
    if (ref_get_str(f[RK_EX], &m.exchange) != QB_OK || ref_get_str(f[RK_SYM], &m.symbol) != QB_OK ||
        ref_get_str(f[RK_NSYM], &m.native) != QB_OK ||
        !ref_part_ok(m.exchange.p, m.exchange.n, REF_NAME_MAX) ||
        !ref_part_ok(m.symbol.p, m.symbol.n, REF_NAME_MAX) || !ref_native_ok(m.native)) {
        return QB_EPARSE;
    }
    /* The topic the frame was routed by must be this message's topic. */
    char topic[QB_TOPIC_MAX + 1];
    int tn = qb_topic_format(topic, sizeof topic, qb_msg_topic_kind(m.type), m.exchange, m.symbol);
    if (tn < 0 || (size_t)tn != d->topic.n || memcmp(topic, d->topic.p, d->topic.n) != 0) {
        return QB_EPARSE;
    }
    if (ref_get_u64(f[RK_SEQ], &m.seq) != QB_OK || ref_get_u64(f[RK_ETS], &m.exch_ts) != QB_OK ||
        ref_get_u64(f[RK_RTS], &m.recv_ts) != QB_OK) {
        return QB_EPARSE;
    }
    int rc;
    switch (m.type) {
    case QB_MSG_SNAPSHOT:
    case QB_MSG_DELTA:
        if (ref_get_u64(f[RK_FID], &m.first_id) != QB_OK ||
            ref_get_u64(f[RK_LID], &m.last_id) != QB_OK) {
            return QB_EPARSE;
        }
        if ((rc = ref_get_levels(d, 0, f[RK_BIDS], &m.bids, &m.n_bids)) != QB_OK ||
            (rc = ref_get_levels(d, 1, f[RK_ASKS], &m.asks, &m.n_asks)) != QB_OK) {
            return rc;
        }
        if (m.type == QB_MSG_SNAPSHOT) {
            if (f[RK_REFRESH] == NULL || f[RK_REFRESH]->type != MSGPACK_OBJECT_BOOLEAN) {
                return QB_EPARSE;
            }
            m.refresh = f[RK_REFRESH]->via.boolean;
        }
        break;
    case QB_MSG_TRADE: {
        qb_str side;
        static const char *const sides[] = {"unknown", "buy", "sell"};
        if (ref_get_u64(f[RK_TID], &m.trade_id) != QB_OK ||
            ref_get_dec(f[RK_PX], &m.price) != QB_OK || ref_get_dec(f[RK_QTY], &m.qty) != QB_OK ||
            ref_get_str(f[RK_SIDE], &side) != QB_OK || m.price.mant <= 0 || m.qty.mant < 0) {
            return QB_EPARSE;
        }
        int si = ref_lookup(side, sides, 3);
        if (si < 0) {
            return QB_EPARSE;
        }
        m.side = (qb_side)si;
        break;
    }
    case QB_MSG_STATUS: {
        qb_str state;
        static const char *const states[] = {"syncing", "live", "stale", "resyncing", "down"};
        if (ref_get_str(f[RK_STATE], &state) != QB_OK ||
            ref_get_str(f[RK_REASON], &m.reason) != QB_OK || m.reason.n > REF_REASON_MAX) {
            return QB_EPARSE;
        }
        int si = ref_lookup(state, states, 5);
        if (si < 0) {
            return QB_EPARSE;
        }
        m.state = (qb_feed_state)si;
        break;
    }
    case QB_MSG_TICKER: {
        qb_ticker *t = &m.ticker;
        if (ref_get_dec(f[RK_LAST], &t->last) != QB_OK) {
            return QB_EPARSE;
        }
        /* bid and bidq (ask and askq) come together or not at all */
        if ((f[RK_BID] != NULL) != (f[RK_BIDQ] != NULL) ||
            (f[RK_ASK] != NULL) != (f[RK_ASKQ] != NULL)) {
            return QB_EPARSE;
        }
        if (f[RK_BID]) {
            if (ref_get_dec(f[RK_BID], &t->bid) != QB_OK ||
                ref_get_dec(f[RK_BIDQ], &t->bid_qty) != QB_OK) {
                return QB_EPARSE;
            }
            t->has_bid = true;
        }
        if (f[RK_ASK]) {
            if (ref_get_dec(f[RK_ASK], &t->ask) != QB_OK ||
                ref_get_dec(f[RK_ASKQ], &t->ask_qty) != QB_OK) {
                return QB_EPARSE;
            }
            t->has_ask = true;
        }
        if (f[RK_VOL]) {
            if (ref_get_dec(f[RK_VOL], &t->volume_24h) != QB_OK) {
                return QB_EPARSE;
            }
            t->has_volume = true;
        }
        if (f[RK_CHG]) {
            if (ref_get_dec(f[RK_CHG], &t->change_24h) != QB_OK) {
                return QB_EPARSE;
            }
            t->has_change = true;
        }
        break;
    }
    }
    *out = m;
    return QB_OK;
}

int ref_decoder_next(ref_decoder *d, qb_msg *out)
{
    if (d->err != QB_OK) {
        return d->err;
    }
    if (d->off >= d->len) {
        /* A frame with a topic and no map carries nothing: malformed. */
        d->err = d->nmaps ? QB_EEOF : QB_EPARSE;
        return d->err;
    }
    const uint8_t *p = d->frame + d->off;
    size_t avail = d->len - d->off, n = 0;
    int rc = QB_OK;
    if ((p[0] & 0xf0) != 0x80 && p[0] != 0xde && p[0] != 0xdf) {
        rc = QB_EPARSE; /* the top-level object must be a map */
    } else {
        rc = ref_scan(p, avail, &n);
    }
    if (rc == QB_OK) {
        size_t uoff = 0;
        msgpack_object root;
        msgpack_zone_clear(&d->zone); /* frees nothing but extra chunks */
        msgpack_unpack_return ur = msgpack_unpack((const char *)p, n, &uoff, &d->zone, &root);
        if (ur != MSGPACK_UNPACK_SUCCESS || uoff != n) {
            rc = QB_EPARSE; /* includes nesting deeper than msgpack-c's stack */
        } else {
            rc = ref_from_object(d, &root, out);
        }
    }
    if (rc != QB_OK) {
        d->err = rc;
        return rc;
    }
    d->off += n;
    d->nmaps++;
    return QB_OK;
}
