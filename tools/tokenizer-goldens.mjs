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
