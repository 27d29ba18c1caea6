#!/usr/bin/env python3
"""quotebus installed into a temp prefix works from that prefix alone
(CTest `install_prefix`, label integration).

  cmake --install BUILD --prefix T/prefix
  then, with PATH=T/prefix/bin:/usr/bin:/bin, no LD_LIBRARY_PATH and the
  current directory a temp dir (nothing of the source tree or the build):
    - every binary, libquotebus (header, .pc, CMake package), the page and
      the documentation are in their places; the binaries' RUNPATH finds
      libquotebus in T/prefix/lib;
    - quotebus-broker --demo (temp ipc paths and free ports) starts the
      installed quotebus-exsim and quotebus-adapters, serves the installed
      page (its log names T/prefix/share/quotebus/web), and its banner
      tells the commands by their bare names (T/prefix/bin is on PATH);
    - quotebus-sub receives a book snapshot;
    - GET / and /app.js over the broker's HTTP answer the installed files;
    - the client examples, from T/prefix/share/doc/quotebus/clients/examples,
      build against the installed library with
      `pkg-config --cflags --libs quotebus` and with CMake's
      find_package(quotebus), and each runs against the demo:
      print_messages prints messages, mirror_top5 holds a live book.
Everything stops and the temp dir goes, also on failure.

Usage: test_install_prefix.py --build-dir BUILD [--keep]
Takes about 30 s.
"""
import argparse
import atexit
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from qbtest import free_port  # noqa: E402

BINARIES = ["quotebus-broker", "quotebus-adapter", "quotebus-exsim", "quotebus-sub",
            "quotebus-top"]
EXAMPLES = ["print_messages", "mirror_top5"]
TOPIC = "book.binance.BTC-USDT"
T0 = time.time()
PROCS = []


def log(msg):
    print("[%5.1f s] %s" % (time.time() - T0, msg), flush=True)


def fail(msg):
    print("FAIL: " + msg, flush=True)
    raise SystemExit(1)


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    fail("timed out after %d s waiting for %s" % (timeout, what))


def sanitizer_flags(build_dir):
    """-fsanitize=... of a sanitizer build: programs linked against its
    libquotebus need the same runtime."""
    with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
        for ln in f:
            if ln.startswith("QB_SANITIZE:"):
                v = ln.split("=", 1)[1].strip()
                return ["-fsanitize=" + v, "-fno-omit-frame-pointer"] if v else []
    return []


class Prefix:
    """The installed tree and the environment of a user who has only it."""

    def __init__(self, tmp, build_dir):
        self.root = os.path.join(tmp, "prefix")
        self.work = os.path.join(tmp, "work")
        os.makedirs(self.work)
        r = subprocess.run(["cmake", "--install", build_dir, "--prefix", self.root],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            fail("cmake --install failed:\n" + r.stdout.decode("utf-8", "replace"))
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("LD_", "PKG_CONFIG", "CMAKE_"))}
        self.env["PATH"] = "%s:/usr/bin:/bin" % os.path.join(self.root, "bin")
        self.env["PKG_CONFIG_PATH"] = os.path.join(self.root, "lib", "pkgconfig")
        self.env["CMAKE_PREFIX_PATH"] = self.root

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def run(self, argv, timeout=120):
        r = subprocess.run(argv, cwd=self.work, env=self.env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
        return r.returncode, r.stdout.decode("utf-8", "replace")

    def start(self, name, argv):
        out = open(os.path.join(self.work, name + ".out"), "wb")
        err = open(os.path.join(self.work, name + ".err"), "wb")
        p = subprocess.Popen(argv, cwd=self.work, env=self.env, stdout=out, stderr=err,
                             start_new_session=True)
        p.name, p.out_path, p.err_path = name, out.name, err.name
        PROCS.append(p)
        return p


def read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def stop(p, timeout=15):
    """SIGTERM to the process group (the broker's children too); the exit code."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
    return p.returncode


def stop_all():
    for p in reversed(PROCS):
        stop(p)


def check_layout(pre):
    want = ["bin/" + b for b in BINARIES] + [
        "include/quotebus.h", "lib/libquotebus.so", "lib/pkgconfig/quotebus.pc",
        "lib/cmake/quotebus/quotebusConfig.cmake", "share/quotebus/web/index.html",
        "share/quotebus/web/app.js", "share/doc/quotebus/README.md",
        "share/doc/quotebus/proto/PROTOCOL.md",
        "share/doc/quotebus/clients/examples/README.md",
        "share/doc/quotebus/clients/examples/CMakeLists.txt",
        "share/doc/quotebus/clients/python/quotebus_ws_example.py",
        "share/doc/quotebus/clients/python/README.md"] + [
        "share/doc/quotebus/clients/examples/%s.c" % e for e in EXAMPLES]
    missing = [f for f in want if not os.path.exists(pre.path(f))]
    if missing:
        fail("not installed: %s" % ", ".join(missing))
    if os.path.exists(pre.path("share", "doc", "quotebus", "docker")):
        fail("docker/ is installed with the documentation (it is the deployment's, not a "
             "user's)")
    log("installed: %d binaries, libquotebus with its header, .pc and CMake package, the page, "
        "the documentation" % len(BINARIES))
    lib = os.path.realpath(pre.path("lib"))
    for b in BINARIES:
        rc, out = pre.run(["readelf", "-d", pre.path("bin", b)])
        if "$ORIGIN/../lib" not in out:
            fail("%s has no RUNPATH $ORIGIN/../lib:\n%s" % (b, out))
    rc, out = pre.run(["ldd", pre.path("bin", "quotebus-sub")])
    m = re.search(r"libquotebus\.so\.\d+ => (\S+)", out)
    if not m or os.path.dirname(os.path.realpath(m.group(1))) != lib:
        fail("the installed quotebus-sub does not load libquotebus from %s:\n%s" % (lib, out))
    log("RUNPATH $ORIGIN/../lib: quotebus-sub loads %s without LD_LIBRARY_PATH" % m.group(1))


def start_demo(pre, tmp):
    http = free_port()
    run = os.path.join(tmp, "run")
    os.makedirs(run)
    urls = {"pub": "ipc://%s/pub.ipc" % run, "snapshot": "ipc://%s/snapshot.ipc" % run,
            "http": "http://127.0.0.1:%d/" % http}
    broker = pre.start("broker", [
        "quotebus-broker", "--demo", "--demo-port", str(free_port()),
        "--ingest", "ipc://%s/ingest.ipc" % run, "--pub", urls["pub"],
        "--snapshot", urls["snapshot"], "--http-listen", "127.0.0.1:%d" % http,
        "--stats-file", os.path.join(run, "broker.stats")])

    def banner():
        if broker.poll() is not None:
            fail("quotebus-broker --demo exited %s:\n%s" % (broker.returncode,
                                                           read(broker.err_path)[-3000:]))
        out = read(broker.out_path)
        return out if out.count("=" * 40) >= 2 else None
    out = wait_for(banner, 30, "the broker's start banner")
    lines = [ln.strip() for ln in out.splitlines()]
    for want in ("offline demo", urls["pub"], urls["snapshot"], urls["http"]):
        if want not in out:
            fail("the banner of the installed broker lacks %r:\n%s" % (want, out))
    # Bare names: the prefix's bin/ is on PATH.
    for want in ("quotebus-sub --connect %s book.binance." % urls["pub"],
                 "quotebus-top --connect %s --snapshot %s BTC" % (urls["pub"], urls["snapshot"])):
        if want not in lines:
            fail("the banner of the installed broker lacks the line %r:\n%s" % (want, out))
    web = os.path.realpath(pre.path("share", "quotebus", "web"))
    err = wait_for(lambda: (lambda e: e if "broker.web_root" in e else None)(
        read(broker.err_path)), 10, "the broker's web root log line")
    if "serving the page from %s" % web not in err:
        fail("the installed broker does not serve the installed page (%s):\n%s" % (
            web, "\n".join(ln for ln in err.splitlines() if "web_root" in ln)))
    log("quotebus-broker --demo from the prefix: banner with bare command names, page from %s"
        % web)
    return broker, urls


def check_sub(pre, urls):
    sub = pre.start("sub", ["quotebus-sub", "--connect", urls["pub"], "book."])

    def snapshot():
        if sub.poll() is not None:
            fail("quotebus-sub exited %s:\n%s" % (sub.returncode, read(sub.err_path)))
        for ln in read(sub.out_path).splitlines():
            if '"type":"snapshot"' in ln.replace(" ", "") and '"bids"' in ln:
                return ln
        return None
    ln = wait_for(snapshot, 60, "a book snapshot at quotebus-sub")
    stop(sub)
    log("quotebus-sub received a book: %s..." % ln[:100])


def check_http(pre, urls):
    for name, path in (("index.html", ""), ("app.js", "app.js")):
        with urllib.request.urlopen(urls["http"] + path, timeout=10) as resp:
            body = resp.read()
            status = resp.status
        with open(pre.path("share", "quotebus", "web", name), "rb") as f:
            want = f.read()
        if status != 200 or body != want:
            fail("GET %s%s: %d, %d bytes; want the installed %s (%d bytes)" % (
                urls["http"], path, status, len(body), name, len(want)))
    log("GET / and /app.js over the broker's HTTP: the installed files")


def build_examples(pre, tmp, san):
    """{name: executable} of each example built both ways."""
    src = pre.path("share", "doc", "quotebus", "clients", "examples")
    rc, flags = pre.run(["pkg-config", "--cflags", "--libs", "quotebus"])
    if rc != 0:
        fail("pkg-config --cflags --libs quotebus: %s" % flags)
    rc, libdir = pre.run(["pkg-config", "--variable=libdir", "quotebus"])
    bins = {}
    for ex in EXAMPLES:
        out = os.path.join(tmp, ex + "-pkgconfig")
        cmd = ["cc", "-std=c11", "-Wall", "-Wextra", "-Werror"] + san + \
            [os.path.join(src, ex + ".c")] + shlex.split(flags) + \
            ["-Wl,-rpath," + libdir.strip(), "-o", out]
        rc, msg = pre.run(cmd)
        if rc != 0:
            fail("%s does not build with pkg-config:\n%s\n%s" % (ex, " ".join(cmd), msg))
        bins[ex + " (pkg-config)"] = out
    cm = os.path.join(tmp, "examples-cmake")
    flags = " ".join(san)
    rc, msg = pre.run(["cmake", "-S", src, "-B", cm, "-DCMAKE_C_FLAGS=" + flags,
                       "-DCMAKE_EXE_LINKER_FLAGS=" + flags])
    if rc != 0:
        fail("the examples' find_package(quotebus) project does not configure:\n" + msg)
    rc, msg = pre.run(["cmake", "--build", cm])
    if rc != 0:
        fail("the examples' find_package(quotebus) project does not build:\n" + msg)
    for ex in EXAMPLES:
        bins[ex + " (find_package)"] = os.path.join(cm, ex)
    log("examples built against the installed library with pkg-config and find_package")
    return bins


def run_examples(pre, urls, bins):
    for name, exe in sorted(bins.items()):
        if name.startswith("print_messages"):
            rc, out = pre.run([exe, "--connect", urls["pub"], "--count", "30", "book.",
                               "trade."], timeout=60)
            lines = out.splitlines()
            msgs = [ln for ln in lines if re.match(r"^(book|trade)\.\S+ \S+ seq=\d+", ln)]
            if rc != 0 or len(msgs) != 30:
                fail("%s: exit %d, %d messages:\n%s" % (name, rc, len(msgs), out[-2000:]))
            log("%s: 30 messages, e.g. %s" % (name, msgs[-1]))
        else:
            rc, out = pre.run([exe, "--connect", urls["pub"], "--snapshot", urls["snapshot"],
                               "--seconds", "3", TOPIC], timeout=60)
            final = [ln for ln in out.splitlines() if ln.startswith("FINAL ")]
            bids = [ln for ln in out.splitlines() if ln.startswith("bid ")]
            asks = [ln for ln in out.splitlines() if ln.startswith("ask ")]
            if rc != 0 or not final or final[0].split()[3] != "live" or not bids or not asks:
                fail("%s: exit %d, no live book:\n%s" % (name, rc, out[-2000:]))
            log("%s: %s, %d bids, %d asks" % (name, final[0], len(bids), len(asks)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    build_dir = os.path.abspath(args.build_dir)
    tmp = tempfile.mkdtemp(prefix="qb-install-")
    atexit.register(lambda: None if args.keep else shutil.rmtree(tmp, ignore_errors=True))
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    log("temp dir %s" % tmp)
    pre = Prefix(tmp, build_dir)
    ok = False
    try:
        check_layout(pre)
        broker, urls = start_demo(pre, tmp)
        check_sub(pre, urls)
        check_http(pre, urls)
        bins = build_examples(pre, tmp, sanitizer_flags(build_dir))
        run_examples(pre, urls, bins)
        rc = stop(broker)
        if rc != 0:
            fail("quotebus-broker --demo exited %s on SIGTERM:\n%s" % (
                rc, read(broker.err_path)[-3000:]))
        ok = True
    finally:
        if not ok:
            for p in PROCS:
                print("---- %s stderr (last 30 lines) ----\n%s" % (
                    p.name, "\n".join(read(p.err_path).splitlines()[-30:])), flush=True)
    log("PASS install_prefix")


if __name__ == "__main__":
    main()
