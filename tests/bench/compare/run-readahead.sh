#!/usr/bin/env bash
# run-readahead.sh [OUT.md]: the adapter's TLS read-ahead (adapters/ws_conn.c),
# on against off (--no-tls-read-ahead), at each rate of RATES, back to back in
# one run. Each run: a fresh quotebus-exsim Binance feed over wss (throw-away
# test CA; one symbol BTCUSDT, --changes 20, no trades, no tickers, no server
# pings), quotebus-broker, one quotebus-sub printing book.binance deltas as
# JSON lines, and quotebus-adapter binance. After WARMUP s, over SECS s:
#   - adapter CPU per message: utime+stime from /proc/PID/stat over the
#     window, divided by the deltas the adapter received in the window (the
#     subscriber's deltas whose receive stamp rts falls in it: one per
#     exchange message, as the feed has no trades or tickers);
#   - adapter system calls per message (perf stat -e raw_syscalls:sys_enter
#     over the window, when perf is installed; else "-");
#   - receive latency: each delta's rts (the adapter's receive stamp, ns)
#     minus its ets (the exchange's event time E: 1 ms resolution, so the
#     figures carry up to 1 ms of rounding, the same for both modes):
#     p50, p90, p99, p99.9, max over the deltas of the window;
#   - tls_drained / tls_drain_stuck from the adapter's stats file.
# The simulator sends on a 5 ms timer (bursts of RATE/200 events). Prints a
# markdown table (stdout, and OUT.md).
# Environment (defaults in brackets):
#   BUILD   build directory with quotebus-exsim/-adapter/-broker/-sub [<repo>/build-bench8]
#   RATES   depth events per second [2000 20000]
#   REPEAT  runs per (rate, mode), interleaved on/off [2]
#   WARMUP  seconds before the window [2]
#   SECS    window, seconds [6]
# About REPEAT x |RATES| x 2 x (WARMUP + SECS + 3) s: 88 s with the defaults.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
BUILD=${BUILD:-$root/build-bench8}
RATES=${RATES:-"2000 20000"}
REPEAT=${REPEAT:-2}
WARMUP=${WARMUP:-2}
SECS=${SECS:-6}
OUT=${1:-}
B=$BUILD/bin
PY=/usr/bin/python3
for bin in quotebus-exsim quotebus-adapter quotebus-broker quotebus-sub; do
    [[ -x $B/$bin ]] || { echo "run-readahead.sh: $B/$bin missing (build first)" >&2; exit 1; }
done
tmp=$(mktemp -d /tmp/qb-readahead.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
"$root/tests/integration/gen-test-ca.sh" "$tmp/certs" >/dev/null 2>&1 || { echo "gen-test-ca.sh failed" >&2; exit 1; }
have_perf=0
command -v perf >/dev/null 2>&1 && perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1 && have_perf=1

stat_frames() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], 0))' "$1" "$2" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# one RATE MODE(on|off) -> appends a row to $tmp/rows
one() {
    local rate=$1 mode=$2 extra=()
    [[ $mode == off ]] && extra=(--no-tls-read-ahead)
    rm -f "$tmp"/*.ipc "$tmp/port" "$tmp/ad.stats" "$tmp/sub.jsonl"
    "$B/quotebus-exsim" --exchange binance --host 127.0.0.1 --port 0 --port-file "$tmp/port" \
        --tls-cert "$tmp/certs/server.pem" --tls-key "$tmp/certs/server.key" --symbols BTCUSDT \
        --rate "$rate" --changes 20 --trade-rate 0 --ticker-every 0 --ping-interval-ms 0 \
        --max-queue 1000000 --log-level warn 2>"$tmp/exsim.log" &
    local epid=$!
    pids+=("$epid")
    for _ in $(seq 100); do [[ -s $tmp/port ]] && break; sleep 0.1; done
    local port
    port=$(cat "$tmp/port")
    "$B/quotebus-broker" --no-spawn --ingest "ipc://$tmp/in.ipc" --pub "ipc://$tmp/out.ipc" \
        --snapshot off --http-listen off --log-level warn >"$tmp/broker.log" 2>&1 &
    local bpid=$!
    pids+=("$bpid")
    "$B/quotebus-sub" --connect "ipc://$tmp/out.ipc" book.binance >"$tmp/sub.jsonl" 2>/dev/null &
    local spid=$!
    pids+=("$spid")
    sleep 0.3
    "$B/quotebus-adapter" binance --symbols BTC-USDT --no-tickers \
        --ws-url "wss://127.0.0.1:$port/stream" --rest-url "https://127.0.0.1:$port" \
        --ca-file "$tmp/certs/ca.pem" --broker "ipc://$tmp/in.ipc" --stats-file "$tmp/ad.stats" \
        --log-level warn "${extra[@]}" 2>"$tmp/adapter.log" &
    local apid=$!
    pids+=("$apid")
    sleep "$WARMUP"
    local t0 t1 sc="-" w0 w1
    t0=$(cpu_ticks "$apid")
    w0=$(date +%s%N)
    if ((have_perf)); then
        sc=$(perf stat -x, -e raw_syscalls:sys_enter -p "$apid" -- sleep "$SECS" 2>&1 | awk -F, '/sys_enter/ {print $1}')
    else
        sleep "$SECS"
    fi
    t1=$(cpu_ticks "$apid")
    w1=$(date +%s%N)
    sleep 0.6 # the stats file is rewritten every 500 ms
    local drained stuck
    drained=$(stat_frames "$tmp/ad.stats" tls_drained)
    stuck=$(stat_frames "$tmp/ad.stats" tls_drain_stuck)
    kill "$apid" "$spid" "$bpid" "$epid" 2>/dev/null
    wait "$apid" "$spid" "$bpid" "$epid" 2>/dev/null
    "$PY" - "$tmp/sub.jsonl" "$rate" "$mode" "$t0" "$t1" "$sc" "$drained" "$stuck" \
        "$w0" "$w1" "$(getconf CLK_TCK)" >>"$tmp/rows" <<'EOF'
import json, sys
path, rate, mode, t0, t1, sc, drained, stuck, w0, w1, hz = sys.argv[1:]
t0, t1, hz = float(t0), float(t1), float(hz)
w0, w1 = int(w0), int(w1)
lat = []
for line in open(path):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("type") != "delta":
        continue
    # deltas the adapter received inside the window
    if w0 <= m["rts"] <= w1:
        lat.append((m["rts"] - m["ets"]) / 1e6)
lat.sort()
n = len(lat)
q = lambda p: lat[min(n - 1, int(p * n))] if n else float("nan")
frames = max(n, 1)
cpu_us = (t1 - t0) / hz * 1e6 / frames
scm = "%.2f" % (int(sc) / frames) if sc not in ("-", "") else "-"
print("| %s | %s | %d | %.2f | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %s / %s |" % (
    rate, mode, frames, cpu_us, scm, q(.5), q(.9), q(.99), q(.999), lat[-1] if n else float("nan"),
    drained, stuck))
EOF
}

: >"$tmp/rows"
for rate in $RATES; do
    for r in $(seq "$REPEAT"); do
        for mode in on off; do
            echo "run-readahead: rate $rate, read-ahead $mode, run $r" >&2
            one "$rate" "$mode"
        done
    done
done
{
    echo "TLS read-ahead on/off ($(date -u +%Y-%m-%dT%H:%MZ), git $(git -C "$root" rev-parse --short HEAD 2>/dev/null), load $(cut -d' ' -f1-3 /proc/loadavg)); window ${SECS} s after ${WARMUP} s"
    echo
    echo "| rate (events/s) | read-ahead | messages in window | adapter µs CPU/msg | syscalls/msg | latency p50 ms | p90 | p99 | p99.9 | max | tls_drained / stuck |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    cat "$tmp/rows"
} | if [[ -n $OUT ]]; then tee "$OUT"; else cat; fi
