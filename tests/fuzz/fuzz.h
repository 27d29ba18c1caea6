/*
 * fuzz.h: shared pieces of quotebus's fuzz targets (tests/fuzz/).
 *
 * Every target is one file defining LLVMFuzzerTestOneInput(). It builds two
 * ways: with clang -fsanitize=fuzzer (libFuzzer's main, run-fuzzers.sh) and,
 * for CTest (label fuzz), with any compiler plus replay_main.c, a main() that
 * feeds every file of the corpus directories given on the command line to
 * the target once. So CI replays the committed corpora (tests/fuzz/corpus/)
 * with gcc and ASan, and a crash found by libFuzzer stays a regression test
 * once its input is committed.
 *
 * Multi-record inputs: the stateful targets (an exchange feed through the
 * sync state machine, a stream of websocket requests) split their input into
 * records at QB_FUZZ_SEP; a record's first byte selects what it is.
 * Invariant violations (not just crashes) abort through QB_FUZZ_CHECK, so
 * libFuzzer reports them as findings.
 */
#ifndef QB_FUZZ_H
#define QB_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QB_FUZZ_SEP "\n@@\n"
#define QB_FUZZ_SEP_LEN 4

#define QB_FUZZ_CHECK(cond)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Next record of data[*pos..size): *rec, *len; false at the end. */
static inline int qb_fuzz_next_record(const uint8_t *data, size_t size, size_t *pos,
                                      const uint8_t **rec, size_t *len)
{
    if (*pos > size || (*pos == size && *pos != 0)) {
        return 0;
    }
    const uint8_t *start = data + *pos;
    size_t left = size - *pos;
    const uint8_t *sep = NULL;
    if (left >= QB_FUZZ_SEP_LEN) {
        sep = memmem(start, left, QB_FUZZ_SEP, QB_FUZZ_SEP_LEN);
    }
    *rec = start;
    if (sep) {
        *len = (size_t)(sep - start);
        *pos += *len + QB_FUZZ_SEP_LEN;
    } else {
        *len = left;
        *pos = size + 1;
    }
    return 1;
}

#endif
