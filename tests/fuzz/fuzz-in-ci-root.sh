#!/bin/bash
# fuzz-in-ci-root.sh ROOT SECONDS [TARGET...] — fuzzing where users run the
# program: inside the Debian 13 root that `CI_ROOTFS=ROOT bash .ci/run`
# builds (its json-glib and GLib, not the host's). Mounts /proc, /dev, this
# source tree and the golden data into ROOT at their own paths, builds the
# fuzz targets there with clang (build-fuzzers.sh; build folder
# /var/tmp/ns-fuzz-build in the root), runs run-fuzzers.sh there, and
# unmounts what it mounted on every exit. Needs root (mount, chroot).
# Environment: NS_GOLDEN_DIR (default ../shared/golden beside the source
# tree), NS_FUZZ_WORK (a folder inside the root, default
# /var/tmp/ns-fuzz-work: its logs and crash files are under ROOT then),
# NS_FUZZ_JOBS (ninja jobs, default 2). The exit status is run-fuzzers.sh's.
set -euo pipefail

root=$(cd "${1:?usage: fuzz-in-ci-root.sh ROOT SECONDS [TARGET...]}" && pwd -P)
seconds=${2:?usage: fuzz-in-ci-root.sh ROOT SECONDS [TARGET...]}
shift 2
src=$(cd "$(dirname "$0")/../.." && pwd -P)
golden=${NS_GOLDEN_DIR:-$src/../shared/golden}
work=${NS_FUZZ_WORK:-/var/tmp/ns-fuzz-work}

[ "$(id -u)" -eq 0 ] || { echo "fuzz-in-ci-root: must run as root (mount, chroot)" >&2; exit 2; }
[ -f "$root/etc/nextstep-ci-root" ] \
  || { echo "fuzz-in-ci-root: $root is no CI root; make one with CI_ROOTFS=$root bash .ci/run" >&2; exit 2; }

mounted=()
cleanup() {
  local i
  for (( i=${#mounted[@]}-1; i>=0; i-- )); do
    umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" \
      || echo "fuzz-in-ci-root: could not unmount ${mounted[i]}" >&2
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount_at() {  # mount_at SOURCE TARGET [ro] — bind mount; proc for "proc"
  mkdir -p "$2"
  if [ "$1" = proc ]; then
    mount -t proc proc "$2"
  else
    mount --bind "$1" "$2"
    mount --make-private "$2"
  fi
  mounted+=("$2")
  if [ "${3:-}" = ro ]; then
    mount -o remount,bind,ro "$2"
  fi
}

mount_at proc "$root/proc"
mount_at /dev "$root/dev"
mount_at "$src" "$root$src"
if [ -d "$golden" ]; then
  golden=$(cd "$golden" && pwd -P)
  mount_at "$golden" "$root$golden" ro
fi

chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  NS_GOLDEN_DIR="$golden" NS_FUZZ_WORK="$work" NS_FUZZ_JOBS="${NS_FUZZ_JOBS:-2}" \
  /bin/bash -c '
    set -e
    cd "$0"
    echo "fuzz-in-ci-root: $(. /etc/os-release && echo "$PRETTY_NAME"), json-glib $(pkg-config --modversion json-glib-1.0), GLib $(pkg-config --modversion glib-2.0), $(clang --version | head -1)"
    tests/fuzz/build-fuzzers.sh /var/tmp/ns-fuzz-build
    NS_FUZZ_BUILD=/var/tmp/ns-fuzz-build tests/fuzz/run-fuzzers.sh "$@"' \
  "$src" "$seconds" "$@" < /dev/null
