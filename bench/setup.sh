#!/usr/bin/env bash
# Sourced by the bench scripts: installs what they need (Debian packages, once) and builds the
# release binary (unless the run names its builds). Everything the benches start listens on
# 127.0.0.1 and is stopped at exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
need=()
for pair in redis-server:redis-server redis-cli:redis-tools \
            prometheus-blackbox-exporter:prometheus-blackbox-exporter python3:python3 curl:curl \
            strace:strace valgrind:valgrind; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}" >&2
  apt-get update -qq
  # policy-rc.d-less machines would start the packaged services; the benches start their own.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# A run given its builds (JOINCANARY_BIN, or cost.sh's --compare) measures those: building this
# checkout would only wait on a running cargo (the lock) and load the machine under the run.
if [ -z "${JOINCANARY_BIN:-}" ] && [[ " $* " != *" --compare"[=\ ]* ]]; then
  cargo build --release --quiet
fi
