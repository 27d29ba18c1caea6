#!/usr/bin/env bash
# run_browser_test.sh: runs test_page.mjs (the web page in headless chromium).
#   run_browser_test.sh SRC_DIR BUILD_DIR BIN_DIR
# Installs playwright-core with `npm ci` from tests/browser/package-lock.json
# into BUILD_DIR/node (not into the source tree; again only when the lock file
# changed). Playwright's own browser download is never used: the test drives
# Debian's chromium (QB_CHROMIUM, default /usr/bin/chromium), which
# scripts/install-deps.sh installs with node and npm.
#
# Skips follow the suite's policy (README, "Skipped tests"): a missing
# prerequisite exits 77 with the reason; under CI (CI=true) it fails instead
# (exit 1, "FAIL (CI): would have skipped: REASON"), because CI runs
# scripts/install-deps.sh first. Only what cannot be installed on this
# machine (not root and no sudo, no apt-get, apt-get or npm ci failing)
# still skips under CI, as "SKIP (cannot run here): REASON".
set -u
src=$1
build=$2
bin=$3
here="$src/tests/browser"
chromium=${QB_CHROMIUM:-/usr/bin/chromium}

under_ci() {
    case "${CI:-}" in
    "" | 0 | false | FALSE | False | no) return 1 ;;
    esac
    return 0
}

# Something this machine lacks but could have.
skip() {
    if under_ci; then
        echo "FAIL (CI): would have skipped: $*"
        exit 1
    fi
    echo "SKIP: $*"
    exit 77
}

# Something no install can give this machine.
skip_cannot_run_here() {
    echo "SKIP (cannot run here): $*"
    exit 77
}

# Why Debian packages cannot be installed here; empty when they can.
why_not_installable() {
    if [ "$(id -u)" -ne 0 ] && ! sudo -n true >/dev/null 2>&1; then
        echo "not root and no sudo"
    elif ! command -v apt-get >/dev/null 2>&1; then
        echo "no apt-get on this machine"
    elif ! apt-get install -s -qq "$@" >/dev/null 2>&1; then
        echo "apt-get cannot install $* here"
    fi
}

# missing_package REASON PACKAGE...: skips for a missing Debian package.
missing_package() {
    local reason=$1
    shift
    local why
    why=$(why_not_installable "$@")
    if [ -n "$why" ]; then
        skip_cannot_run_here "$reason; $why"
    fi
    skip "$reason (scripts/install-deps.sh installs Debian's $*)"
}

command -v node >/dev/null 2>&1 || missing_package "node is not installed" nodejs
[ -x "$chromium" ] || missing_package "$chromium not found" chromium

mods="$build/node"
mkdir -p "$mods"
if ! cmp -s "$here/package-lock.json" "$mods/package-lock.json" ||
   [ ! -f "$mods/node_modules/playwright-core/index.mjs" ]; then
    command -v npm >/dev/null 2>&1 || missing_package "npm is not installed" npm
    cp "$here/package.json" "$here/package-lock.json" "$mods/"
    echo "npm ci in $mods"
    if ! (cd "$mods" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund \
            --loglevel=error >npm-ci.log 2>&1); then
        cat "$mods/npm-ci.log"
        rm -f "$mods/package-lock.json"
        skip_cannot_run_here "npm ci failed (registry unreachable?): playwright-core is not available"
    fi
fi

exec node "$here/test_page.mjs" --bin-dir "$bin" --web-root "$src/clients/web" \
    --modules "$mods" --artifacts "$build/screenshots" --chromium "$chromium"
