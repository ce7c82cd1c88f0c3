/**
 * The model: its configuration, the presets, where every tensor lives in the flat parameter
 * and buffer arrays, and the initialization. Both backends (src/cpu, src/gpu) and the
 * checkpoint read the same layout.
 *
 * The network is a list of layers (src/layers.ts), as makemore writes it: part 3's MLP
 *   Embedding(nEmbd) FlattenConsecutive(blockSize) [Linear(nHidden) BatchNorm1d Tanh] x nLayers
 *   Linear(vocab) [BatchNorm1d]
 * or part 5's WaveNet, which joins the context two by two:
 *   Embedding(24) [FlattenConsecutive(2) Linear(128, bias=False) BatchNorm1d Tanh] x 3 Linear
 * A config either writes the MLP by its sizes (nEmbd, nHidden, nLayers, batchNorm, outputBias,
 * outputBatchNorm: the command line's flags and the checkpoints written before the list), or lists
 * its layers (`layers`, which the sizes then only summarize): networkOf reads either.
 */

import {
  type Activation,
  blocksOf,
  isLayers,
  type Layer,
  mlp,
  summary,
  wavenet,
  withEmbedding,
  withHidden,
  withoutBatchNorm,
} from "./layers.ts";
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
   * Output weights: N(0,1) / sqrt(fan_in) ("kaiming"; N(0,1) with the "unit" init), that times a
   * factor ({ kaiming: f }: makemore part 5's `weight *= 0.1`), or N(0,1) times this number.
   */
  readonly outputInit: "kaiming" | number | { readonly kaiming: number };
  /** Kaiming gain for the weights that feed tanh: 5/3. */
  readonly tanhGain: number;
  readonly bnMomentum: number;
  readonly bnEps: number;
  /** The layers, when the network is not the MLP its sizes describe (see the module comment). */
  readonly layers?: readonly Layer[];
}

/**
 * A model with other sizes, as the command line's flags and the lab's fields set them: an MLP
 * takes them as they are; a network listed by its layers has its embedding and its hidden
 * Linears resized, and its BatchNorms taken out with `noBatchNorm` (each Linear then with a
 * bias), while its number of blocks is its list's. What cannot be done is a string.
 */
export function resizeModel(
  model: Omit<ModelConfig, "vocabSize">,
  o: {
    readonly blockSize?: number;
    readonly nEmbd?: number;
    readonly nHidden?: number;
    readonly nLayers?: number;
    readonly noBatchNorm?: boolean;
  },
): Omit<ModelConfig, "vocabSize"> | string {
  const blockSize = o.blockSize ?? model.blockSize;
  if (!model.layers) {
    return {
      ...model,
      blockSize,
      nEmbd: o.nEmbd ?? model.nEmbd,
      nHidden: o.nHidden ?? model.nHidden,
      nLayers: o.nLayers ?? model.nLayers,
    };
  }
  if (o.nLayers !== undefined && o.nLayers !== model.nLayers) {
    return "the number of hidden blocks (--layers) shapes makemore part 3's MLP; this network " +
      "is a list of layers, whose blocks are its own (write another list with --network)";
  }
  let layers = o.nEmbd === undefined ? [...model.layers] : withEmbedding(model.layers, o.nEmbd);
  if (o.nHidden !== undefined) layers = withHidden(layers, o.nHidden);
  if (o.noBatchNorm) layers = withoutBatchNorm(layers);
  const net = blocksOf(layers, blockSize, NaN);
  if (typeof net === "string") return `the layers: ${net}`;
  return { ...model, ...summary(layers), blockSize, layers };
}

/** The network of a config, as a list of layers. */
export function networkOf(config: Omit<ModelConfig, "vocabSize">): readonly Layer[] {
  return config.layers ?? mlp(config);
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

/** makemore part 5's final network: 76,579 parameters with makemore's 27 characters. */
const WAVENET: readonly Layer[] = wavenet({ nEmbd: 24, nHidden: 128, depth: 3 });

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
  wavenet: {
    description: "makemore part 5's WaveNet: context 8 joined two by two through 3 blocks of 128",
    model: {
      blockSize: 8,
      // What the list says in the MLP's terms (tests/cpu_model_test.ts checks they agree).
      nEmbd: 24,
      nHidden: 128,
      nLayers: 3,
      batchNorm: true,
      outputBias: true,
      outputBatchNorm: false,
      layers: WAVENET,
      init: "kaiming",
      // Part 5's Linear: N(0,1) / sqrt(fan_in); its last layer's weights times 0.1.
      tanhGain: 1,
      outputGamma: 1,
      outputInit: { kaiming: 0.1 },
      bnMomentum: 0.1,
      bnEps: 1e-5,
    },
    train: { steps: 200_000, batchSize: 32, lr: 0.1, lrFinal: 0.01, decayAt: 150_000 },
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
  outputInit: (v) =>
    v === "kaiming" || finite(0)(v) ||
    (typeof v === "object" && v !== null && Object.keys(v).join() === "kaiming" &&
      finite(0)((v as { kaiming: unknown }).kaiming)),
  tanhGain: finite(0),
  bnMomentum: finite(0, 1),
  bnEps: (v) => finite(0)(v) && (v as number) > 0,
  layers: (v) => v === undefined || isLayers(v),
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
  const config = checkFields<ModelConfig>(withDefaults, CONFIG_CHECKS);
  if (typeof config === "string") return config;
  const net = blocksOf(networkOf(config), config.blockSize, config.vocabSize);
  return typeof net === "string" ? `layers: ${net}` : config;
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

/** One Linear [BatchNorm1d] [activation] block (src/layers.ts), with its tensors. */
export interface LayerSpec {
  readonly nIn: number;
  readonly nOut: number;
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly bn: BatchNormSpec | null;
  readonly act: Activation | null;
  /** Rows per example at this block. */
  readonly positions: number;
  /** The FlattenConsecutive(n) before it (1: none). */
  readonly flatten: number;
}

export interface ModelLayout {
  readonly embedding: Tensor;
  /** Tokens per embedding output row (its FlattenConsecutive), and such rows per example. */
  readonly group: number;
  readonly positions: number;
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

  const V = config.vocabSize;
  const net = blocksOf(networkOf(config), config.blockSize, V);
  if (typeof net === "string") throw new Error(`modelLayout: ${net}`);
  const embedding = add(params, "embedding.weight", [V, net.embedding.dim]);
  const L = net.blocks.length;
  const layers = net.blocks.map((b, l): LayerSpec => {
    const prefix = l === L - 1 ? "output" : `hidden.${l}`;
    const weight = add(params, `${prefix}.weight`, [b.nIn, b.nOut]);
    const bias = b.bias ? add(params, `${prefix}.bias`, [b.nOut]) : null;
    const bn = b.bn ? batchNorm(prefix, b.nOut) : null;
    return { ...b, weight, bias, bn };
  });
  const end = (list: Tensor[]) => (list.length ? list.at(-1)!.offset + list.at(-1)!.size : 0);
  return {
    embedding,
    group: net.embedding.group,
    positions: net.embedding.positions,
    layers,
    params,
    buffers,
    nParams: end(params),
    nBuffers: end(buffers),
  };
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
  const out = layout.layers.at(-1);
  for (const layer of layout.layers) {
    const fanIn = Math.sqrt(layer.nIn);
    const o = config.outputInit;
    if (layer !== out) normal(layer.weight, kaiming ? config.tanhGain / fanIn : 1);
    else if (typeof o === "number") normal(layer.weight, o);
    else if (o !== "kaiming") normal(layer.weight, (kaiming ? 1 / fanIn : 1) * o.kaiming);
    else normal(layer.weight, kaiming ? 1 / fanIn : 1);
    if (layer.bn) {
      view(params, layer.bn.gamma).fill(layer === out ? config.outputGamma : 1);
      view(buffers, layer.bn.runVar).fill(1);
    }
  }
  return { params, buffers };
}
