#!/usr/bin/env python3
"""quotebus-sub --book TOPIC --depth N (the book mirror of libquotebus):
against quotebus-exsim (--events N) + adapter + broker, the last line it
prints holds exactly the simulator's final top N levels, and every line is
well-formed (exact decimal strings, bids descending, asks ascending).

Usage: test_sub_book.py --bin-dir DIR [--keep]
"""
import json
import os
import sys
import time
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qbtest  # noqa: E402
from qbtest import fail, log, wait_for  # noqa: E402

DEPTH = 5
SYM = "BTC-USDT"
TOPIC = "book.binance." + SYM


def lines(path):
    with open(path, "rb") as f:
        data = f.read()
    return [json.loads(ln) for ln in data.split(b"\n")[:-1] if ln.strip()]


def main(args):
    with qbtest.Stack(args, "sub_book") as st:
        sim = st.exsim(["--rate", "2000", "--trade-rate", "20", "--events", "8000",
                        "--seed", "11"])
        snap = "ipc://%s/broker-snapshot.ipc" % st.tmp
        broker = st.broker(["--snapshot", snap])
        sub = st.start("sub", [os.path.join(st.bin, "quotebus-sub"), "--connect", st.pub,
                               "--snapshot", snap, "--book", TOPIC, "--depth", str(DEPTH)])
        time.sleep(0.3)
        adapter = st.adapter(sim, [SYM, "ETH-USDT"])
        dump = wait_for(lambda: qbtest.dump_books(sim.dump_path)
                        if os.path.exists(sim.dump_path) else None, 120, "simulator dump")
        _, bids, asks, _ = dump[SYM.replace("-", "")]
        want = (bids[:DEPTH], asks[:DEPTH])

        def last_matches():
            sub.out.flush()
            ls = lines(sub.out_path)
            if not ls:
                return None
            m = ls[-1]
            got = ([(Decimal(p), Decimal(q)) for p, q in m["bids"]],
                   [(Decimal(p), Decimal(q)) for p, q in m["asks"]])
            return ls if got == want and m["state"] == "live" else None
        ls = wait_for(last_matches, 30, "last --book line equal to the simulator's top %d" % DEPTH)
        for m in ls:
            if m["topic"] != TOPIC or set(m) != {"topic", "seq", "state", "bids", "asks"}:
                fail("bad line: %s" % m)
            for side in ("bids", "asks"):
                if len(m[side]) > DEPTH or not all(isinstance(p, str) and isinstance(q, str)
                                                   for p, q in m[side]):
                    fail("bad %s: %s" % (side, m))
            pb = [Decimal(p) for p, _ in m["bids"]]
            pa = [Decimal(p) for p, _ in m["asks"]]
            if pb != sorted(pb, reverse=True) or pa != sorted(pa):
                fail("levels out of order: %s" % m)
        log("%d lines; last seq %d: %s / %s" % (len(ls), ls[-1]["seq"], ls[-1]["bids"][0],
                                                 ls[-1]["asks"][0]))
        for p in (sub, adapter, broker):
            rc = p.stop()
            if rc != 0:
                fail("%s exited %s:\n%s" % (p.name, rc, p.stderr_text()[-4000:]))
    log("PASS sub_book")


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--keep", action="store_true")
    main(ap.parse_args())
