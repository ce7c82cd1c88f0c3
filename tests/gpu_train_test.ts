/**
 * Whole training steps on the GPU against the CPU reference, on the real names data, through
 * chunks that cross the learning-rate decay: every parameter tensor and every running
 * statistic is compared at its own scale, and the loss of every step.
 *
 * After 1 step the parameters agree to float32 rounding. Over more steps the two drift apart
 * only as fast as training amplifies rounding differences (the GPU's and the CPU's loops sum in
 * different orders): measured after 60 steps (2026-11-29), at most 8.4e-7 of a tensor's scale
 * for any parameter tensor. 5e-6 leaves a margin of 6 over that, while an error of 0.1% in
 * tanh's derivative gives 3e-5 (the smallest mutation tried), BatchNorm's backward with B for
 * B - 1 fails after one step, and running a step at its chunk's first learning rate gives 1e-2.
 */

import names from "../data/names.txt" with { type: "text" };
import { batchOf, drawBatches } from "../src/batches.ts";
import { makeDataset, parseWords } from "../src/data.ts";
import { learningRate, type ModelConfig, PRESETS } from "../src/model.ts";
import { Rng } from "../src/rng.ts";
import type { FamilyName } from "../src/gpu/family.ts";
import { FAMILIES } from "../src/gpu/model.ts";
import { assert, assertClose, type ModelPair, modelPair } from "./util.ts";

const ds = makeDataset(parseWords(new TextEncoder().encode(names), "names.txt"), 3, 42);
const TOL = 5e-6;

const configs: [string, ModelConfig][] = [
  ["lecture preset", { ...PRESETS.lecture.model, vocabSize: ds.vocab.size }],
  ["seed-shaped, 3 x 48", {
    ...PRESETS.seed.model,
    vocabSize: ds.vocab.size,
    nHidden: 48,
    nLayers: 3,
  }],
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
  }],
  ["gain 3, output scale 0.5, momentum 0.5", {
    ...PRESETS.seed.model,
    vocabSize: ds.vocab.size,
    nHidden: 24,
    nLayers: 2,
    tanhGain: 3,
    outputGamma: 0.5,
    bnMomentum: 0.5,
  }],
];

/** Every parameter tensor and running statistic of the two models, each at its own scale. */
async function compareTensors(m: ModelPair, when: string, tol: number): Promise<void> {
  const got = await m.gpu.getParams();
  for (const t of m.gpu.layout.params) {
    const gpu = got.params.subarray(t.offset, t.offset + t.size);
    assertClose(`${when}: ${t.name}`, gpu, m.cpu.params.subarray(t.offset, t.offset + t.size), tol);
  }
  for (const t of m.gpu.layout.buffers) {
    assertClose(
      `${when}: ${t.name}`,
      got.buffers.subarray(t.offset, t.offset + t.size),
      m.cpu.buffers.subarray(t.offset, t.offset + t.size),
      tol,
    );
  }
}

for (const family of Object.keys(FAMILIES) as FamilyName[]) {
  for (const [name, config] of configs) {
    Deno.test(`training step (${family} kernels, ${name}): every tensor equals the CPU's, through a decay inside a chunk`, async () => {
      const B = 32;
      const steps = 60;
      const batches = drawBatches(new Rng(7), ds.examples.train, steps, B);
      // The decay falls in the middle of the second chunk, so a chunk runs steps at two rates.
      const train = { ...PRESETS.seed.train, lr: 0.2, lrFinal: 0.02, decayAt: 37 };
      const lrs = Array.from({ length: steps }, (_, s) => learningRate(train, s));
      await using m = await modelPair(config, {
        batchSize: B,
        chunkSteps: 25,
        initSeed: 6,
        family,
      });
      const cpuLosses: number[] = [];
      for (let s = 0; s < steps; s++) {
        const { ctx, targets } = batchOf(batches, s, B, 3);
        cpuLosses.push(m.cpu.step(ctx, targets, lrs[s]));
        if (s === 0) {
          await m.gpu.trainChunk(batches.slice(0, B * 4), [lrs[0]]);
          await compareTensors(m, "after 1 step", 1e-6);
        }
      }
      // Steps 2..60 in chunks of 24, 25 and 10; each submitted before the one before is read.
      const per = B * 4;
      const chunk = (from: number, to: number) =>
        m.gpu.trainChunk(batches.slice(from * per, to * per), lrs.slice(from, to));
      const parts = [chunk(1, 25), chunk(25, 50), chunk(50, steps)];
      const gpuLosses = [cpuLosses[0]];
      for (const p of parts) gpuLosses.push(...(await p).losses);
      await compareTensors(m, `after ${steps} steps`, TOL);
      assertClose("the losses of every step", gpuLosses, cpuLosses, TOL);
      assert(cpuLosses.at(-1)! < cpuLosses[0], "training lowered the loss");
    });
  }
}
