#!/usr/bin/python3
"""Demo soak on a busy machine: no gap the system cannot explain.

  quotebus-broker --demo (its own simulator and three adapters, as a user
  starts it) on temporary addresses, with
    - --load N processes spinning on the CPU the whole time (default 2: a
      2-core machine kept busy),
    - NNG subscribers: quotebus-sub on ipc and on tcp (every topic),
    - websocket subscribers (every topic) that check each topic's seq,
  for --duration seconds. No fault is injected, so every sequence gap seen
  anywhere is unexplained: the broker's ingest_gaps (and its ingest.gap
  lines), each quotebus-sub's gaps (stats file and stderr lines), and the
  websocket clients' own seq checks must all be zero. Each gap line must
  name the expected and received seq (the line formats are checked when one
  appears, so a failure says where the loss happened).

  test_demo_busy.py --bin-dir DIR [--duration S (default 1800)] [--load N]
CTest: soak_demo_busy (label soak, 30 min, run by hand: ctest -L soak) and
soak_demo_busy_short (label faults, 90 s, in the default run).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "faults"))
import faultlib as fl  # noqa: E402
import qbtest  # noqa: E402
from faultlib import fail, log, stats, wait_for  # noqa: E402

KIND = {"snapshot": "book", "delta": "book", "trade": "trade", "status": "status",
        "ticker": "ticker"}


class WsChecker(threading.Thread):
    """A websocket subscriber of every topic that checks each topic's seq
    (PROTOCOL.md sections 6 and 12: a snapshot rebases, a refresh repeats the
    last seq, everything else is the last + 1)."""

    def __init__(self, port, stop):
        super().__init__(daemon=True)
        self.port, self.stop = port, stop
        self.last = {}
        self.messages = 0
        self.gaps = []
        self.error = None

    def on_text(self, payload):
        m = json.loads(payload)
        t = m.get("type")
        if t not in KIND:
            return
        self.messages += 1
        topic = m.get("topic") or "%s.%s.%s" % (KIND[t], m["ex"], m["sym"])
        seq = m["seq"]
        last = self.last.get(topic)
        if t == "snapshot" or last is None:
            self.last[topic] = seq
            return
        if t == "status" and seq < last:
            self.last[topic] = seq  # a restarted publisher (PROTOCOL.md 4.5)
            return
        if seq != last + 1:
            self.gaps.append((topic, last + 1, seq))
        self.last[topic] = seq

    def run(self):
        try:
            ws = fl.RawWs(self.port)
            ws.send_text('{"op":"subscribe","topics":["book.","trade.","status.","ticker."]}')
            while not self.stop.is_set():
                if not ws.read_for(0.5, self.on_text):
                    self.error = "closed (code %s)" % ws.closed_code
                    return
            ws.close()
        except (OSError, ValueError) as e:
            self.error = str(e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--duration", type=float, default=1800)
    ap.add_argument("--load", type=int, default=2)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    fl.cap_asan_quarantine(args.bin_dir)
    with qbtest.Stack(args, "demo-busy") as st:
        http = fl.free_port()
        pub_tcp = fl.free_port()
        demo = fl.free_port()
        broker = st.start("broker", [
            os.path.join(st.bin, "quotebus-broker"), "--demo", "--demo-port", str(demo),
            "--ingest", st.ingest, "--pub", st.pub, "--pub", "tcp://127.0.0.1:%d" % pub_tcp,
            "--snapshot", "ipc://%s/snapshot.ipc" % st.tmp,
            "--http-listen", "127.0.0.1:%d" % http, "--stats-file", st.path("broker.stats")])
        broker.stats_path = st.path("broker.stats")
        wait_for(lambda: os.path.exists(broker.stats_path) or not broker.alive(), 20,
                 "the demo broker")
        if not broker.alive():
            fail("the demo broker exited:\n" + broker.stderr_text())
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                    for _ in range(args.load)]
        try:
            subs = []
            for name, url in (("sub_ipc", st.pub), ("sub_tcp", "tcp://127.0.0.1:%d" % pub_tcp)):
                p = st.start(name, [os.path.join(st.bin, "quotebus-sub"), "--connect", url,
                                    "--stats-file", st.path(name + ".stats"),
                                    "book.", "trade.", "status.", "ticker."])
                p.stats_path = st.path(name + ".stats")
                subs.append(p)
            stop = threading.Event()
            wss = [WsChecker(http, stop) for _ in range(2)]
            for w in wss:
                w.start()
            # Every book live before the clock starts.
            wait_for(lambda: (fl.health(http) or {}).get("books_valid", 0) >= 6, 60,
                     "the demo's six books valid")
            log("demo live; %d spinning processes; running %.0f s" % (args.load, args.duration))
            t_end = time.time() + args.duration
            next_log = time.time() + 60
            while time.time() < t_end:
                time.sleep(1)
                fl.check_alive(broker, *subs)
                if time.time() >= next_log:
                    b = stats(broker.stats_path)
                    log("t=%.0f s frames_in=%s ingest_gaps=%s ws messages=%s" % (
                        args.duration - (t_end - time.time()), b.get("frames_in"),
                        b.get("ingest_gaps"), [w.messages for w in wss]))
                    next_log += 60
            stop.set()
            for w in wss:
                w.join(5)
        finally:
            for s in spinners:
                s.kill()
                s.wait()
        b = stats(broker.stats_path)
        report = {"broker ingest_gaps": b.get("ingest_gaps", 0)}
        for p in subs:
            report[p.name + " gaps"] = stats(p.stats_path).get("gaps", 0)
        for i, w in enumerate(wss):
            if w.error:
                fail("websocket subscriber %d: %s" % (i, w.error))
            if w.messages == 0:
                fail("websocket subscriber %d received nothing" % i)
            report["ws%d gaps" % i] = len(w.gaps)
        log("gaps (no fault injected, so every one is unexplained): %s" % report)
        # Every gap line names the expected and the received seq.
        lines = [ln for ln in broker.stderr_text().splitlines() if "ingest.gap" in ln]
        for p in subs:
            lines += [ln for ln in p.stderr_text().splitlines() if "gap on" in ln]
        for ln in lines:
            log("gap line: %s" % ln)
            if not re.search(r"expected (seq )?\d+.*(received|got) \d+", ln):
                fail("a gap line does not name the expected and received seq: %s" % ln)
        for i, w in enumerate(wss):
            for g in w.gaps[:5]:
                log("ws%d gap on %s: expected %d got %d" % (i, g[0], g[1], g[2]))
        if any(report.values()):
            fail("unexplained sequence gaps: %s" % report)
        frames = b.get("frames_in", 0)
        if frames < args.duration * 10:
            fail("the demo moved too little to judge (%s frames in %.0f s)" % (frames,
                                                                               args.duration))
        log("PASS: %s frames, %s websocket messages, zero gaps" % (
            frames, [w.messages for w in wss]))
        fl.stop_clean(*subs, broker)


if __name__ == "__main__":
    main()
