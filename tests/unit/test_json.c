/*
 * test_json.c: common/json.c, the jsmn helpers. Objects and arrays, get/at/
 * skip, string escapes (surrogate pairs included), trailing garbage and
 * truncation rejected, token exhaustion on a nesting bomb, u64/i64 ranges;
 * the string writer qb_json_append_str (escapes, UTF-8 kept, invalid
 * bytes as U+FFFD, its output read back by the parser).
 */
#include "buf.h"
#include "err.h"
#include "harness.h"
#include "json.h"

#define NTOK 256
static jsmntok_t tok[NTOK];

static int parse(qb_json *j, const char *s)
{
    return qb_json_parse(j, s, strlen(s), tok, NTOK);
}

QB_TEST(objects_arrays_get_at_skip)
{
    qb_json j;
    const char *doc = " {\"a\": 1, \"b\": \"x y\", \"c\": [1, 2, {\"d\": true, \"e\": [[], {}]}],"
                      " \"f\": null, \"g\": -2.5e3} \n";
    QB_CHECK_EQ_INT(parse(&j, doc), QB_OK);
    QB_CHECK(qb_json_is_object(&j, 0));
    QB_CHECK_EQ_INT(qb_json_skip(&j, 0), j.ntok);
    int a = qb_json_get(&j, 0, "a");
    uint64_t u = 0;
    QB_CHECK_EQ_INT(qb_json_u64(&j, a, &u), QB_OK);
    QB_CHECK_EQ_INT(u, 1);
    int b = qb_json_get(&j, 0, "b");
    QB_CHECK(qb_json_is_str(&j, b));
    QB_CHECK(qb_json_str_eq(&j, b, "x y"));
    QB_CHECK(!qb_json_str_eq(&j, b, "x"));
    size_t n;
    const char *t = qb_json_text(&j, b, &n);
    QB_CHECK(n == 3 && memcmp(t, "x y", 3) == 0); /* without the quotes */
    int c = qb_json_get(&j, 0, "c");
    QB_CHECK(qb_json_is_array(&j, c));
    QB_CHECK_EQ_INT(j.tok[c].size, 3);
    int c1 = qb_json_at(&j, c, 1);
    QB_CHECK_EQ_INT(qb_json_u64(&j, c1, &u), QB_OK);
    QB_CHECK_EQ_INT(u, 2);
    int c2 = qb_json_at(&j, c, 2);
    QB_CHECK(qb_json_is_object(&j, c2));
    bool bv = false;
    QB_CHECK_EQ_INT(qb_json_bool(&j, qb_json_get(&j, c2, "d"), &bv), QB_OK);
    QB_CHECK(bv);
    int e = qb_json_get(&j, c2, "e");
    QB_CHECK(qb_json_is_array(&j, qb_json_at(&j, e, 0)));
    QB_CHECK(qb_json_is_object(&j, qb_json_at(&j, e, 1)));
    QB_CHECK_EQ_INT(qb_json_at(&j, e, 2), -1);
    /* keys after a nested value are still found (skip works) */
    QB_CHECK(qb_json_get(&j, 0, "f") > 0);
    int g = qb_json_get(&j, 0, "g");
    t = qb_json_text(&j, g, &n);
    QB_CHECK(n == 6 && memcmp(t, "-2.5e3", 6) == 0);
    /* misses */
    QB_CHECK_EQ_INT(qb_json_get(&j, 0, "zz"), -1);
    QB_CHECK_EQ_INT(qb_json_get(&j, 0, ""), -1);
    QB_CHECK_EQ_INT(qb_json_get(&j, c, "a"), -1); /* not an object */
    QB_CHECK_EQ_INT(qb_json_get(&j, -1, "a"), -1);
    QB_CHECK_EQ_INT(qb_json_get(&j, 9999, "a"), -1);
    QB_CHECK_EQ_INT(qb_json_at(&j, 0, 0), -1); /* not an array */
    QB_CHECK_EQ_INT(qb_json_at(&j, c, -1), -1);
    QB_CHECK_EQ_INT(qb_json_at(&j, c, 3), -1);
    QB_CHECK(!qb_json_is_str(&j, -1) && !qb_json_is_str(&j, 9999));
    t = qb_json_text(&j, 9999, &n);
    QB_CHECK(n == 0 && t != NULL);
    /* values are not keys: "x y" appears only as a value */
    QB_CHECK_EQ_INT(qb_json_get(&j, 0, "x y"), -1);
    /* a top-level array */
    QB_CHECK_EQ_INT(parse(&j, "[1,\"2\",[3]]"), QB_OK);
    QB_CHECK(qb_json_is_array(&j, 0));
    QB_CHECK_EQ_INT(qb_json_u64(&j, qb_json_at(&j, 0, 1), &u), QB_OK); /* from a string */
    QB_CHECK_EQ_INT(u, 2);
    QB_CHECK_EQ_INT(parse(&j, "{}"), QB_OK);
    QB_CHECK_EQ_INT(j.ntok, 1);
}

QB_TEST(escapes_and_surrogate_pairs)
{
    qb_json j;
    char out[64];
    QB_CHECK_EQ_INT(parse(&j, "[\"q\\\"b\\\\s\\/n\\n\\t\\r\\b\\f\"]"), QB_OK);
    QB_CHECK_EQ_INT(qb_json_str_copy(&j, 1, out, sizeof out), QB_OK);
    QB_CHECK_EQ_STR(out, "q\"b\\s/n\n\t\r\b\f");
    /* escaped text never matches raw comparisons */
    QB_CHECK(!qb_json_str_eq(&j, 1, "q\"b\\s/n\n\t\r\b\f"));
    QB_CHECK_EQ_INT(parse(&j, "[\"\\u00e9\\u20AC\\ud83d\\ude00x\\u0041\"]"), QB_OK);
    QB_CHECK_EQ_INT(qb_json_str_copy(&j, 1, out, sizeof out), QB_OK);
    QB_CHECK_EQ_STR(out, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80xA");
    /* raw UTF-8 passes through */
    QB_CHECK_EQ_INT(parse(&j, "[\"\xc3\xa9\"]"), QB_OK);
    QB_CHECK_EQ_INT(qb_json_str_copy(&j, 1, out, sizeof out), QB_OK);
    QB_CHECK_EQ_STR(out, "\xc3\xa9");
    /* bad escapes */
    const char *bad[] = {
        "[\"\\ud83d\"]",        /* lone high surrogate */
        "[\"\\ud83dx\"]",       /* high surrogate, no escape after */
        "[\"\\ud83d\\u0041\"]", /* high surrogate + non-low */
        "[\"\\ude00\"]",        /* lone low surrogate */
        "[\"\\u12g4\"]",        /* bad hex */
        "[\"\\u12\"]",          /* short */
        "[\"\\x41\"]",          /* unknown escape */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse(&j, bad[i]);
        if (rc == QB_OK) {
            strcpy(out, "unchanged");
            QB_CHECK_EQ_INT(qb_json_str_copy(&j, 1, out, sizeof out), QB_EPARSE);
        } else {
            QB_CHECK_EQ_INT(rc, QB_EPARSE); /* jsmn already refused it */
        }
    }
    /* capacity: the NUL needs room too */
    QB_CHECK_EQ_INT(parse(&j, "[\"abcd\", \"\\u20ac\"]"), QB_OK);
    QB_CHECK_EQ_INT(qb_json_str_copy(&j, 1, out, 4), QB_ETOOBIG);
    QB_CHECK_EQ_INT(qb_json_str_copy(&j, 1, out, 5), QB_OK);
    QB_CHECK_EQ_STR(out, "abcd");
    QB_CHECK_EQ_INT(qb_json_str_copy(&j, 2, out, 3), QB_ETOOBIG);
    QB_CHECK_EQ_INT(qb_json_str_copy(&j, 2, out, 4), QB_OK);
    QB_CHECK_EQ_INT(qb_json_str_copy(&j, 2, out, 0), QB_EPARSE);
    QB_CHECK_EQ_INT(qb_json_str_copy(&j, 0, out, sizeof out), QB_EPARSE); /* not a string */
}

QB_TEST(trailing_garbage_rejected)
{
    qb_json j;
    const char *bad[] = {"{\"a\":1} x",
                         "{\"a\":1}{\"b\":2}",
                         "{\"a\":1} 5",
                         "{\"a\":1}]",
                         "[1] [2]",
                         "{\"a\":1},",
                         "5",
                         "\"str\"",
                         "true",
                         "",
                         "   ",
                         "{\"a\" 1}",
                         "{1:2}",
                         "{\"a\"}",
                         "[1,]x",
                         "{\"a\":x}",
                         "{\"a\":1,\"b\"}",
                         "nul",
                         "{'a':1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse(&j, bad[i]);
        if (rc != QB_EPARSE) {
            fprintf(stderr, "  input '%s': rc %d\n", bad[i], rc);
        }
        QB_CHECK_EQ_INT(rc, QB_EPARSE);
    }
    /* jsmn does not validate number syntax; consumers do (json.h) */
    QB_CHECK_EQ_INT(parse(&j, "[01x]"), QB_OK);
    uint64_t u;
    QB_CHECK_EQ_INT(qb_json_u64(&j, 1, &u), QB_EPARSE);
    /* trailing white space and a trailing NUL are fine */
    QB_CHECK_EQ_INT(qb_json_parse(&j, "{\"a\":1} \t\r\n", 11, tok, NTOK), QB_OK);
    QB_CHECK_EQ_INT(qb_json_parse(&j, "{\"a\":1}\0", 8, tok, NTOK), QB_OK);
}

QB_TEST(truncated_rejected)
{
    const char *doc = "{\"stream\":\"btcusdt@depth\",\"data\":{\"e\":\"depthUpdate\",\"U\":1,"
                      "\"u\":2,\"b\":[[\"100.5\",\"1\"]],\"a\":[],\"s\":\"\\u0041\"}}";
    size_t len = strlen(doc);
    qb_json j;
    QB_CHECK_EQ_INT(qb_json_parse(&j, doc, len, tok, NTOK), QB_OK);
    for (size_t n = 0; n < len; n++) {
        /* an exact-size copy, so ASan sees any read past the end */
        char *p = malloc(n ? n : 1);
        memcpy(p, doc, n);
        int rc = qb_json_parse(&j, p, n, tok, NTOK);
        if (rc == QB_OK) {
            fprintf(stderr, "  prefix %zu accepted\n", n);
        }
        QB_CHECK(rc == QB_EPARSE);
        free(p);
    }
}

QB_TEST(nesting_bomb_exhausts_tokens)
{
    size_t depth = 100000;
    char *s = malloc(2 * depth + 1);
    memset(s, '[', depth);
    memset(s + depth, ']', depth);
    s[2 * depth] = 0;
    qb_json j;
    QB_CHECK_EQ_INT(qb_json_parse(&j, s, 2 * depth, tok, NTOK), QB_ETOOBIG);
    /* unterminated */
    QB_CHECK_EQ_INT(qb_json_parse(&j, s, depth, tok, NTOK), QB_ETOOBIG);
    /* objects */
    for (size_t i = 0; i + 5 <= depth; i += 5) {
        memcpy(s + i, "{\"a\":", 5);
    }
    QB_CHECK_EQ_INT(qb_json_parse(&j, s, depth, tok, NTOK), QB_ETOOBIG);
    /* a wide document: many tokens, no depth */
    s[0] = '[';
    for (size_t i = 1; i < depth - 1; i += 2) {
        s[i] = '1';
        s[i + 1] = ',';
    }
    s[depth - 2] = '1';
    s[depth - 1] = ']';
    QB_CHECK_EQ_INT(qb_json_parse(&j, s, depth, tok, NTOK), QB_ETOOBIG);
    /* exactly enough tokens */
    QB_CHECK_EQ_INT(qb_json_parse(&j, "[[[[1]]]]", 9, tok, 5), QB_OK);
    QB_CHECK_EQ_INT(qb_json_parse(&j, "[[[[1]]]]", 9, tok, 4), QB_ETOOBIG);
    free(s);
}

QB_TEST(u64_i64_bool_ranges)
{
    qb_json j;
    QB_CHECK_EQ_INT(parse(&j, "[0, 18446744073709551615, 18446744073709551616, -1, 1.5, 1e3,"
                              " \"42\", \"\", \"4 2\", 99999999999999999999999, true, false, null,"
                              " \"true\", 9223372036854775807, 9223372036854775808,"
                              " -9223372036854775808, -9223372036854775809, -0, \"-7\", \"-\"]"),
                    QB_OK);
    uint64_t u = 7;
    int64_t s = 7;
    bool b = false;
#define AT(k) qb_json_at(&j, 0, (k))
    QB_CHECK_EQ_INT(qb_json_u64(&j, AT(0), &u), QB_OK);
    QB_CHECK_EQ_INT(u, 0);
    QB_CHECK_EQ_INT(qb_json_u64(&j, AT(1), &u), QB_OK);
    QB_CHECK(u == UINT64_MAX);
    u = 7;
    QB_CHECK_EQ_INT(qb_json_u64(&j, AT(2), &u), QB_ERANGE);
    QB_CHECK_EQ_INT(qb_json_u64(&j, AT(3), &u), QB_EPARSE);
    QB_CHECK_EQ_INT(qb_json_u64(&j, AT(4), &u), QB_EPARSE);
    QB_CHECK_EQ_INT(qb_json_u64(&j, AT(5), &u), QB_EPARSE);
    QB_CHECK_EQ_INT(u, 7); /* untouched on failure */
    QB_CHECK_EQ_INT(qb_json_u64(&j, AT(6), &u), QB_OK);
    QB_CHECK_EQ_INT(u, 42);
    QB_CHECK_EQ_INT(qb_json_u64(&j, AT(7), &u), QB_EPARSE);
    QB_CHECK_EQ_INT(qb_json_u64(&j, AT(8), &u), QB_EPARSE);
    QB_CHECK_EQ_INT(qb_json_u64(&j, AT(9), &u), QB_ERANGE);
    QB_CHECK_EQ_INT(qb_json_u64(&j, AT(10), &u), QB_EPARSE);
    QB_CHECK_EQ_INT(qb_json_u64(&j, 0, &u), QB_EPARSE);  /* an array */
    QB_CHECK_EQ_INT(qb_json_u64(&j, -1, &u), QB_EPARSE); /* no token */
    QB_CHECK_EQ_INT(qb_json_bool(&j, AT(10), &b), QB_OK);
    QB_CHECK(b);
    QB_CHECK_EQ_INT(qb_json_bool(&j, AT(11), &b), QB_OK);
    QB_CHECK(!b);
    QB_CHECK_EQ_INT(qb_json_bool(&j, AT(12), &b), QB_EPARSE);
    QB_CHECK_EQ_INT(qb_json_bool(&j, AT(13), &b), QB_EPARSE); /* a string */
    QB_CHECK_EQ_INT(qb_json_bool(&j, AT(0), &b), QB_EPARSE);
    QB_CHECK_EQ_INT(qb_json_bool(&j, -1, &b), QB_EPARSE);
    QB_CHECK_EQ_INT(qb_json_i64(&j, AT(14), &s), QB_OK);
    QB_CHECK(s == INT64_MAX);
    QB_CHECK_EQ_INT(qb_json_i64(&j, AT(15), &s), QB_ERANGE);
    QB_CHECK_EQ_INT(qb_json_i64(&j, AT(16), &s), QB_OK);
    QB_CHECK(s == INT64_MIN);
    s = 7;
    QB_CHECK_EQ_INT(qb_json_i64(&j, AT(17), &s), QB_ERANGE);
    QB_CHECK_EQ_INT(s, 7);
    QB_CHECK_EQ_INT(qb_json_i64(&j, AT(18), &s), QB_OK);
    QB_CHECK_EQ_INT(s, 0);
    QB_CHECK_EQ_INT(qb_json_i64(&j, AT(19), &s), QB_OK);
    QB_CHECK_EQ_INT(s, -7);
    QB_CHECK_EQ_INT(qb_json_i64(&j, AT(20), &s), QB_EPARSE);
    QB_CHECK_EQ_INT(qb_json_i64(&j, AT(4), &s), QB_EPARSE);
    QB_CHECK_EQ_INT(qb_json_i64(&j, AT(0), &s), QB_OK);
    QB_CHECK_EQ_INT(qb_json_i64(&j, -1, &s), QB_EPARSE);
#undef AT
}

/* Depth limit on both paths of qb_json_parse: few brackets (checked on the
 * tokens after jsmn) and many (checked on the text before jsmn); the same
 * answer either way, QB_ETOOBIG winning over other faults. */
static int nest(char *s, int depth, const char *open, const char *close, const char *leaf)
{
    int n = 0;
    for (int i = 0; i < depth; i++) {
        n += sprintf(s + n, "%s", open);
    }
    n += sprintf(s + n, "%s", leaf);
    for (int i = 0; i < depth; i++) {
        n += sprintf(s + n, "%s", close);
    }
    return n;
}

QB_TEST(depth_limit_both_paths)
{
    static char s[65536];
    qb_json j;
    int n = nest(s, QB_JSON_MAX_DEPTH, "[", "]", "1");
    QB_CHECK_EQ_INT(qb_json_parse(&j, s, (size_t)n, tok, NTOK), QB_OK);
    n = nest(s, QB_JSON_MAX_DEPTH + 1, "[", "]", "1");
    QB_CHECK_EQ_INT(qb_json_parse(&j, s, (size_t)n, tok, NTOK), QB_ETOOBIG);
    n = nest(s, QB_JSON_MAX_DEPTH, "{\"a\":", "}", "1");
    QB_CHECK_EQ_INT(qb_json_parse(&j, s, (size_t)n, tok, NTOK), QB_OK);
    n = nest(s, QB_JSON_MAX_DEPTH + 1, "{\"a\":", "}", "1");
    QB_CHECK_EQ_INT(qb_json_parse(&j, s, (size_t)n, tok, NTOK), QB_ETOOBIG);
    /* too deep and malformed / unterminated / trailing junk: too deep */
    n = nest(s, 100, "[", "]", "1");
    s[n - 1] = '}';
    QB_CHECK_EQ_INT(qb_json_parse(&j, s, (size_t)n, tok, NTOK), QB_ETOOBIG);
    QB_CHECK_EQ_INT(qb_json_parse(&j, s, 100, tok, NTOK), QB_ETOOBIG);
    n = nest(s, 70, "[", "]", "1");
    memcpy(s + n, " x", 3);
    QB_CHECK_EQ_INT(qb_json_parse(&j, s, (size_t)n + 2, tok, NTOK), QB_ETOOBIG);
    /* a NUL ends jsmn's input; a bomb after it is still too deep */
    n = sprintf(s, "[1]");
    s[n++] = '\0';
    n += nest(s + n, 70, "[", "]", "1");
    QB_CHECK_EQ_INT(qb_json_parse(&j, s, (size_t)n, tok, NTOK), QB_ETOOBIG);
    /* malformed but shallow: EPARSE on both paths */
    QB_CHECK_EQ_INT(qb_json_parse(&j, "[[1]]]", 6, tok, NTOK), QB_EPARSE);
    QB_CHECK_EQ_INT(qb_json_parse(&j, "{\"a\"}", 5, tok, NTOK), QB_EPARSE);
    /* many brackets, all shallow (inside strings or side by side): OK */
    n = sprintf(s, "[\"");
    for (int i = 0; i < 1000; i++) {
        s[n++] = (i & 1) ? '{' : '[';
    }
    n += sprintf(s + n, "\"");
    for (int i = 0; i < 1000; i++) {
        n += sprintf(s + n, ",[[1],{\"k\":[2]}]");
    }
    n += sprintf(s + n, "]");
    static jsmntok_t big[8192];
    QB_CHECK_EQ_INT(qb_json_parse(&j, s, (size_t)n, big, 8192), QB_OK);
    /* a deep one among many brackets: the text scan rejects it */
    n -= 1;
    n += sprintf(s + n, ",");
    n += nest(s + n, 70, "[", "]", "1");
    n += sprintf(s + n, "]");
    QB_CHECK_EQ_INT(qb_json_parse(&j, s, (size_t)n, big, 8192), QB_ETOOBIG);
}

/* The subtree walk qb_json_skip used to do, as the reference. */
static int skip_ref(const qb_json *j, int i)
{
    int pending = 1;
    while (pending > 0 && i < j->ntok) {
        const jsmntok_t *t = &j->tok[i];
        pending--;
        if (t->type == JSMN_OBJECT) {
            pending += t->size * 2;
        } else if (t->type == JSMN_ARRAY) {
            pending += t->size;
        }
        i++;
    }
    return i;
}

QB_TEST(skip_matches_subtree_walk)
{
    static const char *const docs[] = {
        "[]",
        "{}",
        "[[]]",
        "[{},[],{\"a\":[]}]",
        "{\"a\":{\"b\":{\"c\":[1,2,[3,[4,[]]]]}},\"d\":\"}]\"}",
        "[1,\"x\",true,null,[[[[]]]],{\"k\":{\"k\":{}}},[1,[2,[3]]],\"\\\"]\"]",
        "{\"stream\":\"s\",\"data\":{\"e\":\"depthUpdate\",\"b\":[[\"1\",\"2\"],[\"3\",\"4\"]],"
        "\"a\":[],\"u\":5}}",
    };
    for (size_t d = 0; d < sizeof docs / sizeof docs[0]; d++) {
        qb_json j;
        QB_CHECK_EQ_INT(qb_json_parse(&j, docs[d], strlen(docs[d]), tok, NTOK), QB_OK);
        for (int i = 0; i <= j.ntok; i++) {
            QB_CHECK_EQ_INT(qb_json_skip(&j, i), skip_ref(&j, i));
        }
    }
    /* a generated document with wide and deep parts */
    static char s[200000];
    static jsmntok_t big[40000];
    uint64_t x = 12345;
    int n = 0, depth = 0;
    s[n++] = '[';
    depth = 1;
    bool first = true;
    for (int k = 0; k < 20000 && n < 190000; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int r = (int)(x % 10);
        if (r < 3 && depth < 40) {
            n += sprintf(s + n, "%s[", first ? "" : ",");
            depth++;
            first = true;
        } else if (r < 5 && depth > 1) {
            s[n++] = ']';
            depth--;
            first = false;
        } else if (r < 6) {
            n += sprintf(s + n, "%s{\"k\":[1,{}],\"v\":2}", first ? "" : ",");
            first = false;
        } else {
            n += sprintf(s + n, "%s%d", first ? "" : ",", r);
            first = false;
        }
    }
    while (depth-- > 0) {
        s[n++] = ']';
    }
    qb_json j;
    QB_CHECK_EQ_INT(qb_json_parse(&j, s, (size_t)n, big, 40000), QB_OK);
    for (int i = 0; i < j.ntok; i++) {
        if (qb_json_skip(&j, i) != skip_ref(&j, i)) {
            QB_CHECK_EQ_INT(qb_json_skip(&j, i), skip_ref(&j, i));
            break;
        }
    }
}

static bool append_is(const char *s, size_t n, const char *want)
{
    qb_buf b = QB_BUF_INIT;
    bool ok = qb_json_append_str(&b, s, n) == QB_OK && b.len == strlen(want) &&
              memcmp(b.data, want, b.len) == 0;
    if (!ok) {
        fprintf(stderr, "got %.*s want %s\n", (int)b.len, (const char *)b.data, want);
    }
    qb_buf_fini(&b);
    return ok;
}

QB_TEST(append_str_escapes_and_utf8)
{
    QB_CHECK(append_is("", 0, "\"\""));
    QB_CHECK(append_is("BTC-USDT", 8, "\"BTC-USDT\""));
    QB_CHECK(append_is("a\"b\\c\x01\xc3", 7, "\"a\\\"b\\\\c\\u0001\\ufffd\""));
    QB_CHECK(append_is("\n\r\t\x7f\x1f", 5, "\"\\n\\r\\t\\u007f\\u001f\""));
    QB_CHECK(append_is("x\0y", 3, "\"x\\u0000y\""));
    /* valid UTF-8 (2, 3 and 4 bytes) is copied */
    QB_CHECK(append_is("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9,
                       "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\""));
    /* overlong, surrogate, beyond U+10FFFF, stray continuation, cut */
    QB_CHECK(append_is("\xc0\xaf", 2, "\"\\ufffd\\ufffd\""));
    QB_CHECK(append_is("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""));
    QB_CHECK(append_is("\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""));
    QB_CHECK(append_is("\x80z", 2, "\"\\ufffdz\""));
    QB_CHECK(append_is("\xe2\x82", 2, "\"\\ufffd\\ufffd\""));
}

QB_TEST(append_str_reads_back)
{
    /* every ASCII byte but NUL, written then parsed back: the JSON is
     * valid and the text comes back unchanged */
    char in[127];
    for (int i = 0; i < 127; i++) {
        in[i] = (char)(i + 1);
    }
    qb_buf b = QB_BUF_INIT;
    QB_CHECK_EQ_INT(qb_buf_append(&b, "[", 1), QB_OK);
    QB_CHECK_EQ_INT(qb_json_append_str(&b, in, sizeof in), QB_OK);
    QB_CHECK_EQ_INT(qb_buf_append(&b, "]", 1), QB_OK);
    qb_json j;
    QB_CHECK_EQ_INT(qb_json_parse(&j, (const char *)b.data, b.len, tok, NTOK), QB_OK);
    char out[256];
    QB_CHECK_EQ_INT(qb_json_str_copy(&j, 1, out, sizeof out), QB_OK);
    QB_CHECK(strlen(out) == sizeof in && memcmp(out, in, sizeof in) == 0);
    qb_buf_fini(&b);
}

int main(void)
{
    return qb_test_run_all();
}
