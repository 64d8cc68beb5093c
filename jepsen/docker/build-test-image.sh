#!/usr/bin/env bash
# build-test-image.sh -- a minimal image of the locally built cairnd for
# testing the harness's docker mode without the deploy issue's image:
# FROM scratch, the binary and the shared libraries ldd lists, nothing to
# download. Usage: jepsen/docker/build-test-image.sh [BUILD_DIR] (default build/)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
bin=$build/node/cairnd
[ -x "$bin" ] || { echo "no cairnd at $bin: build Cairn first" >&2; exit 1; }
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/root/usr/bin" "$ctx/root/data"
cp "$bin" "$ctx/root/usr/bin/cairnd"
for lib in $(ldd "$bin" | awk '/=>/ {print $3} /^\t\/lib/ {print $1}'); do
  mkdir -p "$ctx/root$(dirname "$lib")"
  cp -L "$lib" "$ctx/root$lib"
done
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY root/ /
VOLUME /data
ENTRYPOINT ["/usr/bin/cairnd"]
DOCKERFILE
docker build -q -t cairn-jepsen-test:latest "$ctx"
