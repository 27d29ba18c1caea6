#!/usr/bin/env bash
# run-fuzzers.sh: builds quotebus's fuzz targets with clang and libFuzzer
# (-fsanitize=fuzzer,address,undefined) in their own build directory and
# fuzzes every target for a given time, JOBS targets at a time.
#
#   tests/fuzz/run-fuzzers.sh [SECONDS_PER_TARGET] [TARGET...]
#     env: BUILD_DIR (default <repo>/build-fuzz), JOBS (default nproc),
#          QB_FUZZ_SHARED=0 to not seed from ../shared/exchange-data
#
# Per target: the committed seeds (tests/fuzz/corpus/<t>/) are copied into
# BUILD_DIR/work/corpus/<t>/ (plus, at run time only, frames of
# ../shared/exchange-data via make-seeds.py --shared: never committed), the
# fuzzer grows that work corpus, and crashes, leaks, timeouts and OOMs land
# in BUILD_DIR/work/artifacts/<t>/. A summary table (executions, coverage,
# corpus size, findings) is printed at the end and written to
# BUILD_DIR/work/summary.txt (corpus: libFuzzer's count of inputs kept).
# Exit 1 when any target has a finding.
# The libraries are compiled from the working tree: do not run it while
# someone edits a header the targets include (a struct layout that changes
# between two compiles shows up as an immediate crash, on the empty input).
# A finding is fixed, then its input is committed as
# tests/fuzz/corpus/<t>/crash-<what> so the gcc replay (ctest -L fuzz) keeps it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-300}
shift || true
build=${BUILD_DIR:-$root/build-fuzz}
jobs=${JOBS:-$(nproc)}
all=(binance htx bithumb msgpack config wsreq)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

command -v clang >/dev/null || { echo "run-fuzzers: clang not installed (scripts/install-deps.sh)"; exit 1; }
command -v clang++ >/dev/null || { echo "run-fuzzers: clang++ not installed (scripts/install-deps.sh)"; exit 1; }

echo "== build libraries with clang (fuzzer-no-link, ASan, UBSan) in $build =="
cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DQB_SANITIZE=fuzzer-no-link,address,undefined >/dev/null
libs_ok=1
cmake --build "$build" -j"$jobs" --target qbcommon qbproto qbadapter >/dev/null
if ! cmake --build "$build" -j"$jobs" --target qbbroker >"$build/qbbroker-build.log" 2>&1; then
  echo "run-fuzzers: qbbroker does not build (see $build/qbbroker-build.log): wsreq skipped"
  libs_ok=0
fi

cflags=(-g -O1 -std=c11 -D_GNU_SOURCE -DQB_VERSION=\"fuzz\" -fsanitize=fuzzer,address,undefined
        -fno-sanitize-recover=all -fno-omit-frame-pointer
        -I"$root/common" -I"$root/proto" -I"$root/adapters" -I"$root/broker" -I"$here")
# shellcheck disable=SC2207
deps=($(pkg-config --libs libwebsockets msgpack) -lnng -lz -lssl -lcrypto -lpthread)
B="$build"
mkdir -p "$build/fuzzers" "$build/work"
# The exchange targets link libqbadapter, which holds a C++ object
# (adapters/binance_json.cc, simdjson DOM): they are compiled by clang
# and linked by clang++ (libstdc++ and UBSan's C++ runtime) with -lsimdjson.
for t in "${targets[@]}"; do
  cxx=0
  case $t in
    binance|htx|bithumb)
      objs=("$B/adapters/libqbadapter.a" "$B/proto/libqbproto.a" "$B/common/libqbcommon.a")
      cxx=1 ;;
    msgpack) objs=("$root/broker/topics.c" "$B/proto/libqbproto.a" "$B/common/libqbcommon.a") ;;
    config) objs=("$B/common/libqbcommon.a") ;;
    wsreq)
      [ $libs_ok = 1 ] || continue
      objs=("$B/broker/libqbbroker.a" "$B/proto/libqbproto.a" "$B/common/libqbcommon.a") ;;
    *) echo "run-fuzzers: unknown target $t"; exit 2 ;;
  esac
  if [ $cxx = 1 ]; then
    clang "${cflags[@]}" -c "$here/fuzz_$t.c" -o "$build/fuzzers/fuzz_$t.o"
    clang++ -fsanitize=fuzzer,address,undefined "$build/fuzzers/fuzz_$t.o" "${objs[@]}" \
      "${deps[@]}" -lsimdjson -o "$build/fuzzers/fuzz_$t"
  else
    clang "${cflags[@]}" "$here/fuzz_$t.c" "${objs[@]}" "${deps[@]}" -o "$build/fuzzers/fuzz_$t"
  fi
done

echo "== seeds =="
rm -rf "$build/work/seeds"
/usr/bin/python3 "$here/make-seeds.py" "$build/work/seeds" \
  $( [ "${QB_FUZZ_SHARED:-1}" != 0 ] && [ -d "$root/../shared/exchange-data" ] && echo --shared "$root/../shared/exchange-data" )

run_one() {
  local t=$1 w="$build/work"
  mkdir -p "$w/corpus/$t" "$w/artifacts/$t"
  cp -n "$here/corpus/$t/"* "$w/corpus/$t/" 2>/dev/null || true
  cp -n "$w/seeds/$t/"* "$w/corpus/$t/" 2>/dev/null || true
  local maxlen=65536
  case $t in msgpack|config|wsreq) maxlen=16384 ;; esac
  local extra=()
  [ "$t" = config ] && extra=(-close_fd_mask=2)
  local dict=()
  [ -f "$here/dict/$t.dict" ] && dict=(-dict="$here/dict/$t.dict")
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  "$build/fuzzers/fuzz_$t" "$w/corpus/$t" "${dict[@]}" "${extra[@]}" -max_total_time="$secs" \
    -max_len=$maxlen -timeout=10 -rss_limit_mb=2560 -print_final_stats=1 \
    -artifact_prefix="$w/artifacts/$t/" >"$w/$t.log" 2>&1 || true
}

echo "== fuzzing ${targets[*]} for ${secs}s each, $jobs at a time =="
running=0
for t in "${targets[@]}"; do
  [ -x "$build/fuzzers/fuzz_$t" ] || continue
  run_one "$t" &
  running=$((running + 1))
  if [ $running -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

rm -f "$build/work/failed"
{
  printf "%-8s %12s %8s %8s %8s %6s  %s\n" target execs exec/s cov ft corpus findings
  for t in "${targets[@]}"; do
    log="$build/work/$t.log"
    [ -f "$log" ] || continue
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || true)
    ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || true)
    ncorp=$(echo "$last" | grep -o 'corp: [0-9]*' | grep -o '[0-9]*' || true)
    finds=$(ls "$build/work/artifacts/$t" 2>/dev/null | tr '\n' ' ')
    if [ -n "$finds" ]; then echo "$t" >>"$build/work/failed"; fi
    printf "%-8s %12s %8s %8s %8s %6s  %s\n" "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$ncorp" "${finds:-none}"
  done
} | tee "$build/work/summary.txt"
if [ -s "$build/work/failed" ]; then
  echo "run-fuzzers: findings in: $(tr '\n' ' ' <"$build/work/failed")"
  exit 1
fi
