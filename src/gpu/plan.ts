/**
 * Where everything lives on the GPU, as pure functions of the model, the kernel family and the
 * pass sizes (testable without a GPU): the regions of the activation and gradient buffers, each
 * op's uniform values, the layout of the buffer the host reads back, and the largest pass the
 * kernels take.
 *
 * Buffers (shaders/common.wgsl has the memory model):
 * - two copies of the parameters and running statistics (P, Pn), which swap every step;
 * - two activation and two gradient buffers: layer l (0 = the first hidden layer) keeps its
 *   values in those of parity l % 2, the embedding ("layer -1") in those of parity 1;
 * - D, the token ids of a chunk's batches or of an evaluation's passes;
 * - Host, what is read back: the losses, DIAG_SLOTS blocks of moments, one snapshot.
 *
 * A plan is for a group of `replicas` independent models of one shape (one of them, for a
 * single run), trained in the same dispatches: each of the buffers above holds one part per
 * replica, `stride` apart (ReplicaStrides), and each weight texture one layer per replica.
 */

import { UserError } from "../errors.ts";
import { type LayerSpec, type ModelConfig, type ModelLayout, modelLayout } from "../model.ts";
import { ACTIVATION_FLAGS, C, type OpValues } from "./abi.ts";
import { type Dispatch, forward, type KernelFamily } from "./family.ts";
import { type GpuLayouts, gpuLayouts, roundUp4 } from "./layout.ts";
import { gpu } from "./gpu.ts";
import { software } from "./software.ts";

/** Steps of one chunk that may collect moments (diagnostics). */
export const DIAG_SLOTS = 8;
/** Evaluation passes encoded per submit, at most. */
export const EVAL_PASSES = 256;
/**
 * Rows of the evaluation passes of one submit, at most, over all the replicas of a group (it
 * bounds D and the readbacks); a replica's share is at least one pass.
 */
export const SUBMIT_ROWS = 32_768;
/** llvmpipe stops the loops of an invocation after this many iterations (src/gpu/software.ts). */
export const LLVMPIPE_LOOP_CAP = 65_536;

/** vec4 per row of the embedding's output: its group of tokens' dimensions, padded. */
export function embeddingQuads(layout: ModelLayout): number {
  return roundUp4(layout.group * layout.embedding.shape[1]) / 4;
}

/** Region offsets (in vec4) of one activation or gradient buffer. */
class Regions {
  size = 0;
  /** Windows are bound at region starts: align them to the 256-byte offset alignment. */
  take(quads: number): number {
    const at = this.size;
    this.size += Math.ceil(quads / 16) * 16;
    return at;
  }
}

/** Where the activations and gradients live: vec4 offsets in the buffers of each parity. */
export interface ActivationRegions {
  /** The size of each parity's activation and gradient buffer, in vec4. */
  readonly actQuads: readonly [number, number];
  readonly gradQuads: readonly [number, number];
  /** The embedding's output x0 = the first layer's input, and its gradient. */
  readonly x0: number;
  readonly dx0: number;
  /** Per layer: h, t and the batch statistics (activations), dh (gradients). */
  readonly h: readonly number[];
  readonly t: readonly number[];
  readonly stats: readonly number[];
  readonly dh: readonly number[];
  /** vec4 per row of the pass, over all the buffers (for the binding-size limit). */
  readonly perRow: number;
}

export function activationRegions(config: ModelConfig, rows: number): ActivationRegions {
  const act = [new Regions(), new Regions()];
  const grad = [new Regions(), new Regions()];
  const layout = modelLayout(config);
  // Each example has `positions` rows at each op (its FlattenConsecutive joins them).
  const inQ0 = embeddingQuads(layout);
  const x0 = act[1].take(rows * layout.positions * inQ0);
  const dx0 = grad[1].take(rows * layout.positions * inQ0);
  let perRow = 2 * layout.positions * inQ0;
  const h: number[] = [];
  const t: number[] = [];
  const stats: number[] = [];
  const dh: number[] = [];
  layout.layers.forEach((l, i) => {
    const outQ = roundUp4(l.nOut) / 4;
    const n = rows * l.positions * outQ;
    h.push(act[i % 2].take(n));
    t.push(act[i % 2].take(n));
    stats.push(act[i % 2].take(2 * outQ));
    dh.push(grad[i % 2].take(n));
    perRow += 3 * l.positions * outQ;
  });
  return {
    actQuads: [act[0].size, act[1].size],
    gradQuads: [grad[0].size, grad[1].size],
    x0,
    dx0,
    h,
    t,
    stats,
    dh,
    perRow: perRow + 64,
  };
}

/** The layout of Host: where the losses, each step's moments and the snapshot go (floats). */
export interface HostLayout {
  /** Floats of one step's moments, and where the DIAG_SLOTS blocks of them start. */
  readonly momentsSize: number;
  readonly momentsAt: number;
  /** The snapshot: the embedding's gradient, then per layer its weight gradient and dt. */
  readonly snapAt: number;
  readonly snapSize: number;
  readonly floats: number;
}

export interface PlanOptions {
  /** Rows of one training batch. */
  readonly batchSize: number;
  /** Training steps per chunk (one submit, one readback). */
  readonly chunkSteps: number;
  /** Rows per evaluation pass asked for (fewer if the kernels' limit is lower). */
  readonly evalRows?: number;
  /** The device's maxStorageBufferBindingSize. */
  readonly maxBindingBytes: number;
  /** The adapter's loop limit per invocation (LLVMPIPE_LOOP_CAP), or none. */
  readonly loopCap?: number;
  /** Independent models of this shape trained together (default 1). */
  readonly replicas?: number;
}

/** How far apart the replicas' parts of each buffer are (the Step's rep_* fields). */
export interface ReplicaStrides {
  /** vec4 of P and Pn: the parameters, then the running statistics. */
  readonly params: number;
  /** vec4 of each activation and each gradient buffer (the larger parity's size). */
  readonly act: number;
  readonly grad: number;
  /** Ints of D: one chunk of batches, or one submit of evaluation passes. */
  readonly data: number;
  /** Floats of Host. */
  readonly host: number;
}

export interface Plan {
  readonly config: ModelConfig;
  readonly layout: ModelLayout;
  /** The hidden layers, then the output layer. */
  readonly layers: readonly LayerSpec[];
  readonly tensors: GpuLayouts;
  readonly family: KernelFamily;
  readonly batchSize: number;
  readonly chunkSteps: number;
  readonly evalRows: number;
  /** The most rows of one pass: the kernels' loop limit and the binding size. */
  readonly maxRows: number;
  readonly regions: ActivationRegions;
  /** The uniforms: the embedding (0), each layer (l + 1), the loss (the output layer's op). */
  readonly ops: readonly OpValues[];
  readonly host: HostLayout;
  /** Ints in D: every replica's chunk of batches, or its evaluation passes of one submit. */
  readonly dataInts: number;
  /** Rows of one replica's evaluation passes per submit, at most (src/gpu/passes.ts). */
  readonly submitRows: number;
  /** Step uniforms: one per step of a chunk, or per evaluation pass. */
  readonly stepSlots: number;
  /** The models trained together, and their parts' strides in each buffer. */
  readonly replicas: number;
  readonly strides: ReplicaStrides;
}

/** Each op's uniform values, with the Host offsets of its diagnostics. */
function opValues(
  config: ModelConfig,
  layout: ModelLayout,
  tensors: GpuLayouts,
  family: KernelFamily,
  regions: ActivationRegions,
  batchSize: number,
): { ops: OpValues[]; momentsSize: number; snapSize: number } {
  const { blockSize: T, vocabSize: V } = config;
  const E = layout.embedding.shape[1];
  const P = tensors.params;
  // The running statistics follow the parameters in the same buffer.
  const run = (name: string) => P.size / 4 + tensors.running.quad(name);
  const zero: OpValues = {
    index: C.NONE,
    flags: 0,
    n_in: 0,
    n_out: 0,
    in_q: 0,
    out_q: 0,
    x: 0,
    h: 0,
    t: 0,
    dh: 0,
    stats: 0,
    w: 0,
    bias: 0,
    gamma: 0,
    beta: 0,
    run_mean: 0,
    run_var: 0,
    dw_groups: 0,
    eps: config.bnEps,
    positions: 1,
    group: layout.group,
    embd: E,
    embd_q: roundUp4(E) / 4,
    block: T,
    vocab: V,
    diag: 0,
    snap_w: 0,
    snap_dt: C.NONE,
  };
  // Diagnostics in Host: each op's moment partials, and in a snapshot each weight gradient
  // (padded as W: [4 in_q][4 out_q]) and each tanh layer's dt (padded: [rows][4 out_q]).
  let moments = family.embeddingMomentFloats(V, E);
  let snap = roundUp4(V * E);
  const ops: OpValues[] = [{
    ...zero,
    n_out: layout.group * E,
    out_q: embeddingQuads(layout),
    positions: layout.positions,
    t: regions.x0,
    dh: regions.dx0,
    w: P.quad(layout.embedding.name),
  }];
  layout.layers.forEach((l, i) => {
    const inQ = roundUp4(l.nIn) / 4;
    const outQ = roundUp4(l.nOut) / 4;
    const shape = family.layerShape(inQ, outQ);
    const prev = layout.layers[i - 1];
    // The previous layer's BatchNorm backward cannot ride along where a FlattenConsecutive
    // joins its rows: its column sums run over rows that this layer's columns cut across.
    const apart = i > 0 && l.flatten > 1 && prev.bn !== null;
    const flags = (l.bias ? C.HAS_BIAS : 0) | (l.bn ? C.HAS_BN : 0) |
      (l.act ? ACTIVATION_FLAGS[l.act] : 0) | (apart ? C.PREV_APART : 0);
    const snapW = snap;
    snap += 16 * inQ * outQ;
    const tanh = l.act === "tanh";
    const snapDt = tanh ? snap : C.NONE;
    if (tanh) snap += batchSize * l.positions * 4 * outQ;
    ops.push({
      ...zero,
      index: i,
      flags,
      positions: l.positions,
      n_in: l.nIn,
      n_out: l.nOut,
      in_q: inQ,
      out_q: outQ,
      x: i === 0 ? regions.x0 : regions.t[i - 1],
      h: regions.h[i],
      t: regions.t[i],
      dh: regions.dh[i],
      stats: regions.stats[i],
      bias: l.bias ? P.quad(l.bias.name) : 0,
      gamma: l.bn ? P.quad(l.bn.gamma.name) : 0,
      beta: l.bn ? P.quad(l.bn.beta.name) : 0,
      run_mean: l.bn ? run(l.bn.runMean.name) : 0,
      run_var: l.bn ? run(l.bn.runVar.name) : 0,
      dw_groups: shape.dwGroups,
      diag: moments,
      snap_w: snapW,
      snap_dt: snapDt,
    });
    moments += shape.momentFloats;
  });
  ops.push(ops[ops.length - 1]); // the loss runs with the output layer's uniforms
  return { ops, momentsSize: moments, snapSize: snap };
}

/**
 * Every dispatch a pass of `rows` rows may make: a training step (with or without DIAG), and
 * an evaluation pass.
 */
export function allDispatches(plan: Plan, rows: number): Dispatch[] {
  const f = plan.family;
  const at = { ...plan, batchSize: rows };
  return [
    ...forward(at, rows, true),
    f.loss(at, rows, true),
    ...f.backward(at, false),
    ...f.backward(at, true),
    ...forward(at, rows, false),
    f.loss(at, rows, false),
  ];
}

/**
 * The most rows a pass may have: within the adapter's loop limit for every dispatch (the
 * iterations grow with the rows, so the largest row count that passes is found by bisection),
 * and with every activation within one storage binding.
 */
function rowLimit(shape: Plan, loopCap: number | undefined, maxBindingBytes: number): number {
  const memory = Math.floor(maxBindingBytes / 16 / shape.regions.perRow / shape.replicas);
  if (loopCap === undefined) return memory;
  const fits = (rows: number) =>
    allDispatches(shape, rows).every((d) => shape.family.iterations(shape, d) <= loopCap);
  let lo = 0;
  let hi = memory;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** The largest batch a kernel family takes for this model, under these limits. */
export function maxBatch(
  config: ModelConfig,
  family: KernelFamily,
  limits: { maxBindingBytes: number; loopCap?: number; replicas?: number },
): number {
  return planModel(config, family, { batchSize: 2, chunkSteps: 1, ...limits }).maxRows;
}

export function planModel(config: ModelConfig, family: KernelFamily, opts: PlanOptions): Plan {
  const layout = modelLayout(config);
  const tensors = gpuLayouts(layout);
  const replicas = opts.replicas ?? 1;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > C.MAX_REPLICAS) {
    throw new UserError(`a group trains 1 to ${C.MAX_REPLICAS} replicas, not ${replicas}`);
  }
  const shapeOf = (rows: number, batchSize: number, evalRows: number): Plan => {
    const regions = activationRegions(config, rows);
    const values = opValues(config, layout, tensors, family, regions, batchSize);
    // The losses: one a step, or one a row of an evaluation submit.
    const submitRows = Math.max(Math.floor(SUBMIT_ROWS / replicas), evalRows);
    const momentsAt = Math.max(opts.chunkSteps, submitRows + evalRows);
    const snapAt = momentsAt + DIAG_SLOTS * values.momentsSize;
    const dataInts = Math.max(
      opts.chunkSteps * batchSize * (config.blockSize + 1),
      (submitRows + evalRows) * (config.blockSize + 1),
    );
    return {
      config,
      layout,
      layers: layout.layers,
      tensors,
      family,
      batchSize,
      chunkSteps: opts.chunkSteps,
      evalRows,
      maxRows: rows,
      regions,
      ops: values.ops,
      host: {
        momentsSize: values.momentsSize,
        momentsAt,
        snapAt,
        snapSize: values.snapSize,
        floats: snapAt + values.snapSize,
      },
      // Each replica trains on its own batches, and evaluates its own examples.
      dataInts: replicas * dataInts,
      submitRows,
      stepSlots: Math.max(opts.chunkSteps, EVAL_PASSES),
      replicas,
      strides: {
        params: (tensors.params.size + tensors.running.size) / 4,
        act: Math.max(...regions.actQuads),
        grad: Math.max(...regions.gradQuads),
        data: dataInts,
        host: snapAt + values.snapSize,
      },
    };
  };
  const most = rowLimit(shapeOf(1, 1, 1), opts.loopCap, opts.maxBindingBytes);
  if (opts.batchSize > most) {
    throw new UserError(
      `a batch of ${opts.batchSize} rows is more than the ${family.name} kernels take for ` +
        `this model${
          replicas > 1 ? ` times ${replicas} replicas` : ""
        } on this adapter (at most ${most}: ${
          opts.loopCap ? `its loops stop after ${opts.loopCap} iterations` : "memory"
        })`,
    );
  }
  const evalRows = Math.max(1, Math.min(opts.evalRows ?? 2048, most));
  const plan = shapeOf(Math.max(opts.batchSize, evalRows), opts.batchSize, evalRows);
  return { ...plan, maxRows: most };
}

/** WebGPU's default limits, which the device is opened with (src/gpu/device.ts). */
export const DEFAULT_LIMITS = {
  maxStorageBufferBindingSize: 128 * 1024 * 1024,
  maxBufferSize: 256 * 1024 * 1024,
} as const;

/** The most replicas `auto` puts in one group: past this, a group is as fast per run. */
export const AUTO_REPLICAS = 64;

/**
 * The most replicas of this model that one group takes under WebGPU's default limits, at most
 * AUTO_REPLICAS: the batch within both kernel families' limits, and every buffer within one
 * binding. (Evaluation passes get shorter as a group grows; a replica's losses and statistics
 * do not depend on how its split is cut, src/gpu/passes.ts.)
 */
export function maxReplicas(config: ModelConfig, batchSize: number, chunkSteps = 250): number {
  const bytes = DEFAULT_LIMITS.maxStorageBufferBindingSize;
  const fits = (replicas: number) =>
    [LLVMPIPE_LOOP_CAP, undefined].every((loopCap) =>
      [software, gpu].every((family) => {
        try {
          const p = planModel(config, family, {
            batchSize,
            chunkSteps,
            maxBindingBytes: bytes,
            loopCap,
            replicas,
          });
          const { strides } = p;
          return Math.max(strides.act, strides.grad) * 16 * replicas <= bytes &&
            p.dataInts * 4 <= bytes && strides.host * 4 * replicas <= bytes &&
            strides.params * 16 * replicas <= bytes;
        } catch {
          return false;
        }
      })
    );
  if (!fits(1)) return 1;
  let lo = 1;
  let hi = AUTO_REPLICAS;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
