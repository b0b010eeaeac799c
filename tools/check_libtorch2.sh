#!/usr/bin/env bash
# Compiles every C++ file of layerprobe, syntax only, against the newest LibTorch
# Debian packages (sid's libtorch-dev: downloaded and unpacked, never installed),
# in the C++ standard that LibTorch's CMake config names. The CUDA LibTorch inside a
# PyTorch 2.x install has the same headers, so this is the check, on a machine with
# only Debian's LibTorch 1.13 and no GPU, that the GPU build still compiles.
#
# Usage: tools/check_libtorch2.sh [WORK_DIR [FILE...]]   (needs apt's network)
#   WORK_DIR: default /tmp/layerprobe-libtorch2; FILE: default every .cpp file git tracks
# Exit status: 0 when every file compiles, 1 otherwise (the errors are printed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-/tmp/layerprobe-libtorch2}"
shift || true
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$work/logs"
echo "deb http://deb.debian.org/debian sid main" >"$work/sources.list"
apt_options=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
             -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache")
apt-get "${apt_options[@]}" update -qq
(cd "$work/debs" && apt-get "${apt_options[@]}" download libtorch-dev 2> >(grep -v "Download is performed unsandboxed" >&2))
rm -rf "$work/root" && dpkg-deb -x "$work"/debs/libtorch-dev_*.deb "$work/root"
include="$work/root/usr/include"
version="$(cat "$include"/torch/headeronly/version.h "$include"/torch/csrc/api/include/torch/version.h 2>/dev/null |
  sed -n 's/^#define TORCH_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p' | head -3 | paste -sd. || true)"
standard="$(sed -n 's/^ *CXX_STANDARD \([0-9]*\)/\1/p' "$work"/root/usr/lib/*/cmake/Torch/TorchConfig.cmake | head -1)"
((standard < 17)) && standard=17
echo "LibTorch $version, C++$standard" >&2

cd "$root"
rm -f "$work"/logs/*.log
check() {
  g++ "-std=gnu++$standard" -fsyntax-only -Wall -Wextra -DFMT_SHARED -DSPDLOG_COMPILED_LIB -DSPDLOG_FMT_EXTERNAL \
    -DSPDLOG_SHARED_LIB -DLAYERPROBE_SPM_BRIDGE_PATH='""' -DLAYERPROBE_VERSION='""' -DLAYERPROBE_SHARED_DIR='""' \
    -DLAYERPROBE_BINARY_DIR='""' -Iinclude -Isrc -Itests -isystem "$include" -isystem "$include/torch/csrc/api/include" \
    "$1" >"$work/logs/$(echo "$1" | tr / _).log" 2>&1 || echo "$1"
}
export -f check
export standard include work
if (($#)); then sources=("$@"); else mapfile -t sources < <(git ls-files '*.cpp'); fi
failed="$(printf '%s\n' "${sources[@]}" | xargs -P "$(nproc)" -I{} bash -c 'check {}')"
files=${#sources[@]}
if [ -n "$failed" ]; then
  for f in $failed; do cat "$work/logs/$(echo "$f" | tr / _).log"; done
  echo "$(echo "$failed" | wc -l) of $files files do not compile against LibTorch $version:" $failed >&2
  exit 1
fi
echo "all $files files compile against LibTorch $version (C++$standard)" >&2
