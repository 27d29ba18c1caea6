#!/usr/bin/env bash
# build.sh BUILD_DIR [CMAKE_ARGS...]: configures (once) and builds quotebus.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/build}
shift || true
cmake -S "$root" -B "$dir" "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
