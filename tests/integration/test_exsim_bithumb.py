#!/usr/bin/python3
"""Protocol conformance of quotebus-exsim's Bithumb side (/websocket/v1).

Talks to the real binary like a Bithumb client (python3-websockets), over
TLS with the test CA:

- the JSON array request (ticket, types with codes, format); errors for
  malformed requests (Upbit-style {"error":{"name","message"}});
- per (type, code) a SNAPSHOT message first, then REALTIME ones;
- orderbook messages are full top-N books (30 units, or .N): sorted, not
  crossed, KRW prices on 1000 KRW ticks around 90,000,000, sizes with at most
  8 decimals, totals equal the sums; the last message equals --dump exactly;
- trades (ask_bid, sequential_id) and tickers with exactly the fields of the
  doc sample bithumb_v1_ticker_snapshot_doc_1.json; the last ticker agrees
  with the dump's ticker state;
- text PING -> {"status":"UP"}; idle connections closed after
  --bithumb-idle-ms; faults: gap (one snapshot skipped), malformed, oversized,
  disconnect.

Usage: test_exsim_bithumb.py --bin-dir DIR [test names]. Exit 0 pass, 1 fail,
77 skipped.
"""
import asyncio
import json
import os
import sys
import time
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_exsim as tx  # noqa: E402  (exits 77 without python3-websockets)
from test_exsim import Fail, check  # noqa: E402

import websockets  # noqa: E402

SAMPLE = os.path.join(tx.SHARED, "samples", "bithumb_v1_ticker_snapshot_doc_1.json")
# the sample's keys (used when the shared data is not there)
TICKER_KEYS = {
    "type", "code", "opening_price", "high_price", "low_price", "trade_price",
    "prev_closing_price", "change", "change_price", "signed_change_price", "change_rate",
    "signed_change_rate", "trade_volume", "acc_trade_volume", "acc_trade_volume_24h",
    "acc_trade_price", "acc_trade_price_24h", "trade_date", "trade_time", "trade_timestamp",
    "ask_bid", "acc_ask_volume", "acc_bid_volume", "highest_52_week_price",
    "highest_52_week_date", "lowest_52_week_price", "lowest_52_week_date", "market_state",
    "is_trading_suspended", "delisting_date", "market_warning", "timestamp", "stream_type"}
TRADE_KEYS = {"type", "code", "trade_price", "trade_volume", "ask_bid", "prev_closing_price",
              "change", "change_price", "trade_date", "trade_time", "trade_timestamp",
              "sequential_id", "timestamp", "stream_type"}
BOOK_KEYS = {"type", "code", "timestamp", "total_ask_size", "total_bid_size", "orderbook_units",
             "level", "stream_type"}


def load(m):
    check(isinstance(m, str), f"binary frame from Bithumb: {m[:40]!r}")
    return json.loads(m, parse_float=Decimal)


def request(codes, types=("orderbook", "trade", "ticker"), **extra):
    r = [{"ticket": "quotebus-test"}]
    for t in types:
        d = {"type": t, "codes": list(codes)}
        d.update(extra)
        r.append(d)
    r.append({"format": "DEFAULT"})
    return json.dumps(r)


def dec8(x):
    return isinstance(x, (int, Decimal)) and Decimal(x) == Decimal(x).quantize(Decimal("1E-8"))


def check_book(m, units=30):
    check(set(m) == BOOK_KEYS, f"orderbook keys {sorted(m)}")
    u = m["orderbook_units"]
    check(0 < len(u) <= units, f"{len(u)} units")
    bids = [(x["bid_price"], x["bid_size"]) for x in u if x["bid_price"] > 0]
    asks = [(x["ask_price"], x["ask_size"]) for x in u if x["ask_price"] > 0]
    for x in u:
        check(set(x) == {"ask_price", "bid_price", "ask_size", "bid_size"}, f"unit {x}")
        for k, v in x.items():
            check(isinstance(v, (int, Decimal)) and not isinstance(v, bool) and dec8(v),
                  f"unit {k}={v!r}")
    check(bids == sorted(bids, reverse=True) and asks == sorted(asks), "units not sorted")
    check(not bids or not asks or bids[0][0] < asks[0][0], "crossed")
    if m["code"] == "KRW-BTC":
        check(all(isinstance(p, int) and p % 1000 == 0 and 80000000 < p < 100000000
                  for p, _ in bids + asks), f"KRW-BTC prices {bids[:2]} {asks[:2]}")
    check(m["total_bid_size"] == sum(q for _, q in bids) and
          m["total_ask_size"] == sum(q for _, q in asks), "totals")
    check(isinstance(m["timestamp"], int) and m["timestamp"] > 1600000000000, "timestamp")
    return ([(Decimal(p), Decimal(q)) for p, q in bids], [(Decimal(p), Decimal(q)) for p, q in asks])


def read_dump(path):
    out = {}
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            if d["exchange"] == "bithumb":
                out[d["symbol"]] = d
    return out


def dump_rows(d):
    return ([(Decimal(p), Decimal(q)) for p, q in d["bids"]],
            [(Decimal(p), Decimal(q)) for p, q in d["asks"]])


async def test_bithumb_book(h):
    events = 1500
    dump = os.path.join(h.tmp, "bithumb.dump")
    sim = h.start("bbook", ["--exchange", "bithumb", "--rate", "800", "--events", str(events),
                            "--seed", "9", "--trade-rate", "80", "--ticker-every", "10",
                            "--dump", dump])
    codes = ["KRW-BTC", "KRW-ETH"]
    keys = TICKER_KEYS
    if os.path.exists(SAMPLE):
        with open(SAMPLE) as f:
            keys = set(json.load(f))
    books, tickers, first = {}, {}, {}
    counts = {"orderbook": 0, "trade": 0, "ticker": 0}
    async with h.connect(sim, "/websocket/v1") as ws:
        await ws.send(request(codes))
        deadline = time.time() + 60
        while True:
            check(time.time() < deadline, "bithumb book: timed out")
            if os.path.exists(dump):
                d = read_dump(dump)
                if set(d) == set(codes) and all(
                        books.get(c) == dump_rows(d[c]) and
                        tickers.get(c, {}).get("count_seen") == d[c]["ticker"]["tickers"]
                        for c in codes):
                    break
            try:
                m = load(await asyncio.wait_for(ws.recv(), 0.3))
            except asyncio.TimeoutError:
                continue
            t, c = m["type"], m["code"]
            check(c in codes and t in counts, f"unexpected {m}")
            st = m["stream_type"]
            if (t, c) not in first:
                first[(t, c)] = st
                # a symbol that has not traded yet has no trade snapshot
                check(st == "SNAPSHOT" or t == "trade", f"first {t} {c} is {st}")
            else:
                check(st == "REALTIME", f"later {t} {c} is {st}")
            counts[t] += 1
            if t == "orderbook":
                books[c] = check_book(m)
            elif t == "trade":
                check(set(m) == TRADE_KEYS, f"trade keys {sorted(m)}")
                check(m["ask_bid"] in ("ASK", "BID") and isinstance(m["sequential_id"], int)
                      and m["trade_volume"] > 0 and dec8(m["trade_volume"]), f"trade {m}")
            else:
                check(set(m) == keys, f"ticker keys differ from the doc sample: "
                      f"{sorted(set(m) ^ keys)}")
                check(m["low_price"] <= m["trade_price"] <= m["high_price"], f"ticker {m}")
                prev = tickers.get(c, {}).get("count_seen", 0)
                m["count_seen"] = prev + (st == "REALTIME")
                tickers[c] = m
    d = read_dump(dump)
    for c in codes:
        check(d[c]["events"] == events, f"{c}: dump events {d[c]['events']}")
        check(books[c] == dump_rows(d[c]), f"{c}: last orderbook != dump")
        check(len(d[c]["bids"]) <= 30 and len(d[c]["asks"]) <= 30, "depth > 30")
        tk, dt = tickers[c], d[c]["ticker"]
        check(Decimal(dt["last"]) == tk["trade_price"] and
              Decimal(dt["volume"]) == tk["acc_trade_volume_24h"] and
              Decimal(dt["open"]) == tk["opening_price"], f"{c}: ticker {tk} vs dump {dt}")
    check(len(first) == 6, f"first messages: {first}")
    check(counts["orderbook"] >= 2 * events and counts["trade"] > 100, f"{counts}")
    sim.stop()
    print(f"  bithumb book: {counts} messages, SNAPSHOT then REALTIME, last books == dump")


async def test_bithumb_requests(h):
    sim = h.start("breq", ["--exchange", "bithumb", "--rate", "50"])

    async def err(ws, msg, name):
        await ws.send(msg)
        while True:
            m = load(await asyncio.wait_for(ws.recv(), 5))
            if "error" in m:
                check(m["error"]["name"] == name and m["error"]["message"], f"{msg}: {m}")
                return
            check(m.get("type") in ("orderbook", "trade", "ticker"), f"{msg}: {m}")
    async with h.connect(sim, "/websocket/v1") as ws:
        await err(ws, '{"ticket":"x"}', "WRONG_FORMAT")
        await err(ws, "not json", "WRONG_FORMAT")
        await err(ws, json.dumps([{"type": "orderbook", "codes": ["KRW-BTC"]}]), "NO_TICKET")
        await err(ws, json.dumps([{"ticket": "x"}]), "NO_TYPE")
        await err(ws, json.dumps([{"ticket": "x"}, {"type": "candle", "codes": ["KRW-BTC"]}]),
                  "NO_TYPE")
        await err(ws, json.dumps([{"ticket": "x"}, {"type": "trade", "codes": []}]), "NO_CODES")
        await err(ws, request(["krw-btc"]), "INVALID_PARAM")
        await err(ws, request(["BTC_KRW"]), "INVALID_PARAM")
        await err(ws, request(["KRW-BTC.31"]), "INVALID_PARAM")
        await err(ws, json.dumps([{"ticket": "x"}, {"type": "trade", "codes": ["KRW-BTC"]},
                                  {"format": "SIMPLE"}]), "INVALID_PARAM")
        await ws.send("PING")
        m = load(await asyncio.wait_for(ws.recv(), 5))
        check(m == {"status": "UP"}, f"PING -> {m}")
        # .5: five units; a new request replaces the old one
        await ws.send(request(["KRW-ETH.5"], types=("orderbook",)))
        for _ in range(5):
            m = load(await asyncio.wait_for(ws.recv(), 5))
            check(m["code"] == "KRW-ETH", f"after replace {m}")
            check_book(m, units=5)
            check(len(m["orderbook_units"]) == 5, "5 units")
        # snapshot only: one message, then silence
        await ws.send(request(["KRW-XRP"], types=("orderbook",), isOnlySnapshot=True))
        m = load(await asyncio.wait_for(ws.recv(), 5))
        while m.get("code") == "KRW-ETH":
            m = load(await asyncio.wait_for(ws.recv(), 5))
        check(m["code"] == "KRW-XRP" and m["stream_type"] == "SNAPSHOT", f"{m}")
        try:
            extra = await asyncio.wait_for(ws.recv(), 0.5)
            raise Fail(f"isOnlySnapshot: more came: {extra[:100]}")
        except asyncio.TimeoutError:
            pass
        # realtime only: no SNAPSHOT
        await ws.send(request(["KRW-BTC"], types=("orderbook",), is_only_realtime=True))
        m = load(await asyncio.wait_for(ws.recv(), 5))
        check(m["stream_type"] == "REALTIME", f"isOnlyRealtime {m}")
    st = sim.wait_stats(lambda s: s["text_pings"] == 1)
    check(st["bad_input"] >= 2 and st["client_errors"] >= 8, f"{st}")
    sim.stop()
    print("  bithumb requests: errors by name, PING/UP, .N units, replace, snapshot/realtime only")


async def test_bithumb_idle(h):
    sim = h.start("bidle", ["--exchange", "bithumb", "--bithumb-idle-ms", "600"], tls=False)
    async with h.connect(sim, "/websocket/v1") as quiet, \
            h.connect(sim, "/websocket/v1") as talker:
        t0 = time.time()
        ups = 0
        closed_after = None
        while time.time() - t0 < 2.0:
            await talker.send("PING")
            m = await asyncio.wait_for(talker.recv(), 5)
            ups += json.loads(m) == {"status": "UP"}
            if closed_after is None:
                try:
                    await asyncio.wait_for(quiet.recv(), 0.2)
                except asyncio.TimeoutError:
                    pass
                except websockets.ConnectionClosed:
                    closed_after = time.time() - t0
            else:
                await asyncio.sleep(0.2)
        check(talker.open, "a client sending PING was closed")
        check(closed_after is not None and 0.5 <= closed_after <= 1.5,
              f"idle connection closed after {closed_after}")
    st = sim.wait_stats(lambda s: s["idle_closes"] == 1 and s["connections"] == 0)
    check(st["text_pings"] == ups and ups >= 5, f"{st} ups={ups}")
    sim.stop()
    print(f"  bithumb idle: silent connection closed after {closed_after:.2f}s, "
          f"PING keeps one open ({ups} UP)")


async def test_bithumb_faults(h):
    sim = h.start("bgap", ["--exchange", "bithumb", "--rate", "500", "--events", "100",
                           "--gap-every", "10", "--malformed-every", "25",
                           "--oversized-every", "50", "--oversized-bytes", "200000",
                           "--trade-rate", "0", "--ticker-every", "0"])
    good = bad = big = 0
    async with h.connect(sim, "/websocket/v1") as ws:
        await ws.send(request(["KRW-BTC"], types=("orderbook",)))
        while good + bad + big < 1 + 90 + 4 + 2:
            m = await asyncio.wait_for(ws.recv(), 10)
            try:
                d = load(m)
            except ValueError:
                bad += 1
                continue
            if len(m) >= 200000:
                big += 1
            else:
                check_book(d)
                good += 1
        try:
            extra = await asyncio.wait_for(ws.recv(), 0.5)
            raise Fail(f"more frames than expected: {extra[:100]}")
        except asyncio.TimeoutError:
            pass
    check((good, bad, big) == (91, 4, 2), f"good/malformed/oversized {good} {bad} {big}")
    sim.stop()
    sim = h.start("bdisc", ["--exchange", "bithumb", "--rate", "200", "--trade-rate", "0",
                            "--disconnect-every", "6", "--ticker-every", "0"], tls=False)
    n = 0
    async with h.connect(sim, "/websocket/v1") as ws:
        await ws.send(request(["KRW-BTC"], types=("orderbook",)))
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
                n += 1
        except websockets.ConnectionClosed:
            pass
    check(n == 7, f"disconnect-every 6: {n} messages (1 snapshot + 6)")
    sim.stop()
    print("  bithumb faults: gaps skip snapshots, malformed/oversized counted, disconnect")


def main():
    return tx.run_main([test_bithumb_requests, test_bithumb_idle, test_bithumb_faults,
                       test_bithumb_book])


if __name__ == "__main__":
    sys.exit(main())
