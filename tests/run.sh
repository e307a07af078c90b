#!/usr/bin/env bash
# Runs every test tier: the suite built with -Werror, the suite again under
# AddressSanitizer and UndefinedBehaviorSanitizer, the libFuzzer targets
# for a short while, and the GIMP plug-ins in GIMP 2.10 and 3.0.  Ends with
# one line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-30}
passed=0
failed=0

count_meson () {
  # meson test's summary has "Ok:", "Fail:", "Unexpected Pass:", "Timeout:".
  local log=$1 ok fail
  ok=$(awk '/^Ok:/ {print $2}' "$log" | tail -n 1)
  fail=$(awk '/^(Fail|Unexpected Pass|Timeout):/ {s += $NF} END {print s+0}' "$log")
  if [ -z "$ok" ]; then
    echo "meson test printed no summary (build failure?)"
    failed=$((failed + 1))
    return
  fi
  passed=$((passed + ok))
  failed=$((failed + fail))
}

run_suite () {
  local dir=$1; shift
  echo "=== $dir: $*"
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" || { failed=$((failed + 1)); return; }
  fi
  if ! ninja -C "$dir"; then
    echo "build failed in $dir"
    failed=$((failed + 1))
    return
  fi
  meson test -C "$dir" --print-errorlogs --num-processes 2 --no-suite gimp 2>&1 \
    | tee "$dir/test-summary.txt"
  count_meson "$dir/test-summary.txt"
}

run_suite build --werror --buildtype=release

ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
run_suite build-asan --werror --buildtype=debugoptimized \
  -Db_sanitize=address,undefined -Db_lundef=false

# Fuzzers: clang with libFuzzer; each target runs FUZZ_SECONDS on its corpus.
echo "=== fuzzing (${FUZZ_SECONDS}s per target)"
if [ ! -f build-fuzz/build.ninja ]; then
  CC=clang meson setup build-fuzz --buildtype=debugoptimized -Dfuzzing=true -Db_lundef=false \
    || failed=$((failed + 1))
fi
if ninja -C build-fuzz; then
  for fuzzer in build-fuzz/tests/fuzz/fuzz-*; do
    [ -f "$fuzzer" ] && [ -x "$fuzzer" ] || continue  # not the .p folders
    name=$(basename "$fuzzer")
    corpus=tests/fuzz/corpus-${name#fuzz-}
    work=$(mktemp -d)
    [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/
    if "$fuzzer" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 "$work" >"build-fuzz/$name.log" 2>&1; then
      echo "ok   $name ($(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "build-fuzz/$name.log" | awk '{print $2}') runs)"
      passed=$((passed + 1))
    else
      echo "FAIL $name"; tail -n 40 "build-fuzz/$name.log"
      failed=$((failed + 1))
    fi
    rm -rf "$work"
  done
else
  failed=$((failed + 1))
fi

# GIMP: headless batch runs of the plug-ins in GIMP 2.10 (this system's) and
# in GIMP 3.0, inside a Debian trixie root that is made once (about a minute
# and 270 MB of packages) and reused from /var/cache/bonsai-image-ci.
echo "=== GIMP plug-ins"
if meson test -C build --list --suite gimp 2>/dev/null | grep -q "gimp-2.10"; then
  meson test -C build --suite gimp --print-errorlogs 2>&1 | tee build/test-gimp2.txt
  count_meson build/test-gimp2.txt
else
  echo "GIMP 2.10 skipped: the build found no libgimp-2.0 or gimp-console-2.10"
fi
tests/gimp/trixie-root.sh test 2>&1 | tee build/test-gimp3.txt
if [ "${PIPESTATUS[0]}" = 77 ]; then
  echo "GIMP 3.0 skipped"
else
  count_meson build/test-gimp3.txt
fi

echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
