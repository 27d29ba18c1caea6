#!/usr/bin/python3
"""The fault suite (CTest label faults): the whole path with real processes

  quotebus-exsim (wss/https, test CA, faults) -> quotebus-adapter -> NNG ->
  quotebus-broker (with or without its supervisor) -> NNG -> quotebus-sub

under crashes, upstream storms, stalls, failing snapshots, hostile input and
slow consumers. Every case ends with each subscriber's rebuilt book compared
exactly (level by level, as decimals, and at the same final update id) with
the book the simulator wrote when it stopped generating (--events N, --dump).

Cases (one CTest test each; usage: test_faults.py --bin-dir DIR --case NAME):
  adapter_kill        kill -9 of the adapter mid-burst; the broker's supervisor
                      restarts it; books exact; subscribers saw the feed go
                      back to live, and (once the broker announces restarts) a
                      status naming the restart for every symbol
  adapter_hang        the adapter stopped (SIGSTOP: alive, silent): the broker's
                      watchdog (--adapter-silence-ms 3000) kills and restarts it;
                      books exact; the restart is on the bus
  broker_kill         kill -9 of a --no-spawn broker mid-burst; a new one starts;
                      adapter and subscribers redial by themselves; books exact
  supervisor_kill     kill -9 of a supervising broker alone: its adapter must not
                      outlive it (no orphan publishing beside the replacement);
                      a new broker and adapter; books exact
  both_kill           kill -9 of adapter and broker at the same instant; both
                      restarted; books exact
  disconnect_storm    the simulator drops every connection at random (lifetime
                      0.75-2.25 s) for 15 s: books heal, and the number of
                      upstream connections stays within the adapter's documented
                      reconnect backoff (500 ms doubling, -25 % jitter); each drop
                      is "resyncing" naming the lost connection (bus, /metrics),
                      live again at the end
  stall               the connection goes silent (no data, no pings) for 6 s:
                      "stale" with its reason on the bus, in /metrics
                      (state_info, state_changes_total) and /health, then "live"
                      again everywhere; books exact
  upstream_down       the simulator is killed: "resyncing" (connection lost), then
                      "down" with the connect error on the bus, /metrics, /health;
                      a simulator back on the port: live again, books exact
  snapshot_fail       the REST snapshot answers 429 (Retry-After: 1) and 500
                      alternately 6 times, then recovers: "resyncing" naming the
                      HTTP failure (bus, /metrics, /health), then live; books exact
  bad_input_binance   truncated frames, invalid UTF-8, JSON nesting bombs, numbers
  bad_input_htx       with thousands of digits, malformed and oversized frames (HTX:
  bad_input_bithumb   also corrupt gzip and gzip bombs): counted, never applied,
                      no crash, no log flood (rate-limited lines); books exact
  rogue_ingest        a local process publishes garbage msgpack into the ingest
                      socket beside two real feeds (binance, htx): rejected and
                      counted; both feeds' books exact
  slow_sub_nng        a subscriber stopped (SIGSTOP) for 20 s at a high rate:
                      the broker's RSS stays bounded and flat, the other
                      subscriber is exact and gap-free, the stopped one heals
  slow_sub_ws         the same over websocket (a client that stops reading);
                      skipped while quotebus-broker has no --http-listen
Environment: QB_FAULTS_SCALE (default 1) multiplies the fault durations (the
stopped subscriber's pause, the storm), e.g. 3 for one minute.
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402
import qbtest  # noqa: E402
from faultlib import fail, log, skip, stats, wait_for  # noqa: E402

SYMS = ["BTC-USDT", "ETH-USDT"]
KRW = ["BTC-KRW", "ETH-KRW"]
SCALE = float(os.environ.get("QB_FAULTS_SCALE", "1"))
# Healing bound after a fault ends: the adapters' 1 s refresh snapshots plus
# delivery, with room for a loaded 2-core machine under ASan.
HEAL_S = 15


def sim_for(st, events, rate=2000, extra=(), exchange="binance", trade_rate=50, name="exsim"):
    return st.exsim(["--exchange", exchange, "--rate", str(rate), "--trade-rate",
                     str(trade_rate), "--events", str(events), "--seed", "11"] + list(extra),
                    name=name)


def wait_deltas(readers, n, timeout=60):
    fl.poll_until(readers, lambda: all(fl.deltas(r) >= n for r in readers), timeout,
                  "%d deltas at every subscriber" % n)


def exact(readers, sim, symbols=SYMS, exchange="binance", timeout=120):
    if exchange == "binance" and not any(r.multi for r in readers):
        return qbtest.wait_books_exact(readers, sim.dump_path, symbols, timeout=timeout)
    return qbtest.wait_books_exact_ex(readers, sim.dump_path, exchange, symbols,
                                      timeout=timeout)


# ---------------------------------------------------------------- crashes

def metrics_states(port):
    """{symbol: state} of the binance instruments in the broker's /metrics."""
    import re
    import urllib.request
    try:
        txt = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read()
    except OSError:
        return {}
    out = {}
    for m in re.finditer(r'quotebus_instrument_state\{exchange="binance",symbol="([^"]+)",'
                         r'state="([a-z]+)"\} 1', txt.decode("utf-8", "replace")):
        out[m.group(1)] = m.group(2)
    return out


def case_adapter_kill(st):
    sim = sim_for(st, 30000)
    readers = fl.readers_for(st, 2)
    time.sleep(0.3)
    port = fl.free_port() if fl.broker_has(st.bin, "http-listen") else None
    broker = fl.supervised_broker(st, sim, "binance", SYMS,
                                  extra=["--http-listen", "127.0.0.1:%d" % port] if port else [])
    wait_deltas(readers, 3000)
    pids = fl.adapter_pids(broker.p.pid)
    if len(pids) != 1:
        fail("expected one supervised adapter, found %s" % pids)
    # per reader: a reader that connected later saw fewer statuses before
    n_status = [len(fl.statuses(r)) for r in readers]
    log("kill -9 adapter %d in the burst" % pids[0])
    fl.kill9_pid(pids[0])
    t0 = time.time()
    new = wait_for(lambda: [p for p in fl.adapter_pids(broker.p.pid) if p != pids[0]], 20,
                   "the supervisor to restart the adapter")
    log("restarted as %s after %.1f s" % (new, time.time() - t0))
    exact(readers, sim)
    fl.check_alive(sim, broker)
    b = stats(broker.stats_path)
    if b.get("adapter_restarts", 0) < 1:
        fail("broker stats do not count the restart: %s" % b)
    announces = fl.broker_has(st.bin, "adapter-silence-ms")
    for r, n0 in zip(readers, n_status):
        after = [s for s in fl.statuses(r)][n0:]
        states = [s[1] for s in after]
        if "live" not in states:
            fail("%s: no live status after the restart: %s" % (r.proc.name, after[:10]))
        said = [s for s in after if "restart" in s[2]]
        log("%s: statuses after the kill: %s" % (r.proc.name, after[:6]))
        if announces and len({s[0] for s in said}) < len(SYMS):
            fail("%s: the supervisor did not say so on the bus for every symbol (a status "
                 "whose reason names the restart): %s" % (r.proc.name, after[:10]))
    if port:
        # The bus says live again; the broker's own view (/metrics, the
        # page, /health) must agree, whatever seq the new adapter restarted at.
        deadline = time.time() + HEAL_S
        while time.time() < deadline and \
                not all(metrics_states(port).get(s) == "live" for s in SYMS):
            time.sleep(0.2)
        if not all(metrics_states(port).get(s) == "live" for s in SYMS):
            fail("after the adapter restart the bus says live but the broker's /metrics says "
                 "%s (the restarted adapter's status seq starts again at 1 and the broker "
                 "drops it as old: broker/topics.c)" % metrics_states(port))
    fl.stop_clean(*[r.proc for r in readers], broker, sim)


def case_adapter_hang(st):
    """An adapter alive but silent (SIGSTOP) is killed and restarted by the
    supervisor after --adapter-silence-ms; books exact."""
    if not fl.broker_has(st.bin, "adapter-silence-ms"):
        skip("quotebus-broker has no --adapter-silence-ms (hung adapter watchdog) yet")
    sim = sim_for(st, 30000)
    readers = fl.readers_for(st, 2)
    time.sleep(0.3)
    broker = fl.supervised_broker(st, sim, "binance", SYMS,
                                  extra=["--adapter-silence-ms", "3000"])
    wait_deltas(readers, 3000)
    pids = fl.adapter_pids(broker.p.pid)
    if len(pids) != 1:
        fail("expected one supervised adapter, found %s" % pids)
    n_status = len(fl.statuses(readers[0]))
    log("SIGSTOP adapter %d (alive, silent)" % pids[0])
    os.kill(pids[0], signal.SIGSTOP)
    t0 = time.time()
    new = wait_for(lambda: [p for p in fl.adapter_pids(broker.p.pid) if p != pids[0]], 40,
                   "the supervisor to kill and restart the hung adapter")
    log("hung adapter replaced by %s after %.1f s" % (new, time.time() - t0))
    if fl.pid_alive(pids[0]):
        fail("the hung adapter %d is still alive beside its replacement" % pids[0])
    exact(readers, sim)
    b = stats(broker.stats_path)
    log("broker: adapter_restarts=%s adapter_hung_kills=%s" % (b.get("adapter_restarts"),
                                                               b.get("adapter_hung_kills")))
    if b.get("adapter_restarts", 0) < 1:
        fail("broker stats do not count the restart: %s" % b)
    after = fl.statuses(readers[0])[n_status:]
    if not any("hung" in x[2] or "silent" in x[2] or "restart" in x[2] for x in after):
        fail("no status on the bus says the adapter was hung and restarted: %s" % after[:10])
    fl.check_alive(sim, broker)
    fl.stop_clean(*[r.proc for r in readers], broker, sim)


def case_broker_kill(st):
    sim = sim_for(st, 30000)
    broker = fl.plain_broker(st)
    readers = fl.readers_for(st, 2)
    time.sleep(0.3)
    adapter = st.adapter(sim, SYMS)
    wait_deltas(readers, 3000)
    log("kill -9 broker in the burst")
    broker.kill9()
    time.sleep(0.5)
    port = fl.free_port()
    broker2 = fl.plain_broker(st, name="broker2",
                              extra=["--http-listen", "127.0.0.1:%d" % port])
    exact(readers, sim)
    # The new broker never saw the adapter's status changes (they happened
    # before it existed): the adapter says its current state again when it
    # connects, so /metrics knows every feed is live, not "unknown".
    def all_live():
        m = fl.metrics(port)
        st_ = fl.inst_states(m, "binance") if m is not None else {}
        return len(st_) == len(SYMS) and all(v[0] == "live" for v in st_.values())
    wait_for(all_live, 15, "the restarted broker's /metrics to show every feed live")
    fl.check_alive(adapter, *[r.proc for r in readers])
    fl.stop_clean(*[r.proc for r in readers], adapter, broker2, sim)


def case_supervisor_kill(st):
    sim = sim_for(st, 30000)
    readers = fl.readers_for(st, 2)
    time.sleep(0.3)
    broker = fl.supervised_broker(st, sim, "binance", SYMS)
    wait_deltas(readers, 3000)
    old = fl.adapter_pids(broker.p.pid)
    if len(old) != 1:
        fail("expected one supervised adapter, found %s" % old)
    log("kill -9 of the supervising broker %d alone (adapter %d)" % (broker.p.pid, old[0]))
    fl.kill9_pid(broker.p.pid)
    broker.p.wait(5)
    # The orphan must go (parent-death signal): two adapters publishing the
    # same topics would interleave two sequence spaces.
    wait_for(lambda: not fl.pid_alive(old[0]), 10, "the orphaned adapter %d to exit" % old[0])
    broker2 = fl.supervised_broker(st, sim, "binance", SYMS, name="broker2")
    exact(readers, sim)
    fl.check_alive(*[r.proc for r in readers])
    fl.stop_clean(*[r.proc for r in readers], broker2, sim)


def case_both_kill(st):
    sim = sim_for(st, 30000)
    broker = fl.plain_broker(st)
    readers = fl.readers_for(st, 2)
    time.sleep(0.3)
    adapter = st.adapter(sim, SYMS)
    wait_deltas(readers, 3000)
    log("kill -9 of adapter and broker at once")
    os.kill(adapter.p.pid, signal.SIGKILL)
    os.kill(broker.p.pid, signal.SIGKILL)
    adapter.p.wait(5)
    broker.p.wait(5)
    time.sleep(0.3)
    broker2 = fl.plain_broker(st, name="broker2")
    adapter2 = st.adapter(sim, SYMS, name="adapter2")
    exact(readers, sim)
    log("publisher restarts detected by the subscribers' books (a new stream's deltas "
        "before its first snapshot): %s" % [sum(getattr(b, "restarts", 0)
                                                 for b in r.books.values()) for r in readers])
    fl.check_alive(*[r.proc for r in readers])
    fl.stop_clean(*[r.proc for r in readers], adapter2, broker2, sim)


# ---------------------------------------------------------------- upstream

def backoff_bound(storm_s, life_min_s, base_ms=500, cap_ms=30000, jitter=0.25):
    """Most connections one websocket can open in storm_s seconds when every
    connection lives at least life_min_s and the adapter honours its backoff
    (attempt k waits >= (1-jitter) * min(base * 2^k, cap); the attempt count
    resets only after 30 s up, which a storm never allows)."""
    t, n, k = 0.0, 1, 0
    while True:
        t += life_min_s + (1 - jitter) * min(base_ms * 2 ** k, cap_ms) / 1000.0
        if t > storm_s:
            return n + 1  # the connection made as the storm ends
        n += 1
        k += 1


def case_disconnect_storm(st):
    storm_s = 15 * SCALE
    life_ms = 1500
    rate = 1000
    events = int((storm_s + 10) * rate)
    sim = sim_for(st, events, rate=rate, extra=[
        "--disconnect-random-ms", str(life_ms),
        "--disconnect-random-for-ms", str(int(storm_s * 1000))])
    broker, port, watcher = http_broker(st)
    readers = fl.readers_for(st, 2)
    time.sleep(0.3)
    adapter = st.adapter(sim, SYMS)
    t0 = time.time()
    try:
        fl.poll_until(readers, lambda: time.time() - t0 > storm_s, storm_s + 5,
                      "the storm to end")
        s_storm = stats(sim.stats_path)
        # Each drop: resyncing with the reason (connection lost, then the
        # new snapshot after the reconnect) everywhere, and live at the end.
        expect_live_again(watcher, readers, port, SYMS, "resyncing", "disconnect_storm")
        for sym in SYMS:
            fl.expect_state(watcher, readers, sym, "resyncing",
                            ("connection lost", "reconnected"), "disconnect_storm")
            for r in readers:
                if not any(x[1] == "resyncing" and "connection lost" in x[2]
                           for x in fl.statuses(r, sym)):
                    fail("%s: no resyncing status names the lost connection for %s"
                         % (r.proc.name, sym))
    finally:
        watcher.stop()
    exact(readers, sim, timeout=storm_s + 120)
    s = stats(sim.stats_path)
    a = stats(adapter.stats_path)
    drops = s_storm.get("fault_disconnect_random", 0)
    conns = s_storm.get("connections_total", 0)
    # One websocket connection carries both symbols (streams-per-conn 1024).
    bound = backoff_bound(storm_s + 1, life_ms / 2000.0)
    log("storm %.0f s: %d random drops, %d connections during the storm (bound %d), "
        "%d in all; adapter reconnects=%s" % (storm_s, drops, conns, bound,
                                              s.get("connections_total", 0),
                                              a.get("reconnects")))
    if drops < 2:
        fail("the storm dropped only %d connections" % drops)
    if conns > bound:
        fail("reconnect budget exceeded: %d connections in %.0f s, backoff allows %d"
             % (conns, storm_s, bound))
    fl.check_alive(adapter, broker)
    fl.stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def http_broker(st, extra=()):
    """A --no-spawn broker with /metrics and /health on a free port, and a
    MetricsWatcher on it. Returns (broker, port, watcher)."""
    port = fl.free_port()
    broker = fl.plain_broker(st, extra=["--http-listen", "127.0.0.1:%d" % port] + list(extra))
    wait_for(lambda: _can_connect(port), 15, "the broker's HTTP port")
    return broker, port, fl.MetricsWatcher(port, "binance")


def expect_live_again(watcher, readers, port, symbols, after_state, what, live_min=2):
    """Every symbol back to live after after_state: on the bus (a live status
    after the last after_state one), in /metrics (state_info live, transition
    counters for after_state and live) and in /health (not listed)."""
    def bus_ok():
        for r in readers:
            for sym in symbols:
                states = [x[1] for x in fl.statuses(r, sym)]
                if after_state not in states:
                    return False
                last = len(states) - 1 - states[::-1].index(after_state)
                if "live" not in states[last + 1:]:
                    return False
        return True
    fl.poll_until(readers, bus_ok, HEAL_S + 45, "%s: live again on the bus after %s"
                  % (what, after_state))
    deadline = time.time() + HEAL_S
    while True:
        m = fl.metrics(port) or []
        cur = fl.inst_states(m, "binance")
        h = fl.health(port) or {}
        listed = [e for e in h.get("not_live", []) if e.get("ex") == "binance"]
        if all(cur.get(sym, ("",))[0] == "live" for sym in symbols) and not listed:
            break
        if time.time() > deadline:
            fail("%s: the bus says live again, but /metrics says %s and /health lists %s"
                 % (what, cur, listed))
        time.sleep(0.2)
    for sym in symbols:
        ch = fl.state_changes(m, "binance", sym)
        if ch.get(after_state, 0) < 1 or ch.get("live", 0) < live_min:
            fail("%s: quotebus_instrument_state_changes_total for %s does not count the "
                 "transitions to %s and back to live: %s" % (what, sym, after_state, ch))
    log("%s: /metrics transitions %s" % (what, {sym: fl.state_changes(m, "binance", sym)
                                                for sym in symbols}))


def case_stall(st):
    """Connected but silent: stale with its reason on the bus, in /metrics
    and in /health, then live again everywhere; books exact."""
    stall_ms = 6000
    sim = sim_for(st, 16000, rate=1000, extra=["--stall-after", "3000", "--stall-ms",
                                              str(stall_ms), "--ping-interval-ms", "1000"])
    broker, port, watcher = http_broker(st)
    readers = fl.readers_for(st, 2)
    time.sleep(0.3)
    adapter = st.adapter(sim, SYMS, extra=["--stale-ms", "1500"])
    try:
        expect_live_again(watcher, readers, port, SYMS, "stale", "stall")
        for sym in SYMS:
            reasons = fl.expect_state(watcher, readers, sym, "stale", "no update for", "stall")
            log("stale reason %s: %r" % (sym, reasons[0]))
        fl.expect_health(watcher, "stale", "no update for", "stall")
    finally:
        watcher.stop()
    log("statuses BTC-USDT: %s" % [x[1] for x in fl.statuses(readers[0], "BTC-USDT")])
    exact(readers, sim)
    s = stats(sim.stats_path)
    if s.get("fault_stall", 0) < 1:
        fail("the simulator did not stall: %s" % s)
    fl.check_alive(adapter, broker)
    fl.stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def case_upstream_down(st):
    """The exchange goes away (the simulator is killed): every symbol goes
    down with the connection error on the bus, in /metrics and /health; a
    simulator back on the same port brings the feed back to live and the
    books exactly to the new simulator's."""
    sim = sim_for(st, 0, rate=500)
    broker, port, watcher = http_broker(st)
    readers = fl.readers_for(st, 2)
    time.sleep(0.3)
    adapter = st.adapter(sim, SYMS)
    try:
        fl.poll_until(readers, lambda: all(
            "live" in [x[1] for x in fl.statuses(r, s)] for r in readers for s in SYMS), 60,
            "every symbol live")
        log("kill -9 of the simulator (upstream unreachable)")
        sim.kill9()
        fl.poll_until(readers, lambda: all(
            any(x[1] == "down" for x in fl.statuses(r, s)) for r in readers for s in SYMS),
            60, "status down for every symbol")
        for sym in SYMS:
            reasons = fl.expect_state(watcher, readers, sym, "down", "upstream unreachable",
                                      "upstream_down")
            log("down reason %s: %r" % (sym, reasons[0]))
            if len(reasons[0]) <= len("upstream unreachable: "):
                fail("the down status does not carry the error: %r" % reasons[0])
        fl.expect_health(watcher, "down", "upstream unreachable", "upstream_down")
        # The connection loss itself was announced first (resyncing, with why).
        fl.expect_state(watcher, readers, "BTC-USDT", "resyncing", "connection lost",
                        "upstream_down")
        sim2 = sim_for(st, 6000, rate=1000, extra=["--port", str(sim.port)], name="exsim2")
        if sim2.port != sim.port:
            fail("the second simulator listens on %d, not %d" % (sim2.port, sim.port))
        expect_live_again(watcher, readers, port, SYMS, "down", "upstream_down")
    finally:
        watcher.stop()
    exact(readers, sim2)
    fl.check_alive(adapter, broker)
    fl.stop_clean(*[r.proc for r in readers], adapter, broker, sim2)


def case_snapshot_fail(st):
    sim = sim_for(st, 9000, rate=1000, extra=["--snapshot-fail", "6", "--snapshot-fail-status",
                                             "0"])
    broker, port, watcher = http_broker(st)
    readers = fl.readers_for(st, 2)
    time.sleep(0.3)
    t0 = time.time()
    adapter = st.adapter(sim, SYMS)
    try:
        fl.poll_until(readers, lambda: all(s in readers[0].books and readers[0].books[s].valid
                                           for s in SYMS), 60, "books valid after the failures")
        t_live = time.time() - t0
        # Every symbol's first snapshot fails: resyncing with the HTTP
        # failure as the reason (bus, /metrics, /health), then live.
        expect_live_again(watcher, readers, port, SYMS, "resyncing", "snapshot_fail",
                          live_min=1)
        reasons = []
        for sym in SYMS:
            reasons += fl.expect_state(watcher, readers, sym, "resyncing", "snapshot HTTP",
                                       "snapshot_fail")
        log("resyncing reasons: %s" % reasons[:6])
        for code in ("snapshot HTTP 429", "snapshot HTTP 500"):
            if not any(code in x for x in reasons):
                fail("no resyncing status names the failure %r: %s" % (code, reasons))
        fl.expect_health(watcher, "resyncing", "snapshot HTTP", "snapshot_fail")
    finally:
        watcher.stop()
    exact(readers, sim)
    a = stats(adapter.stats_path)
    s = stats(sim.stats_path)
    log("snapshot failures: simulator %s, adapter snapshots_failed=%s ok=%s, live after %.1f s"
        % (s.get("fault_snapshot_fail"), a.get("snapshots_failed"), a.get("snapshots_ok"),
           t_live))
    if s.get("fault_snapshot_fail", 0) != 6 or a.get("snapshots_failed", 0) < 6:
        fail("expected 6 failed snapshots (429/500): sim %s adapter %s" % (
            s.get("fault_snapshot_fail"), a.get("snapshots_failed")))
    # Pacing, from the simulator's log (one line per snapshot request):
    # after a 429 with Retry-After: 1 the adapter must not ask again for
    # that symbol within 1 s; after a 500, not at once either (backoff).
    reqs = snapshot_requests(sim)
    for sym, rs in sorted(reqs.items()):
        log("snapshot requests %s: %s" % (sym, ["%.2f:%s" % (t - rs[0][0], what)
                                                 for t, what in rs]))
        for (t1, what), (t2, _) in zip(rs, rs[1:]):
            if what == "429" and t2 - t1 < 0.95:
                fail("%s: snapshot asked again %.3f s after a 429 with Retry-After: 1"
                     % (sym, t2 - t1))
            if what == "500" and t2 - t1 < 0.2:
                fail("%s: snapshot asked again %.3f s after a 500 (no backoff)" % (sym, t2 - t1))
    if sum(len(v) for v in reqs.values()) < 8:
        fail("the simulator logged too few snapshot requests: %s" % reqs)
    fl.check_alive(adapter, broker)
    fl.stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def snapshot_requests(sim):
    """{native symbol: [(time s, "429"|"500"|"ok"), ...]} from the simulator's
    exsim_fault_snapshot_fail / exsim_snapshot_served log lines."""
    import datetime
    out = {}
    for ln in sim.stderr_text().splitlines():
        if "exsim_fault_snapshot_fail" not in ln and "exsim_snapshot_served" not in ln:
            continue
        f = ln.split()
        t = datetime.datetime.strptime(f[0], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
        kv = dict(x.split("=", 1) for x in f if "=" in x)
        what = kv.get("status", "ok")
        out.setdefault(kv.get("symbol", "-"), []).append((t, what))
    return out


def bad_input(st, exchange, symbols, sim_extra, counters):
    sim = sim_for(st, 8000, rate=1500, exchange=exchange, extra=[
        "--bad-input-every", "40", "--malformed-every", "97"] + list(sim_extra))
    broker = fl.plain_broker(st)
    readers = fl.readers_for(st, 2, multi=exchange != "binance")
    time.sleep(0.3)
    adapter = st.adapter(sim, symbols, exchange=exchange)
    exact(readers, sim, symbols, exchange)
    s = stats(sim.stats_path)
    a = stats(adapter.stats_path)
    kinds = {k: s.get(k, 0) for k in ("fault_bad_truncated", "fault_bad_utf8", "fault_bad_nest",
                                      "fault_bad_bignum", "fault_malformed", "fault_oversized",
                                      "fault_corrupt_gzip", "fault_gzip_bomb")}
    seen = {k: a.get(k, 0) for k in counters}
    log("simulator sent %s" % kinds)
    log("adapter counted %s (reconnects %s, resyncs %s)" % (seen, a.get("reconnects"),
                                                           a.get("resyncs")))
    for k in ("fault_bad_truncated", "fault_bad_utf8", "fault_bad_nest", "fault_bad_bignum"):
        if kinds[k] < 5:
            fail("the simulator sent too few %s frames: %s" % (k, kinds))
    if sum(seen.values()) < 20:
        fail("bad frames not counted by the adapter: %s" % seen)
    # No log flood: hundreds of bad frames, a bounded number of lines.
    lines = fl.stderr_lines(adapter)
    nbad = sum(kinds.values())
    log("adapter stderr: %d lines for %d bad frames" % (lines, nbad))
    if lines > 400:
        fail("adapter log flooded: %d lines for %d bad frames:\n%s" % (
            lines, nbad, "\n".join(adapter.stderr_text().splitlines()[-30:])))
    fl.check_alive(adapter, broker)
    fl.stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def case_bad_input_binance(st):
    bad_input(st, "binance", SYMS, ["--oversized-every", "1500", "--oversized-bytes", "1500000"],
              ["bad_json", "oversized", "unknown", "parse_errors", "bad_frames"])


def case_bad_input_htx(st):
    bad_input(st, "htx", SYMS, ["--corrupt-gzip-every", "113", "--gzip-bomb-every", "1700",
                                "--gzip-bomb-bytes", "4194304"],
              ["bad_json", "oversized", "unknown", "bad_gzip", "gzip_oversized",
               "lost_frames", "parse_errors", "bad_frames"])


def case_bad_input_bithumb(st):
    bad_input(st, "bithumb", KRW, ["--oversized-every", "1500", "--oversized-bytes", "1500000"],
              ["bad_json", "oversized", "unknown", "parse_errors", "bad_frames"])


# ---------------------------------------------------------------- local hostile parties

def case_rogue_ingest(st):
    sim = sim_for(st, 8000, rate=1500, exchange="binance,htx")
    broker = fl.plain_broker(st)
    readers = fl.readers_for(st, 2, multi=True)
    time.sleep(0.3)
    ab = st.adapter(sim, SYMS, exchange="binance", name="adapter-binance")
    ah = st.adapter(sim, SYMS, exchange="htx", name="adapter-htx")
    rogue = st.start("rogue", [os.path.join(st.bin, "qb-rogue-pub"), st.ingest, "3000", "2"])
    qbtest.wait_books_exact_ex(readers, sim.dump_path, "binance", SYMS, timeout=120)
    qbtest.wait_books_exact_ex(readers, sim.dump_path, "htx", SYMS, timeout=120)
    b = stats(broker.stats_path)
    bad = {k: b.get(k, 0) for k in ("bad_msgpack", "bad_version", "bad_topic", "oversized")}
    log("broker rejected %s" % bad)
    if sum(bad.values()) < 100 or bad["bad_msgpack"] == 0:
        fail("rogue frames not rejected and counted: %s" % b)
    for r in readers:
        gaps = sum(bk.gaps for bk in r.xbooks.values())
        if gaps:
            fail("%s: %d gaps on the real feeds beside the rogue publisher" % (r.proc.name, gaps))
    if b.get("ingest_gaps", 0):
        fail("broker saw ingest gaps on the real feeds: %s" % b.get("ingest_gaps"))
    rogue.stop()
    fl.check_alive(ab, ah, broker)
    fl.stop_clean(*[r.proc for r in readers], ab, ah, broker, sim)


def rss_verdict(sampler, name, warm_s, bound_kb, flat_kb):
    """Fails unless name's RSS after warm_s grew by less than bound_kb over
    its level at warm_s, and its last third grew by less than flat_kb."""
    base = sampler.window(name, warm_s - 1, warm_s + 1)
    rest = sampler.window(name, warm_s)
    if not base or len(rest) < 6:
        fail("too few RSS samples of %s" % name)
    peak = max(rest)
    third = rest[len(rest) * 2 // 3:]
    log("%s RSS: %d kB at warm-up, peak %d kB (+%d kB), last third %d..%d kB" % (
        name, base[0], peak, peak - base[0], min(third), max(third)))
    if peak - base[0] > bound_kb:
        fail("%s RSS grew %d kB while a subscriber was stopped (bound %d kB)" % (
            name, peak - base[0], bound_kb))
    if max(third) - third[0] > flat_kb:
        fail("%s RSS still growing at the end: %d -> %d kB" % (name, third[0], max(third)))


def case_slow_sub_nng(st):
    pause_s = 20 * SCALE
    # 1000 events/s per symbol: the stopped subscriber's 8192-message queue
    # fills in a few seconds, while the reading one (an ASan build on a
    # loaded 2-core machine) keeps up with ease, so its gaps would mean the
    # stopped one hurt it.
    rate = 1000
    events = int((pause_s + 12) * rate)
    sim = sim_for(st, events, rate=rate)
    broker = fl.plain_broker(st)
    readers = fl.readers_for(st, 2)
    time.sleep(0.3)
    adapter = st.adapter(sim, SYMS)
    sampler = fl.RssSampler(lambda: {"broker": broker.p.pid, "adapter": adapter.p.pid}, 0.25)
    try:
        wait_deltas(readers, 2000)
        t_stop = time.time() - sampler.t0
        log("SIGSTOP %s for %.0f s" % (readers[1].proc.name, pause_s))
        os.kill(readers[1].proc.p.pid, signal.SIGSTOP)
        t_end = time.time() + pause_s
        while time.time() < t_end:
            readers[0].poll()
            time.sleep(0.2)
        os.kill(readers[1].proc.p.pid, signal.SIGCONT)
        log("SIGCONT %s" % readers[1].proc.name)
        exact(readers, sim, timeout=120)
    finally:
        sampler.stop()
    if any(b.gaps for b in readers[0].books.values()):
        fail("the reading subscriber saw gaps while the other was stopped")
    # NNG queues at most 8192 messages per subscriber pipe (drop beyond);
    # ~1 KiB each at most here: a few MB, 64 MB is far above any honest use.
    rss_verdict(sampler, "broker", t_stop + 2, 64 * 1024, 8 * 1024)
    fl.check_alive(adapter, broker)
    fl.stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def case_slow_sub_ws(st):
    if not fl.broker_has(st.bin, "http-listen"):
        skip("quotebus-broker has no --http-listen (websocket endpoint) yet: the websocket "
             "variant of the slow subscriber is skipped")
    pause_s = 20 * SCALE
    rate = 1500  # the reading client is Python: leave it CPU on a loaded 2-core machine
    events = int((pause_s + 15) * rate)
    sim = sim_for(st, events, rate=rate)
    port = fl.free_port()
    broker = fl.plain_broker(st, extra=["--http-listen", "127.0.0.1:%d" % port])
    readers = fl.readers_for(st, 2)
    time.sleep(0.3)
    adapter = st.adapter(sim, SYMS)
    wait_for(lambda: _can_connect(port), 15, "the broker's HTTP port")
    slow = fl.RawWs(port, rcvbuf=4096)
    fast = fl.RawWs(port)
    for c in (slow, fast):
        c.send_text('{"op":"subscribe","topics":["book.","trade."],"id":1}')
    sampler = fl.RssSampler(lambda: {"broker": broker.p.pid}, 0.25)
    try:
        # The slow client never reads from here on; the fast one reads all
        # the time (NNG subscribers' output is read at the end).
        if not fast.read_for(3.0):
            fail("the reading websocket client was closed (code %s)" % fast.closed_code)
        t_stop = time.time() - sampler.t0
        log("websocket client stops reading for %.0f s" % pause_s)
        if not fast.read_for(pause_s):
            fail("the reading websocket client was closed (code %s) after %d messages"
                 % (fast.closed_code, fast.messages))
        still_open = slow.read_for(2.0)
        log("slow client: %s after the pause (close code %s), fast client got %d messages"
            % ("open" if still_open else "closed", slow.closed_code, fast.messages))
        exact(readers, sim, timeout=120)
    finally:
        sampler.stop()
        slow.close()
        fast.close()
    if fast.messages < 1000:
        fail("the reading websocket client got only %d messages" % fast.messages)
    b = stats(broker.stats_path)
    log("broker websocket policy: conflations=%s slow_closes=%s drop_conflated=%s" % (
        b.get("ws_conflations"), b.get("ws_slow_closes"), b.get("ws_drop_conflated")))
    if b.get("ws_conflations", 0) + b.get("ws_slow_closes", 0) < 1:
        fail("the stuck websocket client was neither conflated nor closed: %s" % {
            k: v for k, v in b.items() if k.startswith("ws_")})
    for r in readers:
        if any(b.gaps for b in r.books.values()):
            fail("%s (NNG) saw gaps while a websocket client was stuck" % r.proc.name)
    # The per-client hard limit is 16 MiB (--http-queue-hard): the broker may
    # hold that for the stuck client, plus its handoff queue; 96 MB is the bound.
    rss_verdict(sampler, "broker", t_stop + 2, 96 * 1024, 8 * 1024)
    fl.check_alive(adapter, broker)
    fl.stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def _can_connect(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


CASES = {k[5:]: v for k, v in globals().items() if k.startswith("case_")}

if __name__ == "__main__":
    fl.run_case_main(CASES, "fault")
