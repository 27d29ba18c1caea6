/*
 * json_bench_simdjson.cc: the simdjson rows of qb-bench-json (json_bench.c;
 * docs/BENCHMARKS.md, "simdjson for the depth message: measured"). Benchmark-only:
 * built when CMake finds simdjson (Debian libsimdjson-dev 3.0.1), and the
 * only C++ in the tree.
 *
 * Contract: the same as every parser in json_bench.c. Parse one Binance
 * combined-stream depth event, extract stream, e (must be "depthUpdate"), s,
 * the integers E, U, u and every bid and ask [price, qty] string into a
 * json_bench_depth, with the same validation (types, level shape exactly
 * [string, string], required keys, nothing after the document), call
 * consume() while the strings are valid, return QB_OK, QB_EPARSE or
 * QB_ETOOBIG. Two front ends over the same library:
 *
 *   On-Demand  parser.iterate(): stage 1 (SIMD structural index of the whole
 *              frame), then a lazy walk; values we do not ask for are skipped,
 *              not validated beyond their structure.
 *   DOM        dom::parser::parse(): stage 1 + stage 2 (full validation, a
 *              tape of every value), then the walk over the tape.
 *
 * Strings come back as std::string_view into the parser's own string buffer
 * (simdjson unescapes every string it returns); they stay valid until the
 * next parse, which is all consume() needs. Prices, quantities, symbols and
 * stream names never contain escapes, so the bytes equal jsmn's views and the
 * checksums must match (json_bench.c checks it message by message).
 *
 * Padding: simdjson reads up to SIMDJSON_PADDING (64) bytes past the end of
 * the input. json_bench.c allocates every message buffer with
 * JSON_BENCH_PAD >= 64 zero bytes after the text, once, before anything is
 * timed, and the capacity passed to simdjson is len + JSON_BENCH_PAD; no
 * copy happens inside the timed region. (Given a capacity below
 * len + SIMDJSON_PADDING, simdjson refuses the input with
 * INSUFFICIENT_PADDING rather than read past it.)
 *
 * Both parsers are allocated once in json_bench_simdjson_init() for the
 * largest message, so the timed loop makes no heap allocation. Single
 * threaded (one parser instance of each kind, file-local).
 */
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <new>
#include <string_view>
#include <utility>

extern "C" {
#include "err.h"
}

namespace
{

/* Must match json_bench.c (checked at init with sizeof and the limits). */
constexpr std::size_t json_bench_max_levels = 1024;
constexpr std::size_t json_bench_pad = 64;
static_assert(simdjson::SIMDJSON_PADDING <= json_bench_pad,
              "json_bench.c pads message buffers by JSON_BENCH_PAD bytes");

} // namespace

extern "C" {

typedef struct json_bench_str {
    const char *p;
    size_t n;
} json_bench_str;

typedef struct json_bench_level {
    json_bench_str price;
    json_bench_str qty;
} json_bench_level;

typedef struct json_bench_depth {
    json_bench_str stream;
    json_bench_str e;
    json_bench_str s;
    uint64_t E;
    uint64_t U;
    uint64_t u;
    size_t nb;
    size_t na;
    json_bench_level b[json_bench_max_levels];
    json_bench_level a[json_bench_max_levels];
} json_bench_depth;

typedef uint64_t (*json_bench_consume_fn)(const json_bench_depth *d);

int json_bench_simdjson_init(size_t max_len, size_t depth_size, size_t max_levels, size_t pad,
                             char *desc, size_t desc_cap);
int json_bench_simdjson_od(const char *js, size_t len, json_bench_depth *d,
                           json_bench_consume_fn consume, uint64_t *acc);
int json_bench_simdjson_dom(const char *js, size_t len, json_bench_depth *d,
                            json_bench_consume_fn consume, uint64_t *acc);
void json_bench_simdjson_fini(void);

} // extern "C"

namespace
{

namespace od = simdjson::ondemand;
namespace dom = simdjson::dom;

enum : unsigned {
    have_stream = 1u << 0,
    have_data = 1u << 1,
    have_e = 1u << 2,
    have_ee = 1u << 3,
    have_s = 1u << 4,
    have_uu = 1u << 5,
    have_u = 1u << 6,
    have_b = 1u << 7,
    have_a = 1u << 8,
    have_all = (1u << 9) - 1,
};

constexpr std::string_view depth_update{"depthUpdate"};

od::parser *json_bench_sj_od;
dom::parser *json_bench_sj_dom;
/* The DOM tape, ours rather than the parser's internal one: the parser only
 * sizes its internal document on first use and grows it per larger message
 * (an allocation inside the timed loop); this one is allocated at init. */
dom::document *json_bench_sj_doc;

json_bench_str view(std::string_view s)
{
    return json_bench_str{s.data(), s.size()};
}

/* A one-character key: raw() points just past the opening quote and the raw
 * text of a key always ends in an unescaped quote, so k[1] is readable. */
char short_key(od::raw_json_string key)
{
    const char *k = key.raw();
    return k[0] != '\\' && k[0] != '"' && k[1] == '"' ? k[0] : '\0';
}

/* ---- On-Demand ---- */

int od_levels(od::value v, json_bench_level *lv, size_t *n)
{
    od::array arr;
    if (v.get_array().get(arr) != simdjson::SUCCESS) {
        return QB_EPARSE;
    }
    size_t k = 0;
    for (auto lres : arr) {
        od::array l;
        if (lres.get_array().get(l) != simdjson::SUCCESS) {
            return QB_EPARSE;
        }
        if (k == json_bench_max_levels) {
            return QB_ETOOBIG;
        }
        size_t m = 0;
        for (auto el : l) {
            std::string_view s;
            if (m == 2 || el.get_string().get(s) != simdjson::SUCCESS) {
                return QB_EPARSE;
            }
            (m == 0 ? lv[k].price : lv[k].qty) = view(s);
            m++;
        }
        if (m != 2) {
            return QB_EPARSE;
        }
        k++;
    }
    *n = k;
    return QB_OK;
}

int od_data(od::value v, json_bench_depth *d, unsigned *have)
{
    od::object obj;
    if (v.get_object().get(obj) != simdjson::SUCCESS) {
        return QB_EPARSE;
    }
    for (auto fres : obj) {
        od::field f;
        if (std::move(fres).get(f) != simdjson::SUCCESS) {
            return QB_EPARSE;
        }
        std::string_view s;
        int rc = QB_OK;
        /* Keys other than the seven are skipped by the next iteration. */
        switch (short_key(f.key())) {
        case 'e':
            if (f.value().get_string().get(s) != simdjson::SUCCESS || s != depth_update) {
                return QB_EPARSE;
            }
            d->e = view(s);
            *have |= have_e;
            break;
        case 's':
            if (f.value().get_string().get(s) != simdjson::SUCCESS) {
                return QB_EPARSE;
            }
            d->s = view(s);
            *have |= have_s;
            break;
        case 'E':
            if (f.value().get_uint64().get(d->E) != simdjson::SUCCESS) {
                return QB_EPARSE;
            }
            *have |= have_ee;
            break;
        case 'U':
            if (f.value().get_uint64().get(d->U) != simdjson::SUCCESS) {
                return QB_EPARSE;
            }
            *have |= have_uu;
            break;
        case 'u':
            if (f.value().get_uint64().get(d->u) != simdjson::SUCCESS) {
                return QB_EPARSE;
            }
            *have |= have_u;
            break;
        case 'b':
            rc = od_levels(f.value(), d->b, &d->nb);
            *have |= have_b;
            break;
        case 'a':
            rc = od_levels(f.value(), d->a, &d->na);
            *have |= have_a;
            break;
        default:
            break;
        }
        if (rc != QB_OK) {
            return rc;
        }
    }
    *have |= have_data;
    return QB_OK;
}

/* ---- DOM ---- */

int dom_levels(dom::element v, json_bench_level *lv, size_t *n)
{
    dom::array arr;
    if (v.get_array().get(arr) != simdjson::SUCCESS) {
        return QB_EPARSE;
    }
    size_t k = 0;
    for (dom::element le : arr) {
        dom::array l;
        if (le.get_array().get(l) != simdjson::SUCCESS) {
            return QB_EPARSE;
        }
        if (k == json_bench_max_levels) {
            return QB_ETOOBIG;
        }
        size_t m = 0;
        for (dom::element el : l) {
            std::string_view s;
            if (m == 2 || el.get_string().get(s) != simdjson::SUCCESS) {
                return QB_EPARSE;
            }
            (m == 0 ? lv[k].price : lv[k].qty) = view(s);
            m++;
        }
        if (m != 2) {
            return QB_EPARSE;
        }
        k++;
    }
    *n = k;
    return QB_OK;
}

int dom_data(dom::element v, json_bench_depth *d, unsigned *have)
{
    dom::object obj;
    if (v.get_object().get(obj) != simdjson::SUCCESS) {
        return QB_EPARSE;
    }
    for (dom::key_value_pair kv : obj) {
        if (kv.key.size() != 1) {
            continue;
        }
        std::string_view s;
        int rc = QB_OK;
        switch (kv.key[0]) {
        case 'e':
            if (kv.value.get_string().get(s) != simdjson::SUCCESS || s != depth_update) {
                return QB_EPARSE;
            }
            d->e = view(s);
            *have |= have_e;
            break;
        case 's':
            if (kv.value.get_string().get(s) != simdjson::SUCCESS) {
                return QB_EPARSE;
            }
            d->s = view(s);
            *have |= have_s;
            break;
        case 'E':
            if (kv.value.get_uint64().get(d->E) != simdjson::SUCCESS) {
                return QB_EPARSE;
            }
            *have |= have_ee;
            break;
        case 'U':
            if (kv.value.get_uint64().get(d->U) != simdjson::SUCCESS) {
                return QB_EPARSE;
            }
            *have |= have_uu;
            break;
        case 'u':
            if (kv.value.get_uint64().get(d->u) != simdjson::SUCCESS) {
                return QB_EPARSE;
            }
            *have |= have_u;
            break;
        case 'b':
            rc = dom_levels(kv.value, d->b, &d->nb);
            *have |= have_b;
            break;
        case 'a':
            rc = dom_levels(kv.value, d->a, &d->na);
            *have |= have_a;
            break;
        default:
            break;
        }
        if (rc != QB_OK) {
            return rc;
        }
    }
    *have |= have_data;
    return QB_OK;
}

} // namespace

extern "C" {

/* Allocates both parsers for documents up to max_len bytes and checks that
 * json_bench.c agrees on the layout and the padding; writes a one-line
 * description (version, implementations) into desc. Not thread-safe. */
int json_bench_simdjson_init(size_t max_len, size_t depth_size, size_t max_levels, size_t pad,
                             char *desc, size_t desc_cap)
{
    if (depth_size != sizeof(json_bench_depth) || max_levels != json_bench_max_levels ||
        pad < simdjson::SIMDJSON_PADDING) {
        return QB_EINVAL;
    }
    json_bench_sj_od = new (std::nothrow) od::parser(max_len);
    json_bench_sj_dom = new (std::nothrow) dom::parser(max_len);
    json_bench_sj_doc = new (std::nothrow) dom::document();
    if (json_bench_sj_od == nullptr || json_bench_sj_dom == nullptr ||
        json_bench_sj_doc == nullptr || json_bench_sj_od->allocate(max_len) != simdjson::SUCCESS ||
        json_bench_sj_dom->allocate(max_len) != simdjson::SUCCESS ||
        json_bench_sj_doc->allocate(max_len) != simdjson::SUCCESS) {
        json_bench_simdjson_fini();
        return QB_ENOMEM;
    }
    std::snprintf(desc, desc_cap, "simdjson %s (stage 1: %s, On-Demand code: %s)",
                  SIMDJSON_STRINGIFY(SIMDJSON_VERSION),
                  simdjson::get_active_implementation()->name().c_str(),
                  /* builtin_implementation() would name the library's own
                   * build; the On-Demand walk is inline, compiled here. */
                  SIMDJSON_STRINGIFY(SIMDJSON_BUILTIN_IMPLEMENTATION));
    return QB_OK;
}

void json_bench_simdjson_fini(void)
{
    delete json_bench_sj_od;
    delete json_bench_sj_dom;
    delete json_bench_sj_doc;
    json_bench_sj_od = nullptr;
    json_bench_sj_dom = nullptr;
    json_bench_sj_doc = nullptr;
}

/* js[0..len) followed by at least json_bench_pad readable bytes. */
int json_bench_simdjson_od(const char *js, size_t len, json_bench_depth *d,
                           json_bench_consume_fn consume, uint64_t *acc)
{
    od::document doc;
    if (json_bench_sj_od->iterate(js, len, len + json_bench_pad).get(doc) != simdjson::SUCCESS) {
        return QB_EPARSE;
    }
    od::object root;
    if (doc.get_object().get(root) != simdjson::SUCCESS) {
        return QB_EPARSE;
    }
    unsigned have = 0;
    for (auto fres : root) {
        od::field f;
        if (std::move(fres).get(f) != simdjson::SUCCESS) {
            return QB_EPARSE;
        }
        od::raw_json_string key = f.key();
        if (key.is_equal("stream")) {
            std::string_view s;
            if (f.value().get_string().get(s) != simdjson::SUCCESS) {
                return QB_EPARSE;
            }
            d->stream = view(s);
            have |= have_stream;
        } else if (key.is_equal("data")) {
            int rc = od_data(f.value(), d, &have);
            if (rc != QB_OK) {
                return rc;
            }
        }
    }
    /* Nothing after the document: at the end, current_location() reports
     * OUT_OF_BOUNDS; anything else is a trailing value or a parse error. */
    if (have != have_all || doc.current_location().error() != simdjson::OUT_OF_BOUNDS) {
        return QB_EPARSE;
    }
    *acc += consume(d);
    return QB_OK;
}

int json_bench_simdjson_dom(const char *js, size_t len, json_bench_depth *d,
                            json_bench_consume_fn consume, uint64_t *acc)
{
    dom::element root;
    /* realloc_if_needed = false: the caller's buffer is padded (see above). */
    if (json_bench_sj_dom->parse_into_document(*json_bench_sj_doc, js, len, false).get(root) !=
        simdjson::SUCCESS) {
        return QB_EPARSE;
    }
    dom::object obj;
    if (root.get_object().get(obj) != simdjson::SUCCESS) {
        return QB_EPARSE;
    }
    unsigned have = 0;
    for (dom::key_value_pair kv : obj) {
        if (kv.key == "stream") {
            std::string_view s;
            if (kv.value.get_string().get(s) != simdjson::SUCCESS) {
                return QB_EPARSE;
            }
            d->stream = view(s);
            have |= have_stream;
        } else if (kv.key == "data") {
            int rc = dom_data(kv.value, d, &have);
            if (rc != QB_OK) {
                return rc;
            }
        }
    }
    if (have != have_all) {
        return QB_EPARSE;
    }
    *acc += consume(d);
    return QB_OK;
}

} // extern "C"
