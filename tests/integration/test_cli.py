#!/usr/bin/env python3
"""The command line of every binary, and how the processes start and stop.

Cases (one CTest test each; usage: test_cli.py --bin-dir DIR [--case NAME]):
  basic          (the default) every binary answers --help and --version,
                 rejects unknown options and unknown config keys with exit code 2,
                 and refuses out-of-range values
  help           every --help shows each default one way, "(default: VALUE)" at the
                 end of the option's line: no "[VALUE]", no "(default VALUE)", no
                 default written into a description; every option with a default
                 shows it; no line or example command twice; the adapter's examples
                 use the simulator's port that quotebus-broker --demo uses
  config         a config error names the program and the file
                 ("quotebus-broker: config FILE: ..."); a directory says so
  exsim_signal   quotebus-exsim says which signal stopped it (number and name)
  demo_shutdown  quotebus-broker --demo stopped by Ctrl-C (SIGINT to the process
                 group) or by SIGTERM to the broker alone: not one WARN or ERROR line
                 in its whole stderr (adapters and simulator included), every process
                 exits 0
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qbtest import free_port  # noqa: E402

BINS = ["quotebus-broker", "quotebus-adapter", "quotebus-sub", "quotebus-top", "quotebus-exsim"]
# Benchmark programs with the same option table (checked when built).
BENCH_BINS = ["qb-bench-ws", "qb-bench-json", "qb-bench-consumer", "qb-bench-nng-recv"]

# Placeholders of numeric options: their value always exists, so --help
# always shows it.
NUMERIC_ARGS = {"N", "MS", "BYTES", "PORT", "SECONDS", "S", "PID", "CODE"}
# String and list options that have a default (computed at run time or
# not), by binary: --help must show it.
STRING_DEFAULTS = {
    "quotebus-broker": ["--ingest", "--pub", "--adapter", "--snapshot", "--log-level",
                        "--http-listen", "--web-root", "--http-origin"],
    "quotebus-adapter": ["--symbols", "--ws-url", "--rest-url", "--broker", "--log-level"],
    "quotebus-sub": ["--connect", "--snapshot", "--log-level"],
    "quotebus-top": ["--connect", "--snapshot", "--log-level"],
    "quotebus-exsim": ["--exchange", "--host", "--symbols", "--drop-rate", "--bad-input-kinds",
                       "--log-level"],
}

# "  --name ARG   help" (a long left column leaves one space only).
OPT_LINE = re.compile(r"^  (--[a-z0-9-]+)((?: [A-Z][A-Za-z0-9:,|_.-]*)|(?: [a-z]+\|[a-z|]+))?"
                      r"\s+(.*)$")
DEFAULT_AT_END = re.compile(r" \(default: ([^()]*(?:\([^()]*\)[^()]*)*)\)$")


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, what, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL %s%s" % (what, (": " + detail) if detail else ""), flush=True)

    def done(self):
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        return 1 if self.failed else 0


def run(argv, timeout=20):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


# ---- basic ----------------------------------------------------------------

def case_basic(bin_dir, c):
    with tempfile.TemporaryDirectory() as tmp:
        bad_cfg = os.path.join(tmp, "bad.json")
        with open(bad_cfg, "w") as f:
            json.dump({"no-such-option": 1}, f)
        for b in BINS:
            exe = os.path.join(bin_dir, b)
            r = run([exe, "--help"])
            c.check("%s --help exits 0 with usage" % b, r.returncode == 0 and
                    b"Usage: " + b.encode() in r.stdout and b"--config" in r.stdout)
            r = run([exe, "--version"])
            c.check("%s --version" % b,
                    r.returncode == 0 and r.stdout.startswith(b.encode() + b" "))
            r = run([exe, "--no-such-flag"])
            c.check("%s unknown flag exits 2" % b, r.returncode == 2 and r.stderr)
            r = run([exe, "--config", bad_cfg, "--help"])
            c.check("%s --help wins over config" % b, r.returncode == 0)
            r = run([exe, "--config", bad_cfg])
            c.check("%s unknown config key exits 2" % b,
                    r.returncode == 2 and b"no-such-option" in r.stderr)
            r = run([exe, "--config", os.path.join(tmp, "missing.json")])
            c.check("%s missing config exits 2" % b, r.returncode == 2)
            if b == "quotebus-adapter":
                # --batch-maps takes 1..64: out of range is refused at start
                for v in ("0", "65", "-1"):
                    r = run([exe, "binance", "--symbols", "BTC-USDT", "--batch-maps", v])
                    c.check("%s --batch-maps %s exits 2" % (b, v),
                            r.returncode == 2 and b"out of range" in r.stderr)


# ---- help -----------------------------------------------------------------

def help_options(text):
    """{option: (arg, help)} of the Options section of a --help text."""
    opts = {}
    inside = False
    for ln in text.splitlines():
        if ln == "Options:":
            inside = True
            continue
        if inside and not ln.strip():
            break
        if inside:
            m = OPT_LINE.match(ln)
            if m:
                opts[m.group(1)] = ((m.group(2) or "").strip(), m.group(3))
    return opts


def check_help(b, text, c):
    opts = help_options(text)
    c.check("%s --help has options" % b, len(opts) >= 3, "%d found" % len(opts))
    for name, (arg, h) in opts.items():
        what = "%s %s" % (b, name)
        c.check(what + ": at most one default", h.count("(default:") <= 1, h)
        m = DEFAULT_AT_END.search(h)
        rest = h[:m.start()] if m else h
        c.check(what + ": the default ends the line", "(default:" not in rest, h)
        c.check(what + ": no [VALUE] default", not re.search(r"\[[^\]]*\]\s*$", rest), h)
        # Only one way: "default" appears nowhere else ("the exchange
        # default" is what a 0 means for some limits, not the option's default).
        c.check(what + ": no default in the description",
                "default" not in rest.replace("exchange default", ""), h)
        if arg in NUMERIC_ARGS:
            c.check(what + ": a number's default is shown",
                    m is not None and re.fullmatch(r"-?\d+", m.group(1)) is not None, h)
        if m is not None:
            c.check(what + ": the default is not empty", m.group(1).strip() != "", h)
    for name in STRING_DEFAULTS.get(b, []):
        c.check("%s %s shows its default" % (b, name),
                name in opts and DEFAULT_AT_END.search(opts[name][1]) is not None,
                opts.get(name, ("", "(missing)"))[1])
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and ln.strip() != "\\"]
    dups = sorted({ln for ln in lines if lines.count(ln) > 1})
    c.check("%s --help: no line twice" % b, not dups, repr(dups[:3]))
    # Example commands: "  quotebus-x ARGS   explanation" (the explanation
    # after two spaces or on the next lines).
    cmds = []
    for ln in text.splitlines():
        s = ln.strip()
        if s.startswith(b + " ") or s == b:
            cmds.append(re.split(r"\s{2,}", s)[0].rstrip(" \\"))
    dup_cmds = sorted({x for x in cmds if cmds.count(x) > 1})
    c.check("%s --help: no example twice" % b, not dup_cmds, repr(dup_cmds))
    return opts


def case_help(bin_dir, c):
    helps = {}
    for b in BINS + BENCH_BINS:
        exe = os.path.join(bin_dir, b)
        if b in BENCH_BINS and not os.access(exe, os.X_OK):
            log("%s not built: skipped" % b)
            continue
        r = run([exe, "--help"])
        c.check("%s --help exits 0" % b, r.returncode == 0, r.stderr.decode()[-300:])
        text = r.stdout.decode("utf-8", "replace")
        helps[b] = check_help(b, text, c), text
    # The adapter's simulator examples point at the demo's simulator port.
    bopts, _ = helps["quotebus-broker"]
    m = DEFAULT_AT_END.search(bopts.get("--demo-port", ("", ""))[1])
    demo_port = m.group(1) if m else None
    xopts, _ = helps["quotebus-exsim"]
    m = DEFAULT_AT_END.search(xopts.get("--port", ("", ""))[1])
    c.check("quotebus-exsim --port defaults to quotebus-broker --demo-port",
            demo_port is not None and m is not None and m.group(1) == demo_port,
            "demo %s, exsim %s" % (demo_port, m.group(1) if m else None))
    _, atext = helps["quotebus-adapter"]
    ports = re.findall(r"(?:wss?|https?)://127\.0\.0\.1:(\d+)", atext)
    c.check("quotebus-adapter examples use the simulator's port %s" % demo_port,
            ports and all(p == demo_port for p in ports), "ports %s" % ports)
    log("checked --help of %s" % ", ".join(sorted(helps)))


# ---- config ---------------------------------------------------------------

def case_config(bin_dir, c):
    with tempfile.TemporaryDirectory() as tmp:
        unknown = os.path.join(tmp, "unknown.json")
        with open(unknown, "w") as f:
            json.dump({"no-such-option": 1}, f)
        wrong = os.path.join(tmp, "wrong.json")
        with open(wrong, "w") as f:
            json.dump({"log-level": 5}, f)
        missing = os.path.join(tmp, "missing.json")
        cases = [(tmp, "is a directory"), (unknown, 'unknown option "no-such-option"'),
                 (wrong, 'wrong type for "log-level"'), (missing, "No such file or directory")]
        for b in BINS:
            exe = os.path.join(bin_dir, b)
            for path, says in cases:
                r = run([exe, "--config", path])
                err = r.stderr.decode("utf-8", "replace")
                want = "%s: config %s: %s" % (b, path, says)
                c.check("%s --config %s" % (b, os.path.basename(path) or path),
                        r.returncode == 2 and err.startswith(want),
                        "exit %s, stderr %r, want it to begin with %r" % (r.returncode,
                                                                          err[:200], want))


# ---- exsim_signal ---------------------------------------------------------

def case_exsim_signal(bin_dir, c):
    for sig, num, name in ((signal.SIGINT, 2, "SIGINT"), (signal.SIGTERM, 15, "SIGTERM")):
        with tempfile.TemporaryDirectory() as tmp:
            port_file = os.path.join(tmp, "port")
            err_path = os.path.join(tmp, "err")
            with open(err_path, "wb") as err:
                p = subprocess.Popen([os.path.join(bin_dir, "quotebus-exsim"), "--port", "0",
                                      "--port-file", port_file], stdout=subprocess.DEVNULL,
                                     stderr=err)
                try:
                    deadline = time.time() + 20
                    while time.time() < deadline and not (os.path.exists(port_file) and
                                                          os.path.getsize(port_file) > 0):
                        time.sleep(0.05)
                    p.send_signal(sig)
                    rc = p.wait(15)
                finally:
                    if p.poll() is None:
                        p.kill()
                        p.wait()
            with open(err_path) as f:
                text = f.read()
            line = [ln for ln in text.splitlines() if "exsim_stopping" in ln]
            c.check("quotebus-exsim stopped by %s exits 0" % name, rc == 0, "exit %s" % rc)
            c.check("quotebus-exsim says signal=%d (%s)" % (num, name),
                    line and ("signal=%d (%s)" % (num, name)) in line[0], repr(line))
            if line:
                log(line[0])


# ---- demo_shutdown --------------------------------------------------------



LIVE = re.compile(r" adapter\.(\w+) feed_state symbol=(\S+) state=live")
WANT_LIVE = {("binance", "BTC-USDT"), ("binance", "ETH-USDT"), ("htx", "BTC-USDT"),
             ("htx", "ETH-USDT"), ("bithumb", "BTC-KRW"), ("bithumb", "ETH-KRW")}


def demo_run(bin_dir, c, how):
    """Starts quotebus-broker --demo (temporary ports and sockets), waits until
    every default book is live, stops it (how: "ctrl-c" = SIGINT to the
    process group, as a terminal does; "sigterm" = SIGTERM to the broker,
    which stops its children), and checks the whole stderr."""
    with tempfile.TemporaryDirectory(prefix="qb-cli-demo-") as tmp:
        err_path = os.path.join(tmp, "err")
        argv = [os.path.join(bin_dir, "quotebus-broker"), "--demo",
                "--demo-port", str(free_port()),
                "--ingest", "ipc://%s/ingest.ipc" % tmp, "--pub", "ipc://%s/pub.ipc" % tmp,
                "--snapshot", "ipc://%s/snapshot.ipc" % tmp, "--http-listen", "off"]
        with open(err_path, "wb") as err:
            p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err,
                                 start_new_session=True)
            rc = None
            try:
                deadline = time.time() + 90
                live = set()
                while time.time() < deadline and live != WANT_LIVE and p.poll() is None:
                    time.sleep(0.2)
                    with open(err_path, errors="replace") as f:
                        live = {m.groups() for m in LIVE.finditer(f.read())} & WANT_LIVE
                c.check("demo (%s): every book live" % how, live == WANT_LIVE,
                        "live: %s" % sorted(live))
                time.sleep(1.0)  # data flowing for a while, as when a user looks at it
                if how == "ctrl-c":
                    os.killpg(p.pid, signal.SIGINT)
                else:
                    p.send_signal(signal.SIGTERM)
                rc = p.wait(30)
            finally:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        with open(err_path, errors="replace") as f:
            text = f.read()
    bad = [ln for ln in text.splitlines() if re.search(r"\b(WARN|ERROR)\b", ln)]
    c.check("demo (%s): exit 0" % how, rc == 0, "exit %s" % rc)
    exits = [ln for ln in text.splitlines() if " child.exit " in ln]
    c.check("demo (%s): the simulator and the 3 adapters exit 0" % how,
            len(exits) == 4 and all(" exit code 0 " in ln for ln in exits), "\n".join(exits))
    c.check("demo (%s): no WARN or ERROR line on stderr" % how, not bad,
            "\n" + "\n".join(bad[:20]))
    stops = [ln for ln in text.splitlines() if "stopping" in ln or "while stopping" in ln]
    log("demo (%s): %d stderr lines, %d WARN/ERROR; shutdown lines:\n%s" %
        (how, len(text.splitlines()), len(bad), "\n".join(stops[:12])))


def case_demo_shutdown(bin_dir, c):
    demo_run(bin_dir, c, "ctrl-c")
    demo_run(bin_dir, c, "sigterm")


CASES = {k[5:]: v for k, v in globals().items() if k.startswith("case_")}


def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir")
    ap.add_argument("--case", default="basic", choices=sorted(CASES))
    ap.add_argument("--list-cases", action="store_true",
                    help="print the case names, one a line, and exit (CMake reads them)")
    args = ap.parse_args()
    if args.list_cases:
        for name in CASES:
            print(name)
        return 0
    if args.bin_dir is None:
        ap.error("--bin-dir is required")
    c = Checks()
    CASES[args.case](os.path.abspath(args.bin_dir), c)
    return c.done()


if __name__ == "__main__":
    sys.exit(main())
