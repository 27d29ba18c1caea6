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
 *                                 (random walk, +-1 tick per event)
 *
 * Each event: the mid moves; levels the mid crossed are removed (the "market
 * took them"); 1-4 random changes, half near the top and half anywhere
 * (insert at some distance from the mid, change a size, delete a level);
 * levels beyond --max-levels are removed explicitly (size 0 is sent), so
 * books stay about --max-levels deep. Inserts are clamped to stay strictly
 * inside the opposite best, so the book never crosses. Every level appears
 * at most once per event; an event of k entries consumes k update ids:
 * U = previous u + 1, u = U + k - 1.
 *
 * Faults (per symbol event index k, counted): --gap-every N skips sending
 * event k*N (the book still changes), --dup-every sends it twice,
 * --reorder-every holds it back and sends it after the next one,
 * --malformed-every / --oversized-every add a bad frame after it.
 */
#include "exsim.h"

#include "clock.h"
#include "err.h"
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

/* ---- streams ---- */

qb__exsim_stream *qb__exsim_stream_get(qb__exsim *sim, const char *name, qb__exsim_sym *sym,
                                       qb__exsim_kind kind)
{
    for (qb__exsim_stream *st = sim->streams; st; st = st->next) {
        if (strcmp(st->name, name) == 0) {
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

static bool market_name_ok(const qb__exsim *sim, const char *native)
{
    size_t n = strlen(native);
    if (n < 2 || n >= QB__EXSIM_SYM_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = native[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
            return false;
        }
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
    return sym->lot * (int64_t)(1 + market_rnd(&sym->rng) % 20000);
}

static qb__exsim_sym *market_sym_alloc(qb__exsim *sim, const char *native, size_t max_levels)
{
    qb__exsim_sym *sym = calloc(1, sizeof *sym);
    if (sym == NULL) {
        return NULL;
    }
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

/* The initial synthetic book: around a price chosen from the name, with
 * depth 3/4 of --max-levels per side, levels 1-3 ticks apart. */
static int market_sym_init(qb__exsim *sim, qb__exsim_sym *sym)
{
    uint64_t h = market_hash(sym->name) ^ ((uint64_t)sim->cfg->seed * 0xD6E8FEB86659FD93ull);
    sym->rng = h;
    uint64_t trng = h ^ 0x5851F42D4C957F2Dull;
    sym->next_trade_id = 100000000u + market_rnd(&trng) % 100000000u;
    if (strncmp(sym->name, "BTC", 3) == 0) {
        sym->tick = 1000000; /* 0.01 */
        sym->mid = 6000000 + (int64_t)(h % 20001) - 10000;
        sym->lot = 1000; /* 0.00001 */
    } else if (strncmp(sym->name, "ETH", 3) == 0) {
        sym->tick = 1000000;
        sym->mid = 300000 + (int64_t)(h % 2001) - 1000;
        sym->lot = 10000;
    } else {
        sym->tick = 10000; /* 0.0001 */
        sym->mid = 10000 + (int64_t)(h % 4001) - 2000;
        sym->lot = 100000; /* 0.001 */
    }
    sym->last_id = 1000000000u + (h >> 8) % 1000000000u;
    size_t depth0 = (size_t)sim->cfg->max_levels * 3 / 4;
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

qb__exsim_sym *qb__exsim_sym_get(qb__exsim *sim, const char *native, bool create)
{
    for (qb__exsim_sym *s = sim->syms; s; s = s->next) {
        if (strcmp(s->name, native) == 0) {
            return s;
        }
    }
    if (!create || sim->replay_mode || !market_name_ok(sim, native)) {
        return NULL;
    }
    if (sim->nsyms >= (size_t)sim->cfg->max_symbols) {
        /* bounded memory and CPU whatever clients ask for */
        QB_LOG_RL(QB_LOG_WARN, "exsim_symbol_limit", "sym=%s max=%lld", native,
                  (long long)sim->cfg->max_symbols);
        return NULL;
    }
    qb__exsim_sym *sym =
        market_sym_alloc(sim, native, (size_t)sim->cfg->max_levels + QB__EXSIM_MAX_CHANGES);
    if (sym == NULL) {
        return NULL;
    }
    if (market_sym_init(sim, sym) != QB_OK) {
        QB_ERROR("exsim_book_init_failed", "sym=%s", native);
    }
    QB_INFO("exsim_symbol_created", "sym=%s lastUpdateId=%llu", native,
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

static void market_gen_event(qb__exsim *sim, qb__exsim_sym *sym, qb__exsim_event *ev)
{
    uint64_t *r = &sym->rng;
    size_t max_levels = (size_t)sim->cfg->max_levels;
    ev->n_bids = ev->n_asks = 0;
    ev->raw = NULL;
    ev->raw_len = 0;

    /* Random walk of the mid; it stays at least 100 ticks above zero. */
    uint64_t step = market_rnd(r) % 3;
    if (step == 0) {
        sym->mid++;
    } else if (step == 1 && sym->mid > 100) {
        sym->mid--;
    }
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

    unsigned nch = 1 + (unsigned)(market_rnd(r) % 4);
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
    sym->n_events++;
    ev->index = sym->n_events;
    ev->first_id = sym->last_id + 1;
    ev->last_id = sym->last_id + ev->n_bids + ev->n_asks;
    sym->last_id = ev->last_id;
    ev->time_ms = market_now_ms();
}

/* ---- fan-out ---- */

/* Encodes lazily, once per form (combined/raw), and queues on every
 * subscriber of the symbol's streams of that kind. */
typedef int (*market_encode_fn)(qb__exsim *sim, const qb__exsim_stream *st, const void *item,
                                bool combined, qb_buf *out, bool *binary);

static int market_enc_depth(qb__exsim *sim, const qb__exsim_stream *st, const void *item,
                            bool combined, qb_buf *out, bool *binary)
{
    return sim->ops->encode_depth(sim, st, item, combined, out, binary);
}

static int market_enc_trade(qb__exsim *sim, const qb__exsim_stream *st, const void *item,
                            bool combined, qb_buf *out, bool *binary)
{
    return sim->ops->encode_trade(sim, st, item, combined, out, binary);
}

static int market_enc_malformed(qb__exsim *sim, const qb__exsim_stream *st, const void *item,
                                bool combined, qb_buf *out, bool *binary)
{
    return sim->ops->encode_malformed(sim, st, combined, out, binary);
}

static int market_enc_oversized(qb__exsim *sim, const qb__exsim_stream *st, const void *item,
                                bool combined, qb_buf *out, bool *binary)
{
    return sim->ops->encode_oversized(sim, st, (size_t)sim->cfg->oversized_bytes, combined, out,
                                      binary);
}

typedef struct market_raw_item {
    const char *p;
    size_t n;
} market_raw_item;

static int market_enc_raw(qb__exsim *sim, const qb__exsim_stream *st, const void *item,
                          bool combined, qb_buf *out, bool *binary)
{
    const market_raw_item *it = item;
    return sim->ops->encode_raw(sim, st, it->p, it->n, combined, out, binary);
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

/* Sends depth event ev (already applied to the book) through the faults. */
static void market_emit_event(qb__exsim *sim, qb__exsim_sym *sym, const qb__exsim_event *ev)
{
    const qb__exsim_cfg *cfg = sim->cfg;
    uint64_t k = ev->index;
    sim->st.events_generated++;
    bool gap = cfg->gap_every > 0 && k % (uint64_t)cfg->gap_every == 0;
    if (!gap) {
        market_agg_add(sim, sym, ev);
    }
    if (gap) {
        sim->st.fault_gap++;
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
        t.qty = qb__exsim_dec8(sym->lot * (int64_t)(1 + market_rnd(&s) % 1000));
        t.id = sym->next_trade_id++;
        t.time_ms = market_now_ms();
        sym->n_trades++;
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
    if (sym == NULL && (sym = market_sym_alloc(sim, native, 0)) == NULL) {
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
    QB_INFO("exsim_generation_done", "sym=%s events=%llu lastUpdateId=%llu", sym->name,
            (unsigned long long)sym->n_events, (unsigned long long)sym->last_id);
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
                market_emit_event(sim, sym, &eb.ev);
                market_gen_trades(sim, sym);
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

int qb__exsim_dump_write(qb__exsim *sim)
{
    const char *path = sim->cfg->dump;
    if (path == NULL || *path == '\0') {
        return QB_OK;
    }
    qb_buf b = QB_BUF_INIT;
    int rc = QB_OK;
    /* symbols in name order, so two dumps of one run diff cleanly */
    qb__exsim_sym **v = calloc(sim->nsyms ? sim->nsyms : 1, sizeof *v);
    if (v == NULL) {
        return QB_ENOMEM;
    }
    size_t n = 0;
    for (qb__exsim_sym *s = sim->syms; s; s = s->next) {
        size_t j = n++;
        while (j > 0 && strcmp(v[j - 1]->name, s->name) > 0) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = s;
    }
    for (size_t i = 0; i < n && rc == QB_OK; i++) {
        qb__exsim_sym *s = v[i];
        rc = qb_buf_appendf(&b,
                            "{\"exchange\":\"%s\",\"symbol\":\"%s\",\"lastUpdateId\":%llu,"
                            "\"events\":%llu,\"trades\":%llu,\"bids\":",
                            sim->ops->name, s->name, (unsigned long long)s->last_id,
                            (unsigned long long)s->n_events, (unsigned long long)s->n_trades);
        if (rc == QB_OK) {
            rc = market_dump_levels(&b, s->book, QB_BID);
        }
        if (rc == QB_OK) {
            rc = qb_buf_append(&b, ",\"asks\":", 8);
        }
        if (rc == QB_OK) {
            rc = market_dump_levels(&b, s->book, QB_ASK);
        }
        if (rc == QB_OK) {
            rc = qb_buf_append(&b, "}\n", 2);
        }
    }
    free(v);
    if (rc == QB_OK) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "wb");
        if (f == NULL) {
            rc = QB_EIO;
        } else {
            size_t w = b.len ? fwrite(b.data, 1, b.len, f) : 0;
            if (w != b.len || fflush(f) != 0) {
                rc = QB_EIO;
            }
            if (fclose(f) != 0) {
                rc = QB_EIO;
            }
            if (rc == QB_OK && rename(tmp, path) != 0) {
                rc = QB_EIO;
            }
        }
        if (rc != QB_OK) {
            QB_LOG_RL(QB_LOG_ERROR, "exsim_dump_failed", "path=%s errno=%s", path, strerror(errno));
            unlink(tmp);
        }
    }
    qb_buf_fini(&b);
    if (rc == QB_OK) {
        sim->st.dumps_written++;
        QB_INFO("exsim_dump_written", "path=%s symbols=%zu", path, n);
    }
    return rc;
}
