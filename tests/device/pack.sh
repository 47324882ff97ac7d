#!/bin/bash
# pack.sh — builds the engine and its tests for the lent GPU machine (sm_90
# + PTX, no GUI parts) and packs what tests/device/run.sh needs into ONE
# folder, build-device/pack (ignored by git, carried by the device tool):
#   payload.tar.xz   bin/ (CLI + test programs, stripped), lib/ (the shared
#                    libraries ldd shows, less glibc and the CUDA 13 runtime
#                    the device has), golden/ (the tiny golden cases),
#                    official/ (the official PyTorch code, when mirrored here)
#   manifest.txt     what is inside, sizes, and the glibc symbol versions the
#                    binaries need (the device has glibc 2.39)
# Usage: tests/device/pack.sh [GOLDEN_DIR]   (default ../shared/golden)
# Then, on the device (tests/device/README):
#   run(command="bash tests/device/run.sh build-device/pack", carry=["build-device/pack"])
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
golden=${1:-$root/../shared/golden}
build=$root/build-device/build
pack=$root/build-device/pack
stage=$root/build-device/stage
official_mirror=/work/.mirror/stepfun-ai+NextStep-1/repo
limit=$((64 * 1024 * 1024))

# The device's CUDA runtime and glibc are its own; GLib and friends are not
# installed there as development packages, so they travel.
skip_lib='^(linux-vdso|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|ld-linux|libcuda|libcudart|libcublas|libstdc\+\+|libgcc_s)'

programs=(engine/cli/nextstep tests/model/test-golden-cli tests/ops/test-cuda)
for t in memory linear linear-fused norm elementwise attention conv sampler grid-index; do
  programs+=("tests/ops/test-ops-$t")
done

build_all () {
  mkdir -p "$root/build-device"
  if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$root" -Dcuda=enabled -Dgpu_archs=90 -Dplugin=disabled -Dui=disabled \
      --buildtype=release > "$root/build-device/setup.log"
  fi
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
    if ! [[ $name =~ $skip_lib ]]; then cp -L "$path" "$stage/lib/$name"; fi
  done
}

stage_golden () {
  mkdir -p "$stage/golden"
  for case in t2i-tiny edit-tiny; do
    mkdir -p "$stage/golden/$case"
    cp -r "$golden/$case/model" "$golden/$case/vae" "$golden/$case/runs" "$stage/golden/$case/"
    cp "$golden/$case"/units.* "$stage/golden/$case/"
  done
  cp -r "$golden/tokenizer" "$golden/summary.json" "$golden/README.md" "$stage/golden/"
  chmod -R u+w "$stage/golden"
}

stage_official () {
  if [ -d "$official_mirror" ]; then
    mkdir -p "$stage/official"
    git -C "$official_mirror" archive HEAD nextstep | tar -x -C "$stage/official"
  fi
}

# glibc versions the packed binaries and libraries ask for (must be ≤ 2.39).
glibc_check () {
  local need
  need=$(for f in "$stage"/bin/* "$stage"/lib/*; do objdump -T "$f"; done \
         | grep -o 'GLIBC_[0-9.]*' | sort -u -V | tail -1)
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
  glibc_check | tee "$pack/manifest.txt"
  (cd "$stage" && find . -type f -printf '%s %p\n' | sort -k2) >> "$pack/manifest.txt"
  tar -C "$stage" -cf - . | xz -6 -T2 > "$pack/payload.tar.xz"
  local size
  size=$(du -cb "$pack" | tail -1 | cut -f1)
  echo "pack: $size bytes in $pack (limit $limit)" | tee -a "$pack/manifest.txt"
  [ "$size" -lt "$limit" ] || { echo "pack is over 64 MiB: drop a golden case" >&2; exit 1; }
}

main
