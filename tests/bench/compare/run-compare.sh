#!/usr/bin/env bash
# run-compare.sh [OUT.md]: "what users run today" (docs/BENCHMARKS.md section 6). The same
# quotebus-exsim Binance feed (wss with a throw-away test CA, one symbol
# BTCUSDT, --rate depth events/s, deterministic: same --seed/--rate/--events
# -> same events and the same final book) consumed four ways, one after the
# other, each against its own fresh simulator:
#   python   python_client.py (/usr/bin/python3 + Debian python3-websockets)
#   python2  two python_client.py processes at once on one simulator (each
#            its own wss connection): shows that N hand-written clients cost
#            N times one, which justifies "N x the 1-client figure" below
#   ccxt     ccxt_client.mjs (node + ccxt pro watchOrderBook, npm-installed
#            into ./node_modules on first use)
#   quotebus quotebus-adapter binance --ca-file + quotebus-broker (snapshot
#            service on) + N qb-bench-consumer processes (libquotebus
#            qb_mirror, one exact book each), N stepping through NS
#            (1 2 4 8) in one run: a phase per N, consumers added between
#            phases, every one measured in every window
#   floor    the transport's floor: adapter + broker + one qb-bench-consumer
#            and two qb-bench-nng-recv (NNG alone receiving the same frames,
#            no decoding, no book: a thread in nng_recvmsg, and nng_recv_aio
#            callbacks) in the same window, and with PERF=1 a perf profile of
#            each: what the consumer's CPU per delta is made of
#   sweep    the adapter alone (adapter + broker, no consumer) at each rate
#            of SWEEP_RATES: CPU per message of the adapter, the broker and
#            the simulator, whether it kept up, and at PERF_RATE a perf
#            profile and a system-call count of the adapter
# Tables: A per-program cost and ratio vs Python, B two Python clients at
# once, C the whole system with N consumers (ratio vs N Python clients, the
# fit total(N) = F + N x V and where 50x would be reached), G the floor
# (NNG alone vs the consumer, context switches, profiles), E the sweep and
# profile, D every final book against the simulator's dump.
# Each is measured over a window of SECS s (python/ccxt after WARMUP s of
# live feed; quotebus: the first phase after WARMUP s, the next ones SETTLE s
# after the added consumers started). Messages and CPU-seconds: python
# time.process_time; ccxt process.cpuUsage; qb-bench-consumer getrusage of
# its whole process (all threads), read when the script sends SIGUSR1 at
# the window's start and end, messages = deltas applied to its book; the
# adapter, broker and simulator: utime+stime from /proc/PID/stat at the same
# instants. Afterwards every consumer's final book (python, both python2
# clients, ccxt, the broker's book over its /ws, and every qb-bench-consumer)
# is compared, as exact decimals, with the simulator's --dump. Prints
# markdown tables (stdout, and OUT.md).
# Environment (defaults in brackets):
#   BUILD     build directory with quotebus-exsim/-adapter/-broker and
#             qb-bench-consumer [<repo>/build-bench8]
#   NO_BUILD  1: use the binaries already built
#   RATE      depth events per second [20000]
#   CHANGES   random level changes per event (exsim --changes; 0 = 1..4, tiny events) [20]
#   WARMUP    seconds after the consumer is live before the (first) window [5]
#   SECS      measurement window, seconds (run-all.sh passes CMP_SECS) [20]
#   NS        consumer counts of the quotebus phases [1 2 4 8]
#   SETTLE    seconds between starting added consumers and their window [3]
#   CLIENTS   which runs [python python2 ccxt quotebus sweep]
#   SWEEP_RATES  the adapter-alone rate sweep ("sweep": adapter + broker, no
#             consumer; CPU per message of adapter, broker and simulator, and
#             whether they kept up) [2000 20000 40000 60000]
#   SWEEP_SECS   window per sweep rate [8]
#   PERF      1: at PERF_RATE also profile the adapter with perf (cpu-clock,
#             -g, PERF_SECS s, after the window) and count its system calls
#             (perf stat -e raw_syscalls:sys_enter, 2 s); in the floor run,
#             profile the consumer and then each qb-bench-nng-recv
#             (PERF_SECS s each, after the window) [1]
#   PERF_RATE, PERF_SECS  [20000, 6]
#   NO_NPM    1: never run npm (ccxt is skipped when not installed)
#   HTTP_PORT the broker's HTTP port for the final book [17790]
#   ADAPTER_ARGS  extra quotebus-adapter options for the quotebus and sweep
#             runs, e.g. "--batch-maps 16" or "--no-tls-read-ahead" []
# With defaults about 5 minutes on an idle machine: 3 x (WARMUP + SECS + ~8 s) for python,
# python2, ccxt, WARMUP + |NS| x SECS + (|NS|-1) x SETTLE + ~15 s for
# quotebus, WARMUP + SECS + 3 x PERF_SECS + ~10 s for the floor, and
# |SWEEP_RATES| x (SWEEP_SECS + ~4 s) + PERF_SECS + 2 s for the sweep.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
BUILD=${BUILD:-$root/build-bench8}
RATE=${RATE:-20000}
CHANGES=${CHANGES:-20}
WARMUP=${WARMUP:-5}
SECS=${SECS:-20}
NS=${NS:-"1 2 4 8"}
SETTLE=${SETTLE:-3}
CLIENTS=${CLIENTS-"python python2 ccxt quotebus floor sweep"}
SWEEP_RATES=${SWEEP_RATES:-"2000 20000 40000 60000"}
SWEEP_SECS=${SWEEP_SECS:-8}
PERF_RATE=${PERF_RATE:-20000}
PERF_SECS=${PERF_SECS:-6}
HTTP_PORT=${HTTP_PORT:-17790}
OUT=${1:-}
PY=/usr/bin/python3
B=$BUILD/bin
# enough events for warm-up + window + start-up slack; the feed then stops
# and --dump holds the final book
EVENTS=$((RATE * (WARMUP + SECS + 10)))
nphases=$(wc -w <<<"$NS")
EVENTS_QB=$((RATE * (WARMUP + nphases * (SECS + SETTLE) + 10)))

if [[ ${NO_BUILD:-0} != 1 ]]; then
    cmake -S "$root" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
    if ! cmake --build "$BUILD" --target quotebus-exsim quotebus-adapter quotebus-broker \
        qb-bench-consumer qb-bench-nng-recv -j2 >"$BUILD/compare-build.log" 2>&1; then
        echo "run-compare.sh: build failed (see $BUILD/compare-build.log); using the binaries in $B" >&2
    fi
fi
for bin in quotebus-exsim quotebus-adapter quotebus-broker qb-bench-consumer qb-bench-nng-recv; do
    [[ -x $B/$bin ]] || { echo "run-compare.sh: $B/$bin missing" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/qb-compare.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
la() { cut -d' ' -f1-3 /proc/loadavg; }
# ctxsw PID: voluntary + involuntary context switches of all its threads
ctxsw() {
    cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { s += $2 } END { print s + 0 }'
}
log() { echo "run-compare.sh: $*" >&2; }
# cpu_s PID: utime+stime in seconds (the whole process: all its threads)
cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}
# stats_sync FILE: return right after FILE was rewritten (the programs
# rewrite their --stats-file every 500 ms), so that counters read from it
# now are fresh to a few ms; gives up after 1 s
stats_sync() {
    local m0 m
    m0=$(stat -c %y "$1" 2>/dev/null)
    for _ in $(seq 200); do
        m=$(stat -c %y "$1" 2>/dev/null)
        [[ $m != "$m0" ]] && return 0
        sleep 0.005
    done
    return 1
}
# json_get FILE KEY: a top-level number from a JSON file
json_get() {
    $PY -c 'import json,sys
try: print(json.load(open(sys.argv[1])).get(sys.argv[2], 0))
except Exception: print(0)' "$1" "$2"
}

"$root/tests/integration/gen-test-ca.sh" "$tmp/certs" >/dev/null 2>&1 || { log "gen-test-ca.sh failed (openssl?)"; exit 1; }
CA=$tmp/certs/ca.pem

# exsim_start NAME [EVENTS [RATE]]: fresh simulator, sets EPORT and EPID
exsim_start() {
    local name=$1 events=${2:-$EVENTS} rate=${3:-$RATE}
    rm -f "$tmp/$name.port"
    "$B/quotebus-exsim" --exchange binance --host 127.0.0.1 --port 0 --port-file "$tmp/$name.port" \
        --tls-cert "$tmp/certs/server.pem" --tls-key "$tmp/certs/server.key" \
        --symbols BTCUSDT --rate "$rate" --changes "$CHANGES" --events "$events" --trade-rate 0 --ticker-every 0 \
        --max-queue $((events + 1000)) --dump "$tmp/$name.dump" --stats-file "$tmp/$name.exsim.stats" \
        --log-level warn 2>"$tmp/$name.exsim.log" &
    EPID=$!
    pids+=("$EPID")
    for _ in $(seq 100); do
        [[ -s $tmp/$name.port ]] && break
        sleep 0.1
    done
    EPORT=$(cat "$tmp/$name.port" 2>/dev/null)
    [[ -n $EPORT ]] || { log "exsim did not start"; return 1; }
}
exsim_stop() {
    # the dump is written when generation stops; wait for it
    for _ in $(seq 600); do
        [[ -s $tmp/$1.dump ]] && break
        sleep 0.1
    done
    kill "$EPID" 2>/dev/null
    wait "$EPID" 2>/dev/null
}

# pipeline_start TAG [BROKER_ARGS...]: a fresh quotebus-broker (ingest
# ipc://$tmp/TAG.in.ipc, publish ipc://$tmp/TAG.out.ipc, log TAG.broker.log)
# and quotebus-adapter binance on the simulator at EPORT (stats file
# TAG.adapter.stats, log TAG.adapter.log, ADAPTER_ARGS), in the background;
# sets BPID and APID and returns once the adapter has published
pipeline_start() {
    local tag=$1
    shift
    "$B/quotebus-broker" --no-spawn --ingest "ipc://$tmp/$tag.in.ipc" --pub "ipc://$tmp/$tag.out.ipc" \
        "$@" --log-level warn >"$tmp/$tag.broker.log" 2>&1 &
    BPID=$!
    pids+=("$BPID")
    sleep 0.3
    rm -f "$tmp/$tag.adapter.stats"
    "$B/quotebus-adapter" binance --symbols BTC-USDT --no-tickers \
        --ws-url "wss://127.0.0.1:$EPORT/stream" --rest-url "https://127.0.0.1:$EPORT" --ca-file "$CA" \
        --broker "ipc://$tmp/$tag.in.ipc" --stats-file "$tmp/$tag.adapter.stats" --log-level warn \
        ${ADAPTER_ARGS:-} 2>"$tmp/$tag.adapter.log" &
    APID=$!
    pids+=("$APID")
    for _ in $(seq 200); do
        [[ $(json_get "$tmp/$tag.adapter.stats" published) -gt 0 ]] 2>/dev/null && break
        sleep 0.1
    done
}

# python_client NAME: one python_client.py on the simulator at EPORT, in the
# background (sets PYPID); result NAME.json, book NAME.book
python_client() {
    timeout $((WARMUP + SECS + 300)) $PY "$here/python_client.py" --ws "wss://127.0.0.1:$EPORT" \
        --rest "https://127.0.0.1:$EPORT" --ca "$CA" --warmup "$WARMUP" --seconds "$SECS" \
        --max-run $((WARMUP + SECS + 240)) --book-out "$tmp/$1.book" >"$tmp/$1.json" \
        2>"$tmp/$1.err" &
    PYPID=$!
}

run_python() {
    exsim_start python || return 1
    python_client python
    wait "$PYPID" || log "python client failed: $(tail -3 "$tmp/python.err")"
    exsim_stop python
}

# two hand-written clients at once on one simulator (two wss connections)
run_python2() {
    exsim_start python2 || return 1
    python_client python2a
    local p1=$PYPID
    python_client python2b
    local p2=$PYPID
    wait "$p1" || log "python2a failed: $(tail -3 "$tmp/python2a.err")"
    wait "$p2" || log "python2b failed: $(tail -3 "$tmp/python2b.err")"
    exsim_stop python2
}

run_ccxt() {
    if ! command -v node >/dev/null; then
        if [[ ${NO_NPM:-0} != 1 ]] && command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
            log "node missing: apt-get install -y nodejs npm"
            apt-get install -y nodejs npm >"$tmp/apt.log" 2>&1
        fi
        command -v node >/dev/null || { echo '{"client":"ccxt","error":"node not installed"}' >"$tmp/ccxt.json"; return 1; }
    fi
    if [[ ! -d $here/node_modules/ccxt ]]; then
        if [[ ${NO_NPM:-0} == 1 ]]; then
            echo '{"client":"ccxt","error":"ccxt not installed (NO_NPM=1)"}' >"$tmp/ccxt.json"
            return 1
        fi
        log "npm install (ccxt) into $here/node_modules"
        (cd "$here" && npm install --no-audit --no-fund >"$tmp/npm.log" 2>&1) ||
            { echo '{"client":"ccxt","error":"npm install failed"}' >"$tmp/ccxt.json"; return 1; }
    fi
    exsim_start ccxt || return 1
    (cd "$here" && NODE_EXTRA_CA_CERTS=$CA timeout $((WARMUP + SECS + 300)) node ccxt_client.mjs \
        --ws "wss://127.0.0.1:$EPORT" --rest "https://127.0.0.1:$EPORT" --warmup "$WARMUP" \
        --seconds "$SECS" --max-run $((WARMUP + SECS + 240)) --book-out "$tmp/ccxt.book") \
        >"$tmp/ccxt.json" 2>"$tmp/ccxt.err" || log "ccxt client failed: $(tail -3 "$tmp/ccxt.err")"
    exsim_stop ccxt
}

# quotebus: adapter + broker + N consumers, one phase per N in NS. Every
# phase's window: SIGUSR1 to every consumer (each appends a "mark" line:
# mono_ns cpu_s deltas frames gaps) and /proc/PID/stat of the adapter,
# broker and simulator, at its start and at its end.
run_quotebus() {
    exsim_start quotebus "$EVENTS_QB" || return 1
    pipeline_start quotebus --snapshot "ipc://$tmp/quotebus.snap.ipc" \
        --http-listen "127.0.0.1:$HTTP_PORT" --stats-file "$tmp/broker.stats"
    local apid=$APID bpid=$BPID
    local cpids=() ncons=0 first=1 n t0 a0 b0 e0 f0 t1 a1 b1 e1 f1
    : >"$tmp/phases.jsonl"
    for n in $NS; do
        while ((ncons < n)); do
            ncons=$((ncons + 1))
            "$B/qb-bench-consumer" --connect "ipc://$tmp/quotebus.out.ipc" \
                --snapshot "ipc://$tmp/quotebus.snap.ipc" \
                --topic book.binance.BTC-USDT --marks "$tmp/cons$ncons.marks" \
                --book-out "$tmp/cons$ncons.book" --label "consumer$ncons" --idle 3 \
                --max-run $((WARMUP + nphases * (SECS + SETTLE) + 120)) \
                >"$tmp/cons$ncons.json" 2>"$tmp/cons$ncons.err" &
            cpids+=($!)
            pids+=($!)
        done
        if ((first)); then sleep "$WARMUP"; else sleep "$SETTLE"; fi
        first=0
        log "quotebus phase: $n consumer(s), window $SECS s"
        stats_sync "$tmp/quotebus.adapter.stats"
        kill -USR1 "${cpids[@]}"
        t0=$(date +%s.%N); a0=$(cpu_s $apid); b0=$(cpu_s $bpid); e0=$(cpu_s $EPID)
        f0=$(json_get "$tmp/quotebus.adapter.stats" frames)
        sleep "$SECS"
        stats_sync "$tmp/quotebus.adapter.stats"
        kill -USR1 "${cpids[@]}"
        t1=$(date +%s.%N); a1=$(cpu_s $apid); b1=$(cpu_s $bpid); e1=$(cpu_s $EPID)
        f1=$(json_get "$tmp/quotebus.adapter.stats" frames)
        sleep 0.3
        $PY - "$tmp" "$n" "$t0" "$t1" "$a0" "$a1" "$b0" "$b1" "$e0" "$e1" "$f0" "$f1" \
            "$(la)" >>"$tmp/phases.jsonl" <<'PYEOF'
import json, os, sys
tmp, n = sys.argv[1], int(sys.argv[2])
t0, t1, a0, a1, b0, b1, e0, e1 = map(float, sys.argv[3:11])
f0, f1 = int(float(sys.argv[11])), int(float(sys.argv[12]))
cons = []
for i in range(1, n + 1):
    try:
        lines = [l.split() for l in open(os.path.join(tmp, "cons%d.marks" % i)) if l.startswith("mark")]
        m0, m1 = lines[-2], lines[-1]
        cons.append({"i": i, "secs": (int(m1[1]) - int(m0[1])) / 1e9,
                     "cpu": float(m1[2]) - float(m0[2]), "deltas": int(m1[3]) - int(m0[3]),
                     "frames": int(m1[4]) - int(m0[4]), "gaps": int(m1[5]) - int(m0[5])})
    except Exception as e:
        cons.append({"i": i, "error": "no marks (%s)" % e})
print(json.dumps({"n": n, "secs": t1 - t0, "adapter_cpu": a1 - a0, "broker_cpu": b1 - b0,
                  "exsim_cpu": e1 - e0, "adapter_frames": f1 - f0, "consumers": cons,
                  "la": sys.argv[13]}))
PYEOF
    done
    # the feed ends at EVENTS_QB: wait for the adapter to have everything
    for _ in $(seq 600); do
        [[ -s $tmp/quotebus.dump ]] && break
        sleep 0.1
    done
    local prev=-1 cur
    for _ in $(seq 100); do
        cur=$(json_get "$tmp/quotebus.adapter.stats" frames)
        [[ $cur == "$prev" ]] && break
        prev=$cur
        sleep 1
    done
    # the broker's book, as a /ws client sees it
    $PY - "$HTTP_PORT" "$tmp/quotebus.book" <<'PYEOF' 2>>"$tmp/quotebus.err"
import asyncio, json, sys
import websockets
async def main():
    async with websockets.connect("ws://127.0.0.1:%s/ws" % sys.argv[1], max_size=None) as ws:
        await ws.send(json.dumps({"op": "subscribe", "topics": ["book.binance.BTC-USDT"]}))
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if m.get("type") == "snapshot":
                json.dump({"lastUpdateId": m.get("lid"), "seq": m.get("seq"), "bids": m["bids"],
                           "asks": m["asks"]}, open(sys.argv[2], "w"))
                return
asyncio.run(main())
PYEOF
    # the consumers end by themselves 3 s after their last delta
    local p
    for _ in $(seq 300); do
        for p in "${cpids[@]}"; do kill -0 "$p" 2>/dev/null && break; p=; done
        [[ -z $p ]] && break
        sleep 0.1
    done
    kill "${cpids[@]}" 2>/dev/null
    for p in "${cpids[@]}"; do wait "$p" 2>/dev/null; done
    $PY - "$tmp/quotebus.adapter.stats" >"$tmp/quotebus.json" <<'PYEOF'
import json, sys
st = json.load(open(sys.argv[1]))
print(json.dumps({"client": "quotebus", "resyncs": st.get("resyncs"), "gaps": st.get("gaps"),
                  "msgs_total": st.get("frames"),
                  "last_update_id": st.get("symbols", {}).get("BTC-USDT", {}).get("last_update_id")}))
PYEOF
    echo "$ncons" >"$tmp/ncons"
    kill "$apid" "$bpid" 2>/dev/null
    wait "$apid" "$bpid" 2>/dev/null
    exsim_stop quotebus
}


# floor: one qb-bench-consumer (the libquotebus mirror) and two
# qb-bench-nng-recv (NNG alone, no decoding, no book, libquotebus's socket
# options: --mode block, a thread in nng_recvmsg; --mode aio, nng_recv_aio
# callbacks on NNG's threads) on the same broker and topic, measured
# over the same window: both receive the same frames, so the consumer's
# deltas per frame give the floor's CPU per delta. Context switches of all
# threads of each from /proc/PID/task/*/status. With PERF=1 a perf profile
# of the consumer and then of each receiver (PERF_SECS s each).
run_floor() {
    local ev=$((RATE * (WARMUP + SECS + 3 * PERF_SECS + 12)))
    exsim_start floor "$ev" || return 1
    pipeline_start floor --snapshot "ipc://$tmp/floor.snap.ipc" --http-listen off
    local apid=$APID bpid=$BPID
    local maxrun=$((WARMUP + SECS + 3 * PERF_SECS + 120))
    "$B/qb-bench-consumer" --connect "ipc://$tmp/floor.out.ipc" --snapshot "ipc://$tmp/floor.snap.ipc" \
        --topic book.binance.BTC-USDT --marks "$tmp/floor.cons.marks" --label floor-consumer \
        --idle 3 --max-run "$maxrun" >"$tmp/floor.cons.json" 2>"$tmp/floor.cons.err" &
    local cpid=$!
    pids+=("$cpid")
    local rpid xpid mode
    for mode in block aio; do
        "$B/qb-bench-nng-recv" --connect "ipc://$tmp/floor.out.ipc" --topic book.binance.BTC-USDT \
            --mode "$mode" --marks "$tmp/floor.$mode.marks" --label "floor-nng-$mode" --idle 3 \
            --max-run "$maxrun" >"$tmp/floor.$mode.json" 2>"$tmp/floor.$mode.err" &
        pids+=($!)
        if [[ $mode == block ]]; then rpid=$!; else xpid=$!; fi
    done
    sleep "$WARMUP"
    log "floor: consumer + two NNG-only receivers, window $SECS s"
    local c0 r0 x0 c1 r1 x1
    kill -USR1 "$cpid" "$rpid" "$xpid"
    c0=$(ctxsw $cpid); r0=$(ctxsw $rpid); x0=$(ctxsw $xpid)
    sleep "$SECS"
    kill -USR1 "$cpid" "$rpid" "$xpid"
    c1=$(ctxsw $cpid); r1=$(ctxsw $rpid); x1=$(ctxsw $xpid)
    echo "$c0 $c1 $r0 $r1 $x0 $x1 $(la)" >"$tmp/floor.ctxsw"
    if [[ ${PERF:-1} == 1 ]] && command -v perf >/dev/null; then
        local who pid
        for who in cons block aio; do
            pid=$cpid
            [[ $who == block ]] && pid=$rpid
            [[ $who == aio ]] && pid=$xpid
            log "floor: perf on the $who process, $PERF_SECS s"
            perf record -e cpu-clock -F 2000 -g -p "$pid" -o "$tmp/floor.$who.perf" \
                -- sleep "$PERF_SECS" >/dev/null 2>"$tmp/floor.$who.perf.log"
            perf report -i "$tmp/floor.$who.perf" --no-children -g none --sort dso 2>/dev/null |
                grep -v '^#' | grep -v '^$' | head -8 >"$tmp/floor.$who.dso"
            perf report -i "$tmp/floor.$who.perf" --no-children -g none --sort dso,sym 2>/dev/null |
                grep -v '^#' | grep -v '^$' | awk '$1 + 0 >= 0.8' | head -20 >"$tmp/floor.$who.sym"
        done
    fi
    kill "$cpid" "$rpid" "$xpid" "$apid" "$bpid" 2>/dev/null
    wait "$cpid" "$rpid" "$xpid" "$apid" "$bpid" 2>/dev/null
    kill "$EPID" 2>/dev/null
    wait "$EPID" 2>/dev/null
}

# sweep: the adapter alone (adapter + broker, no consumer) at each rate of
# SWEEP_RATES for SWEEP_SECS s after 2 s of live feed: CPU per message of the
# adapter, the broker and the simulator (which shares the 2 CPUs), whether
# everything kept up; at PERF_RATE (if perf is installed and PERF=1) a perf
# profile of the adapter (cpu-clock, -g) for PERF_SECS s after the window and
# a count of its system calls (perf stat -e raw_syscalls:sys_enter).
run_sweep() {
    local r ev apid bpid t0 a0 b0 e0 f0 x0 p0 t1 a1 b1 e1 f1 x1 p1
    : >"$tmp/sweep.jsonl"
    for r in $SWEEP_RATES; do
        ev=$((r * (SWEEP_SECS + 12)))
        exsim_start "sweep$r" "$ev" "$r" || continue
        pipeline_start "sweep$r" --snapshot off --http-listen off
        apid=$APID
        bpid=$BPID
        sleep 2
        log "sweep: rate $r/s, window $SWEEP_SECS s"
        stats_sync "$tmp/sweep$r.adapter.stats"
        t0=$(date +%s.%N); a0=$(cpu_s $apid); b0=$(cpu_s $bpid); e0=$(cpu_s $EPID)
        f0=$(json_get "$tmp/sweep$r.adapter.stats" frames)
        p0=$(json_get "$tmp/sweep$r.adapter.stats" publish_frames)
        x0=$(json_get "$tmp/sweep$r.exsim.stats" events_generated)
        sleep "$SWEEP_SECS"
        stats_sync "$tmp/sweep$r.adapter.stats"
        t1=$(date +%s.%N); a1=$(cpu_s $apid); b1=$(cpu_s $bpid); e1=$(cpu_s $EPID)
        f1=$(json_get "$tmp/sweep$r.adapter.stats" frames)
        p1=$(json_get "$tmp/sweep$r.adapter.stats" publish_frames)
        x1=$(json_get "$tmp/sweep$r.exsim.stats" events_generated)
        if [[ ${PERF:-1} == 1 && $r == "$PERF_RATE" ]] && command -v perf >/dev/null; then
            log "sweep: perf on the adapter at $r/s, $PERF_SECS s"
            perf stat -e raw_syscalls:sys_enter -x, -o "$tmp/perf.stat" -p "$apid" -- sleep 2 \
                >/dev/null 2>&1
            local q0 q1
            q0=$(json_get "$tmp/sweep$r.adapter.stats" frames)
            perf record -e cpu-clock -F 2000 -g -p "$apid" -o "$tmp/perf.data" -- sleep "$PERF_SECS" \
                >/dev/null 2>"$tmp/perf.record.log"
            q1=$(json_get "$tmp/sweep$r.adapter.stats" frames)
            echo "$q0 $q1" >"$tmp/perf.frames"
            echo "$f0 $f1 $t0 $t1" >"$tmp/perf.window"
        fi
        $PY - "$r" "$t0" "$t1" "$a0" "$a1" "$b0" "$b1" "$e0" "$e1" "$f0" "$f1" "$p0" "$p1" "$x0" "$x1" \
            "$tmp/sweep$r.exsim.stats" "$tmp/sweep$r.adapter.stats" "$(la)" >>"$tmp/sweep.jsonl" <<'PYEOF'
import json, sys
a = sys.argv
r = int(a[1])
t0, t1, a0, a1, b0, b1, e0, e1 = map(float, a[2:10])
f0, f1, p0, p1, x0, x1 = (int(float(v)) for v in a[10:16])
def js(p):
    try:
        return json.load(open(p))
    except Exception:
        return {}
ex, ad = js(a[16]), js(a[17])
print(json.dumps({"rate": r, "secs": t1 - t0, "msgs": f1 - f0, "frames_out": p1 - p0,
                  "generated": x1 - x0, "adapter_cpu": a1 - a0, "broker_cpu": b1 - b0,
                  "exsim_cpu": e1 - e0, "slow_closes": ex.get("slow_consumer_closes"),
                  "resyncs": ad.get("resyncs"), "gaps": ad.get("gaps"), "la": a[18]}))
PYEOF
        kill "$apid" "$bpid" "$EPID" 2>/dev/null
        wait "$apid" "$bpid" "$EPID" 2>/dev/null
    done
}

for c in $CLIENTS; do
    log "running $c (rate $RATE/s, warm-up $WARMUP s, window $SECS s)"
    echo "$(la)" >"$tmp/$c.la0"
    "run_$c"
    echo "$(la)" >"$tmp/$c.la1"
done

{
    echo "## What users run today: one Binance feed; Python, ccxt, and quotebus with N consumer programs"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, build $BUILD. quotebus-exsim (wss, test CA),"
    echo "BTCUSDT depth at $RATE events/s of about $CHANGES level changes (then the feed stops), warm-up $WARMUP s,"
    echo "windows of $SECS s; runs one after the other, each on a fresh simulator; quotebus phases N = $NS"
    echo "in one run (consumers added between phases, $SETTLE s before each window)."
    echo
    RATE=$RATE PERF_RATE=$PERF_RATE PERF_SECS=$PERF_SECS SECS_ENV=$SECS $PY - "$tmp" $CLIENTS <<'EOF2'
import json, os, sys
from decimal import Decimal
tmp, clients = sys.argv[1], sys.argv[2:]

def load(name):
    try:
        with open(os.path.join(tmp, name + ".json")) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except Exception as e:
        return {"client": name, "error": "no result (%s)" % e}

def la(c):
    try:
        return open(os.path.join(tmp, c + ".la0")).read().strip() + " -> " + \
            open(os.path.join(tmp, c + ".la1")).read().strip()
    except OSError:
        return ""

res = {}
for c in clients:
    if c == "python2":
        res["python2a"], res["python2b"] = load("python2a"), load("python2b")
    elif c not in ("quotebus", "sweep", "floor"):
        res[c] = load(c)
phases = []
if "quotebus" in clients:
    res["quotebus"] = load("quotebus")
    try:
        phases = [json.loads(l) for l in open(os.path.join(tmp, "phases.jsonl")) if l.strip()]
    except OSError:
        pass

def ok(r):
    return "msgs_per_cpu_s" in r and r["msgs_per_cpu_s"] > 0

base = res["python"]["msgs_per_cpu_s"] if ok(res.get("python", {})) else None
P = 1e6 / base if base else None  # Python's us of CPU per message (one client)

RATE = float(os.environ.get("RATE", "20000"))
SECS_ENV = os.environ.get("SECS_ENV", "?")
def kept(mps):
    # within a window a consumer that keeps up receives the feed's rate
    return "yes" if mps >= 0.97 * RATE else "**no** (%.0f %%)" % (100.0 * mps / RATE)

def ratio(mpc):
    return "%.1fx" % (mpc / base) if base and mpc else "?"

# per phase figures
for ph in phases:
    cs = [c for c in ph["consumers"] if "error" not in c and c["secs"] > 0 and c["cpu"] > 0]
    ph["ok_cons"] = cs
    ph["mps"] = sum(c["deltas"] / c["secs"] for c in cs) / len(cs) if cs else 0
    ph["msgs"] = ph["mps"] * ph["secs"]
    m = ph["msgs"]
    if m <= 0:
        continue
    ph["us_a"] = ph["adapter_cpu"] / m * 1e6
    ph["us_b"] = ph["broker_cpu"] / m * 1e6
    ph["us_c"] = [c["cpu"] / c["deltas"] * 1e6 if c["deltas"] else float("inf") for c in cs]
    ph["us_sum_c"] = sum(c["cpu"] for c in cs) / m * 1e6
    ph["us_total"] = ph["us_a"] + ph["us_b"] + ph["us_sum_c"]

print("### A. One program's cost: messages per CPU-second of each program alone (per-program ratio)")
print()
print("Python and ccxt each hold the book straight from the exchange; \"quotebus consumer\" is what a")
print("user's C program holding the same exact book through quotebus pays (qb-bench-consumer: libquotebus")
print("qb_mirror, whole process incl. NNG threads), measured in the N = 1 phase. The adapter and broker rows")
print("are the shared part, paid once however many programs consume (table C).")
print()
print("| program | messages/s | kept up with the feed | CPU-seconds per second | µs CPU per message | messages per CPU-second | per-program ratio vs Python | load before -> after |")
print("|---|---:|---|---:|---:|---:|---:|---|")
for c in ("python", "ccxt"):
    if c not in res:
        continue
    r = res[c]
    if not ok(r):
        print("| %s | %s | | | | | | %s |" % (c, r.get("error", "?"), la(c)))
        continue
    print("| %s | %.0f | %s | %.3f | %.1f | %.0f | %s | %s |" % (
        {"python": "python (hand-written, 1 client)", "ccxt": "ccxt (node)"}[c], r["msgs_per_s"],
        kept(r["msgs_per_s"]), r["cpu_per_s"], 1e6 / r["msgs_per_cpu_s"], r["msgs_per_cpu_s"], ratio(r["msgs_per_cpu_s"]), la(c)))
if phases and phases[0].get("msgs", 0) > 0 and phases[0]["ok_cons"]:
    ph = phases[0]
    c1 = ph["ok_cons"][0]
    mpc = c1["deltas"] / c1["cpu"]
    print("| **quotebus consumer (libquotebus mirror), one program** | %.0f | %s | %.3f | %.2f | %.0f | **%s** | %s |" % (
        c1["deltas"] / c1["secs"], kept(c1["deltas"] / c1["secs"]), c1["cpu"] / c1["secs"], 1e6 / mpc, mpc, ratio(mpc), la("quotebus")))
    for name, cpu in (("quotebus adapter (shared)", ph["adapter_cpu"]),
                      ("quotebus broker (shared)", ph["broker_cpu"]),
                      ("quotebus adapter + broker (shared)", ph["adapter_cpu"] + ph["broker_cpu"]),
                      ("quotebus adapter + broker + 1 consumer (whole system, N = 1)",
                       ph["adapter_cpu"] + ph["broker_cpu"] + c1["cpu"])):
        mpc = ph["msgs"] / cpu if cpu > 0 else 0
        print("| %s | %.0f | %s | %.3f | %.2f | %.0f | %s | |" % (name, ph["mps"], kept(ph["mps"]), cpu / ph["secs"],
              1e6 / mpc if mpc else 0, mpc, ratio(mpc)))
elif "quotebus" in clients:
    print("| quotebus | no phase result | | | | | | |")
print()

if "python2a" in res:
    print("### B. Two hand-written Python clients at once (is Python's cost linear in N?)")
    print()
    print("Two python_client.py processes on one simulator, two wss connections, the same window length.")
    print()
    print("| run | messages/s (each) | kept up | CPU-seconds per second | µs CPU per message per client | messages per CPU-second per client |")
    print("|---|---:|---|---:|---:|---:|")
    if base:
        r = res["python"]
        print("| 1 client (table A) | %.0f | %s | %.3f | %.1f | %.0f |" % (r["msgs_per_s"], kept(r["msgs_per_s"]),
              r["cpu_per_s"], P, base))
    two = [res[k] for k in ("python2a", "python2b") if ok(res[k])]
    for k in ("python2a", "python2b"):
        r = res[k]
        if ok(r):
            print("| 2 clients: %s | %.0f | %s | %.3f | %.1f | %.0f |" % (k[-1], r["msgs_per_s"],
                  kept(r["msgs_per_s"]), r["cpu_per_s"], 1e6 / r["msgs_per_cpu_s"], r["msgs_per_cpu_s"]))
        else:
            print("| 2 clients: %s | %s | | | | |" % (k[-1], r.get("error", "?")))
    if len(two) == 2:
        cps = sum(r["cpu_per_s"] for r in two)
        us2 = sum(1e6 / r["msgs_per_cpu_s"] for r in two) / 2
        print("| 2 clients: both | %.0f | | %.3f | %.1f (mean) | %.0f |" % (
            sum(r["msgs_per_s"] for r in two) / 2, cps, us2, 2 / sum(1 / r["msgs_per_cpu_s"] for r in two)))
        print()
        if base:
            print("Per message, each of two concurrent clients pays %.1f µs against %.1f µs alone (%.2f x): the"
                  % (us2, P, us2 / P))
            print("CPU for one exchange message is 2 x %.1f = %.1f µs with two clients, %.2f x the 1-client cost." %
                  (us2, 2 * us2, 2 * us2 / P))
            print("Each hand-written client pays the whole transport and parse again, so N clients cost N x the")
            print("1-client figure; table C uses N x %.1f µs for N Python clients." % P)
            if any(r["msgs_per_s"] < 0.97 * RATE for r in two + [res["python"]]):
                print("(A client that did not keep up with the feed (column \"kept up\") read larger batches per")
                print("wake-up, which lowers its per-message cost: the machine was busy; re-run idle.)")
    print()

if phases:
    print("### C. The whole system with N consumer programs at once (whole-system ratio)")
    print()
    print("Adapter + broker + N qb-bench-consumer processes (one exact book each), every process measured")
    print("over the same window. Per exchange message: adapter, broker, and each consumer's CPU; \"total\" =")
    print("adapter + broker + all N consumers; the N Python clients doing the same job would cost N x P,")
    print("P = %s µs (table A, justified by table B). Whole-system ratio = N x P / total. The simulator" %
          ("%.1f" % P if P else "?"))
    print("(the exchange) shares the 2 CPUs and is not counted in any row.")
    print()
    print("| N | messages/s (each consumer) | adapter µs/msg | broker µs/msg | consumer µs/msg (mean; min-max) | total µs per exchange message | total per consumer µs | N Python clients µs (N x P) | whole-system ratio vs N Python | simulator CPU-s/s | consumer gaps in window | load |")
    print("|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for ph in phases:
        if ph.get("msgs", 0) <= 0:
            print("| %d | no result | | | | | | | | | | |" % ph["n"])
            continue
        uc = ph["us_c"]
        n = ph["n"]
        bad = n - len(ph["ok_cons"])
        print("| %d | %.0f | %.2f | %.2f | %.2f; %.2f-%.2f%s | %.2f | %.2f | %s | %s | %.3f | %d | %s |" % (
            n, ph["mps"], ph["us_a"], ph["us_b"], sum(uc) / len(uc), min(uc), max(uc),
            " (%d without result)" % bad if bad else "", ph["us_total"], ph["us_total"] / n,
            "%.1f" % (n * P) if P else "?", "**%.1fx**" % (n * P / ph["us_total"]) if P else "?",
            ph["exsim_cpu"] / ph["secs"], sum(c["gaps"] for c in ph["ok_cons"]), ph.get("la", "")))
    print()
    good = [ph for ph in phases if ph.get("msgs", 0) > 0]
    if P and len(good) >= 2:
        # total(N) = F + N*V by least squares over the phases
        xs = [ph["n"] for ph in good]
        ys = [ph["us_total"] for ph in good]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        V = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0
        F = my - V * mx
        print("Fit over the phases (least squares): total(N) = F + N x V with F = %.2f µs (shared: adapter," % F)
        print("broker's fixed part) and V = %.2f µs (each added consumer: its own process plus the broker's" % V)
        print("fan-out to it). Whole-system ratio(N) = N x P / (F + N x V), P = %.1f µs; it tends to P / V =" % P)
        print("**%.1fx** as N grows." % (P / V if V > 0 else float("inf")))
        hit = [ph["n"] for ph in good if ph["n"] * P / ph["us_total"] >= 50]
        if hit:
            print("Measured: the whole system is at >= 50x from N = %d on (table above)." % min(hit))
        elif V > 0 and P > 50 * V:
            print("Not reached in the measured range; by the formula 50x needs N >= 50 x F / (P - 50 x V) = %.1f" %
                  (50 * F / (P - 50 * V)))
            print("(extrapolated, not measured).")
        else:
            print("**50x is not reached for any N**: that would need P / V > 50, i.e. each consumer program at")
            print("<= P / 50 = %.2f µs per message; it is at %.2f µs (%.1fx)." % (P / 50, V, P / V if V > 0 else 0))
        print()

def marks(path):
    try:
        ls = [l.split() for l in open(path) if l.startswith("mark")]
        m0, m1 = ls[0], ls[1]
        return {"secs": (int(m1[1]) - int(m0[1])) / 1e9, "cpu": float(m1[2]) - float(m0[2]),
                "deltas": int(m1[3]) - int(m0[3]), "frames": int(m1[4]) - int(m0[4]),
                "gaps": int(m1[5]) - int(m0[5]),
                "bytes": int(m1[6]) - int(m0[6]) if len(m1) > 6 else None}
    except Exception:
        return None

if "floor" in clients:
    fc = marks(os.path.join(tmp, "floor.cons.marks"))
    fr = marks(os.path.join(tmp, "floor.block.marks"))
    fa = marks(os.path.join(tmp, "floor.aio.marks"))
    try:
        cs = open(os.path.join(tmp, "floor.ctxsw")).read().split()
        c0, c1, r0, r1, x0, x1 = (int(v) for v in cs[:6])
        fla = " ".join(cs[6:])
    except Exception:
        c0 = c1 = r0 = r1 = x0 = x1 = 0
        fla = ""
    print("### G. The floor under a consumer program: NNG alone receiving the same frames")
    print()
    print("One more run on a fresh simulator (the same feed): adapter + broker, one qb-bench-consumer (the")
    print("libquotebus mirror, as in table A) and two qb-bench-nng-recv (`compare/nng_recv.c`: the same SUB")
    print("socket options as libquotebus, no decoding, no book; `--mode block`: one thread in nng_recvmsg +")
    print("nng_msg_free, as the mirror's thread; `--mode aio`: nng_recv_aio callbacks on NNG's own threads,")
    print("no thread of ours), all subscribed to the same topic and measured over the same %s s window" % SECS_ENV)
    print("(load %s). They receive the same frames, so a receiver's CPU per delta is its CPU per frame" % fla)
    print("divided by the consumer's deltas per frame. Context switches: voluntary + involuntary, all threads.")
    print()
    if fc and fr and fa and fc["frames"] > 0 and fr["frames"] > 0 and fa["frames"] > 0 and fc["deltas"] > 0:
        dpf = fc["deltas"] / fc["frames"]
        print("| process (same broker, topic and window) | frames | deltas | deltas/frame | CPU-s/s | µs CPU per frame | µs CPU per delta | context switches per frame | ceiling of the per-program ratio (P / µs per delta) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        rows = []
        for name, m, dc, cx in (
                ("NNG alone, a thread in nng_recvmsg (qb-bench-nng-recv --mode block)", fr, fr["frames"] * dpf, r1 - r0),
                ("NNG alone, nng_recv_aio callbacks (qb-bench-nng-recv --mode aio)", fa, fa["frames"] * dpf, x1 - x0),
                ("libquotebus mirror (qb-bench-consumer): receive, decode, apply", fc, fc["deltas"], c1 - c0)):
            usd = m["cpu"] / dc * 1e6
            rows.append(usd)
            print("| %s | %d | %.0f%s | %.1f | %.3f | %.1f | %.2f | %.1f | %s |" % (
                name, m["frames"], dc, " (frames x the consumer's deltas/frame)" if m is not fc else "",
                dpf, m["cpu"] / m["secs"], m["cpu"] / m["frames"] * 1e6, usd, cx / m["frames"],
                "%.1fx" % (P / usd) if P else "?"))
        print()
        print("Consumer gaps in the window: %d." % fc["gaps"])
        lo = min(rows[0], rows[1])
        if P:
            print()
            print("50x the hand-written Python client (P = %.1f µs per message, table A) allows a consumer" % P)
            print("program **%.2f µs per delta**. NNG alone, receiving the frames and doing nothing with them," % (P / 50))
            print("costs **%.2f µs per delta** here, the cheaper of its two ways (%.1fx that budget)%s" %
                  (lo, lo / (P / 50), ": no consumer" if lo > P / 50 else "."))
            if lo > P / 50:
                print("built on NNG 1.5.2 can reach 50x with this feed's frames on this machine, whatever its own")
                print("code costs; the ceiling with zero work is %.1fx." % (P / lo))
            print("The mirror's own work (decode + apply + its thread) is the difference to the blocking")
            print("receiver, %.2f µs per delta." % (rows[2] - rows[0]))
        print()
    else:
        print("no result (consumer marks %s, receiver marks %s)" % (fc, fr))
        print()
    for who, title in (("cons", "qb-bench-consumer"), ("block", "qb-bench-nng-recv --mode block"),
                       ("aio", "qb-bench-nng-recv --mode aio")):
        try:
            dso = open(os.path.join(tmp, "floor.%s.dso" % who)).read().rstrip()
            sym = open(os.path.join(tmp, "floor.%s.sym" % who)).read().rstrip()
        except OSError:
            continue
        if not dso:
            continue
        print("Profile of %s after the window (`perf record -e cpu-clock -F 2000 -g -p <pid> -- sleep %s`)," %
              (title, os.environ.get("PERF_SECS", "6")))
        print("`perf report --no-children --sort dso`, then `--sort dso,sym` (>= 0.8 %):")
        print()
        print("```")
        print(dso)
        print("```")
        print()
        print("```")
        print(sym)
        print("```")
        print()

sweep = []
try:
    sweep = [json.loads(l) for l in open(os.path.join(tmp, "sweep.jsonl")) if l.strip()]
except OSError:
    pass
if sweep:
    print("### E. The adapter alone: rate sweep (adapter + broker, no consumer)")
    print()
    print("One fresh simulator per rate, the same feed shape; CPU per message received by the adapter. The")
    print("simulator (TLS server, JSON generation) runs on the same 2 CPUs. \"kept up\": the adapter")
    print("received >= 97 % of the rate over the window (counters read right after a stats-file write),")
    print("no slow-consumer close at the simulator, no resync.")
    print()
    print("| rate (events/s) | adapter messages/s | adapter CPU-s/s | adapter µs/msg | messages per publish frame | broker µs/msg | simulator CPU-s/s | simulator µs/event | kept up | load |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    best = None
    for w in sweep:
        n, dt = w["msgs"], w["secs"]
        gen = w["generated"]
        kept = n >= 0.97 * w["rate"] * dt and not w.get("slow_closes") and not w.get("resyncs")
        if kept:
            best = w["rate"]
        why = "yes" if kept else "no (%s)" % ", ".join(x for x in (
            "received %.0f %% of the rate" % (100.0 * n / (w["rate"] * dt)) if n < 0.97 * w["rate"] * dt else "",
            "simulator generated %.0f/s" % (gen / dt) if gen < 0.97 * w["rate"] * dt else "",
            "slow-consumer close" if w.get("slow_closes") else "",
            "%s resyncs" % w.get("resyncs") if w.get("resyncs") else "") if x)
        print("| %d | %.0f | %.3f | %.2f | %s | %.2f | %.3f | %.2f | %s | %s |" % (
            w["rate"], n / dt, w["adapter_cpu"] / dt, w["adapter_cpu"] / n * 1e6 if n else 0,
            "%.1f" % (n / w["frames_out"]) if w["frames_out"] else "?",
            w["broker_cpu"] / n * 1e6 if n else 0, w["exsim_cpu"] / dt,
            w["exsim_cpu"] / gen * 1e6 if gen else 0, why, w["la"]))
    print()
    if best:
        print("Highest rate of the sweep kept up: %d events/s (the sweep's steps bound it; on 2 CPUs the" % best)
        print("simulator's own CPU is part of the limit).")
        print()
    pd = os.path.join(tmp, "perf.data")
    if os.path.exists(pd):
        import subprocess
        def perf_report(*args):
            try:
                return subprocess.run(["perf", "report", "-i", pd, "--stdio", "--no-children"] + list(args),
                                      capture_output=True, text=True, timeout=120).stdout
            except Exception as e:
                return "perf report failed: %s" % e
        try:
            q0, q1 = map(int, open(os.path.join(tmp, "perf.frames")).read().split())
        except Exception:
            q0 = q1 = 0
        print("Adapter profile at the perf rate (`perf record -e cpu-clock -F 2000 -g -p <adapter>`, %d" % (q1 - q0))
        print("messages during the profile), `perf report --no-children --sort dso`:")
        print()
        print("```")
        print("\n".join(l for l in perf_report("--sort", "dso", "-g", "none").splitlines()
                        if l.strip() and not l.startswith("#"))[:3000])
        print("```")
        print()
        print("Top symbols (`--sort dso,sym`, >= 0.8 %):")
        print()
        print("```")
        print("\n".join(l for l in perf_report("--sort", "dso,sym", "-g", "none",
                        "--percent-limit", "0.8").splitlines() if l.strip() and not l.startswith("#"))[:5000])
        print("```")
        print()
        try:
            st = open(os.path.join(tmp, "perf.stat")).read()
            cnt = [l.split(",")[0] for l in st.splitlines() if "raw_syscalls" in l]
            w = [x for x in sweep if x["rate"] == int(os.environ.get("PERF_RATE", "20000"))]
            if cnt and w:
                mps = w[0]["msgs"] / w[0]["secs"]
                print("System calls of the adapter (`perf stat -e raw_syscalls:sys_enter`, 2 s): %s, i.e. about"
                      % cnt[0])
                print("%.2f per message at %.0f messages/s." % (float(cnt[0]) / 2 / mps, mps))
                print()
        except Exception:
            pass

def load_dump(path):
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            if d.get("symbol") == "BTCUSDT":
                return d
    return None

def norm(levels):
    out = {}
    for p, q in levels:
        q = Decimal(str(q))
        if q != 0:
            out[Decimal(str(p))] = q
    return out

print("### D. Correctness: every consumer's final book against the simulator's --dump (same feed)")
print()
print("| consumer | messages handled | final update id or seq (expected) | bids / asks (dump) | book |")
print("|---|---|---|---|---|")
rows = []
for c in clients:
    if c == "python2":
        rows += [("python2a", "python2", res["python2a"]), ("python2b", "python2", res["python2b"])]
    elif c == "quotebus":
        rows.append(("quotebus broker (its /ws snapshot)", "quotebus", res["quotebus"], "quotebus"))
        try:
            ncons = int(open(os.path.join(tmp, "ncons")).read())
        except (OSError, ValueError):
            ncons = 0
        for i in range(1, ncons + 1):
            rows.append(("quotebus consumer %d (libquotebus mirror)" % i, "quotebus", load("cons%d" % i),
                         "cons%d" % i))
    elif c not in ("sweep", "floor"):
        rows.append((c, c, res[c]))
broker_seq = None
try:
    broker_seq = json.load(open(os.path.join(tmp, "quotebus.book"))).get("seq")
except Exception:
    pass
for row in rows:
    label, dname, r = row[0], row[1], row[2]
    bname = row[3] if len(row) > 3 else label
    dump_path = os.path.join(tmp, dname + ".dump")
    book_path = os.path.join(tmp, bname + ".book")
    d = load_dump(dump_path) if os.path.exists(dump_path) else None
    handled = r.get("msgs_total", r.get("deltas", "?"))
    if d is None or not os.path.exists(book_path):
        print("| %s | %s | | | NOT COMPARED (no %s) |" % (label, handled, "dump" if d is None else "book"))
        continue
    try:
        b = json.load(open(book_path))
    except Exception as e:
        print("| %s | %s | | | NOT COMPARED (bad book: %s) |" % (label, handled, e))
        continue
    db, da = norm(d["bids"]), norm(d["asks"])
    cb, ca = norm(b["bids"]), norm(b["asks"])
    diff = sum(1 for k in set(db) | set(cb) if db.get(k) != cb.get(k)) + \
        sum(1 for k in set(da) | set(ca) if da.get(k) != ca.get(k))
    verdict = "identical" if diff == 0 else "DIFFERS: %d price levels" % diff
    if b.get("lastUpdateId") not in (None, d["lastUpdateId"]):
        verdict += " (update id %s, not the last)" % b.get("lastUpdateId")
    if "deltas" in r:  # a qb-bench-consumer
        ids = "seq %s (broker %s)" % (b.get("seq"), broker_seq)
        if b.get("seq") != b.get("seq_asks") or (broker_seq is not None and b.get("seq") != broker_seq):
            verdict += " (seq differs)"
        if r.get("state") != "live":
            verdict += " (state %s)" % r.get("state")
        verdict += "; gaps %s, snapshots %s service + %s stream" % (
            r.get("gaps"), r.get("service_snapshots"), r.get("stream_snapshots"))
    else:
        ids = "%s (%s)" % (b.get("lastUpdateId"), d["lastUpdateId"])
        if b.get("seq") is not None:
            ids += ", seq %s" % b.get("seq")
    print("| %s | %s | %s | %d / %d (%d / %d) | %s |" % (label, handled, ids, len(cb), len(ca),
          len(db), len(da), verdict))
print()
print("Raw results (JSON lines):")
print()
print("```")
for k, r in res.items():
    print(json.dumps(dict(r, client=k)))
for ph in phases:
    print(json.dumps({k: v for k, v in ph.items() if k not in ("ok_cons",)}))
print("```")
EOF2
    for f in "$tmp"/*.err; do
        [[ -s $f ]] || continue
        echo
        echo "$(basename "$f" .err) stderr (last lines):"
        echo
        echo '```'
        tail -5 "$f"
        echo '```'
    done
} | if [[ -n $OUT ]]; then tee "$OUT"; else cat; fi
