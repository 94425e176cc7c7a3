#!/usr/bin/env bash
# Synapse, the Matrix homeserver (PyPI matrix-synapse with its Redis extra, pinned), into
# tests/servers/synapse/.venv for tests/matrix.rs (Debian's python3 and python3-venv). About a
# minute the first time; nothing when the pinned version is there.
set -euo pipefail
cd "$(dirname "$0")/../../tests/servers/synapse"
version=1.163.2
if [ -x .venv/bin/python ] && .venv/bin/python -c "import importlib.metadata as m, txredisapi; assert m.version('matrix-synapse') == '$version'" 2>/dev/null; then
  exit 0
fi
rm -rf .venv
/usr/bin/python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check "matrix-synapse[redis]==$version"
