#!/bin/bash
# leak-check.sh — a complete CLI generation (make-tiny model, 32×32, two
# steps, one thread) checked for leaks: any definitely lost block fails.
# The checker, fastest first: the ASan build's own LeakSanitizer; gcc's
# stand-alone LeakSanitizer (liblsan) preloaded; valgrind --leak-check=full
# (about 1.5 CPU minutes here). Exit 77 = skip, when none is available.
set -uo pipefail

cli=${NS_CLI:?NS_CLI is not set (meson sets it)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$cli" make-tiny "$tmp/model" >/dev/null || { echo "make-tiny failed" >&2; exit 1; }
args=(generate --model "$tmp/model" --prompt "a red fox" --width 32 --height 32 --steps 2
      --threads 1 -o "$tmp/out.png")
lsan=$(gcc -print-file-name=liblsan.so 2>/dev/null || true)
# Full stacks, so that a report names the engine function that leaked.
export LSAN_OPTIONS=fast_unwind_on_malloc=0:exitcode=23

if grep -qa __asan_init "$cli"; then
  echo "checking with the ASan build's LeakSanitizer"
  ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 "$cli" "${args[@]}" || exit 1
elif [ -f "$lsan" ]; then
  echo "checking with $lsan"
  LD_PRELOAD=$lsan "$cli" "${args[@]}" || exit 1
elif command -v valgrind >/dev/null; then
  echo "checking with valgrind"
  # OpenMP keeps its worker threads' memory until exit: only definitely
  # lost blocks count as leaks.
  OMP_NUM_THREADS=1 valgrind -q --leak-check=full --errors-for-leak-kinds=definite \
    --error-exitcode=1 "$cli" "${args[@]}" || exit 1
else
  echo "no leak checker: install gcc's liblsan0 or valgrind"
  exit 77
fi
[ -s "$tmp/out.png" ] || { echo "no picture written" >&2; exit 1; }
echo "no leaks"
