/**
 * BatchNorm1d, CPU reference (mirrors shaders/batchnorm.wgsl).
 *
 * Shapes: inp/out/xhat [B, N] (statistics per column, over the batch); gamma, beta, mean,
 * variance, invstd, running statistics [N].
 *
 * As in makemore's BatchNorm1d, training normalizes with the *unbiased* batch variance
 * (divide by B - 1), so B >= 2, and the running variance tracks that same estimate:
 *   mean = sum_b x / B,  var = sum_b (x - mean)^2 / (B - 1),  invstd = 1 / sqrt(var + eps)
 *   xhat = (x - mean) * invstd,  out = gamma * xhat + beta
 */

import type { Floats } from "./types.ts";

/** Training mode: batch statistics. Writes out, and xhat/mean/variance/invstd for backward. */
export function batchnormForward(
  out: Floats,
  xhat: Floats,
  mean: Floats,
  variance: Floats,
  invstd: Floats,
  inp: Floats,
  gamma: Floats,
  beta: Floats,
  B: number,
  N: number,
  eps: number,
): void {
  for (let n = 0; n < N; n++) {
    let sum = 0;
    for (let b = 0; b < B; b++) sum += inp[b * N + n];
    const m = sum / B;
    let ss = 0;
    for (let b = 0; b < B; b++) ss += (inp[b * N + n] - m) ** 2;
    const v = ss / (B - 1);
    const is = 1 / Math.sqrt(v + eps);
    mean[n] = m;
    variance[n] = v;
    invstd[n] = is;
    for (let b = 0; b < B; b++) {
      const xh = (inp[b * N + n] - m) * is;
      xhat[b * N + n] = xh;
      out[b * N + n] = gamma[n] * xh + beta[n];
    }
  }
}

/** Evaluation mode: the running statistics stand in for the batch's. */
export function batchnormInference(
  out: Floats,
  inp: Floats,
  gamma: Floats,
  beta: Floats,
  runMean: Floats,
  runVar: Floats,
  B: number,
  N: number,
  eps: number,
): void {
  for (let n = 0; n < N; n++) {
    const is = 1 / Math.sqrt(runVar[n] + eps);
    for (let b = 0; b < B; b++) {
      out[b * N + n] = gamma[n] * (inp[b * N + n] - runMean[n]) * is + beta[n];
    }
  }
}

/** running = (1 - momentum) * running + momentum * batch, for mean and variance. */
export function batchnormRunningUpdate(
  runMean: Floats,
  runVar: Floats,
  mean: Floats,
  variance: Floats,
  N: number,
  momentum: number,
): void {
  for (let n = 0; n < N; n++) {
    runMean[n] = (1 - momentum) * runMean[n] + momentum * mean[n];
    runVar[n] = (1 - momentum) * runVar[n] + momentum * variance[n];
  }
}

/**
 * Overwrites dinp, dgamma, dbeta. With dxhat = dout * gamma, differentiating through the mean
 * and the unbiased variance gives
 *   dinp = invstd * (dxhat - mean_b(dxhat) - xhat * sum_b(dxhat * xhat) / (B - 1)).
 */
export function batchnormBackward(
  dinp: Floats,
  dgamma: Floats,
  dbeta: Floats,
  dout: Floats,
  xhat: Floats,
  invstd: Floats,
  gamma: Floats,
  B: number,
  N: number,
): void {
  for (let n = 0; n < N; n++) {
    let sumDout = 0;
    let sumDoutXhat = 0;
    for (let b = 0; b < B; b++) {
      sumDout += dout[b * N + n];
      sumDoutXhat += dout[b * N + n] * xhat[b * N + n];
    }
    dbeta[n] = sumDout;
    dgamma[n] = sumDoutXhat;
    const g = gamma[n];
    for (let b = 0; b < B; b++) {
      const i = b * N + n;
      dinp[i] = g * invstd[n] * (dout[i] - sumDout / B - xhat[i] * sumDoutXhat / (B - 1));
    }
  }
}
