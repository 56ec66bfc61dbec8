#!/usr/bin/env python3
"""numpy.memmap of every tensor of every safetensors shard, compared with the original file.

    numpy_memmap.py MOUNTED_DIR ORIGINAL_DIR SHARD [SHARD ...]

For each shard, parses the safetensors header from the MOUNTED file (8-byte little-endian length N,
then N bytes of JSON), maps each tensor with numpy.memmap(offset=8+N+begin, shape, dtype) from the
mount and from ORIGINAL_DIR (the fake hub's copy), and checks that the two arrays are identical
(byte-wise, so NaN payloads count). BF16 and F8 have no numpy dtype and are mapped as raw bytes of
the right length. Prints "OK <tensors> <bytes>"; exits 1 on the first difference.
"""

import json
import os
import struct
import sys

import numpy as np

NP_DTYPE = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
            "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?"}
RAW_SIZE = {"BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}


def tensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return 8 + n, header


def memmap(path, base, info):
    begin, end = info["data_offsets"]
    shape = tuple(info["shape"])
    if info["dtype"] in NP_DTYPE:
        dtype = np.dtype(NP_DTYPE[info["dtype"]])
    else:
        dtype = np.dtype("u1")
        shape = (end - begin,)
    if end == begin:
        return np.zeros(shape, dtype)
    a = np.memmap(path, dtype=dtype, mode="r", offset=base + begin, shape=shape)
    if a.nbytes != end - begin:
        raise SystemExit("FAIL: %s: %d bytes mapped, header says %d" % (path, a.nbytes, end - begin))
    return a


def main():
    mounted, original, shards = sys.argv[1], sys.argv[2], sys.argv[3:]
    count = nbytes = 0
    for shard in shards:
        mpath, opath = os.path.join(mounted, shard), os.path.join(original, shard)
        base, header = tensors(mpath)
        if tensors(opath) != (base, header):
            print("FAIL: %s: header differs from the original" % shard)
            return 1
        for name, info in header.items():
            a, b = memmap(mpath, base, info), memmap(opath, base, info)
            if a.shape != b.shape or a.tobytes() != b.tobytes():
                print("FAIL: %s: tensor %s differs" % (shard, name))
                return 1
            count += 1
            nbytes += a.nbytes
    print("OK %d %d" % (count, nbytes))
    return 0 if count > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
