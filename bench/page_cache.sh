#!/usr/bin/env bash
# Warm reads from the page cache against the local file and another FUSE filesystem (on demand,
# not in CI): the same setup as bench/run.sh (which installs squashfuse and squashfs-tools too),
# then bench/page_cache.py. Needs root. Arguments go to page_cache.py, e.g.:
#       bash bench/page_cache.sh --rounds 9
# MODELFS_BIN=/path/to/modelfs uses that binary instead of building one into $BUILD_DIR.
set -euo pipefail
BENCH_PY=page_cache.py exec bash "$(dirname "$0")/run.sh" "$@"
