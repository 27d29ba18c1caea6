/*
 * buf.h: a growable byte buffer, reused across messages so the hot path
 * allocates only when a message is larger than any before it. Owned by one
 * thread.
 */
#ifndef QB_BUF_H
#define QB_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct qb_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} qb_buf;

#define QB_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* Ensures room for extra more bytes. QB_OK or QB_ENOMEM. */
int qb_buf_reserve(qb_buf *b, size_t extra);
int qb_buf_append(qb_buf *b, const void *p, size_t n);
int qb_buf_appendf(qb_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void qb_buf_reset(qb_buf *b)
{
    b->len = 0;
}
/* Frees the storage; the buffer may be reused after. */
void qb_buf_fini(qb_buf *b);

#endif
