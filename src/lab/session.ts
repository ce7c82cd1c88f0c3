/**
 * The lab's training session, without the page: the data, a backend on the user's GPU, the
 * portable trainer (src/training.ts) with in-memory sinks, and the verbs the page's buttons
 * call (start, pause, resume, reset, sample, save and load a checkpoint). The page
 * (src/lab/main.ts) renders what it reports; tests/session_test.ts drives the verbs in Deno with
 * a backend of its own, tests/browser_test.ts through the page.
 *
 * Every verb is safe against re-entry and any order of clicks. The phase changes at once,
 * before a verb awaits anything ("starting" the moment Train is pressed), so a second click sees
 * it; the verbs that touch the backend run one at a time (`#serial`); a run that Reset or a new
 * run replaced is waited for before its backend is destroyed, and whatever it reports after
 * that (an error, a phase) is dropped (`#generation`), so nothing stale reaches the page.
 */

import { type Backend, type BackendOptions, openBackend } from "../backend.ts";
import { type Checkpoint, decodeCheckpoint, encodeCheckpoint } from "../checkpoint.ts";
import { type Dataset, makeDataset, parseWords, sha256Hex, Vocab } from "../data.ts";
import { emptyDiagnostics } from "../diagnostics.ts";
import { UserError } from "../errors.ts";
import {
  initModel,
  learningRate,
  type ModelConfig,
  modelLayout,
  type TrainConfig,
  view,
} from "../model.ts";
import { Rng } from "../rng.ts";
import { checkResume } from "../run_setup.ts";
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

/**
 * "starting": Train (or Continue) was pressed and the backend is being opened; "stopping": Pause
 * was pressed and the current chunk is ending.
 */
export type Phase = "idle" | "starting" | "training" | "stopping" | "paused" | "finished";

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
  /** The calibration after training, from 0 to 1. */
  finishing?(fraction: number): void;
}

/** A run's settings, checked (Session's #prepare). */
interface Prepared {
  readonly ck: Checkpoint | null;
  readonly seed: number;
  readonly dataset: Dataset;
  readonly config: ModelConfig;
  readonly train: TrainConfig;
  readonly warnings: string[];
  readonly data: Data;
}

/** What one step changed in one parameter tensor. */
export interface TensorChange {
  readonly name: string;
  /** log10 of std(update) / std(parameter): makemore part 3's update-to-data ratio. */
  readonly ratio: number;
  /** The largest change of any of its values. */
  readonly maxChange: number;
}

/** What the lab's "One step" did: its step number, rate and loss, and each tensor's change. */
export interface StepChange {
  readonly step: number;
  readonly lr: number;
  readonly loss: number;
  readonly tensors: readonly TensorChange[];
}

const std = (a: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m += a[i];
  m /= a.length;
  let v = 0;
  for (let i = 0; i < a.length; i++) v += (a[i] - m) ** 2;
  return Math.sqrt(v / Math.max(a.length - 1, 1));
};

/** Each parameter tensor's change from `was` to `now`. */
export function stepChange(
  config: ModelConfig,
  was: Float32Array,
  now: Float32Array,
  step: number,
  lr: number,
  loss: number,
): StepChange {
  const tensors = modelLayout(config).params.map((t) => {
    const a = view(was, t);
    // In float64: a change far smaller than its parameter keeps its digits.
    const d = Array.from(view(now, t), (x, i) => x - a[i]);
    return {
      name: t.name,
      ratio: Math.log10(std(d) / std(a)),
      maxChange: d.reduce((m, x) => Math.max(m, Math.abs(x)), 0),
    };
  });
  return { step, lr, loss, tensors };
}

/** Opens the backend of a run (the page's: WebGPU with the browser's messages). */
export type OpenBackend = (opts: BackendOptions) => Promise<Backend>;

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
  /** Which model Sample and Download use: the run's, or the checkpoint loaded after it. */
  current: "run" | "loaded" = "run";
  /** The result of the last run that finished. */
  finished: Finished | null = null;
  /** The loss of the last step trained. */
  lastLoss = NaN;
  #stop: AbortController | null = null;
  /** The training loop in progress, if any. */
  #running: Promise<void> | null = null;
  /** Bumped by every new run and reset: what an older run reports after that is dropped. */
  #generation = 0;
  #queue: Promise<unknown> = Promise.resolve();
  readonly #events: SessionEvents;
  readonly #open: OpenBackend;

  constructor(events: SessionEvents, open?: OpenBackend) {
    this.#events = events;
    this.#open = open ?? ((o) => openBackend({ ...o, messages: BROWSER_MESSAGES }));
  }

  /** Runs the verbs that touch the backend one at a time, in the order they were called. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => {});
    return next;
  }

  /** Resolves when every verb called so far is done (a reset's release of its run, say). */
  settled(): Promise<void> {
    return this.#queue.then(() => {});
  }

  get busy(): boolean {
    return this.phase === "starting" || this.phase === "training" || this.phase === "stopping";
  }

  /** Parses a data file with the CLI's rules; a UserError carries the CLI's message. */
  async setData(bytes: Uint8Array, name: string): Promise<Data> {
    if (this.busy) throw new UserError("pause or reset the run before changing the data");
    const words = parseWords(bytes, name);
    const data = { name, words, sha256: await sha256Hex(bytes) };
    if (this.busy) throw new UserError("pause or reset the run before changing the data");
    this.data = data;
    return data;
  }

  /**
   * Loads a checkpoint file (refused with one line if it is corrupt, or while a run trains): from
   * then on Sample and Download use it, until a run starts.
   */
  loadCheckpoint(bytes: Uint8Array, name: string): Checkpoint {
    if (this.busy) throw new UserError("pause or reset the run before loading a checkpoint");
    this.loaded = decodeCheckpoint(bytes, name);
    this.current = "loaded";
    return this.loaded;
  }

  /**
   * Starts training from scratch, or from the loaded checkpoint if `resume` (with the CLI's
   * resume policy: the checkpoint's data, model, seed and training, src/run_setup.ts; the
   * checkpoint's settings fill what the form does not show).
   */
  start(settings: Settings, resume = false): Promise<void> {
    if (this.busy) return Promise.reject(new UserError("already training: pause or reset first"));
    const before = this.phase;
    const generation = ++this.#generation;
    this.#setPhase("starting");
    return this.#serial(async () => {
      if (generation !== this.#generation) return; // a Reset came after it
      await this.#replace(settings, resume, before, generation);
      this.#launch(generation);
    });
  }

  /**
   * Sets up a new run of `settings` in place of the current one (released first). Settings
   * that are wrong leave the phase as it was (`before`: the run there was, if any, is as it
   * was); a backend that fails to open leaves it idle.
   */
  async #replace(
    settings: Settings,
    resume: boolean,
    before: Phase,
    generation: number,
  ): Promise<void> {
    let run: Prepared;
    try {
      run = this.#prepare(settings, resume);
    } catch (e) {
      this.#setPhase(before);
      throw e;
    }
    await this.#release();
    try {
      await this.#setUp(run, generation);
    } catch (e) {
      this.#setPhase("idle");
      throw e;
    }
  }

  /**
   * A run's settings, checked before anything is touched: the data, the checkpoint to continue
   * (with the command line's resume policy), the limits of training.
   */
  #prepare(settings: Settings, resume: boolean): Prepared {
    const data = this.data;
    if (!data) throw new UserError("no data loaded");
    const ck = resume ? this.loaded : null;
    if (resume && !ck) throw new UserError("no checkpoint loaded");
    if (ck) {
      // What the form shows must be the run's own; what it does not show is the checkpoint's.
      const { vocabSize: _, ...model } = ck.config;
      const { blockSize, nEmbd, nHidden, nLayers } = settings.model;
      checkResume(ck, {
        model: { ...model, blockSize, nEmbd, nHidden, nLayers },
        train: { ...ck.state.train, ...settings.train },
        seed: settings.seed,
        dataSha256: data.sha256,
      }, data.name);
    }
    const seed = ck?.state.seed ?? settings.seed;
    const dataset = makeDataset(data.words, ck?.config.blockSize ?? settings.model.blockSize, seed);
    if (ck && dataset.vocab.chars.join("") !== ck.vocab.join("")) {
      throw new UserError("the checkpoint's vocabulary differs from this data's");
    }
    const config: ModelConfig = ck?.config ?? { ...settings.model, vocabSize: dataset.vocab.size };
    const train: TrainConfig = ck
      ? { ...ck.state.train, steps: settings.train.steps }
      : settings.train;
    const warnings = validateTraining(config, train, dataset);
    return { ck, seed, dataset, config, train, warnings, data };
  }

  /** The backend and the trainer of a prepared run. */
  async #setUp(run: Prepared, generation: number): Promise<void> {
    const { ck, seed, dataset, config, train, data } = run;
    for (const w of run.warnings) this.#events.note(w);
    const backend = await this.#open({ kind: "webgpu", config, batchSize: train.batchSize });
    const init = ck ?? initModel(config, new Rng((seed + 1) >>> 0));
    backend.setParams(init.params, init.buffers);
    this.backend = backend;
    this.dataset = dataset;
    this.config = config;
    this.settings = { model: config, train, seed };
    this.sinks = new MemorySinks();
    this.finished = null;
    this.current = "run";
    const events = this.#events;
    const live = () => generation === this.#generation;
    this.trainer = new Trainer({
      config,
      train,
      seed,
      dataset,
      data: { path: data.name, sha256: data.sha256 },
      backend,
      schedule: ck ? { ...LAB_SCHEDULE, calibrate: ck.state.schedule.calibrate } : LAB_SCHEDULE,
      sinks: this.sinks,
      reporter: {
        progress: (p) => {
          this.lastLoss = p.lastLoss;
          if (live()) events.progress(p);
        },
        note: (t) => void (live() && events.note(t)),
        finishing: (f) => void (live() && events.finishing?.(f)),
      },
      resumed: ck ? { state: { ...ck.state, train }, diagnostics: emptyDiagnostics() } : undefined,
    });
    backend.lost?.then((why) => {
      if (live()) this.#fail(`the GPU device was lost: ${why}; press Reset`);
    });
  }

  /**
   * Starts the training loop of the current trainer (not awaited: #running), to the end or to
   * step `until` (then it pauses there).
   */
  #launch(generation: number, until = Infinity): void {
    const trainer = this.trainer!;
    const stop = (this.#stop = new AbortController());
    const live = () => generation === this.#generation;
    this.#setPhase("training");
    this.#running = (async () => {
      try {
        await trainer.train(stop.signal, until);
        if (stop.signal.aborted || (!trainer.done && trainer.step >= until)) {
          if (live()) this.#setPhase("paused");
          return;
        }
        const done = await trainer.finish(stop.signal);
        if (!live()) return;
        if (!done) {
          this.#setPhase("paused");
          return;
        }
        this.finished = done;
        this.#setPhase("finished");
      } catch (e) {
        if (live()) this.#fail(e instanceof Error ? e.message : String(e));
      }
    })();
  }

  /** Ends the current run (if any) and releases its backend, once its last chunk is done. */
  async #release(): Promise<void> {
    this.#stop?.abort();
    await this.#running;
    this.#running = null;
    this.backend?.destroy();
    this.backend = null;
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
    if (this.phase !== "training") return;
    this.#setPhase("stopping");
    this.#stop?.abort();
  }

  /** Goes on with a paused run. */
  resume(): Promise<void> {
    if (this.phase !== "paused" || !this.trainer) {
      return Promise.reject(new UserError("nothing to resume"));
    }
    const generation = ++this.#generation;
    this.#setPhase("starting");
    return this.#serial(async () => {
      if (generation !== this.#generation) return; // a Reset came after it
      await this.#running; // the paused run's loop has ended, but its promise may not have
      this.#launch(generation);
    });
  }

  /**
   * One SGD step: of the paused run, or of a new run of `settings` (which then pauses after
   * it); resolves to what the step changed in each parameter tensor.
   */
  oneStep(settings: Settings): Promise<StepChange> {
    if (this.busy) return Promise.reject(new UserError("already training: pause or reset first"));
    if (this.phase === "finished") {
      return Promise.reject(new UserError("the run is finished: reset to start another"));
    }
    const fresh = this.phase !== "paused" || !this.trainer;
    const generation = ++this.#generation;
    const before = this.phase;
    this.#setPhase("starting");
    return this.#serial(async () => {
      if (fresh) await this.#replace(settings, false, before, generation);
      else await this.#running;
      const trainer = this.trainer!;
      const backend = this.backend!;
      const was = await backend.getParams();
      const lr = learningRate(this.settings!.train, trainer.step);
      this.#launch(generation, trainer.step + 1);
      await this.#running;
      if (this.phase !== "paused") throw new UserError("the step did not complete");
      const now = await backend.getParams();
      return stepChange(this.config!, was.params, now.params, trainer.step, lr, this.lastLoss);
    });
  }

  /** Forgets the run and releases the GPU (after the chunk in flight, which is dropped). */
  reset(): Promise<void> {
    this.#generation++;
    this.#stop?.abort();
    this.trainer = null;
    this.finished = null;
    this.sinks = new MemorySinks();
    this.#setPhase("idle");
    return this.#serial(() => this.#release());
  }

  /** The model Sample and Download use: a loaded checkpoint, or the run's newest parameters. */
  #model(): Promise<{ config: ModelConfig; params: Float32Array; buffers: Float32Array }> {
    return this.#serial(async () => {
      if (this.current === "loaded" && this.loaded) return this.loaded;
      if (this.backend && this.config && !this.busy && this.trainer) {
        return { config: this.config, ...(await this.backend.getParams()) };
      }
      const ck = this.sinks.checkpoint ?? this.loaded;
      if (!ck) throw new UserError("train or load a model first");
      return ck;
    });
  }

  /** Names from the current model, each marked new or in the training split. */
  async sample(
    opts: { count: number; seed: number; temperature: number; topK: number; prefix: string },
  ): Promise<{ name: string; inTrain: boolean }[]> {
    const { config, params, buffers } = await this.#model();
    const loaded = this.current === "loaded" ? this.loaded : null;
    // The split a loaded checkpoint was trained on is known only if its data is loaded too.
    const ds = !loaded
      ? this.dataset
      : this.data?.sha256 === loaded.state.data.sha256
      ? makeDataset(this.data.words, loaded.config.blockSize, loaded.state.seed)
      : null;
    const chars = loaded?.vocab ?? ds?.vocab.chars;
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

  /** The current model as model.safetensors bytes (the run's last checkpoint, or the loaded one). */
  checkpointBytes(): Uint8Array {
    const ck = this.current === "loaded" ? this.loaded : this.sinks.checkpoint ?? this.loaded;
    if (!ck) throw new UserError("no checkpoint yet: train (or pause) first");
    return encodeCheckpoint(ck);
  }
}
