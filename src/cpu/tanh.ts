/** tanh, CPU reference (mirrors shaders/tanh.wgsl). Element-wise over n values. */

import type { Floats } from "./types.ts";

export function tanhForward(t: Floats, y: Floats, n: number): void {
  for (let i = 0; i < n; i++) t[i] = Math.tanh(y[i]);
}

/** d tanh(y)/dy = 1 - tanh(y)^2, from the forward output t, so y need not be kept. */
export function tanhBackward(dy: Floats, dt: Floats, t: Floats, n: number): void {
  for (let i = 0; i < n; i++) dy[i] = dt[i] * (1 - t[i] * t[i]);
}
