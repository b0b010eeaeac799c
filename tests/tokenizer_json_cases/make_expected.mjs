// Writes <case>.expected.jsonl for every <case>.recipe.json here, with the
// JavaScript port of the tokenizers library (@huggingface/tokenizers 0.2.0, the
// one that made ../data's tokenizer_json goldens):
//   cd /tmp && npm install @huggingface/tokenizers@0.2.0
//   NODE_PATH=/tmp/node_modules node tests/tokenizer_json_cases/make_expected.mjs <test-data dir>
// A recipe is a tokenizer.json whose model.vocab / model.merges may name a
// vocabulary of the test data instead of listing it ("@gpt2": golden/gpt2-tiny's
// vocab.json and merges.txt; "@bert": data/bert/vocab.txt), plus "_texts" (the
// texts to tokenise) and "_config" (the tokenizer_config.json it comes with).
// tests/test_tokenizer_json.cpp builds the same tokenizer.json from the recipe.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { Tokenizer } = require(require.resolve("@huggingface/tokenizers", { paths: [process.env.NODE_PATH ?? "/tmp/node_modules"] }));

const data = process.argv[2];
const here = path.dirname(new URL(import.meta.url).pathname);

function resolveVocab(model) {
  if (model.vocab === "@gpt2") {
    model.vocab = JSON.parse(fs.readFileSync(path.join(data, "golden/gpt2-tiny/vocab.json"), "utf8"));
  } else if (model.vocab === "@bert") {
    const lines = fs.readFileSync(path.join(data, "data/bert/vocab.txt"), "utf8").split("\n");
    if (lines[lines.length - 1] === "") lines.pop();
    model.vocab = Object.fromEntries(lines.map((token, id) => [token, id]));
  }
  if (model.merges === "@gpt2") {
    const lines = fs.readFileSync(path.join(data, "golden/gpt2-tiny/merges.txt"), "utf8").split("\n");
    model.merges = lines.slice(1).filter((line) => line.length > 0).map((line) => line.split(" "));
  }
}

for (const file of fs.readdirSync(here).filter((f) => f.endsWith(".recipe.json")).sort()) {
  const recipe = JSON.parse(fs.readFileSync(path.join(here, file), "utf8"));
  const texts = recipe._texts;
  const config = recipe._config ?? {};
  delete recipe._texts;
  delete recipe._config;
  delete recipe._note;
  resolveVocab(recipe.model);
  const tokenizer = new Tokenizer(recipe, { clean_up_tokenization_spaces: false, ...config });
  const lines = texts.map((text) => {
    const plain = tokenizer.encode(text, { add_special_tokens: false });
    const special = tokenizer.encode(text);
    const decoded = plain.ids.length ? tokenizer.decode(plain.ids, { clean_up_tokenization_spaces: false }) : "";
    return JSON.stringify({ text, pieces: plain.tokens, ids: plain.ids, ids_with_special: special.ids, decoded });
  });
  const out = path.join(here, file.replace(".recipe.json", ".expected.jsonl"));
  fs.writeFileSync(out, lines.join("\n") + "\n");
  console.log(`${out}: ${lines.length} texts`);
}
