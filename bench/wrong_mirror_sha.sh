#!/usr/bin/env bash
# Whole-file readers against a lying first mirror: two fake-hub mirrors on loopback, the first
# flipping a byte in every body of every safetensors shard, the second clean. Default mode (no
# --verify-before-read). Each round: a fresh mount and an empty cache, then `sha256sum` of every
# shard, one after another, and each shard once more right after. Counts the runs that exited 0
# with a wrong hash (the promise: none) and those that failed with a read error.
# Usage: bash bench/wrong_mirror_sha.sh   (env: SIZE=244MiB SHARDS=4 ROUNDS=3 DIR=/tmp/modelfs-wrongmirror
#        BIN=path/to/modelfs, default this tree's build)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-244MiB}; SHARDS=${SHARDS:-4}; ROUNDS=${ROUNDS:-3}; DIR=${DIR:-/tmp/modelfs-wrongmirror}
REPO=wm-org/wm-model; MNT="$DIR/mnt"
. bench/lib.sh
bench_bin
trap 'bench_cleanup "$BIN" "$MNT"' EXIT
mkdir -p "$DIR" "$MNT"
bench_repo "$DIR" "$REPO" "$SIZE" "$SHARDS"
bench_hub "$DIR" a; A=$BENCH_EP
bench_hub "$DIR" b; B=$BENCH_EP
MANIFEST="$DIR/hub/models/$REPO/manifest.json"
mapfile -t SHARD_LIST < <(python3 -c "
import json,sys
m=json.load(open(sys.argv[1])); c=m['refs']['main']
for f in sorted(m['commits'][c]['files'], key=lambda f: f['path']):
    if f['path'].endswith('.safetensors'): print(f['path'], f['sha256'])" "$MANIFEST")
PATHS=$(printf '%s\n' "${SHARD_LIST[@]}" | awk '{printf "\"%s\",", $1}' | sed 's/,$//')
curl -s -XPOST "$A/_admin/faults" -d "{\"where\":\"cdn\",\"corrupt_paths\":[$PATHS]}" >/dev/null
ok=0; wrong=0; failed=0
for r in $(seq "$ROUNDS"); do
  rm -rf "$DIR/cache"
  "$BIN" mount --endpoint "$A" --endpoint "$B" --cache-dir "$DIR/cache" --log-file "$DIR/modelfs-$r.log" "$MNT"
  for pass in 1 2; do
    for line in "${SHARD_LIST[@]}"; do
      read -r path want <<<"$line"
      if got=$(sha256sum "$MNT/$REPO/$path" 2>/dev/null | awk '{print $1}') && [ -n "$got" ]; then
        if [ "$got" = "$want" ]; then ok=$((ok + 1)); else wrong=$((wrong + 1)); echo "round $r pass $pass: WRONG $path"; fi
      else
        failed=$((failed + 1)); echo "round $r pass $pass: read error on $path"
      fi
    done
  done
  "$BIN" unmount "$MNT"
done
echo "sha256sum runs: $ok right, $wrong EXITED 0 WITH A WRONG HASH, $failed failed with a read error"
echo "(mirror A flips a byte in every body of the $SHARDS shards; B is clean; $ROUNDS rounds x 2 passes)"
[ "$wrong" -eq 0 ]
