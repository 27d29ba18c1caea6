#!/usr/bin/env bash
# run-compare.sh [OUT.md]: issue 8 part 6, "what users run today". The same
# quotebus-exsim Binance feed (wss with a throw-away test CA, one symbol
# BTCUSDT, --rate depth events/s, deterministic: same --seed/--rate/--events
# -> same events and the same final book) consumed three ways, one after the
# other, each against its own fresh simulator:
#   python   python_client.py (/usr/bin/python3 + Debian python3-websockets)
#   ccxt     ccxt_client.mjs (node + ccxt pro watchOrderBook, npm-installed
#            into ./node_modules on first use)
#   quotebus quotebus-adapter binance --ca-file + quotebus-broker --no-spawn
# Each is measured over the same window (WARMUP s after it is live, then SECS
# s): messages received and CPU-seconds (python: time.process_time; ccxt:
# process.cpuUsage; quotebus: utime+stime of the adapter, and of adapter +
# broker, from /proc/PID/stat; messages = the adapter's "frames" counter).
# Afterwards every consumer's final book is compared with the simulator's
# --dump (python/ccxt: the book they hold; quotebus: the broker's book, a
# snapshot taken over its /ws). Prints markdown tables (stdout, and OUT.md).
# Environment (defaults in brackets):
#   BUILD     build directory with quotebus-exsim/-adapter/-broker [<repo>/build-bench8]
#   NO_BUILD  1: use the binaries already built
#   RATE      depth events per second [20000]
#   CHANGES   random level changes per event (exsim --changes; 0 = 1..4, tiny events) [20]
#   WARMUP    seconds after the consumer is live before the window [5]
#   SECS      measurement window, seconds [30]
#   CLIENTS   which consumers [python ccxt quotebus]
#   NO_NPM    1: never run npm (ccxt is skipped when not installed)
#   HTTP_PORT the broker's HTTP port for the final book [17790]
# With defaults: about 3 x (WARMUP + SECS + ~10 s), i.e. 2-3 minutes.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
BUILD=${BUILD:-$root/build-bench8}
RATE=${RATE:-20000}
CHANGES=${CHANGES:-20}
WARMUP=${WARMUP:-5}
SECS=${SECS:-30}
CLIENTS=${CLIENTS-"python ccxt quotebus"}
HTTP_PORT=${HTTP_PORT:-17790}
OUT=${1:-}
PY=/usr/bin/python3
B=$BUILD/bin
# enough events for warm-up + window + start-up slack; the feed then stops
# and --dump holds the final book
EVENTS=$((RATE * (WARMUP + SECS + 15)))

if [[ ${NO_BUILD:-0} != 1 ]]; then
    cmake -S "$root" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
    if ! cmake --build "$BUILD" --target quotebus-exsim quotebus-adapter quotebus-broker -j2 \
        >"$BUILD/compare-build.log" 2>&1; then
        echo "run-compare.sh: build failed (see $BUILD/compare-build.log); using the binaries in $B" >&2
    fi
fi
for bin in quotebus-exsim quotebus-adapter quotebus-broker; do
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
log() { echo "run-compare.sh: $*" >&2; }
# cpu_s PID: utime+stime in seconds
cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}
# json_get FILE KEY: a top-level number from a JSON file
json_get() {
    $PY -c 'import json,sys
try: print(json.load(open(sys.argv[1])).get(sys.argv[2], 0))
except Exception: print(0)' "$1" "$2"
}

"$root/tests/integration/gen-test-ca.sh" "$tmp/certs" >/dev/null 2>&1 || { log "gen-test-ca.sh failed (openssl?)"; exit 1; }
CA=$tmp/certs/ca.pem

# exsim_start NAME: fresh simulator, sets EPORT and EPID
exsim_start() {
    local name=$1
    rm -f "$tmp/$name.port"
    "$B/quotebus-exsim" --exchange binance --host 127.0.0.1 --port 0 --port-file "$tmp/$name.port" \
        --tls-cert "$tmp/certs/server.pem" --tls-key "$tmp/certs/server.key" \
        --symbols BTCUSDT --rate "$RATE" --changes "$CHANGES" --events "$EVENTS" --trade-rate 0 --ticker-every 0 \
        --max-queue $((EVENTS + 1000)) --dump "$tmp/$name.dump" --stats-file "$tmp/$name.exsim.stats" \
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

declare -A RES
run_python() {
    exsim_start python || return 1
    timeout $((WARMUP + SECS + 300)) $PY "$here/python_client.py" --ws "wss://127.0.0.1:$EPORT" \
        --rest "https://127.0.0.1:$EPORT" --ca "$CA" --warmup "$WARMUP" --seconds "$SECS" \
        --max-run $((WARMUP + SECS + 240)) --book-out "$tmp/python.book" >"$tmp/python.json" \
        2>"$tmp/python.err" || log "python client failed: $(tail -3 "$tmp/python.err")"
    exsim_stop python
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

run_quotebus() {
    exsim_start quotebus || return 1
    "$B/quotebus-broker" --no-spawn --ingest "ipc://$tmp/in.ipc" --pub "ipc://$tmp/out.ipc" \
        --snapshot off --http-listen "127.0.0.1:$HTTP_PORT" --stats-file "$tmp/broker.stats" \
        --log-level warn >"$tmp/broker.log" 2>&1 &
    local bpid=$!
    pids+=("$bpid")
    sleep 0.3
    "$B/quotebus-adapter" binance --symbols BTC-USDT --no-tickers \
        --ws-url "wss://127.0.0.1:$EPORT/stream" --rest-url "https://127.0.0.1:$EPORT" --ca-file "$CA" \
        --broker "ipc://$tmp/in.ipc" --stats-file "$tmp/adapter.stats" --log-level warn \
        2>"$tmp/adapter.log" &
    local apid=$!
    pids+=("$apid")
    # live: the adapter has published
    for _ in $(seq 200); do
        [[ $(json_get "$tmp/adapter.stats" published) -gt 0 ]] 2>/dev/null && break
        sleep 0.1
    done
    sleep "$WARMUP"
    local t0 a0 b0 f0 t1 a1 b1 f1
    t0=$(date +%s.%N); a0=$(cpu_s $apid); b0=$(cpu_s $bpid); f0=$(json_get "$tmp/adapter.stats" frames)
    sleep "$SECS"
    t1=$(date +%s.%N); a1=$(cpu_s $apid); b1=$(cpu_s $bpid); f1=$(json_get "$tmp/adapter.stats" frames)
    # the feed ends at EVENTS: wait for the adapter to have everything
    for _ in $(seq 600); do
        [[ -s $tmp/quotebus.dump ]] && break
        sleep 0.1
    done
    local prev=-1 cur
    for _ in $(seq 100); do
        cur=$(json_get "$tmp/adapter.stats" frames)
        [[ $cur == "$prev" ]] && break
        prev=$cur
        sleep 1
    done
    # the broker's book, as a /ws client sees it
    $PY - "$HTTP_PORT" "$tmp/quotebus.book" <<'EOF' 2>>"$tmp/quotebus.err"
import asyncio, json, sys
import websockets
async def main():
    async with websockets.connect("ws://127.0.0.1:%s/ws" % sys.argv[1], max_size=None) as ws:
        await ws.send(json.dumps({"op": "subscribe", "topics": ["book.binance.BTC-USDT"]}))
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if m.get("type") == "snapshot":
                json.dump({"lastUpdateId": m.get("lid"), "bids": m["bids"], "asks": m["asks"]},
                          open(sys.argv[2], "w"))
                return
asyncio.run(main())
EOF
    $PY - "$t0" "$t1" "$a0" "$a1" "$b0" "$b1" "$f0" "$f1" "$tmp/adapter.stats" >"$tmp/quotebus.json" <<'EOF'
import json, sys
t0, t1, a0, a1, b0, b1 = map(float, sys.argv[1:7])
f0, f1 = int(sys.argv[7]), int(sys.argv[8])
st = json.load(open(sys.argv[9]))
dt = t1 - t0
n = f1 - f0
ca, cb = a1 - a0, b1 - b0
print(json.dumps({"client": "quotebus", "msgs": n, "secs": round(dt, 3), "cpu_secs": round(ca, 3),
                  "msgs_per_s": n / dt, "cpu_per_s": ca / dt,
                  "msgs_per_cpu_s": n / ca if ca > 0 else 0, "broker_cpu_secs": round(cb, 3),
                  "msgs_per_cpu_s_with_broker": n / (ca + cb) if ca + cb > 0 else 0,
                  "resyncs": st.get("resyncs"), "gaps": st.get("gaps"),
                  "msgs_total": st.get("frames"),
                  "last_update_id": st.get("symbols", {}).get("BTC-USDT", {}).get("last_update_id")}))
EOF
    kill "$apid" "$bpid" 2>/dev/null
    wait "$apid" "$bpid" 2>/dev/null
    exsim_stop quotebus
}

for c in $CLIENTS; do
    log "running $c (rate $RATE/s, warm-up $WARMUP s, window $SECS s)"
    echo "$(la)" >"$tmp/$c.la0"
    "run_$c"
    echo "$(la)" >"$tmp/$c.la1"
done

{
    echo "## What users run today (issue 8 part 6): one Binance feed, three consumers"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, build $BUILD. quotebus-exsim (wss, test CA),"
    echo "BTCUSDT depth at $RATE events/s of about $CHANGES level changes ($EVENTS events, then the feed stops), warm-up $WARMUP s,"
    echo "window $SECS s; consumers run one after the other, each on a fresh simulator."
    echo
    $PY - "$tmp" $CLIENTS <<'EOF'
import json, os, sys
from decimal import Decimal
tmp, clients = sys.argv[1], sys.argv[2:]
res = {}
for c in clients:
    try:
        with open(os.path.join(tmp, c + ".json")) as f:
            res[c] = json.loads(f.read().strip().splitlines()[-1])
    except Exception as e:
        res[c] = {"client": c, "error": "no result (%s)" % e}
base = res.get("python", {}).get("msgs_per_cpu_s")
print("| client | messages/s | CPU-seconds per second | messages per CPU-second | ratio vs Python | load before -> after |")
print("|---|---|---|---|---|---|")
def la(c):
    try:
        return open(os.path.join(tmp, c + ".la0")).read().strip() + " -> " + \
            open(os.path.join(tmp, c + ".la1")).read().strip()
    except OSError:
        return "?"
for c in clients:
    r = res[c]
    if "error" in r and "msgs_per_s" not in r:
        print("| %s | %s | | | | %s |" % (c, r["error"], la(c)))
        continue
    ratio = "%.1fx" % (r["msgs_per_cpu_s"] / base) if base else "?"
    print("| %s | %.0f | %.3f | %.0f | %s | %s |" % (
        {"quotebus": "quotebus adapter"}.get(c, c), r["msgs_per_s"], r["cpu_per_s"],
        r["msgs_per_cpu_s"], ratio, la(c)))
    if c == "quotebus":
        cpu = r["cpu_secs"] + r["broker_cpu_secs"]
        ratio = "%.1fx" % (r["msgs_per_cpu_s_with_broker"] / base) if base else "?"
        print("| quotebus adapter + broker | %.0f | %.3f | %.0f | %s | |" % (
            r["msgs_per_s"], cpu / r["secs"], r["msgs_per_cpu_s_with_broker"], ratio))
print()

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

print("Correctness: each consumer's final book against the simulator's --dump (same feed).")
print()
print("| client | messages handled | final update id (dump) | bids / asks (dump) | book |")
print("|---|---|---|---|---|")
for c in clients:
    r = res[c]
    dump_path = os.path.join(tmp, c + ".dump")
    book_path = os.path.join(tmp, c + ".book")
    d = load_dump(dump_path) if os.path.exists(dump_path) else None
    if d is None or not os.path.exists(book_path):
        print("| %s | %s | | | not compared (no %s) |" % (c, r.get("msgs_total", "?"),
              "dump" if d is None else "book"))
        continue
    b = json.load(open(book_path))
    db, da = norm(d["bids"]), norm(d["asks"])
    cb, ca = norm(b["bids"]), norm(b["asks"])
    diff = sum(1 for k in set(db) | set(cb) if db.get(k) != cb.get(k)) + \
        sum(1 for k in set(da) | set(ca) if da.get(k) != ca.get(k))
    verdict = "identical" if diff == 0 else "DIFFERS: %d price levels" % diff
    if b.get("lastUpdateId") not in (None, d["lastUpdateId"]):
        verdict += " (update id %s, not the last)" % b.get("lastUpdateId")
    print("| %s | %s | %s (%s) | %d / %d (%d / %d) | %s |" % (
        c, r.get("msgs_total", "?"), b.get("lastUpdateId"), d["lastUpdateId"], len(cb), len(ca),
        len(db), len(da), verdict))
print()
print("Raw results (JSON lines):")
print()
print("```")
for c in clients:
    print(json.dumps(res[c]))
print("```")
EOF
    for c in $CLIENTS; do
        if [[ -s $tmp/$c.err ]]; then
            echo
            echo "$c stderr (last lines):"
            echo
            echo '```'
            tail -5 "$tmp/$c.err"
            echo '```'
        fi
    done
} | if [[ -n $OUT ]]; then tee "$OUT"; else cat; fi
