#!/usr/bin/env bash
# False pages: >= 1,000 runs with transient blips in ~5 % of runs; counts pages (goal 0).
#   bash bench/false-pages.sh [--runs 1000] [--probes 6] [--interval 2]
# Prints figures; installs what it needs; loopback only; stops everything it starts.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
exec python3 bench/false_pages.py "$@"
