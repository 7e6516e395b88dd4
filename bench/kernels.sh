#!/usr/bin/env bash
# The engine's own CPU kernels against LibTorch's (SAESCOPE_TORCH_KERNELS=1), and with oneDNN's
# Winograd convolutions against without (SAESCOPE_WINOGRAD=0), in alternating rounds (this VM's speed drifts by tens of per cent within minutes; compare neighbours): the
# stem's pooling and the batch norms of 224 px alone, then whole fine-tuning steps at 224 and
# 64 px (bench/resnet_step.cpp). Run on an idle machine after scripts/build.sh.
#   usage: bash bench/kernels.sh [ROUNDS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/bench/saescope_bench_resnet_step
[ -x "$bin" ] || { echo "bench/kernels.sh: $bin missing; run scripts/build.sh first" >&2; exit 1; }
# As bench/cpu.sh: OpenBLAS's kernels for this CPU where it mistakes it for a "Prescott".
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo; then
  export OPENBLAS_CORETYPE=SkylakeX
fi
for round in $(seq "${1:-2}"); do
  echo "-- round $round"
  for mode in torch direct winograd; do
    unset SAESCOPE_TORCH_KERNELS SAESCOPE_WINOGRAD
    case $mode in
      torch) export SAESCOPE_TORCH_KERNELS=1 ;;
      direct) export SAESCOPE_WINOGRAD=0 ;;
    esac
    [ $mode = winograd ] || "$bin" bn  # (the same kernels with and without Winograd)
    "$bin" 224 32 5
    "$bin" 64 32 8
  done
done
