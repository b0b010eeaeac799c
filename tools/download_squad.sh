#!/usr/bin/env bash
# Downloads the official SQuAD 2.0 train and dev files into data/squad/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=download_common.sh
source "$root/tools/download_common.sh"

usage() {
  cat <<EOF
Usage: tools/download_squad.sh [--dir DIR]

Downloads the official SQuAD 2.0 files train-v2.0.json (130,319 questions) and
dev-v2.0.json (11,873 questions) into DIR, checks their sizes against the
server's and that they parse as SQuAD 2.0 JSON. An interrupted download resumes
when run again; complete files are not fetched twice.

The original study evaluated on the CS224N split: its dev set is half of the
official dev set (6,078 questions; ../shared/data/squad/dev-v2.0.json), so its
scores are not directly comparable with scores on the full official dev file.

Options:
  --dir DIR   where the files go (default: \$LAYERPROBE_SQUAD_DIR or $root/data/squad)
  -h, --help  show this help

Environment:
  LAYERPROBE_SQUAD_URL  where the files are (default:
                        https://rajpurkar.github.io/SQuAD-explorer/dataset)
EOF
}

base=${LAYERPROBE_SQUAD_URL:-https://rajpurkar.github.io/SQuAD-explorer/dataset}
base=${base%/}
dir=${LAYERPROBE_SQUAD_DIR:-$root/data/squad}
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dir) (($# >= 2)) || lp_usage_error "--dir needs a directory"; dir=$2; shift 2 ;;
    --dir=*) dir=${1#--dir=}; shift ;;
    *) lp_usage_error "unexpected argument $1" ;;
  esac
done

LP_OFFLINE_HINT="Without a network, copy train-v2.0.json and dev-v2.0.json into $dir by hand."

# Checks that $1 parses as SQuAD 2.0 JSON and says how many questions it holds;
# a file that does not is moved aside so the next run fetches it afresh.
check_squad() {
  local summary
  if ! summary=$(python3 - "$1" 2>&1 <<'EOF'
import json, sys
with open(sys.argv[1], encoding="utf-8") as f:
    squad = json.load(f)
assert squad.get("version") == "v2.0", "version is %r, not 'v2.0'" % squad.get("version")
questions = sum(len(p["qas"]) for a in squad["data"] for p in a["paragraphs"])
print("%d articles, %d questions" % (len(squad["data"]), questions))
EOF
  ); then
    mv -f "$1" "$1.invalid"
    lp_die "$1 is not SQuAD 2.0 JSON (${summary##*$'\n'}); moved it to $1.invalid, run again to download it afresh"
  fi
  echo "  $1: $summary"
}

mkdir -p "$dir" || lp_die "cannot create $dir"
for file in train-v2.0.json dev-v2.0.json; do
  lp_fetch "$base/$file" "$dir/$file" || lp_die "$base/$file not found (HTTP $LP_STATUS)"
  check_squad "$dir/$file"
done
echo "done: SQuAD 2.0 in $dir
note: this is the official dev set (11,873 questions); the study's dev split (CS224N) is
half of it (6,078 questions), so compare scores only on the same split."
