#!/usr/bin/env bash
# The performance benchmark (on demand, not in CI): installs what it needs from Debian (the peers
# curl, aria2, axel; nginx, which serves the LFS bytes as the CDN; iproute2 for ../shared/wan-sim;
# squashfuse and squashfs-tools, the other FUSE filesystem bench/mmap_bound.py measures),
# builds modelfs, and runs bench/bench.py on loopback and over a simulated far mirror. Needs root
# (network namespaces, drop_caches). Arguments go to bench.py, e.g.:
#       bash bench/run.sh --runs 3 --results bench/RESULTS.md   (the full run: 40-50 min on 2 vCPU)
#       bash bench/run.sh --conditions far --targets 1 --size 1GiB --parallel-size 64MiB --runs 1
# MODELFS_BIN=/path/to/modelfs uses that binary instead of building one into $BUILD_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${MODELFS_BIN:-}" ]; then
  export BUILD_DIR=${BUILD_DIR:-build-bench}
  BUILD_TARGET=modelfs bash tools/setup.sh >/dev/null
  export MODELFS_BIN="$(pwd)/$BUILD_DIR/bin/modelfs"
fi
missing=()
for p in aria2 axel curl iproute2 procps squashfuse squashfs-tools; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Any Debian nginx flavour will do (nginx-light is the smallest); bench.py runs its own instance
# with its own config, never the system service.
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench: installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# BENCH_PY picks the benchmark (bench/far.sh sets far.py); the peers and nginx are the same.
exec python3 "bench/${BENCH_PY:-bench.py}" "$@"
