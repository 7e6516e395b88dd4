#!/usr/bin/env bash
# saescope against the reference Python pipeline (bench/reference_pipeline.py: torch + torchvision
# on the same Debian LibTorch) on this CPU, same images and settings, whole process timed (start-up,
# data loading and writing included), peak memory (max RSS) for each. Prints one Markdown table.
# Run it on an idle machine: other load makes both sides slow and the ratio noisy.
#   usage: bash bench/cpu.sh        (after scripts/build.sh)
#   env:   BENCH_IMAGES (64 px images, default 2000), BENCH_IMAGES_224 (default 256),
#          BENCH_THREADS (default: all cores), REF_WORKERS (DataLoader workers, default 0),
#          BENCH_SAE_ROWS (default 202599), BENCH_DIR (default /tmp/saescope-cpu-bench),
#          BENCH_BF16 (1: also --precision bf16 against the reference's bf16 recipe; default: 1 when
#          the CPU has bf16 instructions, avx512_bf16 or amx_bf16)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SAESCOPE_BIN:-$(pwd)/build/app/saescope}
py=/usr/bin/python3
ref=$(pwd)/bench/reference_pipeline.py
n64=${BENCH_IMAGES:-2000}
n224=${BENCH_IMAGES_224:-256}
threads=${BENCH_THREADS:-$(nproc)}
workers=${REF_WORKERS:-0}
rows=${BENCH_SAE_ROWS:-202599}
work=${BENCH_DIR:-/tmp/saescope-cpu-bench}
bf16=${BENCH_BF16:-$(grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo && echo 1 || echo 0)}
[ -x "$bin" ] || { echo "bench/cpu.sh: $bin missing; run scripts/build.sh first" >&2; exit 1; }
rm -rf "$work" && mkdir -p "$work"
# saescope re-runs itself with OPENBLAS_CORETYPE where OpenBLAS picks kernels below what the CPU
# runs (a masked CPU model in a VM gives "Prescott": 8x slower matmuls): give the reference the
# kernels saescope runs (its --version names them), so that the comparison is like for like. An
# OPENBLAS_CORETYPE set in the environment holds for both.
blas=$("$bin" --version | sed -n 's/.*OpenBLAS \([A-Za-z0-9_]*\) kernels.*/\1/p')
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
  ref_core="$OPENBLAS_CORETYPE (OPENBLAS_CORETYPE set in the environment, both sides)"
elif [ -n "$blas" ]; then
  export OPENBLAS_CORETYPE=$blas ref_core="$blas (as saescope picks them, both sides)"
else
  ref_core="default (not OpenBLAS)"
fi

# timed NAME CMD...: runs CMD, records "NAME wall_s max_rss_MiB" in $work/times.
timed() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/t.$name" "$@" > "$work/out.$name" 2>&1 \
    || { echo "bench/cpu.sh: $name failed:" >&2; tail -5 "$work/out.$name" >&2; exit 1; }
  read -r wall rss < "$work/t.$name"
  echo "$name $wall $((rss / 1024))" >> "$work/times"
}
get() { awk -v n="$1" '$1 == n {print $'"$2"'}' "$work/times"; }

for spec in "64:$n64:png:32:128" "224:$n224:jpg:32:128"; do
  IFS=: read -r size count fmt tbatch ebatch <<< "$spec"
  data="$work/data$size"
  "$bin" demo-data --out "$data" --count "$count" --size "$size" --format "$fmt" > /dev/null 2>&1
  folder="$data/img_align_celeba"
  timed "ref-train-$size" $py "$ref" train "$folder" "$size" "$tbatch" "$threads" "$workers"
  timed "our-train-$size" "$bin" train --data "$data" --workspace "$work/ws$size" \
    --image-size "$size" --batch "$tbatch" --threads "$threads" --weights none
  timed "ref-embed-$size" $py "$ref" embed "$folder" "$size" "$ebatch" "$threads" "$workers"
  timed "our-embed-$size" "$bin" embed --workspace "$work/ws$size" --batch "$ebatch" \
    --threads "$threads"
  if [ "$bf16" = 1 ]; then
    timed "ref-train-$size-bf16" $py "$ref" train "$folder" "$size" "$tbatch" "$threads" "$workers" bf16
    timed "our-train-$size-bf16" "$bin" train --data "$data" --workspace "$work/ws$size-bf16" \
      --image-size "$size" --batch "$tbatch" --threads "$threads" --weights none --precision bf16
    timed "ref-embed-$size-bf16" $py "$ref" embed "$folder" "$size" "$ebatch" "$threads" "$workers" bf16
    timed "our-embed-$size-bf16" "$bin" embed --workspace "$work/ws$size-bf16" --batch "$ebatch" \
      --threads "$threads" --precision bf16
  fi
  echo "$size $count" >> "$work/counts"
done

# SAE at CelebA scale: $rows random 512-d vectors (the SAE sees only their directions).
sae="$work/ws-sae"; mkdir -p "$sae"
$py -c "import numpy as np; np.save('$sae/embeddings.npy', np.random.default_rng(0).standard_normal(($rows, 512), dtype=np.float32))"
timed ref-sae $py "$ref" sae "$sae/embeddings.npy" "$threads"
timed our-sae "$bin" sae --workspace "$sae" --epochs 1 --threads "$threads"
epoch_of() {  # the training loop's time, from the step log of the SAE run just finished
  $py -c "
import json
last = [json.loads(l) for l in open('$sae/logs/sae.jsonl')][-1]
print(round(last['elapsed_s'], 2))"
}
our_epoch=$(epoch_of)
ref_json() { $py -c "import json; print(round(json.loads(open('$work/out.$1').read().splitlines()[-1])['$2'], 2))"; }
ref_epoch=$(ref_json ref-sae epoch_seconds)
if [ "$bf16" = 1 ]; then
  timed ref-sae-bf16 $py "$ref" sae "$sae/embeddings.npy" "$threads" bf16
  timed our-sae-bf16 "$bin" sae --workspace "$sae" --epochs 1 --threads "$threads" --precision bf16
  ref_epoch_bf16=$(ref_json ref-sae-bf16 epoch_seconds) our_epoch_bf16=$(epoch_of)
  # the fp32 SAE stays the current one for the index rows below
  "$bin" sae --workspace "$sae" --use seed-f512-l0.1-s0 > /dev/null 2>&1
fi
# The modern variants at 4,096 features (batch 4,096, k 16): one epoch over every row (--holdout
# no, as the reference trains), the training loop's time from the step log.
for v in topk batchtopk; do
  timed "ref-sae-$v" $py "$ref" sae-topk "$sae/embeddings.npy" "$threads" "$v"
  timed "our-sae-$v" "$bin" sae --workspace "$sae" --variant "$v" --features 4096 --batch 4096 \
    --epochs 1 --holdout no --name "epoch-$v" --threads "$threads"
  eval "ref_epoch_$v=\$(ref_json ref-sae-$v epoch_seconds) our_epoch_$v=\$(epoch_of)"
done
# the 512-feature fp32 SAE is the current one again for the index rows below
"$bin" sae --workspace "$sae" --use seed-f512-l0.1-s0 > /dev/null 2>&1
# Top-16 of every feature: the reference (512 features, materialises N x F) and saescope's
# feature index (4096 features, chunked) built by `sae --use`.
timed ref-topk $py "$ref" topk "$sae/embeddings.npy" "$sae/sae.pt" "$threads"
ref_topk=$(ref_json ref-topk topk_seconds)
"$bin" sae --workspace "$sae" --variant topk --features 4096 --steps 3 --batch 4096 \
  --name wide --threads "$threads" > /dev/null 2>&1
# Cold: no cached index, both kinds built. Then the 4096-feature index without the bf16 screening
# of the encoder product (one fp32 GEMM per block), and switching to it from another SAE (the
# dense part is taken over from the previous index).
rm -rf "$sae/index"
timed our-index-512 "$bin" sae --workspace "$sae" --use seed-f512-l0.1-s0 --threads "$threads"
rm -rf "$sae/index"
timed our-index-4096 "$bin" sae --workspace "$sae" --use wide --threads "$threads"
rm -rf "$sae/index"
timed our-index-4096-fp32 env SAESCOPE_INDEX_SCREEN=0 "$bin" sae --workspace "$sae" --use wide \
  --threads "$threads"
"$bin" sae --workspace "$sae" --use seed-f512-l0.1-s0 --threads "$threads" > /dev/null 2>&1
timed our-index-4096-switch "$bin" sae --workspace "$sae" --use wide --threads "$threads"

echo
echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores of $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
  "$threads threads, torch $($py -c 'import torch; print(torch.__version__)'), reference DataLoader workers: $workers," \
  "OpenBLAS kernels: $ref_core"
echo
echo "| stage | images | reference s | reference images/s | reference peak MiB | saescope s | saescope images/s | saescope peak MiB | speed-up |"
echo "|---|---|---|---|---|---|---|---|---|"
while read -r size count; do
  for st in train embed; do
    r=$(get "ref-$st-$size" 2); o=$(get "our-$st-$size" 2)
    awk -v st="$st" -v size="$size" -v n="$count" -v r="$r" -v o="$o" -v rm="$(get "ref-$st-$size" 3)" \
        -v om="$(get "our-$st-$size" 3)" 'BEGIN {
      printf "| %s %s px | %d | %.1f | %.1f | %d | %.1f | %.1f | %d | %.2fx |\n", st, size, n, r, n / r, rm, o, n / o, om, r / o }'
    [ "$bf16" = 1 ] || continue
    rb=$(get "ref-$st-$size-bf16" 2); ob=$(get "our-$st-$size-bf16" 2)
    awk -v st="$st" -v size="$size" -v n="$count" -v r="$rb" -v o="$ob" -v r32="$r" \
        -v rm="$(get "ref-$st-$size-bf16" 3)" -v om="$(get "our-$st-$size-bf16" 3)" 'BEGIN {
      printf "| %s %s px, bf16 (both) | %d | %.1f | %.1f | %d | %.1f | %.1f | %d | %.2fx (%.2fx the fp32 reference) |\n",
        st, size, n, r, n / r, rm, o, n / o, om, r / o, r32 / o }'
  done
done < "$work/counts"
echo
echo "| SAE, reference loss, $rows x 512, 512 features, batch 512 | reference | saescope |"
echo "|---|---|---|"
echo "| one epoch (training loop) | $ref_epoch s | $our_epoch s |"
[ "$bf16" = 1 ] && echo "| one epoch, products in bf16 (both) | $ref_epoch_bf16 s | $our_epoch_bf16 s |"
echo "| whole command (load, train, evaluate, write, index) | $(get ref-sae 2) s | $(get our-sae 2) s |"
echo "| peak memory | $(get ref-sae 3) MiB | $(get our-sae 3) MiB |"
echo
echo "| SAE, 4,096 features, batch 4,096, k 16, one epoch over $rows x 512 | reference loop | saescope loop | saescope whole command (with its 4,096-feature index) | peak MiB (ref / saescope) |"
echo "|---|---|---|---|---|"
for v in topk batchtopk; do
  eval "r=\$ref_epoch_$v o=\$our_epoch_$v"
  echo "| $v | $r s | $o s | $(get "our-sae-$v" 2) s | $(get "ref-sae-$v" 3) / $(get "our-sae-$v" 3) |"
done
echo
echo "| top-16 of every feature over $rows rows | seconds | peak MiB |"
echo "|---|---|---|"
echo "| reference, 512 features (torch.topk on N x F) | $ref_topk (topk alone) / $(get ref-topk 2) whole | $(get ref-topk 3) |"
echo "| saescope index, 512 features (top-64, both kinds, both rules, stats; cold) | $(get our-index-512 2) whole command | $(get our-index-512 3) |"
echo "| saescope index, 4096 features (cold) | $(get our-index-4096 2) whole command | $(get our-index-4096 3) |"
echo "| the same, product in fp32 only (SAESCOPE_INDEX_SCREEN=0) | $(get our-index-4096-fp32 2) whole command | $(get our-index-4096-fp32 3) |"
echo "| the same, switching from another SAE (dense part kept) | $(get our-index-4096-switch 2) whole command | $(get our-index-4096-switch 3) |"
