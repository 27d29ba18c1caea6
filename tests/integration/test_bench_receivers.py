#!/usr/bin/env python3
"""The consumer-side programs of tests/bench/compare/run-compare.sh, whose
marks docs/BENCHMARKS.md section 6 (tables A, C and G) is computed from:
qb-bench-consumer (a libquotebus mirror) and qb-bench-nng-recv (NNG alone,
--mode block and --mode aio), on a real simulator -> adapter -> broker.

- Both SIGUSR1 marks of every program are well-formed, in order, and show
  progress and CPU; the two receivers count the same frames as the
  consumer over the same window (they are subscribed to the same topic),
  which is what table G's "frames x the consumer's deltas/frame" relies on.
- Each ends on SIGTERM with its JSON line (end "signal") and exit 0; the
  consumer's book is live and its gaps are 0.
- Command lines (common/opts.h): --help/--version exit 0; a missing
  --connect, a value-less or unknown option, a non-number --idle, a stray
  argument or an unknown --mode exit 2 saying why; an address NNG cannot
  dial exits 1 with NNG's message.

Usage: test_bench_receivers.py --bin-dir DIR [--keep]
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qbtest  # noqa: E402
from qbtest import fail, log, wait_for  # noqa: E402

TOPIC = "book.binance.BTC-USDT"


def marks(path):
    try:
        with open(path) as f:
            return [ln.split() for ln in f if ln.startswith("mark ")]
    except OSError:
        return []


def check_cli(exe, name):
    def run(argv):
        return subprocess.run([exe] + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=20)
    r = run(["--help"])
    if r.returncode != 0 or b"Usage: " + name.encode() not in r.stdout:
        fail("%s --help: %s %r" % (name, r.returncode, r.stdout[:200]))
    r = run(["--version"])
    if r.returncode != 0 or not r.stdout.startswith(name.encode() + b" "):
        fail("%s --version: %s %r" % (name, r.returncode, r.stdout[:200]))
    bad = [([], b"--connect is required"), (["--connect"], b"--connect"),
           (["--no-such-flag", "x"], b"--no-such-flag"),
           (["--connect", "ipc:///nonexistent/x.ipc", "--idle", "soon"], b"idle"),
           (["--connect", "ipc:///nonexistent/x.ipc", "extra"], b"unexpected argument")]
    if name == "qb-bench-nng-recv":
        bad.append((["--connect", "ipc:///nonexistent/x.ipc", "--mode", "bogus"],
                    b"--mode is block or aio"))
    for argv, why in bad:
        r = run(argv)
        if r.returncode != 2 or why not in r.stderr:
            fail("%s %s: want exit 2 saying %r, got %s %r" %
                 (name, argv, why, r.returncode, r.stderr[:200]))
    if name == "qb-bench-nng-recv":
        r = run(["--connect", "bogus://nowhere"])
        if r.returncode != 1 or b"bogus://nowhere" not in r.stderr:
            fail("%s with an undialable address: %s %r" % (name, r.returncode, r.stderr[:200]))


def main(args):
    with qbtest.Stack(args, "bench_receivers") as st:
        need = ("qb-bench-consumer", "qb-bench-nng-recv")
        for b in need:
            if not os.access(os.path.join(st.bin, b), os.X_OK):
                fail("%s not built in %s" % (b, st.bin))
            check_cli(os.path.join(st.bin, b), b)
        sim = st.exsim(["--symbols", "BTCUSDT", "--rate", "2000", "--changes", "20",
                        "--trade-rate", "0", "--ticker-every", "0", "--seed", "5"])
        snap = "ipc://%s/broker-snapshot.ipc" % st.tmp
        broker = st.broker(["--snapshot", snap])
        progs = {
            "consumer": st.start("consumer", [
                os.path.join(st.bin, "qb-bench-consumer"), "--connect", st.pub,
                "--snapshot", snap, "--topic", TOPIC, "--marks", st.path("consumer.marks"),
                "--idle", "30"]),
        }
        for mode in ("block", "aio"):
            progs[mode] = st.start(mode, [
                os.path.join(st.bin, "qb-bench-nng-recv"), "--connect", st.pub,
                "--topic", TOPIC, "--mode", mode, "--marks", st.path(mode + ".marks"),
                "--idle", "30"])
        time.sleep(0.3)
        adapter = st.adapter(sim, ["BTC-USDT"], ["--no-tickers"])

        def live():
            a = qbtest.read_json(adapter.stats_path) or {}
            return a.get("published", 0) > 200
        wait_for(live, 30, "adapter publishing")
        time.sleep(1.0)  # the consumer has its snapshot and applies deltas
        for p in progs.values():
            p.signal(signal.SIGUSR1)
        time.sleep(3.0)
        for p in progs.values():
            p.signal(signal.SIGUSR1)
        wait_for(lambda: all(len(marks(st.path(n + ".marks"))) == 2 for n in progs), 10,
                 "two mark lines from every program")

        win = {}
        for n in progs:
            m0, m1 = marks(st.path(n + ".marks"))
            for m in (m0, m1):
                want = 7 if n != "consumer" else 6
                if len(m) != want:
                    fail("%s: mark with %d fields, want %d: %s" % (n, len(m), want, m))
            t0, t1 = int(m0[1]), int(m1[1])
            c0, c1 = float(m0[2]), float(m1[2])
            if not (t1 - t0 > 2.5e9 and c1 > c0 >= 0):
                fail("%s: marks not in order or no CPU: %s %s" % (n, m0, m1))
            w = {"deltas": int(m1[3]) - int(m0[3]), "frames": int(m1[4]) - int(m0[4]),
                 "gaps": int(m1[5]) - int(m0[5])}
            if n != "consumer":
                w["bytes"] = int(m1[6]) - int(m0[6])
                if w["deltas"] != 0 or w["gaps"] != 0 or w["bytes"] <= 0:
                    fail("%s: a receiver decodes nothing; mark fields %s" % (n, w))
            win[n] = w
        c = win["consumer"]
        if c["deltas"] < 2000 or c["frames"] <= 0 or c["gaps"] != 0:
            fail("consumer window: %s (want >= 2000 deltas in 3 s at 2000/s, no gaps)" % c)
        for n in ("block", "aio"):
            # the same frames over the same window, give or take the frames
            # that arrived between the signals reaching each process
            if abs(win[n]["frames"] - c["frames"]) > max(5, c["frames"] // 20):
                fail("%s received %d frames, the consumer %d" %
                     (n, win[n]["frames"], c["frames"]))
        log("window: consumer %s; block %s; aio %s" % (c, win["block"], win["aio"]))

        for n, p in progs.items():
            rc = p.stop()
            with open(p.out_path) as f:
                out = [json.loads(ln) for ln in f if ln.strip()]
            if rc != 0 or len(out) != 1 or out[0].get("end") != "signal" or \
                    out[0].get("marks") != 2:
                fail("%s: exit %s, output %s\n%s" % (n, rc, out, p.stderr_text()[-2000:]))
            if n == "consumer" and (out[0].get("state") != "live" or out[0].get("gaps") != 0):
                fail("consumer ended with %s" % out[0])
            if n != "consumer" and out[0].get("mode") != n:
                fail("%s: reported mode %s" % (n, out[0].get("mode")))
        for p in (adapter, broker):
            rc = p.stop()
            if rc != 0:
                fail("%s exited %s:\n%s" % (p.name, rc, p.stderr_text()[-4000:]))
    log("PASS bench_receivers")


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--keep", action="store_true")
    main(ap.parse_args())
