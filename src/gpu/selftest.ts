/**
 * The kernels against the CPU reference, on whatever device this runs on: the test suite runs
 * it on llvmpipe (tests/gpu_kernels_test.ts) and in Chromium (tests/browser_test.ts), and the
 * lab page offers it to its users ("check the kernels on this GPU").
 *
 * One training step on the GPU writes each intermediate tensor from exactly one kernel: the
 * embedding output (embedding_forward), each layer's h, t and batch statistics
 * (linear_forward), the loss and the output layer's dh (cross_entropy), each layer's dh and the
 * embedding's gradient (linear_backward), and the updated parameters (linear_backward,
 * cross_entropy and embedding_backward, with SGD fused). Reading them back and comparing with
 * the CPU reference's values for the same batch checks each kernel on its own.
 *
 * Tolerance: 1e-5 of each tensor's scale. Both sides round to float32; the longest sums here
 * have ~400 terms, whose accumulated rounding is ~sqrt(400) * 6e-8 ~ 1e-6.
 */

import { CpuModel } from "../cpu/model.ts";
import { initModel, type ModelConfig, PRESETS } from "../model.ts";
import { Rng } from "../rng.ts";
import type { Gpu } from "./device.ts";
import type { FamilyName } from "./family.ts";
import { createKernels } from "./kernels.ts";
import { FAMILIES, GpuModel } from "./model.ts";

export const KERNEL_TOLERANCE = 1e-5;

/** One tensor compared: the largest difference relative to the tensor's scale. */
export interface Comparison {
  readonly name: string;
  readonly error: number;
  readonly tolerance: number;
}

/** max |a - b| / max(max |b|, floor); NaN anywhere counts as infinitely wrong. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>, floor = 0): number {
  if (a.length !== b.length) return Infinity;
  let err = 0;
  let scale = floor;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    err = Number.isNaN(d) ? Infinity : Math.max(err, d);
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return scale === 0 ? err : err / scale;
}

/** The shapes the kernels are checked on: multiples of nothing convenient, and the presets. */
export const KERNEL_CASES: readonly { name: string; config: ModelConfig; batch: number }[] = [
  {
    name: "seed-shaped, 2 layers, odd sizes",
    config: { ...PRESETS.seed.model, vocabSize: 27, nEmbd: 5, nHidden: 13, nLayers: 2 },
    batch: 7,
  },
  {
    name: "lecture-shaped, block 1, wide",
    config: {
      ...PRESETS.lecture.model,
      vocabSize: 31,
      blockSize: 1,
      nEmbd: 7,
      nHidden: 66,
      outputInit: 0.3,
    },
    batch: 37,
  },
  // Batch 3, the smallest well-conditioned one: with 2 rows a BatchNorm's output is +-1
  // whatever its input, so its input gradient is 0 up to rounding and has no scale to compare.
  {
    name: "3 layers, output bias and BatchNorm, block 5",
    config: {
      ...PRESETS.seed.model,
      vocabSize: 6,
      blockSize: 5,
      nEmbd: 3,
      nHidden: 40,
      nLayers: 3,
      outputBias: true,
    },
    batch: 3,
  },
  { name: "seed preset widths", config: { ...PRESETS.seed.model, vocabSize: 27 }, batch: 32 },
  // The lecture's deep network without BatchNorm: hidden Linear with bias -> tanh.
  {
    name: "no BatchNorm, 3 layers, unit init",
    config: {
      ...PRESETS.seed.model,
      vocabSize: 11,
      nEmbd: 6,
      nHidden: 23,
      nLayers: 3,
      batchNorm: false,
      init: "unit",
      outputBatchNorm: false,
      outputBias: true,
      outputInit: 0.1,
    },
    batch: 9,
  },
  // 40 rows x 105 vec4 overflow the 64 KiB uniform windows: the storage-buffer kernels.
  {
    name: "wide layers, no windows",
    config: { ...PRESETS.seed.model, vocabSize: 13, nHidden: 420, nLayers: 2 },
    batch: 40,
  },
];

/**
 * One training step of `config` at batch `batch` on both sides; every intermediate tensor and
 * every update, compared (see the module comment).
 */
export async function checkStep(
  gpu: Gpu,
  config: ModelConfig,
  batch: number,
  family?: FamilyName,
): Promise<Comparison[]> {
  const B = batch;
  const init = initModel(config, new Rng(3));
  const cpu = new CpuModel(config, Float32Array.from(init.params), Float32Array.from(init.buffers));
  const model = await GpuModel.create(gpu, config, { batchSize: B, chunkSteps: 1, family });
  const out: Comparison[] = [];
  const compare = (name: string, a: ArrayLike<number>, b: ArrayLike<number>, floor = 0) =>
    out.push({ name, error: relativeError(a, b, floor), tolerance: KERNEL_TOLERANCE });
  try {
    model.setParams(init.params, init.buffers);
    const rng = new Rng(4);
    const ctx = Int32Array.from(
      { length: B * config.blockSize },
      () => rng.randint(config.vocabSize),
    );
    const targets = Int32Array.from({ length: B }, () => rng.randint(config.vocabSize));
    // A large learning rate makes the update, recovered as new - old parameter, precise.
    const lr = 100;
    const [loss] = (await model.trainChunk(new Int32Array([...ctx, ...targets]), [lr])).losses;
    const cpuLoss = cpu.forward(ctx, targets, "train");
    cpu.backward(targets);

    const acts = await model.readActivations(B);
    compare("embedding_forward: x", acts.x0, cpu.embedding.x0);
    const layers = model.layout.layers;
    layers.forEach((l, i) => {
      const c = cpu.caches[i];
      const g = acts.layers[i];
      // h is kept where a backward needs it: before a BatchNorm. Without one, the kernel
      // writes h into t, where a tanh then replaces it.
      if (l.bn) compare(`linear_forward ${i}: h`, g.h, c.h);
      else if (!l.tanh) compare(`linear_forward ${i}: h`, g.t, c.h);
      compare(`linear_forward ${i}: t`, g.t, c.t);
      if (l.bn) {
        compare(`linear_forward ${i}: batch mean`, g.mean, c.mean);
        compare(`linear_forward ${i}: batch variance`, g.variance, c.variance);
      }
      const by = i === layers.length - 1 ? "cross_entropy" : `linear_backward ${i + 1}`;
      compare(`${by}: dh of layer ${i}`, g.dh, c.dh);
    });
    compare("linear_backward 0: dx of the embedding", acts.dx0, cpu.embedding.dx0);
    compare("cross_entropy: loss", [loss], [cpuLoss]);

    const after = await model.getParams();
    // Gradients that vanish analytically (a bias before a BatchNorm) are compared against the
    // model's largest gradient instead of their own rounding noise.
    let largest = 0;
    for (const g of cpu.grads) largest = Math.max(largest, Math.abs(g));
    for (const t of model.layout.params) {
      const step = Float64Array.from(
        { length: t.size },
        (_, j) => (init.params[t.offset + j] - after.params[t.offset + j]) / lr,
      );
      compare(
        `gradient and SGD of ${t.name}`,
        step,
        cpu.grads.subarray(t.offset, t.offset + t.size),
        1e-3 * largest,
      );
    }
    for (const t of model.layout.buffers) {
      compare(
        `running ${t.name}`,
        after.buffers.subarray(t.offset, t.offset + t.size),
        Float32Array.from(cpu.buffers.subarray(t.offset, t.offset + t.size)),
      );
    }
    return out;
  } finally {
    await gpu.device.queue.onSubmittedWorkDone();
    model.destroy();
  }
}

/** Every case of KERNEL_CASES, for every kernel family; the comparisons, named. */
export async function checkKernels(gpu: Gpu): Promise<Comparison[]> {
  const out: Comparison[] = [];
  for (const family of Object.keys(FAMILIES) as FamilyName[]) {
    for (const c of KERNEL_CASES) {
      for (const r of await checkStep(gpu, c.config, c.batch, family)) {
        out.push({ ...r, name: `${family} kernels, ${c.name}, batch ${c.batch}: ${r.name}` });
      }
    }
  }
  return out;
}

/** Compiles every entry point and override variant of every kernel family; their names. */
export async function compileAll(gpu: Gpu): Promise<string[]> {
  const names: string[] = [];
  for (const family of Object.values(FAMILIES)) {
    const kernels = await createKernels(gpu.device, family);
    names.push(...Object.keys(kernels.pipelines).map((k) => `${family.name}: ${k}`));
  }
  return names;
}
