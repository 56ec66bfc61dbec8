#!/usr/bin/env bash
# Time from a file's last byte to "verified", and what the whole-file hash costs the daemon, for
# a cold sequential read (cat) of the largest shard through a fresh mount, against the fake hub on
# loopback. Run it for two builds to compare (e.g. an older commit's binary as BEFORE_BIN).
# Prints one row per run and build:
#   cat s         the cat, open to EOF
#   verified-EOF  the "verified" log line's time minus the moment cat saw EOF (negative: the file
#                 was verified before its reader got its last bytes); the line comes after the
#                 durable flag (a sync of the file's data)
#   matched-EOF   the same for the moment the hash matched, where the log line says it (builds
#                 that hash as bytes arrive: "hash matched N ms before")
#   cpu s         the daemon's user+system CPU from mount to verified
#   file reads    bytes the daemon read from files (rchar), and from the disk device (read_bytes)
# Usage: bash bench/verify_latency.sh
#   env: SIZE=1GiB SHARDS=1 RUNS=3 DIR=/tmp/modelfs-verify MODELFS_BIN= (default: this tree's build)
#        BEFORE_BIN=path/to/older/modelfs (adds rows for it) LOG_LEVEL=info
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-1GiB}; SHARDS=${SHARDS:-1}; DIR=${DIR:-/tmp/modelfs-verify}; RUNS=${RUNS:-3}
REPO=bench-org/verify-model; MNT="$DIR/mnt"
. bench/lib.sh
bench_bin
CUR_BIN=$BIN
trap 'bench_cleanup "$CUR_BIN" "$MNT"' EXIT
mkdir -p "$DIR" "$MNT"
bench_repo "$DIR" "$REPO" "$SIZE" "$SHARDS"
bench_hub "$DIR" hub; EP=$BENCH_EP
MANIFEST="$DIR/hub/models/$REPO/manifest.json"
SHARD=$(bench_largest "$MANIFEST")
F="$MNT/$REPO/$SHARD"
# user+system ticks, rchar and read_bytes of a process
sample() { python3 - "$1" <<'PY'
import os, sys
pid = sys.argv[1]
st = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
ticks = int(st[11]) + int(st[12])
io = dict(l.split(": ") for l in open("/proc/%s/io" % pid).read().splitlines())
print(ticks / os.sysconf("SC_CLK_TCK"), io["rchar"], io["read_bytes"])
PY
}
one_run() {  # bin label
  local bin=$1 label=$2
  CUR_BIN=$bin
  mountpoint -q "$MNT" && "$bin" unmount "$MNT"
  rm -rf "$DIR/cache" "$DIR/modelfs.log"
  "$bin" mount --endpoint "$EP" --cache-dir "$DIR/cache" --log-file "$DIR/modelfs.log" --log-level "${LOG_LEVEL:-info}" "$MNT"
  stat "$F" >/dev/null
  local pid
  pid=$(pgrep -n -f "mount .*$MNT") || { echo "no daemon for $MNT" >&2; exit 1; }
  read -r c0 r0 d0 < <(sample "$pid")
  sync; echo 3 >/proc/sys/vm/drop_caches
  local t0 t1
  t0=$(date +%s.%N); cat "$F" >/dev/null; t1=$(date +%s.%N)
  for _ in $(seq 600); do grep -q "verified .*$SHARD" "$DIR/modelfs.log" && break; sleep 0.05; done
  read -r c1 r1 d1 < <(sample "$pid")
  python3 - "$DIR/modelfs.log" "$SHARD" "$t0" "$t1" "$c0" "$c1" "$r0" "$r1" "$d0" "$d1" "$label" <<'PY'
import datetime, re, sys
log, shard = sys.argv[1], sys.argv[2]
t0, t1, c0, c1 = map(float, sys.argv[3:7])
r0, r1, d0, d1 = map(int, sys.argv[7:11])
ts = matched = None
for line in open(log, errors="replace"):
    if "verified" in line and shard in line:
        m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
        if m:
            ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(
                tzinfo=datetime.timezone.utc).timestamp()
            h = re.search(r"hash matched (\d+) ms before", line)
            matched = ts - int(h.group(1)) / 1000 if h else None
v = "%+.3f" % (ts - t1) if ts else "never"
mv = "%+.3f" % (matched - t1) if matched else "-"
print("%-10s %7.2f %13s %12s %7.2f %12.0f %12.0f" % (sys.argv[11], t1 - t0, v, mv, c1 - c0, (r1 - r0) / 2**20,
                                                      (d1 - d0) / 2**20))
PY
}
echo "file: $SHARD ($SIZE repo, $SHARDS shard(s)); cold cat through a fresh mount; page cache dropped first"
printf '%-10s %7s %13s %12s %7s %12s %12s\n' build "cat s" "verified-EOF" "matched-EOF" "cpu s" "rchar MiB" "disk MiB"
for i in $(seq "$RUNS"); do
  [ -n "${BEFORE_BIN:-}" ] && one_run "$BEFORE_BIN" before
  one_run "$BIN" this
done
