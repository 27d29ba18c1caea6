#!/usr/bin/env python3
"""The suite's skip policy (README, "Skipped tests"), and that
scripts/install-deps.sh installs what the skipping tests need.

A test whose prerequisite is missing exits 77 (CTest: skipped) with the
reason. Under CI (CI=true) the same skip is a failure, exit 1 with
"FAIL (CI): would have skipped: REASON", because CI runs
scripts/install-deps.sh first; only what no install can change here still
exits 77 under CI, as "SKIP (cannot run here): REASON". Checked on both
implementations of the policy:

  - tests/browser/run_browser_test.sh with QB_CHROMIUM=/nonexistent: 77
    and the path without CI; exit 1 and the path under CI (77, "cannot run
    here", when this machine cannot install packages: not root, no sudo);
  - tests/docker/qbdocker.py: skip() 77 / CI 1, skip_cannot_run_here() 77
    under CI too.

And scripts/install-deps.sh --dry-run (installs nothing): chromium is one
of its packages, and nodejs and npm are installed only when the node and
npm commands are missing (a nodesource node brings its own npm, which
Debian's npm package conflicts with).

Usage: test_skip_policy.py (no arguments; no network, a few seconds).
"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
FAILURES = []


def check(ok, what, detail=""):
    print("%s: %s%s" % ("ok" if ok else "FAIL", what, "" if ok else "\n" + detail), flush=True)
    if not ok:
        FAILURES.append(what)


def run(argv, env_extra=None, drop=(), **kw):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_extra or {})
    r = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60, **kw)
    return r.returncode, r.stdout.decode("utf-8", "replace")


def can_install_packages():
    """What run_browser_test.sh's why_not_installable() decides first."""
    if os.geteuid() == 0:
        return bool(shutil.which("apt-get"))
    return subprocess.run(["sudo", "-n", "true"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0 if shutil.which("sudo") \
        else False


def browser_skip(tmp):
    script = os.path.join(SRC, "tests", "browser", "run_browser_test.sh")
    argv = ["bash", script, SRC, tmp, os.path.join(tmp, "bin")]
    missing = {"QB_CHROMIUM": "/nonexistent"}
    rc, out = run(argv, missing, drop=("CI",))
    check(rc == 77 and out.startswith("SKIP: ") and "/nonexistent" in out,
          "run_browser_test.sh without CI: a missing chromium skips (77) with the reason",
          "exit %d:\n%s" % (rc, out))
    for ci in ("true",):
        rc, out = run(argv, dict(missing, CI=ci))
        if can_install_packages():
            check(rc == 1 and "FAIL (CI): would have skipped: /nonexistent not found" in out,
                  "run_browser_test.sh under CI=%s: a missing chromium fails (1) with the reason"
                  % ci, "exit %d:\n%s" % (rc, out))
        else:
            check(rc == 77 and out.startswith("SKIP (cannot run here): ") and
                  "/nonexistent" in out,
                  "run_browser_test.sh under CI=%s on a machine that cannot install packages: "
                  "skips (77), saying it cannot run here" % ci, "exit %d:\n%s" % (rc, out))
    rc, out = run(argv, dict(missing, CI="false"))
    check(rc == 77, "run_browser_test.sh with CI=false: skips (77)", "exit %d:\n%s" % (rc, out))


def docker_skip():
    docker_dir = os.path.join(SRC, "tests", "docker")
    for fn, ci, want, prefix in (("skip", None, 77, "SKIP: "),
                                 ("skip", "true", 1, "FAIL (CI): would have skipped: "),
                                 ("skip_cannot_run_here", None, 77, "SKIP (cannot run here): "),
                                 ("skip_cannot_run_here", "true", 77,
                                  "SKIP (cannot run here): ")):
        code = "import sys; sys.path.insert(0, %r); import qbdocker; qbdocker.%s('the reason')" % (
            docker_dir, fn)
        rc, out = run([sys.executable, "-c", code], {"CI": ci} if ci else None, drop=("CI",))
        check(rc == want and out.strip() == prefix + "the reason",
              "qbdocker.%s() %s: exit %d, %r" % (fn, "under CI" if ci else "without CI", want,
                                                 prefix + "the reason"),
              "exit %d:\n%s" % (rc, out))


def install_deps(tmp):
    script = os.path.join(SRC, "scripts", "install-deps.sh")
    with open(script) as f:
        text = f.read()
    test_pkgs = text.split("TEST_PACKAGES=(", 1)[-1].split("\n)", 1)[0]
    check(" chromium " in " %s " % " ".join(ln.split("#")[0] for ln in test_pkgs.splitlines()),
          "install-deps.sh installs chromium (TEST_PACKAGES)")
    # A PATH without node, npm, docker and docker-compose: the commands a
    # dry run needs, and nothing else.
    fake = os.path.join(tmp, "fakebin")
    os.makedirs(fake)
    for c in ("bash", "dpkg-query", "grep", "id", "cat"):
        p = shutil.which(c)
        if p:
            os.symlink(p, os.path.join(fake, c))
    rc, out = run([os.path.join(fake, "bash"), script, "--dry-run"], {"PATH": fake})
    words = out.split()
    check(rc == 0 and "nodejs" in words and "npm" in words and "docker-compose" in words,
          "install-deps.sh --dry-run without node, npm, docker-compose: installs nodejs, npm, "
          "docker-compose", "exit %d:\n%s" % (rc, out))
    rc, out = run(["bash", script, "--dry-run"])
    words = out.split()
    for cmd, pkg in (("node", "nodejs"), ("npm", "npm"), ("docker-compose", "docker-compose")):
        if shutil.which(cmd):
            check(rc == 0 and pkg not in words,
                  "install-deps.sh --dry-run with %s on PATH (%s): does not install %s" %
                  (cmd, shutil.which(cmd), pkg), "exit %d:\n%s" % (rc, out))
    rc, out = run(["bash", script, "--build", "--dry-run"])
    check(rc == 0 and "chromium" not in out.split() and "nodejs" not in out.split(),
          "install-deps.sh --build --dry-run: only the build packages (no chromium, no nodejs)",
          "exit %d:\n%s" % (rc, out))


def main():
    with tempfile.TemporaryDirectory(prefix="qb-skip-policy-") as tmp:
        browser_skip(tmp)
        docker_skip()
        install_deps(tmp)
    if FAILURES:
        print("FAIL: %d check(s): %s" % (len(FAILURES), "; ".join(FAILURES)))
        return 1
    print("PASS skip policy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
