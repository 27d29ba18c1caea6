/*
 * test_htx.c: the HTX adapter's parts without network: gzip inflation with
 * its output cap (adapters/inflate.c), the HTX parser and symbols
 * (adapters/htx.c), and the prevSeqNum sync (adapters/sync.c with
 * qb_seq_htx).
 *
 * Real data (QB_SHARED_DATA, skipped with 77 when absent):
 *   - the raw gzip frames samples/huobi_*_real_1.gzip.bin inflate to exactly
 *     the bytes of the matching .json and parse to what they say;
 *   - the recorded session recorded/huobi_spot_omgbtc_decoded_..txt: every
 *     server ping is answered with the pong the real client sent, trades
 *     carry tradeId (the 27-digit legacy id is never parsed), and every
 *     exponent-form price of the depth snapshots converts exactly (checked
 *     against a naive string-shifting reference, no qb_dec involved);
 *   - the incremental MBP samples real_1..4 and the real req answer: the
 *     snapshot (seqNum 109409288160) aligns on real_3's prevSeqNum, real_1
 *     and real_2 are dropped as stale, and the final book equals a naive
 *     reference book built from the same text (oracle_htx.h).
 * Synthetic frames: corrupt, truncated and trailing-garbage gzip, a gzip
 * bomb past the cap, malformed JSON, sequence breaks, empty updates,
 * 27-digit ids. Every prefix and single-byte mutation of every real frame
 * (gzip and JSON) goes through inflate/parse/sync (run under ASan+UBSan).
 */
#include "harness.h"

#include "err.h"
#include "exchange.h"
#include "inflate.h"
#include "log.h"
#include "oracle_htx.h"
#include "sync.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define SAMPLES QB_SHARED_DATA "/samples/"
#define REC_FILE QB_SHARED_DATA "/recorded/huobi_spot_omgbtc_decoded_cryptofeed_20210417.txt"

/* ---- helpers ----------------------------------------------------------------- */

static char *sample(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, SAMPLES "%s", name);
    char *t = qb_test_read_file(path, len);
    if (t == NULL) {
        QB_SKIP_ALL("shared exchange data not found at " SAMPLES);
    }
    /* The .json files end with a newline the frames did not have. */
    while (*len && (t[*len - 1] == '\n' || t[*len - 1] == '\r')) {
        t[--*len] = '\0';
    }
    return t;
}

static qb_dec dec(const char *s)
{
    qb_dec d = {0, 0};
    int rc = qb_dec_parse(s, strlen(s), &d);
    QB_CHECK_EQ_INT(rc, QB_OK);
    return d;
}

/* gzip-compresses in[0..n) with zlib (the test's own frames). */
static size_t gzip_make(const void *in, size_t n, uint8_t *out, size_t cap)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY) != Z_OK) {
        return 0;
    }
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    int zr = deflate(&zs, Z_FINISH);
    size_t w = cap - zs.avail_out;
    deflateEnd(&zs);
    return zr == Z_STREAM_END ? w : 0;
}

/* ---- a recording sync owner ---------------------------------------------------- */

typedef struct rec_owner {
    int snapshots, deltas, states, wants;
    uint64_t first_applied, last_applied;
    qb_feed_state last_state;
    char last_reason[QB_EVENT_INFO_MAX];
} rec_owner;

static void own_snapshot(qb_sync *s, const qb_event *snap)
{
    ((rec_owner *)s->user)->snapshots++;
    (void)snap;
}

static void own_delta(qb_sync *s, const qb_event *ev)
{
    rec_owner *o = s->user;
    if (o->deltas == 0) {
        o->first_applied = ev->last_id;
    }
    o->deltas++;
    o->last_applied = ev->last_id;
}

static void own_state(qb_sync *s, qb_feed_state st, const char *reason)
{
    rec_owner *o = s->user;
    o->states++;
    o->last_state = st;
    snprintf(o->last_reason, sizeof o->last_reason, "%s", reason);
}

static void own_want(qb_sync *s, uint32_t delay_ms)
{
    ((rec_owner *)s->user)->wants++;
    (void)delay_ms;
}

static const qb_sync_ops own_ops = {
    .on_snapshot = own_snapshot,
    .on_delta = own_delta,
    .on_state = own_state,
    .want_snapshot = own_want,
};

static int parse_str(void *st, qb_parser *p, const char *js, qb_event *ev)
{
    return qb_htx_ops.parse(st, p, js, strlen(js), ev);
}

/* ---- tests ----------------------------------------------------------------------- */

static const char *const gz_names[] = {"huobi_ping_real_1", "huobi_sub_response_real_1",
                                       "huobi_trade_detail_real_1", "huobi_depth_step0_real_1"};

QB_TEST(real_gzip_frames_inflate_to_their_json)
{
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 20, 400), QB_OK);
    void *st_p = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_htx_ops, 1 << 20, &st_p), QB_OK);
    for (size_t i = 0; i < sizeof gz_names / sizeof gz_names[0]; i++) {
        char name[128];
        size_t glen, jlen;
        snprintf(name, sizeof name, "%s.gzip.bin", gz_names[i]);
        char *gz = qb_test_read_file(SAMPLES "huobi_ping_real_1.gzip.bin", &glen);
        free(gz);
        char path[512];
        snprintf(path, sizeof path, SAMPLES "%s", name);
        gz = qb_test_read_file(path, &glen);
        if (gz == NULL) {
            QB_SKIP_ALL("shared exchange data not found at " SAMPLES);
        }
        snprintf(name, sizeof name, "%s.json", gz_names[i]);
        char *js = sample(name, &jlen);
        const char *out;
        size_t outlen;
        QB_CHECK_EQ_INT(qb_htx_ops.decode(st_p, &p, (const uint8_t *)gz, glen, &out, &outlen),
                        QB_OK);
        QB_CHECK_EQ_INT(outlen, jlen);
        QB_CHECK(outlen == jlen && memcmp(out, js, jlen) == 0);
        /* And what they say. */
        qb_event ev;
        QB_CHECK_EQ_INT(qb_htx_ops.parse(st_p, &p, out, outlen, &ev), QB_OK);
        switch (i) {
        case 0:
            QB_CHECK_EQ_INT(ev.kind, QB_EV_REPLY);
            QB_CHECK(ev.reply.n == 22 && memcmp(ev.reply.p, "{\"pong\":1618678073643}", 22) == 0);
            break;
        case 1:
            QB_CHECK_EQ_INT(ev.kind, QB_EV_CONTROL);
            QB_CHECK_EQ_STR(ev.info, "id=1 subbed=market.trioeth.depth.step0");
            break;
        case 2:
            QB_CHECK_EQ_INT(ev.kind, QB_EV_TRADE);
            QB_CHECK_EQ_STR(ev.native, "trioeth");
            QB_CHECK_EQ_INT(ev.n_trades, 1);
            QB_CHECK_EQ_INT(ev.trades[0].id, 100045088885ULL); /* tradeId, not the 27-digit id */
            QB_CHECK(qb_dec_identical(ev.trades[0].price, (qb_dec){92, 8})); /* 9.2E-7 */
            QB_CHECK(qb_dec_identical(ev.trades[0].qty, dec("20995.88")));
            QB_CHECK_EQ_INT(ev.trades[0].side, QB_SIDE_BUY);
            QB_CHECK_EQ_INT(ev.trades[0].ts, 1618678027940ULL * 1000000ULL);
            break;
        case 3:
            QB_CHECK_EQ_INT(ev.kind, QB_EV_UNKNOWN); /* depth.step0: not our topic */
            break;
        }
        free(gz);
        free(js);
    }
    qb_exchange_state_free(&qb_htx_ops, st_p);
    qb_parser_fini(&p);
}

QB_TEST(inflate_rejects_bad_gzip)
{
    qb_inflate *z;
    QB_CHECK_EQ_INT(qb_inflate_new(&z), QB_OK);
    qb_buf out = QB_BUF_INIT;
    size_t glen;
    uint8_t *gz = (uint8_t *)qb_test_read_file(SAMPLES "huobi_trade_detail_real_1.gzip.bin", &glen);
    if (gz == NULL) {
        QB_SKIP_ALL("shared exchange data not found at " SAMPLES);
    }
    QB_CHECK_EQ_INT(qb_inflate_gzip(z, gz, glen, 1 << 20, &out), QB_OK);
    size_t full = out.len;
    /* Exactly at the cap is fine, one byte less is not. */
    QB_CHECK_EQ_INT(qb_inflate_gzip(z, gz, glen, full, &out), QB_OK);
    QB_CHECK_EQ_INT(qb_inflate_gzip(z, gz, glen, full - 1, &out), QB_ETOOBIG);
    QB_CHECK_EQ_INT(qb_inflate_gzip(z, gz, glen, 16, &out), QB_ETOOBIG);
    /* Every truncation is an error, never a partial success. */
    for (size_t n = 0; n < glen; n++) {
        QB_CHECK_EQ_INT(qb_inflate_gzip(z, gz, n, 1 << 20, &out), QB_EPARSE);
    }
    /* Trailing bytes after the member. */
    uint8_t *longer = malloc(glen + 3);
    memcpy(longer, gz, glen);
    memcpy(longer + glen, "abc", 3);
    QB_CHECK_EQ_INT(qb_inflate_gzip(z, longer, glen + 3, 1 << 20, &out), QB_EPARSE);
    free(longer);
    /* A corrupt CRC32 and a corrupt length trailer. */
    gz[glen - 6] ^= 0x55;
    QB_CHECK_EQ_INT(qb_inflate_gzip(z, gz, glen, 1 << 20, &out), QB_EPARSE);
    gz[glen - 6] ^= 0x55;
    gz[glen - 2] ^= 0x01;
    QB_CHECK_EQ_INT(qb_inflate_gzip(z, gz, glen, 1 << 20, &out), QB_EPARSE);
    gz[glen - 2] ^= 0x01;
    /* Text frames, empty frames, zlib (not gzip) frames. */
    const char *text = "{\"ping\":1}";
    QB_CHECK_EQ_INT(qb_inflate_gzip(z, (const uint8_t *)text, strlen(text), 1 << 20, &out),
                    QB_EPARSE);
    QB_CHECK_EQ_INT(qb_inflate_gzip(z, gz, 0, 1 << 20, &out), QB_EPARSE);
    uint8_t zl[256];
    uLongf zn = sizeof zl;
    QB_CHECK_EQ_INT(compress(zl, &zn, (const Bytef *)text, strlen(text)), Z_OK);
    QB_CHECK_EQ_INT(qb_inflate_gzip(z, zl, zn, 1 << 20, &out), QB_EPARSE);
    /* Still works after all that (the stream is reset per frame). */
    QB_CHECK_EQ_INT(qb_inflate_gzip(z, gz, glen, 1 << 20, &out), QB_OK);
    QB_CHECK_EQ_INT(out.len, full);
    free(gz);

    /* A gzip bomb: 64 MiB of zeros in ~64 KiB of gzip. Rejected at the cap
     * with at most cap + 1 bytes of output memory. */
    size_t bomb_n = 64u << 20;
    uint8_t *zeros = calloc(1, bomb_n);
    size_t gcap = 1 << 20;
    uint8_t *bomb = malloc(gcap);
    size_t bl = gzip_make(zeros, bomb_n, bomb, gcap);
    QB_CHECK(bl > 0 && bl < 200000);
    free(zeros);
    qb_buf_fini(&out);
    QB_CHECK_EQ_INT(qb_inflate_gzip(z, bomb, bl, 1 << 20, &out), QB_ETOOBIG);
    QB_CHECK(out.cap <= 2 * ((1u << 20) + 1));
    free(bomb);
    qb_buf_fini(&out);
    qb_inflate_free(z);
    qb_inflate_free(NULL);

    /* Through the ops table: the parser's cap is its max_bytes. */
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 4096, 100), QB_OK);
    void *st_p = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_htx_ops, 4096, &st_p), QB_OK);
    char big[8192];
    memset(big, ' ', sizeof big);
    memcpy(big, "{\"ping\":1}", 10);
    uint8_t g[1024];
    size_t gl = gzip_make(big, sizeof big, g, sizeof g);
    const char *o;
    size_t ol;
    QB_CHECK_EQ_INT(qb_htx_ops.decode(st_p, &p, g, gl, &o, &ol), QB_ETOOBIG);
    gl = gzip_make(big, 4096, g, sizeof g);
    QB_CHECK_EQ_INT(qb_htx_ops.decode(st_p, &p, g, gl, &o, &ol), QB_OK);
    qb_event ev;
    QB_CHECK_EQ_INT(qb_htx_ops.parse(st_p, &p, o, ol, &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_REPLY);
    qb_exchange_state_free(&qb_htx_ops, st_p);
    qb_parser_fini(&p);
}

QB_TEST(every_gzip_prefix_and_mutation)
{
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 16, 400), QB_OK);
    void *st_p = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_htx_ops, 1 << 16, &st_p), QB_OK);
    unsigned long ok = 0, bad = 0;
    for (size_t i = 0; i < sizeof gz_names / sizeof gz_names[0]; i++) {
        char path[512];
        size_t glen;
        snprintf(path, sizeof path, SAMPLES "%s.gzip.bin", gz_names[i]);
        uint8_t *gz = (uint8_t *)qb_test_read_file(path, &glen);
        if (gz == NULL) {
            QB_SKIP_ALL("shared exchange data not found at " SAMPLES);
        }
        uint8_t *buf = malloc(glen);
        const char *o;
        size_t ol;
        qb_event ev;
        for (size_t n = 0; n <= glen; n++) {
            memcpy(buf, gz, n);
            int rc = qb_htx_ops.decode(st_p, &p, buf, n, &o, &ol);
            QB_CHECK(rc != QB_OK || n == glen);
        }
        memcpy(buf, gz, glen);
        /* Every byte, every one of its 8 bit flips plus two byte values. */
        for (size_t k = 0; k < glen; k++) {
            uint8_t orig = buf[k];
            for (int m = 0; m < 10; m++) {
                buf[k] = m < 8 ? (uint8_t)(orig ^ (1u << m)) : (m == 8 ? 0 : 0xff);
                if (buf[k] == orig) {
                    continue;
                }
                if (qb_htx_ops.decode(st_p, &p, buf, glen, &o, &ol) == QB_OK) {
                    ok++;
                    QB_CHECK(ol <= p.max_bytes);
                    qb_htx_ops.parse(st_p, &p, o, ol, &ev);
                } else {
                    bad++;
                }
            }
            buf[k] = orig;
        }
        free(buf);
        free(gz);
    }
    printf("gzip mutations: %lu inflated (header bytes zlib ignores), %lu rejected\n", ok, bad);
    QB_CHECK(bad > ok);
    qb_exchange_state_free(&qb_htx_ops, st_p);
    qb_parser_fini(&p);
}

QB_TEST(recorded_session_pings_trades_exponents)
{
    size_t len;
    char *text = qb_test_read_file(REC_FILE, &len);
    if (text == NULL) {
        QB_SKIP_ALL("shared exchange data not found at " REC_FILE);
    }
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 20, 400), QB_OK);
    void *st_p = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_htx_ops, 1 << 20, &st_p), QB_OK);
    int pings = 0, trades = 0, depths = 0, controls = 0;
    size_t levels_checked = 0;
    char expect_pong[64] = "";
    for (char *line = text, *eol; line && *line; line = eol ? eol + 1 : NULL) {
        eol = strchr(line, '\n');
        if (eol) {
            *eol = '\0';
        }
        char *payload = strstr(line, ": {");
        if (payload == NULL) {
            continue;
        }
        payload += 2;
        if (strncmp(line, "#SENT", 5) == 0) {
            /* The real client's answer to the previous ping. */
            if (strncmp(payload, "{\"pong\"", 7) == 0) {
                QB_CHECK_EQ_STR(payload, expect_pong);
                expect_pong[0] = '\0';
            }
            continue;
        }
        qb_event ev;
        int rc = qb_htx_ops.parse(st_p, &p, payload, strlen(payload), &ev);
        QB_CHECK_EQ_INT(rc, QB_OK);
        if (rc != QB_OK) {
            continue;
        }
        switch (ev.kind) {
        case QB_EV_REPLY:
            pings++;
            snprintf(expect_pong, sizeof expect_pong, "%.*s", (int)ev.reply.n, ev.reply.p);
            break;
        case QB_EV_TRADE:
            trades++;
            QB_CHECK_EQ_STR(ev.native, "omgbtc");
            QB_CHECK(ev.n_trades >= 1);
            for (size_t k = 0; k < ev.n_trades; k++) {
                char want[40];
                snprintf(want, sizeof want, "\"tradeId\":%llu,",
                         (unsigned long long)ev.trades[k].id);
                QB_CHECK(strstr(payload, want) != NULL);
            }
            break;
        case QB_EV_CONTROL:
            controls++;
            break;
        case QB_EV_UNKNOWN: {
            /* depth.step0 snapshots: not our topic, but their exponent-form
             * numbers are the hardest real input for qb_dec: check every
             * level against the string-shifting reference. */
            depths++;
            qb_json j;
            QB_CHECK_EQ_INT(qb_json_parse(&j, payload, strlen(payload), p.tok, p.tok_cap), QB_OK);
            int tick = qb_json_get(&j, 0, "tick");
            const char *sides[] = {"bids", "asks"};
            for (int sd = 0; sd < 2; sd++) {
                int arr = qb_json_get(&j, tick, sides[sd]);
                size_t n;
                QB_CHECK_EQ_INT(qb__parse_levels(&j, arr, p.bids, p.level_cap, &n), QB_OK);
                int el = arr + 1;
                for (size_t k = 0; k < n; k++) {
                    size_t tl;
                    const char *t = qb_json_text(&j, el + 1, &tl);
                    char a[64], b[64];
                    canon(t, tl, a, sizeof a);
                    canon_dec(p.bids[k].price, b, sizeof b);
                    QB_CHECK_EQ_STR(a, b);
                    t = qb_json_text(&j, el + 2, &tl);
                    canon(t, tl, a, sizeof a);
                    canon_dec(p.bids[k].size, b, sizeof b);
                    QB_CHECK_EQ_STR(a, b);
                    levels_checked++;
                    el = qb_json_skip(&j, el);
                }
            }
            break;
        }
        default:
            QB_CHECK(false);
        }
    }
    printf("recorded: %d pings answered as recorded, %d trade messages, %d step0 books (%zu "
           "levels exact), %d acks\n",
           pings, trades, depths, levels_checked, controls);
    QB_CHECK_EQ_INT(pings, 6);
    QB_CHECK_EQ_INT(trades, 1);
    QB_CHECK_EQ_INT(controls, 2);
    QB_CHECK(depths >= 30 && levels_checked > 5000);
    /* 1.58E-4 exactly: {158, 6}. */
    qb_dec d;
    QB_CHECK_EQ_INT(qb_dec_parse("1.58E-4", 7, &d), QB_OK);
    QB_CHECK(qb_dec_identical(d, (qb_dec){158, 6}));
    free(text);
    qb_exchange_state_free(&qb_htx_ops, st_p);
    qb_parser_fini(&p);
}

/* The four real incremental updates and the real req answer. */
static char *mbp[4], *snap_js;
static size_t mbp_len[4], snap_len;

static void load_mbp(void)
{
    if (snap_js) {
        return;
    }
    for (int i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof name, "huobi_mbp_incremental_real_%d.json", i + 1);
        mbp[i] = sample(name, &mbp_len[i]);
    }
    snap_js = sample("huobi_mbp_req_response_real_1_trimmed.json", &snap_len);
}

static void ref_from(ref_side *bids, ref_side *asks, const char *js)
{
    ref_apply(bids, js, "bids");
    ref_apply(asks, js, "asks");
}

QB_TEST(real_mbp_chain_aligns_on_prevseqnum)
{
    load_mbp();
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 20, 400), QB_OK);
    void *st_p = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_htx_ops, 1 << 20, &st_p), QB_OK);
    /* The chain as recorded: seqNum jumps, prevSeqNum links. */
    uint64_t prev = 0;
    qb_event ev;
    for (int i = 0; i < 4; i++) {
        QB_CHECK_EQ_INT(qb_htx_ops.parse(st_p, &p, mbp[i], mbp_len[i], &ev), QB_OK);
        QB_CHECK_EQ_INT(ev.kind, QB_EV_DEPTH);
        QB_CHECK_EQ_STR(ev.native, "btcusdt");
        QB_CHECK(ev.has_prev);
        if (i > 0) {
            QB_CHECK_EQ_INT(ev.prev_id, prev);
            QB_CHECK(ev.last_id > ev.prev_id + 1); /* not consecutive */
        }
        prev = ev.last_id;
    }
    QB_CHECK_EQ_INT(qb_htx_ops.parse_snapshot(st_p, &p, snap_js, snap_len, &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_SNAPSHOT);
    QB_CHECK_EQ_STR(ev.native, "btcusdt");
    QB_CHECK_EQ_INT(ev.last_id, 109409288160ULL);
    QB_CHECK_EQ_INT(ev.n_bids, 4);
    QB_CHECK_EQ_INT(ev.n_asks, 9);

    /* Order 1, as over the wire: updates 1 and 2 buffered while the req is
     * out, the answer, then 3 and 4 live. */
    for (int order = 0; order < 2; order++) {
        qb_sync_counters cnt = {0};
        rec_owner own = {0};
        qb_sync s;
        QB_CHECK_EQ_INT(qb_sync_init(&s, &qb_seq_htx, &own_ops, &own, &cnt, 400), QB_OK);
        qb_sync_start(&s, QB_FEED_SYNCING, "");
        int first_live = order == 0 ? 2 : 0;
        for (int i = 0; i < first_live; i++) {
            QB_CHECK_EQ_INT(qb_htx_ops.parse(st_p, &p, mbp[i], mbp_len[i], &ev), QB_OK);
            QB_CHECK_EQ_INT(qb_sync_on_delta(&s, &ev), QB_OK);
        }
        QB_CHECK_EQ_INT(qb_htx_ops.parse(st_p, &p, snap_js, snap_len, &ev), QB_OK);
        QB_CHECK_EQ_INT(ev.kind, QB_EV_SNAPSHOT);
        QB_CHECK_EQ_INT(qb_sync_on_snapshot(&s, &ev), QB_OK);
        /* Order 2: the answer came before any update; 1 and 2 are stale. */
        for (int i = first_live; i < 4; i++) {
            QB_CHECK_EQ_INT(qb_htx_ops.parse(st_p, &p, mbp[i], mbp_len[i], &ev), QB_OK);
            QB_CHECK_EQ_INT(qb_sync_on_delta(&s, &ev), QB_OK);
        }
        QB_CHECK_EQ_INT(s.state, QB_SYNC_LIVE);
        QB_CHECK_EQ_INT(own.snapshots, 1);
        QB_CHECK_EQ_INT(own.deltas, 2);
        QB_CHECK_EQ_INT(own.first_applied, 109409288204ULL); /* real_3 */
        QB_CHECK_EQ_INT(own.last_applied, 109409288226ULL);  /* real_4 */
        QB_CHECK_EQ_INT(cnt.deltas_dropped_stale, 2);
        QB_CHECK_EQ_INT(cnt.gaps, 0);
        QB_CHECK_EQ_INT(s.book_id, 109409288226ULL);
        /* The book equals the naive reference: snapshot + real_3 + real_4. */
        static ref_side rb, ra;
        memset(&rb, 0, sizeof rb);
        memset(&ra, 0, sizeof ra);
        ref_from(&rb, &ra, snap_js);
        ref_from(&rb, &ra, mbp[2]);
        ref_from(&rb, &ra, mbp[3]);
        QB_CHECK(ref_equal(qb_sync_book(&s), QB_BID, &rb));
        QB_CHECK(ref_equal(qb_sync_book(&s), QB_ASK, &ra));
        QB_CHECK(!qb_book_crossed(qb_sync_book(&s)));
        qb_sync_fini(&s);
    }

    /* A lost update (real_3 missing): real_4 does not bridge -> resync of
     * this instrument, a new req asked, real_4 kept as the first event of
     * the next cycle. */
    {
        qb_sync_counters cnt = {0};
        rec_owner own = {0};
        qb_sync s;
        QB_CHECK_EQ_INT(qb_sync_init(&s, &qb_seq_htx, &own_ops, &own, &cnt, 400), QB_OK);
        qb_sync_start(&s, QB_FEED_SYNCING, "");
        QB_CHECK_EQ_INT(qb_htx_ops.parse(st_p, &p, snap_js, snap_len, &ev), QB_OK);
        QB_CHECK_EQ_INT(qb_sync_on_snapshot(&s, &ev), QB_OK);
        int wants = own.wants;
        QB_CHECK_EQ_INT(qb_htx_ops.parse(st_p, &p, mbp[3], mbp_len[3], &ev), QB_OK);
        QB_CHECK_EQ_INT(qb_sync_on_delta(&s, &ev), QB_EGAP);
        QB_CHECK_EQ_INT(s.state, QB_SYNC_WAITING);
        QB_CHECK_EQ_INT(cnt.gaps, 1);
        QB_CHECK(own.wants > wants);
        QB_CHECK(strstr(own.last_reason, "expected prevSeqNum=109409288160") != NULL);
        QB_CHECK_EQ_INT(s.nbuf, 1);
        /* The same old snapshot again: older than the buffered update's
         * predecessor -> unusable, asked again. */
        QB_CHECK_EQ_INT(qb_htx_ops.parse(st_p, &p, snap_js, snap_len, &ev), QB_OK);
        QB_CHECK_EQ_INT(qb_sync_on_snapshot(&s, &ev), QB_EAGAIN);
        QB_CHECK_EQ_INT(cnt.snapshots_stale, 1);
        /* A snapshot at real_3's seqNum aligns on real_4. */
        const char *s204 = "{\"id\":\"qb-req-btcusdt\",\"status\":\"ok\",\"ts\":1,\"rep\":"
                           "\"market.btcusdt.mbp.150\",\"data\":{\"seqNum\":109409288204,"
                           "\"bids\":[[9137.67,4.6]],\"asks\":[[9138.67,0.03]]}}";
        QB_CHECK_EQ_INT(parse_str(st_p, &p, s204, &ev), QB_OK);
        QB_CHECK_EQ_INT(qb_sync_on_snapshot(&s, &ev), QB_OK);
        QB_CHECK_EQ_INT(s.state, QB_SYNC_LIVE);
        QB_CHECK_EQ_INT(s.book_id, 109409288226ULL);
        qb_sync_fini(&s);
    }
    qb_exchange_state_free(&qb_htx_ops, st_p);
    qb_parser_fini(&p);
}

QB_TEST(doc_samples_and_empty_updates)
{
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 16, 400), QB_OK);
    void *st_p = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_htx_ops, 1 << 16, &st_p), QB_OK);
    qb_event ev;
    size_t len;
    char *t = sample("huobi_mbp_incremental_doc_2.json", &len);
    QB_CHECK_EQ_INT(qb_htx_ops.parse(st_p, &p, t, len, &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_DEPTH);
    QB_CHECK_EQ_INT(ev.n_bids, 0);
    QB_CHECK_EQ_INT(ev.n_asks, 1);
    QB_CHECK(qb_dec_identical(ev.asks[0].size, dec("26.75597395914065")));
    free(t);
    t = sample("huobi_mbp_incremental_doc_3_empty.json", &len);
    QB_CHECK_EQ_INT(qb_htx_ops.parse(st_p, &p, t, len, &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_DEPTH);
    QB_CHECK_EQ_STR(ev.native, "zecusdt");
    QB_CHECK_EQ_INT(ev.n_bids + ev.n_asks, 0);
    QB_CHECK_EQ_INT(ev.prev_id, 100772868476ULL);
    QB_CHECK_EQ_INT(ev.last_id, 100772868478ULL);
    QB_CHECK_EQ_INT(ev.exch_ts, 1585074391470ULL * 1000000ULL);
    free(t);
    /* The doc's mbp.5 example has a 20-significant-digit size
     * (26.755973959140651643), beyond 63 bits: refused, never rounded. */
    t = sample("huobi_mbp_incremental_doc_1.json", &len);
    QB_CHECK_EQ_INT(qb_htx_ops.parse(st_p, &p, t, len, &ev), QB_ERANGE);
    free(t);
    t = sample("huobi_mbp_req_response_doc_1.json", &len);
    QB_CHECK_EQ_INT(qb_htx_ops.parse(st_p, &p, t, len, &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_SNAPSHOT);
    QB_CHECK_EQ_INT(ev.last_id, 100020142010ULL);
    QB_CHECK_EQ_INT(ev.n_bids, 5);
    free(t);
    t = sample("huobi_ping_doc_1.json", &len);
    QB_CHECK_EQ_INT(qb_htx_ops.parse(st_p, &p, t, len, &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_REPLY);
    char *pong = sample("huobi_pong_doc_1.json", &len);
    /* Same integer as the doc's pong ({"pong": N} with a space there). */
    QB_CHECK(strstr(pong, "1492420473027") != NULL);
    QB_CHECK(ev.reply.n == 22 && memcmp(ev.reply.p, "{\"pong\":1492420473027}", 22) == 0);
    free(pong);
    free(t);
    const char *ctl[] = {"huobi_sub_response_doc_1.json", "huobi_unsub_response_doc_1.json"};
    for (int i = 0; i < 2; i++) {
        t = sample(ctl[i], &len);
        QB_CHECK_EQ_INT(qb_htx_ops.parse(st_p, &p, t, len, &ev), QB_OK);
        QB_CHECK_EQ_INT(ev.kind, QB_EV_CONTROL);
        free(t);
    }
    t = sample("huobi_trade_detail_doc_1.json", &len);
    QB_CHECK_EQ_INT(qb_htx_ops.parse(st_p, &p, t, len, &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_TRADE);
    QB_CHECK_EQ_INT(ev.trades[0].id, 102043495674ULL); /* the 21-digit "id" is ignored */
    free(t);
    t = sample("huobi_trade_detail_real_2.json", &len);
    QB_CHECK_EQ_INT(qb_htx_ops.parse(st_p, &p, t, len, &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.trades[0].id, 1311318);
    QB_CHECK_EQ_INT(ev.trades[0].side, QB_SIDE_SELL);
    QB_CHECK(qb_dec_identical(ev.trades[0].price, dec("716.0")));
    free(t);
    t = sample("huobi_bbo_real_1.json", &len);
    QB_CHECK_EQ_INT(qb_htx_ops.parse(st_p, &p, t, len, &ev), QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_UNKNOWN);
    free(t);

    /* Empty updates chain like any other and change nothing. */
    qb_sync_counters cnt = {0};
    rec_owner own = {0};
    qb_sync s;
    QB_CHECK_EQ_INT(qb_sync_init(&s, &qb_seq_htx, &own_ops, &own, &cnt, 400), QB_OK);
    qb_sync_start(&s, QB_FEED_SYNCING, "");
    QB_CHECK_EQ_INT(parse_str(st_p, &p,
                              "{\"id\":\"x\",\"rep\":\"market.zecusdt.mbp.150\",\"status\":\"ok\","
                              "\"data\":{\"seqNum\":100772868476,\"bids\":[[50.1,2]],\"asks\":"
                              "[[50.2,3]]}}",
                              &ev),
                    QB_OK);
    QB_CHECK_EQ_INT(qb_sync_on_snapshot(&s, &ev), QB_OK);
    t = sample("huobi_mbp_incremental_doc_3_empty.json", &len);
    QB_CHECK_EQ_INT(qb_htx_ops.parse(st_p, &p, t, len, &ev), QB_OK);
    QB_CHECK_EQ_INT(qb_sync_on_delta(&s, &ev), QB_OK);
    free(t);
    QB_CHECK_EQ_INT(s.book_id, 100772868478ULL);
    QB_CHECK_EQ_INT(qb_book_depth(qb_sync_book(&s), QB_BID), 1);
    /* 5/20-level style: the unchanged side is absent. */
    QB_CHECK_EQ_INT(parse_str(st_p, &p,
                              "{\"ch\":\"market.zecusdt.mbp.150\",\"ts\":1,\"tick\":{\"seqNum\":"
                              "100772868490,\"prevSeqNum\":100772868478,\"asks\":[[50.2,0]]}}",
                              &ev),
                    QB_OK);
    QB_CHECK_EQ_INT(qb_sync_on_delta(&s, &ev), QB_OK);
    QB_CHECK_EQ_INT(qb_book_depth(qb_sync_book(&s), QB_ASK), 0);
    /* A duplicate (seqNum already applied) is dropped, not a gap. */
    QB_CHECK_EQ_INT(qb_sync_on_delta(&s, &ev), QB_OK);
    QB_CHECK_EQ_INT(cnt.deltas_dropped_stale, 1);
    QB_CHECK_EQ_INT(cnt.gaps, 0);
    /* A break: resync. */
    QB_CHECK_EQ_INT(parse_str(st_p, &p,
                              "{\"ch\":\"market.zecusdt.mbp.150\",\"ts\":1,\"tick\":{\"seqNum\":"
                              "100772868500,\"prevSeqNum\":100772868495,\"bids\":[],\"asks\":[]}}",
                              &ev),
                    QB_OK);
    QB_CHECK_EQ_INT(qb_sync_on_delta(&s, &ev), QB_EGAP);
    QB_CHECK_EQ_INT(s.state, QB_SYNC_WAITING);
    qb_sync_fini(&s);
    qb_exchange_state_free(&qb_htx_ops, st_p);
    qb_parser_fini(&p);
}

/* A frame nobody can attribute (corrupt gzip) makes every live book of the
 * connection suspect; each one's next update decides by the prevSeqNum
 * chain: chains -> stays live, no resync; breaks -> that book alone
 * resyncs, naming the lost frame; no update in QB_SYNC_SUSPECT_MS -> the
 * owner's expiry resyncs it. (Before suspects existed, the adapter
 * resynced all three books on every corrupt frame.) */
QB_TEST(lost_frame_suspect_confirms_or_resyncs_one_book)
{
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 16, 400), QB_OK);
    void *st_p = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_htx_ops, 1 << 16, &st_p), QB_OK);
    static const char *const nat[3] = {"btcusdt", "ethusdt", "xrpusdt"};
    qb_sync_counters cnt = {0};
    rec_owner own[3];
    qb_sync s[3];
    qb_event ev;
    char f[512];
    memset(own, 0, sizeof own);
    for (int i = 0; i < 3; i++) {
        QB_CHECK_EQ_INT(qb_sync_init(&s[i], &qb_seq_htx, &own_ops, &own[i], &cnt, 400), QB_OK);
        qb_sync_start(&s[i], QB_FEED_SYNCING, "");
        snprintf(f, sizeof f,
                 "{\"id\":\"x\",\"rep\":\"market.%s.mbp.150\",\"status\":\"ok\",\"data\":"
                 "{\"seqNum\":1000,\"bids\":[[50.1,2]],\"asks\":[[50.2,3]]}}",
                 nat[i]);
        QB_CHECK_EQ_INT(parse_str(st_p, &p, f, &ev), QB_OK);
        QB_CHECK_EQ_INT(qb_sync_on_snapshot(&s[i], &ev), QB_OK);
        snprintf(f, sizeof f,
                 "{\"ch\":\"market.%s.mbp.150\",\"ts\":1,\"tick\":{\"seqNum\":1010,"
                 "\"prevSeqNum\":1000,\"bids\":[[50.0,1]],\"asks\":[]}}",
                 nat[i]);
        QB_CHECK_EQ_INT(parse_str(st_p, &p, f, &ev), QB_OK);
        QB_CHECK_EQ_INT(qb_sync_on_delta(&s[i], &ev), QB_OK);
        QB_CHECK_EQ_INT(own[i].last_state, QB_FEED_LIVE);
    }
    uint64_t resyncs0 = cnt.resyncs;
    int states0[3] = {own[0].states, own[1].states, own[2].states};

    /* The corrupt frame: undecodable, so nobody knows whose it was. */
    static const uint8_t bad[] = {0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0xde, 0xad};
    const char *js;
    size_t jl;
    QB_CHECK(qb_htx_ops.decode(st_p, &p, bad, sizeof bad, &js, &jl) != QB_OK);
    QB_CHECK(qb_htx_ops.suspect_on_lost_frame);
    for (int i = 0; i < 3; i++) {
        QB_CHECK(qb_sync_suspect(&s[i], "corrupt gzip frame"));
        QB_CHECK(s[i].suspect);
    }
    QB_CHECK_EQ_INT(cnt.suspects, 3);
    QB_CHECK_EQ_INT(cnt.resyncs, resyncs0); /* nothing resynced yet */
    for (int i = 0; i < 3; i++) {
        QB_CHECK_EQ_INT(own[i].states, states0[i]); /* still live, nothing said */
        QB_CHECK_EQ_INT(s[i].state, QB_SYNC_LIVE);
    }

    /* A stale duplicate proves nothing: still suspect. */
    snprintf(f, sizeof f,
             "{\"ch\":\"market.btcusdt.mbp.150\",\"ts\":1,\"tick\":{\"seqNum\":1010,"
             "\"prevSeqNum\":1000,\"bids\":[],\"asks\":[]}}");
    QB_CHECK_EQ_INT(parse_str(st_p, &p, f, &ev), QB_OK);
    QB_CHECK_EQ_INT(qb_sync_on_delta(&s[0], &ev), QB_OK);
    QB_CHECK(s[0].suspect);

    /* btcusdt: its next update chains on 1010: the frame was not its own. */
    snprintf(f, sizeof f,
             "{\"ch\":\"market.btcusdt.mbp.150\",\"ts\":1,\"tick\":{\"seqNum\":1020,"
             "\"prevSeqNum\":1010,\"bids\":[],\"asks\":[[50.3,1]]}}");
    QB_CHECK_EQ_INT(parse_str(st_p, &p, f, &ev), QB_OK);
    QB_CHECK_EQ_INT(qb_sync_on_delta(&s[0], &ev), QB_OK);
    QB_CHECK(!s[0].suspect);
    QB_CHECK_EQ_INT(s[0].state, QB_SYNC_LIVE);
    QB_CHECK_EQ_INT(own[0].states, states0[0]);
    QB_CHECK_EQ_INT(cnt.suspects_confirmed, 1);
    QB_CHECK_EQ_INT(s[0].book_id, 1020);

    /* ethusdt: its next update says prevSeqNum 1015: the lost frame was
     * its update 1015. It alone resyncs, and says why. */
    snprintf(f, sizeof f,
             "{\"ch\":\"market.ethusdt.mbp.150\",\"ts\":1,\"tick\":{\"seqNum\":1030,"
             "\"prevSeqNum\":1015,\"bids\":[],\"asks\":[[50.3,1]]}}");
    QB_CHECK_EQ_INT(parse_str(st_p, &p, f, &ev), QB_OK);
    QB_CHECK_EQ_INT(qb_sync_on_delta(&s[1], &ev), QB_EGAP);
    QB_CHECK_EQ_INT(s[1].state, QB_SYNC_WAITING);
    QB_CHECK_EQ_INT(own[1].last_state, QB_FEED_RESYNCING);
    QB_CHECK(strstr(own[1].last_reason, "gap after a lost frame (corrupt gzip frame)") != NULL);
    QB_CHECK(strstr(own[1].last_reason, "expected prevSeqNum=1010 got prevSeqNum=1015") != NULL);
    QB_CHECK_EQ_INT(cnt.suspects_broken, 1);
    QB_CHECK_EQ_INT(cnt.resyncs, resyncs0 + 1);

    /* The expiry of a confirmed book is a no-op. */
    qb_sync_suspect_expire(&s[0]);
    QB_CHECK_EQ_INT(s[0].state, QB_SYNC_LIVE);

    /* xrpusdt: no update within the owner's timeout: resynced. */
    qb_sync_suspect_expire(&s[2]);
    QB_CHECK_EQ_INT(s[2].state, QB_SYNC_WAITING);
    QB_CHECK(strstr(own[2].last_reason, "not confirmed") != NULL);
    QB_CHECK_EQ_INT(cnt.suspects_expired, 1);
    QB_CHECK_EQ_INT(cnt.resyncs, resyncs0 + 2);

    /* A waiting book is not made suspect: its replay checks the chain. */
    QB_CHECK(!qb_sync_suspect(&s[1], "corrupt gzip frame"));
    QB_CHECK_EQ_INT(cnt.suspects, 3);
    /* ... and a lost update inside its buffer still resyncs at replay. */
    snprintf(f, sizeof f,
             "{\"ch\":\"market.ethusdt.mbp.150\",\"ts\":1,\"tick\":{\"seqNum\":1050,"
             "\"prevSeqNum\":1040,\"bids\":[],\"asks\":[]}}");
    QB_CHECK_EQ_INT(parse_str(st_p, &p, f, &ev), QB_OK);
    QB_CHECK_EQ_INT(qb_sync_on_delta(&s[1], &ev), QB_OK); /* 1030 is buffered already */
    snprintf(f, sizeof f,
             "{\"id\":\"x\",\"rep\":\"market.ethusdt.mbp.150\",\"status\":\"ok\",\"data\":"
             "{\"seqNum\":1015,\"bids\":[[50.1,2]],\"asks\":[[50.2,3]]}}");
    QB_CHECK_EQ_INT(parse_str(st_p, &p, f, &ev), QB_OK);
    QB_CHECK_EQ_INT(qb_sync_on_snapshot(&s[1], &ev), QB_OK);
    QB_CHECK_EQ_INT(s[1].state, QB_SYNC_WAITING); /* 1030 -> 1050 skipped 1040 */
    QB_CHECK_EQ_INT(cnt.resyncs, resyncs0 + 3);
    for (int i = 0; i < 3; i++) {
        qb_sync_fini(&s[i]);
    }
    qb_exchange_state_free(&qb_htx_ops, st_p);
    qb_parser_fini(&p);
}

/* What an unparseable frame was, as far as its channel is readable. */
QB_TEST(lost_frame_kind_reads_the_channel)
{
    char nat[QB_NATIVE_MAX];
    static const char upd[] = "{\"ch\":\"market.btcusdt.mbp.150\",\"ts\":1,\"tick\":{\"seqN";
    QB_CHECK_EQ_INT(qb_htx_ops.lost_frame_kind(upd, strlen(upd), nat, sizeof nat), QB_LOST_BOOK);
    QB_CHECK_EQ_STR(nat, "btcusdt");
    static const char rep[] = "{\"id\":\"qb-req-ethbtc\",\"rep\":\"market.ethbtc.mbp.150\",\"sta";
    QB_CHECK_EQ_INT(qb_htx_ops.lost_frame_kind(rep, strlen(rep), nat, sizeof nat), QB_LOST_BOOK);
    QB_CHECK_EQ_STR(nat, "ethbtc");
    static const char trd[] = "{\"ch\":\"market.btcusdt.trade.detail\",\"ts\":1,\"tick\":{";
    QB_CHECK_EQ_INT(qb_htx_ops.lost_frame_kind(trd, strlen(trd), nat, sizeof nat), QB_LOST_OTHER);
    static const char det[] = "{\"ch\":\"market.btcusdt.detail\",\"ts\":1,\"tick\":{";
    QB_CHECK_EQ_INT(qb_htx_ops.lost_frame_kind(det, strlen(det), nat, sizeof nat), QB_LOST_OTHER);
    static const char cut[] = "{\"ch\":\"market.btcus";
    QB_CHECK_EQ_INT(qb_htx_ops.lost_frame_kind(cut, strlen(cut), nat, sizeof nat), QB_LOST_UNKNOWN);
    static const char utf[] = "{\"ch\":\"market.btc\xc0\xafusdt.mbp.150\"}";
    QB_CHECK_EQ_INT(qb_htx_ops.lost_frame_kind(utf, strlen(utf), nat, sizeof nat), QB_LOST_UNKNOWN);
    static const char junk[] = "\x01\x02[[[[";
    QB_CHECK_EQ_INT(qb_htx_ops.lost_frame_kind(junk, strlen(junk), nat, sizeof nat),
                    QB_LOST_UNKNOWN);
}

QB_TEST(trades_tickers_errors_ids)
{
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 16, 400), QB_OK);
    void *st_p = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_htx_ops, 1 << 16, &st_p), QB_OK);
    qb_event ev;
    /* Several trades per message; tradeId as a string; a 40-digit legacy id. */
    QB_CHECK_EQ_INT(
        parse_str(st_p, &p,
                  "{\"ch\":\"market.btcusdt.trade.detail\",\"ts\":5,\"tick\":{\"id\":1,\"ts\":5,"
                  "\"data\":[{\"id\":1234567890123456789012345678901234567890,\"ts\":1000,"
                  "\"tradeId\":\"77\",\"amount\":1.5E-3,\"price\":30000.1,\"direction\":\"sell\"},"
                  "{\"id\":\"100182534526255757567432481\",\"ts\":1001,\"tradeId\":78,\"amount\":"
                  "2,\"price\":30000.2,\"direction\":\"buy\"}]}}",
                  &ev),
        QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_TRADE);
    QB_CHECK_EQ_INT(ev.n_trades, 2);
    QB_CHECK_EQ_INT(ev.trades[0].id, 77);
    QB_CHECK_EQ_INT(ev.trades[0].side, QB_SIDE_SELL);
    QB_CHECK(qb_dec_identical(ev.trades[0].qty, (qb_dec){15, 4}));
    QB_CHECK_EQ_INT(ev.trades[1].id, 78);
    QB_CHECK_EQ_INT(ev.trades[1].side, QB_SIDE_BUY);
    QB_CHECK_EQ_INT(ev.trades[1].ts, 1001000000ULL);
    /* A 27-digit tradeId does not fit: rejected, never truncated. */
    QB_CHECK(parse_str(st_p, &p,
                       "{\"ch\":\"market.btcusdt.trade.detail\",\"tick\":{\"data\":[{\"ts\":1,"
                       "\"tradeId\":100182534526255757567432481,\"amount\":1,\"price\":1,"
                       "\"direction\":\"buy\"}]}}",
                       &ev) != QB_OK);

    /* market.$sym.detail: rolling 24 h; change = close - open, exactly. */
    QB_CHECK_EQ_INT(parse_str(st_p, &p,
                              "{\"ch\":\"market.btcusdt.detail\",\"ts\":1494496390000,\"tick\":{"
                              "\"id\":1494496390,\"open\":7962.62,\"close\":8142.67,\"low\":"
                              "7800.01,\"high\":8200.5,\"amount\":1234.5678,\"vol\":9999999.99,"
                              "\"count\":100,\"version\":1494496390}}",
                              &ev),
                    QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_TICKER);
    QB_CHECK_EQ_STR(ev.native, "btcusdt");
    QB_CHECK(qb_dec_identical(ev.ticker.last, dec("8142.67")));
    QB_CHECK(ev.ticker.has_change && qb_dec_identical(ev.ticker.change_24h, dec("180.05")));
    QB_CHECK(ev.ticker.has_volume && qb_dec_identical(ev.ticker.volume_24h, dec("1234.5678")));
    QB_CHECK(!ev.ticker.has_bid && !ev.ticker.has_ask);
    QB_CHECK_EQ_INT(ev.exch_ts, 1494496390000ULL * 1000000ULL);
    /* market.$sym.ticker adds the best bid/ask; a falling market. */
    QB_CHECK_EQ_INT(
        parse_str(st_p, &p,
                  "{\"ch\":\"market.ethbtc.ticker\",\"ts\":1,\"tick\":{\"open\":0.05,"
                  "\"close\":0.0491,\"amount\":10,\"bid\":0.049,\"bidSize\":1.5,"
                  "\"ask\":0.0492,\"askSize\":2,\"lastPrice\":0.0491,\"lastSize\":0.1}}",
                  &ev),
        QB_OK);
    QB_CHECK(ev.ticker.has_bid && ev.ticker.has_ask);
    QB_CHECK(qb_dec_identical(ev.ticker.change_24h, dec("-0.0009")));
    QB_CHECK(qb_dec_identical(ev.ticker.ask_qty, dec("2")));

    /* Errors: a refused req names its instrument. */
    QB_CHECK_EQ_INT(parse_str(st_p, &p,
                              "{\"status\":\"error\",\"ts\":1,\"id\":\"qb-req-btcusdt\","
                              "\"err-code\":\"bad-request\",\"err-msg\":\"429 too many request\"}",
                              &ev),
                    QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_ERROR);
    QB_CHECK_EQ_STR(ev.native, "btcusdt");
    QB_CHECK(strstr(ev.info, "429 too many request") != NULL);
    QB_CHECK(ev.rate_limited); /* retried at the next slot, not a failure */
    QB_CHECK_EQ_INT(parse_str(st_p, &p,
                              "{\"status\":\"error\",\"id\":\"qb-mbp-x\",\"err-code\":\"bad-"
                              "request\",\"err-msg\":\"invalid topic\"}",
                              &ev),
                    QB_OK);
    QB_CHECK_EQ_INT(ev.kind, QB_EV_ERROR);
    QB_CHECK_EQ_STR(ev.native, "");
    QB_CHECK(!ev.rate_limited);

    /* Malformed input of every kind: rejected, never a crash. */
    const char *bad[] = {
        "",
        "[]",
        "{\"ping\":\"1\"}",
        "{\"ping\":1.5}",
        "{\"ping\":-1}",
        "{\"ping\":123456789012345678901234}",
        "{\"ch\":5}",
        "{\"ch\":\"market.\"}",
        "{\"ch\":\"market.btc usdt.mbp.150\",\"tick\":{}}",
        "{\"ch\":\"market.btcusdt.mbp.150\"}",
        "{\"ch\":\"market.btcusdt.mbp.150\",\"tick\":{\"seqNum\":5}}",
        "{\"ch\":\"market.btcusdt.mbp.150\",\"tick\":{\"seqNum\":5,\"prevSeqNum\":5}}",
        "{\"ch\":\"market.btcusdt.mbp.150\",\"tick\":{\"seqNum\":5,\"prevSeqNum\":4,\"bids\":[[1]]}"
        "}",
        "{\"ch\":\"market.btcusdt.mbp.150\",\"tick\":{\"seqNum\":5,\"prevSeqNum\":4,\"bids\":[[1,-"
        "1]]}}",
        "{\"ch\":\"market.btcusdt.mbp.150\",\"tick\":{\"seqNum\":5,\"prevSeqNum\":4,\"bids\":[[0,1]"
        "]}}",
        "{\"ch\":\"market.btcusdt.mbp.150\",\"tick\":{\"seqNum\":5,\"prevSeqNum\":4,\"bids\":[["
        "1e999,1]]}}",
        "{\"ch\":\"market.btcusdt.mbp.150\",\"tick\":{\"seqNum\":\"5\",\"prevSeqNum\":4}}",
        "{\"ch\":\"market.btcusdt.trade.detail\",\"tick\":{\"data\":[]}}",
        "{\"ch\":\"market.btcusdt.trade.detail\",\"tick\":{\"data\":[{\"tradeId\":1,\"ts\":1,"
        "\"amount\":1,\"price\":1,\"direction\":\"up\"}]}}",
        "{\"ch\":\"market.btcusdt.trade.detail\",\"tick\":{\"data\":[{\"ts\":1,\"amount\":1,"
        "\"price\":1,\"direction\":\"buy\",\"id\":5}]}}",
        "{\"ch\":\"market.btcusdt.detail\",\"tick\":{\"open\":1}}",
        "{\"rep\":\"market.btcusdt.mbp.150\",\"status\":\"ok\"}",
        "{\"rep\":\"market.btcusdt.mbp.150\",\"status\":\"ok\",\"data\":{\"bids\":[]}}",
        "{\"rep\":\"market.btcusdt.mbp.150\",\"data\":{\"seqNum\":1}}",
        "{\"ch\":\"market.btcusdt.mbp.150\",\"tick\":{\"seqNum\":5,\"prevSeqNum\":4",
        "{\"ch\":\"market.btcusdt.mbp.150\",,}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse_str(st_p, &p, bad[i], &ev);
        if (rc == QB_OK) {
            fprintf(stderr, "accepted: %s\n", bad[i]);
        }
        QB_CHECK(rc != QB_OK);
    }
    /* A message with more trades than the parser holds. */
    qb_buf big = QB_BUF_INIT;
    qb_buf_appendf(&big, "{\"ch\":\"market.btcusdt.trade.detail\",\"tick\":{\"data\":[");
    for (int i = 0; i < QB_PARSER_TRADES + 1; i++) {
        qb_buf_appendf(&big, "%s{}", i ? "," : "");
    }
    qb_buf_appendf(&big, "]}}");
    qb_parser p2;
    QB_CHECK_EQ_INT(qb_parser_init(&p2, 1 << 20, 10), QB_OK);
    void *st_p2 = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_htx_ops, 1 << 20, &st_p2), QB_OK);
    QB_CHECK_EQ_INT(qb_htx_ops.parse(st_p2, &p2, (const char *)big.data, big.len, &ev), QB_ETOOBIG);
    qb_exchange_state_free(&qb_htx_ops, st_p2);
    qb_parser_fini(&p2);
    qb_buf_fini(&big);
    qb_exchange_state_free(&qb_htx_ops, st_p);
    qb_parser_fini(&p);
}

QB_TEST(symbols_subscriptions_requests)
{
    char n[QB_NATIVE_MAX], err[256];
    QB_CHECK_EQ_INT(qb_htx_ops.to_native(NULL, "BTC-USDT", n, sizeof n, err, sizeof err), QB_OK);
    QB_CHECK_EQ_STR(n, "btcusdt");
    QB_CHECK_EQ_INT(qb_htx_ops.to_native(NULL, "eth-btc", n, sizeof n, err, sizeof err), QB_OK);
    QB_CHECK_EQ_STR(n, "ethbtc");
    QB_CHECK(qb_htx_ops.to_native(NULL, "BTCUSDT", n, sizeof n, err, sizeof err) != QB_OK);
    QB_CHECK(qb_htx_ops.to_native(NULL, "BTC-US-DT", n, sizeof n, err, sizeof err) != QB_OK);

    struct {
        const char *native, *norm;
    } good[] = {{"btcusdt", "BTC-USDT"}, {"ethbtc", "ETH-BTC"},     {"htusdt", "HT-USDT"},
                {"omgbtc", "OMG-BTC"},   {"trioeth", "TRIO-ETH"},   {"borusdt", "BOR-USDT"},
                {"ethht", "ETH-HT"},     {"usdcusdt", "USDC-USDT"}, {"BTCUSDC", "BTC-USDC"}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char out[QB_NATIVE_MAX];
        QB_CHECK_EQ_INT(
            qb_htx_ops.from_native(NULL, good[i].native, out, sizeof out, err, sizeof err), QB_OK);
        QB_CHECK_EQ_STR(out, good[i].norm);
    }
    char out[QB_NATIVE_MAX];
    /* Unknown quote: refused with the fix in the message. */
    QB_CHECK_EQ_INT(qb_htx_ops.from_native(NULL, "btcxyz", out, sizeof out, err, sizeof err),
                    QB_EINVAL);
    QB_CHECK(strstr(err, "unknown quote") && strstr(err, "--symbol-map btcxyz="));
    /* Ambiguous: xyz-husd or xyzh-usd? */
    QB_CHECK_EQ_INT(qb_htx_ops.from_native(NULL, "xyzhusd", out, sizeof out, err, sizeof err),
                    QB_EINVAL);
    QB_CHECK(strstr(err, "ambiguous") != NULL);
    QB_CHECK(qb_htx_ops.from_native(NULL, "usdt", out, sizeof out, err, sizeof err) != QB_OK);
    QB_CHECK(qb_htx_ops.from_native(NULL, "btc_usdt", out, sizeof out, err, sizeof err) != QB_OK);
    /* The map settles both directions. */
    const char *map[] = {"xyzhusd=XYZ-HUSD", "btc3lusdt=btc3l-usdt", "weird=FOO-BAR"};
    qb_exchange_cfg xc = {.levels = 20, .symbol_map = map, .nsymbol_map = 3, .tickers = false};
    QB_CHECK_EQ_INT(qb_htx_ops.from_native(&xc, "xyzhusd", out, sizeof out, err, sizeof err),
                    QB_OK);
    QB_CHECK_EQ_STR(out, "XYZ-HUSD");
    QB_CHECK_EQ_INT(qb_htx_ops.from_native(&xc, "btc3lusdt", out, sizeof out, err, sizeof err),
                    QB_OK);
    QB_CHECK_EQ_STR(out, "BTC3L-USDT");
    QB_CHECK_EQ_INT(qb_htx_ops.to_native(&xc, "FOO-BAR", n, sizeof n, err, sizeof err), QB_OK);
    QB_CHECK_EQ_STR(n, "weird");

    /* One sub per topic, NUL-separated; levels from the configuration. */
    const char *natives[] = {"btcusdt", "ethusdt"};
    qb_buf b = QB_BUF_INIT;
    QB_CHECK_EQ_INT(qb_htx_ops.subscribe_msg(&xc, "wss://x/feed", natives, 2, &b), QB_OK);
    const char *want_nt[] = {
        "{\"sub\":\"market.btcusdt.mbp.20\",\"id\":\"qb-mbp-btcusdt\"}",
        "{\"sub\":\"market.btcusdt.trade.detail\",\"id\":\"qb-trade-btcusdt\"}",
        "{\"sub\":\"market.ethusdt.mbp.20\",\"id\":\"qb-mbp-ethusdt\"}",
        "{\"sub\":\"market.ethusdt.trade.detail\",\"id\":\"qb-trade-ethusdt\"}",
    };
    size_t off = 0;
    for (int i = 0; i < 4; i++) {
        QB_CHECK(off < b.len);
        if (off < b.len) {
            QB_CHECK_EQ_STR((const char *)b.data + off, want_nt[i]);
            off += strlen((const char *)b.data + off) + 1;
        }
    }
    QB_CHECK_EQ_INT(off, b.len);
    qb_buf_reset(&b);
    xc.tickers = true;
    xc.levels = 150;
    QB_CHECK_EQ_INT(qb_htx_ops.subscribe_msg(&xc, "wss://x/feed", natives, 1, &b), QB_OK);
    QB_CHECK(memmem(b.data, b.len,
                    "{\"sub\":\"market.btcusdt.detail\",\"id\":\"qb-detail-btcusdt\"}",
                    55) != NULL);
    qb_buf_reset(&b);
    QB_CHECK_EQ_INT(qb_htx_ops.snapshot_ws_request(&xc, "btcusdt", &b), QB_OK);
    qb_buf_append(&b, "", 1);
    QB_CHECK_EQ_STR((char *)b.data,
                    "{\"req\":\"market.btcusdt.mbp.150\",\"id\":\"qb-req-btcusdt\"}");
    qb_buf_reset(&b);
    QB_CHECK_EQ_INT(qb_htx_ops.ws_url(&xc, "wss://api.huobi.pro/feed", natives, 2, &b), QB_OK);
    qb_buf_append(&b, "", 1);
    QB_CHECK_EQ_STR((char *)b.data, "wss://api.huobi.pro/feed");
    qb_buf_fini(&b);
    QB_CHECK(qb_exchange_find("htx") == &qb_htx_ops);
    QB_CHECK_EQ_STR(qb_htx_ops.default_ws_url, "wss://api.huobi.pro/feed");
}

/* Parses js; depth goes to a live sync, snapshots into it when waiting. */
static unsigned long fuzz_ok, fuzz_err;
static void fuzz_one(void *st, qb_parser *p, qb_sync *s, const char *js, size_t len)
{
    qb_event ev;
    int rc = qb_htx_ops.parse(st, p, js, len, &ev);
    if (rc != QB_OK) {
        fuzz_err++;
        return;
    }
    fuzz_ok++;
    if (ev.kind == QB_EV_DEPTH) {
        qb_sync_on_delta(s, &ev);
        if (s->state != QB_SYNC_LIVE) {
            qb_event e0 = {.kind = QB_EV_SNAPSHOT, .last_id = ev.prev_id};
            qb_sync_on_snapshot(s, &e0);
        }
    } else if (ev.kind == QB_EV_SNAPSHOT && s->state == QB_SYNC_WAITING) {
        qb_sync_on_snapshot(s, &ev);
    }
}

QB_TEST(every_prefix_and_mutation)
{
    load_mbp();
    qb_parser p;
    QB_CHECK_EQ_INT(qb_parser_init(&p, 1 << 20, 400), QB_OK);
    void *st_p = NULL;
    QB_CHECK_EQ_INT(qb_exchange_state_new(&qb_htx_ops, 1 << 20, &st_p), QB_OK);
    qb_sync_counters cnt = {0};
    rec_owner own = {0};
    qb_sync s;
    QB_CHECK_EQ_INT(qb_sync_init(&s, &qb_seq_htx, &own_ops, &own, &cnt, 400), QB_OK);
    qb_sync_start(&s, QB_FEED_SYNCING, "");
    const char *files[] = {
        "huobi_trade_detail_real_1.json", "huobi_trade_detail_real_2.json",
        "huobi_ping_real_1.json",         "huobi_sub_response_real_1.json",
        "huobi_bbo_real_1.json",          "huobi_mbp_incremental_doc_3_empty.json"};
    char *texts[16];
    size_t lens[16];
    size_t nt = 0;
    for (int i = 0; i < 4; i++) {
        texts[nt] = mbp[i];
        lens[nt++] = mbp_len[i];
    }
    texts[nt] = snap_js;
    lens[nt++] = snap_len;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        texts[nt] = sample(files[i], &lens[nt]);
        nt++;
    }
    static const unsigned char subst[] = {'"', '[', ']', '{', '}', ',',  ':', '0',  '9',
                                          '-', '.', 'e', 'E', ' ', '\\', 0,   0xff, 0x80};
    char *buf = malloc(1 << 16);
    for (size_t i = 0; i < nt; i++) {
        const char *js = texts[i];
        size_t len = lens[i];
        for (size_t n = 0; n <= len; n++) {
            memcpy(buf, js, n); /* a copy, so ASan sees reads past the prefix */
            fuzz_one(st_p, &p, &s, buf, n);
        }
        memcpy(buf, js, len);
        for (size_t k = 0; k < len; k++) {
            char orig = buf[k];
            for (size_t m = 0; m < sizeof subst; m++) {
                buf[k] = (char)subst[m];
                fuzz_one(st_p, &p, &s, buf, len);
            }
            buf[k] = (char)(orig ^ 0x20);
            fuzz_one(st_p, &p, &s, buf, len);
            buf[k] = orig;
        }
    }
    printf("fuzz: %lu parsed, %lu rejected\n", fuzz_ok, fuzz_err);
    QB_CHECK(fuzz_ok > 0 && fuzz_err > 0);
    for (size_t i = 5; i < nt; i++) {
        free(texts[i]);
    }
    free(buf);
    qb_sync_fini(&s);
    qb_exchange_state_free(&qb_htx_ops, st_p);
    qb_parser_fini(&p);
}

int main(void)
{
    qb_log_set_level(QB_LOG_ERROR);
    int rc = qb_test_run_all();
    for (int i = 0; i < 4; i++) {
        free(mbp[i]);
    }
    free(snap_js);
    return rc;
}
