#!/bin/bash
# bad-input.sh CASE — one bad input given to the `nextstep` CLI ($NS_CLI) on
# a damaged copy of a `make-tiny` model. A refusal must be a clean exit
# (1 or 2, never a signal or sanitizer report) whose message matches every
# pattern the case lists (what is wrong, naming the file or value, and what
# to do); a valid input must make its picture. Exit 77 = skip.
set -uo pipefail

case_name=${1:?usage: bad-input.sh CASE}
cli=${NS_CLI:?NS_CLI is not set (meson sets it)}
here=$(cd "$(dirname "$0")" && pwd -P)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
m=$tmp/model
small=(--prompt "a red fox" --width 32 --height 32 --steps 2 -o "$tmp/out.png")

fail() { echo "FAIL ($case_name): $*" >&2; exit 1; }

make_model() {  # make_model [--edit]
  "$cli" make-tiny "$@" "$m" >/dev/null || fail "make-tiny failed"
}

set_max_positions() {  # the position limit of the model's config.json
  sed -i "s/\"max_position_embeddings\" *: *[0-9]*/\"max_position_embeddings\" : $1/" "$m/config.json"
  grep -q "\"max_position_embeddings\" : $1" "$m/config.json" || fail "could not edit config.json"
}

run_cli() {  # run_cli ARGS… — sets rc and err
  "$cli" "$@" 2> "$tmp/stderr"
  rc=$?
  err=$(cat "$tmp/stderr")
  printf 'exit %d, stderr:\n%s\n' "$rc" "$err"
  # A sanitizer exits 1 too: its report, or a GLib critical, is never clean.
  ! grep -qE 'Sanitizer|runtime error|CRITICAL' <<<"$err" || fail "sanitizer report or critical"
}

expect_error() {  # expect_error PATTERN… -- ARGS…
  local patterns=() p
  while [ "$1" != -- ]; do patterns+=("$1"); shift; done
  shift
  run_cli "$@"
  [ "$rc" -eq 1 ] || [ "$rc" -eq 2 ] || fail "exit status $rc, expected a clean error (1 or 2)"
  for p in "${patterns[@]}"; do
    grep -qE -- "$p" <<<"$err" || fail "message does not match /$p/"
  done
  [ ! -e "$tmp/out.png" ] || fail "an output image was written despite the error"
}

expect_picture() {  # expect_picture ARGS…
  run_cli "$@"
  [ "$rc" -eq 0 ] || fail "exit status $rc, expected success"
  [ -s "$tmp/out.png" ] || fail "no picture written"
}

# Two JSON documents back to back: a re-download appended to an old file.
double_json() {  # double_json FILE
  cat "$1" "$1" > "$tmp/doubled" && mv "$tmp/doubled" "$1"
}

shard=model-00003-of-00003.safetensors
appended='nothing after the first JSON value'
case $case_name in
  doubled-index-inspect)
    make_model; double_json "$m/model.safetensors.index.json"
    expect_error 'model\.safetensors\.index\.json' "$appended" 'download it again' \
      -- inspect "$m" ;;
  doubled-index-load)
    make_model; double_json "$m/model.safetensors.index.json"
    expect_error 'model\.safetensors\.index\.json' "$appended" 'download it again' \
      -- generate --model "$m" "${small[@]}" ;;
  trailing-config|trailing-vae-config|trailing-tokenizer|trailing-tokenizer-config)
    make_model
    case $case_name in
      trailing-config) f=config.json ;;
      trailing-vae-config) f=vae/config.json ;;
      trailing-tokenizer) f=tokenizer.json ;;
      trailing-tokenizer-config) f=tokenizer_config.json ;;
    esac
    printf '\n}garbage' >> "$m/$f"
    expect_error "$m/$f" "$appended" 'download' -- generate --model "$m" "${small[@]}" ;;
  missing-shard)
    make_model; rm "$m/model-00002-of-00003.safetensors"
    expect_error 'model-00002-of-00003\.safetensors' 'does not exist' 'incomplete' \
      -- generate --model "$m" "${small[@]}" ;;
  extra-tensor)
    make_model; "$here/edit-safetensors.py" "$m/$shard" add:layers.0.extra.weight
    expect_error "$shard" 'layers\.0\.extra\.weight' -- generate --model "$m" "${small[@]}" ;;
  truncated-tensor)
    make_model; truncate -s 50000 "$m/model-00001-of-00003.safetensors"
    expect_error 'model-00001-of-00003\.safetensors' 'truncated' \
      -- generate --model "$m" "${small[@]}" ;;
  wrong-shape)
    make_model; "$here/edit-safetensors.py" "$m/$shard" shape:layers.0.self_attn.q_proj.weight:32,64
    expect_error 'q_proj\.weight' '\[32, 64\]' 'expected \[64, 64\]' \
      -- generate --model "$m" "${small[@]}" ;;
  wrong-dtype)
    make_model; "$here/edit-safetensors.py" "$m/$shard" dtype:layers.0.self_attn.q_proj.weight:I32
    expect_error 'q_proj\.weight' 'I32' 'float' -- generate --model "$m" "${small[@]}" ;;
  qwen2-folder)
    make_model; sed -i 's/"model_type" *: *"nextstep"/"model_type" : "qwen2"/' "$m/config.json"
    expect_error "'qwen2'" 'point --model at a NextStep' -- generate --model "$m" "${small[@]}" ;;
  vae-missing)
    make_model; rm -r "$m/vae"
    expect_error 'No VAE' "$m/vae" 'hf download' '--vae DIR' \
      -- generate --model "$m" "${small[@]}" ;;
  size-one-zero)
    make_model
    expect_error 'both --width and --height' \
      -- generate --model "$m" --prompt fox --width 0 --height 32 -o "$tmp/out.png" ;;
  size-odd)
    make_model
    expect_error '33×32' 'multiples of 16' \
      -- generate --model "$m" --prompt fox --width 33 --height 32 -o "$tmp/out.png" ;;
  size-not-16)
    make_model
    expect_error '100×100' 'multiples of 16' \
      -- generate --model "$m" --prompt fox --width 100 --height 100 -o "$tmp/out.png" ;;
  size-position-limit)
    make_model; set_max_positions 64
    expect_error '64 positions' 'lower the size' \
      -- generate --model "$m" --prompt fox --width 64 --height 64 --steps 2 -o "$tmp/out.png" ;;
  size-20000)
    make_model
    expect_error '20000×20000' 'positions' \
      -- generate --model "$m" --prompt fox --width 20000 --height 20000 -o "$tmp/out.png" ;;
  edit-image-1x1)
    make_model --edit; "$here/make-png.py" "$tmp/in.png" 1 1
    expect_picture edit --model "$m" --image "$tmp/in.png" "${small[@]}" ;;
  edit-image-20000)
    make_model --edit; "$here/make-png.py" "$tmp/in.png" 20000 20000
    expect_error "$tmp/in.png" '20000×20000' 'not usable' \
      -- edit --model "$m" --image "$tmp/in.png" --prompt fox -o "$tmp/out.png" ;;
  prompt-empty)
    make_model
    expect_picture generate --model "$m" --prompt "" --width 32 --height 32 --steps 2 \
      -o "$tmp/out.png" ;;
  prompt-100k)
    # Within the real limit (131072 positions) a 100 KB prompt is valid but
    # takes minutes; a limit of 4096 makes it a quick, clear refusal.
    make_model; set_max_positions 4096
    expect_error 'prompt \([0-9]+ tokens\)' '4096 positions' 'shorten the prompt' \
      -- generate --model "$m" --prompt "$(yes 'a red fox' | head -c 102400 | tr '\n' ' ')" \
         --width 32 --height 32 --steps 2 -o "$tmp/out.png" ;;
  prompt-invalid-utf8)
    make_model
    expect_error 'not valid UTF-8' '0xc3' 'convert it to UTF-8' \
      -- generate --model "$m" --prompt $'caf\xc3' --width 32 --height 32 --steps 2 \
         -o "$tmp/out.png" ;;
  backend-cuda-no-gpu)
    if nvidia-smi -L >/dev/null 2>&1; then echo "a GPU is present"; exit 77; fi
    make_model
    expect_error 'CUDA' '[Cc][Pp][Uu]' -- generate --model "$m" --backend cuda "${small[@]}" ;;
  backend-auto-no-gpu)
    if nvidia-smi -L >/dev/null 2>&1; then echo "a GPU is present"; exit 77; fi
    make_model
    expect_picture generate --model "$m" --backend auto "${small[@]}"
    grep -q 'Running on the CPU' <<<"$err" || fail "no note on stderr that it fell back to the CPU" ;;
  device-memory-cap)
    # The load plans memory against --device-memory-cap (the GPU's free
    # memory when CUDA is used): a tiny cap must be a clean out-of-memory
    # refusal before anything is allocated.
    make_model
    expect_error 'memory' -- generate --model "$m" --device-memory-cap 100000 "${small[@]}" ;;
  convert-disk-full)
    # A file size limit makes writes past 100 KiB fail (EFBIG, SIGXFSZ
    # ignored) the way a full disk does (ENOSPC).
    make_model
    (trap '' XFSZ; ulimit -f 100
     expect_error 'disk full' "$tmp/cache\\.safetensors" 'free' \
       -- convert --model "$m" --weights int8 -o "$tmp/cache.safetensors") || exit 1
    [ ! -e "$tmp/cache.safetensors" ] || fail "a partial cache file was left behind" ;;
  *)
    fail "unknown case" ;;
esac
echo "ok ($case_name)"
