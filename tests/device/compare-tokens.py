#!/usr/bin/env python3
"""Compares the `tokens` tensor of two `nextstep generate --save-tokens`
files (same seed, two backends): prints max |a - b| / max |a| and exits 1
above the bound. Standard library only (the device has no numpy promise)."""
import json
import struct
import sys


def tokens(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        t = header["tokens"]
        assert t["dtype"] == "F32", t["dtype"]
        f.seek(8 + n + t["data_offsets"][0])
        raw = f.read(t["data_offsets"][1] - t["data_offsets"][0])
    return struct.unpack("<%df" % (len(raw) // 4), raw)


def main():
    a, b, bound = tokens(sys.argv[1]), tokens(sys.argv[2]), float(sys.argv[3])
    if len(a) != len(b):
        print("tokens differ in size: %d vs %d" % (len(a), len(b)))
        return 1
    ref = max(abs(x) for x in a) or 1.0
    diff = max(abs(x - y) if x == x and y == y else float("inf") for x, y in zip(a, b))
    rel = diff / ref
    print("tokens: %d values, max rel difference %.3g (bound %.3g)" % (len(a), rel, bound))
    return 0 if rel <= bound else 1


if __name__ == "__main__":
    sys.exit(main())
