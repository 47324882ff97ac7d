#!/bin/bash
# run-gui-test.sh PLUGIN SCRIPT [wm] — runs the python-fu-eval SCRIPT as a batch
# command inside the GUI gimp-3.0, on a private Xvfb display, with only the
# plug-in PLUGIN installed in a throw-away GIMP user folder and a tiny
# text-to-image model made by `$NS_CLI make-tiny` (its folder is in
# $NS_TINY_T2I). The script may drive the GUI with xdotool while it runs; it
# must print NEXTSTEP-TEST-OK at its end. With "wm", a window manager
# (openbox) runs on the display, as on a desktop: windows get focus, stay
# over their parent and remember their place. $NS_GUI_TIMEOUT bounds GIMP
# (seconds, default 110). Skips (exit 77) where GIMP 3, Xvfb, xdotool or the
# window manager asked for is missing, e.g. on Debian 12.
set -euo pipefail

plugin=$1 script=$2 wm=${3:-}
tools=(gimp-3.0 Xvfb xdotool)
if [ "$wm" = wm ]; then tools+=(openbox); fi

if [ -z "$plugin" ]; then
  echo "SKIP: the GIMP plug-in is not built (needs gimp-3.0, gimpui-3.0 and GTK 3)"
  exit 77
fi
for tool in "${tools[@]}"; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIP: $tool not found (Debian 13 packages: gimp, xvfb, xdotool, openbox)"
    exit 77
  fi
done

home=$(mktemp -d "${TMPDIR:-/tmp}/nextstep-gui-test.XXXXXX")
xvfb= wm_pid=
cleanup() {
  if [ -n "$wm_pid" ]; then kill "$wm_pid" 2>/dev/null || true; fi
  if [ -n "$xvfb" ]; then kill "$xvfb" 2>/dev/null || true; fi
  rm -rf "$home"
}
trap cleanup EXIT
# locale/: the catalog folder the plug-in's set_i18n names (as installed).
mkdir -p "$home/gimp/plug-ins/nextstep/locale" "$home/config" "$home/cache"
install -m 755 "$plugin" "$home/gimp/plug-ins/nextstep/nextstep"
# The first start of a GIMP version opens a Welcome dialog over the image.
echo '(show-welcome-dialog no)' > "$home/gimp/gimprc"
export NS_TINY_T2I=$home/tiny-t2i
"$NS_CLI" make-tiny "$NS_TINY_T2I" >/dev/null

# Xvfb picks a free display and writes its number once it accepts clients.
Xvfb -displayfd 3 -screen 0 1280x1024x24 -nolisten tcp \
  3>"$home/display" >"$home/xvfb.log" 2>&1 &
xvfb=$!
for _ in $(seq 100); do
  [ -s "$home/display" ] && break
  sleep 0.1
done
if [ ! -s "$home/display" ]; then
  cat "$home/xvfb.log"
  echo "FAIL: Xvfb did not start"
  exit 1
fi
export DISPLAY=:$(head -n 1 "$home/display")
if [ "$wm" = wm ]; then
  # openbox's default configuration, not the user's. It takes the screen
  # within a moment; a window mapped before would only lack decorations.
  XDG_CONFIG_HOME=$home/config openbox --sm-disable >"$home/wm.log" 2>&1 &
  wm_pid=$!
  sleep 1
  if ! kill -0 "$wm_pid" 2>/dev/null; then
    cat "$home/wm.log"
    echo "FAIL: openbox did not start"
    exit 1
  fi
fi

log=$home/gimp.log
rc=0
# -n: never hand the batch over to a GIMP already running on the session bus.
# No model search outside the test's own folders; with NS_GUI_FIND_TINY=1
# the plug-in finds the tiny model as a user's $NEXTSTEP_MODEL.
model=
if [ "${NS_GUI_FIND_TINY:-}" = 1 ]; then model=$NS_TINY_T2I; fi
NEXTSTEP_MODEL=$model HF_HUB_CACHE=$home/no-hub \
GIMP3_DIRECTORY=$home/gimp XDG_CONFIG_HOME=$home/config XDG_CACHE_HOME=$home/cache \
  timeout "${NS_GUI_TIMEOUT:-110}" gimp-3.0 -n -df -s --batch-interpreter python-fu-eval -b - --quit \
  < "$script" > "$log" 2>&1 || rc=$?
cat "$log"

if [ "$rc" -ne 0 ]; then
  echo "FAIL: gimp-3.0 exited with code $rc (64: the script raised; 124: timed out)"
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
