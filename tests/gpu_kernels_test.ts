/**
 * Every WGSL kernel against the CPU reference, on llvmpipe in CI.
 *
 * One training step on the GPU writes each intermediate tensor from exactly one kernel
 * (shaders/): the embedding output (embedding_forward), each layer's h, output and batch
 * statistics (linear_forward), the loss and the output layer's dh (cross_entropy), each
 * layer's dh and the embedding's gradient (linear_backward), and the updated parameters
 * (linear_backward, cross_entropy and embedding_backward, with SGD fused). Reading them back
 * and comparing with the CPU reference's values for the same batch checks each kernel on its
 * own, on shapes that are multiples of nothing convenient.
 *
 * Tolerance: max |gpu - cpu| / max |cpu| <= 1e-5 per tensor. Both sides round to float32; the
 * longest sums here have ~200 terms, whose accumulated rounding is ~sqrt(200) * 6e-8 ~ 1e-6.
 */

import { CpuModel } from "../src/cpu/model.ts";
import { initModel, type ModelConfig, PRESETS } from "../src/model.ts";
import { GpuModel } from "../src/gpu/model.ts";
import { Rng } from "../src/rng.ts";
import { assert, assertEquals, maxRelError, randInts, withGpu } from "./util.ts";

const TOL = 1e-5;

function check(
  name: string,
  gpu: ArrayLike<number>,
  cpu: ArrayLike<number>,
  tol = TOL,
  floor = 0,
) {
  const err = maxRelError(gpu, cpu, floor);
  assert(err <= tol, `${name}: relative error ${err.toExponential(2)} > ${tol}`);
}

const shapes: [string, ModelConfig, number][] = [
  ["seed-shaped, 2 layers, odd sizes", {
    ...PRESETS.seed.model,
    vocabSize: 27,
    blockSize: 3,
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
  ["3 layers, output bias and BatchNorm, block 5", {
    ...PRESETS.seed.model,
    vocabSize: 6,
    blockSize: 5,
    nEmbd: 3,
    nHidden: 40,
    nLayers: 3,
    outputBias: true,
    // Batch 3, the smallest well-conditioned one: with 2 rows a BatchNorm's output is +-1
    // whatever its input, so its input gradient is 0 up to rounding and has no scale to compare.
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
  Deno.test(`gpu kernels (${name}, batch ${B}): each kernel's output matches the CPU`, async () => {
    await withGpu(async (gpu) => {
      const { params, buffers } = initModel(config, new Rng(3));
      const cpu = new CpuModel(config, Float32Array.from(params), Float32Array.from(buffers));
      const model = await GpuModel.create(gpu, config, { batchSize: B, chunkSteps: 1 });
      try {
        model.setParams(params, buffers);
        const rng = new Rng(4);
        const T = config.blockSize;
        const ctx = randInts(rng, B * T, config.vocabSize);
        const y = randInts(rng, B, config.vocabSize);
        const batch = new Int32Array([...ctx, ...y]);
        // A large learning rate makes the update, recovered as new - old parameter, precise.
        const lr = 100;
        const [loss] = (await model.trainChunk(batch, [lr])).losses;
        const cpuLoss = cpu.forward(ctx, y, "train");
        cpu.backward(y);

        const acts = await model.readActivations(B);
        check("embedding_forward: x", acts.x0, cpu.embedding.x0);
        model.layout.layers.forEach((l, i) => {
          const c = cpu.caches[i];
          const g = acts.layers[i];
          check(`linear_forward ${i}: h`, l.bn ? g.h : g.t, c.h);
          check(`linear_forward ${i}: output`, g.t, c.out);
          if (l.bn) {
            check(`linear_forward ${i}: batch mean`, g.mean, c.mean);
            check(`linear_forward ${i}: batch variance`, g.variance, c.variance);
          }
          const by = i === model.layout.layers.length - 1
            ? "cross_entropy"
            : `linear_backward ${i + 1}`;
          check(`${by}: dh of layer ${i}`, g.dh, c.dh);
        });
        check("linear_backward 0: embedding gradient", acts.dx0, cpu.embedding.dx0);
        assert(
          Math.abs(loss - cpuLoss) <= 1e-5 * cpuLoss,
          `cross_entropy: loss ${loss} vs ${cpuLoss}`,
        );

        const after = await model.getParams();
        // Gradients that vanish analytically (a bias before a BatchNorm) are compared against
        // the model's largest gradient instead of their own rounding noise.
        const floor = 1e-3 * Array.from(cpu.grads).reduce((m, g) => Math.max(m, Math.abs(g)), 0);
        for (const t of model.layout.params) {
          const gpuStep = new Float64Array(t.size);
          const cpuStep = new Float64Array(t.size);
          for (let j = 0; j < t.size; j++) {
            gpuStep[j] = (params[t.offset + j] - after.params[t.offset + j]) / lr;
            cpuStep[j] = cpu.grads[t.offset + j];
          }
          check(`gradient and SGD of ${t.name}`, gpuStep, cpuStep, TOL, floor);
        }
        // The running statistics moved toward the batch's, as on the CPU.
        const cpuRun = Float32Array.from(cpu.buffers);
        for (const t of model.layout.buffers) {
          check(
            `running ${t.name}`,
            after.buffers.subarray(t.offset, t.offset + t.size),
            cpuRun.subarray(t.offset, t.offset + t.size),
          );
        }
      } finally {
        model.destroy();
      }
    });
  });
}

Deno.test("gpu kernels: evaluation and BatchNorm calibration match the CPU", async () => {
  const config: ModelConfig = {
    ...PRESETS.seed.model,
    vocabSize: 11,
    blockSize: 2,
    nEmbd: 3,
    nHidden: 17,
    nLayers: 2,
  };
  await withGpu(async (gpu) => {
    const { params, buffers } = initModel(config, new Rng(8));
    const rng = new Rng(9);
    const n = 5000; // more than one evaluation pass, with a ragged last one
    const ex = {
      x: randInts(rng, n * 2, 11),
      y: randInts(rng, n, 11),
      n,
      blockSize: 2,
    };
    const cpu = new CpuModel(config, Float32Array.from(params), Float32Array.from(buffers));
    const model = await GpuModel.create(gpu, config, { batchSize: 4, evalRows: 1500 });
    try {
      model.setParams(params, buffers);
      const before = await model.evaluate(ex);
      const cpuBefore = cpu.evaluate(ex);
      assert(Math.abs(before - cpuBefore) < 1e-5 * cpuBefore, `eval ${before} vs ${cpuBefore}`);
      await model.calibrate(ex);
      cpu.calibrate(ex);
      const got = await model.getParams();
      check("calibrated running statistics", got.buffers, Float32Array.from(cpu.buffers), 1e-5);
      const after = await model.evaluate(ex);
      const cpuAfter = cpu.evaluate(ex);
      assert(Math.abs(after - cpuAfter) < 1e-5 * cpuAfter, `eval ${after} vs ${cpuAfter}`);
      assert(Math.abs(after - before) > 1e-3, "calibration changed the statistics");
    } finally {
      model.destroy();
    }
  });
});

Deno.test("gpu kernels: calibration at the seed's widths stays within llvmpipe's loop limit", async () => {
  // A calibration pass loops over all its rows in one invocation: with 200-wide layers, passes
  // of 2048 rows once overran llvmpipe's 65,535-iteration limit and silently left rows out.
  const config: ModelConfig = { ...PRESETS.seed.model, vocabSize: 27, nLayers: 2 };
  await withGpu(async (gpu) => {
    const { params, buffers } = initModel(config, new Rng(14));
    const rng = new Rng(15);
    const n = 2100;
    const ex = { x: randInts(rng, n * 3, 27), y: randInts(rng, n, 27), n, blockSize: 3 };
    const model = await GpuModel.create(gpu, config, { batchSize: 32, evalRows: 4096 });
    try {
      assert(model.evalRows < n, `passes of ${model.evalRows} rows: the test needs several`);
      model.setParams(params, buffers);
      await model.calibrate(ex);
      const cpu = new CpuModel(config, Float32Array.from(params), Float32Array.from(buffers));
      cpu.calibrate(ex);
      const gpuLoss = await model.evaluate(ex);
      const cpuLoss = cpu.evaluate(ex);
      assert(Math.abs(gpuLoss - cpuLoss) < 1e-5 * cpuLoss, `eval ${gpuLoss} vs ${cpuLoss}`);
      const got = await model.getParams();
      for (const t of model.layout.buffers) {
        if (!t.name.endsWith("running_var")) continue; // the means are ~0: no scale to compare
        check(
          t.name,
          got.buffers.subarray(t.offset, t.offset + t.size),
          cpu.buffers.subarray(t.offset, t.offset + t.size),
          1e-4,
        );
      }
    } finally {
      model.destroy();
    }
  });
});

Deno.test("gpu kernels: the largest batch x block stays exact (no truncated loops)", async () => {
  // embedding_backward loops over every position of the batch (1024 x 32 here), and
  // linear_forward over 32 row blocks x the input width: llvmpipe would silently stop a loop
  // after 65,535 iterations, leaving the last positions out of the gradient.
  const config: ModelConfig = {
    ...PRESETS.lecture.model,
    vocabSize: 5,
    blockSize: 32,
    nEmbd: 2,
    nHidden: 8,
  };
  await withGpu(async (gpu) => {
    const { params, buffers } = initModel(config, new Rng(10));
    const B = 1024;
    const rng = new Rng(11);
    const ctx = randInts(rng, B * 32, 5);
    const y = randInts(rng, B, 5);
    const cpu = new CpuModel(config, Float32Array.from(params), Float32Array.from(buffers));
    cpu.step(ctx, y, 10);
    const model = await GpuModel.create(gpu, config, { batchSize: B, chunkSteps: 1 });
    try {
      model.setParams(params, buffers);
      await model.trainChunk(new Int32Array([...ctx, ...y]), [10]);
      const got = await model.getParams();
      const emb = model.layout.embedding;
      const delta = (p: ArrayLike<number>) =>
        Float64Array.from(
          { length: emb.size },
          (_, j) => params[emb.offset + j] - p[emb.offset + j],
        );
      check("embedding update", delta(got.params), delta(cpu.params), 1e-4);
    } finally {
      model.destroy();
    }
  });
});

Deno.test("gpu kernels: two runs from the same seed give bit-identical losses", async () => {
  const config: ModelConfig = { ...PRESETS.seed.model, vocabSize: 9, nHidden: 24, nLayers: 2 };
  const B = 16;
  const rng = new Rng(12);
  const steps = 40;
  const data = randInts(rng, steps * B * 4, 9);
  const run = () =>
    withGpu(async (gpu) => {
      const { params, buffers } = initModel(config, new Rng(13));
      const model = await GpuModel.create(gpu, config, { batchSize: B, chunkSteps: 20 });
      try {
        model.setParams(params, buffers);
        const lrs = new Array(20).fill(0.1);
        const a = model.trainChunk(data.slice(0, 20 * B * 4), lrs);
        const b = model.trainChunk(data.slice(20 * B * 4), lrs); // submitted before a resolves
        return [...(await a).losses, ...(await b).losses];
      } finally {
        model.destroy();
      }
    });
  const first = await run();
  const second = await run();
  assertEquals(first.length, steps);
  assertEquals(first, second);
  assert(first.every(Number.isFinite));
});
