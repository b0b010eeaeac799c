#!/usr/bin/env bash
# Fuzzes every parser of outside data (tests/fuzz/fuzz_*.cpp) with libFuzzer under
# AddressSanitizer + UndefinedBehaviorSanitizer, each for a bounded time, starting from
# seeds made from the test data (tests/data). Builds with clang into build-fuzz/ unless --skip-build.
# A crash, leak, timeout or over-sized allocation fails the run; the input that caused
# it is kept under <build>/fuzz-artifacts/<parser>/ (copy it to tests/fuzz/regressions/<parser>/
# once fixed: the build's fuzz_<parser>_replay test replays it from then on).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  cat <<EOF
Usage: bash tools/fuzz.sh [--seconds N] [--runs N] [--skip-build] [--build-dir DIR] [PARSER...]

  --seconds N      fuzzing time per parser (default 60)
  --runs N         stop a parser after N executions instead (0 = no limit, default)
  --skip-build     use the fuzz targets already built in the build directory
  --build-dir DIR  clang build with -DLAYERPROBE_FUZZ=ON (default: $root/build-fuzz)
  PARSER           any of: safetensors torch_checkpoint config squad tokenizer tokenizer_json wordpiece_vocab bpe_vocab predictions probes
                   (default: all)
  -h, --help       show this help
EOF
}

seconds=60 runs=0 skip_build=0 build="$root/build-fuzz" parsers=()
while (($#)); do
  case "$1" in
    --seconds) seconds="${2:?--seconds needs a number}"; shift ;;
    --runs) runs="${2:?--runs needs a number}"; shift ;;
    --skip-build) skip_build=1 ;;
    --build-dir) build="${2:?--build-dir needs a directory}"; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "fuzz.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    *) parsers+=("$1") ;;
  esac
  shift
done
if ((${#parsers[@]} == 0)); then
  parsers=(safetensors torch_checkpoint config squad tokenizer tokenizer_json wordpiece_vocab bpe_vocab predictions probes)
fi

if ((!skip_build)); then
  bash "$root/tools/install_deps.sh" --sanitizers
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
        -DLAYERPROBE_FUZZ=ON >/dev/null
  cmake --build "$build" -j"$(nproc)" --target "${parsers[@]/#/fuzz_}"
fi

shared="$(sed -n 's/^LAYERPROBE_SHARED_DIR:PATH=//p' "$build/CMakeCache.txt")"
python3 "$root/tests/fuzz/make_seeds.py" "$shared" "$build/fuzz-seeds"

failed=()
for parser in "${parsers[@]}"; do
  exe="$build/fuzz/fuzz_$parser"
  [[ -x "$exe" ]] || { echo "fuzz.sh: no fuzz target '$exe' (unknown parser or not built)" >&2; exit 2; }
  corpus="$build/fuzz-corpus/$parser" artifacts="$build/fuzz-artifacts/$parser" log="$build/fuzz-logs/$parser.log"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  inputs=("$corpus" "$build/fuzz-seeds/$parser")
  [[ -d "$root/tests/fuzz/regressions/$parser" ]] && inputs+=("$root/tests/fuzz/regressions/$parser")
  status=0
  "$exe" -max_total_time="$seconds" -runs="$((runs > 0 ? runs : -1))" -rss_limit_mb=2048 -malloc_limit_mb=2048 \
         -timeout=10 -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts/" \
         "${inputs[@]}" >"$log" 2>&1 || status=$?
  executions="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
  elapsed="$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log")"
  echo "fuzz_$parser: ${executions:-?} executions in ${elapsed:-?} s, corpus $(find "$corpus" -type f | wc -l)" \
       "inputs, exit $status (log: $log)"
  if ((status != 0)); then
    failed+=("$parser")
    grep -m5 -E "ERROR|SUMMARY|Test unit written" "$log" >&2 || true
  fi
done

if ((${#failed[@]})); then
  echo "fuzz.sh: findings in: ${failed[*]} (inputs under $build/fuzz-artifacts/)" >&2
  exit 1
fi
echo "fuzz.sh: no findings"
