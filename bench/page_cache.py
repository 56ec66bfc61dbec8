#!/usr/bin/env python3
"""Warm reads from the page cache (issue 14, target 2): modelfs against the same file on the local
filesystem and against another FUSE filesystem, squashfuse_ll (libfuse 3, Debian's squashfuse),
all three already in the page cache. Interleaved rounds: `dd bs=BS` of each in turn; medians.

The squashfuse row is the kernel's FUSE page-cache path without modelfs: a read that the page
cache answers never reaches either daemon, so what separates FUSE from the local file there is the
kernel's. Needs root; run through bench/page_cache.sh (installs squashfuse and squashfs-tools).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from bench import TESTING, log  # noqa: E402

REPO = "bench/pagecache"


def dd_gbps(path, bs):
    """One `dd` of the whole file; GB/s from its byte count and our own clock."""
    t0 = time.monotonic()
    r = subprocess.run(["dd", "if=" + path, "of=/dev/null", "bs=" + bs], capture_output=True, text=True)
    t = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError("dd %s: %s" % (path, r.stderr))
    return os.path.getsize(path) / t / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/modelfs-pagecache-bench")
    ap.add_argument("--size", default="512MiB", help="the shard's size")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--bs", action="append", default=None, help="read sizes (repeatable); default 1M and 128K")
    ap.add_argument("--hub-port", type=int, default=19600)
    a = bench.local_args(ap, "page_cache", "FUSE")
    binary = bench.modelfs_binary()
    os.makedirs(a.dir, exist_ok=True)
    root = os.path.join(a.dir, "hub")
    if not os.path.exists(os.path.join(root, "models", REPO, "manifest.json")):
        subprocess.run(["python3", os.path.join(TESTING, "gen_repo.py"), "--root", root, "--repo", REPO,
                        "--total-size", a.size, "--shards", "1", "--quiet"], check=True)
    import json
    m = json.load(open(os.path.join(root, "models", REPO, "manifest.json")))
    shard = [f for f in m["commits"][m["refs"]["main"]]["files"] if f["lfs"]][0]
    local = os.path.join(root, "models", REPO, shard["content"])
    # The same bytes in an uncompressed squashfs image, mounted by squashfuse_ll.
    sq_src, img, sq_mnt = (os.path.join(a.dir, x) for x in ("sq", "img.sqfs", "sqmnt"))
    if not os.path.exists(img):
        os.makedirs(sq_src, exist_ok=True)
        shutil.copy(local, os.path.join(sq_src, "shard"))
        subprocess.run(["mksquashfs", sq_src, img, "-noI", "-noId", "-noD", "-noF", "-noX", "-quiet"],
                       check=True, stdout=subprocess.DEVNULL)
    os.makedirs(sq_mnt, exist_ok=True)
    subprocess.run(["fusermount3", "-u", "-z", sq_mnt], capture_output=True)
    subprocess.run(["squashfuse_ll", img, sq_mnt], check=True)
    hub = bench.Hub(root, a.dir, False, a)
    mount = None
    try:
        cache = os.path.join(a.dir, "cache")
        shutil.rmtree(cache, ignore_errors=True)
        mount = bench.Mount(binary, hub.endpoint, cache, os.path.join(a.dir, "mnt"))
        paths = {"local file": local, "squashfuse_ll": os.path.join(sq_mnt, "shard"),
                 "modelfs": os.path.join(mount.mnt, REPO, shard["path"])}
        for p in paths.values():  # into the page cache (modelfs: fetched, verified, kept)
            bench.read_file(p)
        time.sleep(1)
        for p in paths.values():
            bench.read_file(p)
        print("| read size | local file (GB/s) | squashfuse_ll | modelfs | modelfs / local | modelfs / squashfuse |")
        print("|---|---|---|---|---|---|")
        for bs in a.bs or ["1M", "128K"]:
            got = {k: [] for k in paths}
            for _ in range(a.rounds):
                for k, p in paths.items():
                    got[k].append(dd_gbps(p, bs))
            med = {k: statistics.median(v) for k, v in got.items()}
            log("page_cache: bs=%s %s" % (bs, "  ".join("%s %s" % (k, " ".join("%.1f" % x for x in v))
                                                        for k, v in got.items())))
            print("| %s | %.1f | %.1f | %.1f | %.2fx | %.2fx |" % (
                bs, med["local file"], med["squashfuse_ll"], med["modelfs"],
                med["modelfs"] / med["local file"], med["modelfs"] / med["squashfuse_ll"]))
    finally:
        if mount:
            mount.close()
        hub.stop()
        subprocess.run(["fusermount3", "-u", sq_mnt], capture_output=True)


if __name__ == "__main__":
    main()
