#!/usr/bin/python3
"""The listener cases of the fault suite (CTest label faults): the broker's
listening endpoints against hostile local connections, and a second broker
started by mistake on a running one's addresses. Real processes:

  quotebus-exsim (wss/https, test CA) -> quotebus-adapter -> NNG ->
  quotebus-broker --no-spawn -> NNG -> quotebus-sub, nngcat --req0

NNG 1.5.2 (Debian 12) has nanomsg/nng#1518: one connection closed during the
SP handshake (a raw connect-and-close, garbage) on a listener makes it stop
handing new connections to its socket for good, while new dialers still
"connect": a new subscriber receives nothing, a restarted adapter's data never
reaches the broker, the snapshot service never answers. NNG's own "is this
ipc path stale?" check, run by a second broker listening on the same path, is
such a connection. The broker's defences are in broker/listeners.h: claim
every ipc path (flock on "<path>.lock") before listening, and probe every
listener, re-creating a broken one within QB_LISTENERS_BOUND_MS (2 s).

Cases (one CTest test each; usage: test_listeners.py --bin-dir DIR --case NAME):
  listener_ROLE_TRANSPORT  ROLE ingest, pub or snapshot; TRANSPORT ipc or tcp.
      The broker listens for every role on a private ipc path AND a free tcp
      port; subscribers on both pub addresses. Then, in sequence, on ROLE's
      TRANSPORT listener:
        (a) raw connects, each closed at once;
        (b) a connection sending an SP header naming a wrong protocol
            (bus0), then connections sending 64 random bytes, each closed;
        (c) a connection held open without any handshake (to the end).
      ((a) and (b) send 5 connections 250 ms apart: one breaks an NNG 1.5.2
      ipc listener only about 85 % of the time, see hostile().)
      After each, within BOUND_S of it (QB_LISTENERS_BOUND_MS plus slack for
      a loaded machine; the measured time is logged):
        ingest:   the adapter is killed and a new one (a new simulator, new
                  seed) dials the same ingest address: its books reach every
                  subscriber, then exactly the simulator's final books;
        pub:      a new quotebus-sub on that address holds valid books;
        snapshot: the service answers a request (a new nngcat --req0) on
                  that address with every book, valid.
      ipc, after (a) (bursts repeated until one broke the listener, at most
      5): the repair is visible: /metrics
      quotebus_listener_repairs_total{listener=ROLE,url=URL} grows and
      quotebus_listener_up is 1, /health "listeners" says so, and a status on
      status.quotebus.broker names URL (tcp listeners need not break: there
      only the behaviour is asserted). At the end, once NNG's 10 s handshake
      timeout dropped the held connection: the check once more, every
      listener up, and (pub, snapshot) a restarted adapter's books exact at
      every subscriber, new ones included; (snapshot) the service's books
      equal the simulator's.
  listener_http_exsim  the lws listeners (the broker's HTTP/websocket port,
      the simulator's wss/https port) after connect-and-close, a reset,
      garbage, a TLS-looking record and connections held open: /health
      answers, a new websocket client gets books, a restarted adapter
      connects to a simulator again and its books reach a subscriber exactly.
  second_broker  a running --no-spawn broker with an adapter; a second
      quotebus-broker on the same --ingest/--pub/--snapshot addresses must
      exit 1 within a few seconds naming the first one's pid; then the first
      one works fully: a new ipc subscriber holds valid books, its snapshot
      service answers over ipc, a restarted adapter's books (ipc ingest) reach
      every subscriber exactly, and the service's books equal the simulator's.
Exit 77 (skip) when nngcat (nng-utils) or python3-msgpack is missing for a
case that needs them.
"""
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402
import qbtest  # noqa: E402
from faultlib import fail, log, skip, wait_for  # noqa: E402

SYMS = ["BTC-USDT", "ETH-USDT"]
ROLES = ("ingest", "pub", "snapshot")
TRANSPORTS = ("ipc", "tcp")
# QB_LISTENERS_BOUND_MS (2 s: detection and re-creation of a broken
# listener), plus the redial and, for ingest, a new adapter's start (TLS,
# REST snapshot), with slack for an ASan build on a loaded 2-core machine.
BOUND_S = 10.0
# Healing after a fault once the data flows (the adapters' 1 s refresh).
EXACT_S = 60
# bus0: a valid SP protocol number that is the peer of none of the broker's
# sockets (SUB wants pub0 0x20, PUB sub0 0x21, REP req0 0x30).
WRONG_PROTO = 0x70
# NNG's handshake timeout on a listener's new connection (ipc and tcp, 10 s),
# plus slack: the held connection (c) is dropped by then.
HELD_DROP_S = 20
# Hostile connections per step (a) and (b), and the time between them (more
# than NNG's 100 ms accept cool-down): see hostile().
BURST = 5
SPACING_S = 0.25


def free_ports(n):
    """n distinct free tcp ports (all bound at once, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def need_snapshot_tools():
    if not shutil.which("nngcat"):
        skip("nngcat (Debian's nng-utils) is not installed: the snapshot service cannot be asked")
    try:
        import msgpack  # noqa: F401
    except ImportError:
        skip("python3-msgpack is not installed")


# ---------------------------------------------------------------- the stack

class Env:
    """The broker's addresses (every role on an ipc path and a tcp port), and
    the simulators, adapter and subscribers of one case."""

    def __init__(self, st):
        self.st = st
        p = free_ports(4)
        self.urls = {role: {"ipc": "ipc://%s/%s.ipc" % (st.tmp, role),
                            "tcp": "tcp://127.0.0.1:%d" % p[i]}
                     for i, role in enumerate(ROLES)}
        self.http = p[3]
        self.nsim = 0
        self.nadapter = 0
        self.sim = None
        self.adapter = None
        self.readers = []   # every subscriber (Reader), checked exactly at the end

    def broker_args(self):
        a = ["--no-spawn"]
        for role in ROLES:
            for tr in TRANSPORTS:
                a += ["--" + role, self.urls[role][tr]]
        return a

    def start_broker(self, name="broker"):
        st = self.st
        argv = [os.path.join(st.bin, "quotebus-broker")] + self.broker_args() + [
            "--http-listen", "127.0.0.1:%d" % self.http, "--stats-file", st.path(name + ".stats")]
        p = st.start(name, argv)
        ipc_paths = [self.urls[r]["ipc"][len("ipc://"):] for r in ROLES]

        def ready():
            if not p.alive():
                return True
            return all(os.path.exists(x) for x in ipc_paths) and fl.health(self.http, 2) is not None
        wait_for(ready, 20, "the broker's ipc sockets and HTTP port")
        if not p.alive():
            fail("broker exited early (%s):\n%s" % (p.p.returncode, p.stderr_text()[-3000:]))
        return p

    def new_sim(self, events, rate):
        """A simulator with a seed of its own (its final books differ from
        every other's, so a subscriber still holding an old book never
        matches): events 0 generates for ever."""
        self.nsim += 1
        return self.st.exsim(["--exchange", "binance", "--rate", str(rate), "--trade-rate", "20",
                              "--events", str(events), "--seed", str(100 + 17 * self.nsim)],
                             name="exsim%d" % self.nsim)

    def start_adapter(self, sim, tr):
        self.nadapter += 1
        name = "adapter%d" % self.nadapter
        st = self.st
        argv = [os.path.join(st.bin, "quotebus-adapter"), "binance", "--symbols", ",".join(SYMS),
                "--exsim", sim.exsim_url,
                "--broker", self.urls["ingest"][tr], "--stats-file", st.path(name + ".stats")]
        if st.ca is not None:
            argv += ["--ca-file", st.ca[0]]
        self.adapter = st.start(name, argv)
        self.adapter.transport = tr
        return self.adapter

    def reader(self, tr, name):
        p = self.st.start(name, [os.path.join(self.st.bin, "quotebus-sub"), "--connect",
                                 self.urls["pub"][tr], "book.", "trade.", "status."])
        r = qbtest.Reader(p)
        r.transport = tr
        self.readers.append(r)
        return r


def poll_all(env):
    """Reads every subscriber's output so far (a backlog of tens of
    thousands of lines takes Python seconds to parse: keep it short)."""
    for r in env.readers:
        r.poll()


def books_valid(r, deltas=False):
    r.poll()
    return all(s in r.books and r.books[s].valid and (not deltas or r.books[s].deltas > 0)
               for s in SYMS)


def describe(r):
    return "%s (%s): %s, books %s" % (
        r.proc.name, r.transport, r.counts,
        {s: (b.valid, b.seq, b.snapshots, b.deltas, b.restarts) for s, b in r.books.items()})


# ---------------------------------------------------------------- hostile connections

def connect_raw(url, timeout=5):
    """A plain stream socket connected to an NNG ipc:// or tcp:// address."""
    if url.startswith("ipc://"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(url[len("ipc://"):])
        except OSError:
            s.close()
            raise
        return s
    host, port = url[len("tcp://"):].rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def connect_retry(url, timeout=5.0):
    """connect_raw, retried for timeout seconds: the listener may be being
    re-created (no one listening on the path or port for a moment)."""
    deadline = time.time() + timeout
    while True:
        try:
            return connect_raw(url)
        except OSError as e:
            if time.time() >= deadline:
                fail("cannot connect to %s for %.0f s: %s" % (url, timeout, e))
            time.sleep(0.05)


def send_quietly(s, data):
    """The broker may have hung up already: that is its right."""
    try:
        s.sendall(data)
    except OSError:
        pass


def drain_until_closed(s, timeout):
    """Reads s until the peer closes it (True) or timeout (False)."""
    end = time.time() + timeout
    s.settimeout(0.2)
    while time.time() < end:
        try:
            d = s.recv(4096)
        except socket.timeout:
            continue
        except OSError:
            return True
        if not d:
            return True
    return False


def hostile(step, url):
    """Applies hostile connection step (a, b or c) to url; returns the
    sockets to keep open until the end of the case.

    Whether one connection breaks an NNG 1.5.2 listener is a race: it does
    when the connection is gone before the listener sends its SP header (the
    send fails with EPIPE, reported as NNG_ECLOSED, which NNG's accept loop
    takes for its own close and stops accepting), and only while the socket
    has an accept pending (after any other failed accept NNG pauses 100 ms,
    swallowing failures meanwhile). Measured on 1.5.2 ipc: about 85 % per
    connection, and 5 connections 250 ms apart broke it 16 times out of 16.
    So (a) and (b) send BURST connections SPACING_S apart."""
    if step == "a":
        for i in range(BURST):
            if i:
                time.sleep(SPACING_S)
            connect_retry(url).close()
        return []
    if step == "b":
        # A valid-looking header naming the wrong protocol: the listener
        # answers with its own and hangs up (at most 1 s), then close.
        s = connect_retry(url)
        send_quietly(s, b"\x00SP\x00" + struct.pack(">H", WRONG_PROTO) + b"\x00\x00")
        closed = drain_until_closed(s, 1.0)
        s.close()
        log("(b) wrong-protocol connection %s" % (
            "hung up by the broker" if closed else "still open after 1 s: closed"))
        for i in range(BURST):
            time.sleep(SPACING_S)
            junk = bytearray(os.urandom(64))
            junk[0] = 0xff  # never the SP header's first byte (0)
            s = connect_retry(url)
            send_quietly(s, bytes(junk))
            s.close()
        return []
    return [connect_retry(url)]  # (c): no handshake, held open


STEPS = {"a": "%d raw connect-and-close" % BURST,
         "b": "garbage (an SP header of protocol bus0; %d x 64 random bytes) then close" % BURST,
         "c": "a connection held open without a handshake"}


# ---------------------------------------------------------------- checks

def check_pub(env, tr, t0, what, name):
    """A NEW subscriber on the pub address holds valid books (a snapshot of
    every symbol, then deltas) within BOUND_S of t0."""
    r = env.reader(tr, name)
    deadline = t0 + BOUND_S
    while time.time() < deadline and not books_valid(r, deltas=True):
        if not r.proc.alive():
            fail("%s: %s exited:\n%s" % (what, name, r.proc.stderr_text()[-2000:]))
        time.sleep(0.1)
    if not books_valid(r, deltas=True):
        fail("%s: a new subscriber on %s got no valid books within %.0f s: %s" % (
            what, env.urls["pub"][tr], BOUND_S, describe(r)))
    log("%s: new subscriber %s on %s holds valid books %.1f s after it" % (
        what, name, env.urls["pub"][tr], time.time() - t0))
    return r


def snapshot_request(st, url, topic, timeout_s):
    """One request from a new NNG REQ socket (nngcat --req0) dialing url:
    the decoded reply, or None (no reply within timeout_s), and stderr."""
    import msgpack
    req = st.path("snapreq.bin")
    with open(req, "wb") as f:
        f.write(msgpack.packb({"v": 1, "op": "snapshot", "topic": topic}))
    t = max(1, int(math.ceil(timeout_s)))
    try:
        r = subprocess.run(["nngcat", "--req0", "--dial", url, "--file", req, "--raw",
                            "--count", "1", "--recv-maxsz", "16777216",
                            # nngcat's REQ loop needs interval > recv-timeout
                            "--interval", str(t + 30), "--recv-timeout", str(t)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=t + 15)
    except subprocess.TimeoutExpired:
        return None, "nngcat did not exit"
    if r.returncode == 0 and not r.stdout:
        return None, "no reply within %d s" % t
    if r.returncode != 0 or not r.stdout:
        return None, "nngcat exit %d: %s" % (r.returncode,
                                             r.stderr.decode("utf-8", "replace")[-300:])
    try:
        return msgpack.unpackb(r.stdout, raw=False), ""
    except ValueError as e:
        return None, "reply is not one msgpack map (%s): %r" % (e, r.stdout[:100])


def reply_books(rep):
    """{symbol: snapshot map} of the valid books of a service reply."""
    import msgpack
    out = {}
    if not isinstance(rep, dict) or not rep.get("ok"):
        return out
    for b in rep.get("books", []):
        if not b.get("valid") or not b.get("frame"):
            continue
        topic, _, body = b["frame"].partition(b"\x00")
        u = msgpack.Unpacker(raw=False)
        u.feed(body)
        maps = list(u)
        if topic.decode() == b["topic"] and len(maps) == 1 and maps[0].get("type") == "snapshot":
            out[maps[0]["sym"]] = maps[0]
    return out


def check_snapshot(env, tr, t0, what):
    """The snapshot service answers a new requester on the address with a
    valid book of every symbol within BOUND_S of t0. Returns the books."""
    url = env.urls["snapshot"][tr]
    deadline = t0 + BOUND_S
    n, why = 0, ""
    while True:
        left = deadline - time.time()
        if left <= 0:
            fail("%s: the snapshot service on %s gave no valid books within %.0f s (%d "
                 "requests, each from a new REQ socket); last: %s" % (what, url, BOUND_S, n, why))
        n += 1
        rep, err = snapshot_request(env.st, url, "book.binance.", min(3.0, left))
        books = reply_books(rep)
        if all(s in books for s in SYMS):
            log("%s: snapshot service on %s answered %.1f s after it (request %d)" % (
                what, url, time.time() - t0, n))
            return books
        why = err or "reply %s" % str(rep)[:300]
        time.sleep(0.2)


def restarts(r, s):
    b = r.books.get(s)
    return b.restarts if b is not None else 0


def check_ingest(env, tr, t0, sim, what, sig=signal.SIGKILL):
    """The adapter is killed and a new one, fed by sim (started beforehand),
    dials the ingest address: within BOUND_S of t0 its stream (numbered
    anew: a restart at every subscriber, PROTOCOL.md 11.4 rule 7) reaches
    every subscriber, then every book is exactly sim's final book."""
    poll_all(env)
    before = {(r.proc.name, s): restarts(r, s) for r in env.readers for s in SYMS}
    old = env.adapter
    if old is not None:
        log("%s: %s of %s" % (what, "kill -9" if sig == signal.SIGKILL else "SIGTERM", old.name))
        old.signal(sig)
        try:
            old.p.wait(10)
        except subprocess.TimeoutExpired:
            old.kill9()
    a = env.start_adapter(sim, tr)
    log("%s: %s dials %s" % (what, a.name, env.urls["ingest"][tr]))

    def new_stream():
        for r in env.readers:
            r.poll()
        return all(restarts(r, s) > before[(r.proc.name, s)] for r in env.readers for s in SYMS)
    deadline = t0 + BOUND_S
    while time.time() < deadline and not new_stream():
        if not a.alive():
            fail("%s: %s exited:\n%s" % (what, a.name, a.stderr_text()[-2000:]))
        time.sleep(0.1)
    if not new_stream():
        fail("%s: the restarted adapter's stream (ingest %s) reached not every subscriber "
             "within %.0f s (%s stats: %s); subscribers: %s" % (
                 what, env.urls["ingest"][tr], BOUND_S, a.name,
                 {k: v for k, v in qbtest.stats(env.st.path(a.name + ".stats")).items()
                  if "publish" in k or "sent" in k or "frames" in k},
                 "; ".join(describe(r) for r in env.readers)))
    log("%s: the new adapter's stream reached every subscriber %.1f s after it" % (
        what, time.time() - t0))
    qbtest.wait_books_exact(env.readers, sim.dump_path, SYMS, timeout=EXACT_S)
    log("%s: every subscriber holds %s's final books exactly, %.1f s after it" % (
        what, sim.name, time.time() - t0))
    if env.sim is not None and env.sim is not sim:
        fl.stop_clean(env.sim)
    env.sim = sim


def check(env, role, tr, t0, what, step):
    if role == "pub":
        check_pub(env, tr, t0, what, "sub-new-%s" % step)
    elif role == "snapshot":
        check_snapshot(env, tr, t0, what)


# ---------------------------------------------------------------- /metrics, /health, bus

def listener_metric(samples, name, role, url):
    v = [float(x) for n, lb, x in samples
         if n == name and lb.get("listener") == role and lb.get("url") == url]
    return v[0] if v else None


def health_listener(h, role, url):
    for e in (h or {}).get("listeners", []) or []:
        if isinstance(e, dict) and e.get("role") == role and e.get("url") == url:
            return e
    return None


def listener_lines(samples):
    return ["%s%s %s" % (n, lb, v) for n, lb, v in samples or []
            if n.startswith("quotebus_listener")]


def bus_repairs(readers, url):
    """Status messages on status.quotebus.broker naming url, per reader."""
    pat = re.compile(re.escape(url) + r"(?![0-9A-Za-z._/-])")
    out = {}
    for r in readers:
        r.poll()
        out[r.proc.name] = [m for m in r.messages if m.get("topic") == "status.quotebus.broker"
                            and pat.search(m.get("reason", ""))]
    return out


def repair_watchers(env, role, tr):
    """The first subscribers (one per pub transport), but not one on a
    re-created pub listener: it lost its connection with the listener (and
    redialed), so it may have missed the announcement."""
    return [r for r in env.readers[:2] if not (role == "pub" and r.transport == tr)]


def wait_repairs(env, role, url, at_least, timeout):
    """True once /metrics counts at_least repairs of role's listener url."""
    end = time.time() + timeout
    while time.time() < end:
        v = listener_metric(fl.metrics(env.http) or [], "quotebus_listener_repairs_total", role,
                            url)
        if v is not None and v >= at_least:
            return True
        time.sleep(0.2)
    return False


def expect_repaired(env, role, tr, at_least, bus_at_least, t0, what):
    """The repair of role's tr listener is visible: /metrics repairs >= at_least
    and up 1, /health's listeners entry agrees, and every subscriber that
    was not on a re-created pub listener got a status on status.quotebus.broker
    naming the URL (at least bus_at_least of them)."""
    url = env.urls[role][tr]
    deadline = max(t0 + BOUND_S, time.time() + 3)
    last = None
    while time.time() < deadline:
        m = fl.metrics(env.http)
        if m is not None:
            last = m
            rep = listener_metric(m, "quotebus_listener_repairs_total", role, url)
            up = listener_metric(m, "quotebus_listener_up", role, url)
            if rep is not None and rep >= at_least and up == 1:
                break
        time.sleep(0.1)
    rep = listener_metric(last or [], "quotebus_listener_repairs_total", role, url)
    up = listener_metric(last or [], "quotebus_listener_up", role, url)
    if rep is None or rep < at_least or up != 1:
        fail("%s: /metrics does not show the %s listener %s re-created and up "
             "(want quotebus_listener_repairs_total >= %d and quotebus_listener_up 1; "
             "have %s, %s); its listener lines: %s" % (
                 what, role, url, at_least, rep, up, listener_lines(last)[:12]))
    log("%s: /metrics quotebus_listener_repairs_total{listener=%s,url=%s} = %d, up = 1, "
        "%.1f s after it" % (what, role, url, rep, time.time() - t0))
    h = fl.health(env.http)
    e = health_listener(h, role, url)
    if e is None or not isinstance(e.get("repairs"), int) or e["repairs"] < at_least or \
            e.get("up") is not True:
        fail("%s: /health's listeners entry for %s %s does not show the repair "
             "(repairs >= %d, up true): %s; listeners: %s" % (
                 what, role, url, at_least, e, (h or {}).get("listeners")))
    watchers = repair_watchers(env, role, tr)
    deadline = max(t0 + BOUND_S, time.time() + 3)
    while time.time() < deadline and \
            not all(len(v) >= bus_at_least for v in bus_repairs(watchers, url).values()):
        time.sleep(0.1)
    seen = bus_repairs(watchers, url)
    if not all(len(v) >= bus_at_least for v in seen.values()):
        other = {r.proc.name: [m for m in r.messages if m.get("topic", "").startswith(
            "status.quotebus.")][-5:] for r in watchers}
        fail("%s: not every subscriber got a status on status.quotebus.broker naming %s "
             "(want %d each): %s; status.quotebus.* seen: %s" % (
                 what, url, bus_at_least, {k: len(v) for k, v in seen.items()}, other))
    first = next(iter(seen.values()))[-1]
    log("%s: on the bus: %s %r" % (what, first.get("state"), first.get("reason")))


def expect_all_up(env, what):
    """Every listener (3 roles x ipc, tcp) up in /metrics and /health."""
    want = [(role, env.urls[role][tr]) for role in ROLES for tr in TRANSPORTS]

    def all_up():
        m = fl.metrics(env.http)
        h = fl.health(env.http)
        if m is None or h is None:
            return None
        ok = all(listener_metric(m, "quotebus_listener_up", r, u) == 1 and
                 (health_listener(h, r, u) or {}).get("up") is True for r, u in want)
        return (m, h) if ok else None
    deadline = time.time() + BOUND_S
    while time.time() < deadline and not all_up():
        time.sleep(0.2)
    if not all_up():
        m, h = fl.metrics(env.http), fl.health(env.http)
        fail("%s: not every listener is up in /metrics (quotebus_listener_up) and /health "
             "(listeners): %s; /health listeners: %s" % (
                 what, listener_lines(m)[:20], (h or {}).get("listeners")))
    m = fl.metrics(env.http)
    log("%s: every listener up; repairs: %s" % (what, {
        "%s %s" % (r, u): listener_metric(m, "quotebus_listener_repairs_total", r, u)
        for r, u in want}))


def expect_service_exact(env, tr, sim, what):
    """The snapshot service's books (over tr) equal sim's final books."""
    from decimal import Decimal
    dump = qbtest.dump_books(sim.dump_path)
    books = check_snapshot(env, tr, time.time(), what)

    def side(levels):
        return [(Decimal(a).scaleb(-b), Decimal(c).scaleb(-d)) for a, b, c, d in levels]
    for s in SYMS:
        lid, bids, asks, _ = dump[qbtest.native(s)]
        m = books[s]
        if m.get("lid") != lid or side(m["bids"]) != bids or side(m["asks"]) != asks:
            fail("%s: the snapshot service's %s (lid %s, %d/%d levels) differs from the "
                 "simulator's final book (lid %s, %d/%d levels)" % (
                     what, s, m.get("lid"), len(m["bids"]), len(m["asks"]), lid, len(bids),
                     len(asks)))
    log("%s: the snapshot service's books equal the simulator's" % what)


# ---------------------------------------------------------------- cases

def listener_case(st, role, tr):
    if role == "snapshot":
        need_snapshot_tools()
    env = Env(st)
    url = env.urls[role][tr]
    broker = env.start_broker()
    log("broker %d: %s" % (broker.p.pid, " ".join(env.broker_args())))
    for t in TRANSPORTS:
        env.reader(t, "sub-" + t)
    time.sleep(0.3)
    # ingest: every step restarts the adapter on a new simulator (events
    # bounded, so each ends with an exact comparison); pub, snapshot: one
    # simulator generating for ever, the exact comparison at the end.
    adapter_tr = tr if role == "ingest" else "ipc"
    if role == "ingest":
        sim0 = env.new_sim(1500, 1000)
        env.sim = sim0
        env.start_adapter(sim0, adapter_tr)
        qbtest.wait_books_exact(env.readers, sim0.dump_path, SYMS, timeout=EXACT_S)
    else:
        env.sim = env.new_sim(0, 100)
        env.start_adapter(env.sim, adapter_tr)
        fl.poll_until(env.readers, lambda: all(books_valid(r, True) for r in env.readers),
                      EXACT_S, "valid books at every subscriber")
        if role == "snapshot":
            check_snapshot(env, tr, time.time(), "before any hostile connection")
    log("%s listener %s under test; books flow" % (role, url))
    held = []
    try:
        for step in ("a", "b", "c"):
            what = "(%s) %s on the %s listener %s" % (step, STEPS[step], role, url)
            nxt = env.new_sim(1500, 1000) if role == "ingest" else None
            repairs0 = listener_metric(fl.metrics(env.http) or [],
                                       "quotebus_listener_repairs_total", role, url) or 0
            bus0 = min(len(v) for v in bus_repairs(repair_watchers(env, role, tr), url).values())
            poll_all(env)
            t_start = time.time()
            held += hostile(step, url)
            if tr == "ipc" and step == "a":
                # Whether a burst breaks the listener is a race (hostile());
                # on a loaded machine a burst can miss: another burst, until
                # the broker has seen a broken listener (at most 4 more).
                for _ in range(4):
                    if wait_repairs(env, role, url, int(repairs0) + 1, 3.0):
                        break
                    log("%s: not broken yet (no repair within 3 s): another burst" % what)
                    held += hostile(step, url)
            t0 = time.time()  # the bounds count from the last hostile connection
            log("%s (%.1f s)" % (what, t0 - t_start))
            if role == "ingest":
                check_ingest(env, tr, t0, nxt, what,
                             signal.SIGTERM if step == "b" else signal.SIGKILL)
            else:
                check(env, role, tr, t0, what, step)
            fl.check_alive(broker)
            if tr == "ipc" and step == "a":
                # (a) broke the NNG 1.5.2 ipc listener (repeated until it
                # did): it must have been re-created, and said so.
                expect_repaired(env, role, tr, int(repairs0) + 1, bus0 + 1, t0, what)
            else:
                m = fl.metrics(env.http)
                log("%s: repairs of the listener %s -> %s" % (what, repairs0, listener_metric(
                    m or [], "quotebus_listener_repairs_total", role, url)))
        # NNG drops a connection that never completes the handshake after
        # 10 s; that drop must not break the listener either.
        t_held = time.time()
        dropped = False
        while not dropped and time.time() - t_held < HELD_DROP_S:
            dropped = drain_until_closed(held[0], 0.5)
            poll_all(env)
        log("(c) held connection %s after %.1f s" % (
            "dropped by the broker" if dropped else "still open", time.time() - t_held))
        what = "after the held connection%s" % (" was dropped" if dropped else "")
        nxt = env.new_sim(1500, 1000)
        poll_all(env)
        t0 = time.time()
        if role == "ingest":
            check_ingest(env, tr, t0, nxt, what)
        else:
            check(env, role, tr, t0, what, "end")
            # the new subscribers too: a restarted adapter's books, exactly
            check_ingest(env, adapter_tr, t0, nxt, what + ", adapter restarted")
        fl.check_alive(broker)
        expect_all_up(env, "at the end")
        if role == "snapshot":
            expect_service_exact(env, tr, nxt, "at the end")
    finally:
        for s in held:
            s.close()
    fl.check_alive(broker, env.adapter, *[r.proc for r in env.readers])
    fl.stop_clean(*[r.proc for r in env.readers])
    fl.stop_clean(env.adapter, broker, env.sim)


def case_second_broker(st):
    need_snapshot_tools()
    env = Env(st)
    broker = env.start_broker()
    for t in TRANSPORTS:
        env.reader(t, "sub-" + t)
    time.sleep(0.3)
    env.sim = env.new_sim(0, 100)
    env.start_adapter(env.sim, "ipc")
    fl.poll_until(env.readers, lambda: all(books_valid(r, True) for r in env.readers),
                  EXACT_S, "valid books at every subscriber")
    log("first broker %d runs; a second one on the same addresses" % broker.p.pid)
    t0 = time.time()
    b2 = st.start("broker2", [os.path.join(st.bin, "quotebus-broker")] + env.broker_args() + [
        "--http-listen", "off", "--stats-file", st.path("broker2.stats")])
    wait_for(lambda: not b2.alive(), 15, "the second broker to exit")
    err = b2.stderr_text()
    log("second broker exited %s after %.1f s: %s" % (
        b2.p.returncode, time.time() - t0, " | ".join(err.strip().splitlines()[-4:])))
    if b2.p.returncode != 1:
        fail("the second broker exited %s, not 1:\n%s" % (b2.p.returncode, err[-2000:]))
    pid = broker.p.pid
    named = re.search(r"\bpid\b\D{0,4}%d\b" % pid, err) is not None
    if not named:
        log("the second broker's message does not name the first one's pid %d" % pid)
    for role in ROLES:
        path = env.urls[role]["ipc"][len("ipc://"):]
        if not os.path.exists(path):
            fail("the second broker removed the first one's socket %s" % path)
    fl.check_alive(broker)
    # The first broker works fully: pub, snapshot service, ingest over ipc.
    t0 = time.time()
    check_pub(env, "ipc", t0, "after the second broker", "sub-new-ipc")
    check_snapshot(env, "ipc", time.time(), "after the second broker")
    nxt = env.new_sim(1500, 1000)
    check_ingest(env, "ipc", time.time(), nxt, "after the second broker")
    expect_service_exact(env, "ipc", nxt, "after the second broker")
    m = fl.metrics(env.http)
    log("first broker's listener repairs: %s" % [x for x in listener_lines(m)
                                                 if "repairs" in x])
    if not named:
        fail("the second broker's message does not name the running instance's pid %d:\n%s"
             % (pid, err[-2000:]))
    fl.check_alive(broker, env.adapter, *[r.proc for r in env.readers])
    fl.stop_clean(*[r.proc for r in env.readers])
    fl.stop_clean(env.adapter, broker, env.sim)


def case_listener_http_exsim(st):
    """The listening sockets that are not NNG's: the broker's HTTP/websocket
    endpoint (lws) and the simulator's wss/https port (lws, TLS). After raw
    connect-and-close, a reset (SO_LINGER 0), garbage (64 random bytes and a
    TLS-looking record) and connections held open without a request, both
    still serve: /health answers, a new websocket client receives books, and
    a restarted adapter connects to the simulator again (wss + https
    snapshot) and its books reach the subscribers exactly."""
    env = Env(st)
    sim = env.new_sim(0, 200)
    broker = env.start_broker()
    rd = env.reader("ipc", "sub-a")
    env.start_adapter(sim, "ipc")
    wait_for(lambda: poll_all(env) or books_valid(rd), 30, "books at the first subscriber")
    held = []
    for port in (env.http, sim.port):
        for kind in ("close", "reset", "garbage", "tls", "held"):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if kind == "reset":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif kind == "garbage":
                send_quietly(s, os.urandom(64))
            elif kind == "tls":
                send_quietly(s, b"\x16\x03\x01\x00\x05" + os.urandom(5))
            if kind == "held":
                held.append(s)
            else:
                s.close()
        log("hostile connections on port %d done" % port)
    t0 = time.time()
    h = wait_for(lambda: fl.health(env.http, 2), 10, "/health after the hostile connections")
    log("/health answers %.2f s later: %s" % (time.time() - t0, h.get("status")))
    ws = fl.RawWs(env.http)
    got = []
    ws.send_text('{"op":"subscribe","topics":["book.binance."]}')
    ws.read_for(3, lambda t: got.append(t))
    ws.close()
    if not any(b'"snapshot"' in g for g in got):
        fail("a new websocket client got no book snapshot after the hostile connections "
             "(%d messages)" % len(got))
    # A restarted adapter connects to a simulator again (wss and the https
    # snapshot) and its books reach the subscriber exactly; the held
    # connections stay open meanwhile.
    env.sim = sim
    nxt = env.new_sim(20000, 2000)
    check_ingest(env, "ipc", time.time(), nxt, "after the hostile connections")
    for s in held:
        s.close()
    fl.check_alive(broker, nxt)
    fl.stop_clean(rd.proc)
    fl.stop_clean(env.adapter, broker, nxt)


CASES = {"second_broker": case_second_broker, "listener_http_exsim": case_listener_http_exsim}
for _role in ROLES:
    for _tr in TRANSPORTS:
        CASES["listener_%s_%s" % (_role, _tr)] = \
            (lambda role, tr: lambda st: listener_case(st, role, tr))(_role, _tr)

if __name__ == "__main__":
    fl.run_case_main(CASES, "fault")
