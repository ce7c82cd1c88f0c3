/**
 * Seeing inside training, as makemore part 3 does: the tanh activations and their saturation,
 * the gradients flowing into them, each weight's gradient and grad:data ratio, and the
 * update-to-data ratio of each weight over training.
 *
 * The backends produce the raw material on the steps that collect it (src/gpu/model.ts,
 * shaders/linear.wgsl DIAG): `Moments` of every weight on every `ratioEvery`-th step (sums the
 * GPU reduces and the host reads back with the chunk's losses), and a `Snapshot` of one step's
 * values at initialization, at the end, and every --diag-every steps. This module turns them
 * into the statistics of diagnostics.json and the figures (src/plots.ts).
 */

/** Sums over one weight (after one step) from which its update-to-data ratio follows. */
export interface Moments {
  readonly name: string;
  readonly n: number;
  readonly gradSum: number;
  readonly gradSumSq: number;
  readonly paramSum: number;
  readonly paramSumSq: number;
}

/** Unbiased standard deviation from a count and the sums of x and x^2 (as torch.std). */
export function stdFromSums(n: number, sum: number, sumSq: number): number {
  if (n < 2) return 0;
  return Math.sqrt(Math.max(0, (sumSq - (sum * sum) / n) / (n - 1)));
}

/** log10(std(lr * grad) / std(param)): ~ -3 is healthy (makemore part 3). */
export function updateRatio(m: Moments, lr: number): number {
  const g = stdFromSums(m.n, m.gradSum, m.gradSumSq);
  const p = stdFromSums(m.n, m.paramSum, m.paramSumSq);
  return Math.log10((lr * g) / p);
}

/** Moments of a weight from its values (the CPU reference's way to the same numbers). */
export function momentsOf(
  name: string,
  grad: ArrayLike<number>,
  param: ArrayLike<number>,
): Moments {
  let gs = 0, gq = 0, ps = 0, pq = 0;
  for (let i = 0; i < grad.length; i++) {
    gs += grad[i];
    gq += grad[i] * grad[i];
    ps += param[i];
    pq += param[i] * param[i];
  }
  return { name, n: grad.length, gradSum: gs, gradSumSq: gq, paramSum: ps, paramSumSq: pq };
}

/** One training step's values, row-major. */
export interface Snapshot {
  /** Steps done when the snapshot's step began: 0 is the untrained model. */
  readonly step: number;
  /** Per hidden (tanh) layer: its output t [B, n] and the gradient w.r.t. it. */
  readonly tanh: readonly { readonly t: Float32Array; readonly dt: Float32Array }[];
  /** The embedding and each layer's weight: gradient and value after the step. */
  readonly weights: readonly {
    readonly name: string;
    readonly shape: readonly number[];
    readonly grad: Float32Array;
    readonly param: Float32Array;
  }[];
}

export interface Histogram {
  readonly lo: number;
  readonly hi: number;
  /** Equal-width bins between lo and hi; values outside are clamped into the end bins. */
  readonly counts: readonly number[];
}

export interface Distribution {
  readonly mean: number;
  readonly std: number;
  readonly histogram: Histogram;
}

/** |t| above this counts as saturated: tanh's gradient there is below 6% of its peak. */
export const SATURATION = 0.97;
export const BINS = 50;

export function distribution(values: ArrayLike<number>, lo: number, hi: number): Distribution {
  const counts = new Array(BINS).fill(0);
  let sum = 0;
  let sumSq = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    sum += v;
    sumSq += v * v;
    const bin = Math.floor(((v - lo) / (hi - lo)) * BINS);
    counts[Math.min(BINS - 1, Math.max(0, bin))]++;
  }
  return {
    mean: values.length ? sum / values.length : NaN,
    std: stdFromSums(values.length, sum, sumSq),
    histogram: { lo, hi, counts },
  };
}

export function saturation(t: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < t.length; i++) if (Math.abs(t[i]) > SATURATION) n++;
  return t.length ? n / t.length : 0;
}

const maxAbs = (xs: ArrayLike<number>[]) =>
  xs.reduce((m, x) => {
    for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]));
    return m;
  }, 0) || 1;

export interface SnapshotSummary {
  readonly step: number;
  readonly activations: (Distribution & { layer: number; saturated: number })[];
  readonly gradients: (Distribution & { layer: number })[];
  readonly weights: (Distribution & { name: string; shape: readonly number[]; ratio: number })[];
}

/**
 * The statistics of one snapshot. Histograms of a kind share a range (tanh: [-1, 1]; gradients:
 * +-max |value| over the layers) so the curves of different layers compare directly.
 */
export function summarize(s: Snapshot): SnapshotSummary {
  const dtRange = maxAbs(s.tanh.map((l) => l.dt));
  const gradRange = maxAbs(s.weights.map((w) => w.grad));
  return {
    step: s.step,
    activations: s.tanh.map((l, layer) => ({
      layer,
      saturated: saturation(l.t),
      ...distribution(l.t, -1, 1),
    })),
    gradients: s.tanh.map((l, layer) => ({ layer, ...distribution(l.dt, -dtRange, dtRange) })),
    weights: s.weights.map((w) => {
      const d = distribution(w.grad, -gradRange, gradRange);
      const p = distribution(w.param, -1, 1);
      return { name: w.name, shape: w.shape, ratio: d.std / p.std, ...d };
    }),
  };
}

/** Everything diagnostics.json holds. */
export interface Diagnostics {
  readonly snapshots: SnapshotSummary[];
  /** log10 update-to-data ratio of each weight, at `steps`. */
  readonly updateRatios: { steps: number[]; tensors: { name: string; log10: number[] }[] };
}

export function emptyDiagnostics(): Diagnostics {
  return { snapshots: [], updateRatios: { steps: [], tensors: [] } };
}

/** Records one step's update ratios (`step` counts the steps done after it). */
export function addRatios(d: Diagnostics, step: number, moments: readonly Moments[], lr: number) {
  d.updateRatios.steps.push(step);
  for (const m of moments) {
    let row = d.updateRatios.tensors.find((t) => t.name === m.name);
    if (!row) {
      row = { name: m.name, log10: [] };
      d.updateRatios.tensors.push(row);
    }
    row.log10.push(updateRatio(m, lr));
  }
}
