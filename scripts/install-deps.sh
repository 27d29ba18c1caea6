#!/usr/bin/env bash
# install-deps.sh [--build] [--dry-run]: installs every Debian 12 package that
# quotebus needs to build, run its demo and run its whole test suite.
#
#   (no option)  everything: what ./scripts/test and CI need, so that no test
#                skips on a fresh machine (the browser test's chromium and
#                node, the docker tests' engine and docker-compose, tmux, ...)
#   --build      only what building and running quotebus needs (./scripts/run,
#                the Dockerfile's build stage)
#   --dry-run    print what would be installed, install nothing (no root needed)
#
# Idempotent and quiet: installs only what is missing, runs apt-get update
# only when something is, and prints one line when everything is present.
# Needs root (uses sudo when not root). The build packages must install; a
# test package that cannot be installed here is reported and left out, and
# the tests that need it say why they skip.
set -euo pipefail

BUILD_PACKAGES=(
  # build (g++: the Binance adapter's simdjson hot path, adapters/binance_json.cc)
  build-essential g++ cmake pkg-config git
  # libraries (the only dependencies of the product)
  libwebsockets-dev libnng-dev libmsgpack-dev libmsgpuck-dev zlib1g-dev libjsmn-dev libssl-dev
  libsimdjson-dev
  # runtime: upstream TLS verification; jq for the quick start's JSON lines
  ca-certificates openssl jq
)
TEST_PACKAGES=(
  # Debian's Python with websockets and msgpack (what a user's machine has),
  # nngcat for raw NNG peers, tmux for terminal tests
  python3 python3-websockets python3-msgpack nng-utils procps tmux
  # the format check that ./scripts/test runs first (scripts/check-format.sh)
  clang-format
  # the browser test (tests/browser): Debian's chromium, driven headless,
  # and a font for its screenshots
  chromium fonts-dejavu-core
  # benchmarks: the JSON parsers compared against jsmn, valgrind for instruction counts
  libcjson-dev libjansson-dev valgrind
  # fuzzing: clang with libFuzzer and the sanitizer runtimes (tests/fuzz/run-fuzzers.sh)
  clang libclang-rt-14-dev
)
# PACKAGE:COMMAND[,COMMAND...]: installed only when none of its commands
# exists, because a machine may have them from elsewhere: nodesource's
# nodejs brings its own npm, which Debian's npm package conflicts with;
# Docker's own packages provide docker and dockerd. node and npm run the
# browser test; docker.io (an engine: on a systemd machine its package
# starts dockerd) and docker-compose run the docker tests (tests/docker).
TEST_IF_MISSING=(
  nodejs:node
  npm:npm
  docker.io:docker,dockerd
  docker-compose:docker-compose
)

build_only=0
dry_run=0
for arg in "$@"; do
  case "$arg" in
    --build) build_only=1 ;;
    --dry-run) dry_run=1 ;;
    *) echo "usage: install-deps.sh [--build] [--dry-run]" >&2; exit 2 ;;
  esac
done


# A command on PATH or in the sbin directories (dockerd is in /usr/sbin,
# which a user's PATH may lack).
have_command() {
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

# The packages of "$@" that are not installed (one dpkg-query for all).
missing_of() {
  local installed p
  installed=" $(dpkg-query -W -f='${Package}=${Status} ' "$@" 2>/dev/null || true)"
  for p in "$@"; do
    case "$installed" in
      *" $p=install ok installed "*) ;;
      *) echo "$p" ;;
    esac
  done
}

mapfile -t build_missing < <(missing_of "${BUILD_PACKAGES[@]}")
test_missing=()
n_total=${#BUILD_PACKAGES[@]}
if [ "$build_only" = 0 ]; then
  mapfile -t test_missing < <(missing_of "${TEST_PACKAGES[@]}")
  n_total=$((n_total + ${#TEST_PACKAGES[@]} + ${#TEST_IF_MISSING[@]}))
  for entry in "${TEST_IF_MISSING[@]}"; do
    pkg=${entry%%:*}
    found=0
    IFS=, read -r -a cmds <<<"${entry#*:}"
    for c in "${cmds[@]}"; do
      if have_command "$c"; then
        found=1
      fi
    done
    if [ "$found" = 0 ]; then
      test_missing+=("$pkg")
    fi
  done
fi

all_missing=("${build_missing[@]}" "${test_missing[@]}")
if [ ${#all_missing[@]} -eq 0 ]; then
  echo "install-deps: all $n_total packages present"
  exit 0
fi
if [ "$dry_run" = 1 ]; then
  echo "install-deps: would install ${all_missing[*]}"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: not root and no sudo: install these Debian packages as root:" \
      "${all_missing[*]}" >&2
    exit 1
  fi
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
apt_install() {
  $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@"
}
echo "install-deps: installing ${all_missing[*]}"
$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
if [ ${#build_missing[@]} -gt 0 ]; then
  apt_install "${build_missing[@]}"
fi
if [ ${#test_missing[@]} -gt 0 ] && ! apt_install "${test_missing[@]}"; then
  # One package that cannot be installed here must not keep the others out.
  failed=()
  for p in "${test_missing[@]}"; do
    apt_install "$p" || failed+=("$p")
  done
  if [ ${#failed[@]} -gt 0 ]; then
    echo "install-deps: could not install ${failed[*]} (see apt-get above): the tests that" \
      "need them skip, saying why" >&2
  fi
fi
