#!/usr/bin/env bash
# run-all.sh [OUT.md]: builds the benchmark programs (Release) and runs issue
# 8's suite, writing a markdown results table to stdout and to OUT.md
# (default <build>/bench-results.md). Not a test: nothing here passes or fails
# on timings. Environment (defaults in brackets):
#   BUILD      build directory [<repo>/build-bench8]
#   RUNS       repetitions of every latency configuration; medians reported [3]
#   SECS       seconds per latency run [5]
#   TP_SECS    seconds per throughput step [5]
#   TP_RATES   throughput ladder, msg/s [10000 25000 50000 75000 100000 150000 250000]
#   ADAPTER_RUNS  runs of qb-bench-adapter [7]
#   CALLGRIND  1 to add callgrind instruction counts (needs valgrind) [1]
#   SKIP       space-separated sections to skip: adapter latency throughput memory
# Every section records /proc/loadavg before and after: the machine is shared.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$root/build-bench8}
RUNS=${RUNS:-3}
SECS=${SECS:-5}
TP_SECS=${TP_SECS:-5}
TP_RATES=${TP_RATES:-"10000 25000 50000 75000 100000 150000 250000"}
ADAPTER_RUNS=${ADAPTER_RUNS:-7}
CALLGRIND=${CALLGRIND:-1}
SKIP=${SKIP:-}
OUT=${1:-$BUILD/bench-results.md}
PY=/usr/bin/python3

B=$BUILD/bin
build_note="built now"
if [[ ${NO_BUILD:-0} != 1 ]]; then
    cmake -S "$root" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
    if ! cmake --build "$BUILD" --target qb-bench-adapter qb-bench-e2e quotebus-broker -j2 \
        >"$BUILD/bench-build.log" 2>&1; then
        # The tree is shared: another engineer's file may be mid-edit.
        echo "run-all.sh: build failed (see $BUILD/bench-build.log); using the binaries already in $B" >&2
        build_note="BUILD FAILED at run time (tree mid-edit); binaries from the previous build"
    fi
else
    build_note="NO_BUILD=1: binaries from the previous build"
fi
for bin in qb-bench-adapter qb-bench-e2e quotebus-broker; do
    [[ -x $B/$bin ]] || { echo "run-all.sh: $B/$bin missing" >&2; exit 1; }
done
tmp=$(mktemp -d /tmp/qb-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
skip() { [[ " $SKIP " == *" $1 "* ]]; }
la() { cut -d' ' -f1-3 /proc/loadavg; }

exec > >(tee "$OUT")
echo "# quotebus benchmark results"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), build $BUILD (Release; $build_note), git $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo

# ---- 1. adapter cost --------------------------------------------------------
if ! skip adapter; then
    echo "## 1. Adapter cost (decode + parse + sync/book apply + encode, one core)"
    echo
    echo "\`$B/qb-bench-adapter --runs $ADAPTER_RUNS --markdown\`"
    echo
    "$B/qb-bench-adapter" --runs "$ADAPTER_RUNS" --markdown
    echo "With the NNG send (\`--publish\`, PUB socket without a peer):"
    echo
    "$B/qb-bench-adapter" --runs "$ADAPTER_RUNS" --markdown --publish
    if [[ $CALLGRIND == 1 ]] && command -v valgrind >/dev/null; then
        echo "Instructions per message (callgrind, 2000 messages, deterministic):"
        echo
        echo "| message | instructions/msg |"
        echo "|---|---|"
        for ex in binance htx bithumb; do
            valgrind --tool=callgrind --toggle-collect=bench_loop \
                --callgrind-out-file="$tmp/cg.$ex" "$B/qb-bench-adapter" --callgrind \
                --count 2000 --exchange "$ex" >/dev/null 2>"$tmp/cg.$ex.err"
            ir=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/cg.$ex.err")
            echo "| $ex | $((ir / 2000)) |"
        done
        echo
        echo "command: \`valgrind --tool=callgrind --toggle-collect=bench_loop $B/qb-bench-adapter --callgrind --count 2000 --exchange EX\` (Collected / 2000)"
        echo
    fi
fi

# ---- middle hops: trivial forwarder and the broker, started once -------------
"$B/qb-bench-e2e" fwd --in "ipc://$tmp/fin.ipc" --out "ipc://$tmp/fout.ipc" 2>/dev/null &
pids+=($!)
start_broker() {
    "$B/quotebus-broker" --no-spawn --ingest "ipc://$tmp/bin.ipc" --pub "ipc://$tmp/bout.ipc" \
        --snapshot off --http-listen off --log-level error --stats-file "$tmp/broker.json" \
        >/dev/null 2>&1 &
    broker=$!
    pids+=($broker)
    sleep 0.5
}
start_broker
sleep 0.3

# one_run SYSTEM SUBS RATE SECS: prints one raw row (see e2e_bench.c)
one_run() {
    case $1 in
    raw1) "$B/qb-bench-e2e" run --pub "ipc://$tmp/one.ipc" --listen --sub "ipc://$tmp/one.ipc" \
              --subs "$2" --rate "$3" --seconds "$4" --label raw1 ;;
    raw2) "$B/qb-bench-e2e" run --pub "ipc://$tmp/fin.ipc" --sub "ipc://$tmp/fout.ipc" \
              --subs "$2" --rate "$3" --seconds "$4" --label raw2 ;;
    qb) "$B/qb-bench-e2e" run --pub "ipc://$tmp/bin.ipc" --sub "ipc://$tmp/bout.ipc" \
            --subs "$2" --rate "$3" --seconds "$4" --label quotebus ;;
    esac
}

# ---- 2. latency ----------------------------------------------------------------
if ! skip latency; then
    echo "## 2. End-to-end latency (publisher encode -> subscriber decode; ipc; 10+10-level deltas)"
    echo
    echo "Median over $RUNS runs of $SECS s each; raw1 = NNG PUB->SUB, raw2 = PUB->trivial forwarder->SUB, quotebus = PUB->quotebus-broker->SUB; the three interleaved per repetition. Latencies in µs."
    echo
    : >"$tmp/lat.rows"
    for subs in 1 8; do
        for rate in 1000 10000 50000; do
            for r in $(seq "$RUNS"); do
                l0=$(la)
                for sys in raw1 raw2 qb; do
                    one_run "$sys" "$subs" "$rate" "$SECS" | sed "s/\$/ $l0 | $(la | tr ' ' '_') |/" >>"$tmp/lat.rows"
                done
            done
        done
    done
    $PY - "$tmp/lat.rows" <<'EOF'
import sys, statistics as st
rows = {}
loads = []
for line in open(sys.argv[1]):
    c = [x.strip() for x in line.strip().strip('|').split('|')]
    key = (c[0], int(c[1]), int(float(c[2])))
    rows.setdefault(key, []).append(c)
    loads.append(c[13])
def med(key, i):
    return st.median(float(r[i]) for r in rows[key]) if key in rows else float('nan')
print("| subs | rate | system | achieved msg/s | frame B | runs | lost (max) | p50 | p99 | p99.9 | max | p50 / raw2 | p99 / raw2 |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for subs in (1, 8):
    for rate in (1000, 10000, 50000):
        for sys_ in ("raw1", "raw2", "quotebus"):
            k = (sys_, subs, rate)
            if k not in rows: continue
            lost = max(int(r[7]) for r in rows[k])
            p50, p99 = med(k, 9), med(k, 10)
            b50, b99 = med(("raw2", subs, rate), 9), med(("raw2", subs, rate), 10)
            print(f"| {subs} | {rate} | {sys_} | {med(k,3):.0f} | {rows[k][0][4]} | {len(rows[k])} | {lost} | "
                  f"{p50:.0f} | {p99:.0f} | {med(k,11):.0f} | {med(k,12):.0f} | "
                  f"{p50/b50:.2f} | {p99/b99:.2f} |")
print()
print(f"load average (1 min) at the start of each repetition: {min(float(x.split()[0]) for x in loads):.2f} .. {max(float(x.split()[0]) for x in loads):.2f}")
EOF
    echo
fi

# ---- 3. throughput --------------------------------------------------------------
if ! skip throughput; then
    echo "## 3. Throughput: highest rate with zero loss over a ${TP_SECS} s window"
    echo
    echo "Ladder: $TP_RATES msg/s (10+10-level deltas, one message per NNG frame); a step passes when every subscriber got every delta (no seq gap) and the publisher kept the rate (achieved >= 95 %). The ladder stops at the first failing step."
    echo
    echo "| system | subs | highest zero-loss rate | first failing step (achieved, max lost) | load before -> after |"
    echo "|---|---|---|---|---|"
    for subs in 1 8; do
        for sys in raw1 raw2 qb; do
            best=0
            fail="none"
            l0=$(la)
            for rate in $TP_RATES; do
                row=$(one_run "$sys" "$subs" "$rate" "$TP_SECS")
                achieved=$(echo "$row" | cut -d'|' -f5 | tr -d ' ')
                lost=$(echo "$row" | cut -d'|' -f9 | tr -d ' ')
                if [[ -n $achieved && $lost == 0 ]] && ((achieved * 100 >= rate * 95)); then
                    best=$rate
                else
                    fail="$rate (${achieved:-?}/s, lost ${lost:-?})"
                    break
                fi
            done
            name=$sys
            [[ $sys == qb ]] && name=quotebus
            echo "| $name | $subs | $best | $fail | $l0 -> $(la) |"
        done
    done
    echo
fi

# ---- 4. memory --------------------------------------------------------------------
if ! skip memory; then
    kill "$broker" 2>/dev/null
    wait "$broker" 2>/dev/null
    start_broker
    rss0=$(awk '/VmRSS/ {print $2}' /proc/$broker/status)
    l0=$(la)
    fill=$("$B/qb-bench-e2e" fill --pub "ipc://$tmp/bin.ipc" --instruments 1000 --levels 1000)
    sleep 1.5
    rss1=$(awk '/VmRSS/ {print $2}' /proc/$broker/status)
    hwm=$(awk '/VmHWM/ {print $2}' /proc/$broker/status)
    books=$(sed -n 's/.*"books": \([0-9]*\).*/\1/p' "$tmp/broker.json")
    echo "## 4. Broker memory, 1000 instruments x 1000 levels per side"
    echo
    echo "| broker VmRSS idle | after fill | VmHWM | books held (stats) | fill | load before -> after |"
    echo "|---|---|---|---|---|---|"
    echo "| $((rss0 / 1024)) MiB | $((rss1 / 1024)) MiB | $((hwm / 1024)) MiB | ${books:-?} | $fill | $l0 -> $(la) |"
    echo
    echo "command: \`quotebus-broker --no-spawn --ingest ipc://T/bin.ipc --pub ipc://T/bout.ipc --snapshot off --http-listen off\`, then \`qb-bench-e2e fill --pub ipc://T/bin.ipc --instruments 1000 --levels 1000\`, then VmRSS from /proc/PID/status"
    echo
fi
echo "Not run by this script: websocket fan-out and the Python/ccxt client comparisons (see BENCHMARKS.md)."
