#!/usr/bin/env bash
# Configures and builds layerprobe into build/ (or $LAYERPROBE_BUILD_DIR).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${LAYERPROBE_BUILD_DIR:-$root/build}"
# ccache hits across clones of the repository in other folders.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
