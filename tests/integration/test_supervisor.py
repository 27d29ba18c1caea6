#!/usr/bin/env python3
"""The broker's supervisor with real processes (quotebus-broker --demo: the
simulator and one Binance adapter as children).

Case restart (the default):
  hung:  SIGSTOP the adapter; with --adapter-silence-ms 3000 the broker kills
         it (SIGKILL), restarts it through the backoff, counts it
         (adapter_hung_kills, adapter_restarts) and says so on the bus: a
         status "down" with the reason for each of the adapter's symbols,
         then "syncing" (restarted), then the adapter's own "live".
  crash: kill -9 of the adapter: status "down", reason "exited with signal 9".
Case bad_adapter: --adapter nosuchvenue:BTC-USDT and --adapter 'binance:btc
  usdt' end the broker with status 2 within seconds, with the adapter's own
  message (quotebus-adapter --check), and no child ever starts.
Case permanent: the adapter's --config file (given by --adapter-arg) turns
  bad while it runs, then it is killed: its restart exits with status 2 (bad
  options); the supervisor does not restart it again, its symbols get status
  "down" with the adapter's message and "not restarting" and stay so, the
  stats file says "failed" (adapters_failed 1), the log says child.permanent
  once; the kill -9 before it was restarted as always.

Usage: test_supervisor.py --bin-dir DIR [--case restart|bad_adapter|permanent] [--keep]
"""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qbtest  # noqa: E402
from qbtest import fail, free_port, log, stats, wait_for  # noqa: E402

SYMS = ["BTC-USDT", "ETH-USDT"]


def adapter_pid(broker_pid):
    """The running quotebus-adapter child of the broker, or None."""
    try:
        with open("/proc/%d/task/%d/children" % (broker_pid, broker_pid)) as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        return None
    for k in kids:
        try:
            with open("/proc/%d/cmdline" % k, "rb") as f:
                argv0 = f.read().split(b"\0")[0]
        except OSError:
            continue
        if argv0.endswith(b"quotebus-adapter"):
            return k
    return None


def statuses(r, since):
    r.poll()
    return [m for m in r.messages[since:] if m.get("type") == "status"]


def wait_status(r, since, pred, what, timeout=30):
    def ok():
        got = [m for m in statuses(r, since) if pred(m)]
        syms = {m["sym"] for m in got}
        return got if syms >= set(SYMS) else None
    return wait_for(ok, timeout, what)


def case_restart(args):
    with qbtest.Stack(args, "supervisor") as st:
        port = free_port()
        stats_path = st.path("broker.stats")
        # The subscriber first (it dials and retries): statuses are sent on
        # change only, so it must be there before the adapter goes live.
        sub = st.sub(["status.", "book."])
        r = qbtest.Reader(sub)
        broker = st.start("broker", [
            os.path.join(st.bin, "quotebus-broker"), "--demo", "--demo-port", str(port),
            "--adapter", "binance:" + ",".join(SYMS), "--adapter-silence-ms", "3000",
            "--ingest", st.ingest, "--pub", st.pub,
            "--snapshot", "ipc://%s/snapshot.ipc" % st.tmp, "--http-listen", "off",
            "--stats-file", stats_path])
        # The first "live" status may go out before the subscriber's dial
        # lands (statuses are sent on change), so the first start counts as
        # live once both books are: they are refreshed every second.
        wait_for(lambda: (r.poll() or True) and all(x in r.books and r.books[x].valid
                                                     for x in SYMS), 120,
                 "adapter live on both symbols (valid books)")

        # Hung: alive but silent.
        pid = wait_for(lambda: adapter_pid(broker.p.pid), 10, "adapter pid")
        log("SIGSTOP adapter pid %d" % pid)
        r.poll()
        mark = len(r.messages)
        os.kill(pid, signal.SIGSTOP)
        wait_for(lambda: stats(stats_path).get("adapter_hung_kills", 0) >= 1, 20,
                 "adapter_hung_kills >= 1")
        down = wait_status(r, mark, lambda m: m["state"] == "down" and
                           "hung: silent for" in m.get("reason", ""), "status down (hung)")
        log("hung status: %s" % down[0]["reason"])
        wait_for(lambda: stats(stats_path).get("adapter_restarts", 0) >= 1, 20,
                 "adapter_restarts >= 1")
        wait_status(r, mark, lambda m: m["state"] == "syncing" and
                    m.get("reason", "").startswith("adapter restarted"), "status syncing (restart)")
        wait_status(r, mark, lambda m: m["state"] == "live", "adapter live again", 120)
        pid2 = wait_for(lambda: adapter_pid(broker.p.pid), 10, "restarted adapter pid")
        if pid2 == pid:
            fail("adapter pid unchanged after the hung kill")

        # Crash.
        mark = len(r.messages)
        os.kill(pid2, signal.SIGKILL)
        down = wait_status(r, mark, lambda m: m["state"] == "down" and
                           "exited with signal 9" in m.get("reason", ""), "status down (crash)")
        log("crash status: %s" % down[0]["reason"])
        wait_status(r, mark, lambda m: m["state"] == "live", "adapter live after crash", 120)
        # The stats file is rewritten every 500 ms, and a "live" seen right
        # after the crash can be a late copy from before it: wait for the
        # second restart to be counted rather than read once.
        def counted():
            x = stats(stats_path)
            return x if x.get("adapter_restarts", 0) >= 2 else None
        st_now = wait_for(counted, 60, "second adapter restart counted")
        if st_now.get("adapter_hung_kills") != 1 or st_now.get("adapter_restarts", 0) < 2:
            fail("counters: %s" % {k: st_now.get(k) for k in
                                   ("adapter_hung_kills", "adapter_restarts")})
        if not broker.alive():
            fail("broker died:\n" + broker.stderr_text())
        for p in (sub, broker):
            rc = p.stop()
            if rc != 0:
                fail("%s exited %s:\n%s" % (p.name, rc, p.stderr_text()[-4000:]))
    log("PASS supervisor restart")


def case_bad_adapter(args):
    """A bad --adapter value is refused before anything starts."""
    cases = [("nosuchvenue:BTC-USDT", "unknown exchange 'nosuchvenue'"),
             ("binance:btc usdt", "'btc usdt' is not a normalized symbol")]
    with qbtest.Stack(args, "supervisor-bad") as st:
        for n, (value, says) in enumerate(cases):
            pub = "%s/pub%d.ipc" % (st.tmp, n)
            t0 = time.time()
            # --demo: the simulator would be a child too; nothing may start.
            broker = st.start("broker%d" % n, [
                os.path.join(st.bin, "quotebus-broker"), "--demo", "--demo-port",
                str(free_port()), "--adapter", value, "--ingest", st.ingest,
                "--pub", "ipc://" + pub, "--snapshot", "ipc://%s/snapshot.ipc" % st.tmp,
                "--http-listen", "off"])
            wait_for(lambda: not broker.alive(), 10, "broker refusing --adapter '%s'" % value)
            took = time.time() - t0
            err = broker.stderr_text()
            rc = broker.stop()
            log("--adapter '%s': exit %s after %.2f s: %s" % (value, rc, took, err.strip()))
            if rc != 2:
                fail("--adapter '%s': exit %s, expected 2:\n%s" % (value, rc, err))
            want = "quotebus-broker: bad --adapter '%s': " % value
            line = [ln for ln in err.splitlines() if ln.startswith(want)]
            if not line or says not in line[0]:
                fail("--adapter '%s': no line '%s...%s...' on stderr:\n%s" % (value, want, says,
                                                                             err))
            if "child.start" in err or os.path.exists(pub):
                fail("--adapter '%s': something started before the refusal:\n%s" % (value, err))
            if took > 5:
                fail("--adapter '%s': refused only after %.1f s" % (value, took))
    log("PASS supervisor bad_adapter")


def case_permanent(args):
    """A child that exits with status 2 at run time is not restarted."""
    with qbtest.Stack(args, "supervisor-perm") as st:
        port = free_port()
        stats_path = st.path("broker.stats")
        cfg = st.path("adapter.json")

        def write_cfg(obj):
            with open(cfg + ".tmp", "w") as f:
                json.dump(obj, f)
            os.rename(cfg + ".tmp", cfg)
        write_cfg({"stale-ms": 30000})
        sub = st.sub(["status.", "book."])
        r = qbtest.Reader(sub)
        broker = st.start("broker", [
            os.path.join(st.bin, "quotebus-broker"), "--demo", "--demo-port", str(port),
            "--adapter", "binance:" + ",".join(SYMS),
            "--adapter-arg=--config", "--adapter-arg=" + cfg,
            "--ingest", st.ingest, "--pub", st.pub,
            "--snapshot", "ipc://%s/snapshot.ipc" % st.tmp, "--http-listen", "off",
            "--stats-file", stats_path])
        wait_for(lambda: (r.poll() or True) and all(x in r.books and r.books[x].valid
                                                     for x in SYMS), 120,
                 "adapter live on both symbols (valid books)")
        pid = wait_for(lambda: adapter_pid(broker.p.pid), 10, "adapter pid")

        # The operator breaks the adapter's config file; the adapter then
        # crashes: its restart reads the file and exits with status 2.
        write_cfg({"stale-ms": 30000, "levels": 7})
        r.poll()
        mark = len(r.messages)
        os.kill(pid, signal.SIGKILL)
        down = wait_status(r, mark, lambda m: m["state"] == "down" and
                           "exited with signal 9" in m.get("reason", "") and
                           "restarting in" in m.get("reason", ""), "status down (crash)")
        log("crash status: %s" % down[0]["reason"])
        said = "quotebus-adapter: --levels must be 5, 20, 150 or 400"
        failed = wait_status(r, mark, lambda m: m["state"] == "down" and
                             "status 2 (bad options)" in m.get("reason", "") and
                             said in m.get("reason", "") and
                             m.get("reason", "").endswith("not restarting"),
                             "status down (status 2, not restarting)", 30)
        reason = failed[0]["reason"]
        log("permanent status: %s" % reason)

        def failed_stats():
            x = stats(stats_path)
            return x if x.get("adapters_failed") == 1 else None
        x = wait_for(failed_stats, 10, "adapters_failed 1 in the stats file")
        ad = x.get("adapters") or [{}]
        if (ad[0].get("exchange"), ad[0].get("state"), ad[0].get("reason")) != \
                ("binance", "failed", reason):
            fail("stats file adapters: %s" % ad)
        starts = x.get("adapter_starts")
        if starts != 2:
            fail("adapter_starts %s, expected 2 (first start, restart after the kill)" % starts)

        # Well past the next backoffs (2 s, 4 s): no restart, nothing new.
        r.poll()
        mark = len(r.messages)
        time.sleep(8)
        r.poll()
        x = stats(stats_path)
        if x.get("adapter_starts") != starts or x.get("adapters_failed") != 1:
            fail("restarted after status 2: %s" % {k: x.get(k) for k in
                                                    ("adapter_starts", "adapters_failed")})
        if adapter_pid(broker.p.pid) is not None:
            fail("an adapter runs after status 2")
        later = [m for m in statuses(r, mark) if m.get("sym") in SYMS]
        if later:
            fail("statuses after the permanent failure: %s" % later)
        err = broker.stderr_text()
        n = err.count("child.permanent")
        if n != 1:
            fail("child.permanent logged %d times:\n%s" % (n, err[-4000:]))
        if not broker.alive():
            fail("broker died:\n" + err)
        for p in (sub, broker):
            rc = p.stop()
            if rc != 0:
                fail("%s exited %s:\n%s" % (p.name, rc, p.stderr_text()[-4000:]))
        x = stats(stats_path)
        if x.get("adapters_failed") != 1:
            fail("final stats file: adapters_failed %s" % x.get("adapters_failed"))
    log("PASS supervisor permanent")


CASES = {"restart": case_restart, "bad_adapter": case_bad_adapter, "permanent": case_permanent}

if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir")
    ap.add_argument("--case", default="restart", choices=sorted(CASES))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--list-cases", action="store_true",
                    help="print the case names, one a line, and exit (CMake reads them)")
    a = ap.parse_args()
    if a.list_cases:
        qbtest.print_cases(CASES)
        sys.exit(0)
    if a.bin_dir is None:
        ap.error("--bin-dir is required")
    CASES[a.case](a)
