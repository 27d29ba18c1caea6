/*
 * adapter.c: the adapter framework: the lws context and its one service
 * thread, instruments, routing of parsed messages, snapshot fetches,
 * staleness, refresh snapshots, the stats file, shutdown.
 *
 *   ws_conn --message--> qb__adapter_on_message --ops->decode/parse--> qb_event
 *      DEPTH  -> instrument (by native symbol) -> qb_sync -> publish delta
 *      BOOK_FULL -> qb_sync_on_full -> publish snapshot or exact delta
 *      SNAPSHOT (websocket req answer) -> qb_sync_on_snapshot
 *      TRADE  -> publish each trade not seen before (tradeId ring)
 *      TICKER -> publish ticker
 *      REPLY  -> send the answer (HTX pong) on the same connection
 *      SHUTDOWN -> recycle the connection (reconnect at once)
 *   a lost frame (HTX: corrupt gzip, inflates past --max-frame; any
 *   exchange: oversized, unparseable) is counted (bad_gzip, gzip_oversized,
 *   oversized, bad_json) and the connection stays up. When its channel can
 *   still be read (ops->lost_frame_kind) only that symbol's book is
 *   suspect; otherwise every live book of the connection is
 *   (ops->suspect_on_lost_frame): each one's next depth event confirms it
 *   or resyncs that book alone (sync.h, qb_sync_suspect), and one with no
 *   event within QB_SYNC_SUSPECT_MS resyncs.
 *   qb_sync --want_snapshot--> a->fetchq (budget.h) --adapter_pump_cb-->
 *         rest.c GET or websocket req -> parse_snapshot
 *         -> qb_sync_on_snapshot -> publish snapshot + status live
 *
 * Timers (lws_sul, all on the service thread, all cancelled at shutdown):
 *   per connection: reconnect backoff, max age, healthy (ws_conn.c);
 *   per instrument: snapshot request watchdog, suspect timeout, staleness;
 *   per adapter: snapshot request pump, resync progress (1 s), refresh
 *   snapshots, stats file.
 *
 * Refresh snapshots (contract with the broker): every --refresh-ms the
 * adapter publishes the full book of every live instrument as a snapshot
 * with refresh=true and seq equal to the topic's last seq (not incremented).
 * A broker or subscriber that lost messages (NNG PUB drops when a buffer is
 * full, or it restarted) therefore holds an exact book again within
 * refresh-ms (plus transit) without asking anyone: a refresh carries the
 * complete state as of that seq.
 *
 * Websocket snapshot requests (HTX req) are paced per connection: at most
 * one per ops->ws_request_interval_ms (HTX allows one per 100 ms); a fetch
 * due earlier is moved to the next free slot (counted requests_paced).
 * Full-book exchanges (Bithumb) never fetch: the next message is the
 * snapshot.
 *
 * Snapshot fetch policy: one queue per process (a->fetchq, budget.h) with
 * at most one entry per instrument, and at most one request outstanding
 * per instrument (queued, or in flight: GET or websocket req). The pump
 * (adapter_pump_cb: on every want, every answer, and its own timer)
 * starts the queued book that has waited longest (since it broke, or since
 * its own last request in this spell), not the first to ask, as long as
 * fewer than QB_FETCH_MAX_INFLIGHT GETs are in flight, its connection may
 * send a req (HTX pacing) and the process-wide snapshot budget has a
 * token (a->budget: the exchange's weight budget over the weight of one
 * request at --depth-limit, e.g. Binance 5000/min over 50 = 100/min). Per
 * instrument: at least QB_FETCH_MIN_INTERVAL_MS between two starts, a
 * watchdog of QB_FETCH_TIMEOUT_MS, and on failure (HTTP 429/418/5xx,
 * network error, malformed body) exponential backoff 1 s doubling to 60 s
 * with jitter, never earlier than the server's Retry-After; a 429/418
 * answer pauses the snapshot requests of every instrument until its
 * Retry-After (418 without one: 120 s). So with N books broken at once and
 * a budget of B requests per minute (burst B/10), the last one's request
 * starts within max(0, N - B/10) * 60/B s (README, "No silent loss").
 * While a book waits, its status is re-published at 5, 10, 20, 40... s
 * with "resyncing for N s" and its place in the queue in the reason; the
 * stats file has each book's resyncing_ms, queue position and heal times.
 */
#include "adapter_int.h"

#include "clock.h"
#include "err.h"
#include "event_msg.h"
#include "file.h"
#include "json.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QB_FETCH_MIN_INTERVAL_MS 1000
#define QB_FETCH_MAX_INFLIGHT 4 /* per process: REST weight limits are per IP */
#define QB_FETCH_TIMEOUT_MS 20000
#define QB_FETCH_BACKOFF_MIN_MS 1000
#define QB_FETCH_BACKOFF_MAX_MS 60000
#define QB_PROGRESS_FIRST_S 5 /* first "resyncing for N s" status; then doubling */
#define QB_STATS_INTERVAL_MS 500
#define QB_SYSTEM_CA_DIR "/etc/ssl/certs"
#define QB_SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

/* Set only while lws_create_context runs (on the creating thread), for the
 * CA loading callback that has no other way to find its adapter. */
static qb_adapter *adapter_creating;

/* ---- publishing ---------------------------------------------------------- */

/* The header of every message of instrument in (event_msg.h). */
static qb_msg_origin adapter_origin(const qb_inst *in)
{
    return (qb_msg_origin){
        .exchange = {in->a->ops->name, strlen(in->a->ops->name)},
        .symbol = {in->symbol, strlen(in->symbol)},
        .native = {in->native, strlen(in->native)},
    };
}

static void adapter_publish_book(qb_inst *in, bool refresh, uint64_t recv_ts, uint64_t exch_ts)
{
    if (!refresh) {
        in->book_seq++;
    }
    qb_msg_origin o = adapter_origin(in);
    qb_msg m;
    qb__book_snapshot_msg(&o, in->book_seq, refresh, recv_ts, exch_ts, in->sync.book_id,
                          qb_sync_book(&in->sync), &m);
    qb__pub_send(in->a->pub, &m);
    in->book_published = true;
}

/* " (suppressed=N)" for a rate-limited line after N dropped ones, else "".
 * One static buffer: the lws service thread is the only caller. */
static const char *adapter_suppressed(uint64_t n)
{
    static char buf[40];
    if (n == 0) {
        return "";
    }
    snprintf(buf, sizeof buf, " (suppressed=%llu)", (unsigned long long)n);
    return buf;
}

static void adapter_sync_on_snapshot(qb_sync *s, const qb_event *snap)
{
    qb_inst *in = s->user;
    uint64_t sup;
    if (qb_log_get_level() >= QB_LOG_INFO && qb_log_rl_allow(&in->log_rl, &sup)) {
        QB_INFO("snapshot_applied", "symbol=%s lastUpdateId=%llu bids=%zu asks=%zu%s", in->symbol,
                (unsigned long long)snap->last_id, qb_book_depth(s->book, QB_BID),
                qb_book_depth(s->book, QB_ASK), adapter_suppressed(sup));
    }
    adapter_publish_book(in, false, snap->recv_ts ? snap->recv_ts : qb_now_ns(), snap->exch_ts);
}

static void adapter_sync_on_delta(qb_sync *s, const qb_event *ev)
{
    qb_inst *in = s->user;
    if (ev->n_bids == 0 && ev->n_asks == 0) {
        /* HTX sends an update with both sides empty every 100 ms when
         * nothing changed: it keeps the chain (sync.c checked it) but
         * changes no level, so nothing is published (the next delta or
         * refresh snapshot carries the newer lid). */
        in->a->cnt.empty_updates++;
        return;
    }
    qb_msg_origin o = adapter_origin(in);
    qb_msg m;
    qb__event_delta_msg(&o, ++in->book_seq, ev, &m);
    qb__pub_send(in->a->pub, &m);
}

static void adapter_publish_status(qb_inst *in, qb_feed_state st, const char *reason)
{
    qb_msg_origin o = adapter_origin(in);
    qb_msg m;
    qb__status_msg(&o, ++in->status_seq, qb_now_ns(), st, reason, &m);
    qb__pub_send(in->a->pub, &m);
}

static void adapter_sync_on_state(qb_sync *s, qb_feed_state st, const char *reason)
{
    qb_inst *in = s->user;
    qb_adapter *a = in->a;
    uint64_t now = qb_mono_ns();
    if (st == QB_FEED_LIVE || st == QB_FEED_STALE) {
        if (in->broken_since) {
            /* Healed: the book is exact again. */
            uint64_t d = now - in->broken_since;
            in->heals++;
            in->last_heal_ns = d;
            in->max_heal_ns = d > in->max_heal_ns ? d : in->max_heal_ns;
            a->heals++;
            a->heal_max_ns = d > a->heal_max_ns ? d : a->heal_max_ns;
            in->broken_since = 0;
        }
    } else if (in->broken_since == 0) {
        /* A broken spell starts: the heal clock and the queue's order. */
        in->broken_since = now;
        in->last_req_mono = 0;
        in->progress_s = QB_PROGRESS_FIRST_S;
        in->resyncs += st == QB_FEED_RESYNCING;
    }
    /* A book that breaks while the adapter stops is no news. */
    qb_log_level lvl =
        st == QB_FEED_LIVE || st == QB_FEED_SYNCING || a->stopping ? QB_LOG_INFO : QB_LOG_WARN;
    uint64_t sup;
    if (lvl <= qb_log_get_level() && qb_log_rl_allow(&in->log_rl, &sup)) {
        qb_log(lvl, "feed_state", "symbol=%s state=%s%s%s%s", in->symbol, qb_feed_state_name(st),
               reason[0] ? " reason=" : "", reason, adapter_suppressed(sup));
    }
    adapter_publish_status(in, st, reason);
}

/* ---- snapshot fetches ------------------------------------------------------ */

static void adapter_fetch_cb(lws_sorted_usec_list_t *sul);
static void adapter_pump_cb(lws_sorted_usec_list_t *sul);

/* The watchdog of the instrument's outstanding request. */
static void adapter_watchdog_arm(qb_inst *in, uint64_t delay_ms)
{
    if (in->a->stopping) {
        return;
    }
    lws_sul_schedule(in->a->ctx, 0, &in->sul_fetch, adapter_fetch_cb,
                     (lws_usec_t)delay_ms * LWS_US_PER_MS);
}

/* Runs the pump after delay_ms (0: on the next service pass, never from
 * inside the caller: sync.c callbacks ask for snapshots mid-update). */
static void adapter_pump_schedule(qb_adapter *a, uint64_t delay_ms)
{
    if (a->stopping) {
        return;
    }
    lws_sul_schedule(a->ctx, 0, &a->sul_pump, adapter_pump_cb,
                     (lws_usec_t)delay_ms * LWS_US_PER_MS);
}

/* Queues in for a snapshot request in delay_ms at the earliest (never
 * before its minimum interval). Its place: since the book broke, or since
 * its own last request of this spell (a stale or failed answer goes
 * behind the books that have not had one). */
static void adapter_fetch_want(qb_inst *in, uint64_t delay_ms)
{
    qb_adapter *a = in->a;
    uint64_t now = qb_mono_ns();
    uint64_t nb = now + delay_ms * 1000000u;
    if (in->next_fetch_mono > nb) {
        nb = in->next_fetch_mono;
    }
    uint64_t since = in->last_req_mono  ? in->last_req_mono
                     : in->broken_since ? in->broken_since
                                        : now;
    if (qb_fetchq_want(&a->fetchq, &in->fq, since, nb) != QB_OK) {
        return; /* cannot happen: one entry per instrument, sized for all */
    }
    adapter_pump_schedule(a, 0);
}

static void adapter_sync_want_snapshot(qb_sync *s, uint32_t delay_ms)
{
    qb_inst *in = s->user;
    if (in->a->ops->full_book || in->a->stopping) {
        return; /* the next full book is the snapshot */
    }
    if (in->req || in->ws_fetch_pending) {
        return; /* one outstanding per instrument: its answer or watchdog decides */
    }
    adapter_fetch_want(in, delay_ms);
}

static const qb_sync_ops adapter_sync_ops = {
    .on_snapshot = adapter_sync_on_snapshot,
    .on_delta = adapter_sync_on_delta,
    .on_state = adapter_sync_on_state,
    .want_snapshot = adapter_sync_want_snapshot,
};

static void adapter_fetch_failed(qb_inst *in, qb_feed_state st, const char *reason,
                                 uint32_t retry_after_ms)
{
    qb_adapter *a = in->a;
    uint64_t base = QB_FETCH_BACKOFF_MIN_MS;
    for (uint32_t k = 0; k < in->fetch_failures && base < QB_FETCH_BACKOFF_MAX_MS; k++) {
        base *= 2;
    }
    if (base > QB_FETCH_BACKOFF_MAX_MS) {
        base = QB_FETCH_BACKOFF_MAX_MS;
    }
    uint64_t delay = qb__adapter_rand(a, base - base / 4, base + base / 4);
    if (retry_after_ms > delay) {
        delay = retry_after_ms;
    }
    in->fetch_failures++;
    char why[QB_EVENT_INFO_MAX];
    snprintf(why, sizeof why, "%s (retry in %llu ms)", reason, (unsigned long long)delay);
    QB_LOG_RL(QB_LOG_WARN, "snapshot_failed", "symbol=%s %s", in->symbol, why);
    in->next_fetch_mono = 0;
    qb_sync_on_snapshot_error(&in->sync, st, why, (uint32_t)delay);
}

static void adapter_rest_cb(void *user, int status, const char *body, size_t len,
                            uint32_t retry_after_ms, const char *err)
{
    qb_inst *in = user;
    qb_adapter *a = in->a;
    in->req = NULL;
    a->fetch_inflight--;
    lws_sul_cancel(&in->sul_fetch); /* the watchdog */
    if (a->stopping) {
        return;
    }
    adapter_pump_schedule(a, 0); /* a GET slot is free */
    if (in->sync.state != QB_SYNC_WAITING) {
        return;
    }
    char why[QB_EVENT_INFO_MAX];
    if (err) {
        snprintf(why, sizeof why, "snapshot request failed: %s", err);
        adapter_fetch_failed(in, QB_FEED_DOWN, why, 0);
        return;
    }
    if (status != 200) {
        char excerpt[64];
        size_t n = len < sizeof excerpt - 1 ? len : sizeof excerpt - 1;
        for (size_t k = 0; k < n; k++) {
            excerpt[k] = (body[k] >= 0x20 && body[k] < 0x7f) ? body[k] : '?';
        }
        excerpt[n] = '\0';
        snprintf(why, sizeof why, "snapshot HTTP %d%s%s", status, n ? ": " : "", excerpt);
        /* 429/418 pause every snapshot request of the process (budget.c). */
        uint32_t block_ms = qb_budget_http(&a->budget, status, retry_after_ms, qb_mono_ns());
        adapter_fetch_failed(in, QB_FEED_RESYNCING, why,
                             block_ms > retry_after_ms ? block_ms : retry_after_ms);
        return;
    }
    qb_event ev;
    int rc = a->ops->parse_snapshot(a->xstate, &a->parser, body, len, &ev);
    if (rc != QB_OK) {
        a->cnt.bad_json++;
        snprintf(why, sizeof why, "snapshot body rejected (%zu bytes): %s", len, qb_strerror(rc));
        adapter_fetch_failed(in, QB_FEED_RESYNCING, why, 0);
        return;
    }
    snprintf(ev.native, sizeof ev.native, "%s", in->native);
    ev.recv_ts = qb_now_ns();
    rc = qb_sync_on_snapshot(&in->sync, &ev);
    if (rc == QB_OK) {
        in->fetch_failures = 0;
        in->last_update_mono = qb_mono_ns();
    }
}

/* The watchdog: the instrument's outstanding request got no answer. */
static void adapter_fetch_cb(lws_sorted_usec_list_t *sul)
{
    qb_inst *in = lws_container_of(sul, qb_inst, sul_fetch);
    qb_adapter *a = in->a;
    if (a->stopping) {
        return;
    }
    if (in->req) {
        qb__rest_cancel(in->req);
        in->req = NULL;
        a->fetch_inflight--;
        adapter_pump_schedule(a, 0);
        adapter_fetch_failed(in, QB_FEED_RESYNCING, "snapshot request timed out", 0);
        return;
    }
    if (in->ws_fetch_pending) {
        in->ws_fetch_pending = false;
        adapter_fetch_failed(in, QB_FEED_RESYNCING, "snapshot answer timed out", 0);
    }
}

/* qb_fetchq_ready_fn: the websocket request pacing (HTX: one req per
 * connection per ws_request_interval_ms) and a connection that is up. */
static bool adapter_fetch_ready(void *ctx, qb_fetchq_item *it, uint64_t now, uint64_t *wait_ns)
{
    qb_adapter *a = ctx;
    qb_inst *in = it->user;
    if (a->ops->snapshot_url != NULL) {
        return true;
    }
    qb_wsconn *c = in->conn;
    if (!c->established) {
        *wait_ns = 0; /* the connection's comeback restarts the instrument */
        return false;
    }
    if (a->ops->ws_request_interval_ms && c->next_req_mono > now) {
        a->cnt.requests_paced++;
        *wait_ns = c->next_req_mono - now;
        return false;
    }
    return true;
}

/* Starts in's snapshot request now (the pump chose it, the budget token
 * is taken). */
static void adapter_fetch_start(qb_inst *in, uint64_t now)
{
    qb_adapter *a = in->a;
    if (in->sync.state != QB_SYNC_WAITING || in->req || in->ws_fetch_pending) {
        return;
    }
    in->last_req_mono = now;
    in->next_fetch_mono = now + (uint64_t)QB_FETCH_MIN_INTERVAL_MS * 1000000u;
    a->cnt.snapshot_requests++;
    if (a->ops->snapshot_url == NULL) {
        /* Snapshot over the websocket (HTX style): the answer comes back as
         * a QB_EV_SNAPSHOT message on the instrument's connection; the
         * watchdog asks again when it does not. */
        qb_wsconn *c = in->conn;
        c->next_req_mono = now + (uint64_t)a->ops->ws_request_interval_ms * 1000000u;
        qb_buf msg = QB_BUF_INIT;
        int rc = a->ops->snapshot_ws_request(&a->xcfg, in->native, &msg);
        if (rc == QB_OK) {
            QB_DEBUG("snapshot_request", "symbol=%s %.*s", in->symbol, (int)msg.len,
                     (const char *)msg.data);
            rc = qb__wsconn_send(in->conn, (const char *)msg.data, msg.len);
        }
        qb_buf_fini(&msg);
        if (rc != QB_OK) {
            adapter_fetch_failed(in, QB_FEED_RESYNCING, "snapshot request not sent", 0);
            return;
        }
        in->ws_fetch_pending = true;
        adapter_watchdog_arm(in, QB_FETCH_TIMEOUT_MS);
        return;
    }
    qb_buf url = QB_BUF_INIT;
    char err[200];
    if (a->ops->snapshot_url(a->cfg.rest_url, in->native, a->cfg.depth_limit, &url) != QB_OK ||
        qb_buf_append(&url, "", 1) != QB_OK) {
        qb_buf_fini(&url);
        adapter_fetch_failed(in, QB_FEED_RESYNCING, "out of memory", 0);
        return;
    }
    QB_DEBUG("snapshot_request", "symbol=%s GET %s", in->symbol, (const char *)url.data);
    in->req = qb__rest_get(a->ctx, (const char *)url.data, a->cfg.max_body, adapter_rest_cb, in,
                           err, sizeof err);
    qb_buf_fini(&url);
    if (in->req == NULL) {
        char why[QB_EVENT_INFO_MAX];
        snprintf(why, sizeof why, "snapshot request failed: %.150s", err);
        adapter_fetch_failed(in, QB_FEED_DOWN, why, 0);
        return;
    }
    a->fetch_inflight++;
    adapter_watchdog_arm(in, QB_FETCH_TIMEOUT_MS);
}

/* The pump: starts queued requests, longest waiting first, while the GET
 * slots, the connections' pacing and the snapshot budget allow; then
 * sleeps until the earliest time one more could start (an answer, a new
 * want or a freed GET slot wakes it sooner). */
static void adapter_pump_cb(lws_sorted_usec_list_t *sul)
{
    qb_adapter *a = lws_container_of(sul, qb_adapter, sul_pump);
    if (a->stopping) {
        return;
    }
    uint64_t wait = 0, waits0 = a->budget.budget_waits;
    while (a->fetchq.n > 0) {
        if (a->ops->snapshot_url && a->fetch_inflight >= QB_FETCH_MAX_INFLIGHT) {
            /* Queue policy "wait for a slot": many GETs at once would trip
             * the exchange's per-IP limits; each answer runs the pump. */
            wait = 0;
            break;
        }
        uint64_t now = qb_mono_ns();
        qb_fetchq_item *it =
            qb_fetchq_next(&a->fetchq, &a->budget, now, adapter_fetch_ready, a, &wait);
        if (it == NULL) {
            break;
        }
        adapter_fetch_start(it->user, now);
    }
    if (wait) {
        uint64_t ms = (wait + 999999u) / 1000000u;
        if (a->budget.budget_waits != waits0) { /* the budget (or a 429/418) holds them */
            QB_LOG_RL(QB_LOG_WARN, "snapshot_budget",
                      "%zu book(s) wait for a snapshot request, next in %llu ms (budget %u per "
                      "minute)",
                      a->fetchq.n, (unsigned long long)ms, a->snapshots_per_min);
        }
        adapter_pump_schedule(a, ms);
    }
}

/* Every second: a book resyncing for 5, 10, 20, 40 ... s says so on the
 * bus (same state, its reason plus how long and its place in the queue),
 * so a subscriber, the broker's /metrics reason and /health tell a book
 * that waits for the budget from one that is stuck. */
static void adapter_progress_cb(lws_sorted_usec_list_t *sul)
{
    qb_adapter *a = lws_container_of(sul, qb_adapter, sul_progress);
    if (a->stopping) {
        return;
    }
    uint64_t now = qb_mono_ns();
    for (size_t i = 0; i < a->ninst; i++) {
        qb_inst *in = &a->insts[i];
        if (in->broken_since == 0 || in->sync.state != QB_SYNC_WAITING ||
            now - in->broken_since < (uint64_t)in->progress_s * 1000000000u) {
            continue;
        }
        uint64_t secs = (now - in->broken_since) / 1000000000u;
        while (in->progress_s <= secs) {
            in->progress_s *= 2;
        }
        /* At most 150 + 90 bytes: under the protocol's 256 for a reason. */
        char why[QB_EVENT_INFO_MAX * 2];
        size_t rank = qb_fetchq_rank(&a->fetchq, &in->fq);
        const char *cause = in->sync.reason[0] ? in->sync.reason : "waiting for the first snapshot";
        const char *verb = in->sync.feed == QB_FEED_SYNCING ? "syncing"
                           : in->sync.feed == QB_FEED_DOWN  ? "down"
                                                            : "resyncing";
        if (rank) {
            snprintf(why, sizeof why,
                     "%.150s; %s for %llu s, snapshot queue %zu of %zu (budget %u per minute)",
                     cause, verb, (unsigned long long)secs, rank, a->fetchq.n,
                     a->snapshots_per_min);
        } else {
            snprintf(why, sizeof why, "%.150s; %s for %llu s, snapshot %s", cause, verb,
                     (unsigned long long)secs,
                     in->req || in->ws_fetch_pending ? "requested" : "not yet asked for");
        }
        uint64_t sup;
        if (qb_log_get_level() >= QB_LOG_INFO && qb_log_rl_allow(&in->log_rl, &sup)) {
            QB_INFO("feed_progress", "symbol=%s state=%s reason=%s%s", in->symbol,
                    qb_feed_state_name(in->sync.feed), why, adapter_suppressed(sup));
        }
        /* Not through sync.c: the state and its own reason stay as they
         * are (a broker reconnect re-says those); this is a note. */
        adapter_publish_status(in, in->sync.feed, why);
    }
    lws_sul_schedule(a->ctx, 0, &a->sul_progress, adapter_progress_cb, LWS_US_PER_SEC);
}

static void adapter_suspect_cb(lws_sorted_usec_list_t *sul)
{
    qb_inst *in = lws_container_of(sul, qb_inst, sul_suspect);
    if (!in->a->stopping) {
        qb_sync_suspect_expire(&in->sync);
    }
}

static void adapter_inst_halt(qb_inst *in)
{
    if (in->req) {
        qb__rest_cancel(in->req);
        in->req = NULL;
        in->a->fetch_inflight--;
        adapter_pump_schedule(in->a, 0);
    }
    in->ws_fetch_pending = false;
    qb_fetchq_drop(&in->a->fetchq, &in->fq);
    lws_sul_cancel(&in->sul_fetch);
    lws_sul_cancel(&in->sul_suspect);
    lws_sul_cancel(&in->sul_stale);
}

/* ---- staleness --------------------------------------------------------------- */

static void adapter_stale_cb(lws_sorted_usec_list_t *sul)
{
    qb_inst *in = lws_container_of(sul, qb_inst, sul_stale);
    qb_adapter *a = in->a;
    if (a->stopping) {
        return;
    }
    uint64_t now = qb_mono_ns();
    uint64_t stale_ns = a->cfg.stale_ms * 1000000u;
    uint64_t age = now - in->last_update_mono;
    uint64_t next_ms = a->cfg.stale_ms;
    if (in->last_update_mono && age >= stale_ns) {
        char why[96];
        snprintf(why, sizeof why, "no update for %llu ms", (unsigned long long)(age / 1000000u));
        qb_sync_mark_stale(&in->sync, why);
    } else if (in->last_update_mono) {
        /* Fire again exactly when the instrument would turn stale: one
         * timer operation per stale period, none per message. */
        next_ms = (stale_ns - age) / 1000000u + 1;
    }
    lws_sul_schedule(a->ctx, 0, &in->sul_stale, adapter_stale_cb,
                     (lws_usec_t)next_ms * LWS_US_PER_MS);
}

/* ---- connections ----------------------------------------------------------------- */

void qb__adapter_on_conn_up(qb_wsconn *c)
{
    qb_adapter *a = c->a;
    for (size_t i = 0; i < c->ninst; i++) {
        qb_inst *in = c->insts[i];
        adapter_inst_halt(in);
        in->fetch_failures = 0;
        in->last_update_mono = qb_mono_ns();
        if (c->connects <= 1) {
            qb_sync_start(&in->sync, QB_FEED_SYNCING, "");
        } else {
            qb_sync_start(&in->sync, QB_FEED_RESYNCING, "reconnected: fetching a new snapshot");
        }
        if (a->cfg.stale_ms) {
            lws_sul_schedule(a->ctx, 0, &in->sul_stale, adapter_stale_cb,
                             (lws_usec_t)a->cfg.stale_ms * LWS_US_PER_MS);
        }
    }
    if (a->ops->subscribe_msg) {
        const char **natives = calloc(c->ninst ? c->ninst : 1, sizeof *natives);
        if (natives == NULL) {
            QB_ERROR("ws_subscribe_failed", "conn=%u out of memory", c->idx);
            qb__wsconn_recycle(c, "out of memory");
            return;
        }
        for (size_t i = 0; i < c->ninst; i++) {
            natives[i] = c->insts[i]->native;
        }
        qb_buf msg = QB_BUF_INIT;
        if (a->ops->subscribe_msg(&a->xcfg, a->cfg.ws_url, natives, c->ninst, &msg) == QB_OK &&
            msg.len) {
            /* One or more messages, each followed by a NUL. */
            size_t off = 0, count = 0;
            while (off < msg.len) {
                const char *m = (const char *)msg.data + off;
                size_t ml = strnlen(m, msg.len - off);
                if (ml) {
                    qb__wsconn_send(c, m, ml);
                    count++;
                }
                off += ml + 1;
            }
            QB_INFO("ws_subscribe", "conn=%u sent %zu subscription message(s), %zu bytes", c->idx,
                    count, msg.len);
        }
        qb_buf_fini(&msg);
        free(natives);
    }
}

/* A lost frame of c: only's book (its channel was still readable), or
 * every book of c (only NULL). Each live one becomes suspect (sync.c
 * judges it by its next event); a snapshot answer it may have been is
 * asked for again. */
static void adapter_frame_lost(qb_wsconn *c, const char *why, qb_inst *only)
{
    qb_adapter *a = c->a;
    if (!a->ops->suspect_on_lost_frame || a->stopping) {
        return;
    }
    a->cnt.lost_frames++;
    for (size_t i = 0; i < c->ninst; i++) {
        qb_inst *in = c->insts[i];
        if (only != NULL && in != only) {
            continue;
        }
        if (in->ws_fetch_pending) {
            /* The lost frame may have been the answer: ask again, keeping
             * its place (a late answer to the old request is then ignored
             * as unexpected). */
            in->ws_fetch_pending = false;
            lws_sul_cancel(&in->sul_fetch);
            in->last_req_mono = 0;
            in->next_fetch_mono = 0;
            adapter_fetch_want(in, 0);
        }
        bool was = in->sync.suspect;
        if (qb_sync_suspect(&in->sync, why) && !was) {
            /* Armed when it becomes suspect, not moved by later losses: a
             * book that gets no event is resynced in QB_SYNC_SUSPECT_MS. */
            lws_sul_schedule(a->ctx, 0, &in->sul_suspect, adapter_suspect_cb,
                             (lws_usec_t)QB_SYNC_SUSPECT_MS * LWS_US_PER_MS);
        }
    }
}

void qb__adapter_on_frame_lost(qb_wsconn *c, const char *why)
{
    adapter_frame_lost(c, why, NULL);
}

void qb__adapter_on_conn_down(qb_wsconn *c, qb_feed_state st, const char *reason)
{
    for (size_t i = 0; i < c->ninst; i++) {
        adapter_inst_halt(c->insts[i]);
        qb_sync_stop(&c->insts[i]->sync, st, reason);
    }
}

uint64_t qb__adapter_rand(qb_adapter *a, uint64_t lo, uint64_t hi)
{
    /* xorshift64: jitter only, not security. */
    uint64_t x = a->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    a->rng = x;
    return hi > lo ? lo + x % (hi - lo + 1) : lo;
}

/* ---- messages -------------------------------------------------------------------- */

static qb_inst *adapter_find(qb_adapter *a, const char *native)
{
    /* Symbols per process are few (tens); a linear scan over a contiguous
     * array measured faster than hashing at this size. */
    for (size_t i = 0; i < a->ninst; i++) {
        if (strcmp(a->insts[i].native, native) == 0) {
            return &a->insts[i];
        }
    }
    return NULL;
}

static void adapter_excerpt(const uint8_t *data, size_t len, char *out, size_t cap)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t k = 0; k < n; k++) {
        out[k] = (data[k] >= 0x20 && data[k] < 0x7f) ? (char)data[k] : '?';
    }
    out[n] = '\0';
}

/* True when id was published already (and remembers it otherwise). */
static bool adapter_trade_seen(qb_inst *in, uint64_t id)
{
    if (id == 0) {
        return false;
    }
    for (unsigned k = 0; k < QB_TRADE_DEDUP; k++) {
        if (in->recent_trades[k] == id) {
            return true;
        }
    }
    in->recent_trades[in->recent_pos] = id;
    in->recent_pos = (in->recent_pos + 1) % QB_TRADE_DEDUP;
    return false;
}

static void adapter_publish_trades(qb_inst *in, const qb_event *ev)
{
    qb_adapter *a = in->a;
    for (size_t k = 0; k < ev->n_trades; k++) {
        const qb_trade *t = &ev->trades[k];
        if (adapter_trade_seen(in, t->id)) {
            a->cnt.trades_duplicate++;
            QB_DEBUG("trade_duplicate", "symbol=%s id=%llu", in->symbol, (unsigned long long)t->id);
            continue;
        }
        qb_msg_origin o = adapter_origin(in);
        qb_msg m;
        qb__event_trade_msg(&o, ++in->trade_seq, ev, t, &m);
        a->cnt.trades++;
        qb__pub_send(a->pub, &m);
    }
}

static void adapter_publish_ticker(qb_inst *in, const qb_event *ev)
{
    qb_msg_origin o = adapter_origin(in);
    qb_msg m;
    qb__event_ticker_msg(&o, ++in->ticker_seq, ev, &m);
    in->a->cnt.tickers++;
    qb__pub_send(in->a->pub, &m);
}

/* The instrument of an event on connection c, or NULL (counted). */
static qb_inst *adapter_route(qb_wsconn *c, const qb_event *ev)
{
    qb_adapter *a = c->a;
    qb_inst *in = adapter_find(a, ev->native);
    if (in == NULL || in->conn != c) {
        a->cnt.unknown++;
        a->cnt.unknown_symbol++;
        QB_LOG_RL(QB_LOG_WARN, "unknown_symbol", "conn=%u symbol=%s", c->idx, ev->native);
        return NULL;
    }
    return in;
}

void qb__adapter_on_message(qb_wsconn *c, const uint8_t *data, size_t len, uint64_t recv_ts)
{
    qb_adapter *a = c->a;
    const char *js = (const char *)data;
    size_t jl = len;
    if (a->ops->decode) {
        int rc = a->ops->decode(a->xstate, &a->parser, data, len, &js, &jl);
        if (rc != QB_OK) {
            if (rc == QB_ETOOBIG) {
                a->cnt.oversized++;
                a->cnt.gzip_oversized++;
            } else {
                a->cnt.bad_gzip++;
            }
            QB_LOG_RL(QB_LOG_WARN, "frame_undecodable",
                      "conn=%u %zu byte frame rejected: %s (max %zu bytes decoded)", c->idx, len,
                      rc == QB_ETOOBIG ? "inflates past --max-frame" : "corrupt gzip",
                      a->cfg.max_frame);
            qb__adapter_on_frame_lost(c, rc == QB_ETOOBIG ? "frame inflates past --max-frame"
                                                          : "corrupt gzip frame");
            return;
        }
    }
    qb_event ev;
    int rc = a->ops->parse(a->xstate, &a->parser, js, jl, &ev);
    if (rc != QB_OK) {
        char ex[80];
        adapter_excerpt((const uint8_t *)js, jl, ex, sizeof ex);
        if (rc == QB_ETOOBIG) {
            a->cnt.oversized++;
        } else {
            a->cnt.bad_json++;
        }
        QB_LOG_RL(QB_LOG_WARN, "frame_rejected", "conn=%u %s (%zu bytes): %s", c->idx,
                  qb_strerror(rc), jl, ex);
        /* Whose was it? A readable channel names the one book that may
         * have lost an update (or none: trades, tickers). */
        char nat[QB_NATIVE_MAX];
        int kind = a->ops->lost_frame_kind ? a->ops->lost_frame_kind(js, jl, nat, sizeof nat)
                                           : QB_LOST_UNKNOWN;
        if (kind == QB_LOST_UNKNOWN) {
            adapter_frame_lost(c, "unparseable frame", NULL);
        } else if (kind == QB_LOST_BOOK) {
            qb_inst *own = adapter_find(a, nat);
            if (own != NULL && own->conn == c) {
                a->cnt.lost_frames_attributed++;
                adapter_frame_lost(c, "unparseable frame", own);
            }
        }
        return;
    }
    ev.recv_ts = recv_ts;
    qb_inst *in;
    switch (ev.kind) {
    case QB_EV_DEPTH:
        if ((in = adapter_route(c, &ev)) != NULL) {
            in->last_update_mono = qb_mono_ns();
            qb_sync_on_delta(&in->sync, &ev);
        }
        return;
    case QB_EV_BOOK_FULL:
        if ((in = adapter_route(c, &ev)) != NULL) {
            in->last_update_mono = qb_mono_ns();
            qb_sync_on_full(&in->sync, &ev);
        }
        return;
    case QB_EV_TRADE:
        if ((in = adapter_route(c, &ev)) != NULL) {
            in->last_update_mono = qb_mono_ns();
            adapter_publish_trades(in, &ev);
            qb_sync_touch(&in->sync);
        }
        return;
    case QB_EV_TICKER:
        if ((in = adapter_route(c, &ev)) != NULL) {
            adapter_publish_ticker(in, &ev);
        }
        return;
    case QB_EV_SHUTDOWN:
        a->cnt.shutdowns++;
        qb__wsconn_recycle(c, "serverShutdown received");
        return;
    case QB_EV_CONTROL:
        a->cnt.controls++;
        QB_INFO("exchange_control", "conn=%u %s", c->idx, ev.info);
        return;
    case QB_EV_HEARTBEAT:
        a->cnt.heartbeats++;
        return;
    case QB_EV_ERROR:
        a->cnt.exchange_errors++;
        QB_LOG_RL(QB_LOG_WARN, "exchange_error", "conn=%u %s", c->idx, ev.info);
        in = ev.native[0] ? adapter_find(a, ev.native) : NULL;
        if (in != NULL && in->conn == c && in->ws_fetch_pending) {
            in->ws_fetch_pending = false;
            lws_sul_cancel(&in->sul_fetch);
            if (ev.rate_limited) {
                /* Refused as too frequent: the server saw our paced
                 * requests closer together than we sent them (its clock,
                 * its queue). Not a failure: next free slot plus one
                 * interval, no backoff. */
                uint64_t gap =
                    (uint64_t)(a->ops->ws_request_interval_ms ? a->ops->ws_request_interval_ms
                                                              : 100);
                c->next_req_mono = qb_mono_ns() + gap * 1000000u;
                a->cnt.requests_rate_limited++;
                in->next_fetch_mono = 0;
                in->last_req_mono = 0; /* keeps its place in the queue */
                adapter_fetch_want(in, 2 * gap);
                return;
            }
            /* The exchange refused our snapshot request: retry with
             * backoff now, not at the watchdog. */
            char why[QB_EVENT_INFO_MAX];
            snprintf(why, sizeof why, "snapshot request refused: %.150s", ev.info);
            adapter_fetch_failed(in, QB_FEED_RESYNCING, why, 0);
        }
        return;
    case QB_EV_REPLY:
        if (qb__wsconn_send(c, ev.reply.p, ev.reply.n) == QB_OK) {
            a->cnt.pongs++;
        }
        return;
    case QB_EV_SNAPSHOT:
        /* A snapshot answered over the websocket (snapshot_ws_request). */
        in = adapter_find(a, ev.native);
        if (in != NULL && in->conn == c && in->ws_fetch_pending) {
            in->ws_fetch_pending = false;
            lws_sul_cancel(&in->sul_fetch);
            if (qb_sync_on_snapshot(&in->sync, &ev) == QB_OK) {
                in->fetch_failures = 0;
                in->last_update_mono = qb_mono_ns();
            }
            return;
        }
        a->cnt.unknown++;
        QB_DEBUG("snapshot_unexpected", "conn=%u symbol=%s", c->idx, ev.native);
        return;
    case QB_EV_UNKNOWN:
        a->cnt.unknown++;
        QB_DEBUG("frame_unknown", "conn=%u %zu bytes ignored", c->idx, jl);
        return;
    }
}

/* ---- refresh and stats ---------------------------------------------------------------- */

static void adapter_refresh_cb(lws_sorted_usec_list_t *sul)
{
    qb_adapter *a = lws_container_of(sul, qb_adapter, sul_refresh);
    if (a->stopping) {
        return;
    }
    uint64_t now = qb_now_ns();
    /* A (re)connection to the broker since the last refresh: the broker may
     * be a new process that has never seen our statuses (they are sent on
     * change only, and those sent while it was down are lost), so each
     * instrument's current state is said again (status seq + 1). */
    uint64_t connects = qb__pub_connects(a->pub);
    bool reconnected = connects != a->pub_connects_seen;
    a->pub_connects_seen = connects;
    for (size_t i = 0; i < a->ninst; i++) {
        qb_inst *in = &a->insts[i];
        if (reconnected && in->status_seq > 0) {
            adapter_publish_status(in, in->sync.feed, in->sync.reason);
        }
        if (in->sync.state == QB_SYNC_LIVE && in->book_published) {
            adapter_publish_book(in, true, now, 0);
        }
    }
    lws_sul_schedule(a->ctx, 0, &a->sul_refresh, adapter_refresh_cb,
                     (lws_usec_t)a->cfg.refresh_ms * LWS_US_PER_MS);
}

static void adapter_write_stats(qb_adapter *a)
{
    if (a->cfg.stats_file == NULL) {
        return;
    }
    qb_buf b = QB_BUF_INIT;
    const qb_adapter_counters *c = &a->cnt;
    const qb_sync_counters *s = &a->scnt;
    const qb_pub_counters *p = &a->pcnt;
#define STAT(name, v) qb_buf_appendf(&b, "\"%s\":%llu,", name, (unsigned long long)(v))
    qb_buf_appendf(&b, "{\"exchange\":\"%s\",", a->ops->name);
    STAT("frames", c->frames);
    STAT("bytes", c->bytes);
    STAT("bad_json", c->bad_json);
    STAT("oversized", c->oversized);
    STAT("unknown", c->unknown);
    STAT("unknown_symbol", c->unknown_symbol);
    STAT("deltas_applied", s->deltas_applied);
    STAT("deltas_dropped_stale", s->deltas_dropped_stale);
    STAT("deltas_buffered", s->deltas_buffered);
    STAT("gaps", s->gaps);
    STAT("resyncs", s->resyncs);
    STAT("snapshots_ok", s->snapshots_ok);
    STAT("snapshots_failed", s->snapshots_failed);
    STAT("snapshots_stale", s->snapshots_stale);
    STAT("snapshot_requests", c->snapshot_requests);
    STAT("crossed", s->crossed);
    STAT("buffer_overflows", s->buffer_overflows);
    STAT("book_errors", s->book_errors);
    STAT("reconnects", c->reconnects);
    STAT("budget_waits", a->budget.budget_waits);
    STAT("http_429", a->budget.http_429);
    STAT("http_418", a->budget.http_418);
    STAT("connects", c->connects);
    STAT("disconnects", c->disconnects);
    STAT("connect_errors", c->connect_errors);
    STAT("server_shutdowns", c->shutdowns);
    STAT("exchange_errors", c->exchange_errors);
    STAT("controls", c->controls);
    STAT("published", p->published);
    STAT("publish_frames", p->frames);
    STAT("publish_errors", p->publish_errors);
    STAT("encode_errors", p->encode_errors);
    STAT("trades", c->trades);
    STAT("trades_duplicate", c->trades_duplicate);
    STAT("tickers", c->tickers);
    STAT("bad_gzip", c->bad_gzip);
    STAT("gzip_oversized", c->gzip_oversized);
    STAT("lost_frames", c->lost_frames);
    STAT("lost_frames_attributed", c->lost_frames_attributed);
    STAT("suspects", s->suspects);
    STAT("suspects_confirmed", s->suspects_confirmed);
    STAT("suspects_broken", s->suspects_broken);
    STAT("suspects_expired", s->suspects_expired);
    STAT("snapshot_queue", a->fetchq.n);
    STAT("snapshot_queue_max", a->fetchq.max_n);
    STAT("snapshots_per_min", a->snapshots_per_min);
    STAT("snapshot_weight", a->snapshot_weight);
    STAT("heals", a->heals);
    STAT("heal_max_ms", a->heal_max_ns / 1000000u);
    STAT("pongs", c->pongs);
    STAT("heartbeats", c->heartbeats);
    STAT("keepalives", c->keepalives);
    STAT("requests_paced", c->requests_paced);
    STAT("requests_rate_limited", c->requests_rate_limited);
    STAT("empty_updates", c->empty_updates);
    STAT("tls_drained", c->tls_drained);
    STAT("tls_drain_stuck", c->tls_drain_stuck);
    STAT("full_books", s->full_books);
    STAT("full_unchanged", s->full_unchanged);
    uint64_t txd = 0;
    for (size_t i = 0; i < a->nconn; i++) {
        txd += a->conns[i].tx_dropped;
    }
    STAT("ws_tx_dropped", txd);
    STAT("connections", a->nconn);
#undef STAT
    qb_buf_appendf(&b, "\"symbols\":{");
    uint64_t now = qb_mono_ns();
    for (size_t i = 0; i < a->ninst; i++) {
        const qb_inst *in = &a->insts[i];
        const qb_book *bk = qb_sync_book(&in->sync);
        qb_json_append_str(&b, in->symbol, strlen(in->symbol));
        /* resyncing_ms: how long the book has not been live (0: live);
         * queue_pos: its place among the books waiting for a snapshot
         * request (0: not waiting for one). */
        qb_buf_appendf(
            &b,
            ":{\"native\":\"%s\",\"state\":\"%s\",\"last_update_id\":%llu,"
            "\"bids\":%zu,\"asks\":%zu,\"book_seq\":%llu,\"trade_seq\":%llu,"
            "\"status_seq\":%llu,\"ticker_seq\":%llu,\"resyncing_ms\":%llu,"
            "\"queue_pos\":%zu,\"suspect\":%s,\"resyncs\":%llu,\"heals\":%llu,"
            "\"last_heal_ms\":%llu,\"max_heal_ms\":%llu}%s",
            in->native, qb_feed_state_name(in->sync.feed), (unsigned long long)in->sync.book_id,
            qb_book_depth(bk, QB_BID), qb_book_depth(bk, QB_ASK), (unsigned long long)in->book_seq,
            (unsigned long long)in->trade_seq, (unsigned long long)in->status_seq,
            (unsigned long long)in->ticker_seq,
            (unsigned long long)(in->broken_since ? (now - in->broken_since) / 1000000u : 0),
            qb_fetchq_rank(&a->fetchq, &in->fq), in->sync.suspect ? "true" : "false",
            (unsigned long long)in->resyncs, (unsigned long long)in->heals,
            (unsigned long long)(in->last_heal_ns / 1000000u),
            (unsigned long long)(in->max_heal_ns / 1000000u), i + 1 < a->ninst ? "," : "");
    }
    qb_buf_appendf(&b, "}}\n");

    if (b.data != NULL && qb_file_write_atomic(a->cfg.stats_file, b.data, b.len) != QB_OK) {
        QB_LOG_RL(QB_LOG_WARN, "stats_write_failed", "%s: %s", a->cfg.stats_file, strerror(errno));
    }
    qb_buf_fini(&b);
}

static void adapter_stats_cb(lws_sorted_usec_list_t *sul)
{
    qb_adapter *a = lws_container_of(sul, qb_adapter, sul_stats);
    if (a->stopping) {
        return;
    }
    adapter_write_stats(a);
    lws_sul_schedule(a->ctx, 0, &a->sul_stats, adapter_stats_cb,
                     (lws_usec_t)QB_STATS_INTERVAL_MS * LWS_US_PER_MS);
}

/* ---- lws glue ---------------------------------------------------------------------- */

static int adapter_lws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                          size_t len)
{
    if (reason == LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS) {
        /* lws built against OpenSSL loads only what the context names; add
         * the system store (and --ca-file) here so both are trusted. */
        SSL_CTX *ctx = user;
        qb_adapter *a = adapter_creating;
        if (ctx) {
            if (!SSL_CTX_load_verify_locations(ctx, NULL, QB_SYSTEM_CA_DIR)) {
                QB_WARN("tls_ca_load_failed", "system CA directory %s", QB_SYSTEM_CA_DIR);
            }
            if (a && a->cfg.ca_file && !SSL_CTX_load_verify_locations(ctx, a->cfg.ca_file, NULL)) {
                QB_ERROR("tls_ca_load_failed", "--ca-file %s", a->cfg.ca_file);
            }
            QB_DEBUG("tls_ca_loaded", "system store %s%s%s", QB_SYSTEM_CA_DIR,
                     a && a->cfg.ca_file ? " + " : "", a && a->cfg.ca_file ? a->cfg.ca_file : "");
        }
        return 0;
    }
    qb_lws_obj *obj = wsi ? lws_get_opaque_user_data(wsi) : NULL;
    if (obj != NULL && obj->kind == QB_LWS_WS) {
        return qb__wsconn_lws_cb(wsi, reason, (qb_wsconn *)obj, in, len);
    }
    if (obj != NULL && obj->kind == QB_LWS_REST) {
        return qb__rest_lws_cb(wsi, reason, (qb_rest_req *)obj, in, len);
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols adapter_protocols[] = {
    {"qb-http", adapter_lws_cb, 0, 0, 0, NULL, 0},
    {"qb-ws", adapter_lws_cb, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void adapter_lws_log(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
        n--;
    }
    qb_log(level & LLL_ERR    ? QB_LOG_WARN
           : level & LLL_WARN ? QB_LOG_INFO
                              : QB_LOG_DEBUG,
           "lws", "%.*s", (int)n, line);
}

/* ---- lifecycle -------------------------------------------------------------------------- */

static char *adapter_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* The part of qb_adapter_new that qb_adapter_check shares: copies the
 * configuration, validates it (every symbol through the exchange's own
 * to_native / from_native, duplicates) and builds the instruments and the
 * connections' URLs. No socket, no lws context. On success *out is an
 * adapter without ctx and pub (qb_adapter_free frees it). */
static int adapter_build(const qb_adapter_cfg *cfg_in, qb_adapter **out)
{
    const qb_exchange_ops *ops = cfg_in->ops;
    if (ops == NULL || cfg_in->nsymbols == 0 || cfg_in->ws_url == NULL || cfg_in->broker == NULL) {
        return QB_EINVAL;
    }
    qb_adapter *a = calloc(1, sizeof *a);
    if (a == NULL) {
        return QB_ENOMEM;
    }
    a->ops = ops;
    a->cfg = *cfg_in;
    a->cfg.ws_url = adapter_strdup(cfg_in->ws_url);
    a->cfg.rest_url = adapter_strdup(cfg_in->rest_url ? cfg_in->rest_url : ops->default_rest_url);
    a->cfg.broker = adapter_strdup(cfg_in->broker);
    a->cfg.broker_tls.cert = adapter_strdup(cfg_in->broker_tls.cert);
    a->cfg.broker_tls.key = adapter_strdup(cfg_in->broker_tls.key);
    a->cfg.broker_tls.ca = adapter_strdup(cfg_in->broker_tls.ca);
    a->cfg.ca_file = adapter_strdup(cfg_in->ca_file);
    a->cfg.stats_file = adapter_strdup(cfg_in->stats_file);
    a->cfg.symbols = NULL;
    a->rng = (qb_now_ns() ^ ((uint64_t)getpid() << 32)) | 1;
    if (a->cfg.max_frame < 1024) {
        a->cfg.max_frame = 1024;
    }
    if (a->cfg.max_levels == 0 || a->cfg.max_levels > QB_MSG_MAX_LEVELS) {
        a->cfg.max_levels = QB_MSG_MAX_LEVELS;
    }
    if (a->cfg.keepalive_ms == 0) {
        a->cfg.keepalive_ms = ops->keepalive_ms;
    }
    if (a->cfg.max_body == 0) {
        a->cfg.max_body = QB_ADAPTER_MAX_BODY_DEFAULT;
    }
    if (a->cfg.depth_limit == 0 || a->cfg.depth_limit > ops->max_depth_limit) {
        a->cfg.depth_limit = ops->max_depth_limit;
    }
    a->xcfg = cfg_in->xcfg;
    a->xcfg.symbol_map = NULL;
    a->xcfg.nsymbol_map = 0;
    if (cfg_in->xcfg.nsymbol_map) {
        a->symbol_map = calloc(cfg_in->xcfg.nsymbol_map, sizeof *a->symbol_map);
        if (a->symbol_map == NULL) {
            qb_adapter_free(a);
            return QB_ENOMEM;
        }
        for (size_t i = 0; i < cfg_in->xcfg.nsymbol_map; i++) {
            a->symbol_map[i] = strdup(cfg_in->xcfg.symbol_map[i]);
            a->xcfg.nsymbol_map = i + 1;
            if (a->symbol_map[i] == NULL) {
                qb_adapter_free(a);
                return QB_ENOMEM;
            }
        }
        a->xcfg.symbol_map = (const char *const *)a->symbol_map;
    }
    unsigned spc = a->cfg.streams_per_conn;
    if (spc == 0 || spc > ops->max_streams_per_conn) {
        spc = ops->max_streams_per_conn;
    }
    unsigned per_symbol = ops->streams_per_symbol + (a->xcfg.tickers ? ops->ticker_streams : 0);
    size_t per_conn = spc / per_symbol;
    if (per_conn == 0) {
        per_conn = 1;
    }
    a->cfg.streams_per_conn = spc;
    int rc = QB_OK;
    if (a->cfg.ws_url == NULL || a->cfg.broker == NULL ||
        ((cfg_in->rest_url || ops->default_rest_url) && a->cfg.rest_url == NULL) ||
        (cfg_in->ca_file && a->cfg.ca_file == NULL) ||
        (cfg_in->broker_tls.cert && a->cfg.broker_tls.cert == NULL) ||
        (cfg_in->broker_tls.key && a->cfg.broker_tls.key == NULL) ||
        (cfg_in->broker_tls.ca && a->cfg.broker_tls.ca == NULL) ||
        (cfg_in->stats_file && a->cfg.stats_file == NULL)) {
        rc = QB_ENOMEM;
        goto fail;
    }
    if (a->cfg.depth_limit > a->cfg.max_levels) {
        QB_WARN("depth_limit_clamped", "--depth-limit %u > --max-levels %zu: using %zu",
                a->cfg.depth_limit, a->cfg.max_levels, a->cfg.max_levels);
        a->cfg.depth_limit = (unsigned)a->cfg.max_levels;
    }
    /* The snapshot budget in requests: the exchange's weight budget over
     * the weight of one request at this depth (Binance: 5000/min over 50 at
     * depth 1000 = 100/min; 1000/min at depth 100), else its request
     * budget; --max-snapshots-per-min overrides either. */
    a->snapshot_weight = ops->snapshot_weight ? ops->snapshot_weight(a->cfg.depth_limit) : 1;
    if (a->snapshot_weight == 0) {
        a->snapshot_weight = 1;
    }
    a->snapshots_per_min = a->cfg.max_snapshots_per_min ? a->cfg.max_snapshots_per_min
                           : ops->snapshot_weight
                               ? (ops->snapshot_weight_per_min / a->snapshot_weight
                                      ? ops->snapshot_weight_per_min / a->snapshot_weight
                                      : 1)
                               : ops->snapshots_per_min;
    qb_budget_init(&a->budget,
                   a->cfg.max_connects_per_min ? a->cfg.max_connects_per_min
                                               : ops->connects_per_min,
                   a->snapshots_per_min);
    if ((rc = qb_fetchq_init(&a->fetchq, cfg_in->nsymbols)) != QB_OK) {
        goto fail;
    }
    if ((rc = qb_parser_init(&a->parser, a->cfg.max_frame, a->cfg.max_levels)) != QB_OK) {
        goto fail;
    }

    /* Instruments. */
    a->ninst = cfg_in->nsymbols;
    a->insts = calloc(a->ninst, sizeof *a->insts);
    if (a->insts == NULL) {
        rc = QB_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < a->ninst; i++) {
        qb_inst *in = &a->insts[i];
        in->a = a;
        in->fq.user = in;
        const char *sym = cfg_in->symbols[i];
        char err[256], norm[QB_NATIVE_MAX];
        snprintf(err, sizeof err, "'%s' is not a normalized symbol like BTC-USDT", sym);
        if (strchr(sym, '-') == NULL && ops->from_native) {
            /* Given in the exchange's own form ("btcusdt"): split it by the
             * exchange's rules, which refuse to guess. */
            if (ops->from_native(&a->xcfg, sym, norm, sizeof norm, err, sizeof err) != QB_OK) {
                QB_ERROR("bad_symbol", "%s", err);
                rc = QB_EINVAL;
                goto fail;
            }
            QB_INFO("symbol_mapped", "%s -> %s", sym, norm);
            sym = norm;
        }
        if (strlen(sym) >= sizeof in->symbol || strchr(sym, '.') ||
            ops->to_native(&a->xcfg, sym, in->native, sizeof in->native, err, sizeof err) !=
                QB_OK) {
            QB_ERROR("bad_symbol", "%s", err);
            rc = QB_EINVAL;
            goto fail;
        }
        snprintf(in->symbol, sizeof in->symbol, "%s", sym);
        for (char *u = in->symbol; *u; u++) {
            *u = (char)toupper((unsigned char)*u);
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(a->insts[k].native, in->native) == 0 ||
                strcmp(a->insts[k].symbol, in->symbol) == 0) {
                QB_ERROR("bad_symbol", "'%s' listed twice", sym);
                rc = QB_EINVAL;
                goto fail;
            }
        }
        if ((rc = qb_sync_init(&in->sync, ops->seq, &adapter_sync_ops, in, &a->scnt,
                               a->cfg.max_levels)) != QB_OK) {
            goto fail;
        }
    }

    /* Connections: per_conn instruments each. */
    a->nconn = (a->ninst + per_conn - 1) / per_conn;
    a->conns = calloc(a->nconn, sizeof *a->conns);
    if (a->conns == NULL) {
        rc = QB_ENOMEM;
        goto fail;
    }
    for (size_t ci = 0; ci < a->nconn; ci++) {
        qb_wsconn *c = &a->conns[ci];
        size_t first = ci * per_conn;
        size_t n = a->ninst - first < per_conn ? a->ninst - first : per_conn;
        if ((rc = qb__wsconn_init(c, a, (unsigned)ci, n)) != QB_OK) {
            goto fail;
        }
        c->insts = calloc(n, sizeof *c->insts);
        const char **natives = calloc(n, sizeof *natives);
        qb_buf url = QB_BUF_INIT;
        if (c->insts == NULL || natives == NULL) {
            free(natives);
            rc = QB_ENOMEM;
            goto fail;
        }
        c->ninst = n;
        for (size_t k = 0; k < n; k++) {
            c->insts[k] = &a->insts[first + k];
            a->insts[first + k].conn = c;
            natives[k] = a->insts[first + k].native;
        }
        rc = ops->ws_url(&a->xcfg, a->cfg.ws_url, natives, n, &url);
        free(natives);
        if (rc == QB_OK) {
            rc = qb_buf_append(&url, "", 1);
        }
        if (rc != QB_OK) {
            qb_buf_fini(&url);
            goto fail;
        }
        c->url = (char *)url.data; /* ownership moves to c */
    }
    *out = a;
    return QB_OK;
fail:
    qb_adapter_free(a);
    return rc;
}

int qb_adapter_check(const qb_adapter_cfg *cfg)
{
    qb_adapter_cfg c = *cfg;
    c.stats_file = NULL; /* a check must not touch a running adapter's file */
    qb_adapter *a = NULL;
    int rc = adapter_build(&c, &a);
    qb_adapter_free(a);
    return rc;
}

int qb_adapter_new(const qb_adapter_cfg *cfg_in, qb_adapter **out)
{
    qb_adapter *a = NULL;
    int rc = adapter_build(cfg_in, &a);
    if (rc != QB_OK) {
        return rc;
    }

    /* The exchange's private state (its parser or zlib stream): a running
     * adapter's only, not a check's. */
    if ((rc = qb_exchange_state_new(a->ops, a->cfg.max_frame, &a->xstate)) != QB_OK) {
        goto fail;
    }

    /* NNG. */
    if ((rc = qb__pub_open(&a->pub, a->cfg.broker, &a->cfg.broker_tls, &a->pcnt)) != QB_OK) {
        goto fail;
    }
    if (a->cfg.batch_maps > 0 && a->cfg.batch_maps < QB_PUB_BATCH_MAPS) {
        qb__pub_set_batch(a->pub, a->cfg.batch_maps, QB_PUB_BATCH_BYTES);
    }

    /* lws. */
    lws_set_log_level(LLL_ERR | LLL_WARN | (qb_log_get_level() >= QB_LOG_DEBUG ? LLL_NOTICE : 0),
                      adapter_lws_log);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = adapter_protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.user = a;
    info.fd_limit_per_thread = (unsigned)(a->nconn + a->ninst + 16);
    info.connect_timeout_secs = 10;
    /* A combined-stream URL carries every stream of its connection (~22
     * bytes each, up to 1024 streams): room for it in the handshake. */
    info.max_http_header_data2 = 64 * 1024;
    info.pt_serv_buf_size = 64 * 1024;
    info.timeout_secs = 20;
    /* lws loads one CA file for clients; the system bundle by default, the
     * user's CA when given (the callback above adds the other one). */
    info.client_ssl_ca_filepath =
        a->cfg.ca_file ? a->cfg.ca_file
                       : (access(QB_SYSTEM_CA_BUNDLE, R_OK) == 0 ? QB_SYSTEM_CA_BUNDLE : NULL);
    adapter_creating = a;
    a->ctx = lws_create_context(&info);
    adapter_creating = NULL;
    if (a->ctx == NULL) {
        QB_ERROR("lws_init_failed", "lws_create_context failed");
        rc = QB_ETRANSPORT;
        goto fail;
    }
    *out = a;
    return QB_OK;
fail:
    qb_adapter_free(a);
    return rc;
}

int qb_adapter_run(qb_adapter *a)
{
    QB_INFO("adapter_start", "exchange=%s symbols=%zu connections=%zu broker=%s", a->ops->name,
            a->ninst, a->nconn, a->cfg.broker);
    if (!a->ops->full_book) {
        QB_INFO("snapshot_budget", "%u snapshot requests per minute (burst %u), weight %u each",
                a->snapshots_per_min, qb_budget_burst(a->snapshots_per_min), a->snapshot_weight);
    }
    for (size_t i = 0; i < a->nconn; i++) {
        qb__wsconn_start(&a->conns[i]);
    }
    if (a->cfg.refresh_ms) {
        lws_sul_schedule(a->ctx, 0, &a->sul_refresh, adapter_refresh_cb,
                         (lws_usec_t)a->cfg.refresh_ms * LWS_US_PER_MS);
    }
    if (a->cfg.stats_file) {
        adapter_write_stats(a);
        lws_sul_schedule(a->ctx, 0, &a->sul_stats, adapter_stats_cb,
                         (lws_usec_t)QB_STATS_INTERVAL_MS * LWS_US_PER_MS);
    }
    if (!a->ops->full_book) {
        lws_sul_schedule(a->ctx, 0, &a->sul_progress, adapter_progress_cb, LWS_US_PER_SEC);
    }
    while (!a->stopping) {
        if (lws_service(a->ctx, 0) < 0) {
            break;
        }
        /* Records OpenSSL read ahead: poll() cannot see them (ws_conn.c). */
        bool more = false;
        for (size_t i = 0; i < a->nconn; i++) {
            more |= qb__wsconn_drain_tls(&a->conns[i]);
        }
        if (more) {
            lws_cancel_service(a->ctx); /* the next pass must not sleep */
        }
        /* End of a pass: send what it batched, unless more exchange input
         * already waits (read ahead, buffered in lws or readable), which the
         * next pass reads into the same batches (publish.c). */
        qb__pub_pass_end(a->pub, more || qb__pub_input_waiting(a->pub, a));
    }
    QB_INFO("adapter_stop", "stopping");
    return QB_OK;
}

/* Called from signal handlers: only the lock-free store and lws's wake-up. */
_Static_assert(ATOMIC_BOOL_LOCK_FREE == 2, "qb_adapter_stop needs a lock-free atomic_bool");

void qb_adapter_stop(qb_adapter *a)
{
    a->stopping = true;
    if (a->ctx) {
        lws_cancel_service(a->ctx);
    }
}

void qb_adapter_free(qb_adapter *a)
{
    if (a == NULL) {
        return;
    }
    a->stopping = true;
    if (a->ctx) {
        lws_sul_cancel(&a->sul_refresh);
        lws_sul_cancel(&a->sul_stats);
        lws_sul_cancel(&a->sul_pump);
        lws_sul_cancel(&a->sul_progress);
        for (size_t i = 0; i < a->ninst; i++) {
            adapter_inst_halt(&a->insts[i]);
        }
        for (size_t i = 0; i < a->nconn; i++) {
            qb__wsconn_cancel_timers(&a->conns[i]);
        }
        /* Closes every wsi; their callbacks see a->stopping and schedule
         * nothing; REST requests are freed in WSI_DESTROY. */
        lws_context_destroy(a->ctx);
        a->ctx = NULL;
    }
    adapter_write_stats(a);
    for (size_t i = 0; a->conns && i < a->nconn; i++) {
        qb__wsconn_fini(&a->conns[i]);
    }
    free(a->conns);
    for (size_t i = 0; a->insts && i < a->ninst; i++) {
        if (a->insts[i].sync.book) {
            qb_sync_fini(&a->insts[i].sync);
        }
    }
    free(a->insts);
    qb_fetchq_fini(&a->fetchq);
    qb__pub_close(a->pub);
    qb_exchange_state_free(a->ops, a->xstate);
    qb_parser_fini(&a->parser);
    free((char *)a->cfg.ws_url);
    free((char *)a->cfg.rest_url);
    free((char *)a->cfg.broker);
    free((char *)a->cfg.broker_tls.cert);
    free((char *)a->cfg.broker_tls.key);
    free((char *)a->cfg.broker_tls.ca);
    free((char *)a->cfg.ca_file);
    free((char *)a->cfg.stats_file);
    for (size_t i = 0; i < a->xcfg.nsymbol_map; i++) {
        free(a->symbol_map[i]);
    }
    free(a->symbol_map);
    free(a);
}
