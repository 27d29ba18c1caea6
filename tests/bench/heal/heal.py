#!/usr/bin/python3
"""heal.py: heal time of books under a drop storm (one row of run-heal.sh).

  quotebus-exsim --drop-rate R  ->  quotebus-adapter EX  ->  quotebus-broker
      (plain ws/http, loopback)          --no-spawn          -> quotebus-sub book.EX. status.EX.

The simulator drops random depth events of every symbol (each one logged
exsim_fault_drop with its symbol, its last update id and the wall-clock time
t0 at which it was generated), so the adapter sees sequence gaps and resyncs.
The heal time of a drop is t1 - t0, where t1 is the adapter's receive time
(rts) of the first non-refresh book snapshot of that symbol on the bus whose
last update id is at or past the dropped event's: the first book that holds
the lost data again. A drop that lands while its symbol already waits for a
snapshot is healed by that snapshot too, and counts with its own t0.

The storm runs from --warmup-s after each symbol's generation starts for
--storm-s; the run then waits until every drop has healed (at most
--settle-s) and prints one markdown row: drops, heals, p50/p99/max heal time,
unhealed drops, and the adapter's resyncs and snapshot requests.

Nothing here is pass/fail: figures go to docs/BENCHMARKS.md (section "Heal time
under a drop storm"). Standard library only; reuses tests/integration/qbtest.py
for processes and temp dirs.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))
import qbtest  # noqa: E402


def symbols_for(n):
    base = ["BTC", "ETH"] + ["X%02d" % i for i in range(n)]
    return ["%s-USDT" % b for b in base[:n]]


def native(exchange, sym):
    s = sym.replace("-", "")
    return s.lower() if exchange == "htx" else s


def pct(v, p):
    """Nearest-rank percentile of the sorted list v."""
    if not v:
        return None
    k = max(1, -(-len(v) * p // 100))
    return v[int(k) - 1]


def drops_of(sim):
    out = []
    for ln in sim.stderr_text().splitlines():
        if "exsim_fault_drop" not in ln:
            continue
        kv = dict(x.split("=", 1) for x in ln.split() if "=" in x)
        out.append((kv["sym"], int(kv["last"]), int(kv["t_ns"])))
    return out


class Snaps:
    """Non-refresh snapshots per native symbol from quotebus-sub's lines."""

    def __init__(self, proc):
        self.f = open(proc.out_path, "rb")
        self.proc = proc
        self.buf = b""
        self.by_sym = {}
        self.statuses = {}

    def poll(self):
        self.proc.out.flush()
        data = self.f.read()
        if not data:
            return
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for ln in lines:
            if not ln.strip():
                continue
            m = json.loads(ln)
            if m["type"] == "snapshot" and not m.get("refresh"):
                self.by_sym.setdefault(m["nsym"], []).append((m["lid"], m["rts"]))
            elif m["type"] == "status":
                self.statuses.setdefault(m["nsym"], []).append((m["state"], m["reason"]))


def heal_times(drops, snaps):
    healed, open_ = [], []
    for sym, last, t0 in drops:
        t1 = next((rts for lid, rts in snaps.by_sym.get(sym, []) if lid >= last and rts >= t0),
                  None)
        if t1 is None:
            open_.append((sym, last))
        else:
            healed.append((t1 - t0) / 1e9)
    return sorted(healed), open_


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", required=True, help="quotebus-adapter, -broker, -sub")
    ap.add_argument("--sim-bin", help="directory of quotebus-exsim (default --bin-dir)")
    ap.add_argument("--label", default="", help="first column of the row (e.g. before, after)")
    ap.add_argument("--exchange", default="binance", choices=["binance", "htx"])
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--rate", type=int, default=10, help="depth events/s per symbol")
    ap.add_argument("--drop-rate", default="0.02")
    ap.add_argument("--warmup-s", type=float, default=5)
    ap.add_argument("--storm-s", type=float, default=60)
    ap.add_argument("--settle-s", type=float, default=120)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--adapter-arg", action="append", default=[],
                    help="extra adapter argument (repeatable)")
    ap.add_argument("--header", action="store_true", help="print the table header first")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    sim_bin = os.path.abspath(args.sim_bin or args.bin_dir)

    if args.header:
        print("| build | exchange | symbols | drops | heals | p50 s | p99 s | max s | unhealed "
              "| resyncs | snapshot requests | budget waits |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    syms = symbols_for(args.symbols)
    with qbtest.Stack(argparse.Namespace(bin_dir=args.bin_dir, keep=args.keep),
                      "heal-%s-%d" % (args.exchange, args.symbols)) as st:
        # The simulator may come from another build (the "before" adapter
        # against the simulator that knows --drop-rate).
        sim_argv_bin = st.bin
        st.bin = sim_bin
        sim = st.exsim(["--exchange", args.exchange, "--rate", str(args.rate),
                        "--trade-rate", "0", "--ticker-every", "0", "--max-levels", "50",
                        "--seed", str(args.seed), "--drop-rate", args.drop_rate,
                        "--drop-after-ms", str(int(args.warmup_s * 1000)),
                        "--drop-for-ms", str(int(args.storm_s * 1000))], tls=False)
        st.bin = sim_argv_bin
        broker = st.broker()
        sub = st.sub(["book.%s." % args.exchange, "status.%s." % args.exchange])
        time.sleep(0.3)
        adapter = st.adapter(sim, syms, exchange=args.exchange,
                             extra=["--no-tickers", "--log-level", "warn"] + args.adapter_arg)
        snaps = Snaps(sub)
        t_end_storm = time.time() + args.warmup_s + args.storm_s + 1
        while time.time() < t_end_storm:
            snaps.poll()
            time.sleep(0.5)
        deadline = time.time() + args.settle_s
        while True:
            snaps.poll()
            healed, open_ = heal_times(drops_of(sim), snaps)
            if not open_ or time.time() > deadline:
                break
            time.sleep(0.5)
        a = qbtest.stats(adapter.stats_path)
        for p in (adapter, sub, broker, sim):
            p.stop()
    drops = len(healed) + len(open_)

    def f(x):
        return "-" if x is None else "%.2f" % x
    print("| %s | %s | %d | %d | %d | %s | %s | %s | %d | %s | %s | %s |" % (
        args.label, args.exchange, args.symbols, drops, len(healed), f(pct(healed, 50)),
        f(pct(healed, 99)), f(healed[-1] if healed else None), len(open_), a.get("resyncs"),
        a.get("snapshot_requests"), a.get("budget_waits")), flush=True)
    if open_:
        print("unhealed (symbol, id): %s" % open_[:10], file=sys.stderr)


if __name__ == "__main__":
    main()
