#!/usr/bin/env bash
# Builds the libFuzzer target for fetch/protocol.h's parsers (tests/fuzz/protocol_fuzz.cc) with
# clang's -fsanitize=fuzzer,address,undefined and runs it for a bounded time. Not part of the
# default build: it needs clang, which this script installs (Debian's `clang`) if it is missing.
#
# Usage: bash tests/fuzz/run.sh [SECONDS]     (default 60; env FUZZ_DIR=/tmp/modelfs-fuzz, JOBS=1)
# The corpus grows in $FUZZ_DIR/corpus (seeded from tests/fuzz/seeds/) and persists between runs;
# a crash leaves crash-* / leak-* / timeout-* files in $FUZZ_DIR and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-60}
FUZZ_DIR=${FUZZ_DIR:-/tmp/modelfs-fuzz}
JOBS=${JOBS:-1}

if ! command -v clang++ >/dev/null; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends clang >/dev/null
fi

mkdir -p "$FUZZ_DIR/corpus"
clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I. tests/fuzz/protocol_fuzz.cc fetch/protocol.cc fetch/protocol_url.cc cache/safetensors.cc common/status.cc \
  -o "$FUZZ_DIR/protocol_fuzz"

# -max_len 65536: room for multi-entry tree pages and deep nesting; -timeout 10: one input taking
# longer is a hang (every parser is linear); -rss_limit_mb 2048: a parser must not balloon.
cd "$FUZZ_DIR"
./protocol_fuzz -max_total_time="$SECS" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
  -jobs="$JOBS" -workers="$JOBS" -print_final_stats=1 corpus "$OLDPWD/tests/fuzz/seeds"
echo "fuzz: ran ${SECS}s; corpus $(ls corpus | wc -l) inputs in $FUZZ_DIR/corpus"
