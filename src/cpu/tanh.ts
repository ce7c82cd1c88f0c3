/** tanh, CPU reference (mirrors shaders/tanh.wgsl). Element-wise over n values. */

import type { Floats } from "./types.ts";

export function tanhForward(out: Floats, inp: Floats, n: number): void {
  for (let i = 0; i < n; i++) out[i] = Math.tanh(inp[i]);
}

/** d tanh(x)/dx = 1 - tanh(x)^2, from the forward output, so x need not be kept. */
export function tanhBackward(dinp: Floats, dout: Floats, out: Floats, n: number): void {
  for (let i = 0; i < n; i++) dinp[i] = dout[i] * (1 - out[i] * out[i]);
}
