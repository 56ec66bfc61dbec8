#!/usr/bin/env python3
"""modelfs benchmark: every target of the performance issue, for modelfs and its peers.

Runs under two network conditions:
  loopback  the fake hub on 127.0.0.1
  far       the fake hub inside a wan-sim namespace (200 ms RTT, 400 Mbit/s link, 8 MiB/s per
            connection by default), reached at the namespace's address

and prints one table (medians of --runs runs) with ratios to the peers (curl, aria2c -x16 -s16,
axel -n 16). Run through bench/run.sh, which installs the peers and builds modelfs.

Targets (see the issue): 1 cold sequential read of a shard, 2 time to first tensor and bytes
fetched vs read, 3 warm reads (page cache, and block cache after drop_caches), 4 mmap load of all
tensors in random order, 5 parallel readers (8 shards x 8 processes; 4 ranks on quarters of one
shard) and duplicate block requests, 6 daemon peak RSS, 7 daemon CPU seconds per GiB.
"""
import argparse
import json
import os
import random
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import time
import urllib.request

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTING = os.path.join(SRC, "tests", "testing")
WAN_SIM = os.path.join(os.path.dirname(SRC), "shared", "wan-sim", "wan-sim")
MB = 1e6
GiB = 1 << 30


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def drop_caches():
    subprocess.run(["sync"])
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


class Hub:
    """The fake hub, on loopback or inside a wan-sim namespace."""

    def __init__(self, root, workdir, far, args):
        self.far = far
        self.workdir = workdir
        ready = os.path.join(workdir, "ready.json")
        if os.path.exists(ready):
            os.remove(ready)
        cmd = ["python3", os.path.join(TESTING, "fake_hub.py"), "--root", root, "--ready-file", ready,
               "--port", str(args.hub_port), "--cdn-port", str(args.hub_port + 1)]
        if far:
            self.ns = "mfsbench"
            subprocess.run([WAN_SIM, "down", "--name", self.ns, "--force"], capture_output=True)
            self.host = subprocess.run(
                [WAN_SIM, "up", "--name", self.ns, "--rtt-ms", str(args.rtt_ms), "--link-mbit",
                 str(args.link_mbit)], check=True, capture_output=True, text=True).stdout.strip()
            # A far link needs big TCP buffers on the server side too (wan-sim README: "TCP buffers").
            subprocess.run([WAN_SIM, "exec", "--name", self.ns, "--", "sysctl", "-qw",
                            "net.ipv4.tcp_wmem=4096 16384 33554432"], check=True)
            sh([WAN_SIM, "exec", "--name", self.ns, "--per-conn-rate", args.per_conn_rate,
                "--background", "--log", os.path.join(workdir, "hub.log"), "--wait-port",
                str(args.hub_port), "--"] + cmd + ["--host", "0.0.0.0"], stdout=subprocess.DEVNULL)
            self.proc = None
        else:
            self.host = "127.0.0.1"
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                         stderr=open(os.path.join(workdir, "hub.log"), "w"))
        for _ in range(300):
            if os.path.exists(ready) and os.path.getsize(ready) > 0:
                break
            time.sleep(0.1)
        info = json.load(open(ready))
        self.port = info["hub_port"]
        self.endpoint = "http://%s:%d" % (self.host, self.port)

    def admin(self, path, body=None):
        req = urllib.request.Request(self.endpoint + path, data=body,
                                     method="POST" if body is not None else "GET")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")

    def cdn_bytes(self):
        st = self.admin("/_admin/stats")
        return st.get("bytes", {}).get("cdn", st.get("bytes_sent", {}).get("cdn", 0)) if isinstance(st, dict) else 0

    def log_entries(self):
        return self.admin("/_admin/log")

    def clear(self):
        self.admin("/_admin/log/clear", b"")
        try:
            self.admin("/_admin/stats/clear", b"")
        except Exception:
            pass

    def cdn_url(self, repo, path):
        req = urllib.request.Request("%s/%s/resolve/main/%s" % (self.endpoint, repo, path), method="HEAD")

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a, **k):
                return None
        opener = urllib.request.build_opener(NoRedirect)
        try:
            opener.open(req, timeout=30)
        except urllib.error.HTTPError as e:
            return e.headers["Location"]
        raise RuntimeError("no redirect for " + path)

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait()
        else:
            subprocess.run([WAN_SIM, "down", "--name", self.ns, "--force"], capture_output=True)


class Mount:
    """modelfs mount -f as our child, so its pid gives RSS and CPU time."""

    def __init__(self, binary, endpoint, cache, mnt, extra=()):
        os.makedirs(mnt, exist_ok=True)
        self.mnt = mnt
        self.binary = binary
        self.log = open(cache + ".log", "a")
        self.proc = subprocess.Popen([binary, "mount", "-f", "--endpoint", endpoint, "--cache-dir", cache,
                                      "--log-level", "warn", *extra, mnt], stdout=self.log, stderr=self.log)
        for _ in range(300):
            if os.path.ismount(mnt):
                return
            if self.proc.poll() is not None:
                raise RuntimeError("modelfs exited: see " + cache + ".log")
            time.sleep(0.02)
        raise RuntimeError("mount did not appear")

    def cpu_seconds(self):
        f = open("/proc/%d/stat" % self.proc.pid).read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mib(self):
        for line in open("/proc/%d/status" % self.proc.pid):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
        return 0.0

    def close(self):
        subprocess.run(["fusermount3", "-u", self.mnt])
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def read_file(path, bs=1 << 20):
    n = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(bs)
            if not b:
                return n
            n += len(b)


def timed(fn):
    t0 = time.monotonic()
    r = fn()
    return time.monotonic() - t0, r


def st_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return n, json.loads(f.read(n))


class Bench:
    def __init__(self, args):
        self.a = args
        self.rows = []  # (condition, target, tool, value, unit)
        self.work = args.dir
        os.makedirs(self.work, exist_ok=True)
        self.binary = os.environ.get("MODELFS_BIN") or os.path.join(SRC, "build", "bin", "modelfs")

    def add(self, cond, target, tool, value, unit):
        self.rows.append((cond, target, tool, value, unit))
        log("  %-9s %-38s %-22s %10.2f %s" % (cond, target, tool, value, unit))

    def gen(self):
        root = os.path.join(self.work, "hub")
        sh(["python3", os.path.join(TESTING, "gen_repo.py"), "--root", root, "--repo", "bench/model-1g",
            "--total-size", self.a.size, "--shards", "2", "--quiet"])
        sh(["python3", os.path.join(TESTING, "gen_repo.py"), "--root", root, "--repo", "bench/model-8x",
            "--total-size", self.a.parallel_size, "--shards", "8", "--quiet"])
        return root

    def files(self, repo):
        m = json.load(open(os.path.join(self.work, "hub", "models", repo, "manifest.json")))
        c = m["refs"]["main"]
        return [f for f in m["commits"][c]["files"] if f["path"].endswith(".safetensors")]

    def fresh_mount(self, hub, cond, tag):
        cache = os.path.join(self.work, "cache-%s-%s" % (cond, tag))
        shutil.rmtree(cache, ignore_errors=True)
        return Mount(self.binary, hub.endpoint, cache, os.path.join(self.work, "mnt")), cache

    def median_of(self, fn):
        return statistics.median(fn() for _ in range(self.a.runs))

    def run_condition(self, cond, hub):
        a = self.a
        shard = max(self.files("bench/model-1g"), key=lambda f: f["size"])
        size = shard["size"]
        rel = "bench/model-1g/" + shard["path"]
        dl = os.path.join(self.work, "peer.out")

        # 1. Cold sequential read, modelfs vs peers (peers write to the same disk as the cache).
        def cold_modelfs():
            m, _ = self.fresh_mount(hub, cond, "seq")
            drop_caches()
            cpu0 = m.cpu_seconds()
            t, _ = timed(lambda: read_file(os.path.join(m.mnt, rel)))
            self.cold_cpu = (m.cpu_seconds() - cpu0) / (size / GiB)
            m.close()
            return size / t / MB
        self.add(cond, "1 cold sequential read", "modelfs", self.median_of(cold_modelfs), "MB/s")
        url = hub.cdn_url("bench/model-1g", shard["path"])
        peers = {
            "curl": ["curl", "-s", "-o", dl, url],
            "aria2c -x16 -s16": ["aria2c", "-q", "-x16", "-s16", "-k1M", "--allow-overwrite=true",
                                 "--file-allocation=none", "-d", self.work, "-o", "peer.out", url],
            "axel -n 16": ["axel", "-q", "-n", "16", "-o", dl, url],
        }
        for name, cmd in peers.items():
            if shutil.which(cmd[0]) is None:
                continue

            def peer():
                if os.path.exists(dl):
                    os.remove(dl)
                drop_caches()
                t, _ = timed(lambda: subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.DEVNULL))
                return size / t / MB
            self.add(cond, "1 cold sequential read", name, self.median_of(peer), "MB/s")
        if os.path.exists(dl):
            os.remove(dl)

        # 2. Time to first tensor: header + one tensor near the end of the shard, cold.
        def first_tensor():
            m, _ = self.fresh_mount(hub, cond, "ttft")
            hub.clear()
            path = os.path.join(m.mnt, rel)
            t0 = time.monotonic()
            n, hdr = st_header(path)
            # The largest tensor in the last quarter of the file: "a tensor near the end" that is
            # big enough to be a real weight (the generator also writes tiny and scalar tensors).
            tensors = [v["data_offsets"] for k, v in hdr.items() if k != "__metadata__"]
            end = max(t[1] for t in tensors)
            tail = [t for t in tensors if t[0] >= 3 * end // 4] or tensors
            b, e = max(tail, key=lambda t: t[1] - t[0])
            with open(path, "rb") as f:
                f.seek(8 + n + b)
                got = len(f.read(e - b))
            t = time.monotonic() - t0
            read = 8 + n + got
            m.close()
            fetched = sum(r.get("bytes", 0) for r in hub.log_entries() if r.get("listener") == "cdn")
            self.ttft_ratio = fetched / read
            self.ttft_bytes = got
            return t
        self.add(cond, "2 time to first tensor", "modelfs", self.median_of(first_tensor), "s")
        self.add(cond, "2 bytes fetched / bytes read", "modelfs", self.ttft_ratio, "x")
        self.add(cond, "2 (tensor size)", "modelfs", self.ttft_bytes / MB, "MB")

        # 3. Warm reads.
        m, cache = self.fresh_mount(hub, cond, "warm")
        read_file(os.path.join(m.mnt, rel))
        time.sleep(1)

        def warm_pc():
            read_file(os.path.join(m.mnt, rel))  # page cache now holds it
            cpu0 = m.cpu_seconds()
            t, _ = timed(lambda: read_file(os.path.join(m.mnt, rel)))
            self.warm_cpu = (m.cpu_seconds() - cpu0) / (size / GiB)
            return size / t / MB
        self.add(cond, "3 warm read, page cache", "modelfs", self.median_of(warm_pc), "MB/s")

        def warm_disk():
            drop_caches()
            cpu0 = m.cpu_seconds()
            t, _ = timed(lambda: read_file(os.path.join(m.mnt, rel)))
            self.warm_disk_cpu = (m.cpu_seconds() - cpu0) / (size / GiB)
            return size / t / MB
        self.add(cond, "3 warm read, after drop_caches", "modelfs", self.median_of(warm_disk), "MB/s")
        data = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(cache, "blobs")) for f in fs
                if f.startswith("sha256-" + shard["sha256"]) and f.endswith(".data")][0]

        def cat_pc():
            read_file(data)
            t, _ = timed(lambda: read_file(data))
            return size / t / MB

        def cat_disk():
            drop_caches()
            t, _ = timed(lambda: read_file(data))
            return size / t / MB
        self.add(cond, "3 warm read, page cache", "cat cache file", self.median_of(cat_pc), "MB/s")
        self.add(cond, "3 warm read, after drop_caches", "cat cache file", self.median_of(cat_disk), "MB/s")
        m.close()

        # 4. mmap load of every tensor in random order, cold and warm.
        def mmap_load(warm):
            def go():
                m, _ = self.fresh_mount(hub, cond, "mmap")
                d = os.path.join(m.mnt, "bench/model-1g")
                if warm:
                    subprocess.run(["python3", os.path.join(TESTING, "st_load.py"), d], check=True,
                                   stdout=subprocess.DEVNULL)
                t, _ = timed(lambda: subprocess.run(
                    ["python3", os.path.join(TESTING, "st_load.py"), d, "--mmap", "--order", "random"],
                    check=True, stdout=subprocess.DEVNULL))
                total = sum(f["size"] for f in self.files("bench/model-1g"))
                m.close()
                return total / t / MB
            return go
        self.add(cond, "4 mmap load, random order, cold", "modelfs", self.median_of(mmap_load(False)), "MB/s")
        self.add(cond, "4 mmap load, random order, warm", "modelfs", self.median_of(mmap_load(True)), "MB/s")

        # 5/6. Parallel readers: 8 processes x 8 shards, and 4 ranks on quarters of one shard.
        def parallel(kind):
            def go():
                m, _ = self.fresh_mount(hub, cond, "par")
                hub.clear()
                shards = self.files("bench/model-8x")
                procs = []
                t0 = time.monotonic()
                if kind == "8 shards":
                    total = sum(f["size"] for f in shards)
                    for f in shards:
                        procs.append(subprocess.Popen(["dd", "if=" + os.path.join(m.mnt, "bench/model-8x", f["path"]),
                                                       "of=/dev/null", "bs=1M", "status=none"]))
                else:
                    f = shards[0]
                    q = (f["size"] + 3) // 4 // (1 << 20) + 1
                    total = f["size"]
                    for r in range(4):
                        procs.append(subprocess.Popen(["dd", "if=" + os.path.join(m.mnt, "bench/model-8x", f["path"]),
                                                       "of=/dev/null", "bs=1M", "skip=%d" % (r * q),
                                                       "count=%d" % q, "status=none"]))
                for p in procs:
                    p.wait()
                t = time.monotonic() - t0
                self.par_rss = m.peak_rss_mib()
                m.close()
                ranges = [(r.get("path"), r.get("range")) for r in hub.log_entries()
                          if r.get("listener") == "cdn" and r.get("method") == "GET"]
                self.par_dups = len(ranges) - len(set(ranges))
                return total / t / MB
            return go
        self.add(cond, "5 parallel: 8 readers x 8 shards", "modelfs", self.median_of(parallel("8 shards")), "MB/s")
        self.add(cond, "5 duplicate range requests", "modelfs", self.par_dups, "count")
        self.add(cond, "6 daemon peak RSS, 8 readers", "modelfs", self.par_rss, "MiB")
        self.add(cond, "5 parallel: 4 ranks x quarters", "modelfs", self.median_of(parallel("quarters")), "MB/s")
        self.add(cond, "5 duplicate range requests", "modelfs", self.par_dups, "count")
        self.add(cond, "7 daemon CPU per GiB, cold", "modelfs", self.cold_cpu, "s/GiB")
        self.add(cond, "7 daemon CPU per GiB, warm (page cache)", "modelfs", self.warm_cpu, "s/GiB")
        self.add(cond, "7 daemon CPU per GiB, warm (disk)", "modelfs", self.warm_disk_cpu, "s/GiB")

    def table(self):
        out = ["| condition | target | tool | median | unit | vs best peer |", "|---|---|---|---|---|---|"]
        for cond, target, tool, v, unit in self.rows:
            ratio = ""
            if tool == "modelfs" and unit == "MB/s":
                peers = [r[3] for r in self.rows if r[0] == cond and r[1] == target and r[2] != "modelfs"]
                if peers:
                    ratio = "%.2fx" % (v / max(peers))
            out.append("| %s | %s | %s | %.2f | %s | %s |" % (cond, target, tool, v, unit, ratio))
        return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/modelfs-bench")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", default="1GiB", help="size of the 2-shard repo (shards >= 512 MiB at 1GiB)")
    ap.add_argument("--parallel-size", default="4GiB", help="size of the 8-shard repo")
    ap.add_argument("--conditions", default="loopback,far")
    ap.add_argument("--rtt-ms", type=float, default=200)
    ap.add_argument("--link-mbit", type=float, default=400)
    ap.add_argument("--per-conn-rate", default="8MiB/s")
    ap.add_argument("--hub-port", type=int, default=18080)
    ap.add_argument("--results", default="", help="also write the table to this markdown file")
    a = ap.parse_args()
    b = Bench(a)
    root = b.gen()
    for cond in a.conditions.split(","):
        log("== condition: " + cond)
        hub = Hub(root, b.work, cond == "far", a)
        try:
            b.run_condition(cond, hub)
        finally:
            hub.stop()
    table = b.table()
    print(table)
    if a.results:
        with open(a.results, "w") as f:
            f.write("# modelfs benchmark results\n\n")
            f.write("Machine: %s, %d CPUs, %s. Command: `bash bench/run.sh %s`.\n\n" % (
                os.uname().release, os.cpu_count(), time.strftime("%Y-%m-%d"), " ".join(sys.argv[1:])))
            f.write(table + "\n")


if __name__ == "__main__":
    main()
