#!/usr/bin/env bash
# deploy/ against the newest Prometheus (3.x) and Alertmanager (0.27 or later) Debian has
# (unstable; fetched by .ci/setup.d/deploy-next.sh into target/deploy/next/, not installed): the
# same checks the other deploy-*.sh run with Debian 12's 2.42 / 0.25 — rules, rule unit tests,
# configs, every route case, the page templates rendered, the live dashboard check and the
# end-to-end test — so what the migration notes say (docs/deploy.md, "Versions") is also run, not
# only read. Logs in target/deploy/next/out/. About 3.5 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$PWD/target/deploy/next/root/usr/bin
[ -x "$bin/prometheus" ] || { echo "$bin/prometheus missing: bash .ci/setup.d/deploy-next.sh fetches it" >&2; exit 1; }
export PATH="$bin:$PATH"
export JC_DEPLOY_OUT=$PWD/target/deploy/next/out
mkdir -p "$JC_DEPLOY_OUT"
prometheus --version | head -1
prometheus-alertmanager --version | head -1
case "$(prometheus --version | head -1)" in "prometheus, version 3."*) ;; *) echo "not Prometheus 3.x" >&2; exit 1;; esac
bash .ci/checks.d/deploy-rules.sh
cargo build --quiet --bin joincanary
timeout 120 python3 -u deploy/tools/check_page_templates.py
timeout 180 python3 -u deploy/tools/check_dashboard.py
timeout 330 python3 -u deploy/tools/e2e.py
