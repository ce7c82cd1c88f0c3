/**
 * Diagnostics: the statistics themselves, the GPU's against the CPU reference's on the same
 * steps, and the guarantee that collecting them does not change training.
 */

import { drawBatches } from "../src/batches.ts";
import { CpuModel } from "../src/cpu/model.ts";
import { makeDataset, readWords } from "../src/data.ts";
import { distribution, momentsOf, saturation, summarize, updateRatio } from "../src/diagnostics.ts";
import { GpuModel } from "../src/gpu/model.ts";
import { initModel, type ModelConfig, PRESETS } from "../src/model.ts";
import { Rng } from "../src/rng.ts";
import { assert, assertEquals, withGpu } from "./util.ts";

const close = (a: number, b: number, tol: number) =>
  Math.abs(a - b) <= tol * Math.max(Math.abs(b), 1e-30);

Deno.test("diagnostics: distribution, saturation and update ratio on known values", () => {
  const d = distribution([-1, -0.5, 0, 0.5, 1, 0.99], -1, 1);
  assertEquals(d.histogram.counts.reduce((a, b) => a + b), 6);
  assertEquals(d.histogram.counts[0], 1); // -1 in the first bin
  assertEquals(d.histogram.counts[49], 2); // 1 clamped into the last, with 0.99
  assertEquals(d.histogram.counts[25], 1); // 0 starts the upper half
  assert(close(d.mean, 0.99 / 6, 1e-12));
  assertEquals(saturation([0.98, -0.99, 0.5, 0.97]), 0.5); // strictly above 0.97
  // std(lr * g) / std(p) with g = [1, 3], p = [0, 20], lr 0.01: 0.01 * sqrt(2) / sqrt(200).
  const m = momentsOf("w", [1, 3], [0, 20]);
  assert(close(updateRatio(m, 0.01), Math.log10(0.01 * Math.sqrt(2) / Math.sqrt(200)), 1e-12));
});

const words = await readWords(new URL("../data/names.txt", import.meta.url).pathname);
const ds = makeDataset(words, 3, 42);
const config: ModelConfig = {
  ...PRESETS.seed.model,
  vocabSize: ds.vocab.size,
  nHidden: 40,
  nLayers: 3,
};

Deno.test("diagnostics: the GPU's moments and snapshot match the CPU reference's", async () => {
  await withGpu(async (gpu) => {
    const B = 32;
    const steps = 5;
    const batches = drawBatches(new Rng(3), ds.examples.train, steps, B);
    const lrs = new Array(steps).fill(0.1);
    const init = initModel(config, new Rng(4));
    const model = await GpuModel.create(gpu, config, { batchSize: B, chunkSteps: steps });
    try {
      model.setParams(init.params, init.buffers);
      const got = await model.trainChunk(batches, lrs, { moments: [0, 2, 4], snapshot: true });
      const snap = summarize(await model.snapshot(steps));

      const cpu = new CpuModel(
        config,
        Float32Array.from(init.params),
        Float32Array.from(init.buffers),
      );
      const per = B * 4;
      for (let s = 0; s < steps; s++) {
        const at = s * per;
        cpu.step(batches.subarray(at, at + B * 3), batches.subarray(at + B * 3, at + per), lrs[s]);
        if (![0, 2, 4].includes(s)) continue;
        const gpuMoments = got.moments.get(s)!;
        cpu.moments().forEach((ref, i) => {
          const g = gpuMoments[i];
          assertEquals(g.name, ref.name);
          assertEquals(g.n, ref.n);
          const ratio = updateRatio(g, 0.1);
          const refRatio = updateRatio(ref, 0.1);
          assert(
            Math.abs(ratio - refRatio) < 1e-4,
            `step ${s} ${ref.name}: ratio ${ratio} vs ${refRatio}`,
          );
          assert(close(g.paramSumSq, ref.paramSumSq, 1e-4), `${ref.name}: sum of squares`);
        });
      }
      const cpuSnap = summarize(cpu.snapshot(steps));
      assertEquals(snap.activations.length, 3);
      const histogramsAgree = (a: readonly number[], b: readonly number[]) => {
        // Values within rounding of a bin edge may land on either side of it.
        const moved = a.reduce((m, v, i) => m + Math.abs(v - b[i]), 0);
        return moved <= 2 + 0.002 * b.reduce((x, y) => x + y);
      };
      snap.activations.forEach((a, i) => {
        const r = cpuSnap.activations[i];
        assert(close(a.mean + 10, r.mean + 10, 1e-5) && close(a.std, r.std, 1e-5), `layer ${i}`);
        assert(Math.abs(a.saturated - r.saturated) <= 1 / (B * 40), `saturation ${i}`);
        assert(
          histogramsAgree(a.histogram.counts, r.histogram.counts),
          `activation histogram ${i}`,
        );
      });
      snap.gradients.forEach((g, i) => {
        const r = cpuSnap.gradients[i];
        assert(close(g.std, r.std, 1e-4), `gradient std ${i}: ${g.std} vs ${r.std}`);
        assert(histogramsAgree(g.histogram.counts, r.histogram.counts), `gradient histogram ${i}`);
      });
      snap.weights.forEach((w, i) => {
        const r = cpuSnap.weights[i];
        assertEquals(w.name, r.name);
        assert(close(w.ratio, r.ratio, 1e-4), `${w.name}: grad:data ${w.ratio} vs ${r.ratio}`);
        assert(histogramsAgree(w.histogram.counts, r.histogram.counts), `${w.name} histogram`);
      });
    } finally {
      model.destroy();
    }
  });
});

Deno.test("diagnostics: collecting them leaves training bit-for-bit unchanged", async () => {
  await withGpu(async (gpu) => {
    const B = 32;
    const steps = 30;
    const batches = drawBatches(new Rng(5), ds.examples.train, steps, B);
    const lrs = new Array(steps).fill(0.1);
    const init = initModel(config, new Rng(6));
    const runOnce = async (diag: boolean) => {
      const model = await GpuModel.create(gpu, config, { batchSize: B, chunkSteps: steps });
      try {
        model.setParams(init.params, init.buffers);
        const r = await model.trainChunk(
          batches,
          lrs,
          diag ? { moments: [0, 9, 19, 29], snapshot: true } : {},
        );
        if (diag) await model.snapshot(steps);
        return { losses: r.losses, ...await model.getParams() };
      } finally {
        model.destroy();
      }
    };
    const plain = await runOnce(false);
    const watched = await runOnce(true);
    assertEquals(watched.losses, plain.losses);
    assertEquals(watched.params, plain.params);
    assertEquals(watched.buffers, plain.buffers);
  });
});
