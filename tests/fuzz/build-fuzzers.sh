#!/bin/bash
# build-fuzzers.sh BUILD_DIR — configures (once; reconfigures after) and
# builds the libFuzzer targets and the CLI that make-seeds.sh runs, with
# clang, ASan and UBSan. CUDA, the plug-in and the dialog stay out: nvcc
# objects and GIMP's process are not instrumented. NS_FUZZ_JOBS: ninja jobs
# (default 2). Needs clang and its runtime (Debian: clang, libclang-rt-dev).
set -euo pipefail

build=${1:?usage: build-fuzzers.sh BUILD_DIR}
src=$(cd "$(dirname "$0")/../.." && pwd -P)

command -v clang >/dev/null || { echo "build-fuzzers: clang is not installed (apt-get install clang libclang-rt-dev)" >&2; exit 1; }
echo 'int LLVMFuzzerTestOneInput (const char *d, long n) { return d && n; }' \
  | clang -x c -fsanitize=fuzzer -o /dev/null - 2>/dev/null \
  || { echo "build-fuzzers: clang cannot link libFuzzer programs (apt-get install libclang-rt-dev)" >&2; exit 1; }

# -fsanitize=fuzzer-no-link gives the engine library the coverage
# instrumentation libFuzzer needs (without it libFuzzer sees only the target file).
options=(-Dcuda=disabled -Dplugin=disabled -Dui=disabled -Db_sanitize=address,undefined
         -Dfuzzing=true -Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link)
if [ -f "$build/build.ninja" ]; then
  CC=clang meson setup --reconfigure "$build" "$src" "${options[@]}" >/dev/null
else
  CC=clang meson setup "$build" "$src" "${options[@]}" >/dev/null
fi
targets=(engine/cli/nextstep)
for f in "$src"/tests/fuzz/fuzz-*.c; do
  targets+=("tests/fuzz/$(basename "$f" .c)")
done
ninja -C "$build" -j"${NS_FUZZ_JOBS:-2}" "${targets[@]}"
