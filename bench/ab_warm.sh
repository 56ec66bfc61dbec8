#!/usr/bin/env bash
# A/B of modelfs binaries on warm reads: for each run, each binary in turn mounts a fresh cache,
# reads a generated repo's shards once (cold, from the fake hub on loopback), then after
# drop_caches reads the largest again through the mount and `cat`s the cache's own data file, and
# prints both rates and the daemon's CPU seconds for the warm read. Interleaved, so the machine's
# (and its disk's) noise hits all alike; the `cat` column is the disk of that very moment.
# Then, the bound: the same read through the mount with the cache file's pages already in memory
# (what is left is the kernel's FUSE read path), and through libfuse's own passthrough_ll
# (bench_passthrough_ll: splice, the same readahead) over the same file, from disk and from memory.
# Usage: bash bench/ab_warm.sh BIN [BIN...]   (env: SIZE=1GiB SHARDS=2 DIR=/tmp/modelfs-ab RUNS=3
#        EXTRA="mount options"; the mount log of the last run is DIR/mount.log)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_ab_setup bench/ab_warm.sh "$@"
bench_passthrough_ll "$DIR"
PT="$DIR/pt"
mkdir -p "$PT"
trap "fusermount3 -u '$PT' 2>/dev/null || true; bench_cleanup '$1' '$MNT'" EXIT
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
timed_read() {  # prints seconds to read $1 whole
  local t0 t1
  t0=$(date +%s.%N); cat "$1" >/dev/null; t1=$(date +%s.%N)
  python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$t1"
}
for run in $(seq "$RUNS"); do
  for bin in "$@"; do
    rm -rf "$DIR/cache"
    # shellcheck disable=SC2086
    "$bin" mount -f --endpoint "$EP" --cache-dir "$DIR/cache" --log-level info ${EXTRA:-} "$MNT" \
      >"$DIR/mount.log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do mountpoint -q "$MNT" && break; sleep 0.05; done
    # Every shard cold (a whole-file read of one fetches the next ahead: that must be over before
    # the warm read is timed), then wait until each is verified: the hash matched and the data is
    # durable (the mount logs it).
    cat "$MNT/$REPO"/*.safetensors >/dev/null
    n=$(ls "$MNT/$REPO"/*.safetensors | wc -l)
    for _ in $(seq 300); do [ "$(grep -c "verified $REPO " "$DIR/mount.log")" -ge "$n" ] && break; sleep 0.1; done
    sha=$(python3 -c "
import json,sys; m=json.load(open(sys.argv[1])); c=m['refs']['main']
print([f['sha256'] for f in m['commits'][c]['files'] if f['path'] == sys.argv[2]][0])" \
      "$DIR/hub/models/$REPO/manifest.json" "$SHARD")
    data="$DIR/cache/blobs/${sha:0:2}/sha256-$sha.data"
    bytes=$(stat -c %s "$MNT/$REPO/$SHARD")
    sync; echo 3 >/proc/sys/vm/drop_caches
    c0=$(cpu "$pid"); tm=$(timed_read "$MNT/$REPO/$SHARD"); c1=$(cpu "$pid")
    sync; echo 3 >/proc/sys/vm/drop_caches
    tc=$(timed_read "$data")
    sync; echo 3 >/proc/sys/vm/drop_caches
    cat "$data" >/dev/null; tmm=$(timed_read "$MNT/$REPO/$SHARD")
    fusermount3 -u "$MNT"; wait "$pid" || true
    "$PASSTHROUGH_LL" -o source="$(dirname "$data")" "$PT"
    bench_raise_readahead "$PT" 8192
    sync; echo 3 >/proc/sys/vm/drop_caches
    tpd=$(timed_read "$PT/$(basename "$data")")
    sync; echo 3 >/proc/sys/vm/drop_caches
    cat "$data" >/dev/null; tpm=$(timed_read "$PT/$(basename "$data")")
    fusermount3 -u "$PT"
    python3 -c "import sys; a = sys.argv; b = int(a[6])
print('run %s  %-40s warm after drop_caches %.0f MB/s, cat of the cache file %.0f MB/s (%.2fx)  daemon CPU %.2f s/GiB'
      % (a[1], a[2], b / float(a[3]) / 1e6, b / float(a[4]) / 1e6, float(a[4]) / float(a[3]),
         float(a[5]) / int(a[7]) / (b / 2**30)))
print('      bound: modelfs, cache file in memory %.0f MB/s (%.2fx); libfuse passthrough_ll from disk %.0f, in memory %.0f MB/s (%.2fx, %.2fx)'
      % (b / float(a[8]) / 1e6, float(a[4]) / float(a[8]), b / float(a[9]) / 1e6, b / float(a[10]) / 1e6,
         float(a[4]) / float(a[9]), float(a[4]) / float(a[10])))" \
      "$run" "$bin" "$tm" "$tc" "$(python3 -c "print($c1 - $c0)")" "$bytes" "$(getconf CLK_TCK)" "$tmm" "$tpd" "$tpm"
  done
done
