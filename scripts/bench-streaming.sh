#!/usr/bin/env bash
# bench-streaming.sh [KEYS] [RATE] -- how fast a joining node streams its
# ranges, and what the join costs foreground requests. Starts its own
# three-node cluster on 127.0.0.31-33 (data in a temporary directory) with
# stream_bytes_per_sec = RATE (default 32MiB, the default setting), then:
#
#   1. writes KEYS keys (default 1000000, 100-byte values) at QUORUM;
#   2. baseline: mixed 50/50 QUORUM reads and writes for 10 s;
#   3. node4 (127.0.0.34) joins and streams its ranges while the same mixed
#      load runs; the time until it is UN everywhere is measured, and the
#      keys and bytes it received;
#   4. the mixed load again after the join; then `cairn cleanup` on the
#      three founders, timed.
#
# Prints the streaming rate (MB/s, keys/s) and the latency table of the
# three mixed runs side by side. Needs cairn-cluster-bench (built here).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
KEYS=${1:-1000000}
RATE=${2:-32MiB}
BASE=$(mktemp -d /tmp/cairn-bench-stream.XXXXXX)
BENCH="$ROOT/build/bench/cairn-cluster-bench"
CAIRND="$ROOT/build/node/cairnd"
CAIRN="$ROOT/build/client/cairn"

bash scripts/setup.sh >/dev/null || exit 1
echo "building ..."
cmake -S . -B build -DCAIRN_BUILD_BENCH=ON >/dev/null || exit 1
cmake --build build -j"$(nproc)" --target cairnd cairn cairn-cluster-bench >/dev/null || exit 1

declare -A ADDR=([node1]=127.0.0.31 [node2]=127.0.0.32 [node3]=127.0.0.33 [node4]=127.0.0.34)
INITIAL="node1=127.0.0.31:7071,node2=127.0.0.32:7071,node3=127.0.0.33:7071"
HOSTS="127.0.0.31:7070,127.0.0.32:7070"

start() { # name flags...
  local n=$1
  shift
  "$CAIRND" --cluster-name benchstream --node-name "$n" --listen-address "${ADDR[$n]}" \
    --replication-factor 3 --data-dir "$BASE/$n" --stream-bytes-per-sec "$RATE" \
    --log-level warn "$@" >>"$BASE/$n.log" 2>&1 &
  echo $! >"$BASE/$n.pid"
}
ready() { # name
  for _ in $(seq 1 300); do
    curl -sf "http://${ADDR[$1]}:7072/ready" >/dev/null && return 0
    sleep 0.1
  done
  echo "$1 did not become ready; see $BASE/$1.log" >&2
  exit 1
}
info() { # name item
  "$CAIRN" -H "${ADDR[$1]}" --cluster benchstream info | awk -v k="$2:" '$1 == k {print $2}'
}
cleanup() {
  for n in node1 node2 node3 node4; do
    [ -f "$BASE/$n.pid" ] && kill "$(cat "$BASE/$n.pid")" 2>/dev/null
  done
  wait 2>/dev/null
  rm -rf "$BASE"
}
trap cleanup EXIT

for n in node1 node2 node3; do start $n --initial-cluster "$INITIAL"; done
for n in node1 node2 node3; do ready $n; done
sleep 2
mixed() { # label: 10 s of mixed QUORUM through node1 and node2, JSON to file
  "$BENCH" --hosts "$HOSTS" --cluster benchstream --workload mixed --consistency QUORUM \
    --keys "$KEYS" --skip-load --duration 10 --warmup 1 --json >"$BASE/$1.json" 2>"$BASE/$1.err"
}

echo "1. writing $KEYS keys at QUORUM"
T0=$(date +%s.%N)
"$BENCH" --hosts "$HOSTS" --cluster benchstream --workload read --consistency QUORUM \
  --keys "$KEYS" --duration 1 --warmup 0 --concurrency 256 --json >/dev/null 2>&1
echo "   loaded in $(echo "$(date +%s.%N) - $T0" | bc | cut -c1-6) s"

echo "2. baseline"
mixed baseline

echo "3. node4 joins (stream_bytes_per_sec $RATE) under the mixed load"
start node4 --seeds 127.0.0.31:7071
T0=$(date +%s.%N)
mixed during &
BENCH_PID=$!
JOIN=""
for _ in $(seq 1 36000); do
  if "$CAIRN" -H 127.0.0.31 --cluster benchstream status 2>/dev/null | grep -q '^UN  node4'; then
    JOIN=$(echo "$(date +%s.%N) - $T0" | bc)
    break
  fi
  sleep 0.1
done
wait $BENCH_PID
[ -n "$JOIN" ] || { echo "node4 did not join within an hour"; exit 1; }
KEYS_IN=$(info node4 stream_keys_in)
BYTES_IN=$(info node4 stream_bytes_in)
DELAY=5 # ring_delay_ms default: the join waits this long before streaming

echo "4. after the join; then cleanup on the founders"
mixed after
T0=$(date +%s.%N)
for n in node1 node2 node3; do "$CAIRN" -H "${ADDR[$n]}" --cluster benchstream cleanup >/dev/null; done
CLEAN=$(echo "$(date +%s.%N) - $T0" | bc)

field() { grep -o "\"$1\":[^,}]*" "$2" | head -n1 | cut -d: -f2; }
echo
echo "=== streaming"
printf 'node4 joined in %.2f s (%d s of it ring_delay_ms); received %s keys, %s bytes: %.2f MB/s, %.0f keys/s while streaming\n' \
  "$JOIN" "$DELAY" "$KEYS_IN" "$BYTES_IN" \
  "$(echo "$BYTES_IN / ($JOIN - $DELAY) / 1000000" | bc -l)" \
  "$(echo "$KEYS_IN / ($JOIN - $DELAY)" | bc -l)"
printf 'cleanup on three founders: %.2f s\n' "$CLEAN"
echo
echo "=== mixed QUORUM through node1+node2 (latency in microseconds)"
printf '%-10s %10s %9s %9s %9s %7s\n' run ops/s p50 p99 p99.9 errors
for r in baseline during after; do
  printf '%-10s %10.0f %9s %9s %9s %7s\n' "$r" "$(field ops_per_sec "$BASE/$r.json")" \
    "$(field p50 "$BASE/$r.json")" "$(field p99 "$BASE/$r.json")" \
    "$(field p99_9 "$BASE/$r.json")" "$(field errors "$BASE/$r.json")"
done
echo "(\"during\" is the first 10 s after node4 started, the join took ${JOIN%.*} s)"
