/*
 * binance.c: Binance spot, as one qb_exchange_ops table (qb_binance_ops).
 *
 * Wire facts (../shared/exchange-protocols.md section 1):
 *   - one combined-stream connection per group of symbols:
 *       <ws-url>?streams=btcusdt@depth@100ms/btcusdt@trade/...
 *     (lowercase; at most 1024 streams per connection; streams past a 2 KB
 *     URL go in one SUBSCRIBE message after connecting), every message is
 *     {"stream":"<name>","data":{...}};
 *   - depthUpdate {"e","E","s","U","u","b":[["p","q"]..],"a":[..]}, sizes are
 *     absolute, "0.00000000" deletes;
 *   - trade {"e":"trade","E","s","t","p","q","T","m"}: m=true means the buyer
 *     is the maker, so the taker sold;
 *   - <sym>@ticker (when tickers are on): 24hrTicker {"e":"24hrTicker","E",
 *     "s","p" (24 h change),"c" (last),"b","B","a","A" (best bid/ask and
 *     sizes),"v" (24 h base volume),...}: the third stream per symbol, so
 *     --streams-per-conn counts 3 per symbol then;
 *   - serverShutdown, combined {"stream":"!serverShutdown",...} or raw
 *     {"e":"serverShutdown",...}: reconnect now;
 *   - {"result":null,"id":N} subscription answers, {"code":N,"msg":".."}
 *     errors;
 *   - REST snapshot GET /api/v3/depth?symbol=X&limit=N ->
 *     {"lastUpdateId":N,"bids":[..],"asks":[..]}.
 * Sequence rule (qb_seq_binance_spot): drop u <= lastUpdateId; the first
 * applied event has U <= lastUpdateId+1 <= u; then U == previous u + 1.
 *
 * Parsing: depthUpdate and trade messages (the hot path) go through
 * simdjson's DOM parser (binance_json.cc, whole document validated, no
 * allocation per message); everything
 * else, and any frame the hot path does not accept, through jsmn via
 * common/json.h (qb__binance_parse_jsmn below), which then gives the
 * answer, error codes included. Both write into the caller's qb_parser with
 * no allocation per message (the simdjson parser lives in the exchange's
 * private state, qb__binance_state, made by .init), prices and
 * sizes parsed exactly with qb_dec_parse from the raw string tokens. REST
 * snapshots stay on jsmn. Pure functions; any thread with its own qb_parser
 * and state.
 */
#include "binance_json.h"
#include "exchange.h"
#include "adapter.h"

#include "err.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- symbols and URLs ------------------------------------------------- */

static int binance_to_native(const qb_exchange_cfg *xc, const char *norm, char *out, size_t cap,
                             char *err, size_t errcap)
{
    (void)xc;
    if (err && errcap) {
        snprintf(err, errcap, "'%s' is not a normalized symbol like BTC-USDT", norm);
    }
    /* BTC-USDT -> BTCUSDT: base and quote concatenated, uppercase. */
    const char *dash = strchr(norm, '-');
    if (dash == NULL || dash == norm || dash[1] == '\0' || strchr(dash + 1, '-')) {
        return QB_EINVAL;
    }
    size_t k = 0;
    for (const char *c = norm; *c; c++) {
        if (*c == '-') {
            continue;
        }
        if (!isalnum((unsigned char)*c) || k + 1 >= cap) {
            return QB_EINVAL;
        }
        out[k++] = (char)toupper((unsigned char)*c);
    }
    out[k] = '\0';
    return QB_OK;
}

static int binance_lower(qb_buf *out, const char *s)
{
    for (; *s; s++) {
        char c = (char)tolower((unsigned char)*s);
        if (qb_buf_append(out, &c, 1) != QB_OK) {
            return QB_ENOMEM;
        }
    }
    return QB_OK;
}

/* Streams go in the URL up to this many bytes of URL; the remaining
 * symbols of the connection are subscribed with one SUBSCRIBE message right
 * after connecting (servers cap the request line: lws' default header
 * space is 4 KB, and 1024 streams would need ~25 KB). */
#define BINANCE_URL_BUDGET 2048
#define BINANCE_STREAMS_BYTES(native_len, tickers)                                                 \
    (3 * (native_len) + sizeof "@depth@100ms/@trade/" + ((tickers) ? sizeof "@ticker/" : 0))

static bool binance_tickers(const qb_exchange_cfg *xc)
{
    return xc == NULL || xc->tickers;
}

/* How many of natives[0..n) fit in the URL (at least one). */
static size_t binance_url_count(const qb_exchange_cfg *xc, const char *base,
                                const char *const *natives, size_t n)
{
    size_t used = strlen(base) + sizeof "?streams=";
    size_t k = 0;
    while (k < n) {
        used += BINANCE_STREAMS_BYTES(strlen(natives[k]), binance_tickers(xc));
        if (k > 0 && used > BINANCE_URL_BUDGET) {
            break;
        }
        k++;
    }
    return k;
}

static int binance_ws_url(const qb_exchange_cfg *xc, const char *base, const char *const *natives,
                          size_t n, qb_buf *out)
{
    if (qb_buf_appendf(out, "%s%sstreams=", base, strchr(base, '?') ? "&" : "?") != QB_OK) {
        return QB_ENOMEM;
    }
    size_t k = binance_url_count(xc, base, natives, n);
    for (size_t i = 0; i < k; i++) {
        int rc = qb_buf_appendf(out, "%s", i ? "/" : "");
        rc = rc ? rc : binance_lower(out, natives[i]);
        rc = rc ? rc : qb_buf_appendf(out, "@depth@100ms/");
        rc = rc ? rc : binance_lower(out, natives[i]);
        rc = rc ? rc : qb_buf_appendf(out, "@trade");
        if (binance_tickers(xc)) {
            rc = rc ? rc : qb_buf_appendf(out, "/");
            rc = rc ? rc : binance_lower(out, natives[i]);
            rc = rc ? rc : qb_buf_appendf(out, "@ticker");
        }
        if (rc != QB_OK) {
            return rc;
        }
    }
    return QB_OK;
}

/* {"method":"SUBSCRIBE","params":["x@depth@100ms","x@trade",...],"id":1}
 * for the symbols that did not fit in the URL; nothing when all did. */
static int binance_subscribe_msg(const qb_exchange_cfg *xc, const char *base,
                                 const char *const *natives, size_t n, qb_buf *out)
{
    size_t k = binance_url_count(xc, base, natives, n);
    if (k >= n) {
        return QB_OK;
    }
    int rc = qb_buf_appendf(out, "{\"method\":\"SUBSCRIBE\",\"params\":[");
    for (size_t i = k; i < n && rc == QB_OK; i++) {
        rc = qb_buf_appendf(out, "%s\"", i > k ? "," : "");
        rc = rc ? rc : binance_lower(out, natives[i]);
        rc = rc ? rc : qb_buf_appendf(out, "@depth@100ms\",\"");
        rc = rc ? rc : binance_lower(out, natives[i]);
        rc = rc ? rc : qb_buf_appendf(out, "@trade\"");
        if (binance_tickers(xc)) {
            rc = rc ? rc : qb_buf_appendf(out, ",\"");
            rc = rc ? rc : binance_lower(out, natives[i]);
            rc = rc ? rc : qb_buf_appendf(out, "@ticker\"");
        }
    }
    rc = rc ? rc : qb_buf_appendf(out, "],\"id\":1}");
    return rc ? rc : qb_buf_append(out, "", 1);
}

static int binance_snapshot_url(const char *rest_base, const char *native, unsigned limit,
                                qb_buf *out)
{
    size_t bl = strlen(rest_base);
    bool slash = bl > 0 && rest_base[bl - 1] == '/';
    return qb_buf_appendf(out, "%s%sapi/v3/depth?symbol=%s&limit=%u", rest_base, slash ? "" : "/",
                          native, limit);
}

/* ---- frames ----------------------------------------------------------- */

static int binance_u64(const qb_json *j, int obj, const char *key, uint64_t *out)
{
    int i = qb_json_get(j, obj, key);
    if (i < 0 || j->tok[i].type != JSMN_PRIMITIVE) {
        return QB_EPARSE;
    }
    return qb_json_u64(j, i, out);
}

static int binance_symbol_tok(const qb_json *j, int i, qb_event *ev)
{
    if (!qb_json_is_str(j, i)) {
        return QB_EPARSE;
    }
    size_t n;
    const char *s = qb_json_text(j, i, &n);
    if (n == 0 || n >= sizeof ev->native) {
        return QB_EPARSE;
    }
    for (size_t k = 0; k < n; k++) {
        if (!isalnum((unsigned char)s[k])) {
            return QB_EPARSE;
        }
    }
    memcpy(ev->native, s, n);
    ev->native[n] = '\0';
    return QB_OK;
}

static int binance_symbol(const qb_json *j, int obj, qb_event *ev)
{
    return binance_symbol_tok(j, qb_json_get(j, obj, "s"), ev);
}

/* One pass over the keys of the depth object (measured: repeated
 * qb_json_get lookups, each re-skipping the level arrays, cost ~10 % of a
 * 20-level update). Every one of s, U, u, E, b, a must be present. */
static int binance_depth(qb_parser *p, const qb_json *j, int d, qb_event *ev)
{
    enum { HAVE_S = 1, HAVE_UU = 2, HAVE_U = 4, HAVE_E = 8, HAVE_B = 16, HAVE_A = 32 };
    unsigned have = 0;
    uint64_t e_ms = 0;
    int i = d + 1;
    for (int k = 0; k < j->tok[d].size && i + 1 < j->ntok; k++) {
        int v = i + 1;
        size_t kl;
        const char *key = qb_json_text(j, i, &kl);
        int rc = QB_OK;
        if (kl == 1) {
            switch (key[0]) {
            case 's':
                rc = binance_symbol_tok(j, v, ev);
                have |= HAVE_S;
                break;
            case 'U':
                rc =
                    j->tok[v].type == JSMN_PRIMITIVE ? qb_json_u64(j, v, &ev->first_id) : QB_EPARSE;
                have |= HAVE_UU;
                break;
            case 'u':
                rc = j->tok[v].type == JSMN_PRIMITIVE ? qb_json_u64(j, v, &ev->last_id) : QB_EPARSE;
                have |= HAVE_U;
                break;
            case 'E':
                rc = j->tok[v].type == JSMN_PRIMITIVE ? qb_json_u64(j, v, &e_ms) : QB_EPARSE;
                have |= HAVE_E;
                break;
            case 'b':
                rc = qb__parse_levels(j, v, p->bids, p->level_cap, &ev->n_bids);
                have |= HAVE_B;
                break;
            case 'a':
                rc = qb__parse_levels(j, v, p->asks, p->level_cap, &ev->n_asks);
                have |= HAVE_A;
                break;
            default:
                break;
            }
        }
        if (rc != QB_OK) {
            return rc;
        }
        i = qb_json_skip(j, v);
    }
    if (have != (HAVE_S | HAVE_UU | HAVE_U | HAVE_E | HAVE_B | HAVE_A)) {
        return QB_EPARSE;
    }
    int rc = qb__ms_to_ns(e_ms, &ev->exch_ts);
    if (rc != QB_OK) {
        return rc;
    }
    if (ev->first_id > ev->last_id) {
        return QB_ERANGE;
    }
    ev->bids = p->bids;
    ev->asks = p->asks;
    ev->kind = QB_EV_DEPTH;
    return QB_OK;
}

static int binance_trade(qb_parser *p, const qb_json *j, int d, qb_event *ev)
{
    uint64_t t_ms;
    bool m;
    int rc = binance_symbol(j, d, ev);
    rc = rc ? rc : binance_u64(j, d, "t", &ev->trade_id);
    rc = rc ? rc : binance_u64(j, d, "T", &t_ms);
    rc = rc ? rc : qb__ms_to_ns(t_ms, &ev->exch_ts);
    rc = rc ? rc : qb__parse_dec(j, qb_json_get(j, d, "p"), &ev->price);
    rc = rc ? rc : qb__parse_dec(j, qb_json_get(j, d, "q"), &ev->qty);
    rc = rc ? rc : qb_json_bool(j, qb_json_get(j, d, "m"), &m);
    if (rc != QB_OK) {
        return rc;
    }
    if (ev->price.mant <= 0 || ev->qty.mant < 0) {
        return QB_ERANGE;
    }
    /* m: the buyer is the maker, so the taker (the aggressor) sold. */
    ev->side = m ? QB_SIDE_SELL : QB_SIDE_BUY;
    p->trades[0] = (qb_trade){.id = ev->trade_id,
                              .ts = ev->exch_ts,
                              .price = ev->price,
                              .qty = ev->qty,
                              .side = ev->side};
    ev->trades = p->trades;
    ev->n_trades = 1;
    ev->kind = QB_EV_TRADE;
    return QB_OK;
}

/* A decimal field of the ticker; absent or empty -> *have false. */
static int binance_tick_dec(const qb_json *j, int d, const char *key, qb_dec *out, bool *have)
{
    int i = qb_json_get(j, d, key);
    *have = false;
    if (i < 0) {
        return QB_OK;
    }
    int rc = qb__parse_dec(j, i, out);
    if (rc == QB_OK) {
        *have = true;
    }
    return rc;
}

/* 24hrTicker. Best bid/ask of "0" (an empty side) is reported as absent. */
static int binance_ticker(const qb_json *j, int d, qb_event *ev)
{
    uint64_t e_ms;
    bool hl, hb, hbq, ha, haq;
    qb_ticker *t = &ev->ticker;
    int rc = binance_symbol(j, d, ev);
    rc = rc ? rc : binance_u64(j, d, "E", &e_ms);
    rc = rc ? rc : qb__ms_to_ns(e_ms, &ev->exch_ts);
    rc = rc ? rc : binance_tick_dec(j, d, "c", &t->last, &hl);
    rc = rc ? rc : binance_tick_dec(j, d, "b", &t->bid, &hb);
    rc = rc ? rc : binance_tick_dec(j, d, "B", &t->bid_qty, &hbq);
    rc = rc ? rc : binance_tick_dec(j, d, "a", &t->ask, &ha);
    rc = rc ? rc : binance_tick_dec(j, d, "A", &t->ask_qty, &haq);
    rc = rc ? rc : binance_tick_dec(j, d, "v", &t->volume_24h, &t->has_volume);
    rc = rc ? rc : binance_tick_dec(j, d, "p", &t->change_24h, &t->has_change);
    if (rc != QB_OK) {
        return rc;
    }
    if (!hl) {
        return QB_EPARSE;
    }
    if (t->last.mant < 0 || (t->has_volume && t->volume_24h.mant < 0)) {
        return QB_ERANGE;
    }
    t->has_bid = hb && hbq && t->bid.mant > 0 && t->bid_qty.mant > 0;
    t->has_ask = ha && haq && t->ask.mant > 0 && t->ask_qty.mant > 0;
    ev->kind = QB_EV_TICKER;
    return QB_OK;
}

/* An event payload (the "data" of a combined stream, or a raw message). */
static int binance_payload(qb_parser *p, const qb_json *j, int d, qb_event *ev)
{
    int e = qb_json_get(j, d, "e");
    if (qb_json_str_eq(j, e, "depthUpdate")) {
        return binance_depth(p, j, d, ev);
    }
    if (qb_json_str_eq(j, e, "trade")) {
        return binance_trade(p, j, d, ev);
    }
    if (qb_json_str_eq(j, e, "24hrTicker")) {
        return binance_ticker(j, d, ev);
    }
    if (qb_json_str_eq(j, e, "serverShutdown")) {
        ev->kind = QB_EV_SHUTDOWN;
        snprintf(ev->info, sizeof ev->info, "serverShutdown");
        return QB_OK;
    }
    ev->kind = QB_EV_UNKNOWN;
    return QB_OK;
}

int qb__binance_parse_jsmn(qb_parser *p, const char *js, size_t len, qb_event *ev)
{
    memset(ev, 0, sizeof *ev);
    qb_json j;
    int rc = qb_json_parse(&j, js, len, p->tok, p->tok_cap);
    if (rc != QB_OK) {
        return rc;
    }
    if (!qb_json_is_object(&j, 0)) {
        return QB_EPARSE;
    }
    int stream = qb_json_get(&j, 0, "stream");
    int data = qb_json_get(&j, 0, "data");
    if (stream >= 0 && data >= 0) {
        if (!qb_json_is_str(&j, stream) || !qb_json_is_object(&j, data)) {
            return QB_EPARSE;
        }
        if (qb_json_str_eq(&j, stream, "!serverShutdown")) {
            ev->kind = QB_EV_SHUTDOWN;
            snprintf(ev->info, sizeof ev->info, "serverShutdown");
            return QB_OK;
        }
        return binance_payload(p, &j, data, ev);
    }
    if (qb_json_get(&j, 0, "e") >= 0) {
        return binance_payload(p, &j, 0, ev);
    }
    int id = qb_json_get(&j, 0, "id");
    int result = qb_json_get(&j, 0, "result");
    if (id >= 0 && result >= 0) {
        char ids[48], res[96];
        qb__info_text(&j, id, ids, sizeof ids);
        qb__info_text(&j, result, res, sizeof res);
        snprintf(ev->info, sizeof ev->info, "id=%s result=%s", ids, res);
        ev->kind = QB_EV_CONTROL;
        return QB_OK;
    }
    int code = qb_json_get(&j, 0, "code");
    int msg = qb_json_get(&j, 0, "msg");
    if (code >= 0 && msg >= 0) {
        char cs[32], ms[128];
        qb__info_text(&j, code, cs, sizeof cs);
        qb__info_text(&j, msg, ms, sizeof ms);
        snprintf(ev->info, sizeof ev->info, "code=%s msg=%s", cs, ms);
        ev->kind = QB_EV_ERROR;
        return QB_OK;
    }
    ev->kind = QB_EV_UNKNOWN;
    return QB_OK;
}

/* ---- private state ------------------------------------------------------- */

/* When the simdjson parser cannot be allocated every frame goes to jsmn
 * (bjson NULL): slower, same results, so this never fails. */
static int binance_init(void *st, size_t max_bytes)
{
    qb__binance_state *s = st;
    s->bjson = qb__bjson_new(max_bytes);
    return QB_OK;
}

static void binance_fini(void *st)
{
    qb__binance_state *s = st;
    qb__bjson_free(s->bjson);
    s->bjson = NULL;
}

/* The hot path first; QB_EAGAIN from it means "parse with jsmn" (counted
 * in bjson_misses). */
static int binance_parse(void *st, qb_parser *p, const char *js, size_t len, qb_event *ev)
{
    qb__binance_state *s = st;
    if (s->bjson != NULL) {
        if (qb__bjson_parse(s->bjson, p, js, len, ev) == QB_OK) {
            s->bjson_hits++;
            return QB_OK;
        }
        s->bjson_misses++;
    }
    return qb__binance_parse_jsmn(p, js, len, ev);
}

static int binance_parse_snapshot(void *st, qb_parser *p, const char *js, size_t len, qb_event *ev)
{
    (void)st;
    memset(ev, 0, sizeof *ev);
    qb_json j;
    int rc = qb_json_parse(&j, js, len, p->tok, p->tok_cap);
    if (rc != QB_OK) {
        return rc;
    }
    if (!qb_json_is_object(&j, 0)) {
        return QB_EPARSE;
    }
    rc = binance_u64(&j, 0, "lastUpdateId", &ev->last_id);
    rc = rc ? rc
            : qb__parse_levels(&j, qb_json_get(&j, 0, "bids"), p->bids, p->level_cap, &ev->n_bids);
    rc = rc ? rc
            : qb__parse_levels(&j, qb_json_get(&j, 0, "asks"), p->asks, p->level_cap, &ev->n_asks);
    if (rc != QB_OK) {
        return rc;
    }
    /* Binance's REST snapshot may carry E (futures); spot has no time. */
    uint64_t e_ms;
    if (binance_u64(&j, 0, "E", &e_ms) == QB_OK) {
        qb__ms_to_ns(e_ms, &ev->exch_ts);
    }
    ev->first_id = ev->last_id;
    ev->bids = p->bids;
    ev->asks = p->asks;
    ev->kind = QB_EV_SNAPSHOT;
    return QB_OK;
}

/* GET /api/v3/depth weight by limit (../shared/exchange-protocols.md 1.4):
 * 1-100: 5, 101-500: 25, 501-1000: 50, 1001-5000: 250. */
static uint32_t binance_snapshot_weight(unsigned limit)
{
    return limit <= 100 ? 5 : limit <= 500 ? 25 : limit <= 1000 ? 50 : 250;
}

/* A combined-stream frame that failed to parse: {"stream":"<sym>@<name>",...
 * comes first, so a truncated frame usually keeps it. */
static int binance_lost_frame_kind(const char *js, size_t len, char *native, size_t cap)
{
    static const char key[] = "\"stream\":\"";
    const char *p = memmem(js, len, key, sizeof key - 1);
    if (p == NULL) {
        return QB_LOST_UNKNOWN;
    }
    const char *sym = p + sizeof key - 1, *end = js + len;
    size_t n = 0;
    while (sym + n < end && isalnum((unsigned char)sym[n])) {
        n++;
    }
    if (n == 0 || n >= cap || sym + n >= end || sym[n] != '@') {
        return QB_LOST_UNKNOWN;
    }
    const char *name = sym + n + 1;
    size_t nl = (size_t)(end - name);
    if (nl >= 5 && memcmp(name, "depth", 5) == 0) {
        for (size_t k = 0; k < n; k++) {
            native[k] = (char)toupper((unsigned char)sym[k]);
        }
        native[n] = '\0';
        return QB_LOST_BOOK;
    }
    if ((nl >= 6 && memcmp(name, "trade\"", 6) == 0) ||
        (nl >= 7 && memcmp(name, "ticker\"", 7) == 0)) {
        return QB_LOST_OTHER;
    }
    return QB_LOST_UNKNOWN;
}

/* ---- the spot sequence rule ------------------------------------------- */

static bool binance_is_stale(const qb_event *ev, uint64_t book_id)
{
    return ev->last_id <= book_id;
}

static bool binance_bridges(const qb_event *ev, uint64_t book_id)
{
    return ev->first_id <= book_id + 1 && book_id + 1 <= ev->last_id;
}

static bool binance_follows(const qb_event *ev, uint64_t prev)
{
    return ev->first_id == prev + 1;
}

static bool binance_snapshot_usable(uint64_t snap_id, const qb_event *first)
{
    /* The doc's step 4 refetches when lastUpdateId < U of the first buffered
     * event. lastUpdateId == U-1 is accepted too: nothing is missing between
     * the snapshot and that event, which then satisfies the bridge rule
     * U <= lastUpdateId+1 <= u. */
    return snap_id + 1 >= first->first_id;
}

static void binance_describe_gap(const qb_event *ev, uint64_t prev, char *buf, size_t cap)
{
    snprintf(buf, cap, "gap: expected U=%llu got U=%llu (u=%llu)", (unsigned long long)prev + 1,
             (unsigned long long)ev->first_id, (unsigned long long)ev->last_id);
}

const qb_seq_rule qb_seq_binance_spot = {
    .name = "binance-spot",
    .is_stale = binance_is_stale,
    .bridges = binance_bridges,
    .follows = binance_follows,
    .snapshot_usable = binance_snapshot_usable,
    .describe_gap = binance_describe_gap,
};

/* --depth-limit: written by qb_opts_parse (main.c) at start-up. */
static int64_t binance_depth_limit = 1000;

static const qb_opt binance_opts[] = {
    {"depth-limit", QB_OPT_INT, &binance_depth_limit, "N",
     "binance: REST snapshot depth (levels per side); its weight sets the snapshot "
     "budget (5000 weight/min: 1-100 weigh 5, 101-500 25, 501-1000 50, 1001-5000 250)"},
    {0},
};

/* The adapter framework reads the depth for every exchange (it clamps it
 * to max_depth_limit and --max-levels), as when the option was main.c's. */
static int binance_opts_apply(qb_adapter_cfg *cfg, char *err, size_t errcap)
{
    if (binance_depth_limit < 1) {
        snprintf(err, errcap, "an option is out of range, see --help");
        return QB_EINVAL;
    }
    cfg->depth_limit = (unsigned)binance_depth_limit;
    return QB_OK;
}

const qb_exchange_ops qb_binance_ops = {
    .name = "binance",
    .help = "spot: combined streams <sym>@depth@100ms, @trade, @ticker; REST snapshot",
    .default_ws_url = "wss://stream.binance.com:9443/stream",
    .default_rest_url = "https://api.binance.com",
    .max_streams_per_conn = 1024,
    .streams_per_symbol = 2,
    .ticker_streams = 1,
    .max_depth_limit = 5000,
    /* 300 connection attempts per 5 min per IP: stay at 60/min. REST
     * weight 6000/min per IP: snapshots take 5000 of it (the rest for
     * anything else on the IP), i.e. 100/min at the default depth 1000
     * (weight 50), 1000/min at depth 100 (weight 5), 20/min at 5000. */
    .connects_per_min = 60,
    .snapshots_per_min = 100,
    .snapshot_weight_per_min = 5000,
    .snapshot_weight = binance_snapshot_weight,
    /* An oversized or unparseable frame: each book's next U tells whether
     * it was its own (sync.h, qb_sync_suspect). */
    .suspect_on_lost_frame = true,
    .state_size = sizeof(qb__binance_state),
    .init = binance_init,
    .fini = binance_fini,
    .to_native = binance_to_native,
    .from_native = NULL,
    .ws_url = binance_ws_url,
    .subscribe_msg = binance_subscribe_msg,
    .decode = NULL,
    .parse = binance_parse,
    .snapshot_url = binance_snapshot_url,
    .snapshot_ws_request = NULL,
    .parse_snapshot = binance_parse_snapshot,
    .lost_frame_kind = binance_lost_frame_kind,
    .seq = &qb_seq_binance_spot,
    .opts = binance_opts,
    .opts_apply = binance_opts_apply,
};
