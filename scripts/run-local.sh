#!/usr/bin/env bash
# run-local.sh -- the README's run command: install what is missing, build,
# and start a local Cairn node on 127.0.0.1 with its data under
# ./local-cluster/, then wait until it is ready and say how to use it.
# Stop it with scripts/stop-local.sh (its data stays; --wipe removes it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BASE="$ROOT/local-cluster"

bash scripts/setup.sh
echo "building ..."
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" --target cairnd cairn >/dev/null

start_node() { # name address
  local name=$1 addr=$2 dir="$BASE/$1"
  mkdir -p "$dir"
  if [ -f "$dir/cairnd.pid" ] && kill -0 "$(cat "$dir/cairnd.pid")" 2>/dev/null; then
    echo "$name is already running (pid $(cat "$dir/cairnd.pid"))"
    return
  fi
  nohup "$ROOT/build/node/cairnd" \
    --cluster-name cairn --node-name "$name" --listen-address "$addr" \
    --data-dir "$dir/data" --log-level info \
    >"$dir/cairnd.log" 2>&1 &
  echo $! >"$dir/cairnd.pid"
}

wait_ready() { # name address
  local name=$1 addr=$2
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/$addr/7072" && printf 'GET /ready HTTP/1.0\r\n\r\n' >&3 &&
        head -n1 <&3 | grep -q ' 200 ') 2>/dev/null; then
      echo "$name ready on $addr"
      return 0
    fi
    if ! kill -0 "$(cat "$BASE/$name/cairnd.pid")" 2>/dev/null; then
      echo "$name failed to start; its log:" >&2
      tail -n 20 "$BASE/$name/cairnd.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$name did not become ready in 10 s; see $BASE/$name/cairnd.log" >&2
  exit 1
}

start_node node1 127.0.0.1
wait_ready node1 127.0.0.1

cat <<TXT

Cairn is running: node1 on 127.0.0.1 (client port 7070, admin port 7072).
Data and logs: $BASE/node1/

Try it:
  build/client/cairn put greeting hello
  build/client/cairn get greeting
  build/client/cairn -c ONE del greeting
  build/client/cairn info
  curl -s 127.0.0.1:7072/metrics | head     (Prometheus metrics)

Stop it (data kept):      scripts/stop-local.sh
Stop and delete the data: scripts/stop-local.sh --wipe
TXT
