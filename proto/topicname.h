/*
 * topicname.h: topic names as people type them: their parts, and, for a
 * subscription that matches no topic, what exists instead. The one
 * definition of two rules shared by the broker's websocket "subscribed"
 * reply (broker/wsq.c: "nearest", PROTOCOL.md section 12), quotebus-sub and
 * libquotebus (the "the broker has: ..." line of a topic that matches no
 * instrument).
 *
 * The nearest rule. A candidate is an existing topic of the same kind as a
 * pattern that matched nothing; it gets a rank of four bits, most
 * significant first, each set when the part differs (ASCII case ignored):
 *
 *   bit 3: exchange   bit 2: symbol   bit 1: base (before '-')   bit 0: quote
 *
 * so the same exchange comes first (its symbols with the same base or quote
 * before the others), then the same symbol on other exchanges, then the
 * same base, then the same quote, then the rest of the kind. A part the
 * pattern does not have ("book.kraken." has no symbol) differs from every
 * candidate's. A candidate's rank is its best over all the patterns; the
 * QB_TOPIC_NEAREST_MAX lowest ranks are kept, equal ranks in byte order of
 * the topic, so the answer does not depend on the order of the offers.
 *
 *   pattern book.kraken.DOGE-EUR, topics book.binance.{BTC,DOGE}-USDT:
 *     book.binance.DOGE-USDT  rank 0b1101 (only the base is the same)
 *     book.binance.BTC-USDT   rank 0b1111
 *
 * Pure functions, any thread; only qb_topic_instruments allocates.
 */
#ifndef QB_PROTO_TOPICNAME_H
#define QB_PROTO_TOPICNAME_H

#include "buf.h"
#include "msg.h"

#include <stddef.h>

/* The parts of "kind.ex.sym", "kind.ex." or "kind." (views into the text;
 * a part the text does not have has n == 0). */
typedef struct qb_topic_parts {
    qb_str kind; /* "book" */
    qb_str ex;   /* "binance" */
    qb_str sym;  /* "BTC-USDT" (anything after the second dot) */
} qb_topic_parts;

/* Splits t (n bytes) at its first two dots. Never fails: text without a
 * dot is all kind. */
void qb_topic_split(const char *t, size_t n, qb_topic_parts *out);

#define QB_TOPIC_NEAREST_MAX 5

/* The nearest existing topics to a set of patterns (the rule above). */
typedef struct qb_topic_nearest {
    const qb_str *want; /* the patterns (the caller's; kept until the last offer) */
    size_t n_want;
    size_t n; /* names kept, best first */
    unsigned rank[QB_TOPIC_NEAREST_MAX];
    char name[QB_TOPIC_NEAREST_MAX][QB_TOPIC_MAX + 1];
} qb_topic_nearest;

/* Starts a search for the nearest topics to want[0..n_want). */
void qb_topic_nearest_init(qb_topic_nearest *nr, const qb_str *want, size_t n_want);

/* Offers one existing topic (n bytes, at most QB_TOPIC_MAX; longer ones are
 * ignored). Keeps it when it ranks among the best so far. */
void qb_topic_nearest_offer(qb_topic_nearest *nr, const char *topic, size_t n);

/* At most this many symbols are named per exchange by qb_topic_instruments. */
#define QB_TOPIC_LIST_SYMS 12

/* Appends the instruments of the book topics given ("book.<ex>.<sym>"; any
 * order, duplicates and other kinds ignored) as one line for people:
 * "binance BTC-USDT ETH-USDT, htx BTC-USDT", exchanges and symbols in byte
 * order, at most QB_TOPIC_LIST_SYMS symbols per exchange followed by
 * "(+N more)"; "no books" when there is none. QB_OK or QB_ENOMEM (out is
 * then unchanged). */
int qb_topic_instruments(qb_buf *out, const qb_str *topics, size_t n);

#endif
