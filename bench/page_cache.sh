#!/usr/bin/env bash
# Warm reads from the page cache against the local file and another FUSE filesystem (on demand,
# not in CI): the same setup as bench/run.sh, plus squashfuse and squashfs-tools, then
# bench/page_cache.py. Needs root. Arguments go to page_cache.py, e.g.:
#       bash bench/page_cache.sh --rounds 9
# MODELFS_BIN=/path/to/modelfs uses that binary instead of building one into $BUILD_DIR.
set -euo pipefail
missing=()
for p in squashfuse squashfs-tools; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench: installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
BENCH_PY=page_cache.py exec bash "$(dirname "$0")/run.sh" "$@"
