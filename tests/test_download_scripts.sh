#!/usr/bin/env bash
# Offline tests of tools/download_models.sh and tools/download_squad.sh: they
# run against a fake hub served on 127.0.0.1 (HF-style redirects with
# x-linked-size for weights, byte ranges for resuming; under /norange/ no
# ranges), and against a closed port for the offline message.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work=$(mktemp -d)
server_pid=""
cleanup() {
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

failures=0
check() {  # check DESCRIPTION COMMAND...
  local description=$1
  shift
  if "$@"; then echo "ok - $description"; else echo "not ok - $description"; failures=$((failures + 1)); fi
}
# Runs a script with a time bound, capturing its output and exit status.
run() {
  status=0
  timeout 60 "$@" >"$work/out.txt" 2>&1 || status=$?
}
output_has() { grep -qF -- "$1" "$work/out.txt"; }
same() { cmp -s "$1" "$2"; }
requests() { grep -c -- "$1" "$work/requests.log" || true; }

# --- the fake hub -----------------------------------------------------------
hub=$work/hub
mkdir -p "$hub/albert-tiny/resolve/main" "$hub/someone/only-bin/resolve/main" "$hub/squad" "$hub/bad-squad"
for model in albert-tiny someone/only-bin; do
  echo '{"model_type": "albert", "hidden_size": 64}' >"$hub/$model/resolve/main/config.json"
  head -c 5000 /dev/urandom >"$hub/$model/resolve/main/spiece.model"
done
head -c 300000 /dev/urandom >"$hub/albert-tiny/resolve/main/model.safetensors"
# Other families: BERT (vocab.txt, no tokenizer_config.json on the hub), RoBERTa
# (vocab.json + merges.txt, with a tokenizer_config.json), DistilBERT without a model_type.
mkdir -p "$hub/bert-base-uncased/resolve/main" "$hub/someone/distilroberta-squad2/resolve/main" \
  "$hub/someone/distilbert-untyped/resolve/main"
echo '{"model_type": "bert"}' >"$hub/bert-base-uncased/resolve/main/config.json"
printf '[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n' >"$hub/bert-base-uncased/resolve/main/vocab.txt"
echo '{"model_type": "roberta"}' >"$hub/someone/distilroberta-squad2/resolve/main/config.json"
echo '{"<s>": 0}' >"$hub/someone/distilroberta-squad2/resolve/main/vocab.json"
printf '#version: 0.2\n' >"$hub/someone/distilroberta-squad2/resolve/main/merges.txt"
echo '{"do_lower_case": true, "max_len": 512}' >"$hub/someone/distilroberta-squad2/resolve/main/tokenizer_config.json"
echo '{"dim": 64}' >"$hub/someone/distilbert-untyped/resolve/main/config.json"
printf '[PAD]\n' >"$hub/someone/distilbert-untyped/resolve/main/vocab.txt"
# DeBERTa-v3: a hyphenated model_type, spm.model.
mkdir -p "$hub/someone/deberta-v3-squad2/resolve/main"
printf '{\n  "model_type": "deberta-v2",\n  "vocab_size": 128100\n}\n' >"$hub/someone/deberta-v3-squad2/resolve/main/config.json"
head -c 3000 /dev/urandom >"$hub/someone/deberta-v3-squad2/resolve/main/spm.model"
for model in bert-base-uncased someone/distilroberta-squad2 someone/distilbert-untyped someone/deberta-v3-squad2; do
  head -c 1000 /dev/urandom >"$hub/$model/resolve/main/model.safetensors"
done
# The newer encoders: ELECTRA (vocab.txt, no tokenizer_config.json), XLM-RoBERTa (a model_type with a
# hyphen, sentencepiece.bpe.model), ModernBERT (tokenizer.json only).
mkdir -p "$hub/someone/electra-squad2/resolve/main" "$hub/xlm-roberta-base/resolve/main" \
  "$hub/answerdotai/ModernBERT-base/resolve/main"
printf '{\n  "model_type": "electra"\n}\n' >"$hub/someone/electra-squad2/resolve/main/config.json"
printf '[PAD]\n' >"$hub/someone/electra-squad2/resolve/main/vocab.txt"
printf '{\n  "model_type": "xlm-roberta",\n  "pad_token_id": 1\n}\n' >"$hub/xlm-roberta-base/resolve/main/config.json"
head -c 3000 /dev/urandom >"$hub/xlm-roberta-base/resolve/main/sentencepiece.bpe.model"
echo '{"model_type": "modernbert"}' >"$hub/answerdotai/ModernBERT-base/resolve/main/config.json"
echo '{"version": "1.0"}' >"$hub/answerdotai/ModernBERT-base/resolve/main/tokenizer.json"
for model in someone/electra-squad2 xlm-roberta-base answerdotai/ModernBERT-base; do
  head -c 1000 /dev/urandom >"$hub/$model/resolve/main/model.safetensors"
done
head -c 200000 /dev/urandom >"$hub/someone/only-bin/resolve/main/pytorch_model.bin"
# Decoders: GPT-2 (vocab.json + merges.txt), a Llama with tokenizer.json and sharded safetensors,
# a Qwen2 with sharded pytorch_model-*.bin.
mkdir -p "$hub/gpt2/resolve/main" "$hub/someone/llama-sharded/resolve/main" "$hub/someone/qwen2-bin-shards/resolve/main"
echo '{"model_type": "gpt2"}' >"$hub/gpt2/resolve/main/config.json"
echo '{"<|endoftext|>": 0}' >"$hub/gpt2/resolve/main/vocab.json"
printf '#version: 0.2\n' >"$hub/gpt2/resolve/main/merges.txt"
head -c 3000 /dev/urandom >"$hub/gpt2/resolve/main/model.safetensors"
echo '{"model_type": "llama"}' >"$hub/someone/llama-sharded/resolve/main/config.json"
echo '{"model_type": "qwen2"}' >"$hub/someone/qwen2-bin-shards/resolve/main/config.json"
for model in someone/llama-sharded someone/qwen2-bin-shards; do
  echo '{"version": "1.0"}' >"$hub/$model/resolve/main/tokenizer.json"
done
for shard in 1 2; do
  head -c 40000 /dev/urandom >"$hub/someone/llama-sharded/resolve/main/model-0000$shard-of-00002.safetensors"
  head -c 30000 /dev/urandom >"$hub/someone/qwen2-bin-shards/resolve/main/pytorch_model-0000$shard-of-00002.bin"
done
echo '{"metadata": {"total_size": 80000}, "weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
 "model.norm.weight": "model-00002-of-00002.safetensors", "lm_head.weight": "model-00002-of-00002.safetensors"}}' \
  >"$hub/someone/llama-sharded/resolve/main/model.safetensors.index.json"
echo '{"metadata": {"total_size": 60000}, "weight_map": {"model.embed_tokens.weight": "pytorch_model-00001-of-00002.bin",
 "model.norm.weight": "pytorch_model-00002-of-00002.bin"}}' \
  >"$hub/someone/qwen2-bin-shards/resolve/main/pytorch_model.bin.index.json"
for split in train dev; do
  cat >"$hub/squad/$split-v2.0.json" <<EOF
{"version": "v2.0", "data": [{"title": "T", "paragraphs": [{"context": "Nora Silva lives in Tarville.",
 "qas": [{"id": "$split-1", "question": "Where does Nora Silva live?", "is_impossible": false,
 "answers": [{"text": "Tarville", "answer_start": 20}]}]}]}]}
EOF
  echo '<html>404 page of a captive portal</html>' >"$hub/bad-squad/$split-v2.0.json"
done

cat >"$work/server.py" <<'EOF'
import http.server, io, os, re, sys

root, port_file, log_file = sys.argv[1:4]

class Hub(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=root, **kwargs)

    def log_message(self, *args):
        pass

    def send_head(self):
        with open(log_file, "a") as log:
            log.write("%s %s %s\n" % (self.command, self.path, self.headers.get("Range", "-")))
        path, ranges, cdn = self.path, True, False
        if path.startswith("/norange/"):
            path, ranges = path[len("/norange"):], False
        if path.startswith("/cdn/"):
            path, cdn = path[len("/cdn"):], True
        file = self.translate_path(path)
        if not os.path.isfile(file):
            self.send_error(404)
            return None
        size = os.path.getsize(file)
        if not cdn and "/resolve/" in path and path.endswith((".safetensors", ".bin")):
            # As the hub does for large files: redirect to a CDN, announcing the size.
            self.send_response(302)
            self.send_header("Location", "/cdn" + path)
            self.send_header("X-Linked-Size", str(size))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        with open(file, "rb") as f:
            data = f.read()
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        start = int(match.group(1)) if match and ranges else 0
        if start >= size > 0:
            self.send_response(416)
            self.send_header("Content-Range", "bytes */%d" % size)
            self.end_headers()
            return None
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, size - 1, size))
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        return io.BytesIO(data[start:])

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
EOF
python3 "$work/server.py" "$hub" "$work/port" "$work/requests.log" &
server_pid=$!
for _ in $(seq 100); do [[ -f $work/port ]] && break; sleep 0.1; done
[[ -f $work/port ]] || { echo "not ok - the fake hub did not start"; exit 1; }
url="http://127.0.0.1:$(cat "$work/port")"
closed_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

models=$work/models
export LAYERPROBE_HUB_URL=$url
unset LAYERPROBE_MODELS_DIR LAYERPROBE_SQUAD_DIR LAYERPROBE_SQUAD_URL HF_TOKEN

# --- download_models.sh -----------------------------------------------------
run bash "$root/tools/download_models.sh" --help
check "models --help explains usage" test "$status" = 0 -a -n "$(output_has 'Usage: tools/download_models.sh' && echo y)"

run bash "$root/tools/download_models.sh" --dir "$models" albert-tiny someone/only-bin
check "models: download succeeds" test "$status" = 0
for file in config.json spiece.model model.safetensors; do
  check "models: albert-tiny/$file is the hub's" same "$models/albert-tiny/$file" "$hub/albert-tiny/resolve/main/$file"
done
for file in config.json spiece.model pytorch_model.bin; do
  check "models: only-bin/$file is the hub's" same "$models/someone/only-bin/$file" "$hub/someone/only-bin/resolve/main/$file"
done
check "models: falls back to pytorch_model.bin" output_has "fetched pytorch_model.bin instead"
check "models: no safetensors file where the hub has none" test ! -e "$models/someone/only-bin/model.safetensors"
check "models: no .part files left" test -z "$(find "$models" -name '*.part')"

gets_before=$(requests "^GET ")
run bash "$root/tools/download_models.sh" --dir "$models" albert-tiny
check "models: a second run succeeds" test "$status" = 0
check "models: a second run downloads nothing" test "$(requests "^GET ")" = "$gets_before"
check "models: a second run says the files are complete" output_has "already complete"

rm -f "$models/albert-tiny/model.safetensors"
head -c 120000 "$hub/albert-tiny/resolve/main/model.safetensors" >"$models/albert-tiny/model.safetensors.part"
run bash "$root/tools/download_models.sh" --dir "$models" albert-tiny
check "models: resume succeeds" test "$status" = 0
check "models: resume asks for the missing bytes only" test "$(requests "GET /cdn/albert-tiny/resolve/main/model.safetensors bytes=120000-")" = 1
check "models: the resumed file is the hub's" same "$models/albert-tiny/model.safetensors" "$hub/albert-tiny/resolve/main/model.safetensors"

head -c 1000 /dev/urandom >"$models/albert-tiny/spiece.model"
run bash "$root/tools/download_models.sh" --dir "$models" albert-tiny
check "models: a file of the wrong size is fetched again" same "$models/albert-tiny/spiece.model" "$hub/albert-tiny/resolve/main/spiece.model"

run bash "$root/tools/download_models.sh" --dir "$models" bert-base-uncased someone/distilroberta-squad2 someone/distilbert-untyped \
  someone/deberta-v3-squad2
check "models: every family downloads" test "$status" = 0
check "models: BERT's vocab.txt" same "$models/bert-base-uncased/vocab.txt" "$hub/bert-base-uncased/resolve/main/vocab.txt"
check "models: bert-base-uncased lower-cases as 2.5.1 builds it" \
  test "$(cat "$models/bert-base-uncased/tokenizer_config.json")" = '{"do_lower_case": true}'
for file in vocab.json merges.txt tokenizer_config.json; do
  check "models: RoBERTa's $file" same "$models/someone/distilroberta-squad2/$file" "$hub/someone/distilroberta-squad2/resolve/main/$file"
done
check "models: no spiece.model for RoBERTa" test ! -e "$models/someone/distilroberta-squad2/spiece.model"
check "models: DeBERTa's spm.model" same "$models/someone/deberta-v3-squad2/spm.model" \
  "$hub/someone/deberta-v3-squad2/resolve/main/spm.model"
check "models: no vocab.txt for DeBERTa (a model_type with a hyphen is read whole)" \
  test ! -e "$models/someone/deberta-v3-squad2/vocab.txt"
check "models: the family from the name without a model_type" same "$models/someone/distilbert-untyped/vocab.txt" \
  "$hub/someone/distilbert-untyped/resolve/main/vocab.txt"

run bash "$root/tools/download_models.sh" --dir "$models" someone/electra-squad2 xlm-roberta-base answerdotai/ModernBERT-base
check "models: the newer families download" test "$status" = 0
check "models: ELECTRA's vocab.txt" same "$models/someone/electra-squad2/vocab.txt" "$hub/someone/electra-squad2/resolve/main/vocab.txt"
check "models: ELECTRA lower-cases as 4.57.5's ElectraTokenizer" \
  test "$(cat "$models/someone/electra-squad2/tokenizer_config.json")" = '{"do_lower_case": true}'
check "models: XLM-R's sentencepiece.bpe.model" same "$models/xlm-roberta-base/sentencepiece.bpe.model" \
  "$hub/xlm-roberta-base/resolve/main/sentencepiece.bpe.model"
check "models: ModernBERT's tokenizer.json" same "$models/answerdotai/ModernBERT-base/tokenizer.json" \
  "$hub/answerdotai/ModernBERT-base/resolve/main/tokenizer.json"
check "models: no vocab.txt for ModernBERT" test ! -e "$models/answerdotai/ModernBERT-base/vocab.txt"
run bash "$root/tools/download_models.sh" --dir "$models" gpt2 someone/llama-sharded someone/qwen2-bin-shards
check "models: decoder families download" test "$status" = 0
for file in vocab.json merges.txt model.safetensors; do
  check "models: GPT-2's $file" same "$models/gpt2/$file" "$hub/gpt2/resolve/main/$file"
done
check "models: Llama's tokenizer.json" same "$models/someone/llama-sharded/tokenizer.json" \
  "$hub/someone/llama-sharded/resolve/main/tokenizer.json"
for file in model.safetensors.index.json model-00001-of-00002.safetensors model-00002-of-00002.safetensors; do
  check "models: sharded safetensors $file" same "$models/someone/llama-sharded/$file" \
    "$hub/someone/llama-sharded/resolve/main/$file"
done
for file in pytorch_model.bin.index.json pytorch_model-00001-of-00002.bin pytorch_model-00002-of-00002.bin; do
  check "models: sharded .bin $file" same "$models/someone/qwen2-bin-shards/$file" \
    "$hub/someone/qwen2-bin-shards/resolve/main/$file"
done
check "models: no pytorch_model.bin where shards are" test ! -e "$models/someone/qwen2-bin-shards/pytorch_model.bin"

LAYERPROBE_MODELS_DIR=$work/env-models run bash "$root/tools/download_models.sh" albert-tiny
check "models: LAYERPROBE_MODELS_DIR sets the directory" same "$work/env-models/albert-tiny/config.json" "$hub/albert-tiny/resolve/main/config.json"

run bash "$root/tools/download_models.sh" --dir "$models" no-such-model
check "models: an unknown model fails" test "$status" = 1
check "models: an unknown model is named" output_has "no-such-model: $url/no-such-model/resolve/main/config.json not found (HTTP 404)"

run bash "$root/tools/download_models.sh" --dir "$models" ../escape
check "models: a path-like name is a usage error" test "$status" = 2
run bash "$root/tools/download_models.sh" --dir "$models"
check "models: no name is a usage error" test "$status" = 2

LAYERPROBE_HUB_URL="http://127.0.0.1:$closed_port" run bash "$root/tools/download_models.sh" --dir "$models" albert-tiny
check "models: offline fails" test "$status" = 1
check "models: offline says so" output_has "cannot reach 127.0.0.1:$closed_port: are you offline?"

# --- download_squad.sh ------------------------------------------------------
squad=$work/squad
run bash "$root/tools/download_squad.sh" --help
check "squad --help mentions the CS224N split" output_has "CS224N"

LAYERPROBE_SQUAD_URL="$url/squad" run bash "$root/tools/download_squad.sh" --dir "$squad"
check "squad: download succeeds" test "$status" = 0
for split in train dev; do
  check "squad: $split-v2.0.json is the server's" same "$squad/$split-v2.0.json" "$hub/squad/$split-v2.0.json"
done
check "squad: counts the questions" output_has "1 articles, 1 questions"
check "squad: notes the study's dev split" output_has "half of it (6,078 questions)"

rm -f "$squad/dev-v2.0.json"
head -c 50 "$hub/squad/dev-v2.0.json" >"$squad/dev-v2.0.json.part"
LAYERPROBE_SQUAD_URL="$url/norange/squad" run bash "$root/tools/download_squad.sh" --dir "$squad"
check "squad: a server without ranges restarts the download" test "$status" = 0
check "squad: says it restarts" output_has "the server cannot resume"
check "squad: the restarted file is the server's" same "$squad/dev-v2.0.json" "$hub/squad/dev-v2.0.json"

LAYERPROBE_SQUAD_URL="$url/bad-squad" run bash "$root/tools/download_squad.sh" --dir "$work/bad"
check "squad: a file that is not SQuAD JSON fails" test "$status" = 1
check "squad: says the file is not SQuAD" output_has "is not SQuAD 2.0 JSON"
check "squad: the bad file is moved aside" test ! -e "$work/bad/train-v2.0.json" -a -e "$work/bad/train-v2.0.json.invalid"

LAYERPROBE_SQUAD_URL="http://127.0.0.1:$closed_port/squad" run bash "$root/tools/download_squad.sh" --dir "$work/offline"
check "squad: offline fails with a clear message" test "$status" = 1 -a -n "$(output_has 'are you offline?' && echo y)"

if ((failures)); then
  echo "$failures check(s) failed; last output:"
  cat "$work/out.txt"
  exit 1
fi
echo "all download script checks passed"
