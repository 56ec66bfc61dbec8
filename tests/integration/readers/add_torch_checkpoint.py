#!/usr/bin/env python3
"""Adds a torch.save checkpoint (pytorch_model.bin) to a repo written by tests/testing/gen_repo.py.

    add_torch_checkpoint.py REPO_DIR

Writes commits/<main commit>/pytorch_model.bin (a state dict of float32, bfloat16, int64 and bool
tensors plus a 0-dim one, made with a fixed seed) and lists it in manifest.json as an LFS file
(SHA-256 of the content, git blob id of its LFS pointer), so the fake hub started afterwards serves
it like any other weight file. Prints the checkpoint's path.
"""

import hashlib
import json
import os
import sys

import torch


def main():
    repo_dir = sys.argv[1]
    mpath = os.path.join(repo_dir, "manifest.json")
    with open(mpath) as f:
        manifest = json.load(f)
    head = manifest["refs"]["main"]
    rel = os.path.join("commits", head, "pytorch_model.bin")
    path = os.path.join(repo_dir, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    g = torch.Generator().manual_seed(1234)
    state = {
        "embed.weight": torch.randn(1000, 256, generator=g),             # 1 MB: several FUSE reads
        "layer.0.weight": torch.randn(512, 512, generator=g).to(torch.bfloat16),
        "layer.0.bias": torch.randn(512, generator=g),
        "positions": torch.arange(4096, dtype=torch.int64),
        "mask": torch.rand(333, generator=g) > 0.5,
        "scale": torch.tensor(0.125),
    }
    torch.save(state, path)
    with open(path, "rb") as f:
        data = f.read()
    sha = hashlib.sha256(data).hexdigest()
    pointer = ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n"
               % (sha, len(data))).encode()
    git_oid = hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()
    files = manifest["commits"][head]["files"]
    files.append({"path": "pytorch_model.bin", "size": len(data), "git_oid": git_oid, "sha256": sha,
                  "lfs": True, "pointer_size": len(pointer), "content": rel})
    files.sort(key=lambda e: e["path"])
    with open(mpath + ".tmp", "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(mpath + ".tmp", mpath)
    print(path)


if __name__ == "__main__":
    main()
