/*
 * adapter_int.h: private structures shared by the adapter framework files
 * (adapter.c, ws_conn.c, rest.c, publish.c). Not installed; not for
 * exchange files, which only see exchange.h.
 *
 *   qb_adapter --+-- qb_pub (NNG PUB, encode buffer)
 *                +-- qb_inst[]  (one per symbol: qb_sync + book + seqs +
 *                |               snapshot fetch timer + stale timer)
 *                +-- qb_wsconn[] (one per group of symbols: lws wsi,
 *                                 reassembly buffer, reconnect timers)
 *                +-- qb_rest_req (in-flight snapshot GETs, owned by lws
 *                                 until WSI_DESTROY)
 * Every lws-visible object starts with a qb_lws_obj tag, so the single lws
 * callback can tell a websocket connection from a REST request.
 */
#ifndef QB_ADAPTER_INT_H
#define QB_ADAPTER_INT_H

#include "adapter.h"
#include "budget.h"
#include "sync.h"
#include "log.h"

#include <libwebsockets.h>
#include <nng/nng.h>
#include <signal.h>
#include <stdatomic.h>

typedef enum qb_lws_kind {
    QB_LWS_WS = 0x5157,
    QB_LWS_REST = 0x5152,
} qb_lws_kind;

typedef struct qb_lws_obj {
    qb_lws_kind kind;
} qb_lws_obj;

/* ---- publish.c --------------------------------------------------------- */

typedef struct qb_pub_counters {
    uint64_t published;      /* messages (maps) handed to NNG */
    uint64_t publish_errors; /* messages lost to a failed send */
    uint64_t encode_errors;
    uint64_t frames; /* NNG messages sent (a frame holds 1..N maps) */
} qb_pub_counters;

typedef struct qb_pub qb_pub;

/* Batching bounds (publish.c): maps per frame, bytes per frame (a frame is
 * closed once it reaches this size; one map larger than it goes alone),
 * topics with an open batch at once. */
#define QB_PUB_BATCH_MAPS 64
#define QB_PUB_BATCH_BYTES (64u << 10)
#define QB_PUB_OPEN_BATCHES 64

/* Opens a PUB socket (NNG_OPT_SENDBUF 8192) dialing url without blocking:
 * NNG keeps redialing until the broker is up. A tls+tcp:// url dials with
 * mutual TLS from tls (nngtls.h: the broker's CA required, our certificate
 * and key); tls may be NULL for other URLs. tls is read during the call
 * only. QB_OK or a qb_err (QB_EINVAL: a TLS file missing or unusable,
 * logged). */
int qb__pub_open(qb_pub **out, const char *url, const qb_tls_files *tls, qb_pub_counters *cnt);
/* Sends what is still batched, then closes. NULL is a no-op. */
void qb__pub_close(qb_pub *p);
/* Publishes m. Deltas and trades are appended to the open batch of their
 * topic (sent when it reaches the bounds above, or at the next
 * qb__pub_flush); snapshots, status and tickers flush every batch first and
 * go out at once. QB_OK, or the error (counted, logged rate-limited). */
int qb__pub_send(qb_pub *p, const qb_msg *m);
/* Sends every open batch, oldest first, without blocking. Call at the end
 * of every lws service pass: nothing waits longer than the pass that made
 * it. QB_OK or the last send error (counted). */
int qb__pub_flush(qb_pub *p);
/* The end of one lws service pass: sends every open batch, unless
 * more_input (lws holds input already received and not yet handled: the
 * next pass continues the batches). Even then, batches are sent once they
 * were held for QB_PUB_HOLD_PASSES passes or QB_PUB_HOLD_US microseconds. */
#define QB_PUB_HOLD_PASSES 64
#define QB_PUB_HOLD_US 1000
void qb__pub_pass_end(qb_pub *p, bool more_input);
/* True when the adapter's input already waits: lws holds buffered or
 * TLS-decrypted input (lws_service_adjust_timeout() == 0), or a websocket
 * connection's socket is readable now (poll, zero timeout). Only asked
 * while something is batched. lws service thread. */
bool qb__pub_input_waiting(qb_pub *p, qb_adapter *a);
/* Changes the bounds (max_maps 1 = no batching; flushes first). Tests and
 * benchmarks. */
void qb__pub_set_batch(qb_pub *p, uint32_t max_maps, size_t max_bytes);
/* Connections to the broker made so far (qb_dialer_connects). */
uint64_t qb__pub_connects(const qb_pub *p);

/* ---- rest.c ------------------------------------------------------------ */

typedef struct qb_rest_req qb_rest_req;

/* Result of a GET: status is the HTTP status (0 when the transport failed,
 * err then says why); body is valid only during the call. */
typedef void (*qb_rest_cb)(void *user, int status, const char *body, size_t len,
                           uint32_t retry_after_ms, const char *err);

/* Starts GET url; cb fires exactly once later (never from inside this
 * call), unless qb__rest_cancel() is called first. NULL on immediate
 * failure (err written, no callback). */
qb_rest_req *qb__rest_get(struct lws_context *ctx, const char *url, size_t max_body, qb_rest_cb cb,
                          void *user, char *err, size_t errcap);
/* The callback will not fire; lws frees the request when it closes it. */
void qb__rest_cancel(qb_rest_req *r);
int qb__rest_lws_cb(struct lws *wsi, enum lws_callback_reasons reason, qb_rest_req *r, void *in,
                    size_t len);

/* ---- instruments --------------------------------------------------------- */

typedef struct qb_wsconn qb_wsconn;

#define QB_TRADE_DEDUP 64 /* recent trade ids remembered per instrument */

typedef struct qb_inst {
    qb_adapter *a;
    qb_wsconn *conn;
    char symbol[QB_NATIVE_MAX]; /* normalized */
    char native[QB_NATIVE_MAX];
    qb_sync sync;
    uint64_t book_seq, trade_seq, status_seq, ticker_seq;
    /* Trade ids already published (ring): HTX repeats the last trade after
     * a (re)subscribe; the doc says to de-duplicate on tradeId. Kept across
     * reconnects on purpose. */
    uint64_t recent_trades[QB_TRADE_DEDUP];
    unsigned recent_pos;
    bool book_published;
    qb_rest_req *req;          /* snapshot GET in flight */
    bool ws_fetch_pending;     /* snapshot asked for over the websocket */
    uint32_t fetch_failures;   /* consecutive, for the backoff */
    uint64_t next_fetch_mono;  /* earliest start of the next fetch (rate) */
    uint64_t last_update_mono; /* last depth event or trade */
    /* Snapshot scheduling (adapter.c, budget.h's qb_fetchq): the queue
     * entry (at most one per instrument), when the book stopped being live
     * (0: live), when its last request started in this broken spell. */
    qb_fetchq_item fq;
    uint64_t broken_since, last_req_mono;
    uint64_t resyncs;                          /* this instrument's resync spells */
    uint64_t heals, last_heal_ns, max_heal_ns; /* broken -> live again */
    uint32_t progress_s;                       /* next "resyncing for N s" status */
    lws_sorted_usec_list_t sul_fetch;          /* request watchdog */
    lws_sorted_usec_list_t sul_suspect;
    lws_sorted_usec_list_t sul_stale;
    /* The instrument's state-change lines (feed_state, snapshot_applied):
     * one limiter per instrument, so a storm of bad frames that resyncs
     * the books over and over (HTX: every undecodable frame) cannot flood
     * the log; the states still reach the bus, every one of them. */
    qb_log_rl log_rl;
} qb_inst;

/* ---- ws_conn.c ------------------------------------------------------------ */

#define QB_WS_TXQ 16 /* queued outgoing messages per connection, plus 4 per instrument */

struct qb_wsconn {
    qb_lws_obj obj;
    qb_adapter *a;
    unsigned idx;
    qb_inst **insts;
    size_t ninst;
    char *url;
    struct lws *wsi;
    bool established;
    bool in_connect;    /* inside lws_client_connect_via_info */
    bool failed;        /* this attempt already failed (handled once) */
    bool close_now;     /* close from the next callback */
    bool reconnect_now; /* next reconnect without backoff (age, serverShutdown) */
    bool retry_pending;
    uint32_t attempts;      /* consecutive failures, for the backoff */
    uint64_t connects;      /* successful connections so far */
    qb_buf rx;              /* message reassembly, capped at max_frame */
    bool rx_drop;           /* the current message is oversized: drop it */
    size_t rx_total;        /* bytes of the current message, dropped included */
    uint64_t rx_calls;      /* RECEIVE callbacks so far: progress of qb__wsconn_drain_tls */
    qb_buf *tx;             /* outgoing text messages (LWS_PRE headroom each) */
    unsigned tx_cap;        /* QB_WS_TXQ + 4 per instrument (HTX: 3 subs + 1 req each) */
    unsigned tx_head, tx_n; /* ring: bounded, overflow policy "drop newest" */
    uint64_t tx_dropped;
    uint64_t next_req_mono; /* earliest next websocket snapshot request (HTX: 100 ms) */
    char err[160];
    lws_sorted_usec_list_t sul_connect;
    lws_sorted_usec_list_t sul_age;
    lws_sorted_usec_list_t sul_healthy;
    lws_sorted_usec_list_t sul_keepalive;
};

/* ninst: instruments on this connection (sizes the send queue). */
int qb__wsconn_init(qb_wsconn *c, qb_adapter *a, unsigned idx, size_t ninst);
void qb__wsconn_fini(qb_wsconn *c);
void qb__wsconn_start(qb_wsconn *c);
/* Closes the connection and reconnects at once (no backoff). */
void qb__wsconn_recycle(qb_wsconn *c, const char *why);
/* Queues a text message (sent from the WRITEABLE callback, in order). When
 * tx_cap messages are already queued the new one is dropped (counted,
 * QB_EAGAIN): senders own their retry (snapshot requests have a watchdog).
 * The queue is emptied when the connection closes. */
int qb__wsconn_send(qb_wsconn *c, const char *text, size_t len);
void qb__wsconn_cancel_timers(qb_wsconn *c);
/* Has lws read the records OpenSSL read ahead for c (invisible to poll()), up to
 * QB_WS_TLS_DRAIN_MAX records. Returns true when buffered input remains and
 * the loop must not sleep (the caller wakes it with lws_cancel_service). */
bool qb__wsconn_drain_tls(qb_wsconn *c);
int qb__wsconn_lws_cb(struct lws *wsi, enum lws_callback_reasons reason, qb_wsconn *c, void *in,
                      size_t len);

/* ---- adapter.c ------------------------------------------------------------ */

typedef struct qb_adapter_counters {
    uint64_t frames, bytes, bad_json, oversized, unknown, trades, reconnects;
    uint64_t connects, disconnects, connect_errors, exchange_errors, controls;
    uint64_t unknown_symbol, shutdowns, snapshot_requests;
    uint64_t bad_gzip, gzip_oversized, lost_frames; /* lost_frames: handled as suspect */
    uint64_t pongs, heartbeats, keepalives, tickers, trades_duplicate, requests_paced;
    uint64_t empty_updates, requests_rate_limited;
    uint64_t tls_drained, tls_drain_stuck;
    uint64_t lost_frames_attributed; /* undecodable frames whose symbol was still readable */
} qb_adapter_counters;

struct qb_adapter {
    qb_adapter_cfg cfg;
    qb_exchange_cfg xcfg; /* cfg.xcfg with owned copies of the strings */
    char **symbol_map;
    char **symbols;
    const qb_exchange_ops *ops;
    struct lws_context *ctx;
    qb_pub *pub;
    qb_parser parser;
    void *xstate; /* the exchange's private state (ops->state_size), with parser */
    qb_inst *insts;
    size_t ninst;
    qb_wsconn *conns;
    size_t nconn;
    qb_adapter_counters cnt;
    qb_sync_counters scnt;
    qb_pub_counters pcnt;
    uint64_t rng;
    unsigned fetch_inflight;    /* snapshot GETs in flight, all instruments */
    qb_budget budget;           /* connect / snapshot budgets of the process (budget.c) */
    qb_fetchq fetchq;           /* books waiting for a snapshot request (budget.c) */
    uint32_t snapshots_per_min; /* the snapshot budget in requests (weights applied) */
    uint32_t snapshot_weight;   /* the exchange's weight of one request (1: none) */
    lws_sorted_usec_list_t sul_pump;
    lws_sorted_usec_list_t sul_progress;
    uint64_t heals, heal_max_ns; /* books live again after a broken spell */
    /* A stop was asked for: set by qb_adapter_stop (SIGINT/SIGTERM, from a
     * signal handler on any thread; a lock-free atomic, so async-signal-safe)
     * and by qb_adapter_free. The loop ends after its current pass, nothing
     * new is scheduled, and what closes meanwhile is part of the shutdown,
     * logged at info: at a Ctrl-C the exchange side may close first (the
     * demo's simulator gets the same SIGINT and sends serverShutdown). */
    atomic_bool stopping;
    lws_sorted_usec_list_t sul_refresh;
    uint64_t pub_connects_seen; /* qb__pub_connects at the last refresh */
    lws_sorted_usec_list_t sul_stats;
};

/* A complete websocket message arrived on c (already reassembled). */
void qb__adapter_on_message(qb_wsconn *c, const uint8_t *data, size_t len, uint64_t recv_ts);
/* Connection c is up: start syncing its instruments. */
void qb__adapter_on_conn_up(qb_wsconn *c);
/* A frame of c was lost (oversized, undecodable, unparseable) and nobody
 * can say whose it was: with ops->suspect_on_lost_frame every live book of
 * c becomes suspect until its next event confirms or breaks its sequence
 * (sync.h, qb_sync_suspect); a pending websocket snapshot request of c is
 * asked again (the frame may have been its answer). */
void qb__adapter_on_frame_lost(qb_wsconn *c, const char *why);
/* Connection c is gone (st RESYNCING or DOWN, reason). */
void qb__adapter_on_conn_down(qb_wsconn *c, qb_feed_state st, const char *reason);
/* Random number in [lo, hi] (jitter). */
uint64_t qb__adapter_rand(qb_adapter *a, uint64_t lo, uint64_t hi);

#endif
