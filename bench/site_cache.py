#!/usr/bin/env python3
"""modelfs site cache benchmark: many clients at one site behind one far link.

The fake hub and its CDN (nginx serving the LFS files, bench/bench.py's Hub) run inside a
../shared/wan-sim namespace of their own ("mfssite1": 200 ms RTT, 400 Mbit/s, 8 MiB/s per
connection by default). The site cache (deploy/site-cache/run.sh, nginx) runs on this host in
front of it, on 127.0.0.1. Every client is a fresh modelfs mount with an empty cache directory,
configured as docs/site-cache.md says: --endpoint SITE --endpoint HUB --endpoint-policy ordered.

Phases:
  0 (--baseline) one client reads the repo straight from the far hub, no site cache: the speed a
    machine had before
  1 --at-once clients (8) read the whole repo at the same time (each in its own file order)
  2 --after clients (8) read it one after another, each cold (empty client cache)
Reported: per phase, seconds and MB/s per client (min/median/max), and for the whole run the
bytes the far CDN sent (its nginx access log) divided by the repo's LFS bytes (target <= 1.05),
plus the site cache's HIT/MISS counts from its access log. Every byte read is checked against the
repo's files.

Needs root (network namespace, FUSE). Run through bench/site_cache.sh, which installs nginx and
builds modelfs unless $MODELFS_BIN is set. A full run (1 GiB, 8 + 8 clients) moves 16 GiB through
FUSE on this host: about 10 minutes on 2 vCPU. Small: --size 256MiB --at-once 4 --after 2.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (Hub, Mount, helpers)
from bench import MB, SRC, TESTING, WAN_SIM, drop_caches, log  # noqa: E402

NS = "mfssite1"
REPO = "bench/site"
RUN_SH = os.path.join(SRC, "deploy", "site-cache", "run.sh")


def read_and_check(path, want_path):
    """Reads path in 1 MiB reads and compares with want_path; returns bytes read."""
    n = 0
    with open(path, "rb", buffering=0) as f, open(want_path, "rb") as w:
        while True:
            b = f.read(1 << 20)
            if not b:
                if w.read(1):
                    raise RuntimeError("%s: short" % path)
                return n
            if b != w.read(len(b)):
                raise RuntimeError("%s: bytes differ near offset %d" % (path, n))
            n += len(b)


class SiteBench:
    def __init__(self, a):
        self.a = a
        self.work = a.dir
        os.makedirs(self.work, exist_ok=True)
        self.binary = os.environ.get("MODELFS_BIN") or os.path.join(SRC, "build", "bin", "modelfs")
        self.hub = None
        self.site_dir = os.path.join(self.work, "site")
        self.site_ep = "http://127.0.0.1:%d" % a.site_port
        self.mounts = []

    def gen(self):
        root = os.path.join(self.work, "hub")
        subprocess.run(["python3", os.path.join(TESTING, "gen_repo.py"), "--root", root, "--repo", REPO,
                        "--total-size", self.a.size, "--shards", str(self.a.shards), "--quiet"], check=True)
        m = json.load(open(os.path.join(root, "models", REPO, "manifest.json")))
        c = m["refs"]["main"]
        base = os.path.join(root, "models", REPO)
        self.files = [(f["path"], os.path.join(base, f["content"]), f["size"], f["lfs"])
                      for f in m["commits"][c]["files"]]
        self.repo_bytes = sum(f[2] for f in self.files)
        self.lfs_bytes = sum(f[2] for f in self.files if f[3])
        return root

    def start_site(self):
        shutil.rmtree(self.site_dir, ignore_errors=True)
        subprocess.run([RUN_SH, "--upstream", self.hub.endpoint, "--listen", "127.0.0.1:%d" % self.a.site_port,
                        "--cache-dir", self.site_dir, "--cache-size", self.a.site_cache_size, "--daemon",
                        "--cdn", self.hub.cdn_base], check=True)

    def stop_site(self):
        pid_file = os.path.join(self.site_dir, "nginx.pid")
        if os.path.exists(pid_file):
            pid = int(open(pid_file).read().split()[0])
            os.kill(pid, 15)
            for _ in range(100):
                if not os.path.exists("/proc/%d" % pid):
                    break
                time.sleep(0.05)

    def mount(self, tag, direct=False):
        cache = os.path.join(self.work, "cache-" + tag)
        shutil.rmtree(cache, ignore_errors=True)
        mnt = os.path.join(self.work, "mnt-" + tag)
        bench_force_unmount(mnt)
        if direct:
            m = bench.Mount(self.binary, self.hub.endpoint, cache, mnt, [REPO])
        else:
            m = bench.Mount(self.binary, self.site_ep, cache, mnt,
                            ["--endpoint", self.hub.endpoint, "--endpoint-policy", "ordered", REPO])
        self.mounts.append(m)
        return m

    def close(self, m):
        m.close()
        self.mounts.remove(m)
        shutil.rmtree(m.mnt.replace("mnt-", "cache-"), ignore_errors=True)

    def client_read(self, m, rotate, out):
        order = self.files[rotate % len(self.files):] + self.files[:rotate % len(self.files)]
        t0 = time.monotonic()
        n = sum(read_and_check(os.path.join(m.mnt, p), want) for p, want, _, _ in order)
        out.append((time.monotonic() - t0, n))

    def phase(self, name, clients, at_once, direct=False):
        results = []
        if direct:
            t0 = time.monotonic()
            m = self.mount(name, direct=True)
            drop_caches()
            self.client_read(m, 0, results)
            self.close(m)
            wall = time.monotonic() - t0
        elif at_once:
            ms = [self.mount("%s%d" % (name, i)) for i in range(clients)]
            drop_caches()
            errors = []

            def run(i):
                try:
                    self.client_read(ms[i], i, results)
                except Exception as e:  # reported after the join
                    errors.append(e)
            t0 = time.monotonic()
            ts = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            wall = time.monotonic() - t0
            for m in ms:
                self.close(m)
            if errors:
                raise errors[0]
        else:
            t0 = time.monotonic()
            for i in range(clients):
                m = self.mount("%s%d" % (name, i))
                drop_caches()
                self.client_read(m, i, results)
                self.close(m)
            wall = time.monotonic() - t0
        speeds = sorted(n / s / MB for s, n in results)
        log("site: phase %s: %d clients, %.1f s wall; per client MB/s min %.1f median %.1f max %.1f"
            % (name, clients, wall, speeds[0], statistics.median(speeds), speeds[-1]))
        return {"clients": clients, "wall_s": wall, "mbps_min": speeds[0],
                "mbps_median": statistics.median(speeds), "mbps_max": speeds[-1]}

    def site_counts(self):
        counts = {}
        path = os.path.join(self.site_dir, "logs", "access.log")
        for line in open(path):
            for tok in line.split():
                if tok.startswith("cache="):
                    counts[tok[6:]] = counts.get(tok[6:], 0) + 1
        return counts


def bench_force_unmount(path):
    if os.path.ismount(path):
        subprocess.run(["fusermount3", "-u", "-z", path], capture_output=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/modelfs-site-bench", help="repos, caches, logs, mount points")
    ap.add_argument("--size", default="1GiB", help="repo size (LFS shards)")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--at-once", type=int, default=8, help="clients reading at the same time (phase 1)")
    ap.add_argument("--after", type=int, default=8, help="clients reading one after another (phase 2)")
    ap.add_argument("--baseline", action="store_true", help="phase 0: one client straight from the far hub")
    ap.add_argument("--rtt-ms", type=float, default=200)
    ap.add_argument("--link-mbit", type=float, default=400)
    ap.add_argument("--per-conn-rate", default="8MiB/s")
    ap.add_argument("--hub-port", type=int, default=19200, help="hub; +1 its own CDN port; +2 the far nginx")
    ap.add_argument("--site-port", type=int, default=19210)
    ap.add_argument("--site-cache-size", default="8GiB")
    ap.add_argument("--results", default="", help="also write the figures (JSON) to this file")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("site: run as root (network namespace, FUSE)")
    sb = SiteBench(a)
    if not os.access(sb.binary, os.X_OK):
        sys.exit("site: no modelfs binary at %s (set MODELFS_BIN or run bench/site_cache.sh)" % sb.binary)
    root = sb.gen()
    log("site: repo %s, %.1f MB (%.1f MB in LFS files)" % (REPO, sb.repo_bytes / MB, sb.lfs_bytes / MB))
    out = {"repo_bytes": sb.repo_bytes, "lfs_bytes": sb.lfs_bytes, "rtt_ms": a.rtt_ms, "link_mbit": a.link_mbit,
           "per_conn_rate": a.per_conn_rate}
    try:
        sb.hub = bench.Hub(root, sb.work, True, a, ns=NS)
        log("site: far hub %s, CDN %s" % (sb.hub.endpoint, sb.hub.cdn_base))
        if a.baseline:
            out["baseline_direct"] = sb.phase("direct", 1, False, direct=True)
        sb.start_site()
        sb.hub.clear()
        out["at_once"] = sb.phase("a", a.at_once, True)
        out["after"] = sb.phase("b", a.after, False)
        time.sleep(0.3)
        pulled = sum(r["bytes"] for r in sb.hub.cdn_log())
        out["upstream_bytes"] = pulled
        out["upstream_ratio"] = pulled / sb.lfs_bytes
        out["site_cache_status"] = sb.site_counts()
        log("site: the far CDN sent %.1f MB = %.3fx the repo's LFS bytes; site cache lines %s"
            % (pulled / MB, out["upstream_ratio"], out["site_cache_status"]))
    finally:
        for m in list(sb.mounts):
            try:
                sb.close(m)
            except Exception as e:  # keep tearing down
                log("site: unmount: %s" % e)
        sb.stop_site()
        if sb.hub is not None:
            sb.hub.stop()
        subprocess.run([WAN_SIM, "down", "--name", NS, "--force"], capture_output=True)
    print(json.dumps(out, indent=1))
    if a.results:
        with open(a.results, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
