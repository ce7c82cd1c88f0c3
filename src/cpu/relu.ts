/**
 * ReLU (makemore part 5 lists it beside Tanh): t = max(y, 0), the other activation a block may
 * end in (shaders/activation.wgsl mirrors it).
 */

import type { Floats } from "./types.ts";

export function reluForward(t: Floats, y: Floats, n: number): void {
  for (let i = 0; i < n; i++) t[i] = Math.max(y[i], 0);
}

/** d relu(y)/dy = 1 where y > 0, else 0; from the output t (t > 0 exactly where y > 0). */
export function reluBackward(dy: Floats, dt: Floats, t: Floats, n: number): void {
  for (let i = 0; i < n; i++) dy[i] = t[i] > 0 ? dt[i] : 0;
}
