#!/usr/bin/env bash
# deploy/compose.yaml: Compose resolves it without an engine (docker-compose config), the stack is
# whole (three regions, sim, Prometheus and Alertmanager with the shipped files), and the
# Prometheus config it mounts is valid.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v docker-compose >/dev/null \
  || { echo "docker-compose missing: bash .ci/run installs it (.ci/apt.d/deploy.txt)" >&2; exit 1; }
docker-compose -f deploy/compose.yaml config | python3 deploy/tools/check_compose.py
promtool check config deploy/prometheus/prometheus.yml
