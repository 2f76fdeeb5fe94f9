#!/usr/bin/env bash
# Makes a small real capture to try `plainsight classify` on: inside a throwaway network
# namespace, real peers talk plain HTTP, Redis, TLS 1.3 and mutual TLS 1.2 while tcpdump
# records. Usage: scripts/sample-capture.sh [OUT.pcap]   (root; default sample.pcap)
set -euo pipefail
out=$(realpath -m "${1:-sample.pcap}")
ns="ps-sample-$$"
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
[ "$(id -u)" -eq 0 ] || { echo "plainsight: sample-capture needs root (network namespaces, tcpdump); rerun with sudo" >&2; exit 1; }

in_ns() { ip netns exec "$ns" "$@"; }
# Background peers are started with exec so $! is the process itself (signals reach it).
bg() { ip netns exec "$ns" "$@" & pids+=($!); }
# Readiness by listening socket, not by connecting: a probe would be a flow in the capture.
wait_port() { for _ in $(seq 100); do [ -n "$(in_ns ss -Hltn "sport = :$1")" ] && return 0; sleep 0.05; done; echo "plainsight: sample peer on port $1 never started" >&2; return 1; }

ip netns add "$ns"
in_ns ip link set lo up

# Throwaway CA, server and client certificates.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=sample-ca \
  -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
for who in server client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$who.sample.local" \
    -keyout "$tmp/$who.key" -out "$tmp/$who.csr" 2>/dev/null
  openssl x509 -req -in "$tmp/$who.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -CAcreateserial -days 1 \
    -extfile <(printf 'subjectAltName=DNS:%s.sample.local' "$who") -out "$tmp/$who.crt" 2>/dev/null
done

bg tcpdump -i lo -s 0 -U --immediate-mode -w "$out" 2>"$tmp/tcpdump.log"
for _ in $(seq 100); do grep -q "listening on" "$tmp/tcpdump.log" && break; sleep 0.05; done

echo "sample: plain HTTP, Redis, TLS 1.3, mutual TLS 1.2 ..." >&2
bg node -e 'require("http").createServer((q,s)=>s.end("hello from plain http\n")).listen(8080,"127.0.0.1")'
bg redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no >/dev/null
bg openssl s_server -quiet -accept 8443 -cert "$tmp/server.crt" -key "$tmp/server.key" -tls1_3 -www >/dev/null 2>&1
bg openssl s_server -quiet -accept 9443 -cert "$tmp/server.crt" -key "$tmp/server.key" -tls1_2 \
  -Verify 1 -CAfile "$tmp/ca.crt" -www >/dev/null 2>&1
for p in 8080 6379 8443 9443; do wait_port "$p"; done

in_ns curl -s http://127.0.0.1:8080/ >/dev/null
in_ns redis-cli -p 6379 ping >/dev/null
printf 'GET / HTTP/1.0\r\n\r\n' | in_ns timeout 5 openssl s_client -quiet -connect 127.0.0.1:8443 \
  -servername api.sample.local -alpn h2,http/1.1 >/dev/null 2>&1 || true
printf 'GET / HTTP/1.0\r\n\r\n' | in_ns timeout 5 openssl s_client -quiet -connect 127.0.0.1:9443 \
  -servername payments.sample.local -cert "$tmp/client.crt" -key "$tmp/client.key" >/dev/null 2>&1 || true

sleep 0.3
kill -INT "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
echo "sample: wrote $out" >&2
