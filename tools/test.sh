#!/usr/bin/env bash
# Sets up (tools/setup.sh) and runs every test: unit tests in parallel, then the real-mount
# integration tests one at a time. Real mounts need /dev/fuse and root (or fusermount3).
# Usage: bash tools/test.sh [extra ctest args, e.g. -L unit]
#   env: as tools/setup.sh (BUILD_DIR, BUILD_TYPE, CMAKE_ARGS, ...), and
#        MODELFS_FAIL_ON_SKIP=1: a skipped test fails the run (CI sets it: ctest itself counts a
#        skipped test as passed, so a missing /dev/fuse would go unnoticed)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
# One ctest run: unit tests in parallel; integration tests carry RUN_SERIAL (one fake hub and one
# mount at a time), so ctest runs each of them alone.
cd "$BUILD_DIR"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
ctest --output-on-failure --no-tests=error -j"$(nproc)" "$@" | tee "$log"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -eq 0 ] && [ "${MODELFS_FAIL_ON_SKIP:-0}" = 1 ] && grep -q '(Skipped)' "$log"; then
  echo "test: skipped tests count as failures here (MODELFS_FAIL_ON_SKIP=1):"
  grep '(Skipped)' "$log"
  rc=1
fi
exit "$rc"
