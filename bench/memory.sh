#!/usr/bin/env bash
# The memory benchmark (on demand, not in CI): the same setup as bench/run.sh (nginx, a modelfs
# build), then bench/memory.py. Needs root. Arguments go to memory.py, e.g.:
#       bash bench/memory.sh                              (4 GiB repo; default budget and 64MiB)
#       bash bench/memory.sh --size 1GiB --budget '' --loads random --seconds 10
# MODELFS_BIN=/path/to/modelfs uses that binary instead of building one into $BUILD_DIR.
set -euo pipefail
BENCH_PY=memory.py exec bash "$(dirname "$0")/run.sh" "$@"
