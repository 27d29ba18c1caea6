/*
 * topic.h: topics, the one home of their rules (PROTOCOL.md section 3).
 * Every part of quotebus that reads a topic asks this module: the decoder
 * and the broker's ingest (is it a topic?), the websocket fan-out and the
 * snapshot service (is it a topic or a prefix pattern?), libquotebus and
 * quotebus-sub (which NNG subscription bytes does it take?), and the
 * people-facing "nearest topic" and "the broker has: ..." lines.
 *
 * The rule. A topic is "<kind>.<ex>.<sym>":
 *
 *   kind  one of book, trade, status, ticker
 *   ex    1..64 bytes  \  each byte 0x21..0x7E except '.' (the separator),
 *   sym   1..64 bytes  /   '"' and '\' (JSON-safe as is: no escaping needed)
 *   whole at most QB_TOPIC_MAX (128) bytes
 *
 * A prefix pattern is "<kind>." or "<kind>.<ex>." (same rule for ex). The
 * NNG subscription of an exact topic is its bytes and the NUL that ends
 * the topic in every frame (topic | 0x00 | msgpack ...), so
 * "book.binance.BTC-USDT" never matches "book.binance.BTC-USDTX"; a prefix
 * subscribes with its bytes alone.
 *
 * The nearest rule. For a subscription that matches no topic, what exists
 * instead. A candidate is an existing topic of the same kind as a
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
#ifndef QB_PROTO_TOPIC_H
#define QB_PROTO_TOPIC_H

#include "buf.h"
#include "msg.h"

#include <stddef.h>

#include <stdbool.h>

#define QB_TOPIC_PART_MAX 64 /* bytes of <ex> or <sym> */

/* The kinds of topic (the <kind> part). */
typedef enum qb_topic_kind {
    QB_TOPIC_NOKIND = 0, /* not a kind this protocol has */
    QB_TOPIC_BOOK,       /* "book": snapshots and deltas */
    QB_TOPIC_TRADE,      /* "trade" */
    QB_TOPIC_STATUS,     /* "status" */
    QB_TOPIC_TICKER,     /* "ticker" */
} qb_topic_kind;

/* What qb_topic_parse found. */
typedef enum qb_topic_form {
    QB_TOPIC_INVALID = 0, /* neither a topic nor a prefix pattern */
    QB_TOPIC_EXACT = 1,   /* "book.binance.BTC-USDT" */
    QB_TOPIC_PREFIX = 2,  /* "book." or "book.binance." */
} qb_topic_form;

/* A parsed topic or prefix pattern (views into the parsed text). */
typedef struct qb_topic {
    qb_topic_kind kind;
    qb_str ex;   /* n == 0 in "book." */
    qb_str sym;  /* n == 0 in a prefix */
    bool prefix; /* a prefix pattern (ends in '.') */
} qb_topic;

/* The byte rule as a table, indexed by byte: 1 for a byte that may appear
 * in <ex> or <sym> (0x21..0x7E except '.', '"' and '\'), 2 for '.', 0 for
 * any other. Internal: use the functions below. */
extern const unsigned char qb__topic_byte_class[256];

/* The byte rule: true when c may appear in <ex> or <sym>. */
static inline bool qb_topic_byte_ok(unsigned char c)
{
    return qb__topic_byte_class[c] == 1;
}

/* True when p[0..n) is non-empty and every byte passes qb_topic_byte_ok,
 * whatever its length (the encoder's check; qb_topic_part_ok adds the
 * length limit). Inline: it runs for every message encoded. */
static inline bool qb__topic_part_bytes_ok(const char *p, size_t n)
{
    if (p == NULL || n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (qb__topic_byte_class[(unsigned char)p[i]] != 1) {
            return false;
        }
    }
    return true;
}

/* True when p[0..n) is a valid <ex> or <sym>: 1..QB_TOPIC_PART_MAX bytes
 * that pass qb_topic_byte_ok. p may be NULL (false). */
bool qb_topic_part_ok(const char *p, size_t n);

/* True when t[0..n) may be the topic of a frame as far as its bytes go:
 * 1..QB_TOPIC_MAX bytes, each '.' or passing qb_topic_byte_ok (the
 * decoder's first check; qb_topic_parse is the whole rule). */
bool qb_topic_bytes_ok(const char *t, size_t n);

/* Parses t[0..n) (not NUL-terminated; a NUL byte inside is invalid) by the
 * rule at the top of this file. Returns QB_TOPIC_EXACT or QB_TOPIC_PREFIX
 * and writes *out (views into t; out may be NULL), or QB_TOPIC_INVALID and
 * leaves *out alone. */
qb_topic_form qb_topic_parse(const char *t, size_t n, qb_topic *out);

/* The kind named k ("book" -> QB_TOPIC_BOOK); QB_TOPIC_NOKIND for any
 * other text. */
qb_topic_kind qb_topic_kind_of(qb_str k);

/* The kind's name ("book"); "" for QB_TOPIC_NOKIND. Static storage. */
const char *qb_topic_kind_name(qb_topic_kind kind);

/* The length of the NNG subscription (NNG_OPT_SUB_SUBSCRIBE) for the
 * NUL-terminated subscription argument t, whose bytes are then t[0..len):
 * an exact topic's length + 1 (its NUL: never a longer symbol), the length
 * of a prefix pattern, or of a raw byte prefix that does not look like a
 * topic ("" is everything, "bo"). 0 when t cannot be one: longer than
 * QB_TOPIC_MAX, a byte that no topic has, or two dots without a trailing
 * '.' (shaped like an exact topic) that qb_topic_parse rejects. */
size_t qb_topic_sub_len(const char *t);

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
