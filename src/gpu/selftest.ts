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

import { parseNetwork, summary } from "../layers.ts";
import { initModel, type ModelConfig, PRESETS, view } from "../model.ts";
import { Rng } from "../rng.ts";
import {
  type Bounded,
  boundRatio,
  crossEntropyBound,
  embeddingBackwardBound,
  embeddingForwardBound,
  f64,
  linearBackwardBound,
  recoveredGradientBound,
  TANH_ABS,
  tanhBackwardBound,
} from "./accuracy.ts";
import type { Gpu } from "./device.ts";
import { blockBackward, blockForward, type Comparison, nonTrivial } from "./expected.ts";
import type { FamilyName } from "./family.ts";
import { checkEachKernel } from "./kernel_check.ts";
import { compileModule, createKernels } from "./kernels.ts";
import { readFloats } from "./readback.ts";
import { SHADERS } from "./shaders.ts";
import { checkReplicas } from "./replica_check.ts";
import { FAMILIES, GpuModel } from "./model.ts";

export type { Comparison };

/** A config from a list of layers, as written (the seed preset's other settings). */
function listed(text: string, o: { vocabSize: number; blockSize: number }): ModelConfig {
  const layers = parseNetwork(text);
  if (typeof layers === "string") throw new Error(layers);
  return { ...PRESETS.seed.model, ...o, layers, ...summary(layers) };
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
  // makemore part 5's shape: FlattenConsecutive joins the rows two by two (BatchNorm over every
  // row of a block; the previous BatchNorm's backward then in a dispatch of its own), a ReLU
  // block, an odd embedding joined by the embedding itself.
  {
    name: "hierarchical, FlattenConsecutive, ReLU",
    config: listed(
      "Embedding(5) FlattenConsecutive(2) Linear(12, bias=False) BatchNorm1d Tanh " +
        "FlattenConsecutive(2) Linear(8, bias=False) BatchNorm1d ReLU FlattenConsecutive(2) " +
        "Linear(12) Tanh Linear BatchNorm1d",
      { vocabSize: 11, blockSize: 8 },
    ),
    batch: 5,
  },
  {
    name: "hierarchical, no BatchNorm",
    config: listed(
      "Embedding(3) FlattenConsecutive(3) Linear(16) ReLU FlattenConsecutive(2) Linear(8) " +
        "Tanh Linear",
      { vocabSize: 7, blockSize: 6 },
    ),
    batch: 6,
  },
  // 40 rows x 105 vec4 overflow the 64 KiB uniform windows: the storage-buffer kernels.
  {
    name: "wide layers, no windows",
    config: { ...PRESETS.seed.model, vocabSize: 13, nHidden: 420, nLayers: 2 },
    batch: 40,
  },
  // 35 rows x 122 vec4 of embedding output: the embedding's backward without its window.
  {
    name: "wide embedding, no windows",
    config: {
      ...PRESETS.seed.model,
      vocabSize: 13,
      blockSize: 8,
      nEmbd: 61,
      nHidden: 30,
      nLayers: 2,
    },
    batch: 35,
  },
];

/**
 * The cases a group of replicas is checked on against solo runs (src/gpu/replica_check.ts):
 * a BatchNorm in the loss's kernel, and part 5's FlattenConsecutive with the standalone
 * BatchNorm backward.
 */
export const REPLICA_CASES = KERNEL_CASES.filter((c) =>
  c.name.startsWith("3 layers") || c.name.startsWith("hierarchical, FlattenConsecutive")
);

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
  const init = nonTrivial(config, initModel(config, new Rng(3)), new Rng(5));
  const model = await GpuModel.create(gpu, config, { batchSize: B, chunkSteps: 1, family });
  const out: Comparison[] = [];
  const check = (name: string, got: ArrayLike<number>, b: Bounded) =>
    out.push({ name, error: boundRatio(got, b), tolerance: 1 });
  try {
    model.setParams(init.params, init.buffers);
    const rng = new Rng(4);
    const { blockSize: T, nEmbd: E, vocabSize: V, bnEps: eps } = config;
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
      const R = B * l.positions; // the layer's rows
      const f = blockForward(l, i, inputs[i], acts.layers[i], p, init.buffers, config, R, true);
      f.checks.forEach((c) => check(...c));
      f.running.forEach(([name, b]) => running.set(name, b));
    });
    const ce = crossEntropyBound(acts.layers[L - 1].t, targets, B, V);
    check("cross_entropy: loss", [loss], ce.loss);

    // Backward, from the loss down: dt is the gradient w.r.t. layer i's output t.
    let dt = ce.dlogits;
    for (let i = L - 1; i >= 0; i--) {
      const l = layers[i];
      const g = acts.layers[i];
      const R = B * l.positions;
      const { dh, grads: bnGrads } = blockBackward(l, dt, g, p, eps, R);
      bnGrads.forEach(([name, b]) => grads.set(name, b));
      const by = i === L - 1 ? "cross_entropy" : `layer ${i + 1} backward`;
      check(`${by}: dh of layer ${i}`, g.dh, dh);
      // The layer's own backward, from the dh the GPU computed.
      const lb = linearBackwardBound(g.dh, inputs[i], view(p, l.weight), R, l.nIn, l.nOut);
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

/**
 * tanh.wgsl's tanh_forward and tanh_backward where Metal's tanh, (e^2y - 1) / (e^2y + 1),
 * overflows to NaN (|y| above ~44): run with this GPU's builtin, and again with Metal's formula
 * written out in its place, so that every GPU shows what a Mac would do. Saturated inputs must
 * give exactly +-1 and a gradient of exactly 0; ordinary ones, tanh within WGSL's 1e-5.
 */
export async function checkTanh(gpu: Gpu): Promise<Comparison[]> {
  const ys = [50, -50, 1e3, -1e3, 1e30, -1e30, 15, -15, 44.5, -90, 0.5, -2];
  const metal = "fn metal_tanh(y: vec4f) -> vec4f {\n  let e = exp(2.0 * y);\n" +
    "  return (e - 1.0) / (e + 1.0);\n}\n";
  const variants: [string, string][] = [
    ["builtin tanh", SHADERS["tanh.wgsl"]],
    ["Metal's tanh", metal + SHADERS["tanh.wgsl"].replace(/(?<![\w.])tanh\(/g, "metal_tanh(")],
  ];
  const probe = `
@group(0) @binding(0) var<storage, read> probe_y: array<vec4f>;
@group(0) @binding(1) var<storage, read_write> probe_t: array<vec4f>;
@compute @workgroup_size(1)
fn tanh_probe(@builtin(global_invocation_id) id: vec3u) {
  let t = tanh_forward(probe_y[id.x]);
  probe_t[2u * id.x] = t;
  probe_t[2u * id.x + 1u] = tanh_backward(vec4f(1.0), t);
}`;
  const d = gpu.device;
  const input = d.createBuffer({
    size: ys.length * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
  });
  const output = d.createBuffer({
    size: ys.length * 8,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  try {
    d.queue.writeBuffer(input, 0, new Float32Array(ys));
    const results: Comparison[] = [];
    for (const [name, tanh] of variants) {
      const module = await compileModule(d, `tanh probe (${name})`, tanh + probe);
      d.pushErrorScope("validation");
      const pipeline = d.createComputePipeline({
        layout: "auto",
        compute: { module, entryPoint: "tanh_probe" },
      });
      const error = await d.popErrorScope();
      if (error) throw new Error(`tanh probe (${name}): ${error.message}`);
      const enc = d.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(
        0,
        d.createBindGroup({
          layout: pipeline.getBindGroupLayout(0),
          entries: [{ binding: 0, resource: { buffer: input } }, {
            binding: 1,
            resource: { buffer: output },
          }],
        }),
      );
      pass.dispatchWorkgroups(ys.length / 4);
      pass.end();
      d.queue.submit([enc.finish()]);
      const got = await readFloats(d, output, 0, ys.length * 2);
      const t = ys.map((_, i) => got[8 * Math.floor(i / 4) + (i % 4)]);
      const dt = ys.map((_, i) => got[8 * Math.floor(i / 4) + 4 + (i % 4)]);
      // Saturated (|y| >= 15, where tanh rounds to +-1 in f32): exact; else WGSL's bound.
      const exact = ys.map((y) => Math.abs(y) >= 15);
      const ref = {
        ref: f64(ys.map((y) => Math.fround(Math.tanh(y)))),
        bound: f64(exact.map((e) => (e ? 0 : TANH_ABS))),
      };
      results.push({
        name: `tanh_forward (${name}) at |y| up to 1e30`,
        error: boundRatio(t, ref),
        tolerance: 1,
      });
      const grad = tanhBackwardBound({ ref: f64(ys.map(() => 1)), bound: f64(ys.map(() => 0)) }, t);
      results.push({
        name: `tanh_backward (${name}) at |y| up to 1e30`,
        error: boundRatio(dt, {
          ref: grad.ref,
          bound: grad.bound.map((b, i) => (exact[i] ? 0 : b)),
        }),
        tolerance: 1,
      });
    }
    return results;
  } finally {
    await d.queue.onSubmittedWorkDone();
    input.destroy();
    output.destroy();
  }
}

/**
 * Every case of KERNEL_CASES, for every kernel family, as a whole step and each kernel alone
 * (src/gpu/kernel_check.ts), and tanh's; REPLICA_CASES as groups of replicas against solo runs;
 * the comparisons, named.
 */
export async function checkKernels(gpu: Gpu): Promise<Comparison[]> {
  const out: Comparison[] = await checkTanh(gpu);
  for (const family of Object.keys(FAMILIES) as FamilyName[]) {
    for (const c of KERNEL_CASES) {
      const at = `${family} kernels, ${c.name}, batch ${c.batch}`;
      for (const r of await checkStep(gpu, c.config, c.batch, family)) {
        out.push({ ...r, name: `${at}: ${r.name}` });
      }
      for (const k of await checkEachKernel(gpu, c.config, c.batch, family)) {
        for (const r of k.comparisons) {
          out.push({ ...r, name: `${at}: ${k.kernel} alone (${k.what}): ${r.name}` });
        }
      }
    }
    for (const c of REPLICA_CASES) {
      for (const r of await checkReplicas(gpu, c.config, c.batch, family)) {
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
