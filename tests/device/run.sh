#!/bin/bash
# run.sh — the GPU checks of issues 11 and 16 as ONE device call of at most
# 6 minutes, from the folder tests/device/pack.sh made. On the device tool:
#
#   run(command="bash tests/device/run.sh build-device/pack",
#       carry=["build-device/pack"], timeout_s=420)
#
# `--cpu` runs the same steps here on the CPU backend at small sizes
# (rehearsal): OUT=/tmp/out bash tests/device/run.sh build-device/pack --cpu
#
# Writes at most 8 files to $OUT:
#   env.txt       device, driver, step timings
#   ops.txt       every tests/ops path in its own process (a CUDA error is
#                 sticky), on every backend, plus the cuda suite
#   golden.txt    every golden run through the CLI (AUTO picks CUDA there)
#   tokens.txt    CPU vs CUDA tokens for the same seed
#   bench.jsonl   nextstep bench --json, bf16/int8/fp8 at 256² and 512² KV
#   e2e.txt       512² end to end on full-size synthetic weights
#   official.txt  the official PyTorch pipeline timed beside ours
#   summary.txt   one line per step: PASS / FAIL / SKIP
# Exits 0 when every step that ran passed.
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

setup () {
  : > "$out/summary.txt"
  tar -C "$work" -xJf "$pack/payload.tar.xz"
  export LD_LIBRARY_PATH="$work/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export NS_GOLDEN_DIR="$work/golden" NS_CLI="$work/bin/nextstep" NS_SOURCE_ROOT="$src"
  bin=$work/bin
  { echo "mode: $mode"; date -u; uname -a; ldd --version | head -1
    command -v nvidia-smi > /dev/null && nvidia-smi | head -15
    head -1 "$pack/manifest.txt"; } > "$out/env.txt"
}

# Each GTest path of each program in its own process.
step_ops () {
  local fails=0 total=0
  for p in "$bin"/test-ops-* "$bin/test-cuda"; do
    for path in $("$p" -l 2>/dev/null | grep '^/'); do
      total=$((total + 1))
      if timeout "$(budget 60)" "$p" -p "$path" > "$work/one.log" 2>&1; then
        echo "ok   $(basename "$p") $path" >> "$out/ops.txt"
      else
        local rc=$?
        [ $rc = 77 ] && { echo "skip $(basename "$p") (no device)" >> "$out/ops.txt"; break; }
        fails=$((fails + 1))
        { echo "FAIL $(basename "$p") $path (exit $rc)"; tail -25 "$work/one.log"; } >> "$out/ops.txt"
      fi
    done
  done
  [ $fails = 0 ] && result PASS ops "$total paths" || result FAIL ops "$fails of $total paths"
}

step_golden () {
  local fails=0 total=0
  for path in $("$bin/test-golden-cli" -l | grep '^/'); do
    total=$((total + 1))
    if timeout "$(budget 90)" "$bin/test-golden-cli" -p "$path" > "$work/one.log" 2>&1; then
      echo "ok   $path" >> "$out/golden.txt"
    else
      fails=$((fails + 1))
      { echo "FAIL $path"; tail -20 "$work/one.log"; } >> "$out/golden.txt"
    fi
  done
  [ $fails = 0 ] && result PASS golden "$total runs" || result FAIL golden "$fails of $total runs"
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
step_bench () {
  local small=() fails=0
  [ $mode = cpu ] && small=(--layers 1 --steps 2 --tokens 1)
  for w in bf16 int8 fp8; do
    for kv in 256 1024; do
      [ $mode = cpu ] && [ $w != bf16 ] && continue
      if ! timeout "$(budget 60)" "$bin/nextstep" bench --backend $mode --json --weights $w \
           --kv $kv "${small[@]}" >> "$out/bench.jsonl" 2>> "$work/bench.err"; then
        fails=$((fails + 1))
        echo "{\"failed\": \"$w kv $kv\"}" >> "$out/bench.jsonl"
      fi
    done
  done
  tail -5 "$work/bench.err" >> "$out/env.txt" 2>/dev/null
  [ $fails = 0 ] && result PASS bench || result FAIL bench "$fails runs failed"
}

step_e2e () {
  if ! "$bin/nextstep" make-tiny --help 2>&1 | grep -q -- --full-size; then
    echo "nextstep make-tiny has no --full-size yet" > "$out/e2e.txt"
    result SKIP e2e "make-tiny --full-size missing"
    return
  fi
  local size=512 m=$work/full
  [ $mode = cpu ] && size=64
  if timeout "$(budget 120)" "$bin/nextstep" make-tiny --full-size "$m" > "$out/e2e.txt" 2>&1 \
     && /usr/bin/time -v timeout "$(budget 150)" "$bin/nextstep" generate --model "$m" \
          --vae "$m/vae" --prompt "a lighthouse" --width $size --height $size --seed 3 \
          --backend $mode -o "$work/e2e.png" >> "$out/e2e.txt" 2>&1; then
    result PASS e2e "${size}² on full-size weights"
  else
    result FAIL e2e "see e2e.txt"
  fi
}

step_official () {
  if [ ! -d "$work/official/nextstep" ] || ! python3 -c "import torch, transformers, diffusers" \
       > "$out/official.txt" 2>&1; then
    result SKIP official "no official code or no torch/transformers/diffusers here"
    return
  fi
  head -1 "$out/bench.jsonl" > "$work/ours.json"
  if PYTHONPATH="$work/official" timeout "$(budget 120)" python3 \
       "$src/tests/bench/official-pipeline.py" --official "$work/official" \
       --tokenizer "$work/golden/t2i-tiny/model" --ours "$work/ours.json" >> "$out/official.txt" 2>&1; then
    result PASS official "$(tail -1 "$out/official.txt")"
  else
    result FAIL official "see official.txt"
  fi
}

main () {
  setup
  for s in ops golden tokens bench e2e official; do
    local t0=$(date +%s)
    "step_$s"
    log "step $s: $(( $(date +%s) - t0 )) s"
  done
  log "total: $(( $(date +%s) - start )) s"
  rm -rf "$work"
  exit $status
}

main
