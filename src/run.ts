/**
 * A training run from the command line: a run directory (src/run_dir.ts), the data file, a
 * backend, and the portable training loop (src/training.ts) between them. The order is the
 * order of what can go wrong, cheapest first: the directory (and its lock), the checkpoint of a
 * resumed run, the data, the backend; nothing is written before all of them are right.
 */

import {
  type Backend,
  type BackendKind,
  type BackendOptions,
  type KernelChoice,
  openBackend,
} from "./backend.ts";
import { type Dataset, makeDataset, parseWords, sha256Hex, Vocab } from "./data.ts";
import { UserError } from "./errors.ts";
import { absolutePath, readUserFile } from "./files.ts";
import { initModel, type ModelConfig, type TrainConfig } from "./model.ts";
import { Rng } from "./rng.ts";
import { type OpenMode, readRunReport, RunDir } from "./run_dir.ts";
import type { Schedule } from "./schedule.ts";
import { checkResume } from "./run_setup.ts";
import { type Losses, type Reporter, Trainer, validateTraining } from "./training.ts";

export interface RunOptions {
  readonly dataPath: string;
  readonly outDir: string;
  /** The model without its vocabulary size, which comes from the data. */
  readonly model: Omit<ModelConfig, "vocabSize">;
  readonly train: TrainConfig;
  readonly seed: number;
  readonly backend: BackendKind;
  readonly kernels: KernelChoice;
  /** A new run, a resumed one (--resume), or a replacement of the run in outDir. */
  readonly mode: OpenMode;
  readonly schedule: Schedule;
}

/** The reporter of a command-line run: also told when the run starts. */
export interface RunReporter extends Reporter {
  start(info: { backend: Backend; params: number; dataset: Dataset; resumedFrom: number }): void;
}

export interface RunResult {
  readonly step: number;
  /** Stopped by the signal: the last checkpoint stands, --resume continues. */
  readonly interrupted: boolean;
  readonly losses?: Losses;
  readonly samples?: { name: string; inTrain: boolean }[];
  readonly trainSeconds: number;
}

/**
 * Trains one run. `open` opens its backend (default: a device of its own; src/run_group.ts
 * passes a member of a group of replicas).
 */
export async function run(
  opts: RunOptions,
  reporter: RunReporter,
  signal?: AbortSignal,
  open: (o: BackendOptions) => Promise<Backend> = openBackend,
): Promise<RunResult> {
  // A resumed run locks its directory at once (its checkpoint is read under the lock); a new
  // one only checks it, and creates nothing until everything else is found right.
  let dir: RunDir | null = null;
  if (opts.mode === "resume") dir = await RunDir.open(opts.outDir, opts.mode);
  else await RunDir.check(opts.outDir, opts.mode);
  try {
    const resumed = dir ? await dir.loadCheckpoint() : undefined;
    const bytes = await readUserFile(opts.dataPath);
    const words = parseWords(bytes, opts.dataPath);
    const sha256 = await sha256Hex(bytes);
    if (resumed) {
      checkResume(resumed, { ...opts, dataSha256: sha256 }, opts.dataPath);
    }
    const vocab = resumed ? new Vocab(resumed.vocab) : Vocab.fromWords(words);
    const dataset = makeDataset(words, opts.model.blockSize, opts.seed, vocab);
    const config: ModelConfig = resumed?.config ?? { ...opts.model, vocabSize: vocab.size };
    // A resumed run may ask for more steps than it first did; the rest of the schedule is its.
    const train = resumed ? { ...resumed.state.train, steps: opts.train.steps } : opts.train;
    if (dir && resumed && resumed.state.step >= train.steps && await readRunReport(dir.path)) {
      throw new UserError(
        `the run in ${dir.path} is finished (${resumed.state.step} steps); ask for more with ` +
          "--steps",
      );
    }
    const warnings = validateTraining(config, train, dataset);
    const backend = await open({
      kind: opts.backend,
      config,
      batchSize: train.batchSize,
      kernels: opts.kernels,
    });
    try {
      dir ??= await RunDir.open(opts.outDir, opts.mode);
      const init = resumed ?? initModel(config, new Rng((opts.seed + 1) >>> 0));
      backend.setParams(init.params, init.buffers);
      const from = resumed?.state.step ?? 0;
      reporter.start({ backend, params: init.params.length, dataset, resumedFrom: from });
      warnings.forEach((w) => reporter.note(w));
      const trainer = new Trainer({
        config,
        train,
        seed: opts.seed,
        dataset,
        // Absolute, so that a run resumes from any working directory.
        data: { path: absolutePath(opts.dataPath), sha256 },
        backend,
        schedule: opts.schedule,
        sinks: await dir.sinks(from),
        reporter,
        resumed: resumed && {
          state: { ...resumed.state, train },
          diagnostics: await dir.readDiagnostics(from),
        },
      });
      await trainer.train(signal);
      const finished = trainer.done ? await trainer.finish(signal) : null;
      if (!finished) {
        return { step: trainer.step, interrupted: true, trainSeconds: trainer.seconds };
      }
      await dir.writeRunReport({
        config,
        train,
        seed: opts.seed,
        data: {
          path: opts.dataPath,
          sha256,
          words: dataset.words.length,
          vocab: vocab.chars.join(""),
          examples: {
            train: dataset.examples.train.n,
            val: dataset.examples.val.n,
            test: dataset.examples.test.n,
          },
        },
        params: init.params.length,
        backend: backend.kind,
        kernels: backend.kernels,
        adapter: backend.adapter,
        steps: trainer.step,
        train_seconds: trainer.seconds,
        us_per_step: (trainer.seconds / Math.max(trainer.step, 1)) * 1e6,
        calibrated: opts.schedule.calibrate,
        losses: finished.losses,
        samples: finished.samples,
        finished: new Date().toISOString(),
      });
      return {
        step: trainer.step,
        interrupted: false,
        losses: finished.losses,
        samples: finished.samples,
        trainSeconds: trainer.seconds,
      };
    } finally {
      backend.destroy();
    }
  } finally {
    dir?.close();
  }
}
