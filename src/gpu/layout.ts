/**
 * Where the model's tensors live in the GPU buffers, and the conversion from and to the CPU
 * layout (src/model.ts). The kernels read features as vec4, so every row of features is padded
 * to a multiple of 4 and every tensor starts on a multiple of 4 floats; the padding is zero.
 *
 * - A weight [nIn, nOut] becomes [roundUp4(nIn)][roundUp4(nOut)].
 * - A vector [n] (bias, gamma, beta, running statistics) becomes [roundUp4(n)].
 * - The embedding table [vocab, embd] stays dense (the embedding kernels move single floats),
 *   padded at its end only.
 */

import type { ModelLayout, Tensor } from "../model.ts";

export const roundUp4 = (n: number): number => Math.ceil(n / 4) * 4;

/** One CPU tensor seen as a [rows, cols] matrix, placed at `offset` with `stride` per row. */
export interface Placement {
  readonly tensor: Tensor;
  readonly offset: number; // floats
  readonly rows: number;
  readonly cols: number;
  readonly stride: number; // floats between rows on the GPU
}

/** The placements of a list of tensors in one GPU buffer, and its size in floats. */
export class BufferLayout {
  readonly placements: readonly Placement[];
  readonly size: number;
  readonly #byName: Map<string, Placement>;

  constructor(tensors: readonly Tensor[], matrices: ReadonlySet<string>) {
    let cursor = 0;
    this.placements = tensors.map((tensor) => {
      const matrix = matrices.has(tensor.name);
      const [rows, cols] = matrix ? [tensor.shape[0], tensor.shape[1]] : [1, tensor.size];
      const stride = roundUp4(cols);
      const gpuRows = matrix ? roundUp4(rows) : 1;
      const p = { tensor, offset: cursor, rows, cols, stride };
      cursor += gpuRows * stride;
      return p;
    });
    this.size = Math.max(cursor, 4);
    this.#byName = new Map(this.placements.map((p) => [p.tensor.name, p]));
  }

  get(name: string): Placement {
    const p = this.#byName.get(name);
    if (!p) throw new Error(`no tensor named ${name}`);
    return p;
  }

  /** Offset in vec4 units, as the kernels index. */
  quad(name: string): number {
    return this.get(name).offset / 4;
  }

  /** CPU layout -> GPU layout (padding zero). */
  pack(cpu: Float32Array): Float32Array<ArrayBuffer> {
    const gpu = new Float32Array(this.size);
    for (const p of this.placements) {
      for (let r = 0; r < p.rows; r++) {
        const src = p.tensor.offset + r * p.cols;
        gpu.set(cpu.subarray(src, src + p.cols), p.offset + r * p.stride);
      }
    }
    return gpu;
  }

  /** GPU layout -> CPU layout. */
  unpack(gpu: Float32Array, cpuSize: number): Float32Array {
    const cpu = new Float32Array(cpuSize);
    for (const p of this.placements) {
      for (let r = 0; r < p.rows; r++) {
        const src = p.offset + r * p.stride;
        cpu.set(gpu.subarray(src, src + p.cols), p.tensor.offset + r * p.cols);
      }
    }
    return cpu;
  }
}

/** The parameter and running-statistics buffers of a model. */
export function gpuLayouts(layout: ModelLayout): { params: BufferLayout; buffers: BufferLayout } {
  const weights = new Set(layout.layers.map((l) => l.weight.name));
  return {
    params: new BufferLayout(layout.params, weights),
    buffers: new BufferLayout(layout.buffers, new Set()),
  };
}
