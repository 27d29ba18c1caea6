#!/usr/bin/env python3
"""Integration test of the offline demo's market: `quotebus-broker --demo`
(which starts quotebus-exsim and the Binance, HTX and Bithumb adapters
itself) on private addresses, read by quotebus-sub.

The simulated exchanges must quote one pair around one price, as real
venues do: sampled every 100 ms for 10 s once both books are live, the
consolidated BTC-USDT best bid (the higher of Binance's and HTX's) must be
below the consolidated best ask (the lower of the two) in at least
100 - MAX_CROSSED_PCT % of the samples. Before the simulator shared a price
per pair, its exchanges sat about 70 USDT apart and every sample was crossed.

Usage: test_demo.py --bin-dir DIR
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qbtest  # noqa: E402
from qbtest import fail, log, wait_for  # noqa: E402

MAX_CROSSED_PCT = 5
SAMPLE_S = 10.0
SYM = "BTC-USDT"


def main(st):
    demo_port = qbtest.free_port()
    snap = "ipc://%s/snapshot.ipc" % st.tmp
    broker = st.start("broker", [os.path.join(st.bin, "quotebus-broker"), "--demo",
                                 "--demo-port", str(demo_port), "--ingest", st.ingest,
                                 "--pub", st.pub, "--snapshot", snap, "--http-listen", "off",
                                 "--stats-file", st.path("broker.stats")])
    wait_for(lambda: os.path.exists(st.pub[len("ipc://"):]) or not broker.alive(), 20,
             "broker pub socket")
    if not broker.alive():
        fail("the demo broker exited early:\n" + broker.stderr_text())
    sub = st.sub(["book.binance.%s" % SYM, "book.htx.%s" % SYM], name="sub")
    reader = qbtest.Reader(sub, multi=True)
    keys = [("binance", SYM), ("htx", SYM)]

    def both_valid():
        reader.poll()
        return all(k in reader.xbooks and reader.xbooks[k].valid and reader.xbooks[k].bids and
                   reader.xbooks[k].asks for k in keys)
    wait_for(both_valid, 60, "Binance's and HTX's %s books from the demo" % SYM)

    samples = crossed = 0
    worst = None  # largest consolidated bid - ask seen
    mid_gap = []
    t_end = time.time() + SAMPLE_S
    while time.time() < t_end:
        time.sleep(0.1)
        reader.poll()
        books = [reader.xbooks[k] for k in keys]
        if not all(b.valid and b.bids and b.asks for b in books):
            continue
        bid = max(max(b.bids) for b in books)
        ask = min(min(b.asks) for b in books)
        mids = [(max(b.bids) + min(b.asks)) / 2 for b in books]
        mid_gap.append(abs(mids[0] - mids[1]))
        samples += 1
        if bid >= ask:
            crossed += 1
        if worst is None or bid - ask > worst:
            worst = bid - ask
    if samples < SAMPLE_S * 5:
        fail("only %d samples with both books valid in %.0f s" % (samples, SAMPLE_S))
    pct = 100.0 * crossed / samples
    mid_gap.sort()
    log("%s: %d samples, consolidated crossed in %d (%.1f%%); largest bid - ask %s; "
        "Binance/HTX mid gap median %s, max %s" %
        (SYM, samples, crossed, pct, worst, mid_gap[len(mid_gap) // 2], mid_gap[-1]))
    if pct > MAX_CROSSED_PCT:
        fail("the demo's consolidated %s best bid >= best ask in %.1f%% of samples (at most %d%% "
             "allowed): its exchanges do not quote around one price (mid gap median %s)" %
             (SYM, pct, MAX_CROSSED_PCT, mid_gap[len(mid_gap) // 2]))
    for p in (sub, broker):
        rc = p.stop()
        if rc != 0:
            fail("%s exited %s:\n%s" % (p.name, rc, p.stderr_text()[-4000:]))


if __name__ == "__main__":
    args = qbtest.parse_args()
    with qbtest.Stack(args, "demo") as st:
        main(st)
    log("PASS")
