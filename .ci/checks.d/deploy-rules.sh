#!/usr/bin/env bash
# Prometheus rules and Alertmanager config: syntax, rule unit tests, every route tested.
set -euo pipefail
cd "$(dirname "$0")/../.."
need() { command -v "$1" >/dev/null || { echo "$1 missing: bash .ci/run installs it (.ci/apt.d/deploy.txt)" >&2; exit 1; }; }
need promtool
need amtool
promtool check rules deploy/prometheus/joincanary-rules.yaml
promtool test rules deploy/prometheus/tests/*.yaml
amtool check-config deploy/alertmanager/alertmanager.yml
python3 deploy/tools/check_routes.py
