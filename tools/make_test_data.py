#!/usr/bin/env python3
"""The test data of tests/data: make it from the reference files, or expand it for a build.

  make_test_data.py build SHARED_DIR OUT_DIR   reference tree (data/, golden/) -> tests/data
  make_test_data.py expand DATA_DIR OUT_DIR    tests/data -> a tree with the reference layout

`build` stores each file the tests read gzip-compressed as <name>.gz (files already gzipped as they
are), zeroes the word-embedding rows of the BERT, DistilBERT and RoBERTa test models that no test
input uses (see tests/data/PROVENANCE.md), and writes MANIFEST.tsv (expanded path, stored path,
size and sha256 of the expanded file). It prints every stored size and refuses a file over 15 MB
or a total over 55 MB. `expand` (run by CMake at configure time) restores the files named in
MANIFEST.tsv, checks their size and sha256, and skips those already expanded from an unchanged
stored file. Python 3 standard library only.
"""
import fnmatch
import gzip
import hashlib
import json
import os
import shutil
import struct
import sys
from pathlib import Path

# What the tests read, relative to the reference tree.
FILES = [
    "data/squad/dev-v2.0.json",
    "data/albert/spiece.model",
    "data/bert/vocab.txt", "data/bert/PROVENANCE.md",
    "data/roberta/vocab.json", "data/roberta/merges.txt", "data/roberta/PROVENANCE.md",
    # ALBERT keeps its three weight formats: the tests compare the loaders on them.
    "golden/albert-tiny/pytorch_model.bin", "golden/albert-tiny/pytorch_model_legacy.bin",
    "golden/*-tiny/config.json", "golden/*-tiny/model.safetensors",
    "golden/*-tiny/reference_outputs.safetensors", "golden/*-tiny/run_squad_eval/*",
    "golden/tokenizer/*", "golden/features/*", "golden/metrics/*",
    # The 4.57.5 goldens' folders load as model directories: their tokenizer files come along.
    "golden/*-tiny/vocab.txt", "golden/*-tiny/vocab.json", "golden/*-tiny/merges.txt", "golden/*-tiny/spm.model",
    "golden/*-tiny/sentencepiece.bpe.model", "golden/*-tiny/tokenizer.json", "golden/*-tiny/tokenizer_config.json",
    "golden/*-tiny/special_tokens_map.json",
    "data/roberta-base-tokenizer-json/*",
]
MAX_FILE, MAX_TOTAL = 15_000_000, 80_000_000
MANIFEST = "MANIFEST.tsv"
MARKER = ".expanded-test-data"  # written into an expanded tree; only such a tree is pruned

# model -> (word-embedding tensor, the tokenizer goldens and feature goldens whose ids its tests feed)
ZEROED = {
    "bert-tiny": ("bert.embeddings.word_embeddings.weight", ["bert_dev"], ["bert_dev_train_384_128_64"]),
    "distilbert-tiny": ("distilbert.embeddings.word_embeddings.weight", ["bert_dev"], ["bert_dev_train_384_128_64"]),
    "roberta-tiny": ("roberta.embeddings.word_embeddings.weight", ["roberta_dev", "roberta_lower_dev"],
                     ["roberta_dev_train_384_128_64"]),
    # transformers 4.57.5 goldens (ELECTRA's features are BERT's). The decoders and ModernBERT have no
    # run_squad golden: their tests feed them only their reference rows (and made-up models otherwise).
    "electra-tiny": ("electra.embeddings.word_embeddings.weight", ["bert_dev"], ["bert_dev_train_384_128_64"]),
    "xlm-roberta-tiny": ("roberta.embeddings.word_embeddings.weight", ["xlm_roberta_dev"],
                         ["xlm_roberta_dev_train_384_128_64"]),
    "deberta-v3-tiny": ("deberta.embeddings.word_embeddings.weight", ["deberta_v3_dev"],
                        ["deberta_v3_dev_train_384_128_64"]),
    "modernbert-tiny": ("model.embeddings.tok_embeddings.weight", [], []),
    "gpt2-tiny": ("transformer.wte.weight", [], []),
    "llama-tiny": ("transformer.embed_tokens.weight", [], []),
}
ALWAYS_KEPT = range(1000)  # special tokens and the most frequent pieces


def read_safetensors(data):
    (n,) = struct.unpack_from("<Q", data)
    return json.loads(data[8:8 + n]), 8 + n


def jsonl_ids(path, key):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return {i for line in f for i in json.loads(line)[key]}


def used_ids(shared, model):
    _, tokenized, features = ZEROED[model]
    ids = set(ALWAYS_KEPT)
    for name in tokenized:
        ids |= jsonl_ids(shared / "golden" / "tokenizer" / f"{name}.jsonl.gz", "ids")
    for name in features:
        ids |= jsonl_ids(shared / "golden" / "features" / f"{name}.jsonl.gz", "input_ids")
    ref = (shared / "golden" / model / "reference_outputs.safetensors").read_bytes()
    header, start = read_safetensors(ref)
    entry = header["input_ids"]
    assert entry["dtype"] == "I64", entry
    begin, end = entry["data_offsets"]
    ids |= set(struct.unpack(f"<{(end - begin) // 8}q", ref[start + begin:start + end]))
    return ids


def zero_unused_rows(data, tensor, keep):
    """The safetensors file `data` with the rows of `tensor` ([V,H] F32) not in `keep` set to 0."""
    header, start = read_safetensors(data)
    entry = header[tensor]
    assert entry["dtype"] == "F32" and len(entry["shape"]) == 2, entry
    rows, width = entry["shape"]
    row_bytes = 4 * width
    out = bytearray(data)
    zero = bytes(row_bytes)
    zeroed = 0
    for row in range(rows):
        if row not in keep:
            at = start + entry["data_offsets"][0] + row * row_bytes
            out[at:at + row_bytes] = zero
            zeroed += 1
    return bytes(out), zeroed, rows


def build(shared, out):
    names = sorted(p.relative_to(shared).as_posix() for p in shared.rglob("*") if p.is_file()
                   and any(fnmatch.fnmatch(p.relative_to(shared).as_posix(), pattern) for pattern in FILES))
    stored, manifest = {}, []
    for name in names:
        data = (shared / name).read_bytes()
        model = name.split("/")[1] if name.startswith("golden/") else None
        if model in ZEROED and name.endswith("/model.safetensors"):
            data, zeroed, rows = zero_unused_rows(data, ZEROED[model][0], used_ids(shared, model))
            print(f"{name}: zeroed {zeroed} of {rows} word-embedding rows (ids no test input uses)")
        target = name if name.endswith(".gz") else name + ".gz"
        stored[target] = data if target == name else gzip.compress(data, 9, mtime=0)
        manifest.append(f"{name}\t{target}\t{len(data)}\t{hashlib.sha256(data).hexdigest()}")
    too_big = [t for t, d in stored.items() if len(d) > MAX_FILE]
    total = sum(map(len, stored.values()))
    tops = {}
    for target, data in stored.items():
        print(f"{len(data):>11,}  {target}")
        top = "/".join(target.split("/")[:2])
        tops[top] = tops.get(top, 0) + len(data)
    for top, size in sorted(tops.items()):
        print(f"{size:>11,}  {top}/ (total)")
    print(f"{total:>11,}  all {len(stored)} files")
    if too_big or total > MAX_TOTAL:
        sys.exit(f"make_test_data.py: over budget (file > {MAX_FILE:,} bytes: {too_big}; total {total:,}"
                 f" of at most {MAX_TOTAL:,}); nothing written")
    for top in ("data", "golden"):
        shutil.rmtree(out / top, ignore_errors=True)
    for target, data in stored.items():
        (out / target).parent.mkdir(parents=True, exist_ok=True)
        (out / target).write_bytes(data)
    (out / MANIFEST).write_text("# expanded path\tstored path\tbytes\tsha256 (written by tools/make_test_data.py build)\n"
                                + "\n".join(manifest) + "\n")


def expand(data_dir, out):
    try:
        lines = (data_dir / MANIFEST).read_text().splitlines()
    except OSError as e:
        sys.exit(f"make_test_data.py: cannot read the test data's manifest: {e}")
    entries = [line.split("\t") for line in lines if line and not line.startswith("#")]
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        sys.exit(f"make_test_data.py: {out} is not empty and was not made by expand; not writing into it")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(f"expanded from {data_dir.resolve()} by tools/make_test_data.py\n")
    expanded = 0
    for name, target, size, sha in entries:
        src, dst = data_dir / target, out / name
        try:
            mtime = src.stat().st_mtime_ns
        except OSError:
            sys.exit(f"make_test_data.py: {src} is missing (named in {data_dir / MANIFEST})")
        if dst.exists() and dst.stat().st_mtime_ns == mtime and dst.stat().st_size == int(size):
            continue
        raw = src.read_bytes()
        data = raw if target == name else gzip.decompress(raw)
        if len(data) != int(size) or hashlib.sha256(data).hexdigest() != sha:
            sys.exit(f"make_test_data.py: {src} does not expand to the file {MANIFEST} describes")
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, dst)
        os.utime(dst, ns=(mtime, mtime))
        expanded += 1
    wanted = {name for name, *_ in entries} | {MARKER}
    stale = [p for p in out.rglob("*") if p.is_file() and p.relative_to(out).as_posix() not in wanted]
    for path in stale:
        path.unlink()
    print(f"test data: {expanded} of {len(entries)} files expanded into {out}"
          + (f", {len(stale)} stale removed" if stale else ""))


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("build", "expand"):
        sys.exit(__doc__)
    (build if sys.argv[1] == "build" else expand)(Path(sys.argv[2]), Path(sys.argv[3]))
