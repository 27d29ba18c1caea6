/*
 * exsim_bithumb.c: Bithumb's public websocket v1 for the simulator (one
 * ops table, qb__exsim_bithumb_ops). Service thread only.
 *
 * Wire (shared/exchange-protocols.md section 3.2; samples bithumb_v1_*):
 *   ws[s]://HOST:PORT/websocket/v1
 *   Request: a JSON array [{"ticket":T},{"type":"orderbook","codes":
 *   ["KRW-BTC","KRW-ETH.15"],"level":0},{"type":"trade","codes":[..]},
 *   {"type":"ticker","codes":[..]},{"format":"DEFAULT"}]. Codes are
 *   QUOTE-BASE upper case; ".N" (1-30) sets the orderbook units (default
 *   30). isOnlySnapshot / is_only_snapshot / isOnlySanpshot and
 *   isOnlyRealtime / is_only_realtime are understood. A new request
 *   replaces the connection's subscriptions. Errors (Upbit style):
 *   {"error":{"name":"WRONG_FORMAT"|"NO_TICKET"|"NO_TYPE"|"NO_CODES"|
 *   "INVALID_PARAM","message":"..."}}. Only the DEFAULT format is simulated
 *   (SIMPLE is refused with INVALID_PARAM).
 *   After a request each (type, code) first gets one "stream_type":
 *   "SNAPSHOT" message (orderbook and ticker always; trade once the symbol
 *   has traded), then "REALTIME" ones.
 *   Orderbook: every message is the FULL top-N book (not a diff), one per
 *   generated book event: {"type":"orderbook","code","timestamp":ms,
 *   "total_ask_size","total_bid_size","orderbook_units":[{"ask_price",
 *   "bid_price","ask_size","bid_size"}..],"level":0,"stream_type"}. Unit i
 *   pairs the i-th ask and bid; a side with fewer levels has 0 price and
 *   size in the missing units. The simulated Bithumb book is at most 30
 *   levels per side, so the default 30 units are the whole book (--dump).
 *   Trade: {"type":"trade","code","trade_price","trade_volume","ask_bid":
 *   "ASK"|"BID" (taker side: ASK = the taker sold),"prev_closing_price",
 *   "change","change_price","trade_date","trade_time","trade_timestamp",
 *   "sequential_id","timestamp","stream_type"}. Ticker: every field of the
 *   doc sample bithumb_v1_ticker_snapshot_doc_1.json.
 *   Numbers are JSON numbers, shortest plain decimals (95340000, 0.0007).
 *   Keepalive: text PING -> {"status":"UP"}; websocket pings are answered
 *   (by lws); a connection without traffic in either direction for
 *   --bithumb-idle-ms (120 s) is closed (idle_closes). No server pings.
 * Faults: a gap skips one snapshot (harmless by design: the next one is
 *   complete); a duplicate repeats it (no change); a reordered event is
 *   encoded when it is finally sent, i.e. shows the newer book (reordering
 *   full snapshots is not simulated); malformed = truncated JSON;
 *   oversized = a --oversized-bytes orderbook message (a correct client
 *   drops it; the next snapshot would repair a client that did not).
 */
#include "exsim.h"

#include "clock.h"
#include "err.h"
#include "json.h"
#include "log.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BITHUMB_MAX_TOKENS 4096
#define BITHUMB_UNITS_DEFAULT 30
#define BITHUMB_MAX_DEPTH 30

static jsmntok_t bithumb_tok[BITHUMB_MAX_TOKENS];

/* "SNAPSHOT" while encoding the first message of a subscription. */
static const char *bithumb_stream_type = "REALTIME";

/* ---- names ---- */

static bool bithumb_part_ok(const char *s, size_t n)
{
    if (n == 0 || n > 12) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9'))) {
            return false;
        }
    }
    return true;
}

static bool bithumb_symbol_ok(const char *native)
{
    const char *dash = strchr(native, '-');
    if (dash == NULL) {
        return false;
    }
    size_t ql = (size_t)(dash - native);
    if (!bithumb_part_ok(native, ql) || !bithumb_part_ok(dash + 1, strlen(dash + 1))) {
        return false;
    }
    /* Bithumb's markets: KRW, BTC, USDT */
    return (ql == 3 && (memcmp(native, "KRW", 3) == 0 || memcmp(native, "BTC", 3) == 0)) ||
           (ql == 4 && memcmp(native, "USDT", 4) == 0);
}

static void bithumb_base_quote(const char *native, char *base, char *quote, size_t cap)
{
    const char *dash = strchr(native, '-');
    if (dash == NULL) {
        snprintf(base, cap, "%s", native);
        quote[0] = '\0';
        return;
    }
    snprintf(quote, cap, "%.*s", (int)(dash - native), native);
    snprintf(base, cap, "%s", dash + 1);
}

static bool bithumb_owns_path(const char *path, bool ws)
{
    return ws && (strcmp(path, "/websocket/v1") == 0 || strcmp(path, "/websocket/v1/") == 0);
}

/* ---- replies ---- */

static void bithumb_error(qb__exsim *sim, qb__exsim_conn *c, const char *name, const char *msg)
{
    sim->st.client_errors++;
    char out[256];
    int n =
        snprintf(out, sizeof out, "{\"error\":{\"name\":\"%s\",\"message\":\"%s\"}}", name, msg);
    if (n > 0 && (size_t)n < sizeof out) {
        qb__exsim_conn_send_text(c, out, (size_t)n);
    }
}

static int bithumb_num(qb_buf *b, const char *key, int64_t v)
{
    int rc = qb_buf_appendf(b, "\"%s\":", key);
    rc = rc ? rc : qb__exsim_num(b, v, QB__EXSIM_NUM_PLAIN);
    return rc ? rc : qb_buf_append(b, ",", 1);
}

/* ---- encoders ---- */

static int bithumb_encode_depth(qb__exsim *sim, const qb__exsim_stream *st,
                                const qb__exsim_event *ev, bool combined, qb_buf *out, bool *binary)
{
    const qb__exsim_sym *s = st->sym;
    if (s == NULL) {
        return QB_EINVAL;
    }
    size_t nb = qb_book_depth(s->book, QB_BID), na = qb_book_depth(s->book, QB_ASK);
    size_t units = st->param ? st->param : BITHUMB_UNITS_DEFAULT;
    size_t n = nb > na ? nb : na;
    if (n > units) {
        n = units;
    }
    const qb_level *b = qb_book_levels(s->book, QB_BID), *a = qb_book_levels(s->book, QB_ASK);
    int64_t tb = 0, ta = 0;
    for (size_t i = 0; i < n; i++) {
        tb += i < nb ? b[i].size.mant : 0;
        ta += i < na ? a[i].size.mant : 0;
    }
    uint64_t ts = ev ? ev->time_ms : (s->last_time_ms ? s->last_time_ms : qb__exsim_now_ms());
    int rc = qb_buf_appendf(out, "{\"type\":\"orderbook\",\"code\":\"%s\",\"timestamp\":%llu,",
                            s->name, (unsigned long long)ts);
    rc = rc ? rc : bithumb_num(out, "total_ask_size", ta);
    rc = rc ? rc : bithumb_num(out, "total_bid_size", tb);
    rc = rc ? rc : qb_buf_append(out, "\"orderbook_units\":[", 19);
    for (size_t i = 0; i < n && rc == QB_OK; i++) {
        rc = qb_buf_append(out, i ? ",{" : "{", i ? 2 : 1);
        rc = rc ? rc : bithumb_num(out, "ask_price", i < na ? a[i].price.mant : 0);
        rc = rc ? rc : bithumb_num(out, "bid_price", i < nb ? b[i].price.mant : 0);
        rc = rc ? rc : bithumb_num(out, "ask_size", i < na ? a[i].size.mant : 0);
        rc = rc ? rc : qb_buf_append(out, "\"bid_size\":", 11);
        rc = rc ? rc : qb__exsim_num(out, i < nb ? b[i].size.mant : 0, QB__EXSIM_NUM_PLAIN);
        rc = rc ? rc : qb_buf_append(out, "}", 1);
    }
    rc =
        rc ? rc : qb_buf_appendf(out, "],\"level\":0,\"stream_type\":\"%s\"}", bithumb_stream_type);
    return rc;
}

static void bithumb_utc(uint64_t ms, struct tm *tm)
{
    time_t t = (time_t)(ms / 1000u);
    gmtime_r(&t, tm);
}

/* "change" of price vs the previous close. */
static const char *bithumb_change(int64_t last, int64_t prev)
{
    return last > prev ? "RISE" : last < prev ? "FALL" : "EVEN";
}

static int bithumb_trade_json(qb_buf *out, const qb__exsim_sym *s, int64_t price, int64_t qty,
                              bool buyer_maker, uint64_t id, uint64_t ms)
{
    struct tm tm;
    bithumb_utc(ms, &tm);
    int64_t chg = price - s->t_prev_close;
    int rc = qb_buf_appendf(out, "{\"type\":\"trade\",\"code\":\"%s\",", s->name);
    rc = rc ? rc : bithumb_num(out, "trade_price", price);
    rc = rc ? rc : bithumb_num(out, "trade_volume", qty);
    rc = rc ? rc : qb_buf_appendf(out, "\"ask_bid\":\"%s\",", buyer_maker ? "ASK" : "BID");
    rc = rc ? rc : bithumb_num(out, "prev_closing_price", s->t_prev_close);
    rc =
        rc ? rc : qb_buf_appendf(out, "\"change\":\"%s\",", bithumb_change(price, s->t_prev_close));
    rc = rc ? rc : bithumb_num(out, "change_price", chg < 0 ? -chg : chg);
    rc = rc ? rc
            : qb_buf_appendf(out,
                             "\"trade_date\":\"%04d-%02d-%02d\",\"trade_time\":\"%02d:%02d:%02d\","
                             "\"trade_timestamp\":%llu,\"sequential_id\":%llu,\"timestamp\":%llu,"
                             "\"stream_type\":\"%s\"}",
                             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                             tm.tm_sec, (unsigned long long)ms,
                             (unsigned long long)(100000000000000000ull + id),
                             (unsigned long long)ms, bithumb_stream_type);
    return rc;
}

static int bithumb_encode_trade(qb__exsim *sim, const qb__exsim_stream *st,
                                const qb__exsim_trade *t, bool combined, qb_buf *out, bool *binary)
{
    if (st->sym == NULL) {
        return QB_EINVAL;
    }
    return bithumb_trade_json(out, st->sym, t->price.mant, t->qty.mant, t->buyer_maker, t->id,
                              t->time_ms);
}

static int bithumb_encode_ticker(qb__exsim *sim, const qb__exsim_stream *st, bool combined,
                                 qb_buf *out, bool *binary)
{
    const qb__exsim_sym *s = st->sym;
    if (s == NULL) {
        return QB_EINVAL;
    }
    uint64_t now = qb__exsim_now_ms();
    uint64_t tms = s->t_last_trade_ms ? s->t_last_trade_ms : now;
    struct tm tm;
    bithumb_utc(tms, &tm);
    int64_t chg = s->t_last - s->t_prev_close;
    int64_t achg = chg < 0 ? -chg : chg;
    /* change rate with 8 decimals, integers only */
    int64_t rate = s->t_prev_close ? (int64_t)((__int128)achg * 100000000 / s->t_prev_close) : 0;
    int rc = qb_buf_appendf(out, "{\"type\":\"ticker\",\"code\":\"%s\",", s->name);
    rc = rc ? rc : bithumb_num(out, "opening_price", s->t_open);
    rc = rc ? rc : bithumb_num(out, "high_price", s->t_high);
    rc = rc ? rc : bithumb_num(out, "low_price", s->t_low);
    rc = rc ? rc : bithumb_num(out, "trade_price", s->t_last);
    rc = rc ? rc : bithumb_num(out, "prev_closing_price", s->t_prev_close);
    rc = rc ? rc
            : qb_buf_appendf(out, "\"change\":\"%s\",", bithumb_change(s->t_last, s->t_prev_close));
    rc = rc ? rc : bithumb_num(out, "change_price", achg);
    rc = rc ? rc : bithumb_num(out, "signed_change_price", chg);
    rc = rc ? rc : qb_buf_append(out, "\"change_rate\":", 14);
    rc = rc ? rc : qb__exsim_num(out, rate, QB__EXSIM_NUM_PLAIN);
    rc = rc ? rc : qb_buf_append(out, ",\"signed_change_rate\":", 22);
    rc = rc ? rc : qb__exsim_num(out, chg < 0 ? -rate : rate, QB__EXSIM_NUM_PLAIN);
    rc = rc ? rc : qb_buf_append(out, ",", 1);
    rc = rc ? rc : bithumb_num(out, "trade_volume", s->t_last_qty);
    rc = rc ? rc : bithumb_num(out, "acc_trade_volume", s->t_vol);
    rc = rc ? rc : bithumb_num(out, "acc_trade_volume_24h", s->t_vol);
    rc = rc ? rc : qb_buf_append(out, "\"acc_trade_price\":", 18);
    rc = rc ? rc : qb__exsim_num128(out, s->t_quote_vol);
    rc = rc ? rc : qb_buf_append(out, ",\"acc_trade_price_24h\":", 23);
    rc = rc ? rc : qb__exsim_num128(out, s->t_quote_vol);
    rc = rc ? rc
            : qb_buf_appendf(out,
                             ",\"trade_date\":\"%04d%02d%02d\",\"trade_time\":\"%02d%02d%02d\","
                             "\"trade_timestamp\":%llu,\"ask_bid\":\"%s\",",
                             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                             tm.tm_sec, (unsigned long long)tms,
                             s->t_last_buyer_maker ? "ASK" : "BID");
    rc = rc ? rc : bithumb_num(out, "acc_ask_volume", s->t_vol / 2);
    rc = rc ? rc : bithumb_num(out, "acc_bid_volume", s->t_vol - s->t_vol / 2);
    rc = rc ? rc : bithumb_num(out, "highest_52_week_price", s->t_high * 2);
    rc = rc ? rc : qb_buf_append(out, "\"highest_52_week_date\":\"2024-06-18\",", 36);
    rc = rc ? rc : bithumb_num(out, "lowest_52_week_price", s->t_low / 2);
    rc = rc ? rc
            : qb_buf_appendf(out,
                             "\"lowest_52_week_date\":\"2024-06-18\",\"market_state\":\"ACTIVE\","
                             "\"is_trading_suspended\":false,\"delisting_date\":null,"
                             "\"market_warning\":\"NONE\",\"timestamp\":%llu,"
                             "\"stream_type\":\"%s\"}",
                             (unsigned long long)now, bithumb_stream_type);
    return rc;
}

static int bithumb_encode_raw(qb__exsim *sim, const qb__exsim_stream *st, const char *payload,
                              size_t len, bool combined, qb_buf *out, bool *binary)
{
    return qb_buf_append(out, payload, len);
}

static int bithumb_encode_malformed(qb__exsim *sim, const qb__exsim_stream *st, bool combined,
                                    qb_buf *out, bool *binary)
{
    return qb_buf_appendf(out, "{\"type\":\"orderbook\",\"code\":\"%s\",\"timestamp\":",
                          st->sym ? st->sym->name : "");
}

static int bithumb_encode_oversized(qb__exsim *sim, const qb__exsim_stream *st, size_t bytes,
                                    bool combined, qb_buf *out, bool *binary)
{
    int rc = qb_buf_appendf(out,
                            "{\"type\":\"orderbook\",\"code\":\"%s\",\"timestamp\":%llu,"
                            "\"total_ask_size\":1,\"total_bid_size\":1,\"orderbook_units\":[",
                            st->sym ? st->sym->name : "", (unsigned long long)qb__exsim_now_ms());
    size_t start = out->len;
    for (size_t i = 0; rc == QB_OK && out->len - start + 64 < bytes; i++) {
        rc = qb_buf_appendf(out,
                            "%s{\"ask_price\":%zu,\"bid_price\":1,\"ask_size\":1,\"bid_size\":1}",
                            i ? "," : "", 1000 + i);
    }
    return rc ? rc : qb_buf_append(out, "],\"level\":0,\"stream_type\":\"REALTIME\"}", 37);
}

/* ---- requests ---- */

/* One code: "KRW-BTC" or "KRW-BTC.15" -> native and units. */
static bool bithumb_code(const qb_json *j, int t, char *native, unsigned *units)
{
    if (!qb_json_is_str(j, t)) {
        return false;
    }
    size_t n;
    const char *s = qb_json_text(j, t, &n);
    const char *dot = memchr(s, '.', n);
    size_t sl = dot ? (size_t)(dot - s) : n;
    if (sl == 0 || sl >= QB__EXSIM_SYM_MAX) {
        return false;
    }
    memcpy(native, s, sl);
    native[sl] = '\0';
    if (!bithumb_symbol_ok(native)) {
        return false;
    }
    *units = BITHUMB_UNITS_DEFAULT;
    if (dot) {
        size_t dl = n - sl - 1;
        if (dl == 0 || dl > 2) {
            return false;
        }
        unsigned v = 0;
        for (size_t i = 0; i < dl; i++) {
            if (!isdigit((unsigned char)dot[1 + i])) {
                return false;
            }
            v = v * 10 + (unsigned)(dot[1 + i] - '0');
        }
        if (v < 1 || v > BITHUMB_UNITS_DEFAULT) {
            return false;
        }
        *units = v;
    }
    return true;
}

static bool bithumb_flag(const qb_json *j, int obj, const char *const *names)
{
    for (; *names; names++) {
        bool v;
        int t = qb_json_get(j, obj, *names);
        if (t >= 0 && qb_json_bool(j, t, &v) == QB_OK && v) {
            return true;
        }
    }
    return false;
}

/* Queues the SNAPSHOT message of st on c. */
static void bithumb_send_snapshot(qb__exsim *sim, qb__exsim_conn *c, qb__exsim_stream *st)
{
    const qb__exsim_sym *s = st->sym;
    qb_buf *b = qb__exsim_scratch(sim);
    int rc;
    bithumb_stream_type = "SNAPSHOT";
    if (st->kind == QB__EXSIM_K_DEPTH) {
        rc = bithumb_encode_depth(sim, st, NULL, true, b, NULL);
    } else if (st->kind == QB__EXSIM_K_TICKER) {
        rc = bithumb_encode_ticker(sim, st, true, b, NULL);
    } else if (s->n_trades > 0) {
        rc = bithumb_trade_json(b, s, s->t_last, s->t_last_qty, s->t_last_buyer_maker,
                                s->next_trade_id - 1, s->t_last_trade_ms);
    } else {
        rc = QB_EEOF; /* nothing traded yet */
    }
    bithumb_stream_type = "REALTIME";
    if (rc == QB_OK) {
        qb__exsim_conn_send_scratch(c, false);
    }
}

/* Validates the request array; with apply set, subscribes. Returns NULL
 * or the error (name, message). */
static const char *bithumb_request(qb__exsim *sim, qb__exsim_conn *c, const qb_json *j, bool apply,
                                   const char **msg)
{
    static const char *const only_snap[] = {"isOnlySnapshot", "is_only_snapshot", "isOnlySanpshot",
                                            NULL};
    static const char *const only_rt[] = {"isOnlyRealtime", "is_only_realtime", NULL};
    bool ticket = false, types = false;
    int n = j->tok[0].size;
    for (int i = 0; i < n; i++) {
        int o = qb_json_at(j, 0, i);
        if (!qb_json_is_object(j, o)) {
            *msg = "every element must be an object";
            return "WRONG_FORMAT";
        }
        int tt = qb_json_get(j, o, "ticket");
        if (tt >= 0) {
            size_t tl;
            qb_json_text(j, tt, &tl);
            if (!qb_json_is_str(j, tt) || tl == 0) {
                *msg = "ticket must be a non-empty string";
                return "NO_TICKET";
            }
            ticket = true;
            continue;
        }
        int tf = qb_json_get(j, o, "format");
        if (tf >= 0) {
            if (!qb_json_str_eq(j, tf, "DEFAULT")) {
                *msg = "only the DEFAULT format is simulated";
                return "INVALID_PARAM";
            }
            continue;
        }
        int ty = qb_json_get(j, o, "type");
        if (ty < 0) {
            *msg = "unknown element";
            return "WRONG_FORMAT";
        }
        qb__exsim_kind kind;
        const char *tname;
        if (qb_json_str_eq(j, ty, "orderbook")) {
            kind = QB__EXSIM_K_DEPTH;
            tname = "orderbook";
        } else if (qb_json_str_eq(j, ty, "trade")) {
            kind = QB__EXSIM_K_TRADE;
            tname = "trade";
        } else if (qb_json_str_eq(j, ty, "ticker")) {
            kind = QB__EXSIM_K_TICKER;
            tname = "ticker";
        } else {
            *msg = "type must be ticker, trade or orderbook";
            return "NO_TYPE";
        }
        int tc = qb_json_get(j, o, "codes");
        if (tc < 0 || !qb_json_is_array(j, tc) || j->tok[tc].size == 0) {
            *msg = "codes must be a non-empty array";
            return "NO_CODES";
        }
        bool snap_only = bithumb_flag(j, o, only_snap);
        bool rt_only = bithumb_flag(j, o, only_rt);
        types = true;
        for (int k = 0; k < j->tok[tc].size; k++) {
            char native[QB__EXSIM_SYM_MAX], name[QB__EXSIM_STREAM_MAX];
            unsigned units;
            if (!bithumb_code(j, qb_json_at(j, tc, k), native, &units)) {
                *msg = "invalid code (QUOTE-BASE upper case, e.g. KRW-BTC or KRW-BTC.15)";
                return "INVALID_PARAM";
            }
            if (!apply) {
                continue;
            }
            qb__exsim_sym *sym = qb__exsim_sym_get(sim, &qb__exsim_bithumb_ops, native, true);
            if (sym == NULL) {
                *msg = "unknown code";
                return "INVALID_PARAM";
            }
            if (kind == QB__EXSIM_K_DEPTH) {
                snprintf(name, sizeof name, "orderbook:%s.%u", native, units);
            } else {
                snprintf(name, sizeof name, "%s:%s", tname, native);
            }
            qb__exsim_stream *st =
                qb__exsim_stream_get(sim, &qb__exsim_bithumb_ops, name, sym, kind);
            if (st == NULL) {
                *msg = "too many codes";
                return "INVALID_PARAM";
            }
            st->param = kind == QB__EXSIM_K_DEPTH ? units : 0;
            qb__exsim_sym_activate(sim, sym);
            if (!rt_only) {
                bithumb_send_snapshot(sim, c, st);
            }
            if (!snap_only && qb__exsim_subscribe(c, st) != QB_OK) {
                *msg = "too many codes";
                return "INVALID_PARAM";
            }
        }
    }
    if (!ticket) {
        *msg = "a ticket element is required";
        return "NO_TICKET";
    }
    if (!types) {
        *msg = "no type field";
        return "NO_TYPE";
    }
    return NULL;
}

static int bithumb_ws_open(qb__exsim *sim, qb__exsim_conn *c, const qb__exsim_req *req,
                           int *http_status)
{
    if (c) {
        c->ping_interval_ms = 0; /* the client keeps the connection alive */
        c->pong_timeout_ms = 0;
        c->idle_ms = sim->cfg->bithumb_idle_ms;
    }
    return 0;
}

static int bithumb_ws_message(qb__exsim *sim, qb__exsim_conn *c, const char *msg, size_t len,
                              bool binary)
{
    if (!binary && len == 4 && memcmp(msg, "PING", 4) == 0) {
        sim->st.text_pings++;
        static const char up[] = "{\"status\":\"UP\"}";
        qb__exsim_conn_send_text(c, up, sizeof up - 1);
        return 0;
    }
    qb_json j;
    int rc = binary ? QB_EPARSE : qb_json_parse(&j, msg, len, bithumb_tok, BITHUMB_MAX_TOKENS);
    if (rc != QB_OK || !qb_json_is_array(&j, 0)) {
        sim->st.bad_input++;
        QB_LOG_RL(QB_LOG_WARN, "exsim_bithumb_bad_request", "conn=%llu len=%zu binary=%d",
                  (unsigned long long)c->id, len, binary);
        bithumb_error(sim, c, "WRONG_FORMAT", "the request must be a JSON array");
        sim->st.client_errors--;
        return 0;
    }
    sim->st.subscribe_requests++;
    const char *emsg = "";
    const char *err = bithumb_request(sim, c, &j, false, &emsg);
    if (err) {
        bithumb_error(sim, c, err, emsg);
        return 0;
    }
    /* a new request replaces the connection's subscriptions */
    while (c->nstreams > 0) {
        qb__exsim_unsubscribe(c, c->streams[c->nstreams - 1]);
    }
    err = bithumb_request(sim, c, &j, true, &emsg);
    if (err) {
        bithumb_error(sim, c, err, emsg);
    }
    return 0;
}

const qb__exsim_ops qb__exsim_bithumb_ops = {
    .name = "bithumb",
    .ws_path = "/websocket/v1",
    .owns_path = bithumb_owns_path,
    .symbol_ok = bithumb_symbol_ok,
    .base_quote = bithumb_base_quote,
    .max_depth = BITHUMB_MAX_DEPTH,
    .ws_open = bithumb_ws_open,
    .ws_message = bithumb_ws_message,
    .encode_depth = bithumb_encode_depth,
    .encode_trade = bithumb_encode_trade,
    .encode_raw = bithumb_encode_raw,
    .encode_malformed = bithumb_encode_malformed,
    .encode_oversized = bithumb_encode_oversized,
    .encode_ticker = bithumb_encode_ticker,
};
