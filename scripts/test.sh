#!/usr/bin/env bash
# One command: install dependencies, build, run every test (unit, CLI end-to-end, Python parity, GUI).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
cd build
ctest --output-on-failure --label-exclude gpu --timeout 1200 -j"${SAESCOPE_JOBS:-$(nproc)}"
