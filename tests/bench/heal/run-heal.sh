#!/bin/sh
# run-heal.sh: heal time of books under a drop storm, as a markdown table.
#
#   tests/bench/heal/run-heal.sh BIN_DIR [SIM_BIN_DIR]
#
# BIN_DIR holds the quotebus-adapter, -broker and -sub under test;
# SIM_BIN_DIR the quotebus-exsim that knows --drop-rate (default BIN_DIR), so
# an older adapter can be measured against the same simulator. One row per
# exchange and symbol count (heal.py: one fresh simulator, broker, adapter and
# subscriber each, plain ws/http on loopback, trades and tickers off): every
# symbol loses each depth event with probability DROP_RATE for STORM_S
# seconds, after WARMUP_S; then the run waits until every drop has healed.
# Heal time = the adapter's receive time of the first book snapshot holding
# the lost update minus the simulator's clock when it dropped it.
#
# Knobs (environment): LABEL (first column, default "-"), EXCHANGES
# ("binance htx"), SYMBOLS ("10 50"), RATE (10 depth events/s per symbol, the
# @depth@100ms cadence), DROP_RATE (0.02), WARMUP_S (5), STORM_S (60),
# SETTLE_S (120), SEED (7), ADAPTER_ARGS (extra adapter arguments, e.g.
# "--depth-limit=100"). About (WARMUP_S + STORM_S + 10) s per row, plus the
# time the last drop takes to heal. Not a ctest test: figures go to
# docs/BENCHMARKS.md ("Heal time under a drop storm") with the command, date and
# commit.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?usage: run-heal.sh BIN_DIR [SIM_BIN_DIR]}
sim=${2:-$bin}
label=${LABEL:--}
header=--header
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for ex in ${EXCHANGES:-binance htx}; do
    for n in ${SYMBOLS:-10 50}; do
        extra=""
        for x in ${ADAPTER_ARGS:-}; do
            extra="$extra --adapter-arg=$x"
        done
        # shellcheck disable=SC2086
        /usr/bin/python3 "$here/heal.py" $header --bin-dir "$bin" --sim-bin "$sim" \
            --label "$label" --exchange "$ex" --symbols "$n" --rate "${RATE:-10}" \
            --drop-rate "${DROP_RATE:-0.02}" --warmup-s "${WARMUP_S:-5}" \
            --storm-s "${STORM_S:-60}" --settle-s "${SETTLE_S:-120}" --seed "${SEED:-7}" \
            $extra | grep '^|'
        header=""
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
