#!/usr/bin/env bash
# Development certificates for agent ↔ aggregator mTLS (and for `plainsight flows/coverage`
# against an mTLS aggregator). NOT for production: use cert-manager or your PKI there.
#
#   scripts/dev-certs.sh DIR [EXTRA_SAN...]      e.g. scripts/dev-certs.sh certs DNS:aggregator.plainsight.svc
#
# Writes DIR/ca.crt, DIR/ca.key, DIR/aggregator.{crt,key} (server: localhost, 127.0.0.1, ::1,
# aggregator + EXTRA_SANs), DIR/agent.{crt,key} (client). EC P-256, valid 30 days. Then:
#   plainsight aggregator --tls-cert DIR/aggregator.crt --tls-key DIR/aggregator.key --tls-ca DIR/ca.crt
#   agent/exporter:        cert DIR/agent.crt, key DIR/agent.key, ca DIR/ca.crt
set -euo pipefail
dir=${1:?usage: scripts/dev-certs.sh DIR [EXTRA_SAN...]}
shift
command -v openssl >/dev/null || { echo "dev-certs: openssl not found; install it (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"
umask 077
days=30
key() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "$@" 2>/dev/null; }

key -x509 -keyout ca.key -out ca.crt -days "$days" -subj "/O=plainsight dev/CN=plainsight dev CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign

sans="DNS:localhost,DNS:aggregator,IP:127.0.0.1,IP:::1"
for s in "$@"; do sans="$sans,$s"; done

issue() { # name cn eku sans
  local name=$1 cn=$2 eku=$3 san=$4
  key -keyout "$name.key" -out "$name.csr" -subj "/O=plainsight dev/CN=$cn"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$eku"
    [ -n "$san" ] && echo "subjectAltName=$san"
  } > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" -days "$days" -extfile "$name.ext" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}
issue aggregator "plainsight aggregator" serverAuth "$sans"
issue agent "plainsight agent" clientAuth "URI:spiffe://plainsight/agent"
rm -f ca.srl
chmod 644 ./*.crt
echo "dev-certs: wrote $(pwd)/{ca,aggregator,agent}.{crt,key}"
