/**
 * Linear layer, CPU reference (mirrors shaders/linear.wgsl).
 *
 * out = inp @ weight (+ bias). Shapes: inp [B, nIn]; weight [nIn, nOut] (fan-in first, as in
 * makemore, so a row of inp multiplies straight into it); bias [nOut]; out [B, nOut].
 */

import type { Floats } from "./types.ts";

export function linearForward(
  out: Floats,
  inp: Floats,
  weight: Floats,
  bias: Floats | null,
  B: number,
  nIn: number,
  nOut: number,
): void {
  for (let b = 0; b < B; b++) {
    for (let o = 0; o < nOut; o++) {
      let acc = bias ? bias[o] : 0;
      for (let i = 0; i < nIn; i++) acc += inp[b * nIn + i] * weight[i * nOut + o];
      out[b * nOut + o] = acc;
    }
  }
}

/**
 * Overwrites the gradients: dinp = dout @ weight^T, dweight = inp^T @ dout,
 * dbias = sum over the batch of dout. Pass null for a gradient that is not needed
 * (the first layer's input, a layer without bias).
 */
export function linearBackward(
  dinp: Floats | null,
  dweight: Floats,
  dbias: Floats | null,
  dout: Floats,
  inp: Floats,
  weight: Floats,
  B: number,
  nIn: number,
  nOut: number,
): void {
  if (dinp) {
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < nIn; i++) {
        let acc = 0;
        for (let o = 0; o < nOut; o++) acc += dout[b * nOut + o] * weight[i * nOut + o];
        dinp[b * nIn + i] = acc;
      }
    }
  }
  for (let i = 0; i < nIn; i++) {
    for (let o = 0; o < nOut; o++) {
      let acc = 0;
      for (let b = 0; b < B; b++) acc += inp[b * nIn + i] * dout[b * nOut + o];
      dweight[i * nOut + o] = acc;
    }
  }
  if (dbias) {
    for (let o = 0; o < nOut; o++) {
      let acc = 0;
      for (let b = 0; b < B; b++) acc += dout[b * nOut + o];
      dbias[o] = acc;
    }
  }
}
