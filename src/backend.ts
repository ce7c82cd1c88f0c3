/**
 * What trains: the WebGPU kernels (src/gpu/model.ts) or the CPU reference (src/cpu/model.ts),
 * behind one interface so that a run (src/train.ts) does not care which.
 */

import { CpuModel } from "./cpu/model.ts";
import type { Examples } from "./data.ts";
import type { Moments, Snapshot } from "./diagnostics.ts";
import { describeAdapter, openGpu } from "./gpu/device.ts";
import { type ChunkDiagnostics, type ChunkResult, GpuModel } from "./gpu/model.ts";
import { initModel, type ModelConfig } from "./model.ts";
import { Rng } from "./rng.ts";

export interface Backend {
  readonly kind: "webgpu" | "cpu";
  readonly adapter: string;
  readonly chunkSteps: number;
  setParams(params: Float32Array, buffers: Float32Array): void;
  getParams(): Promise<{ params: Float32Array; buffers: Float32Array }>;
  trainChunk(
    batches: Int32Array<ArrayBuffer>,
    lrs: ArrayLike<number>,
    diag?: ChunkDiagnostics,
  ): Promise<ChunkResult>;
  /** The last step's values; only right after a chunk that asked for a snapshot. */
  snapshot(step: number): Promise<Snapshot>;
  evaluate(ex: Examples): Promise<number>;
  calibrate(ex: Examples): Promise<void>;
  destroy(): void;
}

/** The CPU reference as a backend: slow, but the same steps on the same batches. */
class CpuBackend implements Backend {
  readonly kind = "cpu";
  readonly adapter = "CPU reference (TypeScript)";
  readonly chunkSteps = 100;
  #model: CpuModel;
  readonly #config: ModelConfig;

  constructor(config: ModelConfig) {
    this.#config = config;
    const { params, buffers } = initModel(config, new Rng(0));
    this.#model = new CpuModel(config, params, buffers);
  }
  setParams(params: Float32Array, buffers: Float32Array): void {
    this.#model = new CpuModel(this.#config, Float32Array.from(params), Float32Array.from(buffers));
  }
  getParams() {
    return Promise.resolve({
      params: Float32Array.from(this.#model.params),
      buffers: Float32Array.from(this.#model.buffers),
    });
  }
  trainChunk(
    batches: Int32Array,
    lrs: ArrayLike<number>,
    diag: ChunkDiagnostics = {},
  ): Promise<ChunkResult> {
    const B = batches.length / lrs.length / (this.#config.blockSize + 1);
    const T = this.#config.blockSize;
    const losses = new Float32Array(lrs.length);
    const moments = new Map<number, Moments[]>();
    for (let s = 0; s < lrs.length; s++) {
      const at = s * B * (T + 1);
      const ctx = batches.subarray(at, at + B * T);
      const targets = batches.subarray(at + B * T, at + B * (T + 1));
      losses[s] = this.#model.step(ctx, targets, lrs[s]);
      if (diag.moments?.includes(s)) moments.set(s, this.#model.moments());
    }
    return Promise.resolve({ losses, moments });
  }
  snapshot(step: number): Promise<Snapshot> {
    return Promise.resolve(this.#model.snapshot(step));
  }
  evaluate(ex: Examples) {
    return Promise.resolve(ex.n ? this.#model.evaluate(ex) : NaN);
  }
  calibrate(ex: Examples) {
    this.#model.calibrate(ex);
    return Promise.resolve();
  }
  destroy() {}
}

class GpuBackend implements Backend {
  readonly kind = "webgpu";
  constructor(
    readonly adapter: string,
    readonly model: GpuModel,
    readonly device: GPUDevice,
  ) {}
  get chunkSteps() {
    return this.model.chunkSteps;
  }
  setParams(params: Float32Array, buffers: Float32Array) {
    this.model.setParams(params, buffers);
  }
  getParams() {
    return this.model.getParams();
  }
  trainChunk(batches: Int32Array<ArrayBuffer>, lrs: ArrayLike<number>, diag?: ChunkDiagnostics) {
    return this.model.trainChunk(batches, lrs, diag);
  }
  snapshot(step: number) {
    return this.model.snapshot(step);
  }
  evaluate(ex: Examples) {
    return this.model.evaluate(ex);
  }
  calibrate(ex: Examples) {
    return this.model.calibrate(ex);
  }
  destroy() {
    this.model.destroy();
    this.device.destroy();
  }
}

export async function openBackend(
  kind: "webgpu" | "cpu",
  config: ModelConfig,
  batchSize: number,
): Promise<Backend> {
  if (kind === "cpu") return new CpuBackend(config);
  const gpu = await openGpu();
  try {
    const model = await GpuModel.create(gpu, config, { batchSize, chunkSteps: 250 });
    return new GpuBackend(describeAdapter(gpu.adapter), model, gpu.device);
  } catch (e) {
    gpu.device.destroy();
    throw e;
  }
}
