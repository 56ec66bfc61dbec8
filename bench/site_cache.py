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
STREAM_REPO = "bench/stream"  # --fairness: one large shard a client streams
HEADS_REPO = "bench/heads"  # --fairness: small shards whose headers another client reads
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
        self.binary = bench.modelfs_binary()
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
        if self.a.fairness:
            for repo, size, shards in ((STREAM_REPO, self.a.stream_size, 1),
                                       (HEADS_REPO, self.a.heads_size, 4 * self.a.header_reads)):
                subprocess.run(["python3", os.path.join(TESTING, "gen_repo.py"), "--root", root, "--repo", repo,
                                "--total-size", size, "--shards", str(shards), "--quiet"], check=True)
            self.stream_file = self.lfs_files(root, STREAM_REPO)[0]
            self.head_files = self.lfs_files(root, HEADS_REPO)
        return root

    @staticmethod
    def lfs_files(root, repo):
        m = json.load(open(os.path.join(root, "models", repo, "manifest.json")))
        return sorted(f["path"] for f in m["commits"][m["refs"]["main"]]["files"] if f["lfs"])

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

    def mount(self, tag, direct=False, repo=REPO):
        cache = os.path.join(self.work, "cache-" + tag)
        shutil.rmtree(cache, ignore_errors=True)
        mnt = os.path.join(self.work, "mnt-" + tag)
        bench_force_unmount(mnt)
        if direct:
            m = bench.Mount(self.binary, self.hub.endpoint, cache, mnt, [repo])
        else:
            m = bench.Mount(self.binary, self.site_ep, cache, mnt,
                            ["--endpoint", self.hub.endpoint, "--endpoint-policy", "ordered", repo])
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

    # ---- fairness: header reads next to a client streaming a large shard ----------------------

    def header_reads(self, tag, files, gap_s=0.0):
        """A fresh client (empty cache) reads the safetensors header of each file in turn: open,
        8 bytes, the header. Returns the seconds of each."""
        m = self.mount(tag, repo=HEADS_REPO)
        times = []
        try:
            for p in files:
                t0 = time.monotonic()
                bench.st_header(os.path.join(m.mnt, p))
                times.append(time.monotonic() - t0)
                time.sleep(gap_s)
        finally:
            self.close(m)
        return times

    def streaming(self, tag, passes, started):
        """A client reads the large shard start to end, `passes` times (each pass a fresh mount with
        an empty cache). Sets `started` once the first MiB came. Returns (seconds, bytes) per pass."""
        out = []
        for i in range(passes):
            m = self.mount("%s%d" % (tag, i), repo=STREAM_REPO)
            try:
                n = 0
                t0 = time.monotonic()
                with open(os.path.join(m.mnt, self.stream_file), "rb", buffering=0) as f:
                    while True:
                        b = f.read(1 << 20)
                        if not b:
                            break
                        n += len(b)
                        started.set()
                out.append((time.monotonic() - t0, n))
            finally:
                self.close(m)
        return out

    def fairness(self):
        k = self.a.header_reads
        groups = [self.head_files[i * k:(i + 1) * k] for i in range(4)]
        res = {}

        def summary(name, times):
            res[name] = {"median_s": statistics.median(times), "max_s": max(times),
                         "each_s": [round(t, 3) for t in times]}
            log("site: fairness: %-34s header read median %.3f s, max %.3f s (%s)"
                % (name, statistics.median(times), max(times), " ".join("%.3f" % t for t in times)))

        def next_to_stream(name, files, passes):
            started = threading.Event()
            result = {}

            def run():
                result["stream"] = self.streaming("fs" + name, passes, started)
            t = threading.Thread(target=run)
            t.start()
            started.wait(120)
            time.sleep(self.a.stream_lead)
            times = self.header_reads("fh" + name, files, gap_s=0.5)
            t.join()
            s, n = result["stream"][0]
            res[name + "_stream_mbps"] = n / s / MB
            log("site: fairness: the streaming client read %.1f MB at %.1f MB/s (first pass)" % (n / MB, n / s / MB))
            summary(name, times)

        drop_caches()
        # Idle site cache: headers of files the site cache does not hold (each crosses the far
        # link), then of files it holds.
        summary("idle_site_cold", self.header_reads("i1", groups[0], gap_s=0.5))
        self.header_reads("warm", groups[1])  # puts groups[1]'s first slices into the site cache
        summary("idle_site_warm", self.header_reads("i2", groups[1], gap_s=0.5))
        # Busy: the stream is cold at the site cache (the far link is full), headers cold too.
        next_to_stream("busy_far_link_site_cold", groups[2], 1)
        # Busy: the stream is now in the site cache (LAN speed, read twice to last), headers warm.
        self.header_reads("warm2", groups[3])
        next_to_stream("busy_lan_site_warm", groups[3], self.a.warm_passes)
        res["ratio_site_cold"] = res["busy_far_link_site_cold"]["median_s"] / res["idle_site_cold"]["median_s"]
        res["ratio_site_warm"] = res["busy_lan_site_warm"]["median_s"] / res["idle_site_warm"]["median_s"]
        log("site: fairness: header read busy/idle, median: %.2fx with the far link full, %.2fx next to a"
            " LAN-speed stream (target <= 2)" % (res["ratio_site_cold"], res["ratio_site_warm"]))
        return res

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
    ap.add_argument("--fairness", action="store_true",
                    help="fairness phases: another client's header reads, idle and next to a client streaming"
                         " a large shard (cold at the site cache: the far link is full; then warm)")
    ap.add_argument("--stream-size", default="1GiB", help="--fairness: the streamed shard")
    ap.add_argument("--heads-size", default="256MiB", help="--fairness: the repo whose headers are read")
    ap.add_argument("--header-reads", type=int, default=5, help="--fairness: header reads per phase")
    ap.add_argument("--stream-lead", type=float, default=3.0, help="--fairness: seconds of streaming before")
    ap.add_argument("--warm-passes", type=int, default=3, help="--fairness: passes of the warm stream")
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
        if a.fairness:
            out["fairness"] = sb.fairness()
            sb.hub.clear()
        if a.at_once:
            out["at_once"] = sb.phase("a", a.at_once, True)
        if a.after:
            out["after"] = sb.phase("b", a.after, False)
        time.sleep(0.3)
        pulled = sum(r["bytes"] for r in sb.hub.cdn_log())
        out["upstream_bytes"] = pulled
        out["upstream_ratio"] = pulled / sb.lfs_bytes
        out["site_cache_status"] = sb.site_counts()
        log("site: the far CDN sent %.1f MB = %.3fx the repo's LFS bytes; site cache lines %s"
            % (pulled / MB, out["upstream_ratio"], out["site_cache_status"]))
    finally:
        bench.close_all(sb.mounts, sb.close, "site")
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
