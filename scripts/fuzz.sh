#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang, ASan + UBSan) in build-fuzz and runs each for
# FUZZ_SECONDS (default 30) on a copy of its seed corpus. Fails on any finding (crash, sanitizer
# report, abort, leak, timeout, out-of-memory); prints one summary line per target.
#
#   bash scripts/fuzz.sh [target...]                 (default: all four)
#   FUZZ_SECONDS=300 bash scripts/fuzz.sh fuzz_checkpoint
#
# The working corpus lives in build-fuzz/corpus/<target> (seeds copied in, new inputs kept between
# local runs); a finding is written to build-fuzz/findings/<target>/ — reproduce it with
# `build-fuzz/tests/fuzz/<target> FILE`, then add the minimised input to tests/fuzz/corpus/<target>
# once the bug is fixed. SAESCOPE_FUZZ_STRICT=1 (the default here) also counts a std::exception other
# than engine::Error as a finding (tests/fuzz/fuzz_common.h); set it to 0 to allow them.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${SAESCOPE_JOBS:-$(nproc)}
seconds=${FUZZ_SECONDS:-30}
export SAESCOPE_FUZZ_STRICT=${SAESCOPE_FUZZ_STRICT:-1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_image fuzz_checkpoint fuzz_ratings fuzz_manifest)

if ! command -v clang++ >/dev/null; then
  echo "fuzz: clang++ not found; run scripts/install-deps.sh (clang, libclang-rt-dev)" >&2
  exit 1
fi
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DSAESCOPE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  >/dev/null
cmake --build build-fuzz -j"$jobs" --target "${targets[@]}"

max_len() {
  case $1 in
    fuzz_image | fuzz_checkpoint) echo 16384 ;;  # seeds are 0.1-2 KB; room for a few records
    *) echo 4096 ;;                              # JSON lines and manifests
  esac
}

failed=0
summary=()
for t in "${targets[@]}"; do
  corpus=build-fuzz/corpus/$t findings=build-fuzz/findings/$t log=build-fuzz/$t.log
  rm -rf "$findings"
  mkdir -p "$corpus" "$findings"
  cp -n tests/fuzz/corpus/"$t"/* "$corpus"/ || true
  dict=()
  [ -f tests/fuzz/"$t".dict ] && dict=(-dict=tests/fuzz/"$t".dict)
  rc=0
  build-fuzz/tests/fuzz/"$t" "$corpus" "${dict[@]}" -max_total_time="$seconds" -rss_limit_mb=2048 \
    -max_len="$(max_len "$t")" -timeout=10 -print_final_stats=1 -artifact_prefix="$findings"/ \
    >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -1)
  artifacts=$(find "$findings" -type f | wc -l)
  if [ "$rc" -ne 0 ] || [ "$artifacts" -ne 0 ]; then
    failed=1
    echo "---- $t: finding (exit $rc); log $log, inputs in $findings:" >&2
    grep -m1 -B2 -A30 -E '==ERROR|runtime error|fuzz: |deadly signal|Timeout|out-of-memory' "$log" >&2 ||
      tail -40 "$log" >&2
    status=FAIL
  else
    status=ok
  fi
  summary+=("$(printf 'fuzz: %-16s %-4s %9s execs %6s exec/s  %s  (%ss)' \
    "$t" "$status" "${execs:-?}" "${rate:-?}" "${cov:-cov: ?}" "$seconds")")
done
printf '%s\n' "${summary[@]}"
exit $failed
