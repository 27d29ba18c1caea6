/*
 * binance_json.cc: the Binance hot path (depthUpdate and trade) with the
 * simdjson DOM parser (Debian libsimdjson-dev 3.0.1), behind the C
 * interface of binance_json.h. Measured in docs/BENCHMARKS.md ("simdjson for the
 * depth message").
 *
 * Design:
 *   - DOM, not On-Demand: the DOM parser validates the whole document
 *     before the walk starts (structure, every literal and number, strings,
 *     UTF-8, nothing after the root, nesting <= QB_JSON_MAX_DEPTH). On-Demand
 *     validates only what it visits and ended an object loop silently on
 *     {"a":1,"p":"x":2}} (fuzzer corpus binance/diff-string-glued-byte), so
 *     malformed frames could be accepted;
 *   - no exceptions (built with -fno-exceptions and SIMDJSON_EXCEPTIONS=0):
 *     every simdjson call returns an error code, and any error means
 *     QB_EAGAIN, so binance.c re-parses the frame with jsmn and returns
 *     jsmn's verdict. The hot path therefore never decides an error code;
 *     it only accepts, and only what jsmn accepts with the same result
 *     (test_binance.c and fuzz_binance.c check this differentially);
 *   - no allocation per message: one dom::parser with max_capacity =
 *     max_bytes, its buffers (structural index and the document's tape and
 *     string buffer) allocated in qb__bjson_new, and one copy buffer of
 *     max_bytes + SIMDJSON_PADDING. parse(buf, len, false) then neither
 *     grows nor copies: simdjson reads up to 64 bytes past the input, and
 *     ops->parse callers (ws_conn.c, HTX's inflate, tests, benchmarks) give
 *     no padding guarantee, so the frame is copied into the padded buffer
 *     (about 1.3 KB for a 20-level update: tens of ns);
 *   - values: prices and sizes must be JSON strings (a string word; a
 *     number would be a double in the DOM: decline, jsmn parses the raw
 *     text) and are decoded by qb_dec_parse like the jsmn path; U, u, E, t,
 *     T read as element::get_uint64 reads them and m as get_bool, whose
 *     accepted sets are subsets of
 *     qb_json_u64/qb_json_bool's except for "-0", which the DOM stores as 0:
 *     a zero id or time declines (never in real frames). A frame holding a
 *     backslash goes to jsmn (one memchr), so strings and keys have no
 *     escapes and their bytes are jsmn's views, compared raw like
 *     common/json.h's; a frame holding a NUL byte is rejected by the DOM
 *     parser itself (see qb__bjson_parse), so needs no scan of its own;
 *   - the walk reads the document's tape directly (see "the tape" below):
 *     about 45 instructions per [price, size] level besides qb_dec_parse,
 *     where the public element/array API took about 150;
 *   - duplicate keys resolve like the jsmn path (the DOM keeps every pair, in
 *     order): depth fields last one wins (one pass over the keys), trade
 *     fields and "stream"/"data" first one wins (qb_json_get);
 *   - exactly as strict as jsmn (JSMN_STRICT with common/json.c's limits):
 *     everything the DOM accepts as a scalar, jsmn accepts too (strings with
 *     no escapes and no control bytes; numbers and literals are printable
 *     primitives starting with '-', a digit, 't', 'f' or 'n'). Where jsmn's
 *     semantics differ the walk declines: an array or object under a key it
 *     does not read, a level with a third element (so an accepted frame nests
 *     at most 4 deep and its token count is what jsmn sees), and a frame that
 *     could need more than jsmn's p->tok_cap tokens (qb__bjson_parse: a
 *     frame of len bytes has at most (len + 1) / 2 tokens).
 *
 * Thread: any, one qb__bjson per thread (it is part of the Binance state
 * that goes with one qb_parser, binance_json.h).
 */
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <string_view>

/* The project's C headers have no extern "C" of their own; json.h (C11)
 * asserts the jsmn token layout with _Static_assert. */
#define _Static_assert static_assert
extern "C" {
#include "decimal.h"
#include "err.h"
#include "exchange.h"
}
#include "binance_json.h"
#undef _Static_assert

#if SIMDJSON_EXCEPTIONS
#error "binance_json.cc must be built without exceptions (SIMDJSON_EXCEPTIONS=0)"
#endif

namespace dom = simdjson::dom;

struct qb__bjson {
    dom::parser parser;
    char *buf;      /* max_len + SIMDJSON_PADDING */
    size_t max_len; /* largest frame handled */
    explicit qb__bjson(size_t cap) : parser(cap), buf(nullptr), max_len(cap)
    {
    }
};

namespace
{

constexpr int bjson_miss = QB_EAGAIN;

/* ---- the tape ------------------------------------------------------------
 *
 * The walk reads the parsed document's tape (dom::document::tape and
 * string_buf, public members; the format is simdjson's doc/tape.md) with
 * the same reads simdjson's own accessors make (internal::tape_ref in
 * <simdjson.h>: tape_ref_type, matching_brace_index, scope_count,
 * next_tape_value, get_string_view, after_element), but through two
 * pointers loaded once per message instead of doc->tape[...] at every
 * access (which the compiler must reload after each qb_dec_parse call)
 * and with a level's four words checked by three compares instead of a
 * type switch per element. One word per value, 64 bits, type in the top
 * byte:
 *
 *   i    '[' | count << 32 | index after ']'     (objects: '{', pairs)
 *        '"' | offset in string_buf -> [uint32 length][bytes][NUL]
 *        'l' | 0, then the int64 in the next word ('u': uint64; 'd': double)
 *        't' 'f' 'n'
 *   end-1 ']' | i                                 ('}' | i)
 *
 * so a level ["price","size"] at word j is exactly
 *   t[j]   == '[' | 2 << 32 | (j + 4)     two elements, four words in all
 *   t[j+1], t[j+2] of type '"'            (one word each: both strings)
 *   t[j+3] == ']' | j
 * The tape comes from a successful parse (valid, every index in range); a
 * shape the walk does not expect only declines. test_binance.c compares
 * every result with the jsmn parser (simdjson_matches_jsmn: 1.17 M frames,
 * real, mutated and malformed; fuzz_binance does the same on its inputs). */
using tt = simdjson::internal::tape_type;
static_assert(simdjson::SIMDJSON_VERSION_MAJOR == 3,
              "the tape walk was verified against simdjson 3.x's tape (doc/tape.md, "
              "internal::tape_ref): check the format and re-run test_binance's differential "
              "tests before building with another major version");

constexpr uint64_t bjson_tag(tt t)
{
    return uint64_t(uint8_t(t)) << 56;
}

struct bjson_tape {
    const uint64_t *t;
    const uint8_t *s;
};

inline uint8_t bjson_type(uint64_t w)
{
    return uint8_t(w >> 56);
}

/* The string of a '"' word (internal::tape_ref::get_string_view). */
inline std::string_view bjson_str(const bjson_tape &tp, uint64_t w)
{
    size_t off = size_t(w & simdjson::internal::JSON_VALUE_MASK);
    uint32_t n;
    std::memcpy(&n, tp.s + off, sizeof n);
    return std::string_view(reinterpret_cast<const char *>(tp.s + off + sizeof n), n);
}

/* The index after the value at i (internal::tape_ref::after_element). */
inline size_t bjson_after(const bjson_tape &tp, size_t i)
{
    uint64_t w = tp.t[i];
    switch (tt(bjson_type(w))) {
    case tt::START_ARRAY:
    case tt::START_OBJECT:
        return uint32_t(w);
    case tt::INT64:
    case tt::UINT64:
    case tt::DOUBLE:
        return i + 2;
    default:
        return i + 1;
    }
}

/* A value the walk does not read. The DOM has validated it: a string
 * (no escapes, no control bytes) or a number/true/false/null is something
 * jsmn accepts as well. An array or an object declines (never in real
 * depth/trade frames; this keeps an accepted frame's nesting at 4 and its
 * tokens countable by jsmn's rules without a walk). */
inline bool bjson_skip(const bjson_tape &tp, size_t i)
{
    uint8_t t = bjson_type(tp.t[i]);
    return t != uint8_t(tt::START_ARRAY) && t != uint8_t(tt::START_OBJECT);
}

/* A string value's bytes (no quotes, no escapes); false for any other type
 * (element::get_string). */
inline bool bjson_string(const bjson_tape &tp, size_t i, std::string_view *s)
{
    uint64_t w = tp.t[i];
    if (bjson_type(w) != uint8_t(tt::STRING)) {
        return false;
    }
    *s = bjson_str(tp, w);
    return true;
}

/* A one-character key (the '"' word at i), else '\0'. */
inline char bjson_short_key(const bjson_tape &tp, size_t i)
{
    std::string_view key = bjson_str(tp, tp.t[i]);
    return key.size() == 1 ? key[0] : '\0';
}

/* Prices and sizes: strings only (a DOM number is a double). */
bool bjson_dec(const bjson_tape &tp, size_t i, qb_dec *out)
{
    std::string_view s;
    return bjson_string(tp, i, &s) && qb_dec_parse(s.data(), s.size(), out) == QB_OK;
}

/* binance_symbol_tok: 1..QB_NATIVE_MAX-1 alphanumeric ASCII bytes. */
bool bjson_symbol(const bjson_tape &tp, size_t i, qb_event *ev)
{
    std::string_view s;
    if (!bjson_string(tp, i, &s) || s.empty() || s.size() >= sizeof ev->native) {
        return false;
    }
    for (char ch : s) {
        unsigned char c = (unsigned char)ch;
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
            return false;
        }
    }
    std::memcpy(ev->native, s.data(), s.size());
    ev->native[s.size()] = '\0';
    return true;
}

/* A non-negative JSON integer (element::get_uint64: an INT64 word >= 0 or
 * a UINT64 word). The DOM stores "-0" as the integer 0, which qb_json_u64
 * rejects: 0 declines (no real id or time is 0). */
inline bool bjson_u64(const bjson_tape &tp, size_t i, uint64_t *out)
{
    uint8_t t = bjson_type(tp.t[i]);
    uint64_t v = tp.t[i + 1];
    if (t == uint8_t(tt::INT64)) {
        if (int64_t(v) <= 0) {
            return false;
        }
    } else if (t != uint8_t(tt::UINT64) || v == 0) {
        return false;
    }
    *out = v;
    return true;
}

/* qb__parse_levels: an array of [price, size] arrays, at most cap, parsed
 * straight into out. Anything but exactly two strings per level declines
 * (a third element: qb__parse_levels skips it unchecked; jsmn decides,
 * same result). Three compares per level check its four tape words (see
 * "the tape" above). */
bool bjson_levels(const bjson_tape &tp, size_t i, qb_level *out, size_t cap, size_t *n)
{
    const uint64_t *t = tp.t;
    uint64_t w = t[i];
    size_t count = size_t((w >> 32) & simdjson::internal::JSON_COUNT_MASK);
    if (bjson_type(w) != uint8_t(tt::START_ARRAY) || count > cap ||
        count >= simdjson::internal::JSON_COUNT_MASK || uint32_t(w) != i + 2 + 4 * count) {
        return false;
    }
    constexpr uint64_t open = bjson_tag(tt::START_ARRAY) | uint64_t(2) << 32;
    constexpr uint64_t close = bjson_tag(tt::END_ARRAY);
    constexpr uint64_t str = bjson_tag(tt::STRING);
    for (size_t k = 0; k < count; k++) {
        size_t j = i + 1 + 4 * k;
        uint64_t wp = t[j + 1], ws = t[j + 2];
        if (t[j] != (open | (j + 4)) || t[j + 3] != (close | j) ||
            ((wp ^ str) | (ws ^ str)) >> 56) {
            return false;
        }
        std::string_view sp = bjson_str(tp, wp), ss = bjson_str(tp, ws);
        qb_level *lv = &out[k];
        if (qb_dec_parse(sp.data(), sp.size(), &lv->price) != QB_OK ||
            qb_dec_parse(ss.data(), ss.size(), &lv->size) != QB_OK || lv->price.mant <= 0 ||
            qb_dec_is_neg(lv->size)) {
            return false;
        }
    }
    *n = count;
    return true;
}

/* binance_depth: the pairs [k, end) of data after "e" (end: its '}'); last
 * one wins. */
bool bjson_depth(const bjson_tape &tp, size_t k, size_t end, qb_parser *p, qb_event *ev)
{
    enum { HAVE_S = 1, HAVE_UU = 2, HAVE_U = 4, HAVE_E = 8, HAVE_B = 16, HAVE_A = 32 };
    unsigned have = 0;
    uint64_t e_ms = 0;
    while (k < end) {
        size_t v = k + 1;
        bool ok = true;
        switch (bjson_short_key(tp, k)) {
        case 's':
            ok = bjson_symbol(tp, v, ev);
            have |= HAVE_S;
            break;
        case 'U':
            ok = bjson_u64(tp, v, &ev->first_id);
            have |= HAVE_UU;
            break;
        case 'u':
            ok = bjson_u64(tp, v, &ev->last_id);
            have |= HAVE_U;
            break;
        case 'E':
            ok = bjson_u64(tp, v, &e_ms);
            have |= HAVE_E;
            break;
        case 'b':
            ok = bjson_levels(tp, v, p->bids, p->level_cap, &ev->n_bids);
            have |= HAVE_B;
            break;
        case 'a':
            ok = bjson_levels(tp, v, p->asks, p->level_cap, &ev->n_asks);
            have |= HAVE_A;
            break;
        default:
            ok = bjson_skip(tp, v); /* "pu", "T", "e" again, unknown */
            break;
        }
        if (!ok) {
            return false;
        }
        k = bjson_after(tp, v);
    }
    if (have != (HAVE_S | HAVE_UU | HAVE_U | HAVE_E | HAVE_B | HAVE_A) ||
        qb__ms_to_ns(e_ms, &ev->exch_ts) != QB_OK || ev->first_id > ev->last_id) {
        return false;
    }
    ev->bids = p->bids;
    ev->asks = p->asks;
    ev->kind = QB_EV_DEPTH;
    return true;
}

/* binance_trade: the pairs [k, end) of data after "e"; first one wins. */
bool bjson_trade(const bjson_tape &tp, size_t k, size_t end, qb_parser *p, qb_event *ev)
{
    enum { HAVE_S = 1, HAVE_T = 2, HAVE_TT = 4, HAVE_P = 8, HAVE_Q = 16, HAVE_M = 32 };
    unsigned have = 0;
    uint64_t t_ms = 0;
    bool m = false;
    for (; k < end; k = bjson_after(tp, k + 1)) {
        size_t v = k + 1;
        unsigned bit = 0;
        char key = bjson_short_key(tp, k);
        switch (key) {
        case 's':
            bit = HAVE_S;
            break;
        case 't':
            bit = HAVE_T;
            break;
        case 'T':
            bit = HAVE_TT;
            break;
        case 'p':
            bit = HAVE_P;
            break;
        case 'q':
            bit = HAVE_Q;
            break;
        case 'm':
            bit = HAVE_M;
            break;
        default:
            break;
        }
        if (bit == 0 || (have & bit)) {
            /* not ours ("M", "E", "e" again...), or a later duplicate */
            if (!bjson_skip(tp, v)) {
                return false;
            }
            continue;
        }
        have |= bit;
        bool ok;
        switch (key) {
        case 's':
            ok = bjson_symbol(tp, v, ev);
            break;
        case 't':
            ok = bjson_u64(tp, v, &ev->trade_id);
            break;
        case 'T':
            ok = bjson_u64(tp, v, &t_ms);
            break;
        case 'p':
            ok = bjson_dec(tp, v, &ev->price);
            break;
        case 'q':
            ok = bjson_dec(tp, v, &ev->qty);
            break;
        default: { /* element::get_bool */
            uint8_t t = bjson_type(tp.t[v]);
            ok = t == uint8_t(tt::TRUE_VALUE) || t == uint8_t(tt::FALSE_VALUE);
            m = t == uint8_t(tt::TRUE_VALUE);
            break;
        }
        }
        if (!ok) {
            return false;
        }
    }
    if (have != (HAVE_S | HAVE_T | HAVE_TT | HAVE_P | HAVE_Q | HAVE_M) ||
        qb__ms_to_ns(t_ms, &ev->exch_ts) != QB_OK || ev->price.mant <= 0 || ev->qty.mant < 0) {
        return false;
    }
    /* m: the buyer is the maker, so the taker (the aggressor) sold. */
    ev->side = m ? QB_SIDE_SELL : QB_SIDE_BUY;
    p->trades[0] = qb_trade{ev->trade_id, ev->exch_ts, ev->price, ev->qty, ev->side};
    ev->trades = p->trades;
    ev->n_trades = 1;
    ev->kind = QB_EV_TRADE;
    return true;
}

/* The data object at i: "e" first, then depthUpdate's or trade's fields. */
bool bjson_data(const bjson_tape &tp, size_t i, qb_parser *p, qb_event *ev)
{
    uint64_t w = tp.t[i];
    if (bjson_type(w) != uint8_t(tt::START_OBJECT)) {
        return false;
    }
    size_t end = size_t(uint32_t(w)) - 1; /* its '}' */
    size_t k = i + 1;
    std::string_view kind;
    if (k == end || bjson_str(tp, tp.t[k]) != "e" || !bjson_string(tp, k + 1, &kind)) {
        return false;
    }
    k += 2; /* a string value is one word */
    if (kind == "depthUpdate") {
        return bjson_depth(tp, k, end, p, ev);
    }
    if (kind == "trade") {
        return bjson_trade(tp, k, end, p, ev);
    }
    return false;
}

/* {"stream":"<not !serverShutdown>","data":{"e":"depthUpdate"|"trade",..}..}:
 * "stream" first and "data" second, as Binance sends them; anything else is
 * left to jsmn. Later root fields are checked, not read (first one wins).
 * The root value is at tape index 1 (document::root). */
bool bjson_message(const bjson_tape &tp, qb_parser *p, qb_event *ev)
{
    uint64_t w = tp.t[1];
    if (bjson_type(w) != uint8_t(tt::START_OBJECT)) {
        return false;
    }
    size_t end = size_t(uint32_t(w)) - 1; /* its '}' */
    size_t k = 2;
    int idx = 0;
    for (; k < end; k = bjson_after(tp, k + 1), idx++) {
        if (idx == 0) {
            std::string_view s;
            if (bjson_str(tp, tp.t[k]) != "stream" || !bjson_string(tp, k + 1, &s) ||
                s == "!serverShutdown") {
                return false;
            }
        } else if (idx == 1) {
            if (bjson_str(tp, tp.t[k]) != "data" || !bjson_data(tp, k + 1, p, ev)) {
                return false;
            }
        } else if (!bjson_skip(tp, k + 1)) {
            return false;
        }
    }
    return idx >= 2;
}

} // namespace

extern "C" {

qb__bjson *qb__bjson_new(size_t max_bytes)
{
    /* The DOM parser never sizes itself below MINIMAL_DOCUMENT_CAPACITY. */
    size_t cap = max_bytes < simdjson::dom::MINIMAL_DOCUMENT_CAPACITY
                     ? simdjson::dom::MINIMAL_DOCUMENT_CAPACITY
                     : max_bytes;
    qb__bjson *b = new (std::nothrow) qb__bjson(cap);
    if (b == nullptr) {
        return nullptr;
    }
    b->max_len = max_bytes;
    b->buf = new (std::nothrow) char[cap + simdjson::SIMDJSON_PADDING];
    /* Everything parse() could allocate, allocated now: the structural
     * index (allocate) and the document's tape and string buffer. */
    if (b->buf == nullptr || b->parser.allocate(cap, QB_JSON_MAX_DEPTH) != simdjson::SUCCESS ||
        b->parser.doc.allocate(cap) != simdjson::SUCCESS) {
        qb__bjson_free(b);
        return nullptr;
    }
    return b;
}

void qb__bjson_free(qb__bjson *b)
{
    if (b != nullptr) {
        delete[] b->buf;
        delete b;
    }
}

int qb__bjson_parse(qb__bjson *b, qb_parser *p, const char *js, size_t len, qb_event *ev)
{
    /* jsmn's token budget: every token but the root takes its first byte
     * plus one byte of its own (the ',' or ':' before it, or, for a
     * container's first child, the container's closing bracket), so a frame
     * has at most (len + 1) / 2 tokens. Frames that could need more than
     * p->tok_cap (>= max_bytes / 6) decline, and jsmn decides. */
    if (len == 0 || len > b->max_len || (len + 1) / 2 > (size_t)p->tok_cap ||
        std::memchr(js, '\\', len) != nullptr) {
        return bjson_miss;
    }
    /* No scan for NUL bytes (jsmn stops at one, so a frame holding one is
     * jsmn's error): simdjson 3.0.1's DOM parser rejects every document with
     * a 0x00 byte in [0, len), so such a frame never gets past parse()
     * below. In a string it is an unescaped control byte (stage 1:
     * UNESCAPED_CHARS); elsewhere it is neither whitespace nor an operator,
     * so it either starts a pseudo-structural of its own, which stage 2
     * finds where a value, a key, a ',' / ':' / bracket or the end must be
     * (TAPE_ERROR, TRAILING_CONTENT), or it directly follows a number or a
     * literal, whose terminator check rejects it (0x00 is not in
     * structural_or_whitespace: NUMBER_ERROR, T/F/N_ATOM_ERROR). Checked by
     * test_binance.c (nul_always_declines: a NUL at every position of every
     * recorded frame, and after every kind of token). */
    std::memcpy(b->buf, js, len);
    std::memset(b->buf + len, 0, simdjson::SIMDJSON_PADDING);
    std::memset(ev, 0, sizeof *ev);
    /* realloc_if_needed = false: the buffer is padded, so no copy and no
     * allocation (the capacity was allocated for max_len in qb__bjson_new).
     * The whole document is validated here, trailing content included. */
    dom::element doc;
    if (b->parser.parse(b->buf, len, false).get(doc) != simdjson::SUCCESS) {
        return bjson_miss;
    }
    bjson_tape tp{b->parser.doc.tape.get(), b->parser.doc.string_buf.get()};
    return bjson_message(tp, p, ev) ? QB_OK : bjson_miss;
}

const char *qb__bjson_describe(void)
{
    static char desc[96];
    if (desc[0] == '\0') {
        std::snprintf(desc, sizeof desc, "simdjson %s DOM (stage 1: %s)",
                      SIMDJSON_STRINGIFY(SIMDJSON_VERSION),
                      simdjson::get_active_implementation()->name().c_str());
    }
    return desc;
}

} // extern "C"
