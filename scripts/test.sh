#!/usr/bin/env bash
# test.sh -- the README's test command: install what is missing, build, and
# run the whole suite twice: an optimised build and an AddressSanitizer +
# UndefinedBehaviorSanitizer build. Exits non-zero on any failure; the last
# thing printed is CTest's summary.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh || exit 1
JOBS=$(nproc 2>/dev/null || echo 2)
status=0

run_suite() { # <build-dir> <label> [cmake args...]
  local dir=$1 label=$2; shift 2
  echo "== ${label}: configure and build (${dir})"
  if ! cmake -S . -B "$dir" "$@" >"$dir/configure.log" 2>&1; then
    cat "$dir/configure.log"; return 1
  fi
  if ! cmake --build "$dir" -j "$JOBS" >"$dir/build.log" 2>&1; then
    grep -E 'error|warning' "$dir/build.log" | head -50; tail -20 "$dir/build.log"; return 1
  fi
  echo "== ${label}: tests"
  (cd "$dir" && ctest --output-on-failure -j "$JOBS")
}

mkdir -p build build-asan
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
run_suite build "optimised build" -DCAIRN_SANITIZE=OFF || status=1
run_suite build-asan "sanitizer build (ASan+UBSan)" -DCAIRN_SANITIZE=ON -DCAIRN_BUILD_BENCH=OFF || status=1
exit $status
