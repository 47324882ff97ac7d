#!/bin/bash
# ci-extra.sh — the robustness checks CI runs after the main test run:
#  1. the whole test suite built with gcc -Db_sanitize=address,undefined
#     (any ASan, LeakSanitizer or UBSan report fails its test);
#  2. the libFuzzer targets built with clang (ASan+UBSan), each run for
#     NS_FUZZ_SECONDS (default 20) over its seed corpus (run-fuzzers.sh).
# Needs gcc, clang and clang's runtime libraries (Debian: clang,
# libclang-rt-dev). Build folders: build-ci-asan and build-ci-fuzz in the
# source tree (NS_CI_BUILD_PREFIX to put them elsewhere).
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd -P)
prefix=${NS_CI_BUILD_PREFIX:-$src/build-ci}
jobs=${NS_CI_JOBS:-2}
# Full malloc stacks, so a leak report names the function that leaked.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:fast_unwind_on_malloc=0}
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

log() { printf '\n== %s\n' "$*"; }

setup() {  # setup DIR MESON-OPTIONS… — configure once, reconfigure after
  local dir=$1
  shift
  if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" "$src" "$@" >/dev/null
  else
    meson setup "$dir" "$src" "$@" >/dev/null
  fi
}

# CUDA, the plug-in and the dialog stay out of the sanitizer builds: nvcc
# objects and GIMP's process are not instrumented.
common=(-Dcuda=disabled -Dplugin=disabled -Dui=disabled -Db_sanitize=address,undefined)

log "ASan+UBSan build (gcc) and the whole test suite"
CC=gcc setup "$prefix-asan" "${common[@]}"
ninja -C "$prefix-asan" -j"$jobs"
# A failing suite does not stop the fuzzing: CI reports both.
status=0
meson test -C "$prefix-asan" --print-errorlogs --num-processes "$jobs" --timeout-multiplier 3 \
  || status=1

log "libFuzzer targets (clang, ASan+UBSan), ${NS_FUZZ_SECONDS:-20} s each"
NS_FUZZ_JOBS=$jobs "$src/tests/fuzz/build-fuzzers.sh" "$prefix-fuzz"
NS_FUZZ_BUILD=$prefix-fuzz "$src/tests/fuzz/run-fuzzers.sh" "${NS_FUZZ_SECONDS:-20}" || status=1
exit $status
