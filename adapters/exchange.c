/*
 * exchange.c: what exchange files share: the parser scratch state, the
 * exchanges' private state (qb_exchange_state_new: .state_size bytes,
 * .init/.fini), the [price, size] level parser, time conversion, the
 * "no ids" sequence rule of full-book exchanges, and the registry of ops
 * tables, built from exchanges.def (one line per exchange). Pure
 * functions; any thread.
 */
#include "exchange.h"

#include "err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int qb_parser_init(qb_parser *p, size_t max_bytes, size_t max_levels)
{
    memset(p, 0, sizeof *p);
    /* Enough tokens for any frame of max_bytes of exchange-shaped JSON
     * (>= 6 bytes per token) and for a snapshot of max_levels per side
     * (3 tokens per level); a denser document is rejected (QB_ETOOBIG). */
    size_t ntok = max_bytes / 6;
    if (ntok < 6 * max_levels) {
        ntok = 6 * max_levels;
    }
    ntok += 64;
    if (ntok > (size_t)1 << 24) {
        ntok = (size_t)1 << 24;
    }
    p->tok = malloc(ntok * sizeof *p->tok);
    p->bids = malloc((max_levels ? max_levels : 1) * sizeof(qb_level));
    p->asks = malloc((max_levels ? max_levels : 1) * sizeof(qb_level));
    p->trades = malloc(QB_PARSER_TRADES * sizeof(qb_trade));
    p->trade_cap = QB_PARSER_TRADES;
    p->max_bytes = max_bytes;
    if (p->tok == NULL || p->bids == NULL || p->asks == NULL || p->trades == NULL) {
        qb_parser_fini(p);
        return QB_ENOMEM;
    }
    p->tok_cap = (int)ntok;
    p->level_cap = max_levels;
    return QB_OK;
}

void qb_parser_fini(qb_parser *p)
{
    free(p->tok);
    free(p->bids);
    free(p->asks);
    free(p->trades);
    qb_buf_fini(&p->scratch);
    p->tok = NULL;
    p->trades = NULL;
    p->bids = p->asks = NULL;
}

int qb__parse_dec(const qb_json *j, int i, qb_dec *out)
{
    if (i < 0 || i >= j->ntok ||
        (j->tok[i].type != JSMN_STRING && j->tok[i].type != JSMN_PRIMITIVE)) {
        return QB_EPARSE;
    }
    size_t n;
    const char *s = qb_json_text(j, i, &n);
    return qb_dec_parse(s, n, out);
}

/* A decimal from a string or primitive token known to be in range. */
static inline int exchange_tok_dec(const qb_json *j, const jsmntok_t *t, qb_dec *out)
{
    if (t->type != JSMN_STRING && t->type != JSMN_PRIMITIVE) {
        return QB_EPARSE;
    }
    return qb_dec_parse(j->js + t->start, (size_t)(t->end - t->start), out);
}

int qb__parse_levels(const qb_json *j, int arr, qb_level *out, size_t cap, size_t *n)
{
    if (!qb_json_is_array(j, arr)) {
        return QB_EPARSE;
    }
    size_t count = (size_t)j->tok[arr].size;
    if (count > cap) {
        return QB_ETOOBIG;
    }
    const jsmntok_t *tok = j->tok;
    int i = arr + 1;
    for (size_t k = 0; k < count; k++) {
        /* Each level is ["price","size"] (Binance may add fields in the
         * future: extra elements are ignored). A complete parse holds the
         * level's tokens: a two-element array of scalars is i, i+1, i+2. */
        if (i + 2 >= j->ntok || tok[i].type != JSMN_ARRAY || tok[i].size < 2) {
            return QB_EPARSE;
        }
        qb_level lv;
        int rc = exchange_tok_dec(j, &tok[i + 1], &lv.price);
        if (rc == QB_OK) {
            /* the price is a scalar, so the size token follows it */
            rc = exchange_tok_dec(j, &tok[i + 2], &lv.size);
        }
        if (rc != QB_OK) {
            return rc;
        }
        if (lv.price.mant <= 0 || qb_dec_is_neg(lv.size)) {
            return QB_ERANGE;
        }
        out[k] = lv;
        i = tok[i].size == 2 ? i + 3 : qb_json_skip(j, i);
    }
    *n = count;
    return QB_OK;
}

int qb__ms_to_ns(uint64_t ms, uint64_t *ns)
{
    if (ms > UINT64_MAX / 1000000u) {
        return QB_ERANGE;
    }
    *ns = ms * 1000000u;
    return QB_OK;
}

void qb__info_text(const qb_json *j, int i, char *out, size_t cap)
{
    if (cap == 0) {
        return;
    }
    if (i < 0 || i >= j->ntok) {
        out[0] = '\0';
        return;
    }
    size_t n;
    const char *s = qb_json_text(j, i, &n);
    if (n > cap - 1) {
        n = cap - 1;
    }
    /* Keep logs one line and printable. */
    size_t k;
    for (k = 0; k < n; k++) {
        out[k] = (s[k] >= 0x20 && s[k] < 0x7f) ? s[k] : '?';
    }
    out[k] = '\0';
}

int qb__dec_sub(qb_dec a, qb_dec b, qb_dec *out)
{
    if (b.mant == INT64_MIN) {
        return QB_ERANGE;
    }
    b.mant = -b.mant;
    return qb_dec_add(a, b, out);
}

/* ---- the "no ids" rule (full books) ---------------------------------------- */

/* Full-book exchanges (Bithumb) have no update ids: the book is replaced by
 * each message, so nothing is ever stale and every message follows. */
static bool none_never(const qb_event *ev, uint64_t id)
{
    (void)ev;
    (void)id;
    return false;
}

static bool none_always(const qb_event *ev, uint64_t id)
{
    (void)ev;
    (void)id;
    return true;
}

static bool none_usable(uint64_t snap_id, const qb_event *first)
{
    (void)snap_id;
    (void)first;
    return true;
}

static void none_describe(const qb_event *ev, uint64_t prev, char *buf, size_t cap)
{
    (void)ev;
    (void)prev;
    snprintf(buf, cap, "no sequence");
}

const qb_seq_rule qb_seq_none = {
    .name = "none",
    .is_stale = none_never,
    .bridges = none_always,
    .follows = none_always,
    .snapshot_usable = none_usable,
    .describe_gap = none_describe,
};

/* ---- registry ---------------------------------------------------------- */

const qb_exchange_ops *const qb_exchanges[] = {
#define QB_EXCHANGE(id, symbols) &qb_##id##_ops,
#include "exchanges.def"
    NULL,
};

static const char *const exchange_default_symbols[] = {
#define QB_EXCHANGE(id, symbols) symbols,
#include "exchanges.def"
};

const qb_exchange_ops *qb_exchange_find(const char *name)
{
    for (size_t i = 0; qb_exchanges[i] != NULL; i++) {
        if (strcmp(qb_exchanges[i]->name, name) == 0) {
            return qb_exchanges[i];
        }
    }
    return NULL;
}

const char *qb_exchange_names(void)
{
    static const char names[] = ""
#define QB_EXCHANGE(id, symbols) ", " #id
#include "exchanges.def"
        ;
    return names + 2; /* past the first ", " */
}

const char *qb_exchange_default_symbols(const qb_exchange_ops *ops)
{
    for (size_t i = 0; qb_exchanges[i] != NULL; i++) {
        if (qb_exchanges[i] == ops) {
            return exchange_default_symbols[i];
        }
    }
    return "";
}

/* ---- private state --------------------------------------------------------- */

int qb_exchange_state_new(const qb_exchange_ops *ops, size_t max_bytes, void **out)
{
    void *st = NULL;
    if (ops->state_size > 0 && (st = calloc(1, ops->state_size)) == NULL) {
        return QB_ENOMEM;
    }
    int rc = ops->init ? ops->init(st, max_bytes) : QB_OK;
    if (rc != QB_OK) {
        free(st);
        return rc;
    }
    *out = st;
    return QB_OK;
}

void qb_exchange_state_free(const qb_exchange_ops *ops, void *st)
{
    if (st == NULL) {
        return;
    }
    if (ops->fini) {
        ops->fini(st);
    }
    free(st);
}
