#!/usr/bin/env bash
# The Grafana dashboard: every panel query and variable against a live Prometheus (Debian's, on
# 127.0.0.1) scraping three `joincanary run` probing `joincanary sim` (one region never succeeds);
# about 25 s, bounded at 150 s.
set -euo pipefail
cd "$(dirname "$0")/../.."
# A no-op after `cargo test` (CI runs the checks after it); never a stale binary.
cargo build --quiet --bin joincanary
timeout 150 python3 -u deploy/tools/check_dashboard.py
