#!/usr/bin/env bash
# Bounded soak test: several readers over a repo mounted from TWO fake-hub mirrors on loopback while
# the mirrors inject connection resets, 5xx, 429s and stalls, and one of them serves corrupt bytes
# for one shard. Every byte read is checked against the source files. Prints one summary.
#
# Usage: bash bench/soak.sh
#   env: SIZE=2GiB SHARDS=4 READERS=4 DURATION=180 (seconds of reading) DIR=/tmp/modelfs-soak
#        WHOLE_READERS=2: readers that read whole shards front to back in 1 MiB reads (as sha256sum,
#        cp or a loader do) and compare the file's SHA-256; one that reaches EOF with a wrong hash
#        is a failure (a read error instead is the promised outcome: docs/ARCHITECTURE.md)
#        BUILD_DIR=build (where bin/modelfs is; built by tools/setup.sh if missing)
#        VERIFY_BEFORE_READ=1 mounts with --verify-before-read (no byte before its file's hash matched)
# Exit status: 1 if a whole-file reader finished with a wrong hash, or (with VERIFY_BEFORE_READ=1)
# any wrong byte was served; 0 otherwise. (BIN=path/to/modelfs measures another build, e.g. an older commit's.)
#
# Faults (fake_hub.py fault knobs, on both listeners of each mirror): mirror A: 10% resets, 5% 503,
# 2% 429, 2% of bodies stall 4 s; mirror B: the same, and every body of one shard has one flipped
# byte. Stalls (4 s) exceed the mount's --stall-timeout 3, so they are detected and retried.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)
SIZE=${SIZE:-2GiB}; SHARDS=${SHARDS:-4}; READERS=${READERS:-4}; DURATION=${DURATION:-180}
WHOLE_READERS=${WHOLE_READERS:-2}
DIR=${DIR:-/tmp/modelfs-soak}; BUILD_DIR=${BUILD_DIR:-build}
BIN=${BIN:-"$SRC/$BUILD_DIR/bin/modelfs"}
[ -x "$BIN" ] || BUILD_DIR="$BUILD_DIR" bash tools/setup.sh >/dev/null
REPO=soak-org/soak-model; MNT="$DIR/mnt"
. bench/lib.sh
trap 'bench_cleanup "$BIN" "$MNT"' EXIT
mkdir -p "$DIR" "$MNT"
rm -rf "$DIR/cache" "$DIR/modelfs.log"
bench_repo "$DIR" "$REPO" "$SIZE" "$SHARDS"
bench_hub "$DIR" a --seed 11; A=$BENCH_EP
bench_hub "$DIR" b --seed 22; B=$BENCH_EP
MANIFEST="$DIR/hub/models/$REPO/manifest.json"
CORRUPT=$(python3 -c "
import json,sys
m=json.load(open(sys.argv[1])); c=m['refs']['main']
print(sorted(f['path'] for f in m['commits'][c]['files'] if f.get('lfs'))[0])" "$MANIFEST")
FAULTS='"where":"both","reset_rate":0.10,"error_rate":0.05,"rate_limit_rate":0.02,"retry_after":1,"stall_s":4,"stall_rate":0.02'
curl -s -XPOST "$A/_admin/faults" -d "{$FAULTS}" >/dev/null
curl -s -XPOST "$B/_admin/faults" -d "{$FAULTS,\"corrupt_paths\":[\"$CORRUPT\"]}" >/dev/null

"$BIN" mount --endpoint "$A" --endpoint "$B" --cache-dir "$DIR/cache" --log-file "$DIR/modelfs.log" \
  --log-level info --stall-timeout 3 --retries 4 --mirror-retry 10 \
  ${VERIFY_BEFORE_READ:+--verify-before-read} "$MNT"
T0=$(date +%s)
# Readers: random 1 MiB..8 MiB windows of random shards (pread), each compared with the source.
# Whole-file readers: a shard front to back, then its SHA-256 against the source's.
python3 - "$MNT/$REPO" "$MANIFEST" "$READERS" "$DURATION" "$WHOLE_READERS" >"$DIR/readers.json" <<'PY'
import hashlib, json, os, random, sys, time, threading
root, manifest, readers, duration = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
whole_readers = int(sys.argv[5])
m = json.load(open(manifest)); c = m["refs"]["main"]
base = os.path.dirname(manifest)
files = [f for f in m["commits"][c]["files"] if f["size"] > 0]
tot = {"bytes_read": 0, "reads": 0, "wrong_bytes": 0, "wrong_reads": 0, "failed_reads": 0, "errors": {},
       "whole_ok": 0, "whole_wrong": 0, "whole_failed": 0, "whole_bytes": 0}
def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""): h.update(block)
    return h.hexdigest()
want_sha = {f["path"]: sha256_of(os.path.join(base, f["content"])) for f in files if f["size"] > (4 << 20)}
lock = threading.Lock()
deadline = time.time() + duration
def reader(seed):
    rng = random.Random(seed)
    src = {f["path"]: open(os.path.join(base, f["content"]), "rb") for f in files}
    while time.time() < deadline:
        f = rng.choice(files)
        n = min(f["size"], rng.randint(1, 8) << 20)
        off = rng.randrange(0, f["size"] - n + 1)
        try:
            fd = os.open(os.path.join(root, f["path"]), os.O_RDONLY)
            try:
                got = os.pread(fd, n, off)
            finally:
                os.close(fd)
        except OSError as e:
            with lock:
                tot["failed_reads"] += 1
                k = "%s (%s)" % (os.strerror(e.errno), f["path"])
                tot["errors"][k] = tot["errors"].get(k, 0) + 1
            continue
        src[f["path"]].seek(off)
        want = src[f["path"]].read(n)
        wrong = 0 if got == want else sum(1 for a, b in zip(got, want) if a != b) + abs(len(got) - len(want))
        with lock:
            tot["reads"] += 1
            tot["bytes_read"] += len(got)
            tot["wrong_bytes"] += wrong
            tot["wrong_reads"] += wrong > 0
def whole_reader(seed):
    rng = random.Random(1000 + seed)
    while time.time() < deadline and want_sha:
        path = rng.choice(sorted(want_sha))
        h, n, err = hashlib.sha256(), 0, None
        try:
            with open(os.path.join(root, path), "rb", buffering=0) as fh:
                while True:
                    block = fh.read(1 << 20)
                    if not block: break
                    h.update(block); n += len(block)
        except OSError as e:
            err = e
        with lock:
            tot["whole_bytes"] += n
            if err is not None:
                tot["whole_failed"] += 1
                k = "whole file: %s (%s)" % (os.strerror(err.errno), path)
                tot["errors"][k] = tot["errors"].get(k, 0) + 1
            elif h.hexdigest() == want_sha[path]:
                tot["whole_ok"] += 1
            else:
                tot["whole_wrong"] += 1
ts = [threading.Thread(target=reader, args=(i,)) for i in range(readers)]
ts += [threading.Thread(target=whole_reader, args=(i,)) for i in range(whole_readers)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps(tot))
PY
T1=$(date +%s)
"$BIN" unmount "$MNT" || true
sleep 1
python3 - "$DIR" "$A" "$B" "$((T1 - T0))" "$CORRUPT" "${VERIFY_BEFORE_READ:-0}" <<'PY'
import collections, json, sys, urllib.request
d, a, b, secs, corrupt = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
r = json.load(open(d + "/readers.json"))
print("soak: %d s of reading; mirrors A=%s, B=%s (B flips a byte in every body of %s)" % (secs, a, b, corrupt))
print("reads: %d ok, %d failed; bytes read: %d (%.1f MB/s)" % (r["reads"], r["failed_reads"], r["bytes_read"],
                                                              r["bytes_read"] / max(secs, 1) / 1e6))
print("WRONG BYTES SERVED: %d (in %d reads)" % (r["wrong_bytes"], r["wrong_reads"]))
print("whole-file readers: %d right, %d FINISHED WITH A WRONG HASH, %d got a read error; %.0f MB read" % (
    r["whole_ok"], r["whole_wrong"], r["whole_failed"], r["whole_bytes"] / 1e6))
for k, v in sorted(r["errors"].items()): print("  failed read: %s x%d" % (k, v))
for name, ep in (("A", a), ("B", b)):
    log = json.load(urllib.request.urlopen(ep + "/_admin/log"))
    kinds = collections.Counter()
    for rec in log:
        for k in (rec.get("fault") or "").split(","):
            if k: kinds[k] += 1
    st = json.load(urllib.request.urlopen(ep + "/_admin/stats"))
    print("mirror %s: %d hub + %d cdn requests, %.0f MB sent, faults %s, auth_to_cdn %d" % (
        name, st["requests"]["hub"], st["requests"]["cdn"], (st["bytes_sent"]["hub"] + st["bytes_sent"]["cdn"]) / 1e6,
        dict(kinds), st["auth_to_cdn"]))
logtxt = open(d + "/modelfs.log", errors="replace").read()
for label, needle in (("retries", "retry "), ("failovers", "failing over"), ("mirror marked down", "trying it again in"),
                      ("hash mismatches detected", "hash mismatch"), ("verified files", "verified "),
                      ("gave up (after retries)", "giving up")):
    print("daemon log: %-26s %d" % (label, logtxt.count(needle)))
# Default mode streams bytes before their file's hash is known: a random reader may be given wrong
# bytes before detection (reported above), a whole-file reader never finishes on them.
strict = sys.argv[6] == "1"
sys.exit(1 if r["whole_wrong"] or (strict and r["wrong_bytes"]) else 0)
PY
