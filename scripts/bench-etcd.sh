#!/usr/bin/env bash
# bench-etcd.sh -- Cairn against etcd, the same YCSB-style workloads from the
# same generator (bench/kvbench, cairn-kvbench), on loopback:
#
#   etcd:  a 3-member cluster on 127.0.6.1-3 (client 2379, peer 2380),
#          default durable config (fsync per commit), data in
#          build/bench-etcd/etcd/
#   Cairn: a 3-node cluster on 127.0.7.1-3 (client 7070, peer 7071, admin
#          7072), replication factor 3, sync=group, data in
#          build/bench-etcd/cairn/
#
# Both are started fresh (old data wiped) and stopped on exit, whatever
# happens. The addresses keep clear of scripts/run-local.sh (127.0.0.x) and
# of the test suite (127.0.5.x). Prints each run's table, then the
# comparison (workload | etcd ops/s | cairn ops/s | ratio | p50/p99 each),
# the null-server ceiling (what the generator itself can drive) and the
# ping floor (a round trip to cairnd that does no work). JSON lines of every
# invocation are appended to build/bench-etcd.jsonl. bench/README.md says
# how it measures.
#
#   scripts/bench-etcd.sh                 W, C, A at QUORUM / linearizable,
#                                         100k records, 100-byte values,
#                                         64 outstanding, 10 s after 3 s
#   scripts/bench-etcd.sh --curve         W and C at concurrency 1..256, both
#   scripts/bench-etcd.sh --levels        Cairn W and C at ONE, QUORUM, ALL
#                                         (and etcd C serializable)
#   scripts/bench-etcd.sh --records N     the default set over N records
#   scripts/bench-etcd.sh --smoke         Cairn only, tiny, 2 s per run (the
#                                         test suite's step; needs no etcd)
#   scripts/bench-etcd.sh --no-etcd       any of the above against Cairn only
#   --duration S --warmup S --concurrency N  change the defaults
#
# Exit status: non-zero if any run failed or reported errors.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BASE="$ROOT/build/bench-etcd"
JSONL="$ROOT/build/bench-etcd.jsonl"

SMOKE=0 CURVE=0 LEVELS=0 DEFAULT=1 NO_ETCD=0
RECORDS=100000 DURATION=10 WARMUP=3 CONC=64 VALUE=100
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) SMOKE=1 DEFAULT=0 ;;
    --curve) CURVE=1 DEFAULT=0 ;;
    --levels) LEVELS=1 DEFAULT=0 ;;
    --no-etcd) NO_ETCD=1 ;;
    --records) RECORDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --concurrency) CONC=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-etcd.sh: unknown option $1 (--help)" >&2; exit 2 ;;
  esac
  shift
done
if [ $SMOKE = 1 ]; then
  RECORDS=1000 DURATION=2 WARMUP=0.5 CONC=8
fi
WITH_ETCD=1
[ $SMOKE = 1 ] || [ $NO_ETCD = 1 ] && WITH_ETCD=0

# ---- what is needed -----------------------------------------------------------

bash scripts/setup.sh >/dev/null
GO=$(command -v go || true)
[ -z "$GO" ] && [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go
if [ -z "$GO" ]; then
  echo "bench-etcd.sh: Go is not installed (need Go >= 1.25 in PATH or /usr/local/go)" >&2
  exit 1
fi
if [ $WITH_ETCD = 1 ]; then
  if ! command -v etcd >/dev/null; then
    echo "installing etcd (Debian etcd-server, etcd-client) ..."
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq etcd-server etcd-client >/dev/null
  fi
  # The Debian package may start its own etcd (localhost:2379): stop it and
  # keep it from starting again; this script runs its own members.
  if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
    echo "stopping and disabling the Debian etcd service"
    systemctl stop etcd || true
    systemctl disable etcd >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/etcd ] && /etc/init.d/etcd status >/dev/null 2>&1; then
    /etc/init.d/etcd stop >/dev/null 2>&1 || true
  fi
fi

echo "building cairnd and cairn-kvbench ..."
mkdir -p build
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" --target cairnd cairn >/dev/null
(cd bench/kvbench && GOFLAGS=-buildvcs=false "$GO" build -o "$ROOT/build/cairn-kvbench" .)
KV="$ROOT/build/cairn-kvbench"

# ---- the clusters -------------------------------------------------------------

PIDS=()
cleanup() {
  local pid
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill "$pid" 2>/dev/null || true; done
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_taken() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

C_ADDR=(127.0.7.1 127.0.7.2 127.0.7.3)
E_ADDR=(127.0.6.1 127.0.6.2 127.0.6.3)
C_HOSTS="127.0.7.1:7070,127.0.7.2:7070,127.0.7.3:7070"
E_HOSTS="127.0.6.1:2379,127.0.6.2:2379,127.0.6.3:2379"

start_cairn() {
  local i addr initial="" deadline
  rm -rf "$BASE/cairn"; mkdir -p "$BASE/cairn"
  for i in 1 2 3; do initial+="${initial:+,}c$i=${C_ADDR[$((i-1))]}:7071"; done
  for i in 1 2 3; do
    addr=${C_ADDR[$((i-1))]}
    for p in 7070 7071 7072; do
      if port_taken "$addr" $p; then echo "bench-etcd.sh: $addr:$p is in use" >&2; exit 1; fi
    done
    "$ROOT/build/node/cairnd" --cluster-name cairn --node-name "c$i" --listen-address "$addr" \
      --client-port 7070 --peer-port 7071 --admin-port 7072 --replication-factor 3 \
      --sync group --initial-cluster "$initial" --data-dir "$BASE/cairn/c$i" --log-level warn \
      >"$BASE/cairn/c$i.log" 2>&1 </dev/null &
    PIDS+=($!)
  done
  deadline=$((SECONDS + 30))
  for addr in "${C_ADDR[@]}"; do
    until (exec 3<>"/dev/tcp/$addr/7072" && printf 'GET /ready HTTP/1.0\r\n\r\n' >&3 &&
           head -n1 <&3 | grep -q ' 200 ') 2>/dev/null; do
      if [ $SECONDS -ge $deadline ]; then
        echo "bench-etcd.sh: Cairn node on $addr not ready in 30 s; logs in $BASE/cairn/" >&2
        tail -n 20 "$BASE"/cairn/c*.log >&2; exit 1
      fi
      sleep 0.1
    done
  done
  echo "Cairn: 3 nodes ready on ${C_ADDR[*]} (RF=3, sync=group)"
}

start_etcd() {
  local i addr initial="" deadline quota=()
  rm -rf "$BASE/etcd"; mkdir -p "$BASE/etcd"
  for i in 1 2 3; do initial+="${initial:+,}e$i=http://${E_ADDR[$((i-1))]}:2380"; done
  # etcd refuses writes past its backend quota (2 GiB by default): raise it
  # for the large key spaces only, and say so.
  if [ "$RECORDS" -gt 3000000 ]; then
    quota=(--quota-backend-bytes $((8 * 1024 * 1024 * 1024)))
    echo "etcd: --quota-backend-bytes 8 GiB for $RECORDS records (the default 2 GiB would fill up)"
  fi
  for i in 1 2 3; do
    addr=${E_ADDR[$((i-1))]}
    for p in 2379 2380; do
      if port_taken "$addr" $p; then echo "bench-etcd.sh: $addr:$p is in use" >&2; exit 1; fi
    done
    etcd --name "e$i" --data-dir "$BASE/etcd/e$i" \
      --listen-client-urls "http://$addr:2379" --advertise-client-urls "http://$addr:2379" \
      --listen-peer-urls "http://$addr:2380" --initial-advertise-peer-urls "http://$addr:2380" \
      --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token kvbench \
      --logger zap --log-level warn ${quota[@]+"${quota[@]}"} \
      >"$BASE/etcd/e$i.log" 2>&1 </dev/null &
    PIDS+=($!)
  done
  deadline=$((SECONDS + 30))
  until ETCDCTL_API=3 etcdctl --endpoints "$E_HOSTS" endpoint health >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "bench-etcd.sh: etcd not healthy in 30 s; logs in $BASE/etcd/" >&2
      tail -n 20 "$BASE"/etcd/e*.log >&2; exit 1
    fi
    sleep 0.2
  done
  echo "etcd $(etcd --version | sed -n 's/^etcd Version: //p'): 3 members healthy on ${E_ADDR[*]}"
}

mkdir -p "$BASE"
RUN="$BASE/run.jsonl"
: >"$RUN"
failed=0

# kv CASE STORE [options...]: one generator run, its JSON lines kept.
kv() {
  local cs=$1 store=$2 hosts rc=0; shift 2
  [ "$store" = etcd ] && [ $WITH_ETCD = 0 ] && return 0
  case $store in
    cairn) hosts=$C_HOSTS ;;
    etcd) hosts=$E_HOSTS ;;
    *) hosts= ;;
  esac
  echo "== $cs: $store $*"
  "$KV" -store "$store" ${hosts:+-hosts "$hosts"} -records "$RECORDS" -value-size "$VALUE" \
    -duration "${DURATION}s" -warmup "${WARMUP}s" -case "$cs" -json "$@" >>"$RUN" || rc=$?
  if [ $rc -ne 0 ]; then
    echo "bench-etcd.sh: run '$cs' on $store FAILED (exit $rc)" >&2
    failed=1
  fi
}

conns() { [ "$1" -lt 4 ] && echo "$1" || echo 4; }

start_cairn
[ $WITH_ETCD = 1 ] && start_etcd

# The generator's own ceiling (null server in-process) and the round-trip
# floor to a real cairnd (PING; INFO on a node without it).
if [ $SMOKE = 1 ]; then
  kv "null ceiling" null -workload A -concurrency "$CONC" -connections "$(conns "$CONC")"
  kv "ping floor" cairn -workload P -concurrency 1 -connections 1
  kv "smoke load" cairn -workload load -concurrency "$CONC"
  kv "smoke A" cairn -workload A -dist zipfian -concurrency "$CONC" -connections "$(conns "$CONC")"
  kv "smoke F" cairn -workload F -concurrency "$CONC" -connections "$(conns "$CONC")"
else
  kv "null ceiling A" null -workload A -concurrency "$CONC" -connections "$(conns "$CONC")"
  kv "ping floor c1" cairn -workload P -concurrency 1 -connections 1
  kv "ping c$CONC" cairn -workload P -concurrency "$CONC" -connections "$(conns "$CONC")"
  # Both key spaces loaded once, in parallel goroutines, before any read.
  kv "load" etcd -workload load -concurrency "$CONC" -load-concurrency 256
  kv "load" cairn -workload load -concurrency "$CONC" -load-concurrency 256
fi

if [ $DEFAULT = 1 ]; then
  for w in W C A; do
    for s in etcd cairn; do
      kv "$w" "$s" -workload "$w" -concurrency "$CONC" -connections "$(conns "$CONC")"
    done
  done
fi
if [ $CURVE = 1 ]; then
  for w in W C; do
    for c in 1 4 16 64 256; do
      for s in etcd cairn; do
        kv "$w c$c" "$s" -workload "$w" -concurrency "$c" -connections "$(conns "$c")"
      done
    done
  done
fi
if [ $LEVELS = 1 ]; then
  for w in W C; do
    for cl in ONE QUORUM ALL; do
      kv "levels $w $cl" cairn -workload "$w" -read-cl "$cl" -write-cl "$cl" \
        -concurrency "$CONC" -connections "$(conns "$CONC")"
    done
  done
  kv "levels C etcd serializable" etcd -workload C -etcd-serializable -concurrency "$CONC" \
    -connections "$(conns "$CONC")"
  kv "levels C etcd linearizable" etcd -workload C -concurrency "$CONC" -connections "$(conns "$CONC")"
fi

cat "$RUN" >>"$JSONL"
echo
echo "== results ($(nproc) CPUs shared by the clusters and the generator; latencies in microseconds)"
"$KV" report "$RUN" || failed=1
echo "(JSON lines appended to $JSONL)"
if [ $failed -ne 0 ]; then
  echo "bench-etcd.sh: some runs failed or reported errors (see above)" >&2
  exit 1
fi
