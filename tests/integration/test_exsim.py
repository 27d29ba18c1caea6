#!/usr/bin/python3
"""Integration test of quotebus-exsim, the exchange simulator.

Runs the real binary on loopback (ephemeral ports, TLS with a test CA made
by gen-test-ca.sh at test time) and talks to it like a Binance client:
websocket combined streams (python3-websockets), REST snapshots (urllib).

Checks: well-formed Binance frames, update ids contiguous per symbol
(U == previous u + 1), a book rebuilt with the Binance procedure from
snapshot + events equals the simulator's --dump exactly, determinism of the
synthetic market, every fault (gap, dup, reorder, malformed, oversized,
disconnect, stall, shutdown, failing and delayed snapshots), server pings
and the pong timeout, bad client input, replay of a real capture, clean
exit on SIGTERM without sanitizer reports.

Usage: test_exsim.py [--bin-dir DIR]   (or env QB_BIN_DIR)
Exit 0 = pass, 1 = fail, 77 = skipped (missing python3-websockets/openssl).
"""
import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "exchange-data"))
NKN = os.path.join(SHARED, "recorded", "binance_spot_NKNUSDT_cryptofeed_20211012.txt")
DEC8 = re.compile(r"^[0-9]+\.[0-9]{8}$")
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "SUMMARY: UndefinedBehaviorSanitizer")

try:
    import websockets
    import websockets.legacy.client
except ImportError:
    print("SKIP: python3-websockets is not installed (apt-get install -y python3-websockets)")
    sys.exit(77)


class Fail(Exception):
    pass


def _die_with_parent():
    """Child side of Popen: SIGKILL the simulator if this test dies (e.g. a
    ctest timeout), so no process outlives the test."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


# ---------------------------------------------------------------- processes

class Exsim:
    """One quotebus-exsim process; always stopped by the harness."""

    def __init__(self, h, name, args, tls=True):
        self.h = h
        self.name = name
        self.dir = os.path.join(h.tmp, name)
        os.makedirs(self.dir)
        self.port_file = os.path.join(self.dir, "port")
        self.stats_file = os.path.join(self.dir, "stats.json")
        self.log_path = os.path.join(self.dir, "exsim.log")
        self.tls = tls
        cmd = [h.exe, "--port", "0", "--port-file", self.port_file,
               "--stats-file", self.stats_file] + list(args)
        if tls:
            cmd += ["--tls-cert", h.cert, "--tls-key", h.key]
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        h.procs.append(self)
        deadline = time.time() + 20
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None:
                raise Fail(f"{name}: exited early ({self.proc.returncode}):\n{self.logtext()}")
            if time.time() > deadline:
                raise Fail(f"{name}: no port file")
            time.sleep(0.02)
        with open(self.port_file) as f:
            self.port = int(f.read().strip())
        scheme = "s" if tls else ""
        self.ws = f"ws{scheme}://localhost:{self.port}"
        self.http = f"http{scheme}://localhost:{self.port}"

    def logtext(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stats(self):
        for _ in range(50):
            try:
                with open(self.stats_file) as f:
                    return json.load(f)
            except (OSError, ValueError):
                time.sleep(0.05)
        raise Fail(f"{self.name}: stats file unreadable")

    def wait_stats(self, pred, timeout=10.0):
        deadline = time.time() + timeout
        st = self.stats()
        while not pred(st):
            if time.time() > deadline:
                raise Fail(f"{self.name}: stats condition not reached: {st}")
            time.sleep(0.1)
            st = self.stats()
        return st

    def stop(self, check_clean=True):
        """SIGTERM; checks exit status 0 and no sanitizer report."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise Fail(f"{self.name}: did not exit on SIGTERM")
        self.log.close()
        text = self.logtext()
        if check_clean:
            check(self.proc.returncode == 0,
                  f"{self.name}: exit status {self.proc.returncode}:\n{text[-4000:]}")
            for m in SANITIZER_MARKS:
                check(m not in text, f"{self.name}: sanitizer report:\n{text[-6000:]}")
        return text

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.log.closed:
            self.log.close()


class Harness:
    def __init__(self, bin_dir):
        self.exe = os.path.join(bin_dir, "quotebus-exsim")
        if not os.access(self.exe, os.X_OK):
            raise Fail(f"quotebus-exsim not found in {bin_dir}")
        self.tmp = tempfile.mkdtemp(prefix="qb-exsim-test-")
        self.procs = []
        ca_dir = os.path.join(self.tmp, "ca")
        subprocess.run([os.path.join(HERE, "gen-test-ca.sh"), ca_dir], check=True,
                       stdout=subprocess.DEVNULL)
        self.ca = os.path.join(ca_dir, "ca.pem")
        self.cert = os.path.join(ca_dir, "server.pem")
        self.key = os.path.join(ca_dir, "server.key")
        self.ssl = ssl.create_default_context(cafile=self.ca)

    def cleanup(self, keep=False):
        for p in self.procs:
            p.kill()
        if keep:
            print(f"(kept {self.tmp} for inspection)")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, name, args, tls=True):
        return Exsim(self, name, args, tls)

    def connect(self, sim, path, **kw):
        kw.setdefault("max_size", None)
        kw.setdefault("ping_interval", None)
        if sim.tls:
            kw["ssl"] = self.ssl
        return websockets.connect(sim.ws + path, **kw)

    def get(self, sim, path, timeout=10):
        """(status, headers, json body) of a GET."""
        ctx = self.ssl if sim.tls else None
        try:
            with urllib.request.urlopen(sim.http + path, timeout=timeout, context=ctx) as r:
                return r.status, dict(r.headers), json.loads(r.read())
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                body = json.loads(body)
            except ValueError:
                body = body.decode("utf-8", "replace")
            return e.code, dict(e.headers), body


# ------------------------------------------------------------- Binance book

class Book:
    """A client book kept with the Binance spot procedure."""

    def __init__(self, snap):
        self.last = snap["lastUpdateId"]
        self.bids = {p: q for p, q in snap["bids"]}
        self.asks = {p: q for p, q in snap["asks"]}
        self.synced = False
        self.applied = 0

    def apply(self, d):
        """Applies event d; returns False on a gap (the client must resync)."""
        if d["u"] <= self.last:
            return True
        if not self.synced:
            if not (d["U"] <= self.last + 1 <= d["u"]):
                return False
            self.synced = True
        elif d["U"] != self.last + 1:
            return False
        for side, lv in ((self.bids, d["b"]), (self.asks, d["a"])):
            for p, q in lv:
                if float(q) == 0.0 and DEC8.match(q) and set(q) <= set("0."):
                    side.pop(p, None)
                else:
                    side[p] = q
        self.last = d["u"]
        self.applied += 1
        return True

    def rows(self):
        from decimal import Decimal
        bids = sorted(self.bids.items(), key=lambda kv: Decimal(kv[0]), reverse=True)
        asks = sorted(self.asks.items(), key=lambda kv: Decimal(kv[0]))
        return [list(x) for x in bids], [list(x) for x in asks]

    def crossed(self):
        from decimal import Decimal
        if not self.bids or not self.asks:
            return False
        return max(map(Decimal, self.bids)) >= min(map(Decimal, self.asks))


def read_dump(path, exchange="binance"):
    """{native symbol: dump line} of one exchange; "time_ms" (when the last
    event was generated) is dropped: it is the only non-deterministic field."""
    out = {}
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            d.pop("time_ms", None)
            if d["exchange"] == exchange:
                out[d["symbol"]] = d
    return out


def check_depth(stream, d, sym):
    check(d.get("e") == "depthUpdate", f"not a depthUpdate: {d}")
    check(d["s"] == sym, f"symbol {d['s']} on {stream}")
    check(isinstance(d["E"], int) and d["E"] > 1600000000000, f"bad E {d['E']}")
    check(isinstance(d["U"], int) and isinstance(d["u"], int) and d["u"] >= d["U"],
          f"bad ids {d['U']} {d['u']}")
    n = len(d["b"]) + len(d["a"])
    check(n >= 1 and d["u"] - d["U"] + 1 == n, f"ids do not match {n} levels: {d}")
    for side, best_first in ((d["b"], -1), (d["a"], 1)):
        prices = set()
        for p, q in side:
            check(DEC8.match(p) and DEC8.match(q), f"bad decimal text {p} {q}")
            check(p not in prices, f"price twice in one event: {d}")
            prices.add(p)
        # each side best first, as Binance spot sends it: bids descending,
        # asks ascending (fixed 8-decimal text: Decimal compares exactly)
        ps = [Decimal(p) for p, _ in side]
        check(all((b - a) * best_first > 0 for a, b in zip(ps, ps[1:])),
              f"side not best first: {side}")


def check_trade(d, sym):
    for k in ("e", "E", "s", "t", "p", "q", "T", "m", "M"):
        check(k in d, f"trade without {k}: {d}")
    check(d["e"] == "trade" and d["s"] == sym and d["M"] is True, f"bad trade {d}")
    check(isinstance(d["m"], bool) and DEC8.match(d["p"]) and DEC8.match(d["q"]),
          f"bad trade {d}")


# -------------------------------------------------------------------- tests

async def test_main_book(h):
    """TLS, combined streams, snapshot + events == --dump, ids contiguous."""
    events = 3000
    dump_path = os.path.join(h.tmp, "main.dump")
    sim = h.start("main", ["--rate", "1500", "--events", str(events), "--seed", "7",
                           "--trade-rate", "50", "--dump", dump_path])
    syms = {"BTCUSDT": "btcusdt", "ETHUSDT": "ethusdt", "XRPUSDT": "xrpusdt"}
    streams = [f"{s}@depth@100ms" for s in syms.values()] + ["btcusdt@trade"]
    prev_u = {}
    buffered = {s: [] for s in syms}
    books = {}
    trades = 0
    frames = 0
    async with h.connect(sim, "/stream?streams=" + "/".join(streams)) as ws:
        snap_task = None
        deadline = time.time() + 60
        while True:
            check(time.time() < deadline, "main: timed out")
            if snap_task is None and all(buffered[s] for s in syms):
                # snapshots while events flow, like an adapter
                snap_task = asyncio.ensure_future(asyncio.gather(*[
                    asyncio.to_thread(h.get, sim, f"/api/v3/depth?symbol={s}&limit=1000")
                    for s in syms]))
            if snap_task is not None and snap_task.done() and not books:
                for s, (status, _, body) in zip(syms, snap_task.result()):
                    check(status == 200, f"snapshot {s}: {status} {body}")
                    check(len(body["bids"]) <= 1000 and len(body["asks"]) <= 1000, "limit")
                    b = Book(body)
                    check(body["lastUpdateId"] >= buffered[s][0]["U"] - 1,
                          "snapshot older than the first buffered event")
                    for d in buffered[s]:
                        check(b.apply(d), f"{s}: gap while applying buffered events")
                    books[s] = b
            if books and os.path.exists(dump_path):
                dump = read_dump(dump_path)
                if set(dump) >= set(syms) and all(
                        books[s].last >= dump[s]["lastUpdateId"] for s in syms):
                    break
            try:
                msg = await asyncio.wait_for(ws.recv(), 0.2)
            except asyncio.TimeoutError:
                continue
            frames += 1
            m = json.loads(msg)
            check(set(m) == {"stream", "data"} and m["stream"] in streams, f"bad frame {msg[:200]}")
            d = m["data"]
            sym = m["stream"].split("@")[0].upper()
            if m["stream"].endswith("@trade"):
                check_trade(d, sym)
                trades += 1
                continue
            check_depth(m["stream"], d, sym)
            if sym in prev_u:
                check(d["U"] == prev_u[sym] + 1,
                      f"{sym}: U={d['U']} after u={prev_u[sym]} (ids must be contiguous)")
            prev_u[sym] = d["u"]
            if sym in books:
                check(books[sym].apply(d), f"{sym}: gap")
                check(not books[sym].crossed(), f"{sym}: crossed book")
            else:
                buffered[sym].append(d)
    dump = read_dump(dump_path)
    for s in syms:
        bids, asks = books[s].rows()
        check(dump[s]["exchange"] == "binance", "dump exchange")
        check(dump[s]["events"] == events, f"{s}: dump events {dump[s]['events']}")
        check(dump[s]["lastUpdateId"] == books[s].last, f"{s}: lastUpdateId differs")
        check(dump[s]["bids"] == bids and dump[s]["asks"] == asks,
              f"{s}: rebuilt book differs from the dump")
        check(0 < len(bids) <= 200 and 0 < len(asks) <= 200, f"{s}: depth {len(bids)}")
    check(trades > 0, "no trades")
    st = sim.wait_stats(lambda st: st["events_generated"] == 3 * events)
    check(st["snapshots_served"] == 3 and st["connections_total"] == 1, f"stats {st}")
    # after the end, a snapshot is the final book
    status, _, body = h.get(sim, "/api/v3/depth?symbol=ETHUSDT&limit=5000")
    check(status == 200 and body["lastUpdateId"] == dump["ETHUSDT"]["lastUpdateId"]
          and body["bids"] == dump["ETHUSDT"]["bids"], "final snapshot != dump")
    status, _, body = h.get(sim, "/api/v3/depth?symbol=ETHUSDT&limit=5")
    check(len(body["bids"]) == 5 and body["bids"] == dump["ETHUSDT"]["bids"][:5], "limit=5")
    status, _, body = h.get(sim, "/api/v3/depth?symbol=ETHUSDT")
    check(len(body["asks"]) == min(100, len(dump["ETHUSDT"]["asks"])), "default limit 100")
    sim.stop()
    # the dump at exit is the same book
    check(read_dump(dump_path) == dump, "dump at exit differs")
    print(f"  main: {frames} frames, {trades} trades, 3 books of {events} events equal the dump")


async def test_depth_1s(h):
    """<sym>@depth merges one second of changes; it keeps the same book."""
    sim = h.start("d1s", ["--rate", "400", "--trade-rate", "0", "--max-levels", "50"],
                  tls=False)
    async with h.connect(sim, "/stream?streams=btcusdt@depth@100ms/btcusdt@depth") as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 5))
        status, _, snap = h.get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=1000")
        fast, slow = Book(snap), Book(snap)
        pending = [first]
        merged = []
        compared = 0
        while len(merged) < 4:
            m = pending.pop(0) if pending else json.loads(await asyncio.wait_for(ws.recv(), 5))
            d = m["data"]
            if m["stream"] == "btcusdt@depth@100ms":
                check_depth(m["stream"], d, "BTCUSDT")
                check(fast.apply(d), "d1s: gap in @depth@100ms")
                continue
            check(d["e"] == "depthUpdate" and d["u"] >= d["U"], f"d1s: {d}")
            if merged:
                check(d["U"] == merged[-1]["u"] + 1, "d1s: merged ids not contiguous")
            merged.append(d)
            check(slow.apply(d), "d1s: gap in @depth")
            if fast.synced and slow.synced:
                # every event up to u arrived before the merged frame (FIFO)
                check(fast.last == d["u"], f"d1s: fast at {fast.last}, merged u={d['u']}")
                check(fast.rows() == slow.rows(), "d1s: merged stream gives another book")
                compared += 1
    check(compared >= 2, f"d1s: only {compared} comparisons")
    spans = [d["u"] - d["U"] + 1 for d in merged[1:]]
    check(all(n > len(d["b"]) + len(d["a"]) for n, d in zip(spans, merged[1:])),
          "d1s: merged events should cover many updates")
    sim.stop()
    print(f"  @depth: 1 s merged events ({spans[0]} ids each), same book as @depth@100ms")


async def test_changes_ws0(h):
    """--changes N makes busy-symbol events (N random changes each, plus the
    levels the mid crossed); /ws/0 (ccxt's URL) is a raw connection whose
    streams come by SUBSCRIBE."""
    sim = h.start("changes", ["--rate", "50", "--trade-rate", "0", "--changes", "20"],
                  tls=False)
    async with h.connect(sim, "/ws/0") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"],
                                  "id": 1}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
        check(ack == {"result": None, "id": 1}, f"/ws/0 SUBSCRIBE answer: {ack}")
        sizes = []
        while len(sizes) < 20:
            d = json.loads(await asyncio.wait_for(ws.recv(), 5))
            check_depth("/ws/0", d, "BTCUSDT")
            sizes.append(len(d["b"]) + len(d["a"]))
    # N distinct changes, fewer when two land on the same price or one is
    # skipped because the event is full; never the default's 1..4
    check(min(sizes) >= 10 and sum(sizes) / len(sizes) >= 15,
          f"--changes 20: levels per event {sizes}")
    sim.stop()
    print(f"  --changes 20: {min(sizes)}..{max(sizes)} levels per event; /ws/0 + SUBSCRIBE")


async def test_client_rate(h):
    """--max-client-msg-rate 5 (Binance's limit): the 6th message in a second closes."""
    sim = h.start("msgrate", ["--max-client-msg-rate", "5"], tls=False)
    async with h.connect(sim, "/stream") as ws:
        for i in range(6):
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
        replies = []
        try:
            while True:
                replies.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
        except websockets.ConnectionClosed as e:
            check(e.code == 1008, f"rate limit close {e.code}")
    # replies already written before the 6th message arrived may be seen; the
    # 6th is never answered
    ids = [r["id"] for r in replies]
    check(ids == list(range(len(ids))) and len(ids) <= 5, f"replies {replies}")
    sim.wait_stats(lambda s: s["rate_limit_closes"] == 1)
    sim.stop()
    print("  client rate limit: the 6th message in a second closed the connection (1008)")


async def test_small_book_raw(h):
    """--max-levels 10 (levels trimmed explicitly), raw /ws/<stream>, plain ws."""
    dump_path = os.path.join(h.tmp, "small.dump")
    sim = h.start("small", ["--rate", "4000", "--events", "4000", "--max-levels", "10",
                            "--seed", "3", "--dump", dump_path], tls=False)
    async with h.connect(sim, "/ws/solusdt@depth@100ms") as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 5))
        status, _, snap = h.get(sim, "/api/v3/depth?symbol=SOLUSDT&limit=1000")
        check(status == 200 and len(snap["bids"]) <= 10, f"small snapshot {status}")
        book = Book(snap)
        check(book.apply(first), "small: first event")
        trims = 0
        while not (os.path.exists(dump_path)
                   and book.last >= read_dump(dump_path)["SOLUSDT"]["lastUpdateId"]):
            d = json.loads(await asyncio.wait_for(ws.recv(), 10))
            check_depth("solusdt@depth@100ms", d, "SOLUSDT")
            check(book.apply(d), "small: gap")
            check(not book.crossed(), "small: crossed")
            check(len(book.bids) <= 10 and len(book.asks) <= 10, "small: deeper than 10")
            trims += sum(1 for _, q in d["b"] + d["a"] if q == "0.00000000")
    dump = read_dump(dump_path)["SOLUSDT"]
    bids, asks = book.rows()
    check(dump["bids"] == bids and dump["asks"] == asks, "small: book differs from dump")
    check(trims > 100, f"small: only {trims} removals")
    sim.stop()
    print(f"  small book: 4000 raw events, depth <= 10, {trims} removals, book == dump")


async def test_slow_consumer(h):
    """A client that never reads is closed once its queue is full."""
    sim = h.start("slow", ["--rate", "2000", "--max-queue", "64", "--oversized-every", "1",
                           "--oversized-bytes", "100000", "--trade-rate", "0"], tls=False)
    async with h.connect(sim, "/stream?streams=btcusdt@depth@100ms", max_queue=1) as ws:
        st = sim.wait_stats(lambda s: s["slow_consumer_closes"] == 1, timeout=20)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed as e:
            check(e.code == 1008, f"slow consumer close code {e.code}")
    sim.wait_stats(lambda s: s["connections"] == 0)
    # a peer that never reads at all is dropped too (graceful close cannot
    # be written; lws' timeout ends it)
    sock, status = raw_ws_handshake(sim.port, "/stream?streams=btcusdt@depth@100ms")
    try:
        check(" 101" in status, f"handshake: {status}")
        sim.wait_stats(lambda s: s["slow_consumer_closes"] == 2 and s["connections"] == 0,
                       timeout=30)
    finally:
        sock.close()
    sim.stop()
    print(f"  slow consumer: closed with 1008 after the 64-frame queue filled "
          f"({st['frames_sent']} frames sent); a dead peer is dropped")


async def test_determinism(h):
    """Same seed -> same market; another seed -> another market."""
    dumps = []
    for i, seed in enumerate(("11", "11", "12")):
        path = os.path.join(h.tmp, f"det{i}.dump")
        sim = h.start(f"det{i}", ["--rate", "5000", "--events", "2000", "--seed", seed,
                                  "--dump", path], tls=False)
        status, _, first = h.get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=1000")
        check(status == 200, "det snapshot")
        deadline = time.time() + 30
        while not os.path.exists(path):
            check(time.time() < deadline, "det: no dump")
            await asyncio.sleep(0.05)
        sim.stop()
        dumps.append((first, read_dump(path)))
    check(dumps[0][0]["lastUpdateId"] == dumps[1][0]["lastUpdateId"]
          and dumps[0][0]["bids"] == dumps[1][0]["bids"], "initial books differ")
    check(dumps[0][1] == dumps[1][1], "same seed, different final books")
    check(dumps[0][1]["BTCUSDT"]["bids"] != dumps[2][1]["BTCUSDT"]["bids"],
          "different seeds, same book")
    print("  determinism: same seed -> identical books after 2000 events")


async def collect(ws, n, timeout=20.0, want=lambda m: True):
    out = []
    deadline = time.time() + timeout
    while len(out) < n:
        left = deadline - time.time()
        check(left > 0, f"collect: got {len(out)} of {n}")
        msg = await asyncio.wait_for(ws.recv(), left)
        if want(msg):
            out.append(msg)
    return out


def depth_of(msgs):
    return [json.loads(m)["data"] for m in msgs if "depthUpdate" in m]


async def test_gap(h):
    sim = h.start("gap", ["--rate", "1000", "--events", "200", "--gap-every", "10",
                          "--trade-rate", "0"])
    async with h.connect(sim, "/stream?streams=btcusdt@depth@100ms/btcusdt@depth") as ws:
        msgs = [json.loads(m) for m in await collect(ws, 200)]
        try:
            extra = await asyncio.wait_for(ws.recv(), 0.5)
            raise Fail(f"gap: more than 200 frames: {extra[:100]}")
        except asyncio.TimeoutError:
            pass
    evs = [m["data"] for m in msgs if m["stream"] == "btcusdt@depth@100ms"]
    merged = [m["data"] for m in msgs if m["stream"] == "btcusdt@depth"]
    check(len(evs) == 180 and len(merged) == 20, f"gap: {len(evs)} + {len(merged)} frames")
    gaps = [(a["u"], b["U"]) for a, b in zip(evs, evs[1:]) if b["U"] != a["u"] + 1]
    check(len(gaps) == 19 and all(U > u + 1 for u, U in gaps), f"gap: gaps {gaps}")
    # the one-second stream is flushed before a skipped event: it shows the
    # same gaps, and covers exactly the ids of the events that were sent
    mgaps = [(a["u"], b["U"]) for a, b in zip(merged, merged[1:]) if b["U"] != a["u"] + 1]
    check(mgaps == gaps, f"gap: merged stream gaps {mgaps}")
    st = sim.wait_stats(lambda s: s["events_generated"] == 200)
    check(st["fault_gap"] == 20 and st["events_sent"] == 200, f"gap stats {st}")
    check(sim.stats()["events_generated"] == 200, "gap: generated")
    sim.stop()
    print(f"  gap: 19 id gaps seen, fault_gap=20, e.g. u={gaps[0][0]} -> U={gaps[0][1]}")


async def test_dup_reorder(h):
    sim = h.start("dupre", ["--rate", "1000", "--events", "100", "--dup-every", "10",
                            "--reorder-every", "25", "--trade-rate", "0"])
    async with h.connect(sim, "/stream?streams=btcusdt@depth@100ms") as ws:
        evs = depth_of(await collect(ws, 108))
    dups = sum(1 for a, b in zip(evs, evs[1:]) if a == b)
    back = sum(1 for a, b in zip(evs, evs[1:]) if b["u"] < a["U"])
    # events 50 and 100 are also reorder events (25, 50, 75, 100): reorder
    # wins; the last event (100) has no successor and goes out in order
    check(dups == 8 and back == 3, f"dup/reorder: dups={dups} backwards={back}")
    ids = sorted({(d["U"], d["u"]) for d in evs})
    check(len(ids) == 100 and all(b[0] == a[1] + 1 for a, b in zip(ids, ids[1:])),
          "dup/reorder: every event must arrive")
    st = sim.wait_stats(lambda s: s["events_sent"] == 108)
    check(st["fault_dup"] == 8 and st["fault_reorder"] == 4, f"stats {st}")
    sim.stop()
    print("  dup/reorder: 8 duplicates, 3 swapped pairs, all 100 events arrive")


async def test_malformed_oversized(h):
    sim = h.start("bad", ["--rate", "500", "--events", "40", "--malformed-every", "10",
                          "--oversized-every", "20", "--oversized-bytes", "300000",
                          "--trade-rate", "0"])
    async with h.connect(sim, "/stream?streams=btcusdt@depth@100ms") as ws:
        msgs = await collect(ws, 40 + 4 + 2)
    good, bad, big = 0, 0, 0
    for m in msgs:
        try:
            d = json.loads(m)
        except ValueError:
            bad += 1
            continue
        if len(m) >= 300000:
            big += 1
            check(d["data"]["u"] == 1, "oversized frame must carry stale ids")
        else:
            good += 1
    check((good, bad, big) == (40, 4, 2), f"malformed/oversized: {good} {bad} {big}")
    sim.stop()
    print("  malformed/oversized: 4 malformed + 2 oversized frames around 40 good events")


async def test_conn_faults(h):
    sim = h.start("conn", ["--rate", "200", "--trade-rate", "0", "--disconnect-every", "7"],
                  tls=False)
    async with h.connect(sim, "/stream?streams=ethusdt@depth@100ms") as ws:
        msgs = []
        try:
            while True:
                msgs.append(await asyncio.wait_for(ws.recv(), 5))
        except websockets.ConnectionClosed:
            pass
        check(len(msgs) == 7, f"disconnect-every: {len(msgs)} frames before close")
    sim.stop()

    sim = h.start("shut", ["--rate", "200", "--trade-rate", "0", "--shutdown-after", "5"])
    async with h.connect(sim, "/stream?streams=ethusdt@depth@100ms") as ws:
        msgs = []
        try:
            while True:
                msgs.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
        except websockets.ConnectionClosed:
            pass
    check(len(msgs) == 6 and msgs[-1]["stream"] == "!serverShutdown"
          and msgs[-1]["data"]["e"] == "serverShutdown", f"shutdown: {msgs[-1:]}")
    sim.wait_stats(lambda s: s["fault_shutdown"] == 1 and s["connections"] == 0)
    sim.stop()

    sim = h.start("stall", ["--rate", "200", "--trade-rate", "0", "--stall-after", "5",
                            "--stall-ms", "800", "--ping-interval-ms", "100"])
    async with h.connect(sim, "/stream?streams=ethusdt@depth@100ms") as ws:
        t = []
        evs = []
        for _ in range(10):
            evs.append(json.loads(await asyncio.wait_for(ws.recv(), 5))["data"])
            t.append(time.time())
    pause = t[5] - t[4]
    check(pause >= 0.6, f"stall: pause {pause:.3f}s")
    check(evs[5]["U"] > evs[4]["u"] + 1, "stall: the client must see a gap after the stall")
    st = sim.wait_stats(lambda s: s["fault_stall"] == 1)
    check(st["fault_stall"] == 1 and st["fault_stall_dropped"] > 50 and st["ping_timeouts"] == 0,
          f"stall stats {st}")
    sim.stop()
    # SIGTERM: every client is told serverShutdown, then the server exits 0
    sim = h.start("term", ["--rate", "100", "--trade-rate", "0"])
    async with h.connect(sim, "/ws/btcusdt@depth@100ms") as ws:
        await asyncio.wait_for(ws.recv(), 5)
        sim.proc.send_signal(signal.SIGTERM)
        last = None
        try:
            while True:
                last = json.loads(await asyncio.wait_for(ws.recv(), 5))
        except websockets.ConnectionClosed:
            pass
    check(last is not None and last.get("e") == "serverShutdown", f"at exit: {last}")
    sim.stop()
    print(f"  disconnect/shutdown/stall/exit notice: ok (stall pause {pause:.2f}s)")


async def test_snapshot_faults(h):
    sim = h.start("snapfail", ["--snapshot-fail", "2", "--snapshot-fail-status", "429"])
    for i in range(2):
        status, hdr, body = h.get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=10")
        hdr = {k.lower(): v for k, v in hdr.items()}
        check(status == 429 and hdr.get("retry-after") == "1" and body["code"] == -1003,
              f"429 expected, got {status} {hdr} {body}")
    status, _, body = h.get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=10")
    check(status == 200 and len(body["bids"]) == 10, "third snapshot must succeed")
    sim.wait_stats(lambda s: s["fault_snapshot_fail"] == 2 and s["snapshots_served"] == 1)
    sim.stop()

    sim = h.start("snap500", ["--snapshot-fail", "1", "--snapshot-fail-status", "500",
                              "--snapshot-delay-ms", "700"], tls=False)
    t0 = time.time()
    status, hdr, body = h.get(sim, "/api/v3/depth?symbol=BTCUSDT")
    check(status == 500 and body["code"] == -1001, f"500 expected: {status} {body}")
    # the delay does not block the loop: other requests are answered meanwhile
    fut = asyncio.ensure_future(asyncio.to_thread(h.get, sim, "/api/v3/depth?symbol=BTCUSDT"))
    await asyncio.sleep(0.1)
    status2, _, _ = await asyncio.to_thread(h.get, sim, "/api/v3/ping")
    pending = not fut.done()
    status, _, body = await fut
    slow = time.time() - t0
    check(status == 200 and status2 == 200 and pending and slow >= 1.3,
          f"delay: status={status} ping answered first={pending} total={slow:.2f}s")
    status, _, body = h.get(sim, "/api/v3/depth?symbol=bad-symbol")
    check(status == 400 and body == {"code": -1121, "msg": "Invalid symbol."}, f"{body}")
    status, _, body = h.get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=abc")
    check(status == 400 and body["code"] == -1100, f"{body}")
    status, _, body = h.get(sim, "/api/v3/depth")
    check(status == 400 and body["code"] == -1102, f"{body}")
    status, _, body = h.get(sim, "/nothing/here")
    check(status == 404, f"{status}")
    sim.stop()
    print("  snapshot faults: 429 x2 with Retry-After, 500, delay without blocking the loop")


class QuietClient(websockets.legacy.client.WebSocketClientProtocol):
    """Never answers pings (records them)."""
    pings = []

    async def pong(self, data=b""):
        QuietClient.pings.append(bytes(data))


class CountingClient(websockets.legacy.client.WebSocketClientProtocol):
    pings = []

    async def pong(self, data=b""):
        CountingClient.pings.append(bytes(data))
        await super().pong(data)


async def test_pings(h):
    sim = h.start("ping", ["--ping-interval-ms", "200", "--pong-timeout-ms", "700",
                           "--rate", "20"])
    async with h.connect(sim, "/stream?streams=btcusdt@trade",
                         create_protocol=CountingClient) as ws:
        t0 = time.time()
        while time.time() - t0 < 1.6:
            try:
                await asyncio.wait_for(ws.recv(), 0.1)
            except asyncio.TimeoutError:
                pass
        check(ws.open, "answering client was closed")
    check(len(CountingClient.pings) >= 5 and all(p.isdigit() for p in CountingClient.pings),
          f"pings with payload expected: {CountingClient.pings}")
    st = sim.wait_stats(lambda s: s["connections"] == 0)
    check(st["pongs_received"] >= 5 and st["ping_timeouts"] == 0, f"ping stats {st}")

    async with h.connect(sim, "/stream?streams=btcusdt@trade",
                         create_protocol=QuietClient) as ws:
        t0 = time.time()
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed as e:
            closed_after = time.time() - t0
            check(e.code == 1008, f"close code {e.code} {e.reason}")
    check(0.6 <= closed_after <= 15.0, f"closed after {closed_after:.2f}s")
    check(len(QuietClient.pings) >= 2, "quiet client saw no pings")
    st = sim.wait_stats(lambda s: s["ping_timeouts"] == 1)
    sim.stop()
    print(f"  pings: {len(CountingClient.pings)} answered; unanswered closed after "
          f"{closed_after:.2f}s (1008)")


def raw_ws_handshake(port, path):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    resp = b""
    while b"\r\n\r\n" not in resp:
        chunk = s.recv(4096)
        if not chunk:
            break
        resp += chunk
    return s, resp.split(b"\r\n", 1)[0].decode("latin-1")


async def test_bad_input(h):
    sim = h.start("input", ["--rate", "50", "--max-msg-bytes", "65536"], tls=False)

    async def expect_reply(ws, pred, what):
        for _ in range(200):
            m = await asyncio.wait_for(ws.recv(), 5)
            if "depthUpdate" in m or '"trade"' in m:
                continue
            d = json.loads(m)
            check(pred(d), f"{what}: unexpected reply {d}")
            return d
        raise Fail(f"{what}: no reply")

    async with h.connect(sim, "/stream") as ws:
        await ws.send("this is not json")
        await expect_reply(ws, lambda d: d["code"] == 3, "garbage")
        await ws.send(b"\x00\x01binary\xff")
        await expect_reply(ws, lambda d: d["code"] == 3, "binary")
        await ws.send('{"method":"SUBSCRIBE","params":["btcusdt@depth@100ms"]')
        await expect_reply(ws, lambda d: d["code"] == 3, "truncated")
        await ws.send('[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]'
                      ']]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]')
        await expect_reply(ws, lambda d: d["code"] == 3, "nested array")
        await ws.send(json.dumps({"method": "SUBSCRIBEX", "params": [], "id": 5}))
        await expect_reply(ws, lambda d: d["code"] == 2 and d["id"] == 5, "unknown method")
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["BTCUSDT@depth"], "id": 6}))
        await expect_reply(ws, lambda d: d["code"] == 2 and d["id"] == 6, "uppercase stream")
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": [f"s{i}usdt@trade"
                                  for i in range(1025)], "id": 8}))
        await expect_reply(ws, lambda d: d["code"] == 2 and d["id"] == 8, "1025 streams")
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms",
                                  "btcusdt@trade"], "id": "abc"}))
        await expect_reply(ws, lambda d: d == {"result": None, "id": "abc"}, "subscribe")
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 9}))
        await expect_reply(ws, lambda d: d == {"result": ["btcusdt@depth@100ms",
                                                          "btcusdt@trade"], "id": 9}, "list")
        got = depth_of(await collect(ws, 3, want=lambda m: "depthUpdate" in m))
        check(len(got) == 3, "no events after SUBSCRIBE")
        await ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@depth@100ms"],
                                  "id": 10}))
        await expect_reply(ws, lambda d: d == {"result": None, "id": 10}, "unsubscribe")
        await ws.send(json.dumps({"method": "GET_PROPERTY", "params": ["combined"], "id": 11}))
        await expect_reply(ws, lambda d: d == {"result": True, "id": 11}, "get_property")
        # every prefix and a few hundred single-byte mutations of a valid
        # request: each gets exactly one reply, nothing crashes
        import random
        rnd = random.Random(5)
        valid = json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": 77})
        variants = [valid[:i] for i in range(1, len(valid))]
        for _ in range(300):
            b = bytearray(valid.encode())
            b[rnd.randrange(len(b))] = rnd.randrange(256)
            variants.append(b.decode("latin-1"))
        for v in variants:
            await ws.send(v)
            await expect_reply(ws, lambda d: isinstance(d, dict) and ("code" in d or "result"
                               in d), f"mutation {v!r}")
        # a message over --max-msg-bytes closes with 1009
        await ws.send("x" * 70000)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed as e:
            check(e.code == 1009, f"huge message: close {e.code}")
    # 1024 streams in the URL are fine, 1025 are refused with HTTP 400
    ok = "/".join(f"a{i}usdt@trade" for i in range(1024))
    async with h.connect(sim, "/stream?streams=" + ok) as ws:
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
        d = await expect_reply(ws, lambda d: "result" in d, "list 1024")
        check(len(d["result"]) == 1024, "1024 streams")
    # the simulator holds at most --max-symbols (256) books, whatever is asked
    status, _, body = h.get(sim, "/api/v3/depth?symbol=NEWUSDT")
    check(status == 400 and body["code"] == -1121, f"symbol limit: {status} {body}")
    check(h.get(sim, "/api/v3/depth?symbol=BTCUSDT")[0] == 200, "existing symbol")
    check(sim.wait_stats(lambda s: s["symbols"] == 256)["symbols"] == 256, "symbols")
    s, status = raw_ws_handshake(sim.port, "/stream?streams=" + ok + "/b1usdt@trade")
    s.close()
    check(" 400" in status, f"1025 streams: {status}")
    s, status = raw_ws_handshake(sim.port, "/nowhere")
    s.close()
    check(" 404" in status, f"bad path: {status}")
    # raw garbage on the socket, and connections dropped mid-handshake
    for junk in (b"\x16\x03\x01\x02\x00garbage\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n",
                 os.urandom(3000)):
        s = socket.create_connection(("127.0.0.1", sim.port), timeout=5)
        s.sendall(junk)
        s.close()
    # websocket protocol violations after a good handshake: reserved opcode,
    # unmasked client frame, truncated header
    for junk in (b"\x8f\x80\x00\x00\x00\x00", b"\x81\x05hello", b"\x81\xff\x00"):
        sock, status = raw_ws_handshake(sim.port, "/stream")
        check(" 101" in status, f"handshake {status}")
        sock.sendall(junk)
        sock.close()
    # raw /ws/<stream> payloads are unwrapped
    async with h.connect(sim, "/ws/btcusdt@depth") as ws:
        d = json.loads(await asyncio.wait_for(ws.recv(), 5))
        check(d["e"] == "depthUpdate" and d["s"] == "BTCUSDT", f"raw frame {d}")
    st = sim.wait_stats(lambda s: s["connections"] == 0 and s["bad_input"] >= 5
                        and s["client_errors"] >= 3)
    status, _, _ = h.get(sim, "/api/v3/ping")
    check(status == 200, "server died after bad input")
    sim.stop()
    print(f"  bad input: rejected and counted (bad_input={st['bad_input']}, "
          f"client_errors={st['client_errors']}), server alive")


def nkn_reference():
    """The book a Binance client holds after the whole recording."""
    book = None
    events = []
    with open(NKN) as f:
        for line in f:
            if line.startswith("wss://"):
                continue
            if line.startswith("https://"):
                book = Book(json.loads(line.split(": ", 1)[1]))
                continue
            m = json.loads(line.split(": ", 1)[1])
            if "@depth" in m["stream"]:
                events.append(m["data"])
    for d in events:
        check(book.apply(d), "recording has a gap")
    return book, events


async def test_replay(h):
    if not os.path.exists(NKN):
        print(f"  replay: SKIPPED ({NKN} missing)")
        return
    ref, events = nkn_reference()
    dump = os.path.join(h.tmp, "replay.dump")
    sim = h.start("replay", ["--replay", NKN, "--rate", "400", "--dump", dump])
    status, _, snap = h.get(sim, "/api/v3/depth?symbol=BTCUSDT")
    check(status == 400, "replay: unknown symbol must be invalid")
    async with h.connect(sim, "/stream?streams=nknusdt@depth@100ms/nknusdt@bookTicker") as ws:
        status, _, snap = h.get(sim, "/api/v3/depth?symbol=NKNUSDT&limit=1000")
        check(status == 200, "replay snapshot")
        book = Book(snap)
        seen = []
        tickers = 0
        while len(seen) < len(events):
            m = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if m["stream"] == "nknusdt@bookTicker":
                tickers += 1
                continue
            seen.append(m["data"])
            check(book.apply(m["data"]), "replay: gap")
    check(seen == events, "replayed frames differ from the recording")
    check(tickers == 74, f"bookTicker frames: {tickers}")
    deadline = time.time() + 10
    while not os.path.exists(dump):
        check(time.time() < deadline, "replay: no dump")
        await asyncio.sleep(0.05)
    d = read_dump(dump)["NKNUSDT"]
    bids, asks = book.rows()
    rb, ra = ref.rows()
    check(d["lastUpdateId"] == ref.last == book.last, "replay lastUpdateId")
    check(d["bids"] == bids == rb and d["asks"] == asks == ra, "replay: books differ")
    sim.stop()
    print(f"  replay: {len(events)} recorded events, book == reference (u={ref.last})")


async def run_tests(h, tests, only):
    """Runs each test coroutine (or those named in only), reports and
    counts failures, and kills whatever a failed test left running."""
    failed = 0
    for t in tests:
        if only and t.__name__ not in only:
            continue
        print(f"{t.__name__} ...", flush=True)
        try:
            await t(h)
        except Exception as e:  # noqa: BLE001 - report and continue
            failed += 1
            print(f"FAIL {t.__name__}: {e}")
            traceback.print_exc()
        for p in list(h.procs):
            # stop anything the test left running (a failed test)
            if p.proc.poll() is None:
                p.kill()
    return failed


def run_main(tests):
    """The command line shared by the simulator's test programs: --bin-dir,
    --keep, and test function names to run only those. Returns the exit
    status (0 pass, 1 fail, 77 skip)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", default=os.environ.get("QB_BIN_DIR"))
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("only", nargs="*", help="test function names")
    a = ap.parse_args()
    if not a.bin_dir:
        print("FAIL: --bin-dir or QB_BIN_DIR required")
        return 1
    if shutil.which("openssl") is None:
        print("SKIP: openssl CLI not found")
        return 77
    # SIGTERM (ctest timeout, CI cancel) still runs the cleanup below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    h = Harness(a.bin_dir)
    failed = 1
    try:
        failed = asyncio.run(run_tests(h, tests, a.only))
    finally:
        h.cleanup(keep=a.keep)
    print("PASS" if failed == 0 else f"FAILED: {failed} test(s)")
    return 0 if failed == 0 else 1


def main():
    return run_main([test_main_book, test_gap, test_dup_reorder, test_malformed_oversized,
                     test_conn_faults, test_snapshot_faults, test_pings, test_bad_input,
                     test_replay, test_determinism, test_small_book_raw, test_slow_consumer,
                     test_depth_1s, test_client_rate, test_changes_ws0])


if __name__ == "__main__":
    sys.exit(main())
