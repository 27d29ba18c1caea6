/*
 * decimal.c: exact fixed-point decimals (see decimal.h).
 *
 * Parsing never multiplies before it knows the result fits: the text is
 * first split into sign, integer digits, fraction digits and exponent, then
 * the significant digits (leading zeros skipped, trailing zeros counted
 * apart) are sized up, and only a core of at most 19 digits is accumulated.
 * So a number with thousands of digits or an exponent like 1e999999999 costs
 * one pass over the text and never overflows:
 *
 *   "-0012.3400e-3"  -> sign -, digits "001234 00" -> core 1234, 2 trailing
 *                       zeros, scale = 4 (fraction digits) + 3 (exponent)
 *                    -> kept zeros fit: {-123400, 7} = "-0.0123400"
 *
 * Trailing zeros are put back one by one while the mantissa stays within
 * 63 bits and the scale within QB_DEC_MAX_SCALE, so "0.10000000" keeps all
 * eight digits and a 25-digit "1.000..." keeps as many as fit (the value is
 * exact either way). Zeros of the integer part are dropped the same way when
 * needed: "100000000000000000000" (21 digits) is {10^18, -2}, just as
 * "1E+20" would be. A zero keeps the text's scale, clamped to the range.
 *
 * qb_dec_parse tries fast paths for the exchanges' plain
 * "[-]digits[.digits]" first. Such a number is exactly its digits over
 * 10^(fraction length), what the general parser gives too:
 *
 *   1. Binance's form "d.dddddddd" .. "dddddddd.dddddddd" (no sign, exactly
 *      8 fraction digits, 10..17 bytes; 80 per depth update): the point is
 *      checked at len - 9, then the first 8 bytes (the integer digits moved
 *      to the top, '0's below) and the last 8 (the fraction) are checked
 *      and converted together with SSE2 (decimal_parse_f8): 44 instructions
 *      per number, a leaf function without saves (115 at commit f2feeaa);
 *   2. out of line, any such text of at most 16 bytes after the sign in one
 *      step (decimal_parse_fast16: overlapping loads, SSE2 classification,
 *      both halves converted together);
 *   3. at most 18 digits eight at a time with SWAR arithmetic.
 *
 * Anything else (exponents, 19+ digits, junk) goes to the general parser,
 * so every rejection is the general parser's. Without SSE2 (non-x86), path
 * 1 is plain C (SWAR) and path 2 is skipped; qb__dec_parse_portable runs
 * that configuration on any machine. test_decimal cross-checks both against
 * the general parser on every shape of 0..40 bytes with every byte
 * replaced, on Binance's form with every byte replaced by each of the 256
 * values, and on millions of random strings. No load leaves s[0..len):
 * 8-byte loads only within texts of 8 bytes or more, shorter ones by
 * overlapping 4-byte loads or bytes (callers' buffers are not padded).
 * Measured and not kept (2026-11-22): an SSSE3 variant (pmaddubsw) behind a
 * run-time CPU check, 43 instructions with the check and no measurable time
 * difference; the plain-C form of path 1 on x86, 76 instructions and about
 * twice the time.
 *
 * Comparison across scales uses the adjusted exponent (digit count minus
 * scale) first, so no value is ever scaled beyond 19 digits. Pure functions,
 * no allocation, any thread.
 */
#include "decimal.h"

#include "err.h"

#include <string.h>

/* 10^0 .. 10^19 (10^19 < 2^64). */
static const uint64_t decimal_pow10[20] = {
    1ull,
    10ull,
    100ull,
    1000ull,
    10000ull,
    100000ull,
    1000000ull,
    10000000ull,
    100000000ull,
    1000000000ull,
    10000000000ull,
    100000000000ull,
    1000000000000ull,
    10000000000000ull,
    100000000000000ull,
    1000000000000000ull,
    10000000000000000ull,
    100000000000000000ull,
    1000000000000000000ull,
    10000000000000000000ull,
};

/* Exponents beyond this are clamped while parsing: any value this far out
 * is out of range anyway, and clamping keeps the arithmetic in int64. */
#define DECIMAL_EXP_CLAMP 1000000000ll

static inline bool decimal_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The k-th digit of the concatenation int part | fraction part. */
static inline char decimal_digit_at(const char *ip, size_t ni, const char *fp, size_t k)
{
    return k < ni ? ip[k] : fp[k - ni];
}

/* Byte mask (0x80 in each byte) of the bytes of v that are not '0'..'9'.
 * A carry out of a byte >= 0xFA can only mark bytes after it, which are
 * past the first non-digit anyway. */
static inline uint64_t decimal_swar_nondigits(uint64_t v)
{
    uint64_t hi = (v & 0xF0F0F0F0F0F0F0F0ull) ^ 0x3030303030303030ull;
    uint64_t hi6 = ((v + 0x0606060606060606ull) & 0xF0F0F0F0F0F0F0F0ull) ^ 0x3030303030303030ull;
    uint64_t x = hi | hi6; /* non-zero high nibble: not a digit */
    return ((x + 0x7F7F7F7F7F7F7F7Full) | x) & 0x8080808080808080ull;
}

/* The value of 8 digit values (0..9 per byte), the lowest byte most
 * significant (SWAR: three multiplications instead of eight). */
static inline uint64_t decimal_swar_value(uint64_t v)
{
    v = (v * 10) + (v >> 8);
    v = (((v & 0x000000FF000000FFull) * (100 + (1000000ull << 32))) +
         (((v >> 16) & 0x000000FF000000FFull) * (1 + (10000ull << 32)))) >>
        32;
    return (uint32_t)v;
}

/* Appends the k (1..8) digits held in the low k bytes of v (as text, the
 * first digit lowest) to *m. Moved to the top bytes, the zero bytes below
 * them are leading zeros of an 8-digit number. */
static inline void decimal_swar_append(uint64_t *m, uint64_t v, unsigned k)
{
    v = (v - 0x3030303030303030ull) << (8 * (8 - k));
    *m = *m * decimal_pow10[k] + decimal_swar_value(v);
}

/* Consumes the digits from p (stopping at the first non-digit or at end)
 * into *m; returns where it stopped. s is the start of the whole text: the
 * last bytes are read as one 8-byte word ending at end when the text is at
 * least 8 bytes long. The caller bounds the digit count (no overflow
 * check here: at most 19 digits fit in 64 bits). */
__attribute__((always_inline)) static inline const char *
decimal_fast_digits(const char *s, const char *p, const char *end, uint64_t *m)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    while (end - p >= 8) {
        memcpy(&v, p, 8);
        uint64_t nondig = decimal_swar_nondigits(v);
        unsigned k = nondig ? (unsigned)__builtin_ctzll(nondig) / 8 : 8;
        if (k == 0) {
            return p;
        }
        decimal_swar_append(m, v, k);
        p += k;
        if (k < 8) {
            return p;
        }
    }
    size_t r = (size_t)(end - p);
    if (r > 0 && end - s >= 8) {
        /* The r bytes left, in the low bytes; the zero bytes above them
         * count as non-digits. */
        memcpy(&v, end - 8, 8);
        v >>= 8 * (8 - r);
        uint64_t nondig = decimal_swar_nondigits(v);
        unsigned k = (unsigned)__builtin_ctzll(nondig) / 8; /* nondig != 0: r < 8 */
        if (k > 0) {
            decimal_swar_append(m, v, k);
        }
        return p + k;
    }
#else
    (void)s;
#endif
    while (p < end) {
        unsigned d = (unsigned)(unsigned char)*p - '0';
        if (d > 9) {
            break;
        }
        *m = *m * 10 + d;
        p++;
    }
    return p;
}

/* The exchanges' plain "[-]digits[.digits]" with at most 18 digits: the
 * result is every digit as the mantissa and the fraction length as the
 * scale, exactly what the general parser below gives for such text (no
 * digit is dropped: 18 digits fit in 63 bits and the scale is <= 18).
 * False for anything else (exponent, no digits, more digits, junk), which
 * the general parser then accepts or rejects. */
static inline bool decimal_parse_fast(const char *s, size_t len, qb_dec *out)
{
    const char *p = s, *end = s + len;
    bool neg = false;
    if (*p == '-' || *p == '+') {
        neg = *p == '-';
        p++;
    }
    if (end - p > 19) {
        return false; /* more than 18 digits and a point */
    }
    uint64_t m = 0;
    const char *q = decimal_fast_digits(s, p, end, &m);
    size_t nd = (size_t)(q - p), nf = 0;
    if (q < end && *q == '.') {
        const char *f = q + 1;
        q = decimal_fast_digits(s, f, end, &m);
        nf = (size_t)(q - f);
        nd += nf;
    }
    if (q != end || nd == 0 || nd > 18) {
        return false;
    }
    *out = (qb_dec){neg ? -(int64_t)m : (int64_t)m, (int8_t)nf};
    return true;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__SSE2__)
#include <emmintrin.h>
/* a * mul + b, where a and b are the values of the 8 digits in the words
 * a8 and b8 (text order: the lowest byte most significant; digits as
 * characters or values, only the low nibbles count). Both words at once:
 * 16-bit lanes d0 + 256 d1 -> 10 d0 + d1 (pmullw, shift, add), then
 * pmaddwd for pairs of pairs and for halves. */
static inline uint64_t decimal_sse_value2(uint64_t a8, uint64_t b8, uint64_t mul)
{
    /* The empty asm hides the constant: GCC would turn pmullw into three
     * shifts and adds. */
    __m128i ten = _mm_set1_epi16(10);
    __asm__("" : "+x"(ten));
    __m128i d = _mm_and_si128(_mm_set_epi64x((long long)b8, (long long)a8), _mm_set1_epi8(0x0F));
    __m128i x = _mm_add_epi16(_mm_mullo_epi16(d, ten), _mm_srli_epi16(d, 8));
    x = _mm_and_si128(x, _mm_set1_epi16(0xFF));
    x = _mm_madd_epi16(x, _mm_set1_epi32(0x00010064)); /* 100 a + b */
    x = _mm_packs_epi32(x, x);                         /* a8 a8 b8 b8 a8 a8 b8 b8 */
    x = _mm_madd_epi16(x, _mm_set1_epi32(0x00012710)); /* 10000 a + b: a8 b8 a8 b8 */
    uint64_t ab = (uint64_t)_mm_cvtsi128_si64(x);
    return (uint64_t)(uint32_t)ab * mul + (ab >> 32);
}

/* The common case in one step: "[-+]digits[.digits]" of at most 16 bytes
 * after the sign (Binance's "63251.12000000", "0.01234000"). Two 8-byte
 * loads, the first 8 bytes and the last 8 (overlapping when n < 16; never a
 * byte outside s[0..len)), give the text as 16 bytes, zeros past n; SSE2
 * classifies them at once (a bit per non-digit, a bit per '.'):
 *
 *   "63251.12000000"    36 33 32 35 31 2E 31 32 | 30 30 30 30 30 30 00 00
 *   non-digits in n     .. .. .. .. .. 1  .. .. | .. .. .. .. .. ..        = the '.' bit
 *   int, to the top     00 00 00 36 33 32 35 31        (first 8 << 8 * (8 - k))
 *   fraction, the top   00 00 31 32 30 30 30 30 30 30  (last 8, bytes below the
 *   nf of the last 8                                   fraction cleared)
 *   m = 63251 * 10^8 + 12000000 (both halves in one pmaddwd chain), scale 8
 *
 * 158 -> 115 instructions per Binance number (commit 12ad4dd; Binance's form has
 * its own path since). 1..8 digits on each side take that path (texts
 * under 8 bytes too, as 4-byte or byte loads); other plain forms of <= 16
 * bytes (integers, ".5", "5.", 9+ digits on one side) cut the point out of
 * the 16 bytes and convert them the same way. At most 16 digits: they fit
 * in 63 bits, and the result is every digit over 10^(fraction length), what
 * the general parser gives for such text (trailing zeros kept). False for
 * anything else, which the older 8-at-a-time path or the general parser
 * handle (and reject). */
static inline bool decimal_parse_fast16(const char *s, size_t len, qb_dec *out)
{
    bool neg = *s == '-';
    size_t sign = neg | (*s == '+'); /* without a branch */
    const char *p = s + sign;
    size_t n = len - sign;
    if (n - 1 >= 16) {
        return false; /* empty after the sign, or longer than 16 */
    }
    /* lo, hi: the text's bytes 0..7 and 8..15, zeros past n; last8: its
     * last 8 bytes (zeros before the text when n < 8). */
    uint64_t lo, hi = 0, last8;
    if (n >= 8) {
        memcpy(&lo, p, 8);
        memcpy(&last8, p + n - 8, 8);
        if (n > 8) {
            /* a branch, not a shift by 64 avoided with two shifts: those
             * were measurably slower for the usual 8-byte texts */
            hi = last8 >> (8 * (16 - n));
        }
    } else {
        if (n >= 4) {
            /* the first 4 and the last 4 bytes, overlapping: OR-ing a
             * byte with itself leaves it as it is */
            uint32_t a, b;
            memcpy(&a, p, 4);
            memcpy(&b, p + n - 4, 4);
            lo = (uint64_t)a | ((uint64_t)b << (8 * (n - 4)));
        } else {
            /* 1..3 bytes: the first, the middle, the last (some the same) */
            lo = (uint64_t)(unsigned char)p[0] |
                 ((uint64_t)(unsigned char)p[n / 2] << (8 * (n / 2))) |
                 ((uint64_t)(unsigned char)p[n - 1] << (8 * (n - 1)));
        }
        last8 = lo << (8 * (8 - n));
    }
    /* Classify the 16 bytes at once with SSE2 (every x86-64 has it): one
     * bit per byte that is not a digit, one per '.'; padding bits (bytes
     * past n) dropped. Valid: no non-digit but at most one point. */
    __m128i v = _mm_set_epi64x((long long)hi, (long long)lo);
    __m128i t = _mm_xor_si128(_mm_sub_epi8(v, _mm_set1_epi8('0')), _mm_set1_epi8((char)0x80));
    unsigned inside = (1u << n) - 1; /* n <= 16 */
    __m128i above9 = _mm_cmpgt_epi8(t, _mm_set1_epi8((char)(0x80 + 9)));
    unsigned nondig = (unsigned)_mm_movemask_epi8(above9) & inside;
    unsigned dots = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('.'))) & inside;
    unsigned nd = (unsigned)n, nf = 0;
    if (nondig != 0) {
        if (nondig != dots || (dots & (dots - 1)) != 0 || n == 1) {
            return false; /* junk, an exponent, two points, "." alone */
        }
        unsigned k = (unsigned)__builtin_ctz(dots);
        nf = (unsigned)n - k - 1;
        if (k - 1 < 8 && nf - 1 < 8) {
            /* 1..8 digits on each side (the exchanges' prices and sizes):
             * the integer digits moved to the top of one word, the
             * fraction digits are the top of the last 8 bytes; each then
             * has leading zero bytes, and m = int * 10^nf + fraction. */
            uint64_t iw = lo << (8 * (8 - k));
            uint64_t fw = last8 & (~0ull << (8 * (8 - nf)));
            uint64_t m = decimal_sse_value2(iw, fw, decimal_pow10[nf]);
            *out = (qb_dec){neg ? -(int64_t)m : (int64_t)m, (int8_t)nf};
            return true;
        }
        /* Cut the point out of the bytes: the k below it stay, the rest
         * moves down one byte (two shifts where one could be by 64). */
        if (k < 8) {
            uint64_t below = lo & ((1ull << (8 * k)) - 1);
            lo = below | (((lo >> (8 * k)) >> 8) << (8 * k)) | (hi << 56);
            hi >>= 8;
        } else {
            unsigned kh = k - 8;
            uint64_t below = hi & ((1ull << (8 * kh)) - 1);
            hi = below | (((hi >> (8 * kh)) >> 8) << (8 * kh));
        }
        nd = (unsigned)n - 1;
    }
    /* Digit values, the first digit in the lowest byte of lo; the nd - 8
     * digits in hi (if any) and a short lo are moved to the top of their
     * word: the zero bytes below are leading zeros. */
    uint64_t m;
    if (nd > 8) {
        m = decimal_sse_value2(lo, hi << (8 * (16 - nd)), decimal_pow10[nd - 8]);
    } else {
        m = decimal_sse_value2(0, lo << (8 * (8 - nd)), 1);
    }
    *out = (qb_dec){neg ? -(int64_t)m : (int64_t)m, (int8_t)nf};
    return true;
}
#else
static inline bool decimal_parse_fast16(const char *s, size_t len, qb_dec *out)
{
    (void)s;
    (void)len;
    (void)out;
    return false;
}
#endif

/* Everything but the 16-byte form, out of line: decimal_parse_other then
 * needs few registers (no saves) on its common path. */
__attribute__((noinline)) static int decimal_parse_rest(const char *s, size_t len, qb_dec *out)
{
    if (decimal_parse_fast(s, len, out)) {
        return QB_OK;
    }
    return qb__dec_parse_general(s, len, out);
}

/* Everything but Binance's form, out of line: qb_dec_parse's common path
 * is then a leaf function without saves. */
__attribute__((noinline)) static int decimal_parse_other(const char *s, size_t len, qb_dec *out)
{
    if (s == NULL || len == 0) {
        return QB_EPARSE;
    }
    if (decimal_parse_fast16(s, len, out)) {
        return QB_OK;
    }
    return decimal_parse_rest(s, len, out);
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* '0' bytes below the 8 - c integer digits moved to the top of a word. */
static const uint64_t decimal_zero_pad[8] = {
    0,
    0x30ull,
    0x3030ull,
    0x303030ull,
    0x30303030ull,
    0x3030303030ull,
    0x303030303030ull,
    0x30303030303030ull,
};

/* Binance's form: "d.dddddddd" to "dddddddd.dddddddd" (10..17 bytes, no
 * sign, exactly 8 fraction digits; s[len - 9] == '.' already checked), in
 * plain C: the integer digits moved to the top of the first 8 bytes with
 * '0's below, the last 8 bytes are the fraction; both must be all digits
 * (every byte of the text but the point is in one of them):
 *
 *   "63251.12000000"   len 14, c = 17 - len = 3 bytes of padding
 *   first 8            36 33 32 35 31 2E 31 32   "63251.12"
 *   << 8c | '0's       30 30 30 36 33 32 35 31   "00063251"
 *   last 8             31 32 30 30 30 30 30 30   "12000000"
 *   m = 63251 * 10^8 + 12000000, scale 8
 */
__attribute__((always_inline)) static inline bool decimal_parse_f8_swar(const char *s, size_t len,
                                                                        qb_dec *out)
{
    unsigned c = (unsigned)(17 - len); /* 8 - integer digits: 0..7 */
    uint64_t iw, fw;
    memcpy(&iw, s, 8);
    memcpy(&fw, s + len - 8, 8);
    iw = (iw << (8 * c)) | decimal_zero_pad[c];
    if ((decimal_swar_nondigits(iw) | decimal_swar_nondigits(fw)) != 0) {
        return false;
    }
    uint64_t m = decimal_swar_value(iw - 0x3030303030303030ull) * 100000000u +
                 decimal_swar_value(fw - 0x3030303030303030ull);
    *out = (qb_dec){(int64_t)m, 8};
    return true;
}
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__SSE2__)
/* The same with SSE2: both words classified at once (digits moved to
 * 0x80..0x89, the lowest signed bytes) and converted in one chain. */
__attribute__((always_inline)) static inline bool decimal_parse_f8(const char *s, size_t len,
                                                                   qb_dec *out)
{
    unsigned c = (unsigned)(17 - len);
    uint64_t iw, fw;
    memcpy(&iw, s, 8);
    memcpy(&fw, s + len - 8, 8);
    iw = (iw << (8 * c)) | decimal_zero_pad[c];
    __m128i v = _mm_set_epi64x((long long)fw, (long long)iw);
    __m128i t = _mm_add_epi8(v, _mm_set1_epi8((char)(0x80 - '0')));
    __m128i digit = _mm_cmplt_epi8(t, _mm_set1_epi8((char)0x8A));
    if (_mm_movemask_epi8(digit) != 0xFFFF) {
        return false;
    }
    uint64_t m = decimal_sse_value2(iw, fw, 100000000);
    *out = (qb_dec){(int64_t)m, 8};
    return true;
}
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define decimal_parse_f8 decimal_parse_f8_swar
#else
static inline bool decimal_parse_f8(const char *s, size_t len, qb_dec *out)
{
    (void)s;
    (void)len;
    (void)out;
    return false;
}
#endif

int qb_dec_parse(const char *s, size_t len, qb_dec *out)
{
    if (len - 10 < 8 && s != NULL && s[len - 9] == '.' && decimal_parse_f8(s, len, out)) {
        return QB_OK;
    }
    return decimal_parse_other(s, len, out);
}

int qb__dec_parse_portable(const char *s, size_t len, qb_dec *out)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (len - 10 < 8 && s != NULL && s[len - 9] == '.' && decimal_parse_f8_swar(s, len, out)) {
        return QB_OK;
    }
#endif
    if (s == NULL || len == 0) {
        return QB_EPARSE;
    }
    return decimal_parse_rest(s, len, out);
}

int qb__dec_parse_general(const char *s, size_t len, qb_dec *out)
{
    if (s == NULL || len == 0) {
        return QB_EPARSE;
    }
    size_t i = 0;
    bool neg = false;
    if (s[i] == '+' || s[i] == '-') {
        neg = s[i] == '-';
        i++;
    }
    const char *ip = s + i;
    size_t ni = 0;
    while (i < len && decimal_is_digit(s[i])) {
        i++;
        ni++;
    }
    const char *fp = s + i;
    size_t nf = 0;
    if (i < len && s[i] == '.') {
        i++;
        fp = s + i;
        while (i < len && decimal_is_digit(s[i])) {
            i++;
            nf++;
        }
    }
    if (ni + nf == 0) {
        return QB_EPARSE; /* "", "-", ".", "e5" */
    }
    int64_t exp = 0;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        bool eneg = false;
        if (i < len && (s[i] == '+' || s[i] == '-')) {
            eneg = s[i] == '-';
            i++;
        }
        size_t ne = 0;
        while (i < len && decimal_is_digit(s[i])) {
            if (exp < DECIMAL_EXP_CLAMP) {
                exp = exp * 10 + (s[i] - '0');
            }
            i++;
            ne++;
        }
        if (ne == 0) {
            return QB_EPARSE; /* "1e", "1e+" */
        }
        if (eneg) {
            exp = -exp;
        }
    }
    if (i != len) {
        return QB_EPARSE; /* trailing junk, "1.2.3", "0x10", spaces */
    }

    /* Significant digits: first and last non-zero digit. */
    size_t nd = ni + nf;
    size_t first = 0;
    while (first < nd && decimal_digit_at(ip, ni, fp, first) == '0') {
        first++;
    }
    /* The scale if every digit the text gives is kept. nf is bounded by the
     * text length, exp by the clamp: no overflow. */
    int64_t scale = (int64_t)nf - exp;
    if (first == nd) {
        /* Zero: any scale is exact; keep the text's, clamped to the range. */
        if (scale > QB_DEC_MAX_SCALE) {
            scale = QB_DEC_MAX_SCALE;
        } else if (scale < -QB_DEC_MAX_SCALE) {
            scale = -QB_DEC_MAX_SCALE;
        }
        *out = (qb_dec){0, (int8_t)scale};
        return QB_OK;
    }
    size_t last = nd - 1;
    while (decimal_digit_at(ip, ni, fp, last) == '0') {
        last--;
    }
    size_t ncore = last - first + 1;
    size_t ntz = nd - 1 - last; /* trailing zeros the text gives */
    if (ncore > 19) {
        return QB_ERANGE;
    }
    uint64_t m = 0;
    for (size_t k = first; k <= last; k++) {
        m = m * 10 + (uint64_t)(decimal_digit_at(ip, ni, fp, k) - '0');
    }
    if (m > (uint64_t)INT64_MAX) {
        return QB_ERANGE;
    }
    scale -= (int64_t)ntz;
    /* Put back as many of the text's trailing zeros as fit. */
    size_t back = 0;
    while (back < ntz && scale < QB_DEC_MAX_SCALE && m <= (uint64_t)INT64_MAX / 10) {
        m *= 10;
        scale++;
        back++;
    }
    /* A large integer ("1e31") can still be written within the scale range
     * with zeros in the mantissa. */
    while (scale < -QB_DEC_MAX_SCALE && m <= (uint64_t)INT64_MAX / 10) {
        m *= 10;
        scale++;
    }
    if (scale < -QB_DEC_MAX_SCALE || scale > QB_DEC_MAX_SCALE) {
        return QB_ERANGE;
    }
    *out = (qb_dec){neg ? -(int64_t)m : (int64_t)m, (int8_t)scale};
    return QB_OK;
}

/* |m| without overflow for INT64_MIN. */
static inline uint64_t decimal_abs(int64_t m)
{
    return m < 0 ? (uint64_t)0 - (uint64_t)m : (uint64_t)m;
}

static int decimal_ndigits(uint64_t v)
{
    int n = 1;
    while (n < 20 && v >= decimal_pow10[n]) {
        n++;
    }
    return n;
}

int qb_dec_format(qb_dec d, char *buf, size_t cap)
{
    char digits[24];
    uint64_t v = decimal_abs(d.mant);
    int nd = 0;
    do {
        digits[nd++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    /* digits[] holds the digits least significant first. */
    bool neg = d.mant < 0;
    int scale = d.scale;
    size_t need;
    if (scale <= 0) {
        need = (size_t)neg + (size_t)nd + (d.mant ? (size_t)(-scale) : 0);
    } else {
        int intd = nd > scale ? nd - scale : 1;
        need = (size_t)neg + (size_t)intd + 1 + (size_t)scale;
    }
    if (buf == NULL || need + 1 > cap) {
        return -1;
    }
    char *p = buf;
    if (neg) {
        *p++ = '-';
    }
    if (scale <= 0) {
        for (int k = nd - 1; k >= 0; k--) {
            *p++ = digits[k];
        }
        if (d.mant) {
            memset(p, '0', (size_t)(-scale));
            p += -scale;
        }
    } else {
        if (nd > scale) {
            for (int k = nd - 1; k >= scale; k--) {
                *p++ = digits[k];
            }
        } else {
            *p++ = '0';
        }
        *p++ = '.';
        for (int k = scale - 1; k >= 0; k--) {
            *p++ = k < nd ? digits[k] : '0';
        }
    }
    *p = '\0';
    return (int)(p - buf);
}

int qb_dec_cmp(qb_dec a, qb_dec b)
{
    if (a.scale == b.scale) {
        return (a.mant > b.mant) - (a.mant < b.mant);
    }
    int sa = (a.mant > 0) - (a.mant < 0);
    int sb = (b.mant > 0) - (b.mant < 0);
    if (sa != sb) {
        return sa < sb ? -1 : 1;
    }
    if (sa == 0) {
        return 0;
    }
    /* Same sign, both non-zero: compare magnitudes, then apply the sign. */
    uint64_t ma = decimal_abs(a.mant), mb = decimal_abs(b.mant);
    int na = decimal_ndigits(ma), nb = decimal_ndigits(mb);
    int ea = na - a.scale, eb = nb - b.scale; /* adjusted exponents */
    int mag;
    if (ea != eb) {
        mag = ea < eb ? -1 : 1;
    } else {
        /* Equal adjusted exponents: the smaller scale has fewer digits;
         * scaling it up gives at most the other's digit count (<= 20). */
        unsigned __int128 xa = ma, xb = mb;
        if (a.scale < b.scale) {
            xa *= decimal_pow10[b.scale - a.scale];
        } else {
            xb *= decimal_pow10[a.scale - b.scale];
        }
        mag = (xa > xb) - (xa < xb);
    }
    return sa > 0 ? mag : -mag;
}

int qb_dec_rescale(qb_dec d, int scale, qb_dec *out)
{
    if (scale < -QB_DEC_MAX_SCALE || scale > QB_DEC_MAX_SCALE) {
        return QB_ERANGE;
    }
    if (d.mant == 0) {
        *out = (qb_dec){0, (int8_t)scale};
        return QB_OK;
    }
    int diff = scale - d.scale;
    if (diff == 0) {
        *out = d;
        return QB_OK;
    }
    if (diff > 0) {
        if (diff > 18) {
            return QB_ERANGE; /* a non-zero value would exceed 19 digits */
        }
        int64_t r;
        if (__builtin_mul_overflow(d.mant, (int64_t)decimal_pow10[diff], &r) || r == INT64_MIN) {
            return QB_ERANGE;
        }
        *out = (qb_dec){r, (int8_t)scale};
        return QB_OK;
    }
    diff = -diff;
    if (diff > 19) {
        return QB_ERANGE; /* |mant| < 10^19 would lose its digits */
    }
    uint64_t p = decimal_pow10[diff];
    uint64_t mag = decimal_abs(d.mant);
    if (mag % p != 0) {
        return QB_ERANGE;
    }
    int64_t q = (int64_t)(mag / p);
    *out = (qb_dec){d.mant < 0 ? -q : q, (int8_t)scale};
    return QB_OK;
}

int qb_dec_add(qb_dec a, qb_dec b, qb_dec *out)
{
    int scale = a.scale > b.scale ? a.scale : b.scale;
    qb_dec ra, rb;
    int rc;
    if ((rc = qb_dec_rescale(a, scale, &ra)) != QB_OK ||
        (rc = qb_dec_rescale(b, scale, &rb)) != QB_OK) {
        return rc;
    }
    int64_t sum;
    if (__builtin_add_overflow(ra.mant, rb.mant, &sum) || sum == INT64_MIN) {
        return QB_ERANGE;
    }
    *out = (qb_dec){sum, (int8_t)scale};
    return QB_OK;
}
