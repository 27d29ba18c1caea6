/*
 * msg_json.c: qb_msg_to_json(), the JSON form of a message (PROTOCOL.md,
 * "JSON form"): what quotebus-sub prints, one object per line, keys in the
 * order of the msgpack map, prices and sizes as exact decimal strings.
 *
 *   {"topic":"book.binance.BTC-USDT","v":1,"type":"delta",...,
 *    "bids":[["100.50","1.25"]],"asks":[["100.60","0.00000000"]]}
 *
 * Strings are escaped by qb_json_append_str (common/json.h): bytes that
 * are not valid UTF-8 become U+FFFD, so the output is always valid JSON.
 * Pure; any thread.
 */
#include "msg.h"

#include "err.h"
#include "json.h"

#include <inttypes.h>
#include <string.h>

/* Plain appends, not printf: a deep book has thousands of decimals. */
static int json_key(qb_buf *out, const char *key)
{
    size_t n = strlen(key);
    int rc = qb_buf_reserve(out, n + 4);
    if (rc != QB_OK) {
        return rc;
    }
    uint8_t *p = out->data + out->len;
    p[0] = ',';
    p[1] = '"';
    memcpy(p + 2, key, n);
    p[n + 2] = '"';
    p[n + 3] = ':';
    out->len += n + 4;
    return QB_OK;
}

static int json_dec(qb_buf *out, qb_dec d)
{
    int rc = qb_buf_reserve(out, QB_DEC_STR_MAX + 2);
    if (rc != QB_OK) {
        return rc;
    }
    char *p = (char *)out->data + out->len;
    int n = qb_dec_format(d, p + 1, QB_DEC_STR_MAX);
    if (n < 0) {
        return QB_EINVAL;
    }
    p[0] = '"';
    p[n + 1] = '"';
    out->len += (size_t)n + 2;
    return QB_OK;
}

static int json_levels(qb_buf *out, const qb_level *lv, size_t n)
{
    int rc = qb_buf_append(out, "[", 1);
    for (size_t i = 0; i < n && rc == QB_OK; i++) {
        rc = qb_buf_append(out, i ? ",[" : "[", i ? 2 : 1);
        rc = rc ? rc : json_dec(out, lv[i].price);
        rc = rc ? rc : qb_buf_append(out, ",", 1);
        rc = rc ? rc : json_dec(out, lv[i].size);
        rc = rc ? rc : qb_buf_append(out, "]", 1);
    }
    return rc ? rc : qb_buf_append(out, "]", 1);
}

static int json_body(const qb_msg *m, qb_buf *out)
{
    const char *kind = qb_msg_topic_kind(m->type);
    char topic[QB_TOPIC_MAX + 1];
    int rc = QB_OK;
    rc = qb_buf_append(out, "{\"topic\":", 9);
    if (kind && qb_topic_format(topic, sizeof topic, kind, m->exchange, m->symbol) >= 0) {
        rc = rc ? rc : qb_json_append_str(out, topic, strlen(topic));
    } else {
        return QB_EINVAL;
    }
    rc = rc ? rc
            : qb_buf_appendf(out, ",\"v\":%" PRIu32 ",\"type\":\"%s\"",
                             m->version ? m->version : QB_PROTO_VERSION, qb_msg_type_name(m->type));
    rc = rc ? rc : json_key(out, "ex");
    rc = rc ? rc : qb_json_append_str(out, m->exchange.p, m->exchange.n);
    rc = rc ? rc : json_key(out, "sym");
    rc = rc ? rc : qb_json_append_str(out, m->symbol.p, m->symbol.n);
    rc = rc ? rc : json_key(out, "nsym");
    rc = rc ? rc : qb_json_append_str(out, m->native.p, m->native.n);
    rc = rc ? rc
            : qb_buf_appendf(out, ",\"seq\":%" PRIu64 ",\"ets\":%" PRIu64 ",\"rts\":%" PRIu64,
                             m->seq, m->exch_ts, m->recv_ts);
    switch (m->type) {
    case QB_MSG_SNAPSHOT:
    case QB_MSG_DELTA:
        rc = rc ? rc
                : qb_buf_appendf(out, ",\"fid\":%" PRIu64 ",\"lid\":%" PRIu64, m->first_id,
                                 m->last_id);
        rc = rc ? rc : json_key(out, "bids");
        rc = rc ? rc : json_levels(out, m->bids, m->n_bids);
        rc = rc ? rc : json_key(out, "asks");
        rc = rc ? rc : json_levels(out, m->asks, m->n_asks);
        if (m->type == QB_MSG_SNAPSHOT) {
            rc = rc ? rc : qb_buf_appendf(out, ",\"refresh\":%s", m->refresh ? "true" : "false");
        }
        break;
    case QB_MSG_TRADE:
        rc = rc ? rc : qb_buf_appendf(out, ",\"tid\":%" PRIu64, m->trade_id);
        rc = rc ? rc : json_key(out, "px");
        rc = rc ? rc : json_dec(out, m->price);
        rc = rc ? rc : json_key(out, "qty");
        rc = rc ? rc : json_dec(out, m->qty);
        rc = rc ? rc : qb_buf_appendf(out, ",\"side\":\"%s\"", qb_side_name(m->side));
        break;
    case QB_MSG_STATUS:
        rc = rc ? rc : qb_buf_appendf(out, ",\"state\":\"%s\"", qb_feed_state_name(m->state));
        rc = rc ? rc : json_key(out, "reason");
        rc = rc ? rc : qb_json_append_str(out, m->reason.p ? m->reason.p : "", m->reason.n);
        break;
    case QB_MSG_TICKER: {
        const qb_ticker *t = &m->ticker;
        rc = rc ? rc : json_key(out, "last");
        rc = rc ? rc : json_dec(out, t->last);
        if (t->has_bid) {
            rc = rc ? rc : json_key(out, "bid");
            rc = rc ? rc : json_dec(out, t->bid);
            rc = rc ? rc : json_key(out, "bidq");
            rc = rc ? rc : json_dec(out, t->bid_qty);
        }
        if (t->has_ask) {
            rc = rc ? rc : json_key(out, "ask");
            rc = rc ? rc : json_dec(out, t->ask);
            rc = rc ? rc : json_key(out, "askq");
            rc = rc ? rc : json_dec(out, t->ask_qty);
        }
        if (t->has_volume) {
            rc = rc ? rc : json_key(out, "vol");
            rc = rc ? rc : json_dec(out, t->volume_24h);
        }
        if (t->has_change) {
            rc = rc ? rc : json_key(out, "chg");
            rc = rc ? rc : json_dec(out, t->change_24h);
        }
        break;
    }
    default:
        return QB_EINVAL;
    }
    return rc ? rc : qb_buf_append(out, "}", 1);
}

int qb_msg_to_json(const qb_msg *m, qb_buf *out)
{
    if (m == NULL || out == NULL) {
        return QB_EINVAL;
    }
    size_t start = out->len;
    int rc = json_body(m, out);
    if (rc != QB_OK) {
        out->len = start; /* nothing half-written */
    }
    return rc;
}
