#!/usr/bin/python3
"""Protocol conformance of quotebus-exsim's HTX (Huobi) side.

Talks to the real binary like an HTX client (python3-websockets, gzip and
zlib from the standard library), over TLS with the test CA, on /feed:

- every server frame is a BINARY gzip member with the real header bytes
  (1f 8b 08 00, mtime 0, OS 0) and a valid CRC;
- sub/unsub/req replies, errors (invalid topic, mbp on /ws, unsub of a topic
  not subscribed, invalid json, too-many-request, --req-fail);
- mbp.150 updates: prices and sizes are JSON numbers (exponent form for tiny
  sizes, parsed exactly as decimals), seqNum jumps, prevSeqNum == previous
  seqNum, one-sided and empty updates; a req on the same connection aligns
  with the chain; the book rebuilt with the documented procedure equals the
  simulator's --dump exactly; trades (tradeId, legacy ids beyond 64 bits)
  and market.$sym.detail / .ticker tickers;
- the server pings {"ping":ms} and closes after 2 unanswered pings;
- faults: gap (chain breaks), dup, malformed JSON in valid gzip, corrupt
  gzip, gzip bombs, oversized, disconnect;
- one process serves binance, htx and bithumb on one port (routing by path).

Usage: test_exsim_htx.py --bin-dir DIR [test names]. Exit 0 pass, 1 fail,
77 skipped (python3-websockets or openssl missing).
"""
import asyncio
import gzip
import json
import os
import re
import sys
import time
import zlib
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_exsim as tx  # noqa: E402  (exits 77 without python3-websockets)
from test_exsim import Fail, check  # noqa: E402

import websockets  # noqa: E402

GZ_HEAD = bytes.fromhex("1f8b08000000000000" "00")
EXPO = re.compile(rb"[0-9]\.[0-9]+E-[0-9]+")


def unzip(frame):
    """The JSON text of a server frame; checks it is a real-looking gzip frame."""
    check(isinstance(frame, bytes), f"text frame from HTX: {frame[:80]!r}")
    check(frame[:10] == GZ_HEAD, f"gzip header {frame[:10].hex()}")
    return gzip.decompress(frame)


def load(raw):
    return json.loads(raw, parse_float=Decimal, parse_int=int)


class Client:
    """An HTX client on one connection: answers pings, keeps what arrives."""

    def __init__(self, ws, answer_pings=True):
        self.ws = ws
        self.answer = answer_pings
        self.pings = 0
        self.raw = []

    async def recv(self, timeout=10.0):
        """Next non-ping message (dict) and its raw JSON bytes."""
        while True:
            frame = await asyncio.wait_for(self.ws.recv(), timeout)
            raw = unzip(frame)
            m = load(raw)
            if "ping" in m and len(m) == 1:
                self.pings += 1
                check(isinstance(m["ping"], int) and m["ping"] > 1600000000000, f"ping {m}")
                if self.answer:
                    await self.ws.send(json.dumps({"pong": m["ping"]}))
                continue
            self.raw.append(raw)
            return m, raw

    async def reply(self, pred, what, timeout=10.0):
        deadline = time.time() + timeout
        while True:
            check(time.time() < deadline, f"{what}: no reply")
            m, _ = await self.recv(max(0.1, deadline - time.time()))
            if "ch" in m:
                continue
            check(pred(m), f"{what}: unexpected reply {m}")
            return m


def levels_ok(lv, what):
    check(isinstance(lv, list), f"{what}: not a list")
    for x in lv:
        check(isinstance(x, list) and len(x) == 2, f"{what}: level {x}")
        p, q = x
        check(isinstance(p, Decimal) and isinstance(q, Decimal),
              f"{what}: prices/sizes must be JSON numbers with a fraction: {x}")
        check(p > 0 and q >= 0, f"{what}: {x}")


class HtxBook:
    def __init__(self, data):
        self.seq = data["seqNum"]
        self.bids = {p: q for p, q in data["bids"]}
        self.asks = {p: q for p, q in data["asks"]}

    def apply(self, tick):
        check(tick["prevSeqNum"] == self.seq,
              f"chain: prevSeqNum {tick['prevSeqNum']} != {self.seq}")
        for side, lv in ((self.bids, tick["bids"]), (self.asks, tick["asks"])):
            for p, q in lv:
                if q == 0:
                    side.pop(p, None)
                else:
                    side[p] = q
        self.seq = tick["seqNum"]

    def rows(self):
        return (sorted(self.bids.items(), reverse=True), sorted(self.asks.items()))


def dump_rows(d):
    return ([(Decimal(p), Decimal(q)) for p, q in d["bids"]],
            [(Decimal(p), Decimal(q)) for p, q in d["asks"]])


def read_dump(path, exchange):
    out = {}
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            if d["exchange"] == exchange:
                out[d["symbol"]] = d
    return out


async def wait_file(path, timeout=30):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        check(time.time() < deadline, f"no {path}")
        await asyncio.sleep(0.05)


# ------------------------------------------------------------------ tests

async def test_htx_book(h):
    """TLS /feed: sub + req on one connection, chain, exact book == dump."""
    # 3 s of generation: at least two 1 s pings even when the first one
    # comes late on a loaded machine (2 s runs saw only one).
    events = 3000
    dump = os.path.join(h.tmp, "htx.dump")
    sim = h.start("htxbook", ["--exchange", "htx", "--rate", "1000", "--events", str(events),
                              "--seed", "5", "--trade-rate", "60", "--ticker-every", "10",
                              "--htx-ping-interval-ms", "2000", "--dump", dump])
    # 2 s pings, closed after 2 unanswered: this client answers while it
    # reads, so it has ~4 s even on a loaded 2-core machine under ASan.
    syms = ["btcusdt", "ethusdt"]
    async with h.connect(sim, "/feed") as ws:
        cl = Client(ws)
        for i, s in enumerate(syms):
            await ws.send(json.dumps({"sub": f"market.{s}.mbp.150", "id": f"m{i}"}))
            await cl.reply(lambda m, i=i, s=s: m == {"id": f"m{i}", "status": "ok",
                                                     "subbed": f"market.{s}.mbp.150",
                                                     "ts": m["ts"]}, "sub mbp")
            await ws.send(json.dumps({"sub": f"market.{s}.trade.detail", "id": 100 + i}))
            await cl.reply(lambda m: m["status"] == "ok" and m["id"] == 100 + i, "sub trade")
            await ws.send(json.dumps({"sub": f"market.{s}.detail", "id": f"d{i}"}))
            await cl.reply(lambda m: m["status"] == "ok", "sub detail")
        await ws.send(json.dumps({"sub": "market.btcusdt.ticker", "id": "t"}))
        await cl.reply(lambda m: m.get("subbed") == "market.btcusdt.ticker", "sub ticker")
        cache = {s: [] for s in syms}
        books = {}
        req_sent = {}
        prev = {}
        stats = {"jumps": 0, "empty": 0, "onesided": 0, "expo": 0, "trades": 0, "big_ids": 0,
                 "tickers": 0, "updates": 0}
        last_detail = {}
        last_ticker = None
        deadline = time.time() + 90
        while True:
            check(time.time() < deadline, "htx book: timed out")
            if os.path.exists(dump) and len(books) == 2:
                d = read_dump(dump, "htx")
                if all(books[s].seq >= d[s]["lastUpdateId"] and s in last_detail and
                       last_detail[s]["version"] >= d[s]["lastUpdateId"] for s in syms):
                    break
            # one req per symbol, on this connection, while updates flow,
            # respecting one req per 100 ms
            for s in syms:
                if s not in req_sent and len(cache[s]) >= 3 and \
                        all(time.time() - t > 0.12 for t in req_sent.values()):
                    req_sent[s] = time.time()
                    await ws.send(json.dumps({"req": f"market.{s}.mbp.150", "id": f"r-{s}"}))
            try:
                m, raw = await cl.recv(0.3)
            except asyncio.TimeoutError:
                continue
            if "rep" in m:
                s = m["rep"].split(".")[1]
                check(m["status"] == "ok" and m["id"] == f"r-{s}" and
                      m["rep"] == f"market.{s}.mbp.150", f"rep {m}")
                data = m["data"]
                levels_ok(data["bids"], "rep bids")
                levels_ok(data["asks"], "rep asks")
                check(len(data["bids"]) <= 150 and len(data["asks"]) <= 150, "rep > 150 levels")
                b = HtxBook(data)
                # the documented alignment: the snapshot's seqNum is the
                # prevSeqNum of a cached update (or of the next one)
                pend = [t for t in cache[s] if t["seqNum"] > b.seq]
                if pend:
                    check(pend[0]["prevSeqNum"] == b.seq,
                          f"{s}: req seqNum {b.seq} does not align with the chain "
                          f"({pend[0]['prevSeqNum']})")
                for t in pend:
                    b.apply(t)
                books[s] = b
                continue
            if "status" in m:
                raise Fail(f"unexpected control message {m}")
            ch = m["ch"]
            parts = ch.split(".")
            s = parts[1]
            check(isinstance(m["ts"], int), f"ts {m}")
            if parts[2] == "mbp":
                t = m["tick"]
                check(set(t) == {"seqNum", "prevSeqNum", "bids", "asks"}, f"tick keys {t.keys()}")
                levels_ok(t["bids"], ch)
                levels_ok(t["asks"], ch)
                stats["updates"] += 1
                if s in prev:
                    check(t["prevSeqNum"] == prev[s],
                          f"{s}: prevSeqNum {t['prevSeqNum']} != previous seqNum {prev[s]}")
                check(t["seqNum"] > t["prevSeqNum"], f"seqNum order {t}")
                stats["jumps"] += t["seqNum"] - t["prevSeqNum"] > 1
                prev[s] = t["seqNum"]
                nb, na = len(t["bids"]), len(t["asks"])
                stats["empty"] += nb == 0 and na == 0
                stats["onesided"] += (nb == 0) != (na == 0)
                stats["expo"] += len(EXPO.findall(raw))
                for side in (t["bids"], t["asks"]):
                    check(len({p for p, _ in side}) == len(side), f"price twice {t}")
                if s in books:
                    books[s].apply(t)
                    bb, aa = books[s].rows()
                    check(not bb or not aa or bb[0][0] < aa[0][0], f"{s}: crossed")
                    check(len(bb) <= 150 and len(aa) <= 150, f"{s}: deeper than 150")
                else:
                    cache[s].append(t)
            elif parts[2] == "trade":
                tk = m["tick"]
                for tr in tk["data"]:
                    check(set(tr) == {"id", "ts", "tradeId", "amount", "price", "direction"},
                          f"trade keys {tr}")
                    check(isinstance(tr["tradeId"], int) and tr["direction"] in ("buy", "sell"),
                          f"trade {tr}")
                    check(isinstance(tr["price"], Decimal) and isinstance(tr["amount"], Decimal),
                          f"trade numbers {tr}")
                    check(tr["id"] >= 2 ** 64, f"legacy id {tr['id']} fits 64 bits")
                    check(len(str(tr["id"])) in (24, 27), f"legacy id {tr['id']}")
                    stats["big_ids"] += len(str(tr["id"])) == 27
                    stats["trades"] += 1
            elif parts[2] == "detail":
                tk = m["tick"]
                check({"id", "low", "high", "open", "close", "vol", "amount", "version",
                       "count"} <= set(tk), f"detail keys {tk}")
                check(tk["low"] <= tk["close"] <= tk["high"], f"detail {tk}")
                last_detail[s] = tk
                stats["tickers"] += 1
            elif parts[2] == "ticker":
                tk = m["tick"]
                check({"open", "high", "low", "close", "amount", "vol", "count", "bid",
                       "bidSize", "ask", "askSize", "lastPrice", "lastSize"} <= set(tk),
                      f"ticker keys {tk}")
                check(tk["bid"] < tk["ask"], f"ticker bid/ask {tk}")
                last_ticker = tk
            else:
                raise Fail(f"unexpected channel {ch}")
        check(cl.pings >= 1, "no ping in the run")
    d = read_dump(dump, "htx")
    for s in syms:
        check(d[s]["events"] == events and d[s]["lastUpdateId"] == books[s].seq,
              f"{s}: dump {d[s]['lastUpdateId']} vs book {books[s].seq}")
        check(books[s].rows() == dump_rows(d[s]), f"{s}: rebuilt book differs from the dump")
        check(0 < len(d[s]["bids"]) <= 150, f"{s}: depth {len(d[s]['bids'])}")
        tk = d[s]["ticker"]
        ld = last_detail[s]
        check(Decimal(tk["last"]) == ld["close"] and Decimal(tk["volume"]) == ld["amount"] and
              Decimal(tk["open"]) == ld["open"] and tk["count"] == ld["count"],
              f"{s}: last detail {ld} != dump ticker {tk}")
    check(last_ticker is not None, "no market.btcusdt.ticker frames")
    check(stats["jumps"] > stats["updates"] * 0.9, f"seqNum jumps: {stats}")
    check(stats["empty"] > 50 and stats["onesided"] > 100 and stats["expo"] > 20, f"{stats}")
    check(stats["trades"] > 50 and 0 < stats["big_ids"] < stats["trades"], f"{stats}")
    st = sim.wait_stats(lambda x: x["reqs_served"] == 2)
    check(st["ping_timeouts"] == 0 and st["pongs_received"] >= 1 and
          st["pongs_unmatched"] == 0, f"ping stats {st}")
    sim.stop()
    print(f"  htx book: {stats['updates']} updates ({stats['empty']} empty, "
          f"{stats['onesided']} one-sided, {stats['expo']} exponent numbers), "
          f"{stats['trades']} trades, 2 books == dump, {cl.pings} pings answered")


async def test_htx_pings(h):
    """{"ping":ms} every interval; 2 unanswered -> closed (ping_timeouts)."""
    sim = h.start("htxping", ["--exchange", "htx", "--htx-ping-interval-ms", "200",
                              "--rate", "20"])
    async with h.connect(sim, "/feed") as ws:
        cl = Client(ws)
        t0 = time.time()
        while time.time() - t0 < 1.5:
            try:
                await cl.recv(0.1)
            except asyncio.TimeoutError:
                pass
        check(ws.open and cl.pings >= 5, f"answering client: open={ws.open} pings={cl.pings}")
    async with h.connect(sim, "/feed") as ws:
        cl = Client(ws, answer_pings=False)
        t0 = time.time()
        try:
            while True:
                await cl.recv(5)
        except websockets.ConnectionClosed as e:
            after = time.time() - t0
            check(e.code == 1008, f"close code {e.code}")
    check(cl.pings == 2, f"quiet client got {cl.pings} pings before the close (want 2)")
    check(0.5 <= after <= 3.0, f"closed after {after:.2f}s")
    st = sim.wait_stats(lambda s: s["ping_timeouts"] == 1 and s["connections"] == 0)
    # a pong echoing the older of two outstanding pings also counts
    sim.stop()
    print(f"  htx pings: answered client kept; silent one closed after 2 pings "
          f"({after:.2f}s, 1008); pongs_received={st['pongs_received']}")


async def test_htx_control(h):
    sim = h.start("htxctl", ["--exchange", "htx", "--rate", "50", "--req-fail", "1"])
    async with h.connect(sim, "/feed") as ws:
        cl = Client(ws)

        async def ask(msg, pred, what):
            await ws.send(msg if isinstance(msg, str) else json.dumps(msg))
            return await cl.reply(pred, what)

        def err(code, text=None):
            return lambda m: m["status"] == "error" and m["err-code"] == code and \
                (text is None or text in m["err-msg"])
        await ask({"sub": "market.nosuch..mbp.150", "id": "a"}, err("bad-request", "invalid topic"),
                  "invalid topic")
        await ask({"sub": "market.BTCUSDT.mbp.150", "id": "a2"}, err("bad-request"), "upper")
        await ask({"sub": "market.btcusdt.mbp.21", "id": "a3"}, err("bad-request"), "mbp.21")
        await ask({"unsub": "market.btcusdt.trade.detail", "id": "b"},
                  err("bad-request", "unsub with not subbed topic"), "unsub not subbed")
        await ask("not json", err("bad-request"), "garbage")
        await ask({"hello": 1}, err("bad-request"), "no verb")
        await ask({"ping": 123}, lambda m: m == {"pong": 123}, "client ping")
        m = await ask({"req": "market.btcusdt.mbp.150", "id": "r1"}, err("internal-error"),
                      "--req-fail")
        check(m["id"] == "r1", f"req-fail id {m}")
        await asyncio.sleep(0.15)
        await ws.send(json.dumps({"req": "market.btcusdt.mbp.150", "id": "r2"}))
        await ws.send(json.dumps({"req": "market.btcusdt.mbp.150", "id": "r3"}))
        m2 = await cl.reply(lambda m: m.get("id") == "r2", "req r2")
        check(m2["status"] == "ok" and m2["rep"] == "market.btcusdt.mbp.150", f"{m2}")
        m3 = await cl.reply(lambda m: m.get("id") == "r3", "req r3")
        check(m3["status"] == "error" and m3["err-code"] == "too-many-request", f"{m3}")
        await asyncio.sleep(0.12)
        await ask({"req": "market.btcusdt.mbp.150", "id": 4},
                  lambda m: m["status"] == "ok" and m["id"] == 4, "req after 100 ms")
        await ask({"sub": "market.btcusdt.trade.detail", "id": "s"},
                  lambda m: m["status"] == "ok" and m["subbed"] == "market.btcusdt.trade.detail",
                  "sub")
        await ask({"unsub": "market.btcusdt.trade.detail", "id": "u"},
                  lambda m: m["status"] == "ok" and m["unsubbed"] ==
                  "market.btcusdt.trade.detail", "unsub")
        await ws.send(b"\x00binary")
        await cl.reply(err("bad-request"), "binary client frame")
    # mbp exists only on /feed
    async with h.connect(sim, "/ws") as ws:
        cl = Client(ws)
        await ws.send(json.dumps({"sub": "market.btcusdt.mbp.150", "id": "w"}))
        await cl.reply(lambda m: m["status"] == "error", "mbp on /ws")
        await ws.send(json.dumps({"sub": "market.btcusdt.trade.detail", "id": "w2"}))
        await cl.reply(lambda m: m["status"] == "ok", "trade on /ws")
    st = sim.wait_stats(lambda s: s["fault_req_fail"] == 1 and s["req_rate_limited"] == 1)
    check(st["bad_input"] >= 2 and st["client_errors"] >= 5, f"{st}")
    sim.stop()
    print("  htx control: sub/unsub/req replies, errors, --req-fail, req pacing, /ws vs /feed")


async def collect_htx(h, sim, topic, n, timeout=20):
    """n data frames of topic (raw frames; pings answered)."""
    out = []
    async with h.connect(sim, "/feed") as ws:
        await ws.send(json.dumps({"sub": topic, "id": "x"}))
        deadline = time.time() + timeout
        while len(out) < n:
            check(time.time() < deadline, f"collect: {len(out)} of {n}")
            f = await asyncio.wait_for(ws.recv(), deadline - time.time())
            try:
                m = json.loads(gzip.decompress(f))
                if "ping" in m:
                    await ws.send(json.dumps({"pong": m["ping"]}))
                    continue
                if "subbed" in m:
                    continue
            except (OSError, EOFError, zlib.error, ValueError):
                pass
            out.append(f)
    return out


async def test_htx_faults(h):
    sim = h.start("htxgap", ["--exchange", "htx", "--rate", "1000", "--events", "200",
                             "--gap-every", "10", "--dup-every", "7", "--trade-rate", "0"])
    frames = await collect_htx(h, sim, "market.btcusdt.mbp.150", 200 - 20 + 26)
    ticks = [json.loads(gzip.decompress(f))["tick"] for f in frames]
    breaks = sum(1 for a, b in zip(ticks, ticks[1:])
                 if b["prevSeqNum"] != a["seqNum"] and b != a)
    dups = sum(1 for a, b in zip(ticks, ticks[1:]) if a == b)
    check(breaks == 19 and dups == 26, f"gap/dup: breaks={breaks} dups={dups}")
    st = sim.wait_stats(lambda s: s["events_generated"] == 200)
    check(st["fault_gap"] == 20 and st["fault_dup"] == 26, f"{st}")
    sim.stop()

    sim = h.start("htxbad", ["--exchange", "htx", "--rate", "500", "--events", "60",
                             "--trade-rate", "0", "--malformed-every", "10",
                             "--corrupt-gzip-every", "15", "--gzip-bomb-every", "30",
                             "--gzip-bomb-bytes", "4000000", "--oversized-every", "60",
                             "--oversized-bytes", "1500000"])
    frames = await collect_htx(h, sim, "market.btcusdt.mbp.150", 60 + 6 + 4 + 2 + 1)
    good = malformed = corrupt = bombs = oversized = 0
    for f in frames:
        check(isinstance(f, bytes), "text frame")
        try:
            raw = gzip.decompress(f)
        except (OSError, EOFError, zlib.error):
            corrupt += 1
            continue
        if len(raw) >= 4000000:
            bombs += 1
            check(len(f) < 40000, f"bomb frame is {len(f)} bytes on the wire")
            check(json.loads(raw)["tick"]["seqNum"] == 1, "bomb must be stale")
            continue
        if len(raw) >= 1500000 - 100:
            oversized += 1
            check(json.loads(raw)["tick"]["seqNum"] == 1, "oversized must be stale")
            continue
        try:
            json.loads(raw)
            good += 1
        except ValueError:
            malformed += 1
    check((good, malformed, corrupt, bombs, oversized) == (60, 6, 4, 2, 1),
          f"good/malformed/corrupt/bomb/oversized = {good} {malformed} {corrupt} {bombs} "
          f"{oversized}")
    st = sim.wait_stats(lambda s: s["fault_corrupt_gzip"] == 4 and s["fault_gzip_bomb"] == 2)
    sim.stop()

    sim = h.start("htxdisc", ["--exchange", "htx", "--rate", "200", "--trade-rate", "0",
                              "--disconnect-every", "9"], tls=False)
    async with h.connect(sim, "/feed") as ws:
        await ws.send(json.dumps({"sub": "market.ethusdt.mbp.150", "id": 1}))
        n = 0
        try:
            while True:
                m = json.loads(gzip.decompress(await asyncio.wait_for(ws.recv(), 5)))
                n += "ch" in m
        except websockets.ConnectionClosed:
            pass
    check(n == 9, f"disconnect-every 9: {n} updates")
    sim.stop()
    print("  htx faults: 19 chain breaks, 26 dups, malformed/corrupt gzip/bombs/oversized, "
          "disconnect")


async def test_htx_mbp5(h):
    """mbp.5 (tick-by-tick top 5): only changes, unchanged side omitted,
    nothing when the top 5 did not move; chained; req aligned; == dump top 5."""
    dump = os.path.join(h.tmp, "htx5.dump")
    sim = h.start("htx5", ["--exchange", "htx", "--rate", "800", "--events", "1500",
                           "--seed", "12", "--trade-rate", "0", "--dump", dump], tls=False)
    async with h.connect(sim, "/feed") as ws:
        cl = Client(ws)
        for lv in (5, 150):
            await ws.send(json.dumps({"sub": f"market.btcusdt.mbp.{lv}", "id": f"s{lv}"}))
            await cl.reply(lambda m: m["status"] == "ok", "sub")
        cache = {5: [], 150: []}
        books = {}
        omitted = 0
        sent = False
        deadline = time.time() + 60
        while True:
            check(time.time() < deadline, "mbp.5: timed out")
            if len(books) == 2 and os.path.exists(dump):
                d = read_dump(dump, "htx")["btcusdt"]
                if books[150].seq >= d["lastUpdateId"]:
                    break
            if not sent and len(cache[5]) >= 3 and len(cache[150]) >= 3:
                sent = True
                await ws.send(json.dumps({"req": "market.btcusdt.mbp.5", "id": "r5"}))
                await asyncio.sleep(0.12)
                await ws.send(json.dumps({"req": "market.btcusdt.mbp.150", "id": "r150"}))
            try:
                m, _ = await cl.recv(0.3)
            except asyncio.TimeoutError:
                continue
            if "rep" in m:
                lv = int(m["rep"].rsplit(".", 1)[1])
                data = m["data"]
                check(len(data["bids"]) <= lv and len(data["asks"]) <= lv, f"rep {lv} depth")
                b = HtxBook(data)
                pend = [t for t in cache[lv] if t["seqNum"] > b.seq]
                if pend:
                    check(pend[0]["prevSeqNum"] == b.seq, f"mbp.{lv}: req does not align")
                for t in pend:
                    b.apply(t)
                books[lv] = b
                continue
            lv = int(m["ch"].rsplit(".", 1)[1])
            t = m["tick"]
            if lv == 5:
                omitted += ("bids" not in t) or ("asks" not in t)
                t.setdefault("bids", [])
                t.setdefault("asks", [])
                check(t["bids"] or t["asks"], f"mbp.5 sent an update without changes: {m}")
            prev = cache[lv][-1]["seqNum"] if cache[lv] else None
            check(prev is None or t["prevSeqNum"] == prev, f"mbp.{lv}: chain broken")
            cache[lv].append(t)
            if lv in books:
                books[lv].apply(t)
                if lv == 5:
                    bb, aa = books[5].rows()
                    check(len(bb) <= 5 and len(aa) <= 5, "mbp.5 book deeper than 5")
    d = read_dump(dump, "htx")["btcusdt"]
    db, da = dump_rows(d)
    check(books[150].rows() == (db, da), "mbp.150 book != dump")
    check(books[5].rows() == (db[:5], da[:5]), "mbp.5 book != top 5 of the dump")
    n5, n150 = len(cache[5]), len(cache[150])
    check(0 < n5 < n150 and omitted > 0, f"mbp.5 {n5} updates vs mbp.150 {n150}, "
          f"{omitted} with a side omitted")
    sim.stop()
    print(f"  htx mbp.5: {n5} top-5 changes for {n150} book updates ({omitted} one-sided), "
          f"book == top 5 of the dump")


async def test_routing(h):
    """One default process: binance /stream, htx /feed, bithumb /websocket/v1."""
    dump = os.path.join(h.tmp, "all.dump")
    sim = h.start("all", ["--rate", "200", "--events", "100", "--dump", dump])
    async with h.connect(sim, "/stream?streams=btcusdt@depth@100ms") as b, \
            h.connect(sim, "/feed") as x, h.connect(sim, "/websocket/v1") as k:
        await x.send(json.dumps({"sub": "market.btcusdt.mbp.150", "id": "1"}))
        await k.send(json.dumps([{"ticket": "t"}, {"type": "orderbook", "codes": ["KRW-BTC"]}]))
        mb = json.loads(await asyncio.wait_for(b.recv(), 5))
        check(mb["data"]["e"] == "depthUpdate", f"binance {mb}")
        mx = unzip(await asyncio.wait_for(x.recv(), 5))
        check(b"subbed" in mx, f"htx {mx}")
        mk = json.loads(await asyncio.wait_for(k.recv(), 5))
        check(mk["type"] == "orderbook" and mk["code"] == "KRW-BTC", f"bithumb {mk}")
    sim.stop()
    with open(dump) as f:
        got = sorted((d["exchange"], d["symbol"]) for d in map(json.loads, f))
    check(got == [("binance", "BTCUSDT"), ("bithumb", "KRW-BTC"), ("htx", "btcusdt")],
          f"dump {got}")
    # --exchange htx alone: the Binance paths are gone
    sim = h.start("htxonly", ["--exchange", "htx"], tls=False)
    s, status = tx.raw_ws_handshake(sim.port, "/stream")
    s.close()
    check(" 404" in status, f"/stream on htx only: {status}")
    s, status = tx.raw_ws_handshake(sim.port, "/nowhere")
    s.close()
    check(" 404" in status, f"/nowhere: {status}")
    sim.stop()
    print("  routing: one port serves binance, htx, bithumb; dump names exchange + symbol")


def main():
    return tx.run_main([test_routing, test_htx_control, test_htx_pings, test_htx_faults, test_htx_mbp5,
                       test_htx_book])


if __name__ == "__main__":
    sys.exit(main())
