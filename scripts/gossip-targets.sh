#!/usr/bin/env bash
# gossip-targets.sh [TRIALS] [BUILD_DIR] -- how fast gossip notices a dead
# node, against the targets: five cairnd processes on loopback, one killed
# with SIGKILL per trial (a different one each time, restarted afterwards),
# and the time until each of the four survivors reports it down. TRIALS
# defaults to 20; the targets are median <= 6 s and worst <= 8 s over every
# survivor of every trial. Prints each trial, then the summary; exits 1 when
# a target is missed.
#   scripts/gossip-targets.sh              # 20 trials, optimised build
#   scripts/gossip-targets.sh 20 build-asan
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS=${1:-20}
BUILD=${2:-build}
MEDIAN_TARGET_MS=6000
WORST_TARGET_MS=8000

if [ ! -x "$BUILD/tests/test_gossip_node" ]; then
  bash scripts/setup.sh
  cmake -S . -B "$BUILD" -DCAIRN_BUILD_BENCH=OFF >/dev/null
fi
cmake --build "$BUILD" -j2 --target test_gossip_node >/dev/null

log=$(mktemp)
trap 'rm -f "$log"' EXIT
mkdir -p "$BUILD/test-tmp"
status=0
CAIRN_TEST_TMP="$PWD/$BUILD/test-tmp" CAIRN_GOSSIP_TRIALS=$TRIALS \
  CAIRN_GOSSIP_ONLY=sigkill "$BUILD/tests/test_gossip_node" 2>&1 | tee "$log" || status=$?

line=$(grep -o 'DETECTION trials=.*' "$log" | tail -1 || true)
if [ -z "$line" ]; then
  echo "gossip-targets: no DETECTION summary (the test failed before the end)" >&2
  exit 1
fi
median=$(sed -n 's/.*median_ms=\([0-9]*\).*/\1/p' <<<"$line")
worst=$(sed -n 's/.*worst_ms=\([0-9]*\).*/\1/p' <<<"$line")
samples=$(sed -n 's/.*samples=\([0-9]*\).*/\1/p' <<<"$line")
echo
echo "== SIGKILL detection over $TRIALS trials ($samples survivor measurements, $BUILD)"
printf 'median %5d ms  (target <= %d ms)  %s\n' "$median" "$MEDIAN_TARGET_MS" \
  "$([ "$median" -le "$MEDIAN_TARGET_MS" ] && echo ok || echo MISSED)"
printf 'worst  %5d ms  (target <= %d ms)  %s\n' "$worst" "$WORST_TARGET_MS" \
  "$([ "$worst" -le "$WORST_TARGET_MS" ] && echo ok || echo MISSED)"
grep -o 'REJOIN trials=.*' "$log" | tail -1 || true
if [ "$median" -gt "$MEDIAN_TARGET_MS" ] || [ "$worst" -gt "$WORST_TARGET_MS" ]; then
  exit 1
fi
exit "$status"
