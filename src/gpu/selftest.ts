/**
 * The kernels against the CPU reference, on whatever device this runs on: the test suite runs
 * it on llvmpipe (tests/gpu_kernels_test.ts) and in Chromium (tests/browser_test.ts), and the
 * lab page offers it to its users ("check the kernels on this GPU").
 *
 * One training step on the GPU writes each intermediate tensor from exactly one kernel: the
 * embedding output, each layer's h, t and batch statistics, the loss and the output layer's
 * dh, each layer's dh and the embedding's gradient, and the updated parameters (SGD is fused
 * where each gradient is finished). Reading them back, each kernel is checked on its own: its
 * output against the CPU reference's op computed in float64 from the kernel's own inputs (the
 * values the GPU read, read back too), within the bound that WGSL's accuracy rules allow that
 * op (src/gpu/accuracy.ts). Errors do not accumulate from kernel to kernel, so every bound is
 * a few ULPs of its op, and any conformant GPU meets it.
 */

import { initModel, type ModelConfig, PRESETS, view } from "../model.ts";
import { Rng } from "../rng.ts";
import {
  batchMeanBound,
  batchnormBackwardBound,
  batchnormForwardBound,
  batchVarianceBound,
  type Bounded,
  boundRatio,
  crossEntropyBound,
  embeddingBackwardBound,
  embeddingForwardBound,
  linearBackwardBound,
  linearForwardBound,
  recoveredGradientBound,
  runningUpdateBound,
  tanhBackwardBound,
  tanhForwardBound,
} from "./accuracy.ts";
import type { Gpu } from "./device.ts";
import type { FamilyName } from "./family.ts";
import { createKernels } from "./kernels.ts";
import { FAMILIES, GpuModel } from "./model.ts";

/**
 * One tensor compared: `error` is the largest difference from the reference in units of its
 * bound, so that it is right when `error <= tolerance` (1).
 */
export interface Comparison {
  readonly name: string;
  readonly error: number;
  readonly tolerance: number;
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
 * One training step of `config` at batch `batch` on the GPU; every intermediate tensor and
 * every update, each against its op's reference and bound (see the module comment).
 */
export async function checkStep(
  gpu: Gpu,
  config: ModelConfig,
  batch: number,
  family?: FamilyName,
): Promise<Comparison[]> {
  const B = batch;
  const init = initModel(config, new Rng(3));
  const model = await GpuModel.create(gpu, config, { batchSize: B, chunkSteps: 1, family });
  const out: Comparison[] = [];
  const check = (name: string, got: ArrayLike<number>, b: Bounded) =>
    out.push({ name, error: boundRatio(got, b), tolerance: 1 });
  try {
    model.setParams(init.params, init.buffers);
    const rng = new Rng(4);
    const { blockSize: T, nEmbd: E, vocabSize: V, bnEps: eps, bnMomentum } = config;
    const ctx = Int32Array.from({ length: B * T }, () => rng.randint(V));
    const targets = Int32Array.from({ length: B }, () => rng.randint(V));
    // A large learning rate makes the update, recovered as old - new parameter, precise.
    const lr = 100;
    const [loss] = (await model.trainChunk(new Int32Array([...ctx, ...targets]), [lr])).losses;
    const acts = await model.readActivations(B);
    const after = await model.getParams();
    const p = init.params;
    const layers = model.layout.layers;
    const L = layers.length;
    /** The gradient of every parameter tensor, and the running statistics after the step. */
    const grads = new Map<string, Bounded>();
    const running = new Map<string, Bounded>();

    const emb = model.layout.embedding;
    check("embedding forward: x", acts.x0, embeddingForwardBound(view(p, emb), ctx, E));
    const inputs = layers.map((_, i) => (i === 0 ? acts.x0 : acts.layers[i - 1].t));
    layers.forEach((l, i) => {
      const g = acts.layers[i];
      const bias = l.bias ? view(p, l.bias) : null;
      const h = linearForwardBound(inputs[i], view(p, l.weight), bias, B, l.nIn, l.nOut);
      if (!l.bn) {
        // Without BatchNorm h is not kept: the kernel writes t = h, or tanh(h).
        check(`layer ${i} forward: t`, g.t, l.tanh ? tanhForwardBound(h) : h);
        return;
      }
      check(`layer ${i} forward: h`, g.h, h);
      check(`layer ${i} forward: batch mean`, g.mean, batchMeanBound(g.h, B, l.nOut));
      const variance = batchVarianceBound(g.h, g.mean, B, l.nOut);
      check(`layer ${i} forward: batch variance`, g.variance, variance);
      const y = batchnormForwardBound(
        g.h,
        g.mean,
        g.variance,
        view(p, l.bn.gamma),
        view(p, l.bn.beta),
        eps,
        B,
        l.nOut,
      );
      check(`layer ${i} forward: t`, g.t, l.tanh ? tanhForwardBound(y) : y);
      const run = init.buffers;
      running.set(
        l.bn.runMean.name,
        runningUpdateBound(view(run, l.bn.runMean), g.mean, bnMomentum),
      );
      running.set(
        l.bn.runVar.name,
        runningUpdateBound(view(run, l.bn.runVar), g.variance, bnMomentum),
      );
    });
    const ce = crossEntropyBound(acts.layers[L - 1].t, targets, B, V);
    check("cross_entropy: loss", [loss], ce.loss);

    // Backward, from the loss down: dt is the gradient w.r.t. layer i's output t.
    let dt = ce.dlogits;
    for (let i = L - 1; i >= 0; i--) {
      const l = layers[i];
      const g = acts.layers[i];
      const dy = l.tanh ? tanhBackwardBound(dt, g.t) : dt;
      let dh = dy;
      if (l.bn) {
        const bn = batchnormBackwardBound(
          dy,
          g.h,
          g.mean,
          g.variance,
          view(p, l.bn.gamma),
          eps,
          B,
          l.nOut,
        );
        dh = bn.dh;
        grads.set(l.bn.gamma.name, bn.dgamma);
        grads.set(l.bn.beta.name, bn.dbeta);
      }
      const by = i === L - 1 ? "cross_entropy" : `layer ${i + 1} backward`;
      check(`${by}: dh of layer ${i}`, g.dh, dh);
      // The layer's own backward, from the dh the GPU computed.
      const lb = linearBackwardBound(g.dh, inputs[i], view(p, l.weight), B, l.nIn, l.nOut);
      grads.set(l.weight.name, lb.dW);
      if (l.bias) grads.set(l.bias.name, lb.db);
      dt = lb.dx;
    }
    check("layer 0 backward: dx of the embedding", acts.dx0, dt);
    grads.set(emb.name, embeddingBackwardBound(acts.dx0, ctx, E, V));

    for (const t of model.layout.params) {
      const grad = grads.get(t.name);
      if (!grad) throw new Error(`checkStep: no reference for the gradient of ${t.name}`);
      const now = view(after.params, t);
      const recovered = Float64Array.from(now, (v, j) => (p[t.offset + j] - v) / lr);
      check(`gradient and SGD of ${t.name}`, recovered, recoveredGradientBound(grad, now, lr));
    }
    for (const t of model.layout.buffers) {
      const b = running.get(t.name);
      if (!b) throw new Error(`checkStep: no reference for ${t.name}`);
      check(`running ${t.name}`, view(after.buffers, t), b);
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
