/*
 * fuzz_msgpack.c: fuzz target of the wire decoder (proto/msg_decode.c qb_decoder)
 * and of what the broker's ingest does with a frame that decodes
 * (broker/topics.c qb_topics_apply: sequence rules and books), plus the
 * JSON form (qb_msg_to_json, what quotebus-sub prints).
 *
 * Input: one NNG frame exactly as a local process could publish it into the
 * broker's ingest socket: topic bytes, NUL, msgpack map(s). One topic table
 * lives across inputs of a run (bounded to 64 topics), as in the broker.
 *
 * Invariants, besides memory safety and UB: a decoded message re-encodes
 * (qb_msg_encode_map) and decodes again to the same type, seq and level
 * counts; it has a JSON form; a valid book in the table is never crossed.
 */
#include "fuzz.h"

#include "buf.h"
#include "err.h"
#include "log.h"
#include "msg.h"
#include "topics.h"

static qb_decoder *fm_dec, *fm_dec2;
static qb_topics *fm_topics;
static qb_buf fm_json, fm_enc;
static uint64_t fm_now;

static void fm_check_roundtrip(qb_str topic, const qb_msg *m)
{
    qb_buf_reset(&fm_enc);
    QB_FUZZ_CHECK(qb_buf_append(&fm_enc, topic.p, topic.n) == QB_OK);
    QB_FUZZ_CHECK(qb_buf_append(&fm_enc, "", 1) == QB_OK);
    int rc = qb_msg_encode_map(m, &fm_enc);
    QB_FUZZ_CHECK(rc == QB_OK);
    qb_str t2;
    qb_msg m2;
    QB_FUZZ_CHECK(qb_decoder_begin(fm_dec2, fm_enc.data, fm_enc.len, &t2) == QB_OK);
    rc = qb_decoder_next(fm_dec2, &m2);
    QB_FUZZ_CHECK(rc == QB_OK);
    QB_FUZZ_CHECK(m2.type == m->type && m2.seq == m->seq && m2.n_bids == m->n_bids &&
                  m2.n_asks == m->n_asks && m2.last_id == m->last_id);
}

static int fm_book_ok(void *arg, qb_str topic, const qb_topic_info *info, const qb_book *book)
{
    (void)arg;
    (void)topic;
    if (book != NULL && info->book_valid) {
        QB_FUZZ_CHECK(!qb_book_crossed(book));
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fm_dec == NULL) {
        qb_log_set_level(QB_LOG_ERROR);
        fm_dec = qb_decoder_new();
        fm_dec2 = qb_decoder_new();
        fm_topics = qb_topics_new(64);
        if (fm_dec == NULL || fm_dec2 == NULL || fm_topics == NULL) {
            abort();
        }
    }
    qb_str topic;
    if (qb_decoder_begin(fm_dec, data, size, &topic) != QB_OK) {
        return 0;
    }
    QB_FUZZ_CHECK(topic.n < size && topic.p == (const char *)data);
    qb_msg m;
    int rc;
    int maps = 0;
    while ((rc = qb_decoder_next(fm_dec, &m)) == QB_OK) {
        QB_FUZZ_CHECK(++maps <= (int)size);
        qb_buf_reset(&fm_json);
        QB_FUZZ_CHECK(qb_msg_to_json(&m, &fm_json) == QB_OK);
        fm_check_roundtrip(topic, &m);
        qb_topics_apply(fm_topics, topic, &m, fm_now += 1000000);
    }
    QB_FUZZ_CHECK(rc == QB_EEOF || rc == QB_EPARSE || rc == QB_EVERSION || rc == QB_ETOOBIG);
    qb_topics_each(fm_topics, fm_book_ok, NULL);
    return 0;
}
