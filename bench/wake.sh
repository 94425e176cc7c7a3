#!/usr/bin/env bash
# What one sleep and wake-up of a thread costs on this machine with no prober in it (bench/wake.c):
# the floor under each event a spread-out join flow waits for. Per run: CPU per wake woken by
# another thread's eventfd write and by epoll_wait's own timeout, after touching 0, 64 and
# 1,024 KiB (cold caches after the sleep), with the load average; ROUNDS runs (default 3).
#   bash bench/wake.sh [WAKES=200] [GAP_MS=20]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cc >/dev/null || { echo "needs a C compiler (gcc)" >&2; exit 1; }
dir=$(mktemp -d /tmp/jc-wake.XXXXXX)
trap 'rm -rf "$dir"' EXIT
cc -O2 -pthread -o "$dir/wake" bench/wake.c
for round in $(seq "${ROUNDS:-3}"); do
  for kib in 0 64 1024; do
    echo "round $round, load $(cut -d' ' -f1 /proc/loadavg): $("$dir/wake" "${1:-200}" "${2:-20}" "$kib")"
  done
done
