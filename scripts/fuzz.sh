#!/usr/bin/env bash
# fuzz.sh -- build Cairn's libFuzzer targets (tests/fuzz) with clang, ASan and
# UBSan, and run them.
#
#   scripts/fuzz.sh TARGET [SECONDS]   run one target (default 600 s)
#   scripts/fuzz.sh all [SECONDS]      run every target, one after the other
#   scripts/fuzz.sh --list             the targets
#   scripts/fuzz.sh --build            build only
#   scripts/fuzz.sh --seeds            rewrite tests/fuzz/corpus from cairn-fuzz-seeds
#
# Each run starts from the committed seed corpus (tests/fuzz/corpus/TARGET)
# plus what earlier runs found (build-fuzz/corpus/TARGET, kept between
# runs), writes crashing inputs to build-fuzz/artifacts/TARGET/, and ends
# with one line: seconds, executions, coverage (edges), corpus size,
# crashes. A crash input, once its bug is fixed, goes to
# tests/fuzz/regress/TARGET/ so the normal suite (ctest fuzz_regress_TARGET)
# replays it in every build. One fuzzer at a time: each uses one core.
# Environment: FUZZ_JOBS (build parallelism, default 2), FUZZ_ARGS (extra
# libFuzzer flags), FUZZ_NO_BUILD=1 (run the binaries already built).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
B=$ROOT/build-fuzz
TARGETS=(frame client_proto peer_proto gossip wal sst manifest hint_log config)

build() {
  bash scripts/setup.sh || exit 1
  mkdir -p "$B"
  if ! cmake -S . -B "$B" -DCMAKE_C_COMPILER=clang -DCAIRN_FUZZ=ON -DCAIRN_SANITIZE=ON \
        -DCAIRN_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$B/configure.log" 2>&1; then
    cat "$B/configure.log"; exit 1
  fi
  local t=(cairn-fuzz-seeds)
  for n in "${TARGETS[@]}"; do t+=("fuzz_$n"); done
  if ! cmake --build "$B" -j "${FUZZ_JOBS:-2}" --target "${t[@]}" >"$B/build.log" 2>&1; then
    grep -E 'error' "$B/build.log" | head -30; tail -20 "$B/build.log"; exit 1
  fi
}

run() { # <target> <seconds>
  local n=$1 secs=$2
  local corpus=$B/corpus/$n art=$B/artifacts/$n log=$B/logs/$n.log
  mkdir -p "$corpus" "$art" "$B/logs" "$B/tmp"
  echo "== fuzz_$n for ${secs}s (log: $log)"
  # rss_limit: the decoders bound memory by their limits; 2 GiB is far above.
  CAIRN_FUZZ_TMP=$B/tmp ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$B/tests/fuzz/fuzz_$n" -max_total_time="$secs" -print_final_stats=1 \
      -rss_limit_mb=2048 -timeout=20 -artifact_prefix="$art/" ${FUZZ_ARGS:-} \
      "$corpus" "$ROOT/tests/fuzz/corpus/$n" >"$log" 2>&1
  local rc=$?
  local execs cov units crashes ran
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  # the time it really ran: less than asked when it stopped at a crash
  ran=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  [ -n "$ran" ] || ran="<$secs (stopped)"
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  units=$(ls "$corpus" | wc -l)
  crashes=$(ls "$art" 2>/dev/null | wc -l)
  printf 'fuzz_%s: %ss, %s executions, coverage %s edges, corpus %s, crash inputs %s, exit %s\n' \
    "$n" "$ran" "${execs:-?}" "${cov:-?}" "$units" "$crashes" "$rc" | tee -a "$B/summary.txt"
  if [ $rc -ne 0 ]; then
    grep -E 'ERROR|SUMMARY|runtime error|==[0-9]+==' "$log" | head -10
    echo "   crash inputs in $art; once fixed, copy them to tests/fuzz/regress/$n/"
  fi
  return $rc
}

case ${1:-} in
  --list) printf '%s\n' "${TARGETS[@]}"; exit 0 ;;
  --build) build; echo "built into $B"; exit 0 ;;
  --seeds) build; rm -rf tests/fuzz/corpus.new
           "$B/tests/fuzz/cairn-fuzz-seeds" tests/fuzz/corpus.new || exit 1
           rm -rf tests/fuzz/corpus; mv tests/fuzz/corpus.new tests/fuzz/corpus; exit 0 ;;
  ""|-h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
target=$1; secs=${2:-600}
case $secs in ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a number" >&2; exit 2 ;; esac
if [ "$target" != all ] && [[ ! " ${TARGETS[*]} " =~ " $target " ]]; then
  echo "fuzz.sh: unknown target '$target' (see --list)" >&2; exit 2
fi
[ "${FUZZ_NO_BUILD:-}" = 1 ] || build
status=0
if [ "$target" = all ]; then
  for n in "${TARGETS[@]}"; do run "$n" "$secs" || status=1; done
else
  run "$target" "$secs" || status=1
fi
exit $status
