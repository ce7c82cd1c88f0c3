/** `deno task lr-find`: the learning-rate range test, and a suggestion; see --help. */

import { makeDataset, parseWords } from "../data.ts";
import { lines } from "../figures.ts";
import { readUserFile, writeFileAtomic } from "../files.ts";
import { findLr, findRates } from "../lr_find.ts";
import { initModel, type PresetName, PRESETS } from "../model.ts";
import { writeFigures } from "../plots.ts";
import { Rng } from "../rng.ts";
import { validateTraining } from "../training.ts";
import { outputDir, runCommand } from "./common.ts";
import { defineCommand, type FlagGroups, UsageError, type Values } from "./flags.ts";
import { DEFAULT_DATA, resolveModel, TRAIN_FLAGS, type TrainValues } from "./train_options.ts";
import {
  type Backend,
  type KernelChoice,
  MAX_REPLICAS,
  openBackend,
  openGroup,
} from "../backend.ts";
import type { Dataset } from "../data.ts";
import type { ModelConfig } from "../model.ts";
import { parseNumber, RULES } from "../settings.ts";

const T = TRAIN_FLAGS;
const model = T["Model (defaults from --preset)"];
const training = T["Training (defaults from --preset)"];

const FLAGS = {
  "LR range test": {
    steps: {
      kind: "int",
      arg: "N",
      min: 20,
      max: 100_000,
      help: "steps of the ramp",
      default: 1000,
    },
    "lr-min": {
      kind: "float",
      arg: "X",
      min: 1e-9,
      help: "the first learning rate",
      default: 1e-3,
    },
    "lr-max": {
      kind: "float",
      arg: "X",
      min: 1e-9,
      max: 1e3,
      help: "the last learning rate",
      default: 1,
    },
    out: {
      kind: "string",
      arg: "DIR",
      help: "where lr-find.json and the figures go",
      default: "lr-find",
    },
    json: { kind: "bool", help: "print the result as JSON" },
    rates: {
      kind: "string",
      arg: "X,X,...",
      help: "instead of the ramp: --steps steps at each of these fixed rates, all at once (one " +
        "group of replicas on WebGPU: the same initialization and batches), and the rate of " +
        "the lowest final loss",
    },
  },
  Data: { data: T["Data and output"].data },
  "Model (defaults from --preset)": model,
  Training: {
    "batch-size": training["batch-size"],
    seed: training.seed,
    backend: training.backend,
    kernels: training.kernels,
  },
} as const satisfies FlagGroups;

const command = defineCommand({
  summary: "Find a learning rate: train with one that grows exponentially, and watch the loss " +
    "and the update-to-data ratio.",
  usage: "deno task lr-find [options]",
  groups: FLAGS,
  notes: "The suggestion is where the update-to-data ratio, log10(std(lr * grad) / std(weight)) " +
    "(the median over the weights, smoothed), reaches 1e-3, as makemore part 3 advises; the " +
    "loss against the learning rate (makemore part 2's plot) is printed beside it.",
});

async function main(values: Values<typeof command.groups>): Promise<void> {
  if (values["lr-max"] <= values["lr-min"]) {
    throw new UsageError(
      `--lr-max (${values["lr-max"]}) must be above --lr-min (${values["lr-min"]})`,
    );
  }
  const preset = PRESETS[(values.preset ?? "seed") as PresetName];
  const m = resolveModel(preset.model, values as unknown as TrainValues);
  const seed = values.seed ?? 42;
  const batchSize = values["batch-size"] ?? preset.train.batchSize;
  const path = values.data ?? DEFAULT_DATA;
  const words = parseWords(await readUserFile(path), path);
  const dataset = makeDataset(words, m.blockSize, seed);
  const config = { ...m, vocabSize: dataset.vocab.size };
  validateTraining(config, { ...preset.train, batchSize }, dataset);
  await outputDir(values.out);
  if (values.rates !== undefined) {
    await compareRates(values, config, dataset, seed, batchSize);
    return;
  }
  const backend = await openBackend({
    kind: values.backend as "webgpu" | "cpu",
    config,
    batchSize,
    kernels: values.kernels as "auto",
  });
  try {
    const init = initModel(config, new Rng((seed + 1) >>> 0));
    backend.setParams(init.params, init.buffers);
    const r = await findLr(backend, dataset.examples.train, new Rng((seed + 2) >>> 0), {
      lrMin: values["lr-min"],
      lrMax: values["lr-max"],
      steps: values.steps,
      batchSize,
    });
    await writeFileAtomic(`${values.out}/lr-find.json`, JSON.stringify(r) + "\n");
    const figures = await writeFigures(
      values.out,
      new Map([
        [
          "lr-find-loss",
          lines("Loss against the learning rate (smoothed)", {
            x: "learning rate",
            y: "loss",
            logX: true,
          }, [
            {
              label: "loss, smoothed",
              points: r.lrs.map((lr, i) => ({ x: lr, y: r.smoothed[i] })),
            },
          ]),
        ],
        [
          "lr-find-ratio",
          lines("Update-to-data ratio against the learning rate", {
            x: "learning rate",
            y: "log10 ratio (median over the weights)",
            logX: true,
            guideY: -3,
          }, [
            { label: "median", points: r.ratios.map((q) => ({ x: q.lr, y: q.median })) },
            { label: "smoothed", points: r.ratios.map((q) => ({ x: q.lr, y: q.smoothed })) },
          ]),
        ],
      ]),
    );
    if (values.json) {
      console.log(JSON.stringify({ suggestion: r.suggestion, best: r.best, diverged: r.diverged }));
      return;
    }
    // The evidence: up to a dozen points of the ramp, each once.
    console.log("learning rate   loss (smoothed)   update:data (log10, median)");
    const picks = Math.min(12, r.ratios.length);
    const rows = new Set(
      Array.from(
        { length: picks },
        (_, j) => Math.round((j * (r.ratios.length - 1)) / Math.max(picks - 1, 1)),
      ),
    );
    for (const row of rows) {
      const q = r.ratios[row];
      const i = r.lrs.indexOf(q.lr);
      console.log(
        `${q.lr.toExponential(2).padStart(13)}   ${r.smoothed[i].toFixed(4).padStart(15)}   ${
          q.smoothed.toFixed(2).padStart(8)
        }`,
      );
    }
    console.log(
      `lowest smoothed loss ${r.best.loss.toFixed(4)} at lr ${r.best.lr.toPrecision(3)}` +
        (r.diverged !== null ? `; diverged at lr ${r.lrs[r.diverged].toPrecision(3)}` : ""),
    );
    console.log(
      r.suggestion.lr === null
        ? `no suggestion: ${r.suggestion.why}`
        : `suggested learning rate: ${r.suggestion.lr.toPrecision(2)} (${r.suggestion.why})`,
    );
    console.log(
      `wrote ${values.out}/lr-find.json, ${
        [...figures.keys()].map((f) => `${values.out}/${f}.png`).join(", ")
      }`,
    );
  } finally {
    backend.destroy();
  }
}

/** --rates: the fixed rates' runs at once, their final losses and ratios, and the best. */
async function compareRates(
  values: Values<typeof command.groups>,
  config: ModelConfig,
  dataset: Dataset,
  seed: number,
  batchSize: number,
): Promise<void> {
  const rates = values.rates!.split(",").map((t) => {
    const v = parseNumber(RULES.lr, t);
    if (typeof v !== "number") throw new UsageError(`--rates: a learning rate ${v.error}`);
    return v;
  });
  if (rates.length < 2 || rates.length > MAX_REPLICAS) {
    throw new UsageError(`--rates: 2 to ${MAX_REPLICAS} learning rates, comma-separated`);
  }
  const kind = values.backend as "webgpu" | "cpu";
  const kernels = values.kernels as KernelChoice;
  const group = openGroup(rates.length, { kernels });
  const opts = { kind, config, batchSize, kernels };
  const backends: Backend[] = [];
  try {
    for (let i = 0; i < rates.length; i++) {
      backends.push(kind === "webgpu" ? await group.join(i, opts) : await openBackend(opts));
    }
    const init = initModel(config, new Rng((seed + 1) >>> 0));
    for (const b of backends) b.setParams(init.params, init.buffers);
    const r = await findRates(backends, dataset.examples.train, new Rng((seed + 2) >>> 0), {
      rates,
      steps: values.steps,
      batchSize,
    });
    await writeFileAtomic(`${values.out}/lr-find.json`, JSON.stringify(r) + "\n");
    const figures = await writeFigures(
      values.out,
      new Map([[
        "lr-find-rates",
        lines(
          "Loss (smoothed) at each learning rate",
          { x: "step", y: "loss" },
          r.rates.map((q) => ({
            label: `lr ${q.lr}`,
            points: q.smoothed.map((y, i) => ({ x: i + 1, y })),
          })),
        ),
      ]]),
    );
    if (values.json) {
      console.log(
        JSON.stringify({ best: r.best, rates: r.rates.map(({ smoothed: _, ...q }) => q) }),
      );
      return;
    }
    console.log(
      `learning rate   final loss   update:data (log10, median) after ${values.steps} steps`,
    );
    for (const q of r.rates) {
      const loss = q.diverged !== null
        ? `diverged at step ${q.diverged + 1}`
        : q.finalLoss.toFixed(4);
      console.log(
        `${q.lr.toExponential(2).padStart(13)}   ${loss.padStart(10)}   ${
          q.ratio.toFixed(2).padStart(8)
        }`,
      );
    }
    console.log(
      r.best === null
        ? "no rate trained: every one diverged (try smaller ones)"
        : `lowest final loss at learning rate ${r.best}`,
    );
    console.log(
      `wrote ${values.out}/lr-find.json, ${
        [...figures.keys()].map((f) => `${values.out}/${f}.png`).join(", ")
      }`,
    );
  } finally {
    for (const b of backends) b.destroy();
    for (let i = 0; i < rates.length; i++) group.leave(i);
  }
}

if (import.meta.main) runCommand(command, main);
