/*
 * binance_json.cc: the Binance hot path (depthUpdate and trade) with the
 * simdjson DOM parser (Debian libsimdjson-dev 3.0.1), behind the C
 * interface of binance_json.h. Measured in BENCHMARKS.md ("simdjson for the
 * depth message") and S3_result.md.
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
 *   - values: prices and sizes must be JSON strings (get_string; a number
 *     would be a double in the DOM: decline, jsmn parses the raw text) and
 *     are decoded by qb_dec_parse like the jsmn path; U, u, E, t, T by
 *     get_uint64 and m by get_bool, whose accepted sets are subsets of
 *     qb_json_u64/qb_json_bool's except for "-0", which the DOM stores as 0:
 *     a zero id or time declines (never in real frames). A frame holding a
 *     backslash or a NUL byte goes to jsmn, so strings and keys have no
 *     escapes and their bytes are jsmn's views, compared raw like
 *     common/json.h's;
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
 * Thread: any, one qb__bjson per thread (it is part of a qb_parser).
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
    explicit qb__bjson(size_t cap) : parser(cap), buf(nullptr), max_len(cap) {}
};

namespace {

constexpr int bjson_miss = QB_EAGAIN;

/* A value the walk does not read. The DOM has validated it: a string
 * (no escapes, no control bytes) or a number/true/false/null is something
 * jsmn accepts as well. An array or an object declines (never in real
 * depth/trade frames; this keeps an accepted frame's nesting at 4 and its
 * tokens countable by jsmn's rules without a walk). */
bool bjson_skip(dom::element v)
{
    dom::element_type t = v.type();
    return t != dom::element_type::ARRAY && t != dom::element_type::OBJECT;
}

/* A string value's bytes (no quotes, no escapes); false for any other type. */
bool bjson_string(dom::element v, std::string_view *s)
{
    return v.get_string().get(*s) == simdjson::SUCCESS;
}

/* A one-character key, else '\0'. */
char bjson_short_key(std::string_view key)
{
    return key.size() == 1 ? key[0] : '\0';
}

/* Prices and sizes: strings only (a DOM number is a double). */
bool bjson_dec(dom::element v, qb_dec *out)
{
    std::string_view s;
    return bjson_string(v, &s) && qb_dec_parse(s.data(), s.size(), out) == QB_OK;
}

/* binance_symbol_tok: 1..QB_NATIVE_MAX-1 alphanumeric ASCII bytes. */
bool bjson_symbol(dom::element v, qb_event *ev)
{
    std::string_view s;
    if (!bjson_string(v, &s) || s.empty() || s.size() >= sizeof ev->native) {
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

/* A non-negative JSON integer. The DOM stores "-0" as the integer 0, which
 * qb_json_u64 rejects: 0 declines (no real id or time is 0). */
bool bjson_u64(dom::element v, uint64_t *out)
{
    return v.get_uint64().get(*out) == simdjson::SUCCESS && *out != 0;
}

/* qb__parse_levels: an array of [price, size] arrays, at most cap. A level
 * with a third element declines (qb__parse_levels skips it unchecked; jsmn
 * decides, same result). */
bool bjson_levels(dom::element v, qb_level *out, size_t cap, size_t *n)
{
    dom::array arr;
    if (v.get_array().get(arr) != simdjson::SUCCESS) {
        return false;
    }
    size_t k = 0;
    for (dom::element le : arr) {
        dom::array l;
        if (le.get_array().get(l) != simdjson::SUCCESS || k == cap) {
            return false;
        }
        qb_level lv{};
        size_t m = 0;
        for (dom::element el : l) {
            if (m == 2 || !bjson_dec(el, m == 0 ? &lv.price : &lv.size)) {
                return false;
            }
            m++;
        }
        if (m != 2 || lv.price.mant <= 0 || qb_dec_is_neg(lv.size)) {
            return false;
        }
        out[k++] = lv;
    }
    *n = k;
    return true;
}

/* binance_depth: the fields after "e" of a depthUpdate; last one wins. */
bool bjson_depth(dom::object::iterator it, dom::object::iterator end, qb_parser *p, qb_event *ev)
{
    enum { HAVE_S = 1, HAVE_UU = 2, HAVE_U = 4, HAVE_E = 8, HAVE_B = 16, HAVE_A = 32 };
    unsigned have = 0;
    uint64_t e_ms = 0;
    for (; it != end; ++it) {
        dom::element v = it.value();
        bool ok = true;
        switch (bjson_short_key(it.key())) {
        case 's':
            ok = bjson_symbol(v, ev);
            have |= HAVE_S;
            break;
        case 'U':
            ok = bjson_u64(v, &ev->first_id);
            have |= HAVE_UU;
            break;
        case 'u':
            ok = bjson_u64(v, &ev->last_id);
            have |= HAVE_U;
            break;
        case 'E':
            ok = bjson_u64(v, &e_ms);
            have |= HAVE_E;
            break;
        case 'b':
            ok = bjson_levels(v, p->bids, p->level_cap, &ev->n_bids);
            have |= HAVE_B;
            break;
        case 'a':
            ok = bjson_levels(v, p->asks, p->level_cap, &ev->n_asks);
            have |= HAVE_A;
            break;
        default:
            ok = bjson_skip(v); /* "pu", "T", "e" again, unknown */
            break;
        }
        if (!ok) {
            return false;
        }
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

/* binance_trade: the fields after "e" of a trade; first one wins. */
bool bjson_trade(dom::object::iterator it, dom::object::iterator end, qb_parser *p, qb_event *ev)
{
    enum { HAVE_S = 1, HAVE_T = 2, HAVE_TT = 4, HAVE_P = 8, HAVE_Q = 16, HAVE_M = 32 };
    unsigned have = 0;
    uint64_t t_ms = 0;
    bool m = false;
    for (; it != end; ++it) {
        dom::element v = it.value();
        unsigned bit = 0;
        char k = bjson_short_key(it.key());
        switch (k) {
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
            if (!bjson_skip(v)) {
                return false;
            }
            continue;
        }
        have |= bit;
        bool ok;
        switch (k) {
        case 's':
            ok = bjson_symbol(v, ev);
            break;
        case 't':
            ok = bjson_u64(v, &ev->trade_id);
            break;
        case 'T':
            ok = bjson_u64(v, &t_ms);
            break;
        case 'p':
            ok = bjson_dec(v, &ev->price);
            break;
        case 'q':
            ok = bjson_dec(v, &ev->qty);
            break;
        default:
            ok = v.get_bool().get(m) == simdjson::SUCCESS;
            break;
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

/* The data object: "e" first, then depthUpdate's or trade's fields. */
bool bjson_data(dom::element v, qb_parser *p, qb_event *ev)
{
    dom::object data;
    if (v.get_object().get(data) != simdjson::SUCCESS) {
        return false;
    }
    dom::object::iterator it = data.begin();
    dom::object::iterator end = data.end();
    std::string_view kind;
    if (!(it != end) || it.key() != "e" || !bjson_string(it.value(), &kind)) {
        return false;
    }
    ++it;
    if (kind == "depthUpdate") {
        return bjson_depth(it, end, p, ev);
    }
    if (kind == "trade") {
        return bjson_trade(it, end, p, ev);
    }
    return false;
}

/* {"stream":"<not !serverShutdown>","data":{"e":"depthUpdate"|"trade",..}..}:
 * "stream" first and "data" second, as Binance sends them; anything else is
 * left to jsmn. Later root fields are checked, not read (first one wins). */
bool bjson_message(dom::element doc, qb_parser *p, qb_event *ev)
{
    dom::object root;
    if (doc.get_object().get(root) != simdjson::SUCCESS) {
        return false;
    }
    int idx = 0;
    for (dom::key_value_pair f : root) {
        if (idx == 0) {
            std::string_view s;
            if (f.key != "stream" || !bjson_string(f.value, &s) || s == "!serverShutdown") {
                return false;
            }
        } else if (idx == 1) {
            if (f.key != "data" || !bjson_data(f.value, p, ev)) {
                return false;
            }
        } else if (!bjson_skip(f.value)) {
            return false;
        }
        idx++;
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
        std::memchr(js, '\\', len) != nullptr ||
        std::memchr(js, '\0', len) != nullptr) {
        return bjson_miss;
    }
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
    return bjson_message(doc, p, ev) ? QB_OK : bjson_miss;
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
