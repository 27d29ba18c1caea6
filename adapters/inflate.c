/*
 * inflate.c: gzip frames -> bytes, with an output cap (see inflate.h).
 *
 * zlib does the work (inflateInit2 with 16 + MAX_WBITS: gzip wrapper only,
 * CRC32 and ISIZE checked by zlib). The output buffer grows by doubling
 * (qb_buf) and zlib may fill at most cap + 1 bytes of it; reaching cap + 1 means the frame is too
 * large and the inflate stops right there (a gzip bomb costs at most cap + 1 bytes and the CPU to
 * produce them). zlib errors are converted here, in one place (inflate_err). Runs on the caller's
 * thread (the lws service thread).
 */
#include "inflate.h"

#include "err.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

struct qb_inflate {
    z_stream zs;
};

int qb_inflate_new(qb_inflate **out)
{
    qb_inflate *z = calloc(1, sizeof *z);
    if (z == NULL) {
        return QB_ENOMEM;
    }
    if (inflateInit2(&z->zs, 16 + MAX_WBITS) != Z_OK) {
        free(z);
        return QB_ENOMEM;
    }
    *out = z;
    return QB_OK;
}

void qb_inflate_free(qb_inflate *z)
{
    if (z == NULL) {
        return;
    }
    inflateEnd(&z->zs);
    free(z);
}

/* The one place zlib's codes become qb_err codes. */
static int inflate_err(int zr)
{
    switch (zr) {
    case Z_OK:
    case Z_STREAM_END:
        return QB_OK;
    case Z_MEM_ERROR:
        return QB_ENOMEM;
    default: /* Z_DATA_ERROR, Z_NEED_DICT, Z_STREAM_ERROR, Z_BUF_ERROR */
        return QB_EPARSE;
    }
}

int qb_inflate_gzip(qb_inflate *z, const uint8_t *in, size_t len, size_t cap, qb_buf *out)
{
    qb_buf_reset(out);
    /* The gzip magic and method (deflate); zlib would reject it too, but a
     * clear early answer for text frames costs nothing. */
    if (len < 18 || in[0] != 0x1f || in[1] != 0x8b || in[2] != 8 || len > UINT_MAX) {
        return QB_EPARSE;
    }
    if (cap >= SIZE_MAX - 1) {
        return QB_EINVAL;
    }
    if (inflateReset(&z->zs) != Z_OK) {
        return QB_EPARSE;
    }
    z->zs.next_in = (Bytef *)(uintptr_t)in;
    z->zs.avail_in = (uInt)len;
    size_t limit = cap + 1; /* reaching it proves the output is too large */
    for (;;) {
        if (out->cap - out->len == 0 || out->data == NULL) {
            size_t want = out->cap ? out->cap : (len * 4 > 4096 ? len * 4 : 4096);
            if (out->cap && out->len == out->cap) {
                want = out->cap; /* double */
            }
            if (out->len + want > limit) {
                want = limit - out->len;
            }
            if (want == 0 || qb_buf_reserve(out, want) != QB_OK) {
                return want == 0 ? QB_ETOOBIG : QB_ENOMEM;
            }
        }
        size_t room = out->cap - out->len;
        if (out->len + room > limit) {
            room = limit - out->len;
        }
        if (room > UINT_MAX) {
            room = UINT_MAX;
        }
        z->zs.next_out = out->data + out->len;
        z->zs.avail_out = (uInt)room;
        int zr = inflate(&z->zs, Z_NO_FLUSH);
        out->len += room - z->zs.avail_out;
        if (out->len > cap) {
            return QB_ETOOBIG;
        }
        if (zr == Z_STREAM_END) {
            if (z->zs.avail_in != 0) {
                return QB_EPARSE; /* bytes after the gzip member */
            }
            break;
        }
        if (zr == Z_BUF_ERROR && z->zs.avail_in == 0) {
            return QB_EPARSE; /* truncated: input gone, no stream end */
        }
        if (zr != Z_OK && zr != Z_BUF_ERROR) {
            return inflate_err(zr);
        }
        if (zr == Z_OK && z->zs.avail_in == 0 && z->zs.avail_out != 0) {
            /* All input consumed with room left and no stream end: the
             * next call can only report Z_BUF_ERROR; it is truncated. */
            return QB_EPARSE;
        }
        if (out->len == limit) {
            return QB_ETOOBIG;
        }
    }
    /* NUL after the data (not counted), for callers printing excerpts. */
    if (out->len == out->cap && qb_buf_reserve(out, 1) != QB_OK) {
        return QB_ENOMEM;
    }
    out->data[out->len] = '\0';
    return QB_OK;
}
