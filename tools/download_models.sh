#!/usr/bin/env bash
# Downloads models of every supported family (ALBERT, BERT, DistilBERT, RoBERTa,
# ELECTRA, XLM-RoBERTa, DeBERTa-v2/v3, ModernBERT, GPT-2, Llama, Mistral, Qwen2)
# from the Hugging Face hub into models/<name>/: config.json, the tokenizer files
# the family reads (spiece.model; vocab.txt; vocab.json + merges.txt;
# sentencepiece.bpe.model; spm.model; tokenizer.json), tokenizer_config.json /
# special_tokens_map.json where the hub has them, and the weights
# (model.safetensors, else its shards, else pytorch_model.bin, else its shards).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=download_common.sh
source "$root/tools/download_common.sh"

usage() {
  cat <<EOF
Usage: tools/download_models.sh [--dir DIR] [--revision REV] NAME...

Downloads each hub model NAME (an ALBERT, BERT, DistilBERT, RoBERTa, ELECTRA,
XLM-RoBERTa, DeBERTa-v2/v3, ModernBERT, GPT-2, Llama, Mistral or Qwen2 model, e.g.
bert-base-uncased, twmkn9/distilroberta-base-squad2, deepset/deberta-v3-base-squad2,
gpt2 or Qwen/Qwen2.5-0.5B) into DIR/NAME/: config.json, its family's tokenizer
files (ALBERT spiece.model; BERT, DistilBERT and ELECTRA vocab.txt; RoBERTa and
GPT-2 vocab.json and merges.txt; XLM-RoBERTa sentencepiece.bpe.model; DeBERTa
spm.model; ModernBERT, Llama, Mistral and Qwen2 tokenizer.json),
tokenizer_config.json and special_tokens_map.json when the hub has them, and the
weights: model.safetensors, else model.safetensors.index.json and its shards,
else pytorch_model.bin, else pytorch_model.bin.index.json and its shards. For
bert-base-uncased and distilbert-base-uncased, whose hub repositories lack a
tokenizer_config.json, it writes {"do_lower_case": true} as transformers 2.5.1
builds their tokenizers; for an ELECTRA model without one, the same (4.57.5's
ElectraTokenizer default).
Sizes are checked against the hub's; an interrupted download resumes where it
stopped when run again; complete files are not fetched twice.

Options:
  --dir DIR       where the models go (default: \$LAYERPROBE_MODELS_DIR or $root/models)
  --revision REV  branch, tag or commit to fetch (default: main)
  -h, --help      show this help

Environment:
  LAYERPROBE_HUB_URL  hub address (default: https://huggingface.co); files are
                      fetched from <hub>/<name>/resolve/<revision>/<file>
  HF_TOKEN            access token, for private or gated models

Example (the study's eight models):
  tools/download_models.sh albert-base-v2 twmkn9/albert-base-v2-squad2 \
    bert-base-uncased twmkn9/bert-base-uncased-squad2 \
    distilbert-base-uncased twmkn9/distilbert-base-uncased-squad2 \
    distilroberta-base twmkn9/distilroberta-base-squad2

Newer encoders, pretrained and fine-tuned on SQuAD 2.0:
  tools/download_models.sh google/electra-base-discriminator deepset/electra-base-squad2 \
    xlm-roberta-base deepset/xlm-roberta-base-squad2 answerdotai/ModernBERT-base

DeBERTa-v3, pretrained and fine-tuned on SQuAD 2.0:
  tools/download_models.sh microsoft/deberta-v3-base deepset/deberta-v3-base-squad2
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

LP_OFFLINE_HINT="Without a network, copy a model's config.json, tokenizer files (spiece.model, vocab.txt,
vocab.json + merges.txt, sentencepiece.bpe.model, spm.model or tokenizer.json) and model.safetensors (or
pytorch_model.bin) into $dir/<name>/ by hand."
if [[ -n ${HF_TOKEN:-} ]]; then LP_CURL_OPTS+=(-H "Authorization: Bearer $HF_TOKEN"); fi

# Fetches file $3 of model $1 from $2 into directory $4; exits when the hub lacks it.
fetch_required() {
  local rc=0
  lp_fetch "$2/$3" "$4/$3" || rc=$?
  ((rc == 0)) || lp_die "$1: $2/$3 not found (HTTP $LP_STATUS): check the model name (e.g. albert-base-v2);
a private or gated model needs HF_TOKEN"
}

# The model_type of config file $1, else (as transformers 2.5.1's AutoConfig)
# the first family named in the model's name $2.
model_type_of() {
  local type
  type=$(tr -d '\n' <"$1" | sed -n 's/.*"model_type"[[:space:]]*:[[:space:]]*"\([A-Za-z0-9_-]*\)".*/\1/p')
  if [[ -z $type ]]; then
    for pattern in distilbert albert xlm-roberta roberta electra modernbert bert; do
      if [[ $2 == *"$pattern"* ]]; then type=$pattern; break; fi
    done
  fi
  echo "$type"
}

# The tokenizer files a family reads.
tokenizer_files() {
  case $1 in
    albert) echo spiece.model ;;
    bert | distilbert | electra) echo vocab.txt ;;
    roberta | gpt2) echo vocab.json merges.txt ;;
    xlm-roberta) echo sentencepiece.bpe.model ;;
    modernbert | llama | mistral | qwen2) echo tokenizer.json ;;
    deberta-v2) echo spm.model ;;
    *) return 1 ;;
  esac
}

# Fetches file $3 of model $1 from $2 into $4 when the hub has it.
fetch_optional() {
  local rc=0
  lp_fetch "$2/$3" "$4/$3" || rc=$?
  ((rc == 0 || rc == 4)) || lp_die "$1: $2/$3: download failed (HTTP $LP_STATUS)"
}

download_model() {
  local name=$1 target="$dir/$1" base="$hub/$1/resolve/$revision" rc=0 type files file
  echo "$name -> $target"
  mkdir -p "$target" || lp_die "cannot create $target"
  fetch_required "$name" "$base" config.json "$target"
  type=$(model_type_of "$target/config.json" "$name")
  files=$(tokenizer_files "$type") ||
    lp_die "$name: model_type '$type' is not supported (supported: albert, bert, distilbert, roberta, electra, xlm-roberta, deberta-v2, modernbert, gpt2, llama, mistral, qwen2)"
  for file in $files; do fetch_required "$name" "$base" "$file" "$target"; done
  fetch_optional "$name" "$base" tokenizer_config.json "$target"
  fetch_optional "$name" "$base" special_tokens_map.json "$target"
  case $name in
    bert-base-uncased | distilbert-base-uncased | bert-large-uncased)
      [[ -f $target/tokenizer_config.json ]] || echo '{"do_lower_case": true}' >"$target/tokenizer_config.json" ;;
  esac
  if [[ $type == electra && ! -f $target/tokenizer_config.json ]]; then
    echo '{"do_lower_case": true}' >"$target/tokenizer_config.json"
  fi
  # from_pretrained's order: one safetensors file, sharded safetensors, one .bin, sharded .bin.
  local weights
  for weights in model.safetensors model.safetensors.index.json pytorch_model.bin pytorch_model.bin.index.json; do
    rc=0
    lp_fetch "$base/$weights" "$target/$weights" || rc=$?
    ((rc == 4)) || break
    case $weights in
      model.safetensors) echo "  no model.safetensors; looking for shards or pytorch_model.bin instead" ;;
      pytorch_model.bin.index.json) lp_die "$name: the hub has no weights (model.safetensors, pytorch_model.bin or their shards)" ;;
    esac
  done
  if [[ $weights == pytorch_model.bin ]]; then echo "  fetched pytorch_model.bin instead"; fi
  if [[ $weights == *.index.json ]]; then
    # Each shard the index's weight_map names (plain file names in the same repository).
    local shard
    for shard in $(grep -o '"[A-Za-z0-9._-]*\.\(safetensors\|bin\)"' "$target/$weights" | tr -d '"' | sort -u); do
      fetch_required "$name" "$base" "$shard" "$target"
    done
  fi
}

for name in "${names[@]}"; do download_model "$name"; done
echo "done: ${names[*]} in $dir"
