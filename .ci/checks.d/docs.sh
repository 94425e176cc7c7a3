#!/usr/bin/env bash
# README, BENCHMARKS.md and docs/*.md as a newcomer follows them: every relative link and anchor
# resolves, every repository path named exists, every `joincanary <command> --flag` is one the
# binary's --help lists, every script and `cargo test NAME` exists (tools/check_docs.py; a second).
set -euo pipefail
cd "$(dirname "$0")/../.."
# A no-op after `cargo test` (CI runs the checks after it); never a stale binary.
cargo build --quiet --bin joincanary
python3 tools/check_docs.py --self-test
python3 tools/check_docs.py
