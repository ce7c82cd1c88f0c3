/**
 * Whole training steps on the GPU against the CPU reference, on the real names data, through
 * chunks that cross the learning-rate decay: every parameter tensor and every running
 * statistic is compared at its own scale, and the loss of every step.
 *
 * Over many steps the two drift apart as training amplifies rounding differences (the GPU's
 * and the CPU's loops sum in different orders, and a GPU's tanh may be off by WGSL's 1e-5):
 * each tolerance is the drift a conformant GPU may show, estimated from the CPU reference
 * itself (conformantTolerances in tests/util.ts), per tensor. Measured 2026-12-02: after 60
 * steps 1e-5 to 4e-4 of a tensor's scale. What these tests guard is the step's composition
 * (chunks, the parameter copies, the learning rate of each step, batches of any size), whose
 * bugs are far larger: a step run at its chunk's first learning rate moves the parameters by
 * 1e-2; each kernel's own arithmetic is checked to its ULPs by tests/gpu_kernels_test.ts.
 */

import names from "../data/names.txt" with { type: "text" };
import { withEmbedding, withHidden } from "../src/layers.ts";
import { batchOf, drawBatches } from "../src/batches.ts";
import { makeDataset, parseWords } from "../src/data.ts";
import { learningRate, type ModelConfig, modelLayout, PRESETS, type Tensor } from "../src/model.ts";
import { Rng } from "../src/rng.ts";
import type { FamilyName } from "../src/gpu/family.ts";
import { FAMILIES } from "../src/gpu/model.ts";
import {
  assert,
  assertClose,
  conformantTolerances,
  type ModelPair,
  modelPair,
  type ReferenceModel,
} from "./util.ts";

const ds = makeDataset(parseWords(new TextEncoder().encode(names), "names.txt"), 3, 42);
const ds8 = makeDataset(parseWords(new TextEncoder().encode(names), "names.txt"), 8, 42);

// Batches of 32 and 37: the gpu family's tiles are 32 rows, so 37 leaves a partial one.
const configs: [string, ModelConfig, number][] = [
  ["lecture preset", { ...PRESETS.lecture.model, vocabSize: ds.vocab.size }, 32],
  ["seed-shaped, 3 x 48, batch 37", {
    ...PRESETS.seed.model,
    vocabSize: ds.vocab.size,
    nHidden: 48,
    nLayers: 3,
  }, 37],
  // The experiment knobs: no BatchNorm, gain 1; and gain 3 with a fast BatchNorm momentum.
  ["no BatchNorm, 4 x 32, gain 1", {
    ...PRESETS.seed.model,
    vocabSize: ds.vocab.size,
    nHidden: 32,
    nLayers: 4,
    batchNorm: false,
    tanhGain: 1,
    outputBatchNorm: false,
    outputBias: true,
    outputInit: 0.01,
  }, 37],
  // makemore part 5's WaveNet, smaller: the context of 8 joined two by two.
  ["wavenet-shaped, 3 x 16", {
    ...PRESETS.wavenet.model,
    vocabSize: ds.vocab.size,
    nEmbd: 6,
    nHidden: 16,
    layers: withHidden(withEmbedding(PRESETS.wavenet.model.layers, 6), 16),
  }, 32],
  ["gain 3, output scale 0.5, momentum 0.5", {
    ...PRESETS.seed.model,
    vocabSize: ds.vocab.size,
    nHidden: 24,
    nLayers: 2,
    tanhGain: 3,
    outputGamma: 0.5,
    bnMomentum: 0.5,
  }, 32],
];

/** Every parameter tensor and running statistic, by name, of a model's arrays. */
function tensors(
  config: ModelConfig,
  p: { params: ArrayLike<number>; buffers: ArrayLike<number> },
): Record<string, ArrayLike<number>> {
  const layout = modelLayout(config);
  const slice = (a: ArrayLike<number>, t: Tensor) =>
    Array.prototype.slice.call(a, t.offset, t.offset + t.size) as number[];
  return Object.fromEntries([
    ...layout.params.map((t) => [t.name, slice(p.params, t)]),
    ...layout.buffers.map((t) => [t.name, slice(p.buffers, t)]),
  ]);
}

/** Every parameter tensor and running statistic of the two models, each at its own scale. */
async function compareTensors(
  m: ModelPair,
  config: ModelConfig,
  when: string,
  tol: Record<string, number>,
): Promise<void> {
  const cpu = tensors(config, m.cpu);
  const gpu = tensors(config, await m.gpu.getParams());
  for (const [name, values] of Object.entries(gpu)) {
    assertClose(`${when}: ${name}`, values, cpu[name], tol[`${when}: ${name}`]);
  }
}

/** The reference's training of the same steps, for the tolerances: tensors after 1 and all. */
function referenceRun(
  make: ReferenceModel,
  config: ModelConfig,
  init: { params: Float32Array; buffers: Float32Array },
  batches: Int32Array,
  lrs: number[],
  B: number,
): Record<string, ArrayLike<number>> {
  const cpu = make(config, init.params, init.buffers);
  const out: Record<string, ArrayLike<number>> = {};
  const losses: number[] = [];
  const keep = (when: string) => {
    for (const [k, v] of Object.entries(tensors(config, cpu))) out[`${when}: ${k}`] = v;
  };
  lrs.forEach((lr, s) => {
    const { ctx, targets } = batchOf(batches, s, B, config.blockSize);
    losses.push(cpu.step(ctx, targets, lr));
    if (s === 0) keep("after 1 step");
  });
  keep(`after ${lrs.length} steps`);
  return { ...out, losses };
}

for (const family of Object.keys(FAMILIES) as FamilyName[]) {
  for (const [name, config, B] of configs) {
    Deno.test(`training step (${family} kernels, ${name}): every tensor equals the CPU's, through a decay inside a chunk`, async () => {
      const steps = 60;
      const T = config.blockSize;
      const data = T === 8 ? ds8 : ds;
      const batches = drawBatches(new Rng(7), data.examples.train, steps, B);
      // The decay falls in the middle of the second chunk, so a chunk runs steps at two rates.
      const train = { ...PRESETS.seed.train, lr: 0.2, lrFinal: 0.02, decayAt: 37 };
      const lrs = Array.from({ length: steps }, (_, s) => learningRate(train, s));
      await using m = await modelPair(config, {
        batchSize: B,
        chunkSteps: 25,
        initSeed: 6,
        family,
      });
      const tol = conformantTolerances((make) =>
        referenceRun(make, config, m.init, batches, lrs, B)
      );
      const cpuLosses: number[] = [];
      for (let s = 0; s < steps; s++) {
        const { ctx, targets } = batchOf(batches, s, B, T);
        cpuLosses.push(m.cpu.step(ctx, targets, lrs[s]));
        if (s === 0) {
          await m.gpu.trainChunk(batches.slice(0, B * (T + 1)), [lrs[0]]);
          await compareTensors(m, config, "after 1 step", tol);
        }
      }
      // Steps 2..60 in chunks of 24, 25 and 10; each submitted before the one before is read.
      const per = B * (T + 1);
      const chunk = (from: number, to: number) =>
        m.gpu.trainChunk(batches.slice(from * per, to * per), lrs.slice(from, to));
      const parts = [chunk(1, 25), chunk(25, 50), chunk(50, steps)];
      const gpuLosses = [cpuLosses[0]];
      for (const p of parts) gpuLosses.push(...(await p).losses);
      await compareTensors(m, config, `after ${steps} steps`, tol);
      assertClose("the losses of every step", gpuLosses, cpuLosses, tol.losses);
      assert(cpuLosses.at(-1)! < cpuLosses[0], "training lowered the loss");
    });
  }
}
