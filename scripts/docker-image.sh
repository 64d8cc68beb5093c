#!/usr/bin/env bash
# docker-image.sh -- build the Cairn container image (cairnd and the cairn
# tool) with no base image: nothing is pulled from any registry.
#
#   scripts/docker-image.sh [--tag NAME] [--build-dir DIR] [--stage-only]
#
# 1. builds cairnd and cairn (CMake, RelWithDebInfo) into DIR (default
#    build-docker/), installing missing Debian packages with setup.sh;
# 2. stages a root filesystem in DIR/docker/rootfs.tar: the two binaries
#    (stripped), every shared library ldd lists for them and the dynamic
#    loader, /etc/passwd and /etc/group with the unprivileged user cairn
#    (uid/gid 7070), /etc/nsswitch.conf (hosts: files dns), an empty
#    /etc/cairn for a mounted cairn.yaml, /tmp, and /var/lib/cairn owned by
#    cairn (the data volume);
# 3. runs `docker build` on deploy/Dockerfile (FROM scratch, ADD of that
#    tar) and tags the result NAME (default cairn:latest).
#
# The image carries its own C library and loader, so it runs on any x86-64
# (or whatever this machine is) Docker host whatever the distribution the
# binaries were built on. --stage-only stops after step 2 (no Docker needed).
# Prints the image's size at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

TAG=cairn:latest
BUILD=build-docker
STAGE_ONLY=false
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) TAG=${2:?--tag needs a name}; shift 2 ;;
    --build-dir) BUILD=${2:?--build-dir needs a directory}; shift 2 ;;
    --stage-only) STAGE_ONLY=true; shift ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "docker-image.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac

die() { echo "docker-image.sh: $*" >&2; exit 1; }

# ---- 1. build ---------------------------------------------------------------
bash scripts/setup.sh
mkdir -p "$BUILD"
echo "docker-image: building cairnd and cairn in $BUILD"
cmake -S . -B "$BUILD" -DCAIRN_SANITIZE=OFF -DCAIRN_BUILD_BENCH=OFF >"$BUILD/configure.log" 2>&1 ||
  { cat "$BUILD/configure.log"; die "cmake configure failed"; }
cmake --build "$BUILD" -j"$(nproc 2>/dev/null || echo 2)" --target cairnd cairn \
  >"$BUILD/build-image.log" 2>&1 ||
  { tail -40 "$BUILD/build-image.log"; die "build failed"; }
CAIRND="$BUILD/node/cairnd"
CAIRN="$BUILD/client/cairn"
[ -x "$CAIRND" ] && [ -x "$CAIRN" ] || die "the build did not produce $CAIRND and $CAIRN"

# ---- 2. stage the root filesystem -------------------------------------------
CTX="$BUILD/docker"        # the build context: Dockerfile and rootfs.tar
RF="$BUILD/docker-rootfs"  # the tree that goes into rootfs.tar
rm -rf "$CTX" "$RF"
mkdir -p "$CTX" "$RF/usr/bin" "$RF/etc/cairn" "$RF/tmp" "$RF/var/lib/cairn"
chmod 1777 "$RF/tmp"
chmod 0755 "$RF" "$RF/usr" "$RF/usr/bin" "$RF/etc" "$RF/etc/cairn" "$RF/var" "$RF/var/lib"
chmod 0750 "$RF/var/lib/cairn"

for bin in "$CAIRND" "$CAIRN"; do
  install -m 0755 "$bin" "$RF/usr/bin/"
  strip --strip-unneeded "$RF/usr/bin/$(basename "$bin")"
done

# Every library the binaries load, at the path the loader finds it on this
# machine (symlinks followed: the soname becomes a regular file), and the
# loader itself at the path written in the binaries (PT_INTERP).
copy_lib() { # path
  local src=$1
  [ -e "$RF$src" ] && return 0
  mkdir -p "$RF$(dirname "$src")"
  cp -L "$src" "$RF$src"
  chmod 0755 "$RF$src"
}
for bin in "$CAIRND" "$CAIRN"; do
  out=$(ldd "$bin") || die "ldd $bin failed (is it a dynamic executable for this machine?)"
  if grep -q 'not found' <<<"$out"; then
    die "$bin needs libraries that are not installed: $(grep 'not found' <<<"$out" | tr -s ' \t' ' ')"
  fi
  if grep -qE 'libasan|libubsan' <<<"$out"; then
    die "$bin is a sanitizer build; build the image from an optimised build"
  fi
  while read -r lib; do copy_lib "$lib"; done < <(
    awk '/=>/ && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$out")
done
interp=$(readelf -l "$CAIRND" | sed -n 's/.*\[Requesting program interpreter: \(.*\)\]/\1/p')
[ -n "$interp" ] || die "cannot find the program interpreter of $CAIRND"
copy_lib "$interp"

# The unprivileged user the node runs as, and name resolution through
# /etc/hosts then DNS (Docker provides /etc/hosts and /etc/resolv.conf; the
# C library of glibc >= 2.34 has the files and dns sources built in, and
# cairnd's own resolver, libevent's evdns, reads the same two files).
cat >"$RF/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
cairn:x:7070:7070:Cairn:/var/lib/cairn:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
cat >"$RF/etc/group" <<'EOF'
root:x:0:
cairn:x:7070:
nogroup:x:65534:
EOF
cat >"$RF/etc/nsswitch.conf" <<'EOF'
passwd: files
group:  files
hosts:  files dns
EOF
chmod 0644 "$RF/etc/passwd" "$RF/etc/group" "$RF/etc/nsswitch.conf"

# The staged tree must run: start the binaries through the staged loader with
# only the staged libraries.
for bin in cairnd cairn; do
  "$RF$interp" --inhibit-cache --library-path "$RF$(dirname "$interp"):$(
      find "$RF" -name 'lib*.so*' -printf '%h\n' | sort -u | paste -sd:)" \
    "$RF/usr/bin/$bin" --help >/dev/null ||
    die "the staged $bin does not start with the staged libraries"
done

# One tar for the image's single layer: root owns everything but the data
# directory, which belongs to cairn (numeric ids: the build needs no such
# user on this machine, nor root). Names sorted and times fixed to the last
# commit's, so an unchanged tree gives an identical layer.
mtime=$(git log -1 --format=%ct 2>/dev/null || echo 0)
TAR=(tar --sort=name --numeric-owner --mtime="@$mtime" --format=gnu -C "$RF")
"${TAR[@]}" --owner=0 --group=0 --exclude=./var/lib/cairn -cf "$CTX/rootfs.tar" .
"${TAR[@]}" --owner=7070 --group=7070 -rf "$CTX/rootfs.tar" ./var/lib/cairn
cp deploy/Dockerfile "$CTX/Dockerfile"
echo "docker-image: root filesystem staged in $CTX/rootfs.tar ($(du -sh "$RF" | cut -f1))"
$STAGE_ONLY && exit 0

# ---- 3. docker build --------------------------------------------------------
command -v docker >/dev/null || die "docker is not installed (the staged tree is in $CTX)"
version=$("$CAIRND" --version | awk '{print $2}')
t0=$SECONDS
# The legacy builder and BuildKit both take this Dockerfile; the legacy one
# warns that it is deprecated, which is noise here: the output is shown only
# when the build fails.
docker build -t "$TAG" --label "org.opencontainers.image.version=$version" "$CTX" \
  >"$BUILD/docker-build.log" 2>&1 || { cat "$BUILD/docker-build.log"; die "docker build failed"; }
size=$(docker image inspect -f '{{.Size}}' "$TAG")
echo "docker-image: built $TAG (cairnd $version) in $((SECONDS - t0)) s; size $((size / 1024)) KiB"
