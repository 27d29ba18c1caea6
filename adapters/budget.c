/*
 * budget.c: token buckets (GCRA) and the HTTP 429/418 policy; see budget.h.
 *
 * GCRA: tat is when the bucket would be full again. A take at now is
 * allowed when tat - now <= (burst-1)*interval; it then moves tat one
 * interval on. Equivalent to a bucket of `burst` tokens refilled every
 * `interval`, with one integer of state.
 */
#include "budget.h"

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
