#!/usr/bin/env python3
"""The broker's supervisor with real processes (quotebus-broker --demo: the
simulator and one Binance adapter as children).

  hung:  SIGSTOP the adapter; with --adapter-silence-ms 3000 the broker kills
         it (SIGKILL), restarts it through the backoff, counts it
         (adapter_hung_kills, adapter_restarts) and says so on the bus: a
         status "down" with the reason for each of the adapter's symbols,
         then "syncing" (restarted), then the adapter's own "live".
  crash: kill -9 of the adapter: status "down", reason "exited with signal 9".

Usage: test_supervisor.py --bin-dir DIR [--keep]
"""
import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qbtest  # noqa: E402
from qbtest import fail, log, stats, wait_for  # noqa: E402

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


def main(args):
    with qbtest.Stack(args, "supervisor") as st:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
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
    log("PASS supervisor")


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--keep", action="store_true")
    main(ap.parse_args())
