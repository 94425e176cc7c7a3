#!/usr/bin/env bash
# aiortc, a second WebRTC implementation (PyPI, its own ICE, DTLS and SCTP; wheels for av,
# pylibsrtp and cryptography, so nothing is compiled), into tests/servers/aiortc/.venv for
# tests/webrtc_aiortc.rs, every package pinned in tests/servers/aiortc/requirements.txt (Debian's
# python3 and python3-venv, .ci/apt.d/matrix.txt). About 15 s the first time; nothing when the
# pinned set is there.
set -euo pipefail
cd "$(dirname "$0")/../../tests/servers/aiortc"
# The pins' hash: the venv is remade when requirements.txt changes.
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ "$(cat .venv/requirements.sha256 2>/dev/null)" = "$want" ] \
  && .venv/bin/python -c "import aiortc, aiohttp" 2>/dev/null; then
  exit 0
fi
rm -rf .venv
/usr/bin/python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: -r requirements.txt
echo "$want" >.venv/requirements.sha256
