#!/bin/bash
# run-in-gimp.sh PLUGIN SCRIPT.py — run a python-fu-eval script in a headless
# GIMP that has only the plug-in PLUGIN installed, in a temporary GIMP user
# folder (GIMP3_DIRECTORY), so the user's own GIMP set-up is never touched.
# HOME is temporary too and the model search variables are unset, so no real
# model is found: a script that wants one passes the "model" argument.
# The script must print "NEXTSTEP-TEST-OK" as its last act; anything else
# (a Python exception gives GIMP exit code 64) fails the test.
set -euo pipefail

plugin=$1
script=$2

if [ -z "$plugin" ]; then
  echo "SKIP: the GIMP plug-in is not built (meson option -Dplugin)"
  exit 77
fi
if ! command -v gimp-console-3.0 >/dev/null; then
  echo "SKIP: gimp-console-3.0 not found (GIMP 3 is needed, e.g. Debian 13's 'gimp' package)"
  exit 77
fi

home=$(mktemp -d "${TMPDIR:-/tmp}/nextstep-gimp-test.XXXXXX")
trap 'rm -rf "$home"' EXIT
mkdir -p "$home/gimp/plug-ins/nextstep" "$home/config" "$home/cache"
install -m 755 "$plugin" "$home/gimp/plug-ins/nextstep/nextstep"

log=$home/gimp.log
rc=0
unset NEXTSTEP_MODEL HF_HOME HF_HUB_CACHE
HOME=$home GIMP3_DIRECTORY=$home/gimp XDG_CONFIG_HOME=$home/config XDG_CACHE_HOME=$home/cache \
  timeout 150 gimp-console-3.0 -idf --batch-interpreter python-fu-eval -b - --quit \
  < "$script" > "$log" 2>&1 || rc=$?
cat "$log"

if [ "$rc" -ne 0 ]; then
  echo "FAIL: gimp-console-3.0 exited with code $rc (64: the script raised; 124: timed out)"
  exit 1
fi
if ! grep -qx 'NEXTSTEP-TEST-OK' "$log"; then
  echo "FAIL: the script did not run to its end (no NEXTSTEP-TEST-OK line)"
  exit 1
fi
