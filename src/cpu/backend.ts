/** The CPU reference as a backend: slow, but the same steps on the same batches. */

import type { Backend, ChunkDiagnostics, ChunkResult } from "../backend.ts";
import type { Examples } from "../data.ts";
import type { Moments, Snapshot } from "../diagnostics.ts";
import { initModel, type ModelConfig } from "../model.ts";
import { Rng } from "../rng.ts";
import { CpuModel } from "./model.ts";

class CpuBackend implements Backend {
  readonly kind = "cpu";
  readonly adapter = "CPU reference (TypeScript)";
  readonly kernels = "reference";
  readonly chunkSteps = 100;
  readonly chunksInFlight = 1; // a CPU chunk is done when trainChunk returns
  readonly diagSlots = 100;
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
    const T = this.#config.blockSize;
    const B = batches.length / lrs.length / (T + 1);
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
    return this.evaluate(ex);
  }

  destroy() {}
}

export function openCpuBackend(config: ModelConfig): Backend {
  return new CpuBackend(config);
}
