#!/usr/bin/env python3
"""Integration tests of libquotebus, its examples and quotebus-top, with real
processes:

  quotebus-exsim -> quotebus-adapter -> quotebus-broker (+ snapshot service)
      -> libquotebus programs built against the INSTALLED library
         (cmake --install --component client into a temp prefix, then the
         examples compiled with pkg-config and with find_package(quotebus))
      -> quotebus-top driven under tmux

Every case ends by comparing the books the library holds with the book the
simulator wrote when it stopped (--events N, --dump), level by level, as
decimals. Cases that need the broker's snapshot service skip (exit 77) when
the broker has none (no --snapshot option).

Usage: test_client.py --bin-dir DIR --case NAME
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qbtest  # noqa: E402
from qbtest import fail, log, skip, wait_for  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
TOPIC = "book.binance.BTC-USDT"


def broker_has_snapshot(st):
    out = subprocess.run([os.path.join(st.bin, "quotebus-broker"), "--help"],
                         capture_output=True, text=True).stdout
    return "--snapshot" in out


def need_snapshot(st):
    if not broker_has_snapshot(st):
        skip("quotebus-broker has no snapshot service yet (no --snapshot option); this case "
             "needs it")


def start_broker(st, name="broker"):
    """The broker with its snapshot service on a private ipc path (when it
    has one). Returns (proc, snapshot url or "")."""
    snap = ""
    extra = []
    if os.environ.get("QB_TEST_SNAPSHOT_OFF") and broker_has_snapshot(st):
        extra = ["--snapshot", "off"]  # debugging: the library without the service
    elif broker_has_snapshot(st):
        snap = "ipc://%s/snapshot.ipc" % st.tmp
        extra = ["--snapshot", snap]
    return st.broker(extra=extra, name=name), snap


def sanitizer_flags(build_dir):
    try:
        with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
            for ln in f:
                if ln.startswith("QB_SANITIZE:"):
                    v = ln.split("=", 1)[1].strip()
                    return ["-fsanitize=" + v, "-fno-omit-frame-pointer"] if v else []
    except OSError:
        pass
    return []


class Installed:
    """libquotebus installed into a temp prefix, and the examples built
    against it both ways."""

    def __init__(self, st):
        self.build = os.path.dirname(st.bin)
        self.prefix = st.path("prefix")
        r = subprocess.run(["cmake", "--install", self.build, "--prefix", self.prefix,
                            "--component", "client"], capture_output=True, text=True)
        if r.returncode != 0:
            fail("cmake --install failed:\n" + r.stdout + r.stderr)
        for f in ("include/quotebus.h", "lib/libquotebus.so", "lib/pkgconfig/quotebus.pc",
                  "lib/cmake/quotebus/quotebusConfig.cmake"):
            if not os.path.exists(os.path.join(self.prefix, f)):
                fail("not installed: " + f)
        self.env = dict(os.environ)
        self.env["PKG_CONFIG_PATH"] = os.path.join(self.prefix, "lib", "pkgconfig")
        self.env["LD_LIBRARY_PATH"] = os.path.join(self.prefix, "lib")
        san = sanitizer_flags(self.build)
        pc = subprocess.run(["pkg-config", "--cflags", "--libs", "quotebus"], env=self.env,
                            capture_output=True, text=True)
        if pc.returncode != 0:
            fail("pkg-config quotebus: " + pc.stderr)
        self.bins = {}
        exdir = os.path.join(SRC, "clients", "examples")
        for ex in ("print_messages", "mirror_top5"):
            out = st.path(ex + "-pc")
            cmd = ["cc", "-std=c11", "-Wall", "-Wextra", "-Werror"] + san + \
                [os.path.join(exdir, ex + ".c")] + pc.stdout.split() + ["-o", out]
            r = subprocess.run(cmd, env=self.env, capture_output=True, text=True)
            if r.returncode != 0:
                fail("%s does not build with pkg-config:\n%s\n%s" % (ex, " ".join(cmd),
                                                                      r.stderr))
            self.bins[ex] = out
        cm = st.path("examples-cmake")
        flags = " ".join(san)
        r = subprocess.run(["cmake", "-S", exdir, "-B", cm, "-DCMAKE_PREFIX_PATH=" + self.prefix,
                            "-DCMAKE_C_FLAGS=" + flags, "-DCMAKE_EXE_LINKER_FLAGS=" + flags],
                           capture_output=True, text=True)
        if r.returncode != 0:
            fail("find_package(quotebus) project does not configure:\n" + r.stdout + r.stderr)
        r = subprocess.run(["cmake", "--build", cm], capture_output=True, text=True)
        if r.returncode != 0:
            fail("find_package(quotebus) project does not build:\n" + r.stdout + r.stderr)
        self.bins["mirror_top5_cmake"] = os.path.join(cm, "mirror_top5")
        log("installed to %s; examples built with pkg-config and find_package" % self.prefix)

    def start(self, st, name, exe, args):
        return st.start(name, [self.bins[exe]] + args, env={
            "LD_LIBRARY_PATH": self.env["LD_LIBRARY_PATH"],
            "ASAN_OPTIONS": "detect_leaks=1",
        })


def mirror(st, inst, name, snap, extra=(), exe="mirror_top5", topic=TOPIC):
    return inst.start(st, name, exe, ["--connect", st.pub, "--snapshot", snap] + list(extra) +
                      [topic])


def parse_final(proc):
    """Reads a mirror_top5 --seconds run: (seq, state, bids, asks, stats)."""
    with open(proc.out_path) as f:
        lines = f.read().splitlines()
    idx = [i for i, ln in enumerate(lines) if ln.startswith("FINAL ")]
    if not idx:
        fail("%s printed no FINAL book:\n%s\n%s" % (proc.name, "\n".join(lines[-10:]),
                                                     proc.stderr_text()[-2000:]))
    _, topic, seq, state = lines[idx[-1]].split()
    bids, asks = [], []
    for ln in lines[idx[-1] + 1:]:
        side, p, q = ln.split()
        (bids if side == "bid" else asks).append((Decimal(p), Decimal(q)))
    m = re.search(r"STATS (.*)", proc.stderr_text())
    stats = dict(kv.split("=") for kv in m.group(1).split()) if m else {}
    stats = {k: int(v) for k, v in stats.items()}
    return int(seq), state, bids, asks, stats, lines


def check_exact(proc, dump, sym="BTC-USDT"):
    seq, state, bids, asks, stats, _ = parse_final(proc)
    lid, dbids, dasks, _ = dump[qbtest.native(sym)]
    if state != "live":
        fail("%s: final state %s, not live" % (proc.name, state))
    if bids != dbids or asks != dasks:
        diff = [x for x in zip(bids, dbids) if x[0] != x[1]][:3]
        fail("%s: book differs from the simulator (bids %d vs %d, asks %d vs %d) %s" %
             (proc.name, len(bids), len(dbids), len(asks), len(dasks), diff))
    log("%s: exact (%d bids, %d asks, seq %d) stats %s" % (proc.name, len(bids), len(asks),
                                                            seq, stats))
    return seq, stats


def wait_exit(proc, timeout):
    try:
        proc.p.wait(timeout)
    except subprocess.TimeoutExpired:
        fail("%s did not exit within %ss:\n%s" % (proc.name, timeout, proc.stderr_text()[-3000:]))
    if proc.p.returncode != 0:
        fail("%s exited %s:\n%s" % (proc.name, proc.p.returncode, proc.stderr_text()[-4000:]))


def sim_and_adapter(st, events, rate, symbols=("BTC-USDT",), extra=()):
    sim = st.exsim(["--rate", str(rate), "--trade-rate", "20", "--events", str(events),
                    "--seed", "11"] + list(extra))
    broker, snap = start_broker(st)
    return sim, broker, snap


def dump_of(sim):
    return wait_for(lambda: qbtest.dump_books(sim.dump_path)
                    if os.path.exists(sim.dump_path) else None, 120, "simulator dump")


def case_examples(st):
    """The examples build against the installed library (pkg-config and
    find_package) and work against a live stack: print_messages receives
    decoded messages, mirror_top5 ends with the simulator's exact book."""
    inst = Installed(st)
    sim, broker, snap = sim_and_adapter(st, 6000, 1500)
    pm = inst.start(st, "print_messages", "print_messages",
                    ["--connect", st.pub, "--count", "200", TOPIC, "trade.binance."])
    m = mirror(st, inst, "mirror_cmake", snap, ["--seconds", "12"], exe="mirror_top5_cmake")
    time.sleep(0.3)
    adapter = st.adapter(sim, ["BTC-USDT"])
    wait_exit(pm, 60)
    with open(pm.out_path) as f:
        lines = f.read().splitlines()
    if len(lines) != 200 or not all(ln.startswith((TOPIC + " ", "trade.binance.BTC-USDT "))
                                    for ln in lines):
        fail("print_messages output unexpected: %s" % lines[:5])
    if not any(" delta seq=" in ln for ln in lines):
        fail("print_messages saw no delta: %s" % lines[:5])
    wait_exit(m, 60)
    check_exact(m, dump_of(sim))
    qbtest_stop(adapter, broker, sim)


def qbtest_stop(*procs):
    """SIGTERM each process and require exit 0 (under ASan: no leak)."""
    for p in procs:
        rc = p.stop()
        if rc != 0:
            with open(p.err_path, "rb") as f:  # stop() closed p's own handles
                err = f.read().decode("utf-8", "replace")
            fail("%s exited %s:\n%s" % (p.name, rc, err[-6000:]))


def case_late_joiner(st):
    """A mirror that starts after tens of thousands of deltas is live at once
    (from the snapshot service) and ends with exactly the book of a
    subscriber that was there from the start, and of the simulator."""
    need_snapshot(st)
    inst = Installed(st)
    sim, broker, snap = sim_and_adapter(st, 40000, 4000)
    early = qbtest.Reader(st.sub(["book.binance."], name="early"))
    time.sleep(0.3)
    adapter = st.adapter(sim, ["BTC-USDT"])
    wait_for(lambda: (early.poll() or True) and early.counts.get("delta", 0) >= 25000, 60,
             "25000 deltas at the early subscriber")
    log("late joiner starts after %d deltas" % early.counts.get("delta", 0))
    late = mirror(st, inst, "late", snap, ["--seconds", "14"])
    # Live from the service at once, not after the next refresh: the first
    # status line (0.5 s after start) already says live.
    def first_line():
        with open(late.out_path) as f:
            ln = f.readline()
        return ln if ln.endswith("\n") else None
    ln = wait_for(first_line, 10, "the late joiner's first line")
    if " live " not in ln:
        fail("late joiner not live 0.5 s after start: %s" % ln)
    dump = qbtest.wait_books_exact([early], sim.dump_path, ["BTC-USDT"])
    wait_exit(late, 60)
    seq, stats = check_exact(late, dump)
    if stats.get("service_snapshots", 0) < 1:
        fail("the late joiner did not use the snapshot service: %s" % stats)
    eb = early.books["BTC-USDT"]
    if eb.seq != seq:
        fail("late joiner at seq %d, early subscriber at %d" % (seq, eb.seq))
    qbtest_stop(early.proc, adapter, broker, sim)


def case_gap_heal(st):
    """A consumer too slow for the stream (1 ms per change in its callback)
    overflows the mirror's queue on the broker-to-subscriber hop: the mirror
    reports the gaps and heals by itself (snapshot service, or the stream's
    refresh snapshots), ending exact."""
    inst = Installed(st)
    sim, broker, snap = sim_and_adapter(st, 24000, 4000)
    m = mirror(st, inst, "slow", snap, ["--seconds", "30", "--pause-ms", "1"])
    time.sleep(0.3)
    # One delta per frame (--batch-maps 1): the mirror's queue holds 8192
    # frames, and with batching the number of frames depends on the load, so
    # whether the queue overflows would too.
    adapter = st.adapter(sim, ["BTC-USDT"], extra=["--batch-maps", "1"])
    wait_exit(m, 90)
    seq, stats = check_exact(m, dump_of(sim))
    if stats.get("gaps", 0) < 1:
        fail("the slow consumer saw no gap (the test did not force one): %s" % stats)
    a = qbtest.stats(adapter.stats_path)
    if not a.get("published") or a.get("publish_frames") != a.get("published"):
        fail("--batch-maps 1: %s frames for %s messages" % (a.get("publish_frames"),
                                                            a.get("published")))
    qbtest_stop(adapter, broker, sim)


def case_no_such_instrument(st):
    """mirror_top5 on a topic that exists nowhere tells its user within a
    few seconds, with what the broker has (qb_mirror_check_topic, fed by the
    snapshot service), and goes on; on a real topic it says nothing."""
    need_snapshot(st)
    inst = Installed(st)
    sim, broker, snap = sim_and_adapter(st, 0, 200)
    adapter = st.adapter(sim, ["BTC-USDT", "ETH-USDT"])
    real = mirror(st, inst, "real", snap, ["--seconds", "4"])
    wait_exit(real, 60)
    if "no such instrument" in real.stderr_text() or "FINAL %s" % TOPIC not in \
            open(real.out_path).read():
        fail("mirror_top5 on a real topic:\n%s" % real.stderr_text()[-2000:])
    t0 = time.time()
    nope = mirror(st, inst, "nope", snap, ["--seconds", "4"], topic="book.binance.FOO-BAR")
    want = ("mirror_top5: book.binance.FOO-BAR: no such instrument; the broker has: "
            "binance BTC-USDT ETH-USDT")
    wait_for(lambda: want in nope.stderr_text(), 10, "mirror_top5's no-such-instrument line")
    log("after %.1f s: %s" % (time.time() - t0, want))
    wait_exit(nope, 30)
    if "book.binance.FOO-BAR: no such instrument (yet)" not in open(nope.out_path).read():
        fail("mirror_top5 did not say it on its status line")
    if nope.stderr_text().count("no such instrument") != 1:
        fail("said more than once:\n%s" % nope.stderr_text())
    qbtest_stop(adapter, broker, sim)


def case_broker_restart(st):
    """kill -9 of the broker mid-stream: the mirror returns to live and exact
    without restarting the client."""
    inst = Installed(st)
    sim, broker, snap = sim_and_adapter(st, 16000, 2000)
    m = mirror(st, inst, "mirror", snap, ["--seconds", "25"])
    sub = qbtest.Reader(st.sub(["book.binance."], name="watch"))
    time.sleep(0.3)
    adapter = st.adapter(sim, ["BTC-USDT"])
    wait_for(lambda: (sub.poll() or True) and sub.counts.get("delta", 0) > 3000, 30,
             "deltas flowing")
    log("killing the broker")
    broker.kill9()
    time.sleep(1.0)
    extra = ["--snapshot", snap] if snap else []
    broker2 = st.broker(extra=extra, name="broker2")
    wait_exit(m, 90)
    check_exact(m, dump_of(sim))
    qbtest_stop(sub.proc, adapter, broker2, sim)


def case_both_restart(st):
    """kill -9 of the adapter and the broker at the same instant, both
    restarted: the new adapter numbers the book from 1 again. The mirror
    must not keep the old book as LIVE (PROTOCOL.md 11.4 rules 7 and 8: a
    reconnection or a seq going back invalidates it) and ends exact, as
    does a plain subscriber's book kept by qbtest.Book (the same rules)."""
    inst = Installed(st)
    sim, broker, snap = sim_and_adapter(st, 30000, 2000)
    m = mirror(st, inst, "mirror", snap, ["--seconds", "35"])
    sub = qbtest.Reader(st.sub(["book.binance."], name="watch"))
    time.sleep(0.3)
    adapter = st.adapter(sim, ["BTC-USDT"])
    wait_for(lambda: (sub.poll() or True) and sub.counts.get("delta", 0) > 3000, 30,
             "deltas flowing")
    old_seq = sub.books["BTC-USDT"].seq
    log("kill -9 of adapter and broker at once (book seq %s)" % old_seq)
    os.kill(adapter.p.pid, signal.SIGKILL)
    os.kill(broker.p.pid, signal.SIGKILL)
    adapter.p.wait(5)
    broker.p.wait(5)
    time.sleep(0.3)
    extra = ["--snapshot", snap] if snap else []
    broker2 = st.broker(extra=extra, name="broker2")
    adapter2 = st.adapter(sim, ["BTC-USDT"], name="adapter2")
    dump = qbtest.wait_books_exact([sub], sim.dump_path, ["BTC-USDT"])
    wb = sub.books["BTC-USDT"]
    log("watch: exact; gaps=%d snapshots=%d" % (wb.gaps, wb.snapshots))
    wait_exit(m, 120)
    check_exact(m, dump)
    err = m.stderr_text()
    # Rule 8 always applies here (the broker is new); rule 7 only when the
    # mirror still had frames of the old pipe queued.
    seen = [k for k in ("mirror.reconnected", "mirror.publisher_restart") if k in err]
    log("mirror noticed: %s" % seen)
    if "mirror.reconnected" not in seen:
        fail("the mirror did not count its reconnection to the new broker (no "
             "mirror.reconnected on stderr):\n" + err[-3000:])
    # The watcher's book sees the seq go back unless quotebus-sub redialled
    # only after the new stream had passed the old seq (then a gap heals it).
    log("watch: the book counted %d publisher restart(s)" % wb.restarts)
    qbtest_stop(sub.proc, adapter2, broker2, sim)


def case_churn(st):
    """Many mirrors and subscribers join and leave while data flows (run it
    from a sanitizer build: each process exits 0 only without leaks or
    errors); a last mirror ends exact."""
    inst = Installed(st)
    sim, broker, snap = sim_and_adapter(st, 40000, 2000, extra=["--max-levels", "100"])
    time.sleep(0.2)
    adapter = st.adapter(sim, ["BTC-USDT", "ETH-USDT"])
    wait_for(lambda: os.path.exists(adapter.stats_path), 20, "adapter running")
    rounds = 0
    t_end = time.time() + 8
    while time.time() < t_end:
        batch = []
        for i in range(4):
            topic = TOPIC if i % 2 == 0 else "book.binance."
            batch.append(mirror(st, inst, "m%d_%d" % (rounds, i), snap, ["--seconds", "1"],
                                topic=topic))
        for i in range(2):
            batch.append(inst.start(st, "s%d_%d" % (rounds, i), "print_messages",
                                    ["--connect", st.pub, "--count", "300", "book."]))
        for p in batch:
            wait_exit(p, 60)
        rounds += 1
    log("churn: %d rounds of 4 mirrors + 2 subscribers, all exited 0" % rounds)
    last = mirror(st, inst, "last", snap, ["--seconds", "16"])
    wait_exit(last, 60)
    check_exact(last, dump_of(sim))
    qbtest_stop(adapter, broker, sim)


def tmux(sock, *args, check=True):
    r = subprocess.run(["tmux", "-L", sock] + list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        fail("tmux %s: %s" % (" ".join(args), r.stderr))
    return r


ROW = re.compile(r"^\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$")


def top_rows(text, sym):
    """Rows of one symbol's block: {exchange: [bidsize, bid, ask, asksize,
    spread, age, state]} (BEST too)."""
    rows, inside = {}, False
    for ln in text.splitlines():
        if ln.strip() == sym:
            inside = True
            continue
        if inside:
            m = ROW.match(ln)
            if not m:
                if ln.strip() == "":
                    break
                continue
            if m.group(1) != "EXCHANGE":
                rows[m.group(1)] = list(m.groups()[1:])
    return rows


def case_top(st):
    """quotebus-top under tmux against a stack: it shows the simulator's
    best bid and ask for each symbol asked for, the spread, a live state,
    and quits cleanly on q and on Ctrl-C."""
    if shutil.which("tmux") is None:
        skip("tmux is not installed (apt-get install tmux)")
    sim, broker, snap = sim_and_adapter(st, 5000, 1500)
    time.sleep(0.2)
    adapter = st.adapter(sim, ["BTC-USDT", "ETH-USDT", "ETH-BTC"])
    dump = dump_of(sim)
    sock = "qbtest-%d" % os.getpid()
    top = os.path.join(st.bin, "quotebus-top")
    cmd = "%s --connect %s --snapshot '%s' --interval-ms 100 BTC ETH-USDT" % (top, st.pub, snap)
    try:
        tmux(sock, "new-session", "-d", "-s", "top", "-x", "160", "-y", "40",
             "-e", "ASAN_OPTIONS=detect_leaks=1",
             "sh -c '%s; echo EXIT=$? > %s'" % (cmd, st.path("top.exit")))

        def screen():
            return tmux(sock, "capture-pane", "-p", "-t", "top").stdout

        def want(sym):
            _, bids, asks, _ = dump[qbtest.native(sym)]
            return bids[0], asks[0]

        def matches():
            text = screen()
            for sym in ("BTC-USDT", "ETH-USDT"):
                rows = top_rows(text, sym)
                b = rows.get("binance")
                (bp, bq), (ap, aq) = want(sym)
                if b is None or b[6] != "live":
                    return None
                if (Decimal(b[1]), Decimal(b[0]), Decimal(b[2]), Decimal(b[3])) != \
                        (bp, bq, ap, aq):
                    return None
                if Decimal(b[4]) != ap - bp:
                    return None
                best = rows.get("BEST")
                if best is None or Decimal(best[1]) != bp or Decimal(best[2]) != ap or \
                        best[0] != "binance" or best[3] != "binance" or \
                        Decimal(best[4]) != ap - bp:
                    return None
            if "ETH-BTC" in text:
                fail("quotebus-top shows ETH-BTC, which was not asked for:\n" + text)
            return text
        deadline = time.time() + 30
        text = None
        while time.time() < deadline and text is None:
            text = matches()
            time.sleep(0.1)
        if text is None:
            fail("quotebus-top does not show the simulator's best bid/ask within 30 s; want "
                 "%s; screen:\n%s" % ({s: want(s) for s in ("BTC-USDT", "ETH-USDT")}, screen()))
        log("quotebus-top screen:\n" + text)
        tmux(sock, "send-keys", "-t", "top", "q")
        wait_for(lambda: os.path.exists(st.path("top.exit")), 10, "quotebus-top to quit on q")
        with open(st.path("top.exit")) as f:
            if f.read().strip() != "EXIT=0":
                fail("quotebus-top exit status after q: %s" % open(st.path("top.exit")).read())
        # Ctrl-C also quits cleanly, and the terminal is left in cooked mode
        # (the shell around it traps SIGINT so that it survives to report).
        os.remove(st.path("top.exit"))
        tmux(sock, "kill-server", check=False)
        tmux(sock, "new-session", "-d", "-s", "top2", "-x", "160", "-y", "40",
             "sh -c 'trap : INT; %s; echo EXIT=$? > %s; stty -a > %s; sleep 5'" %
             (cmd, st.path("top.exit"), st.path("stty")))
        time.sleep(1.0)
        tmux(sock, "send-keys", "-t", "top2", "C-c")
        wait_for(lambda: os.path.exists(st.path("stty")) and os.path.getsize(st.path("stty")),
                 10, "quotebus-top to quit on Ctrl-C")
        with open(st.path("top.exit")) as f:
            if f.read().strip() != "EXIT=0":
                fail("quotebus-top exit status after Ctrl-C is not 0")
        with open(st.path("stty")) as f:
            modes = f.read()
        if " icanon" not in modes or " echo" not in modes:
            fail("terminal not restored after quotebus-top (stty -a):\n" + modes)
    finally:
        tmux(sock, "kill-server", check=False)
    qbtest_stop(adapter, broker, sim)


CASES = qbtest.cases_of(globals())

if __name__ == "__main__":
    qbtest.run_case_main(CASES, "client")
