#!/usr/bin/env bash
# Cost and accuracy side by side with Debian's prometheus-blackbox-exporter, in one run.
#   bash bench/cost.sh --quick      # ~2 minutes, before and after a change: CPU per HTTP probe and
#                                   # per join flow at 20/s beside blackbox, syscalls per flow
#   bash bench/cost.sh [--sections binary,http,flow,syscalls,resident,timing,metrics,ceiling] [--rounds 3]
# Prints figures (each with its load average); installs what it needs (strace too); loopback
# only; stops everything it starts.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
exec python3 bench/cost.py "$@"
