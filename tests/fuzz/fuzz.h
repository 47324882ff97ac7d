/* fuzz.h — every fuzz target defines the libFuzzer entry point. Built with
 * -Dfuzzing=true (clang) they are libFuzzer programs; otherwise they link
 * with replay.c and run a corpus once as ordinary regression tests. */
#pragma once

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
