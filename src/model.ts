/**
 * The model: its configuration, the two presets, where every tensor lives in the flat
 * parameter and buffer arrays, and the initialization. Both backends (src/cpu, src/gpu) and
 * the checkpoint read the same layout.
 *
 * Architecture (makemore part 3):
 *   embedding C [vocab, nEmbd] -> concatenate the blockSize context embeddings
 *   -> nLayers x (Linear(no bias, nHidden) -> BatchNorm1d -> tanh)
 *        (without BatchNorm, the lecture's deep network: Linear(with bias) -> tanh)
 *   -> Linear(nHidden, vocab) (+ bias) (-> BatchNorm1d) -> softmax cross-entropy
 */

import type { Rng } from "./rng.ts";

export interface ModelConfig {
  readonly vocabSize: number;
  readonly blockSize: number;
  readonly nEmbd: number;
  readonly nHidden: number;
  /** Hidden blocks of Linear -> BatchNorm1d -> tanh; at least one. */
  readonly nLayers: number;
  /** Whether the hidden blocks have a BatchNorm (else their Linear has a bias). */
  readonly batchNorm: boolean;
  /** Hidden weights: N(0,1) * tanhGain / sqrt(fan_in) ("kaiming"), or N(0,1) ("unit"). */
  readonly init: "kaiming" | "unit";
  readonly outputBias: boolean;
  readonly outputBatchNorm: boolean;
  /** Initial gamma of the output BatchNorm: < 1 makes the untrained model less confident. */
  readonly outputGamma: number;
  /**
   * Output weights: N(0,1) / sqrt(fan_in) ("kaiming"; N(0,1) with the "unit" init), or N(0,1)
   * times this number.
   */
  readonly outputInit: "kaiming" | number;
  /** Kaiming gain for the weights that feed tanh: 5/3. */
  readonly tanhGain: number;
  readonly bnMomentum: number;
  readonly bnEps: number;
}

export interface TrainConfig {
  readonly steps: number;
  readonly batchSize: number;
  readonly lr: number;
  /** The learning rate from step `decayAt` on (a single step decay, as in makemore). */
  readonly lrFinal: number;
  readonly decayAt: number;
}

export interface Preset {
  readonly description: string;
  readonly model: Omit<ModelConfig, "vocabSize">;
  readonly train: TrainConfig;
}

export const PRESETS = {
  seed: {
    description: "5 hidden blocks of 200, output BatchNorm (makemore part 3's final network)",
    model: {
      blockSize: 3,
      nEmbd: 10,
      nHidden: 200,
      nLayers: 5,
      batchNorm: true,
      init: "kaiming",
      outputBias: false,
      outputBatchNorm: true,
      outputGamma: 0.1,
      outputInit: "kaiming",
      tanhGain: 5 / 3,
      bnMomentum: 0.1,
      bnEps: 1e-5,
    },
    train: { steps: 200_000, batchSize: 32, lr: 0.1, lrFinal: 0.01, decayAt: 150_000 },
  },
  lecture: {
    description: "1 hidden block of 200, output Linear with bias (makemore part 3's first network)",
    model: {
      blockSize: 3,
      nEmbd: 10,
      nHidden: 200,
      nLayers: 1,
      batchNorm: true,
      init: "kaiming",
      outputBias: true,
      outputBatchNorm: false,
      outputGamma: 1,
      outputInit: 0.01,
      tanhGain: 5 / 3,
      bnMomentum: 0.001,
      bnEps: 1e-5,
    },
    train: { steps: 200_000, batchSize: 32, lr: 0.1, lrFinal: 0.01, decayAt: 100_000 },
  },
} as const satisfies Record<string, Preset>;

export type PresetName = keyof typeof PRESETS;

/** The bounds of each size: the flags' ranges, and what a checkpoint may hold. */
export const LIMITS = {
  vocabSize: { min: 2, max: 1024 },
  blockSize: { min: 1, max: 32 },
  nEmbd: { min: 1, max: 256 },
  nHidden: { min: 1, max: 2048 },
  nLayers: { min: 1, max: 16 },
  steps: { min: 1, max: 1e9 },
  batchSize: { min: 2, max: 4096 },
} as const;

type Check = (v: unknown) => boolean;
const int = (r: { min: number; max: number }): Check => (v) =>
  typeof v === "number" && Number.isInteger(v) && v >= r.min && v <= r.max;
const finite = (min = -Infinity, max = Infinity): Check => (v) =>
  typeof v === "number" && Number.isFinite(v) && v >= min && v <= max;
const bool: Check = (v) => typeof v === "boolean";

const CONFIG_CHECKS: Record<keyof ModelConfig, Check> = {
  vocabSize: int(LIMITS.vocabSize),
  blockSize: int(LIMITS.blockSize),
  nEmbd: int(LIMITS.nEmbd),
  nHidden: int(LIMITS.nHidden),
  nLayers: int(LIMITS.nLayers),
  batchNorm: bool,
  init: (v) => v === "kaiming" || v === "unit",
  outputBias: bool,
  outputBatchNorm: bool,
  outputGamma: finite(),
  outputInit: (v) => v === "kaiming" || finite(0)(v),
  tanhGain: finite(0),
  bnMomentum: finite(0, 1),
  bnEps: (v) => finite(0)(v) && (v as number) > 0,
};

const TRAIN_CHECKS: Record<keyof TrainConfig, Check> = {
  steps: int(LIMITS.steps),
  batchSize: int(LIMITS.batchSize),
  lr: (v) => finite(0)(v) && (v as number) > 0,
  lrFinal: finite(0),
  decayAt: int({ min: 0, max: Infinity }),
};

/** `v` as a T whose every field passes its check, or the name of the first one that fails. */
function checkFields<T>(v: unknown, checks: Record<string, Check>): T | string {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "not an object";
  const o = v as Record<string, unknown>;
  for (const [k, check] of Object.entries(checks)) {
    if (!check(o[k])) return `${k} = ${JSON.stringify(o[k]) ?? "missing"}`;
  }
  const extra = Object.keys(o).find((k) => !(k in checks));
  if (extra) return `unknown field ${extra}`;
  return v as T;
}

/** Fields added after checkpoints were first written, with the value they had then. */
const CONFIG_SINCE: Partial<ModelConfig> = { batchNorm: true, init: "kaiming" };

/** A model config read from outside (a checkpoint), or what is wrong with it. */
export function parseModelConfig(v: unknown): ModelConfig | string {
  const withDefaults = typeof v === "object" && v !== null && !Array.isArray(v)
    ? { ...CONFIG_SINCE, ...v }
    : v;
  return checkFields<ModelConfig>(withDefaults, CONFIG_CHECKS);
}

/** A training config read from outside (a checkpoint), or what is wrong with it. */
export function parseTrainConfig(v: unknown): TrainConfig | string {
  return checkFields<TrainConfig>(v, TRAIN_CHECKS);
}

/** The learning rate of a step (0-based). */
export function learningRate(train: TrainConfig, step: number): number {
  return step < train.decayAt ? train.lr : train.lrFinal;
}

/** A named tensor in a flat array: elements [offset, offset + size), row-major `shape`. */
export interface Tensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly offset: number;
  readonly size: number;
}

export interface BatchNormSpec {
  readonly gamma: Tensor;
  readonly beta: Tensor;
  /** In the buffers array, not the parameters: they are not trained. */
  readonly runMean: Tensor;
  readonly runVar: Tensor;
}

/** One Linear (-> BatchNorm) (-> tanh) block. */
export interface LayerSpec {
  readonly nIn: number;
  readonly nOut: number;
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly bn: BatchNormSpec | null;
  readonly tanh: boolean;
}

export interface ModelLayout {
  readonly embedding: Tensor;
  /** The hidden blocks, then the output layer. */
  readonly layers: readonly LayerSpec[];
  readonly params: readonly Tensor[];
  readonly buffers: readonly Tensor[];
  readonly nParams: number;
  readonly nBuffers: number;
}

export function modelLayout(config: ModelConfig): ModelLayout {
  const params: Tensor[] = [];
  const buffers: Tensor[] = [];
  const add = (list: Tensor[], name: string, shape: number[]): Tensor => {
    const last = list.at(-1);
    const t = {
      name,
      shape,
      offset: last ? last.offset + last.size : 0,
      size: shape.reduce((a, b) => a * b, 1),
    };
    list.push(t);
    return t;
  };
  const batchNorm = (prefix: string, n: number): BatchNormSpec => ({
    gamma: add(params, `${prefix}.bn.gamma`, [n]),
    beta: add(params, `${prefix}.bn.beta`, [n]),
    runMean: add(buffers, `${prefix}.bn.running_mean`, [n]),
    runVar: add(buffers, `${prefix}.bn.running_var`, [n]),
  });

  const embedding = add(params, "embedding.weight", [config.vocabSize, config.nEmbd]);
  const layers: LayerSpec[] = [];
  let nIn = config.blockSize * config.nEmbd;
  for (let l = 0; l < config.nLayers; l++) {
    const prefix = `hidden.${l}`;
    const weight = add(params, `${prefix}.weight`, [nIn, config.nHidden]);
    // A bias before a BatchNorm is useless (the mean is subtracted): one or the other.
    const bias = config.batchNorm ? null : add(params, `${prefix}.bias`, [config.nHidden]);
    const bn = config.batchNorm ? batchNorm(prefix, config.nHidden) : null;
    layers.push({ nIn, nOut: config.nHidden, weight, bias, bn, tanh: true });
    nIn = config.nHidden;
  }
  const V = config.vocabSize;
  const weight = add(params, "output.weight", [nIn, V]);
  const bias = config.outputBias ? add(params, "output.bias", [V]) : null;
  const bn = config.outputBatchNorm ? batchNorm("output", V) : null;
  layers.push({ nIn, nOut: V, weight, bias, bn, tanh: false });

  const end = (list: Tensor[]) => (list.length ? list.at(-1)!.offset + list.at(-1)!.size : 0);
  return { embedding, layers, params, buffers, nParams: end(params), nBuffers: end(buffers) };
}

/** The elements of `t` inside `flat`, without copying. */
export function view<T extends Float32Array | Float64Array>(flat: T, t: Tensor): T {
  return flat.subarray(t.offset, t.offset + t.size) as T;
}

/**
 * Initialization from a seeded generator. Normals are drawn row-major, tensor by tensor in
 * layout order: the embedding, then each layer's weight: Kaiming (gain / sqrt(fan_in)) or unit
 * (see ModelConfig.init). Biases and betas are 0, gammas 1 (the output BatchNorm's
 * `outputGamma`), running means 0 and running variances 1.
 */
export function initModel(
  config: ModelConfig,
  rng: Rng,
): { params: Float32Array; buffers: Float32Array } {
  const layout = modelLayout(config);
  const params = new Float32Array(layout.nParams);
  const buffers = new Float32Array(layout.nBuffers);
  const normal = (t: Tensor, scale: number) => {
    const v = view(params, t);
    for (let i = 0; i < v.length; i++) v[i] = rng.normal() * scale;
  };
  normal(layout.embedding, 1);
  const kaiming = config.init === "kaiming";
  for (const layer of layout.layers) {
    if (layer.tanh) normal(layer.weight, kaiming ? config.tanhGain / Math.sqrt(layer.nIn) : 1);
    else if (config.outputInit !== "kaiming") normal(layer.weight, config.outputInit);
    else normal(layer.weight, kaiming ? 1 / Math.sqrt(layer.nIn) : 1);
    if (layer.bn) {
      view(params, layer.bn.gamma).fill(layer.tanh ? 1 : config.outputGamma);
      view(buffers, layer.bn.runVar).fill(1);
    }
  }
  return { params, buffers };
}
