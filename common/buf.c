/* buf.c: see buf.h. */
#include "buf.h"

#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int qb_buf_reserve(qb_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra) {
        return QB_OK;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2) {
            return QB_ENOMEM;
        }
        cap *= 2;
    }
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL) {
        return QB_ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return QB_OK;
}

int qb_buf_append(qb_buf *b, const void *p, size_t n)
{
    int rc = qb_buf_reserve(b, n);
    if (rc != QB_OK) {
        return rc;
    }
    if (n) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    return QB_OK;
}

int qb_buf_appendf(qb_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return QB_EINVAL;
    }
    int rc = qb_buf_reserve(b, (size_t)n + 1);
    if (rc != QB_OK) {
        return rc;
    }
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return QB_OK;
}

void qb_buf_fini(qb_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
