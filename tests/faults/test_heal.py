#!/usr/bin/python3
"""Heal faults (CTest label faults): what a lost frame costs, end to end

  quotebus-exsim (wss, test CA, HTX, faults) -> quotebus-adapter htx -> NNG ->
  quotebus-broker --no-spawn -> NNG -> quotebus-sub

Cases (one CTest test each; usage: test_heal.py --bin-dir DIR --case NAME):
  heal_many   twelve HTX symbols on one connection. Corrupt gzip frames
              that lose nothing arrive after every 23rd update of every
              symbol (--corrupt-gzip-every), and a few random updates are
              replaced by a corrupt gzip frame (--drop-rate --drop-corrupt:
              that symbol's data is lost, and nobody can tell whose frame
              it was). A frame that cannot be attributed makes the
              connection's books suspect, and each book's next prevSeqNum
              decides: only the symbols whose chain breaks resync. Checked
              from the bus: a symbol with no lost update has no resync; one
              with k lost updates has 1..k; at least one resync names the
              lost frame; the adapter's own per-symbol resync counts agree
              with the bus; every book ends exactly equal to the
              simulator's. (Before suspects, every corrupt frame resynced
              all twelve books.)
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402
import qbtest  # noqa: E402
from faultlib import fail, log, stats  # noqa: E402

HTX_SYMS = ["BTC-USDT", "ETH-USDT"] + ["X%02d-USDT" % i for i in range(10)]


def drops_of(sim):
    """{native symbol: number of exsim_fault_drop lines}."""
    out = {}
    for ln in sim.stderr_text().splitlines():
        if "exsim_fault_drop" in ln:
            kv = dict(x.split("=", 1) for x in ln.split() if "=" in x)
            out[kv["sym"]] = out.get(kv["sym"], 0) + 1
    return out


def resyncs_on_bus(r, sym):
    """Status messages of sym going to resyncing (progress notes, which
    repeat the state with "; resyncing for N s", are not resyncs)."""
    return [x[2] for x in fl.statuses(r, sym)
            if x[1] == "resyncing" and "; resyncing for " not in x[2]]


def case_heal_many(st):
    rate, events = 20, 500  # 25 s of updates per symbol
    sim = st.exsim(["--exchange", "htx", "--rate", str(rate), "--trade-rate", "5",
                    "--events", str(events), "--seed", "5", "--corrupt-gzip-every", "23",
                    "--drop-rate", "0.004", "--drop-corrupt", "--drop-after-ms", "3000",
                    "--drop-for-ms", "17000"])
    broker = fl.plain_broker(st)
    readers = fl.readers_for(st, 1, topics=("book.", "status."), multi=True)
    time.sleep(0.3)
    adapter = st.adapter(sim, HTX_SYMS, exchange="htx", extra=["--no-tickers"])
    qbtest.wait_books_exact_ex(readers, sim.dump_path, "htx", HTX_SYMS, timeout=120)
    s = stats(sim.stats_path)
    a = stats(adapter.stats_path)
    drops = drops_of(sim)
    r = readers[0]
    r.poll()
    log("simulator: %d corrupt gzip frames, %d of them lost updates %s" % (
        s.get("fault_corrupt_gzip", 0), s.get("fault_drop", 0), drops))
    log("adapter: bad_gzip=%s lost_frames=%s suspects=%s confirmed=%s broken=%s expired=%s "
        "resyncs=%s snapshot_requests=%s" % tuple(a.get(k) for k in (
            "bad_gzip", "lost_frames", "suspects", "suspects_confirmed", "suspects_broken",
            "suspects_expired", "resyncs", "snapshot_requests")))
    lost = [x for x in HTX_SYMS if drops.get(qbtest.native_for("htx", x), 0)]
    intact = [x for x in HTX_SYMS if x not in lost]
    if not lost or not intact or s.get("fault_corrupt_gzip", 0) < 100:
        fail("the simulator's storm does not test anything: lost %s, intact %s, %s corrupt "
             "frames" % (lost, intact, s.get("fault_corrupt_gzip")))
    per = {}
    for sym in HTX_SYMS:
        per[sym] = resyncs_on_bus(r, sym)
    log("resyncs on the bus per symbol: %s" % {k: len(v) for k, v in per.items()})
    bad = []
    for sym in intact:
        if per[sym]:
            bad.append("%s lost nothing but resynced %d times (%s)" % (
                sym, len(per[sym]), per[sym][0]))
    for sym in lost:
        k = drops[qbtest.native_for("htx", sym)]
        if not 1 <= len(per[sym]) <= k:
            bad.append("%s lost %d updates but resynced %d times" % (sym, k, len(per[sym])))
    if bad:
        fail("resyncs not limited to the broken chains:\n  " + "\n  ".join(bad))
    if not any("gap after a lost frame (corrupt gzip frame)" in x for v in per.values()
               for x in v):
        fail("no resync reason names the lost frame: %s" % per)
    if a.get("suspects_confirmed", 0) < 50 or a.get("suspects_broken", 0) < 1:
        fail("the adapter's suspect counters do not show the chain judging lost frames: %s" % {
            k: a.get(k) for k in ("suspects", "suspects_confirmed", "suspects_broken")})
    for sym in HTX_SYMS:
        mine = a.get("symbols", {}).get(sym, {}).get("resyncs")
        if mine != len(per[sym]):
            fail("%s: the adapter's stats say %s resyncs, the bus %d" % (sym, mine, len(per[sym])))
    fl.check_alive(adapter, broker)
    fl.stop_clean(r.proc, adapter, broker, sim)


CASES = {k[5:]: v for k, v in globals().items() if k.startswith("case_")}

if __name__ == "__main__":
    fl.run_case_main(CASES, "heal")
