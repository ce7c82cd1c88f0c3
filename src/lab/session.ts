/**
 * The lab's training session, without the page: the data, a backend on the user's GPU, the
 * portable trainer (src/training.ts) with in-memory sinks, and the verbs the page's buttons
 * call (start, pause, resume, reset, sample, save and load a checkpoint). The page
 * (src/lab/main.ts) renders what it reports; the browser tests drive it through the page.
 */

import { type Backend, type BackendOptions, openBackend } from "../backend.ts";
import { type Checkpoint, decodeCheckpoint, encodeCheckpoint } from "../checkpoint.ts";
import { type Dataset, makeDataset, parseWords, sha256Hex, Vocab } from "../data.ts";
import { emptyDiagnostics } from "../diagnostics.ts";
import { UserError } from "../errors.ts";
import { initModel, type ModelConfig, type TrainConfig } from "../model.ts";
import { Rng } from "../rng.ts";
import { generateNames } from "../sample.ts";
import { DEFAULT_SCHEDULE, type Schedule } from "../schedule.ts";
import {
  type Finished,
  MemorySinks,
  type Progress,
  Trainer,
  validateTraining,
} from "../training.ts";

/** What the lab's forms set: a model without its vocabulary, a training schedule, a seed. */
export interface Settings {
  readonly model: Omit<ModelConfig, "vocabSize">;
  readonly train: TrainConfig;
  readonly seed: number;
}

/** The page evaluates and snapshots more often than the CLI: it shows them as they come. */
export const LAB_SCHEDULE: Schedule = {
  ...DEFAULT_SCHEDULE,
  evalEvery: 1000,
  checkpointEvery: 1000,
  diagEvery: 500,
  samples: 0,
};

/** In a browser: which ones have WebGPU, and what to turn on. */
export const BROWSER_MESSAGES: NonNullable<BackendOptions["messages"]> = {
  noWebGpu: "this browser has no WebGPU: use Chrome or Edge 113+ (on Linux, start it with " +
    "--enable-unsafe-webgpu and enable chrome://flags/#enable-vulkan), Safari 26+, or " +
    "Firefox 141+ on Windows; the page must come from https:// or localhost",
  noAdapter: "WebGPU is there but found no adapter: the GPU may be blocklisted or its driver " +
    "missing (chrome://gpu says which); --enable-unsafe-webgpu lifts the blocklist",
};

export type Phase = "idle" | "training" | "paused" | "finished";

export interface Data {
  readonly name: string;
  readonly words: string[];
  readonly sha256: string;
}

/** What the page is told while a session runs. */
export interface SessionEvents {
  progress(p: Progress): void;
  note(text: string): void;
  /** The phase changed (or an error ended the run: `error` is its one-line message). */
  phase(phase: Phase, error?: string): void;
}

export class Session {
  phase: Phase = "idle";
  data: Data | null = null;
  dataset: Dataset | null = null;
  config: ModelConfig | null = null;
  settings: Settings | null = null;
  backend: Backend | null = null;
  trainer: Trainer | null = null;
  sinks = new MemorySinks();
  /** A checkpoint loaded from a file, to sample from or to continue. */
  loaded: Checkpoint | null = null;
  /** The result of the last run that finished. */
  finished: Finished | null = null;
  #stop: AbortController | null = null;
  readonly #events: SessionEvents;

  constructor(events: SessionEvents) {
    this.#events = events;
  }

  /** Parses a data file with the CLI's rules; a UserError carries the CLI's message. */
  async setData(bytes: Uint8Array, name: string): Promise<Data> {
    const words = parseWords(bytes, name);
    this.data = { name, words, sha256: await sha256Hex(bytes) };
    return this.data;
  }

  /** Loads a checkpoint file (refused with one line if it is corrupt). */
  loadCheckpoint(bytes: Uint8Array, name: string): Checkpoint {
    this.loaded = decodeCheckpoint(bytes, name);
    return this.loaded;
  }

  /** Starts training from scratch, or from the loaded checkpoint if `resume`. */
  async start(settings: Settings, resume = false): Promise<void> {
    if (this.phase === "training") throw new UserError("already training");
    if (!this.data) throw new UserError("no data loaded");
    this.reset();
    const ck = resume ? this.loaded : null;
    if (resume && !ck) throw new UserError("no checkpoint loaded");
    if (ck && ck.state.data.sha256 !== this.data.sha256) {
      throw new UserError(
        `the checkpoint was trained on other data (${ck.state.data.path}, sha256 ` +
          `${ck.state.data.sha256.slice(0, 12)}...); load that file first`,
      );
    }
    const seed = ck?.state.seed ?? settings.seed;
    const model = ck ? ck.config : settings.model;
    const dataset = makeDataset(this.data.words, model.blockSize, seed);
    if (ck && dataset.vocab.chars.join("") !== ck.vocab.join("")) {
      throw new UserError("the checkpoint's vocabulary differs from this data's");
    }
    const config: ModelConfig = ck?.config ?? { ...settings.model, vocabSize: dataset.vocab.size };
    const train: TrainConfig = ck
      ? { ...ck.state.train, steps: Math.max(settings.train.steps, ck.state.step) }
      : settings.train;
    for (const w of validateTraining(config, train, dataset)) this.#events.note(w);
    if (ck?.state.calibrated && train.steps > ck.state.step) {
      this.#events.note(
        "the checkpoint's BatchNorm statistics were recalibrated after its training; training " +
          "goes on from them",
      );
    }
    const backend = await openBackend({
      kind: "webgpu",
      config,
      batchSize: train.batchSize,
      messages: BROWSER_MESSAGES,
    });
    const init = ck ?? initModel(config, new Rng((seed + 1) >>> 0));
    backend.setParams(init.params, init.buffers);
    this.backend = backend;
    this.dataset = dataset;
    this.config = config;
    this.settings = { model: config, train, seed };
    this.sinks = new MemorySinks();
    this.trainer = new Trainer({
      config,
      train,
      seed,
      dataset,
      data: { path: this.data.name, sha256: this.data.sha256 },
      backend,
      schedule: ck ? { ...LAB_SCHEDULE, calibrate: ck.state.schedule.calibrate } : LAB_SCHEDULE,
      sinks: this.sinks,
      reporter: { progress: (p) => this.#events.progress(p), note: (t) => this.#events.note(t) },
      resumed: ck ? { state: { ...ck.state, train }, diagnostics: emptyDiagnostics() } : undefined,
    });
    backend.lost?.then((why) => this.#fail(`the GPU device was lost: ${why}; press Reset`));
    await this.#run();
  }

  /** Trains until the end, a pause or an error; then finishes (calibration, losses). */
  async #run(): Promise<void> {
    const trainer = this.trainer!;
    this.#stop = new AbortController();
    this.#setPhase("training");
    try {
      await trainer.train(this.#stop.signal);
      if (this.#stop.signal.aborted) {
        this.#setPhase("paused");
        return;
      }
      const done = await trainer.finish(this.#stop.signal);
      if (!done) {
        this.#setPhase("paused");
        return;
      }
      this.finished = done;
      this.#setPhase("finished");
    } catch (e) {
      this.#fail(e instanceof Error ? e.message : String(e));
    }
  }

  #setPhase(phase: Phase, error?: string): void {
    this.phase = phase;
    this.#events.phase(phase, error);
  }

  #fail(message: string): void {
    this.#stop?.abort();
    this.#setPhase(this.trainer && this.sinks.checkpoint ? "paused" : "idle", message);
  }

  /** Stops after the current chunk (a checkpoint of the steps done is kept in memory). */
  pause(): void {
    this.#stop?.abort();
  }

  async resume(): Promise<void> {
    if (this.phase !== "paused" || !this.trainer) throw new UserError("nothing to resume");
    await this.#run();
  }

  /** Forgets the run and releases the GPU. */
  reset(): void {
    this.#stop?.abort();
    this.backend?.destroy();
    this.backend = null;
    this.trainer = null;
    this.finished = null;
    this.sinks = new MemorySinks();
    this.#setPhase("idle");
  }

  /** The newest parameters: the backend's (while a run exists), else a loaded checkpoint's. */
  async #params(): Promise<{ config: ModelConfig; params: Float32Array; buffers: Float32Array }> {
    if (this.backend && this.config && this.phase !== "training") {
      return { config: this.config, ...(await this.backend.getParams()) };
    }
    const ck = this.sinks.checkpoint ?? this.loaded;
    if (!ck) throw new UserError("train or load a model first");
    return ck;
  }

  /** Names from the newest parameters, each marked new or in the training split. */
  async sample(
    opts: { count: number; seed: number; temperature: number; topK: number; prefix: string },
  ): Promise<{ name: string; inTrain: boolean }[]> {
    const { config, params, buffers } = await this.#params();
    // The split a loaded checkpoint was trained on is known only if its data is loaded too.
    const ds = this.dataset ??
      (this.loaded && this.data?.sha256 === this.loaded.state.data.sha256
        ? makeDataset(this.data.words, this.loaded.config.blockSize, this.loaded.state.seed)
        : null);
    const chars = ds?.vocab.chars ?? this.loaded?.vocab;
    if (!chars) throw new UserError("no vocabulary: load data or a checkpoint");
    const vocab = new Vocab(chars);
    for (const ch of opts.prefix) {
      if (ch === "." || !vocab.has(ch)) {
        throw new UserError(`prefix: '${ch}' is not in the model's vocabulary`);
      }
    }
    const inTrain = new Set(ds?.splitWords.train ?? []);
    if (!ds) this.#events.note("the model's training data is not loaded: names are not marked");
    const names = [...generateNames(config, params, buffers, vocab, opts)].flat();
    return names.map((name) => ({ name, inTrain: inTrain.has(name) }));
  }

  /** The current model as model.safetensors bytes (the last checkpoint, or the loaded one). */
  checkpointBytes(): Uint8Array {
    const ck = this.sinks.checkpoint ?? this.loaded;
    if (!ck) throw new UserError("no checkpoint yet: train (or pause) first");
    return encodeCheckpoint(ck);
  }
}
