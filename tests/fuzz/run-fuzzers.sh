#!/bin/bash
# run-fuzzers.sh SECONDS [TARGET...] — runs every built libFuzzer target (or
# the named ones: safetensors, index, …) for SECONDS each over fresh seed
# corpora (make-seeds.sh) plus the committed corpus/<target>/ findings.
# Builds nothing: configure and build first, e.g.
#   CC=clang meson setup build-fuzz -Dfuzzing=true -Db_sanitize=address,undefined \
#     -Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link -Dcuda=disabled \
#     -Dplugin=disabled -Dui=disabled && ninja -C build-fuzz
# Environment: NS_FUZZ_BUILD (default build-fuzz in the source tree),
# NS_FUZZ_WORK (default a temporary folder, kept when a target fails),
# NS_GOLDEN_DIR (default ../shared/golden). A crash, leak, timeout or
# sanitizer report is saved as WORK/<target>/crash-… and makes the exit
# status 1; one line per target gives executions and coverage.
set -uo pipefail

seconds=${1:?usage: run-fuzzers.sh SECONDS [TARGET...]}
shift
here=$(cd "$(dirname "$0")" && pwd -P)
src=$(cd "$here/../.." && pwd -P)
build=${NS_FUZZ_BUILD:-$src/build-fuzz}
golden=${NS_GOLDEN_DIR:-$src/../shared/golden}
work=${NS_FUZZ_WORK:-$(mktemp -d /tmp/ns-fuzz.XXXXXX)}

[ -x "$build/engine/cli/nextstep" ] || { echo "run-fuzzers: no $build/engine/cli/nextstep; build first" >&2; exit 2; }
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$build"/tests/fuzz/fuzz-*; do
    [ -f "$f" ] && [ -x "$f" ] && targets+=("${f##*/fuzz-}")
  done
fi
[ ${#targets[@]} -gt 0 ] || { echo "run-fuzzers: no fuzz targets in $build/tests/fuzz (configure with -Dfuzzing=true)" >&2; exit 2; }

mkdir -p "$work"
"$here/make-seeds.sh" "$work/seeds" "$build/engine/cli/nextstep" "$golden" || exit 2
if [ -d "$golden/tokenizer" ]; then
  export NS_FUZZ_TOKENIZER=$golden/tokenizer
else
  export NS_FUZZ_TOKENIZER=$work/seeds/make-tiny
fi
# UBSan findings must stop the run like ASan's do.
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

status=0
for t in "${targets[@]}"; do
  exe=$build/tests/fuzz/fuzz-$t
  [ -x "$exe" ] || { echo "run-fuzzers: no target $exe" >&2; status=1; continue; }
  dir=$work/$t
  mkdir -p "$dir/corpus"
  seeds=("$work/seeds/$t")
  [ -d "$here/corpus/$t" ] && seeds+=("$here/corpus/$t")
  # -timeout: one input may take 10 s; -rss_limit_mb: a parser that tries
  # to allocate what a damaged header claims is a finding.
  "$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$dir/" "$dir/corpus" "${seeds[@]}" \
    > "$dir/log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log")
  cov=$(grep -o 'cov: [0-9]*' "$dir/log" | tail -1)
  ft=$(grep -o 'ft: [0-9]*' "$dir/log" | tail -1)
  corpus=$(ls "$dir/corpus" | wc -l)
  if [ $rc -eq 0 ]; then
    echo "fuzz-$t: ok, ${execs:-?} executions in ${seconds}s, $cov, $ft, $corpus new inputs"
  else
    status=1
    echo "fuzz-$t: FAILED (exit $rc) after ${execs:-?} executions: $(ls "$dir" | grep -E '^(crash|leak|timeout|oom|slow-unit)-' | tr '\n' ' ')"
    grep -m1 -E 'ERROR: |runtime error|SUMMARY' "$dir/log" | sed 's/^/    /'
    echo "    log: $dir/log"
  fi
done
if [ $status -eq 0 ] && [ -z "${NS_FUZZ_WORK:-}" ]; then
  rm -rf "$work"
fi
exit $status
