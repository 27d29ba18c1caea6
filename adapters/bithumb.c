/*
 * bithumb.c: Bithumb's public websocket v1, as one qb_exchange_ops table
 * (qb_bithumb_ops).
 *
 * Wire facts (../shared/exchange-protocols.md section 3.2):
 *   - endpoint wss://ws-api.bithumb.com/websocket/v1; one request per
 *     connection, a JSON array: [{"ticket":T},{"type":"orderbook","codes":
 *     [..]},{"type":"trade","codes":[..]},{"type":"ticker","codes":[..]},
 *     {"format":"DEFAULT"}]; codes are QUOTE-BASE upper case ("KRW-BTC" for
 *     our BTC-KRW);
 *   - orderbook {"type":"orderbook","code","orderbook_units":[{"ask_price",
 *     "bid_price","ask_size","bid_size"}..],"timestamp",...}: every message
 *     is a full top-N book (QB_EV_BOOK_FULL). sync.c turns consecutive ones
 *     into exact deltas (added, changed, removed levels), so subscribers get
 *     the usual snapshot-then-delta stream and their book equals Bithumb's
 *     latest message at every step. A unit whose price or size is 0 carries
 *     no level on that side;
 *   - trade {"type":"trade","code","trade_price","trade_volume","ask_bid",
 *     "sequential_id","trade_timestamp",...}: ask_bid is the taker side
 *     (ASK: the taker sold, BID: the taker bought); sequential_id (string or
 *     number) identifies the trade but does not order trades;
 *   - ticker {"type":"ticker","code","trade_price","acc_trade_volume_24h",
 *     ...}: last and 24 h base volume. Bithumb's change fields
 *     (signed_change_price) are relative to the previous day's close (KST
 *     midnight), not a rolling 24 h window, so the normalized "chg" (24 h
 *     change) is left out rather than mislabeled; no best bid/ask in it;
 *   - numbers are JSON numbers; timestamps in ms (the orderbook "timestamp"
 *     has been seen as a 16-digit string, microseconds: values >= 10^15 are
 *     taken as microseconds);
 *   - no update ids: a book's fid/lid are its orderbook message's
 *     "timestamp" as sent (informational, like every lid; 0 when absent);
 *   - keepalive: the server closes after ~120 s without traffic; the
 *     framework sends the text PING every 30 s (.keepalive_ms), answered by
 *     {"status":"UP"} (QB_EV_HEARTBEAT);
 *   - errors: {"error":{"name","message"}} (Upbit-style, QB_EV_ERROR).
 * Pure functions (any thread with its own qb_parser), except the request
 * ticket counter in bithumb_subscribe_msg (the lws service thread only).
 */
#include "exchange.h"
#include "adapter.h"

#include "err.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- symbols and requests ---------------------------------------------- */

/* "BTC-KRW" <-> "KRW-BTC": the same two parts in the other order. */
static int bithumb_swap(const char *in, char *out, size_t cap)
{
    const char *dash = strchr(in, '-');
    size_t n = strlen(in);
    if (dash == NULL || dash == in || dash[1] == '\0' || strchr(dash + 1, '-') || n + 1 > cap) {
        return QB_EINVAL;
    }
    for (const char *c = in; *c; c++) {
        if (*c != '-' && !isalnum((unsigned char)*c)) {
            return QB_EINVAL;
        }
    }
    size_t a = (size_t)(dash - in), b = n - a - 1;
    for (size_t k = 0; k < b; k++) {
        out[k] = (char)toupper((unsigned char)dash[1 + k]);
    }
    out[b] = '-';
    for (size_t k = 0; k < a; k++) {
        out[b + 1 + k] = (char)toupper((unsigned char)in[k]);
    }
    out[n] = '\0';
    return QB_OK;
}

static int bithumb_to_native(const qb_exchange_cfg *xc, const char *norm, char *out, size_t cap,
                             char *err, size_t errcap)
{
    (void)xc;
    /* Both forms have a dash: "KRW-BTC" given for BTC-KRW would silently
     * subscribe to a market that does not exist. KRW is only ever a quote
     * on Bithumb, so a KRW base is the native form by mistake. */
    if (strncasecmp(norm, "KRW-", 4) == 0) {
        if (err && errcap) {
            snprintf(err, errcap, "'%s' looks like Bithumb's own code (QUOTE-BASE); give %s-KRW",
                     norm, norm + 4);
        }
        return QB_EINVAL;
    }
    int rc = bithumb_swap(norm, out, cap);
    if (rc != QB_OK && err && errcap) {
        snprintf(err, errcap, "'%s' is not a normalized symbol like BTC-KRW", norm);
    }
    return rc;
}

static int bithumb_from_native(const qb_exchange_cfg *xc, const char *native, char *out, size_t cap,
                               char *err, size_t errcap)
{
    (void)xc;
    int rc = bithumb_swap(native, out, cap);
    if (rc != QB_OK && err && errcap) {
        snprintf(err, errcap, "'%s' is not a Bithumb code like KRW-BTC", native);
    }
    return rc;
}

static int bithumb_ws_url(const qb_exchange_cfg *xc, const char *base, const char *const *natives,
                          size_t n, qb_buf *out)
{
    (void)xc;
    (void)natives;
    (void)n;
    return qb_buf_appendf(out, "%s", base);
}

static int bithumb_codes(qb_buf *out, const char *type, const char *const *natives, size_t n)
{
    int rc = qb_buf_appendf(out, ",{\"type\":\"%s\",\"codes\":[", type);
    for (size_t i = 0; i < n && rc == QB_OK; i++) {
        rc = qb_buf_appendf(out, "%s\"%s\"", i ? "," : "", natives[i]);
    }
    return rc ? rc : qb_buf_appendf(out, "]}");
}

static int bithumb_subscribe_msg(const qb_exchange_cfg *xc, const char *base,
                                 const char *const *natives, size_t n, qb_buf *out)
{
    (void)base;
    static unsigned bithumb_ticket_seq;
    /* The ticket only has to be unique per request. */
    int rc = qb_buf_appendf(out, "[{\"ticket\":\"quotebus-%ld-%u\"}", (long)getpid(),
                            ++bithumb_ticket_seq);
    rc = rc ? rc : bithumb_codes(out, "orderbook", natives, n);
    rc = rc ? rc : bithumb_codes(out, "trade", natives, n);
    if (xc == NULL || xc->tickers) {
        rc = rc ? rc : bithumb_codes(out, "ticker", natives, n);
    }
    rc = rc ? rc : qb_buf_appendf(out, ",{\"format\":\"DEFAULT\"}]");
    return rc ? rc : qb_buf_append(out, "", 1);
}

/* ---- frames ------------------------------------------------------------- */

static int bithumb_code(const qb_json *j, int obj, qb_event *ev)
{
    int i = qb_json_get(j, obj, "code");
    if (!qb_json_is_str(j, i)) {
        return QB_EPARSE;
    }
    size_t n;
    const char *s = qb_json_text(j, i, &n);
    if (n == 0 || n >= sizeof ev->native) {
        return QB_EPARSE;
    }
    for (size_t k = 0; k < n; k++) {
        if (!isalnum((unsigned char)s[k]) && s[k] != '-') {
            return QB_EPARSE;
        }
    }
    memcpy(ev->native, s, n);
    ev->native[n] = '\0';
    return QB_OK;
}

/* A time in ms (or, >= 10^15, in us), number or string -> ns. */
static int bithumb_time(const qb_json *j, int i, uint64_t *ns)
{
    uint64_t v;
    int rc = qb_json_u64(j, i, &v);
    if (rc != QB_OK) {
        return rc;
    }
    if (v >= 1000000000000000ULL) {
        if (v > UINT64_MAX / 1000u) {
            return QB_ERANGE;
        }
        *ns = v * 1000u;
        return QB_OK;
    }
    return qb__ms_to_ns(v, ns);
}

static int bithumb_num(const qb_json *j, int obj, const char *key, qb_dec *out)
{
    int i = qb_json_get(j, obj, key);
    if (i < 0 || j->tok[i].type != JSMN_PRIMITIVE) {
        return QB_EPARSE;
    }
    return qb__parse_dec(j, i, out);
}

/* A number token of a unit (a primitive: strings are refused). */
static int bithumb_num_tok(const qb_json *j, int i, qb_dec *out)
{
    if (i < 0 || j->tok[i].type != JSMN_PRIMITIVE) {
        return QB_EPARSE;
    }
    return qb__parse_dec(j, i, out);
}

/* One orderbook unit {"ask_price","bid_price","ask_size","bid_size"} in
 * one pass over its keys (measured: four qb_json_get lookups per unit were
 * a fifth of a Bithumb message). The first occurrence of a key counts and
 * the fields are checked in the order bid_price, bid_size, ask_price,
 * ask_size, as four lookups would. */
static int bithumb_unit(const qb_json *j, int obj, qb_level *b, qb_level *a)
{
    int bp = -1, bs = -1, ap = -1, as = -1;
    int i = obj + 1;
    for (int k = 0; k < j->tok[obj].size && i + 1 < j->ntok; k++) {
        const jsmntok_t *key = &j->tok[i];
        const char *t = j->js + key->start;
        int kl = key->end - key->start;
        int *slot = NULL;
        if (key->type == JSMN_STRING && (kl == 9 || kl == 8) && t[3] == '_') {
            bool bid = memcmp(t, "bid", 3) == 0;
            if (bid || memcmp(t, "ask", 3) == 0) {
                if (kl == 9 && memcmp(t + 4, "price", 5) == 0) {
                    slot = bid ? &bp : &ap;
                } else if (kl == 8 && memcmp(t + 4, "size", 4) == 0) {
                    slot = bid ? &bs : &as;
                }
            }
        }
        if (slot != NULL && *slot < 0) {
            *slot = i + 1;
        }
        i = qb_json_skip(j, i + 1);
    }
    int rc = bithumb_num_tok(j, bp, &b->price);
    rc = rc ? rc : bithumb_num_tok(j, bs, &b->size);
    rc = rc ? rc : bithumb_num_tok(j, ap, &a->price);
    rc = rc ? rc : bithumb_num_tok(j, as, &a->size);
    return rc;
}

static int bithumb_orderbook(qb_parser *p, const qb_json *j, qb_event *ev)
{
    int rc = bithumb_code(j, 0, ev);
    if (rc != QB_OK) {
        return rc;
    }
    int units = qb_json_get(j, 0, "orderbook_units");
    if (!qb_json_is_array(j, units)) {
        return QB_EPARSE;
    }
    size_t n = (size_t)j->tok[units].size;
    if (n > p->level_cap) {
        return QB_ETOOBIG;
    }
    size_t nb = 0, na = 0;
    int i = units + 1;
    for (size_t k = 0; k < n; k++) {
        if (!qb_json_is_object(j, i)) {
            return QB_EPARSE;
        }
        qb_level b, a;
        rc = bithumb_unit(j, i, &b, &a);
        if (rc != QB_OK) {
            return rc;
        }
        if (b.price.mant < 0 || b.size.mant < 0 || a.price.mant < 0 || a.size.mant < 0) {
            return QB_ERANGE;
        }
        /* A shorter side is padded with zero units. A size without a price
         * is not a level. */
        if (b.size.mant > 0) {
            if (b.price.mant == 0) {
                return QB_ERANGE;
            }
            p->bids[nb++] = b;
        }
        if (a.size.mant > 0) {
            if (a.price.mant == 0) {
                return QB_ERANGE;
            }
            p->asks[na++] = a;
        }
        i = qb_json_skip(j, i);
    }
    int ts = qb_json_get(j, 0, "timestamp");
    if (ts >= 0) {
        if ((rc = bithumb_time(j, ts, &ev->exch_ts)) != QB_OK) {
            return rc;
        }
        qb_json_u64(j, ts, &ev->last_id); /* cannot fail after bithumb_time */
        ev->first_id = ev->last_id;
    }
    ev->bids = p->bids;
    ev->n_bids = nb;
    ev->asks = p->asks;
    ev->n_asks = na;
    ev->kind = QB_EV_BOOK_FULL;
    return QB_OK;
}

static int bithumb_trade(qb_parser *p, const qb_json *j, qb_event *ev)
{
    qb_trade *t = &p->trades[0];
    memset(t, 0, sizeof *t);
    int rc = bithumb_code(j, 0, ev);
    rc = rc ? rc : bithumb_num(j, 0, "trade_price", &t->price);
    rc = rc ? rc : bithumb_num(j, 0, "trade_volume", &t->qty);
    if (rc != QB_OK) {
        return rc;
    }
    int ab = qb_json_get(j, 0, "ask_bid");
    if (qb_json_str_eq(j, ab, "ASK")) {
        t->side = QB_SIDE_SELL; /* the taker sold into the bid */
    } else if (qb_json_str_eq(j, ab, "BID")) {
        t->side = QB_SIDE_BUY;
    } else {
        return QB_EPARSE;
    }
    int sid = qb_json_get(j, 0, "sequential_id");
    if (sid < 0 || qb_json_u64(j, sid, &t->id) != QB_OK) {
        return QB_EPARSE;
    }
    int ts = qb_json_get(j, 0, "trade_timestamp");
    if (ts < 0) {
        ts = qb_json_get(j, 0, "timestamp");
    }
    if (ts < 0 || (rc = bithumb_time(j, ts, &t->ts)) != QB_OK) {
        return ts < 0 ? QB_EPARSE : rc;
    }
    if (t->price.mant <= 0 || t->qty.mant < 0) {
        return QB_ERANGE;
    }
    ev->trades = p->trades;
    ev->n_trades = 1;
    ev->trade_id = t->id;
    ev->price = t->price;
    ev->qty = t->qty;
    ev->side = t->side;
    ev->exch_ts = t->ts;
    ev->kind = QB_EV_TRADE;
    return QB_OK;
}

static int bithumb_ticker(const qb_json *j, qb_event *ev)
{
    qb_ticker *t = &ev->ticker;
    int rc = bithumb_code(j, 0, ev);
    rc = rc ? rc : bithumb_num(j, 0, "trade_price", &t->last);
    if (rc != QB_OK) {
        return rc;
    }
    if (qb_json_get(j, 0, "acc_trade_volume_24h") >= 0) {
        if ((rc = bithumb_num(j, 0, "acc_trade_volume_24h", &t->volume_24h)) != QB_OK) {
            return rc;
        }
        t->has_volume = true;
    }
    if (t->last.mant < 0 || (t->has_volume && t->volume_24h.mant < 0)) {
        return QB_ERANGE;
    }
    int ts = qb_json_get(j, 0, "timestamp");
    if (ts >= 0 && (rc = bithumb_time(j, ts, &ev->exch_ts)) != QB_OK) {
        return rc;
    }
    ev->kind = QB_EV_TICKER;
    return QB_OK;
}

static int bithumb_parse(void *state, qb_parser *p, const char *js, size_t len, qb_event *ev)
{
    (void)state; /* no private state: .state_size 0 */
    memset(ev, 0, sizeof *ev);
    qb_json j;
    int rc = qb_json_parse(&j, js, len, p->tok, p->tok_cap);
    if (rc != QB_OK) {
        return rc;
    }
    if (!qb_json_is_object(&j, 0)) {
        return QB_EPARSE;
    }
    int type = qb_json_get(&j, 0, "type");
    if (type >= 0) {
        if (qb_json_str_eq(&j, type, "orderbook")) {
            return bithumb_orderbook(p, &j, ev);
        }
        if (qb_json_str_eq(&j, type, "trade")) {
            return bithumb_trade(p, &j, ev);
        }
        if (qb_json_str_eq(&j, type, "ticker")) {
            return bithumb_ticker(&j, ev);
        }
        ev->kind = QB_EV_UNKNOWN;
        return QB_OK;
    }
    int status = qb_json_get(&j, 0, "status");
    if (status >= 0) {
        if (qb_json_str_eq(&j, status, "UP")) {
            ev->kind = QB_EV_HEARTBEAT;
            return QB_OK;
        }
        char st[64];
        qb__info_text(&j, status, st, sizeof st);
        snprintf(ev->info, sizeof ev->info, "status=%s", st);
        ev->kind = QB_EV_CONTROL;
        return QB_OK;
    }
    int error = qb_json_get(&j, 0, "error");
    if (error >= 0) {
        char name[64], msg[100];
        name[0] = msg[0] = '\0';
        if (qb_json_is_object(&j, error)) {
            qb__info_text(&j, qb_json_get(&j, error, "name"), name, sizeof name);
            qb__info_text(&j, qb_json_get(&j, error, "message"), msg, sizeof msg);
        } else {
            qb__info_text(&j, error, name, sizeof name);
        }
        snprintf(ev->info, sizeof ev->info, "error=%s message=%s", name, msg);
        ev->kind = QB_EV_ERROR;
        return QB_OK;
    }
    ev->kind = QB_EV_UNKNOWN;
    return QB_OK;
}

/* --keepalive-ms: written by qb_opts_parse (main.c) at start-up. */
static int64_t bithumb_keepalive_ms = 0;

static const qb_opt bithumb_opts[] = {
    {"keepalive-ms", QB_OPT_INT, &bithumb_keepalive_ms, "MS",
     "bithumb: send the text PING this often (0: every 30 s; the server closes idle "
     "connections after ~120 s)"},
    {0},
};

/* cfg.keepalive_ms is the framework's: exchanges without keepalive text
 * ignore it (ws_conn.c). */
static int bithumb_opts_apply(qb_adapter_cfg *cfg, char *err, size_t errcap)
{
    if (bithumb_keepalive_ms < 0) {
        snprintf(err, errcap, "an option is out of range, see --help");
        return QB_EINVAL;
    }
    cfg->keepalive_ms = (uint64_t)bithumb_keepalive_ms;
    return QB_OK;
}

const qb_exchange_ops qb_bithumb_ops = {
    .name = "bithumb",
    .help = "websocket v1: full top-N orderbook messages turned into exact deltas,\n"
            "           trades, tickers; text PING keepalive",
    .default_ws_url = "wss://ws-api.bithumb.com/websocket/v1",
    .default_rest_url = NULL,
    /* One request carries every code of a connection; Bithumb documents no
     * per-connection limit (only 10 connection requests per second per IP):
     * keep connections few. */
    .max_streams_per_conn = 600,
    .streams_per_symbol = 2,
    .ticker_streams = 1,
    .max_depth_limit = 30,
    .full_book = true,
    .suspect_on_lost_frame = false, /* every book message is complete */
    .ws_request_interval_ms = 0,
    /* 10 connection requests per second per IP (429 beyond): 30/min. No
     * snapshot requests (every book message is a full book). */
    .connects_per_min = 30,
    .snapshots_per_min = 0,
    .keepalive_ms = 30000,
    .keepalive_text = "PING",
    .to_native = bithumb_to_native,
    .from_native = bithumb_from_native,
    .ws_url = bithumb_ws_url,
    .subscribe_msg = bithumb_subscribe_msg,
    .decode = NULL,
    .parse = bithumb_parse,
    .snapshot_url = NULL,
    .snapshot_ws_request = NULL,
    .parse_snapshot = NULL,
    .seq = &qb_seq_none,
    .opts = bithumb_opts,
    .opts_apply = bithumb_opts_apply,
};
