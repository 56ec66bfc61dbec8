#!/usr/bin/env bash
# The main job, end to end on one machine: build modelfs, generate a model in the real formats,
# serve it from the fake hub on loopback (hub + CDN listeners, signed redirects, as the real hub
# does), mount it, load every tensor through the mount with a safetensors reader, and compare with
# curl fetching the largest shard from the same server. Prints what it did and the throughput.
# Usage: bash tools/demo.sh   (env: DEMO_SIZE=1GiB, DEMO_SHARDS=4, DEMO_DIR=/tmp/modelfs-demo)
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)
# Only the binary the demo runs, not the tests (the whole demo took 74 s from a fresh clone on a
# 2-core VM, build included); `bash tools/test.sh` builds the rest into the same build dir later.
BUILD_TARGET=modelfs bash tools/setup.sh >/dev/null
BIN="$SRC/${BUILD_DIR:-build}/bin/modelfs"
# Debian's python3 (with python3-numpy from setup): the loader builds numpy arrays of every tensor.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

SIZE=${DEMO_SIZE:-1GiB}
SHARDS=${DEMO_SHARDS:-4}
DIR=${DEMO_DIR:-/tmp/modelfs-demo}
REPO=demo-org/demo-model
MNT="$DIR/models"
HUB_PID=""

cleanup() {
  if mountpoint -q "$MNT" 2>/dev/null; then "$BIN" unmount "$MNT" || true; fi
  [ -n "$HUB_PID" ] && kill "$HUB_PID" 2>/dev/null || true
}
trap cleanup EXIT

mkdir -p "$DIR" "$MNT"
rm -rf "$DIR/cache"
echo "== generating $REPO ($SIZE in $SHARDS safetensors shards) under $DIR/hub"
python3 tests/testing/gen_repo.py --root "$DIR/hub" --repo "$REPO" --total-size "$SIZE" \
  --shards "$SHARDS" --quiet
MANIFEST="$DIR/hub/models/$REPO/manifest.json"

echo "== starting the fake hub on loopback"
rm -f "$DIR/ready.json"
python3 tests/testing/fake_hub.py --root "$DIR/hub" --ready-file "$DIR/ready.json" >"$DIR/hub.log" 2>&1 &
HUB_PID=$!
for _ in $(seq 100); do [ -s "$DIR/ready.json" ] && break; sleep 0.1; done
PORT=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['hub_port'])" "$DIR/ready.json")
EP="http://127.0.0.1:$PORT"
echo "   hub at $EP"

echo "== mounting: modelfs mount --endpoint $EP --cache-dir $DIR/cache $MNT"
"$BIN" mount --endpoint "$EP" --cache-dir "$DIR/cache" --log-file "$DIR/modelfs.log" "$MNT"
echo "== ls $MNT/$REPO"
ls -l "$MNT/$REPO"

echo "== cold load: every tensor through the mount (network -> cache -> reader)"
"$PY" tests/testing/st_load.py "$MNT/$REPO"
echo "== warm load: again, from the page cache"
"$PY" tests/testing/st_load.py "$MNT/$REPO"
echo "== SHA-256 of every shard against the hub's manifest"
"$PY" tests/testing/st_load.py "$MNT/$REPO" --manifest "$MANIFEST" | tail -1

SHARD=$(python3 -c "
import json,sys
m=json.load(open(sys.argv[1])); c=m['refs']['main']
print(max(m['commits'][c]['files'], key=lambda f: f['size'])['path'])" "$MANIFEST")
BYTES=$(stat -c %s "$MNT/$REPO/$SHARD")
echo "== largest shard $SHARD ($BYTES bytes): modelfs vs curl from the same server"
"$BIN" unmount "$MNT"
rm -rf "$DIR/cache"
"$BIN" mount --endpoint "$EP" --cache-dir "$DIR/cache" --log-file "$DIR/modelfs.log" "$MNT"
rate() { python3 -c "import sys; print('%.0f MB/s' % (int(sys.argv[1]) / float(sys.argv[2]) / 1e6))" "$@"; }
t0=$(date +%s.%N); cat "$MNT/$REPO/$SHARD" >/dev/null; t1=$(date +%s.%N)
echo "   modelfs cold (cat):  $(rate "$BYTES" "$(python3 -c "print($t1-$t0)")")"
t0=$(date +%s.%N); cat "$MNT/$REPO/$SHARD" >/dev/null; t1=$(date +%s.%N)
echo "   modelfs warm (cat):  $(rate "$BYTES" "$(python3 -c "print($t1-$t0)")")"
CURL_T=$(curl -s -L -o /dev/null -w '%{time_total}' "$EP/$REPO/resolve/main/$SHARD")
echo "   curl -L (one conn):  $(rate "$BYTES" "$CURL_T")"
echo "== done; unmounting"
