/**
 * How far a conformant WebGPU implementation may stray from exact arithmetic in each kernel,
 * from WGSL's accuracy rules (the WGSL spec, "Floating Point Accuracy", for f32):
 *
 *   x + y, x - y, x * y, min, max, clamp, select   correctly rounded: relative error <= U
 *   x / y                                          2.5 ULP
 *   inverseSqrt(x)                                 2 ULP
 *   exp(x)                                         3 + 2 |x| ULP
 *   log(x)                                         3 ULP, or absolute 2^-21 for x in [0.5, 2]
 *   tanh(x)                                        absolute 1e-5
 *   dot, mix, ...                                  inherited from the + and * they are made of
 *
 * where U = 2^-24 is the unit roundoff of f32 and 1 ULP of a value v is at most 2U |v|. An
 * implementation may sum in any order and may fuse a multiply and an add: neither can exceed
 * the classic bound on a sum of n rounded terms, |fl(sum) - sum| <= gamma(n) sum |terms| with
 * gamma(n) = nU / (1 - nU) (Higham, Accuracy and Stability of Numerical Algorithms, ch. 3),
 * whichever order the terms meet in. Results too small for f32's normal range may be flushed
 * to zero: TINY per operation covers that.
 *
 * So each bound below is the reference value computed in float64 from the kernel's own inputs
 * (the values the GPU read, read back), and gamma(k) times the same expression evaluated on
 * absolute values, k counting the rounded operations on the longest path to the result, plus
 * the ULP budgets of the functions on that path. A kernel is right when every element of its
 * output lies within its bound: tight enough that a wrong index, a lost term or a 0.1% change
 * in a formula fails by orders of magnitude, and loose enough that no conformant GPU can fail.
 */

import { embeddingBackward, embeddingForward } from "../cpu/embedding.ts";
import type { Activation } from "../layers.ts";
import { linearBackward, linearForward } from "../cpu/linear.ts";
import { roundUp4 } from "./layout.ts";

/** The unit roundoff of f32. */
export const U = 2 ** -24;
/** One ULP of v, relative: at most 2U |v|. */
export const ULP = 2 * U;
/** The smallest normal f32: what one flushed operation may lose. */
export const TINY = 2 ** -126;
/** WGSL's bound on tanh, absolute. */
export const TANH_ABS = 1e-5;
/** WGSL's bounds in ULP. */
export const DIV_ULP = 2.5;
export const INVERSE_SQRT_ULP = 2;
export const expUlp = (x: number): number => 3 + 2 * Math.abs(x);
export const LOG_ULP = 3;
export const LOG_ABS_NEAR_1 = 2 ** -21;

/** The bound on the rounding error of k chained roundings: gamma(k) = kU / (1 - kU). */
export function gamma(k: number): number {
  return (k * U) / (1 - k * U);
}

/** A reference value and how far a conformant kernel may be from it, element by element. */
export interface Bounded {
  readonly ref: Float64Array;
  readonly bound: Float64Array;
}

/**
 * The largest |got - ref| / bound over the elements: at most 1 when the kernel is within its
 * bound (an element whose bound is 0, an exact copy, must be equal); NaN counts as infinite.
 */
export function boundRatio(got: ArrayLike<number>, b: Bounded): number {
  if (got.length !== b.ref.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i] - b.ref[i]);
    const r = d === 0 ? 0 : d / b.bound[i];
    worst = Number.isNaN(r) ? Infinity : Math.max(worst, r);
  }
  return worst;
}

export const f64 = (a: ArrayLike<number>): Float64Array => Float64Array.from(a);
export const abs = (a: ArrayLike<number>): Float64Array => Float64Array.from(a, Math.abs);

/**
 * The invstd of a BatchNorm from the variance the kernel used, and the relative error of the
 * kernel's own: var + eps rounded (U, halved by the square root), then inverseSqrt.
 */
export function invstdOf(variance: ArrayLike<number>, eps: number): Float64Array {
  return Float64Array.from(variance, (v) => 1 / Math.sqrt(v + eps));
}
export const INVSTD_REL = U / 2 + INVERSE_SQRT_ULP * ULP;

// Each op's bound, as its kernels compute it, mirroring the CPU reference (src/cpu/) and named
// as there: x the input, h = x W + b, y = BatchNorm(h), t = tanh(y); dh, dy, dt their gradients.
// Matrices are row-major [B][n]; `B` rows.

const zeros = (n: number) => new Float64Array(n);

/** The embedding lookup copies: exact on every implementation. */
export function embeddingForwardBound(
  C: ArrayLike<number>,
  ctx: Int32Array,
  embd: number,
): Bounded {
  const ref = zeros(ctx.length * embd);
  embeddingForward(ref, f64(C), ctx, ctx.length, embd);
  return { ref, bound: zeros(ref.length) };
}

/**
 * h = x W (+ b): a sum of nIn products and the bias, over the padded width (padding adds exact
 * zeros) in any order: gamma(roundUp4(nIn) + 1) of sum |x W| + |b|.
 */
export function linearForwardBound(
  x: ArrayLike<number>,
  W: ArrayLike<number>,
  b: ArrayLike<number> | null,
  B: number,
  nIn: number,
  nOut: number,
): Bounded {
  const ref = zeros(B * nOut);
  const mag = zeros(B * nOut);
  linearForward(ref, f64(x), f64(W), b && f64(b), B, nIn, nOut);
  linearForward(mag, abs(x), abs(W), b && abs(b), B, nIn, nOut);
  const k = roundUp4(nIn) + 1;
  return { ref, bound: mag.map((m) => gamma(k) * m + k * TINY) };
}

/** t = tanh(y), y itself within its bound: WGSL's 1e-5, and y's error through tanh' <= 1. */
export function tanhForwardBound(y: Bounded): Bounded {
  const ref = y.ref.map(Math.tanh);
  const bound = ref.map((t, i) => {
    const dy = y.bound[i];
    // tanh' = 1 - t^2 moves by at most 0.77 dy across [y - dy, y + dy].
    return TANH_ABS + Math.min(1, 1 - t * t + dy) * dy;
  });
  return { ref, bound };
}

/** The batch mean of each column: B terms summed, then divided by B (2.5 ULP). */
export function batchMeanBound(h: ArrayLike<number>, B: number, N: number): Bounded {
  const ref = zeros(N);
  const mag = zeros(N);
  for (let b = 0; b < B; b++) {
    for (let n = 0; n < N; n++) {
      ref[n] += h[b * N + n] / B;
      mag[n] += Math.abs(h[b * N + n]) / B;
    }
  }
  return { ref, bound: mag.map((m) => gamma(B + 5) * m + B * TINY) };
}

/**
 * The unbiased batch variance from the kernel's own mean: B non-negative terms (h - mean)^2,
 * each within 3U, summed, divided by B - 1: gamma(B + 8) of the variance itself.
 */
export function batchVarianceBound(
  h: ArrayLike<number>,
  mean: ArrayLike<number>,
  B: number,
  N: number,
): Bounded {
  const ref = zeros(N);
  for (let b = 0; b < B; b++) {
    for (let n = 0; n < N; n++) ref[n] += (h[b * N + n] - mean[n]) ** 2 / (B - 1);
  }
  return { ref, bound: ref.map((v) => gamma(B + 8) * v + B * TINY) };
}

/**
 * y = gamma (h - mean) invstd + beta, from the kernel's own statistics: a subtraction and two
 * products (3U), invstd's own error (INVSTD_REL), and the sum with beta (U).
 */
export function batchnormForwardBound(
  h: ArrayLike<number>,
  mean: ArrayLike<number>,
  variance: ArrayLike<number>,
  g: ArrayLike<number>,
  beta: ArrayLike<number>,
  eps: number,
  B: number,
  N: number,
): Bounded {
  const is = invstdOf(variance, Math.fround(eps));
  const ref = zeros(B * N);
  const bound = zeros(B * N);
  for (let b = 0; b < B; b++) {
    for (let n = 0; n < N; n++) {
      const i = b * N + n;
      const scaled = g[n] * (h[i] - mean[n]) * is[n];
      ref[i] = scaled + beta[n];
      bound[i] = (3 * U + INVSTD_REL) * Math.abs(scaled) +
        U * (Math.abs(scaled) + Math.abs(beta[n])) + 4 * TINY;
    }
  }
  return { ref, bound };
}

/** The running statistics' update, mix(run, batch, momentum) = run (1 - m) + batch m. */
export function runningUpdateBound(
  run: ArrayLike<number>,
  batch: ArrayLike<number>,
  momentum: number,
): Bounded {
  const m = Math.fround(momentum);
  const ref = f64(run).map((r, i) => r * (1 - m) + batch[i] * m);
  const bound = f64(run).map((r, i) =>
    3 * U * (Math.abs(r * (1 - m)) + Math.abs(batch[i] * m)) + 3 * TINY
  );
  return { ref, bound };
}

/**
 * The softmax cross-entropy of each row of logits z [B][V] and its gradient, as the kernel
 * computes them: e_v = exp(z_v - max), s = sum e_v, loss = log s + max - z_target, the batch's
 * mean; dz = (e_v / s - onehot) / B.
 */
export function crossEntropyBound(
  z: ArrayLike<number>,
  targets: Int32Array,
  B: number,
  V: number,
): { loss: Bounded; dlogits: Bounded } {
  let loss = 0;
  let lossBound = 0;
  let lossMag = 0;
  const ref = zeros(B * V);
  const bound = zeros(B * V);
  for (let b = 0; b < B; b++) {
    const row = Array.from({ length: V }, (_, v) => z[b * V + v]);
    const max = Math.max(...row);
    const e = row.map((x) => Math.exp(x - max));
    // Each exponential within exp's ULPs, and its argument's rounding (U |x|) through exp.
    const rel = row.map((x) => expUlp(x - max) * ULP + U * Math.abs(x - max));
    const s = e.reduce((a, c) => a + c, 0);
    const ds = e.reduce((a, c, v) => a + c * rel[v], 0) + gamma(V) * s;
    // s >= 1 (its largest term is 1): log's absolute 2^-21 up to 2, else 3 ULP.
    const log = Math.log(s);
    const dlog = ds / s + (s <= 2 ? LOG_ABS_NEAR_1 : LOG_ULP * ULP * log);
    const target = row[targets[b]];
    const rowLoss = log + max - target;
    loss += rowLoss / B;
    lossMag += Math.abs(rowLoss) / B;
    lossBound += (dlog + 2 * U * (Math.abs(log) + Math.abs(max) + Math.abs(target))) / B;
    for (let v = 0; v < V; v++) {
      const p = e[v] / s;
      const onehot = v === targets[b] ? 1 : 0;
      const dp = p * (rel[v] + ds / s + DIV_ULP * ULP);
      ref[b * V + v] = (p - onehot) / B;
      bound[b * V + v] = (dp + U * Math.abs(p - onehot)) / B +
        DIV_ULP * ULP * Math.abs(p - onehot) / B + 3 * TINY;
    }
  }
  return {
    loss: { ref: f64([loss]), bound: f64([lossBound + gamma(B + 5) * lossMag]) },
    dlogits: { ref, bound },
  };
}

/** dy = dt (1 - t^2), with dt within its bound and t the kernel's own forward output. */
export function tanhBackwardBound(dt: Bounded, t: ArrayLike<number>): Bounded {
  const ref = dt.ref.map((d, i) => d * (1 - t[i] * t[i]));
  const bound = dt.ref.map((d, i) => {
    const s = 1 - t[i] * t[i];
    return Math.abs(s) * dt.bound[i] + Math.abs(d) * U * (t[i] * t[i] + 2 * Math.abs(s)) +
      3 * TINY;
  });
  return { ref, bound };
}

/**
 * BatchNorm's backward from dy (within its bound) and the kernel's own h and statistics:
 * dh = gamma invstd (dy - sum dy / B - xhat sum (dy xhat) / (B - 1)), dgamma = sum dy xhat,
 * dbeta = sum dy. dy's error carries through each term; the rounding of the longest path (two
 * sums of B terms, xhat and invstd twice, three divisions, five more operations) stays within
 * gamma(B + 40) of the same expression on absolute values.
 */
export function batchnormBackwardBound(
  dy: Bounded,
  h: ArrayLike<number>,
  mean: ArrayLike<number>,
  variance: ArrayLike<number>,
  g: ArrayLike<number>,
  eps: number,
  B: number,
  N: number,
): { dh: Bounded; dgamma: Bounded; dbeta: Bounded } {
  const is = invstdOf(variance, Math.fround(eps));
  const xhat = zeros(B * N);
  for (let i = 0; i < B * N; i++) xhat[i] = (h[i] - mean[i % N]) * is[i % N];
  const dgamma = zeros(N);
  const dbeta = zeros(N);
  const dh = zeros(B * N);
  const dhBound = zeros(B * N);
  const dgammaBound = zeros(N);
  const dbetaBound = zeros(N);
  for (let n = 0; n < N; n++) {
    let s1 = 0, s2 = 0, m1 = 0, m2 = 0, p1 = 0, p2 = 0;
    for (let b = 0; b < B; b++) {
      const i = b * N + n;
      s1 += dy.ref[i];
      s2 += dy.ref[i] * xhat[i];
      m1 += Math.abs(dy.ref[i]);
      m2 += Math.abs(dy.ref[i] * xhat[i]);
      p1 += dy.bound[i];
      p2 += dy.bound[i] * Math.abs(xhat[i]);
    }
    dbeta[n] = s1;
    dgamma[n] = s2;
    dbetaBound[n] = p1 + gamma(B) * m1 + B * TINY;
    dgammaBound[n] = p2 + gamma(B + 12) * m2 + B * TINY;
    const scale = Math.abs(g[n] * is[n]);
    for (let b = 0; b < B; b++) {
      const i = b * N + n;
      dh[i] = g[n] * is[n] * (dy.ref[i] - s1 / B - (xhat[i] * s2) / (B - 1));
      const ax = Math.abs(xhat[i]);
      dhBound[i] = scale * (dy.bound[i] + p1 / B + (ax * p2) / (B - 1)) +
        gamma(B + 40) * scale * (Math.abs(dy.ref[i]) + m1 / B + (ax * m2) / (B - 1)) +
        (B + 10) * TINY;
    }
  }
  return {
    dh: { ref: dh, bound: dhBound },
    dgamma: { ref: dgamma, bound: dgammaBound },
    dbeta: { ref: dbeta, bound: dbetaBound },
  };
}

/**
 * The linear layer's backward from the kernel's own dh and x: dx = dh W^T (a sum over the
 * padded output width), dW = x^T dh and db = sum dh (sums over the batch).
 */
export function linearBackwardBound(
  dh: ArrayLike<number>,
  x: ArrayLike<number>,
  W: ArrayLike<number>,
  B: number,
  nIn: number,
  nOut: number,
): { dx: Bounded; dW: Bounded; db: Bounded } {
  const [dx, dW, db] = [zeros(B * nIn), zeros(nIn * nOut), zeros(nOut)];
  const [mx, mW, mb] = [zeros(B * nIn), zeros(nIn * nOut), zeros(nOut)];
  linearBackward(dx, dW, db, f64(dh), f64(x), f64(W), B, nIn, nOut);
  linearBackward(mx, mW, mb, abs(dh), abs(x), abs(W), B, nIn, nOut);
  const k = roundUp4(nOut);
  return {
    dx: { ref: dx, bound: mx.map((m) => gamma(k) * m + k * TINY) },
    dW: { ref: dW, bound: mW.map((m) => gamma(B) * m + B * TINY) },
    db: { ref: db, bound: mb.map((m) => gamma(B) * m + B * TINY) },
  };
}

/** The table's gradient: each element a sum over the batch's positions of its token. */
export function embeddingBackwardBound(
  dx: ArrayLike<number>,
  ctx: Int32Array,
  embd: number,
  vocab: number,
): Bounded {
  const ref = zeros(vocab * embd);
  const mag = zeros(vocab * embd);
  embeddingBackward(ref, f64(dx), ctx, ctx.length, embd, vocab);
  embeddingBackward(mag, abs(dx), ctx, ctx.length, embd, vocab);
  return { ref, bound: mag.map((m) => gamma(ctx.length) * m + ctx.length * TINY) };
}

/**
 * A gradient as the test recovers it from one SGD step, (p - p') / lr with p' = p - lr g
 * rounded: within the gradient's bound, and U of the gradient and of p' / lr more.
 */
export function recoveredGradientBound(
  grad: Bounded,
  after: ArrayLike<number>,
  lr: number,
): Bounded {
  return {
    ref: grad.ref,
    bound: grad.bound.map((b, i) =>
      b + U * (Math.abs(grad.ref[i]) + b) + (U * Math.abs(after[i])) / lr + TINY
    ),
  };
}

/** t = max(y, 0), exact: y's own error carries through (relu' is at most 1). */
export function reluForwardBound(y: Bounded): Bounded {
  return { ref: y.ref.map((v) => Math.max(v, 0)), bound: y.bound };
}

/** dy = dt where the kernel's own t > 0, else 0: an exact choice, dt's error where it passes. */
export function reluBackwardBound(dt: Bounded, t: ArrayLike<number>): Bounded {
  return {
    ref: dt.ref.map((d, i) => (t[i] > 0 ? d : 0)),
    bound: dt.bound.map((b, i) => (t[i] > 0 ? b : 0) + TINY),
  };
}

/** Each activation's bounds, forward and backward. */
export const ACTIVATION_BOUNDS: Readonly<
  Record<Activation, {
    forward(y: Bounded): Bounded;
    backward(dt: Bounded, t: ArrayLike<number>): Bounded;
  }>
> = {
  tanh: { forward: tanhForwardBound, backward: tanhBackwardBound },
  relu: { forward: reluForwardBound, backward: reluBackwardBound },
};
