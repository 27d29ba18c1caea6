/*
 * exsim_binance.c: Binance spot's wire protocol for the simulator (one ops
 * table, qb__exsim_binance_ops). Service thread only.
 *
 * Websocket (shared/exchange-protocols.md section 1):
 *   /stream?streams=<s1>/<s2>/...   combined: {"stream":"<s>","data":{...}}
 *   /stream                         combined, streams added by SUBSCRIBE
 *   /ws/<stream>  or  /ws           raw payloads (/ws/<name without @>,
 *                                   e.g. ccxt's /ws/0: no stream until SUBSCRIBE)
 *   streams: <sym>@depth@100ms (every event), <sym>@depth and
 *   <sym>@depth@1000ms (the changes of one second merged into one event:
 *   U = first U, u = last u, each level once with its final size),
 *   <sym>@trade, <sym>@ticker (24hrTicker every --ticker-every events);
 *   any other <sym>@<name> is accepted and carries only replayed frames. Symbols are lowercase in
 * stream names, uppercase in "s". Control:
 * {"method":"SUBSCRIBE"|"UNSUBSCRIBE"|"LIST_SUBSCRIPTIONS"|
 *   "SET_PROPERTY"|"GET_PROPERTY","params":[...],"id":N} -> {"result":...,
 *   "id":N}; errors {"code":N,"msg":"...","id":N}. At most --max-streams
 *   (1024) streams per connection: a longer URL is refused with HTTP 400, a
 *   SUBSCRIBE past it gets an error.
 * REST:
 *   GET /api/v3/depth?symbol=BTCUSDT&limit=N (default 100, capped at 5000)
 *   -> {"lastUpdateId":N,"bids":[["p","q"],...],"asks":[...]}, best first;
 *   unknown symbol -> 400 {"code":-1121,"msg":"Invalid symbol."}.
 *   GET /api/v3/ping -> {}, GET /api/v3/time -> {"serverTime":ms}.
 * Replay: cryptofeed captures ("<ts>: <payload>" frames, "https://... ->
 * <ts>: {...}" REST snapshots, "wss://..." client lines skipped).
 * Prices and sizes are printed with 8 decimals, like Binance.
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

#define BINANCE_MAX_TOKENS 8192
#define BINANCE_SNAPSHOT_MAX 5000

/* jsmn tokens for client messages and replay lines (one service thread). */
static jsmntok_t binance_tok[BINANCE_MAX_TOKENS];

/* ---- stream names ---- */

/* Splits "<sym>@<rest>" into the native (uppercase) symbol and the kind.
 * Returns false for a malformed name. */
static bool binance_stream_parse(const char *name, size_t n, char *native, qb__exsim_kind *kind)
{
    if (n == 0 || n >= QB__EXSIM_STREAM_MAX) {
        return false;
    }
    const char *at = memchr(name, '@', n);
    if (at == NULL || at == name || (size_t)(at - name) >= QB__EXSIM_SYM_MAX ||
        at + 1 == name + n) {
        return false;
    }
    size_t sl = (size_t)(at - name);
    for (size_t i = 0; i < sl; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
            return false;
        }
        native[i] = (char)toupper((unsigned char)c);
    }
    native[sl] = '\0';
    const char *rest = at + 1;
    size_t rl = n - sl - 1;
    for (size_t i = 0; i < rl; i++) {
        char c = rest[i];
        if (!(isalnum((unsigned char)c) || c == '@' || c == '_')) {
            return false;
        }
    }
    if (rl == 11 && memcmp(rest, "depth@100ms", 11) == 0) {
        *kind = QB__EXSIM_K_DEPTH;
    } else if ((rl == 5 && memcmp(rest, "depth", 5) == 0) ||
               (rl == 12 && memcmp(rest, "depth@1000ms", 12) == 0)) {
        *kind = QB__EXSIM_K_DEPTH_1S;
    } else if (rl == 5 && memcmp(rest, "trade", 5) == 0) {
        *kind = QB__EXSIM_K_TRADE;
    } else if (rl == 6 && memcmp(rest, "ticker", 6) == 0) {
        *kind = QB__EXSIM_K_TICKER;
    } else {
        *kind = QB__EXSIM_K_OTHER;
    }
    return true;
}

/* The stream object for a client-given name; creates its symbol (and so
 * starts its generator) when the mode allows. NULL on a bad name. */
static qb__exsim_stream *binance_stream_for(qb__exsim *sim, const char *name, size_t n)
{
    char native[QB__EXSIM_SYM_MAX];
    char nm[QB__EXSIM_STREAM_MAX];
    qb__exsim_kind kind;
    if (!binance_stream_parse(name, n, native, &kind)) {
        return NULL;
    }
    memcpy(nm, name, n);
    nm[n] = '\0';
    qb__exsim_sym *sym = qb__exsim_sym_get(sim, &qb__exsim_binance_ops, native, true);
    qb__exsim_stream *st = qb__exsim_stream_get(sim, &qb__exsim_binance_ops, nm, sym, kind);
    return st;
}

static int binance_subscribe_one(qb__exsim *sim, qb__exsim_conn *c, qb__exsim_stream *st)
{
    int rc = qb__exsim_subscribe(c, st);
    if (rc == QB_OK && st->sym) {
        qb__exsim_sym_activate(sim, st->sym);
    }
    return rc;
}

/* ---- websocket open ---- */

static int binance_ws_open(qb__exsim *sim, qb__exsim_conn *c, const qb__exsim_req *req,
                           int *http_status)
{
    const char *path = req->path;
    *http_status = 400;
    if (strcmp(path, "/stream") == 0 || strcmp(path, "/stream/") == 0) {
        const char *streams = qb__exsim_req_arg(req, "streams");
        if (c) {
            c->combined = true;
        }
        if (streams == NULL || *streams == '\0') {
            return 0; /* streams come later by SUBSCRIBE */
        }
        /* count and validate first: the whole URL is refused, like Binance */
        size_t count = 0;
        const char *p = streams;
        while (*p) {
            const char *e = strchr(p, '/');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            char native[QB__EXSIM_SYM_MAX];
            qb__exsim_kind kind;
            if (n > 0) {
                if (!binance_stream_parse(p, n, native, &kind)) {
                    QB_LOG_RL(QB_LOG_WARN, "exsim_bad_stream_name", "name=%.*s",
                              (int)(n > 64 ? 64 : n), p);
                    return -1;
                }
                count++;
            }
            p += n;
            if (*p == '/') {
                p++;
            }
        }
        if (count > (size_t)sim->cfg->max_streams) {
            QB_LOG_RL(QB_LOG_WARN, "exsim_too_many_streams", "count=%zu max=%lld", count,
                      (long long)sim->cfg->max_streams);
            return -1;
        }
        if (c == NULL) {
            return 0;
        }
        p = streams;
        while (*p) {
            const char *e = strchr(p, '/');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            if (n > 0) {
                qb__exsim_stream *st = binance_stream_for(sim, p, n);
                if (st == NULL || binance_subscribe_one(sim, c, st) != QB_OK) {
                    return -1;
                }
            }
            p += n;
            if (*p == '/') {
                p++;
            }
        }
        return 0;
    }
    if (strcmp(path, "/ws") == 0 || strncmp(path, "/ws/", 4) == 0) {
        if (c) {
            c->combined = false;
        }
        const char *name = path[3] == '/' ? path + 4 : "";
        /* "/ws/<anything without @>" is a raw connection with no stream yet
         * (streams come by SUBSCRIBE): ccxt connects to /ws/0, /ws/1, ... */
        if (*name == '\0' || strchr(name, '@') == NULL) {
            return 0;
        }
        qb__exsim_kind kind;
        char native[QB__EXSIM_SYM_MAX];
        if (!binance_stream_parse(name, strlen(name), native, &kind)) {
            return -1;
        }
        if (c == NULL) {
            return 0;
        }
        qb__exsim_stream *st = binance_stream_for(sim, name, strlen(name));
        return (st && binance_subscribe_one(sim, c, st) == QB_OK) ? 0 : -1;
    }
    *http_status = 404;
    return -1;
}

/* ---- control messages ---- */

static void binance_reply_error(qb__exsim *sim, qb__exsim_conn *c, int code, const char *msg,
                                const char *id, size_t idlen)
{
    char out[512];
    int n;
    if (id) {
        n = snprintf(out, sizeof out, "{\"code\":%d,\"msg\":\"%s\",\"id\":%.*s}", code, msg,
                     (int)idlen, id);
    } else {
        n = snprintf(out, sizeof out, "{\"code\":%d,\"msg\":\"%s\"}", code, msg);
    }
    if (n > 0 && (size_t)n < sizeof out) {
        qb__exsim_conn_send_text(c, out, (size_t)n);
    }
}

/* Valid ids: a 64-bit signed integer, an alphanumeric string of up to 36
 * characters, or null. Writes the raw JSON text of the id. */
static bool binance_id_ok(const qb_json *j, int t, const char **id, size_t *idlen)
{
    size_t n;
    const char *s = qb_json_text(j, t, &n);
    if (qb_json_is_str(j, t)) {
        if (n > 36) {
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_') {
                return false;
            }
        }
        *id = s - 1; /* include the quotes */
        *idlen = n + 2;
        return true;
    }
    int64_t v;
    if (n == 4 && memcmp(s, "null", 4) == 0) {
        *id = s;
        *idlen = n;
        return true;
    }
    if (j->tok[t].type == JSMN_PRIMITIVE && qb_json_i64(j, t, &v) == QB_OK) {
        *id = s;
        *idlen = n;
        return true;
    }
    return false;
}

static int binance_ws_message(qb__exsim *sim, qb__exsim_conn *c, const char *msg, size_t len,
                              bool binary)
{
    if (binary) {
        sim->st.bad_input++;
        QB_LOG_RL(QB_LOG_WARN, "exsim_client_binary", "conn=%llu len=%zu",
                  (unsigned long long)c->id, len);
        binance_reply_error(sim, c, 3, "Invalid JSON: binary frames are not supported", NULL, 0);
        return 0;
    }
    qb_json j;
    int rc = qb_json_parse(&j, msg, len, binance_tok, BINANCE_MAX_TOKENS);
    if (rc != QB_OK || !qb_json_is_object(&j, 0)) {
        sim->st.bad_input++;
        QB_LOG_RL(QB_LOG_WARN, "exsim_client_bad_json", "conn=%llu len=%zu err=%s",
                  (unsigned long long)c->id, len, rc ? qb_errname(rc) : "not an object");
        binance_reply_error(sim, c, 3, "Invalid JSON: expected value at line 1 column 1", NULL, 0);
        return 0;
    }
    const char *id = NULL;
    size_t idlen = 0;
    int tid = qb_json_get(&j, 0, "id");
    if (tid >= 0 && !binance_id_ok(&j, tid, &id, &idlen)) {
        sim->st.client_errors++;
        binance_reply_error(sim, c, 2, "Invalid request: request ID must be an unsigned integer",
                            NULL, 0);
        return 0;
    }
    if (tid < 0) {
        sim->st.client_errors++;
        binance_reply_error(sim, c, 2, "Invalid request: missing field `id`", NULL, 0);
        return 0;
    }
    int tm = qb_json_get(&j, 0, "method");
    if (tm < 0 || !qb_json_is_str(&j, tm)) {
        sim->st.client_errors++;
        binance_reply_error(sim, c, 2, "Invalid request: missing field `method`", id, idlen);
        return 0;
    }
    int tp = qb_json_get(&j, 0, "params");
    if (tp >= 0 && !qb_json_is_array(&j, tp)) {
        sim->st.client_errors++;
        binance_reply_error(sim, c, 2, "Invalid request: params must be an array", id, idlen);
        return 0;
    }
    int np = tp >= 0 ? j.tok[tp].size : 0;
    sim->st.subscribe_requests++;
    char out[256];

    if (qb_json_str_eq(&j, tm, "SUBSCRIBE") || qb_json_str_eq(&j, tm, "UNSUBSCRIBE")) {
        bool sub = qb_json_str_eq(&j, tm, "SUBSCRIBE");
        /* validate everything first: a request is applied whole or not */
        size_t add = 0;
        for (int i = 0; i < np; i++) {
            int t = qb_json_at(&j, tp, i);
            size_t n;
            const char *s = qb_json_text(&j, t, &n);
            char native[QB__EXSIM_SYM_MAX];
            qb__exsim_kind kind;
            if (!qb_json_is_str(&j, t) || !binance_stream_parse(s, n, native, &kind)) {
                sim->st.client_errors++;
                binance_reply_error(sim, c, 2, "Invalid request: invalid stream name", id, idlen);
                return 0;
            }
            add++;
        }
        if (sub && c->nstreams + add > (size_t)sim->cfg->max_streams) {
            /* counting duplicates of already subscribed streams too is fine:
             * the limit is an upper bound either way */
            size_t fresh = 0;
            for (int i = 0; i < np; i++) {
                size_t n;
                const char *s = qb_json_text(&j, qb_json_at(&j, tp, i), &n);
                bool have = false;
                for (size_t k = 0; k < c->nstreams && !have; k++) {
                    have =
                        strlen(c->streams[k]->name) == n && memcmp(c->streams[k]->name, s, n) == 0;
                }
                fresh += !have;
            }
            if (c->nstreams + fresh > (size_t)sim->cfg->max_streams) {
                sim->st.client_errors++;
                QB_LOG_RL(QB_LOG_WARN, "exsim_too_many_streams", "conn=%llu have=%zu add=%zu",
                          (unsigned long long)c->id, c->nstreams, fresh);
                binance_reply_error(sim, c, 2,
                                    "Invalid request: too many streams (max 1024 per connection)",
                                    id, idlen);
                return 0;
            }
        }
        for (int i = 0; i < np; i++) {
            size_t n;
            const char *s = qb_json_text(&j, qb_json_at(&j, tp, i), &n);
            qb__exsim_stream *st = binance_stream_for(sim, s, n);
            if (st == NULL) {
                binance_reply_error(sim, c, 2, "Invalid request: invalid stream name", id, idlen);
                return 0;
            }
            if (sub) {
                if (binance_subscribe_one(sim, c, st) != QB_OK) {
                    binance_reply_error(sim, c, 2, "Invalid request: too many streams", id, idlen);
                    return 0;
                }
            } else {
                qb__exsim_unsubscribe(c, st);
            }
        }
        int n = snprintf(out, sizeof out, "{\"result\":null,\"id\":%.*s}", (int)idlen, id);
        qb__exsim_conn_send_text(c, out, (size_t)n);
        return 0;
    }
    if (qb_json_str_eq(&j, tm, "LIST_SUBSCRIPTIONS")) {
        qb_buf b = QB_BUF_INIT;
        int brc = qb_buf_append(&b, "{\"result\":[", 11);
        for (size_t i = 0; i < c->nstreams && brc == QB_OK; i++) {
            brc = qb_buf_appendf(&b, "%s\"%s\"", i ? "," : "", c->streams[i]->name);
        }
        if (brc == QB_OK) {
            brc = qb_buf_appendf(&b, "],\"id\":%.*s}", (int)idlen, id);
        }
        if (brc == QB_OK) {
            qb__exsim_conn_send_text(c, (const char *)b.data, b.len);
        }
        qb_buf_fini(&b);
        return 0;
    }
    if (qb_json_str_eq(&j, tm, "SET_PROPERTY") || qb_json_str_eq(&j, tm, "GET_PROPERTY")) {
        bool set = qb_json_str_eq(&j, tm, "SET_PROPERTY");
        int t0 = np > 0 ? qb_json_at(&j, tp, 0) : -1;
        if (t0 < 0 || !qb_json_str_eq(&j, t0, "combined")) {
            sim->st.client_errors++;
            binance_reply_error(sim, c, 0, "Unknown property", id, idlen);
            return 0;
        }
        if (set) {
            bool v;
            int t1 = np > 1 ? qb_json_at(&j, tp, 1) : -1;
            if (t1 < 0 || qb_json_bool(&j, t1, &v) != QB_OK) {
                sim->st.client_errors++;
                binance_reply_error(sim, c, 1, "Invalid value type: expected Boolean", id, idlen);
                return 0;
            }
            c->combined = v;
            int n = snprintf(out, sizeof out, "{\"result\":null,\"id\":%.*s}", (int)idlen, id);
            qb__exsim_conn_send_text(c, out, (size_t)n);
        } else {
            int n = snprintf(out, sizeof out, "{\"result\":%s,\"id\":%.*s}",
                             c->combined ? "true" : "false", (int)idlen, id);
            qb__exsim_conn_send_text(c, out, (size_t)n);
        }
        return 0;
    }
    sim->st.client_errors++;
    binance_reply_error(sim, c, 2,
                        "Invalid request: unknown variant, expected one of `SUBSCRIBE`, "
                        "`UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`",
                        id, idlen);
    return 0;
}

/* ---- REST ---- */

static bool binance_http_is_snapshot(const qb__exsim_req *req)
{
    return strcmp(req->path, "/api/v3/depth") == 0;
}

static void binance_http_error(qb__exsim_resp *resp, int status, int code, const char *msg)
{
    resp->status = status;
    qb_buf_appendf(&resp->body, "{\"code\":%d,\"msg\":\"%s\"}", code, msg);
}

static int binance_levels(qb_buf *b, const qb_level *lv, size_t n)
{
    int rc = qb_buf_append(b, "[", 1);
    for (size_t i = 0; i < n && rc == QB_OK; i++) {
        char p[QB_DEC_STR_MAX], q[QB_DEC_STR_MAX];
        qb_dec_format(lv[i].price, p, sizeof p);
        qb_dec_format(lv[i].size, q, sizeof q);
        rc = qb_buf_appendf(b, "%s[\"%s\",\"%s\"]", i ? "," : "", p, q);
    }
    if (rc == QB_OK) {
        rc = qb_buf_append(b, "]", 1);
    }
    return rc;
}

static void binance_snapshot(qb__exsim *sim, const qb__exsim_req *req, qb__exsim_resp *resp)
{
    const char *symbol = qb__exsim_req_arg(req, "symbol");
    if (symbol == NULL || *symbol == '\0') {
        binance_http_error(resp, 400, -1102,
                           "Mandatory parameter 'symbol' was not sent, was empty/null, or "
                           "malformed.");
        return;
    }
    size_t limit = 100;
    const char *ls = qb__exsim_req_arg(req, "limit");
    if (ls && *ls) {
        char *end;
        unsigned long long v = strtoull(ls, &end, 10);
        if (*end != '\0' || !isdigit((unsigned char)ls[0]) || strlen(ls) > 20) {
            binance_http_error(resp, 400, -1100,
                               "Illegal characters found in parameter 'limit'; legal range is "
                               "'^[0-9]{1,20}$'.");
            return;
        }
        limit = v > BINANCE_SNAPSHOT_MAX ? BINANCE_SNAPSHOT_MAX : (v == 0 ? 100 : (size_t)v);
    }
    qb__exsim_sym *sym = NULL;
    if (strlen(symbol) < QB__EXSIM_SYM_MAX) {
        sym = qb__exsim_sym_get(sim, &qb__exsim_binance_ops, symbol, true);
    }
    if (sym == NULL) {
        binance_http_error(resp, 400, -1121, "Invalid symbol.");
        return;
    }
    qb__exsim_sym_activate(sim, sym);
    size_t nb = qb_book_depth(sym->book, QB_BID), na = qb_book_depth(sym->book, QB_ASK);
    qb_buf *b = &resp->body;
    int rc =
        qb_buf_appendf(b, "{\"lastUpdateId\":%llu,\"bids\":", (unsigned long long)sym->last_id);
    if (rc == QB_OK) {
        rc = binance_levels(b, qb_book_levels(sym->book, QB_BID), nb < limit ? nb : limit);
    }
    if (rc == QB_OK) {
        rc = qb_buf_append(b, ",\"asks\":", 8);
    }
    if (rc == QB_OK) {
        rc = binance_levels(b, qb_book_levels(sym->book, QB_ASK), na < limit ? na : limit);
    }
    if (rc == QB_OK) {
        rc = qb_buf_append(b, "}", 1);
    }
    if (rc != QB_OK) {
        b->len = 0;
        binance_http_error(resp, 500, -1000,
                           "An unknown error occurred while processing the "
                           "request.");
        return;
    }
    resp->status = 200;
    QB_DEBUG("exsim_snapshot", "sym=%s lastUpdateId=%llu limit=%zu", sym->name,
             (unsigned long long)sym->last_id, limit);
}

static void binance_http_handle(qb__exsim *sim, const qb__exsim_req *req, qb__exsim_resp *resp)
{
    if (binance_http_is_snapshot(req)) {
        binance_snapshot(sim, req, resp);
    } else if (strcmp(req->path, "/api/v3/ping") == 0) {
        qb_buf_append(&resp->body, "{}", 2);
    } else if (strcmp(req->path, "/api/v3/time") == 0) {
        qb_buf_appendf(&resp->body, "{\"serverTime\":%llu}",
                       (unsigned long long)(qb_now_ns() / 1000000u));
    } else {
        binance_http_error(resp, 404, -1000, "Not found.");
    }
}

static void binance_http_fault(qb__exsim *sim, int status, qb__exsim_resp *resp)
{
    if (status == 429) {
        binance_http_error(resp, 429, -1003,
                           "Too many requests; current limit of IP(127.0.0.1) request weight is "
                           "6000 per 1 MINUTE. Please use WebSocket Streams for live updates to "
                           "avoid polling the API.");
    } else {
        binance_http_error(resp, status, -1001,
                           "Internal error; unable to process your request. Please try again.");
    }
}

/* ---- encoders ---- */

static int binance_wrap_open(qb_buf *out, const char *stream, bool combined)
{
    if (!combined) {
        return QB_OK;
    }
    return qb_buf_appendf(out, "{\"stream\":\"%s\",\"data\":", stream);
}

static int binance_wrap_close(qb_buf *out, bool combined)
{
    return combined ? qb_buf_append(out, "}", 1) : QB_OK;
}

static int binance_encode_depth(qb__exsim *sim, const qb__exsim_stream *st,
                                const qb__exsim_event *ev, bool combined, qb_buf *out, bool *binary)
{
    int rc = binance_wrap_open(out, st->name, combined);
    if (rc != QB_OK) {
        return rc;
    }
    if (ev->raw) {
        rc = qb_buf_append(out, ev->raw, ev->raw_len);
    } else {
        rc = qb_buf_appendf(out,
                            "{\"e\":\"depthUpdate\",\"E\":%llu,\"s\":\"%s\",\"U\":%llu,"
                            "\"u\":%llu,\"b\":",
                            (unsigned long long)ev->time_ms, st->sym->name,
                            (unsigned long long)ev->first_id, (unsigned long long)ev->last_id);
        if (rc == QB_OK) {
            rc = binance_levels(out, ev->bids, ev->n_bids);
        }
        if (rc == QB_OK) {
            rc = qb_buf_append(out, ",\"a\":", 5);
        }
        if (rc == QB_OK) {
            rc = binance_levels(out, ev->asks, ev->n_asks);
        }
        if (rc == QB_OK) {
            rc = qb_buf_append(out, "}", 1);
        }
    }
    if (rc == QB_OK) {
        rc = binance_wrap_close(out, combined);
    }
    return rc;
}

static int binance_encode_trade(qb__exsim *sim, const qb__exsim_stream *st,
                                const qb__exsim_trade *t, bool combined, qb_buf *out, bool *binary)
{
    char p[QB_DEC_STR_MAX], q[QB_DEC_STR_MAX];
    qb_dec_format(t->price, p, sizeof p);
    qb_dec_format(t->qty, q, sizeof q);
    int rc = binance_wrap_open(out, st->name, combined);
    if (rc == QB_OK) {
        rc =
            qb_buf_appendf(out,
                           "{\"e\":\"trade\",\"E\":%llu,\"s\":\"%s\",\"t\":%llu,\"p\":\"%s\","
                           "\"q\":\"%s\",\"T\":%llu,\"m\":%s,\"M\":true}",
                           (unsigned long long)t->time_ms, st->sym->name, (unsigned long long)t->id,
                           p, q, (unsigned long long)t->time_ms, t->buyer_maker ? "true" : "false");
    }
    if (rc == QB_OK) {
        rc = binance_wrap_close(out, combined);
    }
    return rc;
}

static int binance_encode_raw(qb__exsim *sim, const qb__exsim_stream *st, const char *payload,
                              size_t len, bool combined, qb_buf *out, bool *binary)
{
    int rc = binance_wrap_open(out, st->name, combined);
    if (rc == QB_OK) {
        rc = qb_buf_append(out, payload, len);
    }
    if (rc == QB_OK) {
        rc = binance_wrap_close(out, combined);
    }
    return rc;
}

static int binance_encode_shutdown(qb__exsim *sim, bool combined, qb_buf *out, bool *binary)
{
    unsigned long long ms = qb_now_ns() / 1000000u;
    if (combined) {
        return qb_buf_appendf(
            out, "{\"stream\":\"!serverShutdown\",\"data\":{\"e\":\"serverShutdown\",\"E\":%llu}}",
            ms);
    }
    return qb_buf_appendf(out, "{\"e\":\"serverShutdown\",\"E\":%llu}", ms);
}

static int binance_encode_malformed(qb__exsim *sim, const qb__exsim_stream *st, bool combined,
                                    qb_buf *out, bool *binary)
{
    /* a depth update cut in the middle: not JSON */
    int rc = binance_wrap_open(out, st->name, combined);
    if (rc == QB_OK) {
        rc = qb_buf_appendf(out, "{\"e\":\"depthUpdate\",\"E\":%llu,\"s\":\"%s\",\"U\":",
                            (unsigned long long)(qb_now_ns() / 1000000u),
                            st->sym ? st->sym->name : "");
    }
    return rc;
}

static int binance_encode_oversized(qb__exsim *sim, const qb__exsim_stream *st, size_t bytes,
                                    bool combined, qb_buf *out, bool *binary)
{
    /* Valid JSON shaped like a depth update, with ids a correct client
     * drops (u = 1 is far below any lastUpdateId) and levels that delete
     * prices nobody has. */
    int rc = binance_wrap_open(out, st->name, combined);
    if (rc == QB_OK) {
        rc = qb_buf_appendf(out,
                            "{\"e\":\"depthUpdate\",\"E\":%llu,\"s\":\"%s\",\"U\":1,\"u\":1,"
                            "\"b\":[",
                            (unsigned long long)(qb_now_ns() / 1000000u),
                            st->sym ? st->sym->name : "");
    }
    static const char lvl[] = "[\"0.00000001\",\"0.00000000\"]";
    size_t start = out->len;
    bool first = true;
    while (rc == QB_OK && out->len - start + 16 < bytes) {
        if (!first) {
            rc = qb_buf_append(out, ",", 1);
        }
        if (rc == QB_OK) {
            rc = qb_buf_append(out, lvl, sizeof lvl - 1);
        }
        first = false;
    }
    if (rc == QB_OK) {
        rc = qb_buf_append(out, "],\"a\":[]}", 9);
    }
    if (rc == QB_OK) {
        rc = binance_wrap_close(out, combined);
    }
    return rc;
}

/* {"e":"24hrTicker",...}: the rolling 24 h statistics of the symbol. */
static int binance_encode_ticker(qb__exsim *sim, const qb__exsim_stream *st, bool combined,
                                 qb_buf *out, bool *binary)
{
    const qb__exsim_sym *s = st->sym;
    if (s == NULL) {
        return QB_EINVAL;
    }
    char o[QB_DEC_STR_MAX], h[QB_DEC_STR_MAX], l[QB_DEC_STR_MAX], c[QB_DEC_STR_MAX],
        v[QB_DEC_STR_MAX], x[QB_DEC_STR_MAX], p[QB_DEC_STR_MAX], bp[QB_DEC_STR_MAX],
        bq[QB_DEC_STR_MAX], ap[QB_DEC_STR_MAX], aq[QB_DEC_STR_MAX], lq[QB_DEC_STR_MAX];
    qb_dec_format(qb__exsim_dec8(s->t_open), o, sizeof o);
    qb_dec_format(qb__exsim_dec8(s->t_high), h, sizeof h);
    qb_dec_format(qb__exsim_dec8(s->t_low), l, sizeof l);
    qb_dec_format(qb__exsim_dec8(s->t_last), c, sizeof c);
    qb_dec_format(qb__exsim_dec8(s->t_vol), v, sizeof v);
    qb_dec_format(qb__exsim_dec8(s->t_prev_close), x, sizeof x);
    qb_dec_format(qb__exsim_dec8(s->t_last - s->t_open), p, sizeof p);
    qb_dec_format(qb__exsim_dec8(s->t_last_qty), lq, sizeof lq);
    qb_level zero = {qb__exsim_dec8(0), qb__exsim_dec8(0)};
    const qb_level *b0 = qb_book_depth(s->book, QB_BID) ? qb_book_levels(s->book, QB_BID) : &zero;
    const qb_level *a0 = qb_book_depth(s->book, QB_ASK) ? qb_book_levels(s->book, QB_ASK) : &zero;
    qb_dec_format(b0->price, bp, sizeof bp);
    qb_dec_format(b0->size, bq, sizeof bq);
    qb_dec_format(a0->price, ap, sizeof ap);
    qb_dec_format(a0->size, aq, sizeof aq);
    /* price change percent with 3 decimals, integers only */
    int64_t pct1000 = s->t_open ? (s->t_last - s->t_open) * 100000 / s->t_open : 0;
    unsigned long long now = qb__exsim_now_ms();
    int rc = binance_wrap_open(out, st->name, combined);
    rc = rc ? rc
            : qb_buf_appendf(out,
                             "{\"e\":\"24hrTicker\",\"E\":%llu,\"s\":\"%s\",\"p\":\"%s\","
                             "\"P\":\"%s%lld.%03lld\",\"w\":\"%s\",\"x\":\"%s\",\"c\":\"%s\","
                             "\"Q\":\"%s\",\"b\":\"%s\",\"B\":\"%s\",\"a\":\"%s\",\"A\":\"%s\","
                             "\"o\":\"%s\",\"h\":\"%s\",\"l\":\"%s\",\"v\":\"%s\",\"q\":\"",
                             now, s->name, p, pct1000 < 0 ? "-" : "",
                             (long long)(pct1000 < 0 ? -pct1000 : pct1000) / 1000,
                             (long long)(pct1000 < 0 ? -pct1000 : pct1000) % 1000, c, x, c, lq, bp,
                             bq, ap, aq, o, h, l, v);
    rc = rc ? rc : qb__exsim_num128(out, s->t_quote_vol);
    rc = rc ? rc
            : qb_buf_appendf(
                  out, "\",\"O\":%llu,\"C\":%llu,\"F\":%llu,\"L\":%llu,\"n\":%llu}",
                  now - 86400000ull, now, (unsigned long long)(s->next_trade_id - s->t_count),
                  (unsigned long long)(s->next_trade_id - 1), (unsigned long long)s->t_count);
    return rc ? rc : binance_wrap_close(out, combined);
}

/* ---- replay (cryptofeed capture) ---- */

static int binance_parse_levels(const qb_json *j, int arr, qb_level *out, size_t *n)
{
    *n = 0;
    if (arr < 0 || !qb_json_is_array(j, arr)) {
        return QB_EPARSE;
    }
    for (int i = 0; i < j->tok[arr].size; i++) {
        int l = qb_json_at(j, arr, i);
        int tp = qb_json_at(j, l, 0), tq = qb_json_at(j, l, 1);
        if (tp < 0 || tq < 0) {
            return QB_EPARSE;
        }
        size_t pl, ql;
        const char *ps = qb_json_text(j, tp, &pl), *qs = qb_json_text(j, tq, &ql);
        if (qb_dec_parse(ps, pl, &out[*n].price) != QB_OK ||
            qb_dec_parse(qs, ql, &out[*n].size) != QB_OK) {
            return QB_EPARSE;
        }
        (*n)++;
    }
    return QB_OK;
}

static int binance_replay_snapshot(qb__exsim *sim, const char *line, size_t len)
{
    /* https://api.binance.com/api/v3/depth?symbol=NKNUSDT&limit=1000 -> <ts>: {...} */
    const char *sp = strstr(line, "symbol=");
    const char *arrow = strstr(line, " -> ");
    const char *js = arrow ? strstr(arrow, ": ") : NULL;
    if (sp == NULL || js == NULL) {
        return QB_EPARSE;
    }
    char native[QB__EXSIM_SYM_MAX];
    size_t n = 0;
    for (sp += 7; *sp && *sp != '&' && *sp != ' ' && n + 1 < sizeof native; sp++) {
        native[n++] = (char)toupper((unsigned char)*sp);
    }
    native[n] = '\0';
    js += 2;
    qb_json j;
    size_t jl = len - (size_t)(js - line);
    /* snapshots are big: tokens from the heap */
    int cap = (int)(jl / 4 + 16);
    jsmntok_t *tok = malloc((size_t)cap * sizeof *tok);
    if (tok == NULL) {
        return QB_ENOMEM;
    }
    int rc = qb_json_parse(&j, js, jl, tok, cap);
    uint64_t last_id = 0;
    int tb = -1, ta = -1;
    if (rc == QB_OK) {
        tb = qb_json_get(&j, 0, "bids");
        ta = qb_json_get(&j, 0, "asks");
        int tl = qb_json_get(&j, 0, "lastUpdateId");
        if (tb < 0 || ta < 0 || tl < 0 || qb_json_u64(&j, tl, &last_id) != QB_OK) {
            rc = QB_EPARSE;
        }
    }
    qb_level *bids = NULL, *asks = NULL;
    size_t nb = 0, na = 0;
    if (rc == QB_OK) {
        bids = malloc(((size_t)j.tok[tb].size + 1) * sizeof *bids);
        asks = malloc(((size_t)j.tok[ta].size + 1) * sizeof *asks);
        if (bids == NULL || asks == NULL) {
            rc = QB_ENOMEM;
        }
    }
    if (rc == QB_OK) {
        rc = binance_parse_levels(&j, tb, bids, &nb);
    }
    if (rc == QB_OK) {
        rc = binance_parse_levels(&j, ta, asks, &na);
    }
    if (rc == QB_OK && qb__exsim_replay_symbol(sim, native, bids, nb, asks, na, last_id) == NULL) {
        rc = QB_ENOMEM;
    }
    if (rc == QB_OK) {
        QB_INFO("exsim_replay_snapshot", "sym=%s lastUpdateId=%llu bids=%zu asks=%zu", native,
                (unsigned long long)last_id, nb, na);
    }
    free(bids);
    free(asks);
    free(tok);
    return rc;
}

static int binance_replay_frame(qb__exsim *sim, const char *line, size_t len)
{
    const char *js = strstr(line, ": ");
    if (js == NULL) {
        return QB_EPARSE;
    }
    js += 2;
    size_t jl = len - (size_t)(js - line);
    qb_json j;
    int rc = qb_json_parse(&j, js, jl, binance_tok, BINANCE_MAX_TOKENS);
    if (rc != QB_OK) {
        return rc;
    }
    int ts = qb_json_get(&j, 0, "stream"), td = qb_json_get(&j, 0, "data");
    if (ts < 0 || td < 0 || !qb_json_is_str(&j, ts) || !qb_json_is_object(&j, td)) {
        return QB_EPARSE;
    }
    size_t sl;
    const char *sname = qb_json_text(&j, ts, &sl);
    char native[QB__EXSIM_SYM_MAX], nm[QB__EXSIM_STREAM_MAX];
    qb__exsim_kind kind;
    if (!binance_stream_parse(sname, sl, native, &kind)) {
        return QB_EPARSE;
    }
    memcpy(nm, sname, sl);
    nm[sl] = '\0';
    qb__exsim_sym *sym = qb__exsim_sym_get(sim, &qb__exsim_binance_ops, native, false);
    if (sym == NULL) {
        QB_WARN("exsim_replay_no_snapshot",
                "sym=%s: frames before any REST snapshot; starting "
                "from an empty book",
                native);
        sym = qb__exsim_replay_symbol(sim, native, NULL, 0, NULL, 0, 0);
        if (sym == NULL) {
            return QB_ENOMEM;
        }
    }
    qb__exsim_stream *st = qb__exsim_stream_get(sim, &qb__exsim_binance_ops, nm, sym, kind);
    if (st == NULL) {
        return QB_ENOMEM;
    }
    const char *payload = js + j.tok[td].start;
    size_t plen = (size_t)(j.tok[td].end - j.tok[td].start);
    qb__exsim_event *ev = NULL;
    if (kind == QB__EXSIM_K_DEPTH) {
        int tb = qb_json_get(&j, td, "b"), ta = qb_json_get(&j, td, "a");
        int tU = qb_json_get(&j, td, "U"), tu = qb_json_get(&j, td, "u");
        int tE = qb_json_get(&j, td, "E");
        if (tb < 0 || ta < 0 || tU < 0 || tu < 0 || !qb_json_is_array(&j, tb) ||
            !qb_json_is_array(&j, ta)) {
            return QB_EPARSE;
        }
        ev = qb__exsim_event_new((size_t)j.tok[tb].size, (size_t)j.tok[ta].size);
        if (ev == NULL) {
            return QB_ENOMEM;
        }
        if (qb_json_u64(&j, tU, &ev->first_id) != QB_OK ||
            qb_json_u64(&j, tu, &ev->last_id) != QB_OK ||
            binance_parse_levels(&j, tb, ev->bids, &ev->n_bids) != QB_OK ||
            binance_parse_levels(&j, ta, ev->asks, &ev->n_asks) != QB_OK) {
            free(ev);
            return QB_EPARSE;
        }
        if (tE >= 0) {
            qb_json_u64(&j, tE, &ev->time_ms);
        }
    }
    return qb__exsim_replay_frame(sim, sym, st, payload, plen, ev);
}

static int binance_replay_load(qb__exsim *sim, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        QB_ERROR("exsim_replay_open_failed", "path=%s", path);
        return QB_EIO;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    size_t lineno = 0, frames = 0, skipped = 0;
    int rc = QB_OK;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
            line[--n] = '\0';
        }
        if (n == 0 || strncmp(line, "wss://", 6) == 0 || strncmp(line, "ws://", 5) == 0) {
            continue; /* client-sent messages and connection markers */
        }
        int lrc;
        if (strncmp(line, "https://", 8) == 0 || strncmp(line, "http://", 7) == 0) {
            lrc = strstr(line, "/depth?") ? binance_replay_snapshot(sim, line, (size_t)n)
                                          : QB_EUNSUPPORTED;
        } else {
            lrc = binance_replay_frame(sim, line, (size_t)n);
            frames += lrc == QB_OK;
        }
        if (lrc == QB_ENOMEM) {
            rc = lrc;
            break;
        }
        if (lrc != QB_OK) {
            skipped++;
            QB_WARN("exsim_replay_line_skipped", "path=%s line=%zu err=%s", path, lineno,
                    qb_errname(lrc));
        }
    }
    free(line);
    fclose(f);
    QB_INFO("exsim_replay_loaded", "path=%s frames=%zu skipped=%zu symbols=%zu", path, frames,
            skipped, sim->nsyms);
    if (rc == QB_OK && sim->nsyms == 0) {
        rc = QB_EPARSE;
    }
    return rc;
}

static bool binance_owns_path(const char *path, bool ws)
{
    if (!ws) {
        return strncmp(path, "/api/", 5) == 0;
    }
    return strcmp(path, "/stream") == 0 || strcmp(path, "/stream/") == 0 ||
           strcmp(path, "/ws") == 0 || strncmp(path, "/ws/", 4) == 0;
}

static bool binance_symbol_ok(const char *native)
{
    if (*native == '\0') {
        return false;
    }
    for (const char *p = native; *p; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))) {
            return false;
        }
    }
    return true;
}

/* BTCUSDT has no separator: the whole name is the "base" (the market
 * parameters go by its prefix, BTC... or ETH...). */
static void binance_base_quote(const char *native, char *base, char *quote, size_t cap)
{
    snprintf(base, cap, "%s", native);
    quote[0] = '\0';
}

const qb__exsim_ops qb__exsim_binance_ops = {
    .name = "binance",
    .ws_path = "/stream",
    .owns_path = binance_owns_path,
    .symbol_ok = binance_symbol_ok,
    .base_quote = binance_base_quote,
    .encode_ticker = binance_encode_ticker,
    .ws_open = binance_ws_open,
    .ws_message = binance_ws_message,
    .http_is_snapshot = binance_http_is_snapshot,
    .http_handle = binance_http_handle,
    .http_fault = binance_http_fault,
    .encode_depth = binance_encode_depth,
    .encode_trade = binance_encode_trade,
    .encode_raw = binance_encode_raw,
    .encode_shutdown = binance_encode_shutdown,
    .encode_malformed = binance_encode_malformed,
    .encode_oversized = binance_encode_oversized,
    .replay_load = binance_replay_load,
};
