/**
 * Linear layer, CPU reference (mirrors shaders/linear.wgsl).
 *
 * h = x @ w (+ b). Shapes: x [B, nIn]; w [nIn, nOut] (fan-in first, as in makemore, so a row
 * of x multiplies straight into it); b [nOut]; h [B, nOut].
 */

import type { Floats } from "./types.ts";

export function linearForward(
  h: Floats,
  x: Floats,
  w: Floats,
  bias: Floats | null,
  B: number,
  nIn: number,
  nOut: number,
): void {
  for (let r = 0; r < B; r++) {
    for (let o = 0; o < nOut; o++) {
      let acc = bias ? bias[o] : 0;
      for (let i = 0; i < nIn; i++) acc += x[r * nIn + i] * w[i * nOut + o];
      h[r * nOut + o] = acc;
    }
  }
}

/**
 * Overwrites the gradients: dx = dh @ w^T, dw = x^T @ dh, dbias = sum over the batch of dh.
 * Pass null for a gradient that is not needed (a layer without bias).
 */
export function linearBackward(
  dx: Floats | null,
  dw: Floats,
  dbias: Floats | null,
  dh: Floats,
  x: Floats,
  w: Floats,
  B: number,
  nIn: number,
  nOut: number,
): void {
  if (dx) {
    for (let r = 0; r < B; r++) {
      for (let i = 0; i < nIn; i++) {
        let acc = 0;
        for (let o = 0; o < nOut; o++) acc += dh[r * nOut + o] * w[i * nOut + o];
        dx[r * nIn + i] = acc;
      }
    }
  }
  for (let i = 0; i < nIn; i++) {
    for (let o = 0; o < nOut; o++) {
      let acc = 0;
      for (let r = 0; r < B; r++) acc += x[r * nIn + i] * dh[r * nOut + o];
      dw[i * nOut + o] = acc;
    }
  }
  if (dbias) {
    for (let o = 0; o < nOut; o++) {
      let acc = 0;
      for (let r = 0; r < B; r++) acc += dh[r * nOut + o];
      dbias[o] = acc;
    }
  }
}
