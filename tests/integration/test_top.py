#!/usr/bin/env python3
"""Integration tests of quotebus-top's screen, with real processes:

  quotebus-exsim (one or two) -> quotebus-adapter binance + htx
      -> quotebus-broker (+ snapshot service) -> quotebus-top --frames N

quotebus-top prints each screen as plain lines ending with "--" when its
stdout is not a terminal, so these cases read its output from a file (the
terminal handling itself is test_client.py's `top` case, under tmux).

Cases:
  precision  every number of a book at that book's own precision (BTC-USDT:
             prices 2 decimals, sizes 5; ETH-USDT: 2 and 4; never Binance's
             8-decimal text), decimal points aligned within a symbol's block,
             and the consolidated quote of two exchanges that quote around
             one price not crossed ("consolidated").
  crossed    two simulators with different seeds, so one exchange's bid is
             above the other's ask: the BEST row says "!crossed" exactly when
             the screen's own rows are crossed, and --log-level info logs
             top.crossed.
  log_level  --log-level is listed by --help, refused when unknown (exit 2),
             debug shows top's frame lines, error hides its info lines.

Usage: test_top.py --bin-dir DIR --case NAME
"""
import os
import re
import subprocess
import sys
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qbtest  # noqa: E402
from qbtest import fail, log, skip  # noqa: E402

ROW = re.compile(r"^\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$")
NUMERIC = (1, 2, 3, 4, 5)  # BID SIZE, BID, ASK, ASK SIZE, SPREAD: indexes of a row's fields


def top_bin(st):
    path = os.path.join(st.bin, "quotebus-top")
    if not os.access(path, os.X_OK):
        skip("quotebus-top not built in %s" % st.bin)
    return path


def frames(text):
    """The complete screens of quotebus-top's plain output, oldest first."""
    parts = text.split("--\n")
    return [p for p in parts[:-1] if p.strip()]


def blocks(frame):
    """{symbol: [(line, [exchange, bidsize, bid, ask, asksize, spread, age, state])]}"""
    out, sym = {}, None
    for ln in frame.splitlines():
        if ln and not ln.startswith(" ") and not ln.startswith("quotebus-top"):
            sym = ln.strip()
            out[sym] = []
            continue
        m = ROW.match(ln)
        if sym and m and m.group(1) != "EXCHANGE":
            out[sym].append((ln, list(m.groups())))
    return out


def start_stack(st, sims, symbols):
    """A broker with its snapshot service and one adapter per (exchange,
    simulator); returns the broker and the snapshot address."""
    snap = "ipc://%s/snapshot.ipc" % st.tmp
    broker = st.broker(extra=["--snapshot", snap])
    for ex, sim in sims:
        st.adapter(sim, symbols, exchange=ex, name="adapter-" + ex)
    return broker, snap


def run_top(st, snap, args, n_frames, name="top", log_level=None):
    """Runs quotebus-top for n_frames screens (100 ms apart); returns
    (stdout, stderr)."""
    argv = [top_bin(st), "--connect", st.pub, "--snapshot", snap, "--interval-ms", "100",
            "--frames", str(n_frames)] + (["--log-level", log_level] if log_level else []) + list(args)
    with open(st.path(name + ".out"), "wb") as out, open(st.path(name + ".err"), "wb") as err:
        r = subprocess.run(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                           timeout=n_frames * 0.1 + 60)
    with open(st.path(name + ".out")) as f:
        text = f.read()
    with open(st.path(name + ".err")) as f:
        errtext = f.read()
    if r.returncode != 0:
        fail("quotebus-top exited %d:\n%s" % (r.returncode, errtext[-3000:]))
    return text, errtext


def live_frames(text, symbols, exchanges):
    """Screens where every (symbol, exchange) row is live."""
    out = []
    for fr in frames(text):
        b = blocks(fr)
        ok = True
        for sym in symbols:
            rows = {r[0]: r for _, r in b.get(sym, [])}
            if any(ex not in rows or rows[ex][7] != "live" for ex in exchanges):
                ok = False
        if ok:
            out.append(b)
    return out


def decimals(text):
    return len(text.split(".", 1)[1]) if "." in text else 0


def case_precision(st):
    sim = st.exsim(["--rate", "200", "--trade-rate", "5", "--seed", "11"], tls=False)
    broker, snap = start_stack(st, [("binance", sim), ("htx", sim)], ["BTC-USDT", "ETH-USDT"])
    # BTC-USDT: tick 0.01, lot 0.00001; ETH-USDT: tick 0.01, lot 0.0001 (exsim_market.c)
    want = {"BTC-USDT": (2, 5), "ETH-USDT": (2, 4)}
    text, _ = run_top(st, snap, ["BTC-USDT", "ETH-USDT"], 80)
    good = live_frames(text, want, ("binance", "htx"))
    if len(good) < 10:
        fail("fewer than 10 screens with every book live:\n%s" % text[-4000:])
    crossed = 0
    for b in good[-10:]:
        for sym, (px_dec, qty_dec) in want.items():
            rows = b[sym]
            for line, r in rows:
                name = r[0]
                cols = {"bid size": r[1], "bid": r[2], "ask": r[3], "ask size": r[4],
                        "spread": r[5]}
                for col, v in cols.items():
                    if name == "BEST" and col in ("bid size", "ask size"):
                        continue  # the exchanges' names
                    n = qty_dec if "size" in col else px_dec
                    if decimals(v) != n:
                        fail("%s %s %s: %r has %d decimals, want %d (the instrument's own "
                             "precision):\n%s" % (sym, name, col, v, decimals(v), n, line))
                    Decimal(v)
            # Points aligned: in each numeric column every row's '.' is at
            # the same character position.
            for g in NUMERIC:
                if g in (1, 4) and any(r[0] == "BEST" for _, r in rows):
                    lines = [(ln, r) for ln, r in rows if r[0] != "BEST"]
                else:
                    lines = rows
                pos = set()
                for ln, r in lines:
                    spans = [m.span() for m in re.finditer(r"\S+", ln)]
                    start, end = spans[g]
                    tok = ln[start:end]
                    pos.add(start + tok.index(".") if "." in tok else end)
                if len(pos) != 1:
                    fail("%s: column %d not aligned at the point:\n%s" %
                         (sym, g, "\n".join(ln for ln, _ in lines)))
            best = [r for _, r in rows if r[0] == "BEST"][0]
            if Decimal(best[2]) >= Decimal(best[3]):
                crossed += 1
                if best[7] != "!crossed":
                    fail("%s: BEST is crossed but not flagged: %s" % (sym, best))
            elif best[7] != "consolidated":
                fail("%s: BEST state %r" % (sym, best[7]))
    if crossed:
        fail("the consolidated quote of two exchanges of one simulator was crossed in %d of 20 "
             "screens (the simulator's exchanges should quote around one price)" % crossed)
    log("quotebus-top screen:\n" + frames(text)[-1])
    qbtest_stop(st)


def case_crossed(st):
    # Two simulators, different seeds: the pair's price differs by tens of
    # USDT between them, so the consolidated quote is crossed.
    sim_a = st.exsim(["--rate", "100", "--trade-rate", "0", "--seed", "1"], tls=False, name="exsim-a")
    sim_b = st.exsim(["--rate", "100", "--trade-rate", "0", "--seed", "2"], tls=False, name="exsim-b")
    broker, snap = start_stack(st, [("binance", sim_a), ("htx", sim_b)], ["BTC-USDT"])
    text, _ = run_top(st, snap, ["BTC-USDT"], 60)
    good = live_frames(text, ["BTC-USDT"], ("binance", "htx"))
    if len(good) < 5:
        fail("fewer than 5 screens with both books live:\n%s" % text[-4000:])
    n_crossed = 0
    for b in good:
        rows = {r[0]: r for _, r in b["BTC-USDT"]}
        bid = max(Decimal(rows[ex][2]) for ex in ("binance", "htx"))
        ask = min(Decimal(rows[ex][3]) for ex in ("binance", "htx"))
        best = rows["BEST"]
        if Decimal(best[2]) != bid or Decimal(best[3]) != ask:
            fail("BEST %s / %s is not the best of the rows (%s / %s)" % (best[2], best[3], bid, ask))
        if bid >= ask:
            n_crossed += 1
            if best[7] != "!crossed":
                fail("crossed consolidated quote (bid %s >= ask %s) not flagged on the BEST row:\n%s"
                     % (bid, ask, "\n".join(ln for ln, _ in b["BTC-USDT"])))
        elif best[7] != "consolidated":
            fail("uncrossed BEST row says %r" % best[7])
    if n_crossed == 0:
        fail("the two simulators' books never crossed; the test needs them to")
    # The change is also said on stderr at --log-level info.
    _, errtext = run_top(st, snap, ["BTC-USDT"], 30, name="top-info", log_level="info")
    if "top.crossed sym=BTC-USDT" not in errtext:
        fail("no top.crossed log line at --log-level info:\n" + errtext[-2000:])
    log("crossed in %d of %d screens, each flagged; e.g.:\n%s" %
        (n_crossed, len(good), "\n".join(ln for ln, _ in good[-1]["BTC-USDT"])))
    qbtest_stop(st)


def case_log_level(st):
    top = top_bin(st)
    helptext = subprocess.run([top, "--help"], capture_output=True, text=True).stdout
    if "--log-level" not in helptext:
        fail("--help does not list --log-level:\n" + helptext)
    base = [top, "--connect", "ipc://%s/none.ipc" % st.tmp, "--snapshot", "", "--frames", "2",
            "--interval-ms", "20"]
    r = subprocess.run(base + ["--log-level", "loud"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=30)
    if r.returncode != 2 or "--log-level" not in r.stderr:
        fail("--log-level loud: exit %d, stderr %r (want 2 and a message)" % (r.returncode, r.stderr))
    r = subprocess.run(base + ["--log-level", "debug"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=30)
    if r.returncode != 0 or "top.frame" not in r.stderr or "top.started" not in r.stderr:
        fail("--log-level debug: exit %d, stderr %r" % (r.returncode, r.stderr))
    r = subprocess.run(base + ["--log-level", "error"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=30)
    if r.returncode != 0 or "top.started" in r.stderr:
        fail("--log-level error: exit %d, stderr %r" % (r.returncode, r.stderr))
    log("--log-level: listed, checked, obeyed")


def qbtest_stop(st):
    """SIGTERM every process and require exit 0 (under ASan: no leak)."""
    for p in reversed(st.procs):
        rc = p.stop()
        if rc != 0:
            with open(p.err_path, "rb") as f:
                err = f.read().decode("utf-8", "replace")
            fail("%s exited %s:\n%s" % (p.name, rc, err[-6000:]))


CASES = qbtest.cases_of(globals())

if __name__ == "__main__":
    qbtest.run_case_main(CASES, "top")
