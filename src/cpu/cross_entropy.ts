/**
 * Softmax cross-entropy, CPU reference (mirrors shaders/cross_entropy.wgsl).
 *
 * Shapes: logits/probs/dlogits [B, V]; targets [B]. The loss is the batch mean of
 * -log softmax(logits)[target], so its gradient carries the 1/B.
 */

import type { Floats } from "./types.ts";

/** Writes probs (kept for backward) and returns the mean loss. Max-subtracted for range. */
export function crossEntropyForward(
  probs: Floats,
  logits: Floats,
  targets: Int32Array,
  B: number,
  V: number,
): number {
  let loss = 0;
  for (let b = 0; b < B; b++) {
    let max = -Infinity;
    for (let v = 0; v < V; v++) max = Math.max(max, logits[b * V + v]);
    let sum = 0;
    for (let v = 0; v < V; v++) sum += Math.exp(logits[b * V + v] - max);
    for (let v = 0; v < V; v++) probs[b * V + v] = Math.exp(logits[b * V + v] - max) / sum;
    loss += Math.log(sum) + max - logits[b * V + targets[b]];
  }
  return loss / B;
}

/** The fused gradient of softmax and the loss: dlogits = (probs - onehot(target)) / B. */
export function crossEntropyBackward(
  dlogits: Floats,
  probs: Floats,
  targets: Int32Array,
  B: number,
  V: number,
): void {
  for (let b = 0; b < B; b++) {
    for (let v = 0; v < V; v++) {
      dlogits[b * V + v] = (probs[b * V + v] - (v === targets[b] ? 1 : 0)) / B;
    }
  }
}
