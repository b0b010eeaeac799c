#!/usr/bin/env python3
"""Writes small seed corpora for the fuzz targets, one folder per target, from the files in ../shared.

Seeds stay small (a few KB) so that mutations reach structure rather than tensor payloads: the
checkpoints are rebuilt at a tiny size in the same formats as the golden ones.
usage: make_seeds.py SHARED_DIR OUT_DIR
"""
import io
import json
import struct
import sys
import zipfile
from pathlib import Path


def safetensors(tensors, metadata=None):
    header, payload = {}, b""
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(payload), len(payload) + len(data)]}
        payload += data
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + payload


def floats(n, start=0.0):
    return struct.pack(f"<{n}f", *[start + 0.25 * i for i in range(n)])


def unicode(s):
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def pickled_state_dict(storage_key_opcodes):
    """A pickled OrderedDict {"w": tensor [2,2] of FloatStorage "0"}, as torch.save writes it."""
    pid = storage_key_opcodes
    return (b"\x80\x02ccollections\nOrderedDict\n)R" + unicode("w") + b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid +
            b"K\x00K\x02K\x02\x86K\x02K\x01\x86\x89)tRs.")


def legacy_checkpoint():
    magic = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."
    protocol = b"\x80\x02M\xe9\x03."
    sys_info = b"\x80\x02}(" + unicode("little_endian") + b"\x88u."
    pid = b"(" + unicode("storage") + b"ctorch\nFloatStorage\n" + unicode("0") + unicode("cpu") + b"K\x04NtQ"
    keys = b"\x80\x02]" + unicode("0") + b"a."
    return magic + protocol + sys_info + pickled_state_dict(pid) + keys + struct.pack("<q", 4) + floats(4)


def zip_checkpoint():
    pid = b"(" + unicode("storage") + b"ctorch\nFloatStorage\n" + unicode("0") + unicode("cpu") + b"K\x04tQ"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickled_state_dict(pid))
        archive.writestr("archive/data/0", floats(4))
        archive.writestr("archive/version", "3\n")
    return out.getvalue()


def probes_file():
    layers, hidden = 2, 4
    weight = ("F32", [layers, 2, hidden], floats(layers * 2 * hidden))
    bias = ("F32", [layers, 2], floats(layers * 2))
    tensors = {"weight": weight, "bias": bias, "optimizer.exp_avg.weight": weight,
               "optimizer.exp_avg_sq.weight": weight, "optimizer.exp_avg.bias": bias,
               "optimizer.exp_avg_sq.bias": bias}
    metadata = {"format": "layerprobe-probes-1", "kind": "pretrained", "model_path": "models/albert",
                "model_config": json.dumps({"hidden_size": hidden, "num_hidden_layers": layers}),
                "layers": str(layers), "hidden_size": str(hidden), "heads": "start,end",
                "training_options": json.dumps({"learning_rate": 5e-5}), "epoch": "1", "features_seen": "10",
                "mean_loss": json.dumps([1.5, 1.25])}
    return safetensors(tensors, metadata)


def small_squad(dev):
    article = dev["data"][0]
    paragraphs = article["paragraphs"][:2]
    for paragraph in paragraphs:
        paragraph["qas"] = paragraph["qas"][:4]
    return json.dumps({"version": dev["version"], "data": [{"title": article["title"], "paragraphs": paragraphs}]})


def first_entries(path, n):
    return json.dumps(dict(list(json.loads(path.read_text()).items())[:n]))


def small_bpe(tokenizer, merges_kept):
    """`tokenizer` (a tokenizer.json object) cut down to its first merges and the tokens they use."""
    model = tokenizer["model"]
    merges = model["merges"][:merges_kept]
    pairs = [m.split(" ") if isinstance(m, str) else m for m in merges]
    keep = {t for t, i in model["vocab"].items() if i < 300}
    for pair in pairs:
        if len(pair) == 2:
            keep.update(pair)
            keep.add(pair[0] + pair[1])
    keep.update(t["content"] for t in tokenizer.get("added_tokens", []))
    vocab = {t: i for i, t in enumerate(sorted(keep, key=lambda t: model["vocab"].get(t, 10**9)))}
    small = dict(tokenizer)
    small["model"] = dict(model, vocab=vocab, merges=merges)
    small["added_tokens"] = [dict(t, id=vocab[t["content"]]) for t in tokenizer.get("added_tokens", [])]
    if small.get("post_processor") and small["post_processor"].get("type") == "RobertaProcessing":
        small["post_processor"] = dict(small["post_processor"], sep=["</s>", vocab["</s>"]], cls=["<s>", vocab["<s>"]])
    if small.get("post_processor") and small["post_processor"].get("type") == "TemplateProcessing":
        specials = small["post_processor"]["special_tokens"]
        small["post_processor"] = dict(small["post_processor"], special_tokens={
            k: dict(v, ids=[vocab[t] for t in v["tokens"]]) for k, v in specials.items()})
    return small


def tokenizer_json_seeds(shared, lines):
    """tokenizer.json \0 text: cut-down roberta-base and Llama-2 files, and the Unigram case of the tests."""
    golden = shared / "golden"
    texts = [json.loads(line)["text"] for line in lines[:6]] + ["He's  here <s> 1,000 caf\u00e9 \U0001F600\n\tx "]
    files = {
        "roberta": small_bpe(json.loads((shared / "data" / "roberta-base-tokenizer-json" / "tokenizer.json").read_text()), 300),
        "llama2": small_bpe(json.loads((golden / "llama-tiny" / "tokenizer.json").read_text()), 300),
    }
    unigram = json.loads((Path(__file__).resolve().parent.parent / "tokenizer_json_cases" / "unigram_metaspace.recipe.json").read_text())
    for key in ("_texts", "_config", "_note"):
        unigram.pop(key, None)
    files["unigram"] = unigram
    seeds = {}
    for name, tokenizer in files.items():
        encoded = json.dumps(tokenizer, ensure_ascii=False).encode()
        for i, text in enumerate(texts):
            seeds[f"{name}{i}.bin"] = encoded + b"\0" + text.encode()
    return seeds


def main(shared, out):
    golden = shared / "golden"
    dev = json.loads((shared / "data" / "squad" / "dev-v2.0.json").read_text())
    seeds = {
        "safetensors": {"tensors.safetensors": safetensors({"a": ("F32", [2, 3], floats(6)),
                                                            "b": ("I64", [2], struct.pack("<2q", 1, 2))},
                                                           {"format": "pt"}),
                        "probes.safetensors": probes_file()},
        "torch_checkpoint": {"legacy.bin": legacy_checkpoint(), "zip.bin": zip_checkpoint()},
        "config": {f"{family}.json": (golden / f"{family}-tiny" / "config.json").read_bytes()
                   for family in ("albert", "bert", "distilbert")},
        "squad": {"dev-small.json": small_squad(dev).encode()},
        "predictions": {"predictions.json": first_entries(golden / "metrics" / "pred_perturbed.json", 8).encode(),
                        "na_probs.json": first_entries(golden / "metrics" / "na_probs_random.json", 8).encode(),
                        "predictions.csv": b'Id,Predicted\nq1,"an ""answer"", quoted"\nq2,\n'},
        "probes": {"probes.safetensors": probes_file()},
    }
    lines = (golden / "tokenizer" / "dev.jsonl").read_text().splitlines()
    seeds["tokenizer"] = {f"text{i:03d}.txt": json.loads(line)["text"].encode() for i, line in enumerate(lines[:100])}
    seeds["tokenizer"]["special.txt"] = "[CLS] 1,000 caf\u00e9 [MASK]\u3000x<unk>".encode()
    # The first 2100 lines of BERT's vocabulary: the special tokens, punctuation, some words and ## pieces.
    bert_vocab = (shared / "data" / "bert" / "vocab.txt").read_bytes().splitlines(keepends=True)
    seeds["wordpiece_vocab"] = {"vocab.txt": b"".join(bert_vocab[:2100])}
    # RoBERTa's first 300 merges and the tokens they make, then a text: vocab.json \0 merges.txt \0 text.
    merges = (shared / "data" / "roberta" / "merges.txt").read_text(encoding="utf-8").split("\n")[:301]
    tokens = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] + ["".join(m.split()) for m in merges[1:]]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    files = json.dumps(vocab).encode() + b"\0" + ("\n".join(merges) + "\n").encode() + b"\0"
    seeds["bpe_vocab"] = {f"text{i:03d}.bin": files + json.loads(line)["text"].encode() for i, line in enumerate(lines[:20])}
    seeds["bpe_vocab"]["special.bin"] = files + "He's here </s> 1,000 caf\u00e9  \n\n<mask>\u3000x".encode()
    seeds["tokenizer_json"] = tokenizer_json_seeds(shared, lines)
    for target, files in seeds.items():
        folder = out / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
