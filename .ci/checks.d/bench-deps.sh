#!/usr/bin/env bash
# TLS goes through rustls on aws-lc-rs only: a second crypto backend (ring) doubles the binary's
# crypto code and makes the provider choice ambiguous. Added with the sim's Redis client.
set -euo pipefail
tree=$(cargo tree -e normal,build -i ring 2>/dev/null || true)
if [ -n "$tree" ]; then
  echo "ring is in the dependency tree next to aws-lc-rs:" >&2
  echo "$tree" >&2
  exit 1
fi
echo "no ring in the dependency tree"
