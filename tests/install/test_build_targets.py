#!/usr/bin/env python3
"""./scripts/run builds only what it runs (CTest `build_targets`, label
integration).

  1. scripts/build.sh FRESH_DIR --target quotebus-broker, in a fresh temp
     build directory: quotebus-broker is built and nothing else lands in
     bin/ (no unit test, benchmark or fuzz binary). About 15 s.
  2. scripts/run itself, from a temp copy of scripts/ whose install-deps.sh
     and build.sh record their arguments (and whose build.sh leaves a
     quotebus-broker that records its own): run asks install-deps.sh for
     --build only, asks build.sh for exactly the programs it runs
     (quotebus-broker, quotebus-adapter, quotebus-exsim, quotebus-sub,
     quotebus-top; a Release build of the repository's build/), and hands
     its arguments to the broker.

Usage: test_build_targets.py (no arguments)
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
RUN_TARGETS = {"quotebus-broker", "quotebus-adapter", "quotebus-exsim", "quotebus-sub",
               "quotebus-top"}


def fail(msg):
    print("FAIL: " + msg, flush=True)
    raise SystemExit(1)


def build_sh_targets(tmp):
    build = os.path.join(tmp, "build")
    t = time.time()
    r = subprocess.run([os.path.join(SRC, "scripts", "build.sh"), build, "-DQB_SANITIZE=",
                        "--target", "quotebus-broker"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    out = r.stdout.decode("utf-8", "replace")
    if r.returncode != 0:
        fail("scripts/build.sh --target quotebus-broker failed (%d):\n%s" % (r.returncode,
                                                                            out[-4000:]))
    built = sorted(os.listdir(os.path.join(build, "bin")))
    if built != ["quotebus-broker"]:
        fail("scripts/build.sh --target quotebus-broker built %s (want quotebus-broker only)" %
             built)
    print("ok: scripts/build.sh DIR --target quotebus-broker in a fresh directory built only "
          "quotebus-broker (%.0f s)" % (time.time() - t), flush=True)


def scripts_run(tmp):
    root = os.path.join(tmp, "repo")
    os.makedirs(os.path.join(root, "scripts"))
    shutil.copy2(os.path.join(SRC, "scripts", "run"), os.path.join(root, "scripts", "run"))
    log = os.path.join(tmp, "calls")
    broker = os.path.join(root, "build", "bin", "quotebus-broker")
    broker_stub = os.path.join(tmp, "broker-stub")
    with open(broker_stub, "w") as f:
        f.write("#!/bin/sh\nprintf 'broker %%s\\n' \"$*\" >> %s\n" % log)
    stubs = {
        "install-deps.sh": "printf 'install-deps %%s\\n' \"$*\" >> %s\n" % log,
        "build.sh": "printf 'build %%s\\n' \"$*\" >> %s\nmkdir -p %s\ncp %s %s\n"
                    "chmod +x %s\n" % (log, os.path.dirname(broker), broker_stub, broker, broker),
    }
    for name, body in stubs.items():
        p = os.path.join(root, "scripts", name)
        with open(p, "w") as f:
            f.write("#!/bin/sh\n" + body)
        os.chmod(p, 0o755)
    r = subprocess.run([os.path.join(root, "scripts", "run"), "--demo", "--log-level", "warn"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = r.stdout.decode("utf-8", "replace")
    if r.returncode != 0 or not os.path.exists(log):
        fail("scripts/run (with recording stubs) failed (%d):\n%s" % (r.returncode, out))
    with open(log) as f:
        calls = [ln.rstrip("\n").split(" ", 1) for ln in f]
    calls = [(c[0], c[1].split() if len(c) > 1 else []) for c in calls]
    names = [c[0] for c in calls]
    if names != ["install-deps", "build", "broker"]:
        fail("scripts/run called %s (want install-deps, build, broker)" % calls)
    if calls[0][1] != ["--build"]:
        fail("scripts/run: install-deps.sh %s (want --build: no test packages)" % calls[0][1])
    args = calls[1][1]
    if not args or args[0] != os.path.join(root, "build"):
        fail("scripts/run: build.sh %s (want the repository's build/ first)" % args)
    targets = {args[i + 1] for i, a in enumerate(args[:-1]) if a == "--target"}
    if targets != RUN_TARGETS:
        fail("scripts/run builds targets %s, want exactly %s" % (sorted(targets),
                                                                  sorted(RUN_TARGETS)))
    if "-DCMAKE_BUILD_TYPE=Release" not in args:
        fail("scripts/run: build.sh %s (want a Release build)" % args)
    if calls[2][1] != ["--demo", "--log-level", "warn"]:
        fail("scripts/run: the broker got %s (want the run's own arguments)" % calls[2][1])
    print("ok: scripts/run: install-deps.sh --build, build.sh BUILD %s, then the broker with "
          "its arguments" % " ".join(args[1:]), flush=True)


def main():
    tmp = tempfile.mkdtemp(prefix="qb-build-targets-")
    try:
        scripts_run(tmp)
        build_sh_targets(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("PASS build_targets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
