#!/bin/bash
# pack.sh — packs what tests/device/run.sh needs on the lent GPU machine into
# ONE folder, build-device/pack (ignored by git, carried by the device tool):
#   programs.tar.xz  bin/ (CLI + test programs, stripped), lib/ (the shared
#                    libraries ldd shows, less glibc and the CUDA 13 runtime
#                    the device has)
#   data.tar.xz      golden/ (the two tiny golden cases, only
#                    the files the CLI and test-golden-cli read), official/
#                    (the official PyTorch code, when mirrored here), python/
#                    and python-extra/ (unpacked cp312 wheels from PyPI that
#                    official-pipeline.py needs besides torch: the device has
#                    no network)
#   manifest.txt     what is inside, sizes, and the glibc symbol versions the
#                    binaries need (the device has glibc 2.39)
# The programs come from build-device/build, configured for sm_90 + PTX only
# (a few minutes on 2 cores), or from the README's build in build/ when that
# one was configured the same way: the default -Dgpu_archs puts code for four
# architectures in every program, and its fat binary alone would take the
# pack over 64 MiB. Without nvcc it stops: a pack without CUDA cannot check
# the GPU.
# Usage: tests/device/pack.sh [GOLDEN_DIR]   (default ../shared/golden)
# Then, on the device (tests/device/README):
#   run(command="bash tests/device/run.sh build-device/pack", carry=["build-device/pack"])
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
golden=${1:-$root/../shared/golden}
pack=$root/build-device/pack
stage=$root/build-device/stage
wheels=$root/build-device/wheels
official_mirror=/work/.mirror/stepfun-ai+NextStep-1/repo
limit=$((64 * 1024 * 1024))

# The device's CUDA runtime and glibc are its own; GLib and friends are not
# installed there as development packages, so they travel.
skip_lib='^(linux-vdso|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|ld-linux|libcuda|libcudart|libcublas|libstdc\+\+|libgcc_s)'

# One program per line (ninja targets, relative to the build folder).
programs=(
  engine/cli/nextstep
  tests/model/test-golden-cli
  tests/ops/test-cuda
  tests/ops/test-ops-attention
  tests/ops/test-ops-conv
  tests/ops/test-ops-elementwise
  tests/ops/test-ops-grid-index
  tests/ops/test-ops-linear
  tests/ops/test-ops-linear-fused
  tests/ops/test-ops-memory
  tests/ops/test-ops-norm
  tests/ops/test-ops-sampler
)

# The official code's imports besides torch, as cp312 wheels. Prepended to
# sys.path: the versions the official code and the golden tiny models were
# made with, and the ones transformers 4.49 checks at import.
py_first=(transformers==4.49.0 diffusers==0.32.2 'huggingface_hub<1' 'tokenizers<0.22' safetensors)
# Appended: the device's own copies win where it has them. numpy and Pillow
# (24 MB, too much for 64 MiB) are not packed: torch setups have them.
py_extra=(regex pyyaml tqdm requests urllib3 idna certifi charset_normalizer
          filelock fsspec packaging importlib_metadata zipp typing_extensions
          einops loguru pendulum python_dateutil tzdata omegaconf tabulate lazy_importer)

build_all () {
  build=$root/build
  local archs
  archs=$(grep -o 'code=sm_[0-9]*' "$build/build.ninja" 2>/dev/null | sort -u | tr '\n' ' ') \
    || true   # no build/ yet
  if [ "$archs" != "code=sm_90 " ]; then
    command -v nvcc > /dev/null \
      || { echo "pack.sh: no nvcc (PATH: $PATH): cannot build the CUDA code the device checks" >&2; exit 1; }
    build=$root/build-device/build
    mkdir -p "$root/build-device"
    [ -f "$build/build.ninja" ] \
      || meson setup "$build" "$root" -Dcuda=enabled -Dgpu_archs=90 -Dplugin=disabled \
           -Dui=disabled --buildtype=release > "$root/build-device/setup.log"
  fi
  echo "programs from $build"
  ninja -C "$build" -j2 "${programs[@]}"
}

stage_programs () {
  mkdir -p "$stage/bin" "$stage/lib"
  for p in "${programs[@]}"; do
    strip -o "$stage/bin/$(basename "$p")" "$build/$p"
  done
  for p in "$stage"/bin/*; do
    ldd "$p" | awk '$3 ~ /^\// { print $1, $3 }'
  done | sort -u | while read -r name path; do
    if ! [[ $name =~ $skip_lib ]]; then strip -o "$stage/lib/$name" "$path"; fi
  done
}

stage_golden () {
  for case in t2i-tiny edit-tiny; do
    mkdir -p "$stage/golden/$case/vae"
    cp -r "$golden/$case/model" "$golden/$case/runs" "$stage/golden/$case/"
    cp "$golden/$case"/vae/{config.json,checkpoint.pt} "$stage/golden/$case/vae/"
  done
  chmod -R u+w "$stage/golden"
  # The engine never loads lm_head (model/memory-plan.c) and the official
  # pipeline makes no text: zeros in its place compress to nothing (-15 MB).
  python3 - "$stage"/golden/*/model/*.safetensors <<'PY'
import json, struct, sys
for path in sys.argv[1:]:
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        t = json.loads(f.read(n)).get("lm_head.weight")
        if t:
            begin, end = t["data_offsets"]
            f.seek(8 + n + begin)
            f.write(bytes(end - begin))
PY
  # Both cases carry the same tokenizer files: tar stores a hard link once.
  for f in "$stage"/golden/edit-tiny/model/*; do
    local twin=$stage/golden/t2i-tiny/model/${f##*/}
    if cmp -s "$f" "$twin"; then ln -f "$twin" "$f"; fi
  done
}

stage_official () {
  if [ -d "$official_mirror" ]; then
    mkdir -p "$stage/official"
    git -C "$official_mirror" archive HEAD nextstep | tar -x -C "$stage/official"
  fi
}

# unpack_wheels DIR SPEC…: cp312 manylinux wheels from PyPI, unpacked in DIR.
unpack_wheels () {
  local dir=$1; shift
  rm -rf "${wheels:?}/$dir"
  mkdir -p "$wheels/$dir" "$stage/$dir"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --abi cp312 --platform manylinux2014_x86_64 \
    --platform manylinux_2_28_x86_64 -d "$wheels/$dir" "$@"
  for w in "$wheels/$dir"/*.whl; do python3 -m zipfile -e "$w" "$stage/$dir"; done
}

# glibc versions the packed binaries and libraries ask for (must be ≤ 2.39).
glibc_check () {
  local need
  need=$(find "$stage"/bin "$stage"/lib "$stage"/python* -type f \( -perm -u+x -o -name '*.so*' \) \
           -exec objdump -T {} + 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -u -V | tail -1)
  echo "highest glibc symbol version needed: $need (device: GLIBC_2.39)"
  [ "$(printf '%s\nGLIBC_2.39\n' "$need" | sort -V | tail -1)" = "GLIBC_2.39" ]
}

main () {
  build_all
  rm -rf "$stage" "$pack"
  mkdir -p "$stage" "$pack"
  stage_programs
  stage_golden
  stage_official
  unpack_wheels python "${py_first[@]}"
  unpack_wheels python-extra "${py_extra[@]}"
  glibc_check | tee "$pack/manifest.txt"
  (cd "$stage" && find . -type f -printf '%s %p\n' | sort -k2) >> "$pack/manifest.txt"
  # The test programs each hold the same fat binary of kernels (~35 MB): a
  # dictionary larger than one program stores it once, and a fast preset
  # finds it. The rest compresses in parallel blocks.
  tar -C "$stage" --sort=name -cf - ./bin ./lib | xz -T1 --lzma2=preset=1,dict=64MiB \
    > "$pack/programs.tar.xz"
  tar -C "$stage" --sort=name --exclude=./bin --exclude=./lib -cf - . | xz -6 -T2 \
    > "$pack/data.tar.xz"
  local size tracked
  size=$(du -cb "$pack" | tail -1 | cut -f1)
  # The device tool carries the source files (all but .git and the ignored
  # build folders) beside the pack; CI's root has no git to list them.
  tracked=$(cd "$root" && du -sb --exclude=./.git --exclude='./build*' . | cut -f1)
  echo "pack: $size bytes in $pack + $tracked bytes of source files (limit $limit)" \
    | tee -a "$pack/manifest.txt"
  [ $((size + tracked)) -lt "$limit" ] || { echo "pack.sh: over 64 MiB with the source files" >&2; exit 1; }
}

main
