#!/usr/bin/env python3
"""modelfs "far mirror, cold start" benchmark.

One condition only: the fake hub and its CDN (nginx) inside a ../shared/wan-sim namespace of their
own ("mfsfar"): 200 ms RTT, 400 Mbit/s link, 8 MiB/s per connection by default (bench/bench.py's
"far" condition). Every modelfs figure comes from a fresh mount with an empty cache directory,
after drop_caches. Each row is the median of --runs runs.

Rows (--only names in brackets):
  1 [ceiling] 24 parallel 16 MiB ranges of the large shard, one curl (fresh connection) each,
              all started at once: the simulated link's ceiling on this machine (MB/s)
  2 [ranges]  the small repo's largest shard as ceil(size / 4 MiB) parallel 4 MiB ranges on fresh
              connections (curl): seconds and MB/s
  3 [ttfb]    stat (untimed), then open() + read of 1 byte of that shard (s); reference row: curl -L
              -r 0-0 of the hub's resolve URL (resolve + redirect + 1 byte, fresh connections)
  4 [header]  stat (untimed), then open + 8 bytes + the JSON header (s)
  5 [tensor]  stat (untimed), then open, header, seek, read the largest tensor in the last quarter
              of the file (s), for the small repo's largest shard and the large repo's largest
              shard; bytes fetched from the CDN (nginx access log) / bytes read; tensor size. Bound
              row: curl on fresh connections with the CDN URL given, 64 KiB then the tensor as
              parallel 1 MiB or 4 MiB ranges (the faster)
  6 [seq]     cold sequential read (1 MiB reads) of both shards: modelfs, axel -n 16,
              aria2c -x16 -s16 -k1M (MB/s), with ratios to the peers, to row 1 and to row 2. The
              modelfs time includes the first lookup (stat, shown in the note); the peers, as in
              bench.py, get the CDN URL without the hub round trips, and axel once more with the
              hub's /resolve/ URL (its redirect to the CDN followed), as a user would give it.
              --settle S waits S seconds between the mount and the read
  7 [load]    whole-repo loads of the small repo: torch (bench/torch_load.py: read() + frombuffer,
              file order), numpy (st_load.py, read(), file order), mmap random order (st_load.py
              --mmap --order random): MB/s and bytes fetched / repo bytes
  8 [cpu]     daemon CPU seconds per GiB of the cold sequential read of the large shard
              (measured with row 6; --only cpu runs that read alone)

Run through bench/far.sh (installs the peers and nginx, builds modelfs unless $MODELFS_BIN is set).
Needs root (network namespace, drop_caches, FUSE). The binary is copied into --dir first, so a
rebuild during the run does not change it. The torch row runs under the first of python3 on PATH,
this interpreter and /usr/bin/python3 that imports torch (Debian's python3-torch), else is skipped.
A whole run (--runs 3) takes about 10 minutes on 2 vCPU.
"""
import argparse
import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import urllib.request
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (Hub, Mount and helpers of bench/bench.py)
from bench import GiB, MB, TESTING, WAN_SIM, drop_caches, log, read_file, st_header  # noqa: E402

MiB = 1 << 20
NS = "mfsfar"
ROW_NAMES = ("ceiling", "ranges", "ttfb", "header", "tensor", "seq", "cpu", "load")
SMALL = "bench/small"
LARGE = "bench/large"
HERE = os.path.dirname(os.path.abspath(__file__))


def mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        # /proc/mounts escapes spaces as \040; our paths have none.
        return any(line.split()[1] == path for line in f if len(line.split()) > 1)


def force_unmount(path):
    if mounted(path):
        subprocess.run(["fusermount3", "-u", path], capture_output=True)
    if mounted(path):
        subprocess.run(["fusermount3", "-uz", path], capture_output=True)


def python_with(module):
    """The first of python3 (PATH), this interpreter, /usr/bin/python3 that imports module, or None."""
    for py in (shutil.which("python3"), sys.executable, "/usr/bin/python3"):
        if py and os.access(py, os.X_OK) and subprocess.run(
                [py, "-c", "import " + module], capture_output=True).returncode == 0:
            return py
    return None


def fmt(v):
    return "%.3f" % v if isinstance(v, float) else str(v)


class Far:
    def __init__(self, a):
        self.a = a
        self.work = os.path.abspath(a.dir)
        os.makedirs(self.work, exist_ok=True)
        self.mnt = os.path.join(self.work, "mnt")
        self.binary_src = bench.modelfs_binary()
        self.binary = os.path.join(self.work, "modelfs.bin")  # a snapshot: see snapshot_binary()
        self.rows = []  # dicts: key, measure, tool, value, unit, note
        self.hub = None
        self.loader_desc = ""
        self.live = []  # Mount objects not yet closed (torn down in finally)
        self.variants = a.modelfs_variant or [""]
        self.loaders = set(w.strip() for w in a.loaders.split(",") if w.strip())
        only = [w.strip() for w in a.only.split(",") if w.strip()] if a.only else list(ROW_NAMES)
        bad = [w for w in only if w not in ROW_NAMES]
        if bad:
            sys.exit("far: unknown --only row(s) %s; known: %s" % (",".join(bad), ",".join(ROW_NAMES)))
        self.only = set(only)

    def snapshot_binary(self):
        """Copies the binary into the work dir, so that a rebuild during the run (the build tree of a
        working copy) cannot change the binary under the measures."""
        st = os.stat(self.binary_src)
        tmp = self.binary + ".tmp"
        shutil.copy2(self.binary_src, tmp)
        os.replace(tmp, self.binary)
        h = hashlib.sha256()
        with open(self.binary, "rb") as fh:
            for blk in iter(lambda: fh.read(1 << 20), b""):
                h.update(blk)
        self.binary_desc = "%s, built %s, sha256 %s" % (
            self.binary_src, time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(st.st_mtime)), h.hexdigest()[:12])
        log("far: modelfs binary: " + self.binary_desc)

    # ---------------------------------------------------------------------------------- helpers
    def want(self, row):
        return row in self.only

    def add(self, key, measure, tool, value, unit, note=""):
        self.rows.append(dict(key=key, measure=measure, tool=tool, value=value, unit=unit, note=note, note0=note))
        log("  %-44s %-26s %10s %-6s %s" % (measure, tool, "-" if value is None else "%.3f" % value,
                                            unit, note))

    def value(self, key):
        for r in self.rows:
            if r["key"] == key:
                return r["value"]
        return None

    def median_runs(self, what, fn):
        """Runs fn --runs times; fn returns a dict of figures; returns the median of each."""
        results = []
        for i in range(self.a.runs):
            r = fn()
            log("    %s, run %d/%d: %s" % (what, i + 1, self.a.runs,
                                           ", ".join("%s=%s" % (k, fmt(v)) for k, v in r.items())))
            results.append(r)
        return {k: statistics.median(r[k] for r in results) for k in results[0]}

    def gen(self):
        root = os.path.join(self.work, "hub")
        for repo, size, shards in ((SMALL, self.a.small_size, 4), (LARGE, self.a.large_size, 2)):
            subprocess.run(["python3", os.path.join(TESTING, "gen_repo.py"), "--root", root, "--repo", repo,
                            "--total-size", size, "--shards", str(shards), "--quiet"], check=True)
        return root

    def files(self, repo):
        m = json.load(open(os.path.join(self.work, "hub", "models", repo, "manifest.json")))
        c = m["refs"]["main"]
        return [f for f in m["commits"][c]["files"] if f["path"].endswith(".safetensors")]

    def largest(self, repo):
        return max(self.files(repo), key=lambda f: f["size"])

    def fetched(self):
        time.sleep(0.3)  # nginx logs a request when its response is done (or aborted)
        return sum(r["bytes"] for r in self.hub.cdn_log())

    @contextlib.contextmanager
    def fresh_mount(self, tag, extra=()):
        """A fresh mount on an empty cache dir; page cache dropped before the caller measures."""
        cache = os.path.join(self.work, "cache-" + tag)
        shutil.rmtree(cache, ignore_errors=True)
        force_unmount(self.mnt)
        m = bench.Mount(self.binary, self.hub.endpoint, cache, self.mnt, list(extra))
        self.live.append(m)
        try:
            drop_caches()
            yield m
        finally:
            self.close_mount(m)
            shutil.rmtree(cache, ignore_errors=True)

    def close_mount(self, m):
        try:
            m.close()
        finally:
            force_unmount(m.mnt)
            if m.proc.poll() is None:
                m.proc.kill()
                m.proc.wait()
            if m in self.live:
                self.live.remove(m)

    def curl_ranges(self, url, ranges):
        """All ranges at once, one curl process (so one fresh connection) each. Returns (seconds, bytes)."""
        procs = []
        t0 = time.monotonic()
        for a, b in ranges:
            procs.append(subprocess.Popen(
                ["curl", "-s", "-o", "/dev/null", "-r", "%d-%d" % (a, b - 1), "-w", "%{http_code} %{size_download}",
                 url], stdout=subprocess.PIPE, text=True))
        outs = [p.communicate()[0] for p in procs]
        t = time.monotonic() - t0
        total = 0
        for (a, b), p, out in zip(ranges, procs, outs):
            code, size = (out.split() + ["?", "0"])[:2]
            if p.returncode != 0 or code != "206" or int(size) != b - a:
                raise RuntimeError("curl range %d-%d: exit %d, HTTP %s, %s bytes" % (a, b - 1, p.returncode, code, size))
            total += int(size)
        return t, total

    # ------------------------------------------------------------------------------------- rows
    def run(self):
        small = self.largest(SMALL)
        large = self.largest(LARGE)
        self.small_label = "%.1f MB shard" % (small["size"] / MB)
        self.large_label = "%.1f MiB shard" % (large["size"] / MiB)
        if self.want("ceiling"):
            self.ceiling(large)
        if self.want("ranges"):
            self.ranges(small)
        if self.want("ttfb"):
            self.ttfb_curl(small)
        for i, v in enumerate(self.variants):
            tool = ("modelfs " + v).strip()
            extra = v.split()
            if self.want("ttfb"):
                self.ttfb(small, tool, extra, i)
            if self.want("header"):
                self.header(small, tool, extra, i)
            if self.want("tensor"):
                for repo, f, label in ((SMALL, small, self.small_label), (LARGE, large, self.large_label)):
                    if i == 0:
                        self.tensor_curl(repo, f, label)
                    self.tensor(repo, f, label, tool, extra, i)
        if self.want("seq") or self.want("cpu"):
            self.sequential(small, large)
        if self.want("load"):
            self.loads()

    def ceiling(self, large):
        n, size = self.a.ceiling_ranges, 16 * MiB
        measure = "ceiling: %d x 16 MiB ranges, fresh connections" % n
        span = max(large["size"] - size, 1)

        def go():
            url = self.hub.cdn_url(LARGE, large["path"])
            ranges = [((i * size) % span, (i * size) % span + size) for i in range(n)]
            t, total = self.curl_ranges(url, ranges)
            return {"MB/s": total / t / MB}
        r = self.median_runs("ceiling", go)
        self.add("ceiling", measure, "curl x%d" % n, r["MB/s"], "MB/s", "large shard's CDN URL; MB = 1e6 B")

    def ranges(self, small):
        size, chunk = small["size"], 4 * MiB
        n = math.ceil(size / chunk)
        measure = "%d x 4 MiB fresh ranges, %s" % (n, self.small_label)

        def go():
            url = self.hub.cdn_url(SMALL, small["path"])
            t, total = self.curl_ranges(url, [(i * chunk, min(size, (i + 1) * chunk)) for i in range(n)])
            assert total == size
            return {"s": t, "MB/s": size / t / MB}
        r = self.median_runs("ranges", go)
        self.add("ranges_s", measure, "curl x%d" % n, r["s"], "s")
        self.add("ranges", measure, "curl x%d" % n, r["MB/s"], "MB/s")

    def ttfb_curl(self, small):
        """Reference for the first byte: what one client needs for it over fresh connections
        (the hub's resolve URL, its redirect, one byte from the CDN)."""
        url = "%s/%s/resolve/main/%s" % (self.hub.endpoint, SMALL, small["path"])

        def go():
            out = subprocess.run(["curl", "-s", "-L", "-r", "0-0", "-o", "/dev/null", "-w",
                                  "%{http_code} %{size_download} %{time_total}", url],
                                 check=True, capture_output=True, text=True).stdout.split()
            if out[:2] != ["206", "1"]:
                raise RuntimeError("curl -L -r 0-0: %s" % out)
            return {"s": float(out[2])}
        r = self.median_runs("ttfb curl", go)
        self.add("ttfb_curl", "first byte after open, " + self.small_label, "curl -L -r 0-0", r["s"], "s",
                 "reference: hub resolve + redirect + 1 byte from the CDN, fresh connections")

    def first_read(self, name, small, extra, fn):
        """On a fresh mount, after a stat (the lookup, as a loader's open would make it): the time of
        fn(path) on the small shard and what the CDN sent by the unmount; fn returns a dict to add."""
        rel = os.path.join(SMALL, small["path"])
        with self.fresh_mount(name, extra) as m:
            path = os.path.join(m.mnt, rel)
            os.stat(path)
            self.hub.clear()
            t0 = time.monotonic()
            r = fn(path)
            r["s"] = time.monotonic() - t0
        r["fetched MB"] = self.fetched() / MB
        return r

    def ttfb(self, small, tool, extra, vi):
        def one_byte(path):
            fd = os.open(path, os.O_RDONLY)
            try:
                assert len(os.read(fd, 1)) == 1
            finally:
                os.close(fd)
            return {}
        r = self.median_runs("ttfb " + tool, lambda: self.first_read("ttfb", small, extra, one_byte))
        self.add("ttfb%d" % vi, "first byte after open, " + self.small_label, tool, r["s"], "s",
                 "%.1f MB fetched by unmount" % r["fetched MB"])

    def header(self, small, tool, extra, vi):
        def read_header(path):
            n, hdr = st_header(path)
            assert hdr
            return {"header KB": (8 + n) / 1e3}
        r = self.median_runs("header " + tool, lambda: self.first_read("header", small, extra, read_header))
        self.add("header%d" % vi, "safetensors header, " + self.small_label, tool, r["s"], "s",
                 "header %.1f KB; %.1f MB fetched by unmount" % (r["header KB"], r["fetched MB"]))

    @staticmethod
    def last_tensor(hdr):
        """bench.py's first_tensor: the largest tensor in the last quarter of the file (data offsets)."""
        tensors = [v["data_offsets"] for k, v in hdr.items() if k != "__metadata__"]
        end = max(t[1] for t in tensors)
        tail = [t for t in tensors if t[0] >= 3 * end // 4] or tensors
        return max(tail, key=lambda t: t[1] - t[0])

    def tensor_curl(self, repo, f, label):
        """The bound for "header + last tensor" without modelfs: what a client that already has the CDN
        URL (no hub round trip) gets on fresh connections: one range for the first 64 KiB (the
        header), then the tensor as k parallel ranges, one curl (fresh connection) each. k is 1 MiB
        pieces and 4 MiB pieces; the faster counts. Bytes: exactly what is read, so no ratio."""
        url = self.hub.cdn_url(repo, f["path"])
        out = subprocess.run(["curl", "-s", "-r", "0-65535", url], check=True, capture_output=True).stdout
        n = int.from_bytes(out[:8], "little")
        if 8 + n > len(out):
            out = subprocess.run(["curl", "-s", "-r", "0-%d" % (8 + n - 1), url], check=True,
                                 capture_output=True).stdout
        b, e = self.last_tensor(json.loads(out[8:8 + n]))
        b, e = b + 8 + n, e + 8 + n

        def go():
            best = {}
            for piece in (MiB, 4 * MiB):
                t_hdr, _ = self.curl_ranges(url, [(0, min(64 << 10, f["size"]))])
                k = max(1, math.ceil((e - b) / piece))
                step = math.ceil((e - b) / k)
                t_ten, got = self.curl_ranges(url, [(a, min(e, a + step)) for a in range(b, e, step)])
                assert got == e - b
                best["%d MiB" % (piece // MiB)] = (t_hdr + t_ten, t_hdr)
            s, hdr = min(best.values())
            return {"s": s, "header s": hdr, "1 MiB": best["1 MiB"][0], "4 MiB": best["4 MiB"][0]}
        r = self.median_runs("tensor %s curl" % label, go)
        self.add("tensor_curl_%s" % repo, "header + last tensor, " + label, "curl (bound)", r["s"], "s",
                 "fresh connections, CDN URL given: 64 KiB (%.2f s), then the tensor in 1 MiB (%.2f s in all) "
                 "or 4 MiB (%.2f s) parallel ranges" % (r["header s"], r["1 MiB"], r["4 MiB"]))

    def tensor(self, repo, f, label, tool, extra, vi):
        rel = os.path.join(repo, f["path"])

        metrics = "127.0.0.1:%d" % (self.a.hub_port + 19)

        def go():
            with self.fresh_mount("tensor", list(extra) + ["--metrics-listen", metrics]) as m:
                path = os.path.join(m.mnt, rel)
                os.stat(path)
                self.hub.clear()
                t0 = time.monotonic()
                with open(path, "rb") as fh:
                    n = int.from_bytes(fh.read(8), "little")
                    hdr = json.loads(fh.read(n))
                    b, e = self.last_tensor(hdr)
                    fh.seek(8 + n + b)
                    got = len(fh.read(e - b))
                t = time.monotonic() - t0
                assert got == e - b
                # What the kernel asked the mount for (its readahead included): the bytes modelfs
                # served to FUSE reads, from cache and from the wire (the monitor refreshes its
                # figures once a second).
                time.sleep(1.5)
                text = urllib.request.urlopen("http://%s/metrics" % metrics, timeout=10).read().decode()
                served = sum(float(line.split()[1]) for line in text.splitlines()
                             if line.startswith(("modelfs_cache_hit_bytes_total ", "modelfs_cache_miss_bytes_total ")))
            read = 8 + n + got
            fetched = self.fetched()
            return {"s": t, "ratio": fetched / read, "tensor MB": got / MB, "kernel": served / read,
                    "own": fetched / served}
        r = self.median_runs("tensor %s %s" % (label, tool), go)
        self.add("tensor%d_%s" % (vi, repo), "header + last tensor, " + label, tool, r["s"], "s")
        self.add("tensor_ratio%d_%s" % (vi, repo), "bytes fetched / bytes read, " + label, tool, r["ratio"], "x",
                 "the kernel asked for %.3fx the bytes read (its readahead); modelfs fetched %.3fx what the "
                 "kernel asked for" % (r["kernel"], r["own"]))
        self.add("tensor_size_%s" % repo, "(tensor size), " + label, tool, r["tensor MB"], "MB")

    def sequential(self, small, large):
        dl = os.path.join(self.work, "peer.out")
        targets = [(LARGE, large, self.large_label)]
        if self.want("seq"):
            targets.insert(0, (SMALL, small, self.small_label))
        for repo, f, label in targets:
            rel = os.path.join(repo, f["path"])
            size = f["size"]
            for vi, v in enumerate(self.variants):
                tool = ("modelfs " + v).strip()

                def go():
                    with self.fresh_mount("seq", v.split()) as m:
                        time.sleep(self.a.settle)  # the mount's warm-up of its connections
                        path = os.path.join(m.mnt, rel)
                        cpu0 = m.cpu_seconds()
                        t0 = time.monotonic()
                        os.stat(path)  # timed (the peers get the CDN URL for free): shown in the note
                        lookup = time.monotonic() - t0
                        n = read_file(path)
                        t = time.monotonic() - t0
                        cpu = m.cpu_seconds() - cpu0
                        assert n == size, (n, size)
                    return {"MB/s": size / t / MB, "cpu s/GiB": cpu / (size / GiB), "lookup s": lookup,
                            "read MB/s": size / (t - lookup) / MB}
                r = self.median_runs("seq %s %s" % (label, tool), go)
                if self.want("seq"):
                    self.add("seq%d_%s" % (vi, repo), "cold sequential, " + label, tool, r["MB/s"], "MB/s",
                             "incl. %.2f s first lookup" % r["lookup s"])
                    # The peers are given the CDN URL: the same read without the repo's first lookup.
                    self.add("seqread%d_%s" % (vi, repo), "cold sequential after the lookup, " + label, tool,
                             r["read MB/s"], "MB/s")
                if repo == LARGE:
                    self.add("cpu%d" % vi, "daemon CPU per GiB, cold read of the " + label, tool,
                             r["cpu s/GiB"], "s/GiB")
            if not self.want("seq"):
                continue
            axel = ["axel", "-q", "-n", "16", "-o", dl]
            peers = {
                "axel": axel,
                "aria2c": ["aria2c", "-q", "-x16", "-s16", "-k1M", "--allow-overwrite=true",
                           "--file-allocation=none", "-d", self.work, "-o", "peer.out"],
                # What a user hands a downloader: the hub's /resolve/ URL, which answers with a
                # redirect to the CDN (axel follows it on a fresh connection of its own), the
                # like of modelfs's lookup and resolve in the row that includes them.
                "axel-resolve": axel,
            }
            names = {"axel": "axel -n 16", "aria2c": "aria2c -x16 -s16 -k1M",
                     "axel-resolve": "axel -n 16, hub /resolve/ URL"}
            for peer, cmd in peers.items():
                if shutil.which(cmd[0]) is None:
                    log("  (no %s: its row is skipped)" % cmd[0])
                    continue

                def go():
                    for p in (dl, dl + ".aria2", dl + ".st"):
                        if os.path.exists(p):
                            os.remove(p)
                    if peer == "axel-resolve":
                        url = "%s/%s/resolve/main/%s" % (self.hub.endpoint, repo, f["path"])
                    else:
                        url = self.hub.cdn_url(repo, f["path"])
                    drop_caches()
                    t0 = time.monotonic()
                    subprocess.run(cmd + [url], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    t = time.monotonic() - t0
                    got = os.path.getsize(dl)
                    assert got == size, (peer, got, size)
                    return {"MB/s": size / t / MB}
                r = self.median_runs("seq %s %s" % (label, peer), go)
                self.add("seq_%s_%s" % (peer, repo), "cold sequential, " + label, names[peer], r["MB/s"], "MB/s")
            if os.path.exists(dl):
                os.remove(dl)

    def loads(self):
        shards = self.files(SMALL)
        total = sum(f["size"] for f in shards)
        label = "whole-repo load, %.0f MiB repo" % (total / MiB)
        # python3 on PATH may be a pyenv/venv interpreter without Debian's python3-torch/-numpy:
        # use the first interpreter that imports the module.
        torch_py = python_with("torch")
        numpy_py = python_with("numpy")
        st_py = numpy_py or "python3"
        loaders = []
        if torch_py:
            loaders.append(("torch", "torch read(), file order", [torch_py, os.path.join(HERE, "torch_load.py")]))
        else:
            log("  (no python3 here imports torch: the torch load row is skipped; apt-get install python3-torch)")
        loaders.append(("numpy", "%s read(), file order" % ("numpy" if numpy_py else "st_load (no numpy)"),
                        [st_py, os.path.join(TESTING, "st_load.py"), "--json"]))
        loaders.append(("mmap", "mmap, random order", [st_py, os.path.join(TESTING, "st_load.py"), "--json",
                                                       "--mmap", "--order", "random"]))
        loaders = [ld for ld in loaders if ld[0] in self.loaders]
        self.loader_desc = "; ".join("%s: %s" % (k, c[0]) for k, _, c in loaders)
        log("  loaders: " + self.loader_desc)
        for vi, v in enumerate(self.variants):
            tool = ("modelfs " + v).strip()
            for key, what, cmd in loaders:
                def go():
                    with self.fresh_mount("load", v.split()) as m:
                        d = os.path.join(m.mnt, SMALL)
                        self.hub.clear()
                        t0 = time.monotonic()
                        p = subprocess.run(cmd[:2] + [d] + cmd[2:], capture_output=True, text=True)
                        wall = time.monotonic() - t0
                        try:
                            out = json.loads(p.stdout.strip().splitlines()[-1])
                        except (ValueError, IndexError):
                            out = {"ok": False, "errors": [p.stdout[-500:] + p.stderr[-500:]]}
                        if p.returncode != 0 or not out.get("ok"):
                            raise RuntimeError("%s loader failed: %s" % (key, out.get("errors")))
                    # The loader's own clock: from the first shard's open to the last tensor (without the
                    # interpreter's start, imports and the index read).
                    return {"MB/s": total / out["seconds"] / MB, "fetched/repo": self.fetched() / total,
                            "wall s": wall}
                r = self.median_runs("load %s %s" % (key, tool), go)
                self.add("load%d_%s" % (vi, key), "%s, %s" % (label, what), tool, r["MB/s"], "MB/s",
                         "%.2fx bytes fetched / repo bytes; process wall %.1f s" % (r["fetched/repo"], r["wall s"]))

    # ------------------------------------------------------------------------------------ table
    def notes(self):
        for r in self.rows:
            k = r["key"]
            if k.startswith("ttfb") and r["tool"].startswith("modelfs") and self.value("ttfb_curl"):
                r["note"] = "%.2fx curl; %s" % (r["value"] / self.value("ttfb_curl"), r["note0"])
            if k[:6] == "tensor" and k[6:7].isdigit() and r["tool"].startswith("modelfs"):
                bound = self.value("tensor_curl_" + k.split("_", 1)[1])
                if bound:
                    r["note"] = "%.2fx curl (bound)" % (r["value"] / bound)
            if not (k.startswith("seq") and k[3:4] != "_" and r["tool"].startswith("modelfs")):
                continue
            repo = k.split("_", 1)[1]
            parts = []
            for peer, name in (("axel", "axel"), ("aria2c", "aria2c"), ("axel-resolve", "axel via /resolve/")):
                pv = self.value("seq_%s_%s" % (peer, repo))
                if pv:
                    parts.append("%.2fx %s" % (r["value"] / pv, name))
            ref, name = ("ceiling", "ceiling") if repo == LARGE else ("ranges", "4 MiB ranges")
            rv = self.value(ref)
            if rv:
                parts.append("%.2fx %s" % (r["value"] / rv, name))
            r["note"] = "; ".join(x for x in (", ".join(parts), r["note0"]) if x)

    def table(self):
        self.notes()
        out = ["| measure | tool | median | unit | note (ratio) |", "|---|---|---|---|---|"]
        for r in self.rows:
            v = r["value"]
            out.append("| %s | %s | %s | %s | %s |" % (r["measure"], r["tool"], "-" if v is None else
                                                      "%.3f" % v if abs(v) < 10 else "%.1f" % v, r["unit"], r["note"]))
        return "\n".join(out)

    def describe(self, seconds, sizes):
        a = self.a
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
        mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal:")), 0)
        disk = subprocess.run(["df", "-h", "--output=source,fstype,size", self.work], capture_output=True,
                              text=True).stdout.strip().splitlines()[-1]
        first = bench.first_line
        return "\n".join([
            "- Machine: %s, %d vCPU, %d MiB RAM, Linux %s; work dir %s on %s" % (
                cpu, os.cpu_count(), mem, os.uname().release, self.work, " ".join(disk.split())),
            "- Date: %s; total time %.1f min" % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), seconds / 60),
            "- Command: `bash bench/far.sh %s`" % " ".join(sys.argv[1:]),
            "- modelfs: %s; %s (default options unless the tool column says otherwise)" % (
                first([self.binary, "--version"]), self.binary_desc),
            "- Load average when the run started: %s (other load slows every tool; the delay line is one "
            "user-space thread)" % bench.LOAD_AT_START,
            "- Servers: tests/testing/fake_hub.py (API, redirects) + %s (the CDN: Range, keep-alive, sendfile)"
            % first(["nginx", "-v"]),
            "- Peers: %s; %s; %s; far.py under python %s" % (first(["curl", "--version"]).split(" (")[0],
                                                 first(["aria2c", "--version"]), first(["axel", "--version"]),
                                                 sys.version.split()[0]),
            "- Repos (tests/testing/gen_repo.py): %s = %s in 4 shards (%s); %s = %s in 2 shards (%s)" % (
                SMALL, a.small_size, sizes[SMALL], LARGE, a.large_size, sizes[LARGE]),
            "- Link: ../shared/wan-sim instance %s, %g ms RTT, %g Mbit/s, %s per connection (nginx and the fake "
            "hub in the namespace, tcp_wmem max 32 MiB there)" % (NS, a.rtt_ms, a.link_mbit, a.per_conn_rate),
            "- Loaders (interpreter): %s" % (self.loader_desc or "-"),
            "- Every modelfs figure: fresh mount, empty cache dir, drop_caches before it; \"bytes fetched\" = "
            "sum of nginx $body_bytes_sent from just before the measure to the unmount",
        ])


def on_signal(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/modelfs-far", help="repos, caches, logs, mount point")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="", help="comma list of rows: " + ",".join(ROW_NAMES) + " (default all)")
    ap.add_argument("--results", default="", help="also write the table to this markdown file")
    ap.add_argument("--loaders", default="torch,numpy,mmap", help="comma list of the load row's loaders")
    ap.add_argument("--modelfs-variant", action="append", default=[],
                    help="mount options for extra modelfs rows (repeatable; '' = defaults), e.g. "
                         "--modelfs-variant '' --modelfs-variant=--fill-on-open")
    ap.add_argument("--small-size", default="244MiB", help="size of bench/small (4 shards)")
    ap.add_argument("--large-size", default="1020MiB", help="size of bench/large (2 shards; 1020MiB gives a 494 MiB largest shard)")
    ap.add_argument("--ceiling-ranges", type=int, default=24)
    ap.add_argument("--settle", type=float, default=0,
                    help="seconds from the mount to the cold sequential read (the mount opens its "
                         "connections meanwhile); 0: at once, as a script that mounts and reads")
    ap.add_argument("--rtt-ms", type=float, default=200)
    ap.add_argument("--link-mbit", type=float, default=400)
    ap.add_argument("--per-conn-rate", default="8MiB/s")
    ap.add_argument("--hub-port", type=int, default=19080, help="hub; +1 its own CDN port; +2 nginx")
    a = ap.parse_args()
    if a.runs < 1:
        sys.exit("far: --runs must be >= 1")
    if os.geteuid() != 0:
        sys.exit("far: run as root (network namespace, drop_caches, FUSE)")
    t_start = time.monotonic()
    f = Far(a)
    if not os.access(f.binary_src, os.X_OK):
        sys.exit("far: no modelfs binary at %s (set MODELFS_BIN or run bench/far.sh)" % f.binary_src)
    f.snapshot_binary()
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the finally below tears everything down.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    root = f.gen()
    sizes = {}
    for repo in (SMALL, LARGE):
        s = sorted((x["size"] for x in f.files(repo)), reverse=True)
        sizes[repo] = ", ".join("%.1f MB" % (x / MB) for x in s)
        log("far: %s shards: %s (largest %d bytes = %.1f MB = %.1f MiB)" % (repo, sizes[repo], s[0], s[0] / MB,
                                                                           s[0] / MiB))
    force_unmount(f.mnt)
    failed = None
    try:
        log("far: wan-sim %s up (%g ms RTT, %g Mbit/s, %s per connection)" % (NS, a.rtt_ms, a.link_mbit,
                                                                           a.per_conn_rate))
        f.hub = bench.Hub(root, f.work, True, a, ns=NS)
        log("far: hub %s, CDN %s" % (f.hub.endpoint, f.hub.cdn_base))
        f.run()
    except BaseException as e:
        failed = e
        raise
    finally:
        bench.close_all(f.live, f.close_mount, "far")
        force_unmount(f.mnt)
        if f.hub is not None:
            f.hub.stop()
        subprocess.run([WAN_SIM, "down", "--name", NS, "--force"], capture_output=True)
        for p in ("peer.out", "peer.out.aria2", "peer.out.st"):
            if os.path.exists(os.path.join(f.work, p)):
                os.remove(os.path.join(f.work, p))
        if failed is not None and f.rows:
            log("far: stopped by %r; rows measured so far:" % failed)
            print(f.table(), flush=True)
    seconds = time.monotonic() - t_start
    table = f.table()
    print(table, flush=True)
    log("far: %.1f min" % (seconds / 60))
    if a.results:
        with open(a.results, "w") as out:
            out.write("# modelfs far mirror, cold start\n\n")
            out.write(f.describe(seconds, sizes) + "\n\n")
            out.write("MB/s = 10^6 bytes/s; medians of %d runs; s = seconds. Ratios in the note column divide "
                      "medians of this run.\n\n" % a.runs)
            out.write(table + "\n")


if __name__ == "__main__":
    main()
