#!/usr/bin/env bash
# bench-cluster.sh [cairn-cluster-bench options] -- benchmark the local
# three-node cluster through libcairn (see bench/README.md, "Cluster
# benchmark"): build, start the cluster with run-local.sh unless it is
# already running, then run for 10 s each (after 2 s of warmup):
#
#   write at QUORUM, read at QUORUM (after loading the key space),
#   mixed 50/50 at QUORUM, write at ONE, write at ALL
#
# and print every result table and a summary. Options are passed to every
# run (e.g. --concurrency 128 --duration 30). The JSON lines go to
# build/bench-cluster.jsonl. A cluster this script started is stopped at the
# end (its data is kept); one that was already running is left running.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BASE="$ROOT/local-cluster"
BENCH="$ROOT/build/bench/cairn-cluster-bench"
OUT="$ROOT/build/bench-cluster.jsonl"

alive() { # name: its pid file names a live process
  [ -f "$BASE/$1.pid" ] && kill -0 "$(cat "$BASE/$1.pid")" 2>/dev/null
}
was_running=true
for n in node1 node2 node3; do alive "$n" || was_running=false; done

# run-local.sh installs what is missing, builds cairnd and cairn, and starts
# whatever node is not running yet.
scripts/run-local.sh >/dev/null || exit 1
echo "building cairn-cluster-bench ..."
cmake -S . -B build -DCAIRN_BUILD_BENCH=ON >/dev/null || exit 1
cmake --build build -j"$(nproc)" --target cairn-cluster-bench >/dev/null || exit 1
$was_running && echo "using the local cluster that was already running" ||
  echo "started the local cluster (it is stopped again at the end)"

: >"$OUT"
failed=0
run() { # label, then bench options
  local label=$1; shift
  echo
  echo "=== $label"
  if ! "$BENCH" --duration 10 --warmup 2 --json "$@" >>"$OUT"; then
    echo "($label: the run reported failures, see above)"
    failed=$((failed + 1))
  fi
}
run "write, QUORUM" --workload write --consistency QUORUM "$@"
run "read, QUORUM" --workload read --consistency QUORUM "$@"
run "mixed, QUORUM" --workload mixed --consistency QUORUM --skip-load "$@"
run "write, ONE" --workload write --consistency ONE "$@"
run "write, ALL" --workload write --consistency ALL "$@"

field() { # name line: the first (top-level) value of "name" in a JSON line
  grep -o "\"$1\":[^,}]*" <<<"$2" | head -n1 | cut -d: -f2 | tr -d '"'
}
echo
echo "=== summary (latencies in microseconds; all results in $OUT)"
printf '%-8s %-7s %10s %9s %9s %9s %9s %7s\n' workload CL ops/s p50 p99 p99.9 max errors
while IFS= read -r line; do
  printf '%-8s %-7s %10.0f %9s %9s %9s %9s %7s\n' "$(field workload "$line")" \
    "$(field consistency "$line")" "$(field ops_per_sec "$line")" "$(field p50 "$line")" \
    "$(field p99 "$line")" "$(field p99_9 "$line")" "$(field max "$line")" \
    "$(field errors "$line")"
done <"$OUT"

if ! $was_running; then
  echo
  scripts/stop-local.sh
fi
[ $failed -eq 0 ] || { echo "$failed run(s) reported failures"; exit 1; }
