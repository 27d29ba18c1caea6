/*
 * htx.c: HTX (Huobi) spot, as one qb_exchange_ops table (qb_htx_ops).
 *
 * Wire facts (../shared/exchange-protocols.md section 2):
 *   - endpoint wss://api.huobi.pro/feed (the MBP topic and its req exist
 *     only on /feed); every server frame is a gzip-compressed binary frame
 *     (htx_decode: inflate.c, capped at --max-frame); client frames are
 *     plain JSON text;
 *   - heartbeat {"ping":N} -> we answer {"pong":N} with the same integer
 *     (two unanswered pings and the server disconnects);
 *   - one {"sub":topic,"id":..} per topic: market.$sym.mbp.$levels,
 *     market.$sym.trade.detail and (tickers on) market.$sym.detail; answers
 *     {"id","status":"ok","subbed"} or {"status":"error","err-code","err-msg"};
 *   - book: incremental {"ch":"market.$sym.mbp.150","ts","tick":{"seqNum",
 *     "prevSeqNum","bids":[[p,s]..],"asks":[..]}} (a side may be empty or, on
 *     the 5/20 feeds, absent; both empty is a normal "nothing changed");
 *     snapshot by {"req":"market.$sym.mbp.150","id"} on the SAME connection,
 *     answered {"id","rep","status":"ok","data":{"seqNum","bids","asks"}};
 *     req is limited to one per 100 ms per connection (the framework paces
 *     it: .ws_request_interval_ms);
 *   - sequence rule (qb_seq_htx): the first update applied on a snapshot
 *     has prevSeqNum == snapshot seqNum, every later one prevSeqNum ==
 *     previous seqNum (seqNum is NOT consecutive); updates with seqNum <=
 *     the book's are stale; anything else resyncs that instrument only;
 *   - trades {"ch":"market.$sym.trade.detail","tick":{"data":[{"tradeId",
 *     "price","amount","direction","ts","id"}..]}}: several per message,
 *     keyed by tradeId; the legacy "id" can have 27 digits and is never
 *     parsed; direction is the taker side;
 *   - ticker market.$sym.detail {"tick":{"open","close","amount",...}}:
 *     rolling 24 h; last = close, volume = amount (base), change = close -
 *     open; market.$sym.ticker (same plus bid/bidSize/ask/askSize) is
 *     understood too;
 *   - prices and sizes are JSON numbers, sometimes in exponent form
 *     (1.58E-4): qb_dec_parse converts them exactly, no floating point.
 * Symbols: native "btcusdt" (lowercase base + quote). Normalized -> native
 * is exact (the user gave the split); native -> normalized (symbols given in
 * native form) uses --symbol-map first, then the known quote list, and
 * refuses unknown or ambiguous suffixes instead of guessing.
 *
 * Pure functions; any thread with its own qb_parser.
 */
#include "exchange.h"
#include "adapter.h"

#include "err.h"
#include "inflate.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTX_REQ_ID_PREFIX "qb-req-"

/* ---- symbols ------------------------------------------------------------ */

/* Quote currencies HTX spot lists. "usd" sits beside "husd" and "tusd" on
 * purpose: a native ending in "husd" is then ambiguous (BTC-HUSD or
 * BTCH-USD?) and must be named in --symbol-map. */
static const char *const htx_quotes[] = {
    "usdt", "usdc", "usdd", "husd", "tusd", "usd", "btc", "eth", "ht",
    "trx",  "eur",  "gbp",  "brl",  "try",  "uah", "rub", "dai",
};

/* Looks native up in the symbol map ("native=BASE-QUOTE"); the normalized
 * part or NULL. */
static const char *htx_map_find(const qb_exchange_cfg *xc, const char *native, size_t nl)
{
    for (size_t i = 0; xc && i < xc->nsymbol_map; i++) {
        const char *e = xc->symbol_map[i];
        const char *eq = strchr(e, '=');
        if (eq && (size_t)(eq - e) == nl && strncasecmp(e, native, nl) == 0) {
            return eq + 1;
        }
    }
    return NULL;
}

static bool htx_norm_ok(const char *norm)
{
    const char *dash = strchr(norm, '-');
    if (dash == NULL || dash == norm || dash[1] == '\0' || strchr(dash + 1, '-')) {
        return false;
    }
    for (const char *c = norm; *c; c++) {
        if (*c != '-' && !isalnum((unsigned char)*c)) {
            return false;
        }
    }
    return true;
}

static int htx_upper_copy(const char *s, char *out, size_t cap)
{
    size_t n = strlen(s);
    if (n + 1 > cap) {
        return QB_EINVAL;
    }
    for (size_t i = 0; i <= n; i++) {
        out[i] = (char)toupper((unsigned char)s[i]);
    }
    return QB_OK;
}

static int htx_from_native(const qb_exchange_cfg *xc, const char *native, char *out, size_t cap,
                           char *err, size_t errcap)
{
    size_t nl = strlen(native);
    char tmp[QB_NATIVE_MAX];
    const char *mapped = htx_map_find(xc, native, nl);
    if (mapped) {
        if (!htx_norm_ok(mapped) || htx_upper_copy(mapped, out, cap) != QB_OK) {
            snprintf(err, errcap, "--symbol-map entry for '%s' is not BASE-QUOTE", native);
            return QB_EINVAL;
        }
        return QB_OK;
    }
    if (nl == 0 || nl >= sizeof tmp) {
        snprintf(err, errcap, "'%s' is not an HTX symbol", native);
        return QB_EINVAL;
    }
    for (size_t i = 0; i < nl; i++) {
        if (!isalnum((unsigned char)native[i])) {
            snprintf(err, errcap, "'%s' is not an HTX symbol", native);
            return QB_EINVAL;
        }
        tmp[i] = (char)tolower((unsigned char)native[i]);
    }
    tmp[nl] = '\0';
    const char *found = NULL, *other = NULL;
    for (size_t q = 0; q < sizeof htx_quotes / sizeof htx_quotes[0]; q++) {
        size_t ql = strlen(htx_quotes[q]);
        if (ql < nl && memcmp(tmp + nl - ql, htx_quotes[q], ql) == 0) {
            if (found) {
                other = htx_quotes[q];
            } else {
                found = htx_quotes[q];
            }
        }
    }
    if (found == NULL) {
        snprintf(err, errcap,
                 "'%s': unknown quote currency; name it with --symbol-map %s=BASE-QUOTE or give "
                 "the symbol as BASE-QUOTE",
                 native, tmp);
        return QB_EINVAL;
    }
    if (other) {
        snprintf(err, errcap,
                 "'%s' is ambiguous (quote '%s' or '%s'); name it with --symbol-map %s=BASE-QUOTE "
                 "or give the symbol as BASE-QUOTE",
                 native, found, other, tmp);
        return QB_EINVAL;
    }
    size_t bl = nl - strlen(found);
    if (nl + 2 > cap) {
        snprintf(err, errcap, "'%s' is too long", native);
        return QB_EINVAL;
    }
    for (size_t i = 0; i < bl; i++) {
        out[i] = (char)toupper((unsigned char)tmp[i]);
    }
    out[bl] = '-';
    htx_upper_copy(found, out + bl + 1, cap - bl - 1);
    return QB_OK;
}

static int htx_to_native(const qb_exchange_cfg *xc, const char *norm, char *out, size_t cap,
                         char *err, size_t errcap)
{
    if (!htx_norm_ok(norm)) {
        if (err && errcap) {
            snprintf(err, errcap, "'%s' is not a normalized symbol like BTC-USDT", norm);
        }
        return QB_EINVAL;
    }
    /* A --symbol-map entry naming this pair wins (natives that are not
     * lower(base)+lower(quote)). */
    for (size_t i = 0; xc && i < xc->nsymbol_map; i++) {
        const char *e = xc->symbol_map[i];
        const char *eq = strchr(e, '=');
        if (eq && strcasecmp(eq + 1, norm) == 0) {
            size_t nl = (size_t)(eq - e);
            if (nl == 0 || nl + 1 > cap) {
                break;
            }
            for (size_t k = 0; k < nl; k++) {
                out[k] = (char)tolower((unsigned char)e[k]);
            }
            out[nl] = '\0';
            return QB_OK;
        }
    }
    size_t k = 0;
    for (const char *c = norm; *c; c++) {
        if (*c == '-') {
            continue;
        }
        if (k + 1 >= cap) {
            if (err && errcap) {
                snprintf(err, errcap, "'%s' is too long", norm);
            }
            return QB_EINVAL;
        }
        out[k++] = (char)tolower((unsigned char)*c);
    }
    out[k] = '\0';
    return QB_OK;
}

/* ---- URLs and requests -------------------------------------------------- */

static unsigned htx_levels(const qb_exchange_cfg *xc)
{
    return xc && xc->levels ? xc->levels : 150;
}

static int htx_ws_url(const qb_exchange_cfg *xc, const char *base, const char *const *natives,
                      size_t n, qb_buf *out)
{
    (void)xc;
    (void)natives;
    (void)n;
    return qb_buf_appendf(out, "%s", base);
}

static int htx_subscribe_msg(const qb_exchange_cfg *xc, const char *base,
                             const char *const *natives, size_t n, qb_buf *out)
{
    (void)base;
    int rc = QB_OK;
    for (size_t i = 0; i < n && rc == QB_OK; i++) {
        rc = qb_buf_appendf(out, "{\"sub\":\"market.%s.mbp.%u\",\"id\":\"qb-mbp-%s\"}%c",
                            natives[i], htx_levels(xc), natives[i], 0);
        rc = rc ? rc
                : qb_buf_appendf(out,
                                 "{\"sub\":\"market.%s.trade.detail\",\"id\":\"qb-trade-%s\"}%c",
                                 natives[i], natives[i], 0);
        if (xc == NULL || xc->tickers) {
            rc =
                rc ? rc
                   : qb_buf_appendf(out, "{\"sub\":\"market.%s.detail\",\"id\":\"qb-detail-%s\"}%c",
                                    natives[i], natives[i], 0);
        }
    }
    return rc;
}

static int htx_snapshot_ws_request(const qb_exchange_cfg *xc, const char *native, qb_buf *out)
{
    return qb_buf_appendf(out, "{\"req\":\"market.%s.mbp.%u\",\"id\":\"" HTX_REQ_ID_PREFIX "%s\"}",
                          native, htx_levels(xc), native);
}

/* ---- private state ------------------------------------------------------ */

/* qb_htx_ops.state_size: the zlib stream, reset (not re-created) per
 * frame. */
typedef struct htx_state {
    qb_inflate *inflate;
} htx_state;

static int htx_init(void *st, size_t max_bytes)
{
    (void)max_bytes; /* the cap is the parser's, applied per frame */
    htx_state *s = st;
    return qb_inflate_new(&s->inflate);
}

static void htx_fini(void *st)
{
    htx_state *s = st;
    qb_inflate_free(s->inflate);
    s->inflate = NULL;
}

/* ---- frames ------------------------------------------------------------- */

static int htx_decode(void *st, qb_parser *p, const uint8_t *in, size_t len, const char **out,
                      size_t *out_len)
{
    htx_state *s = st;
    int rc = qb_inflate_gzip(s->inflate, in, len, p->max_bytes, &p->scratch);
    if (rc != QB_OK) {
        return rc;
    }
    *out = (const char *)p->scratch.data;
    *out_len = p->scratch.len;
    return QB_OK;
}

/* "market.<native>.<rest>": copies native into ev, points *rest at the rest. */
static int htx_topic(const qb_json *j, int i, qb_event *ev, const char **rest, size_t *rest_len)
{
    if (!qb_json_is_str(j, i)) {
        return QB_EPARSE;
    }
    size_t n;
    const char *s = qb_json_text(j, i, &n);
    if (n < 8 || memcmp(s, "market.", 7) != 0) {
        return QB_EPARSE;
    }
    const char *sym = s + 7;
    const char *dot = memchr(sym, '.', n - 7);
    if (dot == NULL || dot == sym || (size_t)(dot - sym) >= sizeof ev->native) {
        return QB_EPARSE;
    }
    size_t sl = (size_t)(dot - sym);
    for (size_t k = 0; k < sl; k++) {
        if (!isalnum((unsigned char)sym[k])) {
            return QB_EPARSE;
        }
    }
    memcpy(ev->native, sym, sl);
    ev->native[sl] = '\0';
    *rest = dot + 1;
    *rest_len = n - 7 - sl - 1;
    return QB_OK;
}

static bool htx_rest_is(const char *rest, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(rest, lit, n) == 0;
}

/* "mbp.<digits>" */
static bool htx_rest_is_mbp(const char *rest, size_t n)
{
    if (n < 5 || memcmp(rest, "mbp.", 4) != 0) {
        return false;
    }
    for (size_t k = 4; k < n; k++) {
        if (!isdigit((unsigned char)rest[k])) {
            return false;
        }
    }
    return true;
}

static int htx_u64_key(const qb_json *j, int obj, const char *key, uint64_t *out)
{
    int i = qb_json_get(j, obj, key);
    if (i < 0 || j->tok[i].type != JSMN_PRIMITIVE) {
        return QB_EPARSE;
    }
    return qb_json_u64(j, i, out);
}

/* Optional level array: absent -> 0 levels (5/20-level feeds omit a side). */
static int htx_levels_opt(const qb_json *j, int obj, const char *key, qb_level *out, size_t cap,
                          size_t *n)
{
    int i = qb_json_get(j, obj, key);
    if (i < 0) {
        *n = 0;
        return QB_OK;
    }
    return qb__parse_levels(j, i, out, cap, n);
}

static void htx_ts(const qb_json *j, int obj, qb_event *ev)
{
    uint64_t ms;
    if (htx_u64_key(j, obj, "ts", &ms) == QB_OK) {
        qb__ms_to_ns(ms, &ev->exch_ts);
    }
}

static int htx_depth(qb_parser *p, const qb_json *j, int tick, qb_event *ev)
{
    if (!qb_json_is_object(j, tick)) {
        return QB_EPARSE;
    }
    int rc = htx_u64_key(j, tick, "seqNum", &ev->last_id);
    rc = rc ? rc : htx_u64_key(j, tick, "prevSeqNum", &ev->prev_id);
    rc = rc ? rc : htx_levels_opt(j, tick, "bids", p->bids, p->level_cap, &ev->n_bids);
    rc = rc ? rc : htx_levels_opt(j, tick, "asks", p->asks, p->level_cap, &ev->n_asks);
    if (rc != QB_OK) {
        return rc;
    }
    if (ev->prev_id >= ev->last_id) {
        return QB_ERANGE;
    }
    ev->has_prev = true;
    ev->first_id = ev->last_id;
    ev->bids = p->bids;
    ev->asks = p->asks;
    ev->kind = QB_EV_DEPTH;
    return QB_OK;
}

static int htx_snapshot_data(qb_parser *p, const qb_json *j, int data, qb_event *ev)
{
    if (!qb_json_is_object(j, data)) {
        return QB_EPARSE;
    }
    int rc = htx_u64_key(j, data, "seqNum", &ev->last_id);
    rc = rc ? rc : htx_levels_opt(j, data, "bids", p->bids, p->level_cap, &ev->n_bids);
    rc = rc ? rc : htx_levels_opt(j, data, "asks", p->asks, p->level_cap, &ev->n_asks);
    if (rc != QB_OK) {
        return rc;
    }
    ev->first_id = ev->last_id;
    ev->bids = p->bids;
    ev->asks = p->asks;
    ev->kind = QB_EV_SNAPSHOT;
    return QB_OK;
}

static int htx_trades(qb_parser *p, const qb_json *j, int tick, qb_event *ev)
{
    int data = qb_json_get(j, tick, "data");
    if (!qb_json_is_object(j, tick) || !qb_json_is_array(j, data)) {
        return QB_EPARSE;
    }
    size_t n = (size_t)j->tok[data].size;
    if (n > p->trade_cap) {
        return QB_ETOOBIG;
    }
    if (n == 0) {
        return QB_EPARSE;
    }
    int i = data + 1;
    for (size_t k = 0; k < n; k++) {
        if (!qb_json_is_object(j, i)) {
            return QB_EPARSE;
        }
        qb_trade *t = &p->trades[k];
        memset(t, 0, sizeof *t);
        uint64_t ms = 0;
        /* tradeId: number or string, never the 27-digit legacy "id". */
        int ti = qb_json_get(j, i, "tradeId");
        int rc = ti < 0 ? QB_EPARSE : qb_json_u64(j, ti, &t->id);
        rc = rc ? rc : qb__parse_dec(j, qb_json_get(j, i, "price"), &t->price);
        rc = rc ? rc : qb__parse_dec(j, qb_json_get(j, i, "amount"), &t->qty);
        rc = rc ? rc : htx_u64_key(j, i, "ts", &ms);
        rc = rc ? rc : qb__ms_to_ns(ms, &t->ts);
        if (rc != QB_OK) {
            return rc;
        }
        int d = qb_json_get(j, i, "direction");
        if (qb_json_str_eq(j, d, "buy")) {
            t->side = QB_SIDE_BUY;
        } else if (qb_json_str_eq(j, d, "sell")) {
            t->side = QB_SIDE_SELL;
        } else {
            return QB_EPARSE;
        }
        if (t->price.mant <= 0 || t->qty.mant < 0) {
            return QB_ERANGE;
        }
        i = qb_json_skip(j, i);
    }
    ev->trades = p->trades;
    ev->n_trades = n;
    ev->trade_id = p->trades[0].id;
    ev->price = p->trades[0].price;
    ev->qty = p->trades[0].qty;
    ev->side = p->trades[0].side;
    ev->exch_ts = p->trades[0].ts;
    ev->kind = QB_EV_TRADE;
    return QB_OK;
}

/* A decimal field: absent -> *have false. */
static int htx_dec_opt(const qb_json *j, int obj, const char *key, qb_dec *out, bool *have)
{
    int i = qb_json_get(j, obj, key);
    *have = false;
    if (i < 0 || (j->tok[i].type == JSMN_PRIMITIVE && j->js[j->tok[i].start] == 'n')) {
        return QB_OK; /* absent or null */
    }
    int rc = qb__parse_dec(j, i, out);
    *have = rc == QB_OK;
    return rc;
}

/* market.$sym.detail (24 h statistics) or market.$sym.ticker. */
static int htx_ticker(const qb_json *j, int tick, qb_event *ev)
{
    if (!qb_json_is_object(j, tick)) {
        return QB_EPARSE;
    }
    qb_ticker *t = &ev->ticker;
    qb_dec open, last_px;
    bool h_close, h_open, h_last, h_b, h_bq, h_a, h_aq;
    int rc = htx_dec_opt(j, tick, "close", &t->last, &h_close);
    rc = rc ? rc : htx_dec_opt(j, tick, "lastPrice", &last_px, &h_last);
    rc = rc ? rc : htx_dec_opt(j, tick, "open", &open, &h_open);
    rc = rc ? rc : htx_dec_opt(j, tick, "amount", &t->volume_24h, &t->has_volume);
    rc = rc ? rc : htx_dec_opt(j, tick, "bid", &t->bid, &h_b);
    rc = rc ? rc : htx_dec_opt(j, tick, "bidSize", &t->bid_qty, &h_bq);
    rc = rc ? rc : htx_dec_opt(j, tick, "ask", &t->ask, &h_a);
    rc = rc ? rc : htx_dec_opt(j, tick, "askSize", &t->ask_qty, &h_aq);
    if (rc != QB_OK) {
        return rc;
    }
    if (h_last) {
        t->last = last_px;
    } else if (!h_close) {
        return QB_EPARSE;
    }
    if (t->last.mant < 0 || (t->has_volume && t->volume_24h.mant < 0)) {
        return QB_ERANGE;
    }
    if (h_close && h_open && qb__dec_sub(t->last, open, &t->change_24h) == QB_OK) {
        /* close - open of the rolling 24 h window (lastPrice, when the
         * .ticker topic sends it, is the same trade as close). */
        t->has_change = true;
    }
    t->has_bid = h_b && h_bq && t->bid.mant > 0 && t->bid_qty.mant > 0;
    t->has_ask = h_a && h_aq && t->ask.mant > 0 && t->ask_qty.mant > 0;
    ev->kind = QB_EV_TICKER;
    return QB_OK;
}

static int htx_error(const qb_json *j, qb_event *ev)
{
    char code[40], msg[80], id[40];
    qb__info_text(j, qb_json_get(j, 0, "err-code"), code, sizeof code);
    qb__info_text(j, qb_json_get(j, 0, "err-msg"), msg, sizeof msg);
    int idt = qb_json_get(j, 0, "id");
    qb__info_text(j, idt, id, sizeof id);
    snprintf(ev->info, sizeof ev->info, "id=%s err-code=%s err-msg=%s", id, code, msg);
    /* An error answering our req names its instrument: the framework
     * retries that fetch at once with backoff instead of waiting for the
     * watchdog. */
    size_t pl = strlen(HTX_REQ_ID_PREFIX), il = strlen(id);
    if (qb_json_is_str(j, idt) && il > pl && il - pl < sizeof ev->native &&
        memcmp(id, HTX_REQ_ID_PREFIX, pl) == 0) {
        memcpy(ev->native, id + pl, il - pl + 1);
        for (size_t k = 0; ev->native[k]; k++) {
            if (!isalnum((unsigned char)ev->native[k])) {
                ev->native[0] = '\0';
                break;
            }
        }
    }
    /* "429 too many request" (the doc) or err-code too-many-request: the
     * request pacing lost a race with the server's clock, not a failure. */
    ev->rate_limited = strstr(code, "too-many-request") != NULL || strstr(msg, "429") != NULL ||
                       strstr(msg, "too many request") != NULL;
    ev->kind = QB_EV_ERROR;
    return QB_OK;
}

static int htx_parse(void *st, qb_parser *p, const char *js, size_t len, qb_event *ev)
{
    (void)st; /* JSON frames need no state: only decode does */
    memset(ev, 0, sizeof *ev);
    qb_json j;
    int rc = qb_json_parse(&j, js, len, p->tok, p->tok_cap);
    if (rc != QB_OK) {
        return rc;
    }
    if (!qb_json_is_object(&j, 0)) {
        return QB_EPARSE;
    }
    int ping = qb_json_get(&j, 0, "ping");
    if (ping >= 0) {
        uint64_t n;
        if (j.tok[ping].type != JSMN_PRIMITIVE || qb_json_u64(&j, ping, &n) != QB_OK) {
            return QB_EPARSE;
        }
        int w = snprintf(p->reply, sizeof p->reply, "{\"pong\":%llu}", (unsigned long long)n);
        ev->reply = (qb_str){p->reply, (size_t)w};
        ev->kind = QB_EV_REPLY;
        return QB_OK;
    }
    const char *rest;
    size_t rl;
    int ch = qb_json_get(&j, 0, "ch");
    if (ch >= 0) {
        if ((rc = htx_topic(&j, ch, ev, &rest, &rl)) != QB_OK) {
            return rc;
        }
        int tick = qb_json_get(&j, 0, "tick");
        if (htx_rest_is_mbp(rest, rl)) {
            htx_ts(&j, 0, ev);
            return htx_depth(p, &j, tick, ev);
        }
        if (htx_rest_is(rest, rl, "trade.detail")) {
            return htx_trades(p, &j, tick, ev);
        }
        if (htx_rest_is(rest, rl, "detail") || htx_rest_is(rest, rl, "ticker")) {
            htx_ts(&j, 0, ev);
            return htx_ticker(&j, tick, ev);
        }
        ev->kind = QB_EV_UNKNOWN; /* depth.stepN, bbo, kline...: not subscribed */
        return QB_OK;
    }
    int status = qb_json_get(&j, 0, "status");
    if (qb_json_str_eq(&j, status, "error")) {
        return htx_error(&j, ev);
    }
    int rep = qb_json_get(&j, 0, "rep");
    if (rep >= 0) {
        if (!qb_json_str_eq(&j, status, "ok")) {
            return QB_EPARSE;
        }
        if ((rc = htx_topic(&j, rep, ev, &rest, &rl)) != QB_OK) {
            return rc;
        }
        if (!htx_rest_is_mbp(rest, rl)) {
            ev->kind = QB_EV_UNKNOWN;
            return QB_OK;
        }
        char native[QB_NATIVE_MAX];
        memcpy(native, ev->native, sizeof native);
        rc = htx_snapshot_data(p, &j, qb_json_get(&j, 0, "data"), ev);
        htx_ts(&j, 0, ev);
        memcpy(ev->native, native, sizeof native);
        return rc;
    }
    int subbed = qb_json_get(&j, 0, "subbed");
    int unsubbed = qb_json_get(&j, 0, "unsubbed");
    if (qb_json_str_eq(&j, status, "ok") && (subbed >= 0 || unsubbed >= 0)) {
        char id[48], topic[96];
        qb__info_text(&j, qb_json_get(&j, 0, "id"), id, sizeof id);
        qb__info_text(&j, subbed >= 0 ? subbed : unsubbed, topic, sizeof topic);
        snprintf(ev->info, sizeof ev->info, "id=%s %s=%s", id, subbed >= 0 ? "subbed" : "unsubbed",
                 topic);
        ev->kind = QB_EV_CONTROL;
        return QB_OK;
    }
    ev->kind = QB_EV_UNKNOWN;
    return QB_OK;
}

/* The req answer, when it comes from elsewhere than the websocket (tests:
 * the sample files). Same document as the websocket answer. */
static int htx_parse_snapshot(void *st, qb_parser *p, const char *js, size_t len, qb_event *ev)
{
    int rc = htx_parse(st, p, js, len, ev);
    if (rc == QB_OK && ev->kind != QB_EV_SNAPSHOT) {
        return QB_EPARSE;
    }
    return rc;
}

/* A frame that failed to parse: "ch"/"rep" still readable? HTX puts it
 * first, so a truncated frame usually keeps it. */
static int htx_lost_frame_kind(const char *js, size_t len, char *native, size_t cap)
{
    static const char *const keys[] = {"\"ch\":\"market.", "\"rep\":\"market."};
    for (size_t k = 0; k < 2; k++) {
        size_t kl = strlen(keys[k]);
        const char *p = memmem(js, len, keys[k], kl);
        if (p == NULL) {
            continue;
        }
        const char *sym = p + kl, *end = js + len;
        size_t n = 0;
        while (sym + n < end && isalnum((unsigned char)sym[n])) {
            n++;
        }
        if (n == 0 || n >= cap || sym + n >= end || sym[n] != '.') {
            return QB_LOST_UNKNOWN;
        }
        const char *rest = sym + n + 1;
        size_t rl = (size_t)(end - rest);
        if (rl >= 4 && memcmp(rest, "mbp.", 4) == 0) {
            memcpy(native, sym, n);
            native[n] = '\0';
            return QB_LOST_BOOK; /* an update, or (rep) a snapshot answer */
        }
        if ((rl >= 6 && memcmp(rest, "trade.", 6) == 0) ||
            (rl >= 7 && (memcmp(rest, "detail\"", 7) == 0 || memcmp(rest, "ticker\"", 7) == 0))) {
            return QB_LOST_OTHER;
        }
        return QB_LOST_UNKNOWN;
    }
    return QB_LOST_UNKNOWN;
}

/* ---- the prevSeqNum sequence rule ---------------------------------------- */

static bool htx_is_stale(const qb_event *ev, uint64_t book_id)
{
    return ev->last_id <= book_id;
}

static bool htx_bridges(const qb_event *ev, uint64_t book_id)
{
    /* The doc's step 3: the snapshot's seqNum equals the prevSeqNum of the
     * first update applied on it. (tardis-node applies any buffered update
     * with prevSeqNum >= seqNum; a larger prevSeqNum means updates in
     * between were never seen, so that is not exact and not done here.) */
    return ev->has_prev && ev->prev_id == book_id;
}

static bool htx_follows(const qb_event *ev, uint64_t prev)
{
    return ev->has_prev && ev->prev_id == prev;
}

static bool htx_snapshot_usable(uint64_t snap_id, const qb_event *first)
{
    /* Older than the first buffered update's predecessor: the updates in
     * between are missing from the buffer; ask again. */
    return snap_id >= first->prev_id;
}

static void htx_describe_gap(const qb_event *ev, uint64_t prev, char *buf, size_t cap)
{
    snprintf(buf, cap, "gap: expected prevSeqNum=%llu got prevSeqNum=%llu (seqNum=%llu)",
             (unsigned long long)prev, (unsigned long long)ev->prev_id,
             (unsigned long long)ev->last_id);
}

const qb_seq_rule qb_seq_htx = {
    .name = "htx-mbp",
    .is_stale = htx_is_stale,
    .bridges = htx_bridges,
    .follows = htx_follows,
    .snapshot_usable = htx_snapshot_usable,
    .describe_gap = htx_describe_gap,
};

/* --levels, --symbol-map: written by qb_opts_parse (main.c) at start-up. */
static int64_t htx_opt_levels = 150;
static qb_strlist htx_opt_symbol_map;

static const qb_opt htx_opts[] = {
    {"levels", QB_OPT_INT, &htx_opt_levels, "N",
     "htx: market.<sym>.mbp.N levels: 5, 20, 150 or 400"},
    {"symbol-map", QB_OPT_LIST, &htx_opt_symbol_map, "LIST",
     "htx: native=BASE-QUOTE entries for symbols the quote list cannot split "
     "(e.g. xyzhusd=XYZ-HUSD)"},
    {0},
};

static int htx_opts_apply(qb_adapter_cfg *cfg, char *err, size_t errcap)
{
    if (htx_opt_levels != 5 && htx_opt_levels != 20 && htx_opt_levels != 150 &&
        htx_opt_levels != 400) {
        snprintf(err, errcap, "--levels must be 5, 20, 150 or 400");
        return QB_EINVAL;
    }
    for (size_t i = 0; i < htx_opt_symbol_map.n; i++) {
        const char *e = htx_opt_symbol_map.v[i], *eq = strchr(e, '=');
        const char *dash = eq ? strchr(eq + 1, '-') : NULL;
        if (eq == NULL || eq == e || dash == NULL || dash == eq + 1 || dash[1] == '\0' ||
            strchr(dash + 1, '-')) {
            snprintf(err, errcap,
                     "--symbol-map entry '%s' is not native=BASE-QUOTE (e.g. btcusdt=BTC-USDT)", e);
            return QB_EINVAL;
        }
    }
    cfg->xcfg.levels = (unsigned)htx_opt_levels;
    cfg->xcfg.symbol_map = (const char *const *)htx_opt_symbol_map.v;
    cfg->xcfg.nsymbol_map = htx_opt_symbol_map.n;
    return QB_OK;
}

const qb_exchange_ops qb_htx_ops = {
    .name = "htx",
    .help = "HTX/Huobi spot on /feed: gzip frames, ping/pong, market.<sym>.mbp.<levels>\n"
            "           with the snapshot by req on the same connection (prevSeqNum chaining),\n"
            "           trade.detail, detail (24 h ticker)",
    .default_ws_url = "wss://api.huobi.pro/feed",
    .default_rest_url = NULL,
    /* HTX documents no per-connection topic limit; keep connections
     * moderate (100 symbols with tickers). */
    .max_streams_per_conn = 300,
    .streams_per_symbol = 2,
    .ticker_streams = 1,
    .max_depth_limit = 400,
    .full_book = false,
    /* A corrupt gzip frame could be any symbol's update: each book's next
     * prevSeqNum tells whether it was its own (sync.h, qb_sync_suspect). */
    .suspect_on_lost_frame = true,
    /* "one req per 100 ms per connection", measured by the server on
     * arrival: 10 % margin for jitter between our queue and its clock. */
    .ws_request_interval_ms = 110,
    /* Connection limits not published: conservative. Snapshot "req"s are
     * also paced per connection (ws_request_interval_ms). */
    .connects_per_min = 20,
    .snapshots_per_min = 300,
    .keepalive_ms = 0, /* the server pings; we answer */
    .keepalive_text = NULL,
    .state_size = sizeof(htx_state),
    .init = htx_init,
    .fini = htx_fini,
    .to_native = htx_to_native,
    .from_native = htx_from_native,
    .ws_url = htx_ws_url,
    .subscribe_msg = htx_subscribe_msg,
    .decode = htx_decode,
    .parse = htx_parse,
    .snapshot_url = NULL,
    .snapshot_ws_request = htx_snapshot_ws_request,
    .parse_snapshot = htx_parse_snapshot,
    .lost_frame_kind = htx_lost_frame_kind,
    .seq = &qb_seq_htx,
    .opts = htx_opts,
    .opts_apply = htx_opts_apply,
};
