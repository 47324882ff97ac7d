#!/bin/bash
# setup.sh — the README's first command: on a fresh Debian 13 or Ubuntu 25.04
# with GIMP 3, install what gimp-nextstep needs, build it in ./build, install
# the `nextstep` tool (in /usr/local) and the GIMP plug-in, then run a demo
# that makes a tiny random-weight model and generates an image with it.
#
# Run it from the source folder, as root or as a user who may use sudo.
# As root the plug-in goes to root's own GIMP folder; run with sudo, it goes
# to GIMP's system plug-in folder so that no root-owned file lands in your
# home folder.
set -euo pipefail

cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
  plugin_install=user
else
  as_root=(sudo)
  plugin_install=system
fi

echo "== Installing the build dependencies (apt-get)"
mapfile -t packages < <(grep -v '^#' data/debian-packages.txt)
"${as_root[@]}" apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${packages[@]}"

echo "== Building in ./build"
if [ -f build/build.ninja ]; then
  meson setup --reconfigure build --prefix=/usr/local -Dplugin=enabled \
    -Dplugin_install="$plugin_install"
else
  meson setup build --prefix=/usr/local -Dplugin=enabled \
    -Dplugin_install="$plugin_install"
fi
meson compile -C build

echo "== Installing"
"${as_root[@]}" meson install -C build --no-rebuild

echo "== Demo: a tiny random-weight model and an image from it"
# The tiny model has random weights: the picture is noise-like, but it runs
# the whole pipeline (tokenizer, transformer, flow-matching head, VAE).
rm -rf build/demo
nextstep make-tiny build/demo/tiny-model
nextstep generate --model build/demo/tiny-model \
  --prompt "a lighthouse on a cliff at sunset" \
  --width 64 --height 64 --seed 42 -o build/demo/demo.png
echo "Done: 'nextstep' is installed, the GIMP plug-in is under" \
     "Filters > Generative > NextStep, and the demo image is build/demo/demo.png."
