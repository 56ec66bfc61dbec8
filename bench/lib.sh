# Shared by the loopback bench scripts (sourced, from the repository root): a generated repo and
# fake-hub mirrors serving it on loopback.

BENCH_PIDS=()  # the hubs bench_hub started

# bench_bin: sets BIN to the modelfs binary: $BIN or $MODELFS_BIN if set, else this tree's build
# in ${BUILD_DIR:-build}, brought up to date by tools/setup.sh.
bench_bin() {
  BIN=${BIN:-${MODELFS_BIN:-}}
  if [ -z "$BIN" ]; then
    bash tools/setup.sh >/dev/null
    BIN="$(pwd)/${BUILD_DIR:-build}/bin/modelfs"
  fi
}

# bench_cleanup BIN MNT: unmounts MNT (if mounted) and stops the hubs; for `trap ... EXIT`.
bench_cleanup() {
  mountpoint -q "$2" 2>/dev/null && "$1" unmount "$2" >/dev/null 2>&1 || true
  for p in "${BENCH_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}

# bench_hub DIR NAME [fake_hub.py args...]: starts a fake hub over DIR/hub in the background,
# waits until it is ready and sets BENCH_HUB_PID and BENCH_EP (its http://127.0.0.1:port).
bench_hub() {
  local dir=$1 name=$2
  shift 2
  rm -f "$dir/ready-$name.json"
  python3 tests/testing/fake_hub.py --root "$dir/hub" --ready-file "$dir/ready-$name.json" "$@" \
    >"$dir/hub-$name.log" 2>&1 &
  BENCH_HUB_PID=$!
  BENCH_PIDS+=("$BENCH_HUB_PID")
  for _ in $(seq 200); do [ -s "$dir/ready-$name.json" ] && break; sleep 0.1; done
  BENCH_EP="http://127.0.0.1:$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['hub_port'])" \
    "$dir/ready-$name.json")"
}

# bench_repo DIR REPO SIZE SHARDS: generates the repo under DIR/hub (tests/testing/gen_repo.py).
bench_repo() {
  python3 tests/testing/gen_repo.py --root "$1/hub" --repo "$2" --total-size "$3" --shards "$4" --quiet
}

# bench_largest MANIFEST: the path of the largest file of the default branch's commit.
bench_largest() {
  python3 -c "
import json,sys
m=json.load(open(sys.argv[1])); c=m['refs']['main']
print(max(m['commits'][c]['files'], key=lambda f: f['size'])['path'])" "$1"
}

# bench_ab_setup SCRIPT BIN...: what bench/ab_*.sh share. Checks there is a BIN, sets the defaults
# (SIZE=1GiB SHARDS=2 DIR=/tmp/modelfs-ab RUNS=3), generates the repo once, starts a fake hub on
# loopback, unmounts and stops it on exit; sets REPO, MNT, EP and SHARD (the largest file).
bench_ab_setup() {
  local script=$1
  shift
  [ $# -ge 1 ] || { echo "usage: bash $script BIN [BIN...]" >&2; exit 2; }
  SIZE=${SIZE:-1GiB}; SHARDS=${SHARDS:-2}; DIR=${DIR:-/tmp/modelfs-ab}; RUNS=${RUNS:-3}
  REPO=bench-org/ab-model; MNT="$DIR/mnt"
  trap "bench_cleanup '$1' '$MNT'" EXIT
  mkdir -p "$DIR" "$MNT"
  [ -f "$DIR/hub/models/$REPO/manifest.json" ] || bench_repo "$DIR" "$REPO" "$SIZE" "$SHARDS"
  bench_hub "$DIR" hub; EP=$BENCH_EP
  SHARD=$(bench_largest "$DIR/hub/models/$REPO/manifest.json")
}

# bench_passthrough_ll DIR: builds libfuse's own low-level passthrough example (Debian's
# libfuse3-dev ships its source) into DIR/passthrough_ll, with what modelfs asks of the kernel
# for its reads: replies spliced from the file (SPLICE_WRITE) and 8 MiB of readahead. It is the
# FUSE read path with no modelfs in it, for the warm-read bound. Sets PASSTHROUGH_LL.
bench_passthrough_ll() {
  local src=/usr/share/doc/libfuse3-dev/examples
  PASSTHROUGH_LL="$1/passthrough_ll"
  [ -x "$PASSTHROUGH_LL" ] && return 0
  mkdir -p "$1/pt-src"
  cp "$src/passthrough_ll.c" "$src/passthrough_helpers.h" "$1/pt-src/"
  # lo_init's first line: as modelfs's OpInit (fs/fuse_adapter.cc).
  sed -i 's|^\tif(conn->capable & FUSE_CAP_EXPORT_SUPPORT)|\tconn->max_readahead = 8u << 20;\n\tif (conn->capable \& FUSE_CAP_SPLICE_WRITE) conn->want \|= FUSE_CAP_SPLICE_WRITE;\n&|' \
    "$1/pt-src/passthrough_ll.c"
  grep -q 'FUSE_CAP_SPLICE_WRITE' "$1/pt-src/passthrough_ll.c" || { echo "passthrough_ll.c: lo_init not found" >&2; return 1; }
  # shellcheck disable=SC2046
  gcc -O2 -o "$PASSTHROUGH_LL" "$1/pt-src/passthrough_ll.c" $(pkg-config fuse3 --cflags --libs)
}

# bench_raise_readahead MNT KB: the FUSE mount's bdi read_ahead_kb (the kernel caps a FUSE file's
# readahead at it; modelfs raises it itself, fs/kernel_knobs.cc).
bench_raise_readahead() {
  local dev
  dev=$(stat -c %d "$1")
  echo "$2" >"/sys/class/bdi/0:$(( (dev & 255) | ((dev >> 12) & ~255) ))/read_ahead_kb"
}
