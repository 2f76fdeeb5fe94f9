#!/usr/bin/env bash
# Compiles every bpf/*.bpf.c to bpf/build/*.bpf.o (CO-RE, BTF from the running kernel
# when a vmlinux.h is needed). Called by `npm run build`.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p build
shopt -s nullglob
srcs=(*.bpf.c)
[ ${#srcs[@]} -gt 0 ] || exit 0
command -v clang >/dev/null || { echo "plainsight: clang not found; run scripts/setup.sh (apt-get install clang libbpf-dev)" >&2; exit 1; }
arch=$(uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')
for src in "${srcs[@]}"; do
  obj="build/${src%.c}.o"
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find include -newer "$obj" -print -quit 2>/dev/null)" ]; then
    # -mcpu=v3: 32-bit atomics on clang 14 (EBPF-NOTES pitfall 7).
    clang -O2 -g -target bpf -mcpu=v3 -D__TARGET_ARCH_"$arch" -I include -I /usr/include/"$(uname -m)"-linux-gnu \
      -Wall -Werror -c "$src" -o "$obj"
  fi
done
