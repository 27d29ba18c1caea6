#!/usr/bin/env python3
"""Static checks of docker/ (CTest label `docker`), for what cannot run here:
docker/Dockerfile's own build needs the Debian mirror inside a container.

  --part dockerfile   docker/Dockerfile against this machine (Debian bookworm):
      - two stages: build FROM debian:bookworm using scripts/install-deps.sh,
        runtime FROM debian:bookworm-slim;
      - every apt package it installs, and every package of
        scripts/install-deps.sh, exists in bookworm (apt-cache policy shows a
        bookworm candidate);
      - the runtime stage's RUN commands work: apt-get install simulated
        (-s), groupadd/useradd with --prefix on a scratch /etc, install -d
        under a scratch dir; they create the stage's USER;
      - the runtime packages provide every shared library the four binaries
        load: ldd on the binaries of --build-dir (the build CMake passes:
        this test's own), dpkg -S per library, each package within the
        dependency closure of the runtime stage's packages;
      - every COPY source exists (context = the repository; --from=build: made
        by the build stage: a target of its cmake --build, which this build
        has made too (/src/build/X is --build-dir/X), or a path under /src
        copied from the repository);
      - non-root USER, a HEALTHCHECK that runs quotebus binaries, EXPOSE of
        7780-7783.
  --part build-stage  the build stage's own COPY and RUN lines (but its
      install-deps RUN, whose packages must be installed here) run on this
      bookworm machine in a temp dir holding only what the stage copies:
      the COPY list suffices and the four binaries build and run. The
      stage's packages are scripts/install-deps.sh --build's.
  --part compose      docker/docker-compose.yml with docker-compose config:
      - validates as is, with --profile demo and with --env-file demo.env;
      - without a profile: broker, binance, htx, bithumb; demo adds exsim and
        watch, and demo.env points every adapter at ws://exsim:7790;
      - every command's binary (and every healthcheck's) is one the
        Dockerfile installs in /usr/local/bin; every --config file exists in
        docker/config, and every key of every config file is a long option of
        the binary that reads it (--help of --bin-dir's binaries);
      - the broker: --no-spawn, ingest only tls+tcp://0.0.0.0:7783 with mutual
        TLS (--ingest-tls-* in the volume the one-shot service certs fills with
        make-certs.sh), published ports 7780/7781/7782 on 127.0.0.1 matching
        the addresses the broker listens on (its command and broker.json);
        adapters dial tls+tcp://broker:7783 with their own certificate;
        restart policies, healthchecks, depends_on conditions.

Exit 77 (skip) when apt-cache (dockerfile) or docker-compose (compose; installed
with apt-get when possible, see qbdocker.require_tools) is not available;
under CI only when it cannot be installed here (qbdocker.skip).
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import qbdocker  # noqa: E402
from qbdocker import DOCKER_DIR, SRC, fail, log, skip, skip_cannot_run_here  # noqa: E402

DOCKERFILE = os.path.join(DOCKER_DIR, "Dockerfile")
COMPOSE = os.path.join(DOCKER_DIR, "docker-compose.yml")
BINARIES = ["quotebus-broker", "quotebus-adapter", "quotebus-sub", "quotebus-exsim"]
CHECKS = []


def dockerfile_text():
    with open(DOCKERFILE) as f:
        return f.read()


def ok(msg):
    CHECKS.append(msg)
    log("ok: " + msg)


def run(argv, **kw):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


# ---- Dockerfile -----------------------------------------------------------------

def apt_installs(args):
    """Package names of every `apt-get install` in a RUN line."""
    pkgs = []
    for cmd in re.split(r"&&|;|\|\|", args):
        words = shlex.split(cmd)
        if len(words) >= 2 and words[0] in ("apt-get", "apt") and "install" in words:
            for w in words[words.index("install") + 1:]:
                if not w.startswith("-"):
                    pkgs.append(w)
    return pkgs


def install_deps_packages(build_only=False):
    """The Debian packages of scripts/install-deps.sh: BUILD_PACKAGES (what
    --build installs, the Dockerfile's build stage), else also TEST_PACKAGES
    and the packages of TEST_IF_MISSING (PACKAGE:COMMAND,...)."""
    with open(os.path.join(SRC, "scripts", "install-deps.sh")) as f:
        text = f.read()
    arrays = dict(re.findall(r"^([A-Z_]+)=\((.*?)\n\)", text, re.S | re.M))
    names = ["BUILD_PACKAGES"] if build_only else ["BUILD_PACKAGES", "TEST_PACKAGES",
                                                   "TEST_IF_MISSING"]
    pkgs = []
    for name in names:
        if name not in arrays:
            fail("scripts/install-deps.sh: no %s=( ... ) array" % name)
        for ln in arrays[name].splitlines():
            pkgs += [w.split(":")[0] for w in ln.split("#")[0].split()]
    return pkgs


def apt_ready():
    rc, out, _ = run(["apt-cache", "policy", "libc6"])
    if rc == 0 and "Candidate: (none)" not in out and "Candidate:" in out:
        return True
    if os.geteuid() == 0:
        log("apt lists look empty: apt-get update")
        run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "update", "-qq"])
        rc, out, _ = run(["apt-cache", "policy", "libc6"])
        return rc == 0 and "Candidate: (none)" not in out and "Candidate:" in out
    return False


def not_in_bookworm(pkgs):
    """The packages of pkgs without a candidate from a bookworm archive (or
    an installed version on this bookworm machine), by one apt-cache call."""
    rc, out, _ = run(["apt-cache", "policy"] + list(pkgs))
    found = {}
    cur = None
    for ln in out.splitlines():
        if ln and not ln.startswith(" ") and ln.endswith(":"):
            cur = ln[:-1].split(":")[0]
            found[cur] = ""
        elif cur is not None:
            found[cur] += ln + "\n"
    bad = []
    for p in pkgs:
        t = found.get(p, "")
        if "Candidate:" not in t or "Candidate: (none)" in t or \
                ("bookworm" not in t and "/var/lib/dpkg/status" not in t):
            bad.append(p)
    return bad


def apt_closure(pkgs):
    rc, out, err = run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                        "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"] + pkgs)
    if rc != 0:
        fail("apt-cache depends %s: %s" % (" ".join(pkgs), err[-500:]))
    return {ln.strip() for ln in out.splitlines() if ln and not ln.startswith(" ")}


def lib_packages(binaries):
    """{library path: Debian package or None} of what binaries load (ldd +
    dpkg -S, which knows the /usr path of a merged-/usr system)."""
    libs = set()
    for b in binaries:
        rc, out, _ = run(["ldd", b])
        if rc != 0:
            fail("ldd %s failed" % b)
        for ln in out.splitlines():
            if "=>" in ln:
                p = ln.split("=>")[1].split("(")[0].strip()
                if p.startswith("/"):
                    libs.add(p)
    owners = {}
    for lib in sorted(libs):
        real = os.path.realpath(lib)
        cands = {lib, real}
        for c in list(cands):
            cands.add("/usr" + c if not c.startswith("/usr/") else c[4:])
        rc, out, _ = run(["dpkg", "-S"] + sorted(cands))
        owners[lib] = None
        for ln in out.splitlines():
            if ": " in ln:
                owners[lib] = ln.split(": ")[0].split(",")[0].strip()
                break
    return owners


def run_runtime_stage_commands(runtime):
    """Runs each command of the runtime stage's RUN lines in a form that
    cannot change this machine: apt-get install simulated (-s); groupadd and
    useradd with --prefix on a scratch copy of /etc; install -d under the
    scratch dir (owner resolved there). apt-get update (needs the mirror) and
    the removal of the apt lists are skipped; any other command fails the
    test, so that a new command gets a check here. Returns the passwd line of
    the user the stage creates, which must be the stage's USER."""
    import shutil
    import tempfile
    tmp = tempfile.mkdtemp(prefix="qb-dockerrun-")
    try:
        os.makedirs(os.path.join(tmp, "etc"))
        for f in ("passwd", "group", "shadow", "gshadow", "login.defs"):
            if os.path.exists("/etc/" + f):
                shutil.copy2("/etc/" + f, os.path.join(tmp, "etc", f))
        for ln, ins, args in runtime["instructions"]:
            if ins != "RUN":
                continue
            for cmd in args.split("&&"):
                w = shlex.split(cmd)
                if not w:
                    continue
                if w[:2] == ["apt-get", "update"]:
                    continue
                if w[:2] == ["rm", "-rf"] and all(x.startswith("/var/lib/apt/lists") for x in w[2:]):
                    continue
                if w[0] == "apt-get" and "install" in w:
                    argv = w[:w.index("install") + 1] + ["-s"] + w[w.index("install") + 1:]
                elif w[0] in ("groupadd", "useradd"):
                    argv = [w[0], "--prefix", tmp] + w[1:]
                elif w[0] == "install" and "-d" in w:
                    argv = list(w)
                    for flag, db in (("-o", "passwd"), ("-g", "group")):
                        if flag in argv:
                            i = argv.index(flag) + 1
                            with open(os.path.join(tmp, "etc", db)) as f:
                                ids = {ln.split(":")[0]: ln.split(":")[2] for ln in f}
                            if argv[i] not in ids:
                                fail("Dockerfile line %d: install %s %s: no such %s" %
                                     (ln, flag, argv[i], db))
                            argv[i] = ids[argv[i]]
                    argv[-1] = tmp + argv[-1]
                else:
                    fail("Dockerfile line %d: the runtime stage runs %r, which this test does "
                         "not know how to check: add a check" % (ln, w[0]))
                rc, out, err = run(argv)
                if rc != 0:
                    fail("Dockerfile line %d: %s failed (%d):\n%s%s" %
                         (ln, " ".join(argv), rc, out[-1500:], err[-1500:]))
        user = [a for _, i, a in runtime["instructions"] if i == "USER"]
        name, _, group = (user[-1] if user else "").partition(":")
        with open(os.path.join(tmp, "etc", "passwd")) as f:
            pw = [ln.strip() for ln in f if ln.startswith(name + ":")]
        with open(os.path.join(tmp, "etc", "group")) as f:
            gr = [ln.strip() for ln in f if ln.startswith((group or name) + ":")]
        if not name or not pw or not gr:
            fail("Dockerfile: USER %r is not created by the runtime stage's RUN lines" % user)
        return pw[0]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def part_dockerfile(build_dir, sanitized):
    bin_dir = os.path.join(build_dir, "bin")
    if not os.path.exists("/etc/debian_version") or not qbdocker.shutil.which("apt-cache"):
        skip_cannot_run_here("apt-cache is needed to check the Dockerfile's Debian packages "
                             "(not Debian?)")
    with open("/etc/os-release") as f:
        if "VERSION_CODENAME=bookworm" not in f.read():
            skip_cannot_run_here("this machine is not Debian bookworm: its apt-cache cannot say "
                                 "what bookworm has")
    if not apt_ready():
        skip_cannot_run_here("apt-cache has no package lists (apt-get update needs root)")
    stages = qbdocker.dockerfile_stages(DOCKERFILE)
    if len(stages) < 2:
        fail("Dockerfile: want a multi-stage build, got %d stage(s)" % len(stages))
    build, runtime = stages[0], stages[-1]
    if build["base"] != "debian:bookworm" or not build["name"]:
        fail("Dockerfile: the build stage must be FROM debian:bookworm AS <name>, got %s" %
             build["base"])
    if runtime["base"] != "debian:bookworm-slim":
        fail("Dockerfile: the runtime stage must be FROM debian:bookworm-slim, got %s" %
             runtime["base"])
    ok("stages: %s" % ", ".join("%s (%s)" % (s["name"], s["base"]) for s in stages))

    # The build stage uses the README's package script, and every package exists.
    runs = " && ".join(a for _, i, a in build["instructions"] if i == "RUN")
    if "scripts/install-deps.sh" not in runs:
        fail("Dockerfile: the build stage does not run scripts/install-deps.sh")
    pkgs = install_deps_packages() + apt_installs(runs)
    missing = not_in_bookworm(pkgs)
    if missing:
        fail("packages of the build stage (scripts/install-deps.sh) not in bookworm: %s" % missing)
    ok("build stage: scripts/install-deps.sh, its %d packages exist in bookworm" % len(pkgs))

    rt_pkgs = []
    for _, ins, args in runtime["instructions"]:
        if ins == "RUN":
            rt_pkgs += apt_installs(args)
    if not rt_pkgs:
        fail("Dockerfile: the runtime stage installs no packages")
    missing = not_in_bookworm(rt_pkgs)
    if missing:
        fail("runtime packages not in bookworm: %s" % missing)
    if "ca-certificates" not in rt_pkgs:
        fail("runtime stage: no ca-certificates (upstream TLS verification fails without it)")
    ok("runtime packages exist in bookworm: %s" % " ".join(rt_pkgs))

    # The runtime RUN lines, command by command, without touching this machine.
    user = run_runtime_stage_commands(runtime)
    ok("runtime RUN lines: apt-get install resolves (simulated), groupadd/useradd/install "
       "run in a scratch /etc: %s" % user)

    # They provide every library the binaries load.
    closure = apt_closure(rt_pkgs)
    ignored = []
    owners = lib_packages([os.path.join(bin_dir, b) for b in BINARIES])
    extra = set()
    if sanitized:
        # The sanitizer runtime and what it loads (libstdc++, ...) are this
        # build's, not the image's.
        san = {pkg.split(":")[0] for lib, pkg in owners.items() if pkg and
               re.match(r"lib(asan|ubsan|lsan|tsan)\.so", os.path.basename(lib))}
        extra = apt_closure(sorted(san)) if san else set()
    for lib, pkg in sorted(owners.items()):
        if pkg and pkg.split(":")[0] in extra and pkg.split(":")[0] not in closure:
            ignored.append(os.path.basename(lib) + " (this sanitizer build's runtime)")
            continue
        if pkg is None and os.path.basename(lib).startswith("libquotebus.so") and \
                "/usr/local/lib/quotebus/%s" % os.path.basename(lib) in dockerfile_text():
            ignored.append(os.path.basename(lib) + " (our own, copied from the build stage)")
            continue
        if pkg is None:
            fail("the binaries load %s, which no Debian package owns (a library from outside "
                 "the packages cannot be in the image)" % lib)
        if pkg.split(":")[0] not in closure:
            fail("the binaries load %s from package %s, which the runtime stage does not "
                 "install (closure of %s)" % (lib, pkg, " ".join(rt_pkgs)))
    ok("the runtime packages provide every library of %s (ldd + dpkg -S)%s" %
       (", ".join(BINARIES), " except %s" % ", ".join(ignored) if ignored else ""))

    # Every COPY source exists / is produced by the build stage.
    build_targets = set()
    for _, ins, args in build["instructions"]:
        m = re.search(r"--target ((?:[\w.-]+\s*)+)", args)
        if ins == "RUN" and m:
            build_targets.update(m.group(1).split())
    copied_to_src = []
    for _, ins, args in build["instructions"]:
        if ins == "COPY":
            flags, srcs, dest = qbdocker.copy_sources(args)
            for s in srcs:
                if not os.path.exists(os.path.join(SRC, s)):
                    fail("Dockerfile build stage: COPY source %s does not exist" % s)
            copied_to_src.append(os.path.normpath(os.path.join("/src", dest)))
    n = 0
    installed = {}
    for ln, ins, args in runtime["instructions"]:
        if ins != "COPY":
            continue
        flags, srcs, dest = qbdocker.copy_sources(args)
        for s in srcs:
            n += 1
            if flags.get("from") == build["name"]:
                if s.startswith("/src/build/bin/"):
                    name = s[len("/src/build/bin/"):]
                    if name not in build_targets:
                        fail("Dockerfile line %d: %s is not a --target of the build stage (%s)" %
                             (ln, name, sorted(build_targets)))
                    if not os.access(os.path.join(bin_dir, name), os.X_OK):
                        fail("Dockerfile line %d: %s is not a binary of this build" % (ln, name))
                    installed[name] = os.path.join(dest, name) if dest.endswith("/") else dest
                elif s.startswith("/src/build/"):
                    # Made by the stage's cmake --build (libquotebus for
                    # quotebus-sub): this build has made it too.
                    here = qbdocker.build_path(build_dir, s)
                    if not os.path.exists(here):
                        fail("Dockerfile line %d: %s is not made by this build (here %s)" %
                             (ln, s, here))
                elif s.startswith("/src/"):
                    rel = s[len("/src/"):]
                    if not os.path.exists(os.path.join(SRC, rel)):
                        fail("Dockerfile line %d: %s does not exist in the repository" % (ln, rel))
                    if not any(os.path.normpath(s).startswith(c.rstrip("/") + "/") or
                               os.path.normpath(s) == c for c in copied_to_src):
                        fail("Dockerfile line %d: %s is not copied into the build stage" % (ln, s))
                else:
                    fail("Dockerfile line %d: unexpected source %s" % (ln, s))
            elif "from" in flags:
                fail("Dockerfile line %d: COPY --from=%s (no such stage)" % (ln, flags["from"]))
            elif not os.path.exists(os.path.join(SRC, s)):
                fail("Dockerfile line %d: COPY source %s does not exist" % (ln, s))
    for b in BINARIES:
        if installed.get(b) != "/usr/local/bin/" + b:
            fail("Dockerfile: %s is not installed as /usr/local/bin/%s (%s)" % (b, b, installed))
    ok("%d COPY sources exist; the four binaries go to /usr/local/bin" % n)

    meta = {i: a for _, i, a in runtime["instructions"] if i != "RUN" and i != "COPY"}
    user = meta.get("USER", "")
    if not user or user.split(":")[0] in ("root", "0"):
        fail("Dockerfile: the runtime stage must run as a non-root USER, got %r" % user)
    hc = meta.get("HEALTHCHECK", "")
    if "quotebus-sub" not in hc or "curl" in hc or "wget" in hc:
        fail("Dockerfile: HEALTHCHECK must use quotebus's own binaries: %r" % hc)
    exposed = set(meta.get("EXPOSE", "").split())
    if not {"7780", "7781", "7782", "7783"} <= exposed:
        fail("Dockerfile: EXPOSE %s lacks some of 7780-7783" % sorted(exposed))
    ok("runtime: USER %s, HEALTHCHECK with quotebus-sub, EXPOSE %s" %
       (user, " ".join(sorted(exposed))))


def part_build_stage():
    """Runs the build stage's own commands on this machine (Debian bookworm
    with scripts/install-deps.sh's packages, i.e. what the stage has after
    its first RUN) in a temp dir that holds only what the stage COPYs: proves
    the COPY list is enough to build and the RUN lines work, without the
    Debian mirror. WORKDIR/ENV apply; the install-deps RUN is replaced by a
    check that its packages are installed here."""
    import shutil
    import tempfile
    stages = qbdocker.dockerfile_stages(DOCKERFILE)
    build = stages[0]
    missing = [p for p in install_deps_packages(build_only=True)
               if run(["dpkg-query", "-W", "-f=${Status}", p])[1] != "install ok installed"]
    if missing:
        skip("the build stage's packages are not all installed here (%s): run "
             "scripts/install-deps.sh" % " ".join(missing))
    tmp = tempfile.mkdtemp(prefix="qb-dockerbuild-")
    try:
        root = os.path.join(tmp, "root")
        workdir = "/"
        env = dict(os.environ)
        n_copy = n_run = 0
        t0 = qbdocker.time.time()
        for ln, ins, args in build["instructions"]:
            if ins == "WORKDIR":
                workdir = os.path.join(workdir, args)
                os.makedirs(root + workdir, exist_ok=True)
            elif ins == "ENV":
                k, _, v = args.partition("=")
                env[k.strip()] = v.strip()
            elif ins == "COPY":
                flags, srcs, dest = qbdocker.copy_sources(args)
                to = root + os.path.normpath(os.path.join(workdir, dest))
                for src in srcs:
                    host = os.path.join(SRC, src)
                    if os.path.isdir(host):
                        shutil.copytree(host, to, dirs_exist_ok=True, symlinks=True,
                                        ignore=shutil.ignore_patterns("__pycache__",
                                                                      "node_modules"))
                    else:
                        d = to if not dest.endswith("/") and len(srcs) == 1 else \
                            os.path.join(to, os.path.basename(src))
                        os.makedirs(os.path.dirname(d), exist_ok=True)
                        shutil.copy2(host, d)
                n_copy += 1
            elif ins == "RUN":
                if "install-deps.sh" in args:
                    continue  # checked above: its packages are installed here
                cmd = args.replace("/src", root + "/src")
                r = subprocess.run(["/bin/sh", "-c", cmd], cwd=root + workdir, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                if r.returncode != 0:
                    fail("Dockerfile line %d: RUN failed in the build stage's file set (%d):\n%s"
                         % (ln, r.returncode, r.stdout.decode("utf-8", "replace")[-4000:]))
                n_run += 1
        for b in BINARIES:
            path = os.path.join(root, "src/build/bin", b)
            rc, out, err = run([path, "--version"])
            if rc != 0:
                fail("the build stage did not produce a working %s: %s" % (b, err[-500:]))
        ok("the build stage's %d COPY and %d RUN lines build %s on this bookworm machine "
           "in %.0f s" % (n_copy, n_run, ", ".join(BINARIES), qbdocker.time.time() - t0))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- docker-compose.yml -------------------------------------------------------

def compose_config(tools, extra, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("QB_", "COMPOSE_"))}
    if env:
        e.update(env)
    argv = [tools["docker-compose"], "-f", COMPOSE] + extra
    rc, out, err = run(argv + ["config"], env=e, cwd=DOCKER_DIR)
    if rc != 0:
        fail("%s config failed:\n%s" % (" ".join(argv), err[-3000:]))
    import yaml
    return yaml.safe_load(out), None


def help_options(bin_dir, binary):
    rc, out, err = run([os.path.join(bin_dir, binary), "--help"])
    return set(re.findall(r"^\s+--([a-z0-9-]+)", out, re.M))


def port_map(svc):
    """{container port: (host ip, host port)} from config's long or short form."""
    out = {}
    for p in svc.get("ports", []):
        if isinstance(p, dict):
            out[str(p["target"])] = (p.get("host_ip"), str(p.get("published")))
        else:
            parts = str(p).split("/")[0].split(":")
            if len(parts) == 3:
                out[parts[2]] = (parts[0], parts[1])
            elif len(parts) == 2:
                out[parts[1]] = (None, parts[0])
            else:
                out[parts[0]] = (None, None)
    return out


def arg_after(cmd, flag):
    vals = [cmd[i + 1] for i, w in enumerate(cmd[:-1]) if w == flag]
    return vals


def part_compose(bin_dir):
    tools = qbdocker.require_tools(need_engine=False)
    # (docker-compose 1.29's config lists every service; `profiles` says
    # which ones start without --profile/COMPOSE_PROFILES.)
    cfg, services = compose_config(tools, [])
    plain = sorted(n for n, s in cfg["services"].items() if not s.get("profiles"))
    demo = sorted(n for n, s in cfg["services"].items() if "demo" in s.get("profiles", []))
    if plain != ["binance", "bithumb", "broker", "certs", "htx"] or demo != ["exsim", "watch"]:
        fail("services without a profile %s (want certs, broker and the three adapters), in "
             "profile demo %s (want exsim, watch)" % (plain, demo))
    ok("docker-compose config validates; services %s; profile demo adds %s" %
       (" ".join(plain), " ".join(demo)))
    demo_cfg, _ = compose_config(tools, ["--profile", "demo"])
    ok("--profile demo validates")
    env_demo = qbdocker.read_env_file(os.path.join(DOCKER_DIR, "demo.env"))
    envf_cfg, _ = compose_config(tools, ["--env-file", os.path.join(DOCKER_DIR, "demo.env")])
    urls = {}
    for ex in ("binance", "htx", "bithumb"):
        cmd = envf_cfg["services"][ex]["command"]
        for u in arg_after(cmd, "--ws-url") + arg_after(cmd, "--rest-url"):
            if not re.match(r"^(ws|http)://exsim:7790(/|$)", u):
                fail("demo.env: %s still points at %s" % (ex, u))
            urls.setdefault(ex, []).append(u)
    paths = {"binance": "/stream", "htx": "/feed", "bithumb": "/websocket/v1"}
    for ex, p in paths.items():
        if "ws://exsim:7790" + p not in urls.get(ex, []):
            fail("demo.env: %s's --ws-url is not ws://exsim:7790%s: %s" % (ex, p, urls.get(ex)))
    if env_demo.get("COMPOSE_PROFILES") != "demo":
        fail("demo.env does not enable the demo profile (COMPOSE_PROFILES=demo)")
    ok("--env-file demo.env: the demo profile, every adapter on ws://exsim:7790 (%s)" %
       ", ".join("%s %s" % (ex, " ".join(u)) for ex, u in sorted(urls.items())))

    # Binaries and config files.
    stages = qbdocker.dockerfile_stages(DOCKERFILE)
    installed = set()
    for _, ins, args in stages[-1]["instructions"]:
        if ins == "COPY":
            flags, srcs, dest = qbdocker.copy_sources(args)
            if dest == "/usr/local/bin/":
                installed.update(os.path.basename(s) for s in srcs)
    opts = {b: help_options(bin_dir, b) for b in BINARIES}
    config_users = {}
    for name, svc in demo_cfg["services"].items():
        cmd = svc.get("command")
        if not isinstance(cmd, list) or not cmd:
            fail("service %s: command must be a list (exec form), got %r" % (name, cmd))
        if cmd[0] not in installed:
            fail("service %s runs %s, which the Dockerfile does not install in /usr/local/bin "
                 "(%s)" % (name, cmd[0], sorted(installed)))
        hc = svc.get("healthcheck", {})
        disabled = hc.get("disable") or hc.get("test") in (["NONE"], "NONE")
        if disabled and name not in ("exsim", "watch", "certs"):
            fail("service %s: healthcheck disabled" % name)
        if not disabled:
            test = " ".join(hc.get("test", []))
            used = re.findall(r"\b(quotebus-[a-z]+)\b", test)
            if not used or any(u not in installed for u in used) or "curl" in test:
                fail("service %s: healthcheck must run installed quotebus binaries: %r" %
                     (name, test))
        for c in arg_after(cmd, "--config"):
            if not c.startswith("/etc/quotebus/"):
                fail("service %s: --config %s is not in the mounted /etc/quotebus" % (name, c))
            local = os.path.join(DOCKER_DIR, "config", c[len("/etc/quotebus/"):])
            if not os.path.exists(local):
                fail("service %s: --config %s: docker/config/%s does not exist" %
                     (name, c, os.path.basename(local)))
            config_users[local] = cmd[0]
        vols = svc.get("volumes", [])
        if not any(str(v).endswith(":/etc/quotebus:ro") or
                   (isinstance(v, dict) and v.get("target") == "/etc/quotebus") for v in vols):
            fail("service %s: docker/config is not mounted at /etc/quotebus: %s" % (name, vols))
        if svc.get("restart") not in ("unless-stopped", "always", "on-failure"):
            fail("service %s: restart policy %r" % (name, svc.get("restart")))
    for local, binary in sorted(config_users.items()):
        with open(local) as f:
            keys = json.load(f)
        bad = [k for k in keys if k not in opts[binary]]
        if bad:
            fail("%s: keys %s are not options of %s (--help)" % (local, bad, binary))
    ok("every command and healthcheck runs a binary of /usr/local/bin; every --config file "
       "exists and its keys are options of its binary (%s)" %
       ", ".join(os.path.basename(k) for k in sorted(config_users)))

    # The broker: listening inside the container where the ports are published.
    broker = cfg["services"]["broker"]
    cmd = broker["command"]
    if "--no-spawn" not in cmd:
        fail("broker: no --no-spawn")
    if arg_after(cmd, "--ingest") != ["tls+tcp://0.0.0.0:7783"]:
        fail("broker: --ingest should be only tls+tcp://0.0.0.0:7783 (mutual TLS): %s" %
             arg_after(cmd, "--ingest"))
    tls_dir = "/var/lib/quotebus/tls/"
    want_tls = {"--ingest-tls-cert": "broker.pem", "--ingest-tls-key": "broker.key",
                "--ingest-tls-ca": "ca.pem"}
    for flag, f in want_tls.items():
        if arg_after(cmd, flag) != [tls_dir + f]:
            fail("broker: %s should be %s%s: %s" % (flag, tls_dir, f, arg_after(cmd, flag)))
    certs = cfg["services"]["certs"]
    if certs["command"][:2] != ["make-certs.sh", tls_dir.rstrip("/")] or \
            not all(ex in certs["command"] for ex in ("binance", "htx", "bithumb")):
        fail("certs: should run make-certs.sh %s binance htx bithumb: %s" %
             (tls_dir.rstrip("/"), certs["command"]))

    def tls_mount(svc, ro):
        for v in svc.get("volumes", []):
            src, tgt, mode = (v.get("source"), v.get("target"), "ro" if v.get("read_only")
                              else "rw") if isinstance(v, dict) else (str(v).split(":") + [""])[:3]
            if tgt == tls_dir.rstrip("/") and (mode == "ro") == ro:
                return True
        return False
    if not tls_mount(certs, False):
        fail("certs: the tls volume is not mounted writable at %s" % tls_dir)
    for name in ("broker", "binance", "htx", "bithumb"):
        svc = cfg["services"][name]
        if not tls_mount(svc, True):
            fail("%s: the tls volume is not mounted read-only at %s: %s" %
                 (name, tls_dir, svc.get("volumes")))
        cond = svc.get("depends_on", {}).get("certs", {}).get("condition")
        if cond != "service_completed_successfully":
            fail("%s: must start after certs completed (depends_on condition %r)" % (name, cond))
    ok("certs: make-certs.sh into the tls volume; broker, binance, htx, bithumb mount it "
       "read-only and start after it")
    with open(os.path.join(DOCKER_DIR, "config", "broker.json")) as f:
        bcfg = json.load(f)
    listen = {"7781": arg_after(cmd, "--pub") or bcfg.get("pub")}
    listen["7780"] = bcfg.get("http-listen")
    listen["7782"] = bcfg.get("snapshot")
    want = {"7780": "0.0.0.0:7780", "7781": ["tcp://0.0.0.0:7781"],
            "7782": ["tcp://0.0.0.0:7782"]}
    for port, w in want.items():
        if listen[port] != w:
            fail("broker: port %s is published but the broker listens on %r (want %r)" %
                 (port, listen[port], w))
    published = port_map(broker)
    for port in ("7780", "7781", "7782"):
        if published.get(port) != ("127.0.0.1", port):
            fail("broker: container port %s should be published on 127.0.0.1:%s by default: %s"
                 % (port, port, published.get(port)))
    if "7783" in published:
        fail("broker: the ingest port 7783 must not be published (compose network only)")
    bld = broker.get("build") or {}
    ctx = bld.get("context", "") if isinstance(bld, dict) else bld
    ctx = os.path.normpath(os.path.join(DOCKER_DIR, ctx))
    dfile = os.path.join(ctx, bld.get("dockerfile", "Dockerfile")) if isinstance(bld, dict) \
        else os.path.join(ctx, "Dockerfile")
    if ctx != SRC or os.path.realpath(dfile) != os.path.realpath(DOCKERFILE):
        fail("broker: `docker-compose build` must build docker/Dockerfile with the repository "
             "as context, got context %s dockerfile %s" % (ctx, dfile))
    ok("docker-compose build: docker/Dockerfile, context = the repository root")
    ok("broker: --no-spawn, ingest tls+tcp://0.0.0.0:7783 with client certificates (not "
       "published), 7780/7781/7782 published on 127.0.0.1 and listened on inside")
    for ex in ("binance", "htx", "bithumb"):
        svc = cfg["services"][ex]
        if svc["command"][:2] != ["quotebus-adapter", ex]:
            fail("%s: command %s" % (ex, svc["command"][:2]))
        if arg_after(svc["command"], "--broker") != ["tls+tcp://broker:7783"]:
            fail("%s: --broker should be tls+tcp://broker:7783" % ex)
        for flag, f in (("--broker-tls-ca", "ca.pem"), ("--broker-tls-cert", ex + ".pem"),
                        ("--broker-tls-key", ex + ".key")):
            if arg_after(svc["command"], flag) != [tls_dir + f]:
                fail("%s: %s should be %s%s" % (ex, flag, tls_dir, f))
        if "broker" not in svc.get("depends_on", {}):
            fail("%s: no depends_on broker" % ex)
        if not svc.get("healthcheck", {}).get("test"):
            fail("%s: no healthcheck" % ex)
    if demo_cfg["services"]["watch"]["depends_on"]["broker"]["condition"] != "service_healthy":
        fail("watch: depends_on broker should be service_healthy")
    ok("adapters dial tls+tcp://broker:7783 with their own certificates, depend on the "
       "broker, have healthchecks; watch waits for a healthy broker")
    # Environment expansion into the command line.
    env = {"QB_BINANCE_SYMBOLS": "BTC-USDT,SOL-USDT", "QB_LOG_LEVEL": "debug",
           "QB_PUB_PORT": "17781", "QB_BIND_ADDR": "0.0.0.0"}
    ecfg, _ = compose_config(tools, [], env)
    b = ecfg["services"]["binance"]["command"]
    if arg_after(b, "--symbols") != ["BTC-USDT,SOL-USDT"] or \
            arg_after(b, "--log-level") != ["debug"]:
        fail("QB_BINANCE_SYMBOLS/QB_LOG_LEVEL not expanded into binance's command: %s" % b)
    pp = port_map(ecfg["services"]["broker"]).get("7781")
    if pp != ("0.0.0.0", "17781"):
        fail("QB_PUB_PORT/QB_BIND_ADDR not applied: %s" % pp)
    ok("QB_BINANCE_SYMBOLS, QB_LOG_LEVEL, QB_PUB_PORT, QB_BIND_ADDR expand as documented")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True,
                    help="the CMake build directory these tests belong to")
    ap.add_argument("--part", required=True, choices=["dockerfile", "build-stage", "compose"])
    ap.add_argument("--sanitized", action="store_true",
                    help="a sanitizer build: its runtime libraries are not the image's")
    args = ap.parse_args()
    build_dir = os.path.abspath(args.build_dir)
    bin_dir = os.path.join(build_dir, "bin")
    for b in BINARIES:
        if not os.access(os.path.join(bin_dir, b), os.X_OK):
            fail("%s not built in %s" % (b, bin_dir))
    if args.part == "dockerfile":
        part_dockerfile(build_dir, args.sanitized)
    elif args.part == "build-stage":
        if args.sanitized:
            skip_cannot_run_here("sanitizer build: the Dockerfile's build stage does not "
                                 "depend on it; the plain build's pass runs this check")
        part_build_stage()
    else:
        part_compose(bin_dir)
    log("PASS %s: %d checks" % (args.part, len(CHECKS)))


if __name__ == "__main__":
    main()
