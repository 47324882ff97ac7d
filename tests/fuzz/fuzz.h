/* fuzz.h — every fuzz target defines the libFuzzer entry point. Built with
 * -Dfuzzing=true (clang) they are libFuzzer programs; otherwise they link
 * with replay.c and run a corpus once as ordinary regression tests. */
#pragma once

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
/* Optional one-time set-up, called by libFuzzer before the first input
 * (replay.c does not: targets that define it also set up lazily). */
int LLVMFuzzerInitialize (int *argc, char ***argv);
