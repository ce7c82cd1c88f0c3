/**
 * The training loop, portable: it depends on WebGPU (through a Backend) and on what it is
 * handed (the data, the backend, sinks for the log and the checkpoints, a reporter), never on a
 * file system, so the same code trains from the command line (src/run.ts writes the sinks to a
 * run directory) and in a web page (the lab keeps them in memory).
 *
 * A run is SGD steps in chunks, one chunk in flight on the backend while the next is drawn and
 * encoded; evaluations, diagnostics snapshots and checkpoints at chunk boundaries; then the
 * finish: BatchNorm calibration, the three splits' losses, the final checkpoint, samples.
 *
 * Seeds: the split shuffles with `seed`, the initialization draws from seed + 1, the
 * minibatches from seed + 2 (each an independent xoshiro128** stream, src/rng.ts).
 */

import type { Backend, ChunkDiagnostics, ChunkResult } from "./backend.ts";
import { drawBatches } from "./batches.ts";
import type { Checkpoint, TrainingState } from "./checkpoint.ts";
import type { Dataset } from "./data.ts";
import { addRatios, type Diagnostics, emptyDiagnostics, summarize } from "./diagnostics.ts";
import { UserError } from "./errors.ts";
import { blocksOf } from "./layers.ts";
import { learningRate, type ModelConfig, networkOf, type TrainConfig } from "./model.ts";
import { Rng } from "./rng.ts";
import { sampleNames } from "./sample.ts";
import type { Schedule } from "./schedule.ts";

/** The step after which makemore part 3 draws its diagnostics. */
export const LECTURE_STEP = 1000;

/** One line of the log: a training-loss line, or a val-loss line. */
export type LogEntry =
  | { readonly step: number; readonly loss: number; readonly lr: number }
  | { readonly step: number; readonly val: number };

/** Where a run's results go. */
export interface Sinks {
  log(entry: LogEntry): Promise<void>;
  /**
   * Saves a checkpoint with the diagnostics up to it (null when none are collected). The
   * diagnostics are written first: interrupted in between, they are ahead of the checkpoint,
   * and a resumed run trims them to its step (never a gap).
   */
  save(ck: Checkpoint, diagnostics: Diagnostics | null): Promise<void>;
}

/** Sinks that keep everything in memory: for a web page, tests, or a script. */
export class MemorySinks implements Sinks {
  readonly entries: LogEntry[] = [];
  checkpoint: Checkpoint | null = null;
  diagnostics: Diagnostics | null = null;
  log(entry: LogEntry): Promise<void> {
    this.entries.push(entry);
    return Promise.resolve();
  }
  save(ck: Checkpoint, diagnostics: Diagnostics | null): Promise<void> {
    this.diagnostics = diagnostics && structuredClone(diagnostics);
    this.checkpoint = ck;
    return Promise.resolve();
  }
}

/** A reporter that says nothing. */
export const SILENT: Reporter = { progress() {}, note() {} };

export interface Progress {
  readonly step: number;
  readonly steps: number;
  /** The training loss, exponentially smoothed. */
  readonly loss: number;
  /** The loss of the last step, as it was. */
  readonly lastLoss: number;
  readonly lr: number;
  readonly stepsPerSecond: number;
  readonly etaSeconds: number;
  readonly valLoss?: number;
}

/**
 * How a run talks to its user: progress, and one-line notes. The trainer waits for what
 * `progress` returns before it goes on, so a reporter may hold the run at a chunk boundary (the
 * command line's tests stop a run there, wherever the machine's speed would have put it).
 */
export interface Reporter {
  progress(p: Progress): void | Promise<void>;
  note(text: string): void;
  /** How far the BatchNorm calibration after training is, from 0 to 1. */
  finishing?(fraction: number): void;
}

export interface Losses {
  readonly train: number;
  readonly val: number;
  readonly test: number;
}

export interface Finished {
  readonly losses: Losses;
  readonly samples: { name: string; inTrain: boolean }[];
  /** The parameters of the final checkpoint. */
  readonly params: Float32Array;
  readonly buffers: Float32Array;
}

export interface TrainerSetup {
  readonly config: ModelConfig;
  readonly train: TrainConfig;
  readonly seed: number;
  readonly dataset: Dataset;
  /** The data's name and sha256, kept in checkpoints (a resumed run must see the same). */
  readonly data: { readonly path: string; readonly sha256: string };
  readonly backend: Backend;
  readonly schedule: Schedule;
  readonly sinks: Sinks;
  readonly reporter: Reporter;
  /** Where a resumed run stands, with its diagnostics so far. */
  readonly resumed?: { readonly state: TrainingState; readonly diagnostics: Diagnostics };
}

/** Limits of the model and of good sense, checked before any work. */
export function validateTraining(config: ModelConfig, train: TrainConfig, ds: Dataset): string[] {
  const net = blocksOf(networkOf(config), config.blockSize, config.vocabSize);
  if (typeof net === "string") throw new UserError(`the layers: ${net}`);
  if (config.vocabSize > 1024) {
    throw new UserError(
      `the data has ${config.vocabSize - 1} distinct characters; at most 1023 are supported`,
    );
  }
  if (train.batchSize > ds.examples.train.n) {
    throw new UserError(
      `--batch-size ${train.batchSize} is larger than the training split ` +
        `(${ds.examples.train.n} examples)`,
    );
  }
  const warnings: string[] = [];
  for (const split of ["val", "test"] as const) {
    if (ds.examples[split].n === 0) {
      warnings.push(
        `warning: the ${split} split is empty (the data has only ${ds.words.length} lines): ` +
          `no ${split} loss`,
      );
    }
  }
  return warnings;
}

/** Whether every value is finite. */
function allFinite(xs: Float32Array): boolean {
  for (let i = 0; i < xs.length; i++) if (!Number.isFinite(xs[i])) return false;
  return true;
}

/**
 * One run's training state and the loop that advances it. `train` may be called again after
 * it stopped on its signal (a paused page, say): the state carries over.
 */
export class Trainer {
  /** Steps done. */
  step: number;
  /** Seconds spent training (not evaluating or saving). */
  seconds: number;
  diagnostics: Diagnostics;
  readonly #s: TrainerSetup;
  #rng: Rng;
  #savedStep: number;
  #calibrated: boolean;
  /** Losses since the last log line, and the smoothed loss. */
  #logSum: number;
  #logCount: number;
  #smooth = NaN;
  #last = NaN;

  constructor(setup: TrainerSetup) {
    this.#s = setup;
    const state = setup.resumed?.state;
    this.step = state?.step ?? 0;
    this.seconds = state?.seconds ?? 0;
    this.#savedStep = this.step;
    this.#calibrated = state?.calibrated ?? false;
    this.#rng = state ? Rng.fromState(state.rng) : new Rng((setup.seed + 2) >>> 0);
    this.#logSum = state?.pendingLog.sum ?? 0;
    this.#logCount = state?.pendingLog.count ?? 0;
    this.diagnostics = setup.resumed?.diagnostics ?? emptyDiagnostics();
  }

  get done(): boolean {
    return this.step >= this.#s.train.steps;
  }

  /** The checkpoint of the backend's current parameters. */
  async #checkpoint(): Promise<Checkpoint> {
    const { params, buffers } = await this.#s.backend.getParams();
    const s = this.#s;
    if (!allFinite(params) || !allFinite(buffers)) {
      const kept = this.#savedStep > 0
        ? `the checkpoint of step ${this.#savedStep} was kept`
        : "no checkpoint was written";
      throw new UserError(
        `the parameters became infinite or NaN by step ${this.step} (learning rate ` +
          `${learningRate(s.train, Math.max(this.step - 1, 0))} too high?); stopped, and ${kept}`,
      );
    }
    return {
      config: s.config,
      vocab: s.dataset.vocab.chars,
      params,
      buffers,
      state: {
        step: this.step,
        rng: this.#rng.state(),
        train: s.train,
        seed: s.seed,
        seconds: this.seconds,
        data: s.data,
        schedule: s.schedule,
        calibrated: this.#calibrated,
        pendingLog: { sum: this.#logSum, count: this.#logCount },
      },
    };
  }

  async #save(): Promise<Checkpoint> {
    const ck = await this.#checkpoint();
    await this.#s.sinks.save(ck, this.#s.schedule.diagnostics ? this.diagnostics : null);
    this.#savedStep = this.step;
    return ck;
  }

  /** Steps whose values are kept whole: the first, the 1000th, the last, every diagEvery. */
  #snapshotAt(s: number): boolean {
    const { diagnostics, diagEvery } = this.#s.schedule;
    return diagnostics &&
      (s === 1 || s === LECTURE_STEP || s === this.#s.train.steps ||
        (diagEvery > 0 && s % diagEvery === 0));
  }

  /** Steps after which the pipeline is drained: evaluations, checkpoints, snapshots, the end. */
  #boundary(s: number): boolean {
    const { evalEvery, checkpointEvery } = this.#s.schedule;
    return s === this.#s.train.steps || (evalEvery > 0 && s % evalEvery === 0) ||
      s % checkpointEvery === 0 || this.#snapshotAt(s);
  }

  /**
   * Trains until the last step (or step `until`, if sooner: the lab's one step) or until
   * `signal` aborts; on an abort, saves a checkpoint of the steps done. A non-finite loss or
   * parameter stops with a UserError.
   */
  async train(signal?: AbortSignal, until = Infinity): Promise<void> {
    const { train, schedule, backend, reporter, dataset, sinks } = this.#s;
    const end = Math.min(train.steps, until);
    const { evalEvery, checkpointEvery, logEvery } = schedule;
    let since = performance.now(); // wall clock of the steps since the last boundary
    let stepsSince = 0;
    type Chunk = { result: Promise<ChunkResult>; start: number; lrs: number[] };
    const finish = async (c: Chunk) => {
      const { losses, moments } = await c.result;
      for (let i = 0; i < losses.length; i++) {
        await this.#record(c.start + i, losses[i], c.lrs[i]);
        const m = moments.get(i);
        if (m) addRatios(this.diagnostics, c.start + i + 1, m, c.lrs[i]);
      }
      stepsSince += losses.length;
      this.step = c.start + losses.length;
      const rate = stepsSince / Math.max((performance.now() - since) / 1000, 1e-9);
      await reporter.progress({
        step: this.step,
        steps: train.steps,
        loss: this.#smooth,
        lastLoss: this.#last,
        lr: c.lrs.at(-1)!,
        stepsPerSecond: rate,
        etaSeconds: (train.steps - this.step) / rate,
      });
    };
    let drawn = this.step;
    // Chunks submitted and not yet read back, oldest first: up to backend.chunksInFlight of
    // them wait on the device while the next is drawn and encoded.
    const inFlight: Chunk[] = [];
    const drain = async () => {
      while (inFlight.length) await finish(inFlight.shift()!);
    };
    try {
      while (drawn < end && !signal?.aborted) {
        // Update ratios every logEvery steps: at most diagSlots of them per chunk.
        const most = schedule.diagnostics ? backend.diagSlots * logEvery : Infinity;
        let k = Math.min(backend.chunkSteps, end - drawn, most);
        for (let s = drawn + 1; s < drawn + k; s++) {
          if (this.#boundary(s)) {
            k = s - drawn;
            break;
          }
        }
        const lrs = Array.from({ length: k }, (_, i) => learningRate(train, drawn + i));
        const batches = drawBatches(this.#rng, dataset.examples.train, k, train.batchSize);
        const diag: ChunkDiagnostics = schedule.diagnostics
          ? {
            moments: lrs.map((_, i) => i).filter((i) => (drawn + i + 1) % logEvery === 0),
            snapshot: this.#snapshotAt(drawn + k),
          }
          : {};
        const chunk: Chunk = { result: backend.trainChunk(batches, lrs, diag), start: drawn, lrs };
        // If a chunk before fails (a NaN loss), this one is abandoned: not an unhandled error.
        chunk.result.catch(() => {});
        drawn += k;
        inFlight.push(chunk);
        while (inFlight.length > backend.chunksInFlight) await finish(inFlight.shift()!);
        if (!this.#boundary(drawn)) continue;
        await drain();
        this.seconds += (performance.now() - since) / 1000;
        if (this.#snapshotAt(this.step)) {
          this.diagnostics.snapshots.push(summarize(await backend.snapshot(this.step)));
        }
        if (evalEvery > 0 && this.step % evalEvery === 0 && this.step < train.steps) {
          const val = await backend.evaluate(dataset.examples.val);
          if (Number.isFinite(val)) await sinks.log({ step: this.step, val });
          await reporter.progress({
            step: this.step,
            steps: train.steps,
            loss: this.#smooth,
            lastLoss: this.#last,
            lr: lrs.at(-1)!,
            stepsPerSecond: stepsSince / ((performance.now() - since) / 1000),
            etaSeconds: NaN,
            valLoss: val,
          });
        }
        if (this.step % checkpointEvery === 0 || this.step === train.steps) await this.#save();
        since = performance.now();
        stepsSince = 0;
      }
    } finally {
      // Whatever stopped the loop, the chunks in flight are waited for: their buffers must not
      // be destroyed while the GPU still maps them.
      await Promise.all(inFlight.map((c) => c.result.catch(() => {})));
    }
    if (inFlight.length) {
      await drain();
      this.seconds += (performance.now() - since) / 1000;
    }
    if (this.step > this.#savedStep) await this.#save();
  }

  /** One step's loss: the NaN check, the smoothed loss, the log line every logEvery steps. */
  async #record(s: number, loss: number, lr: number): Promise<void> {
    if (!Number.isFinite(loss)) {
      const kept = this.#savedStep > 0
        ? `the checkpoint of step ${this.#savedStep} was kept`
        : "no checkpoint was written";
      throw new UserError(
        `the loss became ${loss} at step ${s + 1} (learning rate ${lr} too high?); ` +
          `stopped, and ${kept}`,
      );
    }
    this.#smooth = Number.isNaN(this.#smooth) ? loss : 0.99 * this.#smooth + 0.01 * loss;
    this.#last = loss;
    this.#logSum += loss;
    this.#logCount++;
    if ((s + 1) % this.#s.schedule.logEvery === 0 || s + 1 === this.#s.train.steps) {
      await this.#s.sinks.log({ step: s + 1, loss: this.#logSum / this.#logCount, lr });
      this.#logSum = 0;
      this.#logCount = 0;
    }
  }

  /**
   * After the last step: BatchNorm calibration, the three splits' losses, the final checkpoint
   * and samples. If `signal` aborts before the final checkpoint, it stops (null): the
   * checkpoint of the last step stands, uncalibrated, and a resumed run finishes it.
   */
  async finish(signal?: AbortSignal): Promise<Finished | null> {
    const { schedule, backend, dataset, reporter, config } = this.#s;
    const ex = dataset.examples;
    let train: number;
    if (schedule.calibrate && !this.#calibrated) {
      // Calibrating the training split evaluates it on the way (src/gpu/passes.ts).
      reporter.note("calibrating BatchNorm statistics over the training split");
      train = await backend.calibrate(ex.train, signal, (f) => reporter.finishing?.(f));
      if (signal?.aborted) return null;
      this.#calibrated = true;
    } else train = await backend.evaluate(ex.train);
    const val = signal?.aborted ? NaN : await backend.evaluate(ex.val);
    const test = signal?.aborted ? NaN : await backend.evaluate(ex.test);
    if (signal?.aborted) return null;
    const ck = await this.#save();
    const inTrain = new Set(dataset.splitWords.train);
    const samples = sampleNames(config, ck.params, ck.buffers, dataset.vocab, {
      count: schedule.samples,
      seed: this.#s.seed,
    }).map((name) => ({ name, inTrain: inTrain.has(name) }));
    return { losses: { train, val, test }, samples, params: ck.params, buffers: ck.buffers };
  }
}
