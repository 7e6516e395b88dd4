#!/usr/bin/env bash
# How each stage grows with the data set: demo data of N images at 64 px for each N given, then
# train (1 epoch, batch 128), embed, the reference SAE (30 epochs) and the feature index, each
# timed as a whole process with its peak memory (max RSS). Prints one Markdown table.
# Run it on an idle machine.
#   usage: bash bench/scale.sh [N ...]      (default: 10000 50000 202599; after scripts/build.sh)
#   env:   BENCH_THREADS (default: all cores), BENCH_DIR (default /tmp/saescope-scale-bench),
#          SAESCOPE_BIN (default build/app/saescope)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SAESCOPE_BIN:-$(pwd)/build/app/saescope}
threads=${BENCH_THREADS:-$(nproc)}
work=${BENCH_DIR:-/tmp/saescope-scale-bench}
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(10000 50000 202599)
[ -x "$bin" ] || { echo "bench/scale.sh: $bin missing; run scripts/build.sh first" >&2; exit 1; }
mkdir -p "$work"
rows=()
stage() {  # stage NAME N CMD...: prints "seconds peak_MiB"
  local name=$1 n=$2; shift 2
  /usr/bin/time -f "%e %M" -o "$work/t" "$@" > "$work/log.$name.$n" 2>&1 \
    || { echo "bench/scale.sh: $name at $n images failed:" >&2; tail -5 "$work/log.$name.$n" >&2; exit 1; }
  read -r s kb < "$work/t"
  echo "$s $((kb / 1024))"
}
for n in "${sizes[@]}"; do
  data="$work/data-$n" ws="$work/ws-$n"
  rm -rf "$ws"
  [ -d "$data" ] || "$bin" demo-data --out "$data" --count "$n" --size 64 > /dev/null 2>&1
  read -r ts tm < <(stage train "$n" "$bin" train --data "$data" --workspace "$ws" --image-size 64 \
    --threads "$threads" --weights none)
  read -r es em < <(stage embed "$n" "$bin" embed --workspace "$ws" --threads "$threads")
  read -r ss sm < <(stage sae "$n" "$bin" sae --workspace "$ws" --threads "$threads")
  # The index alone: switching to the SAE just trained rebuilds it.
  rm -rf "$ws/index"
  read -r is im < <(stage index "$n" "$bin" sae --workspace "$ws" --use seed-f512-l0.1-s0 --threads "$threads")
  rows+=("$(awk -v n="$n" -v ts="$ts" -v tm="$tm" -v es="$es" -v em="$em" -v ss="$ss" -v sm="$sm" \
    -v is="$is" -v im="$im" 'BEGIN {
    printf "| %d | %.0f s (%.0f img/s) | %.0f s (%.0f img/s) | %.0f s | %.1f s | %d MiB | %.2f ms |",
      n, ts, n / ts, es, n / es, ss, is, (tm > em ? (tm > sm ? tm : sm) : (em > sm ? em : sm)),
      1e3 * (ts + es + ss + is) / n }')")
  echo "${rows[-1]}" >&2
done
echo
echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores of $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $threads threads, 64 px"
echo
echo "| images | fine-tune (1 epoch) | embed | SAE (30 epochs) | index | peak memory | total per image |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
