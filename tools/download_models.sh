#!/usr/bin/env bash
# Downloads ALBERT models from the Hugging Face hub into models/<name>/:
# config.json, spiece.model, and the weights (model.safetensors, or
# pytorch_model.bin where a model has no safetensors file).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=download_common.sh
source "$root/tools/download_common.sh"

usage() {
  cat <<EOF
Usage: tools/download_models.sh [--dir DIR] [--revision REV] NAME...

Downloads each hub model NAME (e.g. albert-base-v2, twmkn9/albert-base-v2-squad2,
or any ALBERT model on the Hugging Face hub) into DIR/NAME/: config.json,
spiece.model, and model.safetensors, or pytorch_model.bin when the model has no
safetensors file. Sizes are checked against the hub's; an interrupted download
resumes where it stopped when run again; complete files are not fetched twice.

Options:
  --dir DIR       where the models go (default: \$LAYERPROBE_MODELS_DIR or $root/models)
  --revision REV  branch, tag or commit to fetch (default: main)
  -h, --help      show this help

Environment:
  LAYERPROBE_HUB_URL  hub address (default: https://huggingface.co); files are
                      fetched from <hub>/<name>/resolve/<revision>/<file>
  HF_TOKEN            access token, for private or gated models

Example (the study's two models):
  tools/download_models.sh albert-base-v2 twmkn9/albert-base-v2-squad2
EOF
}

hub=${LAYERPROBE_HUB_URL:-https://huggingface.co}
hub=${hub%/}
dir=${LAYERPROBE_MODELS_DIR:-$root/models}
revision=main
names=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dir) (($# >= 2)) || lp_usage_error "--dir needs a directory"; dir=$2; shift 2 ;;
    --dir=*) dir=${1#--dir=}; shift ;;
    --revision) (($# >= 2)) || lp_usage_error "--revision needs a value"; revision=$2; shift 2 ;;
    --revision=*) revision=${1#--revision=}; shift ;;
    -*) lp_usage_error "unknown option $1" ;;
    *) names+=("$1"); shift ;;
  esac
done
((${#names[@]})) || lp_usage_error "name at least one model, e.g. albert-base-v2"
for name in "${names[@]}"; do
  # A hub id: [owner/]repo, nothing that could climb out of DIR.
  [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$ && $name != *..* ]] ||
    lp_usage_error "'$name' is not a hub model name like albert-base-v2 or owner/model"
done

LP_OFFLINE_HINT="Without a network, copy a model's config.json, spiece.model and model.safetensors
(or pytorch_model.bin) into $dir/<name>/ by hand."
if [[ -n ${HF_TOKEN:-} ]]; then LP_CURL_OPTS+=(-H "Authorization: Bearer $HF_TOKEN"); fi

# Fetches file $3 of model $1 from $2 into directory $4; exits when the hub lacks it.
fetch_required() {
  local rc=0
  lp_fetch "$2/$3" "$4/$3" || rc=$?
  ((rc == 0)) || lp_die "$1: $2/$3 not found (HTTP $LP_STATUS): check the model name (e.g. albert-base-v2);
a private or gated model needs HF_TOKEN"
}

download_model() {
  local name=$1 target="$dir/$1" base="$hub/$1/resolve/$revision" rc=0
  echo "$name -> $target"
  mkdir -p "$target" || lp_die "cannot create $target"
  fetch_required "$name" "$base" config.json "$target"
  fetch_required "$name" "$base" spiece.model "$target"
  lp_fetch "$base/model.safetensors" "$target/model.safetensors" || rc=$?
  if ((rc == 4)); then
    echo "  no model.safetensors; fetching pytorch_model.bin instead"
    fetch_required "$name" "$base" pytorch_model.bin "$target"
  fi
}

for name in "${names[@]}"; do download_model "$name"; done
echo "done: ${names[*]} in $dir"
