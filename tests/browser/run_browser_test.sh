#!/usr/bin/env bash
# run_browser_test.sh: runs test_page.mjs (the web page in headless chromium).
#   run_browser_test.sh SRC_DIR BUILD_DIR BIN_DIR
# Installs playwright-core with `npm ci` from tests/browser/package-lock.json
# into BUILD_DIR/node (not into the source tree; again only when the lock file
# changed). Playwright's own browser download is never used: the test drives
# Debian's chromium (apt-get install chromium). Exit 77 (skip) with a clear
# message when node, npm or chromium is missing or npm ci cannot reach the
# registry.
set -u
src=$1
build=$2
bin=$3
here="$src/tests/browser"
chromium=${QB_CHROMIUM:-/usr/bin/chromium}

skip() {
    echo "SKIP: $*"
    exit 77
}

command -v node >/dev/null 2>&1 || skip "node is not installed"
[ -x "$chromium" ] || skip "$chromium not found (apt-get install chromium)"

mods="$build/node"
mkdir -p "$mods"
if ! cmp -s "$here/package-lock.json" "$mods/package-lock.json" ||
   [ ! -f "$mods/node_modules/playwright-core/index.mjs" ]; then
    command -v npm >/dev/null 2>&1 || skip "npm is not installed"
    cp "$here/package.json" "$here/package-lock.json" "$mods/"
    echo "npm ci in $mods"
    if ! (cd "$mods" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund \
            --loglevel=error >npm-ci.log 2>&1); then
        cat "$mods/npm-ci.log"
        rm -f "$mods/package-lock.json"
        skip "npm ci failed (registry unreachable?): playwright-core is not available"
    fi
fi

exec node "$here/test_page.mjs" --bin-dir "$bin" --web-root "$src/clients/web" \
    --modules "$mods" --artifacts "$build/screenshots" --chromium "$chromium"
