#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine (run as root): the system packages the
# build, the tests and the demo use, the npm dependencies, and the build. Fast when
# everything is already there, so `npm test` and `npm run demo` call it first.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  ca-certificates curl procps iproute2 ethtool python3   # netns "pods", veths, offloads; python3 for tun test peers
  clang llvm libbpf-dev bpftool                   # BPF objects (npm run build)
  tcpdump tshark openssl gnutls-bin               # real captures, TLS peers (3 stacks), certificates
  nginx-light redis-server postgresql dnsutils    # real servers the tests talk to
  prometheus                                      # real Prometheus scrapes the aggregator; promtool checks rules
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "plainsight: setup needs root to install: ${missing[*]}; rerun as root (sudo)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Their install scripts would start daemons; the tests start their own in namespaces.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/plainsight-apt.log 2>&1 ||
    { tail -30 /tmp/plainsight-apt.log >&2; echo "plainsight: apt-get install failed; see /tmp/plainsight-apt.log" >&2; exit 1; }
fi

# koffi's native code is an optional dependency: never --omit=optional.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

npm run --silent build
