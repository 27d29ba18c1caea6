/*
 * oracle_msg.h: reference implementations of the wire protocol's msgpack
 * form, for test_msg.c to compare proto/msg's encoder and decoder with
 * (oracle_msg.c). Test code only.
 *
 * - ref_pack_map: the straightforward packer (msgpack-c's msgpack_pack_*,
 *   same key order, same calls as the encoder, a callback sink); the
 *   encoder must give the same bytes.
 * - ref_decoder: the decoder as it was before it moved to MsgPuck
 *   (msgpack-c's object tree after a bounds pre-scan); the real decoder
 *   must give the same result code at every step and the same fields.
 */
#ifndef QB_TEST_ORACLE_MSG_H
#define QB_TEST_ORACLE_MSG_H

#include "msg.h"

#include <msgpack.h>
#include <stddef.h>

/* Packs m as one map (no topic) into pk; 0 on success, else msgpack-c's
 * error. */
int ref_pack_map(const qb_msg *m, msgpack_packer *pk);

typedef struct ref_decoder ref_decoder;

/* A reference decoder; NULL when out of memory. Free with ref_decoder_free
 * (NULL is a no-op). */
ref_decoder *ref_decoder_new(void);
void ref_decoder_free(ref_decoder *d);

/* Like qb_decoder_begin / qb_decoder_next: begin checks the frame's topic
 * (a view into fr, which must outlive the decoding); next decodes the next
 * map into out (views into fr and into d, valid until the next call),
 * QB_EEOF after the last one. */
int ref_decoder_begin(ref_decoder *d, const void *fr, size_t len, qb_str *topic);
int ref_decoder_next(ref_decoder *d, qb_msg *out);

#endif
