#!/usr/bin/env bash
# `joincanary run` as a service: RSS, CPU and schedule lag (per run, median/p99/max) with 1, 100
# and 1,000 copies of the shipped probe every 5 s against the reference server, scraped every
# second; each configuration in ROUNDS fresh processes, medians printed.
#   bash bench/service.sh [--probes 1,100,1000] [--seconds 60] [--rounds 3]
# Installs what it needs; loopback only; stops everything it starts.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
exec python3 bench/service.py "$@"
