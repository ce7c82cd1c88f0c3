/** The WebGPU kernels as a backend: a device and a GpuModel on it, destroyed together. */

import type { Backend, BackendOptions, ChunkDiagnostics } from "../backend.ts";
import type { Examples } from "../data.ts";
import { describeAdapter, openGpu } from "./device.ts";
import { GpuModel } from "./model.ts";
import { DIAG_SLOTS } from "./plan.ts";

/** Steps per chunk: one submit and one readback (~12 ms on llvmpipe) per this many steps. */
export const CHUNK_STEPS = 250;
/**
 * Chunks waiting on the device while the next is encoded. On llvmpipe a chunk takes far longer
 * than a readback; on a GPU, 250 steps of 30 us are 7.5 ms, about what a map can take to come
 * back, so two keep the device busy while the oldest one's losses are read.
 */
export const CHUNKS_IN_FLIGHT = 2;

class GpuBackend implements Backend {
  readonly kind = "webgpu";
  readonly diagSlots = DIAG_SLOTS;
  readonly chunksInFlight = CHUNKS_IN_FLIGHT;
  readonly lost: Promise<string>;
  #destroyed = false;
  constructor(readonly adapter: string, readonly model: GpuModel) {
    // A device this backend destroys is lost too: that one is nobody's news.
    this.lost = new Promise((resolve) => {
      model.device.lost.then((info) => {
        if (!this.#destroyed) resolve(info.message || `the device was lost (${info.reason})`);
      });
    });
  }
  get kernels() {
    return this.model.family.name;
  }
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
  calibrate(ex: Examples, signal?: AbortSignal, progress?: (fraction: number) => void) {
    return this.model.calibrate(ex, signal, progress);
  }
  destroy() {
    this.#destroyed = true;
    this.model.destroy();
    this.model.device.destroy();
  }
}

export async function openGpuBackend(opts: BackendOptions): Promise<Backend> {
  const gpu = await openGpu(opts.messages);
  try {
    const model = await GpuModel.create(gpu, opts.config, {
      batchSize: opts.batchSize,
      chunkSteps: CHUNK_STEPS,
      family: opts.kernels === "auto" ? undefined : opts.kernels,
    });
    return new GpuBackend(describeAdapter(gpu.adapter), model);
  } catch (e) {
    gpu.device.destroy();
    throw e;
  }
}
