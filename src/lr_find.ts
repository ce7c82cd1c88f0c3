/**
 * The learning-rate range test of makemore part 2: train with a learning rate that grows
 * exponentially from lrMin to lrMax over a few hundred steps, and watch the loss against it. Part
 * 3 adds the better guide this module suggests from: the update-to-data ratio,
 * log10(std(lr * grad) / std(weight)), which is healthy near -3 ("if the updates are small
 * (below 1e-3) increase the learning rate, and vice versa"). The suggestion is where the ratio,
 * smoothed, crosses -3; the loss curve is the evidence beside it. Portable: a Backend, a split.
 */

import type { Backend } from "./backend.ts";
import { drawBatches } from "./batches.ts";
import type { Examples } from "./data.ts";
import { updateRatio } from "./diagnostics.ts";
import type { Rng } from "./rng.ts";

export interface LrFindOptions {
  readonly lrMin: number;
  readonly lrMax: number;
  readonly steps: number;
  readonly batchSize: number;
  /** Steps between two readings of the update-to-data ratios. */
  readonly every?: number;
}

export interface LrFindResult {
  /** Per step: its learning rate, its loss, the loss smoothed (bias-corrected moving average). */
  readonly lrs: number[];
  readonly losses: number[];
  readonly smoothed: number[];
  /** Every `every` steps: the learning rate and the median over the weights of the log10 ratio. */
  readonly ratios: { lr: number; median: number; smoothed: number }[];
  /** The step the test stopped at, if the loss diverged before lrMax. */
  readonly diverged: number | null;
  /** The lowest smoothed loss, and its learning rate. */
  readonly best: { lr: number; loss: number };
  /** The suggested rate, or null when the range holds no answer (`why` says which way to go). */
  readonly suggestion: { lr: number | null; why: string };
}

/** The test's learning rate at step k of `steps`. */
export const rampLr = (k: number, o: LrFindOptions) =>
  o.lrMin * (o.lrMax / o.lrMin) ** (k / Math.max(o.steps - 1, 1));

const TARGET = -3;

export async function findLr(
  backend: Backend,
  train: Examples,
  rng: Rng,
  o: LrFindOptions,
): Promise<LrFindResult> {
  const every = o.every ?? 10;
  const lrs: number[] = [];
  const losses: number[] = [];
  const smoothed: number[] = [];
  const ratios: LrFindResult["ratios"] = [];
  let avg = 0;
  let best = { lr: o.lrMin, loss: Infinity };
  let ratioAvg = 0;
  let diverged: number | null = null;
  const chunk = Math.min(backend.chunkSteps, backend.diagSlots * every);
  for (let k = 0; k < o.steps && diverged === null; k += chunk) {
    const n = Math.min(chunk, o.steps - k);
    const stepLrs = Array.from({ length: n }, (_, i) => rampLr(k + i, o));
    const moments = stepLrs.map((_, i) => i).filter((i) => (k + i + 1) % every === 0);
    const r = await backend.trainChunk(drawBatches(rng, train, n, o.batchSize), stepLrs, {
      moments,
    });
    for (let i = 0; i < n; i++) {
      const loss = r.losses[i];
      const step = k + i;
      // A moving average with the bias of its zero start corrected (as fastai's LR finder).
      avg = 0.98 * avg + 0.02 * loss;
      const s = avg / (1 - 0.98 ** (step + 1));
      lrs.push(stepLrs[i]);
      losses.push(loss);
      smoothed.push(s);
      if (s < best.loss) best = { lr: stepLrs[i], loss: s };
      const m = r.moments.get(i);
      if (m) {
        const logs = m.map((t) => updateRatio(t, stepLrs[i])).filter(Number.isFinite).sort((
          a,
          b,
        ) => a - b);
        const median = logs[Math.floor(logs.length / 2)];
        ratioAvg = ratios.length ? 0.7 * ratioAvg + 0.3 * median : median;
        ratios.push({ lr: stepLrs[i], median, smoothed: ratioAvg });
      }
      // Diverged: not a number, or four times the best after a tenth of the test.
      if (!Number.isFinite(loss) || (step > o.steps / 10 && s > 4 * best.loss)) {
        diverged = step;
        break;
      }
    }
  }
  const suggestion = suggest(ratios, best, { diverged: diverged !== null, lrMin: o.lrMin });
  return { lrs, losses, smoothed, ratios, diverged, best, suggestion };
}

/**
 * Where the smoothed ratio crosses -3, interpolated in log lr; or, with no crossing, a third of
 * the rate of the lowest loss if the loss diverged in the range; or no suggestion, and which way
 * to widen the range, when the range holds no answer.
 */
export function suggest(
  ratios: LrFindResult["ratios"],
  best: LrFindResult["best"],
  range: { diverged: boolean; lrMin: number },
): LrFindResult["suggestion"] {
  for (let i = 1; i < ratios.length; i++) {
    const [a, b] = [ratios[i - 1], ratios[i]];
    if (a.smoothed < TARGET && b.smoothed >= TARGET) {
      const f = (TARGET - a.smoothed) / (b.smoothed - a.smoothed);
      const lr = Math.exp(Math.log(a.lr) + f * (Math.log(b.lr) - Math.log(a.lr)));
      return { lr, why: "the update-to-data ratio reaches 1e-3 there" };
    }
  }
  const widen = "the range holds no answer: widen it";
  if (ratios.length && ratios[0].smoothed >= TARGET) {
    return {
      lr: null,
      why: `the updates are above 1e-3 from the first rate: ${widen} down (a smaller --lr-min)`,
    };
  }
  if (!range.diverged) {
    return {
      lr: null,
      why: `the updates stay below 1e-3 and the loss never diverges: ${widen} up (a larger ` +
        "--lr-max)",
    };
  }
  if (best.lr / 3 < range.lrMin) {
    return {
      lr: null,
      why: "the ratio stays below 1e-3 until the loss diverges, close to --lr-min: " +
        `${widen} down (a smaller --lr-min)`,
    };
  }
  return {
    lr: best.lr / 3,
    why: "the ratio stays below 1e-3 until the loss diverges: a third of the learning rate " +
      "of the lowest loss instead",
  };
}

/** One fixed rate of a comparison (findRates). */
export interface RateResult {
  readonly lr: number;
  /** Per step, the loss smoothed as findLr smooths it. */
  readonly smoothed: number[];
  /** The mean loss of the last tenth of the steps. */
  readonly finalLoss: number;
  /** The median over the weights of the log10 update-to-data ratio, at the last reading. */
  readonly ratio: number;
  /** The step it diverged at (a loss not finite), if it did. */
  readonly diverged: number | null;
}

/**
 * Several fixed learning rates at once, one backend each (the members of one group of
 * replicas on a GPU): the same initialization (set by the caller) and the same batches, `steps`
 * steps at each rate. The rate of the lowest final loss is the one to take.
 */
export async function findRates(
  backends: readonly Backend[],
  train: Examples,
  rng: Rng,
  o: { rates: readonly number[]; steps: number; batchSize: number; every?: number },
): Promise<{ rates: RateResult[]; best: number | null }> {
  const every = o.every ?? 10;
  const [first] = backends;
  const chunk = Math.min(first.chunkSteps, first.diagSlots * every);
  const state = o.rates.map((lr) => ({
    lr,
    avg: 0,
    smoothed: [] as number[],
    losses: [] as number[],
    ratio: NaN,
    diverged: null as number | null,
  }));
  for (let k = 0; k < o.steps && state.some((s) => s.diverged === null); k += chunk) {
    const n = Math.min(chunk, o.steps - k);
    const batches = drawBatches(rng, train, n, o.batchSize);
    const moments = Array.from({ length: n }, (_, i) => i).filter((i) => (k + i + 1) % every === 0);
    // Every rate's chunk at once: a group runs them in the same dispatches.
    const results = await Promise.all(
      backends.map((b, j) => b.trainChunk(batches, new Array(n).fill(o.rates[j]), { moments })),
    );
    results.forEach((r, j) => {
      const s = state[j];
      if (s.diverged !== null) return;
      for (let i = 0; i < n; i++) {
        const loss = r.losses[i];
        if (!Number.isFinite(loss)) {
          s.diverged = k + i;
          return;
        }
        s.avg = 0.98 * s.avg + 0.02 * loss;
        s.smoothed.push(s.avg / (1 - 0.98 ** (k + i + 1)));
        s.losses.push(loss);
        const m = r.moments.get(i);
        if (m) {
          const logs = m.map((t) => updateRatio(t, s.lr)).filter(Number.isFinite).sort((a, b) =>
            a - b
          );
          s.ratio = logs[Math.floor(logs.length / 2)];
        }
      }
    });
  }
  const rates = state.map((s): RateResult => {
    const tail = s.losses.slice(-Math.max(1, Math.floor(s.losses.length / 10)));
    return {
      lr: s.lr,
      smoothed: s.smoothed,
      finalLoss: s.diverged !== null ? NaN : tail.reduce((a, b) => a + b, 0) / tail.length,
      ratio: s.ratio,
      diverged: s.diverged,
    };
  });
  const ok = rates.filter((r) => Number.isFinite(r.finalLoss));
  const best = ok.length ? ok.reduce((a, b) => a.finalLoss <= b.finalLoss ? a : b).lr : null;
  return { rates, best };
}
