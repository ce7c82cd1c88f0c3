/**
 * Diagnostics: the statistics themselves, the GPU's against the CPU reference's on the same
 * steps, and the guarantee that collecting them does not change training.
 */

import names from "../data/names.txt" with { type: "text" };
import { drawBatches } from "../src/batches.ts";
import { makeDataset, parseWords } from "../src/data.ts";
import {
  type Distribution,
  distribution,
  momentsOf,
  saturation,
  summarize,
  updateRatio,
} from "../src/diagnostics.ts";
import type { FamilyName } from "../src/gpu/family.ts";
import { GpuModel } from "../src/gpu/model.ts";
import { initModel, type ModelConfig, PRESETS } from "../src/model.ts";
import { Rng } from "../src/rng.ts";
import { assert, assertClose, assertEquals, gpu, modelPair } from "./util.ts";

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

const ds = makeDataset(parseWords(new TextEncoder().encode(names), "names.txt"), 3, 42);

/**
 * The GPU's diagnostics of a few steps against the CPU reference's on the same steps: the
 * moments of every weight (update ratios) on the steps asked for, and the snapshot of the last.
 * `kernels` names the DIAG variants the shapes must select (windowed, or not).
 */
async function checkDiagnostics(
  config: ModelConfig,
  B: number,
  kernels: string[],
  family: FamilyName = "software",
) {
  const steps = 5;
  const dsB = makeDataset(ds.words, config.blockSize, 42);
  const batches = drawBatches(new Rng(3), dsB.examples.train, steps, B);
  const lrs = new Array(steps).fill(0.1);
  await using m = await modelPair(config, { batchSize: B, chunkSteps: steps, initSeed: 4, family });
  const used = m.gpu.stepDispatches(true).map((d) => d.kernel);
  for (const k of kernels) assert(used.includes(k), `the shapes select ${k}: ${used}`);
  const got = await m.gpu.trainChunk(batches, lrs, { moments: [0, 2, 4], snapshot: true });
  const gpuSnap = await m.gpu.snapshot(steps);
  const T = config.blockSize;
  const per = B * (T + 1);
  for (let s = 0; s < steps; s++) {
    const at = s * per;
    m.cpu.step(batches.subarray(at, at + B * T), batches.subarray(at + B * T, at + per), lrs[s]);
    if (![0, 2, 4].includes(s)) continue;
    const gpuMoments = got.moments.get(s)!;
    m.cpu.moments().forEach((ref, i) => {
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
  // The snapshot's raw values: what the DIAG kernels wrote, against the CPU's.
  const cpuSnap = m.cpu.snapshot(steps);
  assertEquals(gpuSnap.tanh.length, config.nLayers);
  gpuSnap.tanh.forEach((l, i) => {
    assertClose(`layer ${i}: t`, l.t, cpuSnap.tanh[i].t, 1e-5);
    assertClose(`layer ${i}: dt`, l.dt, cpuSnap.tanh[i].dt, 1e-4);
  });
  gpuSnap.weights.forEach((w, i) => {
    assertEquals(w.name, cpuSnap.weights[i].name);
    assertClose(`${w.name}: gradient`, w.grad, cpuSnap.weights[i].grad, 1e-4);
    assertClose(`${w.name}: value`, w.param, cpuSnap.weights[i].param, 1e-5);
  });
  // The summaries drawn from them. Values within rounding of a bin edge may land on either
  // side of it: a histogram may differ by as many values as lie that close to an edge.
  const a = summarize(gpuSnap);
  const b = summarize(cpuSnap);
  const histogramsAgree = (
    x: Distribution["histogram"],
    y: Distribution["histogram"],
    values: ArrayLike<number>,
  ) => {
    const width = (y.hi - y.lo) / y.counts.length;
    let nearEdge = 0;
    for (let i = 0; i < values.length; i++) {
      const f = (values[i] - y.lo) / width;
      if (Math.abs(f - Math.round(f)) * width <= 1e-4 * Math.max(y.hi, -y.lo)) nearEdge++;
    }
    const moved = x.counts.reduce((m, v, i) => m + Math.abs(v - y.counts[i]), 0);
    return moved <= 2 * nearEdge + 2;
  };
  a.activations.forEach((g, i) => {
    const r = b.activations[i];
    assert(close(g.mean + 10, r.mean + 10, 1e-5) && close(g.std, r.std, 1e-5), `layer ${i}`);
    assert(Math.abs(g.saturated - r.saturated) <= 1 / (B * config.nHidden), `saturation ${i}`);
    assert(histogramsAgree(g.histogram, r.histogram, cpuSnap.tanh[i].t), `activations ${i}`);
  });
  a.gradients.forEach((g, i) => {
    const r = b.gradients[i];
    assert(close(g.std, r.std, 1e-4), `gradient std ${i}: ${g.std} vs ${r.std}`);
    assert(histogramsAgree(g.histogram, r.histogram, cpuSnap.tanh[i].dt), `gradients ${i}`);
  });
  a.weights.forEach((w, i) => {
    const r = b.weights[i];
    assert(close(w.ratio, r.ratio, 1e-4), `${w.name}: grad:data ${w.ratio} vs ${r.ratio}`);
    assert(histogramsAgree(w.histogram, r.histogram, cpuSnap.weights[i].grad), `${w.name}`);
  });
}

Deno.test("diagnostics (windowed DIAG kernels): the GPU's moments and snapshot match the CPU's", () =>
  checkDiagnostics(
    { ...PRESETS.seed.model, vocabSize: ds.vocab.size, nHidden: 40, nLayers: 3 },
    32,
    ["linearBackwardWindowedDiag", "embeddingBackwardWindowedDiag"],
  ));

Deno.test("diagnostics (storage-buffer DIAG kernels): the GPU's moments and snapshot match the CPU's", () =>
  // 40 rows of 105 vec4 (and of 32 x 13 embedding floats) overflow the 64 KiB windows.
  checkDiagnostics(
    {
      ...PRESETS.seed.model,
      vocabSize: ds.vocab.size,
      blockSize: 32,
      nEmbd: 13,
      nHidden: 420,
      nLayers: 2,
    },
    40,
    ["linearBackwardDiag", "embeddingBackwardDiag"],
  ));

Deno.test("diagnostics (gpu kernels): the GPU's moments and snapshot match the CPU's", () =>
  checkDiagnostics(
    { ...PRESETS.seed.model, vocabSize: ds.vocab.size, nHidden: 40, nLayers: 3 },
    32,
    ["matmulBackwardDiag", "embeddingBackwardDiag"],
    "gpu",
  ));

Deno.test("diagnostics: collecting them leaves training bit-for-bit unchanged", async () => {
  const config: ModelConfig = {
    ...PRESETS.seed.model,
    vocabSize: ds.vocab.size,
    nHidden: 40,
    nLayers: 3,
  };
  const B = 32;
  const steps = 30;
  const batches = drawBatches(new Rng(5), ds.examples.train, steps, B);
  const lrs = new Array(steps).fill(0.1);
  const init = initModel(config, new Rng(6));
  const g = await gpu();
  const runOnce = async (diag: boolean) => {
    const model = await GpuModel.create(g, config, { batchSize: B, chunkSteps: steps });
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
