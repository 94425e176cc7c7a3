#!/usr/bin/env bash
# aiortc, a second WebRTC implementation, as the far end of the `webrtc` step's tests
# (server.py; installed by .ci/setup.d/aiortc.sh into tests/servers/aiortc/.venv).
#   bash tests/servers/aiortc/start.sh [--port 0]     # ready aiortc http://127.0.0.1:PORT
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=$here/.venv/bin/python
[ -x "$python" ] || {
  echo "aiortc not installed in $here/.venv: run 'bash .ci/setup.d/aiortc.sh' (or 'bash .ci/run')" >&2
  exit 127
}
# exec: the server is this process, so it sees the test as its parent and leaves with it.
exec "$python" "$here/server.py" "$@"
