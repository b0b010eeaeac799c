#!/usr/bin/env bash
# Builds layerprobe against the CUDA LibTorch inside the machine's PyTorch,
# runs the encoder, decoder, lens and bench tests, and prints `probe_tools bench --json`
# for albert-base-v2, gpt2 and meta-llama/Llama-3.2-1B shapes (random weights) on the GPU. Needs no network: the other
# libraries come as Debian bookworm .deb files in DEPS_DIR (made here by
# tools/fetch_gpu_deps.sh), unpacked into the build tree, never installed.
#
# Usage: tools/gpu_bench.sh [DEPS_DIR]      (default: .gpu-deps when it exists)
# Environment: PYTHON (default python3), LAYERPROBE_BUILD_DIR (default build-gpu),
#   LAYERPROBE_SHARED (default: the build's test-data, expanded from tests/data at configure time),
#   PRECISION (bf16), BATCH_SIZE (128), FEATURES (0 = all).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${LAYERPROBE_BUILD_DIR:-$root/build-gpu}"
shared="${LAYERPROBE_SHARED:-$build/test-data}"
python="${PYTHON:-python3}"
deps="${1:-}"
[ -z "$deps" ] && [ -d "$root/.gpu-deps" ] && deps="$root/.gpu-deps"

torch_prefix="$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
"$python" -c 'import torch; assert torch.cuda.is_available(), "PyTorch sees no CUDA device"; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'

mkdir -p "$build"
fmt_include=/usr/include
if [ -n "$deps" ]; then
  sysroot="$build/deps-root"
  for deb in "$deps"/*.deb; do dpkg-deb -x "$deb" "$sysroot"; done
  libdir="$sysroot/usr/lib/x86_64-linux-gnu"
  # The .pc files name /usr; point them at the unpacked tree.
  sed -i "s|^prefix=.*|prefix=$sysroot/usr|; s|^libdir=/usr|libdir=$sysroot/usr|; s|^includedir=/usr|includedir=$sysroot/usr|" \
    "$libdir"/pkgconfig/*.pc "$sysroot"/usr/share/pkgconfig/*.pc
  export PKG_CONFIG_PATH="$libdir/pkgconfig:$sysroot/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export CMAKE_PREFIX_PATH="$sysroot/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  command -v pkg-config >/dev/null || export PKG_CONFIG="$sysroot/usr/bin/pkgconf"
  fmt_include="$sysroot/usr/include"
fi

# PyTorch's include directory carries its own fmt, which would shadow the
# fmt spdlog was built with; -I directories come first.
fmt_first="$build/fmt-first"
mkdir -p "$fmt_first"
[ -d "$fmt_include/fmt" ] && ln -sfn "$fmt_include/fmt" "$fmt_first/fmt"

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix" \
  -DLAYERPROBE_SHARED_DIR="$shared" -DLAYERPROBE_WITH_ONEDNN=OFF -DCMAKE_CXX_FLAGS="-I$fmt_first" >/dev/null
cmake --build "$build" --target probe_tools layerprobe_tests -j"$(nproc)"
# The encoder's and the bench's tests (tests/test_encoder.cpp, tests/test_bench.cpp).
LAYERPROBE_SHARED="$shared" "$build/tests/layerprobe_tests" \
  --gtest_filter='Encoder*:WeightFiles/GoldenEncoder*:EncodeCommand*:Bench*:FastPath*:Decoder*:CausalFamily*:HeadLens*:TunedLens*:Leace*' >&2

model="$build/bench-albert-base-v2"
"$build/bin/probe_tools" -q init-model --like albert-base-v2 --output "$model"
cp "$shared/data/albert/spiece.model" "$model/spiece.model"
"$build/bin/probe_tools" -q bench --model "$model" --data "$shared/data/squad/dev-v2.0.json" --device gpu \
  --precision "${PRECISION:-bf16}" --batch-size "${BATCH_SIZE:-128}" --features "${FEATURES:-0}" \
  --train-features "${TRAIN_FEATURES:-512}" --json

# The decoders (issue 26): GPT-2 small and the 1B Llama shape, weights saved in bf16.
for like in gpt2 meta-llama/Llama-3.2-1B; do
  model="$build/bench-${like//\//-}"
  "$build/bin/probe_tools" -q init-model --like "$like" --output "$model" --dtype bf16
  case "$like" in
    gpt2) cp "$shared/golden/gpt2-tiny/vocab.json" "$shared/golden/gpt2-tiny/merges.txt" "$model/" ;;
    *) cp "$shared/golden/llama-tiny/tokenizer.json" "$shared/golden/llama-tiny/tokenizer_config.json" "$model/" ;;
  esac
  "$build/bin/probe_tools" -q bench --model "$model" --data "$shared/data/squad/dev-v2.0.json" --device gpu \
    --precision "${PRECISION:-bf16}" --batch-size "${DECODER_BATCH_SIZE:-32}" --features "${DECODER_FEATURES:-512}" \
    --train-features "${TRAIN_FEATURES:-512}" --json
done
