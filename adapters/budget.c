/*
 * budget.c: token buckets (GCRA), the HTTP 429/418 policy and the snapshot
 * request queue; see budget.h.
 *
 * GCRA: tat is when the bucket would be full again. A take at now is
 * allowed when tat - now <= (burst-1)*interval; it then moves tat one
 * interval on. Equivalent to a bucket of `burst` tokens refilled every
 * `interval`, with one integer of state.
 */
#include "budget.h"

#include "err.h"

#include <stdlib.h>

#define BUDGET_NS_PER_MIN 60000000000ull

void qb_bucket_init(qb_bucket *b, uint32_t per_min, uint32_t burst)
{
    b->per_min = per_min;
    b->burst = burst ? burst : 1;
    b->interval = per_min ? BUDGET_NS_PER_MIN / per_min : 0;
    b->tat = 0;
}

uint64_t qb_bucket_take(qb_bucket *b, uint64_t now_ns)
{
    if (b->per_min == 0) {
        return 0;
    }
    uint64_t tat = b->tat > now_ns ? b->tat : now_ns;
    uint64_t allowance = (uint64_t)(b->burst - 1) * b->interval;
    if (tat - now_ns > allowance) {
        return tat - now_ns - allowance;
    }
    b->tat = tat + b->interval;
    return 0;
}

uint32_t qb_budget_burst(uint32_t per_min)
{
    return per_min / 10 ? per_min / 10 : 1;
}

void qb_budget_init(qb_budget *b, uint32_t connects_per_min, uint32_t snapshots_per_min)
{
    qb_bucket_init(&b->connects, connects_per_min, qb_budget_burst(connects_per_min));
    qb_bucket_init(&b->snapshots, snapshots_per_min, qb_budget_burst(snapshots_per_min));
    b->snap_blocked_until = 0;
    b->budget_waits = 0;
    b->http_429 = 0;
    b->http_418 = 0;
}

uint64_t qb_budget_connect(qb_budget *b, uint64_t now_ns)
{
    uint64_t w = qb_bucket_take(&b->connects, now_ns);
    if (w) {
        b->budget_waits++;
    }
    return w;
}

uint64_t qb_budget_snapshot(qb_budget *b, uint64_t now_ns)
{
    if (b->snap_blocked_until > now_ns) {
        b->budget_waits++;
        return b->snap_blocked_until - now_ns;
    }
    uint64_t w = qb_bucket_take(&b->snapshots, now_ns);
    if (w) {
        b->budget_waits++;
    }
    return w;
}

uint32_t qb_budget_http(qb_budget *b, int status, uint32_t retry_after_ms, uint64_t now_ns)
{
    uint32_t ms;
    if (status == 429) {
        b->http_429++;
        ms = retry_after_ms ? retry_after_ms : QB_BUDGET_429_DEFAULT_MS;
    } else if (status == 418) {
        b->http_418++;
        ms = retry_after_ms ? retry_after_ms : QB_BUDGET_418_DEFAULT_MS;
    } else {
        return 0;
    }
    uint64_t until = now_ns + (uint64_t)ms * 1000000u;
    if (until > b->snap_blocked_until) {
        b->snap_blocked_until = until;
    }
    return ms;
}

/* ---- the snapshot request queue ------------------------------------------ */

int qb_fetchq_init(qb_fetchq *q, size_t cap)
{
    q->v = calloc(cap ? cap : 1, sizeof *q->v);
    if (q->v == NULL) {
        return QB_ENOMEM;
    }
    q->n = 0;
    q->cap = cap;
    q->max_n = 0;
    q->starts = 0;
    return QB_OK;
}

void qb_fetchq_fini(qb_fetchq *q)
{
    for (size_t i = 0; i < q->n; i++) {
        q->v[i]->pos = 0;
    }
    free(q->v);
    q->v = NULL;
    q->n = q->cap = 0;
}

int qb_fetchq_want(qb_fetchq *q, qb_fetchq_item *it, uint64_t since, uint64_t not_before)
{
    if (it->pos) {
        if (not_before < it->not_before) {
            it->not_before = not_before;
        }
        return QB_OK;
    }
    if (q->n >= q->cap) {
        return QB_ENOMEM;
    }
    it->since = since;
    it->not_before = not_before;
    q->v[q->n++] = it;
    it->pos = q->n;
    if (q->n > q->max_n) {
        q->max_n = q->n;
    }
    return QB_OK;
}

void qb_fetchq_drop(qb_fetchq *q, qb_fetchq_item *it)
{
    if (it->pos == 0) {
        return;
    }
    /* Keep queue order (the tie-break): shift the tail down one. */
    for (size_t i = it->pos; i < q->n; i++) {
        q->v[i - 1] = q->v[i];
        q->v[i - 1]->pos = i;
    }
    q->n--;
    it->pos = 0;
}

/* a goes before b: smaller since, then earlier queued. */
static bool fetchq_before(const qb_fetchq_item *a, const qb_fetchq_item *b)
{
    return a->since != b->since ? a->since < b->since : a->pos < b->pos;
}

size_t qb_fetchq_rank(const qb_fetchq *q, const qb_fetchq_item *it)
{
    if (it->pos == 0) {
        return 0;
    }
    size_t r = 1;
    for (size_t i = 0; i < q->n; i++) {
        r += q->v[i] != it && fetchq_before(q->v[i], it);
    }
    return r;
}

qb_fetchq_item *qb_fetchq_next(qb_fetchq *q, qb_budget *b, uint64_t now, qb_fetchq_ready_fn ready,
                               void *ctx, uint64_t *wait_ns)
{
    qb_fetchq_item *best = NULL;
    uint64_t wait = 0;
    for (size_t i = 0; i < q->n; i++) {
        qb_fetchq_item *it = q->v[i];
        uint64_t w = 0;
        if (it->not_before > now) {
            w = it->not_before - now;
        } else if (ready && !ready(ctx, it, now, &w)) {
            if (w == 0) {
                continue; /* no estimate: the caller's next call sees it again */
            }
        } else {
            if (best == NULL || fetchq_before(it, best)) {
                best = it;
            }
            continue;
        }
        if (wait == 0 || w < wait) {
            wait = w;
        }
    }
    if (best == NULL) {
        *wait_ns = wait;
        return NULL;
    }
    /* The budget is the process's: when the longest-waiting ready item
     * cannot start, no other may (it would jump the queue). */
    uint64_t w = qb_budget_snapshot(b, now);
    if (w) {
        *wait_ns = w;
        return NULL;
    }
    qb_fetchq_drop(q, best);
    q->starts++;
    *wait_ns = 0;
    return best;
}
