/*
 * exsim_htx.c: HTX (Huobi) spot's websocket market data for the simulator
 * (one ops table, qb__exsim_htx_ops). Service thread only.
 *
 * Wire (shared/exchange-protocols.md section 2; samples huobi_*):
 *   ws[s]://HOST:PORT/feed   the MBP endpoint (market.$sym.mbp.$levels and
 *                            its req exist only here)
 *   ws[s]://HOST:PORT/ws     the other market data (mbp is refused here)
 *   Every server frame is a gzip BINARY frame (zlib deflate with a gzip
 *   header: 1f 8b 08 00 00000000 00 00, like the real frames). Client
 *   messages are plain JSON text:
 *     {"sub":T,"id":I}   -> {"id":I,"status":"ok","subbed":T,"ts":ms}
 *     {"unsub":T,"id":I} -> {"id":I,"status":"ok","unsubbed":T,"ts":ms}
 *     {"req":T,"id":I}   -> {"id":I,"rep":T,"status":"ok","ts":ms,
 *                            "data":{"seqNum":N,"bids":[[p,s]..],"asks":..}}
 *                           on the same connection, at most one per
 *                           --htx-req-interval-ms (100) per connection
 *                           (faster: err-code too-many-request)
 *     {"pong":N}         answers our {"ping":N} (every --htx-ping-interval-ms,
 *                        5 s; a ping due while 2 are unanswered closes)
 *     {"ping":N}         a client ping -> {"pong":N}
 *   Errors: {"id":I,"status":"error","err-code":"bad-request","err-msg":
 *   "invalid topic market.x","ts":ms} (also "unsub with not subbed topic",
 *   "invalid json"...).
 * Topics: market.$sym.mbp.150 and mbp.400 (the simulated HTX book is at most
 * 150 levels deep, so both carry every change of the book), mbp.5 and
 * mbp.20 (tick-by-tick top-N: after every book event the top N is
 * compared with the top N last published; only changed levels are sent,
 * a side without changes is omitted entirely, and nothing is sent when
 * the top N did not change; seqNum is the book's, prevSeqNum the seqNum of
 * the stream's previous change, a req answers the top N at that seqNum),
 * market.$sym.trade.detail, market.$sym.detail (24 h: open,
 * close, high, low, amount, vol, count), market.$sym.ticker (the same plus
 * bid, bidSize, ask, askSize, lastPrice, lastSize); other well-formed
 * topics (bbo, depth.step0, kline...) are acknowledged and carry nothing.
 * Incremental: {"ch":T,"ts":ms,"tick":{"seqNum":N,"prevSeqNum":P,"asks":
 * [..],"bids":[..]}}: both sides always present (150-level behaviour: an
 * update of one side has [] for the other, nothing changed -> both []),
 * seqNum jumps, prevSeqNum = the previous update's seqNum. Prices and
 * sizes are JSON numbers printed like Java's Double.toString (716.0,
 * 0.033785, 1.58E-4), exactly the decimal value, no binary floating point.
 * Trades: {"ch","ts","tick":{"id","ts","data":[{"id":<24 or 27 digits,
 * beyond 64 bits>,"ts","tradeId","amount","price","direction"}]}},
 * direction = taker side.
 * Symbols: lower case base+quote (btcusdt).
 * Faults: the generic ones act on the mbp streams (a gap breaks the
 * prevSeqNum chain; a duplicate or a late reordered update is stale);
 * malformed = valid gzip of truncated JSON, oversized = valid gzip of a
 * --oversized-bytes stale update, corrupt = not valid gzip (bad CRC,
 * truncated member, no gzip magic, in turn), bomb = a few KB inflating to
 * --gzip-bomb-bytes (valid JSON with whitespace, stale ids); --req-fail N:
 * the first N req answer status error; --snapshot-delay-ms delays req
 * answers (the housekeeping timer sends them; events keep flowing).
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
#include <zlib.h>

#define HTX_MAX_TOKENS 256
#define HTX_MAX_LEVELS 150

static jsmntok_t htx_tok[HTX_MAX_TOKENS];

/* Process-wide encoder state (service thread): the JSON under
 * construction, one deflate stream reset per frame, the cached bomb. */
static struct {
    qb_buf js;
    z_stream z;
    bool z_ready;
    uint8_t *bomb;
    size_t bomb_len, bomb_for;
    uint64_t corrupt_n;
} htx_enc;

/* ---- gzip ---- */

static int htx_z_init(void)
{
    if (htx_enc.z_ready) {
        return deflateReset(&htx_enc.z) == Z_OK ? QB_OK : QB_EIO;
    }
    memset(&htx_enc.z, 0, sizeof htx_enc.z);
    /* 15 + 16: a gzip wrapper; level 6 writes XFL 0, like the real frames */
    if (deflateInit2(&htx_enc.z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        return QB_ENOMEM;
    }
    htx_enc.z_ready = true;
    return QB_OK;
}

/* The header fields of the real frames: no name, mtime 0, OS 0. */
static int htx_z_header(void)
{
    static gz_header h; /* zlib keeps a pointer until the header is out */
    memset(&h, 0, sizeof h);
    h.os = 0;
    return deflateSetHeader(&htx_enc.z, &h) == Z_OK ? QB_OK : QB_EIO;
}

/* Appends the gzip member of in[0..n) to out. */
static int htx_gzip(const void *in, size_t n, qb_buf *out)
{
    int rc = htx_z_init();
    rc = rc ? rc : htx_z_header();
    if (rc != QB_OK) {
        return rc;
    }
    size_t bound = deflateBound(&htx_enc.z, (uLong)n) + 64;
    if ((rc = qb_buf_reserve(out, out->len + bound)) != QB_OK) {
        return rc;
    }
    z_stream *z = &htx_enc.z;
    z->next_in = (Bytef *)(uintptr_t)in;
    z->avail_in = (uInt)n;
    z->next_out = out->data + out->len;
    z->avail_out = (uInt)bound;
    int zr = deflate(z, Z_FINISH);
    if (zr != Z_STREAM_END) {
        return QB_EIO;
    }
    out->len += bound - z->avail_out;
    return QB_OK;
}

/* Resets the JSON scratch. */
static qb_buf *htx_js(void)
{
    qb_buf_reset(&htx_enc.js);
    return &htx_enc.js;
}

static int htx_finish(qb_buf *out, bool *binary)
{
    *binary = true;
    return htx_gzip(htx_enc.js.data, htx_enc.js.len, out);
}

/* ---- names ---- */

static bool htx_symbol_ok(const char *native)
{
    if (*native == '\0') {
        return false;
    }
    for (const char *p = native; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))) {
            return false;
        }
    }
    return true;
}

static void htx_base_quote(const char *native, char *base, char *quote, size_t cap)
{
    size_t i = 0;
    for (; native[i] && i + 1 < cap; i++) {
        base[i] = (char)toupper((unsigned char)native[i]);
    }
    base[i] = '\0';
    quote[0] = '\0';
}

static bool htx_owns_path(const char *path, bool ws)
{
    return ws && (strcmp(path, "/feed") == 0 || strcmp(path, "/ws") == 0);
}

/* What a topic is. */
typedef enum htx_topic_kind {
    HTX_T_BAD = 0,
    HTX_T_MBP,
    HTX_T_TRADE,
    HTX_T_DETAIL,
    HTX_T_TICKER,
    HTX_T_OTHER,
} htx_topic_kind;

/* Parses "market.<sym>.<rest>"; native gets <sym>. */
static htx_topic_kind htx_topic_parse(const char *t, size_t n, char *native, unsigned *levels)
{
    if (n < 9 || n >= QB__EXSIM_STREAM_MAX || memcmp(t, "market.", 7) != 0) {
        return HTX_T_BAD;
    }
    const char *sym = t + 7;
    const char *dot = memchr(sym, '.', n - 7);
    if (dot == NULL || dot == sym || (size_t)(dot - sym) >= QB__EXSIM_SYM_MAX) {
        return HTX_T_BAD;
    }
    size_t sl = (size_t)(dot - sym);
    memcpy(native, sym, sl);
    native[sl] = '\0';
    if (!htx_symbol_ok(native)) {
        return HTX_T_BAD;
    }
    const char *rest = dot + 1;
    size_t rl = n - 7 - sl - 1;
    for (size_t i = 0; i < rl; i++) {
        if (!(isalnum((unsigned char)rest[i]) || rest[i] == '.' || rest[i] == '_')) {
            return HTX_T_BAD;
        }
    }
    if (rl > 4 && memcmp(rest, "mbp.", 4) == 0) {
        char num[8];
        size_t nl = rl - 4;
        if (nl >= sizeof num) {
            return HTX_T_BAD;
        }
        memcpy(num, rest + 4, nl);
        num[nl] = '\0';
        if (strcmp(num, "150") == 0 || strcmp(num, "400") == 0 || strcmp(num, "5") == 0 ||
            strcmp(num, "20") == 0) {
            *levels = (unsigned)atoi(num);
            return HTX_T_MBP;
        }
        return HTX_T_BAD;
    }
    if (rl == 12 && memcmp(rest, "trade.detail", 12) == 0) {
        return HTX_T_TRADE;
    }
    if (rl == 6 && memcmp(rest, "detail", 6) == 0) {
        return HTX_T_DETAIL;
    }
    if (rl == 6 && memcmp(rest, "ticker", 6) == 0) {
        return HTX_T_TICKER;
    }
    if ((rl == 3 && memcmp(rest, "bbo", 3) == 0) ||
        (rl == 10 && memcmp(rest, "depth.step", 10) == 0) ||
        (rl > 10 && memcmp(rest, "depth.step", 10) == 0) ||
        (rl > 6 && memcmp(rest, "kline.", 6) == 0)) {
        return HTX_T_OTHER;
    }
    return HTX_T_BAD;
}

/* ---- control replies ---- */

/* Writes the JSON text of a client id (a string of safe characters or an
 * integer), or nothing (false). */
static bool htx_id(const qb_json *j, int t, char *out, size_t cap)
{
    if (t < 0) {
        return false;
    }
    size_t n;
    const char *s = qb_json_text(j, t, &n);
    if (qb_json_is_str(j, t)) {
        if (n + 3 > cap) {
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)s[i];
            if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') {
                return false;
            }
        }
        snprintf(out, cap, "\"%.*s\"", (int)n, s);
        return true;
    }
    int64_t v;
    if (j->tok[t].type == JSMN_PRIMITIVE && qb_json_i64(j, t, &v) == QB_OK && n + 1 <= cap) {
        snprintf(out, cap, "%.*s", (int)n, s);
        return true;
    }
    return false;
}

/* Queues the gzip of the JSON in htx_enc.js on c. */
static void htx_send(qb__exsim *sim, qb__exsim_conn *c)
{
    bool binary = true;
    qb_buf *b = qb__exsim_scratch(sim);
    if (htx_finish(b, &binary) == QB_OK) {
        qb__exsim_conn_send_scratch(c, true);
    }
}

static void htx_reply_error(qb__exsim *sim, qb__exsim_conn *c, const char *id, const char *code,
                            const char *msg, const char *arg, size_t arglen)
{
    sim->st.client_errors++;
    qb_buf *js = htx_js();
    int rc = qb_buf_append(js, "{", 1);
    if (rc == QB_OK && id && *id) {
        rc = qb_buf_appendf(js, "\"id\":%s,", id);
    }
    rc = rc ? rc
            : qb_buf_appendf(js,
                             "\"status\":\"error\",\"err-code\":\"%s\",\"err-msg\":\"%s%s%.*s\","
                             "\"ts\":%llu}",
                             code, msg, arg ? " " : "", arg ? (int)arglen : 0, arg ? arg : "",
                             (unsigned long long)qb__exsim_now_ms());
    if (rc == QB_OK) {
        htx_send(sim, c);
    }
}

/* ---- levels ---- */

static int htx_levels_json(qb_buf *b, const qb_level *lv, size_t n)
{
    int rc = qb_buf_append(b, "[", 1);
    for (size_t i = 0; i < n && rc == QB_OK; i++) {
        rc = qb_buf_append(b, i ? ",[" : "[", i ? 2 : 1);
        rc = rc ? rc : qb__exsim_num(b, lv[i].price.mant, QB__EXSIM_NUM_JAVA);
        rc = rc ? rc : qb_buf_append(b, ",", 1);
        rc = rc ? rc : qb__exsim_num(b, lv[i].size.mant, QB__EXSIM_NUM_JAVA);
        rc = rc ? rc : qb_buf_append(b, "]", 1);
    }
    return rc ? rc : qb_buf_append(b, "]", 1);
}

/* ---- mbp.5 / mbp.20: top-N projections ----
 *
 *   book event -> top N now vs view (top N last published) -> changed levels
 *   (new or resized: the size; gone: 0) -> pending message {seqNum = book's,
 *   prevSeqNum = view's} -> view = top N now. The faults then decide whether
 *   the pending message is sent; the view moves on either way, so a skipped
 *   change breaks the chain exactly like a skipped mbp.150 update. */

#define HTX_PROJ_MAX 20

typedef struct htx_proj {
    unsigned n;
    uint64_t seq; /* seqNum of the view */
    size_t nb, na;
    qb_level b[HTX_PROJ_MAX], a[HTX_PROJ_MAX];
    /* the pending message of the last event */
    bool changed;
    uint64_t msg_seq, msg_prev, msg_ts;
    size_t mb, ma;
    qb_level cb[2 * HTX_PROJ_MAX], ca[2 * HTX_PROJ_MAX];
} htx_proj;

static size_t htx_top(const qb_book *book, qb_book_side side, unsigned n, qb_level *out)
{
    size_t d = qb_book_depth(book, side);
    size_t k = d < n ? d : n;
    if (k > 0) {
        memcpy(out, qb_book_levels(book, side), k * sizeof *out);
    }
    return k;
}

/* Changes from old[0..no) to now[0..nn) into out; returns their count. */
static size_t htx_diff(const qb_level *old, size_t no, const qb_level *now, size_t nn,
                       qb_level *out)
{
    size_t k = 0;
    for (size_t i = 0; i < nn; i++) {
        bool same = false;
        for (size_t j = 0; j < no && !same; j++) {
            same = qb_dec_cmp(old[j].price, now[i].price) == 0 &&
                   qb_dec_cmp(old[j].size, now[i].size) == 0;
        }
        if (!same) {
            out[k++] = now[i];
        }
    }
    for (size_t j = 0; j < no; j++) {
        bool kept = false;
        for (size_t i = 0; i < nn && !kept; i++) {
            kept = qb_dec_cmp(old[j].price, now[i].price) == 0;
        }
        if (!kept) {
            out[k++] = (qb_level){old[j].price, qb__exsim_dec8(0)};
        }
    }
    return k;
}

/* The stream of an mbp topic; a projected one gets its view of the book
 * now. NULL on ENOMEM or limits. */
static qb__exsim_stream *htx_mbp_stream(qb__exsim *sim, qb__exsim_sym *sym, const char *name,
                                        unsigned levels)
{
    qb__exsim_stream *st =
        qb__exsim_stream_get(sim, &qb__exsim_htx_ops, name, sym, QB__EXSIM_K_DEPTH);
    if (st == NULL) {
        return NULL;
    }
    st->param = levels;
    if (levels <= HTX_PROJ_MAX && st->xdata == NULL) {
        htx_proj *v = calloc(1, sizeof *v);
        if (v == NULL) {
            return NULL;
        }
        v->n = levels;
        v->seq = sym->last_id;
        v->nb = htx_top(sym->book, QB_BID, levels, v->b);
        v->na = htx_top(sym->book, QB_ASK, levels, v->a);
        st->xdata = v;
    }
    return st;
}

static void htx_on_event(qb__exsim *sim, qb__exsim_sym *sym, const qb__exsim_event *ev)
{
    for (size_t i = 0; i < sym->nstreams; i++) {
        qb__exsim_stream *st = sym->streams[i];
        htx_proj *v = st->xdata;
        if (st->kind != QB__EXSIM_K_DEPTH || v == NULL) {
            continue;
        }
        qb_level nb[HTX_PROJ_MAX], na[HTX_PROJ_MAX];
        size_t kb = htx_top(sym->book, QB_BID, v->n, nb);
        size_t ka = htx_top(sym->book, QB_ASK, v->n, na);
        v->mb = htx_diff(v->b, v->nb, nb, kb, v->cb);
        v->ma = htx_diff(v->a, v->na, na, ka, v->ca);
        v->changed = v->mb + v->ma > 0;
        if (!v->changed) {
            continue; /* tick-by-tick feeds send nothing then */
        }
        v->msg_prev = v->seq;
        v->msg_seq = ev->last_id;
        v->msg_ts = ev->time_ms;
        v->seq = ev->last_id;
        memcpy(v->b, nb, kb * sizeof nb[0]);
        memcpy(v->a, na, ka * sizeof na[0]);
        v->nb = kb;
        v->na = ka;
    }
}

/* ---- req ---- */

static void htx_answer_req(qb__exsim *sim, qb__exsim_conn *c, const char *topic, const char *id)
{
    char native[QB__EXSIM_SYM_MAX];
    unsigned levels = 0;
    if (htx_topic_parse(topic, strlen(topic), native, &levels) != HTX_T_MBP) {
        htx_reply_error(sim, c, id, "bad-request", "invalid topic", topic, strlen(topic));
        return;
    }
    qb__exsim_sym *sym = qb__exsim_sym_get(sim, &qb__exsim_htx_ops, native, true);
    if (sym == NULL) {
        htx_reply_error(sim, c, id, "bad-request", "invalid topic", topic, strlen(topic));
        return;
    }
    qb__exsim_sym_activate(sim, sym);
    qb__exsim_stream *pst = NULL;
    if (levels <= HTX_PROJ_MAX && (pst = htx_mbp_stream(sim, sym, topic, levels)) == NULL) {
        htx_reply_error(sim, c, id, "bad-request", "invalid topic", topic, strlen(topic));
        return;
    }
    if (sim->req_fail_left > 0) {
        sim->req_fail_left--;
        sim->st.fault_req_fail++;
        QB_INFO("exsim_fault_req_fail", "conn=%llu topic=%s left=%lld", (unsigned long long)c->id,
                topic, (long long)sim->req_fail_left);
        htx_reply_error(sim, c, id, "internal-error", "req failed, please retry", NULL, 0);
        sim->st.client_errors--; /* injected, not the client's fault */
        return;
    }
    size_t n = levels;
    size_t nb = qb_book_depth(sym->book, QB_BID), na = qb_book_depth(sym->book, QB_ASK);
    const qb_level *bl = qb_book_levels(sym->book, QB_BID), *al = qb_book_levels(sym->book, QB_ASK);
    uint64_t seq = sym->last_id;
    const htx_proj *v = pst ? pst->xdata : NULL;
    if (v) {
        /* the view is the book's top N (updated on every event) */
        seq = v->seq;
        bl = v->b;
        al = v->a;
        nb = v->nb;
        na = v->na;
    }
    qb_buf *js = htx_js();
    int rc = qb_buf_appendf(js,
                            "{\"id\":%s,\"rep\":\"%s\",\"status\":\"ok\",\"ts\":%llu,"
                            "\"data\":{\"seqNum\":%llu,\"bids\":",
                            *id ? id : "null", topic, (unsigned long long)qb__exsim_now_ms(),
                            (unsigned long long)seq);
    rc = rc ? rc : htx_levels_json(js, bl, nb < n ? nb : n);
    rc = rc ? rc : qb_buf_append(js, ",\"asks\":", 8);
    rc = rc ? rc : htx_levels_json(js, al, na < n ? na : n);
    rc = rc ? rc : qb_buf_append(js, "}}", 2);
    if (rc == QB_OK) {
        htx_send(sim, c);
        sim->st.reqs_served++;
        sim->st.snapshots_served++;
        QB_DEBUG("exsim_htx_req", "conn=%llu topic=%s seqNum=%llu", (unsigned long long)c->id,
                 topic, (unsigned long long)sym->last_id);
    }
}

static void htx_conn_tick(qb__exsim *sim, qb__exsim_conn *c, uint64_t now)
{
    while (c->nreq > 0 && now >= c->reqq[0].due_ns && !c->closing) {
        struct qb__exsim_pending_req r = c->reqq[0];
        c->nreq--;
        memmove(&c->reqq[0], &c->reqq[1], c->nreq * sizeof c->reqq[0]);
        htx_answer_req(sim, c, r.topic, r.id);
    }
}

/* ---- websocket ---- */

static int htx_ws_open(qb__exsim *sim, qb__exsim_conn *c, const qb__exsim_req *req,
                       int *http_status)
{
    if (c) {
        c->combined = strcmp(req->path, "/feed") == 0; /* /feed: mbp allowed */
        c->ping_interval_ms = sim->cfg->htx_ping_interval_ms;
        c->pong_timeout_ms = 0;
        c->max_missed_pings = sim->cfg->htx_max_missed_pings;
    }
    return 0;
}

static int htx_ws_message(qb__exsim *sim, qb__exsim_conn *c, const char *msg, size_t len,
                          bool binary)
{
    qb_json j;
    int rc = binary ? QB_EPARSE : qb_json_parse(&j, msg, len, htx_tok, HTX_MAX_TOKENS);
    if (rc != QB_OK || !qb_json_is_object(&j, 0)) {
        sim->st.bad_input++;
        QB_LOG_RL(QB_LOG_WARN, "exsim_htx_bad_json", "conn=%llu len=%zu binary=%d",
                  (unsigned long long)c->id, len, binary);
        htx_reply_error(sim, c, NULL, "bad-request", "invalid json", NULL, 0);
        sim->st.client_errors--;
        return 0;
    }
    char id[72] = "";
    htx_id(&j, qb_json_get(&j, 0, "id"), id, sizeof id);
    int t;
    if ((t = qb_json_get(&j, 0, "pong")) >= 0) {
        size_t n;
        const char *s = qb_json_text(&j, t, &n);
        qb__exsim_conn_pong(c, s, j.tok[t].type == JSMN_PRIMITIVE ? n : 0);
        return 0;
    }
    if ((t = qb_json_get(&j, 0, "ping")) >= 0) {
        uint64_t v;
        if (j.tok[t].type == JSMN_PRIMITIVE && qb_json_u64(&j, t, &v) == QB_OK) {
            qb_buf *js = htx_js();
            if (qb_buf_appendf(js, "{\"pong\":%llu}", (unsigned long long)v) == QB_OK) {
                htx_send(sim, c);
            }
            return 0;
        }
        htx_reply_error(sim, c, id, "bad-request", "invalid ping", NULL, 0);
        return 0;
    }
    const char *verb = NULL;
    if ((t = qb_json_get(&j, 0, "sub")) >= 0) {
        verb = "sub";
    } else if ((t = qb_json_get(&j, 0, "unsub")) >= 0) {
        verb = "unsub";
    } else if ((t = qb_json_get(&j, 0, "req")) >= 0) {
        verb = "req";
    }
    if (verb == NULL || !qb_json_is_str(&j, t)) {
        htx_reply_error(sim, c, id, "bad-request", "invalid request", NULL, 0);
        return 0;
    }
    size_t tl;
    const char *topic = qb_json_text(&j, t, &tl);
    char native[QB__EXSIM_SYM_MAX], tname[QB__EXSIM_STREAM_MAX];
    unsigned levels = 0;
    htx_topic_kind kind = htx_topic_parse(topic, tl, native, &levels);
    size_t shown = tl > 80 ? 80 : tl;
    if (kind == HTX_T_BAD || (kind == HTX_T_MBP && !c->combined)) {
        /* mbp exists only on /feed */
        htx_reply_error(sim, c, id, "bad-request", "invalid topic", topic, shown);
        return 0;
    }
    memcpy(tname, topic, tl);
    tname[tl] = '\0';
    uint64_t now = qb_mono_ns();
    if (strcmp(verb, "req") == 0) {
        if (kind != HTX_T_MBP) {
            htx_reply_error(sim, c, id, "bad-request", "invalid topic", topic, shown);
            return 0;
        }
        uint64_t gap = (uint64_t)sim->cfg->htx_req_interval_ms * 1000000u;
        if ((c->last_req_ns != 0 && now - c->last_req_ns < gap) ||
            c->nreq == QB__EXSIM_PENDING_REQS) {
            sim->st.req_rate_limited++;
            htx_reply_error(sim, c, id, "too-many-request", "too many request", NULL, 0);
            return 0;
        }
        c->last_req_ns = now;
        if (sim->cfg->snapshot_delay_ms > 0) {
            sim->st.fault_snapshot_delay++;
            struct qb__exsim_pending_req *r = &c->reqq[c->nreq++];
            r->due_ns = now + (uint64_t)sim->cfg->snapshot_delay_ms * 1000000u;
            snprintf(r->topic, sizeof r->topic, "%s", tname);
            snprintf(r->id, sizeof r->id, "%s", id);
            return 0;
        }
        htx_answer_req(sim, c, tname, id);
        return 0;
    }
    sim->st.subscribe_requests++;
    qb__exsim_kind sk = kind == HTX_T_MBP      ? QB__EXSIM_K_DEPTH
                        : kind == HTX_T_TRADE  ? QB__EXSIM_K_TRADE
                        : kind == HTX_T_DETAIL ? QB__EXSIM_K_TICKER
                        : kind == HTX_T_TICKER ? QB__EXSIM_K_TICKER
                                               : QB__EXSIM_K_OTHER;
    qb__exsim_sym *sym = qb__exsim_sym_get(sim, &qb__exsim_htx_ops, native, true);
    if (sym == NULL) {
        htx_reply_error(sim, c, id, "bad-request", "invalid topic", topic, shown);
        return 0;
    }
    qb__exsim_stream *st = kind == HTX_T_MBP
                               ? htx_mbp_stream(sim, sym, tname, levels)
                               : qb__exsim_stream_get(sim, &qb__exsim_htx_ops, tname, sym, sk);
    if (st == NULL) {
        htx_reply_error(sim, c, id, "bad-request", "invalid topic", topic, shown);
        return 0;
    }
    bool sub = strcmp(verb, "sub") == 0;
    if (sub) {
        if (qb__exsim_subscribe(c, st) != QB_OK) {
            htx_reply_error(sim, c, id, "bad-request", "too many topics", NULL, 0);
            return 0;
        }
        qb__exsim_sym_activate(sim, sym);
    } else {
        bool have = false;
        for (size_t i = 0; i < c->nstreams && !have; i++) {
            have = c->streams[i] == st;
        }
        if (!have) {
            htx_reply_error(sim, c, id, "bad-request", "unsub with not subbed topic", topic, shown);
            return 0;
        }
        qb__exsim_unsubscribe(c, st);
    }
    qb_buf *js = htx_js();
    int brc = qb_buf_append(js, "{", 1);
    if (brc == QB_OK && *id) {
        brc = qb_buf_appendf(js, "\"id\":%s,", id);
    }
    brc = brc ? brc
              : qb_buf_appendf(js, "\"status\":\"ok\",\"%s\":\"%s\",\"ts\":%llu}",
                               sub ? "subbed" : "unsubbed", tname,
                               (unsigned long long)qb__exsim_now_ms());
    if (brc == QB_OK) {
        htx_send(sim, c);
    }
    return 0;
}

/* ---- encoders ---- */

static int htx_encode_depth(qb__exsim *sim, const qb__exsim_stream *st, const qb__exsim_event *ev,
                            bool combined, qb_buf *out, bool *binary)
{
    const htx_proj *v = st->xdata;
    if (v) {
        /* mbp.5/20: the pending change of the last event (a reordered, late
         * event is not projected again: it sends the newest change) */
        if (!v->changed) {
            return QB_EEOF;
        }
        qb_buf *pj = htx_js();
        int prc = qb_buf_appendf(pj,
                                 "{\"ch\":\"%s\",\"ts\":%llu,\"tick\":{\"seqNum\":%llu,"
                                 "\"prevSeqNum\":%llu",
                                 st->name, (unsigned long long)v->msg_ts,
                                 (unsigned long long)v->msg_seq, (unsigned long long)v->msg_prev);
        if (prc == QB_OK && v->mb > 0) {
            prc = qb_buf_append(pj, ",\"bids\":", 8);
            prc = prc ? prc : htx_levels_json(pj, v->cb, v->mb);
        }
        if (prc == QB_OK && v->ma > 0) {
            prc = qb_buf_append(pj, ",\"asks\":", 8);
            prc = prc ? prc : htx_levels_json(pj, v->ca, v->ma);
        }
        prc = prc ? prc : qb_buf_append(pj, "}}", 2);
        return prc ? prc : htx_finish(out, binary);
    }
    qb_buf *js = htx_js();
    int rc = qb_buf_appendf(js,
                            "{\"ch\":\"%s\",\"ts\":%llu,\"tick\":{\"seqNum\":%llu,"
                            "\"prevSeqNum\":%llu,\"asks\":",
                            st->name, (unsigned long long)ev->time_ms,
                            (unsigned long long)ev->last_id, (unsigned long long)ev->prev_id);
    rc = rc ? rc : htx_levels_json(js, ev->asks, ev->n_asks);
    rc = rc ? rc : qb_buf_append(js, ",\"bids\":", 8);
    rc = rc ? rc : htx_levels_json(js, ev->bids, ev->n_bids);
    rc = rc ? rc : qb_buf_append(js, "}}", 2);
    return rc ? rc : htx_finish(out, binary);
}

static uint64_t htx_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int htx_encode_trade(qb__exsim *sim, const qb__exsim_stream *st, const qb__exsim_trade *t,
                            bool combined, qb_buf *out, bool *binary)
{
    /* the legacy data id: the 12-digit tick id followed by 15 (or 12)
     * more digits, 27 (or 24) digits in all, beyond 64 bits, as HTX sends
     * it (huobi_trade_detail_real_1/2) */
    unsigned long long tick_id = 100000000000ull + t->id;
    unsigned long long tail = htx_mix(t->id) % 1000000000000000ull;
    char legacy[48];
    if (t->id % 2 == 0) {
        snprintf(legacy, sizeof legacy, "%llu%015llu", tick_id, tail);
    } else {
        snprintf(legacy, sizeof legacy, "%llu%012llu", tick_id, tail % 1000000000000ull);
    }
    qb_buf *js = htx_js();
    int rc = qb_buf_appendf(js,
                            "{\"ch\":\"%s\",\"ts\":%llu,\"tick\":{\"id\":%llu,\"ts\":%llu,"
                            "\"data\":[{\"id\":%s,\"ts\":%llu,\"tradeId\":%llu,\"amount\":",
                            st->name, (unsigned long long)t->time_ms, tick_id,
                            (unsigned long long)t->time_ms, legacy, (unsigned long long)t->time_ms,
                            (unsigned long long)t->id);
    rc = rc ? rc : qb__exsim_num(js, t->qty.mant, QB__EXSIM_NUM_JAVA);
    rc = rc ? rc : qb_buf_append(js, ",\"price\":", 9);
    rc = rc ? rc : qb__exsim_num(js, t->price.mant, QB__EXSIM_NUM_JAVA);
    rc = rc ? rc : qb_buf_appendf(js, ",\"direction\":\"%s\"}]}}", t->buyer_maker ? "sell" : "buy");
    return rc ? rc : htx_finish(out, binary);
}

static int htx_field(qb_buf *js, const char *key, int64_t v)
{
    int rc = qb_buf_appendf(js, "\"%s\":", key);
    rc = rc ? rc : qb__exsim_num(js, v, QB__EXSIM_NUM_JAVA);
    return rc ? rc : qb_buf_append(js, ",", 1);
}

/* market.$sym.detail: {"id","low","high","open","close","vol","amount",
 * "version","count"} (24 h rolling; vol = quote turnover, amount = base
 * volume); market.$sym.ticker adds bid/ask with sizes and the last trade. */
static int htx_encode_ticker(qb__exsim *sim, const qb__exsim_stream *st, bool combined, qb_buf *out,
                             bool *binary)
{
    const qb__exsim_sym *s = st->sym;
    if (s == NULL) {
        return QB_EINVAL;
    }
    unsigned long long now = qb__exsim_now_ms();
    bool ticker = strlen(st->name) > 7 && strcmp(st->name + strlen(st->name) - 7, ".ticker") == 0;
    qb_buf *js = htx_js();
    int rc = qb_buf_appendf(js, "{\"ch\":\"%s\",\"ts\":%llu,\"tick\":{", st->name, now);
    if (rc == QB_OK && !ticker) {
        rc = qb_buf_appendf(js, "\"id\":%llu,", now / 1000u);
    }
    rc = rc ? rc : htx_field(js, "low", s->t_low);
    rc = rc ? rc : htx_field(js, "high", s->t_high);
    rc = rc ? rc : htx_field(js, "open", s->t_open);
    rc = rc ? rc : htx_field(js, "close", s->t_last);
    rc = rc ? rc : qb_buf_append(js, "\"vol\":", 6);
    rc = rc ? rc : qb__exsim_num128(js, s->t_quote_vol);
    rc = rc ? rc : qb_buf_append(js, ",", 1);
    rc = rc ? rc : htx_field(js, "amount", s->t_vol);
    if (rc == QB_OK && ticker) {
        qb_level zero = {qb__exsim_dec8(0), qb__exsim_dec8(0)};
        const qb_level *b0 =
            qb_book_depth(s->book, QB_BID) ? qb_book_levels(s->book, QB_BID) : &zero;
        const qb_level *a0 =
            qb_book_depth(s->book, QB_ASK) ? qb_book_levels(s->book, QB_ASK) : &zero;
        rc = rc ? rc : htx_field(js, "bid", b0->price.mant);
        rc = rc ? rc : htx_field(js, "bidSize", b0->size.mant);
        rc = rc ? rc : htx_field(js, "ask", a0->price.mant);
        rc = rc ? rc : htx_field(js, "askSize", a0->size.mant);
        rc = rc ? rc : htx_field(js, "lastPrice", s->t_last);
        rc = rc ? rc : htx_field(js, "lastSize", s->t_last_qty);
        rc = rc ? rc : qb_buf_appendf(js, "\"count\":%llu}}", (unsigned long long)s->t_count);
    } else if (rc == QB_OK) {
        rc = qb_buf_appendf(js, "\"version\":%llu,\"count\":%llu}}", (unsigned long long)s->last_id,
                            (unsigned long long)s->t_count);
    }
    return rc ? rc : htx_finish(out, binary);
}

static int htx_encode_raw(qb__exsim *sim, const qb__exsim_stream *st, const char *payload,
                          size_t len, bool combined, qb_buf *out, bool *binary)
{
    *binary = true;
    return htx_gzip(payload, len, out);
}

static int htx_encode_malformed(qb__exsim *sim, const qb__exsim_stream *st, bool combined,
                                qb_buf *out, bool *binary)
{
    /* valid gzip, truncated JSON */
    qb_buf *js = htx_js();
    int rc = qb_buf_appendf(js, "{\"ch\":\"%s\",\"ts\":%llu,\"tick\":{\"seqNum\":", st->name,
                            (unsigned long long)qb__exsim_now_ms());
    return rc ? rc : htx_finish(out, binary);
}

/* A stale update (seqNum 1) of about bytes inflated, many distinct levels
 * (poorly compressible, unlike the bomb). */
static int htx_encode_oversized(qb__exsim *sim, const qb__exsim_stream *st, size_t bytes,
                                bool combined, qb_buf *out, bool *binary)
{
    qb_buf *js = htx_js();
    int rc = qb_buf_appendf(js,
                            "{\"ch\":\"%s\",\"ts\":%llu,\"tick\":{\"seqNum\":1,"
                            "\"prevSeqNum\":0,\"asks\":[],\"bids\":[",
                            st->name, (unsigned long long)qb__exsim_now_ms());
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; rc == QB_OK && js->len + 48 < bytes; i++) {
        x = htx_mix(x + i);
        rc = qb_buf_appendf(js, "%s[%llu.%08llu,0.0]", i ? "," : "",
                            (unsigned long long)(x % 100000u),
                            (unsigned long long)(x >> 40) % 100000000u);
    }
    rc = rc ? rc : qb_buf_append(js, "]}}", 3);
    return rc ? rc : htx_finish(out, binary);
}

static int htx_encode_corrupt(qb__exsim *sim, const qb__exsim_stream *st, qb_buf *out, bool *binary)
{
    /* the gzip of an update that looks next in line, then broken, in
     * turn: bad CRC, truncated member, no gzip magic at all */
    const qb__exsim_sym *s = st->sym;
    qb_buf *js = htx_js();
    int rc = qb_buf_appendf(js,
                            "{\"ch\":\"%s\",\"ts\":%llu,\"tick\":{\"seqNum\":%llu,"
                            "\"prevSeqNum\":%llu,\"asks\":[[1.0,1.0]],\"bids\":[]}}",
                            st->name, (unsigned long long)qb__exsim_now_ms(),
                            (unsigned long long)(s ? s->last_id + 1 : 2),
                            (unsigned long long)(s ? s->last_id : 1));
    size_t start = out->len;
    rc = rc ? rc : htx_finish(out, binary);
    if (rc != QB_OK) {
        return rc;
    }
    size_t n = out->len - start;
    uint8_t *g = out->data + start;
    switch (htx_enc.corrupt_n++ % 3) {
    case 0:
        g[n - 8] ^= 0x5a; /* CRC32 */
        g[n - 7] ^= 0xa5;
        break;
    case 1:
        out->len = start + n / 2; /* truncated */
        break;
    default:
        g[0] = 0x78; /* a zlib header, not gzip */
        g[1] = 0x9c;
        break;
    }
    return QB_OK;
}

static int htx_encode_bomb(qb__exsim *sim, const qb__exsim_stream *st, size_t bytes, qb_buf *out,
                           bool *binary)
{
    *binary = true;
    if (htx_enc.bomb == NULL || htx_enc.bomb_for != bytes) {
        /* built once: stale valid JSON padded with spaces, deflated in
         * chunks (never bytes of memory) */
        free(htx_enc.bomb);
        htx_enc.bomb = NULL;
        int rc = htx_z_init();
        rc = rc ? rc : htx_z_header();
        if (rc != QB_OK) {
            return rc;
        }
        static const char head[] =
            "{\"ch\":\"market.bomb.mbp.150\",\"ts\":0,\"tick\":{\"seqNum\":1,\"prevSeqNum\":0,"
            "\"asks\":[],\"bids\":[]";
        static char spaces[65536];
        memset(spaces, ' ', sizeof spaces);
        size_t cap = bytes / 500 + 4096, len = 0;
        uint8_t *buf = malloc(cap);
        if (buf == NULL) {
            return QB_ENOMEM;
        }
        z_stream *z = &htx_enc.z;
        /* head + spaces + "}}" is exactly bytes */
        size_t left = bytes > sizeof head + 1 ? bytes - (sizeof head - 1) - 2 : 0;
        int phase = 0; /* 0 head, 1 spaces, 2 tail, 3 finish */
        int zr = Z_OK;
        while (zr != Z_STREAM_END) {
            if (z->avail_in == 0) {
                if (phase == 0) {
                    z->next_in = (Bytef *)(uintptr_t)head;
                    z->avail_in = sizeof head - 1;
                    phase = 1;
                } else if (phase == 1 && left > 0) {
                    size_t k = left < sizeof spaces ? left : sizeof spaces;
                    z->next_in = (Bytef *)spaces;
                    z->avail_in = (uInt)k;
                    left -= k;
                } else if (phase <= 1) {
                    z->next_in = (Bytef *)(uintptr_t) "}}";
                    z->avail_in = 2;
                    phase = 2;
                } else {
                    phase = 3;
                }
            }
            if (len + 1024 > cap) {
                uint8_t *nb = realloc(buf, cap * 2);
                if (nb == NULL) {
                    free(buf);
                    return QB_ENOMEM;
                }
                buf = nb;
                cap *= 2;
            }
            z->next_out = buf + len;
            z->avail_out = (uInt)(cap - len);
            zr = deflate(z, phase == 3 ? Z_FINISH : Z_NO_FLUSH);
            len = cap - z->avail_out;
            if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
                free(buf);
                return QB_EIO;
            }
        }
        htx_enc.bomb = buf;
        htx_enc.bomb_len = len;
        htx_enc.bomb_for = bytes;
        QB_INFO("exsim_htx_bomb_built", "inflated=%zu deflated=%zu", bytes, len);
    }
    return qb_buf_append(out, htx_enc.bomb, htx_enc.bomb_len);
}

static int htx_encode_keepalive(qb__exsim *sim, qb__exsim_conn *c, char *token, size_t cap,
                                qb_buf *out, bool *binary)
{
    unsigned long long ms = qb__exsim_now_ms();
    snprintf(token, cap, "%llu", ms);
    qb_buf *js = htx_js();
    int rc = qb_buf_appendf(js, "{\"ping\":%llu}", ms);
    return rc ? rc : htx_finish(out, binary);
}

static void htx_fini(void)
{
    qb_buf_fini(&htx_enc.js);
    if (htx_enc.z_ready) {
        deflateEnd(&htx_enc.z);
        htx_enc.z_ready = false;
    }
    free(htx_enc.bomb);
    htx_enc.bomb = NULL;
}

const qb__exsim_ops qb__exsim_htx_ops = {
    .name = "htx",
    .ws_path = "/feed",
    .owns_path = htx_owns_path,
    .symbol_ok = htx_symbol_ok,
    .base_quote = htx_base_quote,
    .max_depth = HTX_MAX_LEVELS,
    .sparse_ids = true,
    .empty_events = true,
    .small_sizes = true,
    .ws_open = htx_ws_open,
    .ws_message = htx_ws_message,
    .encode_depth = htx_encode_depth,
    .encode_trade = htx_encode_trade,
    .encode_raw = htx_encode_raw,
    .encode_malformed = htx_encode_malformed,
    .encode_oversized = htx_encode_oversized,
    .encode_keepalive = htx_encode_keepalive,
    .encode_ticker = htx_encode_ticker,
    .encode_corrupt = htx_encode_corrupt,
    .encode_bomb = htx_encode_bomb,
    .conn_tick = htx_conn_tick,
    .on_event = htx_on_event,
    .fini = htx_fini,
};
