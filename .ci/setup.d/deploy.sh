#!/usr/bin/env bash
# deploy/: kubernetes-validate (PyPI: Kubernetes' JSON schemas, strict) for the manifest check.
set -euo pipefail
if ! python3 -c "import kubernetes_validate" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check "kubernetes-validate==1.37.0"
fi
