#!/usr/bin/env bash
# bench-engine.sh [options] -- build and run the storage-engine benchmark:
# the same workload against Cairn's engine, RocksDB and LevelDB in one run
# (see bench/README.md). Options go to cairn-engine-bench, e.g. --repeat 3.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCAIRN_BUILD_BENCH=ON >/dev/null
cmake --build build -j"$(nproc)" --target cairn-engine-bench >/dev/null
exec build/bench/cairn-engine-bench "$@"
