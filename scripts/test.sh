#!/usr/bin/env bash
# One command: install dependencies, build, run every test (unit, CLI end-to-end, Python parity, GUI).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
(cd build && ctest --output-on-failure --label-exclude gpu --timeout 1200 -j"${SAESCOPE_JOBS:-$(nproc)}")
# Fuzzing (20 s per target) and the ASan+UBSan and TSan builds and runs; SAESCOPE_QUICK=1 skips them.
if [ "${SAESCOPE_QUICK:-0}" != 1 ]; then
  FUZZ_SECONDS=${FUZZ_SECONDS:-20} bash scripts/fuzz.sh
  bash scripts/sanitize.sh
fi
