/** Plain SGD, CPU reference (mirrors shaders/sgd.wgsl): params -= lr * grads, n values. */

import type { Floats } from "./types.ts";

export function sgdUpdate(params: Floats, grads: Floats, lr: number, n: number): void {
  for (let i = 0; i < n; i++) params[i] -= lr * grads[i];
}
