/**
 * Known answers, worked out by hand here rather than taken from the code under test: the
 * sampling distribution (temperature, top-k), the sweep's ranking, lr-find's suggestion, and the
 * evaluation-mode BatchNorm of the CPU reference and of both kernel families with eps != 0.
 */

import type { RunOutcome } from "../src/batch_runs.ts";
import { CpuModel } from "../src/cpu/model.ts";
import { FAMILIES } from "../src/gpu/model.ts";
import type { FamilyName } from "../src/gpu/family.ts";
import { suggest } from "../src/lr_find.ts";
import { type ModelConfig, modelLayout, PRESETS, view } from "../src/model.ts";
import { distribution } from "../src/sample.ts";
import { summarize } from "../src/sweep.ts";
import { assert, assertClose, assertEquals, conformantTolerances, modelPair } from "./util.ts";

Deno.test("sampling: the temperature divides the logits, and top-k keeps exactly k tokens", () => {
  const logits = [0, 1, 2, 3, -1];
  const probs = new Float64Array(5);
  const normalized = (t: number, k: number) => {
    const sum = distribution(logits, probs, t, k);
    return Array.from(probs, (p) => p / sum);
  };
  // Temperature 2: softmax([0, 1, 2, 3, -1] / 2).
  const e = logits.map((l) => Math.exp(l / 2));
  const z = e.reduce((a, b) => a + b);
  assertClose("temperature 2", normalized(2, 0), e.map((x) => x / z), 1e-12);
  // Top 2 at temperature 1: only the logits 3 and 2, as e / (e + 1) and 1 / (e + 1).
  const top2 = normalized(1, 2);
  assertEquals(top2.filter((p) => p > 0).length, 2);
  assertClose("top 2", top2, [0, 0, 1 / (Math.E + 1), Math.E / (Math.E + 1), 0], 1e-12);
  // k = 0 or k >= V: every token.
  assertEquals(normalized(1, 0).filter((p) => p > 0).length, 5);
  assertEquals(normalized(1, 5).filter((p) => p > 0).length, 5);
});

Deno.test("sweep: the best run is the one with the lowest val loss, not train", () => {
  const outcome = (name: string, train: number, val: number): RunOutcome => ({
    spec: { name, dir: `/runs/${name}`, args: [], steps: 10, values: { hidden: name.slice(7) } },
    status: "finished",
    report: { losses: { train, val, test: val }, train_seconds: 1, steps: 10 },
  });
  const result = summarize(["hidden"], [
    outcome("hidden=400", 1.9, 2.3), // lowest train, overfits
    outcome("hidden=200", 2.05, 2.12), // lowest val
    outcome("hidden=100", 2.1, 2.15),
  ]);
  assertEquals(result.best, "hidden=200");
});

Deno.test("lr-find: the suggestion is where the smoothed ratio crosses 1e-3, in log lr", () => {
  // The ratio goes from 10^-3.5 at lr 0.01 to 10^-2.5 at lr 0.1: halfway in log lr, sqrt(1e-3).
  const ratios = [
    { lr: 0.001, median: -4, smoothed: -4 },
    { lr: 0.01, median: -3.5, smoothed: -3.5 },
    { lr: 0.1, median: -2.5, smoothed: -2.5 },
  ];
  const range = { diverged: true, lrMin: 1e-3 };
  const s = suggest(ratios, { lr: 1, loss: 2 }, range);
  assert(s.lr !== null && Math.abs(s.lr / Math.sqrt(1e-3) - 1) < 0.01, `suggested ${s.lr}`);
  // A quarter of the way: 10^-3 is crossed between -3.25 at 0.01 and -2.25 at 0.1.
  const q = suggest(
    [
      { lr: 0.01, median: -3.25, smoothed: -3.25 },
      { lr: 0.1, median: -2.25, smoothed: -2.25 },
    ],
    { lr: 1, loss: 2 },
    range,
  );
  assert(q.lr !== null && Math.abs(q.lr / 10 ** -1.75 - 1) < 0.01, `suggested ${q.lr}`);
});

Deno.test("lr-find: a range without an answer says so, and which way to widen it", () => {
  const low = [{ lr: 1e-9, median: -9, smoothed: -9 }, { lr: 1e-8, median: -8, smoothed: -8 }];
  // Never diverged, never reached 1e-3 (--lr-min 1e-9 --lr-max 1e-8): up.
  const up = suggest(low, { lr: 1e-8, loss: 3 }, { diverged: false, lrMin: 1e-9 });
  assertEquals(up.lr, null);
  assert(/widen it up \(a larger --lr-max\)/.test(up.why), up.why);
  // Above 1e-3 from the first rate (--lr-min 1e2): down.
  const high = [{ lr: 100, median: 0.5, smoothed: 0.5 }];
  const down = suggest(high, { lr: 100, loss: 9 }, { diverged: true, lrMin: 100 });
  assertEquals(down.lr, null);
  assert(/widen it down \(a smaller --lr-min\)/.test(down.why), down.why);
  // Diverged without reaching 1e-3, the lowest loss near --lr-min: no rate below the range.
  const near = suggest(low, { lr: 2e-9, loss: 3 }, { diverged: true, lrMin: 1e-9 });
  assertEquals(near.lr, null);
});

/**
 * A model whose evaluation depends on eps: BatchNorm eps 0.5 against running variances of 1e-4,
 * where sqrt(var + eps) = 0.7072 and sqrt(var) + eps = 0.51. Its loss, by hand: one context
 * token, its embedding, one hidden layer, the output layer with a bias.
 */
const bnConfig: ModelConfig = {
  ...PRESETS.lecture.model,
  vocabSize: 3,
  blockSize: 1,
  nEmbd: 2,
  nHidden: 3,
  bnEps: 0.5,
};

function bnModel(): { params: Float32Array; buffers: Float32Array } {
  const layout = modelLayout(bnConfig);
  const params = new Float32Array(layout.nParams);
  const buffers = new Float32Array(layout.nBuffers);
  params.forEach((_, i) => (params[i] = Math.fround(Math.sin(i + 1) * 0.9)));
  const bn = layout.layers[0].bn!;
  view(buffers, bn.runMean).set([0.1, -0.2, 0.05]);
  view(buffers, bn.runVar).set([1e-4, 2e-4, 5e-5]);
  return { params, buffers };
}

/** The mean loss of every (context, target) pair, from the formulas, in float64. */
function lossByHand(p: Float32Array, b: Float32Array): number {
  const layout = modelLayout(bnConfig);
  const [hidden, out] = layout.layers;
  const C = view(p, layout.embedding);
  const W = view(p, hidden.weight);
  const [gamma, beta] = [view(p, hidden.bn!.gamma), view(p, hidden.bn!.beta)];
  const [mean, variance] = [view(b, hidden.bn!.runMean), view(b, hidden.bn!.runVar)];
  const [Wo, bo] = [view(p, out.weight), view(p, out.bias!)];
  let total = 0;
  for (let id = 0; id < 3; id++) {
    const x = [C[2 * id], C[2 * id + 1]];
    const t = [0, 1, 2].map((j) => {
      const h = x[0] * W[j] + x[1] * W[3 + j];
      return Math.tanh(gamma[j] * (h - mean[j]) / Math.sqrt(variance[j] + 0.5) + beta[j]);
    });
    const logits = [0, 1, 2].map((v) => bo[v] + t.reduce((a, tj, j) => a + tj * Wo[3 * j + v], 0));
    const lse = Math.log(logits.reduce((a, l) => a + Math.exp(l), 0));
    for (let target = 0; target < 3; target++) total += lse - logits[target];
  }
  return total / 9;
}

const every = {
  x: Int32Array.from([0, 0, 0, 1, 1, 1, 2, 2, 2]),
  y: Int32Array.from([0, 1, 2, 0, 1, 2, 0, 1, 2]),
  n: 9,
  blockSize: 1,
};

Deno.test("evaluation BatchNorm: gamma (h - mean) / sqrt(var + eps) + beta, CPU reference", () => {
  const { params, buffers } = bnModel();
  const cpu = new CpuModel(bnConfig, Float64Array.from(params), Float64Array.from(buffers));
  assertClose("loss", [cpu.evaluate(every)], [lossByHand(params, buffers)], 1e-12);
});

for (const family of Object.keys(FAMILIES) as FamilyName[]) {
  Deno.test(`evaluation BatchNorm: gamma (h - mean) / sqrt(var + eps) + beta, ${family} kernels`, async () => {
    const init = bnModel();
    await using m = await modelPair(bnConfig, { batchSize: 4, family });
    m.gpu.setParams(init.params, init.buffers);
    const tol = conformantTolerances((make) => ({
      loss: [make(bnConfig, init.params, init.buffers).evaluate(every)],
    }));
    assertClose(
      "loss",
      [await m.gpu.evaluate(every)],
      [lossByHand(init.params, init.buffers)],
      tol.loss,
    );
  });
}
