#!/usr/bin/env bash
# A/B of modelfs binaries on one cold read: for each run, each binary in turn mounts a fresh cache,
# `cat`s the largest shard of a generated repo served by the fake hub on loopback, and prints the
# read's seconds and the daemon's CPU seconds for it. Interleaved, so machine noise hits all alike.
# Usage: bash bench/ab_cold.sh BIN [BIN...]   (env: SIZE=1GiB SHARDS=2 DIR=/tmp/modelfs-ab RUNS=3
#        EXTRA="mount options" LOG_LEVEL=warn; the mount log of the last read is DIR/mount.log)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_ab_setup bench/ab_cold.sh "$@"
BYTES=$(python3 -c "
import json,sys; m=json.load(open(sys.argv[1])); c=m['refs']['main']
print([f['size'] for f in m['commits'][c]['files'] if f['path'] == sys.argv[2]][0])" \
  "$DIR/hub/models/$REPO/manifest.json" "$SHARD")
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for run in $(seq "$RUNS"); do
  for bin in "$@"; do
    rm -rf "$DIR/cache"
    # shellcheck disable=SC2086
    "$bin" mount -f --endpoint "$EP" --cache-dir "$DIR/cache" --log-level "${LOG_LEVEL:-warn}" ${EXTRA:-} "$MNT" \
      >"$DIR/mount.log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do mountpoint -q "$MNT" && break; sleep 0.05; done
    stat "$MNT/$REPO/$SHARD" >/dev/null  # the lookup is not timed
    sync; echo 3 >/proc/sys/vm/drop_caches
    c0=$(cpu "$pid"); t0=$(date +%s.%N)
    cat "$MNT/$REPO/$SHARD" >/dev/null
    t1=$(date +%s.%N)
    sleep 1  # the hash's data sync and the next shard's lookahead are the read's CPU too
    c1=$(cpu "$pid")
    fusermount3 -u "$MNT"; wait "$pid" || true
    python3 -c "import sys; a = sys.argv; t = float(a[4]) - float(a[3])
print('run %s  %-40s %.2f s  %.0f MB/s  daemon CPU %.2f s' % (a[1], a[2], t, int(a[7]) / t / 1e6,
      (float(a[6]) - float(a[5])) / int(a[8])))" "$run" "$bin" "$t0" "$t1" "$c0" "$c1" "$BYTES" "$(getconf CLK_TCK)"
  done
done
