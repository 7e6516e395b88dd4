#!/usr/bin/env bash
# The feature index rows of bench/cpu.sh again, in interleaved rounds (this VM's speed drifts by
# tens of per cent within minutes: only figures from the same rounds compare), on the workspace
# bench/cpu.sh left behind (202,599 x 512 embeddings; SAEs seed-f512-l0.1-s0 and "wide", a 4,096-
# feature topk). Per round: the reference's torch.topk over N x F (512 features), and saescope's
# index cold (512 and 4,096 features), without the bf16 screening, and when switching SAEs.
#   usage: bash bench/index.sh [ROUNDS]      (after bench/cpu.sh; default 3 rounds)
#   env:   BENCH_DIR (default /tmp/saescope-cpu-bench), BENCH_THREADS (default: all cores),
#          OLD_BIN (another saescope binary to time beside this one, e.g. an older build)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SAESCOPE_BIN:-$(pwd)/build/app/saescope}
ref=$(pwd)/bench/reference_pipeline.py
rounds=${1:-3}
work=${BENCH_DIR:-/tmp/saescope-cpu-bench}
threads=${BENCH_THREADS:-$(nproc)}
sae=$work/ws-sae
[ -x "$bin" ] || { echo "bench/index.sh: $bin missing; run scripts/build.sh first" >&2; exit 1; }
[ -f "$sae/saes/wide.pt" ] ||
  { echo "bench/index.sh: $sae/saes/wide.pt missing; run bash bench/cpu.sh first" >&2; exit 1; }
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo; then
  export OPENBLAS_CORETYPE=SkylakeX  # as bench/cpu.sh gives both sides (see there)
fi
out=$(mktemp)
trap 'rm -f "$out" "$out.t"' EXIT
# timed NAME CMD...: prints "NAME wall_s max_rss_MiB"
timed() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$out.t" "$@" > "$out" 2>&1 ||
    { echo "bench/index.sh: $name failed:" >&2; tail -3 "$out" >&2; exit 1; }
  read -r wall rss < "$out.t"
  echo "$name $wall $((rss / 1024))"
}
use() { "$1" sae --workspace "$sae" --use "$2" --threads "$threads" > /dev/null 2>&1; }
echo "round name wall_s peak_MiB"
for round in $(seq "$rounds"); do
  use "$bin" seed-f512-l0.1-s0
  timed ref-topk /usr/bin/python3 "$ref" topk "$sae/embeddings.npy" "$sae/sae.pt" "$threads" |
    sed "s/^/$round /"
  echo "$round ref-topk-alone $(/usr/bin/python3 -c "import json; print(round(json.loads(open('$out').read().splitlines()[-1])['topk_seconds'], 2))") -"
  for b in "$bin" ${OLD_BIN:+"$OLD_BIN"}; do
    tag=$([ "$b" = "$bin" ] && echo our || echo old)
    rm -rf "$sae/index"
    timed "$tag-index-512" "$b" sae --workspace "$sae" --use seed-f512-l0.1-s0 --threads "$threads" |
      sed "s/^/$round /"
    rm -rf "$sae/index"
    timed "$tag-index-4096" "$b" sae --workspace "$sae" --use wide --threads "$threads" |
      sed "s/^/$round /"
  done
  rm -rf "$sae/index"
  timed our-index-4096-fp32 env SAESCOPE_INDEX_SCREEN=0 "$bin" sae --workspace "$sae" --use wide \
    --threads "$threads" | sed "s/^/$round /"
  use "$bin" seed-f512-l0.1-s0
  timed our-index-4096-switch "$bin" sae --workspace "$sae" --use wide --threads "$threads" |
    sed "s/^/$round /"
done
