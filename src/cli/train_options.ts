/**
 * The training flags, and how they resolve over a preset (or, with --resume, over the
 * checkpoint's settings) into RunOptions. Shared by `deno task train` and the tools that run
 * trainings (sweeps, experiments).
 */

import { KERNEL_CHOICES } from "../backend.ts";
import { exists, loadCheckpoint } from "../files.ts";
import {
  type ModelConfig,
  type PresetName,
  PRESETS,
  resizeModel,
  type TrainConfig,
} from "../model.ts";
import { RULES } from "../settings.ts";
import { parseNetwork, summary } from "../layers.ts";
import type { RunOptions } from "../run.ts";
import { DEFAULT_SCHEDULE } from "../schedule.ts";
import { CHECKPOINT_FILE, DIAGNOSTICS_FILE, LOG_FILE, RUN_FILE } from "../run_dir.ts";
import { UserError } from "../errors.ts";
import { describe, differences, identityOf } from "../run_setup.ts";
import { type FlagGroups, UsageError, type Values } from "./flags.ts";

const seed = PRESETS.seed;
/** The seed of a new run without --seed. */
export const DEFAULT_SEED = 42;
/** The data trained on without --data (or, resumed, the run's own). */
export const DEFAULT_DATA = "data/names.txt";

export const TRAIN_FLAGS = {
  "Data and output": {
    data: { kind: "string", arg: "FILE", help: "one item per line", shown: DEFAULT_DATA },
    out: {
      kind: "string",
      arg: "DIR",
      help: `the run directory: ${CHECKPOINT_FILE}, ${RUN_FILE}, ${LOG_FILE}, ` +
        `${DIAGNOSTICS_FILE}, figures (.png, .svg), report.html`,
      default: "out",
    },
    resume: { kind: "bool", help: "continue the run in --out from its checkpoint" },
    overwrite: { kind: "bool", help: "replace the run in --out (its files are deleted first)" },
  },
  "Model (defaults from --preset)": {
    preset: {
      kind: "choice",
      arg: "NAME",
      choices: Object.keys(PRESETS),
      help: Object.entries(PRESETS).map(([n, p]) => `${n}: ${p.description};`).join(" "),
      shown: "seed",
    },
    "block-size": {
      arg: "N",
      ...RULES.blockSize,
      help: "characters of context",
      shown: `${seed.model.blockSize}`,
    },
    embd: {
      arg: "N",
      ...RULES.nEmbd,
      help: "embedding dimensions per character",
      shown: `${seed.model.nEmbd}`,
    },
    hidden: {
      arg: "N",
      ...RULES.nHidden,
      help: "units per hidden block",
      shown: `${seed.model.nHidden}`,
    },
    layers: {
      arg: "N",
      ...RULES.nLayers,
      help: "hidden blocks, each Linear -> BatchNorm1d -> tanh",
      shown: `seed: ${seed.model.nLayers}, lecture: ${PRESETS.lecture.model.nLayers}`,
    },
    network: {
      kind: "string",
      arg: "LAYERS",
      help: 'the layers, as makemore writes them, e.g. "Embedding(24) FlattenConsecutive(2) ' +
        'Linear(128, bias=False) BatchNorm1d Tanh ... Linear" (the last Linear gives the ' +
        "vocabulary); --embd and --hidden then resize it",
    },
    init: {
      kind: "choice",
      arg: "NAME",
      choices: ["kaiming", "unit"],
      help: "hidden weights: kaiming, N(0,1) * gain / sqrt(fan_in); or unit, N(0,1) with no " +
        "fan-in scaling (and so the output weights too, unless --output-scale)",
      shown: seed.model.init,
    },
    gain: {
      arg: "X",
      ...RULES.tanhGain,
      help: "the gain of the Kaiming initialization of the layers that feed a tanh",
      shown: "5/3",
    },
    "no-batchnorm": {
      kind: "bool",
      help: "no BatchNorm anywhere: hidden blocks become Linear (with bias) -> tanh, the " +
        "output a Linear with bias (the lecture's deep network without BatchNorm)",
    },
    "output-scale": {
      kind: "float",
      arg: "X",
      min: Number.MIN_VALUE,
      max: 100,
      help: "how small the last layer starts: its BatchNorm's gamma when it has one, else the " +
        "std of its weights",
      shown:
        `seed: ${seed.model.outputGamma} (gamma), lecture: ${PRESETS.lecture.model.outputInit}`,
    },
    "bn-momentum": {
      arg: "X",
      ...RULES.bnMomentum,
      help: "how fast the BatchNorm running statistics follow the batches",
      shown: `seed: ${seed.model.bnMomentum}, lecture: ${PRESETS.lecture.model.bnMomentum}`,
    },
  },
  "Training (defaults from --preset)": {
    steps: {
      arg: "N",
      ...RULES.steps,
      help: "SGD steps",
      shown: `${seed.train.steps}`,
    },
    "batch-size": {
      arg: "N",
      ...RULES.batchSize,
      help: "examples per step",
      shown: `${seed.train.batchSize}`,
    },
    lr: {
      arg: "X",
      ...RULES.lr,
      help: "learning rate",
      shown: `${seed.train.lr}`,
    },
    "lr-final": {
      arg: "X",
      ...RULES.lrFinal,
      help: "learning rate from --decay-at on",
      shown: `${seed.train.lrFinal}`,
    },
    "decay-at": {
      arg: "N",
      ...RULES.decayAt,
      help: "step of the learning-rate decay",
      shown: `seed: ${seed.train.decayAt}, lecture: ${PRESETS.lecture.train.decayAt}`,
    },
    seed: {
      arg: "N",
      ...RULES.seed,
      help: "seeds the split, the initialization and the batches",
      shown: `${DEFAULT_SEED}`,
    },
    backend: {
      kind: "choice",
      arg: "NAME",
      choices: ["webgpu", "cpu"],
      help: "webgpu, or cpu (the TypeScript reference: slow)",
      default: "webgpu",
    },
    kernels: {
      kind: "choice",
      arg: "NAME",
      choices: KERNEL_CHOICES,
      help: "the WebGPU kernel family: auto picks by the adapter",
      default: "auto",
    },
    "no-calibrate": {
      kind: "bool",
      help: "keep the running BatchNorm statistics instead of recomputing them over the " +
        "training split after training",
    },
  },
  "Reporting (defaults; a resumed run keeps its own)": {
    "eval-every": {
      kind: "int",
      arg: "N",
      min: 0,
      help: "val loss every N steps; 0: only at the end",
      shown: `${DEFAULT_SCHEDULE.evalEvery}`,
    },
    "diag-every": {
      kind: "int",
      arg: "N",
      min: 0,
      help: "diagnostics snapshots (activations, gradients) every N steps, besides steps 1, " +
        "1000 and the last; 0: only those",
      shown: `${DEFAULT_SCHEDULE.diagEvery}`,
    },
    "no-diagnostics": { kind: "bool", help: "collect no diagnostics (update ratios, snapshots)" },
    "no-plots": { kind: "bool", help: "draw no figures (deno task plot draws them later)" },
    "checkpoint-every": {
      kind: "int",
      arg: "N",
      min: 1,
      help: "checkpoint every N steps, and always at the end",
      shown: `${DEFAULT_SCHEDULE.checkpointEvery}`,
    },
    samples: {
      kind: "int",
      arg: "N",
      min: 0,
      max: 1000,
      help: "names to sample at the end",
      shown: `${DEFAULT_SCHEDULE.samples}`,
    },
    json: { kind: "bool", help: "one JSON object per progress line" },
    quiet: { kind: "bool", help: "only the final report" },
  },
} as const satisfies FlagGroups;

export type TrainValues = Values<typeof TRAIN_FLAGS>;

/** The model flags over a preset's model; combinations that make no sense are refused. */
export function resolveModel(
  model: Omit<ModelConfig, "vocabSize">,
  values: TrainValues,
): Omit<ModelConfig, "vocabSize"> {
  const batchNorm = model.batchNorm && !values["no-batchnorm"];
  const init = (values.init ?? model.init) as ModelConfig["init"];
  if (init === "unit" && values.gain !== undefined) {
    throw new UsageError("--gain scales the Kaiming initialization; --init unit has none");
  }
  if (!batchNorm && values["bn-momentum"] !== undefined) {
    throw new UsageError("--bn-momentum has no BatchNorm to act on with --no-batchnorm");
  }
  const scale = values["output-scale"];
  const blockSize = values["block-size"] ?? model.blockSize;
  // A network given as a list: the size flags resize it; the MLP's own flags do not apply.
  let listed = model.layers;
  if (values.network !== undefined) {
    const parsed = parseNetwork(values.network);
    if (typeof parsed === "string") throw new UsageError(`--network: ${parsed}`);
    listed = parsed;
  }
  const sized = resizeModel(listed ? { ...model, layers: listed, ...summary(listed) } : model, {
    blockSize,
    nEmbd: values.embd,
    nHidden: values.hidden,
    nLayers: values.layers,
    noBatchNorm: values["no-batchnorm"],
  });
  if (typeof sized === "string") {
    throw new UsageError(sized.replace("number of hidden blocks", "--layers"));
  }
  // The MLP's BatchNorm is a flag (a list has dropped its BatchNorm1d already): without its
  // BatchNorm the output layer gets a bias, as makemore's Linear has.
  const outputBatchNorm = listed ? sized.outputBatchNorm : model.outputBatchNorm && batchNorm;
  const mlp = listed
    ? {}
    : { batchNorm, outputBatchNorm, outputBias: model.outputBias || !outputBatchNorm };
  return {
    ...sized,
    ...mlp,
    init,
    tanhGain: values.gain ?? model.tanhGain,
    outputGamma: outputBatchNorm && scale !== undefined ? scale : model.outputGamma,
    outputInit: !outputBatchNorm && scale !== undefined ? scale : model.outputInit,
    bnMomentum: values["bn-momentum"] ?? model.bnMomentum,
  };
}

/** The training flags over a preset's (or a checkpoint's) training. */
function trainOf(train: TrainConfig, values: TrainValues): TrainConfig {
  return {
    steps: values.steps ?? train.steps,
    batchSize: values["batch-size"] ?? train.batchSize,
    lr: values.lr ?? train.lr,
    lrFinal: values["lr-final"] ?? train.lrFinal,
    decayAt: values["decay-at"] ?? train.decayAt,
  };
}

/** Flags over the preset's (or, with --resume, the checkpoint's) settings. */
export async function resolveOptions(values: TrainValues): Promise<RunOptions> {
  const out = values.out;
  let model: Omit<ModelConfig, "vocabSize">;
  let train: TrainConfig;
  let seedValue = DEFAULT_SEED;
  let schedule = DEFAULT_SCHEDULE;
  let data: string | undefined = values.data;
  if (values.resume && values.overwrite) {
    throw new UsageError("--resume continues the run in --out; --overwrite replaces it: not both");
  }
  if (values.resume) {
    const ck = await loadCheckpoint(`${out}/${CHECKPOINT_FILE}`).catch((e) => {
      if (e instanceof UserError && /no such checkpoint/.test(e.message)) {
        throw new UserError(`--resume: no checkpoint in ${out}/ (start a run without --resume)`);
      }
      throw e;
    });
    const run = identityOf(ck);
    model = run.model;
    train = run.train;
    seedValue = run.seed;
    schedule = run.schedule;
    if (values.preset) {
      // The same command again with --resume names the run's own preset: accepted. A preset
      // that would change the run is refused with the first setting it changes.
      const p = PRESETS[values.preset as PresetName];
      const [first] = differences(
        { ...run, model: resolveModel(p.model, values), train: trainOf(p.train, values) },
        { ...run, model: resolveModel(model, values), train: trainOf(train, values) },
        ["train.steps"],
      );
      if (first) {
        throw new UsageError(`--preset ${values.preset} is not the run's: ${describe(first)}`);
      }
    }
    if (data === undefined) {
      data = ck.state.data.path;
      if (!(await exists(data))) {
        throw new UserError(
          `--resume: the run's data file ${data} is not there any more; give it with --data FILE`,
        );
      }
    }
  } else {
    ({ model, train } = PRESETS[(values.preset ?? "seed") as PresetName]);
  }
  return {
    dataPath: data ?? DEFAULT_DATA,
    outDir: values.out,
    model: resolveModel(model, values),
    train: trainOf(train, values),
    seed: values.seed ?? seedValue,
    backend: values.backend as RunOptions["backend"],
    kernels: values.kernels as RunOptions["kernels"],
    mode: values.resume ? "resume" : values.overwrite ? "overwrite" : "new",
    schedule: {
      evalEvery: values["eval-every"] ?? schedule.evalEvery,
      checkpointEvery: values["checkpoint-every"] ?? schedule.checkpointEvery,
      calibrate: !values["no-calibrate"] && schedule.calibrate,
      logEvery: schedule.logEvery,
      samples: values.samples ?? schedule.samples,
      diagnostics: !values["no-diagnostics"] && schedule.diagnostics,
      diagEvery: values["diag-every"] ?? schedule.diagEvery,
    },
  };
}
