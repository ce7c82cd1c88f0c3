/**
 * Where the model's tensors live on the GPU, and the conversion from and to the CPU layout
 * (src/model.ts). The kernels read features as vec4, so every row of features is padded to a
 * multiple of 4 and the padding is zero.
 *
 * - Each weight [nIn, nOut] is an rgba32float texture of roundUp4(nIn) rows of
 *   roundUp4(nOut) / 4 texels: on llvmpipe a texel fetch costs a fraction of a storage-buffer
 *   load (linear.wgsl), and a texture is what every GPU caches best for this access pattern.
 * - Every other tensor (the embedding table, biases, BatchNorm gammas, betas and running
 *   statistics) is in one storage buffer, starting on a multiple of 4 floats, the table's rows
 *   each padded to a multiple of 4 floats (BufferLayout).
 */

import type { ModelLayout, Tensor } from "../model.ts";

export const roundUp4 = (n: number): number => Math.ceil(n / 4) * 4;

/**
 * A list of tensors packed into one buffer, each starting on a vec4, and each row of a matrix
 * (the embedding table) padded to a multiple of 4 floats. Padded rows make every vec4 of the
 * buffer hold values of one row only, so that the kernel updating a row owns its vec4s whole:
 * a store to one component of a vec4 in storage may rewrite the whole vector on some GPUs
 * (Metal), and two invocations writing different components of one vec4 would then lose
 * updates (shaders/sgd.wgsl).
 */
export class BufferLayout {
  readonly tensors: readonly Tensor[];
  readonly offsets: readonly number[]; // floats
  readonly size: number;
  readonly #byName: Map<string, number>;

  constructor(tensors: readonly Tensor[]) {
    this.tensors = tensors;
    let cursor = 0;
    this.offsets = tensors.map((t) => {
      const at = cursor;
      const { rows, stride } = BufferLayout.rows(t);
      cursor += rows * stride;
      return at;
    });
    this.size = Math.max(cursor, 4);
    this.#byName = new Map(tensors.map((t, i) => [t.name, this.offsets[i]]));
  }

  /** A tensor as rows of `cols` values, `stride` floats apart: a vector is one row. */
  static rows(t: Tensor): { rows: number; cols: number; stride: number } {
    const cols = t.shape.length === 2 ? t.shape[1] : t.size;
    return { rows: t.size / cols, cols, stride: roundUp4(cols) };
  }

  /** Offset in vec4 units, as the kernels index. */
  quad(name: string): number {
    const at = this.#byName.get(name);
    if (at === undefined) throw new Error(`no tensor named ${name}`);
    return at / 4;
  }

  /** CPU layout -> GPU layout (padding zero). */
  pack(cpu: Float32Array): Float32Array<ArrayBuffer> {
    const gpu = new Float32Array(this.size);
    this.tensors.forEach((t, i) => {
      const { rows, cols, stride } = BufferLayout.rows(t);
      for (let r = 0; r < rows; r++) {
        const src = t.offset + r * cols;
        gpu.set(cpu.subarray(src, src + cols), this.offsets[i] + r * stride);
      }
    });
    return gpu;
  }

  /** GPU layout -> CPU layout, into `cpu`. */
  unpack(gpu: Float32Array, cpu: Float32Array): void {
    this.tensors.forEach((t, i) => {
      const { rows, cols, stride } = BufferLayout.rows(t);
      for (let r = 0; r < rows; r++) {
        const at = this.offsets[i] + r * stride;
        cpu.set(gpu.subarray(at, at + cols), t.offset + r * cols);
      }
    });
  }
}

/** A weight [rows, cols] as a texture of `height` rows of `width` rgba texels. */
export class WeightTexture {
  readonly tensor: Tensor;
  readonly rows: number;
  readonly cols: number;
  readonly width: number;
  readonly height: number;

  constructor(tensor: Tensor) {
    this.tensor = tensor;
    [this.rows, this.cols] = tensor.shape;
    this.width = roundUp4(this.cols) / 4;
    this.height = roundUp4(this.rows);
  }

  /** The texture's contents, row-major, 4 floats a texel, from the CPU parameters. */
  pack(cpu: Float32Array): Float32Array<ArrayBuffer> {
    const stride = this.width * 4;
    const gpu = new Float32Array(this.height * stride);
    for (let r = 0; r < this.rows; r++) {
      const src = this.tensor.offset + r * this.cols;
      gpu.set(cpu.subarray(src, src + this.cols), r * stride);
    }
    return gpu;
  }

  /** From texture rows `stride` floats apart (copies pad rows to 256 bytes), into `cpu`. */
  unpack(gpu: Float32Array, stride: number, cpu: Float32Array): void {
    for (let r = 0; r < this.rows; r++) {
      cpu.set(gpu.subarray(r * stride, r * stride + this.cols), this.tensor.offset + r * this.cols);
    }
  }
}

export interface GpuLayouts {
  /** The non-weight parameters, then the running statistics, in one buffer. */
  readonly params: BufferLayout;
  readonly running: BufferLayout;
  /** One per layer, in layer order. */
  readonly weights: readonly WeightTexture[];
}

export function gpuLayouts(layout: ModelLayout): GpuLayouts {
  const weights = new Set(layout.layers.map((l) => l.weight.name));
  return {
    params: new BufferLayout(layout.params.filter((t) => !weights.has(t.name))),
    running: new BufferLayout(layout.buffers),
    weights: layout.layers.map((l) => new WeightTexture(l.weight)),
  };
}
