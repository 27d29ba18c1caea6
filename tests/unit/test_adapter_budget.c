/*
 * test_adapter_budget.c: the per-process request budgets (adapters/budget.c)
 * without network or clock: token bucket rate and burst, the connect and
 * snapshot budgets, the HTTP 429/418 policy (process-wide block, Retry-After
 * honoured in full, defaults when missing), and the exchanges' defaults.
 */
#include "budget.h"
#include "exchange.h"
#include "harness.h"

#define S 1000000000ull

QB_TEST(bucket_allows_burst_then_rate)
{
    qb_bucket b;
    qb_bucket_init(&b, 60, 3); /* 1 per s, burst 3 */
    uint64_t t = 1000 * S;
    for (int k = 0; k < 3; k++) {
        QB_CHECK_EQ_INT(qb_bucket_take(&b, t), 0);
    }
    uint64_t w = qb_bucket_take(&b, t);
    QB_CHECK_EQ_INT(w, S);                          /* next token in 1 s */
    QB_CHECK(qb_bucket_take(&b, t + S - 1) == 1);   /* still 1 ns short */
    QB_CHECK_EQ_INT(qb_bucket_take(&b, t + S), 0);  /* taken */
    QB_CHECK(qb_bucket_take(&b, t + S) == S);       /* empty again */
}

QB_TEST(bucket_never_exceeds_burst_plus_rate)
{
    qb_bucket b;
    qb_bucket_init(&b, 20, qb_budget_burst(20)); /* burst 2 */
    QB_CHECK_EQ_INT(b.burst, 2);
    uint64_t t0 = 5 * S, taken = 0;
    /* Ask every 10 ms for 60 s. */
    for (uint64_t t = t0; t < t0 + 60 * S; t += 10000000u) {
        if (qb_bucket_take(&b, t) == 0) {
            taken++;
        }
    }
    QB_CHECK(taken <= 2 + 20);
    QB_CHECK(taken >= 20);
}

QB_TEST(bucket_refills_to_burst_only)
{
    qb_bucket b;
    qb_bucket_init(&b, 60, 2);
    QB_CHECK_EQ_INT(qb_bucket_take(&b, S), 0);
    /* An hour idle: still only 2 at once. */
    uint64_t t = 3600 * S;
    QB_CHECK_EQ_INT(qb_bucket_take(&b, t), 0);
    QB_CHECK_EQ_INT(qb_bucket_take(&b, t), 0);
    QB_CHECK(qb_bucket_take(&b, t) > 0);
}

QB_TEST(unlimited_bucket_never_waits)
{
    qb_bucket b;
    qb_bucket_init(&b, 0, 0);
    for (int k = 0; k < 1000; k++) {
        QB_CHECK_EQ_INT(qb_bucket_take(&b, 0), 0);
    }
}

QB_TEST(budget_counts_waits)
{
    qb_budget b;
    qb_budget_init(&b, 10, 10); /* bursts of 1 */
    QB_CHECK_EQ_INT(qb_budget_connect(&b, S), 0);
    QB_CHECK(qb_budget_connect(&b, S) == 6 * S);
    QB_CHECK_EQ_INT(b.budget_waits, 1);
    QB_CHECK_EQ_INT(qb_budget_snapshot(&b, S), 0); /* separate bucket */
    QB_CHECK(qb_budget_snapshot(&b, S) > 0);
    QB_CHECK_EQ_INT(b.budget_waits, 2);
}

QB_TEST(http_429_blocks_all_snapshots_for_retry_after)
{
    qb_budget b;
    qb_budget_init(&b, 60, 0); /* snapshots unlimited by the bucket */
    uint64_t t = 10 * S;
    QB_CHECK_EQ_INT(qb_budget_http(&b, 429, 7000, t), 7000);
    QB_CHECK_EQ_INT(b.http_429, 1);
    QB_CHECK(qb_budget_snapshot(&b, t + S) == 6 * S); /* any instrument */
    QB_CHECK_EQ_INT(qb_budget_snapshot(&b, t + 7 * S), 0);
    /* Missing Retry-After: the default. */
    QB_CHECK_EQ_INT(qb_budget_http(&b, 429, 0, t), QB_BUDGET_429_DEFAULT_MS);
    /* Other statuses do not block. */
    QB_CHECK_EQ_INT(qb_budget_http(&b, 500, 9000, 100 * S), 0);
    QB_CHECK_EQ_INT(qb_budget_http(&b, 200, 0, 100 * S), 0);
    QB_CHECK_EQ_INT(qb_budget_snapshot(&b, 100 * S), 0);
    /* The connect budget is not affected. */
    QB_CHECK_EQ_INT(qb_budget_connect(&b, 100 * S), 0);
}

QB_TEST(http_418_ban_is_honoured_in_full)
{
    qb_budget b;
    qb_budget_init(&b, 60, 100);
    uint64_t t = 10 * S;
    QB_CHECK_EQ_INT(qb_budget_http(&b, 418, 3600000, t), 3600000);
    QB_CHECK_EQ_INT(b.http_418, 1);
    QB_CHECK(qb_budget_snapshot(&b, t + 3599 * S) == S);
    /* A later, shorter 429 does not shorten the ban. */
    QB_CHECK_EQ_INT(qb_budget_http(&b, 429, 1000, t + 10 * S), 1000);
    QB_CHECK(qb_budget_snapshot(&b, t + 3599 * S) == S);
    QB_CHECK_EQ_INT(qb_budget_snapshot(&b, t + 3600 * S), 0);
    /* 418 without Retry-After: the long default. */
    qb_budget_init(&b, 60, 100);
    QB_CHECK_EQ_INT(qb_budget_http(&b, 418, 0, t), QB_BUDGET_418_DEFAULT_MS);
}

QB_TEST(exchanges_have_conservative_defaults)
{
    QB_CHECK_EQ_INT(qb_binance_ops.connects_per_min, 60);
    QB_CHECK_EQ_INT(qb_binance_ops.snapshots_per_min, 100);
    QB_CHECK(qb_bithumb_ops.connects_per_min > 0 && qb_bithumb_ops.connects_per_min <= 30);
    QB_CHECK(qb_htx_ops.connects_per_min > 0 && qb_htx_ops.connects_per_min <= 30);
}

int main(void)
{
    return qb_test_run_all();
}
