#!/usr/bin/env bash
# Cold and warm throughput of the largest shard through a modelfs mount, against the fake hub on
# loopback, next to curl fetching the same file from the same server. Prints one table.
# Usage: bash bench/loopback_read.sh   (env: SIZE=1GiB SHARDS=2 DIR=/tmp/modelfs-bench RUNS=3 MODELFS_BIN=)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-1GiB}; SHARDS=${SHARDS:-2}; DIR=${DIR:-/tmp/modelfs-bench}; RUNS=${RUNS:-3}
REPO=bench-org/bench-model; MNT="$DIR/mnt"
. bench/lib.sh
bench_bin
trap 'bench_cleanup "$BIN" "$MNT"' EXIT
mkdir -p "$DIR" "$MNT"
bench_repo "$DIR" "$REPO" "$SIZE" "$SHARDS"
bench_hub "$DIR" hub; EP=$BENCH_EP
MANIFEST="$DIR/hub/models/$REPO/manifest.json"
SHARD=$(bench_largest "$MANIFEST")
now() { date +%s.%N; }
mbps() { python3 -c "import sys; print('%.0f' % (int(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2])) / 1e6))" "$@"; }
mount_fresh() {
  mountpoint -q "$MNT" && "$BIN" unmount "$MNT"
  [ "${1:-}" = "keep" ] || rm -rf "$DIR/cache"
  "$BIN" mount --endpoint "$EP" --cache-dir "$DIR/cache" --log-file "$DIR/modelfs.log" "$MNT"
  stat "$MNT/$REPO/$SHARD" >/dev/null
}
BYTES=$(python3 -c "
import json,sys
m=json.load(open(sys.argv[1])); c=m['refs']['main']
print([f for f in m['commits'][c]['files'] if f['path']==sys.argv[2]][0]['size'])" "$MANIFEST" "$SHARD")
echo "file: $SHARD, $BYTES bytes; MB/s = 10^6 bytes/s; best of $RUNS runs"
printf '%-52s %8s\n' "case" "MB/s"
best() { sort -n | tail -1; }
row() { printf '%-52s %8s\n' "$1" "$2"; }
F="$MNT/$REPO/$SHARD"
U=$(curl -s -I "$EP/$REPO/resolve/main/$SHARD" | awk 'tolower($1)=="location:" {print $2}' | tr -d '\r')
row "curl, one connection, to /dev/null" "$(for i in $(seq $RUNS); do t0=$(now); curl -s -o /dev/null "$U"; t1=$(now); mbps $BYTES $t0 $t1; done | best)"
row "curl, one connection, to a file (new disk blocks)" "$(for i in $(seq $RUNS); do rm -f "$DIR/curl.out"; sync; t0=$(now); curl -s -o "$DIR/curl.out" "$U"; t1=$(now); mbps $BYTES $t0 $t1; done | best)"
rm -f "$DIR/curl.out"
row "modelfs cold (empty cache): cat" "$(for i in $(seq $RUNS); do mount_fresh; sync; t0=$(now); cat "$F" >/dev/null; t1=$(now); mbps $BYTES $t0 $t1; done | best)"
row "modelfs warm (kernel page cache): cat" "$(for i in $(seq $RUNS); do t0=$(now); cat "$F" >/dev/null; t1=$(now); mbps $BYTES $t0 $t1; done | best)"
row "modelfs warm (block cache on disk, new mount): cat" "$(for i in $(seq $RUNS); do mount_fresh keep; echo 3 >/proc/sys/vm/drop_caches; t0=$(now); cat "$F" >/dev/null; t1=$(now); mbps $BYTES $t0 $t1; done | best)"
DATA=$(ls "$DIR"/cache/blobs/*/sha256-*.data | head -1)
row "cat of a cache data file after drop_caches (disk)" "$(for i in $(seq $RUNS); do echo 3 >/proc/sys/vm/drop_caches; t0=$(now); cat "$DATA" >/dev/null; t1=$(now); mbps $(stat -c %s "$DATA") $t0 $t1; done | best)"
