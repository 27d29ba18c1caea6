#!/usr/bin/env python3
"""quotebus-sub against a real demo stack (quotebus-broker --demo: the
simulator, the adapters of three exchanges and the broker with its snapshot
service, on private ipc paths), or a faster simulator feed (case count):

  quotebus-broker --demo (exsim -> adapters -> broker) -> NNG -> quotebus-sub runs here

Cases (one CTest test each; usage: test_sub.py --bin-dir DIR --case NAME):
  exit            every way out of quotebus-sub is quiet: --book with --timeout-ms
                  exits after that long without a line (status 0, as in plain
                  mode); a normal exit (--count, --timeout-ms, --duration-ms,
                  SIGTERM, SIGINT; plain and --book) logs no WARN line; losing the
                  broker still does
  count           --count N prints exactly N lines, with --book too (on a simulator
                  feed of 3000 changes a second rather than the demo)
  topics          a topic that matches no instrument is said on stderr after about
                  2 s (sub.no_such_topic, with what the broker has), in JSON mode
                  and with --book; an instrument that exists but is quiet is not;
                  --book given a prefix is an error (exit 2, one line)
  snapshot_first  in JSON mode every book starts with a snapshot (the snapshot
                  service's copy, then the deltas after it, contiguous), also
                  without a service (the stream's next snapshot); with --raw the
                  first line of a book may be a delta
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

BTC = "book.binance.BTC-USDT"


def start_demo(st):
    """The demo stack, with its snapshot service beside its publish socket
    (where quotebus-sub looks by default). Returns once books flow."""
    port = qbtest.free_port()
    demo = st.start("demo", [os.path.join(st.bin, "quotebus-broker"), "--demo",
                             "--demo-port", str(port), "--ingest", st.ingest, "--pub", st.pub,
                             "--snapshot", "ipc://%s/snapshot.ipc" % st.tmp,
                             "--http-listen", "off", "--stats-file", st.path("demo.stats")])

    books = {"book.%s.%s" % eb for eb in (("binance", "BTC-USDT"), ("binance", "ETH-USDT"),
                                          ("htx", "BTC-USDT"), ("htx", "ETH-USDT"),
                                          ("bithumb", "BTC-KRW"), ("bithumb", "ETH-KRW"))}

    def flowing():
        if not demo.alive():
            fail("the demo exited early:\n" + demo.stderr_text()[-3000:])
        r = sub(st, ["--duration-ms", "1500", "book."], timeout=30)
        return {m["topic"] for m in r.lines} >= books
    wait_for(flowing, 90, "all six books of the demo", interval=0.5)
    return demo


class Run:
    def __init__(self, rc, out, err, secs):
        self.rc = rc
        self.err = err
        self.secs = secs
        self.lines = [json.loads(ln) for ln in out.splitlines() if ln.strip()]

    def warns(self):
        return [ln for ln in self.err.splitlines() if " WARN " in ln]


def sub(st, args, timeout=60, connect=True):
    """Runs quotebus-sub to its end; fails when it does not end in time."""
    argv = [os.path.join(st.bin, "quotebus-sub")] + (["--connect", st.pub] if connect else []) + \
        list(args)
    t0 = time.time()
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        fail("%s did not exit within %s s" % (" ".join(argv), timeout))
    return Run(r.returncode, r.stdout.decode("utf-8", "replace"),
               r.stderr.decode("utf-8", "replace"), time.time() - t0)


def no_warn(what, r):
    if r.rc != 0:
        fail("%s: exit %s:\n%s" % (what, r.rc, r.err[-3000:]))
    if r.warns():
        fail("%s: a normal exit logged a warning:\n%s" % (what, "\n".join(r.warns())))


def case_exit(st):
    demo = start_demo(st)
    # --book --timeout-ms: no line for that long (a book that does not
    # exist prints none) ends it with status 0, as in plain mode.
    for mode in (["--book", "book.binance.FOO-BAR"], ["book.binance.FOO-BAR"]):
        r = sub(st, mode + ["--timeout-ms", "1200"], timeout=20)
        if r.rc != 0 or r.lines or not 1.0 <= r.secs < 8:
            fail("%s --timeout-ms 1200: rc %s, %d lines, %.1f s:\n%s" % (
                " ".join(mode), r.rc, len(r.lines), r.secs, r.err[-2000:]))
        log("%s --timeout-ms 1200: exit 0 after %.1f s" % (" ".join(mode), r.secs))
    # A live book: --timeout-ms counts from the last line, so it runs on.
    r = sub(st, ["--book", BTC, "--timeout-ms", "1500", "--duration-ms", "3000"], timeout=20)
    if r.rc != 0 or r.secs < 2.8 or not r.lines:
        fail("--book on a live book with --timeout-ms ended early (%.1f s, %d lines)" %
             (r.secs, len(r.lines)))
    # No warning on any normal exit.
    no_warn("--count 1", sub(st, ["--count", "1", BTC]))
    no_warn("--timeout-ms", sub(st, ["--timeout-ms", "800", "book.binance.FOO-BAR"]))
    no_warn("--duration-ms", sub(st, ["--duration-ms", "800", BTC]))
    for sig in (signal.SIGTERM, signal.SIGINT):
        for mode in ([BTC], ["--book", BTC]):
            p = st.start("sig%d" % len(st.procs), [os.path.join(st.bin, "quotebus-sub"),
                                                    "--connect", st.pub] + mode)
            wait_for(lambda: os.path.getsize(p.out_path) > 0, 20, "a first line")
            p.signal(sig)
            p.p.wait(10)
            p.out.close()
            p.err.close()
            r = Run(p.p.returncode, "", p.stderr_text(), 0)
            no_warn("%s on %s" % (signal.Signals(sig).name, " ".join(mode)), r)
    log("no WARN on --count, --timeout-ms, --duration-ms, SIGTERM, SIGINT (plain and --book)")
    # Losing the broker is a warning, still.
    p = st.start("loss", [os.path.join(st.bin, "quotebus-sub"), "--connect", st.pub, BTC])
    wait_for(lambda: os.path.getsize(p.out_path) > 0, 20, "a first line")
    demo.kill9()
    wait_for(lambda: "nng_disconnected" in p.stderr_text(), 10, "the lost-connection warning")
    if p.stop() != 0:
        fail("quotebus-sub after the broker's loss exited %s" % p.p.returncode)
    log("broker lost: %s" % [ln for ln in p.stderr_text().splitlines() if " WARN " in ln][0])


def case_count(st):
    """--count N prints exactly N lines, in book mode too, on a book that
    changes thousands of times a second (the mirror's thread prints; the
    count used to be noticed by the main thread up to 50 ms late)."""
    sim = st.exsim(["--rate", "3000", "--trade-rate", "0", "--seed", "5"])
    st.broker(["--snapshot", "ipc://%s/snapshot.ipc" % st.tmp])
    st.adapter(sim, ["BTC-USDT"])
    wait_for(lambda: len(sub(st, ["--count", "1", "--timeout-ms", "2000", BTC]).lines) == 1,
             60, "the book")
    # Warnings are case exit's matter: closing the mirror's socket while
    # thousands of frames a second arrive sometimes meets NNG 1.5.2's close
    # hang (nanomsg/nng#1543; the library gives up after 2 s and says so).
    for n in (1, 1, 1, 1, 1, 1, 1, 1, 3, 50):
        r = sub(st, ["--book", BTC, "--count", str(n), "--depth", "3"], timeout=30)
        if r.rc != 0 or len(r.lines) != n or any(ln["topic"] != BTC for ln in r.lines):
            fail("--book --count %d: exit %s, %d lines:\n%s" % (n, r.rc, len(r.lines),
                                                              r.err[-2000:]))
    for n in (1, 5, 500):
        r = sub(st, ["--count", str(n), "book.binance."], timeout=30)
        if r.rc != 0 or len(r.lines) != n:
            fail("--count %d: exit %s, %d lines" % (n, r.rc, len(r.lines)))
    log("--count exact: --book 8 x 1, 3 and 50; plain 1, 5 and 500")


def no_such(r, topic):
    return [ln for ln in r.err.splitlines()
            if "sub.no_such_topic topic=%s matches no instrument; the broker has: " % topic in ln]


def case_topics(st):
    start_demo(st)
    have = "binance BTC-USDT ETH-USDT, bithumb BTC-KRW ETH-KRW, htx BTC-USDT ETH-USDT"
    r = sub(st, ["--duration-ms", "3500", "book.kraken.", "trade.binance.FOO-BAR",
                 "status.binance.BTC-USDT", "book.htx.ETH-USDT"], timeout=30)
    if r.rc != 0:
        fail("rc %s:\n%s" % (r.rc, r.err))
    for t in ("book.kraken.", "trade.binance.FOO-BAR"):
        said = no_such(r, t)
        if len(said) != 1 or not said[0].endswith(have):
            fail("%s: not said once with what the broker has:\n%s" % (t, r.err))
    # status.binance.BTC-USDT exists but is quiet (states change rarely);
    # book.htx.ETH-USDT flows.
    if len(r.warns()) != 2:
        fail("unexpected warnings:\n%s" % "\n".join(r.warns()))
    log("JSON mode: %s" % no_such(r, "book.kraken.")[0])
    r = sub(st, ["--book", "book.binance.FOO-BAR", "--duration-ms", "3500"], timeout=30)
    said = no_such(r, "book.binance.FOO-BAR")
    if r.rc != 0 or r.lines or len(said) != 1 or not said[0].endswith(have):
        fail("--book of a missing instrument: rc %s, %d lines:\n%s" % (r.rc, len(r.lines), r.err))
    log("--book: %s" % said[0])
    r = sub(st, ["--book", BTC, "--count", "2"], timeout=30)
    no_warn("--book of an existing book", r)
    for prefix in ("book.binance.", "book.", "trade.binance.BTC-USDT"):
        r = sub(st, ["--book", prefix], timeout=10)
        errs = r.err.strip().splitlines()
        if r.rc != 2 or len(errs) != 1 or "--book mirrors one instrument" not in errs[0] or \
                prefix not in errs[0]:
            fail("--book %s: rc %s, stderr:\n%s" % (prefix, r.rc, r.err))
    log("--book PREFIX: %s" % errs[0])


def first_lines(lines):
    """The first line of each book topic, and whether each book's deltas are
    contiguous from its first snapshot."""
    first, last, contiguous = {}, {}, True
    for m in lines:
        t = m["topic"]
        if not t.startswith("book."):
            continue
        first.setdefault(t, m)
        if m["type"] == "delta" and t in last and m["seq"] != last[t] + 1:
            contiguous = False
        last[t] = m["seq"]
    return first, contiguous


def case_snapshot_first(st):
    start_demo(st)
    stats = st.path("sub.stats")
    for i in range(3):
        r = sub(st, ["--count", "60", "--stats-file", stats, "book."], timeout=60)
        no_warn("book. --count 60", r)
        first, contiguous = first_lines(r.lines)
        bad = {t: m["type"] for t, m in first.items() if m["type"] != "snapshot"}
        if bad or len(first) < 6 or not contiguous:
            fail("run %d: first lines %s, contiguous %s" % (
                i, {t: m["type"] for t, m in first.items()}, contiguous))
        s = qbtest.stats(stats)
        if s.get("service_snapshots", 0) < 6:
            fail("the snapshot service was not used: %s" % s)
    log("book.: every book starts with the service's snapshot, deltas contiguous: %s" % s)
    for i in range(5):
        r = sub(st, ["--count", "1", BTC], timeout=30)
        if [m["type"] for m in r.lines] != ["snapshot"] or not r.lines[0].get("refresh"):
            fail("--count 1 %s: %s" % (BTC, r.lines))
    # Without a service: the stream's next snapshot (a refresh, within ~1 s).
    r = sub(st, ["--snapshot", "off", "--count", "3", "--stats-file", stats, BTC], timeout=30)
    if r.lines[0]["type"] != "snapshot" or qbtest.stats(stats).get("service_snapshots") != 0:
        fail("--snapshot off: %s %s" % ([m["type"] for m in r.lines], qbtest.stats(stats)))
    # --raw prints what arrives: mostly deltas (10 a second, one refresh).
    types = []
    for i in range(10):
        r = sub(st, ["--raw", "--count", "1", "--stats-file", stats, BTC], timeout=30)
        types.append(r.lines[0]["type"])
        if qbtest.stats(stats).get("service_snapshots") != 0:
            fail("--raw used the snapshot service")
        if "delta" in types:
            break
    if "delta" not in types:
        fail("--raw: 10 first lines, all %s" % types)
    log("--raw: first lines %s" % types)


CASES = qbtest.cases_of(globals())

if __name__ == "__main__":
    qbtest.run_case_main(CASES, "sub")
