#!/usr/bin/env bash
# The production build without the reference server (`--no-default-features`, see the README's
# Commands and BENCHMARKS.md) still compiles and passes clippy: `sim` is a default feature, so
# nothing else builds it that way.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo clippy --quiet --no-default-features -- -D warnings
echo "builds without the sim feature"
