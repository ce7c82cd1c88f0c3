/**
 * Every WGSL kernel against the CPU reference (on llvmpipe in CI; in Chromium too, see
 * tests/browser_test.ts).
 *
 * One training step on the GPU writes each intermediate tensor from exactly one kernel: the
 * embedding output (embedding_forward), each layer's h, output t and batch statistics
 * (linear_forward), the loss and the output layer's dh (cross_entropy), each layer's dh and
 * the embedding's gradient (linear_backward), and the updated parameters (linear_backward,
 * cross_entropy and embedding_backward, with SGD fused). Reading them back and comparing with
 * the CPU reference's values for the same batch checks each kernel on its own, on shapes that
 * are multiples of nothing convenient.
 *
 * Tolerance: 1e-5 of each tensor's scale. Both sides round to float32; the longest sums here
 * have ~400 terms, whose accumulated rounding is ~sqrt(400) * 6e-8 ~ 1e-6.
 */

import { CpuModel } from "../src/cpu/model.ts";
import { UserError } from "../src/errors.ts";
import { GpuModel } from "../src/gpu/model.ts";
import { initModel, type ModelConfig, PRESETS } from "../src/model.ts";
import { Rng } from "../src/rng.ts";
import {
  assert,
  assertClose,
  assertEquals,
  assertRejects,
  gpu,
  modelPair,
  randInts,
  randomBatch,
} from "./util.ts";

const TOL = 1e-5;

/** One training step on both sides; every intermediate tensor and every update compared. */
async function checkStep(config: ModelConfig, B: number, label: string): Promise<void> {
  await using m = await modelPair(config, { batchSize: B, chunkSteps: 1 });
  const { ctx, targets, batch } = randomBatch(new Rng(4), config, B);
  // A large learning rate makes the update, recovered as new - old parameter, precise.
  const lr = 100;
  const [loss] = (await m.gpu.trainChunk(batch, [lr])).losses;
  const cpuLoss = m.cpu.forward(ctx, targets, "train");
  m.cpu.backward(targets);

  const acts = await m.gpu.readActivations(B);
  const at = `${label}: `;
  assertClose(at + "embedding_forward: x", acts.x0, m.cpu.embedding.x0, TOL);
  const layers = m.gpu.layout.layers;
  layers.forEach((l, i) => {
    const c = m.cpu.caches[i];
    const g = acts.layers[i];
    assertClose(at + `linear_forward ${i}: h`, l.bn ? g.h : g.t, c.h, TOL);
    assertClose(at + `linear_forward ${i}: t`, g.t, c.t, TOL);
    if (l.bn) {
      assertClose(at + `linear_forward ${i}: batch mean`, g.mean, c.mean, TOL);
      assertClose(at + `linear_forward ${i}: batch variance`, g.variance, c.variance, TOL);
    }
    const by = i === layers.length - 1 ? "cross_entropy" : `linear_backward ${i + 1}`;
    assertClose(at + `${by}: dh of layer ${i}`, g.dh, c.dh, TOL);
  });
  assertClose(at + "linear_backward 0: dx of the embedding", acts.dx0, m.cpu.embedding.dx0, TOL);
  assertClose(at + "cross_entropy: loss", [loss], [cpuLoss], TOL);

  const after = await m.gpu.getParams();
  // Gradients that vanish analytically (a bias before a BatchNorm) are compared against the
  // model's largest gradient instead of their own rounding noise.
  const floor = 1e-3 * Array.from(m.cpu.grads).reduce((a, g) => Math.max(a, Math.abs(g)), 0);
  for (const t of m.gpu.layout.params) {
    const step = Float64Array.from(
      { length: t.size },
      (_, j) => (m.init.params[t.offset + j] - after.params[t.offset + j]) / lr,
    );
    assertClose(
      at + `gradient and SGD of ${t.name}`,
      step,
      m.cpu.grads.subarray(t.offset, t.offset + t.size),
      TOL,
      floor,
    );
  }
  for (const t of m.gpu.layout.buffers) {
    assertClose(
      at + `running ${t.name}`,
      after.buffers.subarray(t.offset, t.offset + t.size),
      Float32Array.from(m.cpu.buffers.subarray(t.offset, t.offset + t.size)),
      TOL,
    );
  }
}

const shapes: [string, ModelConfig, number][] = [
  ["seed-shaped, 2 layers, odd sizes", {
    ...PRESETS.seed.model,
    vocabSize: 27,
    nEmbd: 5,
    nHidden: 13,
    nLayers: 2,
  }, 7],
  ["lecture-shaped, block 1, wide", {
    ...PRESETS.lecture.model,
    vocabSize: 31,
    blockSize: 1,
    nEmbd: 7,
    nHidden: 66,
    outputInit: 0.3,
  }, 37],
  // Batch 3, the smallest well-conditioned one: with 2 rows a BatchNorm's output is +-1
  // whatever its input, so its input gradient is 0 up to rounding and has no scale to compare.
  ["3 layers, output bias and BatchNorm, block 5", {
    ...PRESETS.seed.model,
    vocabSize: 6,
    blockSize: 5,
    nEmbd: 3,
    nHidden: 40,
    nLayers: 3,
    outputBias: true,
  }, 3],
  ["seed preset widths", { ...PRESETS.seed.model, vocabSize: 27 }, 32],
  // 40 rows x 105 vec4 overflow the 64 KiB uniform windows: the storage-buffer kernels.
  ["wide layers, no windows", {
    ...PRESETS.seed.model,
    vocabSize: 13,
    nHidden: 420,
    nLayers: 2,
  }, 40],
];

for (const [name, config, B] of shapes) {
  Deno.test(`kernels (${name}, batch ${B}): each kernel's output matches the CPU reference`, () =>
    checkStep(config, B, name));
}

Deno.test("kernels: evaluation and BatchNorm calibration match the CPU reference", async () => {
  const config: ModelConfig = {
    ...PRESETS.seed.model,
    vocabSize: 11,
    blockSize: 2,
    nEmbd: 3,
    nHidden: 17,
    nLayers: 2,
  };
  await using m = await modelPair(config, { batchSize: 4, evalRows: 1500, initSeed: 8 });
  const rng = new Rng(9);
  const n = 5000; // more than one evaluation pass, with a ragged last one
  const ex = { x: randInts(rng, n * 2, 11), y: randInts(rng, n, 11), n, blockSize: 2 };
  const before = await m.gpu.evaluate(ex);
  assertClose("evaluate, before", [before], [m.cpu.evaluate(ex)], TOL);
  await m.gpu.calibrate(ex);
  m.cpu.calibrate(ex);
  const got = await m.gpu.getParams();
  assertClose("calibrated running statistics", got.buffers, Float32Array.from(m.cpu.buffers), TOL);
  const after = await m.gpu.evaluate(ex);
  assertClose("evaluate, after", [after], [m.cpu.evaluate(ex)], TOL);
  assert(Math.abs(after - before) > 1e-3, "calibration changed the statistics");
});

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

for (const [name, config] of sentinels) {
  Deno.test(`kernels (loop limit, ${name}): exact at the largest batch the guard allows`, async () => {
    const g = await gpu();
    const probe = await GpuModel.create(g, config, { batchSize: 2, chunkSteps: 1 });
    const most = probe.plan.maxRows;
    probe.destroy();
    if (!g.adapter.fallback) return; // real GPUs have no such limit
    assert(most < 4096, `the loop guard is what limits this model (${most} rows)`);
    await checkStep(config, most, `${name}, batch ${most}`);
  });
}

Deno.test("kernels (loop limit): a batch over the guard's limit is refused, not truncated", async () => {
  // The case a user found through the library: block 32, embedding 1, hidden 4, batch 3,000
  // gave embedding gradients 72% wrong, silently.
  const g = await gpu();
  if (!g.adapter.fallback) return; // real GPUs have no such limit
  const config = { ...PRESETS.lecture.model, vocabSize: 5, blockSize: 32, nEmbd: 1, nHidden: 4 };
  const err = await assertRejects(
    GpuModel.create(g, config, { batchSize: 3000, chunkSteps: 1 }),
    UserError,
  );
  assert(/a batch of 3000 rows is more than/.test(err.message), err.message);
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
  await m.gpu.calibrate(ex);
  m.cpu.calibrate(ex);
  assertClose("evaluate", [await m.gpu.evaluate(ex)], [m.cpu.evaluate(ex)], TOL);
  const got = await m.gpu.getParams();
  for (const t of m.gpu.layout.buffers) {
    if (!t.name.endsWith("running_var")) continue; // the means are ~0: no scale to compare
    assertClose(
      t.name,
      got.buffers.subarray(t.offset, t.offset + t.size),
      m.cpu.buffers.subarray(t.offset, t.offset + t.size),
      1e-4,
    );
  }
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
  assert(m.cpu instanceof CpuModel);
});
