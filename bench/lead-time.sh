#!/usr/bin/env bash
# The warning's lead time: Redis memory filled at a steady rate until OOM; the time between the
# 80 % memory warning page (redis-health, degraded) and the critical join page.
#   bash bench/lead-time.sh                          # compressed x10, fills of 10 and 3 min, 5 runs each
#   bash bench/lead-time.sh --ratio 1 --runs 1 --fill-minutes 10   # real every-minute schedule
# Prints figures; installs what it needs; loopback only; stops everything it starts.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
exec python3 bench/lead_time.py "$@"
