/**
 * Minibatches: `steps` batches of `batchSize` examples drawn uniformly with replacement from a
 * split (as makemore's torch.randint), laid out as the GPU kernels read them: per step, the
 * contexts [batchSize][blockSize], then the targets [batchSize].
 */

import type { Examples } from "./data.ts";
import type { Rng } from "./rng.ts";

export function drawBatches(
  rng: Rng,
  ex: Examples,
  steps: number,
  batchSize: number,
): Int32Array<ArrayBuffer> {
  const T = ex.blockSize;
  const per = batchSize * (T + 1);
  const out = new Int32Array(steps * per);
  for (let s = 0; s < steps; s++) {
    const ctx = s * per;
    const targets = ctx + batchSize * T;
    for (let b = 0; b < batchSize; b++) {
      const i = rng.randint(ex.n);
      out.set(ex.x.subarray(i * T, i * T + T), ctx + b * T);
      out[targets + b] = ex.y[i];
    }
  }
  return out;
}

/** Step s's contexts and targets within the output of drawBatches. */
export function batchOf(
  batches: Int32Array,
  s: number,
  batchSize: number,
  blockSize: number,
): { ctx: Int32Array; targets: Int32Array } {
  const per = batchSize * (blockSize + 1);
  const ctx = batches.subarray(s * per, s * per + batchSize * blockSize);
  const targets = batches.subarray(s * per + batchSize * blockSize, (s + 1) * per);
  return { ctx, targets };
}
