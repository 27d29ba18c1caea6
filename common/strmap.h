/*
 * strmap.h: the project's one bounded string-keyed hash table: FNV-1a
 * 64-bit hashes, open addressing with linear probing, no removal (the
 * universes it indexes - topics, instruments - only grow).
 *
 * It is intrusive: a caller embeds a qb_strmap_node in its own entry (with
 * the key bytes usually inline in the same allocation) and the table keeps
 * pointers to nodes, so a lookup hashes the caller's key view and compares
 * bytes, with no allocation and no copy (the broker's ingest path looks up
 * every frame's topic this way).
 *
 *   slots: [ . | n1 | . | . | n2 | n3 | . | ... ]   n = qb_strmap_node *
 *                 |              |
 *                 v              v
 *   caller entry { ..., node {hash, key, len}, ..., "book.binance.BTC-USDT" }
 *
 * Bounded: at most max keys. Policy when full: refuse new keys
 * (qb_strmap_reserve says QB_ETOOBIG), the keys already in are still found;
 * each caller counts or reports what it then leaves untracked. The slot
 * array starts at 64 on the first insert and doubles at 50% load, so it
 * grows only while keys are being added and never past 4 * max slots.
 * One thread at a time (the owner's).
 */
#ifndef QB_STRMAP_H
#define QB_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct qb_strmap_node {
    uint64_t hash;   /* qb_strmap_hash(key, len) */
    const char *key; /* owned by the caller's entry, alive while in a table */
    size_t len;
} qb_strmap_node;

typedef struct qb_strmap {
    /* Iterate with: for i in [0, cap): slots[i] is NULL or a node (no
     * order). Read-only for callers. */
    qb_strmap_node **slots;
    size_t cap; /* 0 before the first insert, then a power of two */
    size_t count;
    size_t max;
} qb_strmap;

/* FNV-1a, 64-bit, of p[0..n). Pure. The offset basis is the one the four
 * tables this replaced used, 1469598103934665603 (FNV's is
 * 14695981039346656037): any basis hashes as well, and this one keeps slot
 * order - hence the order of listings made by walking the slots - as it
 * was. */
static inline uint64_t qb_strmap_hash(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* An empty table of at most max keys (0: no key is ever accepted).
 * Allocates nothing. */
void qb_strmap_init(qb_strmap *m, size_t max);

/* Frees the slot array (not the nodes: they are the caller's, reachable
 * through slots until this call). The table may be init'ed again. */
void qb_strmap_fini(qb_strmap *m);

/* The node of key[0..n) whose hash is h (qb_strmap_hash(key, n): callers
 * that then insert hash once), or NULL. Allocates nothing. */
qb_strmap_node *qb_strmap_find(const qb_strmap *m, const char *key, size_t n, uint64_t h);

/* Makes room for one more key: QB_OK; QB_ETOOBIG when count == max (the
 * full policy: refuse, see above); QB_ENOMEM when the slot array could not
 * grow (the table is unchanged). Call before allocating the new entry, so
 * that a refusal costs nothing. */
int qb_strmap_reserve(qb_strmap *m);

/* Inserts node (hash, key, len set; its key not yet in the table) after a
 * successful qb_strmap_reserve with no insert since. Cannot fail. The
 * table keeps the pointer until qb_strmap_fini. */
void qb_strmap_insert(qb_strmap *m, qb_strmap_node *node);

#endif
