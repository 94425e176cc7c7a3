#!/usr/bin/env bash
# The turn step's cost (wall per phase, CPU per step) side by side with coturn's turnutils_uclient.
#   bash bench/turn.sh [--runs 15] [--steps 100]
# Prints figures; installs coturn if missing; loopback only; stops everything it starts.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
command -v turnserver >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends coturn >/dev/null
}
exec python3 bench/turn.py "$@"
