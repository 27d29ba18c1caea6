#!/usr/bin/env bash
# install-deps.sh: installs every Debian 12 package that quotebus needs to
# build, test and run its demo. Idempotent: installs only what is missing,
# and runs apt-get update only when something is. Needs root (uses sudo when
# not root).
set -euo pipefail

PACKAGES=(
  # build (g++: the Binance adapter's simdjson hot path, adapters/binance_json.cc)
  build-essential g++ cmake pkg-config git
  # libraries (the only dependencies of the product)
  libwebsockets-dev libnng-dev libmsgpack-dev libmsgpuck-dev zlib1g-dev libjsmn-dev libssl-dev
  libsimdjson-dev
  # runtime: upstream TLS verification
  ca-certificates openssl
  # tests: Debian's Python with websockets and msgpack (what a user's machine has),
  # nngcat for raw NNG peers, tmux for terminal tests, JSON tooling for the demo
  python3 python3-websockets python3-msgpack nng-utils jq procps tmux
  # benchmarks: the JSON parsers compared against jsmn, valgrind for instruction counts
  libcjson-dev libjansson-dev valgrind
  # fuzzing: clang with libFuzzer and the sanitizer runtimes (tests/fuzz/run-fuzzers.sh)
  clang libclang-rt-14-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
