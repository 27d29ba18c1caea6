#!/usr/bin/env python3
"""The docker-compose deployment, run for real (CTest label `docker`).

  private dockerd (qbdocker.Engine)
    └─ image quotebus:latest, built here FROM scratch with the layout of
       docker/Dockerfile's runtime stage: its COPY lines resolved against
       this build (--build-dir: /src/build/X of the Dockerfile's build
       stage is BUILD_DIR/X) and the source tree, the shared libraries the
       binaries load (ldd), /bin/sh for the CMD-SHELL healthchecks, the CA
       store, passwd/group with its non-root user; its USER, WORKDIR, EXPOSE,
       HEALTHCHECK and CMD lines verbatim; openssl, mkdir, chmod and rm for
       make-certs.sh (the certs service). (The Dockerfile's own build needs
       the Debian mirror inside a container; test_dockerfile.py checks it
       statically.)
    └─ docker-compose -p qbtestPID -f docker/docker-compose.yml
           -f T/compose.test.yml --env-file T/test.env up -d
       (the README's demo command: T/test.env is docker/demo.env, which
       enables the demo profile and points the adapters at ws://exsim:7790,
       plus the test's settings below), with a copy
       of docker/config whose exsim.json adds --events/--dump (the override
       file only mounts a host directory for that dump and names the compose
       network's bridge, for the stale clean-up) and free host ports.

From the host, like a user's program:
  - quotebus-sub --connect tcp://127.0.0.1:PUB book.   and
  - a websocket client (python3-websockets) on ws://127.0.0.1:HTTP/ws
rebuild every book (binance, htx BTC-USDT ETH-USDT; bithumb BTC-KRW ETH-KRW)
with qbtest.Book: snapshot then contiguous deltas, never crossed, no gap.
Every service must turn healthy (compose healthchecks, depends_on
service_healthy for `watch`), and `watch` must print feed states. Mid-stream
the binance adapter process is killed (SIGKILL from the host, a crash; see
adapter_pid): the restart policy must bring it back, it must turn healthy
again, and at the end every book of both clients must equal the
simulator's final book (--dump) level by level, with the same last id; the
published snapshot service must give the same books, /health and the web
page must answer on the published http port. Then the README's
"scale to more symbols": one more binance symbol in the env file and
`up -d` recreate only the binance service, and the new book flows.
Then compose down -v and the engine stop; all of it also on failure.

Exit 77 (skip) with the reason when no engine can be started here, by the
suite's skip policy (qbdocker.skip: under CI a failure, unless no install
can change the reason). What the test needs on the host
(python3-websockets, python3-msgpack, nngcat) is scripts/install-deps.sh's:
missing, the test skips by the same policy.
"""
import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import qbdocker  # noqa: E402
import qbtest  # noqa: E402  (the integration tests' exact books: Book, Reader)
from qbdocker import DOCKER_DIR, SRC, fail, log, skip, skip_cannot_run_here  # noqa: E402

USDT = ["BTC-USDT", "ETH-USDT"]
KRW = ["BTC-KRW", "ETH-KRW"]
BOOKS = {"binance": USDT, "htx": USDT, "bithumb": KRW}
BINARIES = ["quotebus-broker", "quotebus-adapter", "quotebus-sub", "quotebus-exsim"]
EVENTS = 2000  # per symbol; at RATE/s the market moves for 50 s (the kill must fall inside)
RATE = 40


# ---- the websocket client (run as a child process: --ws-client) ----------------

def ws_client_main(url, out_path, seconds):
    """Connects (retrying until the broker answers), subscribes to book., and
    writes every data message as one JSON line; a {"type":"_closed"} line if
    the connection drops after it was established."""
    import websockets

    async def run():
        deadline = time.time() + seconds
        with open(out_path, "w", buffering=1) as out:
            while time.time() < deadline:
                try:
                    ws = await asyncio.wait_for(websockets.connect(url, max_size=None), 3)
                except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException):
                    await asyncio.sleep(0.3)
                    continue
                try:
                    await ws.send(json.dumps({"op": "subscribe", "topics": ["book."], "id": 1}))
                    out.write(json.dumps({"type": "_connected"}) + "\n")
                    while time.time() < deadline:
                        try:
                            raw = await asyncio.wait_for(ws.recv(), 1)
                        except asyncio.TimeoutError:
                            continue
                        m = json.loads(raw)
                        out.write(json.dumps(m) + "\n")
                    await ws.close()
                    return
                except websockets.exceptions.ConnectionClosed as e:
                    out.write(json.dumps({"type": "_closed", "code": e.code}) + "\n")
                    await asyncio.sleep(0.3)
    asyncio.run(run())


# ---- the image --------------------------------------------------------------

def elf_deps(path):
    """Absolute paths of the shared objects path loads (ldd), interpreter included."""
    r = subprocess.run(["ldd", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = []
    for ln in r.stdout.decode().splitlines():
        ln = ln.strip()
        if "=>" in ln:
            p = ln.split("=>")[1].split("(")[0].strip()
        else:
            p = ln.split("(")[0].strip()
        if p.startswith("/"):
            out.append(p)
    if r.returncode != 0 or not out:
        fail("ldd %s: %s" % (path, r.stdout.decode()))
    return out


def put_file(rootfs, src, dest, mode=None):
    d = os.path.join(rootfs, dest.lstrip("/"))
    os.makedirs(os.path.dirname(d), exist_ok=True)
    shutil.copy2(os.path.realpath(src), d)
    if mode is not None:
        os.chmod(d, mode)


def build_image(eng, build_dir, tag):
    """The test image (see the module doc). Returns the runtime stage's user id."""
    stages = qbdocker.dockerfile_stages(os.path.join(DOCKER_DIR, "Dockerfile"))
    build_names = {s["name"] for s in stages[:-1] if s["name"]}
    runtime = stages[-1]
    ctx = os.path.join(eng.tmp, "image")
    rootfs = os.path.join(ctx, "rootfs")
    home = os.path.join(ctx, "home")
    os.makedirs(rootfs)
    os.makedirs(home)
    meta = []
    uid, home_dir = "10001", "/var/lib/quotebus"
    for ln, ins, args in runtime["instructions"]:
        if ins == "COPY":
            flags, srcs, dest = qbdocker.copy_sources(args)
            for s in srcs:
                if flags.get("from") in build_names:
                    host = qbdocker.build_path(build_dir, s)
                    if host is None and s.startswith("/src/"):
                        host = os.path.join(SRC, s[len("/src/"):])
                    elif host is None:
                        fail("Dockerfile line %d: cannot map %s to this build" % (ln, s))
                else:
                    host = os.path.join(SRC, s)
                if not os.path.exists(host):
                    fail("Dockerfile line %d: %s (here %s) does not exist" % (ln, s, host))
                if os.path.isdir(host):
                    shutil.copytree(host, os.path.join(rootfs, dest.lstrip("/")),
                                    dirs_exist_ok=True)
                else:
                    to = os.path.join(dest, os.path.basename(s)) if dest.endswith("/") else dest
                    put_file(rootfs, host, to)
        elif ins == "RUN":
            m = re.search(r"useradd .*--uid (\d+)", args)
            if m:
                uid = m.group(1)
            m = re.search(r"--home-dir (\S+)", args)
            if m:
                home_dir = m.group(1)
        elif ins in ("USER", "WORKDIR", "EXPOSE", "HEALTHCHECK", "CMD", "ENTRYPOINT", "ENV",
                     "LABEL", "STOPSIGNAL"):
            meta.append("%s %s" % (ins, args))
    # What apt-get and useradd give the real image.
    elfs = [os.path.join(rootfs, "usr/local/bin", b) for b in BINARIES]
    for b in elfs:
        if not os.path.exists(b):
            fail("the Dockerfile's runtime stage does not install %s in /usr/local/bin" % b)
    put_file(rootfs, "/bin/dash", "/bin/sh", 0o755)
    # make-certs.sh (the certs service): openssl and the few tools it runs,
    # which the real image has from bookworm-slim and its openssl package.
    tools = []
    for t in ("/usr/bin/openssl", "/bin/mkdir", "/bin/chmod", "/bin/rm"):
        real = shutil.which(os.path.basename(t)) or t
        put_file(rootfs, real, t, 0o755)
        tools.append(real)
    os.makedirs(os.path.join(home, "tls"), mode=0o700)
    os.chmod(os.path.join(home, "tls"), 0o700)
    libs = set()
    for b in elfs + ["/bin/dash"] + tools:
        libs.update(elf_deps(b))
    for lib in sorted(libs):
        put_file(rootfs, lib, lib)
    for f in ("/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/openssl.cnf",
              "/etc/nsswitch.conf"):
        if os.path.exists(f):
            put_file(rootfs, f, f)
    os.makedirs(os.path.join(rootfs, "usr/lib/ssl"), exist_ok=True)
    for name, target in (("certs", "/etc/ssl/certs"),
                         ("cert.pem", "/etc/ssl/certs/ca-certificates.crt"),
                         ("openssl.cnf", "/etc/ssl/openssl.cnf")):
        os.symlink(target, os.path.join(rootfs, "usr/lib/ssl", name))
    os.makedirs(os.path.join(rootfs, "etc"), exist_ok=True)
    with open(os.path.join(rootfs, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
                "quotebus:x:%s:%s::%s:/usr/sbin/nologin\n" % (uid, uid, home_dir))
    with open(os.path.join(rootfs, "etc/group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\nquotebus:x:%s:\n" % uid)
    os.makedirs(os.path.join(rootfs, "tmp"), mode=0o1777, exist_ok=True)
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM scratch\nCOPY rootfs/ /\nCOPY --chown=%s:%s home/ %s/\n"
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n%s\n" %
                (uid, uid, home_dir, "\n".join(meta)))
    t = time.time()
    eng.docker(["build", "-q", "-t", tag, ctx], timeout=300)
    log("image %s built in %.1f s (%d shared objects; runtime stage: %s)" %
        (tag, time.time() - t, len(libs), "; ".join(meta)[:300]))
    return uid


# ---- the stack --------------------------------------------------------------

def health(eng, cid):
    st = (eng.inspect(cid) or {}).get("State", {})
    return st.get("Health", {}).get("Status"), st


class Compose:
    """docker-compose -p PROJECT -f ... --env-file ENV_FILE: the README's demo
    command (demo.env enables the demo profile through COMPOSE_PROFILES)."""

    def __init__(self, eng, tools, project, files, env_file):
        self.eng = eng
        self.base = [tools["docker-compose"], "--no-ansi", "-p", project]
        for f in files:
            self.base += ["-f", f]
        self.base += ["--env-file", env_file]

    def run(self, args, check=True, timeout=180, show_err=False):
        # A user's QB_*/COMPOSE_* settings must not leak into the test: only
        # the env file's.
        env = {k: v for k, v in self.eng.env().items() if not k.startswith(("QB_", "COMPOSE_"))}
        r = subprocess.run(self.base + args, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        out = r.stdout.decode("utf-8", "replace")
        err = r.stderr.decode("utf-8", "replace")
        if check and r.returncode != 0:
            fail("docker-compose %s failed (%d):\n%s\n%s" % (" ".join(args), r.returncode,
                                                             out[-3000:], err[-3000:]))
        return out if out.strip() or not show_err else err

    def cid(self, service):
        ids = self.run(["ps", "-q", service]).split()
        return ids[0] if ids else None

    def logs(self, tail=40):
        try:
            return self.run(["logs", "--no-color", "--tail", str(tail)], check=False, timeout=60,
                            show_err=True)
        except subprocess.TimeoutExpired:
            return "(docker-compose logs timed out)"


def adapter_pid(init_pid):
    """Host pid of quotebus-adapter in a container whose pid 1 is the init
    (compose init: true) or the adapter itself.

    Why not `docker kill`: Docker records a kill as a manual stop, and no
    restart policy restarts a manually stopped container (by design: the
    policies are for crashes and engine restarts). A crash is the process
    dying by itself, which is what this does."""
    pids = [init_pid]
    for _ in range(3):
        nxt = []
        for p in pids:
            try:
                with open("/proc/%d/comm" % p) as f:
                    if f.read().strip().startswith("quotebus-adapt"):
                        return p
                for task in os.listdir("/proc/%d/task" % p):
                    with open("/proc/%d/task/%s/children" % (p, task)) as f:
                        nxt += [int(x) for x in f.read().split()]
            except OSError:
                continue
        pids = nxt
    fail("no quotebus-adapter process under container pid %d" % init_pid)


def die_with_parent():
    """preexec_fn: the child gets SIGKILL when this test dies, even by SIGKILL."""
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def snapshot_check(port, tmp, dumps):
    """Asks the published snapshot service (NNG REQ via nngcat) for every
    book; each reply must hold the simulator's final book exactly."""
    import msgpack
    nngcat = shutil.which("nngcat")
    from decimal import Decimal
    for ex, syms in BOOKS.items():
        for sym in syms:
            topic = "book.%s.%s" % (ex, sym)
            req = os.path.join(tmp, "snapreq.bin")
            with open(req, "wb") as f:
                f.write(msgpack.packb({"v": 1, "op": "snapshot", "topic": topic}))
            r = subprocess.run([nngcat, "--req", "--dial", "tcp://127.0.0.1:%d" % port,
                                "--file", req, "--raw", "--count", "1",
                                # nngcat's REQ loop needs interval > recv-timeout
                                "--interval", "30", "--recv-timeout", "10"],
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=30)
            if r.returncode != 0 or not r.stdout:
                fail("snapshot service on 127.0.0.1:%d: no reply for %s (%d): %s" %
                     (port, topic, r.returncode, r.stderr.decode()[-500:]))
            rep = msgpack.unpackb(r.stdout, raw=False)
            if not rep.get("ok") or len(rep.get("books", [])) != 1:
                fail("snapshot service: %s -> %s" % (topic, str(rep)[:500]))
            item = rep["books"][0]
            frame = item["frame"]
            ftopic, _, body = frame.partition(b"\0")
            m = msgpack.unpackb(body, raw=False)
            if ftopic.decode() != topic or m["type"] != "snapshot" or not item["valid"]:
                fail("snapshot service: %s -> topic %r type %s valid %s" %
                     (topic, ftopic, m["type"], item["valid"]))

            def side(levels):
                return [(Decimal(a).scaleb(-b), Decimal(c).scaleb(-d)) for a, b, c, d in levels]
            d = dumps[ex][qbtest.native_for(ex, sym)]
            if (side(m["bids"]), side(m["asks"])) != (d["bids"], d["asks"]):
                fail("snapshot service: %s differs from the simulator's final book" % topic)


def wait_for(pred, timeout, what, interval=0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    fail("timed out after %ss waiting for %s" % (timeout, what))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", help="the CMake build directory this test belongs to")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--sanitized", action="store_true",
                    help="a sanitizer build (its binaries never go into an image): skip")
    ap.add_argument("--ws-client", nargs=3, metavar=("URL", "OUT", "SECONDS"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ws_client:
        ws_client_main(args.ws_client[0], args.ws_client[1], float(args.ws_client[2]))
        return
    if not args.build_dir:
        ap.error("--build-dir is required")
    if args.sanitized:
        skip_cannot_run_here("sanitizer build: images are made of the plain build's binaries; "
                             "the stack test runs in the plain build's pass")
    build_dir = os.path.abspath(args.build_dir)
    bin_dir = os.path.join(build_dir, "bin")
    for b in BINARIES:
        if not os.access(os.path.join(bin_dir, b), os.X_OK):
            fail("%s not built in %s" % (b, bin_dir))
    for module, package in (("websockets", "python3-websockets"), ("msgpack", "python3-msgpack")):
        try:
            __import__(module)
        except ImportError:
            skip("%s is not installed (scripts/install-deps.sh installs it)" % package)
    if not shutil.which("nngcat"):
        skip("nngcat is not installed (Debian's nng-utils; scripts/install-deps.sh installs it)")
    tools = qbdocker.require_tools(need_engine=True)
    t0 = time.time()
    # Our own deadline, well inside CTest's TIMEOUT: SIGALRM cleans up
    # (CTest's timeout would kill this process without any cleanup).
    signal.alarm(420)

    with qbdocker.Engine(tools, keep=args.keep) as eng:
        eng.start()
        build_image(eng, build_dir, "quotebus:latest")

        # Configuration as a user gives it: a config dir and environment.
        cfg = os.path.join(eng.tmp, "config")
        shutil.copytree(os.path.join(DOCKER_DIR, "config"), cfg)
        with open(os.path.join(cfg, "exsim.json")) as f:
            exsim_cfg = json.load(f)
        exsim_cfg.update({"events": EVENTS, "rate": RATE, "trade-rate": 5, "seed": 7,
                          "dump": "/var/lib/quotebus/out/exsim.dump"})
        with open(os.path.join(cfg, "exsim.json"), "w") as f:
            json.dump(exsim_cfg, f)
        os.chmod(cfg, 0o755)
        out_dir = os.path.join(eng.tmp, "exsim-out")
        os.makedirs(out_dir)
        os.chmod(out_dir, 0o777)
        dump_path = os.path.join(out_dir, "exsim.dump")
        override = os.path.join(eng.tmp, "compose.test.yml")
        with open(override, "w") as f:
            f.write("services:\n  exsim:\n    volumes:\n      - %s:/var/lib/quotebus/out\n"
                    # A bridge name of ours: qbdocker.remove_stale() finds it
                    # if this test is ever killed before compose down.
                    "networks:\n  default:\n    driver_opts:\n"
                    "      com.docker.network.bridge.name: %s%d\n" %
                    (out_dir, qbdocker.BRIDGE_PREFIX, os.getpid()))
        ports = {k: qbdocker.free_port() for k in ("QB_HTTP_PORT", "QB_PUB_PORT",
                                                     "QB_SNAPSHOT_PORT")}
        env_file = os.path.join(eng.tmp, "test.env")
        with open(os.path.join(DOCKER_DIR, "demo.env")) as f:
            env_text = f.read()
        with open(env_file, "w") as f:
            f.write(env_text + "\n# the test's settings\n" + "".join(
                "%s=%s\n" % kv for kv in sorted(ports.items())) +
                "QB_CONFIG_DIR=%s\nQB_LOG_LEVEL=info\n" % cfg)
        project = "qbtest%d" % os.getpid()
        compose = Compose(eng, tools, project,
                          [os.path.join(DOCKER_DIR, "docker-compose.yml"), override], env_file)
        failed = True
        readers = []
        subs = []

        def down():
            for p in subs:
                if p.poll() is None:
                    p.kill()
                    p.wait(5)
            if failed:
                try:
                    print("---- docker-compose logs (last 40 lines per service) ----\n" +
                          compose.logs(), flush=True)
                except Exception as e:
                    log("docker-compose logs failed: %r" % (e,))
            t = time.time()
            compose.run(["down", "-v", "--remove-orphans", "-t", "5"], check=False)
            log("compose down in %.1f s" % (time.time() - t))
        eng.cleanups.append(down)

        pub = "tcp://127.0.0.1:%d" % ports["QB_PUB_PORT"]
        # Subscribers first (they redial until the published ports answer), so
        # they see each book from its first message.
        sub_out = os.path.join(eng.tmp, "sub.out")
        sub_f = open(sub_out, "wb")
        sub = subprocess.Popen([os.path.join(bin_dir, "quotebus-sub"), "--connect", pub, "book.",
                                "status."], stdout=sub_f, stderr=subprocess.DEVNULL,
                               preexec_fn=die_with_parent)
        subs.append(sub)
        sub.out_path, sub.out, sub.name = sub_out, sub_f, "quotebus-sub tcp"
        readers.append(qbtest.Reader(sub, multi=True))
        ws_out = os.path.join(eng.tmp, "ws.out")
        ws = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--ws-client",
                               "ws://127.0.0.1:%d/ws" % ports["QB_HTTP_PORT"], ws_out,
                               "450"], stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
        subs.append(ws)
        open(ws_out, "a").close()
        ws.out_path, ws.out, ws.name = ws_out, sys.stdout, "websocket client"
        ws_reader = qbtest.Reader(ws, multi=True)
        readers.append(ws_reader)

        t = time.time()
        compose.run(["up", "-d"])
        log("compose up -d in %.1f s: %s" % (time.time() - t, ", ".join(
            "%s=%s" % kv for kv in sorted(ports.items()))))
        cids = {s: compose.cid(s) for s in ("broker", "binance", "htx", "bithumb", "exsim",
                                              "watch")}
        for s, c in cids.items():
            if not c:
                fail("service %s has no container:\n%s" % (s, compose.run(["ps"])))
        # Non-root, read-only, the configured restart policy.
        for s in ("broker", "binance", "exsim"):
            ins = eng.inspect(cids[s])
            if ins["Config"]["User"] in ("", "root", "0", "0:0"):
                fail("%s runs as root (User=%r)" % (s, ins["Config"]["User"]))
            if ins["HostConfig"]["RestartPolicy"]["Name"] != "unless-stopped":
                fail("%s restart policy %r" % (s, ins["HostConfig"]["RestartPolicy"]))

        def all_healthy():
            for s in ("broker", "binance", "htx", "bithumb"):
                h, st = health(eng, cids[s])
                if not st.get("Running"):
                    fail("%s is not running: %s" % (s, st))
                if h != "healthy":
                    return False
            return True
        t = time.time()
        wait_for(all_healthy, 90, "broker, binance, htx and bithumb healthy")
        log("broker and the three adapters healthy %.1f s after up" % (time.time() - t))
        # watch depends_on broker: service_healthy.
        wait_for(lambda: health(eng, cids["watch"])[1].get("Running"), 30,
                 "watch (depends on a healthy broker) running")
        if os.path.exists(dump_path):
            fail("the simulator finished before the adapter was killed; raise EVENTS")

        # An adapter crashes: the restart policy brings it back, books heal.
        for r in readers:
            r.poll()
        snaps_before = [sum(b.snapshots for (ex, _), b in r.xbooks.items() if ex == "binance")
                        for r in readers]
        before = eng.inspect(cids["binance"])
        pid = adapter_pid(before["State"]["Pid"])
        os.kill(pid, signal.SIGKILL)
        t = time.time()
        log("binance adapter crashed: SIGKILL to quotebus-adapter (host pid %d, under the "
            "container's init, pid %d)" % (pid, before["State"]["Pid"]))

        def restarted():
            st = eng.inspect(cids["binance"])
            return st["State"]["Running"] and st["RestartCount"] > before["RestartCount"] and \
                st["State"]["Pid"] != before["State"]["Pid"]
        wait_for(restarted, 30, "the binance adapter restarted by its restart policy")
        log("binance restarted by the restart policy %.1f s after the kill" % (time.time() - t))
        wait_for(lambda: health(eng, cids["binance"])[0] == "healthy", 60,
                 "the restarted binance adapter healthy again")
        log("binance healthy again %.1f s after the kill" % (time.time() - t))

        # Exact books at the end, for every exchange and both clients.
        t = time.time()
        dumps = {}
        for ex, syms in BOOKS.items():
            dumps[ex] = qbtest.wait_books_exact_ex(readers, dump_path, ex, syms, timeout=120)
        log("every book of both clients equals the simulator's final book (%.1f s after the "
            "restart check)" % (time.time() - t))
        for i, r in enumerate(readers):
            r.poll()
            name = r.proc.name
            snaps_after = sum(b.snapshots for (ex, _), b in r.xbooks.items() if ex == "binance")
            if snaps_after <= snaps_before[i]:
                fail("%s: no new binance snapshot after the adapter restart" % name)
            for (ex, sym), b in sorted(r.xbooks.items()):
                if b.gaps:
                    fail("%s: %d sequence gaps in %s %s" % (name, b.gaps, ex, sym))
                if b.deltas < 100:
                    fail("%s: only %d deltas in %s %s" % (name, b.deltas, ex, sym))
            got = {k for k in r.xbooks}
            want = {(ex, s) for ex, ss in BOOKS.items() for s in ss}
            if got != want:
                fail("%s: books %s, want %s" % (name, sorted(got), sorted(want)))
            log("%s: %s" % (name, ", ".join("%s/%s %d snapshots %d deltas" %
                                             (ex, s, b.snapshots, b.deltas)
                                             for (ex, s), b in sorted(r.xbooks.items()))))
        closed = [m for m in ws_reader.messages if m.get("type") == "_closed"]
        if closed:
            fail("the websocket connection dropped: %s" % closed)
        import urllib.request
        url = "http://127.0.0.1:%d/health" % ports["QB_HTTP_PORT"]
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = resp.read().decode()
            if resp.status != 200:
                fail("%s: HTTP %d %s" % (url, resp.status, body[:300]))
        log("GET %s: 200 %s" % (url, body.strip()[:200]))
        # The page, from /usr/local/share/quotebus/web (the Dockerfile's
        # COPY of clients/web, where the broker looks beside its binary).
        page = "http://127.0.0.1:%d/" % ports["QB_HTTP_PORT"]
        with urllib.request.urlopen(page, timeout=5) as resp:
            html = resp.read().decode("utf-8", "replace")
        if resp.status != 200 or "<html" not in html.lower():
            fail("GET %s: %d, not the web page: %r" % (page, resp.status, html[:200]))
        log("GET %s: 200, the web page (%d bytes)" % (page, len(html)))
        snapshot_check(ports["QB_SNAPSHOT_PORT"], eng.tmp, dumps)
        log("snapshot service on 127.0.0.1:%d: every book equals the simulator's" %
            ports["QB_SNAPSHOT_PORT"])
        # The demo's `watch` (a quotebus-sub on the compose network) prints data.
        wlog = compose.run(["logs", "--no-color", "watch"])
        if '"type":"status"' not in wlog.replace(" ", ""):
            fail("the watch service printed no status message:\n%s" % wlog[-2000:])
        log("watch (quotebus-sub on tcp://broker:7781 inside the network): %d lines" %
            len(wlog.splitlines()))
        # Scale to more symbols as the README says: one more symbol in the
        # env file, `up -d` again: only binance is recreated, the new book
        # arrives exact-by-protocol (snapshot, contiguous deltas).
        with open(env_file, "a") as f:
            f.write("QB_BINANCE_SYMBOLS=BTC-USDT,ETH-USDT,SOL-USDT\n")
        t = time.time()
        compose.run(["up", "-d"])
        t_up = time.time() - t
        now = {s: compose.cid(s) for s in cids}
        changed = sorted(s for s in cids if now[s] != cids[s])
        if changed != ["binance"]:
            fail("after adding a binance symbol, `up -d` recreated %s (want only binance)" %
                 changed)

        def sol_live():
            for r in readers:
                r.poll()
                b = r.xbooks.get(("binance", "SOL-USDT"))
                if b is None or not b.valid or b.deltas < 20:
                    return False
            return True
        wait_for(sol_live, 60, "the new SOL-USDT book (valid, 20 deltas) in both clients")
        for r in readers:
            b = r.xbooks[("binance", "SOL-USDT")]
            if b.gaps:
                fail("%s: %d gaps in the new SOL-USDT book" % (r.proc.name, b.gaps))
        log("scaled: +SOL-USDT, only binance recreated (up -d %.1f s), its book live in both "
            "clients %.1f s after up -d began" % (t_up, time.time() - t))
        for s in ("broker", "htx", "bithumb", "exsim"):
            if eng.inspect(cids[s])["RestartCount"] != 0:
                fail("%s restarted (RestartCount %d)" % (s, eng.inspect(cids[s])["RestartCount"]))
        failed = False
    log("PASS docker compose stack in %.1f s" % (time.time() - t0))


if __name__ == "__main__":
    main()
