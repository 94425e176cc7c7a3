#!/usr/bin/env bash
# A platform-wide incident must not stall the prober (issue 9): 1,000 probes every 5 s against
# the reference server, signalling dropped for all of them at once, then mended. Prints schedule
# lag, fault -> failure recorded (within one run?), pages, mend -> pass and resolve, SIGTERM time.
#   bash bench/incident.sh [--probes 1000] [--warmup 20] [--fault 30] [--mended 30]
# Installs what it needs; loopback only; stops everything it starts.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
exec python3 bench/incident.py "$@"
