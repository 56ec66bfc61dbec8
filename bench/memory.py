#!/usr/bin/env python3
"""modelfs memory benchmark: the daemon's resident memory under many readers (issue 14, target 3).

The fake hub and nginx (its CDN) on loopback serve a generated repo (--size, 8 shards). For each
--budget ("" = the default --memory-budget), a fresh mount with an empty cache runs two loads:
  readers  8 processes each read one shard start to end (cold)
  random   64 threads read 1 MiB at random offsets of the repo's shards for --seconds (partly
           cold, partly cached: the cache fills as they go)
The daemon's RSS is sampled every 0.1 s. Printed per load: peak RSS (VmHWM), the RSS over time
(one figure per second), and MB/s. Run through bench/memory.sh (root: drop_caches, FUSE).
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from bench import MB, TESTING, drop_caches, log  # noqa: E402

REPO = "bench/memory"


class Sampler:
    """VmRSS of pid every `period` seconds, in a thread, until stop()."""

    def __init__(self, pid, period=0.1):
        self.pid, self.period, self.samples = pid, period, []
        self.t0 = time.monotonic()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def rss_mib(self):
        for line in open("/proc/%d/status" % self.pid):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        return 0.0

    def run(self):
        while not self.done.wait(self.period):
            try:
                self.samples.append((time.monotonic() - self.t0, self.rss_mib()))
            except OSError:
                return

    def stop(self):
        self.done.set()
        self.thread.join()

    def per_second(self):
        """The highest sample of each second."""
        out = {}
        for t, v in self.samples:
            out[int(t)] = max(out.get(int(t), 0.0), v)
        return [out[k] for k in sorted(out)]


def files(root):
    import json
    m = json.load(open(os.path.join(root, "models", REPO, "manifest.json")))
    return [(f["path"], f["size"]) for f in m["commits"][m["refs"]["main"]]["files"] if f["lfs"]]


def load_readers(mnt, shards):
    procs = [subprocess.Popen(["dd", "if=" + os.path.join(mnt, REPO, p), "of=/dev/null", "bs=1M", "status=none"])
             for p, _ in shards]
    if any(p.wait() != 0 for p in procs):
        raise RuntimeError("a reader failed")
    return sum(s for _, s in shards)


def load_random(mnt, shards, threads, seconds):
    stop = time.monotonic() + seconds
    total = [0] * threads

    def run(i):
        rng = random.Random(i)
        fds = [os.open(os.path.join(mnt, REPO, p), os.O_RDONLY) for p, _ in shards]
        try:
            while time.monotonic() < stop:
                k = rng.randrange(len(shards))
                off = rng.randrange(0, max(1, shards[k][1] - (1 << 20))) & ~4095
                total[i] += len(os.pread(fds[k], 1 << 20, off))
        finally:
            for fd in fds:
                os.close(fd)
    errors = []

    def guarded(i):
        try:
            run(i)
        except OSError as e:
            errors.append(e)
    ts = [threading.Thread(target=guarded, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return sum(total)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/modelfs-memory-bench")
    ap.add_argument("--size", default="4GiB", help="repo size (8 shards)")
    ap.add_argument("--budget", action="append", default=None,
                    help="--memory-budget of a mount (repeatable; '' = the default). Default: '' and 64MiB")
    ap.add_argument("--threads", type=int, default=64, help="random readers")
    ap.add_argument("--seconds", type=float, default=20, help="length of the random load")
    ap.add_argument("--loads", default="readers,random")
    ap.add_argument("--hub-port", type=int, default=19400)
    ap.add_argument("--rtt-ms", type=float, default=0)
    ap.add_argument("--link-mbit", type=float, default=0)
    ap.add_argument("--per-conn-rate", default="0")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("memory: run as root (drop_caches, FUSE)")
    binary = bench.modelfs_binary()
    budgets = a.budget if a.budget is not None else ["", "64MiB"]
    os.makedirs(a.dir, exist_ok=True)
    root = os.path.join(a.dir, "hub")
    if not os.path.exists(os.path.join(root, "models", REPO, "manifest.json")):
        subprocess.run(["python3", os.path.join(TESTING, "gen_repo.py"), "--root", root, "--repo", REPO,
                        "--total-size", a.size, "--shards", "8", "--quiet"], check=True)
    shards = files(root)
    hub = bench.Hub(root, a.dir, False, a)
    rows = []
    try:
        for budget in budgets:
            for load in a.loads.split(","):
                cache = os.path.join(a.dir, "cache")
                shutil.rmtree(cache, ignore_errors=True)
                mnt = os.path.join(a.dir, "mnt")
                extra = ["--memory-budget", budget] if budget else []
                m = bench.Mount(binary, hub.endpoint, cache, mnt, extra)
                drop_caches()
                s = Sampler(m.proc.pid)
                t0 = time.monotonic()
                n = load_readers(mnt, shards) if load == "readers" else load_random(mnt, shards, a.threads, a.seconds)
                t = time.monotonic() - t0
                s.stop()
                peak = m.peak_rss_mib()
                m.close()
                name = "%s, --memory-budget %s" % (load, budget or "default")
                over_time = " ".join("%.0f" % v for v in s.per_second())
                log("memory: %-34s peak RSS %6.1f MiB, %7.1f MB/s; RSS (MiB) each second: %s"
                    % (name, peak, n / t / MB, over_time))
                rows.append((name, peak, n / t / MB, over_time))
    finally:
        hub.stop()
    print("| load | peak RSS (MiB) | MB/s | RSS each second (MiB) |")
    print("|---|---|---|---|")
    for name, peak, rate, over in rows:
        print("| %s | %.1f | %.1f | %s |" % (name, peak, rate, over))


if __name__ == "__main__":
    main()
