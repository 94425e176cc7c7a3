#!/usr/bin/env bash
# The media path's cost: the shipped Janus media probes (echotest, videoroom) against a real Janus, wall time
# per phase and CPU-ms per run of the `webrtc` steps (the same flow without them subtracted).
#   bash bench/media.sh              # 15 runs of each probe
#   bash bench/media.sh --runs 31
# Janus runs in a network namespace of its own (it never gathers ICE candidates on loopback) and
# the prober joins it: nothing leaves the machine. Stops everything it starts.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
command -v janus >/dev/null || { echo "janus not installed: run 'bash .ci/run'" >&2; exit 127; }
exec python3 bench/media.py "$@"
