/**
 * The training run: data -> model -> SGD steps in chunks on a backend -> checkpoints ->
 * calibration, evaluation and samples. The command line (src/cli/train.ts) only parses flags
 * and shows progress; everything a run does and writes is here.
 *
 * Seeds: the split shuffles with `seed`, the initialization draws from seed + 1, the
 * minibatches from seed + 2 (each an independent xoshiro128** stream, src/rng.ts).
 *
 * Files in the run directory: model.safetensors (src/checkpoint.ts), log.jsonl (a line per
 * `logEvery` steps: mean loss and learning rate; a line per evaluation: val loss),
 * diagnostics.json (src/diagnostics.ts) and run.json (config, adapter, timings, final losses,
 * samples). The figures are drawn from them (src/plots.ts).
 */

import { drawBatches } from "./batches.ts";
import {
  type Checkpoint,
  loadCheckpoint,
  saveCheckpoint,
  type TrainingState,
} from "./checkpoint.ts";
import { type Dataset, makeDataset, parseWords, Vocab } from "./data.ts";
import { UserError } from "./errors.ts";
import { readUserFile, sha256Hex, writeFileAtomic } from "./files.ts";
import { type Backend, openBackend } from "./backend.ts";
import { type ChunkDiagnostics, type ChunkResult, DIAG_SLOTS, maxRows } from "./gpu/model.ts";
import { addRatios, type Diagnostics, emptyDiagnostics, summarize } from "./diagnostics.ts";
import { initModel, learningRate, type ModelConfig, type TrainConfig } from "./model.ts";
import { Rng } from "./rng.ts";
import { sampleNames } from "./sample.ts";

export interface RunOptions {
  readonly dataPath: string;
  readonly outDir: string;
  /** The model without its vocabulary size, which comes from the data. */
  readonly model: Omit<ModelConfig, "vocabSize">;
  readonly train: TrainConfig;
  readonly seed: number;
  readonly backend: "webgpu" | "cpu";
  readonly resume: boolean;
  /** Evaluate the val split every this many steps (0: never during training). */
  readonly evalEvery: number;
  readonly checkpointEvery: number;
  readonly calibrate: boolean;
  /** Steps per line of log.jsonl. */
  readonly logEvery: number;
  /** Names sampled at the end. */
  readonly samples: number;
  /** Collect diagnostics (src/diagnostics.ts): update ratios every logEvery steps, snapshots. */
  readonly diagnostics: boolean;
  /** Snapshots at initialization, at the end, and every this many steps (0: no more). */
  readonly diagEvery: number;
}

export interface Progress {
  readonly step: number;
  readonly steps: number;
  readonly loss: number; // exponentially smoothed
  readonly lr: number;
  readonly stepsPerSecond: number;
  readonly etaSeconds: number;
  readonly valLoss?: number;
}

/** How a run talks to its user: progress, one-line notes, and the final report. */
export interface Reporter {
  start(info: { backend: Backend; params: number; dataset: Dataset; resumedFrom: number }): void;
  progress(p: Progress): void;
  note(text: string): void;
}

export interface RunResult {
  readonly step: number;
  readonly interrupted: boolean;
  readonly losses?: { train: number; val: number; test: number };
  readonly samples?: { name: string; inTrain: boolean }[];
  readonly trainSeconds: number;
}

export const CHECKPOINT_FILE = "model.safetensors";
export const LOG_FILE = "log.jsonl";
export const RUN_FILE = "run.json";
export const DIAGNOSTICS_FILE = "diagnostics.json";
/** The step after which makemore part 3 draws its diagnostics. */
export const LECTURE_STEP = 1000;

/** Reads the data file, with its sha256 (a resumed run must see the same bytes). */
async function readData(path: string): Promise<{ words: string[]; sha256: string }> {
  const bytes = await readUserFile(path);
  return { words: parseWords(bytes, path), sha256: await sha256Hex(bytes) };
}

/** Limits of the kernels and of good sense, checked before any work. */
export function validateRun(
  model: ModelConfig,
  train: TrainConfig,
  ds: Dataset,
  backend: "webgpu" | "cpu",
): void {
  const most = maxRows(model);
  if (backend === "webgpu" && train.batchSize > most) {
    throw new UserError(
      `--batch-size ${train.batchSize} is too large for layers of this width: the WebGPU ` +
        `kernels take at most ${most} rows (batch x width / 4 <= 30,000)`,
    );
  }
  if (model.vocabSize > 1024) {
    throw new UserError(
      `the data has ${model.vocabSize - 1} distinct characters; at most 1023 are supported`,
    );
  }
  if (train.batchSize > ds.examples.train.n) {
    throw new UserError(
      `--batch-size ${train.batchSize} is larger than the training split ` +
        `(${ds.examples.train.n} examples)`,
    );
  }
}

export async function run(
  opts: RunOptions,
  reporter: Reporter,
  signal?: AbortSignal,
): Promise<RunResult> {
  const data = await readData(opts.dataPath);
  let resumed: Checkpoint | undefined;
  if (opts.resume) {
    resumed = await loadCheckpoint(`${opts.outDir}/${CHECKPOINT_FILE}`);
    checkResume(resumed, opts, data);
  }
  const vocab = resumed ? new Vocab(resumed.vocab) : Vocab.fromWords(data.words);
  const dataset = makeDataset(data.words, opts.model.blockSize, opts.seed, vocab);
  const config: ModelConfig = resumed?.config ?? { ...opts.model, vocabSize: vocab.size };
  validateRun(config, opts.train, dataset, opts.backend);
  const backend = await openBackend(opts.backend, config, opts.train.batchSize);
  try {
    await Deno.mkdir(opts.outDir, { recursive: true });
    const init = resumed ?? initModel(config, new Rng((opts.seed + 1) >>> 0));
    backend.setParams(init.params, init.buffers);
    reporter.start({
      backend,
      params: init.params.length,
      dataset,
      resumedFrom: resumed?.state.step ?? 0,
    });
    const training = new Training(opts, config, vocab, dataset, data.sha256, backend, reporter);
    const from = resumed?.state.step ?? 0;
    const log = await openLog(`${opts.outDir}/${LOG_FILE}`, from, opts.resume);
    const diagnostics = opts.resume && opts.diagnostics
      ? await readDiagnostics(`${opts.outDir}/${DIAGNOSTICS_FILE}`, from)
      : undefined;
    try {
      await training.train(log, resumed?.state, signal, diagnostics);
    } finally {
      log.close();
    }
    if (training.interrupted) {
      return { step: training.step, interrupted: true, trainSeconds: training.seconds };
    }
    return await training.finish(init.params.length);
  } finally {
    backend.destroy();
  }
}

type Log = Awaited<ReturnType<typeof openLog>>;

/** The state of a run between its start and its end, and the two phases around it. */
class Training {
  step = 0;
  seconds = 0;
  interrupted = false;
  #rng = new Rng(0);
  #savedStep = 0;
  /** Losses since the last log.jsonl line. */
  #logSum = 0;
  #logCount = 0;
  #smooth = NaN;
  diagnostics: Diagnostics = emptyDiagnostics();

  constructor(
    readonly opts: RunOptions,
    readonly config: ModelConfig,
    readonly vocab: Vocab,
    readonly dataset: Dataset,
    readonly sha256: string,
    readonly backend: Backend,
    readonly reporter: Reporter,
  ) {}

  get #checkpointPath() {
    return `${this.opts.outDir}/${CHECKPOINT_FILE}`;
  }

  /** Saves the backend's parameters (and diagnostics.json); returns what it saved. */
  async #checkpoint(
    calibrated = false,
  ): Promise<{ params: Float32Array; buffers: Float32Array }> {
    const p = await this.backend.getParams();
    await saveCheckpoint(this.#checkpointPath, {
      config: this.config,
      vocab: this.vocab.chars,
      params: p.params,
      buffers: p.buffers,
      state: {
        step: this.step,
        rng: this.#rng.state(),
        train: this.opts.train,
        seed: this.opts.seed,
        seconds: this.seconds,
        data: { path: this.opts.dataPath, sha256: this.sha256 },
        calibrated,
        pendingLog: { sum: this.#logSum, count: this.#logCount },
      },
    });
    this.#savedStep = this.step;
    if (this.opts.diagnostics) {
      await writeFileAtomic(
        `${this.opts.outDir}/${DIAGNOSTICS_FILE}`,
        JSON.stringify(this.diagnostics) + "\n",
      );
    }
    return p;
  }

  /**
   * Steps whose values are kept whole: the first, the 1000th (where makemore part 3 draws its
   * figures), the last, and every diagEvery.
   */
  #snapshotAt(s: number): boolean {
    const { diagnostics, diagEvery, train } = this.opts;
    return diagnostics &&
      (s === 1 || s === LECTURE_STEP || s === train.steps ||
        (diagEvery > 0 && s % diagEvery === 0));
  }

  /** Steps after which the pipeline is drained: evaluations, checkpoints, snapshots, the end. */
  #boundary(s: number): boolean {
    const { evalEvery, checkpointEvery, train } = this.opts;
    return s === train.steps || (evalEvery > 0 && s % evalEvery === 0) ||
      s % checkpointEvery === 0 || this.#snapshotAt(s);
  }

  /**
   * SGD steps in chunks, one chunk in flight on the backend while the next is drawn and
   * encoded; checkpoints and evaluations at boundaries; stops early on `signal`.
   */
  async train(
    log: Log,
    resumed: TrainingState | undefined,
    signal?: AbortSignal,
    diagnostics?: Diagnostics,
  ): Promise<void> {
    const { train, evalEvery, checkpointEvery, logEvery } = this.opts;
    if (diagnostics) this.diagnostics = diagnostics;
    this.step = resumed?.step ?? 0;
    this.seconds = resumed?.seconds ?? 0;
    this.#savedStep = this.step;
    this.#rng = resumed ? Rng.fromState(resumed.rng) : new Rng((this.opts.seed + 2) >>> 0);
    this.#logSum = resumed?.pendingLog.sum ?? 0;
    this.#logCount = resumed?.pendingLog.count ?? 0;
    let since = performance.now(); // wall clock of the steps since the last boundary
    let stepsSince = 0;
    type Chunk = { result: Promise<ChunkResult>; start: number; lrs: number[] };
    const finish = async (c: Chunk) => {
      const { losses, moments } = await c.result;
      for (let i = 0; i < losses.length; i++) {
        await this.#record(log, c.start + i, losses[i], c.lrs[i]);
        const m = moments.get(i);
        if (m) addRatios(this.diagnostics, c.start + i + 1, m, c.lrs[i]);
      }
      stepsSince += losses.length;
      this.step = c.start + losses.length;
      const rate = stepsSince / Math.max((performance.now() - since) / 1000, 1e-9);
      this.reporter.progress({
        step: this.step,
        steps: train.steps,
        loss: this.#smooth,
        lr: c.lrs.at(-1)!,
        stepsPerSecond: rate,
        etaSeconds: (train.steps - this.step) / rate,
      });
    };
    let drawn = this.step;
    let inFlight: Chunk | null = null;
    while (drawn < train.steps && !signal?.aborted) {
      // Update ratios every logEvery steps: at most DIAG_SLOTS of them per chunk.
      const most = this.opts.diagnostics ? DIAG_SLOTS * logEvery : Infinity;
      let k = Math.min(this.backend.chunkSteps, train.steps - drawn, most);
      for (let s = drawn + 1; s < drawn + k; s++) {
        if (this.#boundary(s)) {
          k = s - drawn;
          break;
        }
      }
      const lrs = Array.from({ length: k }, (_, i) => learningRate(train, drawn + i));
      const batches = drawBatches(this.#rng, this.dataset.examples.train, k, train.batchSize);
      const diag: ChunkDiagnostics = this.opts.diagnostics
        ? {
          moments: lrs.map((_, i) => i).filter((i) => (drawn + i + 1) % logEvery === 0),
          snapshot: this.#snapshotAt(drawn + k),
        }
        : {};
      const chunk: Chunk = {
        result: this.backend.trainChunk(batches, lrs, diag),
        start: drawn,
        lrs,
      };
      // If the chunk before fails (a NaN loss), this one is abandoned: not an unhandled error.
      chunk.result.catch(() => {});
      drawn += k;
      if (inFlight) await finish(inFlight);
      inFlight = chunk;
      if (!this.#boundary(drawn)) continue;
      await finish(inFlight);
      inFlight = null;
      this.seconds += (performance.now() - since) / 1000;
      if (this.#snapshotAt(this.step)) {
        this.diagnostics.snapshots.push(summarize(await this.backend.snapshot(this.step)));
      }
      if (evalEvery > 0 && this.step % evalEvery === 0 && this.step < train.steps) {
        const val = await this.backend.evaluate(this.dataset.examples.val);
        await log.write({ step: this.step, val });
        this.reporter.progress({
          step: this.step,
          steps: train.steps,
          loss: this.#smooth,
          lr: lrs.at(-1)!,
          stepsPerSecond: stepsSince / ((performance.now() - since) / 1000),
          etaSeconds: NaN,
          valLoss: val,
        });
      }
      if (this.step % checkpointEvery === 0 || this.step === train.steps) {
        await this.#checkpoint();
      }
      since = performance.now();
      stepsSince = 0;
    }
    if (inFlight) {
      await finish(inFlight);
      this.seconds += (performance.now() - since) / 1000;
    }
    if (this.step < train.steps) {
      this.interrupted = true;
      await this.#checkpoint();
    }
  }

  /** One step's loss: the NaN check, the smoothed loss, the log line every logEvery steps. */
  async #record(log: Log, s: number, loss: number, lr: number): Promise<void> {
    if (!Number.isFinite(loss)) {
      const kept = this.#savedStep > 0
        ? `the checkpoint of step ${this.#savedStep} in ${this.#checkpointPath} was kept`
        : "no checkpoint was written";
      throw new UserError(
        `the loss became ${loss} at step ${s + 1} (learning rate ${lr} too high?); ` +
          `stopped, and ${kept}`,
      );
    }
    this.#smooth = Number.isNaN(this.#smooth) ? loss : 0.99 * this.#smooth + 0.01 * loss;
    this.#logSum += loss;
    this.#logCount++;
    if ((s + 1) % this.opts.logEvery === 0 || s + 1 === this.opts.train.steps) {
      await log.write({ step: s + 1, loss: this.#logSum / this.#logCount, lr });
      this.#logSum = 0;
      this.#logCount = 0;
    }
  }

  /** After training: BatchNorm calibration, evaluation, the final checkpoint, samples. */
  async finish(nParams: number): Promise<RunResult> {
    const { opts, backend, dataset } = this;
    if (opts.calibrate) {
      this.reporter.note("calibrating BatchNorm statistics over the training split");
      await backend.calibrate(dataset.examples.train);
    }
    const losses = {
      train: await backend.evaluate(dataset.examples.train),
      val: await backend.evaluate(dataset.examples.val),
      test: await backend.evaluate(dataset.examples.test),
    };
    const final = await this.#checkpoint(opts.calibrate);
    const inTrain = new Set(dataset.splitWords.train);
    const samples = sampleNames(this.config, final.params, final.buffers, this.vocab, {
      count: opts.samples,
      seed: opts.seed,
    }).map((name) => ({ name, inTrain: inTrain.has(name) }));
    const report = {
      config: this.config,
      train: opts.train,
      seed: opts.seed,
      data: {
        path: opts.dataPath,
        sha256: this.sha256,
        words: dataset.words.length,
        vocab: this.vocab.chars.join(""),
        examples: {
          train: dataset.examples.train.n,
          val: dataset.examples.val.n,
          test: dataset.examples.test.n,
        },
      },
      params: nParams,
      backend: backend.kind,
      adapter: backend.adapter,
      steps: this.step,
      train_seconds: this.seconds,
      us_per_step: (this.seconds / Math.max(this.step, 1)) * 1e6,
      calibrated: opts.calibrate,
      losses,
      samples,
      finished: new Date().toISOString(),
    };
    await writeFileAtomic(`${opts.outDir}/${RUN_FILE}`, JSON.stringify(report, null, 2) + "\n");
    return { step: this.step, interrupted: false, losses, samples, trainSeconds: this.seconds };
  }
}

/** A resumed run must be the same run: same data, same model, same schedule. */
function checkResume(ck: Checkpoint, opts: RunOptions, data: { sha256: string }): void {
  const s = ck.state;
  if (s.data.sha256 !== data.sha256) {
    throw new UserError(
      `${opts.dataPath} is not the data the checkpoint was trained on (${s.data.path}, sha256 ` +
        `${s.data.sha256.slice(0, 12)}...): the split would differ`,
    );
  }
  for (const k of Object.keys(opts.model) as (keyof RunOptions["model"])[]) {
    if (ck.config[k] !== opts.model[k]) {
      throw new UserError(
        `the checkpoint's model has ${k} = ${ck.config[k]}, but this run asks for ${opts.model[k]}`,
      );
    }
  }
  for (const k of ["batchSize", "lr", "lrFinal", "decayAt"] as const) {
    if (s.train[k] !== opts.train[k]) {
      throw new UserError(
        `the checkpoint trained with ${k} = ${s.train[k]}, but this run asks for ${opts.train[k]}`,
      );
    }
  }
  if (s.seed !== opts.seed) {
    throw new UserError(`the checkpoint's seed is ${s.seed}, but this run asks for ${opts.seed}`);
  }
  if (s.step >= opts.train.steps) {
    throw new UserError(
      `the checkpoint has already trained ${s.step} steps; ask for more with --steps`,
    );
  }
  if (s.calibrated) {
    throw new UserError(
      "the checkpoint's BatchNorm statistics were recalibrated after training; a resumed run " +
        "would not continue the original one",
    );
  }
}

/** A run's diagnostics.json up to `step` (what a resumed run continues), or nothing. */
async function readDiagnostics(path: string, step: number): Promise<Diagnostics> {
  let d: Diagnostics;
  try {
    d = JSON.parse(await Deno.readTextFile(path));
  } catch {
    return emptyDiagnostics();
  }
  const keep = d.updateRatios.steps.filter((s) => s <= step).length;
  return {
    snapshots: d.snapshots.filter((s) => s.step <= step),
    updateRatios: {
      steps: d.updateRatios.steps.slice(0, keep),
      tensors: d.updateRatios.tensors.map((t) => ({ name: t.name, log10: t.log10.slice(0, keep) })),
    },
  };
}

/** log.jsonl, kept in step with the checkpoint: on resume, lines past its step are dropped. */
async function openLog(path: string, step: number, resume: boolean) {
  let kept = "";
  if (resume) {
    try {
      kept = (await Deno.readTextFile(path)).split("\n").filter((line) => {
        if (!line.trim()) return false;
        try {
          return JSON.parse(line).step <= step;
        } catch {
          return false;
        }
      }).map((l) => l + "\n").join("");
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  await writeFileAtomic(path, kept);
  const file = await Deno.open(path, { append: true });
  const enc = new TextEncoder();
  return {
    write: async (entry: Record<string, number>) => {
      await file.write(enc.encode(JSON.stringify(entry) + "\n"));
    },
    close: () => file.close(),
  };
}
