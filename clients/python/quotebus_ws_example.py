#!/usr/bin/env python3
"""Watch quotebus order books over the broker's websocket, with asyncio.

This is the natural quotebus client for people who know Python's asyncio.
It needs only the `websockets` package (Debian: apt install python3-websockets;
pip: pip install websockets) and the standard library.

What it does:

  1. connects to the broker's websocket (ws://127.0.0.1:7780/ws by default),
  2. sends {"op": "subscribe", "topics": [...]} for the book topics you name,
  3. keeps each order book exactly, following the sequence rules of
     proto/PROTOCOL.md (section 6):
       - a "snapshot" replaces the whole book and sets expected = seq + 1
         (whether it is a first snapshot, a periodic refresh or a "conflated"
         one sent to a client that fell behind: all are handled the same way);
       - a "delta" is applied only when its seq == expected;
       - a delta with any other seq means messages were lost: the book is
         thrown away and we wait for the next snapshot (at most ~1 s);
  4. prints the best bid and best ask after every update.

A topic that matches nothing the broker has (a misspelt exchange or symbol)
is said on stderr at once, with the nearest existing topics, from the
broker's "subscribed" reply; the program goes on waiting, since the topic
may still appear.

Prices and sizes arrive as exact decimal strings ("60036.19000000") and are
kept as decimal.Decimal, never float: a float cannot hold most decimal prices
exactly, and an order book must be exact.

Examples:
  python3 quotebus_ws_example.py
  python3 quotebus_ws_example.py --topic book.binance.ETH-USDT --count 10
  python3 quotebus_ws_example.py --topic book.binance. --json
  python3 quotebus_ws_example.py --url ws://127.0.0.1:7780/ws --token SECRET
"""
import argparse
import asyncio
import json
import sys
from decimal import Decimal

try:
    import websockets
except ImportError:
    sys.exit("quotebus_ws_example.py needs the Python package 'websockets', which this Python "
             "(%s) does not have.\nInstall it with:  apt-get install python3-websockets  "
             "(Debian/Ubuntu, for /usr/bin/python3)\n"
             "               or:  %s -m pip install websockets" % (sys.executable,
                                                                    sys.executable or "python3"))


class Book:
    """One instrument's order book, kept exactly by sequence number."""

    def __init__(self):
        self.bids = {}          # Decimal price -> Decimal size
        self.asks = {}
        self.expected = None    # seq the next delta must have; None: no book yet
        self.seq = None         # seq of the last message applied

    @property
    def valid(self):
        return self.expected is not None

    @staticmethod
    def _apply(side, levels):
        # A level is ["price", "size"]; sizes are absolute, size 0 deletes.
        for price_text, size_text in levels:
            price, size = Decimal(price_text), Decimal(size_text)
            if size == 0:
                side.pop(price, None)       # deleting an absent level is fine
            else:
                side[price] = size

    def on_message(self, msg):
        """Applies one "snapshot" or "delta" message. Returns True when the
        book changed and is valid, False otherwise."""
        if msg["type"] == "snapshot":
            # Any snapshot (first, refresh, conflated) replaces the book.
            self.bids, self.asks = {}, {}
            self._apply(self.bids, msg["bids"])
            self._apply(self.asks, msg["asks"])
            self.seq = msg["seq"]
            self.expected = msg["seq"] + 1
            return True
        if msg["type"] == "delta":
            if self.expected is None:
                return False                # no book yet: wait for a snapshot
            if msg["seq"] != self.expected:
                print("%s: sequence gap (expected %d, got %d): waiting for the next snapshot"
                      % (msg["topic"], self.expected, msg["seq"]), file=sys.stderr)
                self.bids, self.asks = {}, {}
                self.expected = None
                return False
            self._apply(self.bids, msg["bids"])
            self._apply(self.asks, msg["asks"])
            self.seq = msg["seq"]
            self.expected += 1
            return True
        return False

    def best_bid(self):
        """(price, size) of the highest bid, or (None, None)."""
        if not self.bids:
            return None, None
        price = max(self.bids)
        return price, self.bids[price]

    def best_ask(self):
        """(price, size) of the lowest ask, or (None, None)."""
        if not self.asks:
            return None, None
        price = min(self.asks)
        return price, self.asks[price]


def text(d):
    """Decimal -> its exact text (str keeps the exchange's digits), or None."""
    return None if d is None else str(d)


def say_subscribed(msg):
    """Tells the user about requested topics that match nothing the broker
    has now: the "subscribed" reply lists them as "unmatched", with up to 5
    "nearest" existing topics (PROTOCOL.md section 12)."""
    unmatched = msg.get("unmatched") or []
    if unmatched:
        nearest = msg.get("nearest") or []
        print("no match for %s at the broker; nearest: %s" %
              (", ".join(unmatched), ", ".join(nearest) if nearest else "(none)"),
              file=sys.stderr, flush=True)


def print_top(topic, book, as_json):
    bid, bid_qty = book.best_bid()
    ask, ask_qty = book.best_ask()
    if as_json:
        print(json.dumps({"topic": topic, "seq": book.seq,
                          "bid": text(bid), "bid_qty": text(bid_qty),
                          "ask": text(ask), "ask_qty": text(ask_qty)}), flush=True)
    else:
        spread = ask - bid if bid is not None and ask is not None else None
        print("%s seq=%d  bid %s x %s  |  ask %s x %s  |  spread %s"
              % (topic, book.seq, bid, bid_qty, ask, ask_qty, spread), flush=True)


async def watch(args):
    """Connects, subscribes and prints until --count lines were printed.
    Reconnects (with a growing pause) when the connection drops."""
    books = {}          # topic -> Book
    printed = 0
    pause = 0.5
    headers = {"Authorization": "Bearer " + args.token} if args.token else None
    while True:
        try:
            async with websockets.connect(args.url, subprotocols=["quotebus.json.v1"],
                                          extra_headers=headers,
                                          max_size=16 * 1024 * 1024) as ws:
                await ws.send(json.dumps({"op": "subscribe", "topics": args.topic, "id": 1}))
                pause = 0.5
                books.clear()          # a new connection starts from new snapshots
                async for raw in ws:
                    msg = json.loads(raw)
                    kind = msg.get("type")
                    if kind == "error":
                        print("broker error %s: %s" % (msg.get("code"), msg.get("message")),
                              file=sys.stderr)
                        continue
                    if kind == "subscribed":
                        say_subscribed(msg)
                        continue
                    if kind not in ("snapshot", "delta"):
                        continue       # acks ("subscribed"), trades, status, ...
                    book = books.setdefault(msg["topic"], Book())
                    if book.on_message(msg):
                        print_top(msg["topic"], book, args.json)
                        printed += 1
                        if args.count and printed >= args.count:
                            return 0
        except (OSError, websockets.exceptions.WebSocketException) as e:
            # OSError: refused/reset; WebSocketException: closed, bad handshake, ...
            if args.no_retry:
                print("connection to %s failed (%s)" % (args.url, e), file=sys.stderr)
                return 1
            print("connection to %s lost (%s); retrying in %.1f s" % (args.url, e, pause),
                  file=sys.stderr)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 10.0)


def main():
    ap = argparse.ArgumentParser(
        description="Print the best bid and ask of quotebus order books, kept exactly "
                    "from the broker's websocket.")
    ap.add_argument("--url", default="ws://127.0.0.1:7780/ws",
                    help="broker websocket URL (default %(default)s)")
    ap.add_argument("--topic", action="append",
                    help="book topic, exact (book.binance.BTC-USDT) or a prefix ending in '.' "
                         "(book.binance.); repeatable (default book.binance.BTC-USDT)")
    ap.add_argument("--count", type=int, default=0,
                    help="stop after printing this many updates (default 0: run until Ctrl-C)")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object per update: topic, seq, bid, bid_qty, ask, "
                         "ask_qty (decimal strings)")
    ap.add_argument("--token", help="bearer token, when the broker requires one")
    ap.add_argument("--no-retry", action="store_true",
                    help="exit with status 1 instead of reconnecting when the connection fails")
    args = ap.parse_args()
    args.topic = args.topic or ["book.binance.BTC-USDT"]
    try:
        return asyncio.run(watch(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
