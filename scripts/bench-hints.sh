#!/usr/bin/env bash
# bench-hints.sh [RATE] -- how fast hints are delivered, and what delivery
# costs foreground requests. Starts its own three-node cluster on
# 127.0.0.11-13 (data in a temporary directory), with
# hint_replay_bytes_per_sec = RATE (default 1MiB, the default setting; try
# 1GiB to see the unthrottled speed), then:
#
#   1. baseline: mixed 50/50 reads and writes at QUORUM for 10 s through
#      node1 and node2, with all three nodes up;
#   2. node3 is SIGKILLed; writes at QUORUM for WRITE_SECONDS (default 10)
#      through node1 and node2 leave hints for it;
#   3. node3 restarts; the same mixed load runs for 10 s while the hints
#      drain; the time until node1 and node2 hold no hints is measured;
#   4. the mixed load again, after the drain.
#
# It prints the hints delivered, the drain time and rate, and the latency
# table of the three mixed runs side by side. Needs cairn-cluster-bench
# (built here with -DCAIRN_BUILD_BENCH=ON).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RATE=${1:-1MiB}
WRITE_SECONDS=${WRITE_SECONDS:-10}
BASE=$(mktemp -d /tmp/cairn-bench-hints.XXXXXX)
BENCH="$ROOT/build/bench/cairn-cluster-bench"
CAIRND="$ROOT/build/node/cairnd"

bash scripts/setup.sh >/dev/null || exit 1
echo "building ..."
cmake -S . -B build -DCAIRN_BUILD_BENCH=ON >/dev/null || exit 1
cmake --build build -j"$(nproc)" --target cairnd cairn cairn-cluster-bench >/dev/null || exit 1

declare -A ADDR=([node1]=127.0.0.11 [node2]=127.0.0.12 [node3]=127.0.0.13)
INITIAL="node1=127.0.0.11:7071,node2=127.0.0.12:7071,node3=127.0.0.13:7071"
HOSTS="127.0.0.11:7070,127.0.0.12:7070"

start() { # name
  "$CAIRND" --cluster-name benchhints --node-name "$1" --listen-address "${ADDR[$1]}" \
    --replication-factor 3 --initial-cluster "$INITIAL" --data-dir "$BASE/$1" \
    --hint-replay-bytes-per-sec "$RATE" --log-level warn >>"$BASE/$1.log" 2>&1 &
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
metric() { # name series
  curl -sf "http://${ADDR[$1]}:7072/metrics" | awk -v s="$2" '$1 == s {print $2}'
}
pending() { # total hints held by node1 and node2
  local a b
  a=$(metric node1 cairn_hints_pending) b=$(metric node2 cairn_hints_pending)
  echo $(( ${a%.*} + ${b%.*} ))
}
cleanup() {
  for n in node1 node2 node3; do
    [ -f "$BASE/$n.pid" ] && kill "$(cat "$BASE/$n.pid")" 2>/dev/null
  done
  wait 2>/dev/null
  rm -rf "$BASE"
}
trap cleanup EXIT

for n in node1 node2 node3; do start $n; done
for n in node1 node2 node3; do ready $n; done
sleep 2
mixed() { # label: 10 s of mixed QUORUM through node1 and node2, JSON to file
  "$BENCH" --hosts "$HOSTS" --cluster benchhints --workload mixed --consistency QUORUM \
    --keys 100000 --skip-load --duration 10 --warmup 1 --json >"$BASE/$1.json" 2>"$BASE/$1.err"
}

echo "1. baseline (all up)"
"$BENCH" --hosts "$HOSTS" --cluster benchhints --workload read --consistency QUORUM \
  --keys 100000 --duration 1 --warmup 0 --json >/dev/null 2>&1 # loads the keys
mixed baseline

echo "2. node3 killed; ${WRITE_SECONDS}s of QUORUM writes"
kill -9 "$(cat "$BASE/node3.pid")"
for _ in $(seq 1 100); do
  [ "$(metric node1 'cairn_peer_up{peer="node3"}')" = 0 ] && break
  sleep 0.1
done
"$BENCH" --hosts "$HOSTS" --cluster benchhints --workload write --consistency QUORUM \
  --keys 1000000 --value-size 100 --duration "$WRITE_SECONDS" --warmup 0 --json \
  >"$BASE/writes.json" 2>/dev/null
HINTS=$(pending)
BYTES=$(( $(metric node1 cairn_hints_pending_bytes | cut -d. -f1) + \
          $(metric node2 cairn_hints_pending_bytes | cut -d. -f1) ))
echo "   $HINTS hints pending ($BYTES bytes on disk)"

echo "3. node3 back; mixed load while hints drain (hint_replay_bytes_per_sec $RATE)"
start node3
T0=$(date +%s.%N)
mixed during &
BENCH_PID=$!
DRAIN=""
for _ in $(seq 1 36000); do
  if [ "$(pending)" = 0 ]; then DRAIN=$(echo "$(date +%s.%N) - $T0" | bc); break; fi
  sleep 0.1
done
wait $BENCH_PID
[ -n "$DRAIN" ] || { echo "hints did not drain within an hour"; exit 1; }

echo "4. after the drain"
mixed after

field() { grep -o "\"$1\":[^,}]*" "$2" | head -n1 | cut -d: -f2; }
echo
echo "=== hint delivery"
printf 'hints %s, %s bytes, drained in %.2f s after node3 started: %.0f hints/s, %.2f MiB/s (both holders together)\n' \
  "$HINTS" "$BYTES" "$DRAIN" "$(echo "$HINTS / $DRAIN" | bc -l)" \
  "$(echo "$BYTES / $DRAIN / 1048576" | bc -l)"
echo
echo "=== mixed QUORUM through node1+node2 (latency in microseconds)"
printf '%-10s %10s %9s %9s %9s %7s\n' run ops/s p50 p99 p99.9 errors
for r in baseline during after; do
  printf '%-10s %10.0f %9s %9s %9s %7s\n' "$r" "$(field ops_per_sec "$BASE/$r.json")" \
    "$(field p50 "$BASE/$r.json")" "$(field p99 "$BASE/$r.json")" \
    "$(field p99_9 "$BASE/$r.json")" "$(field errors "$BASE/$r.json")"
done
if [ "${DRAIN%.*}" -ge 10 ]; then
  echo "(\"during\" is the first 10 s after node3 started, all of it inside the ${DRAIN%.*} s drain)"
else
  echo "(\"during\" is the first 10 s after node3 started; only its first ${DRAIN%.*} s overlap the drain)"
fi
