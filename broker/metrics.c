/*
 * metrics.c: the broker's state as reports (metrics.h): GET /metrics in
 * Prometheus text format 0.0.4, GET /health as JSON, and the instrument
 * list of the websocket "list" request. ws.c, the lws glue, serves them.
 *
 * Threads: the lws service thread. Every report gathers the instruments
 * afresh from the broker's topic table (qb_broker_each_topic, under the
 * broker's state lock) into a temporary sorted array: one entry per
 * exchange + symbol, from its book, trade, status and ticker topics. The
 * array is bounded by the topics the broker tracks and freed before the
 * call returns. Label values that come from adapters (a status reason) are
 * escaped; nothing here is on the data path.
 */
#include "metrics.h"

#include "clock.h"
#include "err.h"
#include "json.h"
#include "listeners.h"
#include "log.h"
#include "topic.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One instrument (exchange + symbol) gathered from its topics. */
typedef struct metrics_inst {
    char ex[QB_TOPIC_MAX + 1];
    char sym[QB_TOPIC_MAX + 1];
    char nsym[QB_TOPICS_NSYM_MAX + 1];
    char reason[QB_TOPICS_REASON_MAX + 1];
    bool has_state, has_book, book_valid;
    qb_feed_state state;
    uint64_t seq, age_ns, resyncs;
    uint64_t state_changes[QB_TOPICS_NSTATES];
    uint64_t state_age_ns; /* time in the current state */
    unsigned kinds;        /* bit per kind: book, trade, status, ticker */
} metrics_inst;

typedef struct metrics_insts {
    metrics_inst *v;
    size_t n, cap;
    uint64_t now;
    int rc;
} metrics_insts;

/* Indexed by qb_topic_kind - QB_TOPIC_BOOK. */
static const char *const metrics_kinds[] = {"book", "trade", "status", "ticker"};

static int metrics_inst_one(void *arg, qb_str topic, const qb_topic_info *info, const qb_book *book)
{
    (void)book;
    metrics_insts *a = arg;
    qb_topic tp;
    if (qb_topic_parse(topic.p, topic.n, &tp) != QB_TOPIC_EXACT) {
        return 0;
    }
    int kind = (int)tp.kind - (int)QB_TOPIC_BOOK; /* the order of metrics_kinds */
    const char *ex = tp.ex.p, *sym = tp.sym.p;
    size_t el = tp.ex.n, sl = tp.sym.n;
    /* The broker's own status topic is no instrument (its listeners are
     * in /health "listeners" and the quotebus_listener_* metrics). */
    if (el == strlen(QB_BROKER_STATUS_EX) && memcmp(ex, QB_BROKER_STATUS_EX, el) == 0) {
        return 0;
    }
    metrics_inst *in = NULL;
    for (size_t i = 0; i < a->n; i++) {
        if (strlen(a->v[i].ex) == el && memcmp(a->v[i].ex, ex, el) == 0 &&
            strlen(a->v[i].sym) == sl && memcmp(a->v[i].sym, sym, sl) == 0) {
            in = &a->v[i];
            break;
        }
    }
    if (in == NULL) {
        if (a->n == a->cap) {
            size_t ncap = a->cap ? a->cap * 2 : 16;
            metrics_inst *nv = realloc(a->v, ncap * sizeof *nv);
            if (nv == NULL) {
                a->rc = QB_ENOMEM;
                return 1;
            }
            a->v = nv;
            a->cap = ncap;
        }
        in = &a->v[a->n++];
        memset(in, 0, sizeof *in);
        memcpy(in->ex, ex, el);
        memcpy(in->sym, sym, sl);
        in->age_ns = UINT64_MAX;
    }
    in->kinds |= 1u << kind;
    if (in->nsym[0] == '\0' && info->nsym[0] != '\0') {
        memcpy(in->nsym, info->nsym, sizeof in->nsym);
    }
    uint64_t age = a->now - info->last_update_ns;
    if (kind == 0) {
        in->has_book = true;
        in->book_valid = info->book_valid;
        in->seq = info->last_seq;
        in->age_ns = age;
    } else if (!in->has_book && age < in->age_ns) {
        in->age_ns = age;
    }
    if (kind == 2 && info->has_status) {
        in->has_state = true;
        in->state = info->feed_state;
        in->resyncs = info->resyncs;
        memcpy(in->reason, info->reason, sizeof in->reason);
        memcpy(in->state_changes, info->state_changes, sizeof in->state_changes);
        in->state_age_ns = a->now > info->state_since_ns ? a->now - info->state_since_ns : 0;
    }
    return 0;
}

static int metrics_inst_cmp(const void *a, const void *b)
{
    const metrics_inst *x = a, *y = b;
    int c = strcmp(x->ex, y->ex);
    return c != 0 ? c : strcmp(x->sym, y->sym);
}

/* The instruments, sorted; the caller frees a->v. */
static int metrics_instruments(qb_broker *broker, metrics_insts *a)
{
    memset(a, 0, sizeof *a);
    a->now = qb_mono_ns();
    qb_broker_each_topic(broker, metrics_inst_one, a);
    if (a->n > 1) {
        qsort(a->v, a->n, sizeof *a->v, metrics_inst_cmp);
    }
    return a->rc;
}

static const char *metrics_state_name(const metrics_inst *in)
{
    return in->has_state ? qb_feed_state_name(in->state) : "unknown";
}

int qb__metrics_list(qb_broker *broker, qb_buf *out)
{
    metrics_insts a;
    int rc = metrics_instruments(broker, &a);
    qb_buf_append(out, "[", 1);
    for (size_t i = 0; rc == QB_OK && i < a.n; i++) {
        metrics_inst *in = &a.v[i];
        qb_buf_appendf(out, "%s{\"ex\":", i ? "," : "");
        qb_json_append_str(out, in->ex, strlen(in->ex));
        qb_buf_append(out, ",\"sym\":", 7);
        qb_json_append_str(out, in->sym, strlen(in->sym));
        qb_buf_append(out, ",\"nsym\":", 8);
        qb_json_append_str(out, in->nsym, strlen(in->nsym));
        qb_buf_appendf(out, ",\"state\":\"%s\",\"reason\":", metrics_state_name(in));
        qb_json_append_str(out, in->reason, strlen(in->reason));
        qb_buf_appendf(out, ",\"seq\":%llu,\"age_ms\":%llu,\"book_valid\":%s,\"topics\":[",
                       (unsigned long long)in->seq,
                       (unsigned long long)(in->age_ns == UINT64_MAX ? 0 : in->age_ns / 1000000u),
                       in->book_valid ? "true" : "false");
        const char *sep = "";
        for (int k = 0; k < 4; k++) {
            if (in->kinds & (1u << k)) {
                qb_buf_appendf(out, "%s\"%s.", sep, metrics_kinds[k]);
                qb_buf_appendf(out, "%s.%s\"", in->ex, in->sym);
                sep = ",";
            }
        }
        qb_buf_append(out, "]}", 2);
    }
    free(a.v);
    return qb_buf_append(out, "]", 1);
}

/* Appends s as a Prometheus label value (text format 0.0.4): backslash,
 * double quote and line feed escaped; other control bytes and bytes >= 0x80
 * become '?' (a reason is an adapter's text, cut at QB_TOPICS_REASON_MAX
 * bytes, possibly inside a UTF-8 sequence; the JSON writes such bytes as
 * \ufffd, qb_json_append_str). */
static void metrics_prom_label(qb_buf *o, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\\' || ch == '"') {
            char e[2] = {'\\', (char)ch};
            qb_buf_append(o, e, 2);
        } else if (ch == '\n') {
            qb_buf_append(o, "\\n", 2);
        } else if (ch < 0x20 || ch >= 0x7f) {
            qb_buf_append(o, "?", 1);
        } else {
            qb_buf_append(o, s, 1);
        }
    }
}

/* Appends `{exchange="..",symbol=".."` (no closing brace) for in. */
static void metrics_prom_inst(qb_buf *o, const metrics_inst *in)
{
    qb_buf_append(o, "{exchange=\"", 11);
    metrics_prom_label(o, in->ex);
    qb_buf_append(o, "\",symbol=\"", 10);
    metrics_prom_label(o, in->sym);
    qb_buf_append(o, "\"", 1);
}

/* quotebus_listener_up / _repairs_total / _probes_total / _probe_failures_total. */
static void metrics_prom_listeners(const qb_metrics_src *s, qb_buf *o)
{
    if (s->listeners == NULL) {
        return;
    }
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        {"listener_up", "gauge",
         "1 while the listener accepts (its last probe reached the socket)"},
        {"listener_repairs_total", "counter",
         "times the listener was found not handing connections to the broker and re-created"},
        {"listener_probes_total", "counter", "end-to-end probes of the listener"},
        {"listener_probe_failures_total", "counter",
         "probes whose connection never reached the "
         "broker"},
    };
    size_t n = qb_listeners_get(s->listeners, 0, NULL);
    for (size_t k = 0; k < sizeof m / sizeof m[0]; k++) {
        qb_buf_appendf(o, "# HELP quotebus_%s %s\n# TYPE quotebus_%s %s\n", m[k].name, m[k].help,
                       m[k].name, m[k].type);
        for (size_t i = 0; i < n; i++) {
            qb_listener_info li;
            if (qb_listeners_get(s->listeners, i, &li) <= i) {
                break;
            }
            uint64_t v[] = {li.up ? 1u : 0u, li.repairs, li.probes, li.probe_fails};
            qb_buf_appendf(o, "quotebus_%s{listener=\"%s\",url=", m[k].name, li.role);
            qb_json_append_str(o, li.url, strlen(li.url));
            qb_buf_appendf(o, "} %llu\n", (unsigned long long)v[k]);
        }
    }
}

/* ,"listeners":[{"role":..,"url":..,"up":..,"repairs":..}]; *all_up false
 * when one is down. */
static void metrics_health_listeners(const qb_metrics_src *s, qb_buf *o, bool *all_up)
{
    *all_up = true;
    if (s->listeners == NULL) {
        return;
    }
    qb_buf_append(o, ",\"listeners\":[", 14);
    size_t n = qb_listeners_get(s->listeners, 0, NULL);
    for (size_t i = 0; i < n; i++) {
        qb_listener_info li;
        if (qb_listeners_get(s->listeners, i, &li) <= i) {
            break;
        }
        *all_up = *all_up && li.up;
        qb_buf_appendf(o, "%s{\"role\":\"%s\",\"url\":", i ? "," : "", li.role);
        qb_json_append_str(o, li.url, strlen(li.url));
        qb_buf_appendf(o, ",\"up\":%s,\"repairs\":%llu}", li.up ? "true" : "false",
                       (unsigned long long)li.repairs);
    }
    qb_buf_append(o, "]", 1);
}

void qb__metrics_write(const qb_metrics_src *s, qb_buf *o)
{
    qb_broker_stats b;
    qb_broker_stats_get(s->broker, &b);
    const qb_wsq_stats *q = s->q;
#define M_(name, type, help, val)                                                                  \
    qb_buf_appendf(o,                                                                              \
                   "# HELP quotebus_" name " " help "\n# TYPE quotebus_" name " " type "\n"        \
                   "quotebus_" name " %llu\n",                                                     \
                   (unsigned long long)(val))
    M_("messages_in_total", "counter", "valid messages received from adapters", b.messages_in);
    M_("frames_in_total", "counter", "frames received on ingest", b.frames_in);
    M_("frames_out_total", "counter", "frames published on NNG", b.frames_out);
    M_("ws_messages_out_total", "counter", "websocket messages sent", q->ws_sent);
    M_("ws_bytes_out_total", "counter", "websocket payload bytes sent", q->ws_bytes_sent);
    M_("gaps_total", "counter", "sequence gaps seen on ingest", b.ingest_gaps);
    M_("resyncs_total", "counter", "resyncs begun: a feed's state changed to resyncing", b.resyncs);
    M_("duplicates_total", "counter", "duplicate or old messages on ingest", b.duplicates);
    M_("crossed_total", "counter", "books found crossed", b.crossed);
    uint64_t a_restarts, a_hung, a_failed;
    qb_broker_adapter_counts(s->broker, &a_restarts, &a_hung, &a_failed);
    M_("adapter_restarts_total", "counter", "adapter restarts by the supervisor", a_restarts);
    M_("adapter_hung_kills_total", "counter", "adapters killed as hung (alive but silent)", a_hung);
    M_("adapters_failed", "gauge",
       "adapters stopped for good: exited with status 2 (bad options), not restarted", a_failed);
    metrics_prom_listeners(s, o);
    qb_buf_appendf(o, "# HELP quotebus_drops_total messages dropped, by kind\n"
                      "# TYPE quotebus_drops_total counter\n");
    const struct {
        const char *kind;
        uint64_t v;
    } drops[] = {
        {"bad_msgpack", b.bad_msgpack},
        {"bad_version", b.bad_version},
        {"oversized", b.oversized},
        {"bad_topic", b.bad_topic},
        {"rogue_publisher", b.rogue_publisher},
        {"untracked", b.untracked},
        {"pub_send", b.send_errors},
        {"ws_handoff", s->c.ws_handoff_drops},
        {"ws_conflated", q->ws_drop_conflated},
        {"ws_slow_trade", q->ws_drop_trade},
        {"ws_queue_full", q->ws_drop_full},
        {"ws_untracked", q->ws_drop_untracked},
    };
    for (size_t i = 0; i < sizeof drops / sizeof drops[0]; i++) {
        qb_buf_appendf(o, "quotebus_drops_total{kind=\"%s\"} %llu\n", drops[i].kind,
                       (unsigned long long)drops[i].v);
    }
    M_("ws_clients", "gauge", "connected websocket clients", q->ws_clients);
    M_("ws_subscriptions", "gauge", "websocket subscriptions (client x topic)",
       q->ws_subscriptions);
    M_("ws_queued_bytes", "gauge", "bytes queued to websocket clients", q->ws_queued_bytes);
    M_("ws_connections_total", "counter", "websocket connections accepted", s->c.ws_accepted);
    M_("ws_conflations_total", "counter", "times a slow client's book was conflated",
       q->ws_conflations);
    M_("ws_slow_closes_total", "counter", "slow clients closed with 4001", q->ws_slow_closes);
    M_("ws_flood_closes_total", "counter", "clients closed 1008 for a request flood",
       q->ws_flood_closes);
    M_("ws_too_big_closes_total", "counter", "clients closed 1009 for a message over the limit",
       s->c.ws_too_big_closes);
    qb_buf_appendf(o,
                   "# HELP quotebus_ws_rejected_total websocket connections refused\n"
                   "# TYPE quotebus_ws_rejected_total counter\n"
                   "quotebus_ws_rejected_total{reason=\"origin\"} %llu\n"
                   "quotebus_ws_rejected_total{reason=\"token\"} %llu\n"
                   "quotebus_ws_rejected_total{reason=\"too_many_clients\"} %llu\n",
                   (unsigned long long)s->c.ws_rejected_origin,
                   (unsigned long long)s->c.ws_rejected_token,
                   (unsigned long long)s->c.ws_rejected_full);
    qb_buf_appendf(o,
                   "# HELP quotebus_ws_snapshots_total snapshots sent to websocket clients\n"
                   "# TYPE quotebus_ws_snapshots_total counter\n"
                   "quotebus_ws_snapshots_total{reason=\"subscribe\"} %llu\n"
                   "quotebus_ws_snapshots_total{reason=\"conflated\"} %llu\n"
                   "quotebus_ws_snapshots_total{reason=\"gap\"} %llu\n",
                   (unsigned long long)q->ws_snapshots_subscribe,
                   (unsigned long long)q->ws_snapshots_conflated,
                   (unsigned long long)q->ws_snapshots_gap);
    qb_buf_appendf(o, "# HELP quotebus_ws_errors_total error replies to websocket requests\n"
                      "# TYPE quotebus_ws_errors_total counter\n");
    const struct {
        const char *code;
        uint64_t v;
    } errs[] = {
        {"bad_json", q->ws_err_bad_json},
        {"bad_request", q->ws_err_bad_request},
        {"unknown_op", q->ws_err_unknown_op},
        {"bad_topic", q->ws_err_bad_topic},
        {"too_many_subscriptions", q->ws_err_too_many_subscriptions},
        {"rate_limited", q->ws_err_rate_limited},
        {"too_big", q->ws_err_too_big},
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        qb_buf_appendf(o, "quotebus_ws_errors_total{code=\"%s\"} %llu\n", errs[i].code,
                       (unsigned long long)errs[i].v);
    }
    M_("ws_requests_total", "counter", "websocket requests received", q->ws_requests);
    M_("http_requests_total", "counter", "HTTP requests", s->c.http_requests);
    M_("topics", "gauge", "topics with state", b.topics);
    M_("books", "gauge", "books", b.books);
    M_("books_valid", "gauge", "books in sequence", b.books_valid);
    M_("ingest_publishers", "gauge", "publisher connections on ingest",
       b.ingest_connects - b.ingest_disconnects);
    if (s->snapshot != NULL) {
        qb_snapshot_stats ss;
        qb_snapshot_stats_get(s->snapshot, &ss);
        M_("snapshot_requests_total", "counter", "snapshot service requests", ss.snap_requests);
        M_("snapshot_books_total", "counter", "books sent by the snapshot service", ss.snap_books);
    }
    M_("uptime_seconds", "gauge", "seconds since start",
       (qb_mono_ns() - s->start_ns) / 1000000000u);
#undef M_
    metrics_insts a;
    metrics_instruments(s->broker, &a);
    qb_buf_appendf(o, "# HELP quotebus_instrument_last_update_age_seconds time since the "
                      "instrument's last book message (any message without a book)\n"
                      "# TYPE quotebus_instrument_last_update_age_seconds gauge\n");
    for (size_t i = 0; i < a.n; i++) {
        uint64_t age = a.v[i].age_ns == UINT64_MAX ? 0 : a.v[i].age_ns;
        qb_buf_appendf(o,
                       "quotebus_instrument_last_update_age_seconds{exchange=\"%s\",symbol=\"%s\"} "
                       "%llu.%03llu\n",
                       a.v[i].ex, a.v[i].sym, (unsigned long long)(age / 1000000000u),
                       (unsigned long long)(age / 1000000u % 1000u));
    }
    qb_buf_appendf(o, "# HELP quotebus_instrument_state feed state of the instrument (1 for "
                      "the current state)\n# TYPE quotebus_instrument_state gauge\n");
    for (size_t i = 0; i < a.n; i++) {
        qb_buf_append(o, "quotebus_instrument_state", 25);
        metrics_prom_inst(o, &a.v[i]);
        qb_buf_appendf(o, ",state=\"%s\"} 1\n", metrics_state_name(&a.v[i]));
    }
    /* The reason of the current state: an info-style gauge, one
     * series per instrument; the reason label changes with the state. */
    qb_buf_appendf(o, "# HELP quotebus_instrument_state_info current feed state of the "
                      "instrument with the reason of its last status message (always 1)\n"
                      "# TYPE quotebus_instrument_state_info gauge\n");
    for (size_t i = 0; i < a.n; i++) {
        qb_buf_append(o, "quotebus_instrument_state_info", 30);
        metrics_prom_inst(o, &a.v[i]);
        qb_buf_appendf(o, ",state=\"%s\",reason=\"", metrics_state_name(&a.v[i]));
        metrics_prom_label(o, a.v[i].reason);
        qb_buf_append(o, "\"} 1\n", 5);
    }
    qb_buf_appendf(o, "# HELP quotebus_instrument_state_seconds time since the instrument "
                      "entered its current feed state\n"
                      "# TYPE quotebus_instrument_state_seconds gauge\n");
    for (size_t i = 0; i < a.n; i++) {
        if (a.v[i].has_state) {
            qb_buf_append(o, "quotebus_instrument_state_seconds", 33);
            metrics_prom_inst(o, &a.v[i]);
            qb_buf_appendf(o, "} %llu.%03llu\n",
                           (unsigned long long)(a.v[i].state_age_ns / 1000000000u),
                           (unsigned long long)(a.v[i].state_age_ns / 1000000u % 1000u));
        }
    }
    qb_buf_appendf(o, "# HELP quotebus_instrument_state_changes_total feed state transitions "
                      "into each state, from the status messages\n"
                      "# TYPE quotebus_instrument_state_changes_total counter\n");
    for (size_t i = 0; i < a.n; i++) {
        if (!a.v[i].has_state) {
            continue;
        }
        for (int k = 0; k < QB_TOPICS_NSTATES; k++) {
            qb_buf_append(o, "quotebus_instrument_state_changes_total", 39);
            metrics_prom_inst(o, &a.v[i]);
            qb_buf_appendf(o, ",state=\"%s\"} %llu\n", qb_feed_state_name((qb_feed_state)k),
                           (unsigned long long)a.v[i].state_changes[k]);
        }
    }
    qb_buf_appendf(o, "# HELP quotebus_instrument_book_valid 1 when the broker's book is in "
                      "sequence\n# TYPE quotebus_instrument_book_valid gauge\n");
    for (size_t i = 0; i < a.n; i++) {
        if (a.v[i].has_book) {
            qb_buf_appendf(o, "quotebus_instrument_book_valid{exchange=\"%s\",symbol=\"%s\"} %d\n",
                           a.v[i].ex, a.v[i].sym, a.v[i].book_valid ? 1 : 0);
        }
    }
    qb_buf_appendf(o,
                   "# HELP quotebus_instrument_resyncs_total resyncs begun: changes of the "
                   "feed state to resyncing\n# TYPE quotebus_instrument_resyncs_total counter\n");
    for (size_t i = 0; i < a.n; i++) {
        qb_buf_appendf(o, "quotebus_instrument_resyncs_total{exchange=\"%s\",symbol=\"%s\"} %llu\n",
                       a.v[i].ex, a.v[i].sym, (unsigned long long)a.v[i].resyncs);
    }
    free(a.v);
}

void qb__metrics_health(const qb_metrics_src *s, qb_buf *o)
{
    qb_broker_stats b;
    qb_broker_stats_get(s->broker, &b);
    metrics_insts a;
    metrics_instruments(s->broker, &a);
    size_t not_live = 0;
    for (size_t i = 0; i < a.n; i++) {
        not_live += a.v[i].has_state && a.v[i].state != QB_FEED_LIVE;
    }
    qb_buf lis = QB_BUF_INIT;
    bool listeners_up;
    metrics_health_listeners(s, &lis, &listeners_up);
    uint64_t a_restarts, a_hung, a_failed;
    qb_broker_adapter_counts(s->broker, &a_restarts, &a_hung, &a_failed);
    bool ok = b.books_valid == b.books && not_live == 0 && listeners_up && a_failed == 0;
    qb_buf_appendf(o, "{\"status\":\"%s\",\"adapters_failed\":%llu%.*s", ok ? "ok" : "degraded",
                   (unsigned long long)a_failed, (int)lis.len, lis.data ? (char *)lis.data : "");
    qb_buf_fini(&lis);
    qb_buf_appendf(o,
                   ",\"version\":\"%s\",\"uptime_s\":%llu,\"books\":%llu,"
                   "\"books_valid\":%llu,\"instruments\":%zu,\"instruments_not_live\":%zu,"
                   "\"ingest_publishers\":%llu,\"ws_clients\":%llu,\"not_live\":[",
                   QB_VERSION, (unsigned long long)((qb_mono_ns() - s->start_ns) / 1000000000u),
                   (unsigned long long)b.books, (unsigned long long)b.books_valid, a.n, not_live,
                   (unsigned long long)(b.ingest_connects - b.ingest_disconnects),
                   (unsigned long long)s->q->ws_clients);
    /* Which feeds are not live, and why: the last status reason
     * and the time in that state; also books out of sequence. Bounded by
     * the number of instruments the broker tracks. */
    size_t k = 0;
    for (size_t i = 0; i < a.n; i++) {
        const metrics_inst *in = &a.v[i];
        bool bad_state = in->has_state && in->state != QB_FEED_LIVE;
        bool bad_book = in->has_book && !in->book_valid;
        if (!bad_state && !bad_book) {
            continue;
        }
        qb_buf_appendf(o, "%s{\"ex\":", k++ ? "," : "");
        qb_json_append_str(o, in->ex, strlen(in->ex));
        qb_buf_append(o, ",\"sym\":", 7);
        qb_json_append_str(o, in->sym, strlen(in->sym));
        qb_buf_appendf(o, ",\"state\":\"%s\",\"reason\":", metrics_state_name(in));
        qb_json_append_str(o, in->reason, strlen(in->reason));
        qb_buf_appendf(o, ",\"since_s\":%llu,\"book_valid\":%s}",
                       (unsigned long long)(in->state_age_ns / 1000000000u),
                       !in->has_book || in->book_valid ? "true" : "false");
    }
    qb_buf_append(o, "]}\n", 3);
    free(a.v);
}
