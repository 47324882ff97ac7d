#!/bin/bash
# run-plugin-test.sh PLUGIN INTERPRETER SCRIPT — runs SCRIPT (python-fu-eval
# or plug-in-script-fu-eval) in a headless GIMP 3 that has only the plug-in
# PLUGIN installed, in a throw-away GIMP user folder, with tiny models made
# by `$NS_CLI make-tiny` (text-to-image) and `make-tiny --edit`. The script
# finds their folders in $NS_TINY_T2I / $NS_TINY_EDIT, or as @T2I@ / @EDIT@
# (replaced here, for Script-Fu). A script that names @SERVER@ gets the
# address of a `nextstep serve` with both models on 127.0.0.1, stopped at
# the end. It must print NEXTSTEP-TEST-OK at its end.
set -euo pipefail

plugin=$1 interpreter=$2 script=$3

if [ -z "$plugin" ]; then
  echo "SKIP: the GIMP plug-in is not built (needs gimp-3.0, gimpui-3.0 and GTK 3)"
  exit 77
fi
if ! command -v gimp-console-3.0 >/dev/null; then
  echo "SKIP: gimp-console-3.0 not found (GIMP 3 is needed, e.g. Debian 13's 'gimp' package)"
  exit 77
fi

home=$(mktemp -d "${TMPDIR:-/tmp}/nextstep-plugin-test.XXXXXX")
server_pid=
trap '[ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null; rm -rf "$home"' EXIT
# locale/: the catalog folder the plug-in's set_i18n names (as installed).
mkdir -p "$home/gimp/plug-ins/nextstep/locale" "$home/config" "$home/cache"
install -m 755 "$plugin" "$home/gimp/plug-ins/nextstep/nextstep"
export NS_TINY_T2I=$home/tiny-t2i NS_TINY_EDIT=$home/tiny-edit
"$NS_CLI" make-tiny "$NS_TINY_T2I" >/dev/null
"$NS_CLI" make-tiny --edit "$NS_TINY_EDIT" >/dev/null
server=
if grep -q '@SERVER@' "$script"; then
  # Made here: the background job opens its redirections only once it runs,
  # and the loop below may read before that on a busy machine.
  : > "$home/serve.out"
  "$NS_CLI" serve --port 0 --model "$NS_TINY_T2I" --edit-model "$NS_TINY_EDIT" --threads 1 \
    > "$home/serve.out" 2> "$home/serve.err" &
  server_pid=$!
  for _ in $(seq 600); do   # up to 60 s for the models to load
    server=$(sed -n 's/^Listening on //p' "$home/serve.out")
    [ -n "$server" ] || ! kill -0 "$server_pid" 2>/dev/null && break
    sleep 0.1
  done
  [ -n "$server" ] || { cat "$home/serve.err"; echo "FAIL: nextstep serve did not start"; exit 1; }
fi
sed -e "s|@T2I@|$NS_TINY_T2I|g" -e "s|@EDIT@|$NS_TINY_EDIT|g" -e "s|@SERVER@|$server|g" \
  "$script" > "$home/script"

log=$home/gimp.log
rc=0
# No model search outside the test's own folders.
NEXTSTEP_MODEL= HF_HUB_CACHE=$home/no-hub \
GIMP3_DIRECTORY=$home/gimp XDG_CONFIG_HOME=$home/config XDG_CACHE_HOME=$home/cache \
  timeout 150 gimp-console-3.0 -idf --batch-interpreter "$interpreter" -b - --quit \
  < "$home/script" > "$log" 2>&1 || rc=$?
cat "$log"

if [ "$rc" -ne 0 ]; then
  echo "FAIL: gimp-console-3.0 exited with code $rc (64: the script raised; 124: timed out)"
  exit 1
fi
if ! grep -q 'NEXTSTEP-TEST-OK' "$log"; then
  echo "FAIL: the script did not run to its end (no NEXTSTEP-TEST-OK)"
  exit 1
fi
# GIMP closes undo groups a plug-in left open, and says so.
if grep -q 'left image undo' "$log"; then
  echo "FAIL: the plug-in left an undo group open"
  exit 1
fi
