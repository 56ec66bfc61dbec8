#!/usr/bin/env bash
# The cache directory against its quota: a generated repo read twice (cat of every file) through
# a mount with --cache-size, while `du -s -B1` (allocated bytes) of the whole cache directory (block data, indexes,
# metadata, status file, log) is sampled every 50 ms. Prints the peak and the quota.
# Usage: bash bench/quota_du.sh   (env: SIZE=244MiB SHARDS=4 QUOTA=64MiB DIR=/tmp/modelfs-quota
#        BIN=path/to/modelfs, default this tree's build)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-244MiB}; SHARDS=${SHARDS:-4}; QUOTA=${QUOTA:-64MiB}; DIR=${DIR:-/tmp/modelfs-quota}
REPO=quota-org/quota-model; MNT="$DIR/mnt"
. bench/lib.sh
bench_bin
trap 'bench_cleanup "$BIN" "$MNT"; [ -n "${SAMPLER:-}" ] && kill "$SAMPLER" 2>/dev/null || true' EXIT
mkdir -p "$DIR" "$MNT"
rm -rf "$DIR/cache" "$DIR/du.txt"
bench_repo "$DIR" "$REPO" "$SIZE" "$SHARDS"
bench_hub "$DIR" hub
mkdir -p "$DIR/cache"
"$BIN" mount --endpoint "$BENCH_EP" --cache-dir "$DIR/cache" --cache-size "$QUOTA" \
  --log-file "$DIR/cache/modelfs.log" "$MNT"
( while :; do du -s -B1 "$DIR/cache" 2>/dev/null | cut -f1 >>"$DIR/du.txt"; sleep 0.05; done ) &
SAMPLER=$!
for pass in 1 2; do
  find "$MNT/$REPO" -type f -print0 | xargs -0 cat >/dev/null
done
kill "$SAMPLER"; SAMPLER=""
"$BIN" unmount "$MNT"
python3 - "$DIR/du.txt" "$QUOTA" <<'PY'
import re, sys
samples = [int(l) for l in open(sys.argv[1]) if l.strip()]
m = re.match(r"(\d+)(KiB|MiB|GiB)?$", sys.argv[2])
quota = int(m.group(1)) * {None: 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[m.group(2)]
peak = max(samples)
print("du -s -B1 of the cache dir, %d samples at 50 ms: peak %d bytes; quota %d bytes; %s" % (
    len(samples), peak, quota, "at or under the quota" if peak <= quota else "OVER by %d bytes" % (peak - quota)))
sys.exit(0 if peak <= quota else 1)
PY
