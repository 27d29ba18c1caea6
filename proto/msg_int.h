/*
 * msg_int.h: what the wire protocol's encoder (msg_encode.c) and decoder
 * (msg_decode.c) share, private to proto/: the field limits both enforce,
 * the worst-case size of one level (the encoder's bound, the decoder's
 * fast path) and the nsym byte rule. Static inline so that both keep it
 * inlined into their hot paths, as when they were one file.
 *
 * Threads: pure definitions, any thread.
 */
#ifndef QB_MSG_INT_H
#define QB_MSG_INT_H

#include "msg.h"

#include <stdbool.h>
#include <stddef.h>

#define MSG_NAME_MAX 64    /* ex, sym, nsym */
#define MSG_REASON_MAX 256 /* status reason */

/* Worst case of one level: fixarray + 4 x 9-byte integers. */
#define MSG_LEVEL_MAX 37u

/* nsym: like a part, but '.' is allowed (it is not in the topic). True
 * when s is 1..MSG_NAME_MAX printable ASCII bytes without a space. */
static inline bool msg_native_ok(qb_str s)
{
    if (s.p == NULL || s.n == 0 || s.n > MSG_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c <= 0x20 || c >= 0x7f) {
            return false;
        }
    }
    return true;
}

#endif
