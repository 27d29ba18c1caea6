/*
 * json.c: the jsmn implementation (compiled once, here) and the helpers of
 * json.h, readers and the one JSON string writer. All functions are pure
 * (the writer touches only its buffer); any thread.
 */
/* jsmn's implementation is compiled here, once. It must be included before
 * json.h: json.h includes jsmn.h with JSMN_HEADER (declarations only), and
 * jsmn.h's include guard would then skip a second, implementing include. */
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>

#include "json.h"

#include "buf.h"
#include "err.h"

#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Largest number of '[' / '{' bytes for which jsmn runs before the depth is
 * known: even if they all nest, jsmn's closing brackets then cost at most
 * JSON_OPENERS_TRUSTED^2 / 2 parent-link steps (~33k: tens of microseconds). */
#define JSON_OPENERS_TRUSTED 256

/* Counts the '[' and '{' bytes of js (inside strings too: an upper bound on
 * the nesting depth), stopping early once past `stop`. ('[' | 0x20) ==
 * ('{' | 0x20) and no other byte ORs to 0x7B. SSE2: 16 bytes per step. */
static size_t json_count_openers(const char *js, size_t len, size_t stop)
{
    size_t n = 0, i = 0;
#if defined(__SSE2__)
    const __m128i lower = _mm_set1_epi8(0x20), open = _mm_set1_epi8(0x7B);
    while (len - i >= 16 && n <= stop) {
        /* up to 255 blocks per byte accumulator, then sum it (psadbw) */
        size_t blocks = (len - i) / 16;
        if (blocks > 64) {
            blocks = 64;
        }
        __m128i acc = _mm_setzero_si128();
        for (size_t b = 0; b < blocks; b++, i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(js + i));
            acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(_mm_or_si128(v, lower), open));
        }
        __m128i sum = _mm_sad_epu8(acc, _mm_setzero_si128());
        n += (size_t)_mm_cvtsi128_si32(sum) + (size_t)_mm_extract_epi16(sum, 4);
    }
#endif
    for (; i < len; i++) {
        n += (js[i] | 0x20) == 0x7B;
    }
    return n;
}

/* False when js nests arrays/objects deeper than QB_JSON_MAX_DEPTH outside
 * strings. Linear; run before jsmn when the document has many brackets,
 * because jsmn's closing bracket walks up the parent links through every
 * already-closed token of the current branch: quadratic in the depth
 * (measured: a 60 KB "[[[...]]]" frame cost 0.8 s of CPU, 3 s under ASan;
 * the adapter fell minutes behind a feed with one such frame a second).
 * Bounded depth makes jsmn O(len * depth). */
static bool json_depth_ok(const char *js, size_t len)
{
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = js[i];
        if (in_str) {
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_str = false;
            }
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > QB_JSON_MAX_DEPTH) {
                return false;
            }
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return true;
}

/* True when the tokens form exactly one complete value: every object has a
 * value for each key and nothing follows the root. jsmn accepts {"a"} as an
 * object of one key with no value; counting children catches it. */
static bool json_complete(const jsmntok_t *t, int n)
{
    long pending = 1;
    int i = 0;
    for (; i < n && pending > 0; i++) {
        pending--;
        if (t[i].type == JSMN_OBJECT) {
            pending += 2L * t[i].size;
        } else if (t[i].type == JSMN_ARRAY) {
            pending += t[i].size;
        }
    }
    return pending == 0 && i == n;
}

/* One walk over the tokens of a successful jsmn parse: QB_EPARSE unless
 * they form exactly one complete value (every object has a value for each
 * key and nothing follows the root: jsmn accepts {"a"} as an object of one
 * key with no value; counting children catches it), QB_ETOOBIG when
 * containers nest deeper than QB_JSON_MAX_DEPTH (for a complete document
 * the same depth json_depth_ok measures on the text). The stack holds the
 * children still expected by each open container. */
static int json_check_tokens(const jsmntok_t *t, int n)
{
    long left[QB_JSON_MAX_DEPTH + 1];
    int depth = 0;
    left[0] = 1; /* the root value */
    for (int i = 0; i < n; i++) {
        while (depth > 0 && left[depth] == 0) {
            depth--; /* containers complete before token i */
        }
        if (left[depth] == 0) {
            return QB_EPARSE; /* a token after the root value */
        }
        left[depth]--;
        long kids;
        if (t[i].type == JSMN_OBJECT) {
            kids = 2L * t[i].size;
        } else if (t[i].type == JSMN_ARRAY) {
            kids = t[i].size;
        } else {
            continue;
        }
        if (depth == QB_JSON_MAX_DEPTH) {
            return QB_ETOOBIG;
        }
        left[++depth] = kids;
    }
    for (; depth >= 0; depth--) {
        if (left[depth] != 0) {
            return QB_EPARSE; /* a key without value, or a missing value */
        }
    }
    return QB_OK;
}

/* The result of a parse of js that failed with rc: a document nested too
 * deep reports QB_ETOOBIG whatever else is wrong with it, as when the depth
 * was checked before jsmn ran. */
static int json_fail(const char *js, size_t len, size_t openers, int rc)
{
    if (openers > QB_JSON_MAX_DEPTH && !json_depth_ok(js, len)) {
        return QB_ETOOBIG;
    }
    return rc;
}

int qb_json_parse(qb_json *j, const char *js, size_t len, jsmntok_t *tokens, int cap)
{
    /* Depth protection in linear time without a second pass over every
     * byte of an ordinary frame: a document with few brackets cannot be a
     * costly nesting bomb, so jsmn runs first and the depth is checked on
     * its tokens; only a document with many brackets (big snapshots, or a
     * bomb) gets the exact text scan before jsmn. */
    size_t openers = json_count_openers(js, len, JSON_OPENERS_TRUSTED);
    if (openers > JSON_OPENERS_TRUSTED && !json_depth_ok(js, len)) {
        return QB_ETOOBIG; /* too complex, like a document past cap tokens */
    }
    jsmn_parser p;
    jsmn_init(&p);
    int n = jsmn_parse(&p, js, len, tokens, (unsigned int)cap);
    if (n == JSMN_ERROR_NOMEM) {
        return QB_ETOOBIG;
    }
    if (n <= 0) {
        return json_fail(js, len, openers, QB_EPARSE);
    }
    if (tokens[0].type != JSMN_OBJECT && tokens[0].type != JSMN_ARRAY) {
        return json_fail(js, len, openers, QB_EPARSE);
    }
    /* jsmn stops at the end of the first value in strict mode only for
     * primitives; reject trailing garbage and a second top-level value. */
    for (size_t k = (size_t)tokens[0].end; k < len; k++) {
        char c = js[k];
        if (c != ' ' && c != '\n' && c != '\r' && c != '\t' && c != '\0') {
            return json_fail(js, len, openers, QB_EPARSE);
        }
    }
    /* With at most QB_JSON_MAX_DEPTH brackets in the text the depth cannot
     * be exceeded: completeness is all there is to check. */
    bool ok = openers <= QB_JSON_MAX_DEPTH ? json_complete(tokens, n)
                                           : json_check_tokens(tokens, n) == QB_OK;
    if (!ok) {
        /* Incomplete, or nested too deep: json_fail tells which from the
         * text (a malformed token stream could mislead the token depth). */
        return json_fail(js, len, openers, QB_EPARSE);
    }
    j->js = js;
    j->len = len;
    j->tok = tokens;
    j->ntok = n;
    return QB_OK;
}

int qb_json_skip(const qb_json *j, int i)
{
    if (i < 0 || i >= j->ntok) {
        return i;
    }
    const jsmntok_t *t = j->tok;
    if (t[i].type != JSMN_OBJECT && t[i].type != JSMN_ARRAY) {
        return i + 1;
    }
    /* Tokens are in document order and a parse that succeeded closed every
     * container, so the subtree of i is the run of tokens that start before
     * i ends: find the first token starting at or after t[i].end by
     * galloping then bisecting, O(log subtree) instead of a walk over it
     * (a key lookup past a 1000-level array no longer visits its 3000
     * tokens). */
    int end = t[i].end, n = j->ntok;
    int lo = i + 1, hi, step = 1;
    for (;;) {
        hi = lo + step - 1;
        if (hi >= n) {
            hi = n;
            break;
        }
        if (t[hi].start >= end) {
            break;
        }
        lo = hi + 1;
        step *= 2;
    }
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (t[mid].start >= end) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return lo;
}

int qb_json_get(const qb_json *j, int obj, const char *key)
{
    if (obj < 0 || obj >= j->ntok || j->tok[obj].type != JSMN_OBJECT) {
        return -1;
    }
    size_t klen = strlen(key);
    int n = j->tok[obj].size;
    int i = obj + 1;
    for (int k = 0; k < n && i + 1 < j->ntok; k++) {
        const jsmntok_t *t = &j->tok[i];
        if (t->type == JSMN_STRING && (size_t)(t->end - t->start) == klen &&
            memcmp(j->js + t->start, key, klen) == 0) {
            return i + 1;
        }
        i = qb_json_skip(j, i + 1);
    }
    return -1;
}

int qb_json_at(const qb_json *j, int arr, int n)
{
    if (arr < 0 || arr >= j->ntok || j->tok[arr].type != JSMN_ARRAY || n < 0 ||
        n >= j->tok[arr].size) {
        return -1;
    }
    int i = arr + 1;
    for (int k = 0; k < n; k++) {
        i = qb_json_skip(j, i);
    }
    return i < j->ntok ? i : -1;
}

const char *qb_json_text(const qb_json *j, int i, size_t *len)
{
    if (i < 0 || i >= j->ntok) {
        *len = 0;
        return "";
    }
    *len = (size_t)(j->tok[i].end - j->tok[i].start);
    return j->js + j->tok[i].start;
}

bool qb_json_is_str(const qb_json *j, int i)
{
    return i >= 0 && i < j->ntok && j->tok[i].type == JSMN_STRING;
}

bool qb_json_is_array(const qb_json *j, int i)
{
    return i >= 0 && i < j->ntok && j->tok[i].type == JSMN_ARRAY;
}

bool qb_json_is_object(const qb_json *j, int i)
{
    return i >= 0 && i < j->ntok && j->tok[i].type == JSMN_OBJECT;
}

bool qb_json_str_eq(const qb_json *j, int i, const char *s)
{
    if (!qb_json_is_str(j, i)) {
        return false;
    }
    size_t n = strlen(s);
    return (size_t)(j->tok[i].end - j->tok[i].start) == n &&
           memcmp(j->js + j->tok[i].start, s, n) == 0;
}

int qb_json_u64(const qb_json *j, int i, uint64_t *out)
{
    if (i < 0 || i >= j->ntok ||
        (j->tok[i].type != JSMN_PRIMITIVE && j->tok[i].type != JSMN_STRING)) {
        return QB_EPARSE;
    }
    size_t n;
    const char *s = qb_json_text(j, i, &n);
    if (n == 0 || n > 20) {
        return n == 0 ? QB_EPARSE : QB_ERANGE;
    }
    uint64_t v = 0;
    for (size_t k = 0; k < n; k++) {
        if (s[k] < '0' || s[k] > '9') {
            return QB_EPARSE;
        }
        uint64_t d = (uint64_t)(s[k] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return QB_ERANGE;
        }
        v = v * 10 + d;
    }
    *out = v;
    return QB_OK;
}

int qb_json_i64(const qb_json *j, int i, int64_t *out)
{
    if (i < 0 || i >= j->ntok) {
        return QB_EPARSE;
    }
    size_t n;
    const char *s = qb_json_text(j, i, &n);
    bool neg = n > 0 && s[0] == '-';
    uint64_t v;
    jsmntok_t t = j->tok[i];
    if (neg) {
        t.start++;
    }
    qb_json sub = *j;
    sub.tok = &t;
    sub.ntok = 1;
    int rc = qb_json_u64(&sub, 0, &v);
    if (rc != QB_OK) {
        return rc;
    }
    if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX) {
        return QB_ERANGE;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return QB_OK;
}

int qb_json_bool(const qb_json *j, int i, bool *out)
{
    size_t n;
    const char *s = qb_json_text(j, i, &n);
    if (i < 0 || i >= j->ntok || j->tok[i].type != JSMN_PRIMITIVE) {
        return QB_EPARSE;
    }
    if (n == 4 && memcmp(s, "true", 4) == 0) {
        *out = true;
        return QB_OK;
    }
    if (n == 5 && memcmp(s, "false", 5) == 0) {
        *out = false;
        return QB_OK;
    }
    return QB_EPARSE;
}

static int json_hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[k];
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= (unsigned)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v |= (unsigned)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            v |= (unsigned)(c - 'A' + 10);
        } else {
            return QB_EPARSE;
        }
    }
    *out = v;
    return QB_OK;
}

int qb_json_str_copy(const qb_json *j, int i, char *out, size_t cap)
{
    if (!qb_json_is_str(j, i) || cap == 0) {
        return QB_EPARSE;
    }
    size_t n;
    const char *s = qb_json_text(j, i, &n);
    size_t o = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned cp = (unsigned char)s[k];
        if (cp == '\\') {
            if (++k >= n) {
                return QB_EPARSE;
            }
            switch (s[k]) {
            case '"':
                cp = '"';
                break;
            case '\\':
                cp = '\\';
                break;
            case '/':
                cp = '/';
                break;
            case 'b':
                cp = '\b';
                break;
            case 'f':
                cp = '\f';
                break;
            case 'n':
                cp = '\n';
                break;
            case 'r':
                cp = '\r';
                break;
            case 't':
                cp = '\t';
                break;
            case 'u':
                if (k + 4 >= n || json_hex4(s + k + 1, &cp) != QB_OK) {
                    return QB_EPARSE;
                }
                k += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;
                    if (k + 6 >= n || s[k + 1] != '\\' || s[k + 2] != 'u' ||
                        json_hex4(s + k + 3, &lo) != QB_OK || lo < 0xDC00 || lo > 0xDFFF) {
                        return QB_EPARSE;
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    k += 6;
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    return QB_EPARSE;
                }
                break;
            default:
                return QB_EPARSE;
            }
            char tmp[4];
            size_t w;
            if (cp < 0x80) {
                tmp[0] = (char)cp;
                w = 1;
            } else if (cp < 0x800) {
                tmp[0] = (char)(0xC0 | (cp >> 6));
                tmp[1] = (char)(0x80 | (cp & 0x3F));
                w = 2;
            } else if (cp < 0x10000) {
                tmp[0] = (char)(0xE0 | (cp >> 12));
                tmp[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                tmp[2] = (char)(0x80 | (cp & 0x3F));
                w = 3;
            } else {
                tmp[0] = (char)(0xF0 | (cp >> 18));
                tmp[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
                tmp[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
                tmp[3] = (char)(0x80 | (cp & 0x3F));
                w = 4;
            }
            if (o + w >= cap) {
                return QB_ETOOBIG;
            }
            memcpy(out + o, tmp, w);
            o += w;
        } else {
            if (o + 1 >= cap) {
                return QB_ETOOBIG;
            }
            out[o++] = (char)cp;
        }
    }
    out[o] = '\0';
    return QB_OK;
}

/* ---- writing -------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p[0..n), or 0 when invalid. */
static size_t json_utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    size_t len;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    /* overlong forms, surrogates, beyond U+10FFFF */
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return len;
}

int qb_json_append_str(qb_buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    int rc = qb_buf_append(out, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (rc == QB_OK && i < n) {
        /* copy the longest run that needs no escaping at once */
        size_t j = i;
        while (j < n && p[j] >= 0x20 && p[j] < 0x7f && p[j] != '"' && p[j] != '\\') {
            j++;
        }
        if (j > i) {
            rc = qb_buf_append(out, p + i, j - i);
            i = j;
            continue;
        }
        unsigned char c = p[i];
        char esc[8];
        size_t en = 2;
        esc[0] = '\\';
        if (c == '"' || c == '\\') {
            esc[1] = (char)c;
        } else if (c == '\n') {
            esc[1] = 'n';
        } else if (c == '\r') {
            esc[1] = 'r';
        } else if (c == '\t') {
            esc[1] = 't';
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            en = 6;
        } else {
            size_t ul = json_utf8_len(p + i, n - i);
            if (ul) {
                rc = qb_buf_append(out, p + i, ul);
                i += ul;
            } else {
                rc = qb_buf_append(out, "\\ufffd", 6);
                i++;
            }
            continue;
        }
        rc = qb_buf_append(out, esc, en);
        i++;
    }
    return rc ? rc : qb_buf_append(out, "\"", 1);
}
