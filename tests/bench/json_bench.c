/*
 * json_bench.c: qb-bench-json, the measurement behind the choice of JSON
 * parser for exchange messages (docs/BENCHMARKS.md, "JSON parser for exchange
 * messages"). Not a ctest test: timings are not pass/fail.
 *
 * What is measured: the cost per message of turning one Binance combined-
 * stream depth event into everything the adapter needs from it: the stream
 * name, "e" (checked to be "depthUpdate"), "s", the integers E, U and u, and
 * a (pointer, length) view of every bid and ask price and quantity string.
 * Every parser does the same work and the same validation (types, level
 * shape [price, qty], required keys), fills the same json_bench_depth, and
 * frees whatever it allocated, inside the timed region.
 *
 *   message bytes --parser--> json_bench_depth --consume--> checksum / sink
 *
 * Parsers: jsmn through common/json.h (the helpers the adapter uses), jsmn
 * with a hand-rolled single pass over its tokens (what the helpers cost),
 * libwebsockets' LEJP (streaming, callback + path matching, copies each
 * string into its own buffer, so the views point into a per-message arena),
 * cJSON and jansson (DOM trees, one allocation per node) when built, and
 * simdjson On-Demand and DOM (json_bench_simdjson.cc, C++) when built with
 * QB_BENCH_HAVE_SIMDJSON.
 *
 * Inputs (same bytes for every parser): "recorded" = the depthUpdate frames
 * of recorded/binance_spot_NKNUSDT_cryptofeed_20211012.txt plus
 * samples/binance_depthUpdate_real_combined_*.json; "synth" = generated
 * updates with --levels bids and asks (default 20: the adapter's target is 2 us per
 * 20-level update parse -> encode; 1000 stands in for REST snapshots) in
 * Binance's formatting.
 *
 * Honesty checks: before timing, every parser parses every message once and
 * the FNV-1a checksum of everything it extracted must equal the reference
 * parser's, message by message (so no parser can skip work); the same pass
 * counts heap allocations (malloc interposed, glibc only). Timing: warm-up,
 * then R runs of N messages per parser, interleaved (run 1 of every parser,
 * then run 2, ...), clock_gettime(CLOCK_MONOTONIC); the median is reported.
 * For a noise-free figure, run one parser under callgrind with
 * --toggle-collect=json_bench_loop (see --help) and divide Ir by --iters.
 *
 * Padding: every message buffer is allocated once, before anything is timed,
 * with JSON_BENCH_PAD zero bytes after the text (simdjson reads up to 64
 * bytes past the end); the other parsers ignore them.
 *
 * Single-threaded; all state is file-local.
 */
#include "err.h"
#include "json.h"
#include "opts.h"

#include <libwebsockets.h>
#ifdef QB_BENCH_HAVE_CJSON
#include <cjson/cJSON.h>
#endif
#ifdef QB_BENCH_HAVE_JANSSON
#include <jansson.h>
#endif

#include <errno.h>
#include <glob.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef QB_SHARED_DATA
#define QB_SHARED_DATA "../shared/exchange-data"
#endif
#ifndef QB_BENCH_BUILD_TYPE
#define QB_BENCH_BUILD_TYPE "unknown"
#endif

#define JSON_BENCH_MAX_LEVELS 1024 /* per side; Binance 100 ms updates stay far below */
#define JSON_BENCH_MAX_TOKENS (8 + 6 * JSON_BENCH_MAX_LEVELS + 64)
#define JSON_BENCH_MAX_PARSERS 8
#define JSON_BENCH_MAX_RUNS 99
#define JSON_BENCH_PAD 64 /* readable zero bytes after every message (SIMDJSON_PADDING) */

/* ---- heap allocation counting (glibc malloc replacement, forwarding) ---- */

/*
 * glibc lets a program replace malloc by defining malloc, free, calloc and
 * realloc; libraries (cJSON, jansson, lws) then call ours. We forward to
 * glibc's own implementation (__libc_*), so the allocator is unchanged and
 * the only cost is one counter increment. Off under ASan/TSan, which
 * replace malloc themselves.
 */
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define JSON_BENCH_COUNT_ALLOCS 1
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t sz);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);

static unsigned long long json_bench_nalloc;

void *malloc(size_t n)
{
    json_bench_nalloc++;
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t sz)
{
    json_bench_nalloc++;
    return __libc_calloc(n, sz);
}

void *realloc(void *p, size_t n)
{
    json_bench_nalloc++;
    return __libc_realloc(p, n);
}

void free(void *p)
{
    __libc_free(p);
}
#else
#define JSON_BENCH_COUNT_ALLOCS 0
static unsigned long long json_bench_nalloc;
#endif

/* ---- what every parser extracts ---- */

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
    json_bench_level b[JSON_BENCH_MAX_LEVELS];
    json_bench_level a[JSON_BENCH_MAX_LEVELS];
} json_bench_depth;

/* Called once per parsed message while the views are valid (before a DOM
 * parser frees its tree); its result is added to the run's accumulator. */
typedef uint64_t (*json_bench_consume_fn)(const json_bench_depth *d);

#ifdef QB_BENCH_HAVE_SIMDJSON
/* json_bench_simdjson.cc (C++): the same contract as the parsers below; js
 * must be followed by JSON_BENCH_PAD readable bytes. init allocates both
 * parsers for max_len-byte documents and checks the struct layout. */
int json_bench_simdjson_init(size_t max_len, size_t depth_size, size_t max_levels, size_t pad,
                             char *desc, size_t desc_cap);
int json_bench_simdjson_od(const char *js, size_t len, json_bench_depth *d,
                           json_bench_consume_fn consume, uint64_t *acc);
int json_bench_simdjson_dom(const char *js, size_t len, json_bench_depth *d,
                            json_bench_consume_fn consume, uint64_t *acc);
void json_bench_simdjson_fini(void);
static char json_bench_simdjson_desc[128] = "simdjson";
#endif

typedef struct json_bench_parser {
    const char *name; /* --parser value */
    const char *desc; /* table label */
    /* Parses js[0..len) into *d, calls consume(d), frees everything it
     * allocated. Returns QB_OK, QB_EPARSE or QB_ETOOBIG. */
    int (*run)(const char *js, size_t len, json_bench_depth *d, json_bench_consume_fn consume,
               uint64_t *acc);
} json_bench_parser;

static json_bench_depth json_bench_out;

static const char json_bench_depth_update[] = "depthUpdate";

static bool json_bench_str_is(const char *p, size_t n, const char *lit, size_t litn)
{
    return n == litn && memcmp(p, lit, n) == 0;
}

/* Decimal digits only, no sign, no overflow: what E, U and u must be. */
static int json_bench_u64(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20) {
        return QB_EPARSE;
    }
    uint64_t v = 0;
    for (size_t k = 0; k < n; k++) {
        if (s[k] < '0' || s[k] > '9') {
            return QB_EPARSE;
        }
        uint64_t dg = (uint64_t)(s[k] - '0');
        if (v > (UINT64_MAX - dg) / 10) {
            return QB_ERANGE;
        }
        v = v * 10 + dg;
    }
    *out = v;
    return QB_OK;
}

/* ---- jsmn through common/json.h (the adapter's way) ---- */

static jsmntok_t json_bench_tok[JSON_BENCH_MAX_TOKENS];

static int json_bench_jsmn_int(const qb_json *j, int i, uint64_t *out)
{
    if (i < 0 || j->tok[i].type != JSMN_PRIMITIVE) {
        return QB_EPARSE;
    }
    return qb_json_u64(j, i, out);
}

static int json_bench_jsmn_levels(const qb_json *j, int arr, json_bench_level *lv, size_t *n)
{
    if (!qb_json_is_array(j, arr)) {
        return QB_EPARSE;
    }
    int cnt = j->tok[arr].size;
    if (cnt > JSON_BENCH_MAX_LEVELS) {
        return QB_ETOOBIG;
    }
    /* A valid level is exactly [string, string]: three tokens, so the next
     * level starts three tokens later; no qb_json_at() (O(n) each). */
    int i = arr + 1;
    for (int k = 0; k < cnt; k++) {
        if (!qb_json_is_array(j, i) || j->tok[i].size != 2 || !qb_json_is_str(j, i + 1) ||
            !qb_json_is_str(j, i + 2)) {
            return QB_EPARSE;
        }
        lv[k].price.p = qb_json_text(j, i + 1, &lv[k].price.n);
        lv[k].qty.p = qb_json_text(j, i + 2, &lv[k].qty.n);
        i += 3;
    }
    *n = (size_t)cnt;
    return QB_OK;
}

static int json_bench_jsmn(const char *js, size_t len, json_bench_depth *d,
                           json_bench_consume_fn consume, uint64_t *acc)
{
    qb_json j;
    int rc = qb_json_parse(&j, js, len, json_bench_tok, JSON_BENCH_MAX_TOKENS);
    if (rc != QB_OK) {
        return rc;
    }
    int st = qb_json_get(&j, 0, "stream");
    int data = qb_json_get(&j, 0, "data");
    if (!qb_json_is_str(&j, st) || !qb_json_is_object(&j, data)) {
        return QB_EPARSE;
    }
    int e = qb_json_get(&j, data, "e");
    int s = qb_json_get(&j, data, "s");
    if (!qb_json_str_eq(&j, e, json_bench_depth_update) || !qb_json_is_str(&j, s)) {
        return QB_EPARSE;
    }
    d->stream.p = qb_json_text(&j, st, &d->stream.n);
    d->e.p = qb_json_text(&j, e, &d->e.n);
    d->s.p = qb_json_text(&j, s, &d->s.n);
    if ((rc = json_bench_jsmn_int(&j, qb_json_get(&j, data, "E"), &d->E)) != QB_OK ||
        (rc = json_bench_jsmn_int(&j, qb_json_get(&j, data, "U"), &d->U)) != QB_OK ||
        (rc = json_bench_jsmn_int(&j, qb_json_get(&j, data, "u"), &d->u)) != QB_OK ||
        (rc = json_bench_jsmn_levels(&j, qb_json_get(&j, data, "b"), d->b, &d->nb)) != QB_OK ||
        (rc = json_bench_jsmn_levels(&j, qb_json_get(&j, data, "a"), d->a, &d->na)) != QB_OK) {
        return rc;
    }
    *acc += consume(d);
    return QB_OK;
}

/* ---- jsmn, one pass over the tokens (no helpers) ---- */

enum {
    JSON_BENCH_HAVE_STREAM = 1 << 0,
    JSON_BENCH_HAVE_DATA = 1 << 1,
    JSON_BENCH_HAVE_E = 1 << 2,
    JSON_BENCH_HAVE_EE = 1 << 3,
    JSON_BENCH_HAVE_S = 1 << 4,
    JSON_BENCH_HAVE_UU = 1 << 5,
    JSON_BENCH_HAVE_U = 1 << 6,
    JSON_BENCH_HAVE_B = 1 << 7,
    JSON_BENCH_HAVE_A = 1 << 8,
    JSON_BENCH_HAVE_ALL = (1 << 9) - 1,
};

static int json_bench_raw_int(const char *js, const jsmntok_t *t, uint64_t *out)
{
    if (t->type != JSMN_PRIMITIVE) {
        return QB_EPARSE;
    }
    return json_bench_u64(js + t->start, (size_t)(t->end - t->start), out);
}

/* Levels at token i (an array); returns the index after it, or -1. */
static int json_bench_raw_levels(const char *js, const jsmntok_t *t, int i, int ntok,
                                 json_bench_level *lv, size_t *n)
{
    if (t[i].type != JSMN_ARRAY || t[i].size > JSON_BENCH_MAX_LEVELS) {
        return -1;
    }
    int cnt = t[i].size;
    i++;
    for (int k = 0; k < cnt; k++, i += 3) {
        if (i + 2 >= ntok || t[i].type != JSMN_ARRAY || t[i].size != 2 ||
            t[i + 1].type != JSMN_STRING || t[i + 2].type != JSMN_STRING) {
            return -1;
        }
        lv[k].price.p = js + t[i + 1].start;
        lv[k].price.n = (size_t)(t[i + 1].end - t[i + 1].start);
        lv[k].qty.p = js + t[i + 2].start;
        lv[k].qty.n = (size_t)(t[i + 2].end - t[i + 2].start);
    }
    *n = (size_t)cnt;
    return i;
}

static int json_bench_jsmn_raw(const char *js, size_t len, json_bench_depth *d,
                               json_bench_consume_fn consume, uint64_t *acc)
{
    jsmn_parser p;
    jsmn_init(&p);
    int n = jsmn_parse(&p, js, len, json_bench_tok, JSON_BENCH_MAX_TOKENS);
    const jsmntok_t *t = json_bench_tok;
    if (n <= 0 || t[0].type != JSMN_OBJECT) {
        return n == JSMN_ERROR_NOMEM ? QB_ETOOBIG : QB_EPARSE;
    }
    qb_json j = {js, len, json_bench_tok, n};
    unsigned have = 0;
    int i = 1;
    for (int k = 0; k < t[0].size; k++) {
        if (i + 1 >= n || t[i].type != JSMN_STRING) {
            return QB_EPARSE;
        }
        const char *key = js + t[i].start;
        size_t kl = (size_t)(t[i].end - t[i].start);
        i++;
        if (json_bench_str_is(key, kl, "stream", 6) && t[i].type == JSMN_STRING) {
            d->stream.p = js + t[i].start;
            d->stream.n = (size_t)(t[i].end - t[i].start);
            have |= JSON_BENCH_HAVE_STREAM;
            i++;
        } else if (json_bench_str_is(key, kl, "data", 4) && t[i].type == JSMN_OBJECT) {
            int cnt = t[i].size;
            i++;
            for (int m = 0; m < cnt; m++) {
                if (i + 1 >= n || t[i].type != JSMN_STRING) {
                    return QB_EPARSE;
                }
                const char *dk = js + t[i].start;
                size_t dkl = (size_t)(t[i].end - t[i].start);
                const jsmntok_t *v = &t[i + 1];
                int rc = QB_OK;
                i++;
                if (dkl != 1) {
                    i = qb_json_skip(&j, i);
                    continue;
                }
                switch (dk[0]) {
                case 'e':
                    if (v->type != JSMN_STRING ||
                        !json_bench_str_is(js + v->start, (size_t)(v->end - v->start),
                                           json_bench_depth_update,
                                           sizeof json_bench_depth_update - 1)) {
                        return QB_EPARSE;
                    }
                    d->e.p = js + v->start;
                    d->e.n = (size_t)(v->end - v->start);
                    have |= JSON_BENCH_HAVE_E;
                    i++;
                    break;
                case 's':
                    if (v->type != JSMN_STRING) {
                        return QB_EPARSE;
                    }
                    d->s.p = js + v->start;
                    d->s.n = (size_t)(v->end - v->start);
                    have |= JSON_BENCH_HAVE_S;
                    i++;
                    break;
                case 'E':
                    rc = json_bench_raw_int(js, v, &d->E);
                    have |= JSON_BENCH_HAVE_EE;
                    i++;
                    break;
                case 'U':
                    rc = json_bench_raw_int(js, v, &d->U);
                    have |= JSON_BENCH_HAVE_UU;
                    i++;
                    break;
                case 'u':
                    rc = json_bench_raw_int(js, v, &d->u);
                    have |= JSON_BENCH_HAVE_U;
                    i++;
                    break;
                case 'b':
                    i = json_bench_raw_levels(js, t, i, n, d->b, &d->nb);
                    have |= JSON_BENCH_HAVE_B;
                    break;
                case 'a':
                    i = json_bench_raw_levels(js, t, i, n, d->a, &d->na);
                    have |= JSON_BENCH_HAVE_A;
                    break;
                default:
                    i = qb_json_skip(&j, i);
                    break;
                }
                if (rc != QB_OK || i < 0) {
                    return QB_EPARSE;
                }
            }
            have |= JSON_BENCH_HAVE_DATA;
        } else {
            i = qb_json_skip(&j, i);
        }
    }
    /* The root must cover every token: one document, nothing after it. */
    if (have != JSON_BENCH_HAVE_ALL || i != n) {
        return QB_EPARSE;
    }
    for (size_t k = (size_t)t[0].end; k < len; k++) {
        if (js[k] != ' ' && js[k] != '\n' && js[k] != '\r' && js[k] != '\t') {
            return QB_EPARSE;
        }
    }
    *acc += consume(d);
    return QB_OK;
}

/* ---- libwebsockets LEJP ---- */

/*
 * LEJP walks the bytes once and calls back per token with the current path
 * ("data.b[][]") and the index of the first registered path that is a
 * prefix-match (1-based ctx->path_match). Strings are delivered in its own
 * 255-byte ctx->buf, overwritten by the next token, so every kept string is
 * copied into a per-message arena (at most len bytes in all).
 */
enum {
    JSON_BENCH_LP_STREAM = 1,
    JSON_BENCH_LP_E,
    JSON_BENCH_LP_EE,
    JSON_BENCH_LP_S,
    JSON_BENCH_LP_UU,
    JSON_BENCH_LP_U,
    JSON_BENCH_LP_B,
    JSON_BENCH_LP_A,
};

static const char *const json_bench_lejp_paths[] = {
    "stream", "data.e", "data.E", "data.s", "data.U", "data.u", "data.b", "data.a",
};

typedef struct json_bench_lejp_state {
    json_bench_depth *d;
    char *arena;
    size_t used;
    unsigned have;
    size_t nlb; /* level arrays opened, per side */
    size_t nla;
    size_t nqb; /* levels whose qty was seen, per side */
    size_t nqa;
} json_bench_lejp_state;

static char *json_bench_arena;

static signed char json_bench_lejp_cb(struct lejp_ctx *ctx, char reason)
{
    json_bench_lejp_state *st = ctx->user;
    json_bench_depth *d = st->d;
    unsigned m = ctx->path_match;
    /* Exact match: the path is the registered one, not something below it. */
    bool exact = ctx->pst[ctx->pst_sp].ppos == ctx->path_match_len;

    switch ((unsigned char)reason) {
    case LEJPCB_VAL_STR_CHUNK:
        /* A matched string longer than LEJP's buffer: no price is that long. */
        return m ? -1 : 0;
    case LEJPCB_VAL_STR_END: {
        if (m == 0) {
            return 0;
        }
        json_bench_str v = {st->arena + st->used, ctx->npos};
        memcpy(st->arena + st->used, ctx->buf, ctx->npos);
        st->used += ctx->npos;
        if (m == JSON_BENCH_LP_B || m == JSON_BENCH_LP_A) {
            /* Inside "data.b[][]": two array indexes, level and element. */
            json_bench_level *lv = m == JSON_BENCH_LP_B ? d->b : d->a;
            size_t *nl = m == JSON_BENCH_LP_B ? &d->nb : &d->na;
            size_t *nq = m == JSON_BENCH_LP_B ? &st->nqb : &st->nqa;
            if (ctx->ipos != 2 || ctx->pst[ctx->pst_sp].ppos != ctx->path_match_len + 4) {
                return -1;
            }
            size_t level = ctx->i[0];
            if (ctx->i[1] == 0 && level == *nl && level < JSON_BENCH_MAX_LEVELS) {
                lv[level].price = v;
                (*nl)++;
            } else if (ctx->i[1] == 1 && level + 1 == *nl) {
                lv[level].qty = v;
                (*nq)++;
            } else {
                return -1;
            }
            return 0;
        }
        if (!exact) {
            return -1;
        }
        switch (m) {
        case JSON_BENCH_LP_STREAM:
            d->stream = v;
            st->have |= JSON_BENCH_HAVE_STREAM;
            return 0;
        case JSON_BENCH_LP_E:
            if (!json_bench_str_is(v.p, v.n, json_bench_depth_update,
                                   sizeof json_bench_depth_update - 1)) {
                return -1;
            }
            d->e = v;
            st->have |= JSON_BENCH_HAVE_E;
            return 0;
        case JSON_BENCH_LP_S:
            d->s = v;
            st->have |= JSON_BENCH_HAVE_S;
            return 0;
        default:
            return -1; /* a string where an integer belongs */
        }
    }
    case LEJPCB_VAL_NUM_INT: {
        if (m == 0) {
            return 0;
        }
        uint64_t *out;
        unsigned bit;
        switch (m) {
        case JSON_BENCH_LP_EE:
            out = &d->E;
            bit = JSON_BENCH_HAVE_EE;
            break;
        case JSON_BENCH_LP_UU:
            out = &d->U;
            bit = JSON_BENCH_HAVE_UU;
            break;
        case JSON_BENCH_LP_U:
            out = &d->u;
            bit = JSON_BENCH_HAVE_U;
            break;
        default:
            return -1;
        }
        if (!exact || json_bench_u64(ctx->buf, ctx->npos, out) != QB_OK) {
            return -1;
        }
        st->have |= bit;
        return 0;
    }
    case LEJPCB_VAL_TRUE:
    case LEJPCB_VAL_FALSE:
    case LEJPCB_VAL_NULL:
    case LEJPCB_VAL_NUM_FLOAT:
        return m ? -1 : 0;
    case LEJPCB_OBJECT_START:
        /* No object belongs at or below any registered path. */
        return m ? -1 : 0;
    case LEJPCB_ARRAY_START: {
        if (m == 0) {
            return 0;
        }
        if (m != JSON_BENCH_LP_B && m != JSON_BENCH_LP_A) {
            return -1;
        }
        /* The path already ends in this array's "[]". */
        size_t depth = ctx->pst[ctx->pst_sp].ppos - ctx->path_match_len;
        if (depth == 2) {
            st->have |= m == JSON_BENCH_LP_B ? JSON_BENCH_HAVE_B : JSON_BENCH_HAVE_A;
            return 0;
        }
        if (depth == 4) {
            (*(m == JSON_BENCH_LP_B ? &st->nlb : &st->nla))++;
            return 0;
        }
        return -1;
    }
    case LEJPCB_COMPLETE:
        st->have |= JSON_BENCH_HAVE_DATA;
        /* Every level array held exactly a price and a qty. */
        return st->have == JSON_BENCH_HAVE_ALL && st->nlb == d->nb && st->nqb == d->nb &&
                       st->nla == d->na && st->nqa == d->na
                   ? 0
                   : -1;
    default:
        return 0;
    }
}

static int json_bench_lejp(const char *js, size_t len, json_bench_depth *d,
                           json_bench_consume_fn consume, uint64_t *acc)
{
    struct lejp_ctx ctx;
    json_bench_lejp_state st = {.d = d, .arena = json_bench_arena};
    d->nb = 0;
    d->na = 0;
    lejp_construct(&ctx, json_bench_lejp_cb, &st, json_bench_lejp_paths,
                   (unsigned char)LWS_ARRAY_SIZE(json_bench_lejp_paths));
    int n = lejp_parse(&ctx, (const unsigned char *)js, (int)len);
    lejp_destruct(&ctx);
    if (n < 0) {
        return QB_EPARSE; /* includes LEJP_CONTINUE: truncated document */
    }
    for (size_t k = len - (size_t)n; k < len; k++) {
        if (js[k] != ' ' && js[k] != '\n' && js[k] != '\r' && js[k] != '\t') {
            return QB_EPARSE;
        }
    }
    *acc += consume(d);
    return QB_OK;
}

/* ---- cJSON ---- */

#ifdef QB_BENCH_HAVE_CJSON
/* cJSON keeps numbers only as double: exact up to 2^53, which E, U and u
 * are today; the adapter could not rely on that for arbitrary ids. */
static int json_bench_cjson_int(const cJSON *x, uint64_t *out)
{
    if (!cJSON_IsNumber(x) || !(x->valuedouble >= 0.0) || x->valuedouble > 9007199254740992.0) {
        return QB_EPARSE;
    }
    uint64_t v = (uint64_t)x->valuedouble;
    if ((double)v != x->valuedouble) {
        return QB_EPARSE;
    }
    *out = v;
    return QB_OK;
}

static int json_bench_cjson_levels(const cJSON *arr, json_bench_level *lv, size_t *n)
{
    if (!cJSON_IsArray(arr)) {
        return QB_EPARSE;
    }
    size_t k = 0;
    const cJSON *l;
    cJSON_ArrayForEach(l, arr)
    {
        const cJSON *p = cJSON_IsArray(l) ? l->child : NULL;
        const cJSON *q = p ? p->next : NULL;
        if (k == JSON_BENCH_MAX_LEVELS || !cJSON_IsString(p) || !cJSON_IsString(q) || q->next) {
            return QB_EPARSE;
        }
        lv[k].price.p = p->valuestring;
        lv[k].price.n = strlen(p->valuestring);
        lv[k].qty.p = q->valuestring;
        lv[k].qty.n = strlen(q->valuestring);
        k++;
    }
    *n = k;
    return QB_OK;
}

static int json_bench_cjson_fill(const cJSON *root, json_bench_depth *d)
{
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "stream");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    if (!cJSON_IsString(st) || !cJSON_IsObject(data)) {
        return QB_EPARSE;
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(data, "e");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(data, "s");
    if (!cJSON_IsString(e) || strcmp(e->valuestring, json_bench_depth_update) != 0 ||
        !cJSON_IsString(s)) {
        return QB_EPARSE;
    }
    d->stream.p = st->valuestring;
    d->stream.n = strlen(st->valuestring);
    d->e.p = e->valuestring;
    d->e.n = strlen(e->valuestring);
    d->s.p = s->valuestring;
    d->s.n = strlen(s->valuestring);
    int rc;
    if ((rc = json_bench_cjson_int(cJSON_GetObjectItemCaseSensitive(data, "E"), &d->E)) != QB_OK ||
        (rc = json_bench_cjson_int(cJSON_GetObjectItemCaseSensitive(data, "U"), &d->U)) != QB_OK ||
        (rc = json_bench_cjson_int(cJSON_GetObjectItemCaseSensitive(data, "u"), &d->u)) != QB_OK ||
        (rc = json_bench_cjson_levels(cJSON_GetObjectItemCaseSensitive(data, "b"), d->b, &d->nb)) !=
            QB_OK ||
        (rc = json_bench_cjson_levels(cJSON_GetObjectItemCaseSensitive(data, "a"), d->a, &d->na)) !=
            QB_OK) {
        return rc;
    }
    return QB_OK;
}

static int json_bench_cjson(const char *js, size_t len, json_bench_depth *d,
                            json_bench_consume_fn consume, uint64_t *acc)
{
    /* require_null_terminated: rejects trailing garbage like the others
     * (the input buffers are NUL-terminated at len). */
    cJSON *root = cJSON_ParseWithLengthOpts(js, len + 1, NULL, 1);
    if (root == NULL) {
        return QB_EPARSE;
    }
    int rc = json_bench_cjson_fill(root, d);
    if (rc == QB_OK) {
        *acc += consume(d);
    }
    cJSON_Delete(root);
    return rc;
}
#endif

/* ---- jansson ---- */

#ifdef QB_BENCH_HAVE_JANSSON
static int json_bench_jansson_int(const json_t *x, uint64_t *out)
{
    if (!json_is_integer(x) || json_integer_value(x) < 0) {
        return QB_EPARSE;
    }
    *out = (uint64_t)json_integer_value(x);
    return QB_OK;
}

static int json_bench_jansson_levels(const json_t *arr, json_bench_level *lv, size_t *n)
{
    if (!json_is_array(arr) || json_array_size(arr) > JSON_BENCH_MAX_LEVELS) {
        return QB_EPARSE;
    }
    size_t cnt = json_array_size(arr);
    for (size_t k = 0; k < cnt; k++) {
        const json_t *l = json_array_get(arr, k);
        if (!json_is_array(l) || json_array_size(l) != 2) {
            return QB_EPARSE;
        }
        const json_t *p = json_array_get(l, 0);
        const json_t *q = json_array_get(l, 1);
        if (!json_is_string(p) || !json_is_string(q)) {
            return QB_EPARSE;
        }
        lv[k].price.p = json_string_value(p);
        lv[k].price.n = json_string_length(p);
        lv[k].qty.p = json_string_value(q);
        lv[k].qty.n = json_string_length(q);
    }
    *n = cnt;
    return QB_OK;
}

static int json_bench_jansson_fill(const json_t *root, json_bench_depth *d)
{
    const json_t *st = json_object_get(root, "stream");
    const json_t *data = json_object_get(root, "data");
    if (!json_is_string(st) || !json_is_object(data)) {
        return QB_EPARSE;
    }
    const json_t *e = json_object_get(data, "e");
    const json_t *s = json_object_get(data, "s");
    if (!json_is_string(e) ||
        !json_bench_str_is(json_string_value(e), json_string_length(e), json_bench_depth_update,
                           sizeof json_bench_depth_update - 1) ||
        !json_is_string(s)) {
        return QB_EPARSE;
    }
    d->stream.p = json_string_value(st);
    d->stream.n = json_string_length(st);
    d->e.p = json_string_value(e);
    d->e.n = json_string_length(e);
    d->s.p = json_string_value(s);
    d->s.n = json_string_length(s);
    int rc;
    if ((rc = json_bench_jansson_int(json_object_get(data, "E"), &d->E)) != QB_OK ||
        (rc = json_bench_jansson_int(json_object_get(data, "U"), &d->U)) != QB_OK ||
        (rc = json_bench_jansson_int(json_object_get(data, "u"), &d->u)) != QB_OK ||
        (rc = json_bench_jansson_levels(json_object_get(data, "b"), d->b, &d->nb)) != QB_OK ||
        (rc = json_bench_jansson_levels(json_object_get(data, "a"), d->a, &d->na)) != QB_OK) {
        return rc;
    }
    return QB_OK;
}

static int json_bench_jansson(const char *js, size_t len, json_bench_depth *d,
                              json_bench_consume_fn consume, uint64_t *acc)
{
    json_error_t err;
    json_t *root = json_loadb(js, len, 0, &err);
    if (root == NULL) {
        return QB_EPARSE;
    }
    int rc = json_bench_jansson_fill(root, d);
    if (rc == QB_OK) {
        *acc += consume(d);
    }
    json_decref(root);
    return rc;
}
#endif

static const json_bench_parser json_bench_parsers[] = {
    {"jsmn", "jsmn via common/json.h", json_bench_jsmn},
    {"jsmn-raw", "jsmn, one token pass", json_bench_jsmn_raw},
    {"lejp", "lws LEJP", json_bench_lejp},
#ifdef QB_BENCH_HAVE_CJSON
    {"cjson", "cJSON", json_bench_cjson},
#endif
#ifdef QB_BENCH_HAVE_JANSSON
    {"jansson", "jansson " JANSSON_VERSION, json_bench_jansson},
#endif
#ifdef QB_BENCH_HAVE_SIMDJSON
    {"simdjson-od", "simdjson On-Demand", json_bench_simdjson_od},
    {"simdjson-dom", "simdjson DOM", json_bench_simdjson_dom},
#endif
};
#define JSON_BENCH_NPARSERS (sizeof json_bench_parsers / sizeof json_bench_parsers[0])

/* ---- consumers ---- */

/* The timed consumer: reads a little of every kind of output so nothing can
 * be optimized away, and costs the same for every parser. noipa keeps GCC
 * from learning which fields it reads. */
__attribute__((noipa)) static uint64_t json_bench_sink(const json_bench_depth *d)
{
    uint64_t h = d->E ^ (d->U << 1) ^ (d->u << 2) ^ d->stream.n ^ d->s.n ^ d->e.n;
    h += d->nb * 31 + d->na;
    if (d->nb) {
        h += d->b[d->nb - 1].qty.n + (unsigned char)d->b[0].price.p[0];
    }
    if (d->na) {
        h += d->a[d->na - 1].qty.n + (unsigned char)d->a[0].price.p[0];
    }
    return h;
}

static uint64_t json_bench_fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t k = 0; k < n; k++) {
        h ^= b[k];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t json_bench_fnv_str(uint64_t h, json_bench_str s)
{
    h = json_bench_fnv(h, &s.n, sizeof s.n);
    return json_bench_fnv(h, s.p, s.n);
}

/* The verification consumer: FNV-1a over every extracted byte and value. */
static uint64_t json_bench_checksum(const json_bench_depth *d)
{
    uint64_t h = 14695981039346656037ull;
    h = json_bench_fnv_str(h, d->stream);
    h = json_bench_fnv_str(h, d->e);
    h = json_bench_fnv_str(h, d->s);
    h = json_bench_fnv(h, &d->E, sizeof d->E);
    h = json_bench_fnv(h, &d->U, sizeof d->U);
    h = json_bench_fnv(h, &d->u, sizeof d->u);
    h = json_bench_fnv(h, &d->nb, sizeof d->nb);
    for (size_t k = 0; k < d->nb; k++) {
        h = json_bench_fnv_str(h, d->b[k].price);
        h = json_bench_fnv_str(h, d->b[k].qty);
    }
    h = json_bench_fnv(h, &d->na, sizeof d->na);
    for (size_t k = 0; k < d->na; k++) {
        h = json_bench_fnv_str(h, d->a[k].price);
        h = json_bench_fnv_str(h, d->a[k].qty);
    }
    return h;
}

/* ---- equal validation: every parser must accept and reject the same ---- */

#define JSON_BENCH_HEAD                                                                            \
    "{\"stream\":\"x@depth\",\"data\":{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"X\","
static const struct {
    const char *js;
    bool ok;
} json_bench_cases[] = {
    {JSON_BENCH_HEAD "\"U\":2,\"u\":3,\"b\":[[\"1.0\",\"2\"]],\"a\":[]}}", true},
    {JSON_BENCH_HEAD "\"U\":2,\"u\":3,\"pu\":1,\"b\":[],\"a\":[],\"x\":{\"b\":[1]}},\"y\":[]}",
     true},
    {JSON_BENCH_HEAD "\"U\":2,\"u\":3,\"b\":[[\"1\",\"2\",\"3\"]],\"a\":[]}}", false},
    {JSON_BENCH_HEAD "\"U\":2,\"u\":3,\"b\":[[\"1\"]],\"a\":[]}}", false},
    {JSON_BENCH_HEAD "\"U\":2,\"u\":3,\"b\":[[\"1\",2]],\"a\":[]}}", false},
    {JSON_BENCH_HEAD "\"U\":2,\"u\":3,\"b\":[[[\"1\",\"2\"]]],\"a\":[]}}", false},
    {JSON_BENCH_HEAD "\"U\":2,\"u\":3,\"b\":{\"x\":[[\"1\",\"2\"]]},\"a\":[]}}", false},
    {JSON_BENCH_HEAD "\"U\":2,\"u\":3,\"b\":[{\"p\":\"1\"}],\"a\":[]}}", false},
    {JSON_BENCH_HEAD "\"U\":2,\"u\":3,\"b\":[[]],\"a\":[]}}", false},
    {JSON_BENCH_HEAD "\"U\":2,\"u\":3,\"b\":[\"1\"],\"a\":[]}}", false},
    {JSON_BENCH_HEAD "\"U\":2,\"u\":3,\"b\":[[\"1\",\"2\"],[\"3\",\"4\"]],\"a\":[[\"5\",\"6\"]]}}",
     true},
    {JSON_BENCH_HEAD "\"U\":2,\"u\":3,\"b\":[],\"a\":[[\"5\",\"6\"],[\"7\"]]}}", false},
    {"{\"stream\":{\"x\":\"y\"},\"data\":{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"X\",\"U\":2,\"u\":"
     "3,"
     "\"b\":[],\"a\":[]}}",
     false},
    {JSON_BENCH_HEAD "\"U\":\"2\",\"u\":3,\"b\":[],\"a\":[]}}", false},
    {JSON_BENCH_HEAD "\"U\":-2,\"u\":3,\"b\":[],\"a\":[]}}", false},
    {JSON_BENCH_HEAD "\"U\":2.5,\"u\":3,\"b\":[],\"a\":[]}}", false},
    {JSON_BENCH_HEAD "\"U\":123456789012345678901234,\"u\":3,\"b\":[],\"a\":[]}}", false},
    {JSON_BENCH_HEAD "\"U\":2,\"b\":[],\"a\":[]}}", false},
    {JSON_BENCH_HEAD "\"U\":2,\"u\":3,\"b\":[],\"a\":[]}} x", false},
    {JSON_BENCH_HEAD "\"U\":2,\"u\":3,\"b\":[],\"a\":[]}", false},
    {JSON_BENCH_HEAD "\"U\":2,\"u\":3,\"b\":[],\"a\":[]}}{}", false},
    {"{\"stream\":[\"x\"],\"data\":{\"e\":\"depthUpdate\",\"E\":1,\"s\":\"X\",\"U\":2,\"u\":3,"
     "\"b\":[],\"a\":[]}}",
     false},
    {"{\"stream\":\"x\",\"data\":{\"e\":\"trade\",\"E\":1,\"s\":\"X\",\"U\":2,\"u\":3,"
     "\"b\":[],\"a\":[]}}",
     false},
    {"[1,2]", false},
    {"", false},
};

/* Returns the number of (parser, case) disagreements, printing each. */
static size_t json_bench_selftest(const json_bench_parser *p)
{
    size_t bad = 0;
    for (size_t k = 0; k < sizeof json_bench_cases / sizeof json_bench_cases[0]; k++) {
        char buf[512 + JSON_BENCH_PAD] = {0};
        size_t len = strlen(json_bench_cases[k].js);
        memcpy(buf, json_bench_cases[k].js, len + 1);
        uint64_t acc = 0;
        bool ok = p->run(buf, len, &json_bench_out, json_bench_checksum, &acc) == QB_OK;
        if (ok != json_bench_cases[k].ok) {
            fprintf(stderr, "qb-bench-json: selftest: %s %s case %zu: %s\n", p->name,
                    ok ? "accepts" : "rejects", k, json_bench_cases[k].js);
            bad++;
        }
    }
    return bad;
}

/* ---- inputs ---- */

typedef struct json_bench_msg {
    char *js; /* NUL-terminated at len (cJSON's trailing check needs it),
               * then zeros up to len + JSON_BENCH_PAD (simdjson reads them) */
    size_t len;
} json_bench_msg;

typedef struct json_bench_set {
    const char *name;
    const char *what;
    json_bench_msg *m;
    size_t n;
    size_t cap;
    size_t bytes;
    size_t levels;
} json_bench_set;

static int json_bench_add(json_bench_set *set, const char *js, size_t len)
{
    while (len > 0 && (js[len - 1] == '\n' || js[len - 1] == '\r' || js[len - 1] == ' ')) {
        len--;
    }
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 256;
        json_bench_msg *m = realloc(set->m, cap * sizeof *m);
        if (m == NULL) {
            return QB_ENOMEM;
        }
        set->m = m;
        set->cap = cap;
    }
    char *copy = calloc(1, len + JSON_BENCH_PAD);
    if (copy == NULL) {
        return QB_ENOMEM;
    }
    memcpy(copy, js, len);
    set->m[set->n].js = copy;
    set->m[set->n].len = len;
    set->n++;
    set->bytes += len;
    return QB_OK;
}

static char *json_bench_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0;
    size_t n = 0;
    for (;;) {
        if (n + 65536 > cap) {
            cap = cap ? cap * 2 : 1 << 20;
            char *b = realloc(buf, cap);
            if (b == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = b;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) {
            break;
        }
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* recorded/...: "<ts>: <payload>" lines; keep payloads with "depthUpdate". */
static int json_bench_load_recorded(json_bench_set *set, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/recorded/binance_spot_NKNUSDT_cryptofeed_20211012.txt", dir);
    size_t len;
    char *buf = json_bench_slurp(path, &len);
    if (buf == NULL) {
        fprintf(stderr, "qb-bench-json: cannot read %s: %s\n", path, strerror(errno));
        return QB_EIO;
    }
    char *line = buf;
    while (line < buf + len) {
        char *nl = memchr(line, '\n', (size_t)(buf + len - line));
        char *end = nl ? nl : buf + len;
        *end = '\0';
        char *payload = strstr(line, ": {");
        if (payload != NULL && strstr(payload, "\"depthUpdate\"") != NULL) {
            payload += 2;
            if (json_bench_add(set, payload, (size_t)(end - payload)) != QB_OK) {
                free(buf);
                return QB_ENOMEM;
            }
        }
        line = end + 1;
    }
    free(buf);
    size_t from_recorded = set->n;

    snprintf(path, sizeof path, "%s/samples/binance_depthUpdate_real_combined_*.json", dir);
    glob_t g;
    if (glob(path, 0, NULL, &g) == 0) {
        for (size_t k = 0; k < g.gl_pathc; k++) {
            char *js = json_bench_slurp(g.gl_pathv[k], &len);
            if (js == NULL || json_bench_add(set, js, len) != QB_OK) {
                free(js);
                globfree(&g);
                return QB_EIO;
            }
            free(js);
        }
        globfree(&g);
    }
    if (from_recorded == 0) {
        fprintf(stderr, "qb-bench-json: no depthUpdate lines in %s\n", path);
        return QB_EPARSE;
    }
    return QB_OK;
}

/* Deterministic 20-level updates formatted like Binance's: prices and
 * quantities as strings with 8 decimals, bids descending, asks ascending,
 * some quantities "0.00000000" (level deletes). */
static uint64_t json_bench_rng = 0x9E3779B97F4A7C15ull;

static uint64_t json_bench_rand(void)
{
    json_bench_rng ^= json_bench_rng << 13;
    json_bench_rng ^= json_bench_rng >> 7;
    json_bench_rng ^= json_bench_rng << 17;
    return json_bench_rng;
}

static size_t json_bench_put_level(char *o, uint64_t price_cents, uint64_t qty_e8)
{
    return (size_t)sprintf(o, "[\"%" PRIu64 ".%02" PRIu64 "000000\",\"%" PRIu64 ".%08" PRIu64 "\"]",
                           price_cents / 100, price_cents % 100, qty_e8 / 100000000,
                           qty_e8 % 100000000);
}

static int json_bench_make_synth(json_bench_set *set, int count, int levels)
{
    size_t cap = 256 + (size_t)levels * 2 * 64;
    char *o = malloc(cap);
    if (o == NULL) {
        return QB_ENOMEM;
    }
    uint64_t mid = 6325112; /* 63251.12 in cents */
    uint64_t u = 40000000000ull;
    uint64_t E = 1700000000123ull;
    for (int k = 0; k < count; k++) {
        mid += json_bench_rand() % 21;
        mid -= 10;
        uint64_t U = u + 1;
        u += 1 + json_bench_rand() % 60;
        E += 100;
        size_t n = (size_t)sprintf(o,
                                   "{\"stream\":\"btcusdt@depth@100ms\",\"data\":{\"e\":"
                                   "\"depthUpdate\",\"E\":%" PRIu64
                                   ",\"s\":\"BTCUSDT\",\"U\":%" PRIu64 ",\"u\":%" PRIu64 ",\"b\":[",
                                   E, U, u);
        for (int side = 0; side < 2; side++) {
            uint64_t p = side == 0 ? mid : mid + 1;
            for (int l = 0; l < levels; l++) {
                uint64_t r = json_bench_rand();
                uint64_t qty = r % 8 == 0 ? 0 : (r >> 8) % 250000000; /* < 2.5 BTC */
                n += json_bench_put_level(o + n, p, qty);
                o[n++] = l + 1 < levels ? ',' : ']';
                p = side == 0 ? p - 1 - (r >> 40) % 3 : p + 1 + (r >> 40) % 3;
            }
            if (levels == 0) {
                o[n++] = ']';
            }
            n += (size_t)sprintf(o + n, side == 0 ? ",\"a\":[" : "}}");
        }
        if (json_bench_add(set, o, n) != QB_OK) {
            free(o);
            return QB_ENOMEM;
        }
    }
    free(o);
    return QB_OK;
}

/* ---- measurement ---- */

/* The timed loop (and the only function callgrind collects in with
 * --toggle-collect=json_bench_loop): nmsg messages, cycling through set. */
__attribute__((noipa)) static uint64_t
json_bench_loop(const json_bench_parser *p, const json_bench_set *set, size_t nmsg, size_t *fails)
{
    uint64_t acc = 0;
    size_t k = 0;
    for (size_t i = 0; i < nmsg; i++) {
        const json_bench_msg *m = &set->m[k];
        if (p->run(m->js, m->len, &json_bench_out, json_bench_sink, &acc) != QB_OK) {
            (*fails)++;
        }
        if (++k == set->n) {
            k = 0;
        }
    }
    return acc;
}

static uint64_t json_bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int json_bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static size_t json_bench_loop_bytes(const json_bench_set *set, size_t nmsg)
{
    size_t bytes = (nmsg / set->n) * set->bytes;
    for (size_t k = 0; k < nmsg % set->n; k++) {
        bytes += set->m[k].len;
    }
    return bytes;
}

typedef struct json_bench_result {
    double ns[JSON_BENCH_MAX_RUNS];
    double allocs; /* per message, -1 when not counted */
    uint64_t checksum;
    size_t mismatches;
    size_t failures;
} json_bench_result;

/* One untimed pass over set: the checksum of every message into mine[],
 * compared with ref[] (when given) into r->mismatches; r->failures counts
 * rejected messages, r->allocs heap allocations per message. */
static void json_bench_verify(const json_bench_parser *p, const json_bench_set *set,
                              const uint64_t *ref, uint64_t *mine, json_bench_result *r)
{
    unsigned long long a0 = json_bench_nalloc;
    uint64_t total = 0;
    for (size_t k = 0; k < set->n; k++) {
        uint64_t h = 0;
        if (p->run(set->m[k].js, set->m[k].len, &json_bench_out, json_bench_checksum, &h) !=
            QB_OK) {
            r->failures++;
            h = 0;
        }
        mine[k] = h;
        if (ref != NULL && h != ref[k]) {
            r->mismatches++;
        }
        total = total * 31 + h;
    }
    r->checksum = total;
    r->allocs = JSON_BENCH_COUNT_ALLOCS ? (double)(json_bench_nalloc - a0) / (double)set->n : -1.0;
}

static int64_t json_bench_iters = 200000;
static int64_t json_bench_runs = 5;
static int64_t json_bench_levels = 20;
static int64_t json_bench_synth_count = 64;
static char *json_bench_data;
static qb_strlist json_bench_parser_sel;
static qb_strlist json_bench_dataset_sel;
static bool json_bench_callgrind;

static bool json_bench_selected(const qb_strlist *l, const char *name)
{
    if (l->n == 0) {
        return true;
    }
    for (size_t k = 0; k < l->n; k++) {
        if (strcmp(l->v[k], name) == 0 || strcmp(l->v[k], "all") == 0) {
            return true;
        }
    }
    return false;
}

static void json_bench_machine(void)
{
    char model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f != NULL) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) == 0) {
                char *c = strchr(line, ':');
                if (c != NULL) {
                    snprintf(model, sizeof model, "%s", c + 2);
                    model[strcspn(model, "\n")] = '\0';
                }
                break;
            }
        }
        fclose(f);
    }
    printf("# cpu: %s; compiler: gcc %s; build type: %s; allocation counting: %s\n", model,
           __VERSION__, QB_BENCH_BUILD_TYPE, JSON_BENCH_COUNT_ALLOCS ? "on" : "off");
#ifdef JSMN_PARENT_LINKS
    static const char jsmn_cfg[] = "JSMN_STRICT, JSMN_PARENT_LINKS";
#else
    static const char jsmn_cfg[] = "JSMN_STRICT";
#endif
    printf("# libs: jsmn (libjsmn-dev; %s), libwebsockets %s", jsmn_cfg, LWS_LIBRARY_VERSION);
#ifdef QB_BENCH_HAVE_CJSON
    printf(", cJSON %s", cJSON_Version());
#endif
#ifdef QB_BENCH_HAVE_JANSSON
    printf(", jansson %s", jansson_version_str());
#endif
#ifdef QB_BENCH_HAVE_SIMDJSON
    printf(", %s", json_bench_simdjson_desc);
#endif
    printf("\n");
}

/* The 1-minute load average: timings taken while other processes compete
 * for the CPUs are noise, so every table states it. */
static void json_bench_loadavg(char *out, size_t cap)
{
    snprintf(out, cap, "?");
    FILE *f = fopen("/proc/loadavg", "r");
    if (f != NULL) {
        char buf[64];
        if (fgets(buf, sizeof buf, f) != NULL) {
            buf[strcspn(buf, " ")] = '\0';
            snprintf(out, cap, "%.31s", buf);
        }
        fclose(f);
    }
}

/* Returns 0 when every selected parser agreed with the reference. */
static int json_bench_dataset(const json_bench_set *set)
{
    const json_bench_parser *sel[JSON_BENCH_MAX_PARSERS];
    size_t np = 0;
    for (size_t k = 0; k < JSON_BENCH_NPARSERS && np < JSON_BENCH_MAX_PARSERS; k++) {
        if (json_bench_selected(&json_bench_parser_sel, json_bench_parsers[k].name)) {
            sel[np++] = &json_bench_parsers[k];
        }
    }
    json_bench_result res[JSON_BENCH_MAX_PARSERS];
    memset(res, 0, sizeof res);
    uint64_t *ref = calloc(set->n, sizeof *ref);
    uint64_t *mine = calloc(set->n, sizeof *mine);
    if (ref == NULL || mine == NULL) {
        free(ref);
        free(mine);
        return 1;
    }
    /* The reference is always jsmn via common/json.h, selected or not. */
    json_bench_result scratch = {0};
    json_bench_verify(&json_bench_parsers[0], set, NULL, ref, &scratch);
    if (scratch.failures) {
        fprintf(stderr, "qb-bench-json: %s: the reference parser rejected %zu message(s)\n",
                set->name, scratch.failures);
    }
    for (size_t k = 0; k < np; k++) {
        json_bench_verify(sel[k], set, ref, mine, &res[k]);
    }
    free(ref);
    free(mine);

    size_t nmsg = (size_t)json_bench_iters;
    size_t runs = (size_t)json_bench_runs;
    size_t bytes = json_bench_loop_bytes(set, nmsg);
    if (json_bench_callgrind) {
        for (size_t k = 0; k < np; k++) {
            size_t fails = 0;
            uint64_t acc = json_bench_loop(sel[k], set, nmsg, &fails);
            printf("callgrind %s %s: %zu messages, %zu bytes, acc %" PRIu64 ", failures %zu\n",
                   set->name, sel[k]->name, nmsg, bytes, acc, fails);
        }
        return 0;
    }
    char load0[32];
    char load1[32];
    json_bench_loadavg(load0, sizeof load0);
    /* Warm-up: caches, branch predictors, lazy symbol binding, CPU clock. */
    for (size_t k = 0; k < np; k++) {
        size_t fails = 0;
        json_bench_loop(sel[k], set, nmsg > set->n ? nmsg : set->n, &fails);
    }
    for (size_t r = 0; r < runs; r++) {
        for (size_t k = 0; k < np; k++) {
            size_t fails = 0;
            uint64_t t0 = json_bench_now();
            json_bench_loop(sel[k], set, nmsg, &fails);
            uint64_t t1 = json_bench_now();
            res[k].ns[r] = (double)(t1 - t0) / (double)nmsg;
            res[k].failures += fails;
        }
    }

    json_bench_loadavg(load1, sizeof load1);
    printf("\n## dataset %s: %s\n", set->name, set->what);
    printf("# %zu distinct messages, %.0f bytes and %.1f levels per message on average; "
           "%zu messages per run, %zu runs, median reported; load average %s -> %s on %ld CPUs\n",
           set->n, (double)set->bytes / (double)set->n, (double)set->levels / (double)set->n, nmsg,
           runs, load0, load1, sysconf(_SC_NPROCESSORS_ONLN));
    printf("%-28s %10s %9s %9s %8s %11s %18s %s\n", "parser", "median_ns", "min_ns", "max_ns",
           "MB/s", "allocs/msg", "checksum", "verify");
    int bad = 0;
    for (size_t k = 0; k < np; k++) {
        double sorted[JSON_BENCH_MAX_RUNS];
        memcpy(sorted, res[k].ns, runs * sizeof(double));
        qsort(sorted, runs, sizeof(double), json_bench_cmp_double);
        double med = runs % 2 ? sorted[runs / 2] : (sorted[runs / 2 - 1] + sorted[runs / 2]) / 2;
        double mbs = (double)bytes / (med * (double)nmsg) * 1e9 / 1e6;
        char allocs[32];
        if (res[k].allocs < 0) {
            snprintf(allocs, sizeof allocs, "n/a");
        } else {
            snprintf(allocs, sizeof allocs, "%.1f", res[k].allocs);
        }
        const char *verdict = res[k].mismatches || res[k].failures ? "MISMATCH" : "ok";
        printf("%-28s %10.1f %9.1f %9.1f %8.1f %11s %18" PRIx64 " %s", sel[k]->desc, med, sorted[0],
               sorted[runs - 1], mbs, allocs, res[k].checksum, verdict);
        if (res[k].mismatches || res[k].failures) {
            printf(" (%zu differ, %zu failed)", res[k].mismatches, res[k].failures);
            bad = 1;
        }
        printf("\n");
    }
    fflush(stdout);
    return bad;
}

static void json_bench_count_levels(json_bench_set *set)
{
    for (size_t k = 0; k < set->n; k++) {
        uint64_t acc = 0;
        if (json_bench_jsmn(set->m[k].js, set->m[k].len, &json_bench_out, json_bench_sink, &acc) ==
            QB_OK) {
            set->levels += json_bench_out.nb + json_bench_out.na;
        }
    }
}

static void json_bench_set_free(json_bench_set *set)
{
    for (size_t k = 0; k < set->n; k++) {
        free(set->m[k].js);
    }
    free(set->m);
}

int main(int argc, char **argv)
{
    static const qb_opt opts[] = {
        {"data", QB_OPT_STR, &json_bench_data, "DIR",
         "exchange data directory" QB_OPT_DEFAULT("../shared/exchange-data beside the repo")},
        {"iters", QB_OPT_INT, &json_bench_iters, "N", "messages per timed run"},
        {"runs", QB_OPT_INT, &json_bench_runs, "N", "timed runs per parser, median reported"},
        {"parser", QB_OPT_LIST, &json_bench_parser_sel, "NAME",
         "parsers to run: jsmn, jsmn-raw, lejp, cjson, jansson, simdjson-od, "
         "simdjson-dom" QB_OPT_DEFAULT("all built")},
        {"dataset", QB_OPT_LIST, &json_bench_dataset_sel, "NAME",
         "datasets: recorded, synth" QB_OPT_DEFAULT("both")},
        {"levels", QB_OPT_INT, &json_bench_levels, "N", "bids and asks per synthetic update"},
        {"synth-count", QB_OPT_INT, &json_bench_synth_count, "N", "distinct synthetic updates"},
        {"callgrind", QB_OPT_BOOL, &json_bench_callgrind, NULL,
         "no warm-up, one untimed pass of --iters messages per parser (run under callgrind)"},
        {0},
    };
    static const qb_prog prog = {
        .name = "qb-bench-json",
        .usage = "[OPTIONS]",
        .summary =
            "Measures ns per message for jsmn, LEJP, cJSON, jansson and simdjson parsing Binance "
            "depth updates into stream, e, E, s, U, u and every price/qty string view. "
            "Checks that every parser extracts identical bytes. Exits 77 when the "
            "recorded data is missing.",
        .footer = "Instruction counts (noise-free):\n"
                  "  valgrind --tool=callgrind --toggle-collect=json_bench_loop \\\n"
                  "    --callgrind-out-file=cg.out qb-bench-json --callgrind --iters 20000 \\\n"
                  "    --parser jsmn --dataset recorded\n"
                  "  then Ir/message = the 'summary:' line of cg.out / 20000.",
    };
    int first;
    int rc = qb_opts_parse(&prog, opts, argc, argv, &first);
    if (rc == QB_EEOF) {
        return 0;
    }
    if (rc != QB_OK) {
        return 2;
    }
    if (json_bench_iters < 1 || json_bench_runs < 1 || json_bench_runs > JSON_BENCH_MAX_RUNS ||
        json_bench_levels < 0 || json_bench_levels > JSON_BENCH_MAX_LEVELS ||
        json_bench_synth_count < 1) {
        fprintf(stderr,
                "qb-bench-json: --iters, --runs (1..%d), --levels (0..%d) or "
                "--synth-count out of range\n",
                JSON_BENCH_MAX_RUNS, JSON_BENCH_MAX_LEVELS);
        qb_opts_free(opts);
        return 2;
    }
    for (size_t k = 0; k < json_bench_parser_sel.n; k++) {
        const char *name = json_bench_parser_sel.v[k];
        bool known = strcmp(name, "all") == 0;
        for (size_t m = 0; m < JSON_BENCH_NPARSERS; m++) {
            known = known || strcmp(name, json_bench_parsers[m].name) == 0;
        }
        if (!known) {
            fprintf(stderr, "qb-bench-json: unknown or not built parser '%s' (built:", name);
            for (size_t m = 0; m < JSON_BENCH_NPARSERS; m++) {
                fprintf(stderr, " %s", json_bench_parsers[m].name);
            }
            fprintf(stderr, ")\n");
            qb_opts_free(opts);
            return 2;
        }
    }
    for (size_t k = 0; k < json_bench_dataset_sel.n; k++) {
        const char *name = json_bench_dataset_sel.v[k];
        if (strcmp(name, "all") != 0 && strcmp(name, "recorded") != 0 &&
            strcmp(name, "synth") != 0) {
            fprintf(stderr, "qb-bench-json: unknown dataset '%s' (recorded, synth)\n", name);
            qb_opts_free(opts);
            return 2;
        }
    }
    if (json_bench_callgrind) {
        json_bench_runs = 1;
    }
    const char *dir = json_bench_data ? json_bench_data : QB_SHARED_DATA;

    json_bench_set sets[2] = {
        {.name = "recorded",
         .what = "real Binance spot NKNUSDT depth@100ms frames (recorded 2021-10-12) + "
                 "samples/binance_depthUpdate_real_combined_*.json"},
        {.name = "synth", .what = "synthetic BTCUSDT updates, Binance formatting"},
    };
    static char synth_what[128];
    snprintf(synth_what, sizeof synth_what,
             "synthetic BTCUSDT updates, %d bids + %d asks each, Binance formatting",
             (int)json_bench_levels, (int)json_bench_levels);
    sets[1].what = synth_what;

    rc = json_bench_load_recorded(&sets[0], dir);
    if (rc != QB_OK) {
        fprintf(stderr,
                "qb-bench-json: the recorded Binance data is missing or unreadable under %s;\n"
                "  pass --data DIR (the exchange-data directory with recorded/ and samples/)\n",
                dir);
        json_bench_set_free(&sets[0]);
        qb_opts_free(opts);
        return 77;
    }
    rc = json_bench_make_synth(&sets[1], (int)json_bench_synth_count, (int)json_bench_levels);
    if (rc != QB_OK) {
        fprintf(stderr, "qb-bench-json: %s\n", qb_strerror(rc));
        return 1;
    }
    size_t maxlen = 0;
    for (int s = 0; s < 2; s++) {
        for (size_t k = 0; k < sets[s].n; k++) {
            maxlen = sets[s].m[k].len > maxlen ? sets[s].m[k].len : maxlen;
        }
    }
    json_bench_arena = malloc(maxlen + 1);
    if (json_bench_arena == NULL) {
        return 1;
    }
#ifdef QB_BENCH_HAVE_SIMDJSON
    /* Selftest cases are shorter than 512 bytes. */
    rc = json_bench_simdjson_init(maxlen > 512 ? maxlen : 512, sizeof(json_bench_depth),
                                  JSON_BENCH_MAX_LEVELS, JSON_BENCH_PAD, json_bench_simdjson_desc,
                                  sizeof json_bench_simdjson_desc);
    if (rc != QB_OK) {
        fprintf(stderr, "qb-bench-json: simdjson init: %s\n", qb_strerror(rc));
        return 1;
    }
#endif
    for (int s = 0; s < 2; s++) {
        json_bench_count_levels(&sets[s]);
    }

    json_bench_machine();
    int bad = 0;
    size_t st_bad = 0;
    for (size_t k = 0; k < JSON_BENCH_NPARSERS; k++) {
        st_bad += json_bench_selftest(&json_bench_parsers[k]);
    }
    printf("# validation selftest (%zu accept/reject cases, every parser): %s\n",
           sizeof json_bench_cases / sizeof json_bench_cases[0], st_bad ? "FAILED" : "ok");
    bad |= st_bad != 0;
    for (int s = 0; s < 2; s++) {
        if (json_bench_selected(&json_bench_dataset_sel, sets[s].name)) {
            bad |= json_bench_dataset(&sets[s]);
        }
    }
    for (int s = 0; s < 2; s++) {
        json_bench_set_free(&sets[s]);
    }
    free(json_bench_arena);
#ifdef QB_BENCH_HAVE_SIMDJSON
    json_bench_simdjson_fini();
#endif
    qb_opts_free(opts);
    if (bad) {
        fprintf(stderr,
                "qb-bench-json: some parser extracted different data (see verify column)\n");
    }
    return bad;
}
