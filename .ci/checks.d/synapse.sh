#!/usr/bin/env bash
# tests/matrix.rs skips where Synapse is not installed (a developer's machine); here, after
# `bash .ci/run` ran .ci/setup.d/synapse.sh, it must be, so those tests really ran in CI.
set -euo pipefail
python=tests/servers/synapse/.venv/bin/python
"$python" -c "import synapse, txredisapi" 2>/dev/null || {
  echo "Synapse is not installed in tests/servers/synapse/.venv: tests/matrix.rs skipped (see .ci/setup.d/synapse.sh)" >&2
  exit 1
}
echo "Synapse $("$python" -c 'import importlib.metadata as m; print(m.version("matrix-synapse"))') installed: tests/matrix.rs ran"
