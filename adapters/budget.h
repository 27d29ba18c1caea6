/*
 * budget.h: per-exchange request budgets, shared by every connection of the
 * adapter process (exchanges ban IPs that reconnect or poll too often).
 *
 * Two token buckets per process: websocket connection attempts and snapshot
 * requests. A bucket holds at most `burst` tokens and refills at `per_min`
 * tokens per minute (GCRA form: one "theoretical arrival time", no floating
 * point), so in any window of T seconds at most burst + per_min*T/60
 * attempts start. An attempt that finds the bucket empty does not start: the
 * caller waits the returned time (status down/resyncing, reason "reconnect
 * budget exhausted, next attempt in N s") and asks again.
 *
 * HTTP policy: a snapshot answered 429 (too many requests) or 418 (Binance:
 * the IP is banned) blocks every snapshot request of the process, not just
 * that instrument's, until Retry-After has passed, honoured in full (with a
 * default when the header is missing: 1 s for 429, 120 s for 418).
 *
 * Snapshot request queue (qb_fetchq): every book that needs a snapshot has
 * at most one entry (one outstanding request per symbol), and the next
 * request to start is the queued book that has waited longest: since it
 * broke, or since its own last request started when it needed another
 * (stale or failed answer), so a book whose answers keep failing cannot
 * hog the budget. Not first come first served: with N books broken at
 * once and a budget of B requests per minute (burst b), the k-th longest
 * broken starts within max(0, k - b) * 60/B s, so the last within
 * max(0, N - b) * 60/B s, whatever order their retries come in.
 *
 *   want(it, since, not_before)       next(now)
 *        |                               |  among queued items with not_before <= now
 *        v                               |  and ready() (connection pacing), the
 *   [ it3 | it1 | it7 | ... ]  ----------+  smallest since; it takes a token of the
 *     (unordered, <= one per book)          snapshot bucket, or nothing starts and
 *                                           the caller waits *wait_ns
 *
 * Network-free and clock-free (callers pass the monotonic time), so the unit
 * test drives it directly. Not thread-safe: the lws service thread only.
 */
#ifndef QB_ADAPTER_BUDGET_H
#define QB_ADAPTER_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QB_BUDGET_429_DEFAULT_MS 1000u
#define QB_BUDGET_418_DEFAULT_MS 120000u

typedef struct qb_bucket {
    uint32_t per_min;  /* 0: unlimited */
    uint32_t burst;    /* >= 1 */
    uint64_t interval; /* ns per token */
    uint64_t tat;      /* theoretical arrival time, monotonic ns */
} qb_bucket;

/* per_min 0 makes an unlimited bucket; burst 0 means 1. */
void qb_bucket_init(qb_bucket *b, uint32_t per_min, uint32_t burst);
/* Takes one token at monotonic time now_ns: 0 when taken, otherwise the ns
 * to wait before a token is available (nothing taken). */
uint64_t qb_bucket_take(qb_bucket *b, uint64_t now_ns);

typedef struct qb_budget {
    qb_bucket connects;
    qb_bucket snapshots;
    uint64_t snap_blocked_until; /* monotonic ns: 429/418 block, 0 none */
    uint64_t budget_waits;       /* attempts deferred by either bucket or a block */
    uint64_t http_429, http_418;
} qb_budget;

/* The burst a bucket of per_min gets: per_min/10, at least 1. */
uint32_t qb_budget_burst(uint32_t per_min);
void qb_budget_init(qb_budget *b, uint32_t connects_per_min, uint32_t snapshots_per_min);
/* A connection attempt at now_ns: 0 go, otherwise ns to wait (counted). */
uint64_t qb_budget_connect(qb_budget *b, uint64_t now_ns);
/* A snapshot request at now_ns: 0 go, otherwise ns to wait (counted). */
uint64_t qb_budget_snapshot(qb_budget *b, uint64_t now_ns);
/* A snapshot answer with HTTP status: for 429 and 418 blocks all snapshot
 * requests for retry_after_ms (0: the default above) and returns that delay
 * in ms (counted); 0 for any other status. */
uint32_t qb_budget_http(qb_budget *b, int status, uint32_t retry_after_ms, uint64_t now_ns);

/* ---- the snapshot request queue ------------------------------------------ */

typedef struct qb_fetchq_item {
    uint64_t since;      /* order key, monotonic ns: waiting since (smallest first) */
    uint64_t not_before; /* monotonic ns: no start before (retry delay, backoff) */
    void *user;          /* the owner's instrument */
    size_t pos;          /* index in the queue + 1; 0: not queued */
} qb_fetchq_item;

typedef struct qb_fetchq {
    qb_fetchq_item **v; /* queued items, unordered (a scan per start: books are few) */
    size_t n, cap;
    size_t max_n;    /* most items queued at once so far */
    uint64_t starts; /* items handed out by qb_fetchq_next */
} qb_fetchq;

/* Room for cap items (one per instrument). QB_OK or QB_ENOMEM. */
int qb_fetchq_init(qb_fetchq *q, size_t cap);
void qb_fetchq_fini(qb_fetchq *q);
/* Queues it with order key since and earliest start not_before (monotonic
 * ns). Already queued: keeps its place (since unchanged) and moves
 * not_before earlier when the new one is earlier; never a second entry.
 * QB_OK, or QB_ENOMEM when the queue is full (cap items). */
int qb_fetchq_want(qb_fetchq *q, qb_fetchq_item *it, uint64_t since, uint64_t not_before);
/* Removes it (no-op when not queued). */
void qb_fetchq_drop(qb_fetchq *q, qb_fetchq_item *it);
/* 1 for the item that would start first if every queued item were ready,
 * 2 for the next, ...; 0 when it is not queued. */
size_t qb_fetchq_rank(const qb_fetchq *q, const qb_fetchq_item *it);

/* May it start at now? false with *wait_ns set (0: unknown, the caller
 * will call again) when something outside the queue holds it back (HTX:
 * one request per connection per interval, connection not up). */
typedef bool (*qb_fetchq_ready_fn)(void *ctx, qb_fetchq_item *it, uint64_t now, uint64_t *wait_ns);

/* The next request to start at now: among queued items with not_before <=
 * now that ready accepts (ready NULL: all), the one with the smallest
 * since (ties: the earliest queued). It takes a token of b's snapshot
 * bucket (qb_budget_snapshot, which honours a 429/418 block); on success
 * the item is removed and returned. Otherwise NULL, and *wait_ns is how
 * long until a start may be possible (the budget's wait, the earliest
 * not_before, or ready's wait; 0 when nothing is queued or no wait is
 * known). */
qb_fetchq_item *qb_fetchq_next(qb_fetchq *q, qb_budget *b, uint64_t now, qb_fetchq_ready_fn ready,
                               void *ctx, uint64_t *wait_ns);

#endif
