/** `deno task sample`: generates names from a checkpoint; see --help. */

import { parseWords, sha256Hex, splitWords, Vocab } from "../data.ts";
import { UserError } from "../errors.ts";
import { loadCheckpoint, readUserFile } from "../files.ts";
import { CHECKPOINT_FILE } from "../run_dir.ts";
import { generateNames } from "../sample.ts";
import { RULES } from "../settings.ts";
import { runCommand } from "./common.ts";
import { defineCommand, type Values } from "./flags.ts";

const command = defineCommand({
  summary: "Generate names from a trained model.",
  usage: "deno task sample [options]",
  groups: {
    Options: {
      out: {
        kind: "string",
        arg: "DIR",
        help: `the run directory whose ${CHECKPOINT_FILE} to load`,
        default: "out",
      },
      checkpoint: { kind: "string", arg: "FILE", help: "load this checkpoint instead" },
      count: {
        arg: "N",
        ...RULES.sampleCount,
        help: "names to generate",
        default: 20,
      },
      seed: {
        arg: "N",
        ...RULES.seed,
        help: "the same seed gives the same names",
        default: 42,
      },
      temperature: {
        arg: "X",
        ...RULES.temperature,
        help: "divide the logits by X: < 1 safer, > 1 wilder",
        default: 1,
      },
      "top-k": {
        arg: "N",
        ...RULES.topK,
        help: "sample among the N most likely characters only; 0: all",
        default: 0,
      },
      prefix: { kind: "string", arg: "TEXT", help: "start every name with these characters" },
      mark: { kind: "bool", help: "tag each name: (new), or (in the training set)" },
      data: {
        kind: "string",
        arg: "FILE",
        help: "the data to check --mark against",
        shown: "the checkpoint's",
      },
    },
  },
});

async function main(values: Values<typeof command.groups>): Promise<void> {
  const ck = await loadCheckpoint(values.checkpoint ?? `${values.out}/${CHECKPOINT_FILE}`);
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
  const names = generateNames(ck.config, ck.params, ck.buffers, vocab, {
    count: values.count,
    seed: values.seed,
    temperature: values.temperature,
    topK: values["top-k"],
    prefix,
  });
  // Printed a batch at a time as they are generated: a long list starts at once.
  const enc = new TextEncoder();
  for (const batch of names) {
    const width = Math.max(...batch.map((n) => n.length)) + 2;
    const lines = batch.map((name) =>
      !train ? name : name.padEnd(width) + (train.has(name) ? "(in the training set)" : "(new)")
    );
    let bytes = enc.encode(lines.join("\n") + "\n");
    try {
      while (bytes.length) bytes = bytes.subarray(await Deno.stdout.write(bytes));
    } catch (e) {
      // The reader has gone (`| head`): what it wanted is written; stop quietly.
      if (e instanceof Deno.errors.BrokenPipe) return;
      throw e;
    }
  }
}

if (import.meta.main) runCommand(command, main);
