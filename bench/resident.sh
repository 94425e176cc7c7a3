#!/usr/bin/env bash
# The resident participant on a real Redis: time from Redis OOM / CLIENT PAUSE to the page over
# several fault offsets (goal < 30 s), and a soak with single dropped messages (goal 0 pages).
#   bash bench/resident.sh                              # shipped timings; soak compressed x10
#   bash bench/resident.sh --soak 0 --offsets 2         # time to page only
# Prints figures; installs what it needs; loopback only; stops everything it starts.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
exec python3 bench/resident.py "$@"
