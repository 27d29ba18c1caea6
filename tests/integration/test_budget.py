#!/usr/bin/env python3
"""The adapter's reconnect budget (adapters/budget.c) against a disconnect
storm: quotebus-exsim drops every connection after 50 frames at a high rate
for ~10 s; quotebus-adapter binance runs with --max-connects-per-min 20
(burst 2). The simulator's connections_total must stay within the budget
(burst + 20 per minute of elapsed time, +1), the adapter must report
budget_waits, and the subscribers' books must still end exactly equal to the
simulator's. Usage: test_budget.py --bin-dir DIR
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qbtest  # noqa: E402
from qbtest import fail, log, stats  # noqa: E402

SYMS = ["BTC-USDT", "ETH-USDT"]
PER_MIN = 20
BURST = 2  # qb_budget_burst(20): per_min / 10


def main(st):
    sim = st.exsim(["--rate", "2000", "--trade-rate", "50", "--events", "20000", "--seed", "7",
                    "--disconnect-every", "50"])
    broker = st.broker()
    readers = [qbtest.Reader(st.sub(["book.", "trade.", "status."], name="sub%d" % i))
               for i in range(2)]
    time.sleep(0.3)
    t0 = time.monotonic()
    adapter = st.adapter(sim, SYMS, extra=["--max-connects-per-min", str(PER_MIN)])
    qbtest.wait_books_exact(readers, sim.dump_path, SYMS, timeout=120)
    elapsed = time.monotonic() - t0
    s = stats(sim.stats_path)
    a = stats(adapter.stats_path)
    conns = s.get("connections_total", 0)
    budget = BURST + PER_MIN * elapsed / 60.0 + 1
    log("%.1f s: exsim connections_total=%s (budget %.1f), adapter budget_waits=%s "
        "reconnects=%s" % (elapsed, conns, budget, a.get("budget_waits"), a.get("reconnects")))
    if conns > budget:
        fail("reconnect budget exceeded: %s connections in %.1f s (budget %.1f)" %
             (conns, elapsed, budget))
    if a.get("budget_waits", 0) < 1:
        fail("the disconnect storm never hit the budget: %s" % a)
    if "http_429" not in a or "http_418" not in a:
        fail("http_429/http_418 counters missing from the stats file: %s" % a)
    waits = [m for m in readers[0].messages if m["type"] == "status" and
             "reconnect budget exhausted" in str(m.get("reason", ""))]
    if not waits:
        fail("no status with reason 'reconnect budget exhausted'")
    for p in [r.proc for r in readers] + [adapter, broker, sim]:
        rc = p.stop()
        if rc != 0:
            fail("%s exited %s:\n%s" % (p.name, rc, p.stderr_text()[-4000:]))


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    with qbtest.Stack(args, "budget") as st:
        main(st)
    log("PASS budget")
