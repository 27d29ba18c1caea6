#!/usr/bin/python3
"""End-to-end tests per exchange (HTX, Bithumb, and all three at once):

  quotebus-exsim --exchange X (wss, test CA) -> quotebus-adapter X -> NNG ->
  quotebus-broker -> NNG -> quotebus-sub (x2) -> books rebuilt here

Every case ends by comparing each subscriber's rebuilt book with the book the
simulator wrote when it stopped generating (--events N, --dump): exactly, level
by level, as decimals, and at the same final update id (HTX: seqNum; Bithumb:
the last orderbook message's timestamp). Faults: HTX gaps (prevSeqNum chain
breaks), corrupt gzip and gzip bombs, malformed JSON, disconnects, failing
req snapshots, fast pings; Bithumb disconnects, malformed/oversized frames,
duplicate and skipped snapshots, the idle close during a stall (keepalive).

Until `quotebus-adapter` knows the exchange (its --help lists it and
`quotebus-adapter X --help` succeeds) the cases of that exchange SKIP (exit
77) with a message saying so.

Usage: test_exchanges.py --bin-dir DIR --case NAME [--keep]
"""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qbtest  # noqa: E402
from qbtest import fail, log, skip, stats  # noqa: E402

USDT = ["BTC-USDT", "ETH-USDT"]
KRW = ["BTC-KRW", "ETH-KRW"]


def require_adapter(bin_dir, exchange):
    """Skips (77) unless quotebus-adapter supports exchange."""
    exe = os.path.join(bin_dir, "quotebus-adapter")
    if not os.access(exe, os.X_OK):
        skip("quotebus-adapter is not built in %s" % bin_dir)
    try:
        top = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=20)
        one = subprocess.run([exe, exchange, "--help"], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        skip("quotebus-adapter --help failed: %s" % e)
    listed = re.search(r"^\s+%s\s" % re.escape(exchange), top.stdout + top.stderr, re.M)
    if top.returncode != 0 or one.returncode != 0 or not listed:
        skip("quotebus-adapter does not support '%s' yet (--help exit %s, '%s --help' exit "
             "%s, listed: %s)" % (exchange, top.returncode, exchange, one.returncode,
                                  bool(listed)))


def pipeline(st, exchange, sim_args, events, rate=2000, symbols=None, adapter_args=(), subs=2,
             trade_rate=50):
    symbols = symbols or (KRW if exchange == "bithumb" else USDT)
    sim = st.exsim(["--exchange", exchange, "--rate", str(rate), "--trade-rate",
                    str(trade_rate), "--events", str(events), "--seed", "7",
                    "--ticker-every", "10"] + list(sim_args))
    broker = st.broker()
    readers = []
    for i in range(subs):
        s = st.sub(["book.", "trade.", "status.", "ticker."], name="sub%d" % i)
        readers.append(qbtest.Reader(s))
    time.sleep(0.3)  # let subscribers connect before data flows
    adapter = st.adapter(sim, symbols, extra=adapter_args, exchange=exchange)
    return sim, broker, adapter, readers, symbols


def check_alive(*procs):
    for p in procs:
        if not p.alive():
            fail("%s died (exit %s):\n%s" % (p.name, p.p.returncode, p.stderr_text()[-4000:]))


def stop_clean(*procs):
    for p in procs:
        rc = p.stop()
        if rc != 0:
            fail("%s exited %s:\n%s" % (p.name, rc, p.stderr_text()[-4000:]))


def msgs(r, typ, exchange, sym):
    return [m for m in r.messages if m["type"] == typ and m.get("ex") == exchange and
            m["sym"] == sym]


def check_trades(readers, dump, exchange, symbols, min_ratio=0.75):
    """Trades arrive once each (unique trade id), with a taker side, and none
    is lost once they flow: the simulator numbers a symbol's trades
    consecutively, so the ids seen must be one contiguous run. (Trades made
    between the book subscription, which creates the symbol, and the trade
    subscription are never sent: hence min_ratio, not 1.)"""
    for r in readers:
        r.poll()
        for s in symbols:
            tr = msgs(r, "trade", exchange, s)
            ids = [m["tid"] for m in tr]
            if len(ids) != len(set(ids)):
                fail("%s: duplicate %s trades for %s" % (r.proc.name, exchange, s))
            if any(m["side"] not in ("buy", "sell") or m["tid"] == 0 for m in tr):
                fail("%s: bad trade %s" % (r.proc.name, tr[:2]))
            if ids and sorted(ids) != list(range(min(ids), max(ids) + 1)):
                fail("%s: %s trades for %s are not contiguous (lost in between)" %
                     (r.proc.name, exchange, s))
            want = dump[qbtest.native_for(exchange, s)]["trades"]
            if len(ids) < want * min_ratio:
                fail("%s: %d %s trades for %s, simulator made %d" %
                     (r.proc.name, len(ids), exchange, s, want))


def check_tickers(readers, dump, exchange, symbols, timeout=20):
    """The last ticker equals the simulator's final 24 h state (the final
    event sends one: --events is a multiple of --ticker-every)."""
    from decimal import Decimal

    def last_ok():
        for r in readers:
            r.poll()
            for s in symbols:
                tk = msgs(r, "ticker", exchange, s)
                d = dump[qbtest.native_for(exchange, s)]["ticker"]
                if not tk:
                    return False
                t = tk[-1]
                if Decimal(t["last"]) != Decimal(d["last"]) or \
                        Decimal(t.get("vol", "-1")) != Decimal(d["volume"]):
                    return False
                if exchange == "htx" and "chg" in t and \
                        Decimal(t["chg"]) != Decimal(d["last"]) - Decimal(d["open"]):
                    return False
        return True
    deadline = time.time() + timeout
    while time.time() < deadline:
        if last_ok():
            return
        time.sleep(0.1)
    r = readers[0]
    s = symbols[0]
    fail("last %s ticker of %s %s != simulator %s" %
         (exchange, s, (msgs(r, "ticker", exchange, s) or [None])[-1],
          dump[qbtest.native_for(exchange, s)]["ticker"]))


def wait_stats(proc, pred, what, timeout=10):
    """The stats file of proc once pred holds (it is rewritten every 500 ms)."""
    last = [None]

    def ok():
        last[0] = stats(proc.stats_path)
        return pred(last[0])
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ok():
            return last[0]
        time.sleep(0.1)
    fail("%s: %s; %s stats: %s" % (proc.name, what, proc.name, last[0]))


def no_gaps(readers):
    for r in readers:
        if any(b.gaps for b in r.xbooks.values()):
            fail("%s saw sequence gaps on a clean run" % r.proc.name)


# ------------------------------------------------------------------- HTX

def case_htx_exact(st):
    """Clean run: exact books at the final seqNum, trades, tickers, pings."""
    n = 6000
    sim, broker, adapter, readers, syms = pipeline(
        st, "htx", ["--htx-ping-interval-ms", "1500"], n)
    dump = qbtest.wait_books_exact_ex(readers, sim.dump_path, "htx", syms)
    check_alive(sim, broker, adapter)
    no_gaps(readers)
    check_trades(readers, dump, "htx", syms)
    check_tickers(readers, dump, "htx", syms)
    a, s = stats(adapter.stats_path), stats(sim.stats_path)
    log("adapter: %s" % {k: a.get(k) for k in ("frames", "deltas_applied", "gaps", "resyncs",
                                               "empty_updates", "pongs", "bad_gzip")})
    if a.get("gaps", 0) or a.get("reconnects", 0):
        fail("gaps or reconnects on a clean run: %s" % a)
    if s.get("ping_timeouts", 0) != 0 or s.get("pongs_received", 0) < 1 or s.get("pongs_received", 0) < s.get("pings_sent", 0) - 1:
        fail("the adapter must answer HTX pings: simulator %s" %
             {k: s.get(k) for k in ("pings_sent", "pongs_received", "ping_timeouts")})
    if s.get("reqs_served", 0) != len(syms):
        fail("expected one req per symbol on a clean run, simulator served %s" %
             s.get("reqs_served"))
    stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def case_htx_gaps(st):
    """Updates dropped upstream: the prevSeqNum chain breaks, the adapter
    resyncs that instrument by req on the same connection, books exact."""
    sim, broker, adapter, readers, syms = pipeline(st, "htx", ["--gap-every", "700"], 5000)
    qbtest.wait_books_exact_ex(readers, sim.dump_path, "htx", syms)
    a, s = stats(adapter.stats_path), stats(sim.stats_path)
    if a.get("gaps", 0) < 4 or a.get("resyncs", 0) < 4:
        fail("expected gaps and resyncs: %s" % a)
    if a.get("reconnects", 0) != 0:
        fail("a gap must not drop the connection: %s" % a)
    if s.get("reqs_served", 0) < 2 + 4 or s.get("connections_total") != 1:
        fail("resyncs must be req on the same connection: simulator %s" % s)
    stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def case_htx_corrupt(st):
    """Corrupt gzip, gzip bombs past the adapter's cap, malformed JSON:
    rejected, counted, resynced; books exact."""
    sim, broker, adapter, readers, syms = pipeline(
        st, "htx", ["--corrupt-gzip-every", "450", "--gzip-bomb-every", "1300",
                    "--gzip-bomb-bytes", str(8 << 20), "--malformed-every", "350",
                    "--oversized-every", "2100", "--oversized-bytes", str(3 << 20)], 5000)
    qbtest.wait_books_exact_ex(readers, sim.dump_path, "htx", syms)
    check_alive(adapter)
    # per symbol: 11 corrupt, 3 bombs + 2 oversized, 14 malformed
    wait_stats(adapter, lambda a: a.get("bad_gzip", 0) >= 2 * 11 and
               a.get("gzip_oversized", 0) + a.get("oversized", 0) >= 2 * 5 and
               a.get("bad_json", 0) >= 2 * 14,
               "corrupt gzip (22), bombs/oversized (10), malformed (28) not all counted")
    stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def case_htx_reconnect(st):
    """The simulator drops the connection; the adapter reconnects, resubscribes,
    reqs again; books exact."""
    sim, broker, adapter, readers, syms = pipeline(st, "htx", ["--disconnect-every", "2500"],
                                                   7000)
    qbtest.wait_books_exact_ex(readers, sim.dump_path, "htx", syms)
    a = stats(adapter.stats_path)
    if a.get("reconnects", 0) < 1:
        fail("adapter did not reconnect: %s" % a)
    stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def case_htx_req_fail(st):
    """The first req snapshots fail (status error), answers come late: the
    adapter retries (paced, one req per 100 ms) and the books end exact."""
    sim, broker, adapter, readers, syms = pipeline(
        st, "htx", ["--req-fail", "3", "--snapshot-delay-ms", "250"], 4000, rate=1000)
    qbtest.wait_books_exact_ex(readers, sim.dump_path, "htx", syms)
    s = stats(sim.stats_path)
    # The simulator measures the 100 ms req spacing when it gets round to
    # each request, so on a loaded machine two reqs sent 110 ms apart can
    # look too close; the adapter then retries. Allow a couple of those.
    if s.get("fault_req_fail", 0) != 3 or s.get("req_rate_limited", 0) > 2:
        fail("req faults/pacing: simulator %s" % {k: s.get(k) for k in (
            "fault_req_fail", "req_rate_limited", "reqs_served")})
    stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def case_htx_levels(st):
    """--levels 5 and 20: the tick-by-tick top-N feeds (only changes, a side
    omitted when unchanged, nothing when the top N did not move); the books
    equal the simulator's top N."""
    sim = st.exsim(["--exchange", "htx", "--rate", "1500", "--trade-rate", "20", "--events",
                    "4000", "--seed", "4", "--gap-every", "1100"])
    broker = st.broker()
    r = qbtest.Reader(st.sub(["book.", "status."]))
    time.sleep(0.3)
    a5 = st.adapter(sim, ["BTC-USDT"], extra=["--levels", "5"], exchange="htx", name="ad5")
    a20 = st.adapter(sim, ["ETH-USDT"], extra=["--levels", "20"], exchange="htx", name="ad20")
    qbtest.wait_books_exact_ex([r], sim.dump_path, "htx", ["BTC-USDT"], depth=5,
                               check_lid=False)
    qbtest.wait_books_exact_ex([r], sim.dump_path, "htx", ["ETH-USDT"], depth=20,
                               check_lid=False)
    for p in (a5, a20):
        a = stats(p.stats_path)
        if a.get("gaps", 0) < 1:
            fail("%s: the gaps of the top-N feed were not detected: %s" % (p.name, a))
    check_alive(sim, broker, a5, a20)
    stop_clean(r.proc, a5, a20, broker, sim)


# --------------------------------------------------------------- Bithumb

def case_bithumb_exact(st):
    """Full top-30 snapshots turned into deltas: exact books, trades, tickers."""
    n = 5000
    sim, broker, adapter, readers, syms = pipeline(st, "bithumb", [], n, rate=1500)
    dump = qbtest.wait_books_exact_ex(readers, sim.dump_path, "bithumb", syms)
    check_alive(sim, broker, adapter)
    no_gaps(readers)
    check_trades(readers, dump, "bithumb", syms)
    check_tickers(readers, dump, "bithumb", syms)
    for r in readers:
        d = sum(b.deltas for (ex, _), b in r.xbooks.items() if ex == "bithumb")
        if d < n * len(syms) * 0.5:
            fail("%s: only %d bithumb deltas for %d snapshots" % (r.proc.name, d, n))
    stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def case_bithumb_faults(st):
    """Malformed and oversized frames, duplicated and skipped snapshots."""
    sim, broker, adapter, readers, syms = pipeline(
        st, "bithumb", ["--malformed-every", "200", "--oversized-every", "900",
                        "--oversized-bytes", str(2 << 20), "--dup-every", "50",
                        "--gap-every", "77"], 3000, rate=1500)
    qbtest.wait_books_exact_ex(readers, sim.dump_path, "bithumb", syms)
    check_alive(adapter)
    # the frames after the final event may still be on their way: wait
    wait_stats(adapter, lambda a: a.get("bad_json", 0) >= 2 * 15 and a.get("oversized", 0)
               >= 2 * 3, "malformed (30) and oversized (6) frames not all counted")
    stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def case_bithumb_reconnect(st):
    sim, broker, adapter, readers, syms = pipeline(st, "bithumb", ["--disconnect-every", "1500"],
                                                   5000, rate=1500)
    qbtest.wait_books_exact_ex(readers, sim.dump_path, "bithumb", syms)
    a = stats(adapter.stats_path)
    if a.get("reconnects", 0) < 1:
        fail("adapter did not reconnect: %s" % a)
    stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def case_bithumb_keepalive(st):
    """The feed stalls for 4 s while the server closes connections idle for
    2.5 s: the adapter's PING keepalive keeps it open; books exact."""
    sim, broker, adapter, readers, syms = pipeline(
        st, "bithumb", ["--stall-after", "800", "--stall-ms", "4000",
                        "--bithumb-idle-ms", "2500"], 3000, rate=400,
        adapter_args=["--keepalive-ms", "500"])
    qbtest.wait_books_exact_ex(readers, sim.dump_path, "bithumb", syms, timeout=120)
    s = stats(sim.stats_path)
    if s.get("fault_stall", 0) < 1 or s.get("idle_closes", 0) != 0 or s.get("text_pings", 0) < 5:
        fail("keepalive during the stall: simulator %s" % {k: s.get(k) for k in (
            "fault_stall", "idle_closes", "text_pings", "connections_total")})
    stop_clean(*[r.proc for r in readers], adapter, broker, sim)


# ------------------------------------------------------------ all three

def case_all_three(st):
    """One default simulator process serves Binance, HTX and Bithumb on one
    port (as quotebus-broker --demo runs it); three adapters, one broker, exact
    books for every exchange."""
    sim = st.exsim(["--rate", "1000", "--trade-rate", "20", "--events", "3000", "--seed", "3"])
    broker = st.broker()
    r = qbtest.Reader(st.sub(["book.", "trade.", "ticker.", "status."]), multi=True)
    time.sleep(0.3)
    ads = [st.adapter(sim, USDT, exchange="binance", name="ad_binance"),
           st.adapter(sim, USDT, exchange="htx", name="ad_htx"),
           st.adapter(sim, KRW, exchange="bithumb", name="ad_bithumb")]
    for ex, syms in (("binance", USDT), ("htx", USDT), ("bithumb", KRW)):
        qbtest.wait_books_exact_ex([r], sim.dump_path, ex, syms)
    check_alive(sim, broker, *ads)
    stop_clean(r.proc, *ads, broker, sim)


CASES = qbtest.cases_of(globals())


def require_adapters(args):
    """The adapters a case needs (all_three: HTX and Bithumb too)."""
    need = ["htx", "bithumb"] if args.case == "all_three" else [args.case.split("_")[0]]
    for ex in need:
        require_adapter(args.bin_dir, ex)


if __name__ == "__main__":
    qbtest.run_case_main(CASES, "x", before=require_adapters)
