#!/usr/bin/env bash
# The site cache benchmark (on demand, not in CI): the same setup as bench/run.sh (nginx, iproute2,
# a modelfs build), then bench/site_cache.py. Needs root. Arguments go to site_cache.py, e.g.:
#       bash bench/site_cache.sh                                   (1 GiB, 8 clients at once + 8 after)
#       bash bench/site_cache.sh --size 256MiB --at-once 4 --after 2
# MODELFS_BIN=/path/to/modelfs uses that binary instead of building one into $BUILD_DIR.
set -euo pipefail
BENCH_PY=site_cache.py exec bash "$(dirname "$0")/run.sh" "$@"
