#!/usr/bin/env python3
"""End-to-end tests of the whole path with real processes:

  quotebus-exsim (wss + https, test CA) -> quotebus-adapter binance -> NNG ->
  quotebus-broker -> NNG -> quotebus-sub (x2) -> books rebuilt here

Every case ends by comparing each subscriber's rebuilt book with the book the
simulator wrote when it stopped generating (--events N, --dump): exactly,
level by level, as decimals. Usage: test_pipeline.py --bin-dir DIR --case NAME
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qbtest  # noqa: E402
from qbtest import fail, log, stats, wait_for  # noqa: E402

SYMS = ["BTC-USDT", "ETH-USDT"]
# The documented healing bound is the adapters' refresh interval (1 s) plus
# delivery; tests allow 10 s for a loaded 2-core machine under sanitizers.
HEAL_BOUND_S = 10


def pipeline(st, sim_args, events, rate=4000, symbols=SYMS, adapter_args=(), subs=2,
             sub_args=()):
    sim = st.exsim(["--rate", str(rate), "--trade-rate", "50", "--events", str(events),
                    "--seed", "7"] + list(sim_args))
    broker = st.broker()
    readers = []
    for i in range(subs):
        s = st.sub(["book.", "trade.", "status."], name="sub%d" % i, extra=sub_args)
        readers.append(qbtest.Reader(s))
    time.sleep(0.3)  # let subscribers connect before data flows
    adapter = st.adapter(sim, symbols, extra=adapter_args)
    return sim, broker, adapter, readers


def check_no_crash(*procs):
    for p in procs:
        if not p.alive():
            fail("%s died (exit %s):\n%s" % (p.name, p.p.returncode, p.stderr_text()))


def stop_clean(*procs):
    """Stops processes with SIGTERM and checks they exit 0 (under ASan this
    is also the leak check)."""
    for p in procs:
        rc = p.stop()
        if rc != 0:
            fail("%s exited %s:\n%s" % (p.name, rc, p.stderr_text()[-4000:]))


def wait_subs_connected(readers, timeout=30):
    """Until every subscriber logged its NNG connection to the broker (NNG
    pub/sub filters at the subscriber: from then on it gets every frame)."""
    wait_for(lambda: all("nng_connected" in r.proc.stderr_text() for r in readers), timeout,
             "subscribers connected to the broker")


def case_exact(st):
    """Tens of thousands of deltas, two subscribers, exact books. Delivery
    is proved exactly, not by a rate: with no loss reported anywhere (the
    adapter's publish errors, the broker's ingest gaps and send errors, each
    subscriber's own gap count), every delta the adapter published was
    applied by every subscriber; a loss that did happen (NNG drops when a
    reader falls 8192 messages behind on a loaded machine) must be counted
    by whoever saw it, and the books must still end exact (healed)."""
    n = 15000
    sim = st.exsim(["--rate", "4000", "--trade-rate", "50", "--events", str(n), "--seed", "7"])
    broker = st.broker()
    readers = []
    for i in range(2):
        s = st.sub(["book.", "trade.", "status."], name="sub%d" % i,
                   extra=["--stats-file", st.path("sub%d.stats" % i)])
        s.stats_path = st.path("sub%d.stats" % i)
        readers.append(qbtest.Reader(s))
    # Connected before the first message: the first status and snapshot of
    # every topic reach the subscribers, so "every delta" is well defined.
    wait_subs_connected(readers)
    adapter = st.adapter(sim, SYMS)
    qbtest.wait_books_exact(readers, sim.dump_path, SYMS)
    check_no_crash(sim, broker, adapter)
    for r in readers:
        if r.counts.get("trade", 0) == 0:
            fail("%s received no trades" % r.proc.name)
        states = [m["state"] for m in r.messages if m["type"] == "status"]
        if "live" not in states:
            fail("%s never saw a live status: %s" % (r.proc.name, states))
    # Final counters: every process writes its stats file at exit.
    stop_clean(*[r.proc for r in readers], adapter, broker, sim)
    a = stats(adapter.stats_path)
    b = stats(broker.stats_path)
    published = a.get("deltas_applied", 0) - a.get("empty_updates", 0)
    log("adapter stats: %s" % {k: a.get(k) for k in ("frames", "deltas_applied", "empty_updates",
                                                       "gaps", "resyncs", "published",
                                                       "publish_errors")})
    log("broker stats: %s" % {k: b.get(k) for k in ("frames_in", "frames_out", "ingest_gaps",
                                                      "send_errors")})
    if a.get("gaps", 0) != 0:
        fail("the adapter saw upstream gaps on a clean simulator stream: %s" % a.get("gaps"))
    if published < n:
        fail("the adapter published only %d deltas for %d events per symbol" % (published, n))
    upstream_loss = (a.get("publish_errors", 0) + b.get("ingest_gaps", 0) +
                     b.get("send_errors", 0))
    for r in readers:
        sub = stats(r.proc.stats_path)
        applied = sum(bk.deltas for bk in r.books.values())
        received = r.counts.get("delta", 0)
        book_gaps = sum(bk.gaps for bk in r.books.values())
        log("%s: %d deltas received, %d applied of %d published; sub gaps=%s missed=%s "
            "out_of_order=%s; book gaps=%d" % (r.proc.name, received, applied, published,
                                               sub.get("gaps"), sub.get("missed"),
                                               sub.get("out_of_order"), book_gaps))
        if sub.get("out_of_order", 0):
            fail("%s got messages out of order from one adapter" % r.proc.name)
        if upstream_loss == 0 and sub.get("gaps", 0) == 0:
            if book_gaps or received != published or applied != published:
                fail("%s: no loss reported anywhere, yet %d of %d deltas received and %d "
                     "applied (book gaps %d): a silent loss" % (r.proc.name, received, published,
                                                              applied, book_gaps))
        else:
            # A loss: counted where it happened (a subscriber's gap is in its
            # counters and on its stderr), and healed: the books are exact.
            if book_gaps and not sub.get("gaps", 0):
                fail("%s: its books saw %d gaps its own counters do not report"
                     % (r.proc.name, book_gaps))
            if received > published or applied > published:
                fail("%s: more deltas than published (%d/%d of %d)" % (
                    r.proc.name, received, applied, published))
            log("%s: loss reported (upstream %d, subscriber gaps %s), books healed"
                % (r.proc.name, upstream_loss, sub.get("gaps")))


def case_tls_burst_end(st):
    """TLS read-ahead must not stall: the adapter lets OpenSSL read several
    records per system call, which poll() and lws cannot see (ws_conn.c), so
    its loop services them itself. The feed here is bursts of ~100 frames
    (20k events/s on the simulator's 5 ms timer) over wss and then silence:
    no more events and no server pings (--ping-interval-ms 0), so nothing
    would ever wake a stalled adapter. The last burst must arrive in full:
    the subscriber's book equals the simulator's final book within
    HEAL_BOUND_S of the feed's end (the adapter's stale timer, 30 s, is
    further away, so a stall cannot be healed by a resync), with no gap,
    resync beyond the first sync, or reconnect, and with records actually
    read ahead (tls_drained > 0)."""
    sym = ["BTC-USDT"]
    sim = st.exsim(["--symbols", "BTCUSDT", "--rate", "20000", "--changes", "20",
                    "--events", "20000", "--trade-rate", "0", "--ticker-every", "0",
                    "--ping-interval-ms", "0", "--seed", "11"])
    broker = st.broker()
    s = st.sub(["book."], name="sub0")
    readers = [qbtest.Reader(s)]
    wait_subs_connected(readers)
    adapter = st.adapter(sim, sym, extra=["--no-tickers"])
    qbtest.wait_books_exact(readers, sim.dump_path, sym, heal_bound=HEAL_BOUND_S)
    check_no_crash(sim, broker, adapter)
    stop_clean(readers[0].proc, adapter, broker, sim)
    a = stats(adapter.stats_path)
    log("adapter stats: %s" % {k: a.get(k) for k in ("frames", "deltas_applied", "gaps", "resyncs",
                                                       "reconnects", "tls_drained",
                                                       "tls_drain_stuck")})
    if a.get("gaps", 0) or a.get("reconnects", 0) or a.get("resyncs", 0) > 1:
        fail("the feed was clean: no gap, reconnect or extra resync expected: %s" % a)
    if a.get("tls_drained", 0) == 0:
        fail("no TLS record was read ahead: the test did not exercise read-ahead: %s" % a)


def case_gaps(st):
    """Dropped deltas upstream: the adapter detects each gap, resyncs that
    instrument only, and the final books are still exact."""
    sim, broker, adapter, readers = pipeline(st, ["--gap-every", "900"], 8000)
    qbtest.wait_books_exact(readers, sim.dump_path, SYMS)
    a = stats(adapter.stats_path)
    if a.get("gaps", 0) < 2 or a.get("resyncs", 0) < 2:
        fail("expected gaps and resyncs in adapter stats: %s" % a)
    if a.get("reconnects", 0) != 0:
        fail("a gap must not drop the connection: reconnects=%s" % a.get("reconnects"))
    states = [m.get("state") for m in readers[0].messages if m["type"] == "status"]
    if "resyncing" not in states:
        fail("no resyncing status published: %s" % states[:20])
    stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def case_malformed(st):
    """Malformed JSON and oversized frames upstream are counted and survived."""
    sim, broker, adapter, readers = pipeline(
        st, ["--malformed-every", "150", "--oversized-every", "2500"], 6000)
    qbtest.wait_books_exact(readers, sim.dump_path, SYMS)
    a = stats(adapter.stats_path)
    if a.get("bad_json", 0) < 10 or a.get("oversized", 0) < 1:
        fail("bad input not counted: %s" % a)
    check_no_crash(adapter)
    stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def case_reconnect(st):
    """The simulator drops the connection; the adapter reconnects and resyncs."""
    sim, broker, adapter, readers = pipeline(st, ["--disconnect-every", "3000"], 9000)
    qbtest.wait_books_exact(readers, sim.dump_path, SYMS)
    a = stats(adapter.stats_path)
    if a.get("reconnects", 0) < 1:
        fail("adapter did not reconnect: %s" % a)
    stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def case_snapshot_fail(st):
    """The REST snapshot fails (429 with Retry-After, then 500); the adapter
    retries with backoff and the books end exact."""
    sim, broker, adapter, readers = pipeline(
        st, ["--snapshot-fail", "3", "--snapshot-fail-status", "429", "--snapshot-delay-ms",
             "200"], 4000, rate=1000)
    qbtest.wait_books_exact(readers, sim.dump_path, SYMS)
    a = stats(adapter.stats_path)
    if a.get("snapshots_failed", 0) < 3:
        fail("snapshot failures not counted: %s" % a)
    stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def case_broker_restart(st):
    """kill -9 of the broker mid-stream: subscribers and the adapter reconnect
    by themselves and the books heal (refresh snapshots) without restarting
    anything else."""
    sim, broker, adapter, readers = pipeline(st, [], 14000, rate=2000)
    wait_for(lambda: (readers[0].poll() or True) and readers[0].counts.get("delta", 0) > 2000, 30,
             "deltas flowing")
    log("killing the broker")
    broker.kill9()
    time.sleep(1.0)
    broker2 = st.broker(name="broker2")
    # Healing bound: refresh snapshots every 1 s (PROTOCOL.md section 6);
    # 10 s leaves room for a loaded 2-core CI machine under ASan.
    qbtest.wait_books_exact(readers, sim.dump_path, SYMS, heal_bound=HEAL_BOUND_S)
    check_no_crash(adapter, *[r.proc for r in readers])
    stop_clean(*[r.proc for r in readers], adapter, broker2, sim)


def case_sub_gap_heal(st):
    """A subscriber that misses messages (tiny receive buffer and slow reads)
    reports the gaps and still ends with the exact book, from the refresh
    snapshots, without any action of its own."""
    sim, broker, adapter, readers = pipeline(st, [], 6000, rate=3000, subs=1,
                                             sub_args=["--recv-buf", "1", "--pause-ms", "1"])
    qbtest.wait_books_exact(readers, sim.dump_path, SYMS, timeout=120, heal_bound=HEAL_BOUND_S)
    err = readers[0].proc.stderr_text()
    if "gap" not in err:
        fail("the slow subscriber reported no gap (it was expected to miss messages):\n" + err[-2000:])
    stop_clean(readers[0].proc, adapter, broker, sim)


def case_multi_conn(st):
    """More streams than fit on one connection: several connections, exact."""
    syms = ["BTC-USDT", "ETH-USDT", "SOL-USDT"]
    sim, broker, adapter, readers = pipeline(st, [], 3000, rate=1500, symbols=syms,
                                             adapter_args=["--streams-per-conn", "2"])
    qbtest.wait_books_exact(readers, sim.dump_path, syms)
    s = stats(sim.stats_path)
    if s.get("connections", 0) < 3:
        fail("expected >= 3 upstream connections, simulator saw %s" % s.get("connections"))
    stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def case_rogue_ingest(st):
    """A rogue local process publishes garbage into the broker's ingest
    socket: rejected and counted; the real feed is unaffected."""
    sim, broker, adapter, readers = pipeline(st, [], 8000, rate=2000)
    rogue = st.start("rogue", [os.path.join(st.bin, "qb-rogue-pub"), st.ingest, "700", "5"])
    qbtest.wait_books_exact(readers, sim.dump_path, SYMS)
    b = stats(broker.stats_path)
    bad = sum(b.get(k, 0) for k in ("bad_msgpack", "bad_version", "bad_topic", "oversized"))
    if bad < 50 or b.get("bad_msgpack", 0) == 0 or b.get("bad_version", 0) == 0:
        fail("rogue frames not counted by the broker: %s" % b)
    rogue.stop()
    stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def case_demo(st):
    """quotebus-broker --demo runs the whole stack offline (simulator and the
    default adapters: Binance, HTX, Bithumb): books flow for all three."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    broker = st.start("demo", [os.path.join(st.bin, "quotebus-broker"), "--demo",
                               "--demo-port", str(port), "--ingest", st.ingest, "--pub", st.pub,
                               "--snapshot", "ipc://%s/snapshot.ipc" % st.tmp,
                               "--http-listen", "off",
                               "--stats-file", st.path("demo.stats")])
    sub = st.sub(["book."])
    r = qbtest.Reader(sub, multi=True)
    want = [("binance", "BTC-USDT"), ("binance", "ETH-USDT"), ("htx", "BTC-USDT"),
            ("htx", "ETH-USDT"), ("bithumb", "BTC-KRW"), ("bithumb", "ETH-KRW")]

    def ok():
        r.poll()
        return all(k in r.xbooks and r.xbooks[k].valid and r.xbooks[k].deltas > 5 for k in want)
    wait_for(ok, 90, "live demo books for all three exchanges %s" % want)
    check_no_crash(broker)
    stop_clean(sub, broker)


CASES = qbtest.cases_of(globals())

if __name__ == "__main__":
    qbtest.run_case_main(CASES, "")
