/**
 * What a kernel should have written, as the composition of its layers' CPU ops in float64 with
 * the bounds of src/gpu/accuracy.ts: the rules both the whole-step check (src/gpu/selftest.ts)
 * and the one-kernel harness (src/gpu/kernel_check.ts) compare against. A fused kernel is
 * checked against the ops it fuses, one after the other: Linear, then BatchNorm1d on the h the
 * kernel itself wrote, then the activation; and in the backward, the activation's backward and
 * the BatchNorm's on the values the kernel read.
 */

import type { LayerSpec, ModelConfig, Tensor } from "../model.ts";
import { modelLayout, view } from "../model.ts";
import type { Rng } from "../rng.ts";
import {
  ACTIVATION_BOUNDS,
  batchMeanBound,
  batchnormBackwardBound,
  batchnormForwardBound,
  batchVarianceBound,
  type Bounded,
  boundRatio,
  f64,
  linearForwardBound,
  runningUpdateBound,
} from "./accuracy.ts";

/**
 * One tensor compared: `error` is the largest difference from the reference in units of its
 * bound, so that it is right when `error <= tolerance` (1).
 */
export interface Comparison {
  readonly name: string;
  readonly error: number;
  readonly tolerance: number;
}

/** A tensor a kernel wrote, and what it should be. */
export type Check = readonly [name: string, got: ArrayLike<number>, want: Bounded];

export const compare = (checks: readonly Check[]): Comparison[] =>
  checks.map(([name, got, want]) => ({ name, error: boundRatio(got, want), tolerance: 1 }));

/** Values known exactly (a kernel's inputs): any difference is an error. */
export const exact = (a: ArrayLike<number>): Bounded => ({
  ref: f64(a),
  bound: new Float64Array(a.length),
});

/**
 * An initialization with every term of every kernel in play: biases, betas and running means
 * start at 0, gammas and running variances at 1, where a kernel that drops them (or mixes them
 * up) would still be right. Here they are drawn: N(0, 0.1), and 1 + U(0, 0.5) for the ones that
 * scale.
 */
export function nonTrivial(
  config: ModelConfig,
  init: { params: Float32Array; buffers: Float32Array },
  rng: Rng,
): { params: Float32Array; buffers: Float32Array } {
  const layout = modelLayout(config);
  const draw = (a: Float32Array, t: Tensor) => {
    const scales = /(gamma|running_var)$/.test(t.name);
    view(a, t).forEach((_, i, v) => (v[i] = scales ? 1 + 0.5 * rng.uniform() : 0.1 * rng.normal()));
  };
  for (const t of layout.params) if (/(bias|beta|gamma)$/.test(t.name)) draw(init.params, t);
  for (const t of layout.buffers) draw(init.buffers, t);
  return init;
}

/** A layer's values as a kernel wrote or read them, in the CPU layout. */
export interface LayerValues {
  readonly h: ArrayLike<number>;
  readonly t: ArrayLike<number>;
  readonly mean: ArrayLike<number>;
  readonly variance: ArrayLike<number>;
}

/**
 * Block i's forward (Linear, BatchNorm1d, activation: one kernel) from its input x: the checks
 * of what it wrote (`got`), and in training the running statistics it should have left.
 * Without a BatchNorm h is not kept (the kernel writes t = h, or act(h)); in evaluation the
 * BatchNorm normalizes with the running statistics and writes no batch statistics.
 */
export function blockForward(
  l: LayerSpec,
  i: number,
  x: ArrayLike<number>,
  got: LayerValues,
  p: Float32Array,
  run: Float32Array,
  config: ModelConfig,
  R: number,
  train: boolean,
): { checks: Check[]; running: [string, Bounded][] } {
  const act = (y: Bounded) => l.act ? ACTIVATION_BOUNDS[l.act].forward(y) : y;
  const bias = l.bias ? view(p, l.bias) : null;
  const h = linearForwardBound(x, view(p, l.weight), bias, R, l.nIn, l.nOut);
  if (!l.bn) return { checks: [[`layer ${i} forward: t`, got.t, act(h)]], running: [] };
  const checks: Check[] = [[`layer ${i} forward: h`, got.h, h]];
  const [mean, variance] = train
    ? [got.mean, got.variance]
    : [view(run, l.bn.runMean), view(run, l.bn.runVar)];
  const running: [string, Bounded][] = [];
  if (train) {
    checks.push(
      [`layer ${i} forward: batch mean`, got.mean, batchMeanBound(got.h, R, l.nOut)],
      [
        `layer ${i} forward: batch variance`,
        got.variance,
        batchVarianceBound(got.h, got.mean, R, l.nOut),
      ],
    );
    const m = config.bnMomentum;
    running.push(
      [l.bn.runMean.name, runningUpdateBound(view(run, l.bn.runMean), got.mean, m)],
      [l.bn.runVar.name, runningUpdateBound(view(run, l.bn.runVar), got.variance, m)],
    );
  }
  const [gamma, beta] = [view(p, l.bn.gamma), view(p, l.bn.beta)];
  const y = batchnormForwardBound(got.h, mean, variance, gamma, beta, config.bnEps, R, l.nOut);
  checks.push([`layer ${i} forward: t`, got.t, act(y)]);
  return { checks, running };
}

/**
 * Block l's backward below its output: from dt (the gradient w.r.t. its t) through the
 * activation's and the BatchNorm's backward to dh (w.r.t. its h), on the values `v` the kernel
 * read; with the BatchNorm's parameter gradients.
 */
export function blockBackward(
  l: LayerSpec,
  dt: Bounded,
  v: LayerValues,
  p: Float32Array,
  eps: number,
  R: number,
): { dh: Bounded; grads: [string, Bounded][] } {
  const dy = l.act ? ACTIVATION_BOUNDS[l.act].backward(dt, v.t) : dt;
  if (!l.bn) return { dh: dy, grads: [] };
  const gamma = view(p, l.bn.gamma);
  const bn = batchnormBackwardBound(dy, v.h, v.mean, v.variance, gamma, eps, R, l.nOut);
  return { dh: bn.dh, grads: [[l.bn.gamma.name, bn.dgamma], [l.bn.beta.name, bn.dbeta]] };
}
