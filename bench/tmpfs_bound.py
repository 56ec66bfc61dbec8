#!/usr/bin/env python3
"""Cold reads with the cache on tmpfs against what the HTTP transfer alone reaches (issue 14,
target 5): interleaved rounds of `curl -o /dev/shm/x` of a shard's CDN URL (nginx on loopback),
the same piped through `tee /dev/shm/x | sha256sum` (the transfer plus the hash modelfs must do),
and a cold modelfs read of the shard with --cache-dir on /dev/shm. Page cache dropped before each.

    MODELFS_BIN=... python3 bench/tmpfs_bound.py ROUNDS   (root; generates its repo, 1 GiB in 2 shards,
                                                         in /tmp/tmpfsb the first time)
"""
import sys, os, subprocess, time, argparse, shutil, statistics
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench
a = argparse.Namespace(hub_port=19700, rtt_ms=0, link_mbit=0, per_conn_rate="0")
d = "/tmp/tmpfsb"; os.makedirs(d, exist_ok=True)
repo, path = "bench/tmpfs-model", "model-00001-of-00002.safetensors"
root = os.path.join(d, "hub")
if not os.path.exists(os.path.join(root, "models", repo, "manifest.json")):
    subprocess.run(["python3", os.path.join(bench.TESTING, "gen_repo.py"), "--root", root, "--repo", repo,
                    "--total-size", "1GiB", "--shards", "2", "--quiet"], check=True)
hub = bench.Hub(root, d, False, a)
url = hub.cdn_url(repo, path)
import glob
size = os.path.getsize(glob.glob(os.path.join(root, "models", repo, "commits", "*", path))[0])
res = {}
def t(name, fn):
    bench.drop_caches(); t0 = time.monotonic(); fn(); s = time.monotonic() - t0
    res.setdefault(name, []).append(size / s / 1e6)
def modelfs():
    cache = "/dev/shm/mfscache"; shutil.rmtree(cache, ignore_errors=True)
    m = bench.Mount(bench.modelfs_binary(),
                    hub.endpoint, cache, d + "/mnt")
    try:
        t("modelfs, cache on tmpfs", lambda: bench.read_file(d + "/mnt/" + repo + "/" + path))
    finally:
        m.close(); shutil.rmtree(cache, ignore_errors=True)
try:
    for r in range(int(sys.argv[1])):
        t("curl -o tmpfs", lambda: subprocess.run(["curl", "-s", "-o", "/dev/shm/x", url], check=True))
        t("curl | tee tmpfs | sha256sum", lambda: subprocess.run("curl -s '%s' | tee /dev/shm/x | sha256sum >/dev/null" % url, shell=True, check=True))
        modelfs()
    for k, v in res.items(): print("%-32s median %6.0f MB/s  (%s)" % (k, statistics.median(v), " ".join("%.0f" % x for x in v)))
finally:
    hub.stop(); os.path.exists("/dev/shm/x") and os.remove("/dev/shm/x")
