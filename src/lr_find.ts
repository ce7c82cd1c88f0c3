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
