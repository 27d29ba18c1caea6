/*
 * test_strmap.c: common/strmap.c, the bounded string map. Keys found after
 * every growth, byte-exact comparison (prefixes, embedded NUL), the full
 * policy (QB_ETOOBIG, keys already in still found, max 0 refuses all), the
 * walk over slots seeing each node once, the hash (FNV-1a with the
 * project's basis) and a table that is only fini'ed.
 */
#include "harness.h"

#include "err.h"
#include "strmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct t_entry {
    qb_strmap_node node;
    int value;
    char key[];
} t_entry;

/* Finds or adds key; NULL when refused. */
static t_entry *t_get(qb_strmap *m, const char *key, size_t n, int value, int *rc)
{
    uint64_t h = qb_strmap_hash(key, n);
    t_entry *e = (t_entry *)qb_strmap_find(m, key, n, h);
    *rc = QB_OK;
    if (e != NULL) {
        return e;
    }
    if ((*rc = qb_strmap_reserve(m)) != QB_OK) {
        return NULL;
    }
    e = calloc(1, sizeof *e + n + 1);
    memcpy(e->key, key, n);
    e->value = value;
    e->node = (qb_strmap_node){.hash = h, .key = e->key, .len = n};
    qb_strmap_insert(m, &e->node);
    return e;
}

static void t_free_all(qb_strmap *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        free(m->slots[i]);
    }
    qb_strmap_fini(m);
}

QB_TEST(hash_is_fnv1a)
{
    QB_CHECK(qb_strmap_hash("", 0) == 1469598103934665603ull);
    uint64_t h = 1469598103934665603ull;
    h = (h ^ 'a') * 1099511628211ull;
    QB_CHECK(qb_strmap_hash("a", 1) == h);
    QB_CHECK(qb_strmap_hash("ab", 1) == h);
}

QB_TEST(grows_and_finds_everything)
{
    qb_strmap m;
    qb_strmap_init(&m, 100000);
    QB_CHECK(qb_strmap_find(&m, "x", 1, qb_strmap_hash("x", 1)) == NULL);
    char k[64];
    int rc;
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(k, sizeof k, "book.ex%d.SYM-%d", i % 7, i);
        t_entry *e = t_get(&m, k, (size_t)n, i, &rc);
        QB_CHECK(e != NULL && e->value == i);
        QB_CHECK(m.count * 2 <= m.cap);
    }
    QB_CHECK(m.count == 5000);
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(k, sizeof k, "book.ex%d.SYM-%d", i % 7, i);
        t_entry *e = (t_entry *)qb_strmap_find(&m, k, (size_t)n, qb_strmap_hash(k, (size_t)n));
        QB_CHECK(e != NULL && e->value == i);
        /* a second get finds, does not add */
        QB_CHECK(t_get(&m, k, (size_t)n, -1, &rc) == e);
    }
    QB_CHECK(m.count == 5000);
    /* the walk sees each node once */
    size_t seen = 0;
    long sum = 0;
    for (size_t i = 0; i < m.cap; i++) {
        if (m.slots[i] != NULL) {
            seen++;
            sum += ((t_entry *)m.slots[i])->value;
        }
    }
    QB_CHECK(seen == 5000 && sum == 4999L * 5000 / 2);
    t_free_all(&m);
    QB_CHECK(m.slots == NULL && m.cap == 0 && m.count == 0);
}

QB_TEST(compares_bytes_not_strings)
{
    qb_strmap m;
    qb_strmap_init(&m, 16);
    int rc;
    t_entry *a = t_get(&m, "book.b.BTC", 10, 1, &rc);
    t_entry *b = t_get(&m, "book.b.BTC-USDT", 15, 2, &rc);
    t_entry *c = t_get(&m, "book.b.BTC\0X", 12, 3, &rc);
    QB_CHECK(a != NULL && b != NULL && c != NULL && a != b && a != c && b != c);
    QB_CHECK(qb_strmap_find(&m, "book.b.BTC-USDT", 10, qb_strmap_hash("book.b.BTC", 10)) ==
             &a->node);
    QB_CHECK(qb_strmap_find(&m, "book.b.BTC\0Y", 12, qb_strmap_hash("book.b.BTC\0Y", 12)) == NULL);
    QB_CHECK(m.count == 3);
    t_free_all(&m);
}

QB_TEST(full_refuses_new_keeps_old)
{
    qb_strmap m;
    qb_strmap_init(&m, 3);
    int rc;
    QB_CHECK(t_get(&m, "a", 1, 1, &rc) != NULL);
    QB_CHECK(t_get(&m, "b", 1, 2, &rc) != NULL);
    QB_CHECK(t_get(&m, "c", 1, 3, &rc) != NULL);
    QB_CHECK(t_get(&m, "d", 1, 4, &rc) == NULL && rc == QB_ETOOBIG);
    QB_CHECK_EQ_INT(qb_strmap_reserve(&m), QB_ETOOBIG);
    t_entry *b = t_get(&m, "b", 1, 0, &rc);
    QB_CHECK(b != NULL && b->value == 2 && rc == QB_OK);
    QB_CHECK(m.count == 3);
    t_free_all(&m);

    qb_strmap z;
    qb_strmap_init(&z, 0);
    QB_CHECK(t_get(&z, "a", 1, 1, &rc) == NULL && rc == QB_ETOOBIG);
    QB_CHECK(z.slots == NULL);
    qb_strmap_fini(&z);
}

int main(void)
{
    return qb_test_run_all();
}
