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
 * dispatch costs ~20 us on llvmpipe and a few us on a GPU, whatever its size.
 *
 * Many steps are encoded into one command buffer and submitted together: the batches of a
 * whole chunk are uploaded at once, each step finds its own through a Step uniform at a
 * dynamic offset, and the losses stay on the GPU until the chunk's single readback.
 */

import type { Examples } from "../data.ts";
import { type ModelConfig, type ModelLayout, modelLayout } from "../model.ts";
import type { Gpu } from "./device.ts";
import { createKernels, type KernelName, type Kernels } from "./kernels.ts";
import { type BufferLayout, gpuLayouts, roundUp4 } from "./layout.ts";

const UNIFORM_STRIDE = 256; // bytes: the largest minUniformBufferOffsetAlignment allowed
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

export interface GpuModelOptions {
  /** Rows of one training batch. */
  readonly batchSize: number;
  /** Training steps per chunk (one submit, one readback). */
  readonly chunkSteps?: number;
  /** Rows per evaluation pass. */
  readonly evalRows?: number;
}

interface ActivationLayout {
  x0: number;
  dx0: number;
  h: number[];
  t: number[];
  dh: number[];
  stats: number[];
  size: number; // vec4
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
}

const FLOAT_FIELDS = new Set(["momentum", "eps"]);

function packOp(f: OpFields): ArrayBuffer {
  const buf = new ArrayBuffer(UNIFORM_STRIDE);
  const dv = new DataView(buf);
  Object.entries(f).forEach(([k, v], i) => {
    if (FLOAT_FIELDS.has(k)) dv.setFloat32(4 * i, v, true);
    else dv.setUint32(4 * i, v, true);
  });
  return buf;
}

export class GpuModel {
  readonly config: ModelConfig;
  readonly layout: ModelLayout;
  readonly batchSize: number;
  readonly chunkSteps: number;
  readonly evalRows: number;
  readonly #device: GPUDevice;
  readonly #kernels: Kernels;
  readonly #gpuLayout: { params: BufferLayout; buffers: BufferLayout };
  readonly #acts: ActivationLayout;
  readonly #params: [GPUBuffer, GPUBuffer];
  readonly #running: GPUBuffer;
  readonly #activations: GPUBuffer;
  readonly #data: GPUBuffer;
  readonly #losses: GPUBuffer;
  readonly #steps: GPUBuffer;
  readonly #ops: GPUBuffer;
  readonly #stepGroup: GPUBindGroup;
  /** [op][parity]: op 0 is the embedding, op l + 1 is layer l. */
  readonly #groups: [GPUBindGroup, GPUBindGroup][];
  readonly #opFields: OpFields[];
  /** Which of the two parameter buffers holds the current parameters. */
  #parity = 0;

  private constructor(gpu: Gpu, kernels: Kernels, config: ModelConfig, opts: GpuModelOptions) {
    this.config = config;
    this.layout = modelLayout(config);
    this.batchSize = opts.batchSize;
    this.chunkSteps = opts.chunkSteps ?? 200;
    this.#device = gpu.device;
    this.#kernels = kernels;
    this.#gpuLayout = gpuLayouts(this.layout);
    const { blockSize: T, nEmbd: E, vocabSize: V } = config;
    const inQ0 = roundUp4(T * E) / 4;

    // Evaluation rows per pass: large passes amortize dispatches, but a kernel's per-invocation
    // loops must stay far below llvmpipe's 65,535-iteration limit (rows / 32 row blocks times
    // the widest input, in vec4) and the activations within the storage-binding limit.
    const widest = Math.max(inQ0, ...this.layout.layers.map((l) => roundUp4(l.nIn) / 4));
    const loopRows = Math.floor(30_000 / widest) * 32;
    const perRow = this.#activationLayout(1).size * 16;
    const memRows = Math.floor(this.#device.limits.maxStorageBufferBindingSize / perRow);
    this.evalRows = Math.max(
      1,
      Math.min(opts.evalRows ?? 2048, loopRows, memRows),
    );
    const rows = Math.max(this.batchSize, this.evalRows);
    if (rows > memRows) throw new Error("the batch does not fit in one storage binding");
    this.#acts = this.#activationLayout(rows);

    const d = this.#device;
    const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
    const buffer = (label: string, bytes: number, usage = STORAGE) =>
      d.createBuffer({ label, size: Math.max(16, Math.ceil(bytes / 16) * 16), usage });
    const pBytes = this.#gpuLayout.params.size * 4;
    this.#params = [buffer("params.0", pBytes), buffer("params.1", pBytes)];
    this.#running = buffer("running", this.#gpuLayout.buffers.size * 4);
    this.#activations = buffer("activations", this.#acts.size * 16);
    const dataInts = Math.max(
      this.chunkSteps * this.batchSize * (T + 1),
      EVAL_PASSES * this.evalRows * (T + 1),
    );
    this.#data = buffer("data", dataInts * 4);
    this.#losses = buffer("losses", Math.max(this.chunkSteps, EVAL_PASSES * CE_MAX_GROUPS) * 4);
    const UNIFORM = GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;
    this.#steps = buffer(
      "steps",
      Math.max(this.chunkSteps, EVAL_PASSES) * UNIFORM_STRIDE,
      UNIFORM,
    );

    // The ops: the embedding, then each layer. Their uniforms never change.
    const P = this.#gpuLayout.params;
    const Rl = this.#gpuLayout.buffers;
    const a = this.#acts;
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
    };
    const tiles = kernels.tiles;
    this.#opFields = [{
      ...zero,
      nOut: T * E,
      outQ: inQ0,
      t: a.x0,
      dh: a.dx0,
      w: P.quad(this.layout.embedding.name),
    }];
    this.layout.layers.forEach((l, i) => {
      const inQ = roundUp4(l.nIn) / 4;
      const outQ = roundUp4(l.nOut) / 4;
      const flags = (l.bias ? HAS_BIAS : 0) | (l.bn ? HAS_BN : 0) | (l.tanh ? HAS_TANH : 0);
      const dwGroups = Math.ceil((4 * inQ) / (tiles.WY * tiles.RK)) *
        Math.ceil(outQ / tiles.WX);
      this.#opFields.push({
        ...zero,
        index: i,
        flags,
        nIn: l.nIn,
        nOut: l.nOut,
        inQ,
        outQ,
        x: i === 0 ? a.x0 : a.t[i - 1],
        h: a.h[i],
        t: a.t[i],
        dh: a.dh[i],
        stats: a.stats[i],
        w: P.quad(l.weight.name),
        bias: l.bias ? P.quad(l.bias.name) : 0,
        gamma: l.bn ? P.quad(l.bn.gamma.name) : 0,
        beta: l.bn ? P.quad(l.bn.beta.name) : 0,
        runMean: l.bn ? Rl.quad(l.bn.runMean.name) : 0,
        runVar: l.bn ? Rl.quad(l.bn.runVar.name) : 0,
        dwGroups,
      });
    });
    this.#ops = buffer("ops", this.#opFields.length * UNIFORM_STRIDE, UNIFORM);
    this.#opFields.forEach((f, i) => d.queue.writeBuffer(this.#ops, i * UNIFORM_STRIDE, packOp(f)));

    this.#stepGroup = d.createBindGroup({
      label: "step",
      layout: kernels.stepLayout,
      entries: [{ binding: 0, resource: { buffer: this.#steps, size: 32 } }],
    });
    const opBinding = (i: number) => ({ buffer: this.#ops, offset: i * UNIFORM_STRIDE, size: 96 });
    this.#groups = this.#opFields.map((_, i) =>
      [0, 1].map((parity) =>
        d.createBindGroup({
          label: `op ${i} parity ${parity}`,
          layout: kernels.opLayout,
          entries: [
            { binding: 0, resource: opBinding(i) },
            // linear_backward's "prev": the layer feeding this one (the embedding for layer 0).
            { binding: 1, resource: opBinding(Math.max(i - 1, 0)) },
            { binding: 2, resource: { buffer: this.#params[parity] } },
            { binding: 3, resource: { buffer: this.#params[1 - parity] } },
            { binding: 4, resource: { buffer: this.#activations } },
            { binding: 5, resource: { buffer: this.#running } },
            { binding: 6, resource: { buffer: this.#data } },
            { binding: 7, resource: { buffer: this.#losses } },
          ],
        })
      ) as [GPUBindGroup, GPUBindGroup]
    );
  }

  /** Compiles the kernels and allocates the buffers; parameters start at zero. */
  static async create(gpu: Gpu, config: ModelConfig, opts: GpuModelOptions): Promise<GpuModel> {
    if (opts.batchSize < 2) throw new Error("training with BatchNorm needs a batch of at least 2");
    const kernels = await createKernels(gpu.device);
    return new GpuModel(gpu, kernels, config, opts);
  }

  #activationLayout(rows: number): ActivationLayout {
    let cursor = 0;
    const take = (quads: number) => {
      const at = cursor;
      cursor += quads;
      return at;
    };
    const inQ0 = roundUp4(this.config.blockSize * this.config.nEmbd) / 4;
    const acts: ActivationLayout = {
      x0: take(rows * inQ0),
      dx0: take(rows * inQ0),
      h: [],
      t: [],
      dh: [],
      stats: [],
      size: 0,
    };
    for (const l of this.layout.layers) {
      const outQ = roundUp4(l.nOut) / 4;
      acts.h.push(take(rows * outQ));
      acts.t.push(take(rows * outQ));
      acts.dh.push(take(rows * outQ));
      acts.stats.push(take(2 * outQ));
    }
    acts.size = Math.max(cursor, 1);
    return acts;
  }

  /** Uploads parameters and running statistics given in the CPU layout (src/model.ts). */
  setParams(params: Float32Array, buffers: Float32Array): void {
    const q = this.#device.queue;
    q.writeBuffer(this.#params[this.#parity], 0, this.#gpuLayout.params.pack(params));
    // Pn starts as a copy too: padding stays zero in both, and nothing is left uninitialized.
    q.writeBuffer(this.#params[1 - this.#parity], 0, this.#gpuLayout.params.pack(params));
    q.writeBuffer(this.#running, 0, this.#gpuLayout.buffers.pack(buffers));
  }

  /** Downloads the current parameters and running statistics, in the CPU layout. */
  async getParams(): Promise<{ params: Float32Array; buffers: Float32Array }> {
    const [p, r] = await Promise.all([
      this.#read(this.#params[this.#parity], 0, this.#gpuLayout.params.size),
      this.#read(this.#running, 0, this.#gpuLayout.buffers.size),
    ]);
    return {
      params: this.#gpuLayout.params.unpack(p, this.layout.nParams),
      buffers: this.#gpuLayout.buffers.unpack(r, this.layout.nBuffers),
    };
  }

  /**
   * The activations of the last pass over `rows` examples, in the CPU layout ([rows, n]
   * row-major): the embedding output and its gradient, and per layer the linear output h,
   * the output t, the gradient w.r.t. h, and the batch mean and variance. For tests and
   * diagnostics; a training step's gradients are those of its last step.
   */
  async readActivations(rows: number): Promise<GpuActivations> {
    const all = await this.#read(this.#activations, 0, this.#acts.size * 4);
    const matrix = (quad: number, r: number, n: number) => {
      const stride = roundUp4(n);
      const out = new Float32Array(r * n);
      for (let i = 0; i < r; i++) {
        out.set(all.subarray(quad * 4 + i * stride, quad * 4 + i * stride + n), i * n);
      }
      return out;
    };
    const K0 = this.config.blockSize * this.config.nEmbd;
    return {
      x0: matrix(this.#acts.x0, rows, K0),
      dx0: matrix(this.#acts.dx0, rows, K0),
      layers: this.layout.layers.map((l, i) => ({
        h: matrix(this.#acts.h[i], rows, l.nOut),
        t: matrix(this.#acts.t[i], rows, l.nOut),
        dh: matrix(this.#acts.dh[i], rows, l.nOut),
        mean: matrix(this.#acts.stats[i], 1, l.nOut),
        variance: matrix(this.#acts.stats[i] + roundUp4(l.nOut) / 4, 1, l.nOut),
      })),
    };
  }

  async #read(buffer: GPUBuffer, offsetFloats: number, floats: number): Promise<Float32Array> {
    const d = this.#device;
    const staging = d.createBuffer({
      size: floats * 4,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = d.createCommandEncoder();
    enc.copyBufferToBuffer(buffer, offsetFloats * 4, staging, 0, floats * 4);
    d.queue.submit([enc.finish()]);
    return await this.#mapFloats(staging);
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
    s: { lr: number; rows: number; data: number; loss: number; mode: number; statsLayer: number },
  ): void {
    const buf = new ArrayBuffer(24);
    const dv = new DataView(buf);
    dv.setFloat32(0, s.lr, true);
    dv.setUint32(4, s.rows, true);
    dv.setUint32(8, s.data, true);
    dv.setUint32(12, s.loss, true);
    dv.setUint32(16, s.mode, true);
    dv.setUint32(20, s.statsLayer, true);
    this.#device.queue.writeBuffer(this.#steps, slot * UNIFORM_STRIDE, buf);
  }

  #dispatch(pass: GPUComputePassEncoder, kernel: KernelName, op: number, x: number, y = 1) {
    pass.setPipeline(this.#kernels.pipelines[kernel]);
    pass.setBindGroup(1, this.#groups[op][this.#parity]);
    pass.dispatchWorkgroups(x, y);
  }

  /**
   * The forward dispatches of one pass over `rows` examples. In evaluation, layers without
   * batch statistics split their rows over several workgroups; `upTo` stops after that layer.
   */
  #encodeForward(pass: GPUComputePassEncoder, rows: number, train: boolean, upTo?: number) {
    const { WX, WY, RB } = this.#kernels.tiles;
    const last = upTo ?? this.layout.layers.length - 1;
    this.#dispatch(pass, "embeddingForward", 0, Math.ceil((rows * this.config.blockSize) / 64));
    for (let i = 0; i <= last; i++) {
      const f = this.#opFields[i + 1];
      const batchStats = (f.flags & HAS_BN) !== 0 && (train || i === upTo);
      const rowGroups = batchStats ? 1 : Math.ceil(rows / (WY * RB));
      this.#dispatch(pass, "linearForward", i + 1, Math.ceil(f.outQ / WX), rowGroups);
    }
  }

  /** The backward dispatches of a training step, ending with the updated parameters in Pn. */
  #encodeBackward(pass: GPUComputePassEncoder) {
    const { WX } = this.#kernels.tiles;
    for (let i = this.layout.layers.length - 1; i >= 0; i--) {
      const f = this.#opFields[i + 1];
      this.#dispatch(pass, "linearBackward", i + 1, f.dwGroups + Math.ceil(f.inQ / WX));
    }
    const { vocabSize, nEmbd } = this.config;
    this.#dispatch(pass, "embeddingBackward", 0, Math.ceil((vocabSize * nEmbd) / 64));
  }

  /**
   * Runs `lrs.length` SGD steps (at most chunkSteps) on the given batches: `batches` holds,
   * per step, the contexts [batchSize][blockSize] then the targets [batchSize]. Resolves to the
   * losses of the steps; a later chunk may be submitted before this one resolves.
   */
  trainChunk(batches: Int32Array<ArrayBuffer>, lrs: ArrayLike<number>): Promise<Float32Array> {
    const steps = lrs.length;
    const B = this.batchSize;
    const per = B * (this.config.blockSize + 1);
    if (steps < 1 || steps > this.chunkSteps || batches.length !== steps * per) {
      throw new Error("trainChunk: batches and learning rates do not match the chunk size");
    }
    const d = this.#device;
    d.queue.writeBuffer(this.#data, 0, batches);
    for (let s = 0; s < steps; s++) {
      this.#writeStep(s, {
        lr: lrs[s],
        rows: B,
        data: s * per,
        loss: s,
        mode: MODE_TRAIN,
        statsLayer: NONE,
      });
    }
    const enc = d.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (let s = 0; s < steps; s++) {
      pass.setBindGroup(0, this.#stepGroup, [s * UNIFORM_STRIDE]);
      this.#encodeForward(pass, B, true);
      this.#dispatch(pass, "crossEntropy", this.layout.layers.length, 1);
      this.#encodeBackward(pass);
      this.#parity = 1 - this.#parity;
    }
    pass.end();
    const staging = d.createBuffer({
      size: steps * 4,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    enc.copyBufferToBuffer(this.#losses, 0, staging, 0, steps * 4);
    d.queue.submit([enc.finish()]);
    return this.#mapFloats(staging);
  }

  /** Uploads evaluation passes' examples; returns each pass's [first row, rows]. */
  #uploadPasses(ex: Examples, from: number, statsLayer = NONE): [number, number][] {
    const T = this.config.blockSize;
    const out: [number, number][] = [];
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
      out.push([row, rows]);
    }
    this.#device.queue.writeBuffer(this.#data, 0, data, 0, at);
    return out;
  }

  /** Mean loss over all examples, in evaluation mode (running BatchNorm statistics). */
  async evaluate(ex: Examples): Promise<number> {
    if (ex.n === 0) return NaN;
    let total = 0;
    for (let row = 0; row < ex.n; row += EVAL_PASSES * this.evalRows) {
      const passes = this.#uploadPasses(ex, row);
      const enc = this.#device.createCommandEncoder();
      const pass = enc.beginComputePass();
      passes.forEach(([, rows], p) => {
        pass.setBindGroup(0, this.#stepGroup, [p * UNIFORM_STRIDE]);
        this.#encodeForward(pass, rows, false);
        const groups = Math.min(CE_MAX_GROUPS, Math.ceil(rows / CE_GROUP));
        this.#dispatch(pass, "crossEntropy", this.layout.layers.length, groups);
      });
      pass.end();
      this.#device.queue.submit([enc.finish()]);
      const losses = await this.#read(this.#losses, 0, passes.length * CE_MAX_GROUPS);
      passes.forEach(([, rows], p) => {
        const groups = Math.min(CE_MAX_GROUPS, Math.ceil(rows / CE_GROUP));
        for (let g = 0; g < groups; g++) total += losses[p * CE_MAX_GROUPS + g];
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
    for (let i = 0; i < this.layout.layers.length; i++) {
      const layer = this.layout.layers[i];
      if (!layer.bn) continue;
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
        passes.forEach(([, rows], p) => {
          const pass = enc.beginComputePass();
          pass.setBindGroup(0, this.#stepGroup, [p * UNIFORM_STRIDE]);
          this.#encodeForward(pass, rows, false, i);
          pass.end();
          enc.copyBufferToBuffer(
            this.#activations,
            f.stats * 16,
            staging,
            p * 2 * n * 4,
            2 * n * 4,
          );
        });
        d.queue.submit([enc.finish()]);
        const stats = await this.#mapFloats(staging);
        passes.forEach(([, rows], p) => {
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
      const runMean = Float32Array.from(mean);
      const runVar = Float32Array.from(m2, (v) => v / Math.max(count - 1, 1));
      const q = this.#device.queue;
      q.writeBuffer(this.#running, f.runMean * 16, runMean);
      q.writeBuffer(this.#running, f.runVar * 16, runVar);
    }
  }

  destroy(): void {
    for (
      const b of [
        ...this.#params,
        this.#running,
        this.#activations,
        this.#data,
        this.#losses,
        this.#steps,
        this.#ops,
      ]
    ) b.destroy();
  }
}
