#!/usr/bin/env bash
# compose-test.sh -- the docker-compose deployment (deploy/), end to end, as
# a user runs it: build the image, bring the three-node cluster up, and
# check that it behaves under `docker compose kill/start/stop` as a cluster
# should.
#
#   1. build the image (scripts/docker-image.sh); start node1 alone and check
#      it runs but is not ready (joining) while its seeds are not up; start
#      the others; wait until every container's health check passes;
#   2. write 1,000 keys at QUORUM from the host (the cairn tool, through the
#      published client ports), read them back at ALL;
#   3. `kill` node3 (SIGKILL): QUORUM writes and reads still succeed; once
#      `cairn status` shows node3 DN, ALL reads and writes fail Unavailable;
#   4. `start` node3: it replayed its WAL (the crash left recovery work),
#      becomes healthy, the hints held for it drain; with node1 and node2
#      stopped, every key reads back at ONE from node3 alone;
#   5. `stop` node2 (SIGTERM) after writes it has not flushed: it drains and
#      exits 0, and restarts with nothing to recover from its WAL;
#   +  scale to five (--profile scale): node4 and node5 join through their
#      seeds, stream their ranges and turn UN; every key reads at ONE
#      through each of them;
#   +  the five-node variant (deploy/five/): all five healthy, `cairn status`
#      shows five UN, each key has three replicas, and with one node killed
#      keys are written and read at QUORUM;
#   6. tear everything down, volumes included -- also when a step fails
#      (trap), and check nothing of either project is left.
#
# Exit status: 0 passed; 1 failed; 77 did not run (no Docker engine answers,
# or no docker compose / docker-compose), with the reason printed. The
# compose project name is unique per run, the image is tagged for this run
# only (and untagged at the end), and host ports are chosen by Docker
# (nothing on fixed ports). CAIRN_COMPOSE_TEST_KEEP=1 leaves the cluster up
# after a failure to look at it (remove it with the printed command).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
T_START=$SECONDS

skip() {
  echo "compose-test: SKIPPED -- the docker-compose test did not run: $*"
  exit 77
}

# ---- can it run here? --------------------------------------------------------
command -v docker >/dev/null 2>&1 || skip "docker is not installed"
if ! info_err=$(timeout 20 docker info 2>&1 >/dev/null); then
  skip "no Docker engine answers ($(tr '\n' ' ' <<<"$info_err" | cut -c1-200))"
fi
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1 && docker-compose version >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  skip "neither 'docker compose' (the plugin) nor 'docker-compose' is installed"
fi

RUN="cairntest$$$(printf '%04x' $((RANDOM % 65536)))"
IMAGE="cairn-compose-test:$RUN"
CLI="$ROOT/build-docker/client/cairn"
# the compose project in use (dcq), and every one started (torn down at exit)
PROJECT=$RUN FILE="$ROOT/deploy/docker-compose.yml"
PROJECT5=${RUN}five FILE5="$ROOT/deploy/five/docker-compose.yml"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-compose-test.XXXXXX")
NKEYS=1000 NDOWN=200 NLATE=100
# Host ports: empty -> Docker picks free ones (read back with `port`).
export CAIRND_IMAGE="$IMAGE" CAIRND_BIND=127.0.0.1
for i in 1 2 3 4 5; do export "CAIRND_PORT_NODE$i=" "CAIRND_ADMIN_PORT_NODE$i="; done

dcq() { "${COMPOSE[@]}" -p "$PROJECT" -f "$FILE" "$@"; }

FAILED=""
STEP_NAMES=() STEP_TIMES=()
cur_step="" cur_t0=0
step() { # name
  end_step
  cur_step=$1 cur_t0=$SECONDS
  echo "== compose-test: $1"
}
end_step() {
  [ -n "$cur_step" ] || return 0
  STEP_NAMES+=("$cur_step") STEP_TIMES+=($((SECONDS - cur_t0)))
  cur_step=""
}
fail() {
  FAILED="$cur_step: $*"
  echo "compose-test: FAILED in $FAILED" >&2
  exit 1
}
note() { echo "   $*"; }

# down -v a project and check that none of its containers, volumes or
# networks is left.
teardown() { # project file
  "${COMPOSE[@]}" -p "$1" -f "$2" --profile scale down -v --remove-orphans -t 30 >"$WORK/down.log" 2>&1 ||
    { echo "compose-test: 'down -v' of $1 failed:" >&2; cat "$WORK/down.log" >&2; return 1; }
  local left
  left=$( { docker ps -aq --filter "label=com.docker.compose.project=$1"
            docker volume ls -q --filter "label=com.docker.compose.project=$1"
            docker network ls -q --filter "label=com.docker.compose.project=$1"; } | wc -l)
  if [ "$left" -ne 0 ]; then
    echo "compose-test: $left containers, volumes or networks of project $1 are left" >&2
    return 1
  fi
}

cleanup() {
  local rc=$?
  end_step
  trap - EXIT INT TERM
  if [ -n "$FAILED" ] || [ $rc -ne 0 ]; then
    echo "---- the last lines of each node's log ----" >&2
    dcq logs --no-color --tail 25 2>&1 | grep -v '^Attaching' >&2 || true
  fi
  if [ "${CAIRN_COMPOSE_TEST_KEEP:-0}" = 1 ] && [ $rc -ne 0 ]; then
    echo "compose-test: left running; remove with:" >&2
    echo "  ${COMPOSE[*]} -p $RUN -f $ROOT/deploy/docker-compose.yml down -v" >&2
    echo "  ${COMPOSE[*]} -p $PROJECT5 -f $FILE5 down -v; docker rmi $IMAGE" >&2
  else
    local t0=$SECONDS
    teardown "$RUN" "$ROOT/deploy/docker-compose.yml" || rc=1
    teardown "$PROJECT5" "$FILE5" || rc=1
    docker image rm "$IMAGE" >/dev/null 2>&1 || true
    STEP_NAMES+=("6. tear down both projects (down -v), check nothing is left")
    STEP_TIMES+=($((SECONDS - t0)))
  fi
  rm -rf "$WORK"
  echo "== compose-test: step times"
  for i in "${!STEP_NAMES[@]}"; do printf '   %4ss  %s\n' "${STEP_TIMES[$i]}" "${STEP_NAMES[$i]}"; done
  echo "   total $((SECONDS - T_START))s (${COMPOSE[*]}, projects $RUN and $PROJECT5)"
  if [ $rc -eq 0 ]; then echo "compose-test: PASSED"; else echo "compose-test: FAILED${FAILED:+: $FAILED}"; fi
  exit $rc
}
trap cleanup EXIT
trap 'FAILED="interrupted"; exit 1' INT TERM

# ---- helpers -------------------------------------------------------------------
# Container ids by service, read once after each `up` (kill, start and stop
# keep a container's id): the checks below then call docker itself, not
# compose, whose start-up (Python for docker-compose) costs far more CPU.
declare -A CIDS=()
refresh_cids() {
  local ids
  CIDS=()
  ids=$(dcq ps -a -q) || fail "compose ps failed"
  [ -n "$ids" ] || return 0
  while read -r svc id; do CIDS[$svc]=$id; done < <(
    docker inspect -f '{{index .Config.Labels "com.docker.compose.service"}} {{.Id}}' $ids)
}
cid() { echo "${CIDS[$1]:-none}"; }
health() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$(cid "$1")" 2>/dev/null; }
state() { docker inspect -f '{{.State.Status}}' "$(cid "$1")" 2>/dev/null; }
exit_code() { docker inspect -f '{{.State.ExitCode}}' "$(cid "$1")"; }
# host address of a published port (re-read after every start: Docker
# chooses it anew); fails (status 1) when there is none
hostport() { # service container-port
  local hp
  hp=$(docker port "$(cid "$1")" "$2/tcp" 2>/dev/null | awk 'NR == 1')
  [ -n "$hp" ] && [ "${hp##*:}" != 0 ] || return 1
  echo "$hp"
}
must_port() { # var service
  local hp
  hp=$(hostport "$2" 7070) || fail "no host port published for $2:7070"
  printf -v "$1" '%s' "$hp"
}
wait_healthy() { # timeout-seconds service...
  local limit=$1 t0=$SECONDS; shift
  for s in "$@"; do
    until [ "$(health "$s")" = healthy ]; do
      [ "$(state "$s")" = running ] || fail "$s is $(state "$s") (exit code $(exit_code "$s")) while waiting for it to be healthy"
      [ $((SECONDS - t0)) -lt "$limit" ] || fail "$s not healthy after ${limit}s (health: $(health "$s"))"
      sleep 0.5
    done
  done
}
# a numeric INFO item of the node at host:port, into variable var
must_info() { # var host:port item
  local v
  v=$("$CLI" -H "$2" info | awk -v k="$3:" '$1 == k {print $2}')
  [[ "$v" =~ ^[0-9]+$ ]] || fail "INFO of $2 has no number for $3 ('$v')"
  printf -v "$1" '%s' "$v"
}
hints_pending() { # var: the hints node1 and node2 hold
  local h1 h2
  must_info h1 "$P1" hints_pending
  must_info h2 "$P2" hints_pending
  printf -v "$1" '%s' $((h1 + h2))
}
clean_stops() { grep -c "stopped after a clean drain" <<<"$(docker logs "$(cid "$1")" 2>&1)"; }

# One cairn per key, SHARDS of them at a time (each waits for its replicas'
# fsyncs; one at a time would leave the machine idle). A shard stops at its
# first error and reports it; the step fails with the first report.
SHARDS=4
keys_shard() { # op hosts cl prefix from to shard
  local i v
  for ((i = $5 + $7; i <= $6; i += SHARDS)); do
    if [ "$1" = put ]; then
      "$CLI" -H "$2" -c "$3" put "$4-$i" "value-of-$4-$i" 2>>"$WORK/err.$7" ||
        { echo "put $4-$i at $3 through $2 failed: $(tail -n1 "$WORK/err.$7")"; return 1; }
    else
      v=$("$CLI" -H "$2" -c "$3" get "$4-$i" 2>>"$WORK/err.$7") ||
        { echo "get $4-$i at $3 through $2 failed: $(tail -n1 "$WORK/err.$7")"; return 1; }
      [ "$v" = "value-of-$4-$i" ] ||
        { echo "get $4-$i at $3 through $2 returned '$v'"; return 1; }
    fi
  done
}
keys() { # op hosts cl prefix from to
  local k pids=() why=""
  for ((k = 0; k < SHARDS; k++)); do
    keys_shard "$@" "$k" >"$WORK/shard.$k" &
    pids+=($!)
  done
  for k in "${!pids[@]}"; do
    wait "${pids[$k]}" || why=${why:-$(cat "$WORK/shard.$k")}
  done
  rm -f "$WORK"/err.* "$WORK"/shard.*
  [ -z "$why" ] || fail "$why"
}
# Writes keys prefix-FROM..TO with value "value-of-<key>".
put_keys() { keys put "$@"; }   # hosts cl prefix from to
# Reads them back and compares.
check_keys() { keys get "$@"; } # hosts cl prefix from to

# ---- 1. image, any start order, health -------------------------------------------
step "1. build the image, start node1 alone, then the others; wait for every health check"
t0=$SECONDS
bash scripts/docker-image.sh --tag "$IMAGE" >"$WORK/image.log" 2>&1 ||
  { cat "$WORK/image.log"; fail "scripts/docker-image.sh failed"; }
IMAGE_BUILD_S=$((SECONDS - t0))
IMAGE_SIZE=$(docker image inspect -f '{{.Size}}' "$IMAGE")
note "image $IMAGE: $((IMAGE_SIZE / 1024)) KiB, built in ${IMAGE_BUILD_S}s (cairnd and cairn compiled, rootfs staged, docker build)"
[ -x "$CLI" ] || fail "no cairn tool at $CLI"
user=$(docker image inspect -f '{{.Config.User}}' "$IMAGE")
[ -n "$user" ] && [ "${user%%:*}" != 0 ] && [ "${user%%:*}" != root ] ||
  fail "the image runs as '$user', not as an unprivileged user"

t_up=$SECONDS
dcq up -d node1 >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; fail "up node1"; }
refresh_cids
# node1 runs and keeps trying node2 and node3, which do not exist yet; it
# serves, but is not ready: its health check must not pass.
sleep 3
[ "$(state node1)" = running ] || fail "node1 alone is $(state node1), not running"
out=$(dcq exec -T node1 cairn ready 2>&1) && fail "node1 alone says it is ready: $out"
grep -q joining <<<"$out" || fail "node1 alone is not ready but not for the reason expected: $out"
[ "$(health node1)" != healthy ] || fail "node1 alone is healthy"
note "node1 alone: running, not ready ($out)"
dcq up -d >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; fail "up"; }
refresh_cids
t_rest=$SECONDS
wait_healthy 90 node1 node2 node3
note "all three healthy $((SECONDS - t_rest))s after node2 and node3 were started ($((SECONDS - t_up))s after node1)"
HEALTHY_S=$((SECONDS - t_rest))
for s in node1 node2 node3; do
  uid=$(docker top "$(cid $s)" -o pid,uid,comm | awk '$3 == "cairnd" {print $2}')
  [ -n "$uid" ] && [ "$uid" != 0 ] || fail "cairnd in $s runs as uid '$uid', not unprivileged"
done
note "cairnd runs as uid $uid (not root) in every container"
# cluster_name, replication_factor and the founders come from the mounted
# cairn.yaml: without it each node would be a cluster of one
must_port P1 node1
view=$("$CLI" -H "$P1" status) || fail "cairn status through node1 failed"
[ "$(grep -cE '^UN +node[1-3] ' <<<"$view")" = 3 ] && grep -q "replication factor 3" <<<"$view" ||
  fail "cairn status through node1 does not show three UN nodes with replication factor 3: $view"
note "cairn status: three nodes UN, replication factor 3 (initial_cluster from cairn.yaml)"

# ---- 2. 1,000 keys -----------------------------------------------------------------
step "2. write $NKEYS keys at QUORUM from the host, read them back at ALL"
must_port P1 node1; must_port P2 node2; must_port P3 node3
HOSTS="$P1,$P2,$P3"
put_keys "$HOSTS" QUORUM k 1 $NKEYS
check_keys "$HOSTS" ALL k 1 $NKEYS
note "$NKEYS keys written at QUORUM and read at ALL through $HOSTS"

# ---- 3. kill one node ----------------------------------------------------------------
step "3. kill node3: QUORUM still works, ALL is Unavailable, status shows node3 DN"
dcq kill node3 >"$WORK/kill.log" 2>&1 || { cat "$WORK/kill.log"; fail "kill node3"; }
[ "$(state node3)" = exited ] || fail "node3 is $(state node3) after kill"
[ "$(exit_code node3)" = 137 ] || fail "node3 exit code $(exit_code node3) after kill, want 137 (SIGKILL)"
sleep 3 # the restart policy (unless-stopped) must not bring a killed node back
[ "$(state node3)" = exited ] || fail "node3 came back by itself after kill: $(state node3)"
LIVE="$P1,$P2"
put_keys "$LIVE" QUORUM down 1 $NDOWN
check_keys "$LIVE" QUORUM down 1 $NDOWN
check_keys "$LIVE" QUORUM k 1 100
note "$NDOWN QUORUM writes and $((NDOWN + 100)) QUORUM reads succeeded with node3 down"
t0=$SECONDS
for P in "$P1" "$P2"; do
  # (grep reads a captured string: `producer | grep -q` fails under
  # pipefail when grep quits early and the producer gets SIGPIPE)
  until grep -Eq '^DN +node3 ' <<<"$("$CLI" -H "$P" status)"; do
    [ $((SECONDS - t0)) -lt 30 ] || fail "cairn status through $P does not show node3 DN: $("$CLI" -H "$P" status)"
    sleep 0.5
  done
done
note "cairn status shows node3 DN on node1 and node2 $((SECONDS - t0))s after the checks above:"
"$CLI" -H "$P1" status | sed 's/^/     /'
err=$("$CLI" -H "$LIVE" -c ALL get k-1 2>&1 >/dev/null) && fail "ALL read succeeded with node3 down"
grep -q '^cairn: Unavailable' <<<"$err" || fail "ALL read with node3 down: '$err', want Unavailable"
err=$("$CLI" -H "$LIVE" -c ALL put all-down x 2>&1 >/dev/null) && fail "ALL write succeeded with node3 down"
grep -q '^cairn: Unavailable' <<<"$err" || fail "ALL write with node3 down: '$err', want Unavailable"
note "ALL read and write: $err"
hints_pending pending
[ "$pending" -ge "$NDOWN" ] || fail "only $pending hints are held for node3 after $NDOWN writes"
note "$pending hints held for node3"

# ---- 4. restart it --------------------------------------------------------------------
step "4. start node3: healthy, hints drained, every key read at ONE from node3 alone"
dcq start node3 >"$WORK/start.log" 2>&1 || { cat "$WORK/start.log"; fail "start node3"; }
wait_healthy 60 node3
must_port P3 node3
must_info rec "$P3" wal_recovered_writes
[ "$rec" -gt 0 ] || fail "node3 restarted after SIGKILL without WAL recovery (wal_recovered_writes '$rec')"
grep -q "recovered $rec writes from" <<<"$(docker logs "$(cid node3)" 2>&1)" ||
  fail "node3's log does not say it recovered $rec writes"
note "node3 healthy; after the kill it replayed $rec writes from its WAL (expected: it crashed)"
t0=$SECONDS
while :; do
  hints_pending pending
  [ "$pending" -eq 0 ] && break
  [ $((SECONDS - t0)) -lt 60 ] || fail "$pending hints still pending 60s after node3 came back"
  sleep 0.5
done
must_info recv "$P3" hints_received
[ "$recv" -ge "$NDOWN" ] || fail "node3 received $recv hints, want at least $NDOWN"
note "hints drained ($recv received by node3) $((SECONDS - t0))s after node3 was healthy"
dcq stop node1 node2 >"$WORK/stop.log" 2>&1 || { cat "$WORK/stop.log"; fail "stop node1 node2"; }
for s in node1 node2; do
  [ "$(exit_code $s)" = 0 ] || fail "$s exited $(exit_code $s) after stop, want 0"
done
check_keys "$P3" ONE k 1 $NKEYS
check_keys "$P3" ONE down 1 $NDOWN
note "node1 and node2 stopped; all $((NKEYS + NDOWN)) keys read at ONE from node3 alone"
dcq start node1 node2 >"$WORK/start.log" 2>&1 || { cat "$WORK/start.log"; fail "start node1 node2"; }
wait_healthy 60 node1 node2 node3

# ---- 5. a clean stop ------------------------------------------------------------------
step "5. stop node2 (SIGTERM): clean drain, exit 0, nothing to recover at restart"
must_port P1 node1; must_port P2 node2
HOSTS="$P1,$P2,$P3"
put_keys "$HOSTS" ALL late 1 $NLATE # in node2's memtable and WAL, not flushed yet
stops_before=$(clean_stops node2)
t0=$SECONDS
dcq stop node2 >"$WORK/stop.log" 2>&1 || { cat "$WORK/stop.log"; fail "stop node2"; }
STOP_S=$((SECONDS - t0))
[ "$(exit_code node2)" = 0 ] || fail "node2 exited $(exit_code node2) after SIGTERM, want 0"
[ "$(clean_stops node2)" -eq $((stops_before + 1)) ] ||
  fail "node2's log does not say this stop was a clean drain"
note "node2 drained and exited 0 in ${STOP_S}s"
dcq start node2 >"$WORK/start.log" 2>&1 || { cat "$WORK/start.log"; fail "start node2"; }
wait_healthy 60 node2
must_port P2 node2
must_info rec "$P2" wal_recovered_writes
[ "$rec" = 0 ] || fail "node2 recovered '$rec' writes from its WAL after a clean stop, want 0"
check_keys "$P2" ONE late 1 $NLATE
note "node2 restarted with nothing to recover (wal_recovered_writes 0); its $NLATE late keys read at ONE"

# ---- scale to five --------------------------------------------------------------------
step "+. scale to five (--profile scale): node4 and node5 join, stream, turn UN"
t0=$SECONDS
dcq --profile scale up -d >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; fail "up --profile scale"; }
refresh_cids
wait_healthy 90 node4 node5
until [ "$(grep -cE '^UN +node[1-5] ' <<<"$("$CLI" -H "$P1" status)")" = 5 ]; do
  [ $((SECONDS - t0)) -lt 120 ] || fail "five nodes not UN 120s after scaling: $("$CLI" -H "$P1" status)"
  sleep 1
done
note "node4 and node5 joined and turned UN $((SECONDS - t0))s after up --profile scale"
must_port P4 node4; must_port P5 node5
must_info in4 "$P4" stream_keys_in
must_info in5 "$P5" stream_keys_in
[ "$in4" -gt 0 ] && [ "$in5" -gt 0 ] || fail "node4 / node5 streamed in $in4 / $in5 keys, want some each"
check_keys "$P4" ONE k 1 $NKEYS
check_keys "$P5" ONE down 1 $NDOWN
check_keys "$P5" ONE late 1 $NLATE
note "node4 and node5 streamed in $in4 and $in5 keys; every key read at ONE through them"
t0=$SECONDS
teardown "$PROJECT" "$FILE" || fail "the three-node cluster did not tear down cleanly"
note "three-node cluster torn down (down -v) in $((SECONDS - t0))s: nothing left"

# ---- 7. five nodes ----------------------------------------------------------------------
step "+. the five-node variant: all healthy, five UN, QUORUM with a node killed"
PROJECT=$PROJECT5 FILE=$FILE5
t_up=$SECONDS
dcq up -d >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; fail "up (five nodes)"; }
refresh_cids
wait_healthy 90 node1 node2 node3 node4 node5
note "five nodes healthy $((SECONDS - t_up))s after up"
must_port Q1 node1; must_port Q2 node2
t0=$SECONDS
until [ "$("$CLI" -H "$Q1" status | grep -cE '^UN +node[1-5] ')" = 5 ]; do
  [ $((SECONDS - t0)) -lt 30 ] || fail "cairn status does not show five UN: $("$CLI" -H "$Q1" status)"
  sleep 0.5
done
n=$("$CLI" -H "$Q1" endpoints five-1 | grep -cE '^node[1-5] ')
[ "$n" = 3 ] || fail "five-1 has $n replicas, want 3: $("$CLI" -H "$Q1" endpoints five-1)"
put_keys "$Q1,$Q2" QUORUM five 1 20
dcq kill node5 >"$WORK/kill.log" 2>&1 || { cat "$WORK/kill.log"; fail "kill node5"; }
check_keys "$Q1,$Q2" QUORUM five 1 20
put_keys "$Q1,$Q2" QUORUM five 21 40
check_keys "$Q1,$Q2" QUORUM five 21 40
note "five UN, three replicas per key; with node5 killed, 40 keys written and read at QUORUM"
end_step
