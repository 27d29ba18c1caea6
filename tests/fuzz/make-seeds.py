#!/usr/bin/python3
"""make-seeds.py: writes the synthetic seed corpora of the fuzz targets.

  make-seeds.py OUT_DIR              synthetic seeds -> OUT_DIR/<target>/ (what
                                     tests/fuzz/corpus/ was made from)
  make-seeds.py OUT_DIR --shared DIR also frames of DIR (../shared/exchange-data)
                                     -> OUT_DIR/<target>/shared-*; for fuzzing
                                     runs only, NEVER committed to the repository

Multi-record inputs are joined with the targets' separator "\\n@@\\n"
(tests/fuzz/fuzz.h); record prefixes 'S' (snapshot document), 'Z' (text the
harness gzips), 'G' (raw gzip) select what a record is.
"""
import gzip
import json
import os
import struct
import sys

SEP = b"\n@@\n"


def j(o):
    return json.dumps(o, separators=(",", ":")).encode()


def recs(*r):
    return SEP.join(r)


def write(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- binance
def bn_depth(U, u, bids, asks, sym="BTCUSDT"):
    return j({"stream": sym.lower() + "@depth@100ms",
              "data": {"e": "depthUpdate", "E": 1700000000000, "s": sym, "U": U, "u": u,
                       "b": bids, "a": asks}})


def binance(out):
    snap = b"S" + j({"lastUpdateId": 100, "bids": [["100.10", "1.5"], ["100.00", "2"]],
                     "asks": [["100.20", "0.7"], ["100.30", "3"]]})
    d1 = bn_depth(95, 101, [["100.10", "0"], ["100.05", "1"]], [["100.20", "0.5"]])
    d2 = bn_depth(102, 103, [["100.15", "0.25"]], [])
    d3 = bn_depth(104, 104, [], [["100.12", "9"]])  # crosses
    gap = bn_depth(110, 111, [["99", "1"]], [])
    trade = j({"stream": "btcusdt@trade", "data": {"e": "trade", "E": 1, "s": "BTCUSDT", "t": 7,
                                                   "p": "100.1", "q": "0.01", "T": 1, "m": True}})
    ticker = j({"stream": "btcusdt@ticker", "data": {
        "e": "24hrTicker", "E": 1, "s": "BTCUSDT", "p": "-1.5", "c": "100.1", "b": "100.0",
        "B": "1", "a": "100.2", "A": "2", "v": "12345.678"}})
    write(out, "binance", "sync_clean", recs(d1, snap, d2))
    write(out, "binance", "sync_crossed", recs(snap, d1, d2, d3))
    write(out, "binance", "sync_gap", recs(snap, d1, gap, snap, d2))
    write(out, "binance", "trade", trade)
    write(out, "binance", "ticker", ticker)
    write(out, "binance", "shutdown", recs(snap, d1, j({"stream": "!serverShutdown",
                                                        "data": {"e": "serverShutdown"}}), d2))
    write(out, "binance", "control", recs(j({"id": 1, "result": None}),
                                          j({"code": -1121, "msg": "Invalid symbol."})))
    write(out, "binance", "exp_numbers", recs(
        b"S" + j({"lastUpdateId": 5, "bids": [[1.5e-7, 2E+3]], "asks": [["1E2", "0.00000001"]]}),
        bn_depth(6, 6, [["0.00000015", "0E-8"]], [])))
    big = "9" * 3000
    write(out, "binance", "long_number", bn_depth(1, 2, [[big, "1"]], [["1." + big, big]]))
    write(out, "binance", "nesting_bomb", b"[" * 5000 + b"]" * 5000)
    # The frame the fault suite's simulator sends (--bad-input-kinds nest):
    # jsmn took 0.8 s on it (quadratic closing-bracket walk) before
    # common/json.c bounded the depth (QB_JSON_MAX_DEPTH).
    write(out, "binance", "regress_nest_30000", bn_depth(1, 1, [], []).replace(
        b'"b":[]', b'"b":' + b"[" * 30000 + b"]" * 30000))
    write(out, "binance", "bad_utf8", bn_depth(1, 2, [["1", "1"]], []).replace(b"BTCUSDT",
                                                                                b"BTC\xff\xfeT"))
    write(out, "binance", "truncated", d1[: len(d1) // 2])


# ---------------------------------------------------------------- htx
def hx_mbp(seq, prev, bids, asks, sym="btcusdt"):
    return j({"ch": "market.%s.mbp.150" % sym, "ts": 1700000000000,
              "tick": {"seqNum": seq, "prevSeqNum": prev, "bids": bids, "asks": asks}})


def htx(out):
    req = j({"id": "1", "rep": "market.btcusdt.mbp.150", "status": "ok", "ts": 1,
             "data": {"seqNum": 100, "bids": [[100.1, 1.5], [100.0, 2]],
                      "asks": [[100.2, 0.7], [100.3, 3]]}})
    m1 = hx_mbp(99, 98, [[100.0, 1]], [])
    m2 = hx_mbp(101, 100, [[100.1, 0], [100.05, 1]], [[100.2, 0.5]])
    m3 = hx_mbp(102, 101, [], [[100.25, 1]])
    trade = j({"ch": "market.btcusdt.trade.detail", "ts": 1, "tick": {"id": 1, "ts": 1, "data": [
        {"id": 123456789012345678901234567, "ts": 1, "tradeId": 100001, "amount": 0.5,
         "price": 100.1, "direction": "buy"},
        {"id": 2, "ts": 1, "tradeId": 100002, "amount": 1, "price": 100.2, "direction": "sell"}]}})
    ticker = j({"ch": "market.btcusdt.detail", "ts": 1, "tick": {
        "id": 1, "open": 99, "close": 100.1, "low": 98, "high": 101, "amount": 1234.5,
        "vol": 123456.7, "count": 10, "version": 100}})
    ping = j({"ping": 1700000000000})
    write(out, "htx", "sync_clean", recs(b"Z" + m1, b"Z" + req, b"Z" + m2, b"Z" + m3))
    write(out, "htx", "sync_plain", recs(m1, req, m2, m3))
    write(out, "htx", "sync_gap", recs(req, m2, hx_mbp(110, 109, [[1, 1]], []), req))
    write(out, "htx", "req_snapshot", b"S" + req)
    write(out, "htx", "trade", b"Z" + trade)
    write(out, "htx", "ticker", b"Z" + ticker)
    write(out, "htx", "ping", b"G" + gzip.compress(ping, mtime=0))
    write(out, "htx", "sub_ack", b"Z" + j({"id": "x", "status": "ok", "subbed":
                                           "market.btcusdt.mbp.150", "ts": 1}))
    write(out, "htx", "error", b"Z" + j({"id": "1", "status": "error", "err-code":
                                         "too-many-request", "err-msg": "slow down", "ts": 1}))
    gz = gzip.compress(m2, mtime=0)
    write(out, "htx", "gzip_corrupt", b"G" + gz[:10] + bytes([gz[10] ^ 0xff]) + gz[11:])
    write(out, "htx", "gzip_truncated", b"G" + gz[: len(gz) // 2])
    write(out, "htx", "gzip_trailing", b"G" + gz + b"garbage")
    bomb = gzip.compress(b"{\"ch\":\"market.bomb.mbp.150\",\"tick\":{\"bids\":[" + b" " * (2 << 20), mtime=0)
    write(out, "htx", "gzip_bomb", b"G" + bomb)
    write(out, "htx", "nesting_bomb", b"Z" + b"{\"a\":" * 3000 + b"1" + b"}" * 3000)
    write(out, "htx", "long_number", b"Z" + hx_mbp(1, 0, [], []).replace(b"\"seqNum\":1",
                                                                           b"\"seqNum\":" + b"1" * 4000))


# ---------------------------------------------------------------- bithumb
def bt_book(ts, units, code="KRW-BTC"):
    return j({"type": "orderbook", "code": code, "timestamp": ts, "total_ask_size": 1,
              "total_bid_size": 1, "orderbook_units": [
                  {"ask_price": a, "bid_price": b, "ask_size": asz, "bid_size": bsz}
                  for a, b, asz, bsz in units], "level": 0, "stream_type": "REALTIME"})


def bithumb(out):
    b1 = bt_book(1000, [(101, 100, 1.5, 2), (102, 99, 0.5, 1)])
    b2 = bt_book(1001, [(101, 100, 1.0, 2), (103, 98, 0.5, 1)])
    b3 = bt_book(1002, [(99, 100, 1, 1)])  # crossed
    trade = j({"type": "trade", "code": "KRW-BTC", "trade_price": 100.5, "trade_volume": 0.01,
               "ask_bid": "BID", "prev_closing_price": 99, "change": "RISE", "change_price": 1.5,
               "trade_date": "2024-01-01", "trade_time": "00:00:00", "trade_timestamp": 1,
               "sequential_id": 17000000000001, "timestamp": 1, "stream_type": "REALTIME"})
    ticker = j({"type": "ticker", "code": "KRW-BTC", "opening_price": 99, "high_price": 101,
                "low_price": 98, "trade_price": 100, "prev_closing_price": 99, "change": "RISE",
                "change_price": 1, "signed_change_price": 1, "change_rate": 0.01,
                "acc_trade_volume_24h": 1234.5, "acc_trade_price_24h": 123450, "timestamp": 1,
                "stream_type": "REALTIME"})
    write(out, "bithumb", "books", recs(b1, b2, b2, b1))
    write(out, "bithumb", "crossed", recs(b1, b3, b2))
    write(out, "bithumb", "trade", trade)
    write(out, "bithumb", "ticker", ticker)
    write(out, "bithumb", "status_up", j({"status": "UP"}))
    write(out, "bithumb", "error", j({"error": {"name": "INVALID_PARAM", "message": "x"}}))
    write(out, "bithumb", "snapshot_stream", bt_book(5, [(2, 1, 1, 1)]).replace(b"REALTIME",
                                                                                 b"SNAPSHOT"))
    write(out, "bithumb", "exp_numbers", bt_book(7, [("1E+2", "9.9e1", "1e-8", 2)]))


# ---------------------------------------------------------------- msgpack
def mp_str(s):
    b = s.encode() if isinstance(s, str) else s
    if len(b) < 32:
        return bytes([0xa0 | len(b)]) + b
    return b"\xd9" + bytes([len(b)]) + b


def mp_int(v):
    if 0 <= v < 128:
        return bytes([v])
    if v < 0 and v >= -32:
        return struct.pack("b", v)
    if 0 <= v < 1 << 32:
        return b"\xce" + struct.pack(">I", v)
    if v >= 0:
        return b"\xcf" + struct.pack(">Q", v)
    return b"\xd3" + struct.pack(">q", v)


def mp(o):
    if o is None:
        return b"\xc0"
    if o is True:
        return b"\xc3"
    if o is False:
        return b"\xc2"
    if isinstance(o, int):
        return mp_int(o)
    if isinstance(o, (str, bytes)):
        return mp_str(o)
    if isinstance(o, list):
        assert len(o) < 16
        return bytes([0x90 | len(o)]) + b"".join(mp(x) for x in o)
    if isinstance(o, dict):
        assert len(o) < 16
        return bytes([0x80 | len(o)]) + b"".join(mp(k) + mp(v) for k, v in o.items())
    raise TypeError(o)


def msgpack_seeds(out, tool):
    """Wire frames made with the project's own encoder when available
    (quotebus tests write the worked examples of PROTOCOL.md), else by the
    generic msgpack writer above following PROTOCOL.md's field names."""
    base = {"v": 1, "ex": "binance", "sym": "BTC-USDT", "nsym": "BTCUSDT", "ets": 1, "rts": 2}
    snap = dict(base, type="snapshot", seq=1, fid=0, lid=100,
                bids=[[10010, 2, 15, 1]], asks=[[10020, 2, 7, 1]], refresh=False)
    delta = dict(base, type="delta", seq=2, fid=101, lid=101, bids=[[10010, 2, 0, 0]],
                 asks=[])
    trade = dict(base, type="trade", seq=1, tid=7, px=[10015, 2], qty=[1, 2], side="buy")
    status = dict(base, type="status", seq=1, state="live", reason="")
    t = b"book.binance.BTC-USDT\0"
    write(out, "msgpack", "snapshot", t + mp(snap))
    write(out, "msgpack", "snapshot_delta", t + mp(snap) + mp(delta))
    write(out, "msgpack", "trade", b"trade.binance.BTC-USDT\0" + mp(trade))
    write(out, "msgpack", "status", b"status.binance.BTC-USDT\0" + mp(status))
    write(out, "msgpack", "wrong_topic", b"book.htx.BTC-USDT\0" + mp(snap))
    write(out, "msgpack", "bad_version", t + mp(dict(snap, v=99)))
    write(out, "msgpack", "no_nul", b"book.binance.BTC-USDT")
    write(out, "msgpack", "garbage", t + b"\xc1\xff\x00\x91\x92")
    write(out, "msgpack", "deep", t + b"\x91" * 2000 + b"\xc0")
    write(out, "msgpack", "huge_len", t + b"\xdd\xff\xff\xff\xff")


# ---------------------------------------------------------------- config
def config(out):
    write(out, "config", "all_types", j({"ws-url": "wss://x/stream", "depth-limit": 500,
                                         "no-tickers": True, "symbols": ["BTC-USDT", "ETH-USDT"],
                                         "adapter-arg": ["--a", "b,c"], "log-level": "debug"}))
    write(out, "config", "csv_list", j({"symbols": "A-B,,C-D,", "no-tickers": "false"}))
    write(out, "config", "unknown_key", j({"nope": 1}))
    write(out, "config", "wrong_types", j({"depth-limit": "x", "ws-url": 5}))
    write(out, "config", "escapes", b'{"ws-url":"\\u00e9\\ud83d\\ude00\\n","log-level":"\\u0000"}')
    write(out, "config", "int_overflow", b'{"depth-limit":99999999999999999999999}')
    write(out, "config", "not_object", b"[1,2,3]")
    write(out, "config", "nesting", b'{"symbols":' + b"[" * 1000 + b"]" * 1000 + b"}")


# ---------------------------------------------------------------- wsreq
def wsreq(out):
    write(out, "wsreq", "subscribe", recs(
        j({"op": "subscribe", "topics": ["book.binance.BTC-USDT", "trade."], "id": 1}),
        b"D", j({"op": "list", "id": "x"}), b"D",
        j({"op": "unsubscribe", "topics": ["trade."]}), b"D"))
    write(out, "wsreq", "msgpack_client", recs(
        b"B" + j({"op": "subscribe", "topics": ["book."]}), b"D", b"T", b"D"))
    write(out, "wsreq", "bad", recs(b"{", b"[]", j({"op": 5}), j({"op": "nope"}),
                                    j({"op": "subscribe", "topics": "x"}),
                                    j({"op": "subscribe", "topics": ["bad topic", "a..b", ""]}),
                                    b"D"))
    write(out, "wsreq", "too_many", recs(*[j({"op": "subscribe", "topics": ["book.x%d." % i]})
                                           for i in range(12)] + [b"D"]))
    write(out, "wsreq", "flood", recs(*[j({"op": "list"})] * 40))
    write(out, "wsreq", "http", recs(b"W/", b"W/index.html", b"W/../etc/passwd", b"W//x",
                                     b"W/.hidden", b"W/app.js?x=1", b"Ohttp://127.0.0.1:7780|"
                                     b"127.0.0.1:7780", b"Ohttp://evil|127.0.0.1",
                                     b"KBearer s3cret|", b"K|s3cret", b"Kbearer x|y"))
    base = {"v": 1, "ex": "binance", "sym": "BTC-USDT", "nsym": "BTCUSDT", "ets": 1, "rts": 2}
    snap = dict(base, type="snapshot", seq=1, fid=0, lid=100,
                bids=[[10010, 2, 15, 1]], asks=[[10020, 2, 7, 1]], refresh=False)
    delta = dict(base, type="delta", seq=2, fid=101, lid=101, bids=[[10010, 2, 0, 0]],
                 asks=[])
    t = b"book.binance.BTC-USDT\0"
    write(out, "wsreq", "frames", recs(j({"op": "subscribe", "topics": ["book."]}),
                                       b"B" + j({"op": "subscribe", "topics": ["book."]}),
                                       b"F" + t + mp(snap), b"F" + t + mp(delta), b"D",
                                       b"F" + t + mp(dict(delta, seq=5)), b"T", b"D"))


# ---------------------------------------------------------------- shared data
def shared(out, d):
    """Frames of the recorded exchange data, for fuzzing runs only."""
    sd = os.path.join(d, "samples")
    if not os.path.isdir(sd):
        return 0
    n = 0
    for name in sorted(os.listdir(sd)):
        p = os.path.join(sd, name)
        target = None
        if name.startswith("binance_") and name.endswith(".json"):
            target = "binance"
        elif name.startswith("huobi_") and name.endswith(".json"):
            target = "htx"
        elif name.startswith("huobi_") and name.endswith(".gzip.bin"):
            target = "htx"
        elif name.startswith("bithumb_") and name.endswith(".json") and "legacy" not in name:
            target = "bithumb"
        if target is None:
            continue
        with open(p, "rb") as f:
            data = f.read().rstrip(b"\r\n")
        if name.endswith(".gzip.bin"):
            data = b"G" + data
        elif "snapshot" in name and target == "binance":
            data = b"S" + data
        write(out, target, "shared-" + name, data)
        n += 1
    return n


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    out = sys.argv[1]
    binance(out)
    htx(out)
    bithumb(out)
    msgpack_seeds(out, None)
    config(out)
    wsreq(out)
    if "--shared" in sys.argv:
        n = shared(out, sys.argv[sys.argv.index("--shared") + 1])
        print("make-seeds: %d shared frames added to %s (not for the repository)" % (n, out))
