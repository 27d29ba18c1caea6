#!/usr/bin/env python3
"""Every binary answers --help and --version, rejects unknown options and
unknown config keys with exit code 2, and accepts a valid --config file."""
import json
import os
import subprocess
import sys
import tempfile

BINS = ["quotebus-broker", "quotebus-adapter", "quotebus-sub", "quotebus-exsim"]


def run(argv):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)


def main():
    bin_dir = sys.argv[sys.argv.index("--bin-dir") + 1]
    failures = 0
    passed = 0
    with tempfile.TemporaryDirectory() as tmp:
        bad_cfg = os.path.join(tmp, "bad.json")
        with open(bad_cfg, "w") as f:
            json.dump({"no-such-option": 1}, f)
        good_cfg = os.path.join(tmp, "good.json")
        with open(good_cfg, "w") as f:
            json.dump({"log-level": "debug"}, f)
        for b in BINS:
            exe = os.path.join(bin_dir, b)
            checks = []
            r = run([exe, "--help"])
            checks.append(("--help exits 0 with usage", r.returncode == 0 and
                           b"Usage: " + b.encode() in r.stdout and b"--config" in r.stdout))
            r = run([exe, "--version"])
            checks.append(("--version", r.returncode == 0 and r.stdout.startswith(b.encode() + b" ")))
            r = run([exe, "--no-such-flag"])
            checks.append(("unknown flag exits 2", r.returncode == 2 and r.stderr))
            r = run([exe, "--config", bad_cfg, "--help"])
            checks.append(("--help wins over config", r.returncode == 0))
            r = run([exe, "--config", bad_cfg])
            checks.append(("unknown config key exits 2", r.returncode == 2 and
                           b"no-such-option" in r.stderr))
            r = run([exe, "--config", os.path.join(tmp, "missing.json")])
            checks.append(("missing config exits 2", r.returncode == 2))
            if b == "quotebus-adapter":
                # --batch-maps takes 1..64: out of range is refused at start
                for v in ("0", "65", "-1"):
                    r = run([exe, "binance", "--symbols", "BTC-USDT", "--batch-maps", v])
                    checks.append(("--batch-maps %s exits 2" % v, r.returncode == 2 and
                                   b"out of range" in r.stderr))
            for name, ok in checks:
                if ok:
                    passed += 1
                else:
                    failures += 1
                    print("FAIL %s: %s" % (b, name))
    print("%d passed, %d failed" % (passed, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
