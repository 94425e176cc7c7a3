#!/usr/bin/env bash
# The incident reproduced on a real Redis: time from fault to page and from recovery to resolve.
#   bash bench/time-to-page.sh                       # compressed x10, 4 offsets, every fault
#   bash bench/time-to-page.sh --ratio 1 --faults redis_oom --offsets 2   # real every-minute run
# Prints figures; installs what it needs; loopback only; stops everything it starts.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
exec python3 bench/time_to_page.py "$@"
