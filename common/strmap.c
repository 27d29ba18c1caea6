/*
 * strmap.c: the bounded FNV-1a / linear-probing table of strmap.h. No
 * tombstones (no removal); growth rehashes from the stored hashes, never
 * from the keys. Owner's thread only.
 */
#include "strmap.h"

#include "err.h"

#include <stdlib.h>
#include <string.h>

#define STRMAP_MIN_CAP 64

void qb_strmap_init(qb_strmap *m, size_t max)
{
    memset(m, 0, sizeof *m);
    m->max = max;
}

void qb_strmap_fini(qb_strmap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

/* The slot holding key, or the empty slot where it would go (the table is
 * never full: load stays at or under 50%). */
static size_t strmap_probe(qb_strmap_node *const *slots, size_t cap, const char *key, size_t n,
                           uint64_t h)
{
    size_t mask = cap - 1, i = (size_t)h & mask;
    while (slots[i] != NULL &&
           !(slots[i]->hash == h && slots[i]->len == n && memcmp(slots[i]->key, key, n) == 0)) {
        i = (i + 1) & mask;
    }
    return i;
}

qb_strmap_node *qb_strmap_find(const qb_strmap *m, const char *key, size_t n, uint64_t h)
{
    if (m->cap == 0) {
        return NULL;
    }
    return m->slots[strmap_probe(m->slots, m->cap, key, n, h)];
}

int qb_strmap_reserve(qb_strmap *m)
{
    if (m->count >= m->max) {
        return QB_ETOOBIG;
    }
    if ((m->count + 1) * 2 <= m->cap) {
        return QB_OK;
    }
    size_t ncap = m->cap ? m->cap * 2 : STRMAP_MIN_CAP;
    qb_strmap_node **ns = calloc(ncap, sizeof *ns);
    if (ns == NULL) {
        return QB_ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        qb_strmap_node *e = m->slots[i];
        if (e != NULL) {
            size_t j = (size_t)e->hash & (ncap - 1);
            while (ns[j] != NULL) {
                j = (j + 1) & (ncap - 1);
            }
            ns[j] = e;
        }
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return QB_OK;
}

void qb_strmap_insert(qb_strmap *m, qb_strmap_node *node)
{
    m->slots[strmap_probe(m->slots, m->cap, node->key, node->len, node->hash)] = node;
    m->count++;
}
