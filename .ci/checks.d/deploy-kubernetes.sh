#!/usr/bin/env bash
# Kubernetes: the PrometheusRule is the rules file; every overlay renders, validates (strict schemas,
# Pod Security restricted) and references only ConfigMaps/Secrets defined or documented.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -c "import kubernetes_validate" 2>/dev/null \
  || { echo "kubernetes-validate missing: bash .ci/run installs it (.ci/setup.d/deploy.sh)" >&2; exit 1; }
python3 deploy/tools/gen_prometheusrule.py --check
python3 deploy/tools/check_manifests.py
