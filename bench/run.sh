#!/usr/bin/env bash
# The performance benchmark (on demand, not in CI): installs the peers (curl, aria2, axel) from
# Debian, builds modelfs, and runs bench/bench.py on loopback and over a simulated far mirror
# (../shared/wan-sim). Needs root (network namespaces, drop_caches). Arguments go to bench.py,
# e.g.: bash bench/run.sh --runs 3 --results bench/RESULTS.md
#       bash bench/run.sh --conditions loopback --size 1GiB --parallel-size 1GiB --runs 1
set -euo pipefail
cd "$(dirname "$0")/.."
export BUILD_DIR=${BUILD_DIR:-build-bench}
BUILD_TARGET=modelfs bash tools/setup.sh >/dev/null
export MODELFS_BIN="$(pwd)/$BUILD_DIR/bin/modelfs"
missing=()
for p in aria2 axel curl iproute2; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
exec python3 bench/bench.py "$@"
