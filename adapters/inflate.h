/*
 * inflate.h: one gzip member in, its bytes out, with a hard cap on the
 * output (HTX sends every frame gzip-compressed; a 1 KB frame can inflate
 * to gigabytes, so the cap is enforced while inflating, never after).
 *
 * A qb_inflate holds one zlib stream that is reset, not re-created, per
 * frame: no allocation per frame once the output buffer has grown to the
 * largest frame seen. Owned by one thread.
 */
#ifndef QB_ADAPTER_INFLATE_H
#define QB_ADAPTER_INFLATE_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>

typedef struct qb_inflate qb_inflate;

/* QB_OK and *out, or QB_ENOMEM. */
int qb_inflate_new(qb_inflate **out);
void qb_inflate_free(qb_inflate *z); /* NULL is a no-op */

/* Inflates the single gzip member in[0..len) into out (reset first; the
 * output is NUL-terminated past out->len for convenience). Returns QB_OK,
 * QB_EPARSE (not gzip, corrupt, bad CRC or length, truncated, bytes after
 * the member), QB_ETOOBIG (the output would exceed cap bytes: inflating
 * stops at cap + 1 bytes, so out never grows past 2 * (cap + 1), the
 * buffer's power-of-two growth) or QB_ENOMEM. On error out
 * holds nothing useful. */
int qb_inflate_gzip(qb_inflate *z, const uint8_t *in, size_t len, size_t cap, qb_buf *out);

#endif
