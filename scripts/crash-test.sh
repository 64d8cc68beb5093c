#!/usr/bin/env bash
# crash-test.sh [ROUNDS] -- the long engine crash test: a child process writes
# with sync = group and is killed with SIGKILL ROUNDS times (default 300) at
# random moments (during writes, flushes and compactions); after each kill the
# store is reopened and every acknowledged write is checked. The suite runs a
# few rounds; this runs hundreds. Replay a failure with the printed seed:
#   CAIRN_TEST_SEED=<seed> scripts/crash-test.sh 300
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" --target test_engine_crash >/dev/null
CAIRN_CRASH_ROUNDS=${1:-300} exec build/tests/test_engine_crash
