#!/usr/bin/env bash
# stop-local.sh [--wipe] -- stop the nodes started by run-local.sh
# (local-cluster/nodeN.pid) with SIGTERM (they drain: in-flight requests
# finish, memtables are flushed) and wait for them; --wipe also deletes
# their data and logs (the whole local-cluster/ directory).
set -uo pipefail
cd "$(dirname "$0")/.."
BASE="$(pwd)/local-cluster"
case "${1:-}" in
  ""|--wipe) ;;
  *) echo "usage: scripts/stop-local.sh [--wipe]" >&2; exit 2 ;;
esac
[ -d "$BASE" ] || { echo "no local cluster in $BASE"; exit 0; }

# A pid file names a node to stop only if that process is still the cairnd
# started for it (the pid may have been reused since).
ours() { # pid name
  kill -0 "$1" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -e "--data-dir $BASE/$2 " -e "--data-dir $BASE/$2/"
}

# Signal every node first, then wait: they drain in parallel.
pids=() names=()
# (node*/cairnd.pid: the layout of older versions of run-local.sh)
for pidfile in "$BASE"/node*.pid "$BASE"/node*/cairnd.pid; do
  [ -f "$pidfile" ] || continue
  name=$(basename "$pidfile" .pid)
  [ "$name" = cairnd ] && name=$(basename "$(dirname "$pidfile")")
  pid=$(cat "$pidfile")
  if ours "$pid" "$name"; then
    kill -TERM "$pid"
    pids+=("$pid") names+=("$name")
  fi
  rm -f "$pidfile"
done
for i in "${!pids[@]}"; do
  pid=${pids[$i]} name=${names[$i]}
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$name did not stop in 15 s; killing it"
    kill -KILL "$pid"
  fi
  echo "stopped $name"
done
[ ${#pids[@]} -gt 0 ] || echo "no node was running"
if [ "${1:-}" = "--wipe" ]; then rm -rf "$BASE"; echo "deleted $BASE"; fi
exit 0
