/*
 * topic.c: the topic rules of topic.h (described there, with the nearest
 * rule): parsing, the subscription bytes, the parts, the nearest topics and
 * the instruments line. Pure: no state, any thread, no allocation except
 * qb_topic_instruments.
 */
#include "topic.h"

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

/* One row per 16 bytes: 0x21..0x7E except '"' (0x22) and '\' (0x5C) are
 * part bytes (1), '.' (0x2E) is the separator (2), everything else 0. */
/* clang-format off */
const unsigned char qb__topic_byte_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};
/* clang-format on */

bool qb_topic_part_ok(const char *p, size_t n)
{
    return n <= QB_TOPIC_PART_MAX && qb__topic_part_bytes_ok(p, n);
}

bool qb_topic_bytes_ok(const char *t, size_t n)
{
    if (t == NULL || n == 0 || n > QB_TOPIC_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (qb__topic_byte_class[(unsigned char)t[i]] == 0) {
            return false;
        }
    }
    return true;
}

static const char *const topic_kinds[] = {"", "book", "trade", "status", "ticker"};

const char *qb_topic_kind_name(qb_topic_kind kind)
{
    return (unsigned)kind < sizeof topic_kinds / sizeof topic_kinds[0] ? topic_kinds[kind] : "";
}

qb_topic_kind qb_topic_kind_of(qb_str k)
{
    for (size_t i = 1; i < sizeof topic_kinds / sizeof topic_kinds[0]; i++) {
        if (strlen(topic_kinds[i]) == k.n && memcmp(topic_kinds[i], k.p, k.n) == 0) {
            return (qb_topic_kind)i;
        }
    }
    return QB_TOPIC_NOKIND;
}

qb_topic_form qb_topic_parse(const char *t, size_t n, qb_topic *out)
{
    if (!qb_topic_bytes_ok(t, n)) {
        return QB_TOPIC_INVALID;
    }
    qb_topic_parts p;
    qb_topic_split(t, n, &p);
    qb_topic_kind kind = qb_topic_kind_of(p.kind);
    if (kind == QB_TOPIC_NOKIND || p.kind.n == n) {
        return QB_TOPIC_INVALID; /* unknown kind, or no dot */
    }
    qb_topic r = {kind, p.ex, p.sym, false};
    if (p.ex.n == 0) {
        if (n != p.kind.n + 1) {
            return QB_TOPIC_INVALID; /* "book..X": an empty exchange */
        }
        r.prefix = true; /* "book." */
        r.sym = (qb_str){t + n, 0};
    } else if (!qb_topic_part_ok(p.ex.p, p.ex.n) || p.sym.p == NULL) {
        return QB_TOPIC_INVALID; /* a bad exchange, or "book.binance" */
    } else if (p.sym.n == 0) {
        r.prefix = true; /* "book.binance." */
    } else if (!qb_topic_part_ok(p.sym.p, p.sym.n)) {
        return QB_TOPIC_INVALID; /* a bad symbol, or a third dot */
    }
    if (out != NULL) {
        *out = r;
    }
    return r.prefix ? QB_TOPIC_PREFIX : QB_TOPIC_EXACT;
}

size_t qb_topic_sub_len(const char *t)
{
    size_t n = strlen(t), dots = 0;
    if (n > QB_TOPIC_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (t[i] != '.' && !qb_topic_byte_ok((unsigned char)t[i])) {
            return 0;
        }
        dots += t[i] == '.';
    }
    qb_topic_form f = qb_topic_parse(t, n, NULL);
    if (f == QB_TOPIC_EXACT) {
        return n + 1; /* with the NUL that ends the topic in the frame */
    }
    if (f == QB_TOPIC_INVALID && dots >= 2 && t[n - 1] != '.') {
        return 0; /* shaped like an exact topic, but not one */
    }
    return n;
}

static int topic_lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

/* Equal parts, ASCII case ignored; an absent part equals nothing. */
static bool topic_same(qb_str a, qb_str b)
{
    if (a.n == 0 || a.n != b.n) {
        return false;
    }
    for (size_t i = 0; i < a.n; i++) {
        if (topic_lower((unsigned char)a.p[i]) != topic_lower((unsigned char)b.p[i])) {
            return false;
        }
    }
    return true;
}

/* The base ("BTC") or quote ("USDT") of a symbol "BTC-USDT"; n == 0 when
 * the symbol has no '-'. */
static qb_str topic_half(qb_str sym, bool quote)
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

static unsigned topic_rank(const qb_topic_parts *c, const qb_topic_parts *p)
{
    if (c->kind.n != p->kind.n || memcmp(c->kind.p, p->kind.p, c->kind.n) != 0) {
        return TOPICNAME_NO_RANK;
    }
    return (topic_same(c->ex, p->ex) ? 0u : 8u) | (topic_same(c->sym, p->sym) ? 0u : 4u) |
           (topic_same(topic_half(c->sym, false), topic_half(p->sym, false)) ? 0u : 2u) |
           (topic_same(topic_half(c->sym, true), topic_half(p->sym, true)) ? 0u : 1u);
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
        unsigned r = topic_rank(&c, &p);
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

static int topic_cmp_str(qb_str a, qb_str b)
{
    size_t m = a.n < b.n ? a.n : b.n;
    int c = m ? memcmp(a.p, b.p, m) : 0;
    return c != 0 ? c : (a.n < b.n ? -1 : a.n > b.n);
}

static int topic_cmp_inst(const void *a, const void *b)
{
    const qb_topic_parts *x = a, *y = b;
    int c = topic_cmp_str(x->ex, y->ex);
    return c != 0 ? c : topic_cmp_str(x->sym, y->sym);
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
        qsort(v, k, sizeof *v, topic_cmp_inst);
    }
    size_t in_ex = 0;
    for (size_t i = 0; i < k && rc == QB_OK; i++) {
        bool new_ex = i == 0 || topic_cmp_str(v[i].ex, v[i - 1].ex) != 0;
        if (!new_ex && topic_cmp_str(v[i].sym, v[i - 1].sym) == 0) {
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
