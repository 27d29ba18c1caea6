/*
 * test_adapter_budget.c: the per-process request budgets (adapters/budget.c)
 * without network or clock: token bucket rate and burst, the connect and
 * snapshot budgets, the HTTP 429/418 policy (process-wide block, Retry-After
 * honoured in full, defaults when missing), the exchanges' defaults and
 * weights, and the snapshot request queue (qb_fetchq): one entry per book,
 * longest waiting first whatever order they asked in, not_before, the
 * connection gate, the budget, and the heal bound README states.
 */
#include "budget.h"
#include "err.h"
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
    QB_CHECK_EQ_INT(w, S);                         /* next token in 1 s */
    QB_CHECK(qb_bucket_take(&b, t + S - 1) == 1);  /* still 1 ns short */
    QB_CHECK_EQ_INT(qb_bucket_take(&b, t + S), 0); /* taken */
    QB_CHECK(qb_bucket_take(&b, t + S) == S);      /* empty again */
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

QB_TEST(binance_snapshot_weights_set_the_budget)
{
    /* ../shared/exchange-protocols.md 1.4: 1-100: 5, 101-500: 25,
     * 501-1000: 50, 1001-5000: 250. */
    static const unsigned lim[] = {1, 100, 101, 500, 501, 1000, 1001, 5000};
    static const uint32_t w[] = {5, 5, 25, 25, 50, 50, 250, 250};
    for (size_t i = 0; i < sizeof lim / sizeof lim[0]; i++) {
        QB_CHECK_EQ_INT(qb_binance_ops.snapshot_weight(lim[i]), w[i]);
    }
    /* 5000 of Binance's 6000 per minute: the default depth 1000 keeps
     * today's 100 snapshots per minute; depth 100 gets 1000, 5000 gets 20
     * (100 of those would weigh 25000: a ban). */
    uint32_t wpm = qb_binance_ops.snapshot_weight_per_min;
    QB_CHECK_EQ_INT(wpm / qb_binance_ops.snapshot_weight(1000), 100);
    QB_CHECK_EQ_INT(wpm / qb_binance_ops.snapshot_weight(100), 1000);
    QB_CHECK_EQ_INT(wpm / qb_binance_ops.snapshot_weight(5000), 20);
    QB_CHECK(qb_htx_ops.snapshot_weight == NULL); /* req over the websocket: paced, unweighed */
}

/* ---- the snapshot request queue ---- */

#define MS 1000000ull

static qb_fetchq_item items[64];

static void items_reset(void)
{
    memset(items, 0, sizeof items);
    for (size_t i = 0; i < 64; i++) {
        items[i].user = &items[i];
    }
}

QB_TEST(fetchq_longest_waiting_first_not_first_come)
{
    items_reset();
    qb_fetchq q;
    QB_CHECK_EQ_INT(qb_fetchq_init(&q, 8), QB_OK);
    qb_budget b;
    qb_budget_init(&b, 60, 0); /* snapshots unlimited */
    uint64_t t = 100 * S;
    /* They ask in the order 0, 1, 2, 3 but broke in the order 2, 0, 3, 1. */
    QB_CHECK_EQ_INT(qb_fetchq_want(&q, &items[0], t - 20 * S, t), QB_OK);
    QB_CHECK_EQ_INT(qb_fetchq_want(&q, &items[1], t - 1 * S, t), QB_OK);
    QB_CHECK_EQ_INT(qb_fetchq_want(&q, &items[2], t - 30 * S, t), QB_OK);
    QB_CHECK_EQ_INT(qb_fetchq_want(&q, &items[3], t - 5 * S, t), QB_OK);
    QB_CHECK_EQ_INT(qb_fetchq_rank(&q, &items[2]), 1);
    QB_CHECK_EQ_INT(qb_fetchq_rank(&q, &items[1]), 4);
    QB_CHECK_EQ_INT(qb_fetchq_rank(&q, &items[5]), 0);
    static const int order[] = {2, 0, 3, 1};
    for (int k = 0; k < 4; k++) {
        uint64_t w = 99;
        qb_fetchq_item *it = qb_fetchq_next(&q, &b, t, NULL, NULL, &w);
        QB_CHECK(it == &items[order[k]]);
        QB_CHECK_EQ_INT(w, 0);
        QB_CHECK_EQ_INT(it->pos, 0);
    }
    uint64_t w = 99;
    QB_CHECK(qb_fetchq_next(&q, &b, t, NULL, NULL, &w) == NULL);
    QB_CHECK_EQ_INT(w, 0); /* nothing queued */
    QB_CHECK_EQ_INT(q.starts, 4);
    QB_CHECK_EQ_INT(q.max_n, 4);
    qb_fetchq_fini(&q);
}

QB_TEST(fetchq_one_entry_per_book)
{
    items_reset();
    qb_fetchq q;
    QB_CHECK_EQ_INT(qb_fetchq_init(&q, 2), QB_OK);
    uint64_t t = 100 * S;
    QB_CHECK_EQ_INT(qb_fetchq_want(&q, &items[0], t - S, t + 1000 * MS), QB_OK);
    /* Asked again (a later event, a retry): same entry, same place; only
     * an earlier not_before moves it. */
    QB_CHECK_EQ_INT(qb_fetchq_want(&q, &items[0], t, t + 2000 * MS), QB_OK);
    QB_CHECK_EQ_INT(q.n, 1);
    QB_CHECK(items[0].since == t - S);
    QB_CHECK(items[0].not_before == t + 1000 * MS);
    QB_CHECK_EQ_INT(qb_fetchq_want(&q, &items[0], t, t), QB_OK);
    QB_CHECK(items[0].not_before == t);
    QB_CHECK_EQ_INT(q.n, 1);
    /* Sized for every book: a third distinct one does not fit in 2. */
    QB_CHECK_EQ_INT(qb_fetchq_want(&q, &items[1], t, t), QB_OK);
    QB_CHECK_EQ_INT(qb_fetchq_want(&q, &items[2], t, t), QB_ENOMEM);
    /* Dropped (connection lost): gone, the rest keep their order. */
    qb_fetchq_drop(&q, &items[0]);
    qb_fetchq_drop(&q, &items[0]);
    QB_CHECK_EQ_INT(q.n, 1);
    QB_CHECK_EQ_INT(items[1].pos, 1);
    qb_fetchq_fini(&q);
}

QB_TEST(fetchq_not_before_and_budget)
{
    items_reset();
    qb_fetchq q;
    QB_CHECK_EQ_INT(qb_fetchq_init(&q, 8), QB_OK);
    qb_budget b;
    qb_budget_init(&b, 60, 60); /* 1 per s, burst 6 */
    b.snapshots.burst = 1;
    uint64_t t = 100 * S, w = 0;
    /* The oldest backs off for 3 s: the younger one goes first. */
    qb_fetchq_want(&q, &items[0], t - 10 * S, t + 3 * S);
    qb_fetchq_want(&q, &items[1], t - 5 * S, t);
    QB_CHECK(qb_fetchq_next(&q, &b, t, NULL, NULL, &w) == &items[1]);
    /* Nothing ready: the wait is the backoff's. */
    QB_CHECK(qb_fetchq_next(&q, &b, t, NULL, NULL, &w) == NULL);
    QB_CHECK(w == 3 * S);
    /* Ready, but the budget's token comes at t+1 s... it is t+3 s now. */
    qb_fetchq_want(&q, &items[2], t - 1 * S, t);
    QB_CHECK(qb_fetchq_next(&q, &b, t + 500 * MS, NULL, NULL, &w) == NULL);
    QB_CHECK(w == 500 * MS); /* the budget's wait, not the backoff's */
    QB_CHECK_EQ_INT(b.budget_waits, 1);
    QB_CHECK(qb_fetchq_next(&q, &b, t + 1 * S, NULL, NULL, &w) == &items[2]);
    /* A 429 blocks every start until its Retry-After. */
    qb_budget_http(&b, 429, 5000, t + 3 * S);
    QB_CHECK(qb_fetchq_next(&q, &b, t + 3 * S, NULL, NULL, &w) == NULL);
    QB_CHECK(w == 5 * S);
    QB_CHECK(qb_fetchq_next(&q, &b, t + 8 * S, NULL, NULL, &w) == &items[0]);
    qb_fetchq_fini(&q);
}

/* ready: items 0..3 are on connection A, paced until pace_until. */
static uint64_t pace_until;
static bool ready_paced(void *ctx, qb_fetchq_item *it, uint64_t now, uint64_t *wait_ns)
{
    (void)ctx;
    if (it - items < 4 && pace_until > now) {
        *wait_ns = pace_until - now;
        return false;
    }
    return true;
}

QB_TEST(fetchq_connection_gate_skips_to_the_next_connection)
{
    items_reset();
    qb_fetchq q;
    QB_CHECK_EQ_INT(qb_fetchq_init(&q, 8), QB_OK);
    qb_budget b;
    qb_budget_init(&b, 60, 0);
    uint64_t t = 100 * S, w = 0;
    pace_until = t + 110 * MS;
    qb_fetchq_want(&q, &items[0], t - 10 * S, t); /* A, oldest */
    qb_fetchq_want(&q, &items[5], t - 5 * S, t);  /* B */
    QB_CHECK(qb_fetchq_next(&q, &b, t, ready_paced, NULL, &w) == &items[5]);
    QB_CHECK(qb_fetchq_next(&q, &b, t, ready_paced, NULL, &w) == NULL);
    QB_CHECK(w == 110 * MS);
    QB_CHECK(qb_fetchq_next(&q, &b, t + 110 * MS, ready_paced, NULL, &w) == &items[0]);
    qb_fetchq_fini(&q);
}

/* The bound README states: N books broken at once, budget B per minute
 * (burst B/10): the k-th longest broken starts within
 * max(0, k - B/10) * 60/B s of the break, and in break order, however
 * their asks interleave. Binance's default 100/min and 50 books: the
 * last starts within 24 s. */
QB_TEST(fetchq_heal_bound_n_books_budget_b)
{
    items_reset();
    qb_fetchq q;
    QB_CHECK_EQ_INT(qb_fetchq_init(&q, 64), QB_OK);
    qb_budget b;
    const uint32_t B = 100, N = 50;
    qb_budget_init(&b, 60, B);
    uint64_t t0 = 1000 * S;
    /* All break within 50 ms, asking in a scrambled order. */
    for (uint32_t i = 0; i < N; i++) {
        uint32_t k = (i * 37) % N;
        qb_fetchq_want(&q, &items[k], t0 + k * MS, t0 + k * MS);
    }
    uint64_t now = t0 + 50 * MS;
    uint32_t started = 0;
    while (started < N) {
        uint64_t w = 0;
        qb_fetchq_item *it = qb_fetchq_next(&q, &b, now, NULL, NULL, &w);
        if (it == NULL) {
            QB_CHECK(w > 0);
            now += w;
            continue;
        }
        QB_CHECK(it == &items[started]); /* break order */
        uint32_t burst = qb_budget_burst(B);
        uint64_t bound = started + 1 > burst ? (uint64_t)(started + 1 - burst) * 60 * S / B : 0;
        QB_CHECK(now - it->since <= bound + 50 * MS);
        started++;
    }
    QB_CHECK(now - t0 <= 24 * S + 50 * MS);
    qb_fetchq_fini(&q);
}

int main(void)
{
    return qb_test_run_all();
}
