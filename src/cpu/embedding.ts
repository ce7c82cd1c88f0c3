/**
 * Embedding lookup, CPU reference (mirrors shaders/embedding.wgsl).
 *
 * Shapes: the table C [vocab, dim]; ids [n]; x [n, dim]. In the model the ids are the batch's
 * contexts [B, T] flattened, so x read as [B, T * dim] is the first layer's input.
 */

import type { Floats } from "./types.ts";

export function embeddingForward(
  x: Floats,
  C: Floats,
  ids: Int32Array,
  n: number,
  dim: number,
): void {
  for (let i = 0; i < n; i++) {
    const src = ids[i] * dim;
    for (let e = 0; e < dim; e++) x[i * dim + e] = C[src + e];
  }
}

/** dC[v, :] = sum of dx[i, :] over every i with ids[i] == v. Overwrites dC. */
export function embeddingBackward(
  dC: Floats,
  dx: Floats,
  ids: Int32Array,
  n: number,
  dim: number,
  vocab: number,
): void {
  dC.fill(0, 0, vocab * dim);
  for (let i = 0; i < n; i++) {
    const dst = ids[i] * dim;
    for (let e = 0; e < dim; e++) dC[dst + e] += dx[i * dim + e];
  }
}
