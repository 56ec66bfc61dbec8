#!/usr/bin/env python3
"""PyTorch (Debian's python3-torch) building tensors from mounted files, compared with the originals.

    torch_load.py safetensors MOUNTED_DIR ORIGINAL_DIR SHARD [SHARD ...]
    torch_load.py checkpoint MOUNTED_FILE ORIGINAL_FILE

safetensors: the safetensors package is not in Debian 12, so this does what its torch backend does:
mmap the file and build each tensor with torch.frombuffer over the mapped bytes at the header's
data_offsets (dtype and shape from the header), for every tensor of every shard, on the mount and on
the original, and checks torch.equal on the raw bytes.
checkpoint: torch.load of a torch.save file (a zip archive read with seeks) from the mount and from
the original, compared tensor by tensor.
Prints "OK <tensors> <bytes>"; exits 1 on any difference.
"""

import json
import mmap
import os
import struct
import sys

import torch

DTYPE = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
         "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
         "U8": torch.uint8, "BOOL": torch.bool}


def load_safetensors(path):
    out = {}
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    base = 8 + n
    for name, info in header.items():
        begin, end = info["data_offsets"]
        if info["dtype"] in DTYPE:
            dtype, shape = DTYPE[info["dtype"]], info["shape"]
        else:  # F8 etc.: raw bytes
            dtype, shape = torch.uint8, [end - begin]
        if end == begin:
            t = torch.zeros(shape, dtype=dtype)
        else:
            # frombuffer wants a writable buffer; copy the mapped slice (still read through mmap).
            t = torch.frombuffer(bytearray(mm[base + begin:base + end]), dtype=dtype).reshape(shape)
        out[name] = t
    mm.close()
    return out


def same(a, b):
    def raw(t):  # bytes, so NaN payloads compare equal; reshape(-1) because 0-dim cannot view
        t = t.contiguous().reshape(-1)
        return t if t.dtype == torch.bool else t.view(torch.uint8)
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(raw(a), raw(b))


def compare(mine, ref, what):
    if mine.keys() != ref.keys():
        print("FAIL: %s: tensor names differ" % what)
        sys.exit(1)
    n = 0
    for k in mine:
        if not same(mine[k], ref[k]):
            print("FAIL: %s: tensor %s differs" % (what, k))
            sys.exit(1)
        n += mine[k].numel() * mine[k].element_size()
    return len(mine), n


def main():
    mode = sys.argv[1]
    count = nbytes = 0
    if mode == "safetensors":
        mounted, original, shards = sys.argv[2], sys.argv[3], sys.argv[4:]
        for s in shards:
            c, b = compare(load_safetensors(os.path.join(mounted, s)),
                           load_safetensors(os.path.join(original, s)), s)
            count, nbytes = count + c, nbytes + b
    elif mode == "checkpoint":
        mine = torch.load(sys.argv[2], map_location="cpu")
        ref = torch.load(sys.argv[3], map_location="cpu")
        count, nbytes = compare(mine, ref, sys.argv[2])
    else:
        print("FAIL: unknown mode " + mode)
        return 1
    print("OK %d %d" % (count, nbytes))
    return 0 if count > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
