#!/usr/bin/env bash
# Sets up (tools/setup.sh) and runs every test: unit tests in parallel, then the real-mount
# integration tests one at a time. Real mounts need /dev/fuse and root (or fusermount3).
# Usage: bash tools/test.sh [extra ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
# One ctest run: unit tests in parallel; integration tests carry RUN_SERIAL (one fake hub and one
# mount at a time), so ctest runs each of them alone.
cd "$BUILD_DIR"
ctest --output-on-failure -j"$(nproc)" "$@"
