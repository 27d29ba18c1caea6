"""qbtest: the harness of quotebus's multi-process integration tests.

Each test starts real processes (quotebus-exsim, quotebus-adapter,
quotebus-broker, quotebus-sub) on loopback, with a private temporary
directory for ipc sockets, certificates, logs and stats files, and an
ephemeral TCP port for the simulator. Everything is torn down on exit,
on failure and on SIGTERM (Stack.close). Standard library only; runs with
Debian's /usr/bin/python3.

Books are rebuilt from quotebus-sub's JSON lines exactly as the protocol
says a subscriber must (proto/PROTOCOL.md): a snapshot replaces the book and
rebases the sequence; a delta applies only when its seq is the previous +1;
after a gap the book is invalid until the next snapshot. Decimal strings are
compared with decimal.Decimal, never floats.
"""
import argparse
import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))

# quotebus-exsim serves every exchange on one port, each on its own path:
# adapters get the simulator's address (--exsim URL) and know their path.


def fail(msg):
    print("FAIL: " + msg, flush=True)
    raise SystemExit(1)


def skip(msg):
    print("SKIP: " + msg, flush=True)
    raise SystemExit(77)


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    return ap.parse_args()


def free_port():
    """A tcp port on 127.0.0.1 that was free a moment ago."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout, what, interval=0.05):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    fail("timed out after %ss waiting for %s" % (timeout, what))


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Proc:
    def __init__(self, name, argv, tmp, env=None):
        self.name = name
        self.argv = argv
        self.out_path = os.path.join(tmp, name + ".out")
        self.err_path = os.path.join(tmp, name + ".err")
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        e = dict(os.environ)
        if env:
            e.update(env)
        self.p = subprocess.Popen(argv, stdout=self.out, stderr=self.err, env=e,
                                  start_new_session=True)

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout=10):
        """SIGTERM, then SIGKILL; returns the exit code."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.p.wait(5)
        self.out.close()
        self.err.close()
        return self.p.returncode

    def kill9(self):
        self.signal(signal.SIGKILL)
        self.p.wait(5)

    def stderr_text(self):
        if not self.err.closed:
            self.err.flush()
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


class Stack:
    """A test's processes and temp dir. Use as a context manager."""

    def __init__(self, args, name):
        self.bin = os.path.abspath(args.bin_dir)
        self.keep = args.keep
        self.tmp = tempfile.mkdtemp(prefix="qb-%s-" % name)
        self.procs = []
        self.closed = False
        for b in ("quotebus-exsim", "quotebus-adapter", "quotebus-broker", "quotebus-sub"):
            if not os.access(os.path.join(self.bin, b), os.X_OK):
                fail("%s not built in %s" % (b, self.bin))
        atexit.register(self.close)
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
        self.ca = None
        self.ingest = "ipc://%s/ingest.ipc" % self.tmp
        self.pub = "ipc://%s/pub.ipc" % self.tmp
        log("temp dir %s" % self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is not None and et is not SystemExit or (et is SystemExit and ev.code not in (0, None)):
            self.dump_logs()
        self.close()
        return False

    def path(self, name):
        return os.path.join(self.tmp, name)

    def start(self, name, argv, env=None):
        p = Proc(name, argv, self.tmp, env)
        self.procs.append(p)
        return p

    def tls(self):
        if self.ca is None:
            d = self.path("certs")
            os.makedirs(d)
            subprocess.run([os.path.join(HERE, "gen-test-ca.sh"), d], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.ca = (os.path.join(d, "ca.pem"), os.path.join(d, "server.pem"),
                       os.path.join(d, "server.key"))
        return self.ca

    def exsim(self, extra=(), tls=True, name="exsim"):
        port_file = self.path(name + ".port")
        argv = [os.path.join(self.bin, "quotebus-exsim"), "--host", "127.0.0.1", "--port", "0",
                "--port-file", port_file, "--stats-file", self.path(name + ".stats"),
                "--dump", self.path(name + ".dump")]
        if tls:
            ca, cert, key = self.tls()
            argv += ["--tls-cert", cert, "--tls-key", key]
        argv += list(extra)
        p = self.start(name, argv)

        def ready():
            try:
                with open(port_file) as f:
                    t = f.read().strip()
                return int(t) if t else None
            except (OSError, ValueError):
                if not p.alive():
                    fail("exsim exited early:\n" + p.stderr_text())
                return None
        p.port = wait_for(ready, 20, "exsim port file")
        scheme = ("wss", "https") if tls else ("ws", "http")
        p.exsim_url = "%s://127.0.0.1:%d" % (scheme[0], p.port)  # adapter --exsim
        p.ws_url = p.exsim_url + "/stream"  # Binance's, for clients of the simulator itself
        p.rest_url = "%s://127.0.0.1:%d" % (scheme[1], p.port)
        p.dump_path = self.path(name + ".dump")
        p.stats_path = self.path(name + ".stats")
        return p

    def broker(self, extra=(), name="broker"):
        extra = list(extra)
        # Keep test brokers off the machine-wide default ports (HTTP 7780,
        # snapshot tcp 7782) so tests run in parallel; tests that need them
        # pass their own addresses.
        if "--snapshot" not in extra:
            extra += ["--snapshot", "ipc://%s/%s-snapshot.ipc" % (self.tmp, name)]
        if "--http-listen" not in extra:
            extra += ["--http-listen", "off"]
        argv = [os.path.join(self.bin, "quotebus-broker"), "--no-spawn",
                "--ingest", self.ingest, "--pub", self.pub,
                "--stats-file", self.path(name + ".stats")] + list(extra)
        p = self.start(name, argv)
        p.stats_path = self.path(name + ".stats")
        wait_for(lambda: os.path.exists(self.pub[len("ipc://"):]) or not p.alive(), 10,
                 "broker pub socket")
        if not p.alive():
            fail("broker exited early:\n" + p.stderr_text())
        return p

    def adapter(self, exsim, symbols, extra=(), exchange="binance", name="adapter"):
        argv = [os.path.join(self.bin, "quotebus-adapter"), exchange,
                "--symbols", ",".join(symbols)]
        if hasattr(exsim, "exsim_url"):
            argv += ["--exsim", exsim.exsim_url]
        else:  # another server: its one URL (and REST on it)
            argv += ["--ws-url", exsim.ws_url, "--rest-url", exsim.rest_url]
        argv += ["--broker", self.ingest, "--stats-file", self.path(name + ".stats")]
        if self.ca is not None and exsim.ws_url.startswith("wss"):
            argv += ["--ca-file", self.ca[0]]
        argv += list(extra)
        p = self.start(name, argv)
        p.stats_path = self.path(name + ".stats")
        return p

    def sub(self, topics, extra=(), name="sub"):
        argv = [os.path.join(self.bin, "quotebus-sub"), "--connect", self.pub] + list(extra) + \
            list(topics)
        p = self.start(name, argv)
        return p

    def dump_logs(self):
        for p in self.procs:
            try:
                txt = p.stderr_text()
            except OSError:
                continue
            tail = "\n".join(txt.splitlines()[-40:])
            print("---- %s stderr (last 40 lines) ----\n%s" % (p.name, tail), flush=True)

    def close(self):
        if self.closed:
            return
        self.closed = True
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception:
                pass
        if self.keep:
            log("kept %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


class Book:
    """A subscriber's book kept from the stream (PROTOCOL.md sections 6 and
    11.4): valid from a snapshot on, deltas in sequence, anything else
    invalidates until the next snapshot. With the publisher-restart rules
    of 11.4 (7 and 8): on one publisher's stream a book's seq never goes
    back (a refresh repeats it), so a message below the last seq seen on the
    stream, or a delta equal to it, is a restarted adapter or broker
    numbering anew: counted (restarts) and the book invalid until the next
    snapshot (which may be that message), never a "duplicate" dropped while
    the new stream's deltas catch up with the old seq and get applied to the
    old book. reconnected() is rule 8 for a caller that knows the
    subscriber reconnected to a new broker."""

    def __init__(self):
        self.bids = {}
        self.asks = {}
        self.valid = False
        self.seq = None
        self.stream_seq = None  # last seq seen on the stream (rule 7)
        self.lid = None
        self.snapshots = 0
        self.deltas = 0
        self.gaps = 0
        self.restarts = 0
        self.reconnects = 0

    def reconnected(self):
        """The subscriber reconnected (the broker may be a new process with
        new seqs): invalid until the next snapshot, stream seq forgotten."""
        self.reconnects += 1
        self.valid = False
        self.seq = None
        self.stream_seq = None

    @staticmethod
    def _apply(side, levels):
        for p, q in levels:
            pd, qd = Decimal(p), Decimal(q)
            if qd < 0 or pd <= 0:
                raise ValueError("bad level %s %s" % (p, q))
            if qd == 0:
                side.pop(pd, None)
            else:
                side[pd] = qd

    def on(self, m):
        t = m["type"]
        if t in ("snapshot", "delta"):
            last, seq = self.stream_seq, m["seq"]
            self.stream_seq = seq
            if last is not None and (seq < last or (t == "delta" and seq == last)):
                self.restarts += 1  # a restarted publisher: the old book is void
                self.valid = False
                self.seq = None
        if t == "snapshot":
            self.bids, self.asks = {}, {}
            self._apply(self.bids, m["bids"])
            self._apply(self.asks, m["asks"])
            self.valid = True
            self.seq = m["seq"]
            self.lid = m["lid"]
            self.snapshots += 1
        elif t == "delta":
            if self.seq is not None and m["seq"] <= self.seq:
                return  # duplicate or old
            if not self.valid or m["seq"] != self.seq + 1:
                if self.valid:
                    self.gaps += 1
                self.valid = False
                self.seq = m["seq"]
                return
            self._apply(self.bids, m["bids"])
            self._apply(self.asks, m["asks"])
            self.seq = m["seq"]
            self.lid = m["lid"]
            self.deltas += 1
        if self.valid and self.bids and self.asks and max(self.bids) >= min(self.asks):
            fail("crossed book at seq %s" % self.seq)

    def levels(self):
        return (sorted(self.bids.items(), reverse=True), sorted(self.asks.items()))


class Reader:
    """Incrementally reads quotebus-sub's JSON lines and keeps the books."""

    def __init__(self, proc, multi=False):
        """multi: the subscriber sees several exchanges; books are kept only
        per (exchange, symbol) in xbooks (books, keyed by symbol alone, would
        mix two exchanges' BTC-USDT)."""
        self.proc = proc
        self.multi = multi
        self.f = open(proc.out_path, "rb")
        self.buf = b""
        self.books = {}
        self.xbooks = {}  # (exchange, symbol) -> Book, for several exchanges
        self.counts = {}
        self.last_seq = {}
        self.messages = []  # non-book messages (trade, status)

    def reconnected(self):
        """Book rule 8 (Book.reconnected) for every book: call it when the
        subscriber is known to have reconnected to a new broker (its output
        does not say so)."""
        for b in list(self.books.values()) + list(self.xbooks.values()):
            b.reconnected()

    def poll(self):
        self.proc.out.flush()
        data = self.f.read()
        if not data:
            return
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for ln in lines:
            if not ln.strip():
                continue
            m = json.loads(ln)
            t = m["type"]
            self.counts[t] = self.counts.get(t, 0) + 1
            if t in ("snapshot", "delta"):
                if not self.multi:
                    self.books.setdefault(m["sym"], Book()).on(m)
                self.xbooks.setdefault((m.get("ex"), m["sym"]), Book()).on(m)
            else:
                self.messages.append(m)


def dump_books(path):
    """Reads quotebus-exsim's --dump file: {native symbol: (lid, bids, asks)}."""
    out = {}
    try:
        with open(path) as f:
            for ln in f:
                if ln.strip():
                    d = json.loads(ln)
                    bids = [(Decimal(p), Decimal(q)) for p, q in d["bids"]]
                    asks = [(Decimal(p), Decimal(q)) for p, q in d["asks"]]
                    out[d["symbol"]] = (d["lastUpdateId"], bids, asks, d)
    except (OSError, ValueError):
        return None
    return out


def native(sym):
    return sym.replace("-", "")


def wait_books_exact(readers, dump_path, symbols, timeout=90, heal_bound=None):
    """Waits until the simulator has written its final books and every reader
    holds exactly those books (valid, same last update id, same levels).
    With heal_bound, the readers must hold them within heal_bound seconds of
    the simulator writing its dump (the protocol's healing bound, plus slack
    for a loaded machine)."""
    dump = wait_for(lambda: dump_books(dump_path) if os.path.exists(dump_path) else None,
                    timeout, "simulator dump")
    if heal_bound is not None:
        timeout = heal_bound
    for s in symbols:
        if native(s) not in dump:
            fail("simulator dump lacks %s: %s" % (native(s), list(dump)))

    def all_match():
        for r in readers:
            r.poll()
            for s in symbols:
                b = r.books.get(s)
                lid = dump[native(s)][0]
                if b is None or not b.valid or b.lid != lid:
                    return False
        return True

    deadline = time.time() + timeout
    while time.time() < deadline and not all_match():
        time.sleep(0.1)
    for r in readers:
        for s in symbols:
            b = r.books.get(s)
            lid, bids, asks, _ = dump[native(s)]
            if b is None:
                fail("%s: no book for %s" % (r.proc.name, s))
            if not b.valid or b.lid != lid:
                fail("%s: book %s not at the final update id: valid=%s lid=%s want %s" %
                     (r.proc.name, s, b.valid, b.lid, lid))
            gb, ga = b.levels()
            if gb != bids or ga != asks:
                diff = [x for x in zip(gb, bids) if x[0] != x[1]][:3]
                fail("%s: book %s differs from the simulator (bids %d vs %d, asks %d vs %d) %s" %
                     (r.proc.name, s, len(gb), len(bids), len(ga), len(asks), diff))
    return dump


def stats(path):
    return read_json(path) or {}


# ---- several exchanges (quotebus-exsim --exchange binance,htx,bithumb) ----

def native_for(exchange, sym):
    """Normalized BTC-USDT -> the exchange's native symbol as the simulator
    names it: binance BTCUSDT, htx btcusdt, bithumb KRW-BTC (quote-base)."""
    base, quote = sym.split("-")
    if exchange == "htx":
        return (base + quote).lower()
    if exchange == "bithumb":
        return quote + "-" + base
    return base + quote


def dump_books_ex(path, exchange):
    """quotebus-exsim's --dump lines of one exchange: {native: dump line}, with
    "bids"/"asks" as lists of (Decimal, Decimal)."""
    out = {}
    try:
        with open(path) as f:
            for ln in f:
                if ln.strip():
                    d = json.loads(ln)
                    if d.get("exchange", "binance") != exchange:
                        continue
                    d["bids"] = [(Decimal(p), Decimal(q)) for p, q in d["bids"]]
                    d["asks"] = [(Decimal(p), Decimal(q)) for p, q in d["asks"]]
                    out[d["symbol"]] = d
    except (OSError, ValueError):
        return None
    return out


def wait_books_exact_ex(readers, dump_path, exchange, symbols, timeout=90, depth=None,
                        check_lid=True):
    """Like wait_books_exact, per exchange: waits until the simulator's dump
    has every symbol of exchange and every reader holds exactly that book
    (valid, same levels, and with check_lid the same last update id: HTX
    seqNum, Bithumb the last orderbook message's timestamp, Binance
    lastUpdateId). depth: compare with the dump's top depth levels only (HTX
    mbp.5/mbp.20 feeds, whose ids only move when the top N changes)."""
    def want_id(d):
        return d["time_ms"] if exchange == "bithumb" else d["lastUpdateId"]

    def dump_ready():
        d = dump_books_ex(dump_path, exchange) if os.path.exists(dump_path) else None
        if d and all(native_for(exchange, s) in d for s in symbols):
            return d
        return None
    dump = wait_for(dump_ready, timeout, "simulator dump with %s %s" % (exchange, symbols))
    if depth is not None:
        for d in dump.values():
            d["bids"], d["asks"] = d["bids"][:depth], d["asks"][:depth]

    def match(r, s):
        b = r.xbooks.get((exchange, s))
        d = dump[native_for(exchange, s)]
        return b is not None and b.valid and (not check_lid or b.lid == want_id(d)) and \
            b.levels() == (d["bids"], d["asks"])

    deadline = time.time() + timeout
    while time.time() < deadline:
        for r in readers:
            r.poll()
        if all(match(r, s) for r in readers for s in symbols):
            return dump
        time.sleep(0.1)
    for r in readers:
        for s in symbols:
            b = r.xbooks.get((exchange, s))
            d = dump[native_for(exchange, s)]
            if b is None:
                fail("%s: no %s book for %s" % (r.proc.name, exchange, s))
            gb, ga = b.levels()
            if not b.valid or (check_lid and b.lid != want_id(d)):
                fail("%s: %s %s not at the final update: valid=%s lid=%s want %s "
                     "(levels equal: %s)" % (r.proc.name, exchange, s, b.valid, b.lid,
                                            want_id(d), (gb, ga) == (d["bids"], d["asks"])))
            if (gb, ga) != (d["bids"], d["asks"]):
                diff = [x for x in zip(gb, d["bids"]) if x[0] != x[1]][:3]
                fail("%s: %s %s differs from the simulator (bids %d vs %d, asks %d vs %d) %s" %
                     (r.proc.name, exchange, s, len(gb), len(d["bids"]), len(ga),
                      len(d["asks"]), diff))
    return dump


def cases_of(namespace):
    """The cases of a test script: its functions named case_NAME, by NAME."""
    return {k[5:]: v for k, v in namespace.items() if k.startswith("case_")}


def print_cases(cases):
    """--list-cases: the case names, one a line, in the script's order. The
    tests' CMakeLists.txt read them at configure time (one CTest test per
    case), so a new case_NAME needs no CMake line."""
    for name in cases:
        print(name)


def run_case_main(cases, prefix, before=None):
    """The command line of every case script: --bin-dir DIR --case NAME
    [--keep], or --list-cases (print_cases); calls before(args) if given
    (a script's own prerequisites), runs cases[NAME](stack) in a Stack
    named PREFIX-NAME (NAME alone when prefix is empty) and logs PASS with
    the time it took."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir")
    ap.add_argument("--case", choices=sorted(cases))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--list-cases", action="store_true",
                    help="print the case names, one a line, and exit")
    args = ap.parse_args()
    if args.list_cases:
        print_cases(cases)
        return
    if args.bin_dir is None or args.case is None:
        ap.error("--bin-dir and --case are required")
    if before is not None:
        before(args)
    t0 = time.time()
    with Stack(args, (prefix + "-" if prefix else "") + args.case) as st:
        cases[args.case](st)
    log("PASS %s (%.1f s)" % (args.case, time.time() - t0))
