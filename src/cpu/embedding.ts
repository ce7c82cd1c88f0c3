/**
 * Embedding lookup, CPU reference (mirrors shaders/embedding.wgsl).
 *
 * Shapes: table [vocab, dim]; ids [n]; out [n, dim]. In the model the ids are the batch's
 * contexts [B, T] flattened, so `out` read as [B, T * dim] is the concatenated embedding.
 */

import type { Floats } from "./types.ts";

export function embeddingForward(
  out: Floats,
  table: Floats,
  ids: Int32Array,
  n: number,
  dim: number,
): void {
  for (let i = 0; i < n; i++) {
    const src = ids[i] * dim;
    for (let e = 0; e < dim; e++) out[i * dim + e] = table[src + e];
  }
}

/** dtable[v, :] = sum of dout[i, :] over every i with ids[i] == v. Overwrites dtable. */
export function embeddingBackward(
  dtable: Floats,
  dout: Floats,
  ids: Int32Array,
  n: number,
  dim: number,
  vocab: number,
): void {
  dtable.fill(0, 0, vocab * dim);
  for (let i = 0; i < n; i++) {
    const dst = ids[i] * dim;
    for (let e = 0; e < dim; e++) dtable[dst + e] += dout[i * dim + e];
  }
}
