/**
 * The lab's comparisons: one setting at several values (the lecture's init study's gains,
 * learning rates, seeds, ...), every run trained at once on the user's GPU as one group of
 * replicas (src/gpu/group.ts: in the same dispatches, each run exactly what it would be alone),
 * each with its own trainer and in-memory log. The page draws the runs' curves overlaid and
 * their histograms side by side, each run in its colour (RUN_COLOURS) everywhere.
 */

import { type Backend, type BackendOptions, openGroup } from "../backend.ts";
import { makeDataset } from "../data.ts";
import { UserError } from "../errors.ts";
import { initModel, type ModelConfig } from "../model.ts";
import { Rng } from "../rng.ts";
import { type NumberRule, parseNumber, RULES } from "../settings.ts";
import {
  type Finished,
  MemorySinks,
  type Progress,
  Trainer,
  validateTraining,
} from "../training.ts";
import { BROWSER_MESSAGES, type Data, LAB_SCHEDULE, type Settings } from "./session.ts";

/** The settings a comparison may vary: those that keep the shapes, so the runs share dispatches. */
export const AXES = {
  lr: {
    label: "learning rate",
    rule: RULES.lr,
    apply: (s: Settings, v: number): Settings => ({ ...s, train: { ...s.train, lr: v } }),
  },
  seed: {
    label: "seed",
    rule: RULES.seed,
    apply: (s: Settings, v: number): Settings => ({ ...s, seed: v }),
  },
  gain: {
    label: "Kaiming gain",
    rule: RULES.tanhGain,
    apply: (s: Settings, v: number): Settings => ({ ...s, model: { ...s.model, tanhGain: v } }),
  },
  momentum: {
    label: "BatchNorm momentum",
    rule: RULES.bnMomentum,
    apply: (s: Settings, v: number): Settings => ({ ...s, model: { ...s.model, bnMomentum: v } }),
  },
} as const satisfies Record<
  string,
  { label: string; rule: NumberRule; apply(s: Settings, v: number): Settings }
>;

export type Axis = keyof typeof AXES;

/** The most runs a comparison trains at once. */
export const MAX_COMPARED = 8;

/** Each run's colour, in the page's figures and lists alike (Tableau 10). */
export const RUN_COLOURS = [
  "#4e79a7",
  "#f28e2b",
  "#e15759",
  "#76b7b2",
  "#59a14f",
  "#edc948",
  "#b07aa1",
  "#ff9da7",
] as const;

/** "0.05, 0.1, 0.2" as the axis' values: each by its rule, 2 to MAX_COMPARED, distinct. */
export function parseValues(axis: Axis, text: string): number[] {
  const { label, rule } = AXES[axis];
  const parts = text.split(",").map((t) => t.trim()).filter((t) => t !== "");
  if (parts.length < 2 || parts.length > MAX_COMPARED) {
    throw new UserError(`compare: 2 to ${MAX_COMPARED} values of the ${label}, comma-separated`);
  }
  const values = parts.map((t) => {
    const v = parseNumber(rule, t);
    if (typeof v !== "number") throw new UserError(`compare: the ${label} ${v.error}`);
    return v;
  });
  if (new Set(values).size !== values.length) {
    throw new UserError(`compare: the ${label} values repeat`);
  }
  return values;
}

/** One run of a comparison, as the page shows it. */
export interface ComparedRun {
  readonly label: string;
  readonly colour: string;
  readonly settings: Settings;
  readonly sinks: MemorySinks;
  trainer: Trainer | null;
  progress: Progress | null;
  finished: Finished | null;
  error: string | null;
}

export class Comparison {
  readonly runs: ComparedRun[];
  readonly #stop = new AbortController();
  #done: Promise<void> | null = null;

  constructor(readonly axis: Axis, readonly values: readonly number[], base: Settings) {
    this.runs = values.map((v, i) => ({
      label: `${AXES[axis].label} ${v}`,
      colour: RUN_COLOURS[i % RUN_COLOURS.length],
      settings: AXES[axis].apply(base, v),
      sinks: new MemorySinks(),
      trainer: null,
      progress: null,
      finished: null,
      error: null,
    }));
  }

  /**
   * Trains every run at once on `data`, each reporting to `update(run)`; resolves when all
   * have ended (finished, failed alone, or stopped by stop()). `open` is for tests.
   */
  run(
    data: Data,
    update: (run: ComparedRun) => void,
    open?: (i: number, o: BackendOptions) => Promise<Backend>,
  ): Promise<void> {
    if (this.#done) return this.#done;
    const group = openGroup(this.runs.length, { messages: BROWSER_MESSAGES });
    const join = open ?? ((i: number, o: BackendOptions) => group.join(i, o));
    const signal = this.#stop.signal;
    this.#done = Promise.all(this.runs.map(async (run, i) => {
      let backend: Backend | null = null;
      try {
        const { model, train, seed } = run.settings;
        const dataset = makeDataset(data.words, model.blockSize, seed);
        const config: ModelConfig = { ...model, vocabSize: dataset.vocab.size };
        validateTraining(config, train, dataset);
        backend = await join(i, { kind: "webgpu", config, batchSize: train.batchSize });
        const init = initModel(config, new Rng((seed + 1) >>> 0));
        backend.setParams(init.params, init.buffers);
        run.trainer = new Trainer({
          config,
          train,
          seed,
          dataset,
          data: { path: data.name, sha256: data.sha256 },
          backend,
          schedule: LAB_SCHEDULE,
          sinks: run.sinks,
          reporter: {
            progress: (p) => {
              run.progress = p;
              update(run);
            },
            note: () => {},
          },
        });
        await run.trainer.train(signal);
        if (!signal.aborted) run.finished = await run.trainer.finish(signal);
      } catch (e) {
        run.error = e instanceof Error ? e.message : String(e);
      } finally {
        backend?.destroy();
        group.leave(i);
        update(run);
      }
    })).then(() => {});
    return this.#done;
  }

  /** Stops every run at its next chunk boundary. */
  stop(): void {
    this.#stop.abort();
  }
}
