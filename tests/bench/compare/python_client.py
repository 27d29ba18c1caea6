#!/usr/bin/python3
"""python_client.py: the usual hand-written Binance order book client
(docs/BENCHMARKS.md section 6), as users write it: asyncio + python3-websockets (Debian 10.4),
urllib for the REST snapshot, json.loads per message, the book in two dicts
keyed by price string, Binance's documented procedure:

  1. open wss://HOST/ws/<sym>@depth@100ms and buffer the events;
  2. GET /api/v3/depth?symbol=SYM&limit=1000;
  3. drop buffered events with u <= lastUpdateId;
  4. the first applied event has U <= lastUpdateId + 1 <= u;
  5. afterwards every event has U == previous u + 1, else start again at 2.

Measurement: after --warmup seconds of applied events, messages received and
process CPU (time.process_time(): user + system of this process) over
--seconds. Then it keeps applying until the feed has been idle --idle
seconds (the simulator stopped at --events), writes the final book to
--book-out (JSON: lastUpdateId, bids and asks best first as [price, size]
strings) and prints one JSON result line on stdout.

Run with /usr/bin/python3 (Debian's python3-websockets), e.g.
  /usr/bin/python3 python_client.py --ws wss://127.0.0.1:7790 \\
      --rest https://127.0.0.1:7790 --ca ca.pem --symbol BTCUSDT
"""
import argparse
import asyncio
import json
import ssl
import sys
import time
import urllib.request

import websockets


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ws", required=True, help="websocket base, e.g. wss://127.0.0.1:7790")
    ap.add_argument("--rest", required=True, help="REST base, e.g. https://127.0.0.1:7790")
    ap.add_argument("--ca", help="CA certificate to trust (PEM)")
    ap.add_argument("--symbol", default="BTCUSDT")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--idle", type=float, default=3.0,
                    help="end after the feed was idle this long (after the window)")
    ap.add_argument("--max-run", type=float, default=300.0, help="hard stop after this long")
    ap.add_argument("--book-out", help="write the final book here (JSON)")
    return ap.parse_args()


class Book:
    def __init__(self):
        self.bids = {}
        self.asks = {}
        self.last_id = None

    def load(self, snap):
        self.bids = {p: q for p, q in snap["bids"]}
        self.asks = {p: q for p, q in snap["asks"]}
        self.last_id = snap["lastUpdateId"]

    @staticmethod
    def _apply(side, levels):
        for p, q in levels:
            if float(q) == 0.0:
                side.pop(p, None)
            else:
                side[p] = q

    def apply(self, ev):
        self._apply(self.bids, ev["b"])
        self._apply(self.asks, ev["a"])
        self.last_id = ev["u"]

    def dump(self):
        bids = sorted(self.bids.items(), key=lambda kv: float(kv[0]), reverse=True)
        asks = sorted(self.asks.items(), key=lambda kv: float(kv[0]))
        return {"lastUpdateId": self.last_id, "bids": [list(x) for x in bids],
                "asks": [list(x) for x in asks]}


def fetch_snapshot(rest, symbol, ctx):
    url = "%s/api/v3/depth?symbol=%s&limit=1000" % (rest, symbol)
    with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
        return json.loads(r.read())


async def main():
    a = parse_args()
    ctx = ssl.create_default_context(cafile=a.ca) if a.ca else ssl.create_default_context()
    url = "%s/ws/%s@depth@100ms" % (a.ws, a.symbol.lower())
    ws_ssl = ctx if url.startswith("wss") else None
    rest_ctx = ctx if a.rest.startswith("https") else None
    book = Book()
    synced = False
    have_snap = False   # a snapshot is loaded, waiting for the bridging event
    buffered = []
    snap_task = None
    msgs = 0            # depth messages received
    applied = 0
    resyncs = 0
    t_first = None      # first applied event (monotonic)
    win = None          # (t0, cpu0, msgs0)
    result = None
    last_rx = time.monotonic()
    t_start = time.monotonic()
    loop = asyncio.get_running_loop()
    async with websockets.connect(url, ssl=ws_ssl, max_size=None) as ws:
        while True:
            now = time.monotonic()
            if now - t_start > a.max_run:
                break
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except asyncio.TimeoutError:
                raw = None
            now = time.monotonic()
            if raw is not None:
                last_rx = now
                ev = json.loads(raw)
                if ev.get("e") != "depthUpdate":
                    continue
                msgs += 1
                if not synced:
                    if not have_snap:
                        buffered.append(ev)
                        if snap_task is None:
                            snap_task = loop.run_in_executor(None, fetch_snapshot, a.rest,
                                                             a.symbol, rest_ctx)
                        if not snap_task.done():
                            continue
                        book.load(snap_task.result())
                        snap_task = None
                        have_snap = True
                        pending, buffered = buffered, []
                    else:
                        pending = [ev]
                    for e in pending:
                        if synced:
                            if e["U"] != book.last_id + 1:
                                resyncs += 1
                                synced = have_snap = False
                                break
                            book.apply(e)
                            applied += 1
                        elif e["u"] <= book.last_id:
                            continue
                        elif e["U"] <= book.last_id + 1 <= e["u"]:
                            book.apply(e)
                            applied += 1
                            synced = True
                        else:
                            resyncs += 1        # snapshot older than the stream: again
                            have_snap = False
                            break
                    if synced and t_first is None:
                        t_first = now
                    continue
                if ev["u"] <= book.last_id:
                    continue
                if ev["U"] != book.last_id + 1:
                    resyncs += 1
                    synced = have_snap = False
                    buffered = [ev]
                    continue
                book.apply(ev)
                applied += 1
            if t_first is not None:
                if win is None and now - t_first >= a.warmup:
                    win = (now, time.process_time(), msgs)
                elif win is not None and result is None and now - win[0] >= a.seconds:
                    dt = now - win[0]
                    cpu = time.process_time() - win[1]
                    n = msgs - win[2]
                    result = {"client": "python", "msgs": n, "secs": round(dt, 3),
                              "cpu_secs": round(cpu, 3), "msgs_per_s": n / dt,
                              "cpu_per_s": cpu / dt, "msgs_per_cpu_s": n / cpu if cpu > 0 else 0}
                elif result is not None and now - last_rx >= a.idle:
                    break
    if result is None:
        result = {"client": "python", "error": "window not completed", "msgs": msgs}
    result.update({"applied_total": applied, "msgs_total": msgs, "resyncs": resyncs,
                   "last_update_id": book.last_id})
    if a.book_out:
        with open(a.book_out, "w") as f:
            json.dump(book.dump(), f)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
