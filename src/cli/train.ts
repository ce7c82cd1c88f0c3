/** `deno task train`: trains a model on a names file; see --help. */

import { loadCheckpoint } from "../checkpoint.ts";
import { UserError } from "../errors.ts";
import { type ModelConfig, type PresetName, PRESETS, type TrainConfig } from "../model.ts";
import {
  CHECKPOINT_FILE,
  LOG_FILE,
  type Progress,
  type Reporter,
  run,
  RUN_FILE,
  type RunOptions,
} from "../train.ts";
import { plotRun } from "../plots.ts";
import { floatFlag, intFlag, parseFlags, runMain, UsageError } from "./common.ts";

const HELP = `Train a character-level MLP (makemore part 3) on a list of names.

Usage: deno task train [options]

Data and output:
  --data FILE          one item per line (default data/names.txt)
  --out DIR            run directory (default out/): ${CHECKPOINT_FILE}, ${RUN_FILE},
                       ${LOG_FILE}, diagnostics.json, figures (.png, .svg), report.html
  --resume             continue the run in --out from its checkpoint

Model (defaults from --preset):
  --preset NAME        seed (default): 5 hidden blocks of 200, output BatchNorm
                       lecture: 1 hidden block of 200, output Linear with bias
  --block-size N       characters of context (seed: 3)
  --embd N             embedding dimensions per character (seed: 10)
  --hidden N           units per hidden block (seed: 200)
  --layers N           hidden blocks, each Linear -> BatchNorm1d -> tanh (seed: 5)

Training (defaults from --preset):
  --steps N            SGD steps (200000)
  --batch-size N       examples per step (32)
  --lr X               learning rate (0.1)
  --lr-final X         learning rate from --decay-at on (0.01)
  --decay-at N         step of the decay (seed: 150000, lecture: 100000)
  --seed N             seeds the split, the initialization and the batches (default 42)
  --backend NAME       webgpu (default) or cpu (the TypeScript reference: slow)
  --no-calibrate       keep the running BatchNorm statistics instead of recomputing them
                       over the training split after training

Reporting:
  --eval-every N       val loss every N steps (default 10000; 0 = only at the end)
  --diag-every N       diagnostics snapshots (activations, gradients) every N steps, besides
                       steps 1, 1000 and the last (default 0: only those)
  --no-diagnostics     collect no diagnostics (no update ratios, no snapshots)
  --no-plots           draw no figures (deno task plot draws them later)
  --checkpoint-every N checkpoint every N steps (default 10000; always at the end)
  --samples N          names to sample at the end (default 10)
  --json               one JSON object per progress line
  --quiet              only the final report
  -h, --help           show this help

Ctrl-C stops after the current chunk of steps and saves a checkpoint; --resume continues it
with exactly the losses an uninterrupted run would have had.
`;

const OPTIONS = {
  data: { type: "string" },
  out: { type: "string" },
  resume: { type: "boolean" },
  preset: { type: "string" },
  "block-size": { type: "string" },
  embd: { type: "string" },
  hidden: { type: "string" },
  layers: { type: "string" },
  steps: { type: "string" },
  "batch-size": { type: "string" },
  lr: { type: "string" },
  "lr-final": { type: "string" },
  "decay-at": { type: "string" },
  seed: { type: "string" },
  backend: { type: "string" },
  "no-calibrate": { type: "boolean" },
  "eval-every": { type: "string" },
  "diag-every": { type: "string" },
  "no-diagnostics": { type: "boolean" },
  "no-plots": { type: "boolean" },
  "checkpoint-every": { type: "string" },
  samples: { type: "string" },
  json: { type: "boolean" },
  quiet: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

type Values = ReturnType<typeof parseFlags<typeof OPTIONS>>["values"];

/** Flags over the preset's (or, with --resume, the checkpoint's) settings. */
export async function resolveOptions(values: Values): Promise<RunOptions> {
  const out = values.out ?? "out";
  let model: Omit<ModelConfig, "vocabSize">;
  let train: TrainConfig;
  let seed = 42;
  let data = values.data ?? "data/names.txt";
  if (values.resume) {
    if (values.preset) throw new UsageError("--preset cannot change a resumed run");
    const ck = await loadCheckpoint(`${out}/${CHECKPOINT_FILE}`).catch((e) => {
      if (e instanceof UserError && /no such checkpoint/.test(e.message)) {
        throw new UserError(`--resume: no checkpoint in ${out}/ (start a run without --resume)`);
      }
      throw e;
    });
    const { vocabSize: _, ...rest } = ck.config;
    model = rest;
    train = ck.state.train;
    seed = ck.state.seed;
    data = values.data ?? ck.state.data.path;
  } else {
    const name = values.preset ?? "seed";
    if (!(name in PRESETS)) {
      throw new UsageError(
        `--preset must be one of ${Object.keys(PRESETS).join(", ")}, got '${name}'`,
      );
    }
    ({ model, train } = PRESETS[name as PresetName]);
  }
  const positive = { min: 1 };
  model = {
    ...model,
    blockSize: intFlag("block-size", values["block-size"], { min: 1, max: 32 }) ?? model.blockSize,
    nEmbd: intFlag("embd", values.embd, { min: 1, max: 256 }) ?? model.nEmbd,
    nHidden: intFlag("hidden", values.hidden, { min: 1, max: 2048 }) ?? model.nHidden,
    nLayers: intFlag("layers", values.layers, { min: 1, max: 16 }) ?? model.nLayers,
  };
  train = {
    steps: intFlag("steps", values.steps, { min: 1, max: 1e9 }) ?? train.steps,
    batchSize: intFlag("batch-size", values["batch-size"], { min: 2, max: 1024 }) ??
      train.batchSize,
    lr: floatFlag("lr", values.lr, { min: Number.MIN_VALUE }) ?? train.lr,
    lrFinal: floatFlag("lr-final", values["lr-final"], { min: 0 }) ?? train.lrFinal,
    decayAt: intFlag("decay-at", values["decay-at"], { min: 0 }) ?? train.decayAt,
  };
  seed = intFlag("seed", values.seed, { min: 0, max: 0xffffffff }) ?? seed;
  const backend = values.backend ?? "webgpu";
  if (backend !== "webgpu" && backend !== "cpu") {
    throw new UsageError(`--backend must be webgpu or cpu, got '${backend}'`);
  }
  return {
    dataPath: data,
    outDir: out,
    model,
    train,
    seed,
    backend,
    resume: values.resume ?? false,
    evalEvery: intFlag("eval-every", values["eval-every"], { min: 0 }) ?? 10_000,
    checkpointEvery: intFlag("checkpoint-every", values["checkpoint-every"], positive) ?? 10_000,
    calibrate: !values["no-calibrate"],
    logEvery: 100,
    samples: intFlag("samples", values.samples, { min: 0, max: 1000 }) ?? 10,
    diagnostics: !values["no-diagnostics"],
    diagEvery: intFlag("diag-every", values["diag-every"], { min: 0 }) ?? 0,
  };
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  if (seconds < 10) return `${seconds.toFixed(1)}s`;
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h
    ? `${h}h${String(m).padStart(2, "0")}m`
    : m
    ? `${m}m${String(s % 60).padStart(2, "0")}s`
    : `${s}s`;
}

/** Progress as a live bar on a terminal, plain lines otherwise, JSON, or nothing. */
function makeReporter(mode: "tty" | "plain" | "json" | "quiet"): Reporter & { end(): void } {
  const enc = new TextEncoder();
  const write = (s: string) => Deno.stdout.writeSync(enc.encode(s));
  let lastPlain = 0;
  let bar = false;
  const line = (p: Progress) =>
    `step ${p.step}/${p.steps}  loss ${p.loss.toFixed(4)}  ${p.stepsPerSecond.toFixed(0)} steps/s` +
    `  ETA ${duration(p.etaSeconds)}`;
  return {
    start({ backend, params, dataset, resumedFrom }) {
      if (mode === "quiet" || mode === "json") {
        if (mode === "json") {
          console.log(JSON.stringify({
            event: "start",
            backend: backend.kind,
            adapter: backend.adapter,
            params,
            vocab: dataset.vocab.size,
            examples: dataset.examples.train.n,
            resumed_from: resumedFrom,
          }));
        }
        return;
      }
      console.log(`backend: ${backend.kind} (${backend.adapter})`);
      console.log(
        `data: ${dataset.words.length} words, vocabulary ${dataset.vocab.size}, examples ` +
          `${dataset.examples.train.n} train / ${dataset.examples.val.n} val / ` +
          `${dataset.examples.test.n} test`,
      );
      console.log(`parameters: ${params.toLocaleString("en-US")}`);
      if (resumedFrom) console.log(`resuming from step ${resumedFrom}`);
    },
    progress(p) {
      if (mode === "quiet") return;
      if (mode === "json") {
        console.log(JSON.stringify({ event: "progress", ...p }));
        return;
      }
      if (p.valLoss !== undefined) {
        if (bar) write("\r\x1b[2K");
        console.log(`step ${p.step}: val loss ${p.valLoss.toFixed(4)}`);
        bar = false;
        return;
      }
      if (mode === "tty") {
        const width = 24;
        const filled = Math.round((width * p.step) / p.steps);
        write(`\r\x1b[2K[${"#".repeat(filled)}${".".repeat(width - filled)}] ${line(p)}`);
        bar = true;
      } else if (performance.now() - lastPlain > 10_000 || p.step === p.steps) {
        console.log(line(p));
        lastPlain = performance.now();
      }
    },
    note(text) {
      if (mode === "quiet") return;
      if (mode === "json") console.log(JSON.stringify({ event: "note", text }));
      else {
        if (bar) write("\r\x1b[2K");
        bar = false;
        console.log(text);
      }
    },
    end() {
      if (bar) write("\n");
      bar = false;
    },
  };
}

async function main(): Promise<number> {
  const { values } = parseFlags(Deno.args, OPTIONS);
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const opts = await resolveOptions(values);
  const mode = values.quiet
    ? "quiet"
    : values.json
    ? "json"
    : Deno.stdout.isTerminal()
    ? "tty"
    : "plain";
  const reporter = makeReporter(mode);
  const stop = new AbortController();
  const onInterrupt = () => {
    if (stop.signal.aborted) {
      reporter.end();
      console.error("error: interrupted twice; stopped without saving");
      Deno.exit(130);
    }
    reporter.note(
      "interrupted: finishing the current chunk and saving a checkpoint (Ctrl-C again to quit now)",
    );
    stop.abort();
  };
  Deno.addSignalListener("SIGINT", onInterrupt);
  try {
    const result = await run(opts, reporter, stop.signal);
    reporter.end();
    const ck = `${opts.outDir}/${CHECKPOINT_FILE}`;
    if (result.interrupted) {
      console.error(`interrupted at step ${result.step}; saved ${ck}; continue with --resume`);
      return 130;
    }
    if (mode === "json") {
      console.log(
        JSON.stringify({
          event: "done",
          step: result.step,
          losses: result.losses,
          samples: result.samples,
          train_seconds: result.trainSeconds,
        }),
      );
      if (!values["no-plots"]) await plotRun(opts.outDir);
      return 0;
    }
    const l = result.losses!;
    console.log(
      `trained ${result.step} steps in ${duration(result.trainSeconds)} ` +
        `(${((result.trainSeconds / result.step) * 1e6).toFixed(0)} us/step)`,
    );
    console.log(
      `loss: train ${l.train.toFixed(4)}  val ${l.val.toFixed(4)}  test ${l.test.toFixed(4)}`,
    );
    if (result.samples?.length) {
      console.log("samples:");
      for (const s of result.samples) {
        console.log(`  ${s.name.padEnd(16)} ${s.inTrain ? "(in the training set)" : "(new)"}`);
      }
    }
    console.log(`wrote ${ck}, ${opts.outDir}/${RUN_FILE}, ${opts.outDir}/${LOG_FILE}`);
    if (!values["no-plots"]) {
      const figures = await plotRun(opts.outDir);
      console.log(`figures: ${figures.map((f) => `${opts.outDir}/${f}`).join(", ")}`);
    }
    return 0;
  } finally {
    reporter.end();
    Deno.removeSignalListener("SIGINT", onInterrupt);
  }
}

if (import.meta.main) runMain(main);
