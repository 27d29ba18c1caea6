/*
 * seq.h: the sequence rule of PROTOCOL.md section 6, in one function. Every
 * receiver that follows a topic's seq asks it: the broker's topic table on
 * ingest (broker/topics.c), each websocket subscription (broker/wsq.c),
 * libquotebus's subscriber (gap counts) and mirror (books and publisher
 * restarts), and quotebus-sub (gap and out-of-order lines).
 *
 * Given the last seq the receiver holds for a topic (or none) and the next
 * message's seq and type:
 *
 *   none yet                                   REBASE  (start counting here)
 *   snapshot      seq >= last                  REBASE
 *                 seq <  last                  RESTART (a new publisher)
 *   refresh       seq <  last                  DUPLICATE (older than yours)
 *   (repeats the  seq == last                  REBASE
 *    last seq)    seq >  last                  GAP, seq - last missed
 *   delta, other  seq == last + 1              NEXT
 *                 seq >  last + 1              GAP, seq - last - 1 missed
 *                 seq == 1 (and last >= 1)     RESTART (a publisher numbers
 *                                              from 1 again: section 1.1)
 *                 seq <= last                  DUPLICATE
 *
 * After REBASE and RESTART the receiver's last is seq (a snapshot always
 * replaces the book, whatever the answer); after NEXT and GAP too; after
 * DUPLICATE it keeps its last. A receiver whose last is the last seq seen
 * ON THE STREAM of one publisher (not a snapshot fetched aside, which can
 * be ahead of the stream) never sees a real duplicate there: on one
 * publisher's stream seqs only go up and only a refresh repeats one. For it
 * DUPLICATE means RESTART too (section 11.4 rule 7: a book message below
 * the stream's seq, or a delta equal to it). qb_seq_on_stream says so.
 *
 * Pure, any thread.
 */
#ifndef QB_PROTO_SEQ_H
#define QB_PROTO_SEQ_H

#include <stdbool.h>
#include <stdint.h>

/* What a message is for the sequence. */
typedef enum qb_seq_type {
    QB_SEQ_SNAPSHOT = 0, /* a snapshot (refresh: false): rebases */
    QB_SEQ_REFRESH,      /* a refresh snapshot: repeats the last seq */
    QB_SEQ_DELTA,        /* a delta */
    QB_SEQ_OTHER,        /* a trade, status or ticker */
} qb_seq_type;

/* The answer of qb_seq_step (the table at the top of this file). */
typedef enum qb_seq_result {
    QB_SEQ_NEXT = 0,  /* in sequence: seq == last + 1 */
    QB_SEQ_DUPLICATE, /* already had it (seq <= last): skip, keep last */
    QB_SEQ_GAP,       /* messages were lost: *missed says how many */
    QB_SEQ_REBASE,    /* a snapshot, or the first message: count from seq */
    QB_SEQ_RESTART,   /* a restarted publisher: count from seq, report it */
} qb_seq_result;

/* The step from last (has_last false: none) to a message of type type with
 * seq seq. Writes *missed (may be NULL): the number of messages lost for
 * QB_SEQ_GAP, 0 otherwise. */
qb_seq_result qb_seq_step(bool has_last, uint64_t last, uint64_t seq, qb_seq_type type,
                          uint64_t *missed);

/* qb_seq_step for a last that is the last seq seen on the stream itself
 * (never from a snapshot fetched aside): QB_SEQ_DUPLICATE is reported as
 * QB_SEQ_RESTART (section 11.4 rule 7). */
qb_seq_result qb_seq_on_stream(bool has_last, uint64_t last, uint64_t seq, qb_seq_type type,
                               uint64_t *missed);

/* The qb_seq_type of a decoded message (type is a qb_msg_type). */
qb_seq_type qb_seq_type_of(int type, bool refresh);

/* A name for logs: "next", "duplicate", "gap", "rebase", "restart". */
const char *qb_seq_result_name(qb_seq_result r);

#endif
