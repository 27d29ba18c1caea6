/*
 * decimal.h: exact fixed-point decimals for prices and sizes.
 *
 * A qb_dec is an integer mantissa and a decimal scale: value = mant * 10^-scale.
 * "0.10000000" parses to {10000000, 8} and formats back to "0.10000000";
 * "9.2E-7" parses to {92, 8} and formats as "0.00000092"; "1E+3" parses to
 * {1, -3} and formats as "1000". No binary floating point is ever involved.
 *
 * Parsing keeps every digit the text gives (trailing zeros included) when the
 * result fits; when it would not fit in 63 bits, trailing zeros of the
 * fraction are dropped first (the value stays exact); if it still does not
 * fit, or the scale leaves [-QB_DEC_MAX_SCALE, QB_DEC_MAX_SCALE], the parse
 * fails with QB_ERANGE. Two decimals compare by value (1.5 == 1.50).
 * All functions are pure and allocation-free; any thread.
 */
#ifndef QB_DECIMAL_H
#define QB_DECIMAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QB_DEC_MAX_SCALE 30
/* Longest text qb_dec_format() writes, NUL included. */
#define QB_DEC_STR_MAX 64

typedef struct qb_dec {
    int64_t mant;
    int8_t scale;
} qb_dec;

/* Parses [+-]digits[.digits][(e|E)[+-]digits] (also ".5" and "5."), exactly.
 * The whole of s[0..len) must be the number. Returns QB_OK, QB_EPARSE or
 * QB_ERANGE; *out is written only on success. */
int qb_dec_parse(const char *s, size_t len, qb_dec *out);
/* The general parser alone, without qb_dec_parse's fast path for plain
 * "[-]digits[.digits]" (same results; for tests that cross-check them). */
int qb__dec_parse_general(const char *s, size_t len, qb_dec *out);
/* qb_dec_parse as it runs without SSE2 (non-x86): its plain-C fast paths
 * only, on any machine (same results; for tests that cross-check them). */
int qb__dec_parse_portable(const char *s, size_t len, qb_dec *out);

/* Writes plain decimal text (no exponent) with exactly max(scale,0) digits
 * after the point, NUL-terminated. Returns the length written, or -1 when
 * cap is too small (QB_DEC_STR_MAX always suffices). */
int qb_dec_format(qb_dec d, char *buf, size_t cap);

/* <0, 0, >0 as a is less than, equal to, or greater than b, by value. */
int qb_dec_cmp(qb_dec a, qb_dec b);

static inline bool qb_dec_is_zero(qb_dec d)
{
    return d.mant == 0;
}

static inline bool qb_dec_is_neg(qb_dec d)
{
    return d.mant < 0;
}

/* True when a and b are the same value with the same scale (same text). */
static inline bool qb_dec_identical(qb_dec a, qb_dec b)
{
    return a.mant == b.mant && a.scale == b.scale;
}

/* Rescales d to scale, exactly. QB_ERANGE when that would lose digits or
 * overflow. */
int qb_dec_rescale(qb_dec d, int scale, qb_dec *out);

/* Exact a + b, at the larger scale. QB_ERANGE on overflow. */
int qb_dec_add(qb_dec a, qb_dec b, qb_dec *out);

#endif
