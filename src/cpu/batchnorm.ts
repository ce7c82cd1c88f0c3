/**
 * BatchNorm1d, CPU reference (mirrors shaders/batchnorm.wgsl).
 *
 * Shapes: h (the input), xhat, y (the output) [B, N], statistics per column over the batch;
 * gamma, beta, mean, variance, invstd, running statistics [N].
 *
 * As in makemore's BatchNorm1d, training normalizes with the *unbiased* batch variance
 * (divide by B - 1), so B >= 2, and the running variance tracks that same estimate:
 *   mean = sum_b h / B,  var = sum_b (h - mean)^2 / (B - 1),  invstd = 1 / sqrt(var + eps)
 *   xhat = (h - mean) * invstd,  y = gamma * xhat + beta
 */

import type { Floats } from "./types.ts";

/** Training mode: batch statistics. Writes y, and xhat/mean/variance/invstd for backward. */
export function batchnormForward(
  y: Floats,
  xhat: Floats,
  mean: Floats,
  variance: Floats,
  invstd: Floats,
  h: Floats,
  gamma: Floats,
  beta: Floats,
  B: number,
  N: number,
  eps: number,
): void {
  for (let n = 0; n < N; n++) {
    let sum = 0;
    for (let b = 0; b < B; b++) sum += h[b * N + n];
    const m = sum / B;
    let ss = 0;
    for (let b = 0; b < B; b++) ss += (h[b * N + n] - m) ** 2;
    const v = ss / (B - 1);
    const is = 1 / Math.sqrt(v + eps);
    mean[n] = m;
    variance[n] = v;
    invstd[n] = is;
    for (let b = 0; b < B; b++) {
      const xh = (h[b * N + n] - m) * is;
      xhat[b * N + n] = xh;
      y[b * N + n] = gamma[n] * xh + beta[n];
    }
  }
}

/** Evaluation mode: the running statistics stand in for the batch's. */
export function batchnormInference(
  y: Floats,
  h: Floats,
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
      y[b * N + n] = gamma[n] * (h[b * N + n] - runMean[n]) * is + beta[n];
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
 * Overwrites dh, dgamma, dbeta. With dxhat = dy * gamma, differentiating through the mean and
 * the unbiased variance gives
 *   dh = invstd * (dxhat - mean_b(dxhat) - xhat * sum_b(dxhat * xhat) / (B - 1)).
 */
export function batchnormBackward(
  dh: Floats,
  dgamma: Floats,
  dbeta: Floats,
  dy: Floats,
  xhat: Floats,
  invstd: Floats,
  gamma: Floats,
  B: number,
  N: number,
): void {
  for (let n = 0; n < N; n++) {
    let sumDy = 0;
    let sumDyXhat = 0;
    for (let b = 0; b < B; b++) {
      sumDy += dy[b * N + n];
      sumDyXhat += dy[b * N + n] * xhat[b * N + n];
    }
    dbeta[n] = sumDy;
    dgamma[n] = sumDyXhat;
    const g = gamma[n];
    for (let b = 0; b < B; b++) {
      const i = b * N + n;
      dh[i] = g * invstd[n] * (dy[i] - sumDy / B - xhat[i] * sumDyXhat / (B - 1));
    }
  }
}
