#!/usr/bin/env bash
# The "far mirror, cold start" benchmark (on demand, not in CI): installs what it needs from Debian
# (the peers curl, aria2, axel; nginx, which serves the LFS bytes as the CDN; iproute2 and procps for
# ../shared/wan-sim), builds modelfs, and runs bench/far.py against the fake hub and nginx inside a
# wan-sim namespace of its own ("mfsfar": 200 ms RTT, 400 Mbit/s, 8 MiB/s per connection). Needs
# root (network namespace, drop_caches, FUSE). The torch load row needs python3-torch (skipped
# without it); the numpy row uses python3-numpy when present. Arguments go to far.py, e.g.:
#       bash bench/far.sh --runs 3 --results /tmp/FAR.md          (the full run: about 15 min on 2 vCPU)
#       bash bench/far.sh --runs 1 --only ceiling,tensor
#       bash bench/far.sh --modelfs-variant '' --modelfs-variant=--fill-on-open
# MODELFS_BIN=/path/to/modelfs uses that binary instead of building one into $BUILD_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${MODELFS_BIN:-}" ]; then
  export BUILD_DIR=${BUILD_DIR:-build-bench}
  BUILD_TARGET=modelfs bash tools/setup.sh >/dev/null
  export MODELFS_BIN="$(pwd)/$BUILD_DIR/bin/modelfs"
fi
missing=()
for p in aria2 axel curl iproute2 procps; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Any Debian nginx flavour will do (nginx-light is the smallest); far.py runs its own instance with
# its own config, never the system service.
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
  echo "far: installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
exec python3 bench/far.py "$@"
