#!/usr/bin/env bash
# End to end (deploy/tools/e2e.py): real probers against `joincanary sim`, Debian's Prometheus and
# Alertmanager with the shipped rules and routes, faults injected, every page timed against the
# bound the config implies, in each documented topology (one Prometheus, one per region + a global
# one, a single region, the quorum-only switch, an Alertmanager HA pair). Time compressed x10; about 2.5 minutes,
# bounded at 330 s; all on 127.0.0.1; logs in target/deploy/e2e/.
set -euo pipefail
cd "$(dirname "$0")/../.."
# A no-op after `cargo test` (CI runs the checks after it); never a stale binary.
cargo build --quiet --bin joincanary
timeout 330 python3 -u deploy/tools/e2e.py
