/*
 * fuzz_binance.c: fuzz target of the binance adapter's parser and book sync
 * (adapters/binance.c through qb_binance_ops, adapters/sync.c). Input format
 * and invariants: fuzz_exchange.h.
 */
#include "fuzz_exchange.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_exchange_run(&qb_binance_ops, data, size);
}
