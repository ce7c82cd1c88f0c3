/**
 * Whole training steps on the GPU against the CPU reference, on the real names data.
 *
 * After 1 step the parameters agree to float32 rounding (measured ~1e-8 of their scale). Over
 * more steps the two drift apart only as fast as training amplifies rounding differences (the
 * GPU's and the CPU's loops sum in different orders): measured after 50 steps, ~5e-8 for the
 * parameters and ~2e-6 for the running variances (sums of squares round more), so 1e-5
 * leaves a margin while a wrong kernel (errors of 1e-3 and more) fails.
 */

import { batchOf, drawBatches } from "../src/batches.ts";
import { CpuModel } from "../src/cpu/model.ts";
import { makeDataset, readWords } from "../src/data.ts";
import { GpuModel } from "../src/gpu/model.ts";
import { initModel, learningRate, type ModelConfig, PRESETS } from "../src/model.ts";
import { Rng } from "../src/rng.ts";
import { assert, maxRelError, withGpu } from "./util.ts";

const words = await readWords(new URL("../data/names.txt", import.meta.url).pathname);
const ds = makeDataset(words, 3, 42);

const configs: [string, ModelConfig][] = [
  ["lecture preset", { ...PRESETS.lecture.model, vocabSize: ds.vocab.size }],
  ["seed-shaped, 3 x 48", {
    ...PRESETS.seed.model,
    vocabSize: ds.vocab.size,
    nHidden: 48,
    nLayers: 3,
  }],
];

for (const [name, config] of configs) {
  Deno.test(`gpu training (${name}): parameters equal the CPU's after 1 and 50 steps`, async () => {
    await withGpu(async (gpu) => {
      const B = 32;
      const steps = 50;
      const batches = drawBatches(new Rng(7), ds.examples.train, steps, B);
      const train = PRESETS.seed.train;
      const lrs = Array.from({ length: steps }, (_, s) => learningRate(train, s));
      const init = initModel(config, new Rng(6));
      const cpu = new CpuModel(
        config,
        Float32Array.from(init.params),
        Float32Array.from(init.buffers),
      );
      const model = await GpuModel.create(gpu, config, { batchSize: B, chunkSteps: 25 });
      try {
        model.setParams(init.params, init.buffers);
        const cpuLosses: number[] = [];
        const gpuLosses: number[] = [];
        for (let s = 0; s < steps; s++) {
          const { ctx, targets } = batchOf(batches, s, B, 3);
          cpuLosses.push(cpu.step(ctx, targets, lrs[s]));
          if (s === 0) {
            gpuLosses.push(...(await model.trainChunk(batches.slice(0, B * 4), [lrs[0]])).losses);
            const after1 = await model.getParams();
            const err = maxRelError(after1.params, cpu.params);
            assert(err < 1e-6, `after 1 step: parameters differ by ${err}`);
          }
        }
        // Steps 2..50 in two chunks, the second submitted before the first is read.
        const per = B * 4;
        const a = model.trainChunk(batches.slice(per, 25 * per), lrs.slice(1, 25));
        const b = model.trainChunk(batches.slice(25 * per), lrs.slice(25));
        gpuLosses.push(...(await a).losses, ...(await b).losses);
        const after = await model.getParams();
        const err = maxRelError(after.params, cpu.params);
        const bufErr = maxRelError(after.buffers, cpu.buffers);
        assert(err < 1e-5, `after ${steps} steps: parameters differ by ${err}`);
        assert(bufErr < 1e-5, `after ${steps} steps: running statistics differ by ${bufErr}`);
        const lossErr = maxRelError(gpuLosses, cpuLosses);
        assert(lossErr < 1e-5, `losses differ by ${lossErr}`);
        assert(cpuLosses.at(-1)! < cpuLosses[0], "training lowered the loss");
      } finally {
        model.destroy();
      }
    });
  });
}
