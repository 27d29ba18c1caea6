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
 * Network-free and clock-free (callers pass the monotonic time), so the unit
 * test drives it directly. Not thread-safe: the lws service thread only.
 */
#ifndef QB_ADAPTER_BUDGET_H
#define QB_ADAPTER_BUDGET_H

#include <stdbool.h>
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

#endif
