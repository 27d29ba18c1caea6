/*
 * seq.c: the sequence rule of seq.h (the table is there). Pure: no state,
 * any thread.
 */
#include "seq.h"

#include "msg.h"

#include <stddef.h>

qb_seq_result qb_seq_step(bool has_last, uint64_t last, uint64_t seq, qb_seq_type type,
                          uint64_t *missed)
{
    uint64_t lost = 0;
    qb_seq_result r;
    if (!has_last) {
        r = QB_SEQ_REBASE;
    } else if (type == QB_SEQ_SNAPSHOT) {
        r = seq < last ? QB_SEQ_RESTART : QB_SEQ_REBASE;
    } else if (type == QB_SEQ_REFRESH) {
        if (seq < last) {
            r = QB_SEQ_DUPLICATE;
        } else if (seq == last) {
            r = QB_SEQ_REBASE;
        } else {
            /* A refresh repeats the seq of the last message it includes:
             * every message after last up to seq was lost. */
            r = QB_SEQ_GAP;
            lost = seq - last;
        }
    } else if (last != UINT64_MAX && seq == last + 1) {
        r = QB_SEQ_NEXT;
    } else if (seq > last) {
        r = QB_SEQ_GAP;
        lost = seq - last - 1;
    } else if (seq == 1) {
        r = QB_SEQ_RESTART;
    } else {
        r = QB_SEQ_DUPLICATE;
    }
    if (missed != NULL) {
        *missed = lost;
    }
    return r;
}

qb_seq_result qb_seq_on_stream(bool has_last, uint64_t last, uint64_t seq, qb_seq_type type,
                               uint64_t *missed)
{
    qb_seq_result r = qb_seq_step(has_last, last, seq, type, missed);
    return r == QB_SEQ_DUPLICATE ? QB_SEQ_RESTART : r;
}

qb_seq_type qb_seq_type_of(int type, bool refresh)
{
    switch (type) {
    case QB_MSG_SNAPSHOT:
        return refresh ? QB_SEQ_REFRESH : QB_SEQ_SNAPSHOT;
    case QB_MSG_DELTA:
        return QB_SEQ_DELTA;
    default:
        return QB_SEQ_OTHER;
    }
}

const char *qb_seq_result_name(qb_seq_result r)
{
    switch (r) {
    case QB_SEQ_NEXT:
        return "next";
    case QB_SEQ_DUPLICATE:
        return "duplicate";
    case QB_SEQ_GAP:
        return "gap";
    case QB_SEQ_REBASE:
        return "rebase";
    case QB_SEQ_RESTART:
        return "restart";
    }
    return "?";
}
