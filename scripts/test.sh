#!/usr/bin/env bash
# test.sh -- the README's test command: install what is missing, build, and
# run the whole suite twice: an optimised build and an AddressSanitizer +
# UndefinedBehaviorSanitizer build; after the optimised one, the chaos
# harness in jepsen/ (its Go tests and a smoke run of a few minutes) and a
# smoke run of the cluster benchmark (bench/kvbench); then,
# when a Docker engine answers, the docker-compose deployment test
# (tests/docker/compose-test.sh: builds the image, runs a three-node cluster
# through kill/start/stop). Exits non-zero on any failure; ends with one
# line per part. No Docker engine (or no compose) is not a failure: the
# recap says the docker test did not run, and why.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh || exit 1
JOBS=$(nproc 2>/dev/null || echo 2)
status=0

run_suite() { # <build-dir> <label> [cmake args...]
  local dir=$1 label=$2; shift 2
  echo "== ${label}: configure and build (${dir})"
  if ! cmake -S . -B "$dir" "$@" >"$dir/configure.log" 2>&1; then
    cat "$dir/configure.log"; return 1
  fi
  if ! cmake --build "$dir" -j "$JOBS" >"$dir/build.log" 2>&1; then
    grep -E 'error|warning' "$dir/build.log" | head -50; tail -20 "$dir/build.log"; return 1
  fi
  echo "== ${label}: tests"
  (cd "$dir" && ctest --output-on-failure -j "$JOBS")
}

# jepsen/: the Go harness's own tests (its driver against the cairnd just
# built), then the smoke run: a few fault scenarios on a local 5-node
# cluster (127.0.5.1-5) and a negative control, about five minutes. Any
# RESULT other than PASS fails the suite, INVALID included (e.g. when
# partitions cannot be made here: the run says why).
run_jepsen() {
  local go
  go=$(command -v go || true)
  [ -z "$go" ] && [ -x /usr/local/go/bin/go ] && go=/usr/local/go/bin/go
  if [ -z "$go" ]; then
    echo "== jepsen: Go is not installed (need Go >= 1.22 in PATH or /usr/local/go): cannot run the chaos tests"
    return 1
  fi
  echo "== jepsen: build and unit tests ($("$go" version | cut -d' ' -f3))"
  (cd jepsen && GOFLAGS=-buildvcs=false "$go" build -o ../build/cairn-jepsen ./cmd/cairn-jepsen) || return 1
  (cd jepsen && GOFLAGS=-buildvcs=false CAIRND="$PWD/../build/node/cairnd" CAIRN_JEPSEN_REQUIRE_CAIRND=1 \
     "$go" test -count=1 ./...) || return 1
  echo "== jepsen: smoke run (jepsen/README.md)"
  rm -rf build/jepsen-smoke
  build/cairn-jepsen smoke -build build -store build/jepsen-smoke
}

# bench/kvbench: the generator's Go tests, then scripts/bench-etcd.sh --smoke
# (Cairn only, no etcd: a 3-node cluster on 127.0.7.1-3, tiny workloads of
# 2 s each, about 20 s). A failed run or any request error fails the suite.
run_kvbench_smoke() {
  local go
  go=$(command -v go || true)
  [ -z "$go" ] && [ -x /usr/local/go/bin/go ] && go=/usr/local/go/bin/go
  if [ -z "$go" ]; then
    echo "== kvbench smoke: Go is not installed"; return 1
  fi
  echo "== kvbench smoke: unit tests and scripts/bench-etcd.sh --smoke"
  (cd bench/kvbench && GOFLAGS=-buildvcs=false "$go" test -count=1 ./...) || return 1
  bash scripts/bench-etcd.sh --smoke
}

mkdir -p build build-asan
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
recap=()
if run_suite build "optimised build" -DCAIRN_SANITIZE=OFF; then
  recap+=("optimised build: passed")
else
  status=1; recap+=("optimised build: FAILED")
fi
if run_jepsen; then
  recap+=("jepsen smoke: passed")
else
  status=1; recap+=("jepsen smoke: FAILED (see jepsen/README.md)")
fi
if run_kvbench_smoke; then
  recap+=("kvbench smoke: passed")
else
  status=1; recap+=("kvbench smoke: FAILED (scripts/bench-etcd.sh --smoke)")
fi
if run_suite build-asan "sanitizer build (ASan+UBSan)" -DCAIRN_SANITIZE=ON -DCAIRN_BUILD_BENCH=OFF; then
  recap+=("sanitizer build: passed")
else
  status=1; recap+=("sanitizer build: FAILED")
fi

echo "== docker-compose deployment test (tests/docker/compose-test.sh)"
bash tests/docker/compose-test.sh 2>&1 | tee build/compose-test.log
case ${PIPESTATUS[0]} in
  0) recap+=("docker-compose test: passed") ;;
  77) recap+=("docker-compose test: DID NOT RUN -- $(sed -n 's/.*did not run: //p' build/compose-test.log | head -n1) (not a failure)") ;;
  *) status=1; recap+=("docker-compose test: FAILED (log: build/compose-test.log)") ;;
esac

echo "== summary"
for line in "${recap[@]}"; do echo "   $line"; done
exit $status
