#!/usr/bin/env bash
# The node test servers (Socket.IO + Redis adapter, protoo, LiveKit's token verifier): exact
# versions from the lockfile.
set -euo pipefail
cd "$(dirname "$0")/../../tests/servers"
command -v npm >/dev/null || { echo "npm not found: the test servers need Node.js >= 18 with npm" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error
