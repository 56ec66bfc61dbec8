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
# The same setup as bench/run.sh (peers, nginx, a modelfs build), then far.py.
BENCH_PY=far.py exec bash "$(dirname "$0")/run.sh" "$@"
