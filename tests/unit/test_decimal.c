/*
 * test_decimal.c: proto/decimal.c. Parsing (exponents, trailing zeros,
 * 18/19 significant digits, overflow, invalid text), formatting (round trips
 * to the same text, INT64 boundaries), comparison across scales, rescale and
 * add. qb_dec_parse's fast paths (and the plain-C ones alone,
 * qb__dec_parse_portable) against the general parser
 * (qb__dec_parse_general) on every shape, every byte substitution of
 * Binance's form, edge cases and random strings.
 */
#include "decimal.h"
#include "err.h"
#include "harness.h"

#include <stdint.h>
#include <stdlib.h>

static int parse(const char *s, qb_dec *out)
{
    return qb_dec_parse(s, strlen(s), out);
}

/* Parses s and checks the exact mantissa and scale. */
#define CHECK_PARSE(s, m, sc)                                                                      \
    do {                                                                                           \
        qb_dec d_ = {777, 77};                                                                     \
        int rc_ = parse(s, &d_);                                                                   \
        QB_CHECK_EQ_INT(rc_, QB_OK);                                                               \
        QB_CHECK_EQ_INT(d_.mant, (m));                                                             \
        QB_CHECK_EQ_INT(d_.scale, (sc));                                                           \
    } while (0)

#define CHECK_PARSE_FAILS(s, err)                                                                  \
    do {                                                                                           \
        qb_dec d_ = {777, 7};                                                                      \
        QB_CHECK_EQ_INT(parse(s, &d_), (err));                                                     \
        /* out-params are written only on success */                                               \
        QB_CHECK(d_.mant == 777 && d_.scale == 7);                                                 \
    } while (0)

static const char *fmt(qb_dec d, char *buf)
{
    int n = qb_dec_format(d, buf, QB_DEC_STR_MAX);
    QB_CHECK(n >= 0 && (size_t)n == strlen(buf));
    return buf;
}

#define CHECK_FORMAT(m, sc, text)                                                                  \
    do {                                                                                           \
        char b_[QB_DEC_STR_MAX];                                                                   \
        QB_CHECK_EQ_STR(fmt((qb_dec){(m), (sc)}, b_), (text));                                     \
    } while (0)

QB_TEST(parse_plain_forms)
{
    CHECK_PARSE("0", 0, 0);
    CHECK_PARSE("1", 1, 0);
    CHECK_PARSE("-1", -1, 0);
    CHECK_PARSE("+1", 1, 0);
    CHECK_PARSE("12300", 12300, 0);
    CHECK_PARSE("100.50", 10050, 2);
    CHECK_PARSE("0.10000000", 10000000, 8);
    CHECK_PARSE("0000.5", 5, 1);
    CHECK_PARSE(".5", 5, 1);
    CHECK_PARSE("5.", 5, 0);
    CHECK_PARSE("-.25", -25, 2);
    CHECK_PARSE("0.00", 0, 2);
    CHECK_PARSE("-0", 0, 0);
    CHECK_PARSE("0.00000001", 1, 8);
    CHECK_PARSE("00012.3400", 123400, 4);
}

QB_TEST(parse_exponents)
{
    CHECK_PARSE("9.2E-7", 92, 8);
    CHECK_PARSE("1.58E-4", 158, 6);
    CHECK_PARSE("1E+3", 1, -3);
    CHECK_PARSE("1e3", 1, -3);
    CHECK_PARSE("1.5e1", 15, 0);
    CHECK_PARSE("1.50e1", 150, 1);
    CHECK_PARSE("25e-2", 25, 2);
    CHECK_PARSE("-2.5E-10", -25, 11);
    CHECK_PARSE("1e0", 1, 0);
    CHECK_PARSE("1e-0", 1, 0);
    CHECK_PARSE("1e+00003", 1, -3);
    CHECK_PARSE("0e5", 0, -5);
    CHECK_PARSE("1e30", 1, -30);
    /* Out of the scale range as written, but exactly representable. */
    CHECK_PARSE("1e31", 10, -30);
    CHECK_PARSE("1e-30", 1, 30);
    CHECK_PARSE_FAILS("1e-31", QB_ERANGE);
    CHECK_PARSE_FAILS("1e999999999", QB_ERANGE);
    CHECK_PARSE_FAILS("1e-999999999", QB_ERANGE);
    CHECK_PARSE_FAILS("1e99999999999999999999999999999999", QB_ERANGE);
    CHECK_PARSE_FAILS("1e-99999999999999999999999999999999", QB_ERANGE);
    /* Zero is exact at any scale: the scale is clamped to the range. */
    CHECK_PARSE("0e-99", 0, QB_DEC_MAX_SCALE);
    CHECK_PARSE("0e999999999999", 0, -QB_DEC_MAX_SCALE);
}

QB_TEST(parse_significant_digits)
{
    /* 18 significant digits always fit. */
    CHECK_PARSE("999999999999999999", 999999999999999999ll, 0);
    CHECK_PARSE("0.999999999999999999", 999999999999999999ll, 18);
    CHECK_PARSE("-123456789.012345678", -123456789012345678ll, 9);
    /* 19 fit up to INT64_MAX. */
    CHECK_PARSE("9223372036854775807", INT64_MAX, 0);
    CHECK_PARSE("-9223372036854775807", -INT64_MAX, 0);
    CHECK_PARSE("922337203.6854775807", INT64_MAX, 10);
    CHECK_PARSE_FAILS("9223372036854775808", QB_ERANGE);
    CHECK_PARSE_FAILS("-9223372036854775808", QB_ERANGE);
    CHECK_PARSE_FAILS("9999999999999999999", QB_ERANGE);
    CHECK_PARSE_FAILS("12345678901234567891", QB_ERANGE);
    CHECK_PARSE("12345678901234567890", 1234567890123456789ll, -1);
    CHECK_PARSE_FAILS("0.12345678901234567890123", QB_ERANGE);
    /* Trailing zeros are dropped (value exact) only when needed to fit. */
    CHECK_PARSE("1.000000000000000000", 1000000000000000000ll, 18);
    CHECK_PARSE("1.0000000000000000000000", 1000000000000000000ll, 18);
    CHECK_PARSE("123.450000000000000000000000000", 1234500000000000000ll, 16);
    CHECK_PARSE("100000000000000000000", 1000000000000000000ll, -2);
    /* Leading zeros are free. */
    CHECK_PARSE("0000000000000000000000000000000000000000123.5", 1235, 1);
    CHECK_PARSE("0.000000000000000000000000000001", 1, 30);
}

QB_TEST(parse_thousands_of_digits)
{
    char s[5000];
    /* 1 followed by 4000 zeros: a value of 10^4000. */
    s[0] = '1';
    memset(s + 1, '0', 4000);
    CHECK_PARSE_FAILS("x", QB_EPARSE);
    qb_dec d = {7, 7};
    QB_CHECK_EQ_INT(qb_dec_parse(s, 4001, &d), QB_ERANGE);
    /* 1.000...0 with 4000 fraction zeros: exactly 1. */
    s[1] = '.';
    memset(s + 2, '0', 4000);
    QB_CHECK_EQ_INT(qb_dec_parse(s, 4002, &d), QB_OK);
    QB_CHECK_EQ_INT(qb_dec_cmp(d, (qb_dec){1, 0}), 0);
    QB_CHECK(d.scale <= QB_DEC_MAX_SCALE);
    /* 4000 nines: too many significant digits. */
    memset(s, '9', 4000);
    QB_CHECK_EQ_INT(qb_dec_parse(s, 4000, &d), QB_ERANGE);
    /* 0.000...0001 with 4000 zeros: too small. */
    s[0] = '0';
    s[1] = '.';
    memset(s + 2, '0', 4000);
    s[4002] = '1';
    QB_CHECK_EQ_INT(qb_dec_parse(s, 4003, &d), QB_ERANGE);
    /* 4000 zeros: zero. */
    memset(s, '0', 4000);
    QB_CHECK_EQ_INT(qb_dec_parse(s, 4000, &d), QB_OK);
    QB_CHECK(qb_dec_is_zero(d));
}

QB_TEST(parse_rejects_invalid_text)
{
    const char *bad[] = {"",     "-",     "+",     ".",   "-.",   "1e",    "1e+",  "1e-", "e5",
                         ".e1",  "1.2.3", " 1",    "1 ",  "1 .5", "0x10",  "inf",  "nan", "-inf",
                         "NaN",  "1,5",   "1_0",   "++1", "--1",  "1e5.5", "1ee5", "abc", "1a",
                         "1.5x", "+-1",   "1e+-5", "\t1", "1\n",  "١"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qb_dec d = {777, 7};
        int rc = parse(bad[i], &d);
        if (rc != QB_EPARSE) {
            fprintf(stderr, "  input \"%s\": rc %d\n", bad[i], rc);
        }
        QB_CHECK_EQ_INT(rc, QB_EPARSE);
        QB_CHECK(d.mant == 777 && d.scale == 7);
    }
    /* The length bounds the text: an embedded NUL is junk, not an end. */
    qb_dec d;
    QB_CHECK_EQ_INT(qb_dec_parse("1\0"
                                 "5",
                                 3, &d),
                    QB_EPARSE);
    QB_CHECK_EQ_INT(qb_dec_parse("15", 1, &d), QB_OK);
    QB_CHECK_EQ_INT(d.mant, 1);
    QB_CHECK_EQ_INT(qb_dec_parse(NULL, 0, &d), QB_EPARSE);
}

QB_TEST(format_forms)
{
    CHECK_FORMAT(0, 0, "0");
    CHECK_FORMAT(0, 2, "0.00");
    CHECK_FORMAT(0, -3, "0");
    CHECK_FORMAT(5, 1, "0.5");
    CHECK_FORMAT(-5, 1, "-0.5");
    CHECK_FORMAT(92, 8, "0.00000092");
    CHECK_FORMAT(10000000, 8, "0.10000000");
    CHECK_FORMAT(1, -3, "1000");
    CHECK_FORMAT(-12, -2, "-1200");
    CHECK_FORMAT(10050, 2, "100.50");
    CHECK_FORMAT(1, 30, "0.000000000000000000000000000001");
    CHECK_FORMAT(INT64_MAX, 0, "9223372036854775807");
    CHECK_FORMAT(INT64_MIN, 0, "-9223372036854775808");
    CHECK_FORMAT(INT64_MIN, 19, "-0.9223372036854775808");
    CHECK_FORMAT(INT64_MIN, 30, "-0.000000000009223372036854775808");
    CHECK_FORMAT(INT64_MIN, -30, "-9223372036854775808000000000000000000000000000000");
    CHECK_FORMAT(INT64_MAX, 10, "922337203.6854775807");
    /* The longest text fits QB_DEC_STR_MAX. */
    char buf[QB_DEC_STR_MAX];
    QB_CHECK(qb_dec_format((qb_dec){INT64_MIN, -QB_DEC_MAX_SCALE}, buf, sizeof buf) > 0);
    QB_CHECK(qb_dec_format((qb_dec){INT64_MIN, QB_DEC_MAX_SCALE}, buf, sizeof buf) > 0);
    /* Too small a buffer: -1, never an overrun. */
    QB_CHECK_EQ_INT(qb_dec_format((qb_dec){12345, 2}, buf, 6), -1);
    QB_CHECK_EQ_INT(qb_dec_format((qb_dec){12345, 2}, buf, 7), 6);
    QB_CHECK_EQ_STR(buf, "123.45");
    QB_CHECK_EQ_INT(qb_dec_format((qb_dec){1, 0}, buf, 0), -1);
}

QB_TEST(round_trips_to_same_text)
{
    const char *texts[] = {
        "0",
        "0.00",
        "0.10000000",
        "100.50",
        "-100.50",
        "0.00000092",
        "12300",
        "1",
        "-1",
        "0.5",
        "65000.01",
        "0.00012345",
        "27.00000000",
        "0.000000000000000000000000000001",
        "999999999999999999",
        "0.999999999999999999",
        "9223372036854775807",
        "-9223372036854775807",
        "922337203.6854775807",
        "1.000000000000000000",
        "100000000000000000000",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        qb_dec d;
        char buf[QB_DEC_STR_MAX];
        QB_CHECK_EQ_INT(parse(texts[i], &d), QB_OK);
        QB_CHECK_EQ_STR(fmt(d, buf), texts[i]);
    }
    /* Exponent forms come back as plain text with the same value. */
    struct {
        const char *in, *out;
    } ex[] = {
        {"9.2E-7", "0.00000092"},
        {"1.58E-4", "0.000158"},
        {"1E+3", "1000"},
        {"-1.5e2", "-150"},
        {"5.", "5"},
        {".5", "0.5"},
        {"+0007.70", "7.70"},
        {"1e31", "10000000000000000000000000000000"},
    };
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        qb_dec d;
        char buf[QB_DEC_STR_MAX];
        QB_CHECK_EQ_INT(parse(ex[i].in, &d), QB_OK);
        QB_CHECK_EQ_STR(fmt(d, buf), ex[i].out);
    }
}

/* Random mantissas and scales: format -> parse gives the identical decimal. */
QB_TEST(round_trips_random)
{
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t m = (int64_t)(x >> (x % 64));
        if (x & 1) {
            m = -m;
        }
        if (m == INT64_MIN) {
            m++;
        }
        int scale = (int)((x >> 20) % (2 * QB_DEC_MAX_SCALE + 1)) - QB_DEC_MAX_SCALE;
        if (scale < 0 && m == 0) {
            scale = 0; /* "0" parses back with scale 0 */
        }
        qb_dec d = {m, (int8_t)scale}, e;
        char buf[QB_DEC_STR_MAX];
        int n = qb_dec_format(d, buf, sizeof buf);
        QB_CHECK(n > 0);
        int rc = qb_dec_parse(buf, (size_t)n, &e);
        if (scale >= 0) {
            QB_CHECK_EQ_INT(rc, QB_OK);
            QB_CHECK(qb_dec_identical(d, e));
        } else {
            /* Negative scales format with zeros, which parse back as digits
             * of the mantissa when they fit: same value. */
            QB_CHECK_EQ_INT(rc, QB_OK);
            QB_CHECK_EQ_INT(qb_dec_cmp(d, e), 0);
        }
        if (qb_test_failed_) {
            fprintf(stderr, "  at %s (%lld, %d)\n", buf, (long long)m, scale);
            break;
        }
    }
}

QB_TEST(cmp_across_scales)
{
    qb_dec a, b;
    QB_CHECK_EQ_INT(qb_dec_cmp((qb_dec){15, 1}, (qb_dec){150, 2}), 0);
    QB_CHECK_EQ_INT(qb_dec_cmp((qb_dec){1, 6}, (qb_dec){1, 7}), 1);
    QB_CHECK_EQ_INT(qb_dec_cmp((qb_dec){1, 7}, (qb_dec){1, 6}), -1);
    QB_CHECK_EQ_INT(qb_dec_cmp((qb_dec){-1, 6}, (qb_dec){-1, 7}), -1);
    QB_CHECK_EQ_INT(qb_dec_cmp((qb_dec){0, 6}, (qb_dec){0, -7}), 0);
    QB_CHECK_EQ_INT(qb_dec_cmp((qb_dec){0, 6}, (qb_dec){-1, 30}), 1);
    QB_CHECK_EQ_INT(qb_dec_cmp((qb_dec){0, 6}, (qb_dec){1, 30}), -1);
    /* Big vs tiny, at the extremes: no overflow. */
    QB_CHECK_EQ_INT(qb_dec_cmp((qb_dec){INT64_MAX, -30}, (qb_dec){1, 30}), 1);
    QB_CHECK_EQ_INT(qb_dec_cmp((qb_dec){INT64_MIN, -30}, (qb_dec){INT64_MAX, 30}), -1);
    QB_CHECK_EQ_INT(qb_dec_cmp((qb_dec){INT64_MAX, 0}, (qb_dec){INT64_MAX, 1}), 1);
    QB_CHECK_EQ_INT(qb_dec_cmp((qb_dec){INT64_MIN, 0}, (qb_dec){INT64_MIN, 1}), -1);
    QB_CHECK_EQ_INT(qb_dec_cmp((qb_dec){INT64_MIN, 0}, (qb_dec){INT64_MIN, 0}), 0);
    /* 9223372036854775807 vs 922337203685477580.7 * 10 ... same digits. */
    QB_CHECK_EQ_INT(qb_dec_cmp((qb_dec){922337203685477580ll, -1}, (qb_dec){INT64_MAX, 0}), -1);
    QB_CHECK_EQ_INT(
        qb_dec_cmp((qb_dec){922337203685477580ll, -1}, (qb_dec){9223372036854775800ll, 0}), 0);
    QB_CHECK_EQ_INT(qb_dec_cmp((qb_dec){1, -18}, (qb_dec){1000000000000000000ll, 0}), 0);
    QB_CHECK_EQ_INT(qb_dec_cmp((qb_dec){1, -19}, (qb_dec){1000000000000000000ll, 0}), 1);
    QB_CHECK_EQ_INT(qb_dec_cmp((qb_dec){1, 19}, (qb_dec){1, 18}), -1);
    /* 100.5 vs 100.49999 */
    QB_CHECK_EQ_INT(parse("100.5", &a), QB_OK);
    QB_CHECK_EQ_INT(parse("100.49999", &b), QB_OK);
    QB_CHECK(qb_dec_cmp(a, b) > 0 && qb_dec_cmp(b, a) < 0);
    QB_CHECK_EQ_INT(parse("-100.5", &a), QB_OK);
    QB_CHECK_EQ_INT(parse("-100.49999", &b), QB_OK);
    QB_CHECK(qb_dec_cmp(a, b) < 0 && qb_dec_cmp(b, a) > 0);
    QB_CHECK_EQ_INT(parse("0.000001", &a), QB_OK);
    QB_CHECK_EQ_INT(parse("1e-7", &b), QB_OK);
    QB_CHECK(qb_dec_cmp(a, b) > 0);
    QB_CHECK(!qb_dec_identical((qb_dec){15, 1}, (qb_dec){150, 2}));
    QB_CHECK(qb_dec_identical((qb_dec){15, 1}, (qb_dec){15, 1}));
}

/* cmp agrees with exact 128-bit arithmetic on random pairs whose scales are
 * close enough for the reference to compute them. */
QB_TEST(cmp_random_against_int128)
{
    uint64_t x = 12345;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t ma = (int64_t)(x >> (x % 64)) * ((x & 2) ? -1 : 1);
        uint64_t y = x * 0x2545F4914F6CDD1Dull;
        int64_t mb = (int64_t)(y >> (y % 64)) * ((y & 2) ? -1 : 1);
        if (i % 3 == 0) {
            mb = ma / 10; /* near-equal values */
        }
        int sa = (int)(x >> 40) % 19, sb = (int)(y >> 40) % 19;
        if (i % 5 == 0) {
            sb = sa + 1 > 18 ? sa : sa + 1;
        }
        /* value * 10^18: a * 10^(18-sa) fits int128 since |a| < 2^63. */
        __int128 va = (__int128)ma, vb = (__int128)mb;
        for (int k = sa; k < 18; k++) {
            va *= 10;
        }
        for (int k = sb; k < 18; k++) {
            vb *= 10;
        }
        int want = (va > vb) - (va < vb);
        int got = qb_dec_cmp((qb_dec){ma, (int8_t)sa}, (qb_dec){mb, (int8_t)sb});
        got = (got > 0) - (got < 0);
        if (want != got) {
            fprintf(stderr, "  cmp(%lld e-%d, %lld e-%d) = %d, want %d\n", (long long)ma, sa,
                    (long long)mb, sb, got, want);
            QB_CHECK(want == got);
            break;
        }
    }
}

QB_TEST(rescale_exact_or_erange)
{
    qb_dec r = {7, 7};
    QB_CHECK_EQ_INT(qb_dec_rescale((qb_dec){15, 1}, 3, &r), QB_OK);
    QB_CHECK(qb_dec_identical(r, (qb_dec){1500, 3}));
    QB_CHECK_EQ_INT(qb_dec_rescale((qb_dec){1500, 3}, 1, &r), QB_OK);
    QB_CHECK(qb_dec_identical(r, (qb_dec){15, 1}));
    QB_CHECK_EQ_INT(qb_dec_rescale((qb_dec){-1500, 3}, -2, &r), QB_ERANGE);
    QB_CHECK_EQ_INT(qb_dec_rescale((qb_dec){-1500000, 3}, -2, &r), QB_OK);
    QB_CHECK(qb_dec_identical(r, (qb_dec){-15, -2}));
    r = (qb_dec){7, 7};
    QB_CHECK_EQ_INT(qb_dec_rescale((qb_dec){1501, 3}, 1, &r), QB_ERANGE);
    QB_CHECK(r.mant == 7 && r.scale == 7);
    QB_CHECK_EQ_INT(qb_dec_rescale((qb_dec){INT64_MAX, 0}, 1, &r), QB_ERANGE);
    QB_CHECK_EQ_INT(qb_dec_rescale((qb_dec){922337203685477580ll, 0}, 1, &r), QB_OK);
    QB_CHECK_EQ_INT(qb_dec_rescale((qb_dec){1, 0}, 19, &r), QB_ERANGE);
    QB_CHECK_EQ_INT(qb_dec_rescale((qb_dec){1, 0}, 18, &r), QB_OK);
    QB_CHECK_EQ_INT(qb_dec_rescale((qb_dec){1, -30}, 30, &r), QB_ERANGE);
    QB_CHECK_EQ_INT(qb_dec_rescale((qb_dec){0, -30}, 30, &r), QB_OK);
    QB_CHECK(qb_dec_identical(r, (qb_dec){0, 30}));
    QB_CHECK_EQ_INT(qb_dec_rescale((qb_dec){1, 0}, 31, &r), QB_ERANGE);
    QB_CHECK_EQ_INT(qb_dec_rescale((qb_dec){INT64_MIN, 30}, -30, &r), QB_ERANGE);
    QB_CHECK_EQ_INT(qb_dec_rescale((qb_dec){INT64_MIN, 0}, 0, &r), QB_OK);
}

QB_TEST(add_exact_or_erange)
{
    qb_dec r = {7, 7};
    QB_CHECK_EQ_INT(qb_dec_add((qb_dec){15, 1}, (qb_dec){25, 2}, &r), QB_OK);
    QB_CHECK(qb_dec_identical(r, (qb_dec){175, 2}));
    QB_CHECK_EQ_INT(qb_dec_add((qb_dec){15, 1}, (qb_dec){-150, 2}, &r), QB_OK);
    QB_CHECK(qb_dec_identical(r, (qb_dec){0, 2}));
    QB_CHECK_EQ_INT(qb_dec_add((qb_dec){1, -3}, (qb_dec){1, 0}, &r), QB_OK);
    QB_CHECK(qb_dec_identical(r, (qb_dec){1001, 0}));
    r = (qb_dec){7, 7};
    QB_CHECK_EQ_INT(qb_dec_add((qb_dec){INT64_MAX, 0}, (qb_dec){1, 0}, &r), QB_ERANGE);
    QB_CHECK(r.mant == 7);
    QB_CHECK_EQ_INT(qb_dec_add((qb_dec){-INT64_MAX, 0}, (qb_dec){-1, 0}, &r), QB_ERANGE);
    QB_CHECK_EQ_INT(qb_dec_add((qb_dec){INT64_MAX, 0}, (qb_dec){1, 1}, &r), QB_ERANGE);
    QB_CHECK_EQ_INT(qb_dec_add((qb_dec){INT64_MAX, 0}, (qb_dec){-INT64_MAX, 0}, &r), QB_OK);
    QB_CHECK(qb_dec_is_zero(r));
    QB_CHECK(qb_dec_is_neg((qb_dec){-1, 3}) && !qb_dec_is_neg((qb_dec){0, 3}));
}

static uint64_t fast_rnd_state = 0x2545F4914F6CDD1Dull;
static uint64_t fast_rnd(void)
{
    fast_rnd_state ^= fast_rnd_state << 13;
    fast_rnd_state ^= fast_rnd_state >> 7;
    fast_rnd_state ^= fast_rnd_state << 17;
    return fast_rnd_state;
}

/* qb_dec_parse (fast path first) and the general parser agree exactly:
 * same return code, same mantissa and scale on success. */
static bool fast_matches_general(const char *s, size_t n)
{
    qb_dec a = {777, 77}, b = {777, 77}, c = {777, 77};
    int ra = qb_dec_parse(s, n, &a);
    int rb = qb__dec_parse_general(s, n, &b);
    /* the plain-C fast paths too (what runs without SSE2) */
    int rc = qb__dec_parse_portable(s, n, &c);
    if (ra != rb || (ra == QB_OK && !qb_dec_identical(a, b)) || rc != rb ||
        (rc == QB_OK && !qb_dec_identical(c, b)) ||
        (rb != QB_OK && (a.mant != 777 || a.scale != 77 || c.mant != 777 || c.scale != 77))) {
        fprintf(stderr, "  '%.*s': parse %d {%lld,%d} portable %d {%lld,%d} general %d {%lld,%d}\n",
                (int)n, s, ra, (long long)a.mant, a.scale, rc, (long long)c.mant, c.scale, rb,
                (long long)b.mant, b.scale);
        return false;
    }
    return true;
}

QB_TEST(parse_fast_path_matches_general)
{
    static const char *const edge[] = {
        "0",
        "-0",
        "+0",
        "0.0",
        "-0.00000000",
        "00000000",
        "000000000000000000",
        "0000000000000000000",
        "1",
        "12345678",
        "123456789",
        "1234567.8",
        "12345678.12345678",
        "59999.99000000",
        "0.12345600",
        "99999999999999999.9",
        "999999999999999999",
        "9999999999999999999",
        "99999999999999999999",
        "9223372036854775807",
        "9223372036854775808",
        "123456789012345678",
        "1234567890123456789",
        "12345678901234567.8",
        "1.23456789012345678",
        "1.234567890123456789",
        "0.00000000000000000001",
        "0.000000000000000000000000000001",
        "1.",
        ".5",
        ".",
        "-",
        "+",
        "",
        "--1",
        "1.2.3",
        "1e5",
        "1E+5",
        "12345678e1",
        "1234567812345678e-3",
        "1 ",
        " 1",
        "0x10",
        "1,5",
        "123456789a",
        "12345678:",
        "1234567/",
        "-12345678.9",
        "+12345678.9",
        "00000000.00000001",
        "1.000000000000000000000000000000000",
        "95339000",
        "12.3456",
    };
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
        QB_CHECK(fast_matches_general(edge[i], strlen(edge[i])));
    }
    /* Random strings over the characters that matter: digits (often many,
     * so the 8-at-a-time path and the 18/19-digit edges are hit), '.', signs,
     * exponents and a few others. */
    static const char alphabet[] = "0123456789012345678901234567890123456789..-+eE/:a ";
    char buf[48];
    for (int i = 0; i < 400000; i++) {
        uint64_t r = fast_rnd();
        size_t n = 1 + (size_t)(r % 40);
        int mode = (int)((r >> 8) % 4);
        for (size_t k = 0; k < n; k++) {
            uint64_t c = fast_rnd();
            if (mode == 0) {
                buf[k] = alphabet[c % (sizeof alphabet - 1)];
            } else {
                buf[k] = (char)('0' + c % 10); /* digits, one '.' and a sign below */
            }
        }
        if (mode >= 1 && n > 1) {
            buf[(size_t)((r >> 16) % n)] = '.';
        }
        if (mode == 2) {
            buf[0] = (r >> 24) & 1 ? '-' : '+';
        }
        if (mode == 3 && n > 2 && ((r >> 28) & 3) == 0) {
            buf[n - 2] = 'e'; /* exponent after a plain-looking prefix */
        }
        if (!fast_matches_general(buf, n)) {
            QB_CHECK(false);
            break;
        }
    }
}

/* The string s[0..n) copied to the very end of a heap block, so that
 * AddressSanitizer reports any read past it. */
static bool fast_matches_general_at_end(char *block, size_t cap, const char *s, size_t n)
{
    char *p = block + cap - n;
    memcpy(p, s, n);
    return fast_matches_general(p, n);
}

/* Every "[sign]digits[.digits]" shape of 0..40 bytes (the 16-byte fast
 * path, the older 8-at-a-time path for 17..19 digits, the general parser
 * beyond), with each byte in turn replaced by each byte that matters:
 * non-digits next to '0' and '9' in ASCII, '.', signs, exponents, NUL,
 * 0x80 and 0xFF (high bytes and SWAR carries). Then millions of random
 * strings in those shapes. qb_dec_parse must agree exactly with the
 * general parser every time. */
QB_TEST(parse_fast_path_exhaustive_shapes)
{
    enum { CAP = 48 };
    char *block = malloc(CAP);
    QB_CHECK(block != NULL);
    if (block == NULL) {
        return;
    }
    static const char subst[] = {'/', ':', '.',        '-',        '+',        'e', 'E', '\0',
                                 ' ', 'a', (char)0x80, (char)0xFF, (char)0xFA, '0', '9'};
    static const char *const prefixes[] = {"", "-", "+"};
    char s[CAP];
    size_t bad = 0, checked = 0;
    for (size_t pi = 0; pi < 3; pi++) {
        for (size_t n = 0; n <= 40; n++) {
            size_t pl = strlen(prefixes[pi]);
            if (pl + n > 40) {
                continue;
            }
            /* point at every position, or none (pos == n) */
            for (size_t pos = 0; pos <= n; pos++) {
                for (int fill = 0; fill < 4; fill++) {
                    memcpy(s, prefixes[pi], pl);
                    for (size_t i = 0; i < n; i++) {
                        /* 9s (overflow edges), 0s (leading and trailing
                         * zeros), 1-then-0s, and a 1..9 pattern */
                        char c = fill == 0   ? '9'
                                 : fill == 1 ? '0'
                                 : fill == 2 ? (i ? '0' : '1')
                                             : (char)('1' + i % 9);
                        s[pl + i] = c;
                    }
                    if (pos < n) {
                        s[pl + pos] = '.';
                    }
                    size_t len = pl + n;
                    bad += !fast_matches_general_at_end(block, CAP, s, len);
                    checked++;
                    /* one byte replaced, at every position */
                    for (size_t j = 0; j < len; j++) {
                        char keep = s[j];
                        for (size_t k = 0; k < sizeof subst; k++) {
                            s[j] = subst[k];
                            bad += !fast_matches_general_at_end(block, CAP, s, len);
                            checked++;
                        }
                        s[j] = keep;
                    }
                }
            }
        }
    }
    /* 18/19/20 digits and the int64 edges, with and without a point */
    static const char *const edge[] = {
        "922337203685477580.7",
        "9223372036854775807.",
        "9223372036854775808.",
        ".9223372036854775807",
        "-9223372036854775807",
        "-9223372036854775808",
        "99999999999999999999.",
        "0.0000000000000001",
        "0.",
        ".5",
        "-.5",
        "+.5",
        "-0.",
        "-0",
        "0000000000000000",
        "000000000000000.1",
        "1234567890123456",
        "123456789012345.6",
        "1.234567890123456",
        "9999999999999999",
    };
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
        bad += !fast_matches_general_at_end(block, CAP, edge[i], strlen(edge[i]));
        checked++;
    }
    /* random: mostly plain numbers of 1..24 bytes, some junk anywhere */
    static const char alphabet[] = "0123456789.-+eE\0/:";
    for (int r = 0; r < 2000000; r++) {
        uint64_t x = fast_rnd();
        size_t n = (size_t)(x % 25);
        for (size_t i = 0; i < n; i++) {
            s[i] = (char)('0' + fast_rnd() % 10);
        }
        if (n > 0 && (x >> 8) % 4 != 0) {
            s[(x >> 12) % n] = '.';
        }
        if (n > 0 && (x >> 20) % 4 == 0) {
            s[0] = (x >> 24) & 1 ? '-' : '+';
        }
        if (n > 0 && (x >> 28) % 8 == 0) {
            s[(x >> 32) % n] = alphabet[(x >> 40) % (sizeof alphabet - 1)];
        }
        bad += !fast_matches_general_at_end(block, CAP, s, n);
        checked++;
    }
    QB_CHECK_EQ_INT(bad, 0);
    QB_CHECK(checked > 3000000);
    free(block);
}

/* The string s[0..n) copied to the very start of a heap block, so that
 * AddressSanitizer reports any read before it. */
static bool fast_matches_general_at_start(char *block, const char *s, size_t n)
{
    memcpy(block, s, n);
    return fast_matches_general(block, n);
}

/* Binance's form "d.dddddddd" .. "dddddddd.dddddddd" (10..17 bytes, the
 * point 9 bytes from the end) has its own path in qb_dec_parse, SSE2 and
 * plain C: every length 9..18 with the point there, each byte in turn
 * replaced by each of the 256 byte values (the point too: then it is not
 * that form), the text at the end and at the start of a heap block (reads
 * outside s[0..len) are reported by AddressSanitizer); two bytes replaced
 * at random; millions of random strings of that shape. */
QB_TEST(parse_binance_form_every_byte)
{
    enum { CAP = 32 };
    char *end_block = malloc(CAP), *start_block = malloc(CAP);
    QB_CHECK(end_block != NULL && start_block != NULL);
    if (end_block == NULL || start_block == NULL) {
        free(end_block);
        free(start_block);
        return;
    }
    char s[CAP];
    size_t bad = 0, checked = 0;
    for (size_t len = 9; len <= 18; len++) {
        for (int fill = 0; fill < 5; fill++) {
            for (size_t i = 0; i < len; i++) {
                s[i] = fill == 0   ? '9'
                       : fill == 1 ? '0'
                       : fill == 2 ? (char)('1' + i % 9)
                       : fill == 3 ? (char)('0' + (i * 7 + 3) % 10)
                                   : (i == 0 ? '-' : '5'); /* signed */
            }
            s[len - 9] = '.';
            bad += !fast_matches_general_at_end(end_block, CAP, s, len);
            bad += !fast_matches_general_at_start(start_block, s, len);
            checked += 2;
            for (size_t j = 0; j < len; j++) {
                char keep = s[j];
                for (int c = 0; c < 256; c++) {
                    s[j] = (char)c;
                    bad += !fast_matches_general_at_end(end_block, CAP, s, len);
                    bad += !fast_matches_general_at_start(start_block, s, len);
                    checked += 2;
                }
                s[j] = keep;
            }
        }
    }
    for (int r = 0; r < 2000000; r++) {
        uint64_t x = fast_rnd();
        size_t len = 10 + (size_t)(x % 8);
        for (size_t i = 0; i < len; i++) {
            s[i] = (char)('0' + fast_rnd() % 10);
        }
        s[len - 9] = '.';
        if ((x >> 8) % 4 == 0) {
            s[(x >> 16) % len] = (char)(x >> 24); /* any byte, anywhere */
        }
        if ((x >> 32) % 8 == 0) {
            s[(x >> 40) % len] = (char)(x >> 48);
        }
        bad += !fast_matches_general_at_end(end_block, CAP, s, len);
        checked++;
    }
    QB_CHECK_EQ_INT(bad, 0);
    QB_CHECK(checked > 2000000);
    free(end_block);
    free(start_block);
}

/* Binance pads to 8 decimals: the trailing zeros are kept (the text's scale),
 * on the fast path as on the general one. */
QB_TEST(parse_keeps_trailing_zeros)
{
    CHECK_PARSE("63251.12000000", 6325112000000, 8);
    CHECK_PARSE("0.01234000", 1234000, 8);
    CHECK_PARSE("0.00000000", 0, 8);
    CHECK_PARSE("-0.10000000", -10000000, 8);
    CHECK_PARSE("123456789012345.", 123456789012345, 0);
    CHECK_PARSE("1234567.12345678", 123456712345678, 8);
    CHECK_PARSE("12345678.1234567", 123456781234567, 7);
    CHECK_PARSE("1234567812345678", 1234567812345678, 0);
    /* Binance's form, every integer length */
    CHECK_PARSE("0.00000000", 0, 8);
    CHECK_PARSE("9.99999999", 999999999, 8);
    CHECK_PARSE("59999.99000000", 5999999000000, 8);
    CHECK_PARSE("1.00000001", 100000001, 8);
    CHECK_PARSE("12.34567890", 1234567890, 8);
    CHECK_PARSE("123.45678901", 12345678901, 8);
    CHECK_PARSE("1234.56789012", 123456789012, 8);
    CHECK_PARSE("123456.78901234", 12345678901234, 8);
    CHECK_PARSE("1234567.89012345", 123456789012345, 8);
    CHECK_PARSE("12345678.90123456", 1234567890123456, 8);
    CHECK_PARSE("99999999.99999999", 9999999999999999, 8);
    CHECK_PARSE("00000000.00000000", 0, 8);
    CHECK_PARSE("-29000.12000000", -2900012000000, 8);
    CHECK_PARSE_FAILS("1.2345678:", QB_EPARSE);
    CHECK_PARSE_FAILS("/.23456789", QB_EPARSE);
    CHECK_PARSE_FAILS("12345678.9012345/", QB_EPARSE);
    CHECK_PARSE_FAILS("1 .23456789", QB_EPARSE);
    CHECK_PARSE_FAILS("1.2345678e", QB_EPARSE);
}

int main(void)
{
    return qb_test_run_all();
}
