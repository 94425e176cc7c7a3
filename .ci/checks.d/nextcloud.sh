#!/usr/bin/env bash
# tests/nextcloud.rs skips where Nextcloud Talk's signalling server or NATS is not installed (a
# developer's machine); here, after `bash .ci/run` installed .ci/apt.d/nextcloud.txt, both must
# be present, so those tests really ran in CI and cannot have skipped.
set -euo pipefail
for program in nextcloud-spreed-signaling-server nats-server; do
  command -v "$program" >/dev/null || {
    echo "$program is not installed: tests/nextcloud.rs skipped (see .ci/apt.d/nextcloud.txt)" >&2
    exit 1
  }
done
echo "nextcloud-spreed-signaling-server and nats-server installed: tests/nextcloud.rs ran"
