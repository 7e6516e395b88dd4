#!/usr/bin/env bash
# Builds the engine and CLI against a CUDA LibTorch (the one inside the Python torch install, or
# -DCMAKE_PREFIX_PATH of your own), GUI off; runs the CUDA tests (ctest label gpu) and the
# throughput benchmarks; prints one table. On a bare machine, first run bench/gpu-deps.sh on a
# Debian machine with the dependencies and bring .device/deps along.
#   usage: bash bench/gpu.sh            env: BENCH_IMAGES (default 20000), PYTHON (python3)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
torch_prefix=$($py -c 'import torch; print(torch.utils.cmake_prefix_path)')
deps=$(pwd)/.device/deps
n=${BENCH_IMAGES:-20000}
work=${BENCH_DIR:-/tmp/saescope-gpu-bench}
gen=""; command -v ninja >/dev/null && gen="-G Ninja"
t0=$(date +%s)
cmake -S . -B build-gpu $gen -DCMAKE_BUILD_TYPE=Release -DSAESCOPE_GUI=OFF \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$deps" -DSAESCOPE_PYTHON="$(command -v $py)" > build-gpu.log 2>&1 \
  || { tail -40 build-gpu.log; exit 1; }
cmake --build build-gpu -j"$(nproc)" --target saescope test_gpu saescope_bench_loader >> build-gpu.log 2>&1 \
  || { grep -E "error|Error" build-gpu.log | head -40; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
LD_LIBRARY_PATH="$deps/lib:${LD_LIBRARY_PATH:-}"; export LD_LIBRARY_PATH
(cd build-gpu && ctest -L gpu --output-on-failure) || echo "GPU TESTS FAILED"
bin=build-gpu/app/saescope
rm -rf "$work" && mkdir -p "$work"
t0=$(date +%s)
$bin demo-data --out "$work/data" --count "$n" --size 224 --format jpg 2>&1 | tail -1
echo "demo-data: $n images at 224 px in $(( $(date +%s) - t0 )) s"
echo; echo "data loader alone (decode + resize to 224, float CHW), $n JPEGs:"
build-gpu/bench/saescope_bench_loader "$work/data" 224 256 "1,4,8,$(nproc)"
# The manifest's steady rate (the second half of the images) leaves out the fixed start-up (CUDA,
# cuDNN's autotuning of each batch shape, the model), which a CelebA estimate counts once:
# start-up + 202,599 / steady rate.
rows=()
for prec in fp32 tf32 bf16 fp16; do
  ws="$work/ws-$prec"
  $bin train --data "$work/data" --workspace "$ws" --image-size 224 --batch 256 --precision "$prec" --device cuda 2>&1 | tail -1
  $bin embed --workspace "$ws" --batch 512 --precision "$prec" --device cuda 2>&1 | tail -1
  rows+=("$($py - "$ws" "$prec" <<'PY'
import json, sys
st = json.load(open(sys.argv[1] + "/manifest.json"))["stages"]
def fit(s):  # whole-stage rate, steady rate, start-up seconds, CelebA minutes
    steady = s["steady_images_per_s"]
    startup = s["seconds"] - s["images"] / steady
    return s["images"] / s["seconds"], steady, startup, (startup + 202599 / steady) / 60
tr, em = fit(st["train"]), fit(st["embed"])
print(f"| {sys.argv[2]} | {st['train']['device']} | {tr[0]:.0f} / {tr[1]:.0f} / {tr[2]:.1f} s | "
      f"{em[0]:.0f} / {em[1]:.0f} / {em[2]:.1f} s | {st['train']['input_wait_seconds']:.1f} / "
      f"{st['embed']['input_wait_seconds']:.1f} s | {tr[3]:.1f} min | {em[3]:.1f} min |")
PY
)")
done
# SAE at CelebA scale: 202,599 random 512-d vectors, reference loss, 512 features, batch 512.
ws="$work/ws-sae"; mkdir -p "$ws"
$py -c "import numpy as np; np.save('$ws/embeddings.npy', np.random.default_rng(0).standard_normal((202599, 512), dtype=np.float32))"
sae_epoch() {  # PRECISION: seconds per epoch of a 3-epoch run (the whole stage / 3)
  $bin sae --workspace "$ws" --epochs 3 --device cuda --precision "$1" 2>&1 | tail -1 >&2
  $py -c "import json; s=json.load(open('$ws/manifest.json'))['stages']['sae']; print(f\"{s['seconds']/3:.2f}\")"
}
sae=$(sae_epoch fp32 | tail -1) sae_tf32=$(sae_epoch tf32 | tail -1) sae_bf16=$(sae_epoch bf16 | tail -1)
echo
echo "Rates at 224 px, data loading included: whole stage over $n images / steady / fixed start-up."
echo "| precision | device | fine-tune images/s | embed images/s | waiting for images (fine-tune / embed, $n images) | CelebA fine-tune epoch | CelebA embedding |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "SAE (reference loss, 202,599 x 512, 512 features, batch 512): $sae s/epoch on CUDA (fp32), $sae_tf32 (tf32), $sae_bf16 s/epoch (bf16 products)"
