#!/usr/bin/env bash
# Installs what modelfs needs on Debian 12 (only what is missing) and builds it into build/.
# Usage: bash tools/setup.sh
#   env: BUILD_DIR=build, BUILD_TYPE=RelWithDebInfo, BUILD_TARGET=all (e.g. "modelfs": the binary only; several: "a b"),
#        WERROR=ON (this is the development build: warnings are errors; CMake's own default is OFF),
#        CMAKE_ARGS="" (more -D options, e.g. -DMODELFS_SANITIZE=ON)
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config libfuse3-dev fuse3 libcurl4-openssl-dev libssl-dev
      libxxhash-dev nlohmann-json3-dev libgtest-dev python3 python3-numpy curl ca-certificates
      python3-torch  # python3-torch: tests/integration/readers_test.cc (about 140 MB download)
      nginx)         # nginx: the site cache (deploy/site-cache) and tests/integration/site_cache_test.cc
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

BUILD_DIR=${BUILD_DIR:-build}
# shellcheck disable=SC2086  # CMAKE_ARGS is a list of words
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" \
  -DMODELFS_WERROR="${WERROR:-ON}" ${CMAKE_ARGS:-} >/dev/null
# shellcheck disable=SC2086  # BUILD_TARGET may name several targets
cmake --build "$BUILD_DIR" -j"$(nproc)" ${BUILD_TARGET:+--target $BUILD_TARGET}
echo "setup: built ${BUILD_TARGET:-everything} in $BUILD_DIR (the binary: $BUILD_DIR/bin/modelfs)"
