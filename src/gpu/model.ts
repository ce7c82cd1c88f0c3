/**
 * The model on the GPU: a plan (src/gpu/plan.ts), a kernel family's pipelines
 * (src/gpu/kernels.ts) and the objects made from them once (src/gpu/resources.ts); what runs
 * is encoded here as fixed sequences of dispatches (the family's schedule).
 *
 * Many steps are encoded into one command buffer and submitted together: the batches of a
 * whole chunk are uploaded at once, each step finds its own through a Step uniform at a
 * dynamic offset, and the losses stay on the GPU until the chunk's single readback. The
 * parameters live in two copies that swap roles every step, so no kernel races with an update.
 */

import type { Examples } from "../data.ts";
import type { ChunkDiagnostics, ChunkResult } from "../backend.ts";
import type { Moments, Snapshot } from "../diagnostics.ts";
import type { ModelConfig, ModelLayout } from "../model.ts";
import { C, STEP, type StepValues, UNIFORM_STRIDE } from "./abi.ts";
import type { Gpu } from "./device.ts";
import type { Dispatch, FamilyName, KernelFamily } from "./family.ts";
import { createKernels, type Kernels } from "./kernels.ts";
import { roundUp4 } from "./layout.ts";
import { DIAG_SLOTS, EVAL_PASSES, LLVMPIPE_LOOP_CAP, type Plan, planModel } from "./plan.ts";
import { mapFloats, readFloats, staging, unpad } from "./readback.ts";
import { createResources, type Resources } from "./resources.ts";
import { software } from "./software.ts";

export const FAMILIES: Readonly<Record<FamilyName, KernelFamily>> = { software };

/** The family an adapter gets unless one is forced. */
export function defaultFamily(_gpu: Gpu): KernelFamily {
  return software;
}

/** The limits an adapter imposes on a plan. */
export function adapterLimits(gpu: Gpu): { maxBindingBytes: number; loopCap?: number } {
  return {
    maxBindingBytes: gpu.device.limits.maxStorageBufferBindingSize,
    // Software rasterizers cut long loops short (llvmpipe at 65,536 iterations, silently).
    loopCap: gpu.adapter.fallback ? LLVMPIPE_LOOP_CAP : undefined,
  };
}

export interface GpuModelOptions {
  /** Rows of one training batch. */
  readonly batchSize: number;
  /** Training steps per chunk (one submit, one readback). */
  readonly chunkSteps?: number;
  /** Rows per evaluation pass. */
  readonly evalRows?: number;
  /** The kernel family (default: by the adapter, defaultFamily). */
  readonly family?: FamilyName;
}

/** Values of the last pass, in the CPU layout ([rows, n] row-major), for tests. */
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

export class GpuModel {
  readonly config: ModelConfig;
  readonly layout: ModelLayout;
  readonly plan: Plan;
  readonly device: GPUDevice;
  readonly #kernels: Kernels;
  readonly #res: Resources;
  /** Which of the two parameter copies holds the current parameters. */
  #parity = 0;

  private constructor(device: GPUDevice, plan: Plan, kernels: Kernels) {
    this.device = device;
    this.plan = plan;
    this.config = plan.config;
    this.layout = plan.layout;
    this.#kernels = kernels;
    this.#res = createResources(device, plan, kernels);
  }

  /**
   * Plans the model (a UserError if the batch is more than the kernels take on this adapter),
   * compiles the kernels and allocates the buffers; parameters start at zero.
   */
  static async create(gpu: Gpu, config: ModelConfig, opts: GpuModelOptions): Promise<GpuModel> {
    if (opts.batchSize < 2) throw new Error("training with BatchNorm needs a batch of at least 2");
    const family = opts.family ? FAMILIES[opts.family] : defaultFamily(gpu);
    const plan = planModel(config, family, {
      batchSize: opts.batchSize,
      chunkSteps: opts.chunkSteps ?? 200,
      evalRows: opts.evalRows,
      ...adapterLimits(gpu),
    });
    return new GpuModel(gpu.device, plan, await createKernels(gpu.device, family));
  }

  get family(): KernelFamily {
    return this.plan.family;
  }

  get batchSize(): number {
    return this.plan.batchSize;
  }

  get chunkSteps(): number {
    return this.plan.chunkSteps;
  }

  get evalRows(): number {
    return this.plan.evalRows;
  }

  #writeStep(slot: number, s: Partial<StepValues> & Pick<StepValues, "rows" | "mode">): void {
    const values: StepValues = {
      lr: 0,
      data: 0,
      loss: 0,
      stats_layer: C.NONE,
      diag: C.NONE,
      snap: C.NONE,
      ...s,
    };
    this.device.queue.writeBuffer(this.#res.steps, slot * UNIFORM_STRIDE, STEP.pack(values));
  }

  /** Every dispatch of a training step, in order; `diag`: the variants that collect. */
  stepDispatches(diag = false): Dispatch[] {
    const f = this.family;
    const B = this.batchSize;
    return [
      ...f.forward(this.plan, B, true),
      f.loss(this.plan, B, true).dispatch,
      ...f.backward(this.plan, diag),
    ];
  }

  /** Encodes dispatches against the current parameter copy (the Step group already set). */
  encode(pass: GPUComputePassEncoder, list: readonly Dispatch[]): void {
    let last: string | undefined;
    for (const d of list) {
      if (d.kernel !== last) pass.setPipeline(this.#kernels.pipelines[d.kernel]);
      last = d.kernel;
      pass.setBindGroup(1, this.#res.groups[d.op][this.#parity]);
      pass.dispatchWorkgroups(d.groups[0], d.groups[1]);
    }
  }

  /** Binds Step slot `slot` for the dispatches encoded next. */
  bindStep(pass: GPUComputePassEncoder, slot: number): void {
    pass.setBindGroup(0, this.#res.stepGroup, [slot * UNIFORM_STRIDE]);
  }

  /** Writes the Step uniform of a training step at `rows` rows into slot 0 (for the profiler). */
  writeTrainingStep(lr: number): void {
    this.#writeStep(0, { lr, rows: this.batchSize, mode: C.MODE_TRAIN });
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
    const per = this.batchSize * (this.config.blockSize + 1);
    const moments = diag.moments ?? [];
    if (steps < 1 || steps > this.chunkSteps || batches.length !== steps * per) {
      throw new Error("trainChunk: batches and learning rates do not match the chunk size");
    }
    if (moments.length > DIAG_SLOTS || moments.some((s) => s < 0 || s >= steps)) {
      throw new Error(`trainChunk: at most ${DIAG_SLOTS} steps of the chunk collect moments`);
    }
    const d = this.device;
    const { host } = this.plan;
    d.queue.writeBuffer(this.#res.data, 0, batches);
    const diagSlot = new Map(moments.map((s, slot) => [s, slot]));
    const plain = this.stepDispatches(false);
    const withDiag = this.stepDispatches(true);
    const enc = d.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (let s = 0; s < steps; s++) {
      const slot = diagSlot.get(s);
      const snap = diag.snapshot && s === steps - 1;
      this.#writeStep(s, {
        lr: lrs[s],
        rows: this.batchSize,
        data: s * per,
        loss: s,
        mode: C.MODE_TRAIN,
        diag: slot === undefined ? C.NONE : host.momentsAt + slot * host.momentsSize,
        snap: snap ? host.snapAt : C.NONE,
      });
      this.bindStep(pass, s);
      this.encode(pass, slot === undefined && !snap ? plain : withDiag);
      this.#parity = 1 - this.#parity;
    }
    pass.end();
    const floats = moments.length > 0 ? host.momentsAt + moments.length * host.momentsSize : steps;
    const buf = staging(d, floats * 4);
    enc.copyBufferToBuffer(this.#res.host, 0, buf, 0, floats * 4);
    d.queue.submit([enc.finish()]);
    return mapFloats(buf).then((all) => ({
      losses: all.slice(0, steps),
      moments: new Map(moments.map((s, slot) => [
        s,
        this.#moments(all.subarray(host.momentsAt + slot * host.momentsSize)),
      ])),
    }));
  }

  /** Each weight's moments, summed (in float64) from the kernels' partials. */
  #moments(block: Float32Array): Moments[] {
    const { ops, host } = this.plan;
    const weights = [this.layout.embedding, ...this.layout.layers.map((l) => l.weight)];
    return weights.map((t, i) => {
      const from = ops[i].diag;
      const to = i + 1 < weights.length ? ops[i + 1].diag : host.momentsSize;
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
    const { host, ops } = this.plan;
    const [snap, acts, params] = await Promise.all([
      readFloats(this.device, this.#res.host, host.snapAt, host.snapSize),
      this.readActivations(this.batchSize),
      this.getParams(),
    ]);
    const E = this.layout.embedding;
    const slice = (t: { offset: number; size: number }) =>
      params.params.slice(t.offset, t.offset + t.size);
    return {
      step,
      tanh: this.layout.layers.flatMap((l, i) =>
        l.tanh
          ? [{ t: acts.layers[i].t, dt: unpad(snap, ops[i + 1].snap_dt, this.batchSize, l.nOut) }]
          : []
      ),
      weights: [
        { name: E.name, shape: E.shape, grad: snap.slice(0, E.size), param: slice(E) },
        ...this.layout.layers.map((l, i) => ({
          name: l.weight.name,
          shape: l.weight.shape,
          grad: unpad(snap, ops[i + 1].snap_w, l.nIn, l.nOut),
          param: slice(l.weight),
        })),
      ],
    };
  }

  /** Uploads up to EVAL_PASSES passes of examples; returns each pass's row count. */
  #uploadPasses(ex: Examples, from: number, statsLayer: number = C.NONE): number[] {
    const T = this.config.blockSize;
    const out: number[] = [];
    const data = new Int32Array(EVAL_PASSES * this.evalRows * (T + 1));
    let at = 0;
    for (let p = 0, row = from; p < EVAL_PASSES && row < ex.n; p++, row += this.evalRows) {
      const rows = Math.min(this.evalRows, ex.n - row);
      data.set(ex.x.subarray(row * T, (row + rows) * T), at);
      data.set(ex.y.subarray(row, row + rows), at + rows * T);
      this.#writeStep(p, {
        rows,
        data: at,
        loss: p * this.family.maxLossGroups,
        mode: C.MODE_EVAL,
        stats_layer: statsLayer,
      });
      at += rows * (T + 1);
      out.push(rows);
    }
    this.device.queue.writeBuffer(this.#res.data, 0, data, 0, at);
    return out;
  }

  /** Mean loss over all examples, in evaluation mode (running BatchNorm statistics). */
  async evaluate(ex: Examples): Promise<number> {
    if (ex.n === 0) return NaN;
    const f = this.family;
    let total = 0;
    for (let row = 0; row < ex.n; row += EVAL_PASSES * this.evalRows) {
      const passes = this.#uploadPasses(ex, row);
      const enc = this.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      const partials = passes.map((rows, p) => {
        const loss = f.loss(this.plan, rows, false);
        this.bindStep(pass, p);
        this.encode(pass, [...f.forward(this.plan, rows, false), loss.dispatch]);
        return loss.partials;
      });
      pass.end();
      this.device.queue.submit([enc.finish()]);
      const losses = await readFloats(
        this.device,
        this.#res.host,
        0,
        passes.length * f.maxLossGroups,
      );
      partials.forEach((n, p) => {
        for (let g = 0; g < n; g++) total += losses[p * f.maxLossGroups + g];
      });
    }
    return total / ex.n;
  }

  /**
   * Sets every BatchNorm's running statistics to the exact statistics of its input over all
   * the examples, layer by layer (each layer's inputs normalized with the statistics already
   * set for the layers before it), as makemore does after training. Each pass measures one
   * chunk's mean and variance; the chunks are combined on the CPU in float64. An abort stops
   * it between layers.
   */
  async calibrate(ex: Examples, signal?: AbortSignal): Promise<void> {
    if (ex.n === 0) return;
    const { regions, ops } = this.plan;
    for (let i = 0; i < this.layout.layers.length; i++) {
      if (!this.layout.layers[i].bn) continue;
      if (signal?.aborted) return;
      const f = ops[i + 1];
      const n = f.out_q * 4;
      let count = 0;
      const mean = new Float64Array(n);
      const m2 = new Float64Array(n);
      for (let row = 0; row < ex.n; row += EVAL_PASSES * this.evalRows) {
        const passes = this.#uploadPasses(ex, row, i);
        const d = this.device;
        const buf = staging(d, passes.length * 2 * n * 4);
        // Each pass's statistics are copied out before the next pass overwrites them.
        const enc = d.createCommandEncoder();
        passes.forEach((rows, p) => {
          const pass = enc.beginComputePass();
          this.bindStep(pass, p);
          this.encode(pass, this.family.forward(this.plan, rows, false, i));
          pass.end();
          const from = regions.stats[i] * 16;
          enc.copyBufferToBuffer(this.#res.activations[i % 2], from, buf, p * 2 * n * 4, 2 * n * 4);
        });
        d.queue.submit([enc.finish()]);
        const stats = await mapFloats(buf);
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
      const q = this.device.queue;
      const P = this.#res.params[this.#parity];
      q.writeBuffer(P, f.run_mean * 16, Float32Array.from(mean));
      q.writeBuffer(P, f.run_var * 16, Float32Array.from(m2, (v) => v / Math.max(count - 1, 1)));
    }
  }

  /** Uploads parameters and running statistics given in the CPU layout (src/model.ts). */
  setParams(params: Float32Array, buffers: Float32Array): void {
    const q = this.device.queue;
    const { tensors } = this.plan;
    const all = new Float32Array(tensors.params.size + tensors.running.size);
    all.set(tensors.params.pack(params));
    all.set(tensors.running.pack(buffers), tensors.params.size);
    // Both copies: the padding stays zero in each, and nothing is left uninitialized.
    for (const b of this.#res.params) q.writeBuffer(b, 0, all);
    tensors.weights.forEach((w, l) => {
      const data = w.pack(params);
      for (const t of this.#res.weights[l]) {
        q.writeTexture({ texture: t }, data, { bytesPerRow: w.width * 16 }, [w.width, w.height]);
      }
    });
  }

  /** Downloads the current parameters and running statistics, in the CPU layout. */
  async getParams(): Promise<{ params: Float32Array; buffers: Float32Array }> {
    const d = this.device;
    const { tensors } = this.plan;
    const vectors = tensors.params.size + tensors.running.size;
    // Texture copies need rows of a multiple of 256 bytes.
    const strides = tensors.weights.map((w) => Math.ceil((w.width * 16) / 256) * 64);
    const offsets: number[] = [];
    let floats = vectors;
    tensors.weights.forEach((w, l) => {
      offsets.push(floats);
      floats += strides[l] * w.height;
    });
    const buf = staging(d, floats * 4);
    const enc = d.createCommandEncoder();
    enc.copyBufferToBuffer(this.#res.params[this.#parity], 0, buf, 0, vectors * 4);
    tensors.weights.forEach((w, l) => {
      enc.copyTextureToBuffer(
        { texture: this.#res.weights[l][this.#parity] },
        { buffer: buf, offset: offsets[l] * 4, bytesPerRow: strides[l] * 4 },
        [w.width, w.height],
      );
    });
    d.queue.submit([enc.finish()]);
    const all = await mapFloats(buf);
    const params = new Float32Array(this.layout.nParams);
    const buffers = new Float32Array(this.layout.nBuffers);
    tensors.params.unpack(all, params);
    tensors.running.unpack(all.subarray(tensors.params.size), buffers);
    tensors.weights.forEach((w, l) => w.unpack(all.subarray(offsets[l]), strides[l], params));
    return { params, buffers };
  }

  /**
   * The activations of the last pass over `rows` examples, in the CPU layout: the embedding
   * output and its gradient, and per layer h, t, dh and the batch mean and variance. For tests
   * and diagnostics; a training chunk's values are those of its last step.
   */
  async readActivations(rows: number): Promise<GpuActivations> {
    const { regions } = this.plan;
    const [act0, act1, grad0, grad1] = await Promise.all([
      readFloats(this.device, this.#res.activations[0], 0, regions.actQuads[0] * 4),
      readFloats(this.device, this.#res.activations[1], 0, regions.actQuads[1] * 4),
      readFloats(this.device, this.#res.gradients[0], 0, regions.gradQuads[0] * 4),
      readFloats(this.device, this.#res.gradients[1], 0, regions.gradQuads[1] * 4),
    ]);
    const act = [act0, act1];
    const grad = [grad0, grad1];
    const K0 = this.config.blockSize * this.config.nEmbd;
    return {
      x0: unpad(act[1], regions.x0 * 4, rows, K0),
      dx0: unpad(grad[1], regions.dx0 * 4, rows, K0),
      layers: this.layout.layers.map((l, i) => ({
        h: unpad(act[i % 2], regions.h[i] * 4, rows, l.nOut),
        t: unpad(act[i % 2], regions.t[i] * 4, rows, l.nOut),
        dh: unpad(grad[i % 2], regions.dh[i] * 4, rows, l.nOut),
        mean: unpad(act[i % 2], regions.stats[i] * 4, 1, l.nOut),
        variance: unpad(act[i % 2], (regions.stats[i] + roundUp4(l.nOut) / 4) * 4, 1, l.nOut),
      })),
    };
  }

  destroy(): void {
    this.#res.destroy();
  }
}
