/*
 * fuzz_htx.c: fuzz target of the htx adapter's parser and book sync
 * (adapters/htx.c through qb_htx_ops, adapters/sync.c). Input format
 * and invariants: fuzz_exchange.h.
 */
#include "fuzz_exchange.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_exchange_run(&qb_htx_ops, data, size);
}
