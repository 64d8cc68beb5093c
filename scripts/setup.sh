#!/usr/bin/env bash
# setup.sh -- install every Debian package Cairn needs to build, run and test.
# Idempotent and quiet: prints nothing when everything is already present.
set -euo pipefail

PACKAGES=(
  # toolchain
  gcc make cmake pkg-config
  # the libraries Cairn is built on
  libevent-dev libmsgpack-dev libssl-dev libzstd-dev libxxhash-dev
  libjemalloc-dev libcmocka-dev libyaml-dev
  # engine benchmark peers (bench/)
  librocksdb-dev libleveldb-dev
  # tests that run a node with a shifted wall clock
  faketime
  # jepsen/: network partitions
  iptables
  # scripts/bench-hints.sh
  curl bc
  # scripts/fuzz.sh: clang's libFuzzer (tests/fuzz); scripts/certs.sh: openssl
  clang libclang-rt-14-dev openssl
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
