/*
 * json.h: thin helpers over jsmn (Debian libjsmn-dev), the JSON tokenizer
 * chosen by measurement (docs/BENCHMARKS.md, tests/bench/json_bench.c).
 *
 * jsmn tokenizes into a caller-supplied token array and allocates nothing:
 * the parse of an exchange frame costs no malloc, and a nesting bomb or a
 * huge document only runs out of tokens or depth (QB_ETOOBIG), never out of
 * stack, memory or time (depth is bounded in linear time: a frame with more
 * than a few hundred brackets has its depth checked before jsmn runs, any
 * other on jsmn's tokens). Tokens
 * are views into the caller's text, which must stay alive while they are
 * used. jsmn is built in strict mode (JSMN_STRICT): keys must be strings
 * and primitives must start like numbers, true, false or null.
 * Numbers are validated later by their consumer (qb_dec_parse, qb_json_u64).
 */
#ifndef QB_JSON_H
#define QB_JSON_H

#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#define JSMN_HEADER
#include <jsmn.h>

/* Parent links make jsmn linear on long arrays: without them each closing
 * bracket scans back to its parent, quadratic on a 5000-level snapshot
 * (measured: ~0.1 s). Every user must see the same token layout, so any
 * earlier include of jsmn.h without JSMN_PARENT_LINKS fails here. */
_Static_assert(sizeof(jsmntok_t) == 5 * sizeof(int),
               "jsmn.h must be included through json.h (JSMN_PARENT_LINKS)");

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct qb_json {
    const char *js;
    size_t len;
    jsmntok_t *tok;
    int ntok;
} qb_json;

/* Deepest nesting of arrays and objects accepted. Exchange messages nest
 * at most 5 deep, config files and websocket requests 3. */
#define QB_JSON_MAX_DEPTH 64

/* Tokenizes js[0..len). The document must be one object or array covering
 * all non-space input. Returns QB_OK, QB_EPARSE (malformed or truncated), or
 * QB_ETOOBIG (more than cap tokens, or nested deeper than QB_JSON_MAX_DEPTH:
 * a nesting bomb is rejected in linear time). */
int qb_json_parse(qb_json *j, const char *js, size_t len, jsmntok_t *tokens, int cap);

/* Index of the token after the whole subtree rooted at i. */
int qb_json_skip(const qb_json *j, int i);

/* Value token of key in object obj, or -1 when obj is not an object or has
 * no such key. Keys are compared raw (escaped keys never match). */
int qb_json_get(const qb_json *j, int obj, const char *key);

/* Index of the n-th element of array arr, or -1. */
int qb_json_at(const qb_json *j, int arr, int n);

/* Raw text of a token and its length (strings without their quotes). */
const char *qb_json_text(const qb_json *j, int i, size_t *len);

bool qb_json_is_str(const qb_json *j, int i);
bool qb_json_is_array(const qb_json *j, int i);
bool qb_json_is_object(const qb_json *j, int i);
/* True when token i is a string equal to s (no escapes). */
bool qb_json_str_eq(const qb_json *j, int i, const char *s);

/* Unsigned decimal integer from a number or a string token; QB_EPARSE or
 * QB_ERANGE on anything else. out is written only on success. */
int qb_json_u64(const qb_json *j, int i, uint64_t *out);
int qb_json_i64(const qb_json *j, int i, int64_t *out);
/* true/false primitives. */
int qb_json_bool(const qb_json *j, int i, bool *out);

/* Copies a string token into out (NUL-terminated), decoding JSON escapes
 * (\uXXXX to UTF-8, surrogate pairs included). QB_ETOOBIG when it does not
 * fit, QB_EPARSE on a bad escape. */
int qb_json_str_copy(const qb_json *j, int i, char *out, size_t cap);

struct qb_buf;

/* Appends s[0..n) to out as a JSON string, quotes included: '"' and '\\'
 * backslashed; \n, \r, \t short-escaped; other control bytes and DEL as
 * \u00XX; valid UTF-8 copied as is; every byte of an invalid sequence
 * (stray continuation, overlong form, surrogate, truncated) as \ufffd, so
 * the output is always valid JSON. Runs that need no escape are copied in
 * one append. QB_OK or QB_ENOMEM (out then holds a partial string). The
 * project's one JSON string escaper. Any thread; out is the caller's. */
int qb_json_append_str(struct qb_buf *out, const char *s, size_t n);

#endif
