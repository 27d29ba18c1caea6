/*
 * sync_owner.h: the owners of a qb_sync (adapters/sync.h) that the unit
 * tests of the sync and of the exchanges give it: a recording owner
 * (rec_owner: counts, the last state and reason, the ids applied, crossed
 * books seen) and a subscriber (sub_owner: applies only what the sync
 * publishes to a book of its own), dec() for expected decimals, and
 * Binance spot depth frames and snapshots fed through the shipped parser.
 * Header-only with static inline functions, like harness.h: a check inside
 * a separately compiled file would not be counted by the harness.
 */
#ifndef QB_TEST_SYNC_OWNER_H
#define QB_TEST_SYNC_OWNER_H

#include "harness.h"

#include "book.h"
#include "decimal.h"
#include "err.h"
#include "exchange.h"
#include "sync.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static inline qb_dec dec(const char *s)
{
    qb_dec d = {0, 0};
    int rc = qb_dec_parse(s, strlen(s), &d);
    QB_CHECK_EQ_INT(rc, QB_OK);
    return d;
}

/* ---- a recording sync owner ------------------------------------------------ */

typedef struct rec_owner {
    int snapshots, deltas, states, wants;
    uint32_t last_want_delay;
    qb_feed_state last_state;
    char last_reason[QB_EVENT_INFO_MAX];
    uint64_t last_first, last_last;
    uint64_t first_applied;
    bool crossed_seen;
    bool check_crossed;
} rec_owner;

static inline void own_snapshot(qb_sync *s, const qb_event *snap)
{
    rec_owner *o = s->user;
    o->snapshots++;
    (void)snap;
}

static inline void own_delta(qb_sync *s, const qb_event *ev)
{
    rec_owner *o = s->user;
    if (o->deltas == 0) {
        o->first_applied = ev->first_id;
    }
    o->deltas++;
    o->last_first = ev->first_id;
    o->last_last = ev->last_id;
    if (o->check_crossed && qb_book_crossed(qb_sync_book(s))) {
        o->crossed_seen = true;
    }
}

static inline void own_state(qb_sync *s, qb_feed_state st, const char *reason)
{
    rec_owner *o = s->user;
    o->states++;
    o->last_state = st;
    snprintf(o->last_reason, sizeof o->last_reason, "%s", reason);
}

static inline void own_want(qb_sync *s, uint32_t delay_ms)
{
    rec_owner *o = s->user;
    o->wants++;
    o->last_want_delay = delay_ms;
}

static inline const qb_sync_ops *rec_owner_ops(void)
{
    static const qb_sync_ops ops = {
        .on_snapshot = own_snapshot,
        .on_delta = own_delta,
        .on_state = own_state,
        .want_snapshot = own_want,
    };
    return &ops;
}

/* ---- a subscriber: applies only what the sync publishes ------------------------- */

typedef struct sub_owner {
    qb_book *book; /* the subscriber's reconstruction */
    int snapshots, deltas, states, wants;
    size_t last_nb, last_na;
    bool apply_failed;
} sub_owner;

static inline void sub_snapshot(qb_sync *s, const qb_event *snap)
{
    sub_owner *o = s->user;
    o->snapshots++;
    if (qb_book_replace(o->book, snap->bids, snap->n_bids, snap->asks, snap->n_asks) != QB_OK) {
        o->apply_failed = true;
    }
}

static inline void sub_delta(qb_sync *s, const qb_event *ev)
{
    sub_owner *o = s->user;
    o->deltas++;
    o->last_nb = ev->n_bids;
    o->last_na = ev->n_asks;
    if (qb_book_apply(o->book, ev->bids, ev->n_bids, ev->asks, ev->n_asks) != QB_OK) {
        o->apply_failed = true;
    }
}

static inline void sub_state(qb_sync *s, qb_feed_state st, const char *reason)
{
    ((sub_owner *)s->user)->states++;
    (void)st;
    (void)reason;
}

static inline void sub_want(qb_sync *s, uint32_t delay_ms)
{
    ((sub_owner *)s->user)->wants++;
    (void)delay_ms;
}

static inline const qb_sync_ops *sub_owner_ops(void)
{
    static const qb_sync_ops ops = {
        .on_snapshot = sub_snapshot,
        .on_delta = sub_delta,
        .on_state = sub_state,
        .want_snapshot = sub_want,
    };
    return &ops;
}

/* ---- Binance spot events for the sync ------------------------------------ */

/* Builds a Binance spot depth frame (U..u). */
static inline int depth_frame(char *buf, size_t cap, unsigned long long U, unsigned long long u,
                              const char *bids, const char *asks)
{
    return snprintf(buf, cap,
                    "{\"stream\":\"btcusdt@depth@100ms\",\"data\":{\"e\":\"depthUpdate\","
                    "\"E\":1700000000000,\"s\":\"BTCUSDT\",\"U\":%llu,\"u\":%llu,\"b\":[%s],"
                    "\"a\":[%s]}}",
                    U, u, bids, asks);
}

/* Parses a depth frame with the shipped parser and gives it to the sync,
 * expecting expect_rc. */
static inline void feed(void *st, qb_parser *p, qb_sync *s, const char *js, int expect_rc)
{
    qb_event ev;
    QB_CHECK_EQ_INT(qb_binance_ops.parse(st, p, js, strlen(js), &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_DEPTH);
    QB_CHECK_EQ_INT(qb_sync_on_delta(s, &ev), expect_rc);
}

/* Parses a REST depth snapshot and gives it to the sync. */
static inline void snapshot(void *st, qb_parser *p, qb_sync *s, const char *js, int expect_rc)
{
    qb_event ev;
    QB_CHECK_EQ_INT(qb_binance_ops.parse_snapshot(st, p, js, strlen(js), &ev), QB_OK);
    QB_CHECK_EQ_INT(qb_sync_on_snapshot(s, &ev), expect_rc);
}

#endif
