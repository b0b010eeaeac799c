#!/usr/bin/env bash
# The test suite built with clang under AddressSanitizer + UndefinedBehaviorSanitizer
# (build-asan/, -DLAYERPROBE_FUZZ=ON), then every fuzz target for a bounded time
# (tools/fuzz.sh). CI runs it after README command 2.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  cat <<EOF
Usage: bash tools/test_sanitized.sh [--fuzz-seconds N] [--build-dir DIR] [-- CTEST_ARGS...]

  --fuzz-seconds N  fuzzing time per parser after the tests (default 60; 0 skips fuzzing)
  --build-dir DIR   the sanitizer build (default: \$LAYERPROBE_SANITIZE_BUILD_DIR or $root/build-asan)
  CTEST_ARGS        passed to ctest, e.g. -R Tokenizer
  -h, --help        show this help
EOF
}

fuzz_seconds=60 build="${LAYERPROBE_SANITIZE_BUILD_DIR:-$root/build-asan}" ctest_args=()
while (($#)); do
  case "$1" in
    --fuzz-seconds) fuzz_seconds="${2:?--fuzz-seconds needs a number}"; shift ;;
    --build-dir) build="${2:?--build-dir needs a directory}"; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; ctest_args=("$@"); break ;;
    *) echo "test_sanitized.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

bash "$root/tools/install_deps.sh" --sanitizers
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ -DLAYERPROBE_FUZZ=ON >/dev/null
cmake --build "$build" -j"$(nproc)"

# AddressSanitizer's defaults include LeakSanitizer: a leak at exit fails the test too.
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
(cd "$build" && ctest --output-on-failure -j"$(nproc)" --timeout 1800 "${ctest_args[@]}")
if ((fuzz_seconds > 0)); then
  bash "$root/tools/fuzz.sh" --skip-build --build-dir "$build" --seconds "$fuzz_seconds"
fi
