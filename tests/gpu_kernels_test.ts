/**
 * Every WGSL kernel against the CPU reference, on llvmpipe in CI (and in Chromium:
 * tests/browser_test.ts runs the same checks, src/gpu/selftest.ts, inside a page): the
 * intermediate tensors and updates of one training step on shapes that are multiples of
 * nothing convenient; evaluation and calibration; the loop-limit guard; determinism.
 */

import { UserError } from "../src/errors.ts";
import type { FamilyName } from "../src/gpu/family.ts";
import { FAMILIES, GpuModel } from "../src/gpu/model.ts";
import { checkStep, checkTanh, type Comparison, KERNEL_CASES } from "../src/gpu/selftest.ts";
import type { Examples } from "../src/data.ts";
import { type Layer, parseNetwork, summary } from "../src/layers.ts";
import { initModel, type ModelConfig, modelLayout, PRESETS, view } from "../src/model.ts";
import { Rng } from "../src/rng.ts";
import {
  assert,
  assertClose,
  assertEquals,
  assertRejects,
  conformantTolerances,
  gpu,
  type ModelPair,
  modelPair,
  randInts,
} from "./util.ts";

/**
 * Tolerances of whole passes (evaluation, calibration), where each layer's error feeds the
 * next: the drift a conformant GPU may show (conformantTolerances), for the loss before and
 * after calibrating and for each running statistic.
 */
function passTolerances(
  config: ModelConfig,
  init: { params: Float32Array; buffers: Float32Array },
  ex: Examples,
): Record<string, number> {
  const layout = modelLayout(config);
  return conformantTolerances((make) => {
    const cpu = make(config, init.params, init.buffers);
    const before = [cpu.evaluate(ex)];
    cpu.calibrate(ex);
    return {
      before,
      ...Object.fromEntries(layout.buffers.map((t) => [t.name, view(cpu.buffers, t)])),
      after: [cpu.evaluate(ex)],
    };
  });
}

/** The running statistics, tensor by tensor, each within its tolerance. */
function assertRunning(
  label: string,
  m: ModelPair,
  got: Float32Array,
  tol: Record<string, number>,
): void {
  for (const t of m.gpu.layout.buffers) {
    assertClose(`${label}: ${t.name}`, view(got, t), view(m.cpu.buffers, t), tol[t.name]);
  }
}

/** Every comparison within its tolerance; the failures all named. */
function assertComparisons(label: string, list: readonly Comparison[]): void {
  assert(list.length > 0, `${label}: nothing compared`);
  const bad = list.filter((c) => !(c.error <= c.tolerance));
  assert(
    bad.length === 0,
    bad.map((c) =>
      `${label}: ${c.name}: relative error ${c.error.toExponential(2)} > ${c.tolerance}`
    )
      .join("\n"),
  );
}

const FAMILY_NAMES = Object.keys(FAMILIES) as FamilyName[];

for (const family of FAMILY_NAMES) {
  for (const { name, config, batch } of KERNEL_CASES) {
    Deno.test(`kernels (${family}: ${name}, batch ${batch}): each kernel's output matches the CPU reference`, async () =>
      assertComparisons(name, await checkStep(await gpu(), config, batch, family)));
  }
}

Deno.test("kernels: tanh stays exact where Metal's tanh overflows (|y| = 50, 1e3, 1e30)", async () =>
  assertComparisons("tanh", await checkTanh(await gpu())));

const hierarchical = parseNetwork(
  "Embedding(3) Linear(8, bias=False) BatchNorm1d Tanh FlattenConsecutive(2) " +
    "Linear(8, bias=False) BatchNorm1d Tanh Linear BatchNorm1d",
) as Layer[];

for (const family of FAMILY_NAMES) {
  Deno.test(`kernels (${family}): evaluation and BatchNorm calibration match the CPU reference`, async () => {
    const small = { ...PRESETS.seed.model, vocabSize: 11, blockSize: 2, nEmbd: 3, nHidden: 17 };
    const configs: [string, ModelConfig][] = [
      ["every layer with BatchNorm", { ...small, nLayers: 2 }],
      ["output without BatchNorm", { ...PRESETS.lecture.model, ...small, outputInit: 0.3 }],
      ["no BatchNorm at all", {
        ...small,
        nLayers: 2,
        batchNorm: false,
        outputBatchNorm: false,
        outputBias: true,
      }],
      // A block per token before they are joined: two rows per example in its passes.
      ["hierarchical", {
        ...small,
        layers: hierarchical,
        ...summary(hierarchical),
      }],
    ];
    for (const [name, config] of configs) {
      await using m = await modelPair(config, {
        batchSize: 4,
        evalRows: 1500,
        initSeed: 8,
        family,
      });
      const rng = new Rng(9);
      // More rows than one submit takes (SUBMIT_ROWS), and a ragged last pass.
      const n = 40_000;
      const ex = { x: randInts(rng, n * 2, 11), y: randInts(rng, n, 11), n, blockSize: 2 };
      const tol = passTolerances(config, m.init, ex);
      const before = await m.gpu.evaluate(ex);
      assertClose(`${name}: evaluate, before`, [before], [m.cpu.evaluate(ex)], tol.before);
      const fractions: number[] = [];
      const calibrated = await m.gpu.calibrate(ex, undefined, (f) => fractions.push(f));
      m.cpu.calibrate(ex);
      // Its progress, pass by pass: from 0, rising, short of 1 when the last pass starts (a
      // model without BatchNorm has nothing to calibrate: an evaluation, no progress).
      if (m.gpu.layout.layers.some((l) => l.bn)) {
        assert(fractions.length > 2 && fractions[0] === 0, `progress ${fractions}`);
        assert(fractions.every((f, i) => i === 0 || f > fractions[i - 1]) && fractions.at(-1)! < 1);
      }
      const got = await m.gpu.getParams();
      assertRunning(name, m, got.buffers, tol);
      const cpuAfter = m.cpu.evaluate(ex);
      assertClose(`${name}: the loss calibrate returns`, [calibrated], [cpuAfter], tol.after);
      assertClose(`${name}: evaluate, after`, [await m.gpu.evaluate(ex)], [cpuAfter], tol.after);
      const bn = m.gpu.layout.layers.some((l) => l.bn);
      const moved = got.buffers.some((v, j) => Math.abs(v - m.init.buffers[j]) > 1e-3);
      assert(moved === bn, `${name}: calibration set the statistics there are`);
    }
  });
}

/**
 * llvmpipe silently stops an invocation's loops after 65,536 iterations. The plan's guard
 * (src/gpu/plan.ts) bounds each pass by every kernel's loop count (src/gpu/software.ts): at the
 * largest batch the guard allows, each kernel must still be exact. A guard that let one more
 * loop through would leave rows out here and fail (checked by loosening it).
 */
const sentinels: [string, ModelConfig][] = [
  // embedding_backward loops over rows x block positions.
  ["embedding_backward: block 32, embedding 1", {
    ...PRESETS.lecture.model,
    vocabSize: 5,
    blockSize: 32,
    nEmbd: 1,
    nHidden: 4,
  }],
  // linear_forward with batch statistics, and the input gradient, loop over rows x width.
  ["linear: 200-wide BatchNorm layers", { ...PRESETS.seed.model, vocabSize: 27, nLayers: 1 }],
];

// Only software rasterizers cut loops short: elsewhere these tests have nothing to check.
const loopCapped = (await gpu()).adapter.fallback;
const NO_LOOP_CAP = " [ignored: this adapter has no loop limit]";

for (const [name, config] of sentinels) {
  Deno.test({
    name: `kernels (loop limit, ${name}): exact at the largest batch the guard allows` +
      (loopCapped ? "" : NO_LOOP_CAP),
    ignore: !loopCapped,
    fn: async () => {
      const g = await gpu();
      const probe = await GpuModel.create(g, config, { batchSize: 2, chunkSteps: 1 });
      const most = probe.plan.maxRows;
      probe.destroy();
      assert(most < 4096, `the loop guard is what limits this model (${most} rows)`);
      assertComparisons(`${name}, batch ${most}`, await checkStep(g, config, most));
    },
  });
}

Deno.test({
  name: "kernels (loop limit): a batch over the guard's limit is refused, not truncated" +
    (loopCapped ? "" : NO_LOOP_CAP),
  ignore: !loopCapped,
  fn: async () => {
    // The case a user found through the library: block 32, embedding 1, hidden 4, batch 3,000
    // gave embedding gradients 72% wrong, silently.
    const g = await gpu();
    const config = { ...PRESETS.lecture.model, vocabSize: 5, blockSize: 32, nEmbd: 1, nHidden: 4 };
    const err = await assertRejects(
      GpuModel.create(g, config, { batchSize: 3000, chunkSteps: 1 }),
      UserError,
    );
    assert(/a batch of 3000 rows is more than/.test(err.message), err.message);
  },
});

Deno.test("kernels: evaluation passes at the guard's largest size match the CPU", async () => {
  // Calibration and evaluation run in passes of evalRows rows: at 200-wide layers, passes of
  // 2,048 rows once overran llvmpipe's loop limit and silently left rows out.
  const config: ModelConfig = { ...PRESETS.seed.model, vocabSize: 27, nLayers: 2 };
  await using m = await modelPair(config, { batchSize: 32, evalRows: 1 << 20, initSeed: 14 });
  const rows = m.gpu.evalRows;
  const rng = new Rng(15);
  const n = rows + 37; // two passes, the second ragged
  const ex = { x: randInts(rng, n * 3, 27), y: randInts(rng, n, 27), n, blockSize: 3 };
  const tol = passTolerances(config, m.init, ex);
  await m.gpu.calibrate(ex);
  m.cpu.calibrate(ex);
  assertClose("evaluate", [await m.gpu.evaluate(ex)], [m.cpu.evaluate(ex)], tol.after);
  assertRunning("calibrated", m, (await m.gpu.getParams()).buffers, tol);
});

Deno.test("kernels: two runs from the same seed give bit-identical losses", async () => {
  const config: ModelConfig = { ...PRESETS.seed.model, vocabSize: 9, nHidden: 24, nLayers: 2 };
  const B = 16;
  const steps = 40;
  const data = randInts(new Rng(12), steps * B * 4, 9);
  const g = await gpu();
  const run = async () => {
    const { params, buffers } = initModel(config, new Rng(13));
    const model = await GpuModel.create(g, config, { batchSize: B, chunkSteps: 20 });
    try {
      model.setParams(params, buffers);
      const lrs = new Array(20).fill(0.1);
      const a = model.trainChunk(data.slice(0, 20 * B * 4), lrs);
      const b = model.trainChunk(data.slice(20 * B * 4), lrs); // submitted before a resolves
      return [...(await a).losses, ...(await b).losses];
    } finally {
      await g.device.queue.onSubmittedWorkDone();
      model.destroy();
    }
  };
  const first = await run();
  const second = await run();
  assertEquals(first.length, steps);
  assertEquals(first, second);
  assert(first.every(Number.isFinite));
});

Deno.test("kernels: the CPU reference model and the GPU model start from the same parameters", async () => {
  const config: ModelConfig = { ...PRESETS.seed.model, vocabSize: 7, nHidden: 10, nLayers: 2 };
  await using m = await modelPair(config, { batchSize: 4 });
  const got = await m.gpu.getParams();
  assertEquals(got.params, m.init.params);
  assertEquals(got.buffers, m.init.buffers);
});
