#!/usr/bin/env python3
"""edit-safetensors.py FILE EDIT... — rewrites a safetensors file in place with
one tensor changed, to make the damaged model files the bad-input tests need:
  dtype:NAME:DTYPE     change a tensor's dtype (its data resized, zero-filled)
  shape:NAME:D0,D1,…   change a tensor's shape (its data resized, zero-filled)
  add:NAME             add a [4] BF16 tensor the model does not expect
"""
import json
import struct
import sys

SIZES = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "I32": 4, "I64": 8, "U8": 1, "I8": 1}


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", None)
    tensors = {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]])
               for k, v in header.items()}
    return meta, tensors


def save(path, meta, tensors):
    header, blobs, offset = ({"__metadata__": meta} if meta else {}), [], 0
    for name, (dtype, shape, blob) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def resized(dtype, shape):
    n = 1
    for d in shape:
        n *= d
    return dtype, shape, bytes(n * SIZES[dtype])


def main():
    path, edits = sys.argv[1], sys.argv[2:]
    meta, tensors = load(path)
    for edit in edits:
        kind, name, *rest = edit.split(":")
        if kind == "dtype":
            tensors[name] = resized(rest[0], tensors[name][1])
        elif kind == "shape":
            tensors[name] = resized(tensors[name][0], [int(d) for d in rest[0].split(",")])
        elif kind == "add":
            tensors[name] = resized("BF16", [4])
        else:
            sys.exit(f"edit-safetensors: unknown edit {edit}")
    save(path, meta, tensors)


if __name__ == "__main__":
    main()
