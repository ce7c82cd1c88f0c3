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
import {
  C,
  REPLICA,
  REPLICAS_BYTES,
  STEP,
  type StepFields,
  type StepValues,
  UNIFORM_STRIDE,
} from "./abi.ts";
import type { Gpu } from "./device.ts";
import { type Dispatch, type FamilyName, forward, type KernelFamily } from "./family.ts";
import { createKernels, type Kernels } from "./kernels.ts";
import { roundUp4 } from "./layout.ts";
import { gpu as gpuFamily } from "./gpu.ts";
import { calibrate, evaluate, type PassContext } from "./passes.ts";
import { DIAG_SLOTS, LLVMPIPE_LOOP_CAP, type Plan, planModel } from "./plan.ts";
import { mapFloats, pad, readFloats, staging, unpad } from "./readback.ts";
import { createResources, type Resources } from "./resources.ts";
import { software } from "./software.ts";

export const FAMILIES: Readonly<Record<FamilyName, KernelFamily>> = { software, gpu: gpuFamily };

/**
 * The family an adapter gets unless one is forced: software rasterizers (llvmpipe, SwiftShader)
 * the one shaped for them, real GPUs the other.
 */
export function defaultFamily(gpu: Gpu): KernelFamily {
  return gpu.adapter.fallback ? software : gpuFamily;
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
  /** Independent models of this shape trained in the same dispatches (default 1). */
  readonly replicas?: number;
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
  /** Each replica's BatchNorm momentum (the config's unless set). */
  readonly #momenta: number[];
  /**
   * Milliseconds trainChunk has spent on the host: uploading the batches and the Step uniforms
   * and encoding the dispatches, not the submit (on llvmpipe a submit waits for the previous
   * one to finish running).
   */
  hostMs = 0;

  private constructor(device: GPUDevice, plan: Plan, kernels: Kernels) {
    this.device = device;
    this.plan = plan;
    this.config = plan.config;
    this.layout = plan.layout;
    this.#kernels = kernels;
    this.#res = createResources(device, plan, kernels);
    this.#momenta = Array(plan.replicas).fill(plan.config.bnMomentum);
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
      replicas: opts.replicas,
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

  get replicas(): number {
    return this.plan.replicas;
  }

  /** Sets replica r's BatchNorm momentum (a hyper-parameter that keeps the shapes). */
  setMomentum(replica: number, momentum: number): void {
    this.#momenta[this.#replica(replica)] = momentum;
  }

  #replica(r: number): number {
    if (!Number.isInteger(r) || r < 0 || r >= this.replicas) {
      throw new Error(`no replica ${r} in a group of ${this.replicas}`);
    }
    return r;
  }

  /**
   * Writes Step uniforms into consecutive slots from `first`, in one upload, with the replicas'
   * strides and their hyper-parameters: `lrs[r][i]` is replica r's learning rate at
   * the slot first + i (0 where not given: evaluation).
   */
  #writeSteps(
    first: number,
    list: readonly StepFields[],
    lrs: readonly ArrayLike<number>[] = [],
    idle: readonly boolean[] = [],
  ): void {
    const { strides } = this.plan;
    const bytes = new Uint8Array(list.length * UNIFORM_STRIDE);
    const hyper = new Uint8Array(list.length * REPLICAS_BYTES);
    list.forEach((s, i) => {
      const values: StepValues = {
        data: 0,
        loss: 0,
        diag: C.NONE,
        snap: C.NONE,
        rep_p: strides.params,
        rep_act: strides.act,
        rep_grad: strides.grad,
        rep_data: strides.data,
        rep_host: strides.host,
        ...s,
      };
      bytes.set(new Uint8Array(STEP.pack(values)), i * UNIFORM_STRIDE);
      this.#momenta.forEach((m, r) => {
        const lr = lrs[r]?.[i] ?? 0;
        hyper.set(
          new Uint8Array(REPLICA.pack({ lr, momentum: idle[r] ? 0 : m })),
          i * REPLICAS_BYTES + r * REPLICA.bytes,
        );
      });
    });
    this.device.queue.writeBuffer(this.#res.steps, first * UNIFORM_STRIDE, bytes);
    this.device.queue.writeBuffer(this.#res.replicas, first * REPLICAS_BYTES, hyper);
  }

  /** Every dispatch of a training step, in order; `diag`: the variants that collect. */
  stepDispatches(diag = false): Dispatch[] {
    const f = this.family;
    const B = this.batchSize;
    return [
      ...forward(this.plan, B, true),
      f.loss(this.plan, B, true),
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
      // Every replica in the same dispatch: replica r in the workgroups of z = r.
      pass.dispatchWorkgroups(d.groups[0], d.groups[1], this.replicas);
    }
  }

  /** Binds Step slot `slot` (and the replicas' values at it) for the dispatches encoded next. */
  bindStep(pass: GPUComputePassEncoder, slot: number): void {
    pass.setBindGroup(0, this.#res.stepGroup, [slot * UNIFORM_STRIDE, slot * REPLICAS_BYTES]);
  }

  /** Writes the Step uniform of a training step at `rows` rows into slot 0 (for the profiler). */
  writeTrainingStep(lr: number): void {
    this.#writeSteps(
      0,
      [{ rows: this.batchSize, mode: C.MODE_TRAIN }],
      Array(this.replicas).fill([lr]),
    );
  }

  /**
   * Runs `lrs.length` SGD steps (at most chunkSteps) on the given batches: `batches` holds,
   * per step, the contexts [batchSize][blockSize] then the targets [batchSize]. Resolves to the
   * losses of the steps (and the diagnostics asked for, at most DIAG_SLOTS steps of moments);
   * a later chunk may be submitted before this one resolves, except after a snapshot step,
   * which snapshot() must read first. A model of one replica; trainReplicas trains a group.
   */
  trainChunk(
    batches: Int32Array<ArrayBuffer>,
    lrs: ArrayLike<number>,
    diag: ChunkDiagnostics = {},
  ): Promise<ChunkResult> {
    if (this.replicas !== 1) throw new Error("trainChunk: a group trains with trainReplicas");
    return this.trainReplicas([batches], [lrs], diag).then((r) => r[0]);
  }

  /**
   * trainChunk for every replica at once: replica r's batches and learning rates are
   * `batches[r]` and `lrs[r]` (the same number of steps for all); the same steps collect
   * diagnostics in each. Resolves to each replica's losses and moments. A replica whose
   * `lrs[r]` is null sits the chunk out: it runs at a learning rate and a momentum of 0 on
   * token 0, which leaves every parameter and statistic of a finite model as it was (p - 0 g
   * is p; mix(r, b, 0) is r), and its results are to be ignored.
   */
  trainReplicas(
    batches: readonly (Int32Array<ArrayBuffer> | null)[],
    lrs: readonly (ArrayLike<number> | null)[],
    diag: ChunkDiagnostics = {},
  ): Promise<ChunkResult[]> {
    const steps = lrs.find((l) => l !== null)?.length ?? 0;
    const per = this.batchSize * (this.config.blockSize + 1);
    const moments = diag.moments ?? [];
    if (
      batches.length !== this.replicas || lrs.length !== this.replicas ||
      lrs.some((l, r) => (l === null) !== (batches[r] === null) || (l && l.length !== steps)) ||
      steps < 1 || steps > this.chunkSteps ||
      batches.some((b) => b && b.length !== steps * per)
    ) {
      throw new Error("trainChunk: batches and learning rates do not match the chunk size");
    }
    if (moments.length > DIAG_SLOTS || moments.some((s) => s < 0 || s >= steps)) {
      throw new Error(`trainChunk: at most ${DIAG_SLOTS} steps of the chunk collect moments`);
    }
    const d = this.device;
    const { host, strides } = this.plan;
    const start = performance.now();
    batches.forEach((b, r) =>
      d.queue.writeBuffer(this.#res.data, r * strides.data * 4, b ?? new Int32Array(steps * per))
    );
    const idle = lrs.map((l) => l === null);
    const diagSlot = new Map(moments.map((s, slot) => [s, slot]));
    const plain = this.stepDispatches(false);
    const withDiag = this.stepDispatches(true);
    const snapAt = diag.snapshot ? steps - 1 : -1;
    this.#writeSteps(
      0,
      Array.from({ length: steps }, (_, s) => {
        const slot = diagSlot.get(s);
        return {
          rows: this.batchSize,
          data: s * per,
          loss: s,
          mode: C.MODE_TRAIN,
          diag: slot === undefined ? C.NONE : host.momentsAt + slot * host.momentsSize,
          snap: s === snapAt ? host.snapAt : C.NONE,
        };
      }),
      lrs.map((l) => l ?? new Float32Array(steps)),
      idle,
    );
    const enc = d.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (let s = 0; s < steps; s++) {
      this.bindStep(pass, s);
      this.encode(pass, diagSlot.has(s) || s === snapAt ? withDiag : plain);
      this.#parity = 1 - this.#parity;
    }
    pass.end();
    // Each replica's losses and moments, from the start of its part of Host.
    const floats = moments.length > 0 ? host.momentsAt + moments.length * host.momentsSize : steps;
    const buf = staging(d, this.replicas * floats * 4);
    for (let r = 0; r < this.replicas; r++) {
      enc.copyBufferToBuffer(this.#res.host, r * strides.host * 4, buf, r * floats * 4, floats * 4);
    }
    const commands = enc.finish();
    this.hostMs += performance.now() - start;
    d.queue.submit([commands]);
    return mapFloats(buf).then((all) =>
      lrs.map((_, r) => {
        const mine = all.subarray(r * floats, (r + 1) * floats);
        return {
          losses: mine.slice(0, steps),
          moments: new Map(moments.map((s, slot) => [
            s,
            this.#moments(mine.subarray(host.momentsAt + slot * host.momentsSize)),
          ])),
        };
      })
    );
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
   * parameters after it, of one replica. Call it before training further.
   */
  async snapshot(step: number, replica = 0): Promise<Snapshot> {
    const { host, ops, strides } = this.plan;
    const r = this.#replica(replica);
    const [snap, acts, params] = await Promise.all([
      readFloats(this.device, this.#res.host, r * strides.host + host.snapAt, host.snapSize),
      this.readActivations(this.batchSize, r),
      this.getParams(r),
    ]);
    const E = this.layout.embedding;
    const slice = (t: { offset: number; size: number }) =>
      params.params.slice(t.offset, t.offset + t.size);
    return {
      step,
      tanh: this.layout.layers.flatMap((l, i) =>
        l.act === "tanh"
          ? [{
            t: acts.layers[i].t,
            dt: unpad(snap, ops[i + 1].snap_dt, this.batchSize * l.positions, l.nOut),
          }]
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

  /** What the whole-split passes (src/gpu/passes.ts) need of this model. */
  #passContext(): PassContext {
    return {
      device: this.device,
      plan: this.plan,
      res: this.#res,
      parity: this.#parity,
      encode: (pass, list) => this.encode(pass, list),
      bindStep: (pass, slot) => this.bindStep(pass, slot),
      writeSteps: (first, list) => this.#writeSteps(first, list),
    };
  }

  /** Mean loss over all examples, in evaluation mode (running BatchNorm statistics). */
  async evaluate(ex: Examples): Promise<number> {
    return (await this.evaluateReplicas(this.#each(ex)))[0];
  }

  /** evaluate for every replica, in the same passes: replica r's mean loss over exs[r]. */
  evaluateReplicas(exs: readonly Examples[]): Promise<number[]> {
    return evaluate(this.#passContext(), this.#perReplica(exs));
  }

  #each(ex: Examples): Examples[] {
    return Array(this.replicas).fill(ex);
  }

  #perReplica(exs: readonly Examples[]): readonly Examples[] {
    if (exs.length !== this.replicas) {
      throw new Error(`${exs.length} splits for a group of ${this.replicas} replicas`);
    }
    return exs;
  }

  /**
   * Sets every BatchNorm's running statistics to the exact statistics of its input over the
   * examples, layer by layer, as makemore does after training; resolves to the mean loss over
   * them with the new statistics (NaN if `signal` stopped it).
   */
  async calibrate(
    ex: Examples,
    signal?: AbortSignal,
    progress?: (fraction: number) => void,
  ): Promise<number> {
    return (await this.calibrateReplicas(this.#each(ex), signal, progress))[0];
  }

  /** calibrate for every replica, in the same passes: replica r over exs[r]. */
  calibrateReplicas(
    exs: readonly Examples[],
    signal?: AbortSignal,
    progress?: (fraction: number) => void,
  ): Promise<number[]> {
    return calibrate(this.#passContext(), this.#perReplica(exs), signal, progress);
  }

  /**
   * Uploads one replica's parameters and running statistics, given in the CPU layout
   * (src/model.ts).
   */
  setParams(params: Float32Array, buffers: Float32Array, replica = 0): void {
    const q = this.device.queue;
    const { tensors, strides } = this.plan;
    const r = this.#replica(replica);
    const all = new Float32Array(strides.params * 4);
    all.set(tensors.params.pack(params));
    all.set(tensors.running.pack(buffers), tensors.params.size);
    // Both copies: the padding stays zero in each, and nothing is left uninitialized.
    for (const b of this.#res.params) q.writeBuffer(b, r * strides.params * 16, all);
    tensors.weights.forEach((w, l) => {
      const data = w.pack(params);
      for (const t of this.#res.weights[l]) {
        q.writeTexture({ texture: t, origin: [0, 0, r] }, data, { bytesPerRow: w.width * 16 }, [
          w.width,
          w.height,
        ]);
      }
    });
  }

  /** Downloads one replica's current parameters and running statistics, in the CPU layout. */
  async getParams(replica = 0): Promise<{ params: Float32Array; buffers: Float32Array }> {
    const d = this.device;
    const { tensors } = this.plan;
    const r = this.#replica(replica);
    const vectors = tensors.params.size + tensors.running.size;
    // Texture copies need rows of a multiple of 256 bytes.
    const rowFloats = tensors.weights.map((w) => Math.ceil((w.width * 16) / 256) * 64);
    const offsets: number[] = [];
    let floats = vectors;
    tensors.weights.forEach((w, l) => {
      offsets.push(floats);
      floats += rowFloats[l] * w.height;
    });
    const buf = staging(d, floats * 4);
    const enc = d.createCommandEncoder();
    const from = r * this.plan.strides.params * 16;
    enc.copyBufferToBuffer(this.#res.params[this.#parity], from, buf, 0, vectors * 4);
    tensors.weights.forEach((w, l) => {
      enc.copyTextureToBuffer(
        { texture: this.#res.weights[l][this.#parity], origin: [0, 0, r] },
        { buffer: buf, offset: offsets[l] * 4, bytesPerRow: rowFloats[l] * 4 },
        [w.width, w.height],
      );
    });
    d.queue.submit([enc.finish()]);
    const all = await mapFloats(buf);
    const params = new Float32Array(this.layout.nParams);
    const buffers = new Float32Array(this.layout.nBuffers);
    tensors.params.unpack(all, params);
    tensors.running.unpack(all.subarray(tensors.params.size), buffers);
    tensors.weights.forEach((w, l) => w.unpack(all.subarray(offsets[l]), rowFloats[l], params));
    return { params, buffers };
  }

  /**
   * The activations of the last pass over `rows` examples, in the CPU layout: the embedding
   * output and its gradient, and per layer h, t, dh and the batch mean and variance. For tests
   * and diagnostics; a training chunk's values are those of its last step.
   */
  async readActivations(rows: number, replica = 0): Promise<GpuActivations> {
    const { regions, strides } = this.plan;
    const r = this.#replica(replica);
    const read = (b: GPUBuffer, stride: number, quads: number) =>
      readFloats(this.device, b, r * stride * 4, quads * 4);
    const [act0, act1, grad0, grad1] = await Promise.all([
      read(this.#res.activations[0], strides.act, regions.actQuads[0]),
      read(this.#res.activations[1], strides.act, regions.actQuads[1]),
      read(this.#res.gradients[0], strides.grad, regions.gradQuads[0]),
      read(this.#res.gradients[1], strides.grad, regions.gradQuads[1]),
    ]);
    const act = [act0, act1];
    const grad = [grad0, grad1];
    // The embedding's rows join `group` tokens; layer l has rows * positions rows.
    const { group, positions } = this.layout;
    const K0 = group * this.layout.embedding.shape[1];
    return {
      x0: unpad(act[1], regions.x0 * 4, rows * positions, K0),
      dx0: unpad(grad[1], regions.dx0 * 4, rows * positions, K0),
      layers: this.layout.layers.map((l, i) => ({
        h: unpad(act[i % 2], regions.h[i] * 4, rows * l.positions, l.nOut),
        t: unpad(act[i % 2], regions.t[i] * 4, rows * l.positions, l.nOut),
        dh: unpad(grad[i % 2], regions.dh[i] * 4, rows * l.positions, l.nOut),
        mean: unpad(act[i % 2], regions.stats[i] * 4, 1, l.nOut),
        variance: unpad(act[i % 2], (regions.stats[i] + roundUp4(l.nOut) / 4) * 4, 1, l.nOut),
      })),
    };
  }

  /**
   * readActivations' inverse: writes values in the CPU layout into the activation and gradient
   * buffers (padding zero), the inputs of a kernel run alone (src/gpu/kernel_check.ts).
   */
  writeActivations(rows: number, acts: GpuActivations, replica = 0): void {
    const { regions, strides } = this.plan;
    const r = this.#replica(replica);
    const act = regions.actQuads.map((q) => new Float32Array(q * 4));
    const grad = regions.gradQuads.map((q) => new Float32Array(q * 4));
    const { group, positions } = this.layout;
    const K0 = group * this.layout.embedding.shape[1];
    pad(act[1], regions.x0 * 4, acts.x0, rows * positions, K0);
    pad(grad[1], regions.dx0 * 4, acts.dx0, rows * positions, K0);
    this.layout.layers.forEach((l, i) => {
      const a = acts.layers[i];
      const R = rows * l.positions;
      pad(act[i % 2], regions.h[i] * 4, a.h, R, l.nOut);
      pad(act[i % 2], regions.t[i] * 4, a.t, R, l.nOut);
      pad(grad[i % 2], regions.dh[i] * 4, a.dh, R, l.nOut);
      pad(act[i % 2], regions.stats[i] * 4, a.mean, 1, l.nOut);
      pad(act[i % 2], (regions.stats[i] + roundUp4(l.nOut) / 4) * 4, a.variance, 1, l.nOut);
    });
    const q = this.device.queue;
    [0, 1].forEach((p) => {
      q.writeBuffer(this.#res.activations[p], r * strides.act * 16, act[p]);
      q.writeBuffer(this.#res.gradients[p], r * strides.grad * 16, grad[p]);
    });
  }

  /**
   * Runs one dispatch alone, on `batch` (contexts then targets) at learning rate `lr`, the DIAG
   * variants collecting into the first moment slot and the snapshot; the parameter copies then
   * swap, as after a step, so that getParams reads what it wrote. Host is NaN before it runs;
   * resolves to the losses it left there (the batch's, or each row's; NaN where it wrote none).
   * Every replica runs it, on the same batch.
   */
  async runAlone(
    d: Dispatch,
    batch: Int32Array<ArrayBuffer>,
    lr: number,
    replica = 0,
  ): Promise<Float32Array> {
    const q = this.device.queue;
    const { host, strides } = this.plan;
    const r = this.#replica(replica);
    const diag = d.kernel.endsWith("Diag");
    for (let i = 0; i < this.replicas; i++) {
      q.writeBuffer(this.#res.data, i * strides.data * 4, batch);
    }
    q.writeBuffer(this.#res.host, 0, new Float32Array(this.replicas * strides.host).fill(NaN));
    this.#writeSteps(0, [{
      rows: d.rows,
      mode: d.train ? C.MODE_TRAIN : C.MODE_EVAL,
      diag: diag ? host.momentsAt : C.NONE,
      snap: diag ? host.snapAt : C.NONE,
    }], Array(this.replicas).fill([lr]));
    const enc = this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    this.bindStep(pass, 0);
    this.encode(pass, [d]);
    pass.end();
    q.submit([enc.finish()]);
    this.#parity = 1 - this.#parity;
    return await readFloats(this.device, this.#res.host, r * strides.host, Math.max(1, d.rows));
  }

  destroy(): void {
    this.#res.destroy();
  }
}
