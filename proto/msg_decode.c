/*
 * msg_decode.c: the allocation-free msgpack decoder of the wire protocol
 * (msg.h, spec in PROTOCOL.md) on MsgPuck (Tarantool's msgpack library,
 * libmsgpuck 1.0.3). The encoder is msg_encode.c; what both share (field
 * limits, the nsym rule) is in msg_int.h.
 *
 * Decoding untrusted frames, allocating nothing once the level arrays are
 * warm (MsgPuck's mp_typeof, mp_decode_* and mp_next; no object tree):
 *
 *   frame: topic | 00 | map | map ...
 *                       |
 *   fast path   msg_walk() reads the map once with every read bounds-checked:
 *               keys are matched as they come, levels decoded straight into
 *               the decoder's arrays, other values skipped by msg_walk_skip
 *               (msg_scan for containers). It only says "this map is
 *               well-formed, within the limits, no duplicate key, valid
 *               levels" or "not sure"; it never picks an error.
 *   exact path  for "not sure" (bad or unusual input): msg_scan() walks the
 *               bytes without decoding: every length and element count must
 *               fit in the bytes that remain, at most MSG_MAX_ITEMS objects
 *               and MSG_MAX_DEPTH open containers (the limits msgpack-c's
 *               object tree imposed before; iterative, fixed stack). Then
 *               msg_collect() runs the key loop with unchecked MsgPuck reads
 *               over the scanned bytes (duplicate known key: QB_EPARSE).
 *   then        msg_build() checks the version first and every field after
 *               it, in one fixed order, so each bad map gets the same error
 *               code as with the msgpack-c decoder this replaced (test_msg
 *               keeps that decoder and compares both on a million mutated
 *               frames).
 *
 * MsgPuck's mp_decode_* and mp_next do not check bounds: the fast path
 * checks before each read, the exact path reads only what msg_scan
 * accepted. msg_scan rather than mp_check() because mp_check knows no item
 * or depth limit and would not give the protocol's error codes. Nothing
 * recurses on input.
 *
 * MsgPuck is used header-only (MP_SOURCE defined here, its README's "Just
 * a Header" mode), not by linking Debian's libmsgpuck.a: that archive is
 * built without -fPIC and qbproto is linked into libquotebus.so. So no
 * other file of a program may define MP_SOURCE or link libmsgpuck.a.
 *
 * Threads: a decoder belongs to one thread.
 */
#include "msg.h"
#include "msg_int.h"

#include "err.h"
#include "topic.h"

/* MsgPuck's documented header-only mode: this file holds the library's
 * out-of-line functions and tables (see the top of the file). */
#define MP_SOURCE 1
#include <msgpuck.h>
#include <stdlib.h>
#include <string.h>

/* Objects in one map: two full sides of levels (5 objects each) plus room
 * for the scalar fields and unknown keys. */
#define MSG_MAX_ITEMS (2u * 5u * QB_MSG_MAX_LEVELS + 65536u)

/* ---- decoder ---------------------------------------------------------- */

struct qb_decoder {
    const uint8_t *frame;
    size_t len;
    size_t off;   /* start of the next map */
    size_t nmaps; /* maps decoded from this frame */
    int err;      /* sticky error of this frame, QB_OK while fine */
    qb_str topic;
    qb_level *lv[2]; /* scratch levels: bids, asks */
    size_t cap[2];
};

qb_decoder *qb_decoder_new(void)
{
    qb_decoder *d = calloc(1, sizeof *d);
    if (d == NULL) {
        return NULL;
    }
    d->err = QB_EEOF;
    return d;
}

void qb_decoder_free(qb_decoder *d)
{
    if (d == NULL) {
        return;
    }
    free(d->lv[0]);
    free(d->lv[1]);
    free(d);
}

int qb_decoder_begin(qb_decoder *d, const void *frame, size_t len, qb_str *topic)
{
    d->frame = frame;
    d->len = 0;
    d->off = 0;
    d->nmaps = 0;
    d->err = QB_EPARSE;
    if (len > QB_MSG_MAX_FRAME) {
        d->err = QB_ETOOBIG;
        return QB_ETOOBIG;
    }
    if (frame == NULL) {
        return QB_EPARSE;
    }
    const uint8_t *p = frame;
    size_t lim = len < QB_TOPIC_MAX + 1 ? len : QB_TOPIC_MAX + 1;
    const uint8_t *nul = memchr(p, 0, lim);
    if (nul == NULL || nul == p) {
        return QB_EPARSE; /* no terminator within QB_TOPIC_MAX, or empty */
    }
    size_t tn = (size_t)(nul - p);
    if (!qb_topic_bytes_ok((const char *)p, tn)) {
        return QB_EPARSE; /* the byte rule of topic.h; the map check does the rest */
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

static inline int msg_need(size_t off, size_t n, size_t len)
{
    return n <= len - off ? QB_OK : QB_EPARSE;
}

static inline uint32_t msg_be(const uint8_t *p, int n)
{
    uint32_t v = 0;
    for (int i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Containers open at once that a map may nest: msgpack-c 4.0's
 * MSGPACK_EMBED_STACK_SIZE, the limit this protocol always had. */
#define MSG_MAX_DEPTH 32

/* The exact path's scan: walks one msgpack object at p[0..len) without
 * decoding it; see the top of the file. Writes the object's length to *end.
 * Iterative: "pending" is the number of objects still to read, and each
 * needs at least one byte; stk[] holds the elements left in each open
 * non-empty container, to find a container header read while max_depth are
 * open (reported only once the bytes are known to be well-formed, as
 * msgpack-c did). *nitems (when not NULL) gets the number of objects. */
static int msg_scan(const uint8_t *p, size_t len, int max_depth, size_t *end, uint64_t *nitems)
{
    size_t off = 0;
    uint64_t pending = 1, items = 0;
    uint64_t stk[MSG_MAX_DEPTH];
    int top = 0;
    bool deep = false;
    while (pending > 0) {
        if (off >= len) {
            return QB_EPARSE; /* truncated */
        }
        uint8_t b = p[off++];
        pending--;
        if (++items > MSG_MAX_ITEMS) {
            return QB_ETOOBIG;
        }
        /* Fast paths for what levels are made of (fixints, sized ints,
         * short strings): no children, so only the payload bound matters;
         * a truncation is found by the next read either way. */
        if (b <= 0x7f || b >= 0xe0) {
            goto leaf;
        }
        if (b == 0x94 && top < max_depth) {
            /* A level: fixarray of 4 integers. Walked in one go, with the
             * same checks the general path below makes for it, and left to
             * that path (from this byte) when anything is unusual. */
            size_t o = off;
            if (pending + 4 <= (uint64_t)(len - o) && items + 4 <= MSG_MAX_ITEMS) {
                int i = 0;
                for (; i < 4; i++) {
                    uint8_t e = p[o++]; /* o < len: 4 bytes at least remained */
                    if (e <= 0x7f || e >= 0xe0) {
                        continue;
                    }
                    if (e < 0xcc || e > 0xd3) {
                        break;
                    }
                    size_t sz = (size_t)1 << (e & 3);
                    /* the elements after this one need a byte each */
                    if (sz + (size_t)(3 - i) > len - o) {
                        break;
                    }
                    o += sz;
                }
                if (i == 4) {
                    off = o;
                    items += 4;
                    goto leaf; /* the level is one complete object */
                }
            }
        }
        if (b >= 0xcc && b <= 0xd3) { /* (u)int 8/16/32/64: 1 << (b & 3) bytes */
            size_t sz = (size_t)1 << (b & 3);
            if (sz > len - off) {
                return QB_EPARSE;
            }
            off += sz;
            goto leaf;
        }
        if ((b & 0xe0) == 0xa0) { /* fixstr */
            size_t sz = b & 0x1f;
            if (sz > len - off) {
                return QB_EPARSE;
            }
            off += sz;
            goto leaf;
        }
        size_t skip = 0;  /* payload bytes */
        uint64_t add = 0; /* child objects */
        int lenb = 0;     /* bytes of a length or count field */
        int extra = 0;    /* fixed bytes after the length (ext type) */
        int kind = 0;     /* 0 payload, 1 array, 2 map */
        if (b == 0xc0 || b == 0xc2 || b == 0xc3) {
            /* nil, bool */
        } else if (b >= 0x80 && b <= 0x8f) {
            add = 2u * (b & 0x0f);
            kind = 2;
        } else if (b >= 0x90 && b <= 0x9f) {
            add = b & 0x0f;
            kind = 1;
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
            if (msg_need(off, (size_t)lenb, len) != QB_OK) {
                return QB_EPARSE;
            }
            uint32_t v = msg_be(p + off, lenb);
            off += (size_t)lenb;
            if (kind == 1) {
                add = v;
            } else if (kind == 2) {
                add = 2u * (uint64_t)v;
            } else {
                skip = (size_t)v + (size_t)extra;
            }
        }
        if (msg_need(off, skip, len) != QB_OK) {
            return QB_EPARSE;
        }
        off += skip;
        /* Every pending object needs one byte at least: a count that
         * cannot fit in what remains is a lie (or a truncation). */
        if (add > (uint64_t)(len - off) || pending + add > (uint64_t)(len - off)) {
            return QB_EPARSE;
        }
        if (add > MSG_MAX_ITEMS) {
            return QB_ETOOBIG;
        }
        pending += add;
        if (kind != 0 && !deep) {
            if (top >= max_depth) {
                deep = true; /* any container header at this depth */
                top = 0;
                continue;
            }
            if (add > 0) {
                stk[top++] = add;
                continue;
            }
        }
    leaf:
        /* One object complete: it completes its container when it was the
         * last element, and so on outwards. */
        while (top > 0 && --stk[top - 1] == 0) {
            top--;
        }
    }
    if (deep) {
        return QB_EPARSE;
    }
    *end = off;
    if (nitems != NULL) {
        *nitems = items;
    }
    return QB_OK;
}

/* Reads with MsgPuck's mp_decode_* and mp_next are unchecked: they run on
 * bytes msg_scan accepted (every length lies inside the map, no 0xc1), or
 * after the fast path's own bounds check. mp_decode_* must only be called
 * for the type mp_typeof reported (they assume it). */

/* Known keys. */
enum {
    K_V,
    K_TYPE,
    K_EX,
    K_SYM,
    K_NSYM,
    K_SEQ,
    K_ETS,
    K_RTS,
    K_FID,
    K_LID,
    K_BIDS,
    K_ASKS,
    K_REFRESH,
    K_TID,
    K_PX,
    K_QTY,
    K_SIDE,
    K_STATE,
    K_REASON,
    K_LAST,
    K_BID,
    K_BIDQ,
    K_ASK,
    K_ASKQ,
    K_VOL,
    K_CHG,
    K_COUNT
};

/* Index of a key string, -1 for an unknown key; by length first, then a
 * fixed-size compare. */
static int msg_key_index(const char *p, uint32_t n)
{
    static const char k3[][4] = {"sym", "seq", "ets", "rts", "fid", "lid",
                                 "tid", "qty", "bid", "ask", "vol", "chg"};
    static const int8_t i3[] = {K_SYM, K_SEQ, K_ETS, K_RTS, K_FID, K_LID,
                                K_TID, K_QTY, K_BID, K_ASK, K_VOL, K_CHG};
    static const char k4[][5] = {"type", "nsym", "bids", "asks", "side", "last", "bidq", "askq"};
    static const int8_t i4[] = {K_TYPE, K_NSYM, K_BIDS, K_ASKS, K_SIDE, K_LAST, K_BIDQ, K_ASKQ};
    switch (n) {
    case 1:
        return p[0] == 'v' ? K_V : -1;
    case 2:
        if (p[1] == 'x' && (p[0] == 'e' || p[0] == 'p')) {
            return p[0] == 'e' ? K_EX : K_PX;
        }
        return -1;
    case 3:
        for (size_t i = 0; i < sizeof i3; i++) {
            if (memcmp(p, k3[i], 3) == 0) {
                return i3[i];
            }
        }
        return -1;
    case 4:
        for (size_t i = 0; i < sizeof i4; i++) {
            if (memcmp(p, k4[i], 4) == 0) {
                return i4[i];
            }
        }
        return -1;
    case 5:
        return memcmp(p, "state", 5) == 0 ? K_STATE : -1;
    case 6:
        return memcmp(p, "reason", 6) == 0 ? K_REASON : -1;
    case 7:
        return memcmp(p, "refresh", 7) == 0 ? K_REFRESH : -1;
    default:
        return -1;
    }
}

/* Integers the way msgpack-c classified them: a value >= 0 in any encoding
 * is "positive" (uint64), a value < 0 "negative". */
static int msg_get_u64(const char *q, uint64_t *out)
{
    if (q == NULL) {
        return QB_EPARSE;
    }
    switch (mp_typeof(*q)) {
    case MP_UINT:
        *out = mp_decode_uint(&q);
        return QB_OK;
    case MP_INT: {
        int64_t v = mp_decode_int(&q);
        if (v < 0) {
            return QB_EPARSE;
        }
        *out = (uint64_t)v;
        return QB_OK;
    }
    default:
        return QB_EPARSE;
    }
}

/* An int64 at *q, advancing it; false for another type or a uint64 above
 * INT64_MAX (then *q is unspecified). */
static inline bool msg_rd_i64(const char **q, int64_t *out)
{
    uint8_t c = (uint8_t) * *q;
    if (c <= 0x7f) { /* positive fixint: the usual scale and small sizes */
        *out = c;
        (*q)++;
        return true;
    }
    switch (mp_typeof((char)c)) {
    case MP_UINT: {
        uint64_t u = mp_decode_uint(q);
        if (u > (uint64_t)INT64_MAX) {
            return false;
        }
        *out = (int64_t)u;
        return true;
    }
    case MP_INT:
        *out = mp_decode_int(q);
        return true;
    default:
        return false;
    }
}

static int msg_get_str(const char *q, qb_str *out)
{
    if (q == NULL || mp_typeof(*q) != MP_STR) {
        return QB_EPARSE;
    }
    uint32_t n;
    const char *s = mp_decode_str(&q, &n);
    *out = (qb_str){n ? s : "", n};
    return QB_OK;
}

/* A mantissa and a scale as two msgpack integers, advancing *q. */
static inline bool msg_rd_dec2(const char **q, qb_dec *out)
{
    int64_t mant, scale;
    if (!msg_rd_i64(q, &mant) || !msg_rd_i64(q, &scale) || mant == INT64_MIN ||
        scale < -QB_DEC_MAX_SCALE || scale > QB_DEC_MAX_SCALE) {
        return false;
    }
    *out = (qb_dec){mant, (int8_t)scale};
    return true;
}

/* [mantissa, scale] */
static int msg_get_dec(const char *q, qb_dec *out)
{
    if (q == NULL || mp_typeof(*q) != MP_ARRAY || mp_decode_array(&q) != 2) {
        return QB_EPARSE;
    }
    return msg_rd_dec2(&q, out) ? QB_OK : QB_EPARSE;
}

/* Grows the decoder's level array of side to hold cnt levels (cnt <=
 * QB_MSG_MAX_LEVELS, checked by the caller): doubling from 256, capped.
 * QB_OK or QB_ENOMEM (the array is unchanged). */
static int msg_levels_reserve(qb_decoder *d, int side, size_t cnt)
{
    if (cnt <= d->cap[side]) {
        return QB_OK;
    }
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
    return QB_OK;
}

/* The levels of one side at *q into the decoder's array; advances *q past
 * the array on success (on error *q is unspecified). */
static int msg_get_levels(qb_decoder *d, int side, const char **q, size_t *n)
{
    if (mp_typeof(**q) != MP_ARRAY) {
        return QB_EPARSE;
    }
    size_t cnt = mp_decode_array(q);
    if (cnt > QB_MSG_MAX_LEVELS) {
        return QB_ETOOBIG;
    }
    if (msg_levels_reserve(d, side, cnt) != QB_OK) {
        return QB_ENOMEM;
    }
    qb_level *lv = d->lv[side];
    for (size_t i = 0; i < cnt; i++) {
        const char *e = *q;
        if ((uint8_t)*e == 0x94) { /* fixarray of 4: what the encoder writes */
            e++;
        } else if (mp_typeof(*e) != MP_ARRAY || mp_decode_array(&e) != 4) {
            return QB_EPARSE;
        }
        qb_level l;
        if (!msg_rd_dec2(&e, &l.price) || !msg_rd_dec2(&e, &l.size) || l.price.mant <= 0 ||
            l.size.mant < 0) {
            return QB_EPARSE;
        }
        lv[i] = l;
        *q = e;
    }
    *n = cnt;
    return QB_OK;
}

/* Index of s in names (each with its length), -1 when absent. */
static int msg_lookup(qb_str s, const qb_str *names, int count)
{
    for (int i = 0; i < count; i++) {
        if (s.n == names[i].n && memcmp(s.p, names[i].p, s.n) == 0) {
            return i;
        }
    }
    return -1;
}

/* The topic the frame was routed by must be "<kind>.<ex>.<sym>" of m (the
 * parts are already known to be valid topic parts). */
static bool msg_topic_is(qb_str topic, const qb_msg *m)
{
    /* qb_msg_topic_kind's names with their lengths (m->type is valid) */
    static const qb_str kinds[] = {QB_STR("book"), QB_STR("book"), QB_STR("trade"),
                                   QB_STR("status"), QB_STR("ticker")};
    const char *kind = kinds[m->type - 1].p;
    size_t nk = kinds[m->type - 1].n;
    if (topic.n != nk + 1 + m->exchange.n + 1 + m->symbol.n) {
        return false;
    }
    const char *t = topic.p;
    return memcmp(t, kind, nk) == 0 && t[nk] == '.' &&
           memcmp(t + nk + 1, m->exchange.p, m->exchange.n) == 0 &&
           t[nk + 1 + m->exchange.n] == '.' &&
           memcmp(t + nk + 2 + m->exchange.n, m->symbol.p, m->symbol.n) == 0;
}

/* What the key loop of a map found: where each known key's value starts
 * (NULL: absent), and bids and asks, decoded as they were met. */
typedef struct msg_fields {
    const char *f[K_COUNT];
    int lrc[2]; /* bids, asks: QB_OK or the error of their value */
    size_t ln[2];
} msg_fields;

/* The key loop over a map that msg_scan accepted (unchecked reads).
 * QB_EPARSE for a duplicate known key. */
static int msg_collect(qb_decoder *d, const char *p, msg_fields *fs)
{
    memset(fs, 0, sizeof *fs);
    const char **f = fs->f;
    int *lrc = fs->lrc;
    size_t *ln = fs->ln;
    uint32_t npairs = mp_decode_map(&p);
    for (uint32_t i = 0; i < npairs; i++) {
        int k = -1;
        if (mp_typeof(*p) == MP_STR) {
            uint32_t kn;
            const char *ks = mp_decode_str(&p, &kn);
            k = msg_key_index(ks, kn);
        } else {
            mp_next(&p);
        }
        if (k < 0) {
            mp_next(&p); /* unknown key: forward compatibility */
            continue;
        }
        if (f[k] != NULL) {
            return QB_EPARSE; /* a duplicate key is ambiguous */
        }
        f[k] = p;
        if (k == K_BIDS || k == K_ASKS) {
            int side = k == K_ASKS;
            const char *q = p;
            lrc[side] = msg_get_levels(d, side, &q, &ln[side]);
            if (lrc[side] == QB_OK) {
                p = q;
                continue;
            }
        }
        mp_next(&p);
    }
    return QB_OK;
}

/* Checks and converts the fields of one map. The checks and their order
 * (hence which error a bad map gets) are the protocol's: version, type,
 * names, topic, integers, levels (bids then asks), the rest; duplicate keys
 * and malformed bytes were rejected before. */
static int msg_build(qb_decoder *d, const msg_fields *fs, qb_msg *out)
{
    const char *const *f = fs->f;
    const int *lrc = fs->lrc;
    const size_t *ln = fs->ln;
    /* Version first: a future version may change everything else. */
    uint64_t v;
    if (msg_get_u64(f[K_V], &v) != QB_OK || v != QB_PROTO_VERSION) {
        return QB_EVERSION;
    }
    qb_msg m;
    memset(&m, 0, sizeof m);
    m.version = (uint32_t)v;
    qb_str type;
    if (msg_get_str(f[K_TYPE], &type) != QB_OK) {
        return QB_EPARSE;
    }
    static const qb_str types[] = {QB_STR("snapshot"), QB_STR("delta"), QB_STR("trade"),
                                   QB_STR("status"), QB_STR("ticker")};
    int ti = msg_lookup(type, types, 5);
    if (ti < 0) {
        return QB_EPARSE;
    }
    m.type = (qb_msg_type)(ti + 1);
    if (msg_get_str(f[K_EX], &m.exchange) != QB_OK || msg_get_str(f[K_SYM], &m.symbol) != QB_OK ||
        msg_get_str(f[K_NSYM], &m.native) != QB_OK ||
        !qb_topic_part_ok(m.exchange.p, m.exchange.n) ||
        !qb_topic_part_ok(m.symbol.p, m.symbol.n) || !msg_native_ok(m.native)) {
        return QB_EPARSE;
    }
    if (!msg_topic_is(d->topic, &m)) {
        return QB_EPARSE;
    }
    if (msg_get_u64(f[K_SEQ], &m.seq) != QB_OK || msg_get_u64(f[K_ETS], &m.exch_ts) != QB_OK ||
        msg_get_u64(f[K_RTS], &m.recv_ts) != QB_OK) {
        return QB_EPARSE;
    }
    switch (m.type) {
    case QB_MSG_SNAPSHOT:
    case QB_MSG_DELTA:
        if (msg_get_u64(f[K_FID], &m.first_id) != QB_OK ||
            msg_get_u64(f[K_LID], &m.last_id) != QB_OK) {
            return QB_EPARSE;
        }
        for (int side = 0; side < 2; side++) {
            if (f[side ? K_ASKS : K_BIDS] == NULL) {
                return QB_EPARSE;
            }
            if (lrc[side] != QB_OK) {
                return lrc[side];
            }
        }
        m.bids = ln[0] ? d->lv[0] : NULL;
        m.n_bids = ln[0];
        m.asks = ln[1] ? d->lv[1] : NULL;
        m.n_asks = ln[1];
        if (m.type == QB_MSG_SNAPSHOT) {
            if (f[K_REFRESH] == NULL || mp_typeof(*f[K_REFRESH]) != MP_BOOL) {
                return QB_EPARSE;
            }
            const char *q = f[K_REFRESH];
            m.refresh = mp_decode_bool(&q);
        }
        break;
    case QB_MSG_TRADE: {
        qb_str side;
        static const qb_str sides[] = {QB_STR("unknown"), QB_STR("buy"), QB_STR("sell")};
        if (msg_get_u64(f[K_TID], &m.trade_id) != QB_OK ||
            msg_get_dec(f[K_PX], &m.price) != QB_OK || msg_get_dec(f[K_QTY], &m.qty) != QB_OK ||
            msg_get_str(f[K_SIDE], &side) != QB_OK || m.price.mant <= 0 || m.qty.mant < 0) {
            return QB_EPARSE;
        }
        int si = msg_lookup(side, sides, 3);
        if (si < 0) {
            return QB_EPARSE;
        }
        m.side = (qb_side)si;
        break;
    }
    case QB_MSG_STATUS: {
        qb_str state;
        static const qb_str states[] = {QB_STR("syncing"), QB_STR("live"), QB_STR("stale"),
                                        QB_STR("resyncing"), QB_STR("down")};
        if (msg_get_str(f[K_STATE], &state) != QB_OK ||
            msg_get_str(f[K_REASON], &m.reason) != QB_OK || m.reason.n > MSG_REASON_MAX) {
            return QB_EPARSE;
        }
        int si = msg_lookup(state, states, 5);
        if (si < 0) {
            return QB_EPARSE;
        }
        m.state = (qb_feed_state)si;
        break;
    }
    case QB_MSG_TICKER: {
        qb_ticker *t = &m.ticker;
        if (msg_get_dec(f[K_LAST], &t->last) != QB_OK) {
            return QB_EPARSE;
        }
        /* bid and bidq (ask and askq) come together or not at all */
        if ((f[K_BID] != NULL) != (f[K_BIDQ] != NULL) ||
            (f[K_ASK] != NULL) != (f[K_ASKQ] != NULL)) {
            return QB_EPARSE;
        }
        if (f[K_BID]) {
            if (msg_get_dec(f[K_BID], &t->bid) != QB_OK ||
                msg_get_dec(f[K_BIDQ], &t->bid_qty) != QB_OK) {
                return QB_EPARSE;
            }
            t->has_bid = true;
        }
        if (f[K_ASK]) {
            if (msg_get_dec(f[K_ASK], &t->ask) != QB_OK ||
                msg_get_dec(f[K_ASKQ], &t->ask_qty) != QB_OK) {
                return QB_EPARSE;
            }
            t->has_ask = true;
        }
        if (f[K_VOL]) {
            if (msg_get_dec(f[K_VOL], &t->volume_24h) != QB_OK) {
                return QB_EPARSE;
            }
            t->has_volume = true;
        }
        if (f[K_CHG]) {
            if (msg_get_dec(f[K_CHG], &t->change_24h) != QB_OK) {
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

/* ---- the fast path: one checked pass ---------------------------------- */

/* Bytes of an integer whose first byte is c; 0 when c starts no integer. */
static inline size_t msg_int_len(uint8_t c)
{
    if (c <= 0x7f || c >= 0xe0) {
        return 1;
    }
    if (c >= 0xcc && c <= 0xd3) {
        return 1 + ((size_t)1 << (c & 3));
    }
    return 0;
}

/* msg_walk_skip's general case: anything but an integer or a fixstr, one
 * level below the top map (msg_scan). Out of line: rare in real maps. */
__attribute__((noinline)) static bool msg_walk_skip_any(const char **p, const char *end,
                                                        uint64_t *items)
{
    size_t n;
    uint64_t it;
    if (msg_scan((const uint8_t *)*p, (size_t)(end - *p), MSG_MAX_DEPTH - 1, &n, &it) != QB_OK) {
        return false;
    }
    *p += n;
    *items += it;
    return true;
}

/* Skips one object at *p (checked), counting its objects into *items.
 * Inlined into msg_walk for the scalars every map has (integers and short
 * strings: v, type, ex, sym, nsym, seq, ...). */
static inline bool msg_walk_skip(const char **p, const char *end, uint64_t *items)
{
    if (*p >= end) {
        return false;
    }
    uint8_t c = (uint8_t) * *p;
    size_t sz = msg_int_len(c);
    if (sz == 0 && (c & 0xe0) == 0xa0) {
        sz = 1 + (size_t)(c & 0x1f); /* fixstr */
    }
    if (sz != 0) {
        if (sz > (size_t)(end - *p)) {
            return false;
        }
        *p += sz;
        (*items)++;
        return true;
    }
    return msg_walk_skip_any(p, end, items);
}

/* A level array at *q (q < end) decoded with checked reads; false for
 * anything but an array of at most QB_MSG_MAX_LEVELS valid fixarray-of-4
 * levels (the exact path then decides). */
static bool msg_walk_levels(qb_decoder *d, int side, const char **q, const char *end, size_t *n)
{
    const char *e = *q;
    uint8_t c = (uint8_t)*e;
    size_t cnt;
    if ((c & 0xf0) == 0x90) {
        cnt = c & 0x0f;
        e++;
    } else if ((c == 0xdc && end - e >= 3) || (c == 0xdd && end - e >= 5)) {
        cnt = mp_decode_array(&e);
    } else {
        return false;
    }
    if (cnt > QB_MSG_MAX_LEVELS || cnt > (size_t)(end - e)) {
        return false;
    }
    if (msg_levels_reserve(d, side, cnt) != QB_OK) {
        return false;
    }
    qb_level *lv = d->lv[side];
    for (size_t i = 0; i < cnt; i++) {
        if (end - e < (ptrdiff_t)MSG_LEVEL_MAX) {
            /* near the end: check the bounds of the 5 objects first */
            const char *t = e;
            if (t >= end || (uint8_t)*t != 0x94) {
                return false;
            }
            t++;
            for (int j = 0; j < 4; j++) {
                size_t sz = t < end ? msg_int_len((uint8_t)*t) : 0;
                if (sz == 0 || sz > (size_t)(end - t)) {
                    return false;
                }
                t += sz;
            }
        } else if ((uint8_t)*e != 0x94) {
            return false;
        }
        e++; /* 0x94 and 4 integers: at most MSG_LEVEL_MAX bytes, in bounds */
        qb_level l;
        if (!msg_rd_dec2(&e, &l.price) || !msg_rd_dec2(&e, &l.size) || l.price.mant <= 0 ||
            l.size.mant < 0) {
            return false;
        }
        lv[i] = l;
    }
    *q = e;
    *n = cnt;
    return true;
}

/* The fast path for the map at p (p[0] is a map header): msg_collect's key
 * loop with every read bounds-checked, other values skipped by
 * msg_walk_skip, levels decoded in place. True when the whole map is
 * well-formed within msg_scan's limits, has no duplicate known key and its
 * level arrays are valid: then *n is its length and fs what msg_collect
 * would give. False decides nothing: the exact path (msg_scan, msg_collect)
 * then finds the error in the protocol's order. A valid map so costs one
 * pass instead of two. */
static bool msg_walk(qb_decoder *d, const char *p, const char *end, msg_fields *fs, size_t *n)
{
    const char *start = p;
    memset(fs, 0, sizeof *fs);
    uint8_t c = (uint8_t)*p;
    uint32_t npairs;
    if ((c & 0xf0) == 0x80) {
        npairs = c & 0x0f;
        p++;
    } else if ((c == 0xde && end - p >= 3) || (c == 0xdf && end - p >= 5)) {
        npairs = mp_decode_map(&p);
    } else {
        return false;
    }
    uint64_t items = 1;
    for (uint32_t i = 0; i < npairs; i++) {
        if (p >= end) {
            return false;
        }
        int k = -1;
        uint8_t kc = (uint8_t)*p;
        if ((kc & 0xe0) == 0xa0) { /* fixstr: every known key is one */
            size_t kn = kc & 0x1f;
            if (kn + 1 > (size_t)(end - p)) {
                return false;
            }
            k = msg_key_index(p + 1, (uint32_t)kn);
            p += kn + 1;
            items++;
        } else if (mp_typeof((char)kc) == MP_STR) {
            return false; /* str8/16/32 key: may be a known key */
        } else if (!msg_walk_skip(&p, end, &items)) {
            return false;
        }
        if (k >= 0) {
            if (fs->f[k] != NULL || p >= end) {
                return false; /* duplicate, or truncated */
            }
            fs->f[k] = p;
            if (k == K_BIDS || k == K_ASKS) {
                int side = k == K_ASKS;
                if (!msg_walk_levels(d, side, &p, end, &fs->ln[side])) {
                    return false;
                }
                items += 1 + 5 * (uint64_t)fs->ln[side];
                continue;
            }
        }
        if (!msg_walk_skip(&p, end, &items)) {
            return false;
        }
    }
    if (items > MSG_MAX_ITEMS) {
        return false;
    }
    *n = (size_t)(p - start);
    return true;
}

int qb_decoder_next(qb_decoder *d, qb_msg *out)
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
    const char *cp = (const char *)p;
    msg_fields fs;
    int rc = QB_OK;
    if ((p[0] & 0xf0) != 0x80 && p[0] != 0xde && p[0] != 0xdf) {
        rc = QB_EPARSE; /* the top-level object must be a map */
    } else if (msg_walk(d, cp, cp + avail, &fs, &n)) {
        rc = msg_build(d, &fs, out);
    } else {
        /* something is wrong or unusual: the exact path decides */
        rc = msg_scan(p, avail, MSG_MAX_DEPTH, &n, NULL);
        rc = rc ? rc : msg_collect(d, cp, &fs);
        rc = rc ? rc : msg_build(d, &fs, out);
    }
    if (rc != QB_OK) {
        d->err = rc;
        return rc;
    }
    d->off += n;
    d->nmaps++;
    return QB_OK;
}
