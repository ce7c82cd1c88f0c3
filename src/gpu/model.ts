/**
 * The model on the GPU: its buffers, the per-layer uniforms and bind groups (made once), and
 * the encoding of training steps, evaluation and BatchNorm calibration as fixed sequences of
 * dispatches (shaders/).
 *
 * A training step is 2 L + 5 dispatches for L hidden layers (7 for `lecture`, 15 for `seed`):
 *   embedding_forward; linear_forward per hidden layer (BatchNorm and tanh fused) and for the
 *   output layer; cross_entropy (loss, its gradient, the output BatchNorm's backward);
 *   linear_backward for the output layer and each hidden layer (dW with SGD, and dx with the
 *   previous layer's tanh and BatchNorm backward fused); embedding_backward (with SGD).
 * Each dispatch depends on the one before, so fewer could only come from fusing more; every
 * dispatch costs ~20-40 us on llvmpipe (mostly handing the work to its threads) and a few us
 * on a GPU, whatever its size.
 *
 * Many steps are encoded into one command buffer and submitted together: the batches of a
 * whole chunk are uploaded at once, each step finds its own through a Step uniform at a
 * dynamic offset, and the losses stay on the GPU until the chunk's single readback.
 *
 * Buffers (shaders/common.wgsl): two copies of the parameters (with the running statistics)
 * that swap roles every step, two activation and two gradient buffers (layer l uses those of
 * parity l % 2, the embedding those of parity 1), the token ids, the losses, and uniforms.
 */

import type { Examples } from "../data.ts";
import type { Moments, Snapshot } from "../diagnostics.ts";
import { type ModelConfig, type ModelLayout, modelLayout } from "../model.ts";
import type { Gpu } from "./device.ts";
import { createKernels, type KernelName, type Kernels } from "./kernels.ts";
import { type BufferLayout, gpuLayouts, roundUp4, type WeightTexture } from "./layout.ts";

const UNIFORM_STRIDE = 256; // bytes: the largest minUniformBufferOffsetAlignment allowed
const OP_BYTES = 112; // sizeof(Op), rounded up to 16
const WINDOW_QUADS = 4096; // common.wgsl's WINDOW: 64 KiB of vec4
const MODE_TRAIN = 0;
const MODE_EVAL = 1;
const NONE = 0xffffffff;
const HAS_BIAS = 1;
const HAS_BN = 2;
const HAS_TANH = 4;
/** cross_entropy's workgroup size, and the most workgroups an evaluation pass uses. */
const CE_GROUP = 64;
const CE_MAX_GROUPS = 16;
/** Evaluation passes encoded per submit. */
const EVAL_PASSES = 16;
/** Steps of one chunk that may collect moments (diagnostics). */
export const DIAG_SLOTS = 8;

/**
 * The most rows one pass may have. A BatchNorm layer's forward, and every layer's input
 * gradient, loop in one invocation over all rows: per block of RB rows, over the layer's width
 * in vec4, and per vec4 over the RB rows again. llvmpipe silently stops a loop after 65,535
 * iterations, counting every loop nested in the outermost one, which would leave rows out:
 * rows x width / 4 must stay well below that (measured: 1,024 x 50 was right, 1,200 x 50 not).
 */
export function maxRows(config: ModelConfig): number {
  const widest = Math.max(
    ...modelLayout(config).layers.flatMap((l) => [roundUp4(l.nIn) / 4, roundUp4(l.nOut) / 4]),
  );
  return Math.floor(MAX_ROW_LOOP / widest);
}

const MAX_ROW_LOOP = 30_000;

export interface GpuModelOptions {
  /** Rows of one training batch. */
  readonly batchSize: number;
  /** Training steps per chunk (one submit, one readback). */
  readonly chunkSteps?: number;
  /** Rows per evaluation pass. */
  readonly evalRows?: number;
}

export interface GpuActivations {
  x0: Float32Array;
  dx0: Float32Array;
  layers: {
    h: Float32Array;
    t: Float32Array;
    dh: Float32Array;
    mean: Float32Array;
    variance: Float32Array;
  }[];
}

/** The fields of the Op uniform (shaders/common.wgsl), in order. */
interface OpFields {
  index: number;
  flags: number;
  nIn: number;
  nOut: number;
  inQ: number;
  outQ: number;
  x: number;
  h: number;
  t: number;
  dh: number;
  stats: number;
  w: number;
  bias: number;
  gamma: number;
  beta: number;
  runMean: number;
  runVar: number;
  dwGroups: number;
  momentum: number;
  eps: number;
  embd: number;
  block: number;
  vocab: number;
  diag: number;
  snapW: number;
  snapDt: number;
}

/** What a chunk of training steps returns. */
export interface ChunkResult {
  readonly losses: Float32Array;
  /** For each step that was asked for them (by its index in the chunk): each weight's moments. */
  readonly moments: ReadonlyMap<number, Moments[]>;
}

/** Which steps of a chunk collect diagnostics (indices in the chunk). */
export interface ChunkDiagnostics {
  readonly moments?: readonly number[];
  /** Capture the last step's gradients for snapshot(). */
  readonly snapshot?: boolean;
}

const FLOAT_FIELDS = new Set(["momentum", "eps"]);

function packOp(f: OpFields): ArrayBuffer {
  const buf = new ArrayBuffer(OP_BYTES);
  const dv = new DataView(buf);
  Object.entries(f).forEach(([k, v], i) => {
    if (FLOAT_FIELDS.has(k)) dv.setFloat32(4 * i, v, true);
    else dv.setUint32(4 * i, v, true);
  });
  return buf;
}

/** One dispatch: kernel, op (0 = embedding, l + 1 = layer l, L + 2 = the loss), workgroups. */
type Dispatch = [KernelName, number, number, number];

/** Where the activations and gradients live: vec4 offsets in the buffers of each parity. */
interface ActivationRegions {
  act: Regions[];
  grad: Regions[];
  x0: number;
  dx0: number;
  h: number[];
  t: number[];
  dh: number[];
  stats: number[];
  /** vec4 per row of the batch, over all the buffers (for the binding-size limit). */
  perRow: number;
}

/** Regions (in vec4) of one activation or gradient buffer, for a given number of rows. */
class Regions {
  size = 0;
  /** Windows are bound at region starts: align them to the 256-byte offset alignment. */
  take(quads: number): number {
    const at = this.size;
    this.size += Math.ceil(quads / 16) * 16;
    return at;
  }
}

export class GpuModel {
  readonly config: ModelConfig;
  readonly layout: ModelLayout;
  readonly batchSize: number;
  readonly chunkSteps: number;
  readonly evalRows: number;
  readonly #device: GPUDevice;
  readonly #kernels: Kernels;
  /** The non-weight parameters, then the running statistics, in one buffer. */
  readonly #params: BufferLayout;
  readonly #running: BufferLayout;
  readonly #pBuffers: [GPUBuffer, GPUBuffer];
  /** Each layer's weight, as two textures that swap roles like the parameter buffers. */
  readonly #weightLayouts: readonly WeightTexture[];
  readonly #weights: [GPUTexture, GPUTexture][];
  /** Bound in place of a weight by the ops that have none. */
  readonly #noWeight: [GPUTexture, GPUTexture];
  readonly #act: [GPUBuffer, GPUBuffer];
  readonly #grad: [GPUBuffer, GPUBuffer];
  readonly #data: GPUBuffer;
  /** Losses, then DIAG_SLOTS blocks of moments, then the snapshot (common.wgsl's Host). */
  readonly #host: GPUBuffer;
  readonly #momentsAt: number;
  readonly #momentsSize: number;
  readonly #snapAt: number;
  readonly #snapSize: number;
  readonly #steps: GPUBuffer;
  readonly #ops: GPUBuffer;
  readonly #stepGroup: GPUBindGroup;
  /** [op][parity of the parameter buffers]. */
  readonly #groups: [GPUBindGroup, GPUBindGroup][];
  readonly #opFields: OpFields[];
  /** Which of the two parameter buffers holds the current parameters. */
  #parity = 0;
  /** Where the activations and gradients live (for the host's reads). */
  readonly #acts: ActivationRegions;

  private constructor(gpu: Gpu, kernels: Kernels, config: ModelConfig, opts: GpuModelOptions) {
    this.config = config;
    this.layout = modelLayout(config);
    this.batchSize = opts.batchSize;
    this.chunkSteps = opts.chunkSteps ?? 200;
    this.#device = gpu.device;
    this.#kernels = kernels;
    const layouts = gpuLayouts(this.layout);
    this.#params = layouts.params;
    this.#running = layouts.running;
    this.#weightLayouts = layouts.weights;
    const { blockSize: T, nEmbd: E, vocabSize: V } = config;
    const L = this.layout.layers.length;
    const inQ0 = roundUp4(T * E) / 4;
    const layerQ = this.layout.layers.map((l) => [roundUp4(l.nIn) / 4, roundUp4(l.nOut) / 4]);

    // Evaluation rows per pass: large passes amortize dispatches, but must stay within the
    // kernels' loops (maxRows) and keep the activations within one storage binding.
    const maxBinding = this.#device.limits.maxStorageBufferBindingSize;
    const memRows = Math.floor(maxBinding / 16 / this.#activationRegions(1).perRow);
    const loopRows = maxRows(config);
    this.evalRows = Math.max(1, Math.min(opts.evalRows ?? 2048, loopRows, memRows));
    const rows = Math.max(this.batchSize, this.evalRows);
    const most = Math.min(loopRows, memRows);
    if (this.batchSize > most) {
      throw new Error(`a batch of ${this.batchSize} exceeds the kernels' limit of ${most} rows`);
    }
    const regions = this.#activationRegions(rows);
    this.#acts = regions;

    const d = this.#device;
    const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
    const buffer = (label: string, bytes: number, usage = STORAGE) =>
      d.createBuffer({ label, size: Math.max(16, Math.ceil(bytes / 16) * 16), usage });
    const pBytes = (this.#params.size + this.#running.size) * 4;
    this.#pBuffers = [buffer("params.0", pBytes), buffer("params.1", pBytes)];
    const TEXTURE = GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.STORAGE_BINDING |
      GPUTextureUsage.COPY_DST | GPUTextureUsage.COPY_SRC;
    const texture = (label: string, width: number, height: number) =>
      d.createTexture({ label, size: [width, height], format: "rgba32float", usage: TEXTURE });
    this.#weights = this.#weightLayouts.map((w) =>
      [0, 1].map((p) => texture(`${w.tensor.name}.${p}`, w.width, w.height)) as [
        GPUTexture,
        GPUTexture,
      ]
    );
    this.#noWeight = [texture("no weight.0", 1, 1), texture("no weight.1", 1, 1)];
    // Activations and gradients are also read through 64 KiB uniform windows that may start
    // at any region: pad each buffer so that every window lies inside it.
    const WINDOWED = STORAGE | GPUBufferUsage.UNIFORM;
    const pad = WINDOW_QUADS * 16;
    this.#act = [0, 1].map((p) =>
      buffer(`activations.${p}`, regions.act[p].size * 16 + pad, WINDOWED)
    ) as [GPUBuffer, GPUBuffer];
    this.#grad = [0, 1].map((p) =>
      buffer(`gradients.${p}`, regions.grad[p].size * 16 + pad, WINDOWED)
    ) as [GPUBuffer, GPUBuffer];
    const dataInts = Math.max(
      this.chunkSteps * this.batchSize * (T + 1),
      EVAL_PASSES * this.evalRows * (T + 1),
    );
    this.#data = buffer("data", dataInts * 4);
    // Where the diagnostics go in Host: each op's moment partials (one vec4 per dW invocation,
    // or per embedding element), and in a snapshot each weight gradient and each dt.
    const { WX, WY, RK } = kernels.tiles;
    const dwGroups = layerQ.map(([inQ, outQ]) =>
      Math.ceil((4 * inQ) / (WY * RK)) * Math.ceil(outQ / WX)
    );
    const diag = [0];
    const snapW = [0];
    const snapDt = [NONE];
    let moments = V * E * 4;
    let snap = roundUp4(V * E);
    this.layout.layers.forEach((l, i) => {
      const [inQ, outQ] = layerQ[i];
      diag.push(moments);
      moments += dwGroups[i] * WX * WY * 4;
      snapW.push(snap); // the weight gradient, padded as W: [4 inQ][4 outQ]
      snap += 16 * inQ * outQ;
      snapDt.push(l.tanh ? snap : NONE); // dt, padded: [batch][4 outQ]
      if (l.tanh) snap += this.batchSize * 4 * outQ;
    });
    this.#snapSize = snap;
    this.#momentsAt = Math.max(this.chunkSteps, EVAL_PASSES * CE_MAX_GROUPS);
    this.#momentsSize = moments;
    this.#snapAt = this.#momentsAt + DIAG_SLOTS * moments;
    this.#host = buffer("host", (this.#snapAt + snap) * 4);
    const UNIFORM = GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;
    const stepSlots = Math.max(this.chunkSteps, EVAL_PASSES);
    this.#steps = buffer("steps", stepSlots * UNIFORM_STRIDE, UNIFORM);

    // The ops: the embedding, each layer, and the loss (the output layer's op, bound with its
    // gradient buffer writable). Their uniforms never change.
    const P = this.#params;
    // The running statistics follow the parameters in the same buffer.
    const run = (name: string) => this.#params.size / 4 + this.#running.quad(name);
    const zero: OpFields = {
      index: NONE,
      flags: 0,
      nIn: 0,
      nOut: 0,
      inQ: 0,
      outQ: 0,
      x: 0,
      h: 0,
      t: 0,
      dh: 0,
      stats: 0,
      w: 0,
      bias: 0,
      gamma: 0,
      beta: 0,
      runMean: 0,
      runVar: 0,
      dwGroups: 0,
      momentum: config.bnMomentum,
      eps: config.bnEps,
      embd: E,
      block: T,
      vocab: V,
      diag: 0,
      snapW: 0,
      snapDt: NONE,
    };
    this.#opFields = [{
      ...zero,
      nOut: T * E,
      outQ: inQ0,
      t: regions.x0,
      dh: regions.dx0,
      w: P.quad(this.layout.embedding.name),
      diag: diag[0],
      snapW: snapW[0],
    }];
    this.layout.layers.forEach((l, i) => {
      const [inQ, outQ] = layerQ[i];
      const flags = (l.bias ? HAS_BIAS : 0) | (l.bn ? HAS_BN : 0) | (l.tanh ? HAS_TANH : 0);
      this.#opFields.push({
        ...zero,
        index: i,
        flags,
        nIn: l.nIn,
        nOut: l.nOut,
        inQ,
        outQ,
        x: i === 0 ? regions.x0 : regions.t[i - 1],
        h: regions.h[i],
        t: regions.t[i],
        dh: regions.dh[i],
        stats: regions.stats[i],
        bias: l.bias ? P.quad(l.bias.name) : 0,
        gamma: l.bn ? P.quad(l.bn.gamma.name) : 0,
        beta: l.bn ? P.quad(l.bn.beta.name) : 0,
        runMean: l.bn ? run(l.bn.runMean.name) : 0,
        runVar: l.bn ? run(l.bn.runVar.name) : 0,
        dwGroups: dwGroups[i],
        diag: diag[i + 1],
        snapW: snapW[i + 1],
        snapDt: snapDt[i + 1],
      });
    });
    this.#opFields.push(this.#opFields[L]); // the loss
    this.#ops = buffer("ops", this.#opFields.length * UNIFORM_STRIDE, UNIFORM);
    this.#opFields.forEach((f, i) => d.queue.writeBuffer(this.#ops, i * UNIFORM_STRIDE, packOp(f)));

    this.#stepGroup = d.createBindGroup({
      label: "step",
      layout: kernels.stepLayout,
      entries: [{ binding: 0, resource: { buffer: this.#steps, size: 32 } }],
    });
    const opBinding = (i: number) => ({
      buffer: this.#ops,
      offset: i * UNIFORM_STRIDE,
      size: OP_BYTES,
    });
    const window = (buffer: GPUBuffer, quad: number) => ({
      buffer,
      offset: quad * 16,
      size: WINDOW_QUADS * 16,
    });
    this.#groups = this.#opFields.map((f, i) => {
      // Layer l = i - 1 writes parity l % 2 and reads parity (l + 1) % 2; the loss writes the
      // output layer's gradient, so its gradient buffers swap roles.
      const loss = i === L + 1;
      const layer = loss ? L - 1 : i - 1;
      const out = i === 0 ? 1 : layer % 2;
      const inp = 1 - out;
      const [gin, gout] = loss ? [inp, out] : [out, inp];
      const weight = i > 0 && !loss ? this.#weights[i - 1] : this.#noWeight;
      return [0, 1].map((parity) =>
        d.createBindGroup({
          label: `op ${i} parity ${parity}`,
          layout: kernels.opLayout,
          entries: [
            { binding: 0, resource: opBinding(i) },
            // linear_backward's "prev": the layer feeding this one (the embedding for layer 0).
            { binding: 1, resource: opBinding(Math.max(i - 1, 0)) },
            { binding: 2, resource: { buffer: this.#pBuffers[parity] } },
            { binding: 3, resource: { buffer: this.#pBuffers[1 - parity] } },
            { binding: 4, resource: { buffer: this.#act[inp] } },
            { binding: 5, resource: { buffer: this.#act[out] } },
            { binding: 6, resource: { buffer: this.#grad[gin] } },
            { binding: 7, resource: { buffer: this.#grad[gout] } },
            { binding: 8, resource: { buffer: this.#data } },
            { binding: 9, resource: { buffer: this.#host } },
            { binding: 10, resource: window(this.#act[inp], i > 0 && !loss ? f.x : 0) },
            // The embedding reads its gradient, dx, through this window too.
            { binding: 11, resource: window(this.#grad[gin], loss ? 0 : f.dh) },
            { binding: 12, resource: weight[parity].createView() },
            { binding: 13, resource: weight[1 - parity].createView() },
          ],
        })
      ) as [GPUBindGroup, GPUBindGroup];
    });
  }

  /** Compiles the kernels and allocates the buffers; parameters start at zero. */
  static async create(gpu: Gpu, config: ModelConfig, opts: GpuModelOptions): Promise<GpuModel> {
    if (opts.batchSize < 2) throw new Error("training with BatchNorm needs a batch of at least 2");
    const kernels = await createKernels(gpu.device);
    return new GpuModel(gpu, kernels, config, opts);
  }

  /** Where every activation and gradient lives, for passes of up to `rows` rows. */
  #activationRegions(rows: number): ActivationRegions {
    const act = [new Regions(), new Regions()];
    const grad = [new Regions(), new Regions()];
    const inQ0 = roundUp4(this.config.blockSize * this.config.nEmbd) / 4;
    const x0 = act[1].take(rows * inQ0);
    const dx0 = grad[1].take(rows * inQ0);
    let perRow = 2 * inQ0;
    const h: number[] = [];
    const t: number[] = [];
    const dh: number[] = [];
    const stats: number[] = [];
    this.layout.layers.forEach((l, i) => {
      const outQ = roundUp4(l.nOut) / 4;
      h.push(act[i % 2].take(rows * outQ));
      t.push(act[i % 2].take(rows * outQ));
      stats.push(act[i % 2].take(2 * outQ));
      dh.push(grad[i % 2].take(rows * outQ));
      perRow += 3 * outQ;
    });
    return { act, grad, x0, dx0, h, t, dh, stats, perRow: perRow + 64 };
  }

  /** Uploads parameters and running statistics given in the CPU layout (src/model.ts). */
  setParams(params: Float32Array, buffers: Float32Array): void {
    const q = this.#device.queue;
    const all = new Float32Array(this.#params.size + this.#running.size);
    all.set(this.#params.pack(params));
    all.set(this.#running.pack(buffers), this.#params.size);
    // Both copies: the padding stays zero in each, and nothing is left uninitialized.
    for (const b of this.#pBuffers) q.writeBuffer(b, 0, all);
    this.#weightLayouts.forEach((w, l) => {
      const data = w.pack(params);
      for (const t of this.#weights[l]) {
        q.writeTexture({ texture: t }, data, { bytesPerRow: w.width * 16 }, [w.width, w.height]);
      }
    });
  }

  /** Downloads the current parameters and running statistics, in the CPU layout. */
  async getParams(): Promise<{ params: Float32Array; buffers: Float32Array }> {
    const d = this.#device;
    const vectors = this.#params.size + this.#running.size;
    // Texture copies need rows of a multiple of 256 bytes.
    const strides = this.#weightLayouts.map((w) => Math.ceil((w.width * 16) / 256) * 64);
    const offsets: number[] = [];
    let floats = vectors;
    this.#weightLayouts.forEach((w, l) => {
      offsets.push(floats);
      floats += strides[l] * w.height;
    });
    const staging = d.createBuffer({
      size: floats * 4,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = d.createCommandEncoder();
    enc.copyBufferToBuffer(this.#pBuffers[this.#parity], 0, staging, 0, vectors * 4);
    this.#weightLayouts.forEach((w, l) => {
      enc.copyTextureToBuffer(
        { texture: this.#weights[l][this.#parity] },
        { buffer: staging, offset: offsets[l] * 4, bytesPerRow: strides[l] * 4 },
        [w.width, w.height],
      );
    });
    d.queue.submit([enc.finish()]);
    const all = await this.#mapFloats(staging);
    const params = new Float32Array(this.layout.nParams);
    const buffers = new Float32Array(this.layout.nBuffers);
    this.#params.unpack(all, params);
    this.#running.unpack(all.subarray(this.#params.size), buffers);
    this.#weightLayouts.forEach((w, l) => w.unpack(all.subarray(offsets[l]), strides[l], params));
    return { params, buffers };
  }

  /**
   * The activations of the last pass over `rows` examples, in the CPU layout ([rows, n]
   * row-major): the embedding output and its gradient, and per layer the linear output h,
   * the output t, the gradient w.r.t. h, and the batch mean and variance. For tests and
   * diagnostics; a training chunk's values are those of its last step.
   */
  async readActivations(rows: number): Promise<GpuActivations> {
    const regions = this.#acts;
    const [act0, act1, grad0, grad1] = await Promise.all([
      this.#read(this.#act[0], 0, regions.act[0].size * 4),
      this.#read(this.#act[1], 0, regions.act[1].size * 4),
      this.#read(this.#grad[0], 0, regions.grad[0].size * 4),
      this.#read(this.#grad[1], 0, regions.grad[1].size * 4),
    ]);
    const act = [act0, act1];
    const grad = [grad0, grad1];
    const matrix = (all: Float32Array, quad: number, r: number, n: number) => {
      const stride = roundUp4(n);
      const out = new Float32Array(r * n);
      for (let i = 0; i < r; i++) {
        out.set(all.subarray(quad * 4 + i * stride, quad * 4 + i * stride + n), i * n);
      }
      return out;
    };
    const K0 = this.config.blockSize * this.config.nEmbd;
    return {
      x0: matrix(act[1], regions.x0, rows, K0),
      dx0: matrix(grad[1], regions.dx0, rows, K0),
      layers: this.layout.layers.map((l, i) => ({
        h: matrix(act[i % 2], regions.h[i], rows, l.nOut),
        t: matrix(act[i % 2], regions.t[i], rows, l.nOut),
        dh: matrix(grad[i % 2], regions.dh[i], rows, l.nOut),
        mean: matrix(act[i % 2], regions.stats[i], 1, l.nOut),
        variance: matrix(act[i % 2], regions.stats[i] + roundUp4(l.nOut) / 4, 1, l.nOut),
      })),
    };
  }

  async #read(buffer: GPUBuffer, offsetFloats: number, floats: number): Promise<Float32Array> {
    const d = this.#device;
    const staging = d.createBuffer({
      size: Math.max(4, floats * 4),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = d.createCommandEncoder();
    if (floats > 0) enc.copyBufferToBuffer(buffer, offsetFloats * 4, staging, 0, floats * 4);
    d.queue.submit([enc.finish()]);
    return (await this.#mapFloats(staging)).subarray(0, floats);
  }

  async #mapFloats(staging: GPUBuffer): Promise<Float32Array> {
    await staging.mapAsync(GPUMapMode.READ);
    const out = new Float32Array(staging.getMappedRange().slice(0));
    staging.unmap();
    staging.destroy();
    return out;
  }

  #writeStep(
    slot: number,
    s: {
      lr: number;
      rows: number;
      data: number;
      loss: number;
      mode: number;
      statsLayer?: number;
      diag?: number;
      snap?: number;
    },
  ): void {
    const buf = new ArrayBuffer(32);
    const dv = new DataView(buf);
    dv.setFloat32(0, s.lr, true);
    [s.rows, s.data, s.loss, s.mode, s.statsLayer ?? NONE, s.diag ?? NONE, s.snap ?? NONE]
      .forEach((v, i) => dv.setUint32(4 + 4 * i, v, true));
    this.#device.queue.writeBuffer(this.#steps, slot * UNIFORM_STRIDE, buf);
  }

  /** Whether layer l's shared operands fit the uniform windows for passes of `rows` rows. */
  #windowed(l: number, rows: number, backward: boolean): boolean {
    const f = this.#opFields[l + 1];
    return rows * f.inQ <= WINDOW_QUADS && (!backward || rows * f.outQ <= WINDOW_QUADS);
  }

  /**
   * The forward dispatches of one pass over `rows` examples. In evaluation, layers without
   * batch statistics split their rows over several workgroups; `upTo` stops after that layer.
   */
  #forwardDispatches(rows: number, train: boolean, upTo?: number): Dispatch[] {
    const { WX, RB } = this.#kernels.tiles;
    const last = upTo ?? this.layout.layers.length - 1;
    const list: Dispatch[] = [
      ["embeddingForward", 0, Math.ceil((rows * this.config.blockSize) / 64), 1],
    ];
    for (let i = 0; i <= last; i++) {
      const f = this.#opFields[i + 1];
      const batchStats = (f.flags & HAS_BN) !== 0 && (train || i === upTo);
      const rowGroups = batchStats ? 1 : Math.ceil(rows / RB);
      const kernel = this.#windowed(i, rows, false) ? "linearForwardWindowed" : "linearForward";
      list.push([kernel, i + 1, Math.ceil(f.outQ / WX), rowGroups]);
    }
    return list;
  }

  /**
   * Every dispatch of a training step, in order; the last ones leave the new parameters in Pn.
   * With `diag`, the backward kernels are the variants that also write diagnostics.
   */
  #stepDispatches(diag = false): Dispatch[] {
    const { WX } = this.#kernels.tiles;
    const L = this.layout.layers.length;
    const list = this.#forwardDispatches(this.batchSize, true);
    list.push(["crossEntropy", L + 1, 1, 1]);
    for (let i = L - 1; i >= 0; i--) {
      const f = this.#opFields[i + 1];
      const windowed = this.#windowed(i, this.batchSize, true);
      const kernel = diag
        ? (windowed ? "linearBackwardWindowedDiag" : "linearBackwardDiag")
        : (windowed ? "linearBackwardWindowed" : "linearBackward");
      list.push([kernel, i + 1, f.dwGroups + Math.ceil(f.inQ / WX), 1]);
    }
    const { vocabSize, nEmbd } = this.config;
    const windowed = this.batchSize * this.#opFields[0].outQ <= WINDOW_QUADS;
    const embedding = diag
      ? (windowed ? "embeddingBackwardWindowedDiag" : "embeddingBackwardDiag")
      : (windowed ? "embeddingBackwardWindowed" : "embeddingBackward");
    list.push([embedding, 0, Math.ceil(vocabSize / 8), Math.ceil(nEmbd / 4)]);
    return list;
  }

  #encode(pass: GPUComputePassEncoder, list: Dispatch[]): void {
    let last: KernelName | undefined;
    for (const [kernel, op, x, y] of list) {
      if (kernel !== last) pass.setPipeline(this.#kernels.pipelines[kernel]);
      last = kernel;
      pass.setBindGroup(1, this.#groups[op][this.#parity]);
      pass.dispatchWorkgroups(x, y);
    }
  }

  /** The number of dispatches in one training step. */
  get dispatchesPerStep(): number {
    return this.#stepDispatches().length;
  }

  /**
   * Runs `lrs.length` SGD steps (at most chunkSteps) on the given batches: `batches` holds,
   * per step, the contexts [batchSize][blockSize] then the targets [batchSize]. Resolves to the
   * losses of the steps (and the diagnostics asked for, at most DIAG_SLOTS steps of moments);
   * a later chunk may be submitted before this one resolves, except after a snapshot step,
   * which snapshot() must read first.
   */
  trainChunk(
    batches: Int32Array<ArrayBuffer>,
    lrs: ArrayLike<number>,
    diag: ChunkDiagnostics = {},
  ): Promise<ChunkResult> {
    const steps = lrs.length;
    const B = this.batchSize;
    const per = B * (this.config.blockSize + 1);
    const moments = diag.moments ?? [];
    if (steps < 1 || steps > this.chunkSteps || batches.length !== steps * per) {
      throw new Error("trainChunk: batches and learning rates do not match the chunk size");
    }
    if (moments.length > DIAG_SLOTS || moments.some((s) => s < 0 || s >= steps)) {
      throw new Error(`trainChunk: at most ${DIAG_SLOTS} steps of the chunk collect moments`);
    }
    const d = this.#device;
    d.queue.writeBuffer(this.#data, 0, batches);
    const diagSlot = new Map(moments.map((s, slot) => [s, slot]));
    const plain = this.#stepDispatches(false);
    const withDiag = this.#stepDispatches(true);
    const enc = d.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (let s = 0; s < steps; s++) {
      const slot = diagSlot.get(s);
      const snap = diag.snapshot && s === steps - 1;
      this.#writeStep(s, {
        lr: lrs[s],
        rows: B,
        data: s * per,
        loss: s,
        mode: MODE_TRAIN,
        diag: slot === undefined ? NONE : this.#momentsAt + slot * this.#momentsSize,
        snap: snap ? this.#snapAt : NONE,
      });
      pass.setBindGroup(0, this.#stepGroup, [s * UNIFORM_STRIDE]);
      this.#encode(pass, slot === undefined && !snap ? plain : withDiag);
      this.#parity = 1 - this.#parity;
    }
    pass.end();
    const readMoments = moments.length > 0;
    const floats = readMoments ? this.#momentsAt + moments.length * this.#momentsSize : steps;
    const staging = d.createBuffer({
      size: floats * 4,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    enc.copyBufferToBuffer(this.#host, 0, staging, 0, floats * 4);
    d.queue.submit([enc.finish()]);
    return this.#mapFloats(staging).then((host) => ({
      losses: host.slice(0, steps),
      moments: new Map(moments.map((s, slot) => [
        s,
        this.#moments(host.subarray(this.#momentsAt + slot * this.#momentsSize)),
      ])),
    }));
  }

  /** Each weight's moments, summed (in float64) from the kernels' per-invocation partials. */
  #moments(block: Float32Array): Moments[] {
    const ops = [this.layout.embedding, ...this.layout.layers.map((l) => l.weight)];
    return ops.map((t, i) => {
      const from = this.#opFields[i].diag;
      const to = i + 1 < this.#opFields.length - 1 ? this.#opFields[i + 1].diag : this.#momentsSize;
      const sums = [0, 0, 0, 0];
      for (let j = from; j < to; j++) sums[j % 4] += block[j];
      return {
        name: t.name,
        n: t.size,
        gradSum: sums[0],
        gradSumSq: sums[1],
        paramSum: sums[2],
        paramSumSq: sums[3],
      };
    });
  }

  /**
   * The values of the last training step, which must have been a snapshot step: the gradients
   * its DIAG kernels wrote, the tanh outputs left in the activation buffers, and the
   * parameters after it. Call it before training further.
   */
  async snapshot(step: number): Promise<Snapshot> {
    const [host, acts, params] = await Promise.all([
      this.#read(this.#host, this.#snapAt, this.#snapSize),
      this.readActivations(this.batchSize),
      this.getParams(),
    ]);
    /** rows x cols values out of a padded [rows][roundUp4(cols)] matrix at `at`. */
    const unpad = (at: number, rows: number, cols: number) => {
      const stride = roundUp4(cols);
      const out = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) {
        out.set(host.subarray(at + r * stride, at + r * stride + cols), r * cols);
      }
      return out;
    };
    const E = this.layout.embedding;
    return {
      step,
      tanh: this.layout.layers.flatMap((l, i) =>
        l.tanh
          ? [{
            t: acts.layers[i].t,
            dt: unpad(this.#opFields[i + 1].snapDt, this.batchSize, l.nOut),
          }]
          : []
      ),
      weights: [
        {
          name: E.name,
          shape: E.shape,
          grad: host.slice(0, E.size),
          param: params.params.slice(E.offset, E.offset + E.size),
        },
        ...this.layout.layers.map((l, i) => ({
          name: l.weight.name,
          shape: l.weight.shape,
          grad: unpad(this.#opFields[i + 1].snapW, l.nIn, l.nOut),
          param: params.params.slice(l.weight.offset, l.weight.offset + l.weight.size),
        })),
      ],
    };
  }

  /** Uploads up to EVAL_PASSES passes of examples; returns each pass's row count. */
  #uploadPasses(ex: Examples, from: number, statsLayer = NONE): number[] {
    const T = this.config.blockSize;
    const out: number[] = [];
    const data = new Int32Array(EVAL_PASSES * this.evalRows * (T + 1));
    let at = 0;
    for (let p = 0, row = from; p < EVAL_PASSES && row < ex.n; p++, row += this.evalRows) {
      const rows = Math.min(this.evalRows, ex.n - row);
      data.set(ex.x.subarray(row * T, (row + rows) * T), at);
      data.set(ex.y.subarray(row, row + rows), at + rows * T);
      this.#writeStep(p, {
        lr: 0,
        rows,
        data: at,
        loss: p * CE_MAX_GROUPS,
        mode: MODE_EVAL,
        statsLayer,
      });
      at += rows * (T + 1);
      out.push(rows);
    }
    this.#device.queue.writeBuffer(this.#data, 0, data, 0, at);
    return out;
  }

  /** Mean loss over all examples, in evaluation mode (running BatchNorm statistics). */
  async evaluate(ex: Examples): Promise<number> {
    if (ex.n === 0) return NaN;
    const L = this.layout.layers.length;
    let total = 0;
    for (let row = 0; row < ex.n; row += EVAL_PASSES * this.evalRows) {
      const passes = this.#uploadPasses(ex, row);
      const groups = passes.map((rows) => Math.min(CE_MAX_GROUPS, Math.ceil(rows / CE_GROUP)));
      const enc = this.#device.createCommandEncoder();
      const pass = enc.beginComputePass();
      passes.forEach((rows, p) => {
        pass.setBindGroup(0, this.#stepGroup, [p * UNIFORM_STRIDE]);
        this.#encode(pass, [
          ...this.#forwardDispatches(rows, false),
          ["crossEntropy", L + 1, groups[p], 1],
        ]);
      });
      pass.end();
      this.#device.queue.submit([enc.finish()]);
      const losses = await this.#read(this.#host, 0, passes.length * CE_MAX_GROUPS);
      groups.forEach((n, p) => {
        for (let g = 0; g < n; g++) total += losses[p * CE_MAX_GROUPS + g];
      });
    }
    return total / ex.n;
  }

  /**
   * Sets every BatchNorm's running statistics to the exact statistics of its input over all
   * the examples, layer by layer (each layer's inputs normalized with the statistics already
   * set for the layers before it), as makemore does after training. Each pass measures one
   * chunk's mean and variance; the chunks are combined on the CPU in float64.
   */
  async calibrate(ex: Examples): Promise<void> {
    if (ex.n === 0) return;
    const regions = this.#acts;
    for (let i = 0; i < this.layout.layers.length; i++) {
      if (!this.layout.layers[i].bn) continue;
      const f = this.#opFields[i + 1];
      const n = f.outQ * 4;
      let count = 0;
      const mean = new Float64Array(n);
      const m2 = new Float64Array(n);
      for (let row = 0; row < ex.n; row += EVAL_PASSES * this.evalRows) {
        const passes = this.#uploadPasses(ex, row, i);
        const d = this.#device;
        const staging = d.createBuffer({
          size: passes.length * 2 * n * 4,
          usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
        });
        // Each pass's statistics are copied out before the next pass overwrites them.
        const enc = d.createCommandEncoder();
        passes.forEach((rows, p) => {
          const pass = enc.beginComputePass();
          pass.setBindGroup(0, this.#stepGroup, [p * UNIFORM_STRIDE]);
          this.#encode(pass, this.#forwardDispatches(rows, false, i));
          pass.end();
          const from = regions.stats[i] * 16;
          enc.copyBufferToBuffer(this.#act[i % 2], from, staging, p * 2 * n * 4, 2 * n * 4);
        });
        d.queue.submit([enc.finish()]);
        const stats = await this.#mapFloats(staging);
        passes.forEach((rows, p) => {
          // Chan et al.'s pairwise update of (count, mean, M2).
          const total = count + rows;
          for (let j = 0; j < n; j++) {
            const m = stats[p * 2 * n + j];
            const chunkM2 = stats[p * 2 * n + n + j] * Math.max(rows - 1, 1);
            const delta = m - mean[j];
            mean[j] += (delta * rows) / total;
            m2[j] += chunkM2 + (delta * delta * count * rows) / total;
          }
          count = total;
        });
      }
      const q = this.#device.queue;
      const P = this.#pBuffers[this.#parity];
      q.writeBuffer(P, f.runMean * 16, Float32Array.from(mean));
      q.writeBuffer(P, f.runVar * 16, Float32Array.from(m2, (v) => v / Math.max(count - 1, 1)));
    }
  }

  /**
   * Microseconds per dispatch of each dispatch of a training step, each timed alone: `reps`
   * copies in one pass against the current state (the parameters are not changed: the
   * updates go to Pn, which the timed copies keep overwriting). The wait for the GPU costs
   * ~12 ms whatever the work on llvmpipe, so each is timed at two counts and differenced.
   */
  async profile(reps = 50): Promise<{ kernel: KernelName; op: number; us: number }[]> {
    this.#writeStep(0, {
      lr: 0,
      rows: this.batchSize,
      data: 0,
      loss: 0,
      mode: MODE_TRAIN,
    });
    const run = async (d: Dispatch, n: number) => {
      const enc = this.#device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setBindGroup(0, this.#stepGroup, [0]);
      this.#encode(pass, new Array(n).fill(d));
      pass.end();
      const t0 = performance.now();
      this.#device.queue.submit([enc.finish()]);
      await this.#device.queue.onSubmittedWorkDone();
      return performance.now() - t0;
    };
    const out = [];
    for (const d of this.#stepDispatches()) {
      await run(d, 2); // warm-up
      let few = Infinity;
      let many = Infinity;
      for (let t = 0; t < 3; t++) {
        few = Math.min(few, await run(d, 2));
        many = Math.min(many, await run(d, 2 + reps));
      }
      out.push({ kernel: d[0], op: d[1], us: ((many - few) / reps) * 1000 });
    }
    return out;
  }

  destroy(): void {
    for (
      const b of [
        ...this.#pBuffers,
        ...this.#act,
        ...this.#grad,
        this.#data,
        this.#host,
        this.#steps,
        this.#ops,
        ...this.#weights.flat(),
        ...this.#noWeight,
      ]
    ) b.destroy();
  }
}
