#!/usr/bin/env bash
# Downloads, here where apt works, the Debian bookworm packages that
# tools/gpu_bench.sh unpacks on a GPU machine without network: every library
# layerprobe builds against except LibTorch (which comes with the machine's
# PyTorch), and pkg-config. Nothing is installed.
#
# Usage: tools/fetch_gpu_deps.sh [DIR]    (default: .gpu-deps, ignored by git)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:-$root/.gpu-deps}"
packages=(libsentencepiece-dev libsentencepiece0 nlohmann-json3-dev libcli11-dev libspdlog-dev libspdlog1.10
          libfmt-dev libfmt9 libgtest-dev libgmock-dev libutf8proc-dev libutf8proc2 libzip-dev libzip4 zlib1g-dev
          pkgconf pkgconf-bin libpkgconf3)
mkdir -p "$dir"
cd "$dir"
# apt's sandbox user cannot write to most directories; the download itself still works.
apt-get download "${packages[@]}" 2> >(grep -v "Download is performed unsandboxed" >&2)
# An epoch's ':' is saved as "%3a"; plain names travel anywhere.
for deb in *%3a*; do [ -e "$deb" ] && mv "$deb" "${deb//%3a/_}"; done
echo "$(ls ./*.deb | wc -l) packages in $dir ($(du -sh . | cut -f1))" >&2
