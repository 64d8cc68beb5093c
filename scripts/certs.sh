#!/usr/bin/env bash
# certs.sh -- make a certificate authority and the node and client
# certificates a Cairn cluster uses for TLS (client_tls, peer_tls), plus a
# cluster secret for gossip datagrams. Needs the openssl command.
#
#   scripts/certs.sh local [DIR]      CA, node1..node3 (127.0.0.1..3), client
#                                     "admin", secret (default local-cluster/tls)
#   scripts/certs.sh compose [DIR]    CA, node1..node5 (compose service names),
#                                     client "admin", secret (default deploy/tls)
#   scripts/certs.sh ca DIR           the CA alone (ca.crt, ca.key), if missing
#   scripts/certs.sh node DIR NAME [HOST|IP]...
#                                     a node certificate: common name NAME (its
#                                     node_name), usable for TLS servers and
#                                     clients, SAN NAME and each HOST/IP
#   scripts/certs.sh client DIR NAME  a client certificate: common name NAME
#                                     (the user name), TLS clients only
#   scripts/certs.sh secret DIR       cluster.secret (32 random bytes, hex)
#
# Files: DIR/ca.crt, DIR/ca.key (keep the key offline in production: it
# signs anything), DIR/NAME.crt + DIR/NAME.key per node or client, keys
# mode 600. Keys are ECDSA P-256; certificates last $CAIRN_CERT_DAYS days
# (default 825). An existing CA is reused, so adding a node later is
# `certs.sh node DIR node4 10.0.0.4`.
set -euo pipefail
DAYS=${CAIRN_CERT_DAYS:-825}
command -v openssl >/dev/null || { echo "certs.sh: needs openssl (apt-get install openssl)" >&2; exit 1; }

ca() { # <dir>
  local d=$1
  mkdir -p "$d"
  [ -s "$d/ca.crt" ] && [ -s "$d/ca.key" ] && return 0
  ( umask 077; openssl ecparam -name prime256v1 -genkey -noout -out "$d/ca.key" )
  openssl req -x509 -new -key "$d/ca.key" -sha256 -days "$DAYS" -out "$d/ca.crt" \
    -subj "/O=Cairn/CN=Cairn cluster CA $(date +%Y%m%d%H%M%S)-$RANDOM" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" >/dev/null 2>&1
}

issue() { # <dir> <name> <eku> <san or "">
  local d=$1 name=$2 eku=$3 san=$4 ext
  [ -s "$d/ca.key" ] || { echo "certs.sh: no CA in $d (run: certs.sh ca $d)" >&2; exit 1; }
  ext=$(mktemp)
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [ -n "$san" ] && echo "subjectAltName=$san"
  } >"$ext"
  ( umask 077; openssl ecparam -name prime256v1 -genkey -noout -out "$d/$name.key" )
  openssl req -new -key "$d/$name.key" -subj "/O=Cairn/CN=$name" -out "$d/$name.csr" >/dev/null 2>&1
  openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days "$DAYS" -sha256 -extfile "$ext" -out "$d/$name.crt" >/dev/null 2>&1
  rm -f "$d/$name.csr" "$ext"
}

node() { # <dir> <name> [host|ip]...
  local d=$1 name=$2; shift 2
  local san="DNS:$name" h
  for h in "$@"; do
    if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then san+=",IP:$h"; else san+=",DNS:$h"; fi
  done
  issue "$d" "$name" "serverAuth,clientAuth" "$san"
}

client() { issue "$1" "$2" "clientAuth" ""; }

secret() {
  mkdir -p "$1"
  [ -s "$1/cluster.secret" ] && return 0
  ( umask 077; openssl rand -hex 32 >"$1/cluster.secret" )
}

cmd=${1:-}
case $cmd in
  local)
    d=${2:-local-cluster/tls}; ca "$d"
    for i in 1 2 3; do node "$d" "node$i" "127.0.0.$i" localhost; done
    client "$d" admin; secret "$d"
    echo "certs.sh: CA, node1..node3, client admin and cluster.secret in $d" ;;
  compose)
    d=${2:-deploy/tls}; ca "$d"
    for i in 1 2 3 4 5; do node "$d" "node$i" localhost 127.0.0.1; done
    client "$d" admin; secret "$d"
    chmod 644 "$d"/*.key "$d/cluster.secret" # read by uid 7070 in the containers
    echo "certs.sh: CA, node1..node5, client admin and cluster.secret in $d" ;;
  ca) [ $# -eq 2 ] || { echo "usage: certs.sh ca DIR" >&2; exit 2; }; ca "$2" ;;
  node) [ $# -ge 3 ] || { echo "usage: certs.sh node DIR NAME [HOST|IP]..." >&2; exit 2; }
        d=$2 n=$3; shift 3; node "$d" "$n" "$@" ;;
  client) [ $# -eq 3 ] || { echo "usage: certs.sh client DIR NAME" >&2; exit 2; }; client "$2" "$3" ;;
  secret) [ $# -eq 2 ] || { echo "usage: certs.sh secret DIR" >&2; exit 2; }; secret "$2" ;;
  *) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; [ -z "$cmd" ] || exit 2 ;;
esac
