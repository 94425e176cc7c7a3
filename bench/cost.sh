#!/usr/bin/env bash
# Cost and accuracy side by side with Debian's prometheus-blackbox-exporter.
#   bash bench/cost.sh [--sections binary,http,flow,timing,metrics,ceiling] [--rounds 3]
# Prints figures; installs what it needs; loopback only; stops everything it starts.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
exec python3 bench/cost.py "$@"
