/*
 * exsim_market.c: the simulator's market: symbols, their books, the
 * deterministic synthetic generator, the replay engine, the per-event
 * faults and the --dump file. Runs on the lws service thread only (one
 * lws_sul timer drives it), so a REST snapshot taken between two timer
 * ticks is exactly the book after the last generated event.
 *
 * Determinism: every symbol has its own splitmix64 state seeded from
 * --seed and a hash of its name; event i depends only on that state, i.e.
 * on (seed, symbol, i). Time only decides WHEN event i is generated
 * (--rate per second per symbol; each tick generates every event that is
 * due, so high rates batch several events per tick). Trades use a second
 * state and are tied to event indexes (trade j follows depth event
 * ceil(j * rate / trade-rate)), so they are deterministic too. Prices and
 * sizes are integers in units of 10^-8 (Binance prints 8 decimals), never
 * floating point.
 *
 * The synthetic book (per side at most --max-levels levels):
 *
 *   bids  ... 59999.97 59999.98 | mid 60000.00 | 60000.02 60000.05 ...  asks
 *                                 (reference price + this book's 0/1 tick offset)
 *
 * One price per pair, as arbitrage keeps real venues within a tick or two
 * of each other: every exchange's book of a pair (Binance BTCUSDT, HTX
 * btcusdt) starts from the same price and follows the same reference path,
 * drawn from --seed and the pair's name (upper case, letters and digits):
 * anchors every MARKET_REF_SPAN events, each -MARKET_REF_STEP..+MARKET_REF_STEP
 * ticks from the previous one, and a straight line between them. A book's
 * mid is the reference at its event index plus its own offset (0 or 1 tick,
 * moved by its own PRNG), so two exchanges' mids differ by at most one tick
 * and their consolidated best bid stays below the best ask (each book's
 * best bid is at most mid - 1, its best ask at least mid + 1). Books whose
 * generation started at different times are at different indexes: the
 * reference moves at most MARKET_REF_STEP / MARKET_REF_SPAN ticks per event,
 * one tick per 50 events (5 s at the default --rate 10).
 *
 * Each event: the mid moves; levels the mid crossed are removed (the "market
 * took them"); 1-4 random changes (--changes N: N), half near the top and half anywhere
 * (insert at some distance from the mid, change a size, delete a level);
 * levels beyond --max-levels are removed explicitly (size 0 is sent), so
 * books stay about --max-levels deep. Inserts are clamped to stay strictly
 * inside the opposite best, so the book never crosses. Every level appears
 * at most once per event, and each side's changes are listed best first
 * (bids descending, asks ascending), as Binance spot and HTX send them
 * (every multi-level side of ../shared/exchange-data's recordings is); an
 * event of k entries consumes k update ids:
 * U = previous u + 1, u = U + k - 1.
 *
 * Faults (per symbol event index k, counted): --gap-every N skips sending
 * event k*N (the book still changes), --drop-rate R skips each event with
 * probability R (a per-symbol draw from --seed, its own PRNG state, so the
 * book and ids do not depend on R; logged exsim_fault_drop with the
 * wall-clock time, the heal benchmark's t0; with --drop-corrupt a corrupt
 * gzip frame takes its place on gzip exchanges), --dup-every sends it twice,
 * --reorder-every holds it back and sends it after the next one,
 * --malformed-every / --oversized-every add a bad frame after it, and on
 * gzip exchanges --corrupt-gzip-every / --gzip-bomb-every too.
 *
 * Exchanges shape the market through their ops table: the book depth cap
 * (HTX mbp.150: 150, Bithumb: 30 units), sequence ids with jumps (HTX
 * seqNum: id += levels + 1 + 0..39, prevSeqNum = the previous event's
 * seqNum), "nothing changed" events with no levels (HTX, about 1 in 8,
 * still a new seqNum), tiny sizes (HTX, about 1 size in 8 below 10^-3,
 * printed in exponent form), and the price scale from base and quote
 * (BTC-USDT about 60000 with tick 0.01; KRW-BTC about 90,000,000 KRW with
 * tick 1000 KRW and sizes with 8 decimals). The id jumps and empty events
 * come from their own PRNG state, so they never perturb the book's.
 * Tickers: trades update a rolling 24 h state per symbol (open, high, low,
 * last, volumes, count); every --ticker-every events it is sent to ticker
 * streams.
 */
#include "exsim.h"

#include "clock.h"
#include "err.h"
#include "file.h"
#include "log.h"

#include <libwebsockets.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The market timer; one per process (the simulator is one per process). */
static struct {
    lws_sorted_usec_list_t sul;
    qb__exsim *sim;
    lws_usec_t period_us;
} market_timer;

/* ---- PRNG and hashing ---- */

static uint64_t market_rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t market_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t market_now_ms(void)
{
    return qb_now_ns() / 1000000u;
}

uint64_t qb__exsim_now_ms(void)
{
    return market_now_ms();
}

/* ---- numbers ---- */

int qb__exsim_num(qb_buf *b, int64_t v, qb__exsim_numfmt fmt)
{
    bool neg = v < 0;
    uint64_t u = neg ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    if (u == 0) {
        return qb_buf_append(b, fmt == QB__EXSIM_NUM_JAVA ? "0.0" : "0", fmt ? 3 : 1);
    }
    /* digits of u and the decimal exponent: value = digits * 10^(exp10) */
    char d[24];
    int nd = snprintf(d, sizeof d, "%llu", (unsigned long long)u);
    int exp10 = -8;
    while (nd > 1 && d[nd - 1] == '0') {
        nd--;
        exp10++;
    }
    d[nd] = '\0';
    /* position of the decimal point relative to d: value = 0.d * 10^point */
    int point = nd + exp10; /* digits before the point */
    char out[64];
    size_t o = 0;
    if (neg) {
        out[o++] = '-';
    }
    bool sci = fmt == QB__EXSIM_NUM_JAVA && (point <= -2 || point >= 8);
    if (sci) {
        /* d[0].d[1..]E(point-1): 1.58E-4, 1.0E-5, 1.2345E7 */
        out[o++] = d[0];
        out[o++] = '.';
        if (nd == 1) {
            out[o++] = '0';
        }
        for (int i = 1; i < nd; i++) {
            out[o++] = d[i];
        }
        o += (size_t)snprintf(out + o, sizeof out - o, "E%d", point - 1);
    } else if (point <= 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (int i = 0; i < -point; i++) {
            out[o++] = '0';
        }
        for (int i = 0; i < nd; i++) {
            out[o++] = d[i];
        }
    } else if (point >= nd) {
        for (int i = 0; i < nd; i++) {
            out[o++] = d[i];
        }
        for (int i = nd; i < point; i++) {
            out[o++] = '0';
        }
        if (fmt == QB__EXSIM_NUM_JAVA) {
            out[o++] = '.';
            out[o++] = '0';
        }
    } else {
        for (int i = 0; i < nd; i++) {
            if (i == point) {
                out[o++] = '.';
            }
            out[o++] = d[i];
        }
    }
    return qb_buf_append(b, out, o);
}

int qb__exsim_num128(qb_buf *b, unsigned __int128 v16)
{
    unsigned __int128 v8 = v16 / 100000000u; /* units of 10^-8 */
    unsigned __int128 ip = v8 / 100000000u;
    uint64_t fp = (uint64_t)(v8 % 100000000u);
    char digits[48];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + (int)(ip % 10));
        ip /= 10;
    } while (ip > 0 && n < sizeof digits);
    char out[64];
    size_t o = 0;
    while (n > 0) {
        out[o++] = digits[--n];
    }
    if (fp != 0) {
        char f[16];
        int k = snprintf(f, sizeof f, "%08llu", (unsigned long long)fp);
        while (k > 0 && f[k - 1] == '0') {
            k--;
        }
        out[o++] = '.';
        memcpy(out + o, f, (size_t)k);
        o += (size_t)k;
    }
    return qb_buf_append(b, out, o);
}

/* ---- streams ---- */

qb__exsim_stream *qb__exsim_stream_get(qb__exsim *sim, const qb__exsim_ops *ops, const char *name,
                                       qb__exsim_sym *sym, qb__exsim_kind kind)
{
    for (qb__exsim_stream *st = sim->streams; st; st = st->next) {
        if (st->ops == ops && strcmp(st->name, name) == 0) {
            return st;
        }
    }
    if (strlen(name) >= QB__EXSIM_STREAM_MAX ||
        sim->nstreams >= (size_t)sim->cfg->max_symbols * QB__EXSIM_STREAMS_PER_SYM) {
        QB_LOG_RL(QB_LOG_WARN, "exsim_stream_limit", "name=%.40s streams=%zu", name, sim->nstreams);
        return NULL;
    }
    qb__exsim_stream *st = calloc(1, sizeof *st);
    if (st == NULL) {
        return NULL;
    }
    snprintf(st->name, sizeof st->name, "%s", name);
    st->ops = ops;
    st->kind = kind;
    st->sym = sym;
    if (sym) {
        if (sym->nstreams == sym->capstreams) {
            size_t nc = sym->capstreams ? sym->capstreams * 2 : 4;
            qb__exsim_stream **ns = realloc(sym->streams, nc * sizeof *ns);
            if (ns == NULL) {
                free(st);
                return NULL;
            }
            sym->streams = ns;
            sym->capstreams = nc;
        }
        sym->streams[sym->nstreams++] = st;
    }
    st->next = sim->streams;
    sim->streams = st;
    sim->nstreams++;
    return st;
}

/* ---- symbols and the synthetic book ---- */

static bool market_name_ok(const qb__exsim *sim, const qb__exsim_ops *ops, const char *native)
{
    size_t n = strlen(native);
    if (n < 2 || n >= QB__EXSIM_SYM_MAX || !ops->symbol_ok(native)) {
        return false;
    }
    if (sim->cfg->nsymbols == 0) {
        return true;
    }
    for (size_t i = 0; i < sim->cfg->nsymbols; i++) {
        if (strcmp(sim->cfg->symbols[i], native) == 0) {
            return true;
        }
    }
    return false;
}

static int64_t market_qty(qb__exsim_sym *sym)
{
    if (sym->ops->small_sizes && market_rnd(&sym->rng) % 8 == 0) {
        /* below 10^-3 for BTC: HTX prints these as 1.5E-4 */
        return sym->lot * (int64_t)(1 + market_rnd(&sym->rng) % 99);
    }
    return sym->lot * (int64_t)(1 + market_rnd(&sym->rng) % (uint64_t)sym->qty_max);
}

static size_t market_depth(const qb__exsim *sim, const qb__exsim_ops *ops)
{
    size_t d = (size_t)sim->cfg->max_levels;
    if (ops->max_depth > 0 && ops->max_depth < d) {
        d = ops->max_depth;
    }
    return d;
}

static qb__exsim_sym *market_sym_alloc(qb__exsim *sim, const qb__exsim_ops *ops, const char *native,
                                       size_t max_levels)
{
    qb__exsim_sym *sym = calloc(1, sizeof *sym);
    if (sym == NULL) {
        return NULL;
    }
    sym->ops = ops;
    sym->depth = market_depth(sim, ops);
    snprintf(sym->name, sizeof sym->name, "%s", native);
    sym->book = qb_book_new(max_levels);
    if (sym->book == NULL) {
        free(sym);
        return NULL;
    }
    sym->next = sim->syms;
    sim->syms = sym;
    sim->nsyms++;
    return sym;
}

/* ---- the pair's reference price ---- */

#define MARKET_REF_SPAN 200 /* events between two anchors of the reference path */
#define MARKET_REF_STEP 4   /* an anchor is -4..+4 ticks from the previous one */

/* The seed of a pair's reference path: --seed and the pair's name, the
 * native name in upper case without separators, so "BTCUSDT" and "btcusdt"
 * are one pair and "KRW-BTC" is "KRWBTC". */
static uint64_t market_pair_hash(const qb__exsim *sim, const char *native)
{
    char pair[QB__EXSIM_SYM_MAX];
    size_t n = 0;
    for (const char *p = native; *p && n + 1 < sizeof pair; p++) {
        char c = *p;
        if (c >= 'a' && c <= 'z') {
            c = (char)(c - 'a' + 'A');
        }
        if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
            pair[n++] = c;
        }
    }
    pair[n] = '\0';
    return market_hash(pair) ^ ((uint64_t)sim->cfg->seed * 0xD6E8FEB86659FD93ull) ^
           0x3C6EF372FE94F82Bull;
}

/* Moves the reference path to its span k+1: the next anchor; it stays at
 * least 100 ticks above zero. */
static void market_ref_next(qb__exsim_sym *sym)
{
    int64_t step =
        (int64_t)(market_rnd(&sym->ref_rng) % (2 * MARKET_REF_STEP + 1)) - MARKET_REF_STEP;
    sym->ref_from = sym->ref_to;
    sym->ref_to = sym->ref_from + step;
    if (sym->ref_to < 100) {
        sym->ref_to = sym->ref_from + (step < 0 ? -step : step);
    }
    sym->ref_k++;
}

/* The reference price, in ticks, at event `index` (1-based): a function of
 * (seed, pair, index) only, whichever exchange asks. */
static int64_t market_ref_mid(qb__exsim_sym *sym, uint64_t index)
{
    uint64_t k = index / MARKET_REF_SPAN;
    while (sym->ref_k < k) {
        market_ref_next(sym);
    }
    int64_t pos = (int64_t)(index % MARKET_REF_SPAN);
    return sym->ref_from + (sym->ref_to - sym->ref_from) * pos / MARKET_REF_SPAN;
}

/* The initial synthetic book: around the pair's price (from --seed and the
 * pair's name), with depth 3/4 of --max-levels per side, levels 1-3 ticks
 * apart. */
static int market_sym_init(qb__exsim *sim, qb__exsim_sym *sym)
{
    uint64_t h = market_hash(sym->name) ^ ((uint64_t)sim->cfg->seed * 0xD6E8FEB86659FD93ull);
    /* the price level comes from the pair, the rest of the book from the
     * exchange's own name */
    uint64_t ph = market_pair_hash(sim, sym->name);
    sym->rng = h;
    uint64_t trng = h ^ 0x5851F42D4C957F2Dull;
    sym->next_trade_id = 100000000u + market_rnd(&trng) % 100000000u;
    sym->idrng = h ^ 0x2127599BF4325C37ull;
    sym->droprng = h ^ 0x6A09E667F3BCC909ull;
    char base[QB__EXSIM_SYM_MAX], quote[QB__EXSIM_SYM_MAX];
    sym->ops->base_quote(sym->name, base, quote, sizeof base);
    sym->qty_max = 20000;
    if (strcmp(quote, "KRW") == 0) {
        /* Korean won: integer prices, 1000 KRW ticks at these levels,
         * sizes with 8 decimals */
        sym->lot = 1;
        if (strcmp(base, "BTC") == 0) {
            sym->tick = 100000000000; /* 1000 KRW */
            sym->mid = 90000 + (int64_t)(ph % 201) - 100;
            sym->qty_max = 20000000; /* 0.2 */
        } else if (strcmp(base, "ETH") == 0) {
            sym->tick = 100000000000;
            sym->mid = 4500 + (int64_t)(ph % 41) - 20;
            sym->qty_max = 500000000; /* 5 */
        } else {
            sym->tick = 100000000; /* 1 KRW */
            sym->mid = 1000 + (int64_t)(ph % 401) - 200;
            sym->lot = 1000;
            sym->qty_max = 10000000;
        }
    } else if (strncmp(base, "BTC", 3) == 0) {
        sym->tick = 1000000; /* 0.01 */
        sym->mid = 6000000 + (int64_t)(ph % 20001) - 10000;
        sym->lot = 1000; /* 0.00001 */
    } else if (strncmp(base, "ETH", 3) == 0) {
        sym->tick = 1000000;
        sym->mid = 300000 + (int64_t)(ph % 2001) - 1000;
        sym->lot = 10000;
    } else {
        sym->tick = 10000; /* 0.0001 */
        sym->mid = 10000 + (int64_t)(ph % 4001) - 2000;
        sym->lot = 100000; /* 0.001 */
    }
    sym->ref_rng = ph;
    sym->ref_k = 0;
    sym->ref_from = sym->mid;
    sym->ref_to = sym->mid;
    market_ref_next(sym); /* span 0 runs from the initial price to the first anchor */
    sym->ref_k = 0;
    sym->venue_offset = 0;
    sym->last_id = 1000000000u + (h >> 8) % 1000000000u;
    if (sym->ops->sparse_ids) {
        sym->last_id *= 100; /* HTX seqNums are about 10^11 */
    }
    /* the rolling 24 h ticker starts from a plausible day */
    sym->t_open = sym->t_high = sym->t_low = sym->t_last = sym->mid * sym->tick;
    sym->t_prev_close = sym->t_open - sym->tick * (int64_t)(h % 50);
    sym->t_vol = sym->lot * sym->qty_max * 50;
    sym->t_quote_vol = (unsigned __int128)sym->t_vol * (uint64_t)sym->t_open;
    sym->t_count = 1000 + h % 1000;
    size_t depth0 = sym->depth * 3 / 4;
    if (depth0 == 0) {
        depth0 = 1;
    }
    int64_t p = sym->mid - 1;
    for (size_t i = 0; i < depth0 && p > 0; i++) {
        if (qb_book_set(sym->book, QB_BID, qb__exsim_dec8(p * sym->tick),
                        qb__exsim_dec8(market_qty(sym))) != QB_OK) {
            return QB_ENOMEM;
        }
        p -= 1 + (int64_t)(market_rnd(&sym->rng) % 3);
    }
    p = sym->mid + 1;
    for (size_t i = 0; i < depth0; i++) {
        if (qb_book_set(sym->book, QB_ASK, qb__exsim_dec8(p * sym->tick),
                        qb__exsim_dec8(market_qty(sym))) != QB_OK) {
            return QB_ENOMEM;
        }
        p += 1 + (int64_t)(market_rnd(&sym->rng) % 3);
    }
    return QB_OK;
}

qb__exsim_sym *qb__exsim_sym_get(qb__exsim *sim, const qb__exsim_ops *ops, const char *native,
                                 bool create)
{
    for (qb__exsim_sym *s = sim->syms; s; s = s->next) {
        if (s->ops == ops && strcmp(s->name, native) == 0) {
            return s;
        }
    }
    if (!create || sim->replay_mode || !market_name_ok(sim, ops, native)) {
        return NULL;
    }
    if (sim->nsyms >= (size_t)sim->cfg->max_symbols) {
        /* bounded memory and CPU whatever clients ask for */
        QB_LOG_RL(QB_LOG_WARN, "exsim_symbol_limit", "sym=%s max=%lld", native,
                  (long long)sim->cfg->max_symbols);
        return NULL;
    }
    qb__exsim_sym *sym =
        market_sym_alloc(sim, ops, native, market_depth(sim, ops) + QB__EXSIM_MAX_CHANGES);
    if (sym == NULL) {
        return NULL;
    }
    if (market_sym_init(sim, sym) != QB_OK) {
        QB_ERROR("exsim_book_init_failed", "sym=%s", native);
    }
    QB_INFO("exsim_symbol_created", "exchange=%s sym=%s lastUpdateId=%llu", ops->name, native,
            (unsigned long long)sym->last_id);
    return sym;
}

void qb__exsim_sym_activate(qb__exsim *sim, qb__exsim_sym *sym)
{
    if (sym->active || sym->finished) {
        return;
    }
    sym->active = true;
    sym->start_ns = qb_mono_ns();
    QB_INFO("exsim_generation_started", "sym=%s mode=%s rate=%lld", sym->name,
            sim->replay_mode ? "replay" : "synthetic", (long long)sim->cfg->rate);
}

/* ---- one synthetic event ---- */

qb__exsim_event *qb__exsim_event_new(size_t nb, size_t na)
{
    qb__exsim_event *ev = calloc(1, sizeof *ev + (nb + na) * sizeof(qb_level));
    if (ev == NULL) {
        return NULL;
    }
    ev->bids = (qb_level *)(ev + 1);
    ev->asks = ev->bids + nb;
    return ev;
}

/* Stack storage of one generated event. */
typedef struct market_evbuf {
    qb__exsim_event ev;
    qb_level b[QB__EXSIM_MAX_CHANGES];
    qb_level a[QB__EXSIM_MAX_CHANGES];
} market_evbuf;

/* Sets a level on the book and records it in the event (one entry per
 * price and side: a later change of the same price overwrites the entry). */
static void market_set(qb__exsim_sym *sym, qb__exsim_event *ev, qb_book_side side, int64_t price,
                       int64_t qty)
{
    qb_dec p = qb__exsim_dec8(price), q = qb__exsim_dec8(qty);
    qb_level *lv = side == QB_BID ? ev->bids : ev->asks;
    size_t *n = side == QB_BID ? &ev->n_bids : &ev->n_asks;
    size_t i;
    for (i = 0; i < *n; i++) {
        if (lv[i].price.mant == price) {
            break;
        }
    }
    if (i == *n) {
        if (*n >= QB__EXSIM_MAX_CHANGES) {
            return; /* event full: skip the change (book untouched) */
        }
        (*n)++;
    }
    int rc = qb_book_set(sym->book, side, p, q);
    if (rc != QB_OK) {
        QB_LOG_RL(QB_LOG_ERROR, "exsim_book_set_failed", "sym=%s err=%s", sym->name,
                  qb_errname(rc));
    }
    lv[i].price = p;
    lv[i].size = q;
}

static int64_t market_best(const qb__exsim_sym *sym, qb_book_side side)
{
    if (qb_book_depth(sym->book, side) == 0) {
        return 0;
    }
    return qb_book_levels(sym->book, side)[0].price.mant;
}

/* Numbers the event: Binance U..u consumes one id per level; HTX seqNum
 * jumps (levels + 1 + 0..39), prevSeqNum is the previous seqNum. */
static void market_number_event(qb__exsim_sym *sym, qb__exsim_event *ev, uint64_t jump)
{
    sym->n_events++;
    ev->index = sym->n_events;
    ev->prev_id = sym->last_id;
    ev->first_id = sym->last_id + 1;
    ev->last_id = sym->last_id + ev->n_bids + ev->n_asks;
    if (sym->ops->sparse_ids) {
        ev->last_id += 1 + jump;
    }
    sym->last_id = ev->last_id;
    ev->time_ms = market_now_ms();
    sym->last_time_ms = ev->time_ms;
}

/* Best first: bids by descending price, asks by ascending (all prices of
 * the synthetic market have 8 decimals, so mantissas compare). */
static int market_bid_cmp(const void *x, const void *y)
{
    int64_t a = ((const qb_level *)x)->price.mant, b = ((const qb_level *)y)->price.mant;
    return (a < b) - (a > b);
}

static int market_ask_cmp(const void *x, const void *y)
{
    int64_t a = ((const qb_level *)x)->price.mant, b = ((const qb_level *)y)->price.mant;
    return (a > b) - (a < b);
}

static void market_gen_event(qb__exsim *sim, qb__exsim_sym *sym, qb__exsim_event *ev)
{
    uint64_t *r = &sym->rng;
    size_t max_levels = sym->depth;
    ev->n_bids = ev->n_asks = 0;
    ev->raw = NULL;
    ev->raw_len = 0;
    uint64_t idr = market_rnd(&sym->idrng);
    if (sym->ops->empty_events && idr % 8 == 0) {
        /* HTX mbp.150: nothing changed in 100 ms, an update still comes */
        sim->st.empty_updates++;
        market_number_event(sym, ev, (idr >> 8) % 40);
        return;
    }

    /* The mid: the pair's reference price plus this book's own offset,
     * which moves up, down or stays with the same draw as a random walk. */
    uint64_t step = market_rnd(r) % 3;
    if (step == 0) {
        sym->venue_offset = 1;
    } else if (step == 1) {
        sym->venue_offset = 0;
    }
    sym->mid = market_ref_mid(sym, sym->n_events + 1) + sym->venue_offset;
    int64_t midp = sym->mid * sym->tick;
    /* The market takes the levels the mid moved across. */
    for (int n = 0; n < 4; n++) {
        if (qb_book_depth(sym->book, QB_ASK) > 1 && market_best(sym, QB_ASK) <= midp) {
            market_set(sym, ev, QB_ASK, market_best(sym, QB_ASK), 0);
        }
        if (qb_book_depth(sym->book, QB_BID) > 1 && market_best(sym, QB_BID) >= midp) {
            market_set(sym, ev, QB_BID, market_best(sym, QB_BID), 0);
        }
    }

    /* --changes N: exactly N random changes (busy symbols send tens of
     * levels per 100 ms event); default 1 to 4. The random draw happens
     * either way, so the default market stays the same sequence. */
    unsigned nch = 1 + (unsigned)(market_rnd(r) % 4);
    if (sim->cfg->changes > 0) {
        nch = (unsigned)sim->cfg->changes;
    }
    for (unsigned c = 0; c < nch; c++) {
        qb_book_side side = (market_rnd(r) & 1) ? QB_ASK : QB_BID;
        unsigned what = (unsigned)(market_rnd(r) % 100);
        size_t d = qb_book_depth(sym->book, side);
        /* half the changes near the top, half anywhere in the book: the
         * book stays about --max-levels deep and every level moves */
        bool near = market_rnd(r) & 1;
        int64_t off = (int64_t)(market_rnd(r) % (near ? 10 : 3 * max_levels + 1));
        int64_t qty = market_qty(sym);
        size_t span = near ? (d < 20 ? d : 20) : d;
        size_t idx = span ? (size_t)(market_rnd(r) % span) : 0;
        if (d < 2 || what < 45) {
            /* insert (or resize) at off ticks from the mid, never crossing */
            int64_t price;
            if (side == QB_BID) {
                int64_t ref = sym->mid - 1;
                int64_t ba = market_best(sym, QB_ASK);
                if (ba && ba / sym->tick - 1 < ref) {
                    ref = ba / sym->tick - 1;
                }
                price = (ref - off) * sym->tick;
            } else {
                int64_t ref = sym->mid + 1;
                int64_t bb = market_best(sym, QB_BID);
                if (bb && bb / sym->tick + 1 > ref) {
                    ref = bb / sym->tick + 1;
                }
                price = (ref + off) * sym->tick;
            }
            if (price > 0) {
                market_set(sym, ev, side, price, qty);
            }
        } else if (what < 75 || d <= max_levels * 3 / 4) {
            market_set(sym, ev, side, qb_book_levels(sym->book, side)[idx].price.mant, qty);
        } else {
            market_set(sym, ev, side, qb_book_levels(sym->book, side)[idx].price.mant, 0);
        }
    }
    /* Bounded depth: levels beyond --max-levels go, explicitly. */
    for (int s = 0; s < 2; s++) {
        qb_book_side side = (qb_book_side)s;
        while (qb_book_depth(sym->book, side) > max_levels) {
            size_t d = qb_book_depth(sym->book, side);
            size_t before = ev->n_bids + ev->n_asks;
            market_set(sym, ev, side, qb_book_levels(sym->book, side)[d - 1].price.mant, 0);
            if (ev->n_bids + ev->n_asks == before && qb_book_depth(sym->book, side) == d) {
                break; /* event full; trimmed by the next one */
            }
        }
    }
    if (ev->n_bids + ev->n_asks == 0) {
        /* every event changes at least one level */
        if (qb_book_depth(sym->book, QB_BID) > 0) {
            market_set(sym, ev, QB_BID, market_best(sym, QB_BID), market_qty(sym));
        } else {
            market_set(sym, ev, QB_BID, (sym->mid - 1) * sym->tick, market_qty(sym));
        }
    }
    /* One entry per price (market_set), so the order does not change what
     * the event does to a book. */
    qsort(ev->bids, ev->n_bids, sizeof *ev->bids, market_bid_cmp);
    qsort(ev->asks, ev->n_asks, sizeof *ev->asks, market_ask_cmp);
    market_number_event(sym, ev, (idr >> 8) % 40);
}

/* ---- fan-out ---- */

/* Encodes lazily, once per form (combined/raw), and queues on every
 * subscriber of the symbol's streams of that kind. */
typedef int (*market_encode_fn)(qb__exsim *sim, const qb__exsim_stream *st, const void *item,
                                bool combined, qb_buf *out, bool *binary);

static int market_enc_depth(qb__exsim *sim, const qb__exsim_stream *st, const void *item,
                            bool combined, qb_buf *out, bool *binary)
{
    return st->ops->encode_depth(sim, st, item, combined, out, binary);
}

static int market_enc_trade(qb__exsim *sim, const qb__exsim_stream *st, const void *item,
                            bool combined, qb_buf *out, bool *binary)
{
    return st->ops->encode_trade(sim, st, item, combined, out, binary);
}

static int market_enc_ticker(qb__exsim *sim, const qb__exsim_stream *st, const void *item,
                             bool combined, qb_buf *out, bool *binary)
{
    return st->ops->encode_ticker(sim, st, combined, out, binary);
}

static int market_enc_malformed(qb__exsim *sim, const qb__exsim_stream *st, const void *item,
                                bool combined, qb_buf *out, bool *binary)
{
    return st->ops->encode_malformed(sim, st, combined, out, binary);
}

static int market_enc_oversized(qb__exsim *sim, const qb__exsim_stream *st, const void *item,
                                bool combined, qb_buf *out, bool *binary)
{
    return st->ops->encode_oversized(sim, st, (size_t)sim->cfg->oversized_bytes, combined, out,
                                     binary);
}

static int market_enc_corrupt(qb__exsim *sim, const qb__exsim_stream *st, const void *item,
                              bool combined, qb_buf *out, bool *binary)
{
    return st->ops->encode_corrupt(sim, st, out, binary);
}

static int market_enc_bomb(qb__exsim *sim, const qb__exsim_stream *st, const void *item,
                           bool combined, qb_buf *out, bool *binary)
{
    return st->ops->encode_bomb(sim, st, (size_t)sim->cfg->gzip_bomb_bytes, out, binary);
}

/* ---- --bad-input-every: frames no correct client may apply ----
 *
 * Each is shaped like a depth message of the stream's exchange (so it goes
 * down the parser's real paths) with ids a correct client drops as stale
 * (Binance U=u=1, HTX seqNum 1) or, for Bithumb whose every orderbook
 * message replaces the book, content that must be rejected as a whole:
 *   truncated  the event's own frame (just sent whole) cut in half; for
 *              HTX that is a truncated gzip member;
 *   utf8       invalid UTF-8 (overlong, lone surrogate, 0xff) in strings;
 *   nest       a nesting bomb of MARKET_BAD_NEST arrays where levels go;
 *   bignum     numbers of thousands of digits in prices and ids. */
#define MARKET_BAD_NEST 30000
#define MARKET_BAD_DIGITS 4000

typedef struct market_bad_item {
    unsigned kind; /* one QB__EXSIM_BAD_* bit */
    const qb__exsim_event *ev;
} market_bad_item;

static int market_bad_repeat(qb_buf *b, char ch, size_t n)
{
    int rc = qb_buf_reserve(b, n);
    for (size_t i = 0; rc == QB_OK && i < n; i++) {
        b->data[b->len++] = (uint8_t)ch;
    }
    return rc;
}

/* The bad part: levels for Binance and HTX, the orderbook_units (utf8,
 * nest) or the timestamp (bignum) for Bithumb. */
static int market_bad_value(qb_buf *b, unsigned kind, bool quoted)
{
    int rc = QB_OK;
    switch (kind) {
    case QB__EXSIM_BAD_UTF8:
        return qb_buf_appendf(b, "[[\"1\xc3\x28\",\"\xed\xa0\x80\xc0\xaf\xff\"]]");
    case QB__EXSIM_BAD_NEST:
        rc = market_bad_repeat(b, '[', MARKET_BAD_NEST);
        return rc ? rc : market_bad_repeat(b, ']', MARKET_BAD_NEST);
    case QB__EXSIM_BAD_BIGNUM:
        rc = qb_buf_appendf(b, "%s", quoted ? "[[\"9" : "[[9");
        rc = rc ? rc : market_bad_repeat(b, '7', MARKET_BAD_DIGITS);
        rc = rc ? rc : qb_buf_append(b, ".", 1);
        rc = rc ? rc : market_bad_repeat(b, '3', MARKET_BAD_DIGITS);
        return rc ? rc : qb_buf_appendf(b, "%s", quoted ? "\",\"1\"]]" : ",1]]");
    }
    return QB_EINVAL;
}

static int market_enc_bad(qb__exsim *sim, const qb__exsim_stream *st, const void *item,
                          bool combined, qb_buf *out, bool *binary)
{
    const market_bad_item *bi = item;
    const char *ex = st->ops->name;
    const char *sym = st->sym ? st->sym->name : "";
    unsigned long long ms = (unsigned long long)(qb_now_ns() / 1000000u);
    if (bi->kind == QB__EXSIM_BAD_TRUNCATED) {
        qb_buf whole = {0};
        int rc = st->ops->encode_depth(sim, st, bi->ev, combined, &whole, binary);
        if (rc == QB_OK) {
            rc = qb_buf_append(out, whole.data, whole.len > 1 ? whole.len / 2 : 0);
        }
        qb_buf_fini(&whole);
        return rc;
    }
    qb_buf p = {0};
    int rc;
    if (strcmp(ex, "bithumb") == 0) {
        rc = qb_buf_appendf(&p, "{\"type\":\"orderbook\",\"code\":\"%s\",\"timestamp\":", sym);
        if (bi->kind == QB__EXSIM_BAD_BIGNUM) {
            rc = rc ? rc : qb_buf_append(&p, "1", 1);
            rc = rc ? rc : market_bad_repeat(&p, '0', MARKET_BAD_DIGITS);
            rc = rc ? rc : qb_buf_appendf(&p, ",\"orderbook_units\":[{\"ask_price\":1");
            rc = rc ? rc : market_bad_repeat(&p, '1', MARKET_BAD_DIGITS);
            rc = rc ? rc : qb_buf_appendf(&p, ",\"bid_price\":1,\"ask_size\":1,\"bid_size\":1}]");
        } else if (bi->kind == QB__EXSIM_BAD_UTF8) {
            rc = rc ? rc
                    : qb_buf_appendf(&p,
                                     "%llu,\"orderbook_units\":[{\"ask_price\":\"2\xff\xfe\","
                                     "\"bid_price\":\"1\xc0\xaf\",\"ask_size\":1,"
                                     "\"bid_size\":\"\xed\xa0\x80\"}]",
                                     ms);
        } else {
            rc = rc ? rc : qb_buf_appendf(&p, "%llu,\"orderbook_units\":", ms);
            rc = rc ? rc : market_bad_value(&p, bi->kind, false);
        }
        rc = rc ? rc
                : qb_buf_appendf(&p, ",\"total_ask_size\":1,\"total_bid_size\":1,\"level\":0,"
                                     "\"stream_type\":\"REALTIME\"}");
    } else if (strcmp(ex, "htx") == 0) {
        if (bi->kind == QB__EXSIM_BAD_UTF8) {
            /* the channel itself is not UTF-8 */
            rc = qb_buf_appendf(&p,
                                "{\"ch\":\"market.\xff%s\xc0\xaf.mbp.150\",\"ts\":%llu,"
                                "\"tick\":{\"seqNum\":1,\"prevSeqNum\":0,\"bids\":",
                                sym, ms);
        } else {
            rc = qb_buf_appendf(&p, "{\"ch\":\"%s\",\"ts\":%llu,\"tick\":{\"seqNum\":", st->name,
                                ms);
            if (bi->kind == QB__EXSIM_BAD_BIGNUM) {
                rc = rc ? rc : qb_buf_append(&p, "1", 1);
                rc = rc ? rc : market_bad_repeat(&p, '0', MARKET_BAD_DIGITS);
            } else {
                rc = rc ? rc : qb_buf_append(&p, "1", 1);
            }
            rc = rc ? rc : qb_buf_appendf(&p, ",\"prevSeqNum\":0,\"bids\":");
        }
        rc = rc ? rc : market_bad_value(&p, bi->kind, false);
        rc = rc ? rc : qb_buf_appendf(&p, ",\"asks\":[]}}");
    } else {
        rc = qb_buf_appendf(&p,
                            "{\"e\":\"depthUpdate\",\"E\":%llu,\"s\":\"%s\",\"U\":1,\"u\":1,"
                            "\"b\":",
                            ms, sym);
        rc = rc ? rc : market_bad_value(&p, bi->kind, true);
        rc = rc ? rc : qb_buf_appendf(&p, ",\"a\":[]}");
    }
    if (rc == QB_OK) {
        rc = st->ops->encode_raw(sim, st, (const char *)p.data, p.len, combined, out, binary);
    }
    qb_buf_fini(&p);
    return rc;
}

static void market_fanout_kind(qb__exsim *sim, qb__exsim_sym *sym, qb__exsim_kind kind,
                               market_encode_fn enc, const void *item, uint8_t flags, int copies);

/* After every --bad-input-every-th event: the next kind of the cycle. */
static void market_bad_input(qb__exsim *sim, qb__exsim_sym *sym, const qb__exsim_event *ev)
{
    const qb__exsim_cfg *cfg = sim->cfg;
    uint64_t k = ev->index;
    if (cfg->bad_input_every <= 0 || cfg->bad_input_kinds == 0 ||
        k % (uint64_t)cfg->bad_input_every != 0) {
        return;
    }
    unsigned kinds[4], n = 0;
    for (unsigned b = 0; b < 4; b++) {
        if (cfg->bad_input_kinds & (1u << b)) {
            kinds[n++] = 1u << b;
        }
    }
    market_bad_item bi = {kinds[(k / (uint64_t)cfg->bad_input_every) % n], ev};
    sim->st.fault_bad_input++;
    switch (bi.kind) {
    case QB__EXSIM_BAD_TRUNCATED:
        sim->st.fault_bad_truncated++;
        break;
    case QB__EXSIM_BAD_UTF8:
        sim->st.fault_bad_utf8++;
        break;
    case QB__EXSIM_BAD_NEST:
        sim->st.fault_bad_nest++;
        break;
    default:
        sim->st.fault_bad_bignum++;
        break;
    }
    market_fanout_kind(sim, sym, QB__EXSIM_K_DEPTH, market_enc_bad, &bi, 0, 1);
}

typedef struct market_raw_item {
    const char *p;
    size_t n;
} market_raw_item;

static int market_enc_raw(qb__exsim *sim, const qb__exsim_stream *st, const void *item,
                          bool combined, qb_buf *out, bool *binary)
{
    const market_raw_item *it = item;
    return st->ops->encode_raw(sim, st, it->p, it->n, combined, out, binary);
}

static void market_fanout_stream(qb__exsim *sim, qb__exsim_stream *st, market_encode_fn enc,
                                 const void *item, uint8_t flags, int copies)
{
    if (st->nsubs == 0) {
        return;
    }
    qb__exsim_frame *fr[2] = {NULL, NULL};
    bool failed[2] = {false, false};
    for (size_t i = 0; i < st->nsubs; i++) {
        qb__exsim_conn *c = st->subs[i];
        int form = c->combined ? 1 : 0;
        if (fr[form] == NULL && !failed[form]) {
            bool binary = false;
            qb_buf *b = qb__exsim_scratch(sim);
            int rc = enc(sim, st, item, form == 1, b, &binary);
            if (rc == QB_OK) {
                fr[form] = qb__exsim_frame_from_scratch(sim, binary);
            }
            if (fr[form] == NULL) {
                failed[form] = true;
                if (rc == QB_EEOF) {
                    continue; /* nothing to send on this stream */
                }
                QB_LOG_RL(QB_LOG_ERROR, "exsim_encode_failed", "stream=%s err=%s", st->name,
                          qb_errname(rc));
                continue;
            }
        }
        if (fr[form]) {
            for (int k = 0; k < copies; k++) {
                qb__exsim_conn_queue(c, fr[form], flags);
            }
        }
    }
    qb__exsim_frame_unref(fr[0]);
    qb__exsim_frame_unref(fr[1]);
}

static void market_fanout_kind(qb__exsim *sim, qb__exsim_sym *sym, qb__exsim_kind kind,
                               market_encode_fn enc, const void *item, uint8_t flags, int copies)
{
    for (size_t i = 0; i < sym->nstreams; i++) {
        if (sym->streams[i]->kind == kind) {
            market_fanout_stream(sim, sym->streams[i], enc, item, flags, copies);
        }
    }
}

static void market_flush_held(qb__exsim *sim, qb__exsim_sym *sym)
{
    if (sym->held) {
        market_fanout_kind(sim, sym, QB__EXSIM_K_DEPTH, market_enc_depth, sym->held,
                           QB__EXSIM_Q_EVENT, 1);
        free(sym->held);
        sym->held = NULL;
    }
}

/* ---- one-second merged depth (Binance @depth) ----
 *
 * Every sent event's changes are appended in order; the flush (each second,
 * before a gap, at the end) sorts them by side, price and order, keeps the
 * last change of each level, and sends one event with U = first U of the
 * window and u = last u. A gap fault flushes first and leaves the skipped
 * event out, so the merged stream shows the gap too. Synthetic mode only. */

typedef struct market_aggent {
    qb_level lv;
    uint32_t seq;
    uint8_t side;
} market_aggent;

struct qb__exsim_agg {
    market_aggent *e;
    size_t n, cap;
    bool open;
    uint64_t first_id, last_id, time_ms, start_ns;
};

static bool market_has_subs(const qb__exsim_sym *sym, qb__exsim_kind kind)
{
    for (size_t i = 0; i < sym->nstreams; i++) {
        if (sym->streams[i]->kind == kind && sym->streams[i]->nsubs > 0) {
            return true;
        }
    }
    return false;
}

static int market_agg_cmp(const void *pa, const void *pb)
{
    const market_aggent *a = pa, *b = pb;
    if (a->side != b->side) {
        return a->side < b->side ? -1 : 1;
    }
    int c = qb_dec_cmp(a->lv.price, b->lv.price);
    if (c != 0) {
        return a->side == QB_BID ? -c : c; /* best first */
    }
    return a->seq < b->seq ? -1 : (a->seq > b->seq);
}

static void market_agg_flush(qb__exsim *sim, qb__exsim_sym *sym)
{
    struct qb__exsim_agg *g = sym->agg;
    if (g == NULL || !g->open) {
        return;
    }
    qsort(g->e, g->n, sizeof *g->e, market_agg_cmp);
    size_t nb = 0, na = 0;
    for (size_t i = 0; i < g->n; i++) {
        *(g->e[i].side == QB_BID ? &nb : &na) += 1;
    }
    qb__exsim_event *ev = qb__exsim_event_new(nb, na);
    if (ev) {
        for (size_t i = 0; i < g->n; i++) {
            bool last = i + 1 == g->n || g->e[i + 1].side != g->e[i].side ||
                        qb_dec_cmp(g->e[i + 1].lv.price, g->e[i].lv.price) != 0;
            if (last) {
                if (g->e[i].side == QB_BID) {
                    ev->bids[ev->n_bids++] = g->e[i].lv;
                } else {
                    ev->asks[ev->n_asks++] = g->e[i].lv;
                }
            }
        }
        ev->first_id = g->first_id;
        ev->last_id = g->last_id;
        ev->time_ms = g->time_ms;
        market_fanout_kind(sim, sym, QB__EXSIM_K_DEPTH_1S, market_enc_depth, ev, QB__EXSIM_Q_EVENT,
                           1);
        free(ev);
    }
    g->n = 0;
    g->open = false;
}

static void market_agg_add(qb__exsim *sim, qb__exsim_sym *sym, const qb__exsim_event *ev)
{
    if (sim->replay_mode ||
        (!market_has_subs(sym, QB__EXSIM_K_DEPTH_1S) && (sym->agg == NULL || !sym->agg->open))) {
        return;
    }
    struct qb__exsim_agg *g = sym->agg;
    if (g == NULL && (g = sym->agg = calloc(1, sizeof *g)) == NULL) {
        return;
    }
    size_t need = g->n + ev->n_bids + ev->n_asks;
    if (need > g->cap) {
        size_t nc = g->cap ? g->cap : 256;
        while (nc < need) {
            nc *= 2;
        }
        market_aggent *ne = realloc(g->e, nc * sizeof *ne);
        if (ne == NULL) {
            return;
        }
        g->e = ne;
        g->cap = nc;
    }
    if (!g->open) {
        g->open = true;
        g->first_id = ev->first_id;
        g->start_ns = qb_mono_ns();
    }
    for (size_t i = 0; i < ev->n_bids; i++) {
        g->e[g->n] = (market_aggent){ev->bids[i], (uint32_t)g->n, QB_BID};
        g->n++;
    }
    for (size_t i = 0; i < ev->n_asks; i++) {
        g->e[g->n] = (market_aggent){ev->asks[i], (uint32_t)g->n, QB_ASK};
        g->n++;
    }
    g->last_id = ev->last_id;
    g->time_ms = ev->time_ms;
}

/* --drop-rate: true when ev is dropped (drawn once per event, whether or
 * not another fault already skips it, so the draws of a symbol depend only
 * on (seed, symbol, index)). */
static bool market_drop(qb__exsim *sim, qb__exsim_sym *sym, const qb__exsim_event *ev)
{
    const qb__exsim_cfg *cfg = sim->cfg;
    if (cfg->drop_ppm <= 0) {
        return false;
    }
    bool hit = market_rnd(&sym->droprng) % 1000000u < (uint64_t)cfg->drop_ppm;
    uint64_t age = qb_mono_ns() - sym->start_ns;
    uint64_t from = (uint64_t)cfg->drop_after_ms * 1000000u;
    if (!hit || age < from ||
        (cfg->drop_for_ms > 0 && age - from >= (uint64_t)cfg->drop_for_ms * 1000000u)) {
        return false;
    }
    sim->st.fault_drop++;
    bool corrupt = cfg->drop_corrupt && sym->ops->encode_corrupt;
    QB_INFO("exsim_fault_drop", "sym=%s index=%llu first=%llu last=%llu t_ns=%llu corrupt=%d",
            sym->name, (unsigned long long)ev->index, (unsigned long long)ev->first_id,
            (unsigned long long)ev->last_id, (unsigned long long)qb_now_ns(), corrupt ? 1 : 0);
    if (corrupt) {
        /* The event's frame arrives, but as gzip no client can inflate:
         * the client cannot tell whose update it was. */
        sim->st.fault_corrupt_gzip++;
        market_fanout_kind(sim, sym, QB__EXSIM_K_DEPTH, market_enc_corrupt, NULL, 0, 1);
    }
    return true;
}

/* Sends depth event ev (already applied to the book) through the faults. */
static void market_emit_event(qb__exsim *sim, qb__exsim_sym *sym, const qb__exsim_event *ev)
{
    const qb__exsim_cfg *cfg = sim->cfg;
    uint64_t k = ev->index;
    sim->st.events_generated++;
    bool drop = market_drop(sim, sym, ev);
    bool gap = (cfg->gap_every > 0 && k % (uint64_t)cfg->gap_every == 0) || drop;
    if (!gap) {
        market_agg_add(sim, sym, ev);
    }
    if (gap) {
        if (!drop) {
            sim->st.fault_gap++;
        }
        market_agg_flush(sim, sym);
        QB_DEBUG("exsim_fault_gap", "sym=%s index=%llu U=%llu u=%llu", sym->name,
                 (unsigned long long)k, (unsigned long long)ev->first_id,
                 (unsigned long long)ev->last_id);
    } else if (cfg->reorder_every > 0 && k % (uint64_t)cfg->reorder_every == 0 &&
               sym->held == NULL) {
        sym->held = qb__exsim_event_new(ev->n_bids, ev->n_asks);
        if (sym->held) {
            qb_level *hb = sym->held->bids, *ha = sym->held->asks;
            *sym->held = *ev;
            sym->held->bids = hb;
            sym->held->asks = ha;
            memcpy(hb, ev->bids, ev->n_bids * sizeof *hb);
            memcpy(ha, ev->asks, ev->n_asks * sizeof *ha);
            sim->st.fault_reorder++;
        } else {
            market_fanout_kind(sim, sym, QB__EXSIM_K_DEPTH, market_enc_depth, ev, QB__EXSIM_Q_EVENT,
                               1);
        }
        return;
    } else {
        int copies = 1;
        if (cfg->dup_every > 0 && k % (uint64_t)cfg->dup_every == 0) {
            copies = 2;
            sim->st.fault_dup++;
        }
        market_fanout_kind(sim, sym, QB__EXSIM_K_DEPTH, market_enc_depth, ev, QB__EXSIM_Q_EVENT,
                           copies);
        market_flush_held(sim, sym);
    }
    if (cfg->malformed_every > 0 && k % (uint64_t)cfg->malformed_every == 0) {
        sim->st.fault_malformed++;
        market_fanout_kind(sim, sym, QB__EXSIM_K_DEPTH, market_enc_malformed, NULL, 0, 1);
        market_fanout_kind(sim, sym, QB__EXSIM_K_DEPTH_1S, market_enc_malformed, NULL, 0, 1);
    }
    if (cfg->oversized_every > 0 && k % (uint64_t)cfg->oversized_every == 0) {
        sim->st.fault_oversized++;
        market_fanout_kind(sim, sym, QB__EXSIM_K_DEPTH, market_enc_oversized, NULL, 0, 1);
        market_fanout_kind(sim, sym, QB__EXSIM_K_DEPTH_1S, market_enc_oversized, NULL, 0, 1);
    }
    if (sym->ops->encode_corrupt && cfg->corrupt_gzip_every > 0 &&
        k % (uint64_t)cfg->corrupt_gzip_every == 0) {
        sim->st.fault_corrupt_gzip++;
        market_fanout_kind(sim, sym, QB__EXSIM_K_DEPTH, market_enc_corrupt, NULL, 0, 1);
    }
    if (sym->ops->encode_bomb && cfg->gzip_bomb_every > 0 &&
        k % (uint64_t)cfg->gzip_bomb_every == 0) {
        sim->st.fault_gzip_bomb++;
        market_fanout_kind(sim, sym, QB__EXSIM_K_DEPTH, market_enc_bomb, NULL, 0, 1);
    }
    market_bad_input(sim, sym, ev);
}

/* Every --ticker-every events: the 24 h ticker to ticker streams. */
static void market_gen_ticker(qb__exsim *sim, qb__exsim_sym *sym)
{
    const qb__exsim_cfg *cfg = sim->cfg;
    if (cfg->ticker_every <= 0 || sym->n_events % (uint64_t)cfg->ticker_every != 0 ||
        sym->ops->encode_ticker == NULL) {
        return;
    }
    sym->n_tickers++;
    sim->st.tickers_generated++;
    market_fanout_kind(sim, sym, QB__EXSIM_K_TICKER, market_enc_ticker, NULL, 0, 1);
}

/* Trades follow depth events: after event i, trade j is due while
 * j * rate <= i * trade_rate. */
static void market_gen_trades(qb__exsim *sim, qb__exsim_sym *sym)
{
    const qb__exsim_cfg *cfg = sim->cfg;
    if (cfg->trade_rate <= 0) {
        return;
    }
    unsigned __int128 due =
        (unsigned __int128)sym->n_events * (uint64_t)cfg->trade_rate / (uint64_t)cfg->rate;
    uint64_t trng_base = market_hash(sym->name) ^ ((uint64_t)cfg->seed * 0xD6E8FEB86659FD93ull);
    while (sym->n_trades < due) {
        /* the trade stream's state is derived from the trade index */
        uint64_t s = trng_base ^ (sym->n_trades * 0x2545F4914F6CDD1Dull);
        qb__exsim_trade t;
        t.buyer_maker = market_rnd(&s) & 1;
        qb_book_side side = t.buyer_maker ? QB_BID : QB_ASK;
        int64_t best = market_best(sym, side);
        if (best == 0) {
            best = sym->mid * sym->tick;
        }
        t.price = qb__exsim_dec8(best);
        t.qty = qb__exsim_dec8(sym->lot *
                               (int64_t)(1 + market_rnd(&s) % (uint64_t)(sym->qty_max / 20)));
        t.id = sym->next_trade_id++;
        t.time_ms = market_now_ms();
        sym->n_trades++;
        /* the rolling 24 h statistics */
        sym->t_last = best;
        sym->t_high = best > sym->t_high ? best : sym->t_high;
        sym->t_low = best < sym->t_low ? best : sym->t_low;
        sym->t_vol += t.qty.mant;
        sym->t_quote_vol += (unsigned __int128)(uint64_t)t.qty.mant * (uint64_t)best;
        sym->t_count++;
        sym->t_last_trade_ms = t.time_ms;
        sym->t_last_buyer_maker = t.buyer_maker;
        sym->t_last_qty = t.qty.mant;
        sim->st.trades_generated++;
        market_fanout_kind(sim, sym, QB__EXSIM_K_TRADE, market_enc_trade, &t, QB__EXSIM_Q_TRADE, 1);
    }
}

/* ---- replay ---- */

qb__exsim_sym *qb__exsim_replay_symbol(qb__exsim *sim, const char *native, const qb_level *bids,
                                       size_t nb, const qb_level *asks, size_t na, uint64_t last_id)
{
    qb__exsim_sym *sym = NULL;
    for (qb__exsim_sym *s = sim->syms; s; s = s->next) {
        if (strcmp(s->name, native) == 0) {
            sym = s;
        }
    }
    if (sym == NULL && (sym = market_sym_alloc(sim, sim->ops, native, 0)) == NULL) {
        return NULL;
    }
    if (qb_book_replace(sym->book, bids, nb, asks, na) != QB_OK) {
        return NULL;
    }
    sym->last_id = last_id;
    return sym;
}

int qb__exsim_replay_frame(qb__exsim *sim, qb__exsim_sym *sym, qb__exsim_stream *st,
                           const char *payload, size_t len, qb__exsim_event *ev)
{
    if (sym->nrecs == sym->caprecs) {
        size_t nc = sym->caprecs ? sym->caprecs * 2 : 64;
        qb__exsim_replay_rec *nr = realloc(sym->recs, nc * sizeof *nr);
        if (nr == NULL) {
            free(ev);
            return QB_ENOMEM;
        }
        sym->recs = nr;
        sym->caprecs = nc;
    }
    char *p = malloc(len + 1);
    if (p == NULL) {
        free(ev);
        return QB_ENOMEM;
    }
    memcpy(p, payload, len);
    p[len] = '\0';
    qb__exsim_replay_rec *r = &sym->recs[sym->nrecs++];
    r->st = st;
    r->payload = p;
    r->len = len;
    r->is_depth = ev != NULL;
    r->ev = ev;
    if (ev) {
        ev->raw = p;
        ev->raw_len = len;
    }
    return QB_OK;
}

/* Applies a recorded event the way a Binance client must (drop u <=
 * lastUpdateId; the first applied event brackets lastUpdateId+1; then
 * U == previous u + 1), so --dump is the book a correct client holds. */
static void market_replay_apply(qb__exsim_sym *sym, qb__exsim_event *ev)
{
    if (ev->last_id <= sym->last_id) {
        return;
    }
    if (!sym->replay_synced) {
        if (ev->first_id > sym->last_id + 1) {
            QB_WARN("exsim_replay_gap", "sym=%s first event U=%llu > lastUpdateId+1=%llu",
                    sym->name, (unsigned long long)ev->first_id,
                    (unsigned long long)sym->last_id + 1);
        }
        sym->replay_synced = true;
    } else if (ev->first_id != sym->last_id + 1) {
        QB_WARN("exsim_replay_gap", "sym=%s U=%llu expected %llu", sym->name,
                (unsigned long long)ev->first_id, (unsigned long long)sym->last_id + 1);
    }
    int rc = qb_book_apply(sym->book, ev->bids, ev->n_bids, ev->asks, ev->n_asks);
    if (rc != QB_OK) {
        QB_WARN("exsim_replay_apply_failed", "sym=%s err=%s", sym->name, qb_errname(rc));
    }
    sym->last_id = ev->last_id;
}

static void market_replay_one(qb__exsim *sim, qb__exsim_sym *sym)
{
    qb__exsim_replay_rec *r = &sym->recs[sym->cursor++];
    if (r->is_depth) {
        sym->n_events++;
        r->ev->index = sym->n_events;
        market_replay_apply(sym, r->ev);
        market_emit_event(sim, sym, r->ev);
    } else {
        market_raw_item it = {r->payload, r->len};
        uint8_t flags = QB__EXSIM_Q_EVENT;
        if (r->st->kind == QB__EXSIM_K_TRADE) {
            sym->n_trades++;
            sim->st.trades_generated++;
            flags = QB__EXSIM_Q_TRADE;
        }
        market_fanout_stream(sim, r->st, market_enc_raw, &it, flags, 1);
    }
}

/* ---- the timer ---- */

static void market_finish(qb__exsim *sim, qb__exsim_sym *sym)
{
    sym->finished = true;
    market_flush_held(sim, sym);
    market_agg_flush(sim, sym);
    QB_INFO("exsim_generation_done", "exchange=%s sym=%s events=%llu lastUpdateId=%llu",
            sym->ops->name, sym->name, (unsigned long long)sym->n_events,
            (unsigned long long)sym->last_id);
    for (qb__exsim_sym *s = sim->syms; s; s = s->next) {
        if (s->active && !s->finished) {
            return;
        }
    }
    /* every generating symbol is done: write the dump now */
    qb__exsim_dump_write(sim);
}

static void market_tick(lws_sorted_usec_list_t *sul)
{
    qb__exsim *sim = market_timer.sim;
    const qb__exsim_cfg *cfg = sim->cfg;
    uint64_t now = qb_mono_ns();
    /* Catch-up cap per tick: a stalled loop does not come back with a burst
     * bigger than about a second of events. */
    uint64_t cap = (uint64_t)cfg->rate + 16;
    for (qb__exsim_sym *sym = sim->syms; sym; sym = sym->next) {
        if (!sym->active || sym->finished) {
            continue;
        }
        if (sym->agg && sym->agg->open && now - sym->agg->start_ns >= 1000000000u) {
            market_agg_flush(sim, sym);
        }
        uint64_t produced = sim->replay_mode ? sym->cursor : sym->n_events;
        uint64_t due = (uint64_t)((unsigned __int128)(now - sym->start_ns) * (uint64_t)cfg->rate /
                                  1000000000u) +
                       1;
        if (due > produced + cap) {
            /* skip the backlog: move the start so that "due" is produced + cap */
            due = produced + cap;
            sym->start_ns =
                now - (uint64_t)((unsigned __int128)(due - 1) * 1000000000u / (uint64_t)cfg->rate);
        }
        while (produced < due && !sym->finished) {
            if (sim->replay_mode) {
                if (sym->cursor >= sym->nrecs) {
                    market_finish(sim, sym);
                    break;
                }
                market_replay_one(sim, sym);
                produced = sym->cursor;
                if (sym->cursor >= sym->nrecs ||
                    (cfg->events > 0 && sym->n_events >= (uint64_t)cfg->events)) {
                    market_finish(sim, sym);
                }
            } else {
                market_evbuf eb;
                eb.ev.bids = eb.b;
                eb.ev.asks = eb.a;
                market_gen_event(sim, sym, &eb.ev);
                if (sym->ops->on_event) {
                    sym->ops->on_event(sim, sym, &eb.ev);
                }
                market_emit_event(sim, sym, &eb.ev);
                market_gen_trades(sim, sym);
                market_gen_ticker(sim, sym);
                produced = sym->n_events;
                if (cfg->events > 0 && sym->n_events >= (uint64_t)cfg->events) {
                    market_finish(sim, sym);
                }
            }
        }
    }
    lws_sul_schedule(sim->ctx, 0, sul, market_tick, market_timer.period_us);
}

void qb__exsim_market_start(qb__exsim *sim)
{
    market_timer.sim = sim;
    int64_t us = 1000000 / (sim->cfg->rate > 0 ? sim->cfg->rate : 1);
    if (us < 5000) {
        us = 5000;
    } else if (us > 100000) {
        us = 100000;
    }
    market_timer.period_us = us;
    lws_sul_schedule(sim->ctx, 0, &market_timer.sul, market_tick, us);
}

void qb__exsim_market_stop(qb__exsim *sim)
{
    lws_sul_cancel(&market_timer.sul);
}

void qb__exsim_market_free(qb__exsim *sim)
{
    while (sim->streams) {
        qb__exsim_stream *st = sim->streams;
        sim->streams = st->next;
        free(st->subs);
        free(st->xdata);
        free(st);
    }
    sim->nstreams = 0;
    while (sim->syms) {
        qb__exsim_sym *s = sim->syms;
        sim->syms = s->next;
        for (size_t i = 0; i < s->nrecs; i++) {
            free(s->recs[i].payload);
            free(s->recs[i].ev);
        }
        free(s->recs);
        free(s->streams);
        free(s->held);
        if (s->agg) {
            free(s->agg->e);
            free(s->agg);
        }
        qb_book_free(s->book);
        free(s);
    }
    sim->nsyms = 0;
}

/* ---- dump ---- */

static int market_dump_levels(qb_buf *b, const qb_book *book, qb_book_side side)
{
    size_t n = qb_book_depth(book, side);
    const qb_level *lv = qb_book_levels(book, side);
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

static int market_sym_cmp(const qb__exsim_sym *a, const qb__exsim_sym *b)
{
    int c = strcmp(a->ops->name, b->ops->name);
    return c ? c : strcmp(a->name, b->name);
}

static int market_dump_dec(qb_buf *b, const char *key, int64_t v)
{
    char t[QB_DEC_STR_MAX];
    qb_dec_format(qb__exsim_dec8(v), t, sizeof t);
    return qb_buf_appendf(b, "\"%s\":\"%s\",", key, t);
}

/* The final 24 h ticker state (what the last ticker frame said, when the
 * last event sent one). */
static int market_dump_ticker(qb_buf *b, const qb__exsim_sym *s)
{
    int rc = qb_buf_append(b, ",\"ticker\":{", 11);
    rc = rc ? rc : market_dump_dec(b, "open", s->t_open);
    rc = rc ? rc : market_dump_dec(b, "high", s->t_high);
    rc = rc ? rc : market_dump_dec(b, "low", s->t_low);
    rc = rc ? rc : market_dump_dec(b, "last", s->t_last);
    rc = rc ? rc : market_dump_dec(b, "prev_close", s->t_prev_close);
    rc = rc ? rc : market_dump_dec(b, "volume", s->t_vol);
    rc = rc ? rc
            : qb_buf_appendf(b, "\"count\":%llu,\"tickers\":%llu}", (unsigned long long)s->t_count,
                             (unsigned long long)s->n_tickers);
    return rc;
}

int qb__exsim_dump_write(qb__exsim *sim)
{
    const char *path = sim->cfg->dump;
    if (path == NULL || *path == '\0') {
        return QB_OK;
    }
    qb_buf b = QB_BUF_INIT;
    int rc = QB_OK;
    /* symbols in (exchange, name) order, so two dumps of one run diff
     * cleanly */
    qb__exsim_sym **v = calloc(sim->nsyms ? sim->nsyms : 1, sizeof *v);
    if (v == NULL) {
        return QB_ENOMEM;
    }
    size_t n = 0;
    for (qb__exsim_sym *s = sim->syms; s; s = s->next) {
        size_t j = n++;
        while (j > 0 && market_sym_cmp(v[j - 1], s) > 0) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = s;
    }
    for (size_t i = 0; i < n && rc == QB_OK; i++) {
        qb__exsim_sym *s = v[i];
        rc = qb_buf_appendf(&b,
                            "{\"exchange\":\"%s\",\"symbol\":\"%s\",\"lastUpdateId\":%llu,"
                            "\"events\":%llu,\"trades\":%llu,\"time_ms\":%llu,\"bids\":",
                            s->ops->name, s->name, (unsigned long long)s->last_id,
                            (unsigned long long)s->n_events, (unsigned long long)s->n_trades,
                            (unsigned long long)s->last_time_ms);
        if (rc == QB_OK) {
            rc = market_dump_levels(&b, s->book, QB_BID);
        }
        if (rc == QB_OK) {
            rc = qb_buf_append(&b, ",\"asks\":", 8);
        }
        if (rc == QB_OK) {
            rc = market_dump_levels(&b, s->book, QB_ASK);
        }
        if (rc == QB_OK && !sim->replay_mode) {
            rc = market_dump_ticker(&b, s);
        }
        if (rc == QB_OK) {
            rc = qb_buf_append(&b, "}\n", 2);
        }
    }
    free(v);
    if (rc == QB_OK && (rc = qb_file_write_atomic(path, b.data, b.len)) != QB_OK) {
        QB_LOG_RL(QB_LOG_ERROR, "exsim_dump_failed", "path=%s errno=%s", path, strerror(errno));
    }
    qb_buf_fini(&b);
    if (rc == QB_OK) {
        sim->st.dumps_written++;
        QB_INFO("exsim_dump_written", "path=%s symbols=%zu", path, n);
    }
    return rc;
}
