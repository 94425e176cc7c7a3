#!/usr/bin/env bash
# Import circles between source files and files over 800 lines (README, Layout): the reader's own
# self test, then the graph of src/. Fails on a circle (none is left) and on a Rust file over 800
# lines, under src/ (test-only files too) or tests/, not listed with its reason in
# tools/imports.py's KEPT_WHOLE (none is); IMPORTS_REPORT=1 only reports.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 tools/imports.py --self-test
if [ "${IMPORTS_REPORT:-0}" = 1 ]; then
  python3 tools/imports.py --report
else
  python3 tools/imports.py --max-lines 800
fi
