#!/bin/bash
# run.sh — the GPU checks of issues 11 and 16 as ONE device call of at most
# 6 minutes, from the folder tests/device/pack.sh made. On the device tool:
#
#   run(command="bash tests/device/run.sh build-device/pack",
#       carry=["build-device/pack"], timeout_s=420)
#
# `--cpu` runs the same steps here on the CPU backend at small sizes, with a
# tiny model for the end-to-end run (rehearsal; CI runs it):
#   OUT=/tmp/out bash tests/device/run.sh build-device/pack --cpu
# REHEARSE_FULL_SIZE=1 makes the rehearsal's end-to-end run use full-size
# synthetic weights, as on the GPU (28 GB of disk, minutes).
#
# Writes these 8 files to $OUT, afresh:
#   env.txt       mode, device, driver, step timings
#   ops.txt       every tests/ops path in its own process (a CUDA error is
#                 sticky), on every backend, plus the cuda suite
#   golden.txt    every golden run through the CLI (AUTO picks CUDA there)
#   tokens.txt    CPU vs CUDA tokens for the same seed
#   bench.jsonl   nextstep bench --json, one object a line: bf16/int8/fp8 at
#                 KV 256 and 1024, q4 at 256 (the rehearsal: bf16, 1 layer,
#                 2 steps)
#   e2e.txt       end to end: 512² on full-size synthetic weights (GPU)
#   official.txt  the official PyTorch pipeline: full size beside ours on the
#                 GPU, the golden tiny model on the CPU rehearsal
#   summary.txt   one line per step: PASS / FAIL / SKIP
# A step that finds nothing to check fails. Exits 0 when no step failed.
set -uo pipefail
pack=$(cd "${1:?usage: run.sh PACK_DIR [--cpu]}" && pwd)
mode=${2:-cuda}
[ "$mode" = "--cpu" ] && mode=cpu
out=${OUT:?set OUT to the results folder}
mkdir -p "$out"
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
start=$(date +%s)
deadline=$((start + 345))
status=0

log () { echo "$*" >> "$out/env.txt"; }
result () {
  echo "$1 $2${3:+ — $3}" | tee -a "$out/summary.txt"
  if [ "$1" = FAIL ]; then status=1; fi
}
# Seconds a step may take: its own cap, within what is left of the 6 minutes.
budget () { local left=$((deadline - $(date +%s))); echo $(( left < $1 ? (left > 5 ? left : 5) : $1 )); }
# The test paths a GLib test program lists: `/a/b` before GLib 2.84, `# /a/b` since.
test_paths () { "$1" -l 2>/dev/null | sed -n -E 's|^(# )?(/[^ ]*)$|\2|p'; }

setup () {
  for f in env ops golden tokens e2e official summary; do : > "$out/$f.txt"; done
  : > "$out/bench.jsonl"
  for f in "$pack"/*.tar.xz; do tar -C "$work" -xJf "$f"; done
  export LD_LIBRARY_PATH="$work/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export NS_GOLDEN_DIR="$work/golden" NS_CLI="$work/bin/nextstep" NS_SOURCE_ROOT="$src"
  bin=$work/bin
  { echo "mode: $mode"; date -u; uname -a; ldd --version | head -1
    command -v nvidia-smi > /dev/null && nvidia-smi | head -15
    head -1 "$pack/manifest.txt"; } > "$out/env.txt"
}

# Each GTest path of each program in its own process. A program that lists
# no path fails; the cuda suite may skip (77: no device) only on the CPU
# rehearsal.
step_ops () {
  local fails=0 total=0 p paths path rc
  for p in "$bin"/test-ops-* "$bin/test-cuda"; do
    paths=$(test_paths "$p")
    rc=$?
    if [ $rc = 77 ] && [ $mode = cpu ]; then
      echo "skip ${p##*/} (no device)" >> "$out/ops.txt"
      continue
    elif [ -z "$paths" ]; then
      fails=$((fails + 1))
      echo "FAIL ${p##*/}: lists no test path (exit $rc)" >> "$out/ops.txt"
      continue
    fi
    for path in $paths; do
      total=$((total + 1))
      timeout "$(budget 60)" "$p" -p "$path" > "$work/one.log" 2>&1
      rc=$?
      if [ $rc = 0 ]; then
        echo "ok   ${p##*/} $path" >> "$out/ops.txt"
      else
        fails=$((fails + 1))
        { echo "FAIL ${p##*/} $path (exit $rc)"; tail -25 "$work/one.log"; } >> "$out/ops.txt"
      fi
    done
  done
  [ $fails = 0 ] && result PASS ops "$total paths" || result FAIL ops "$fails failures, $total paths"
}

step_golden () {
  local fails=0 total=0 path
  for path in $(test_paths "$bin/test-golden-cli"); do
    total=$((total + 1))
    if timeout "$(budget 90)" "$bin/test-golden-cli" -p "$path" > "$work/one.log" 2>&1; then
      echo "ok   $path" >> "$out/golden.txt"
    else
      fails=$((fails + 1))
      { echo "FAIL $path"; tail -20 "$work/one.log"; } >> "$out/golden.txt"
    fi
  done
  if [ $total = 0 ]; then
    result FAIL golden "test-golden-cli lists no run"
  elif [ $fails = 0 ]; then
    result PASS golden "$total runs"
  else
    result FAIL golden "$fails of $total runs"
  fi
}

generate () {   # generate BACKEND THREADS OUT.safetensors
  local m=$work/golden/t2i-tiny
  timeout "$(budget 60)" "$bin/nextstep" generate --model "$m/model" --vae "$m/vae" \
    --prompt "a red fox in the snow" --width 64 --height 64 --steps 8 --seed 7 \
    --backend "$1" --threads "$2" --save-tokens "$3" -o "$work/fox-$1-$2.png" >> "$out/tokens.txt" 2>&1
}

# Same seed on both backends (on the CPU rehearsal: 1 thread against 2).
step_tokens () {
  local other=cuda threads=0
  [ $mode = cpu ] && { other=cpu; threads=2; }
  if generate cpu 1 "$work/a.safetensors" && generate "$other" "$threads" "$work/b.safetensors" \
     && python3 "$src/tests/device/compare-tokens.py" "$work/a.safetensors" "$work/b.safetensors" \
          0.0078 >> "$out/tokens.txt" 2>&1; then
    result PASS tokens "$(tail -1 "$out/tokens.txt")"
  else
    result FAIL tokens "see tokens.txt"
  fi
}

# Full size on the device; one layer and two steps on the CPU rehearsal.
# `bench --json` prints one indented object: each becomes one line.
step_bench () {
  local small=() weights=(bf16 int8 fp8 q4) fails=0 runs=0 w kv
  [ $mode = cpu ] && { small=(--layers 1 --steps 2 --tokens 1); weights=(bf16); }
  for w in "${weights[@]}"; do
    for kv in 256 1024; do
      [ $w = q4 ] && [ $kv = 1024 ] && continue   # its ratio to int8 is the figure
      runs=$((runs + 1))
      if ! timeout "$(budget 60)" "$bin/nextstep" bench --backend $mode --json --weights $w \
             --kv $kv "${small[@]}" 2>> "$work/bench.err" \
           | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)))' \
             >> "$out/bench.jsonl"; then
        fails=$((fails + 1))
        echo "{\"failed\": \"$w kv $kv\"}" >> "$out/bench.jsonl"
      fi
    done
  done
  tail -5 "$work/bench.err" >> "$out/env.txt"
  [ $fails = 0 ] && result PASS bench "$runs runs" || result FAIL bench "$fails of $runs runs failed"
}

# 512² on full-size weights on the device; 64² on a tiny model on the CPU
# rehearsal (REHEARSE_FULL_SIZE=1: on full-size weights there too).
step_e2e () {
  local size=512 m=$work/e2e-model kind=(--full-size) what="full-size weights"
  if [ $mode = cpu ]; then
    size=64
    [ "${REHEARSE_FULL_SIZE:-0}" = 1 ] || { kind=(); what="a tiny model"; }
  fi
  if timeout "$(budget 120)" "$bin/nextstep" make-tiny "${kind[@]}" "$m" > "$out/e2e.txt" 2>&1 \
     && /usr/bin/time -v timeout "$(budget 150)" "$bin/nextstep" generate --model "$m" \
          --vae "$m/vae" --prompt "a lighthouse" --width $size --height $size --seed 3 \
          --backend $mode -o "$work/e2e.png" >> "$out/e2e.txt" 2>&1; then
    result PASS e2e "${size}² on $what"
  else
    result FAIL e2e "${size}² on $what: see e2e.txt"
  fi
  rm -rf "$m"
}

# The official pipeline with the packed Python libraries (python/ first,
# python-extra/ after the device's own): at full size beside our bf16 bench
# on the GPU, on the golden tiny model on the CPU rehearsal.
step_official () {
  local args=(--official "$work/official" --fallback-path "$work/python-extra")
  export PYTHONPATH="$work/official:$work/python"
  if [ ! -d "$work/official/nextstep" ]; then
    echo "skipped: no official code in the pack" > "$out/official.txt"
    result SKIP official "no official code in the pack (not mirrored where pack.sh ran)"
    return
  fi
  # numpy and Pillow are the device's own (too big for the pack).
  if ! python3 -c "import torch, numpy, PIL" >> "$out/official.txt" 2>&1; then
    echo "skipped: no torch, numpy or Pillow for $(python3 --version)" >> "$out/official.txt"
    result SKIP official "skipped: no torch (or numpy, Pillow) in $(python3 --version)"
    return
  fi
  if [ $mode = cpu ]; then
    args+=(--tiny "$work/golden/t2i-tiny")
  else
    args+=(--tokenizer "$work/golden/t2i-tiny/model")
    if grep -m1 '"weights": "bf16", .*"kv": 256,' "$out/bench.jsonl" > "$work/ours.json"; then
      args+=(--ours "$work/ours.json")
    fi
  fi
  if timeout "$(budget 150)" python3 "$src/tests/bench/official-pipeline.py" "${args[@]}" \
       >> "$out/official.txt" 2>&1; then
    result PASS official "$(grep '^official ' "$out/official.txt" | tr '\n' ' ')"
  else
    result FAIL official "see official.txt"
  fi
}

main () {
  setup
  local s t0
  for s in ops golden tokens bench e2e official; do
    t0=$(date +%s)
    "step_$s"
    log "step $s: $(( $(date +%s) - t0 )) s"
  done
  log "total: $(( $(date +%s) - start )) s"
  rm -rf "$work"
  exit $status
}

main
