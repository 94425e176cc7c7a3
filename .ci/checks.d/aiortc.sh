#!/usr/bin/env bash
# tests/webrtc_aiortc.rs skips where aiortc is not installed (a developer's machine); here, after
# `bash .ci/run` ran .ci/setup.d/aiortc.sh, it must be, so those tests really ran in CI.
set -euo pipefail
python=tests/servers/aiortc/.venv/bin/python
"$python" -c "import aiortc, aiohttp" 2>/dev/null || {
  echo "aiortc is not installed in tests/servers/aiortc/.venv: tests/webrtc_aiortc.rs skipped (see .ci/setup.d/aiortc.sh)" >&2
  exit 1
}
echo "aiortc $("$python" -c 'import importlib.metadata as m; print(m.version("aiortc"))') installed: tests/webrtc_aiortc.rs ran"
