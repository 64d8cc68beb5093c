#!/usr/bin/env bash
# run-local.sh -- the README's run command: install what is missing, build,
# and start a local three-node Cairn cluster on loopback:
#
#   node1 on 127.0.0.1, node2 on 127.0.0.2, node3 on 127.0.0.3
#   each with client port 7070, peer port 7071, admin port 7072,
#   cluster "cairn", replication_factor 3, every node in initial_cluster
#
# Each node keeps its data in ./local-cluster/nodeN/, its log in
# ./local-cluster/nodeN.log and its pid in ./local-cluster/nodeN.pid. The
# script waits until every node's /ready answers 200 and says how to use the
# cluster. Nodes already running are left alone, so running it again is
# harmless. Stop them with scripts/stop-local.sh (data kept; --wipe removes
# it). CAIRN_READY_TIMEOUT (seconds, default 30) bounds the wait.
#
# --tls: the same cluster secured: scripts/certs.sh makes a CA, node1..3
# and client "admin" certificates and a cluster secret in
# ./local-cluster/tls (once); nodes run with client_tls on, peer_tls on
# (mutual TLS) and authenticated gossip. Nodes must be stopped first to
# switch between plain and TLS.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BASE="$ROOT/local-cluster"
READY_TIMEOUT=${CAIRN_READY_TIMEOUT:-30}
TLS_ARGS=()
if [ "${1:-}" = --tls ]; then
  bash scripts/certs.sh local "$BASE/tls" >/dev/null
  TLS_ARGS=(--client-tls on --peer-tls on --tls-ca-file "$BASE/tls/ca.crt"
            --cluster-secret-file "$BASE/tls/cluster.secret")
elif [ -n "${1:-}" ]; then
  echo "usage: scripts/run-local.sh [--tls]" >&2; exit 2
fi

NODES=(node1 node2 node3)
declare -A ADDR=([node1]=127.0.0.1 [node2]=127.0.0.2 [node3]=127.0.0.3)
CLIENT_PORT=7070 PEER_PORT=7071 ADMIN_PORT=7072
INITIAL_CLUSTER="node1=127.0.0.1:$PEER_PORT,node2=127.0.0.2:$PEER_PORT,node3=127.0.0.3:$PEER_PORT"

bash scripts/setup.sh
echo "building ..."
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" --target cairnd cairn >/dev/null

# True if the pid file names a live cairnd serving this node's data dir (not
# some other process that reused the pid).
running() { # name
  local pidfile="$BASE/$1.pid" pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--data-dir $BASE/$1 "
}

# True if something accepts connections on address:port.
port_taken() { # address port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

STARTED=()
start_node() { # name
  local name=$1 addr=${ADDR[$1]}
  if running "$name"; then
    echo "$name is already running (pid $(cat "$BASE/$name.pid"))"
    return
  fi
  rm -f "$BASE/$name.pid"
  for port in $CLIENT_PORT $PEER_PORT $ADMIN_PORT; do
    if port_taken "$addr" "$port"; then
      echo "cannot start $name: $addr:$port is already in use by another process" >&2
      echo "(a cluster from another checkout? stop it first)" >&2
      exit 1
    fi
  done
  mkdir -p "$BASE/$name"
  echo "--- $(date '+%F %T') starting $name" >>"$BASE/$name.log"
  nohup "$ROOT/build/node/cairnd" \
    --cluster-name cairn --node-name "$name" --listen-address "$addr" \
    --client-port $CLIENT_PORT --peer-port $PEER_PORT --admin-port $ADMIN_PORT \
    --replication-factor 3 --initial-cluster "$INITIAL_CLUSTER" \
    --data-dir "$BASE/$name" --log-level info \
    ${TLS_ARGS[@]+"${TLS_ARGS[@]}"} \
    ${TLS_ARGS[@]+--tls-cert-file "$BASE/tls/$name.crt" --tls-key-file "$BASE/tls/$name.key"} \
    >>"$BASE/$name.log" 2>&1 </dev/null &
  echo $! >"$BASE/$name.pid"
  STARTED+=("$name")
}

ready() { # address
  (exec 3<>"/dev/tcp/$1/$ADMIN_PORT" && printf 'GET /ready HTTP/1.0\r\n\r\n' >&3 &&
    head -n1 <&3 | grep -q ' 200 ') 2>/dev/null
}

fail() { # name message
  echo "$1 $2; the end of $BASE/$1.log:" >&2
  tail -n 20 "$BASE/$1.log" >&2
  echo "(nodes that did start are still running: scripts/stop-local.sh stops them)" >&2
  exit 1
}

mkdir -p "$BASE"
for name in "${NODES[@]}"; do start_node "$name"; done

# Wait for all of them together (a node may wait for its peers before it
# reports ready), within one deadline.
deadline=$((SECONDS + READY_TIMEOUT))
for name in "${NODES[@]}"; do
  until ready "${ADDR[$name]}"; do
    running "$name" || fail "$name" "failed to start"
    [ $SECONDS -lt $deadline ] || fail "$name" "did not become ready in $READY_TIMEOUT s"
    sleep 0.1
  done
  echo "$name ready on ${ADDR[$name]}"
done
[ ${#STARTED[@]} -gt 0 ] || echo "the local cluster was already running"

cat <<TXT

Cairn is running: a local cluster of three nodes, replication factor 3.
  node1 127.0.0.1   node2 127.0.0.2   node3 127.0.0.3
  (client port $CLIENT_PORT, peer port $PEER_PORT, admin port $ADMIN_PORT on each)
Data, logs and pid files: $BASE/

Try it (the tool talks to the first contact point that answers):
  export CAIRN_HOST=127.0.0.1,127.0.0.2,127.0.0.3    (or -H 127.0.0.1,...)$([ ${#TLS_ARGS[@]} -gt 0 ] && printf '\n  export CAIRN_TLS_CA_FILE=%s     (TLS is on)' "$BASE/tls/ca.crt")
  build/client/cairn put greeting hello
  build/client/cairn get greeting
  build/client/cairn -c ALL del greeting
  build/client/cairn status                            (every node, up or down)
  build/client/cairn endpoints greeting                (the replicas of a key)
  curl -s 127.0.0.2:$ADMIN_PORT/metrics | head          (Prometheus metrics of node2)
Benchmark it: scripts/bench-cluster.sh

Stop it (data kept):      scripts/stop-local.sh
Stop and delete the data: scripts/stop-local.sh --wipe
TXT
