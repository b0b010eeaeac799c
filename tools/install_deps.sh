#!/usr/bin/env bash
# Installs the Debian bookworm packages layerprobe needs to build, test and run.
# Asks apt only for what is missing, so a machine that has everything needs no network.
set -euo pipefail
packages=(cmake g++ make pkg-config ccache libtorch-dev libgloo-dev libdnnl-dev libopenblas-dev libsentencepiece-dev
          nlohmann-json3-dev libcli11-dev libspdlog-dev libgtest-dev libutf8proc-dev libonig-dev libzip-dev zlib1g-dev
          python3 curl)
# tools/test_sanitized.sh and tools/fuzz.sh: clang with its sanitizer and libFuzzer runtimes.
if [[ "${1:-}" == "--sanitizers" ]]; then packages+=(clang libclang-rt-dev); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "layerprobe: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
