#!/usr/bin/env bash
# Prometheus rules (regional and global) and Alertmanager config: syntax, rule unit tests, every
# route tested (the quorum-only switch too), the global Prometheus' example config, and the
# hazards of Prometheus 3.x / Alertmanager 0.27+ that CI's older Debian versions cannot show.
set -euo pipefail
cd "$(dirname "$0")/../.."
need() { command -v "$1" >/dev/null || { echo "$1 missing: bash .ci/run installs it (.ci/apt.d/deploy.txt)" >&2; exit 1; }; }
need promtool
need amtool
promtool check rules deploy/prometheus/joincanary-rules.yaml deploy/prometheus/global/joincanary-global-rules.yaml \
  deploy/prometheus/joincanary-alertmanager-rules.yaml
promtool test rules deploy/prometheus/tests/*.yaml
promtool check config deploy/prometheus/global/prometheus.yml
amtool check-config deploy/alertmanager/alertmanager.yml
python3 deploy/tools/check_routes.py
amtool check-config target/deploy/alertmanager-quorum-only.yml
python3 deploy/tools/check_compat.py
python3 deploy/tools/gen_prometheusrule.py --check-job
