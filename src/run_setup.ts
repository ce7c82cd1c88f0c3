/**
 * What makes two runs the same run, and when a run may go on from a checkpoint: one policy for
 * `deno task train --resume`, for the batch runs of sweeps and experiments (which reuse a
 * finished run, or resume an interrupted one, only when it is the run asked for), and for the
 * lab's "continue training". Every difference is named by the training flag that sets it
 * (FIELD_FLAGS), with both values, so that the one line a user gets says what to change.
 */

import type { Checkpoint } from "./checkpoint.ts";
import { UserError } from "./errors.ts";
import { isLayers, networkText } from "./layers.ts";
import type { ModelConfig, TrainConfig } from "./model.ts";
import type { Schedule } from "./schedule.ts";

/** Everything that decides what a run computes: a finished run is reusable when all equal. */
export interface RunIdentity {
  readonly model: Omit<ModelConfig, "vocabSize">;
  readonly train: TrainConfig;
  readonly seed: number;
  /** The data's sha256: the split, the vocabulary and every batch depend on each byte. */
  readonly dataSha256: string;
  readonly schedule: Schedule;
}

type Field =
  | `model.${keyof Omit<ModelConfig, "vocabSize">}`
  | `train.${keyof TrainConfig}`
  | `schedule.${keyof Schedule}`
  | "seed"
  | "dataSha256";

/**
 * The training flag (src/cli/train_options.ts) that sets each field, or a phrase for those no
 * flag sets alone (the preset decides them). tests/run_setup_test.ts checks that every flag named
 * here is a training flag.
 */
export const FIELD_FLAGS: Readonly<Record<Field, string>> = {
  "model.blockSize": "--block-size",
  "model.nEmbd": "--embd",
  "model.nHidden": "--hidden",
  "model.nLayers": "--layers",
  "model.batchNorm": "--no-batchnorm",
  "model.init": "--init",
  "model.outputBias": "the output bias (--preset, --no-batchnorm)",
  "model.outputBatchNorm": "the output BatchNorm (--preset, --no-batchnorm)",
  "model.outputGamma": "--output-scale",
  "model.outputInit": "--output-scale",
  "model.tanhGain": "--gain",
  "model.bnMomentum": "--bn-momentum",
  "model.bnEps": "the BatchNorm eps (--preset)",
  "model.layers": "--network",
  "train.steps": "--steps",
  "train.batchSize": "--batch-size",
  "train.lr": "--lr",
  "train.lrFinal": "--lr-final",
  "train.decayAt": "--decay-at",
  "schedule.evalEvery": "--eval-every",
  "schedule.checkpointEvery": "--checkpoint-every",
  "schedule.logEvery": "the log's interval",
  "schedule.diagnostics": "--no-diagnostics",
  "schedule.diagEvery": "--diag-every",
  "schedule.calibrate": "--no-calibrate",
  "schedule.samples": "--samples",
  seed: "--seed",
  dataSha256: "--data",
};

/** A run's identity from its checkpoint. */
export function identityOf(ck: Checkpoint): RunIdentity {
  const { vocabSize: _, ...model } = ck.config;
  return {
    model,
    train: ck.state.train,
    seed: ck.state.seed,
    dataSha256: ck.state.data.sha256,
    schedule: ck.state.schedule,
  };
}

/** One field that differs: the flag that sets it, the value asked for and the run's own. */
export interface Difference {
  readonly field: Field;
  readonly flag: string;
  readonly asked: unknown;
  readonly run: unknown;
}

const show = (v: unknown) =>
  typeof v === "string" && /^[0-9a-f]{64}$/.test(v)
    ? v.slice(0, 12) + "..."
    : isLayers(v)
    ? `"${networkText(v)}"`
    : typeof v === "object" && v !== null
    ? JSON.stringify(v)
    : String(v);

/**
 * A difference in one line: "--steps 1500 (the run has 50)", "--no-batchnorm (the run has a
 * BatchNorm)" for the flags that turn something off, "the output bias (--preset, ...): false
 * (the run has true)" for what no flag sets alone.
 */
export function describe(d: Difference): string {
  if (d.field === "dataSha256") {
    return `--data: another file (sha256 ${show(d.asked)}, the run's ${show(d.run)})`;
  }
  if (d.flag.startsWith("--no-")) {
    return d.asked === false
      ? `${d.flag} (the run was trained without it)`
      : `no ${d.flag} (the run was trained with it)`;
  }
  if (!d.flag.startsWith("--")) return `${d.flag}: ${show(d.asked)} (the run has ${show(d.run)})`;
  return `${d.flag} ${show(d.asked)} (the run has ${show(d.run)})`;
}

/** The fields where `asked` and `run` differ, in a fixed order; `except` leaves some out. */
export function differences(
  asked: RunIdentity,
  run: RunIdentity,
  except: readonly Field[] = [],
): Difference[] {
  const out: Difference[] = [];
  // Settings are numbers, strings, booleans, or (the layers, an init) plain JSON.
  const same = (a: unknown, r: unknown) => a === r || JSON.stringify(a) === JSON.stringify(r);
  const add = (field: Field, a: unknown, r: unknown) => {
    if (!same(a, r) && !except.includes(field)) {
      out.push({ field, flag: FIELD_FLAGS[field], asked: a, run: r });
    }
  };
  add("dataSha256", asked.dataSha256, run.dataSha256);
  for (const k of Object.keys(asked.model) as (keyof RunIdentity["model"])[]) {
    add(`model.${k}`, asked.model[k], run.model[k]);
  }
  for (const k of Object.keys(asked.train) as (keyof TrainConfig)[]) {
    add(`train.${k}`, asked.train[k], run.train[k]);
  }
  add("seed", asked.seed, run.seed);
  for (const k of Object.keys(asked.schedule) as (keyof Schedule)[]) {
    add(`schedule.${k}`, asked.schedule[k], run.schedule[k]);
  }
  return out;
}

/**
 * Whether a checkpoint may go on as the run `asked` describes, and up to how many steps: the
 * same data, model, seed and training (the number of steps may grow), and statistics that were
 * not recalibrated after its training (which would not continue the original run). The
 * schedule may differ (how often it evaluates and saves changes nothing it computes).
 */
export function checkResume(
  ck: Checkpoint,
  asked: Omit<RunIdentity, "schedule">,
  dataPath: string,
): void {
  const run = identityOf(ck);
  if (asked.dataSha256 !== run.dataSha256) {
    throw new UserError(
      `${dataPath} is not the data the checkpoint was trained on (${ck.state.data.path}, ` +
        `sha256 ${show(run.dataSha256)}): the split would differ`,
    );
  }
  const [first] = differences({ ...asked, schedule: run.schedule }, run, ["train.steps"]);
  if (first) throw new UserError(`the checkpoint cannot continue as asked: ${describe(first)}`);
  if (ck.state.step > asked.train.steps) {
    throw new UserError(
      `the checkpoint has already trained ${ck.state.step} steps; ask for at least that many ` +
        "with --steps",
    );
  }
  if (ck.state.calibrated && ck.state.step < asked.train.steps) {
    throw new UserError(
      "the checkpoint's BatchNorm statistics were recalibrated after its training: training " +
        "on from them would not continue the original run",
    );
  }
}
