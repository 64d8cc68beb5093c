#!/usr/bin/env bash
# bench-repair.sh [KEYS] -- what anti-entropy repair costs. Starts its own
# three-node cluster on 127.0.0.41-43 (data in a temporary directory), then:
#
#   1. writes KEYS keys (default 1000000, 100-byte values) at ALL, so the
#      replicas are identical;
#   2. baseline: mixed 50/50 QUORUM reads and writes for 10 s;
#   3. `cairn repair` on node1 with the same mixed load running: identical
#      replicas, so nothing should move -- the time is the cost of building
#      and comparing the trees;
#   4. node3 is stopped, KEYS/10 keys are rewritten at QUORUM (hinted
#      handoff is off, so only repair can bring node3 up to date), node3
#      restarts, and `cairn repair` runs on it: the time, and the cells that
#      moved.
#
# Prints the repair times and the latency of the mixed load before and
# during the first repair. Needs cairn-cluster-bench (built here).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
KEYS=${1:-1000000}
BASE=$(mktemp -d /tmp/cairn-bench-repair.XXXXXX)
BENCH="$ROOT/build/bench/cairn-cluster-bench"
CAIRND="$ROOT/build/node/cairnd"
CAIRN="$ROOT/build/client/cairn"

bash scripts/setup.sh >/dev/null || exit 1
echo "building ..."
cmake -S . -B build -DCAIRN_BUILD_BENCH=ON >/dev/null || exit 1
cmake --build build -j"$(nproc)" --target cairnd cairn cairn-cluster-bench >/dev/null || exit 1

declare -A ADDR=([node1]=127.0.0.41 [node2]=127.0.0.42 [node3]=127.0.0.43)
INITIAL="node1=127.0.0.41:7071,node2=127.0.0.42:7071,node3=127.0.0.43:7071"
HOSTS="127.0.0.41:7070,127.0.0.42:7070"

start() { # name
  "$CAIRND" --cluster-name benchrepair --node-name "$1" --listen-address "${ADDR[$1]}" \
    --replication-factor 3 --data-dir "$BASE/$1" --initial-cluster "$INITIAL" \
    --hinted-handoff off --log-level warn >>"$BASE/$1.log" 2>&1 &
  echo $! >"$BASE/$1.pid"
}
ready() { # name
  for _ in $(seq 1 300); do
    curl -sf "http://${ADDR[$1]}:7072/ready" >/dev/null && return 0
    sleep 0.1
  done
  echo "$1 did not become ready; see $BASE/$1.log" >&2
  exit 1
}
cleanup() {
  for n in node1 node2 node3; do
    [ -f "$BASE/$n.pid" ] && kill "$(cat "$BASE/$n.pid")" 2>/dev/null
  done
  wait 2>/dev/null
  rm -rf "$BASE"
}
trap cleanup EXIT
timed() { # command...: prints seconds taken
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >"$BASE/last.out" 2>&1 || { cat "$BASE/last.out"; exit 1; }
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}

for n in node1 node2 node3; do start $n; done
for n in node1 node2 node3; do ready $n; done
sleep 2
mixed() { # label seconds
  "$BENCH" --hosts "$HOSTS" --cluster benchrepair --workload mixed --consistency QUORUM \
    --keys "$KEYS" --skip-load --duration "$2" --warmup 1 --json >"$BASE/$1.json" 2>"$BASE/$1.err"
}

echo "1. writing $KEYS keys at ALL"
"$BENCH" --hosts "$HOSTS" --cluster benchrepair --workload read --consistency ALL \
  --keys "$KEYS" --duration 1 --warmup 0 --concurrency 256 --json >/dev/null 2>&1
echo "2. baseline"
mixed baseline 10
echo "3. repair on node1 (identical replicas) under the mixed load"
mixed during 10 &
MIXED=$!
R1=$(timed "$CAIRN" -H 127.0.0.41 --cluster benchrepair repair)
R1OUT=$(tail -1 "$BASE/last.out")
wait $MIXED

echo "4. node3 misses $((KEYS / 10)) writes; repair on node3"
kill "$(cat "$BASE/node3.pid")"; wait "$(cat "$BASE/node3.pid")" 2>/dev/null
sleep 3
"$BENCH" --hosts "$HOSTS" --cluster benchrepair --workload write --consistency QUORUM \
  --keys "$((KEYS / 10))" --duration 3 --warmup 0 --json >/dev/null 2>&1
start node3; ready node3; sleep 3
R2=$(timed "$CAIRN" -H 127.0.0.43 --cluster benchrepair repair)
R2OUT=$(tail -1 "$BASE/last.out")

field() { grep -o "\"$1\":[^,}]*" "$2" | head -n1 | cut -d: -f2; }
echo
echo "=== repair"
printf 'identical replicas, %s keys: %.2f s (%s)\n' "$KEYS" "$R1" "$R1OUT"
printf 'node3 behind by 3 s of writes: %.2f s (%s)\n' "$R2" "$R2OUT"
echo
echo "=== mixed QUORUM through node1+node2 (latency in microseconds)"
printf '%-10s %10s %9s %9s %9s %7s\n' run ops/s p50 p99 p99.9 errors
for r in baseline during; do
  printf '%-10s %10.0f %9s %9s %9s %7s\n' "$r" "$(field ops_per_sec "$BASE/$r.json")" \
    "$(field p50 "$BASE/$r.json")" "$(field p99 "$BASE/$r.json")" \
    "$(field p99_9 "$BASE/$r.json")" "$(field errors "$BASE/$r.json")"
done
