/*
 * topicname.c: see topicname.h (the nearest rule is described there).
 * Pure: no state, any thread.
 */
#include "topicname.h"

#include "err.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void qb_topic_split(const char *t, size_t n, qb_topic_parts *out)
{
    memset(out, 0, sizeof *out);
    const char *end = t + n;
    const char *d1 = memchr(t, '.', n);
    if (d1 == NULL) {
        out->kind = (qb_str){t, n};
        return;
    }
    out->kind = (qb_str){t, (size_t)(d1 - t)};
    const char *ex = d1 + 1;
    const char *d2 = memchr(ex, '.', (size_t)(end - ex));
    if (d2 == NULL) {
        out->ex = (qb_str){ex, (size_t)(end - ex)};
        return;
    }
    out->ex = (qb_str){ex, (size_t)(d2 - ex)};
    out->sym = (qb_str){d2 + 1, (size_t)(end - d2 - 1)};
}

static int topicname_lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

/* Equal parts, ASCII case ignored; an absent part equals nothing. */
static bool topicname_same(qb_str a, qb_str b)
{
    if (a.n == 0 || a.n != b.n) {
        return false;
    }
    for (size_t i = 0; i < a.n; i++) {
        if (topicname_lower((unsigned char)a.p[i]) != topicname_lower((unsigned char)b.p[i])) {
            return false;
        }
    }
    return true;
}

/* The base ("BTC") or quote ("USDT") of a symbol "BTC-USDT"; n == 0 when
 * the symbol has no '-'. */
static qb_str topicname_half(qb_str sym, bool quote)
{
    const char *dash = sym.n ? memchr(sym.p, '-', sym.n) : NULL;
    if (dash == NULL) {
        return (qb_str){sym.p, 0};
    }
    if (quote) {
        return (qb_str){dash + 1, (size_t)(sym.p + sym.n - dash - 1)};
    }
    return (qb_str){sym.p, (size_t)(dash - sym.p)};
}

#define TOPICNAME_NO_RANK 16u

static unsigned topicname_rank(const qb_topic_parts *c, const qb_topic_parts *p)
{
    if (c->kind.n != p->kind.n || memcmp(c->kind.p, p->kind.p, c->kind.n) != 0) {
        return TOPICNAME_NO_RANK;
    }
    return (topicname_same(c->ex, p->ex) ? 0u : 8u) | (topicname_same(c->sym, p->sym) ? 0u : 4u) |
           (topicname_same(topicname_half(c->sym, false), topicname_half(p->sym, false)) ? 0u
                                                                                         : 2u) |
           (topicname_same(topicname_half(c->sym, true), topicname_half(p->sym, true)) ? 0u : 1u);
}

void qb_topic_nearest_init(qb_topic_nearest *nr, const qb_str *want, size_t n_want)
{
    nr->want = want;
    nr->n_want = n_want;
    nr->n = 0;
}

void qb_topic_nearest_offer(qb_topic_nearest *nr, const char *topic, size_t n)
{
    if (n == 0 || n > QB_TOPIC_MAX) {
        return;
    }
    qb_topic_parts c;
    qb_topic_split(topic, n, &c);
    unsigned rank = TOPICNAME_NO_RANK;
    for (size_t i = 0; i < nr->n_want; i++) {
        qb_topic_parts p;
        qb_topic_split(nr->want[i].p, nr->want[i].n, &p);
        unsigned r = topicname_rank(&c, &p);
        rank = r < rank ? r : rank;
    }
    if (rank == TOPICNAME_NO_RANK) {
        return;
    }
    /* Insertion into the short sorted list: (rank, name bytes). */
    char name[QB_TOPIC_MAX + 1];
    memcpy(name, topic, n);
    name[n] = '\0';
    size_t at = nr->n;
    while (at > 0) {
        int cmp = nr->rank[at - 1] != rank ? (nr->rank[at - 1] < rank ? -1 : 1)
                                           : strcmp(nr->name[at - 1], name);
        if (cmp == 0) {
            return; /* offered twice */
        }
        if (cmp < 0) {
            break;
        }
        at--;
    }
    if (at >= QB_TOPIC_NEAREST_MAX) {
        return;
    }
    size_t last = nr->n < QB_TOPIC_NEAREST_MAX ? nr->n : QB_TOPIC_NEAREST_MAX - 1;
    for (size_t k = last; k > at; k--) {
        nr->rank[k] = nr->rank[k - 1];
        memcpy(nr->name[k], nr->name[k - 1], sizeof nr->name[k]);
    }
    nr->rank[at] = rank;
    memcpy(nr->name[at], name, n + 1);
    if (nr->n < QB_TOPIC_NEAREST_MAX) {
        nr->n++;
    }
}

static int topicname_cmp_str(qb_str a, qb_str b)
{
    size_t m = a.n < b.n ? a.n : b.n;
    int c = m ? memcmp(a.p, b.p, m) : 0;
    return c != 0 ? c : (a.n < b.n ? -1 : a.n > b.n);
}

static int topicname_cmp_inst(const void *a, const void *b)
{
    const qb_topic_parts *x = a, *y = b;
    int c = topicname_cmp_str(x->ex, y->ex);
    return c != 0 ? c : topicname_cmp_str(x->sym, y->sym);
}

int qb_topic_instruments(qb_buf *out, const qb_str *topics, size_t n)
{
    qb_topic_parts *v = n ? malloc(n * sizeof *v) : NULL;
    size_t k = 0;
    if (n > 0 && v == NULL) {
        return QB_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        qb_topic_split(topics[i].p, topics[i].n, &v[k]);
        if (v[k].kind.n == 4 && memcmp(v[k].kind.p, "book", 4) == 0 && v[k].ex.n > 0 &&
            v[k].sym.n > 0) {
            k++;
        }
    }
    size_t start = out->len;
    int rc = QB_OK;
    if (k == 0) {
        rc = qb_buf_append(out, "no books", 8);
    } else {
        qsort(v, k, sizeof *v, topicname_cmp_inst);
    }
    size_t in_ex = 0;
    for (size_t i = 0; i < k && rc == QB_OK; i++) {
        bool new_ex = i == 0 || topicname_cmp_str(v[i].ex, v[i - 1].ex) != 0;
        if (!new_ex && topicname_cmp_str(v[i].sym, v[i - 1].sym) == 0) {
            continue; /* a duplicate */
        }
        if (new_ex) {
            if (in_ex > QB_TOPIC_LIST_SYMS) {
                rc = qb_buf_appendf(out, " (+%zu more)", in_ex - QB_TOPIC_LIST_SYMS);
            }
            if (i > 0 && rc == QB_OK) {
                rc = qb_buf_append(out, ", ", 2);
            }
            if (rc == QB_OK) {
                rc = qb_buf_append(out, v[i].ex.p, v[i].ex.n);
            }
            in_ex = 0;
        }
        if (++in_ex <= QB_TOPIC_LIST_SYMS && rc == QB_OK) {
            rc = qb_buf_appendf(out, " %.*s", (int)v[i].sym.n, v[i].sym.p);
        }
    }
    if (in_ex > QB_TOPIC_LIST_SYMS && rc == QB_OK) {
        rc = qb_buf_appendf(out, " (+%zu more)", in_ex - QB_TOPIC_LIST_SYMS);
    }
    free(v);
    if (rc != QB_OK) {
        out->len = start;
    }
    return rc;
}
