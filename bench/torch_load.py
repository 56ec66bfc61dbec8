#!/usr/bin/env python3
"""Load every tensor of a safetensors model directory into torch tensors, the way a plain
(non-mmap) loader does: for each shard, read the 8-byte header length and the JSON header, then
read each tensor's bytes with read() in file order and build it with torch.frombuffer.

    torch_load.py DIR

Shards come from model.safetensors.index.json (else every *.safetensors in DIR). Prints one JSON
object: ok, shards, tensors, bytes (tensor data), seconds (from the first shard's open to the last
tensor built: without interpreter start, `import torch` and the index read, like st_load.py),
import_seconds. Exits 1 on an error. Used by bench/far.py (row "whole-repo load, torch").
"""
import json
import os
import struct
import sys
import time

t_import = time.monotonic()
import torch  # noqa: E402

IMPORT_SECONDS = time.monotonic() - t_import
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
          "U8": torch.uint8, "BOOL": torch.bool}


def find_shards(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            return sorted(set(json.load(f)["weight_map"].values()))
    return sorted(p for p in os.listdir(d) if p.endswith(".safetensors"))


def read_exact(f, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            raise IOError("short read: %d of %d bytes" % (got, n))
        got += k
    return buf


def main():
    d = sys.argv[1]
    shards = find_shards(d)
    state = {}
    nbytes = 0
    t0 = time.monotonic()
    for shard in shards:
        with open(os.path.join(d, shard), "rb", buffering=0) as f:
            (hlen,) = struct.unpack("<Q", read_exact(f, 8))
            header = json.loads(bytes(read_exact(f, hlen)))
            header.pop("__metadata__", None)
            pos = 0
            for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
                a, b = t["data_offsets"]
                if a != pos:  # contiguous in a valid file; seek if not
                    f.seek(8 + hlen + a)
                buf = read_exact(f, b - a)
                pos = b
                dtype = DTYPES[t["dtype"]]
                if b > a:
                    state[name] = torch.frombuffer(buf, dtype=dtype).reshape(t["shape"])
                else:
                    state[name] = torch.empty(t["shape"], dtype=dtype)
                nbytes += b - a
    secs = time.monotonic() - t0
    print(json.dumps({"ok": True, "shards": len(shards), "tensors": len(state), "bytes": nbytes,
                      "seconds": round(secs, 4), "import_seconds": round(IMPORT_SECONDS, 3),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one JSON line for far.py either way
        print(json.dumps({"ok": False, "errors": ["%s: %s" % (type(e).__name__, e)]}))
        sys.exit(1)
