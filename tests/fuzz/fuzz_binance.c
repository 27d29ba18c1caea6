/*
 * fuzz_binance.c: fuzz target of the binance adapter's parser and book sync
 * (adapters/binance.c through qb_binance_ops, adapters/sync.c). Input format
 * and invariants: fuzz_exchange.h.
 *
 * Plus the differential invariant of the simdjson DOM hot path
 * (adapters/binance_json.cc): every websocket record also goes through
 * qb__binance_parse_jsmn (jsmn alone) on a second parser. When jsmn accepts
 * a frame, ops->parse must accept it with the identical event; when jsmn
 * rejects it, ops->parse must reject it with the same code. No exception:
 * the hot path is exactly as strict as jsmn (binance_json.cc), so every
 * difference is a finding.
 */
#include "fuzz_exchange.h"

#include "binance_json.h"

static qb_parser fuzz_bn_jsmn;
static int fuzz_bn_ready;

static int fuzz_bn_dec_eq(qb_dec a, qb_dec b)
{
    return a.mant == b.mant && a.scale == b.scale;
}

static int fuzz_bn_levels_eq(const qb_level *a, const qb_level *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!fuzz_bn_dec_eq(a[i].price, b[i].price) || !fuzz_bn_dec_eq(a[i].size, b[i].size)) {
            return 0;
        }
    }
    return 1;
}

static void fuzz_bn_diff(const char *js, size_t len)
{
    qb_parser *p = &fuzz_ex_state.p;
    qb_event a, b;
    int ra = qb_binance_ops.parse(fuzz_ex_state.st, p, js, len, &a);
    int rb = qb__binance_parse_jsmn(&fuzz_bn_jsmn, js, len, &b);
    QB_FUZZ_CHECK(ra == rb);
    if (rb != QB_OK) {
        return;
    }
    QB_FUZZ_CHECK(ra == QB_OK);
    QB_FUZZ_CHECK(a.kind == b.kind && strcmp(a.native, b.native) == 0 && a.first_id == b.first_id &&
                  a.last_id == b.last_id && a.exch_ts == b.exch_ts && a.n_bids == b.n_bids &&
                  a.n_asks == b.n_asks && a.trade_id == b.trade_id &&
                  fuzz_bn_dec_eq(a.price, b.price) && fuzz_bn_dec_eq(a.qty, b.qty) &&
                  a.side == b.side && a.n_trades == b.n_trades && strcmp(a.info, b.info) == 0);
    QB_FUZZ_CHECK(fuzz_bn_levels_eq(a.bids, b.bids, a.n_bids));
    QB_FUZZ_CHECK(fuzz_bn_levels_eq(a.asks, b.asks, a.n_asks));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_ex_init(&qb_binance_ops);
    if (!fuzz_bn_ready) {
        if (qb_parser_init(&fuzz_bn_jsmn, FUZZ_MAX_BYTES, FUZZ_MAX_LEVELS) != QB_OK) {
            abort();
        }
        fuzz_bn_ready = 1;
    }
    size_t pos = 0, len;
    const uint8_t *rec;
    while (qb_fuzz_next_record(data, size, &pos, &rec, &len)) {
        if (len == 0 || (rec[0] != 'S' && rec[0] != 'G' && rec[0] != 'Z')) {
            fuzz_bn_diff((const char *)rec, len);
        }
    }
    return fuzz_exchange_run(&qb_binance_ops, data, size);
}
