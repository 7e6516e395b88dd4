#!/usr/bin/env bash
# Sanitizer runs (gcc), each in its own build folder; fails on any report.
#
#   bash scripts/sanitize.sh [asan|tsan|all]      (default: all)
#
# asan  build-asan: the whole project (GUI on) with AddressSanitizer + UndefinedBehaviorSanitizer
#       (-fno-sanitize-recover=undefined: the first UB report fails the test), then the whole ctest
#       suite except label gpu. Leaks: LibTorch, OpenBLAS, Mesa and GLFW are not instrumented and
#       keep caches and singletons alive at exit, which LeakSanitizer reports as leaks that are not
#       ours; so leak checking is on (detect_leaks=1) for the torch-free tests (engine core only)
#       and off for the tests that load LibTorch or a GL context.
# tsan  build-tsan: the engine, the UI and their thread-heavy tests (job runner, loader threads,
#       JobRunner start/cancel/restart, blind study, and the real app: runs started, cancelled
#       and resumed while the UI reads progress; SAESCOPE_TSAN_GUI=0 leaves the app out) with
#       ThreadSanitizer. LibTorch and libgomp are not instrumented: torch runs one intra-op thread
#       (OMP_NUM_THREADS=1, which --threads 0 follows), so its own pools never race on memory we
#       see; what is left and is not our bug is suppressed in tests/tsan.supp, one reason each.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
jobs=${SAESCOPE_JOBS:-$(nproc)}
root=$(pwd)

# The tests that link only saescope_engine_core (no LibTorch, no GL): leak checking on.
core_tests='^(test_core|test_checkpoint|test_demo_data|test_stats|test_study)$'

# Build type "Sanitize": -O1 (quicker to compile than -O2, the sanitizers' usual level), line
# tables for the reports. (The top-level CMakeLists pins RelWithDebInfo's flags to -O2.)
configure() {  # configure DIR FLAGS [cmake args...]
  local dir=$1 flags=$2
  shift 2
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Sanitize -DCMAKE_CXX_FLAGS_SANITIZE="-O1 -g1 -DNDEBUG" \
    -DCMAKE_CXX_FLAGS="$flags -fno-omit-frame-pointer" "$@" >/dev/null
}

run_asan() {
  local t0=$SECONDS
  configure build-asan "-fsanitize=address,undefined -fno-sanitize-recover=undefined" \
    -DSAESCOPE_GUI=ON -DSAESCOPE_TESTS=ON -DSAESCOPE_BENCH=OFF
  cmake --build build-asan -j"$jobs" || return 1
  echo "sanitize: asan build took $((SECONDS - t0)) s"
  t0=$SECONDS
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  local common="abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=0:strict_string_checks=1"
  local rc=0
  (cd build-asan &&
    ASAN_OPTIONS="$common:detect_leaks=1" \
      ctest --output-on-failure -R "$core_tests" --timeout 1800 -j"$jobs" &&
    ASAN_OPTIONS="$common:detect_leaks=0" \
      ctest --output-on-failure -E "$core_tests" --label-exclude gpu --timeout 1800 -j"$jobs") ||
    rc=$?
  echo "sanitize: asan tests took $((SECONDS - t0)) s"
  return $rc
}

run_tsan() {
  local t0=$SECONDS
  # SAESCOPE_OPENMP=OFF: our at::parallel_for loops run inline (libgomp's barriers are invisible
  # to TSan, so they would read as races).
  configure build-tsan "-fsanitize=thread" -DSAESCOPE_GUI=ON -DSAESCOPE_TESTS=ON -DSAESCOPE_BENCH=OFF \
    -DSAESCOPE_OPENMP=OFF
  # test_gui: the real app under Xvfb (Mesa's llvmpipe threads are not instrumented; no reports
  # from them so far). SAESCOPE_TSAN_GUI=0 leaves it out.
  local targets=(test_core test_study test_gui_units) tests='^(test_core|test_study|test_gui_units)$'
  if [ "${SAESCOPE_TSAN_GUI:-1}" = 1 ]; then
    targets+=(saescope_gui_driver test_gui)
    tests='^(test_core|test_study|test_gui_units|test_gui)$'
  fi
  cmake --build build-tsan -j"$jobs" --target "${targets[@]}" || return 1
  echo "sanitize: tsan build took $((SECONDS - t0)) s"
  t0=$SECONDS
  export OMP_NUM_THREADS=1
  export TSAN_OPTIONS="suppressions=$root/tests/tsan.supp:halt_on_error=1:second_deadlock_stack=1:history_size=4"
  local rc=0
  (cd build-tsan && ctest --output-on-failure -R "$tests" --timeout 1800 -j"$jobs") || rc=$?
  echo "sanitize: tsan tests took $((SECONDS - t0)) s"
  return $rc
}

# A function's status is returned explicitly: `set -e` does not apply inside one called from an
# && list or an if, so a failing ctest there would otherwise end in "success" (it did, until
# 2026-11-28). "all" runs both and fails if either failed.
case $what in
  asan) run_asan ;;
  tsan) run_tsan ;;
  all)
    rc=0
    run_asan || rc=1
    run_tsan || rc=1
    if [ $rc -ne 0 ]; then echo "sanitize: FAILED (see above)" >&2; fi
    exit $rc
    ;;
  *) echo "usage: $0 [asan|tsan|all]" >&2; exit 2 ;;
esac
