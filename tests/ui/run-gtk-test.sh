#!/bin/sh
# Runs a GTK test program ($@), under a virtual X server when there is no
# display; skips (77) when there is neither.
if [ -n "$DISPLAY" ] || [ -n "$WAYLAND_DISPLAY" ]; then
  exec "$@"
fi
if ! command -v xvfb-run >/dev/null 2>&1; then
  echo "No display and no xvfb-run (Debian package xvfb): skipping" >&2
  exit 77
fi
exec xvfb-run -a -s "-screen 0 1280x1024x24" "$@"
