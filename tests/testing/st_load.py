#!/usr/bin/env python3
"""Load every tensor of a safetensors model directory, the way a loader would (stdlib only).

    st_load.py DIR [--manifest MANIFEST --commit C] [--mmap] [--order file|random] [--json] [--seed N]

Finds model.safetensors.index.json (else every *.safetensors in DIR), parses each shard's header
(8-byte little-endian length + JSON), checks dtype/shape/data_offsets consistency (offsets contiguous,
inside the file, size = prod(shape) * dtype size), then reads every tensor with read() (or slices of an
mmap with --mmap). With --manifest, also SHA-256-checks each shard against the manifest entry of the
commit (--commit, default: the manifest's default branch). numpy.frombuffer is used only if importable.
Prints tensors loaded, bytes, seconds, MB/s; exits non-zero on any error.
"""

import argparse
import hashlib
import json
import mmap
import os
import random
import struct
import sys
import time

try:
    import numpy as np  # optional
except ImportError:
    np = None

DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4,
              "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
NP_DTYPE = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
            "U8": "u1", "BOOL": "?"}
MAX_HEADER = 100 * 1024 * 1024


class LoadError(Exception):
    pass


def parse_header(f, fsize, name):
    raw = f.read(8)
    if len(raw) != 8:
        raise LoadError("%s: file shorter than 8 bytes" % name)
    (hlen,) = struct.unpack("<Q", raw)
    if hlen > MAX_HEADER or 8 + hlen > fsize:
        raise LoadError("%s: header length %d invalid for file size %d" % (name, hlen, fsize))
    hb = f.read(hlen)
    if len(hb) != hlen:
        raise LoadError("%s: short read of header" % name)
    try:
        header = json.loads(hb.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise LoadError("%s: header is not JSON: %s" % (name, e))
    meta = header.pop("__metadata__", None)
    base = 8 + hlen
    tensors = []
    for tname, t in header.items():
        try:
            dtype, shape, (a, b) = t["dtype"], t["shape"], t["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise LoadError("%s: tensor %s has a malformed entry" % (name, tname))
        if dtype not in DTYPE_SIZE:
            raise LoadError("%s: tensor %s has unknown dtype %s" % (name, tname, dtype))
        n = DTYPE_SIZE[dtype]
        for d in shape:
            n *= d
        if b - a != n or a < 0:
            raise LoadError("%s: tensor %s data_offsets %r do not match %s%r" % (name, tname, [a, b], dtype, shape))
        tensors.append((a, b, tname, dtype, shape))
    tensors.sort()
    pos = 0
    for a, b, tname, _, _ in tensors:
        if a != pos:
            raise LoadError("%s: tensor %s starts at %d, expected %d (gap or overlap)" % (name, tname, a, pos))
        pos = b
    if base + pos != fsize:
        raise LoadError("%s: data ends at %d but file size is %d" % (name, base + pos, fsize))
    return meta, base, tensors


def find_shards(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            index = json.load(f)
        wm = index["weight_map"]
        shards = sorted(set(wm.values()))
        return shards, wm, index.get("metadata", {}).get("total_size")
    shards = sorted(p for p in os.listdir(d) if p.endswith(".safetensors"))
    if not shards:
        raise LoadError("no model.safetensors.index.json and no *.safetensors in %s" % d)
    return shards, None, None


def load(args):
    d = args.dir
    shards, weight_map, total_size = find_shards(d)
    expected = None
    if args.manifest:
        with open(args.manifest) as f:
            m = json.load(f)
        commit = args.commit or m["refs"][m.get("default_branch", "main")]
        if commit not in m["commits"]:
            commit = m["refs"].get(commit, commit)
        expected = {e["path"]: e for e in m["commits"][commit]["files"]}
    rng = random.Random(args.seed)
    n_tensors = 0
    n_bytes = 0
    data_total = 0
    seen = {}
    errors = []
    checksum = 0
    hash_secs = 0.0
    t0 = time.monotonic()
    for shard in shards:
        path = os.path.join(d, shard)
        try:
            fsize = os.path.getsize(path)
            with open(path, "rb", buffering=0) as f:
                meta, base, tensors = parse_header(f, fsize, shard)
                if meta is not None and not isinstance(meta, dict):
                    raise LoadError("%s: __metadata__ is not an object" % shard)
                order = list(tensors)
                if args.order == "random":
                    rng.shuffle(order)
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if args.mmap and fsize else None
                try:
                    for a, b, tname, dtype, shape in order:
                        if tname in seen:
                            raise LoadError("tensor %s in both %s and %s" % (tname, seen[tname], shard))
                        seen[tname] = shard
                        if weight_map is not None and weight_map.get(tname) != shard:
                            raise LoadError("%s: tensor %s maps to %r in the index" % (shard, tname,
                                                                                   weight_map.get(tname)))
                        if mm is not None:
                            buf = mm[base + a:base + b]
                        else:
                            f.seek(base + a)
                            buf = f.read(b - a)
                        if len(buf) != b - a:
                            raise LoadError("%s: short read of %s (%d of %d bytes)" % (shard, tname, len(buf), b - a))
                        if np is not None and dtype in NP_DTYPE and len(buf):
                            arr = np.frombuffer(buf, dtype=NP_DTYPE[dtype]).reshape(shape)
                            # Last byte of the tensor's data, whatever its shape (view("u1") on an
                            # n-d array only reinterprets the last axis).
                            checksum ^= int(arr.reshape(-1).view("u1")[-1]) if arr.size else 0
                        elif buf:
                            checksum ^= buf[-1]  # touch the data
                        n_tensors += 1
                        n_bytes += b - a
                        data_total += b - a
                finally:
                    if mm is not None:
                        mm.close()
            if expected is not None:
                e = expected.get(shard)
                if e is None:
                    raise LoadError("%s: not in manifest" % shard)
                if e["size"] != fsize:
                    raise LoadError("%s: size %d != manifest %d" % (shard, fsize, e["size"]))
                th = time.monotonic()
                h = hashlib.sha256()
                with open(path, "rb") as f2:
                    while True:
                        c = f2.read(8 << 20)
                        if not c:
                            break
                        h.update(c)
                hash_secs += time.monotonic() - th
                if e.get("sha256") and h.hexdigest() != e["sha256"]:
                    raise LoadError("%s: sha256 %s != manifest %s" % (shard, h.hexdigest(), e["sha256"]))
        except (LoadError, OSError) as e:
            errors.append(str(e))
    if weight_map is not None:
        missing = sorted(set(weight_map) - set(seen))
        if missing:
            errors.append("index lists %d tensors not found in shards, e.g. %s" % (len(missing), missing[0]))
        extra = sorted(set(seen) - set(weight_map))
        if extra:
            errors.append("%d tensors are not in the index weight_map, e.g. %s" % (len(extra), extra[0]))
        if total_size is not None and total_size != data_total and not errors:
            errors.append("index metadata.total_size %d != sum of tensor bytes %d" % (total_size, data_total))
    secs = time.monotonic() - t0 - hash_secs  # load time only, without the SHA-256 check
    return {"ok": not errors, "errors": errors, "shards": len(shards), "tensors": n_tensors, "bytes": n_bytes,
            "seconds": round(secs, 4), "mb_per_s": round(n_bytes / 1e6 / secs, 1) if secs > 0 else None,
            "mmap": bool(args.mmap), "order": args.order, "verified_sha256": expected is not None,
            "numpy": np is not None, "checksum": checksum,
            "sha256_seconds": round(hash_secs, 4)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--manifest", help="manifest.json from gen_repo.py: SHA-256-check each shard")
    ap.add_argument("--commit", help="commit (or ref) of the manifest to check against; default main")
    ap.add_argument("--mmap", action="store_true", help="read tensors as slices of an mmap")
    ap.add_argument("--order", choices=["file", "random"], default="file")
    ap.add_argument("--seed", type=int, default=0, help="seed for --order random")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    try:
        r = load(args)
    except (LoadError, OSError, ValueError, KeyError) as e:
        r = {"ok": False, "errors": [str(e)]}
    if args.json:
        print(json.dumps(r))
    else:
        for e in r.get("errors", []):
            print("error: %s" % e, file=sys.stderr)
        if "tensors" in r:
            print("%d tensors from %d shards, %d bytes, %.3f s, %s MB/s%s" % (
                r["tensors"], r["shards"], r["bytes"], r["seconds"], r["mb_per_s"],
                ", sha256 verified" if r["verified_sha256"] and r["ok"] else ""))
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
