#!/usr/bin/env bash
# stop-local.sh [--wipe] -- stop the nodes started by run-local.sh with
# SIGTERM (they drain: in-flight requests finish, memtables are flushed)
# and wait for them; --wipe also deletes their data.
set -uo pipefail
cd "$(dirname "$0")/.."
BASE="$(pwd)/local-cluster"
[ -d "$BASE" ] || { echo "no local cluster in $BASE"; exit 0; }
for pidfile in "$BASE"/*/cairnd.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile"); name=$(basename "$(dirname "$pidfile")")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then echo "$name did not stop in 15 s; killing it"; kill -KILL "$pid"; fi
    echo "stopped $name"
  fi
  rm -f "$pidfile"
done
if [ "${1:-}" = "--wipe" ]; then rm -rf "$BASE"; echo "deleted $BASE"; fi
