#!/usr/bin/python3
"""Soak test: the whole stack at a high message rate for a long time, with
subscribers (NNG, and websocket clients when the broker has --http-listen)
joining and leaving all the time.

  quotebus-exsim --exchange binance,htx,bithumb (wss, test CA)
    -> quotebus-adapter binance | htx | bithumb  (2 instruments each)
    -> quotebus-broker -> NNG pub  -> 1 long-lived exact reader + churning quotebus-sub
                       -> /ws      -> churning websocket clients (some stop reading)

It samples the RSS of the broker, the adapters and the simulator every
second and asserts it is flat: after the warm-up (a fifth of the run, at
least 20 s) no process grows by more than max(8 MB, 5 %) (under ASan, whose
quarantine is capped here at 16 MB, by 32 MB). At the end the simulator stops
generating (--events) and the long-lived reader's books must equal the
simulator's exactly. A final table reports RSS over time, messages, drops,
gaps and resyncs of every part.

  test_soak.py --bin-dir DIR [--duration S (default 1800)] [--rate N per symbol] [--no-ws]
CTest: soak_long (label soak, 30 min, not in the default CI run) and
soak_short (label faults, 60 s, CI, under ASan too).
"""
import argparse
import os
import random
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "faults"))
import faultlib as fl  # noqa: E402
import qbtest  # noqa: E402
from faultlib import fail, log, stats, wait_for  # noqa: E402

PAIRS = {"binance": ["BTC-USDT", "ETH-USDT"], "htx": ["BTC-USDT", "ETH-USDT"],
         "bithumb": ["BTC-KRW", "ETH-KRW"]}
# The long-lived reader follows one instrument per exchange (its JSON lines
# go to a file for the whole run: all six would be gigabytes in 30 min).
EXACT = {"binance": "BTC-USDT", "htx": "ETH-USDT", "bithumb": "BTC-KRW"}
CHURN_TOPICS = ["book.", "book.binance.", "book.htx.BTC-USDT", "trade.", "status.", "ticker.",
                "book.bithumb.", "trade.htx."]


class Churn:
    """Subscribers joining and leaving: NNG (quotebus-sub with a random
    lifetime) and websocket clients (read for a while, or stop reading then
    vanish). Output goes to /dev/null; each NNG sub writes a stats file."""

    def __init__(self, st, ws_port, stop_at):
        self.st = st
        self.ws_port = ws_port
        self.stop_at = stop_at
        self.rng = random.Random(7)
        self.subs_started = 0
        self.subs_stats = []
        self.procs = []
        self.ws_started = 0
        self.ws_stuck = 0
        self.ws_closed_by_broker = 0
        self.ws_messages = 0
        self.ws_errors = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.nng_loop, daemon=True)]
        if ws_port:
            self.threads.append(threading.Thread(target=self.ws_loop, daemon=True))
        for t in self.threads:
            t.start()

    def nng_loop(self):
        devnull = open(os.devnull, "wb")
        while not self.stop.is_set() and time.time() < self.stop_at:
            self.procs = [p for p in self.procs if p.poll() is None]
            if len(self.procs) < 6:
                n = self.subs_started
                self.subs_started += 1
                sp = self.st.path("churn%d.stats" % n)
                self.subs_stats.append(sp)
                topics = self.rng.sample(CHURN_TOPICS, self.rng.randint(1, 3))
                argv = [os.path.join(self.st.bin, "quotebus-sub"), "--connect",
                        self.rng.choice([self.st.pub]), "--duration-ms",
                        str(self.rng.randint(1000, 8000)), "--stats-file", sp] + topics
                if self.rng.random() < 0.2 and not os.environ.get("QB_SOAK_NO_SLOW"):
                    argv[1:1] = ["--recv-buf", "64", "--pause-ms", "1"]  # a slow one
                self.procs.append(subprocess.Popen(argv, stdout=devnull,
                                                   stderr=subprocess.DEVNULL))
            self.stop.wait(self.rng.uniform(0.3, 1.2))
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        devnull.close()

    def ws_loop(self):
        while not self.stop.is_set() and time.time() < self.stop_at:
            try:
                c = fl.RawWs(self.ws_port, rcvbuf=8192)
            except OSError:
                self.ws_errors += 1
                self.stop.wait(1)
                continue
            self.ws_started += 1
            topics = self.rng.sample(CHURN_TOPICS[:4], self.rng.randint(1, 2))
            c.send_text('{"op":"subscribe","topics":[%s]}' % ",".join('"%s"' % t for t in topics))
            life = self.rng.uniform(1, 6)
            if self.rng.random() < 0.25:
                self.ws_stuck += 1
                self.stop.wait(life)  # never reads, then vanishes
            elif not c.read_for(life):
                self.ws_closed_by_broker += 1
            self.ws_messages += c.messages
            c.close()
            self.stop.wait(self.rng.uniform(0.2, 1.0))

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def sub_totals(self):
        tot = {}
        for sp in self.subs_stats:
            for k, v in (stats(sp) or {}).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    tot[k] = tot.get(k, 0) + v
        return tot


def rss_table(sampler, names, rows=10):
    allt = [t for n in names for t, _ in sampler.samples.get(n, [])]
    if not allt:
        return "no samples"
    tmax = max(allt)
    out = ["%8s " % "t (s)" + " ".join("%16s" % n for n in names)]
    for i in range(rows + 1):
        t = tmax * i / rows
        cells = []
        for n in names:
            s = sampler.samples.get(n, [])
            near = min(s, key=lambda x: abs(x[0] - t)) if s else None
            cells.append("%13d kB" % near[1] if near else "%16s" % "-")
        out.append("%8.0f " % t + " ".join(cells))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--duration", type=float, default=1800)
    ap.add_argument("--rate", type=int, default=300, help="depth events per second per symbol")
    ap.add_argument("--no-ws", action="store_true", help="no websocket clients")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    asan = fl.cap_asan_quarantine(args.bin_dir)
    dur = args.duration
    warm = max(20.0, dur / 5)
    events = int(dur * args.rate)
    t_start = time.time()
    with qbtest.Stack(args, "soak") as st:
        sim = st.exsim(["--exchange", "binance,htx,bithumb", "--rate", str(args.rate),
                        "--trade-rate", "20", "--events", str(events), "--seed", "5",
                        "--ticker-every", "10"])
        ws_port = fl.free_port() if fl.broker_has(st.bin, "http-listen") and not args.no_ws \
            else None
        extra = ["--http-listen", "127.0.0.1:%d" % ws_port] if ws_port else []
        broker = fl.plain_broker(st, extra=extra)
        topics = ["book.%s.%s" % (ex, sym) for ex, sym in EXACT.items()] + ["status."]
        reader = fl.readers_for(st, 1, topics=topics, multi=True, prefix="exact")[0]
        time.sleep(0.3)
        adapters = {ex: st.adapter(sim, syms, exchange=ex, name="adapter-" + ex)
                    for ex, syms in PAIRS.items()}
        pids = {"broker": broker.p.pid, "simulator": sim.p.pid}
        pids.update({"adapter-" + ex: a.p.pid for ex, a in adapters.items()})
        sampler = fl.RssSampler(lambda: pids, 1.0)
        log("soak: %.0f s at %d events/s per symbol (%d symbols), warm-up %.0f s, ASan %s, "
            "websocket %s" % (dur, args.rate, sum(len(v) for v in PAIRS.values()), warm, asan,
                              "on" if ws_port else "off (no --http-listen)"))
        churn = Churn(st, ws_port, time.time() + dur)
        try:
            next_report = time.time() + max(10, dur / 10)
            while time.time() - t_start < dur:
                reader.poll()
                fl.check_alive(sim, broker, *adapters.values())
                if time.time() >= next_report:
                    next_report += max(10, dur / 10)
                    b = stats(broker.stats_path)
                    log("t=%.0f s broker frames_in=%s rss=%s kB; subs started %d, ws clients %d"
                        % (time.time() - t_start, b.get("frames_in"),
                           sampler.samples.get("broker", [(0, 0)])[-1][1],
                           churn.subs_started, churn.ws_started))
                time.sleep(0.5)
        finally:
            churn.finish()
        # The simulator stops at --events; the reader's books must be exact.
        for ex, sym in EXACT.items():
            qbtest.wait_books_exact_ex([reader], sim.dump_path, ex, [sym], timeout=180)
        sampler.stop()
        fl.check_alive(sim, broker, *adapters.values())

        names = ["broker"] + ["adapter-" + ex for ex in PAIRS] + ["simulator"]
        b = stats(broker.stats_path)
        subt = churn.sub_totals()
        print("\n==== soak report: %.0f s, %d events/s per symbol ====" % (dur, args.rate))
        print("RSS over time:\n" + rss_table(sampler, names))
        rows = [("broker", "frames_in=%s frames_out=%s bad=%s ingest_gaps=%s duplicates=%s "
                           "resyncs=%s" % (b.get("frames_in"), b.get("frames_out"),
                                           sum(b.get(k, 0) for k in ("bad_msgpack", "bad_version",
                                                                     "bad_topic", "oversized")),
                                           b.get("ingest_gaps"), b.get("duplicates"),
                                           b.get("resyncs")))]
        if ws_port:
            rows.append(("broker ws", "accepted=%s sent=%s conflations=%s slow_closes=%s "
                                      "drop_conflated=%s drop_trade=%s drop_full=%s handoff_drops=%s"
                         % tuple(b.get(k) for k in ("ws_accepted", "ws_sent", "ws_conflations",
                                                    "ws_slow_closes", "ws_drop_conflated",
                                                    "ws_drop_trade", "ws_drop_full",
                                                    "ws_handoff_drops"))))
        for ex, a in adapters.items():
            s = stats(a.stats_path)
            rows.append(("adapter " + ex, "frames=%s published=%s gaps=%s resyncs=%s "
                                          "reconnects=%s bad_json=%s publish_errors=%s"
                         % tuple(s.get(k) for k in ("frames", "published", "gaps", "resyncs",
                                                    "reconnects", "bad_json",
                                                    "publish_errors"))))
        gaps = sum(bk.gaps for bk in reader.xbooks.values())
        rows.append(("exact reader", "deltas=%d snapshots=%d gaps=%d" % (
            sum(bk.deltas for bk in reader.xbooks.values()),
            sum(bk.snapshots for bk in reader.xbooks.values()), gaps)))
        rows.append(("churn NNG subs", "started=%d messages=%s gaps=%s" % (
            churn.subs_started, subt.get("messages", subt.get("received")), subt.get("gaps"))))
        if ws_port:
            rows.append(("churn ws clients", "started=%d stuck=%d closed_by_broker=%d "
                                             "messages=%d connect_errors=%d"
                         % (churn.ws_started, churn.ws_stuck, churn.ws_closed_by_broker,
                            churn.ws_messages, churn.ws_errors)))
        for k, v in rows:
            print("%-18s %s" % (k, v))
        print(flush=True)

        limit_kb = 32 * 1024 if asan else 8 * 1024
        for n in names:
            base = sampler.window(n, warm - 2, warm + 2)
            end = sampler.samples.get(n, [])[-5:]
            if not base or not end:
                fail("no RSS samples of %s" % n)
            b0 = sorted(base)[len(base) // 2]
            e0 = sorted(kb for _, kb in end)[len(end) // 2]
            bound = max(limit_kb, b0 // 20)
            log("%s RSS after warm-up %d kB, at the end %d kB (growth %+d kB, bound %d kB)"
                % (n, b0, e0, e0 - b0, bound))
            if e0 - b0 > bound:
                fail("%s RSS grew %d kB after the warm-up (bound %d kB)" % (n, e0 - b0, bound))
        if churn.subs_started < dur / 4:
            fail("too few subscribers joined and left: %d" % churn.subs_started)
        fl.stop_clean(reader.proc, *adapters.values(), broker, sim)
    log("PASS soak (%.0f s)" % (time.time() - t_start))


if __name__ == "__main__":
    main()
