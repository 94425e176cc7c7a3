#!/usr/bin/env bash
# docs/pages.md's Alertmanager receiver templates, as written there, put a real failing prober's
# summary first in the PagerDuty, Opsgenie and Slack notifications Debian's Alertmanager sends
# (and its defaults do not); about 10 s, bounded at 60 s; all on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
# A no-op after `cargo test` (CI runs the checks after it); never a stale binary.
cargo build --quiet --bin joincanary
timeout 60 python3 -u deploy/tools/check_page_templates.py
