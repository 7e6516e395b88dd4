#!/usr/bin/env bash
# One command: install dependencies, build, make the built-in demo data set, run the whole pipeline
# on it, and open the desktop app on the result (without a display: print a feature's top images).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
out=${SAESCOPE_DEMO_DIR:-demo-run}
bin=./build/app/saescope
[ -d "$out/data" ] || $bin demo-data --out "$out/data" --count "${SAESCOPE_DEMO_COUNT:-2000}" --size 64
$bin run --data "$out/data" --workspace "$out/ws" --image-size 64 --batch 64 --sae-epochs 30 --sae-batch 128 --sae-lr 1e-3
if [ -n "${DISPLAY:-}" ] && [ -x "$bin" ] && $bin gui --help >/dev/null 2>&1; then
  exec $bin gui --workspace "$out/ws" --view browser
else
  $bin topk --workspace "$out/ws" --kind sparse --feature 0
  echo "no display: open the app later with  $bin gui --workspace $out/ws"
fi
