"""qbdocker: helpers of the docker tests (label `docker`).

What they need: Debian's docker.io (dockerd, containerd, runc, docker-init,
docker-proxy, the docker CLI) and docker-compose 1.29 (the `docker-compose`
command, which also brings python3-yaml). scripts/install-deps.sh installs
them when their commands are missing; a test run without it (ctest -L
docker alone) gets them from require_tools(), which installs them with
apt-get when it can (root, apt-get present, QB_DOCKER_INSTALL not 0).

Skips follow the suite's policy (README, "Skipped tests"): skip() for what
this machine lacks but could have exits 77, and under CI (CI=true) exits 1
("FAIL (CI): would have skipped: REASON"); skip_cannot_run_here() for what
no install can change here (not root, no apt-get, apt-get failing, not
Debian bookworm, a sanitizer build) exits 77 even under CI.

The build the tests belong to is the one CMake passes (--build-dir): its
bin/ and whatever else the Dockerfile copies out of /src/build/.

Engine: a private dockerd per test run, never the machine's own engine:

  dockerd --iptables=false --bridge=none --data-root T/data --exec-root T/exec
          --host unix://T/docker.sock --pidfile T/docker.pid
          (+ its own containerd, started by dockerd under T/exec)

No default bridge (and no iptables rules on the host); compose's own bridge
network still connects the containers, and published ports reach them through
docker-proxy on the host's loopback. The storage driver is dockerd's choice
(overlay2, vfs where overlay is not possible). Engine.close() stops
everything it started (dockerd, then any process still naming T: containerd,
shims), unmounts what is left under T and removes T; it runs from finally,
atexit and SIGTERM/SIGINT/SIGHUP handlers, so a failing or interrupted test
leaves nothing behind.
"""
import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
DOCKER_DIR = os.path.join(SRC, "docker")
APT_PACKAGES = ["docker.io", "docker-compose"]


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def fail(msg):
    print("FAIL: " + msg, flush=True)
    raise SystemExit(1)


def under_ci():
    """True when CI says so (CI=true, as CI systems set it; .ci/run too)."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def skip(msg):
    """Something this test needs is missing but could be installed or set
    up: exit 77, or under CI exit 1 (CI installs everything first)."""
    if under_ci():
        print("FAIL (CI): would have skipped: " + msg, flush=True)
        raise SystemExit(1)
    print("SKIP: " + msg, flush=True)
    raise SystemExit(77)


def skip_cannot_run_here(msg):
    """Something no install can give this machine: exit 77, even under CI."""
    print("SKIP (cannot run here): " + msg, flush=True)
    raise SystemExit(77)


def build_path(build_dir, path):
    """A path of the Dockerfile's build stage (/src/build/...) in this build
    (build_dir/...), or None for any other path."""
    if path.startswith("/src/build/"):
        return os.path.join(build_dir, path[len("/src/build/"):])
    return None


def docker_cli():
    """Debian's docker CLI (the engine's own version) before any other on PATH."""
    for c in ("/usr/bin/docker", shutil.which("docker")):
        if c and os.access(c, os.X_OK):
            return c
    return None


def find_tools(need_engine):
    """{name: path} of what is missing -> None values."""
    tools = {"docker-compose": shutil.which("docker-compose")}
    if need_engine:
        tools["dockerd"] = shutil.which("dockerd") or \
            (os.access("/usr/sbin/dockerd", os.X_OK) and "/usr/sbin/dockerd") or None
        tools["docker"] = docker_cli()
    return tools


def require_tools(need_engine=True):
    """Returns {tool: path}; installs Debian's docker.io/docker-compose when
    missing and possible, else skips (77) with the reason."""
    tools = find_tools(need_engine)
    missing = [t for t, p in tools.items() if not p]
    if missing:
        why = None
        if os.environ.get("QB_DOCKER_INSTALL", "1") == "0":
            why = "QB_DOCKER_INSTALL=0"
        elif os.geteuid() != 0:
            why = "not root (apt-get install needs root)"
        elif not shutil.which("apt-get"):
            why = "no apt-get on this machine"
        if why == "QB_DOCKER_INSTALL=0":
            skip("%s not installed and QB_DOCKER_INSTALL=0; install Debian's %s "
                 "(scripts/install-deps.sh)" % (", ".join(missing), " ".join(APT_PACKAGES)))
        if why:
            skip_cannot_run_here("%s not installed and not installable here (%s); install "
                                 "Debian's %s" % (", ".join(missing), why,
                                                  " ".join(APT_PACKAGES)))
        log("installing %s with apt-get (missing: %s)" % (" ".join(APT_PACKAGES),
                                                           ", ".join(missing)))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq",
               "--no-install-recommends"] + APT_PACKAGES
        r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "update", "-qq"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            skip_cannot_run_here("could not install %s with apt-get:\n%s" %
                 (" ".join(APT_PACKAGES), r.stdout.decode("utf-8", "replace")[-2000:]))
        tools = find_tools(need_engine)
        missing = [t for t, p in tools.items() if not p]
        if missing:
            skip("%s still missing after installing %s" % (", ".join(missing),
                                                           " ".join(APT_PACKAGES)))
    return tools


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def read_env_file(path):
    """KEY=VALUE lines of a compose env file (comments and blanks skipped)."""
    out = {}
    with open(path) as f:
        for ln in f:
            ln = ln.strip()
            if not ln or ln.startswith("#") or "=" not in ln:
                continue
            k, v = ln.split("=", 1)
            out[k.strip()] = v.strip()
    return out


# ---- Dockerfile parsing (the static test and the test image share it) ----

def dockerfile_instructions(path):
    """[(lineno, INSTRUCTION, args)] with continuations joined, comments dropped."""
    out = []
    cur, start = "", 0
    with open(path) as f:
        for i, raw in enumerate(f, 1):
            ln = raw.rstrip("\n")
            if not cur and (not ln.strip() or ln.lstrip().startswith("#")):
                continue
            if cur and ln.lstrip().startswith("#"):
                continue  # a comment inside a continued instruction
            if not cur:
                start = i
            if ln.endswith("\\"):
                cur += ln[:-1] + " "
                continue
            cur += ln
            word, _, rest = cur.strip().partition(" ")
            out.append((start, word.upper(), rest.strip()))
            cur = ""
    return out


def dockerfile_stages(path):
    """[{"name", "base", "instructions": [...]}] in order."""
    stages = []
    for ln, ins, args in dockerfile_instructions(path):
        if ins == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append({"name": name, "base": parts[0], "line": ln, "instructions": []})
        elif stages:
            stages[-1]["instructions"].append((ln, ins, args))
    return stages


def copy_sources(args):
    """COPY args -> (flags dict, [sources], dest). Only the JSON-less form."""
    words = args.split()
    flags = {}
    while words and words[0].startswith("--"):
        k, _, v = words.pop(0)[2:].partition("=")
        flags[k] = v
    return flags, words[:-1], words[-1]


# ---- the engine --------------------------------------------------------------

def _term_with_parent():
    """preexec_fn of dockerd: SIGTERM (a clean engine shutdown: containers
    stopped, mounts released) when the test dies, even by SIGKILL, so that
    no engine outlives its test."""
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def remove_stale():
    """What a test killed by SIGKILL leaves (its dockerd shut down cleanly on
    PR_SET_PDEATHSIG, but nothing removed its temp dir nor its compose
    network's bridge): temp dirs /tmp/qbdk-* whose dockerd (pidfile) is gone,
    and bridges named BRIDGE_PREFIX<pid> (the test names its compose network's
    bridge after its own pid) whose test is gone."""
    for d in os.listdir("/tmp"):
        path = os.path.join("/tmp", d)
        if not d.startswith("qbdk-") or not os.path.isdir(path):
            continue
        try:
            with open(os.path.join(path, "docker.pid")) as f:
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if pid and _pid_alive(pid):
            continue
        if pid == 0 and time.time() - os.path.getmtime(path) < 600:
            continue  # another test starting its engine right now
        log("removing stale %s" % path)
        with open("/proc/self/mounts") as f:
            mps = [ln.split()[1] for ln in f if ln.split()[1].startswith(path + "/")]
        for m in sorted(mps, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], stderr=subprocess.DEVNULL)
        shutil.rmtree(path, ignore_errors=True)
    for name in os.listdir("/sys/class/net"):
        m = re.fullmatch(BRIDGE_PREFIX + r"(\d+)", name)
        if m and not _pid_alive(int(m.group(1))):
            log("removing stale bridge %s" % name)
            subprocess.run(["ip", "link", "delete", name], stderr=subprocess.DEVNULL)


BRIDGE_PREFIX = "qbdk"


class Engine:
    """A private dockerd. Use as a context manager; close() is idempotent."""

    def __init__(self, tools, keep=False):
        self.tools = tools
        self.keep = keep
        self.tmp = tempfile.mkdtemp(prefix="qbdk-", dir="/tmp")
        os.chmod(self.tmp, 0o755)
        self.sock = os.path.join(self.tmp, "docker.sock")
        self.host = "unix://" + self.sock
        self.log_path = os.path.join(self.tmp, "dockerd.log")
        self.proc = None
        self.closed = False
        self.cleanups = []  # callables run first by close(), newest first
        atexit.register(self.close)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        if signum == signal.SIGALRM:
            print("FAIL: the test's own deadline passed (signal.alarm); cleaning up",
                  flush=True)
        else:
            log("signal %d: cleaning up" % signum)
        self.close()
        os._exit(1)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        self.close()
        return False

    def env(self, extra=None):
        e = dict(os.environ)
        e["DOCKER_HOST"] = self.host
        e.pop("DOCKER_CONTEXT", None)
        e.pop("DOCKER_TLS_VERIFY", None)
        e["DOCKER_BUILDKIT"] = "0"
        e["COMPOSE_DOCKER_CLI_BUILD"] = "0"
        e["PATH"] = "/usr/bin:/usr/sbin:/bin:/sbin:" + e.get("PATH", "")
        if extra:
            e.update(extra)
        return e

    def start(self, timeout=60):
        if os.geteuid() != 0:
            skip_cannot_run_here("a private dockerd needs root")
        remove_stale()
        data, execroot = os.path.join(self.tmp, "data"), os.path.join(self.tmp, "exec")
        os.makedirs(data)
        os.makedirs(execroot)
        argv = [self.tools["dockerd"], "--iptables=false", "--ip-masq=false", "--bridge=none",
                "--data-root", data, "--exec-root", execroot, "--host", self.host,
                "--pidfile", os.path.join(self.tmp, "docker.pid")]
        log("engine: " + " ".join(argv))
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=self.env(),
                                     preexec_fn=_term_with_parent)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                skip("dockerd could not start here (exit %s); its log:\n%s" %
                     (self.proc.returncode, self.log_tail()))
            r = self.docker(["version", "--format", "{{.Server.Version}}"], check=False,
                            timeout=10)
            if r.returncode == 0:
                info = self.docker(["info", "--format", "{{.Driver}}"], check=False)
                log("engine up: dockerd %s, storage driver %s" %
                    (r.stdout.strip(), info.stdout.strip()))
                return
            time.sleep(0.3)
        skip("dockerd did not answer within %ss; its log:\n%s" % (timeout, self.log_tail()))

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return "(no log)"

    def docker(self, args, check=True, timeout=120, input=None):
        r = subprocess.run([self.tools["docker"]] + args, env=self.env(), input=input,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        r.stdout = r.stdout.decode("utf-8", "replace")
        r.stderr = r.stderr.decode("utf-8", "replace")
        if check and r.returncode != 0:
            fail("docker %s failed (%d):\n%s%s" % (" ".join(args), r.returncode, r.stdout[-2000:],
                                                   r.stderr[-3000:]))
        return r

    def inspect(self, name):
        r = self.docker(["inspect", name], check=False)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)[0]

    def _our_pids(self):
        """Processes (other than dockerd) whose command line names our temp dir:
        the containerd dockerd started and its shims."""
        pids = []
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == os.getpid():
                continue
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if self.tmp.encode() in cmd:
                pids.append(int(d))
        return pids

    def _unmount_all(self):
        try:
            with open("/proc/self/mounts") as f:
                mps = [ln.split()[1] for ln in f]
        except OSError:
            return
        mps = [m.replace("\\040", " ") for m in mps if m.startswith(self.tmp + "/")]
        for m in sorted(mps, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)

    def close(self):
        if self.closed:
            return
        self.closed = True
        for fn in reversed(self.cleanups):
            try:
                fn()
            except BaseException as e:  # cleanup goes on whatever happens
                log("cleanup step failed: %r" % (e,))
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                log("dockerd did not stop in 30 s: SIGKILL")
                self.proc.kill()
                self.proc.wait(10)
        for _ in range(2):
            pids = self._our_pids()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGTERM if _ == 0 else signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if pids:
                time.sleep(2)
        self._unmount_all()
        if self.keep:
            log("kept %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if os.path.exists(self.tmp):
                log("could not remove all of %s" % self.tmp)
        log("engine stopped, temp dir removed")
