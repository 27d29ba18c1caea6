#!/usr/bin/env bash
# build.sh BUILD_DIR [--target NAME]... [CMAKE_ARGS...]: configures (once)
# and builds quotebus: every target (binaries, tests, benchmarks, fuzz
# targets), or only the targets named, with what they need (./scripts/run
# builds just the programs it runs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/build}
shift || true
targets=()
cmake_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --target)
      [ $# -ge 2 ] || { echo "build.sh: --target needs a name" >&2; exit 2; }
      targets+=(--target "$2")
      shift 2
      ;;
    *)
      cmake_args+=("$1")
      shift
      ;;
  esac
done
cmake -S "$root" -B "$dir" "${cmake_args[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)" "${targets[@]}"
