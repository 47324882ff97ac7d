#!/bin/bash
# make-seeds.sh OUT CLI [GOLDEN] — seed corpora for the fuzz targets, one
# folder per target under OUT (plus the tiny models in OUT/make-tiny*), from files in the real layouts: a model that
# `CLI make-tiny` writes and the golden data (default ../shared/golden beside
# the source tree; skipped when absent). Big files (the 19 MB golden shards,
# the 11 MB golden tokenizer.json) are left out: libFuzzer mutates every seed
# and slow inputs waste the run; make-tiny gives the same layouts smaller.
set -euo pipefail

out=${1:?usage: make-seeds.sh OUT CLI [GOLDEN]}
cli=${2:?usage: make-seeds.sh OUT CLI [GOLDEN]}
here=$(cd "$(dirname "$0")" && pwd -P)
golden=${3:-$here/../../../shared/golden}

tiny=$out/make-tiny
rm -rf "$out"
mkdir -p "$out"/{safetensors,index,config,checkpoint,tokenizer-json,encode,png,recipe}
"$cli" make-tiny "$tiny" >/dev/null
"$cli" make-tiny --edit "$tiny-edit" >/dev/null

seed() {  # seed TARGET FILE... — copies files that exist, named after their path
  local target=$1 f name
  shift
  for f in "$@"; do
    [ -f "$f" ] || continue
    name=$(realpath --relative-to=/ "$f" | tr / _)
    cp "$f" "$out/$target/$name"
  done
}

for m in "$tiny" "$tiny-edit"; do
  seed safetensors "$m"/model-0000{1,2}-of-00003.safetensors
  seed index "$m/model.safetensors.index.json"
  seed config "$m/config.json" "$m/vae/config.json" "$m/tokenizer_config.json" \
    "$m/generation_config.json"
  seed tokenizer-json "$m/tokenizer.json"
  seed checkpoint "$m/vae/checkpoint.pt"
done

if [ -d "$golden" ]; then
  for g in "$golden"/t2i-tiny "$golden"/edit-tiny; do
    seed safetensors "$g/model/model-00003-of-00003.safetensors"
    seed index "$g/model/model.safetensors.index.json"
    seed config "$g/model/config.json" "$g/vae/config.json" "$g/model/tokenizer_config.json"
    seed checkpoint "$g/vae/checkpoint.pt"
  done
  # One prompt per file, from the tokenizer cases (the texts the golden
  # tokenizer was checked on: scripts, emoji, special tokens, whitespace).
  if [ -f "$golden/tokenizer/cases.jsonl" ]; then
    python3 - "$golden/tokenizer/cases.jsonl" "$out/encode" <<'EOF'
import json, sys
with open(sys.argv[1], encoding="utf-8") as cases:
    for i, line in enumerate(cases):
        with open(f"{sys.argv[2]}/case-{i:04d}.txt", "w", encoding="utf-8") as f:
            f.write(json.loads(line)["text"])
EOF
  fi
fi
