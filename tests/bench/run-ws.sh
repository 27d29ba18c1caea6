#!/usr/bin/env bash
# run-ws.sh [OUT.md]: latency over websocket and websocket
# fan-out (docs/BENCHMARKS.md section 5): runs qb-bench-ws against a fresh quotebus-broker per
# row and prints markdown tables (stdout, and OUT.md when given). Not a test:
# nothing passes or fails on timings. Environment (defaults in brackets):
#   BUILD         build directory [<repo>/build-bench8]
#   NO_BUILD      1: use the binaries already built
#   WS_SECS       seconds of deltas per row [10]
#   WS_CLIENTS    fan-out client counts [1 100 1000]
#   WS_RATE       fan-out rate, deltas/s on the one book [100]
#   WS_LAT_RATES  latency rows with 1 client, deltas/s; empty: none [1000 10000]
#   WS_MODES      subprotocols: json msgpack [json msgpack]
#   WS_LEVELS     bids and asks per delta [10]
#   WS_PORT       the broker's HTTP port [17780]
#   WS_THREADS    qb-bench-ws client service threads [1]
# The broker runs with --no-spawn --snapshot off, its own ipc paths under a
# temp dir, --http-max-clients above the largest client count; both
# processes get RLIMIT_NOFILE raised to the hard limit. With defaults the
# whole script takes about 2-3 minutes.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$root/build-bench8}
WS_SECS=${WS_SECS:-10}
WS_CLIENTS=${WS_CLIENTS-"1 100 1000"}
WS_RATE=${WS_RATE:-100}
WS_LAT_RATES=${WS_LAT_RATES-"1000 10000"}
WS_MODES=${WS_MODES:-"json msgpack"}
WS_LEVELS=${WS_LEVELS:-10}
WS_PORT=${WS_PORT:-17780}
WS_THREADS=${WS_THREADS:-1}
OUT=${1:-}
B=$BUILD/bin

if [[ ${NO_BUILD:-0} != 1 ]]; then
    cmake -S "$root" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
    if ! cmake --build "$BUILD" --target qb-bench-ws quotebus-broker -j2 >"$BUILD/ws-build.log" 2>&1; then
        echo "run-ws.sh: build failed (see $BUILD/ws-build.log); using the binaries already in $B" >&2
    fi
fi
for bin in qb-bench-ws quotebus-broker; do
    [[ -x $B/$bin ]] || { echo "run-ws.sh: $B/$bin missing" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
maxc=0
for c in $WS_CLIENTS; do (( c > maxc )) && maxc=$c; done

tmp=$(mktemp -d /tmp/qb-bench-ws.XXXXXX)
bpid=
cleanup() {
    [[ -n $bpid ]] && kill "$bpid" 2>/dev/null && wait "$bpid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
la() { cut -d' ' -f1-3 /proc/loadavg; }

broker_start() {
    rm -f "$tmp"/*.ipc
    "$B/quotebus-broker" --no-spawn --ingest "ipc://$tmp/in.ipc" --pub "ipc://$tmp/out.ipc" \
        --snapshot off --http-listen "127.0.0.1:$WS_PORT" --http-max-clients $((maxc + 100)) \
        --stats-file "$tmp/broker.stats" --log-level warn >>"$tmp/broker.log" 2>&1 &
    bpid=$!
    for _ in $(seq 50); do
        [[ -S $tmp/in.ipc ]] && (exec 3<>"/dev/tcp/127.0.0.1/$WS_PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "run-ws.sh: broker did not start:" >&2
    tail -20 "$tmp/broker.log" >&2
    return 1
}
broker_stop() {
    kill "$bpid" 2>/dev/null
    wait "$bpid" 2>/dev/null
    bpid=
}
# row LABEL CLIENTS RATE MODE [HEADER]
row() {
    local label=$1 clients=$2 rate=$3 mode=$4 hdr=${5:-}
    broker_start || return 1
    local args=(--url "ws://127.0.0.1:$WS_PORT/ws" --ingest "ipc://$tmp/in.ipc" --clients "$clients"
        --rate "$rate" --seconds "$WS_SECS" --levels "$WS_LEVELS" --broker-pid "$bpid" --label "$label" --threads "$WS_THREADS")
    [[ $mode == msgpack ]] && args+=(--msgpack)
    [[ -n $hdr ]] && args+=(--header)
    timeout $((WS_SECS + 120)) "$B/qb-bench-ws" "${args[@]}" 2>>"$tmp/client.log" ||
        echo "| $label | $mode | $clients | $rate | FAILED (see below) |"
    broker_stop
}

{
    echo "## Websocket latency and fan-out: qb-bench-ws through quotebus-broker /ws"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, build $BUILD, load average before: $(la)."
    echo "One book (book.binance.BTC-USDT), deltas of $WS_LEVELS bids + $WS_LEVELS asks, ${WS_SECS} s per row,"
    echo "a fresh broker per row. Latency = client receive - rts (publisher's qb_now_ns() before the"
    echo "encode), all clients together; broker CPU = (utime+stime)/wall over the delta window, 100 % = one"
    echo "core; VmRSS/VmHWM at the end of the row; client CPU = qb-bench-ws's $WS_THREADS lws service"
    echo "thread(s), summed (\"client-bound\" when one of them used > 85 % of a core)."
    echo
    if [[ -n ${WS_CLIENTS// /} ]]; then
        echo "### Fan-out: $WS_RATE deltas/s, 1 book, N clients"
        echo
        hdr=1
        for mode in $WS_MODES; do
            for c in $WS_CLIENTS; do
                row "fanout" "$c" "$WS_RATE" "$mode" ${hdr:+h}
                hdr=
            done
        done
        echo
    fi
    if [[ -n ${WS_LAT_RATES// /} ]]; then
        echo "### Latency over websocket: 1 client"
        echo
        hdr=1
        for mode in $WS_MODES; do
            for r in $WS_LAT_RATES; do
                row "latency" 1 "$r" "$mode" ${hdr:+h}
                hdr=
            done
        done
        echo
    fi
    echo "load average after: $(la)"
    echo
    echo "qb-bench-ws notes (stderr):"
    echo
    echo '```'
    grep -v '^$' "$tmp/client.log" | grep -v ' closed$' | head -40
    echo '```'
    if grep -qi 'error\|warn' "$tmp/broker.log" 2>/dev/null; then
        echo
        echo "broker warnings:"
        echo
        echo '```'
        grep -i 'error\|warn' "$tmp/broker.log" | head -20
        echo '```'
    fi
} | if [[ -n $OUT ]]; then tee "$OUT"; else cat; fi
