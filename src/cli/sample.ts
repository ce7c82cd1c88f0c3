/** `deno task sample`: generates names from a checkpoint; see --help. */

import { loadCheckpoint } from "../checkpoint.ts";
import { parseWords, splitWords, Vocab } from "../data.ts";
import { UserError } from "../errors.ts";
import { readUserFile, sha256Hex } from "../files.ts";
import { sampleNames } from "../sample.ts";
import { CHECKPOINT_FILE } from "../train.ts";
import { floatFlag, intFlag, parseFlags, runMain } from "./common.ts";

const HELP = `Generate names from a trained model.

Usage: deno task sample [options]

Options:
  --out DIR            run directory whose ${CHECKPOINT_FILE} to load (default out/)
  --checkpoint FILE    load this checkpoint instead
  --count N            names to generate (default 20)
  --seed N             the same seed gives the same names (default 42)
  --temperature X      divide the logits by X: < 1 safer, > 1 wilder (default 1)
  --top-k N            sample among the N most likely characters only (default: all)
  --prefix TEXT        start every name with these characters
  --mark               tag each name: (new), or (in the training set)
  --data FILE          the data to check --mark against (default: the checkpoint's)
  -h, --help           show this help
`;

async function main(): Promise<void> {
  const { values } = parseFlags(Deno.args, {
    out: { type: "string" },
    checkpoint: { type: "string" },
    count: { type: "string" },
    seed: { type: "string" },
    temperature: { type: "string" },
    "top-k": { type: "string" },
    prefix: { type: "string" },
    mark: { type: "boolean" },
    data: { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const count = intFlag("count", values.count, { min: 1, max: 100_000 }) ?? 20;
  const seed = intFlag("seed", values.seed, { min: 0, max: 0xffffffff }) ?? 42;
  const temperature = floatFlag("temperature", values.temperature, { min: 1e-3, max: 100 }) ?? 1;
  const topK = intFlag("top-k", values["top-k"], { min: 1 }) ?? 0;
  const ck = await loadCheckpoint(values.checkpoint ?? `${values.out ?? "out"}/${CHECKPOINT_FILE}`);
  const vocab = new Vocab(ck.vocab);
  const prefix = values.prefix ?? "";
  for (const ch of prefix) {
    if (ch === "." || !vocab.has(ch)) {
      throw new UserError(
        `--prefix: '${ch}' is not in the model's vocabulary (${vocab.chars.slice(1).join("")})`,
      );
    }
  }
  let train: Set<string> | undefined;
  if (values.mark) {
    const path = values.data ?? ck.state.data.path;
    const bytes = await readUserFile(path).catch((e) => {
      throw new UserError(`--mark needs the training data (give it with --data): ${e.message}`);
    });
    if (await sha256Hex(bytes) !== ck.state.data.sha256) {
      throw new UserError(`--mark: ${path} is not the data this model was trained on`);
    }
    train = new Set(splitWords(parseWords(bytes, path), ck.state.seed).train);
  }
  const names = sampleNames(ck.config, ck.params, ck.buffers, vocab, {
    count,
    seed,
    temperature,
    topK,
    prefix,
  });
  const width = Math.max(...names.map((n) => n.length)) + 2;
  for (const name of names) {
    if (!train) console.log(name);
    else console.log(name.padEnd(width) + (train.has(name) ? "(in the training set)" : "(new)"));
  }
}

if (import.meta.main) runMain(main);
