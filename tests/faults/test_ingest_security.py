#!/usr/bin/python3
"""Ingest security (CTest label faults): who may publish into the broker.

The field finding this guards against: any local process could publish into
the broker's tcp ingest; a hand-made snapshot of book.binance.BTC-USDT (seq 1,
one bid at 1, one ask at 2, written from proto/PROTOCOL.md and sent with
nngcat) reached every subscriber as the real book, and the real adapter's next
deltas were counted as ingest gaps. Every case runs real processes
(quotebus-exsim -> quotebus-adapter -> quotebus-broker -> quotebus-sub), builds
the spoofed frame here with Debian's python3-msgpack exactly as PROTOCOL.md
sections 2 and 4 say, sends it with nngcat (nng-utils), and ends with the
subscribers' books compared exactly with the simulator's.

Cases (one CTest test each; usage: test_ingest_security.py --bin-dir DIR --case NAME):
  spoof_ipc_tcp    a spoofed snapshot over the ipc and over a tcp ingest while
                   the adapter publishes: refused whole (rogue_publisher in the
                   stats file and in /metrics), logged (ingest.rogue_publisher,
                   naming the topic, the spoofer's pid or address and the
                   adapter's pid), said on status.quotebus.broker; no subscriber
                   sees it; no ingest gap; books exact
  spoof_tls        a tls+tcp ingest with client certificates required
                   (scripts/make-certs.sh); the adapter dials it with its
                   certificate; nngcat without a certificate, and with one of
                   another CA, cannot connect at all; with a valid certificate
                   of another client it connects and is refused like any other
                   publisher; the pub side over tls+tcp too: a subscriber with a
                   certificate gets exact books, one without gets nothing
  second_adapter   a second adapter for the same exchange and symbols started by
                   mistake: every one of its frames refused and every topic
                   logged; the first adapter's books exact and gap-free; once the
                   first adapter is killed the second one takes the topics over
                   (ownership passes only when the owner disconnects), books exact
  default_ingest   the defaults: the broker's ingest is only
                   ipc:///tmp/quotebus/private/ingest.ipc in a directory of mode
                   0700 (another user cannot connect), no tcp ingest; an adapter
                   with its default --broker reaches it; books exact
Exit 77 (skip) when nngcat or python3-msgpack is missing, or (default_ingest)
when another broker holds the default ingest address.
"""
import json
import os
import shutil
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402
import qbtest  # noqa: E402
from faultlib import fail, log, skip, stats, wait_for  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
MAKE_CERTS = os.path.join(ROOT, "scripts", "make-certs.sh")
SYMS = ["BTC-USDT", "ETH-USDT", "SOL-USDT"]
DEFAULT_INGEST = "/tmp/quotebus/private/ingest.ipc"


def need_tools():
    if shutil.which("nngcat") is None:
        skip("nngcat (Debian package nng-utils) is not installed")
    try:
        import msgpack  # noqa: F401
    except ImportError:
        skip("python3-msgpack is not installed")


def spoof_frame(sym, bid="1", ask="2"):
    """The field test's frame, from PROTOCOL.md: topic NUL one msgpack map, the
    keys of 4.1 and 4.3 in their order, levels [price m, s, size m, s]."""
    import msgpack
    now = time.time_ns()
    m = {"v": 1, "type": "snapshot", "ex": "binance", "sym": sym, "nsym": sym.replace("-", ""),
         "seq": 1, "ets": now, "rts": now, "fid": 1, "lid": 1,
         "bids": [[int(bid), 0, 1, 0]], "asks": [[int(ask), 0, 1, 0]], "refresh": False}
    return ("book.binance.%s" % sym).encode() + b"\x00" + msgpack.packb(m)


def write_spoof(st, sym):
    path = st.path("spoof-%s.bin" % sym)
    with open(path, "wb") as f:
        f.write(spoof_frame(sym))
    return path


def nngcat(st, name, url, path, extra=(), count=3):
    """nngcat publishing the file's frame count times, one a second, after a
    1 s delay (a PUB drops what it sends before the connection is up)."""
    return st.start(name, ["nngcat", "--pub0", "--dial", url, "--file", path, "--delay", "1",
                           "--count", str(count), "--interval", "1"] + list(extra))


def wait_exit(p, timeout=20):
    wait_for(lambda: not p.alive(), timeout, "%s to exit" % p.name)
    return p.p.returncode


def spoof_seen(readers):
    """(reader, line) of a subscriber that received a spoofed book (a bid at 1
    and an ask at 2), else None."""
    for r in readers:
        r.proc.out.flush()
        with open(r.proc.out_path, "rb") as f:
            for ln in f:
                if b'"type":"snapshot"' not in ln:
                    continue
                m = json.loads(ln)
                if m.get("bids") == [["1", "1"]] and m.get("asks") == [["2", "1"]]:
                    return r.proc.name, ln[:200]
    return None


def rogue_lines(broker):
    return [ln for ln in broker.stderr_text().splitlines() if "ingest.rogue_publisher" in ln]


def expect_log(broker, topic, frm, owner, what):
    """Fails unless the broker logged a refusal of topic from a peer whose
    description starts with frm, owned by one starting with owner."""
    want = 'topic=%s from="%s' % (topic, frm)
    lines = [ln for ln in rogue_lines(broker) if want in ln]
    if not lines:
        fail("%s: no ingest.rogue_publisher line with %r; lines: %s" % (
            what, want, rogue_lines(broker)[:6]))
    if owner is not None and not any(('owner="%s' % owner) in ln for ln in lines):
        fail("%s: the refusal does not name the owner %r: %s" % (what, owner, lines[:3]))
    log("logged: %s" % lines[0].split(" ", 3)[-1][:220])


def notices(r):
    return [m.get("reason", "") for m in r.messages
            if m.get("type") == "status" and m.get("ex") == "quotebus"]


def expect_notice(readers, topic, owner_has, what):
    def seen():
        for r in readers:
            r.poll()
        return all(any(("rejected frames for %s " % topic) in x and owner_has in x
                       for x in notices(r)) for r in readers)
    deadline = time.time() + 10
    while time.time() < deadline and not seen():
        time.sleep(0.1)
    if not seen():
        fail("%s: no status.quotebus.broker notice for %s naming %r at every subscriber: %s"
             % (what, topic, owner_has, [notices(r)[:4] for r in readers]))


def check_clean(readers, broker, what):
    s = spoof_seen(readers)
    if s:
        fail("%s: a subscriber received the spoofed book: %s %r" % (what, s[0], s[1]))
    for r in readers:
        gaps = sum(b.gaps for b in r.books.values())
        if gaps:
            fail("%s: %s saw %d gaps" % (what, r.proc.name, gaps))
    b = stats(broker.stats_path)
    if b.get("ingest_gaps", 0):
        fail("%s: the broker counted %s ingest gaps on the real feed" % (what, b["ingest_gaps"]))
    return b


def sim_for(st, events, symbols, rate=1000):
    return st.exsim(["--exchange", "binance", "--rate", str(rate), "--trade-rate", "20",
                     "--events", str(events), "--seed", "7", "--symbols",
                     ",".join(s.replace("-", "") for s in symbols)])


def metric_drops(port, kind):
    samples = fl.metrics(port)
    for n, lb, v in samples or []:
        if n == "quotebus_drops_total" and lb.get("kind") == kind:
            return int(v)
    return None


# ---------------------------------------------------------------- cases

def case_spoof_ipc_tcp(st):
    need_tools()
    sim = sim_for(st, 15000, SYMS)
    tcp = "tcp://127.0.0.1:%d" % fl.free_port()
    http = fl.free_port()
    broker = fl.plain_broker(st, extra=["--ingest", tcp, "--http-listen", "127.0.0.1:%d" % http])
    readers = fl.readers_for(st, 2)
    time.sleep(0.3)
    adapter = st.adapter(sim, SYMS)
    fl.poll_until(readers, lambda: all(fl.deltas(r) >= 1000 for r in readers), 60,
                  "1000 deltas at every subscriber")
    log("spoofing book.binance.BTC-USDT over %s and book.binance.ETH-USDT over %s"
        % (st.ingest, tcp))
    ipc_cat = nngcat(st, "spoof-ipc", st.ingest, write_spoof(st, "BTC-USDT"))
    tcp_cat = nngcat(st, "spoof-tcp", tcp, write_spoof(st, "ETH-USDT"))
    for c in (ipc_cat, tcp_cat):
        if wait_exit(c) != 0:
            fail("%s could not publish: %s" % (c.name, c.stderr_text()[-500:]))
    time.sleep(1)
    seen = spoof_seen(readers)
    if seen:
        fail("a subscriber received the spoofed book: %s %r" % seen)
    owner = "pid %d " % adapter.p.pid
    expect_log(broker, "book.binance.BTC-USDT", "pid %d " % ipc_cat.p.pid, owner, "ipc spoof")
    expect_log(broker, "book.binance.ETH-USDT", "tcp 127.0.0.1:", owner, "tcp spoof")
    expect_notice(readers, "book.binance.BTC-USDT", "owned by " + owner, "ipc spoof")
    expect_notice(readers, "book.binance.ETH-USDT", "owned by " + owner, "tcp spoof")
    qbtest.wait_books_exact(readers, sim.dump_path, SYMS, timeout=90)
    b = check_clean(readers, broker, "spoof over ipc and tcp")
    if b.get("rogue_publisher", 0) < 2:
        fail("refused frames not counted: rogue_publisher=%s" % b.get("rogue_publisher"))
    drops = metric_drops(http, "rogue_publisher")
    log("broker: rogue_publisher=%s (/metrics drops %s), frames_in=%s" % (
        b.get("rogue_publisher"), drops, b.get("frames_in")))
    if drops is None or drops < 2:
        fail('/metrics lacks quotebus_drops_total{kind="rogue_publisher"} >= 2: %s' % drops)
    fl.check_alive(adapter, broker)
    fl.stop_clean(*[r.proc for r in readers], adapter, broker, sim)


def case_spoof_tls(st):
    need_tools()
    if shutil.which("openssl") is None:
        skip("openssl is not installed")
    pki, other = st.path("pki"), st.path("other-pki")
    for d, names in ((pki, ["binance", "rogue"]), (other, ["intruder"])):
        subprocess.run([MAKE_CERTS, d] + names, check=True, stdout=subprocess.DEVNULL)
    ca = os.path.join(pki, "ca.pem")

    def pem(d, n):
        return os.path.join(d, n + ".pem"), os.path.join(d, n + ".key")
    sim = sim_for(st, 15000, SYMS)
    tls = "tls+tcp://127.0.0.1:%d" % fl.free_port()
    tls_pub = "tls+tcp://127.0.0.1:%d" % fl.free_port()
    bcert, bkey = pem(pki, "broker")
    broker = fl.plain_broker(st, extra=["--ingest", tls, "--ingest-tls-cert", bcert,
                                        "--ingest-tls-key", bkey, "--ingest-tls-ca", ca,
                                        "--pub", tls_pub, "--pub-tls-cert", bcert,
                                        "--pub-tls-key", bkey, "--pub-tls-ca", ca])
    scert, skey = pem(pki, "rogue")
    readers = fl.readers_for(st, 1) + [qbtest.Reader(st.sub(
        ["book.", "trade.", "status."], name="sub-tls",
        extra=["--connect", tls_pub, "--tls-ca", ca, "--tls-cert", scert, "--tls-key", skey]))]
    nocert_sub = st.sub(["book."], name="sub-nocert", extra=["--connect", tls_pub,
                                                             "--tls-ca", ca])
    time.sleep(0.3)
    acert, akey = pem(pki, "binance")
    adapter = st.adapter(sim, SYMS, extra=["--broker", tls, "--broker-tls-ca", ca,
                                           "--broker-tls-cert", acert, "--broker-tls-key", akey])
    fl.poll_until(readers, lambda: all(fl.deltas(r) >= 1000 for r in readers), 60,
                  "1000 deltas at every subscriber (adapter over tls+tcp)")
    if "tls 127.0.0.1:" not in broker.stderr_text() and "nng_connected" not in \
            adapter.stderr_text():
        log("note: the adapter's connection is not in the logs (info level)")
    log("nngcat without a client certificate, then with one of another CA")
    nocert = nngcat(st, "spoof-nocert", tls, write_spoof(st, "BTC-USDT"),
                    ["--cacert", ca], count=1)
    icert, ikey = pem(other, "intruder")
    wrongca = nngcat(st, "spoof-wrongca", tls, write_spoof(st, "ETH-USDT"),
                     ["--cacert", ca, "--cert", icert, "--key", ikey], count=1)
    for c in (nocert, wrongca):
        rc = wait_exit(c)
        if rc == 0:
            fail("%s connected to a tls+tcp ingest that requires a client certificate of its "
                 "CA (exit 0):\n%s" % (c.name, c.stderr_text()[-500:]))
        log("%s refused: exit %d: %s" % (c.name, rc, c.stderr_text().strip()[-120:]))
    log("nngcat with a valid certificate of another client (rogue)")
    rcert, rkey = pem(pki, "rogue")
    valid = nngcat(st, "spoof-valid", tls, write_spoof(st, "SOL-USDT"),
                   ["--cacert", ca, "--cert", rcert, "--key", rkey], count=4)
    if wait_exit(valid, 30) != 0:
        fail("a certified client could not connect after the refused handshakes (listener "
             "broken?):\n%s" % valid.stderr_text()[-500:])
    expect_log(broker, "book.binance.SOL-USDT", "tls 127.0.0.1:", "tls 127.0.0.1:",
               "certified rogue")
    expect_notice(readers, "book.binance.SOL-USDT", "owned by tls 127.0.0.1:", "certified rogue")
    for t in ("book.binance.BTC-USDT", "book.binance.ETH-USDT"):
        if any(("topic=%s " % t) in ln for ln in rogue_lines(broker)):
            fail("a frame of %s arrived from a client without a valid certificate" % t)
    qbtest.wait_books_exact(readers, sim.dump_path, SYMS, timeout=90)
    b = check_clean(readers, broker, "spoof over tls+tcp")
    nocert_sub.out.flush()
    if os.path.getsize(nocert_sub.out_path) != 0:
        fail("a subscriber without a client certificate received data from the tls+tcp pub")
    log("tls+tcp pub: the certified subscriber's books are exact, the other got nothing")
    log("broker: rogue_publisher=%s frames_in=%s" % (b.get("rogue_publisher"),
                                                     b.get("frames_in")))
    if b.get("rogue_publisher", 0) < 1:
        fail("refused frames not counted: %s" % b.get("rogue_publisher"))
    fl.check_alive(adapter, broker)
    fl.stop_clean(*[r.proc for r in readers], nocert_sub, adapter, broker, sim)


def case_second_adapter(st):
    syms = SYMS[:2]
    sim = sim_for(st, 18000, syms)
    broker = fl.plain_broker(st)
    readers = fl.readers_for(st, 2)
    time.sleep(0.3)
    first = st.adapter(sim, syms, name="adapter-first")
    fl.poll_until(readers, lambda: all(fl.deltas(r) >= 1000 for r in readers), 60,
                  "1000 deltas at every subscriber")
    log("starting a second adapter for the same exchange and symbols")
    second = st.adapter(sim, syms, name="adapter-second")
    a, b2 = "pid %d " % first.p.pid, "pid %d " % second.p.pid
    topics = ["%s.binance.%s" % (k, s) for k in ("book", "status") for s in syms]

    def all_logged():
        text = "\n".join(rogue_lines(broker))
        return all(('topic=%s from="%s' % (t, b2)) in text for t in topics)
    deadline = time.time() + 30
    while time.time() < deadline and not all_logged():
        time.sleep(0.2)
    fl.poll_until(readers, lambda: True, 1, "subscriber output")
    b = stats(broker.stats_path)
    if b.get("duplicates", 0) or any(bk.gaps or bk.restarts for r in readers
                                     for bk in r.books.values()):
        fail("the second adapter's frames reached the books: broker duplicates=%s, subscribers' "
             "gaps %s, restarts %s" % (b.get("duplicates"),
                                       [sum(bk.gaps for bk in r.books.values()) for r in readers],
                                       [sum(bk.restarts for bk in r.books.values())
                                        for r in readers]))
    if not all_logged():
        fail("no refusal of the second adapter logged for each of %s: %s" % (
            topics, rogue_lines(broker)[:8]))
    for t in topics:
        expect_log(broker, t, b2, a, "second adapter")
    for s in syms:
        expect_notice(readers, "book.binance.%s" % s, "owned by " + a, "second adapter")
    qbtest.wait_books_exact(readers, sim.dump_path, syms, timeout=90)
    b = check_clean(readers, broker, "second adapter")
    if b.get("rogue_publisher", 0) < len(topics):
        fail("second adapter's frames not counted: rogue_publisher=%s" % b.get("rogue_publisher"))
    if b.get("duplicates", 0):
        fail("the broker applied the second adapter's frames (duplicates=%s)" % b["duplicates"])
    log("broker: rogue_publisher=%s; kill -9 of the first adapter" % b["rogue_publisher"])
    first.kill9()
    wait_for(lambda: "ingest.owner_changed" in broker.stderr_text(), 20,
             "the second adapter to take the topics over (ingest.owner_changed)")
    for r in readers:
        r.poll()
        r.reconnected()  # forget the first adapter's book: only the second one's may match
    qbtest.wait_books_exact(readers, sim.dump_path, syms, timeout=30)
    fl.check_alive(second, broker)
    fl.stop_clean(*[r.proc for r in readers], second, broker, sim)


def case_default_ingest(st):
    need_tools()
    help_b = subprocess.run([os.path.join(st.bin, "quotebus-broker"), "--help"],
                            capture_output=True, text=True).stdout
    help_a = subprocess.run([os.path.join(st.bin, "quotebus-adapter"), "--help"],
                            capture_output=True, text=True).stdout
    for who, h in (("quotebus-broker", help_b), ("quotebus-adapter", help_a)):
        if "ipc://" + DEFAULT_INGEST not in h:
            fail("%s --help does not name the default ingest ipc://%s" % (who, DEFAULT_INGEST))
    private = os.path.dirname(DEFAULT_INGEST)
    if not os.path.exists(private):
        # made by the broker below: removed again at the end
        st.cleanup_private = private
    sim = sim_for(st, 8000, SYMS[:2])
    argv = [os.path.join(st.bin, "quotebus-broker"), "--no-spawn", "--pub", st.pub,
            "--stats-file", st.path("broker.stats")] + fl.broker_isolation(st.bin)
    broker = st.start("broker", argv)
    broker.stats_path = st.path("broker.stats")
    wait_for(lambda: os.path.exists(st.pub[len("ipc://"):]) or not broker.alive(), 15,
             "broker pub socket")
    if not broker.alive():
        if "listener.in_use" in broker.stderr_text():
            skip("another broker holds the default ingest %s" % DEFAULT_INGEST)
        fail("broker exited early:\n" + broker.stderr_text())
    listening = [ln.split("listener.listening ", 1)[1] for ln in broker.stderr_text().splitlines()
                 if "listener.listening ingest" in ln]
    if listening != ["ingest ipc://" + DEFAULT_INGEST]:
        fail("the default ingest listeners are %s, want only ipc://%s" % (listening,
                                                                          DEFAULT_INGEST))
    mode = stat.S_IMODE(os.stat(os.path.dirname(DEFAULT_INGEST)).st_mode)
    if mode != 0o700:
        fail("%s has mode %o, want 700" % (os.path.dirname(DEFAULT_INGEST), mode))
    log("default ingest: %s, directory mode %o" % (listening, mode))
    if os.geteuid() == 0:
        spoof = write_spoof(st, "BTC-USDT")
        os.chmod(st.tmp, 0o755)
        os.chmod(spoof, 0o644)

        def drop():
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
        r = subprocess.run(["nngcat", "--pub0", "--dial", "ipc://" + DEFAULT_INGEST,
                            "--file", spoof, "--count", "1"], preexec_fn=drop,
                           capture_output=True, text=True, timeout=20)
        log("as user nobody: nngcat exit %d: %s" % (r.returncode, r.stderr.strip()[-120:]))
        if r.returncode == 0 or "ermission" not in r.stderr:
            fail("another user (nobody) was not refused by the default ingest's directory "
                 "(exit %d): %s" % (r.returncode, r.stderr[-300:]))
    else:
        log("not root: the other-user check is left out")
    readers = fl.readers_for(st, 2)
    time.sleep(0.3)
    argv = [os.path.join(st.bin, "quotebus-adapter"), "binance", "--symbols", ",".join(SYMS[:2]),
            "--exsim", sim.exsim_url,
            "--ca-file", st.ca[0], "--stats-file", st.path("adapter.stats")]
    adapter = st.start("adapter", argv)  # no --broker: its default
    qbtest.wait_books_exact(readers, sim.dump_path, SYMS[:2], timeout=60)
    check_clean(readers, broker, "default ingest")
    fl.check_alive(adapter, broker)
    fl.stop_clean(*[r.proc for r in readers], adapter, broker, sim)
    if getattr(st, "cleanup_private", None):
        shutil.rmtree(st.cleanup_private, ignore_errors=True)


CASES = {k[5:]: v for k, v in globals().items() if k.startswith("case_")}

if __name__ == "__main__":
    fl.run_case_main(CASES, "sec")
