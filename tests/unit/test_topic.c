/*
 * test_topic.c: proto/topic.h, the topic parts, the nearest rule
 * (its ranks, ties in byte order, independence from the order of offers)
 * and the "what the broker has" line (sorted, deduplicated, bounded).
 */
#include "harness.h"

#include "buf.h"
#include "err.h"
#include "topic.h"

#include <string.h>

static qb_str S(const char *s)
{
    return (qb_str){s, strlen(s)};
}

static bool part_is(qb_str p, const char *want)
{
    return p.n == strlen(want) && memcmp(p.p, want, p.n) == 0;
}

QB_TEST(topic_split_parts)
{
    qb_topic_parts p;
    qb_topic_split("book.binance.BTC-USDT", 21, &p);
    QB_CHECK(part_is(p.kind, "book") && part_is(p.ex, "binance") && part_is(p.sym, "BTC-USDT"));
    qb_topic_split("trade.htx.", 10, &p);
    QB_CHECK(part_is(p.kind, "trade") && part_is(p.ex, "htx") && p.sym.n == 0);
    qb_topic_split("book.", 5, &p);
    QB_CHECK(part_is(p.kind, "book") && p.ex.n == 0 && p.sym.n == 0);
    qb_topic_split("book", 4, &p);
    QB_CHECK(part_is(p.kind, "book") && p.ex.n == 0 && p.sym.n == 0);
    qb_topic_split("a.b.c.d", 7, &p);
    QB_CHECK(part_is(p.sym, "c.d"));
}

static const char *const known[] = {
    "book.htx.ETH-BTC",      "book.binance.ETH-USDT", "trade.binance.DOGE-EUR",
    "book.binance.BTC-USDT", "book.bithumb.BTC-KRW",  "book.binance.DOGE-USDT",
    "book.htx.BTC-USDT",     "book.kraken.XRP-EUR",
};
#define N_KNOWN (sizeof known / sizeof known[0])

static void nearest(const qb_str *want, size_t n_want, bool reverse, qb_topic_nearest *nr)
{
    qb_topic_nearest_init(nr, want, n_want);
    for (size_t i = 0; i < N_KNOWN; i++) {
        const char *t = known[reverse ? N_KNOWN - 1 - i : i];
        qb_topic_nearest_offer(nr, t, strlen(t));
        qb_topic_nearest_offer(nr, t, strlen(t)); /* offered twice: kept once */
    }
}

QB_TEST(topic_nearest_rule_and_order)
{
    qb_str want[] = {S("book.kraken.DOGE-USDT")};
    qb_topic_nearest a, b;
    nearest(want, 1, false, &a);
    nearest(want, 1, true, &b);
    /* Same exchange first (kraken XRP-EUR: 0b0111), then the same symbol
     * elsewhere (binance DOGE-USDT: 0b1000), then the same base or quote
     * (0b1110, the same quote: binance BTC/ETH-USDT, htx BTC-USDT), in byte
     * order; trades never. */
    static const char *const want_names[] = {"book.kraken.XRP-EUR", "book.binance.DOGE-USDT",
                                             "book.binance.BTC-USDT", "book.binance.ETH-USDT",
                                             "book.htx.BTC-USDT"};
    QB_CHECK_EQ_INT(a.n, 5);
    for (size_t i = 0; i < a.n; i++) {
        QB_CHECK_EQ_STR(a.name[i], want_names[i]);
        QB_CHECK_EQ_STR(b.name[i], a.name[i]);
    }
    QB_CHECK_EQ_INT(a.rank[0], 7);
    QB_CHECK_EQ_INT(a.rank[1], 8);
    /* Several patterns: each candidate takes its best rank; a kind with no
     * topic contributes nothing. */
    qb_str two[] = {S("ticker.binance.BTC-USDT"), S("trade.binance.DOGE-USD")};
    qb_topic_nearest c;
    nearest(two, 2, false, &c);
    QB_CHECK_EQ_INT(c.n, 1);
    QB_CHECK_EQ_STR(c.name[0], "trade.binance.DOGE-EUR");
    QB_CHECK_EQ_INT(c.rank[0], 5); /* same exchange and base */
    /* Nothing offered: nothing kept. */
    qb_topic_nearest_init(&c, two, 2);
    QB_CHECK_EQ_INT(c.n, 0);
}

QB_TEST(topic_instruments_line)
{
    qb_str t[] = {S("book.htx.ETH-USDT"), S("book.binance.ETH-USDT"),
                  S("trade.x.Y"),         S("book.binance.BTC-USDT"),
                  S("book.htx.BTC-USDT"), S("book.binance.BTC-USDT"),
                  S("book.bad")};
    qb_buf b = QB_BUF_INIT;
    QB_CHECK_EQ_INT(qb_topic_instruments(&b, t, sizeof t / sizeof t[0]), QB_OK);
    QB_CHECK_EQ_INT(qb_buf_append(&b, "", 1), QB_OK);
    QB_CHECK_EQ_STR((const char *)b.data, "binance BTC-USDT ETH-USDT, htx BTC-USDT ETH-USDT");
    qb_buf_reset(&b);
    QB_CHECK_EQ_INT(qb_topic_instruments(&b, NULL, 0), QB_OK);
    QB_CHECK_EQ_INT(qb_buf_append(&b, "", 1), QB_OK);
    QB_CHECK_EQ_STR((const char *)b.data, "no books");
    /* Bounded per exchange. */
    char names[QB_TOPIC_LIST_SYMS + 3][32];
    qb_str many[QB_TOPIC_LIST_SYMS + 3];
    for (int i = 0; i < QB_TOPIC_LIST_SYMS + 3; i++) {
        snprintf(names[i], sizeof names[i], "book.x.S%02d-USD", i);
        many[i] = S(names[i]);
    }
    qb_buf_reset(&b);
    QB_CHECK_EQ_INT(qb_topic_instruments(&b, many, QB_TOPIC_LIST_SYMS + 3), QB_OK);
    QB_CHECK_EQ_INT(qb_buf_append(&b, "", 1), QB_OK);
    QB_CHECK(strstr((const char *)b.data, " S11-USD (+3 more)") != NULL);
    QB_CHECK(strstr((const char *)b.data, "S12-USD") == NULL);
    qb_buf_fini(&b);
}

int main(void)
{
    return qb_test_run_all();
}
