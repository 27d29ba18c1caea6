/*
 * fuzz_bithumb.c: fuzz target of the bithumb adapter's parser and book sync
 * (adapters/bithumb.c through qb_bithumb_ops, adapters/sync.c). Input format
 * and invariants: fuzz_exchange.h.
 */
#include "fuzz_exchange.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_exchange_run(&qb_bithumb_ops, data, size);
}
