/*
 * exchange.c: what exchange files share: the parser scratch state, the
 * [price, size] level parser, time conversion, and the registry of ops
 * tables (add one line per exchange). Pure functions; any thread.
 */
#include "exchange.h"

#include "err.h"

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
    if (p->tok == NULL || p->bids == NULL || p->asks == NULL) {
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
    qb_buf_fini(&p->scratch);
    p->tok = NULL;
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

int qb__parse_levels(const qb_json *j, int arr, qb_level *out, size_t cap, size_t *n)
{
    if (!qb_json_is_array(j, arr)) {
        return QB_EPARSE;
    }
    size_t count = (size_t)j->tok[arr].size;
    if (count > cap) {
        return QB_ETOOBIG;
    }
    int i = arr + 1;
    for (size_t k = 0; k < count; k++) {
        /* Each level is ["price","size"] (Binance may add fields in the
         * future: extra elements are ignored). */
        if (!qb_json_is_array(j, i) || j->tok[i].size < 2) {
            return QB_EPARSE;
        }
        qb_level lv;
        int rc = qb__parse_dec(j, i + 1, &lv.price);
        if (rc == QB_OK) {
            rc = qb__parse_dec(j, qb_json_skip(j, i + 1), &lv.size);
        }
        if (rc != QB_OK) {
            return rc;
        }
        if (lv.price.mant <= 0 || qb_dec_is_neg(lv.size)) {
            return QB_ERANGE;
        }
        out[k] = lv;
        i = qb_json_skip(j, i);
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

/* ---- registry ---------------------------------------------------------- */

static const qb_exchange_ops *const exchange_registry[] = {
    &qb_binance_ops,
};

const qb_exchange_ops *qb_exchange_find(const char *name)
{
    for (size_t i = 0; i < sizeof exchange_registry / sizeof exchange_registry[0]; i++) {
        if (strcmp(exchange_registry[i]->name, name) == 0) {
            return exchange_registry[i];
        }
    }
    return NULL;
}

const char *qb_exchange_names(void)
{
    return "binance";
}
