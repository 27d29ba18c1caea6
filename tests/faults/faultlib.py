"""faultlib: helpers of the fault suite (tests/faults/) and the soak test
(tests/soak/), on top of the integration harness tests/integration/qbtest.py.

Everything here drives real processes: the broker with or without its
supervisor, standalone adapters, subscribers, the simulator, a rogue
publisher, and raw websocket clients (stdlib sockets: the handshake and
masked client frames of RFC 6455, nothing else, so a client can stop
reading at will). Memory is read from /proc/PID/status (VmRSS).
"""
import base64
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import qbtest  # noqa: E402
from qbtest import fail, log, skip, stats, wait_for  # noqa: E402,F401

_help_cache = {}


# qbtest.Book applies the publisher-restart rules (PROTOCOL.md 11.4, rules 7
# and 8) that the fault suite's kills of adapters and brokers need.


def bin_help(bin_dir, name):
    key = (bin_dir, name)
    if key not in _help_cache:
        try:
            r = subprocess.run([os.path.join(bin_dir, name), "--help"], capture_output=True,
                               text=True, timeout=20)
            _help_cache[key] = r.stdout + r.stderr
        except (OSError, subprocess.TimeoutExpired):
            _help_cache[key] = ""
    return _help_cache[key]


def broker_has(bin_dir, opt):
    return ("--%s " % opt) in bin_help(bin_dir, "quotebus-broker")


def broker_isolation(bin_dir):
    """Options that keep a test broker off the machine-wide default ports
    (snapshot service tcp 7782, HTTP 7780), so tests can run in parallel."""
    x = []
    if broker_has(bin_dir, "snapshot"):
        x += ["--snapshot", "off"]
    if broker_has(bin_dir, "http-listen"):
        x += ["--http-listen", "off"]
    return x


free_port = qbtest.free_port


def asan_build(bin_dir):
    """True when the binaries are built with AddressSanitizer."""
    try:
        with open(os.path.join(bin_dir, "quotebus-broker"), "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def cap_asan_quarantine(bin_dir):
    """ASan keeps freed memory in a quarantine of up to 256 MB, which reads
    as RSS growth in any program that allocates and frees (measured: +199 MB
    for the broker in slow_sub_nng). Cap it at 4 MB for the processes a
    test starts (they inherit the environment), so RSS bounds measure the
    program, not the sanitizer: the cap must stay below the tests' 8 MB
    "still growing" bound (a 16 MB cap, filling up late in a run, once read
    as 9.6 MB of growth in slow_sub_ws). Returns True for an ASan build."""
    if not asan_build(bin_dir):
        return False
    opts = os.environ.get("ASAN_OPTIONS", "")
    if "quarantine_size_mb" not in opts:
        os.environ["ASAN_OPTIONS"] = (opts + ":quarantine_size_mb=4:"
                                      "thread_local_quarantine_size_kb=64").lstrip(":")
    return True


# ---------------------------------------------------------------- processes

def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
    except (OSError, ValueError):
        pass
    return None


def children(pid):
    """Direct children of pid (every thread's children list)."""
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    out += [int(x) for x in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return sorted(set(out))


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


def adapter_pids(broker_pid):
    return [c for c in children(broker_pid)
            if any(a.endswith(b"quotebus-adapter") for a in cmdline(c)[:1])]


class RssSampler:
    """Samples the VmRSS of named pids (a callable returning {name: pid})
    every interval seconds in a thread: samples[name] = [(t, kb), ...]."""

    def __init__(self, pids_fn, interval=0.5):
        self.pids_fn = pids_fn
        self.interval = interval
        self.samples = {}
        self.t0 = time.time()
        self._stop = threading.Event()
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        while not self._stop.is_set():
            t = time.time() - self.t0
            for name, pid in self.pids_fn().items():
                if pid:
                    kb = rss_kb(pid)
                    if kb is not None:
                        self.samples.setdefault(name, []).append((t, kb))
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self.th.join(5)

    def window(self, name, t_from, t_to=None):
        return [kb for t, kb in self.samples.get(name, [])
                if t >= t_from and (t_to is None or t <= t_to)]


# ---------------------------------------------------------------- stacks

def supervised_broker(st, sim, exchange, symbols, name="broker", extra=(), adapter_extra=()):
    """quotebus-broker WITH its supervisor: it starts (and restarts) the
    adapter itself, pointed at the simulator through --adapter-arg. The
    adapter writes st.path(name + "-adapter.stats")."""
    args = ["--exsim", sim.exsim_url]
    if st.ca is not None:
        args += ["--ca-file", st.ca[0]]
    args += ["--stats-file", st.path(name + "-adapter.stats")] + list(adapter_extra)
    argv = [os.path.join(st.bin, "quotebus-broker"),
            "--adapter", "%s:%s" % (exchange, ",".join(symbols)),
            "--ingest", st.ingest, "--pub", st.pub,
            "--stats-file", st.path(name + ".stats")]
    for a in args:
        argv.append("--adapter-arg=" + a)
    argv += broker_isolation(st.bin) + list(extra)
    p = st.start(name, argv)
    p.stats_path = st.path(name + ".stats")
    p.adapter_stats_path = st.path(name + "-adapter.stats")
    wait_for(lambda: os.path.exists(st.pub[len("ipc://"):]) or not p.alive(), 15,
             "broker pub socket")
    if not p.alive():
        fail("broker exited early:\n" + p.stderr_text())
    return p


def plain_broker(st, name="broker", extra=()):
    """quotebus-broker --no-spawn (qbtest's), kept off the default ports."""
    return st.broker(extra=broker_isolation(st.bin) + list(extra), name=name)


def readers_for(st, n, topics=("book.", "trade.", "status."), multi=False, prefix="sub",
                extra=()):
    rs = []
    for i in range(n):
        s = st.sub(list(topics), name="%s%d" % (prefix, i), extra=list(extra))
        rs.append(qbtest.Reader(s, multi=multi))
    return rs


def poll_until(readers, pred, timeout, what):
    def ok():
        for r in readers:
            r.poll()
        return pred()
    return wait_for(ok, timeout, what, interval=0.1)


def deltas(r):
    return sum(b.deltas for b in r.books.values()) + \
        (sum(b.deltas for b in r.xbooks.values()) if r.multi else 0)


def check_alive(*procs):
    for p in procs:
        if not p.alive():
            fail("%s died (exit %s):\n%s" % (p.name, p.p.returncode, p.stderr_text()[-4000:]))


def stop_clean(*procs):
    """SIGTERM and exit 0 (under ASan also the leak check)."""
    for p in procs:
        rc = p.stop()
        if rc != 0:
            fail("%s exited %s:\n%s" % (p.name, rc, p.stderr_text()[-4000:]))


def kill9_pid(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def statuses(r, sym=None):
    return [(m.get("sym"), m.get("state"), m.get("reason", "")) for m in r.messages
            if m.get("type") == "status" and (sym is None or m.get("sym") == sym)]


def stderr_lines(p):
    return len(p.stderr_text().splitlines())


# ---------------------------------------------------------------- raw websocket client

class RawWs:
    """A websocket client on a plain socket (RFC 6455 client side: handshake,
    masked text frames out, frames in). It reads only when told to, so a
    test can make it stop reading and let the broker's queue for it grow."""

    def __init__(self, port, path="/ws", rcvbuf=None, timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % (path, port, key))
        self.s.sendall(req.encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(4096)
            if not d:
                raise OSError("closed during the handshake")
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise OSError("handshake refused: %r" % head[:200])
        self.closed_code = None
        self.keep_payloads = False
        self.messages = 0
        self.bytes = 0

    def send_text(self, text):
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            hdr = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.s.sendall(hdr + mask + body)

    def _frames(self):
        """Parses every complete frame in self.buf (by offset: no copying
        per frame, so a Python client keeps up with thousands a second)."""
        buf, pos, out = self.buf, 0, []
        n_buf = len(buf)
        while n_buf - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7f
            off = pos + 2
            if n == 126:
                if n_buf - pos < 4:
                    break
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                off = pos + 4
            elif n == 127:
                if n_buf - pos < 10:
                    break
                n = struct.unpack_from("!Q", buf, pos + 2)[0]
                off = pos + 10
            if n_buf < off + n:
                break
            op = b0 & 0x0f
            if op in (0x8, 0x9) or self.keep_payloads:
                out.append((op, bytes(buf[off:off + n])))
            else:
                out.append((op, n))
            pos = off + n
        self.buf = buf[pos:]
        return out

    def read_for(self, seconds, on_text=None):
        """Reads (answering pings) for seconds; returns False once closed."""
        self.keep_payloads = on_text is not None
        end = time.time() + seconds
        self.s.settimeout(0.2)
        while time.time() < end:
            try:
                d = self.s.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError:
                return False
            if not d:
                return False
            self.buf += d
            for op, payload in self._frames():
                if op == 0x8:
                    self.closed_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    return False
                if op == 0x9:  # ping -> pong
                    mask = os.urandom(4)
                    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                    self.s.sendall(struct.pack("!BB", 0x8a, 0x80 | len(payload)) + mask + body)
                elif op in (0x1, 0x2, 0x0):
                    self.messages += 1
                    self.bytes += payload if isinstance(payload, int) else len(payload)
                    if on_text and op == 0x1:
                        on_text(payload)
        return True

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


# ---------------------------------------------------------------- /metrics and /health

def prom_parse(text):
    """Parses Prometheus text format 0.0.4 samples: [(name, {label: value}, value str)].
    Label values are unescaped (backslash, double quote, \\n); a line that is
    neither a comment, blank, nor a well-formed sample raises ValueError, so
    a test fails on an unescaped reason."""
    out = []
    for ln in text.split("\n"):
        if not ln or ln.startswith("#"):
            continue
        try:
            out.append(_prom_line(ln))
        except (IndexError, ValueError) as e:
            raise ValueError("bad sample line %r: %s" % (ln, e))
    return out


def _prom_line(ln):
    i = 0
    while i < len(ln) and (ln[i].isalnum() or ln[i] in "_:"):
        i += 1
    name = ln[:i]
    if not name:
        raise ValueError("no metric name")
    labels = {}
    if i < len(ln) and ln[i] == "{":
        i += 1
        while ln[i] != "}":
            j = ln.index("=", i)
            key = ln[i:j]
            if not key.replace("_", "a").isalnum() or ln[j + 1] != '"':
                raise ValueError("bad label %r" % key)
            k, val = j + 2, []
            while ln[k] != '"':
                if ln[k] == "\\":
                    esc = ln[k + 1]
                    if esc not in '\\"n':
                        raise ValueError("bad escape")
                    val.append("\n" if esc == "n" else esc)
                    k += 2
                else:
                    val.append(ln[k])
                    k += 1
            labels[key] = "".join(val)
            i = k + 1
            if ln[i] == ",":
                i += 1
            elif ln[i] != "}":
                raise ValueError("bad label list")
        i += 1
    rest = ln[i:].split()
    if len(rest) not in (1, 2) or ln[i] != " ":
        raise ValueError("bad sample value")
    float(rest[0])
    return (name, labels, rest[0])


def http_get(port, path, timeout=5):
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        return r.read().decode("utf-8")


def metrics(port, timeout=5):
    """The broker's /metrics parsed (prom_parse), or None when unreachable."""
    try:
        return prom_parse(http_get(port, "/metrics", timeout))
    except OSError:
        return None


def health(port, timeout=5):
    import json
    try:
        return json.loads(http_get(port, "/health", timeout))
    except OSError:
        return None


def inst_states(samples, exchange):
    """{symbol: (state, reason)} from quotebus_instrument_state_info."""
    return {lb["symbol"]: (lb["state"], lb.get("reason", "")) for n, lb, v in samples
            if n == "quotebus_instrument_state_info" and lb.get("exchange") == exchange}


def state_changes(samples, exchange, symbol):
    """{state: count} from quotebus_instrument_state_changes_total."""
    return {lb["state"]: int(v) for n, lb, v in samples
            if n == "quotebus_instrument_state_changes_total" and lb.get("exchange") == exchange
            and lb.get("symbol") == symbol}


class MetricsWatcher:
    """Polls the broker's /metrics (and /health) in a thread every interval
    seconds and records every distinct (symbol, state, reason) of the
    exchange's quotebus_instrument_state_info it saw, and every /health
    not_live entry: a short-lived state cannot slip between two test polls."""

    def __init__(self, port, exchange, interval=0.1):
        self.port = port
        self.exchange = exchange
        self.interval = interval
        self.seen = []          # [(t, sym, state, reason)] in order, distinct per change
        self.health_seen = []   # [(sym, state, reason)] distinct
        self.errors = []        # parse errors (ValueError text)
        self.polls = 0
        self._last = {}
        self._stop = threading.Event()
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                m = metrics(self.port)
                h = health(self.port)
            except ValueError as e:
                self.errors.append(str(e))
                m = h = None
            if m is not None:
                self.polls += 1
                for sym, sr in sorted(inst_states(m, self.exchange).items()):
                    if self._last.get(sym) != sr:
                        self._last[sym] = sr
                        self.seen.append((time.time(), sym, sr[0], sr[1]))
            if h is not None:
                for e in h.get("not_live", []):
                    if e.get("ex") == self.exchange:
                        x = (e.get("sym"), e.get("state"), e.get("reason", ""))
                        if x not in self.health_seen:
                            self.health_seen.append(x)
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self.th.join(10)

    def states(self, sym):
        return [(s, r) for t, y, s, r in self.seen if y == sym]


def expect_state(watcher, readers, sym, state, reason_has, what):
    """Fails unless the bus (every reader's status messages) and /metrics
    (the watcher) both showed sym in state with a reason containing one of
    reason_has (a string or a tuple of strings). Returns the bus reasons."""
    if isinstance(reason_has, str):
        reason_has = (reason_has,)

    def match(reason):
        return any(x in reason for x in reason_has)
    for r in readers:
        bus = [x for x in statuses(r, sym) if x[1] == state]
        if not any(match(x[2]) for x in bus):
            fail("%s: %s: no status %s on the bus with a reason naming %s; statuses: %s"
                 % (r.proc.name, what, state, reason_has, statuses(r, sym)[:20]))
    # The bus may be ahead of the watcher's last poll: give it time (a
    # loaded machine), the history keeps what it saw.
    deadline = time.time() + 15
    while not any(x[0] == state and match(x[1]) for x in watcher.states(sym)) and \
            time.time() < deadline:
        time.sleep(0.1)
    met = [x for x in watcher.states(sym) if x[0] == state]
    if not any(match(x[1]) for x in met):
        fail("%s: /metrics never showed quotebus_instrument_state_info %s for %s with a "
             "reason naming %s (%d polls); it showed: %s"
             % (what, state, sym, reason_has, watcher.polls, watcher.states(sym)[:20]))
    if watcher.errors:
        fail("/metrics is not valid Prometheus text: %s" % watcher.errors[:3])
    return [x[2] for x in statuses(readers[0], sym) if x[1] == state]


def expect_health(watcher, state, reason_has, what, timeout=15):
    """Fails unless /health listed a not-live feed of the watcher's exchange
    in state with a reason containing reason_has (waits for the watcher)."""
    def seen():
        return any(x[1] == state and reason_has in x[2] for x in watcher.health_seen)
    deadline = time.time() + timeout
    while not seen() and time.time() < deadline:
        time.sleep(0.1)
    if not seen():
        fail("%s: /health never listed a %s feed with a reason naming %r: %s"
             % (what, state, reason_has, watcher.health_seen[:20]))


# ---------------------------------------------------------------- the cases' main

def run_case_main(cases, prefix):
    """The command line of every fault script (qbtest.run_case_main), with
    ASan's quarantine capped for the many processes a fault case starts."""
    qbtest.run_case_main(cases, prefix, before=lambda a: cap_asan_quarantine(a.bin_dir))
