#!/usr/bin/env python3
"""A cold mmap load in random tensor order, and where its CPU goes (issue 14, target 4).

Interleaved rounds, each on a fresh mount with an empty cache (page cache dropped first):
  dd        a cold sequential read of the larger shard (1 MiB reads): the rate target 4 compares with
  cold      tests/testing/st_load.py --mmap --order random over the 2-shard repo
  file      the same loader in file order with read() (the same loader, sequential)
  cached    the mmap random load again on a second mount of the same cache: every byte in modelfs's
            cache, none in the mount's page cache (FUSE reads served from the cache file)
  local     the mmap random load of the hub's own files, already in the page cache: the loader with
            no I/O at all, what no filesystem can beat
  squashfs  the mmap random load through another FUSE filesystem with every byte local: squashfuse_ll
            (libfuse 3) over an uncompressed image of the shards held in the page cache, a fresh
            mount each round (its page cache empty): the kernel's FUSE fault path without modelfs
            and without a network
and the parts of a cold load measured without modelfs: curl's CPU to receive the shard from the
same nginx (to /dev/null) and SHA-256's speed (`openssl speed`), and
  bound     the bound without modelfs: the local warm load and, at the same time on the same CPUs,
            the work no verified cache can skip for those bytes (`curl -o FILE`, then `sha256sum FILE`
            from the page cache, of every shard at once from the same nginx, FILE on the cache's
            disk; a pipe through tee costs two more copies); MB/s = repo bytes / the
            time until both are done. What a cold load through any verified cache could reach here,
            less the cost of the faults themselves.

For each row: MB/s, the CPU seconds per GB of the loader, the daemon and nginx, and the machine's
idle share during it (from /proc/stat). A cold row at a few % idle is CPU-bound: it goes faster
only with less CPU per byte, not with more parallelism or other readahead.

    MODELFS_BIN=... python3 bench/mmap_bound.py [--rounds 3] [--variant='--max-readahead 2MiB']
(root: FUSE, drop_caches; through bench/run.sh's setup: BENCH_PY=mmap_bound.py bash bench/run.sh)
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from bench import TESTING, log  # noqa: E402

REPO = "bench/model-1g"
ST_LOAD = os.path.join(TESTING, "st_load.py")


def proc_cpu(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def nginx_cpu():
    t = 0.0
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if open("/proc/%s/comm" % p).read().strip() == "nginx":
                    t += proc_cpu(int(p))
            except OSError:
                pass
    return t


def cpu_times():
    return [int(x) for x in open("/proc/stat").readline().split()[1:9]]


class Measured:
    """Runs fn(); records wall time, children's CPU (the loader), nginx's CPU and the idle share."""

    def __init__(self, fn):
        r0, n0, s0 = resource.getrusage(resource.RUSAGE_CHILDREN), nginx_cpu(), cpu_times()
        self.wall, _ = bench.timed(fn)
        r1, n1, s1 = resource.getrusage(resource.RUSAGE_CHILDREN), nginx_cpu(), cpu_times()
        self.child = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        self.nginx = n1 - n0
        d = [b - a for a, b in zip(s0, s1)]
        self.idle = 100.0 * (d[3] + d[4]) / max(1, sum(d))  # idle + iowait


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/modelfs-mmap-bench")
    ap.add_argument("--size", default="1GiB", help="the 2-shard repo's size")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variant", action="append", default=None, help="mount options of the cold rows (repeatable)")
    ap.add_argument("--hub-port", type=int, default=19800)
    a = bench.local_args(ap, "mmap_bound", "FUSE, drop_caches")
    binary = bench.modelfs_binary()
    root = os.path.join(a.dir, "hub")
    if not os.path.exists(os.path.join(root, "models", REPO, "manifest.json")):
        subprocess.run(["python3", os.path.join(TESTING, "gen_repo.py"), "--root", root, "--repo", REPO,
                        "--total-size", a.size, "--shards", "2", "--quiet"], check=True)
    man = json.load(open(os.path.join(root, "models", REPO, "manifest.json")))
    commit = man["refs"]["main"]
    shards = [f for f in man["commits"][commit]["files"] if f["path"].endswith(".safetensors")]
    total = sum(f["size"] for f in shards)
    big = max(shards, key=lambda f: f["size"])
    local_dir = os.path.join(root, "models", REPO, "commits", commit)
    mnt = os.path.join(a.dir, "mnt")
    # The shards in an uncompressed squashfs image, for squashfuse_ll.
    sq_src, img, sq_mnt = (os.path.join(a.dir, x) for x in ("sq", "img.sqfs", "sqmnt"))
    if not os.path.exists(img):
        os.makedirs(sq_src, exist_ok=True)
        for f in shards:
            shutil.copy(os.path.join(local_dir, f["path"]), os.path.join(sq_src, f["path"]))
        subprocess.run(["mksquashfs", sq_src, img, "-noI", "-noId", "-noD", "-noF", "-noX", "-quiet"],
                       check=True, stdout=subprocess.DEVNULL)
        shutil.rmtree(sq_src)
    os.makedirs(sq_mnt, exist_ok=True)
    hub = bench.Hub(root, a.dir, False, a)
    rows = {}  # name -> list of (MB/s, loader s/GB, daemon s/GB, nginx s/GB, idle %)

    def add(name, nbytes, m, daemon=0.0):
        gb = nbytes / 1e9
        r = (nbytes / m.wall / 1e6, m.child / gb, daemon / gb, m.nginx / gb, m.idle)
        rows.setdefault(name, []).append(r)
        log("  %-34s %7.1f MB/s  loader %.2f  daemon %.2f  nginx %.2f s/GB  idle %2.0f%%" % ((name,) + r))

    def load(d, mmap=True):
        args = ["python3", ST_LOAD, d] + (["--mmap", "--order", "random"] if mmap else ["--order", "file"])
        return lambda: subprocess.run(args, check=True, stdout=subprocess.DEVNULL)

    def fresh(extra, cache=None):
        if cache is None:
            cache = os.path.join(a.dir, "cache")
            subprocess.run(["rm", "-rf", cache], check=True)
        return bench.Mount(binary, hub.endpoint, cache, mnt, extra), cache

    try:
        for r in range(a.rounds):
            log("round %d" % (r + 1))
            for v in a.variant or [""]:
                extra, tag = v.split(), (" " + v if v else "")
                bench.drop_caches()
                m, _ = fresh(extra)
                add("dd 1M, cold" + tag, big["size"],
                    Measured(lambda: bench.read_file(os.path.join(mnt, REPO, big["path"]))), proc_cpu(m.proc.pid))
                m.close()
                bench.drop_caches()
                m, cache = fresh(extra)
                add("mmap random, cold" + tag, total, Measured(load(os.path.join(mnt, REPO))), proc_cpu(m.proc.pid))
                m.close()
                m, _ = fresh(extra, cache)
                add("mmap random, cached (FUSE cold)" + tag, total, Measured(load(os.path.join(mnt, REPO))),
                    proc_cpu(m.proc.pid))
                m.close()
                bench.drop_caches()
                m, _ = fresh(extra)
                add("file order read(), cold" + tag, total, Measured(load(os.path.join(mnt, REPO), mmap=False)),
                    proc_cpu(m.proc.pid))
                m.close()
            bench.read_file(img)  # the image into the page cache; the mount's own page cache is fresh
            subprocess.run(["fusermount3", "-u", "-z", sq_mnt], capture_output=True)
            subprocess.run(["squashfuse_ll", img, sq_mnt], check=True)
            try:
                add("mmap random, squashfuse_ll (local)", total, Measured(load(sq_mnt)))
            finally:
                subprocess.run(["fusermount3", "-u", sq_mnt], check=True)
            load(local_dir)()  # into the page cache
            add("mmap random, local files, warm", total, Measured(load(local_dir)))
            copies = os.path.join(a.dir, "copies")
            os.makedirs(copies, exist_ok=True)

            def bound():
                work = [subprocess.Popen(["sh", "-c", 'curl -sf -o "$2" "$1" && sha256sum "$2" > /dev/null', "sh",
                                          hub.cdn_url(REPO, f["path"]), os.path.join(copies, "s%d" % i)])
                        for i, f in enumerate(shards)]
                load(local_dir)()
                for w in work:
                    if w.wait() != 0:
                        raise RuntimeError("bound: curl -o, sha256sum failed")
            add("bound: local warm load + curl -o, sha256sum", total, Measured(bound))
            subprocess.run(["rm", "-rf", copies], check=True)
            bench.drop_caches()
            url = hub.cdn_url(REPO, big["path"])
            add("curl -o /dev/null (receive)", big["size"],
                Measured(lambda: subprocess.run(["curl", "-s", "-o", "/dev/null", url], check=True)))
        out = subprocess.run(["openssl", "speed", "-evp", "sha256", "-bytes", "1048576", "-seconds", "2"],
                             capture_output=True, text=True).stdout.strip().splitlines()
        sha_kbs = float(out[-1].split()[-1].rstrip("k")) if out else 0.0
        print("\n| %d rounds, medians | MB/s | loader s/GB | daemon s/GB | nginx s/GB | idle %% |" % a.rounds)
        print("|---|---|---|---|---|---|")
        for name, rs in rows.items():
            med = [statistics.median(x[i] for x in rs) for i in range(5)]
            print("| %s | %.1f | %.2f | %.2f | %.2f | %.0f |" % ((name,) + tuple(med)))
        med = {name: statistics.median(x[0] for x in rs) for name, rs in rows.items()}
        dd = med.get("dd 1M, cold")
        if dd:
            for name in ("mmap random, cold", "mmap random, squashfuse_ll (local)",
                         "bound: local warm load + curl -o, sha256sum"):
                if name in med:
                    print("\n%s / dd 1M cold: %.2fx" % (name, med[name] / dd), end="")
            print()
        if sha_kbs:
            print("\nSHA-256 (openssl speed, 1 MiB blocks, one core): %.0f MB/s = %.2f s/GB"
                  % (sha_kbs * 1000 / 1e6, 1e9 / (sha_kbs * 1000)))
        print("CPUs: %d" % os.cpu_count())
    finally:
        hub.stop()


if __name__ == "__main__":
    main()
