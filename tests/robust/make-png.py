#!/usr/bin/env python3
"""make-png.py OUT WIDTH HEIGHT — writes a grey RGBA PNG. Pictures over 4096
pixels a side get only their first rows of data: enough for a reader that
checks the size in the header first, without writing gigabytes."""
import struct
import sys
import zlib


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def main():
    out, width, height = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    row = b"\0" + b"\x80\x80\x80\xff" * width
    rows = height if max(width, height) <= 4096 else 1
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    with open(out, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                + chunk(b"IDAT", zlib.compress(row * rows)) + chunk(b"IEND", b""))


if __name__ == "__main__":
    main()
