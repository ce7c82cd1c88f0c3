/**
 * What trains: the WebGPU kernels (src/gpu/) or the CPU reference (src/cpu/), behind one
 * interface, so that the training loop (src/training.ts) does not care which. A backend
 * carries its own limits (the largest batch, how many steps of a chunk collect diagnostics,
 * which kernels): nothing outside it reaches into src/gpu/ or src/cpu/.
 */

import type { Examples } from "./data.ts";
import type { Moments, Snapshot } from "./diagnostics.ts";
import { openCpuBackend } from "./cpu/backend.ts";
import { C } from "./gpu/abi.ts";
import { openGpuBackend } from "./gpu/backend.ts";
import type { GpuMessages } from "./gpu/device.ts";
import { ReplicaGroup } from "./gpu/group.ts";
import type { ModelConfig } from "./model.ts";

export type BackendKind = "webgpu" | "cpu";
/** Which WebGPU kernels: chosen by the adapter (`auto`), or forced. */
export type KernelChoice = "auto" | "software" | "gpu";
export const KERNEL_CHOICES: readonly KernelChoice[] = ["auto", "software", "gpu"];

/** What a chunk of training steps returns. */
export interface ChunkResult {
  readonly losses: Float32Array;
  /** For each step that was asked for them (by its index in the chunk): each weight's moments. */
  readonly moments: ReadonlyMap<number, Moments[]>;
}

/** Which steps of a chunk collect diagnostics (indices in the chunk). */
export interface ChunkDiagnostics {
  readonly moments?: readonly number[];
  /** Capture the last step's values for snapshot(). */
  readonly snapshot?: boolean;
}

export interface Backend {
  readonly kind: BackendKind;
  /** The device, in words: "llvmpipe (LLVM 15.0.6, 256 bits) [software fallback]". */
  readonly adapter: string;
  /** The kernels that run: a WebGPU kernel family, or "reference". */
  readonly kernels: string;
  /** The most steps one trainChunk call takes. */
  readonly chunkSteps: number;
  /**
   * How many chunks may wait on the device while the trainer draws and encodes the next one:
   * enough that a fast step never waits for a readback.
   */
  readonly chunksInFlight: number;
  /** The most steps of one chunk that may collect moments. */
  readonly diagSlots: number;
  setParams(params: Float32Array, buffers: Float32Array): void;
  getParams(): Promise<{ params: Float32Array; buffers: Float32Array }>;
  /**
   * SGD steps on `batches` (per step, the contexts [batch][block], then the targets [batch]),
   * one per learning rate. A second chunk may be submitted before the first resolves.
   */
  trainChunk(
    batches: Int32Array<ArrayBuffer>,
    lrs: ArrayLike<number>,
    diag?: ChunkDiagnostics,
  ): Promise<ChunkResult>;
  /** The last step's values; only right after a chunk that asked for a snapshot. */
  snapshot(step: number): Promise<Snapshot>;
  /** Mean loss over a split in evaluation mode (NaN for an empty split). */
  evaluate(ex: Examples): Promise<number>;
  /**
   * Running BatchNorm statistics := the exact statistics over the examples; resolves to the
   * mean loss over them with the new statistics. If `signal` aborts, it stops between passes
   * (NaN, the statistics partly set). `progress` hears how far it is, from 0 to 1.
   */
  calibrate(
    ex: Examples,
    signal?: AbortSignal,
    progress?: (fraction: number) => void,
  ): Promise<number>;
  /** Resolves, with the reason, if the device is lost (not when destroy() ends it). */
  readonly lost?: Promise<string>;
  destroy(): void;
}

export interface BackendOptions {
  readonly kind: BackendKind;
  readonly config: ModelConfig;
  readonly batchSize: number;
  readonly kernels?: KernelChoice;
  /** What to say when there is no WebGPU or no adapter (default: Deno's advice). */
  readonly messages?: GpuMessages;
}

/**
 * Opens a backend for a model. A batch larger than the backend takes, no WebGPU or no adapter
 * are UserErrors (one line, for the user).
 */
export function openBackend(opts: BackendOptions): Promise<Backend> {
  return opts.kind === "cpu" ? Promise.resolve(openCpuBackend(opts.config)) : openGpuBackend(opts);
}

/**
 * Runs of one shape trained together on one device, in the same dispatches (src/gpu/group.ts):
 * member i's backend is `join(i, ...)`; a member that will ask nothing more (it never started,
 * or it failed) `leave`s, so that the others do not wait for it.
 */
export interface BackendGroup {
  join(i: number, opts: BackendOptions): Promise<Backend>;
  leave(i: number): void;
}

/** A group of `replicas` runs on WebGPU (the device opens when the first joins). */
export function openGroup(
  replicas: number,
  opts: { kernels?: KernelChoice; messages?: GpuMessages } = {},
): BackendGroup {
  return ReplicaGroup.create(replicas, opts);
}

/** The most runs one group takes. */
export const MAX_REPLICAS = C.MAX_REPLICAS;
export { shapeKey } from "./gpu/group.ts";
export { AUTO_REPLICAS, maxReplicas } from "./gpu/plan.ts";
export { adapterIsFallback } from "./gpu/device.ts";
