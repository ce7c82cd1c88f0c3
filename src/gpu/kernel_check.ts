/**
 * Every kernel alone against its CPU op, as llm.c's dev/cuda runs each kernel on its own: one
 * dispatch, on inputs the CPU reference computed for a random model and batch, with nothing
 * before or after it on the GPU. The tests run it for every kernel of both families on shapes
 * that are multiples of no tile (tests/kernel_harness_test.ts, and in Chromium through the lab's
 * "check the kernels"); a mistake in one kernel fails that kernel's own check, by name, whatever
 * the kernels around it do.
 *
 * For each dispatch of a training step (the plain and the DIAG variants) and of an evaluation
 * pass: the parameters and running statistics are set (both copies), every activation and
 * gradient region is written from the CPU's forward and backward in float32, the regions the
 * dispatch writes are filled with NaN, and Host too; the dispatch runs; then each value it
 * wrote is checked against its ops in float64 (src/gpu/expected.ts: a fused kernel against the
 * composition of its layers' ops), each parameter update it owns through the gradient it
 * implies, and everything it does not own, activations and parameters, must be bit for bit
 * what was written.
 */

import { CpuModel } from "../cpu/model.ts";
import type { Snapshot } from "../diagnostics.ts";
import { initModel, type ModelConfig, view } from "../model.ts";
import { Rng } from "../rng.ts";
import {
  type Bounded,
  crossEntropyBound,
  embeddingBackwardBound,
  embeddingForwardBound,
  linearBackwardBound,
  recoveredGradientBound,
} from "./accuracy.ts";
import { C } from "./abi.ts";
import type { Gpu } from "./device.ts";
import {
  blockBackward,
  blockForward,
  type Check,
  compare,
  type Comparison,
  exact,
  nonTrivial,
} from "./expected.ts";
import { type Dispatch, type FamilyName, forward } from "./family.ts";
import { type GpuActivations, GpuModel } from "./model.ts";

/** One dispatch's checks: the kernel variant it ran and on which op. */
export interface KernelCheck {
  /** The kernel variant (software.ts, gpu.ts ENTRY_POINTS), e.g. "linearBackwardWindowed". */
  readonly kernel: string;
  /** Which op, and whether a training or an evaluation pass. */
  readonly what: string;
  readonly comparisons: Comparison[];
}

/** The regions of GpuActivations, named as the harness writes, poisons and compares them. */
type Region = "x0" | "dx0" | `${"h" | "t" | "stats" | "dh"}${number}`;

function regionsOf(acts: GpuActivations): Map<Region, Float32Array> {
  const m = new Map<Region, Float32Array>([["x0", acts.x0], ["dx0", acts.dx0]]);
  acts.layers.forEach((l, i) => {
    m.set(`h${i}`, l.h);
    m.set(`t${i}`, l.t);
    m.set(`stats${i}`, Float32Array.from([...l.mean, ...l.variance]));
    m.set(`dh${i}`, l.dh);
  });
  return m;
}

/** A copy of `acts` with `poisoned` regions all NaN and the layer values `set` replaced. */
function prepared(
  acts: GpuActivations,
  poisoned: readonly Region[],
  set: (a: GpuActivations) => void = () => {},
): GpuActivations {
  const nan = (a: Float32Array, r: Region) =>
    poisoned.includes(r) ? new Float32Array(a.length).fill(NaN) : Float32Array.from(a);
  const out: GpuActivations = {
    x0: nan(acts.x0, "x0"),
    dx0: nan(acts.dx0, "dx0"),
    layers: acts.layers.map((l, i) => ({
      h: nan(l.h, `h${i}`),
      t: nan(l.t, `t${i}`),
      dh: nan(l.dh, `dh${i}`),
      mean: nan(l.mean, `stats${i}`),
      variance: nan(l.variance, `stats${i}`),
    })),
  };
  set(out);
  return out;
}

/** What a dispatch computes: the regions it writes and the checks of what it wrote. */
interface Expected {
  readonly what: string;
  readonly writes: readonly Region[];
  /** Whether it writes in place, over an input (nothing can be poisoned then). */
  readonly inPlace?: boolean;
  /** The inputs it expects that differ from the end of a step's (see batchnormBackward). */
  readonly input?: (a: GpuActivations) => void;
  /**
   * Its checks, given its inputs `v`, what it wrote `got`, its partial losses and the
   * parameter gradients and running statistics it owns (by tensor name).
   */
  expect(o: Outcome): {
    checks: Check[];
    grads?: [string, Bounded][];
    running?: [string, Bounded][];
  };
}

/** What a dispatch run alone was given and left. */
interface Outcome {
  readonly v: GpuActivations;
  readonly got: GpuActivations;
  readonly partials: Float32Array;
  readonly snapshot?: Snapshot;
}

/**
 * What dispatch d computes in `model`'s plan, by its role and op; `dts`, each layer's gradient
 * w.r.t. its output, as the CPU computed it.
 */
function expectedOf(
  model: GpuModel,
  d: Dispatch,
  init: { params: Float32Array; buffers: Float32Array },
  ctx: Int32Array,
  targets: Int32Array,
  dts: readonly ArrayLike<number>[],
): Expected {
  const { config, plan } = model;
  const layers = plan.layers;
  const L = layers.length;
  const p = init.params;
  const B = d.rows;
  const { nEmbd: E, vocabSize: V, bnEps: eps } = config;
  const emb = model.layout.embedding;
  const mode = d.train ? "training" : "evaluation";
  const input = (v: GpuActivations, i: number) => (i === 0 ? v.x0 : v.layers[i - 1].t);
  const diag = d.kernel.endsWith("Diag");

  if (d.role === "embed") {
    return {
      what: "embedding",
      writes: ["x0"],
      expect: ({ got }) => ({
        checks: [["embedding forward: x", got.x0, embeddingForwardBound(view(p, emb), ctx, E)]],
      }),
    };
  }
  if (d.role === "embedBackward") {
    return {
      what: "embedding",
      writes: [],
      expect: ({ v, snapshot }) => {
        const grad = embeddingBackwardBound(v.dx0, ctx, E, V);
        const checks: Check[] = snapshot
          ? [["snapshot: embedding gradient", snapshot.weights[0].grad, grad]]
          : [];
        return { checks, grads: [[emb.name, grad]] };
      },
    };
  }
  if (d.role === "loss") {
    const l = layers[L - 1];
    return {
      what: `output layer ${L - 1}, ${mode}`,
      writes: d.train ? [`dh${L - 1}`] : [],
      expect: ({ v, got, partials }) => {
        const ce = crossEntropyBound(v.layers[L - 1].t, targets, B, V);
        // Training writes the batch's mean loss; evaluation, each row's for the host to add.
        const loss = d.train ? partials[0] : partials.slice(0, B).reduce((a, b) => a + b) / B;
        const checks: Check[] = [["cross_entropy: loss", [loss], ce.loss]];
        if (!d.train) return { checks };
        const back = blockBackward({ ...l, act: null }, ce.dlogits, v.layers[L - 1], p, eps, B);
        checks.push([`cross_entropy: dh of layer ${L - 1}`, got.layers[L - 1].dh, back.dh]);
        return { checks, grads: back.grads };
      },
    };
  }
  const f = plan.ops[d.op];
  const i = d.op - 1; // the layer of the op
  const l = layers[i];
  const R = B * l.positions;
  if (d.role === "batchnormBackward") {
    // The previous layer's activation and BatchNorm backward, on the dt that layer i's input
    // gradient left in its dh region.
    const prev = layers[i - 1];
    const Rp = B * prev.positions;
    return {
      what: `layer ${i - 1} (apart from layer ${i}'s backward)`,
      writes: [`dh${i - 1}`],
      inPlace: true,
      input: (a) => (a.layers[i - 1].dh = Float32Array.from(dts[i - 1])),
      expect: ({ v, got }) => {
        const back = blockBackward(prev, exact(v.layers[i - 1].dh), v.layers[i - 1], p, eps, Rp);
        return {
          checks: [[`batchnorm_backward: dh of layer ${i - 1}`, got.layers[i - 1].dh, back.dh]],
          grads: back.grads,
        };
      },
    };
  }
  if (d.role === "forward") {
    return {
      what: `layer ${i}, ${mode}`,
      writes: l.bn ? (d.train ? [`h${i}`, `t${i}`, `stats${i}`] : [`h${i}`, `t${i}`]) : [`t${i}`],
      expect: ({ v, got }) => {
        const b = blockForward(
          l,
          i,
          input(v, i),
          got.layers[i],
          p,
          init.buffers,
          config,
          R,
          d.train,
        );
        return { checks: b.checks, running: b.running };
      },
    };
  }
  // The remaining role: a block's backward.
  const apart = (f.flags & C.PREV_APART) !== 0;
  const prev = layers[i - 1];
  return {
    what: `layer ${i}${i === 0 ? "" : apart ? ", its input's dt" : `, with layer ${i - 1}'s`}`,
    writes: [i === 0 ? "dx0" : `dh${i - 1}`],
    expect: ({ v, got, snapshot }) => {
      const lb = linearBackwardBound(
        v.layers[i].dh,
        input(v, i),
        view(p, l.weight),
        R,
        l.nIn,
        l.nOut,
      );
      const grads: [string, Bounded][] = [[l.weight.name, lb.dW]];
      if (l.bias) grads.push([l.bias.name, lb.db]);
      const checks: Check[] = [];
      if (snapshot) {
        checks.push([`snapshot: ${l.weight.name} gradient`, snapshot.weights[i + 1].grad, lb.dW]);
      }
      if (i === 0) {
        checks.push(["linear backward: dx of the embedding", got.dx0, lb.dx]);
      } else if (apart) {
        checks.push([`linear backward: dt of layer ${i - 1}`, got.layers[i - 1].dh, lb.dx]);
      } else {
        const Rp = B * prev.positions;
        const back = blockBackward(prev, lb.dx, v.layers[i - 1], p, eps, Rp);
        checks.push([`linear backward: dh of layer ${i - 1}`, got.layers[i - 1].dh, back.dh]);
        grads.push(...back.grads);
      }
      if (diag && snapshot && prev?.act === "tanh") {
        const k = layers.slice(0, i - 1).filter((x) => x.act === "tanh").length;
        checks.push([`snapshot: dt of layer ${i - 1}`, snapshot.tanh[k].dt, lb.dx]);
      }
      return { checks, grads };
    },
  };
}

/**
 * The dispatches of a training step (plain and DIAG) and of an evaluation pass of `rows` rows,
 * each kernel variant and op once.
 */
export function everyDispatch(model: GpuModel): Dispatch[] {
  const { plan, family } = model;
  const B = model.batchSize;
  const all = [
    ...model.stepDispatches(false),
    ...model.stepDispatches(true),
    ...forward(plan, B, false),
    family.loss(plan, B, false),
  ];
  const seen = new Set<string>();
  return all.filter((d) => {
    const key = `${d.kernel} ${d.op} ${d.train}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * Every dispatch of `config` at batch `batch`, each alone (see the module comment), for one
 * kernel family (default: the adapter's).
 */
export async function checkEachKernel(
  gpu: Gpu,
  config: ModelConfig,
  batch: number,
  family?: FamilyName,
): Promise<KernelCheck[]> {
  const B = batch;
  const init = nonTrivial(config, initModel(config, new Rng(3)), new Rng(5));
  const rng = new Rng(4);
  const { blockSize: T, vocabSize: V } = config;
  const ctx = Int32Array.from({ length: B * T }, () => rng.randint(V));
  const targets = Int32Array.from({ length: B }, () => rng.randint(V));
  const data = new Int32Array([...ctx, ...targets]);
  // The CPU's forward and backward in float32: a consistent set of inputs for every kernel.
  const cpu = new CpuModel(config, Float32Array.from(init.params), Float32Array.from(init.buffers));
  cpu.forward(ctx, targets, "train");
  cpu.backward(targets);
  const values: GpuActivations = {
    x0: Float32Array.from(cpu.embedding.x0),
    dx0: Float32Array.from(cpu.embedding.dx0),
    layers: cpu.caches.map((c) => ({
      h: Float32Array.from(c.h),
      t: Float32Array.from(c.t),
      dh: Float32Array.from(c.dh),
      mean: Float32Array.from(c.mean),
      variance: Float32Array.from(c.variance),
    })),
  };
  const model = await GpuModel.create(gpu, config, { batchSize: B, chunkSteps: 1, family });
  // A large learning rate makes the update, recovered as old - new parameter, precise.
  const lr = 100;
  const out: KernelCheck[] = [];
  try {
    for (const d of everyDispatch(model)) {
      const e = expectedOf(model, d, init, ctx, targets, cpu.caches.map((c) => c.dt));
      const v = prepared(values, [], e.input);
      model.setParams(init.params, init.buffers);
      model.writeActivations(B, prepared(v, e.inPlace ? [] : e.writes));
      const partials = await model.runAlone(d, data, lr);
      const got = await model.readActivations(B);
      const after = await model.getParams();
      const snapshot = d.kernel.endsWith("Diag") ? await model.snapshot(0) : undefined;
      const r = e.expect({ v, got, partials, snapshot });
      const checks = [...r.checks];
      const grads = new Map(r.grads ?? []);
      const running = new Map(r.running ?? []);
      for (const t of model.layout.params) {
        const now = view(after.params, t);
        const grad = grads.get(t.name);
        if (!grad) {
          checks.push([`${t.name} untouched`, now, exact(view(init.params, t))]);
          continue;
        }
        const recovered = Float64Array.from(now, (x, j) => (init.params[t.offset + j] - x) / lr);
        checks.push([
          `gradient and SGD of ${t.name}`,
          recovered,
          recoveredGradientBound(grad, now, lr),
        ]);
      }
      for (const t of model.layout.buffers) {
        const want = running.get(t.name) ?? exact(view(init.buffers, t));
        checks.push([
          `running ${t.name}${running.has(t.name) ? "" : " untouched"}`,
          view(after.buffers, t),
          want,
        ]);
      }
      const before = regionsOf(v);
      for (const [name, now] of regionsOf(got)) {
        if (!e.writes.includes(name)) {
          checks.push([`${name} untouched`, now, exact(before.get(name)!)]);
        }
      }
      out.push({ kernel: d.kernel, what: e.what, comparisons: compare(checks) });
    }
    return out;
  } finally {
    await gpu.device.queue.onSubmittedWorkDone();
    model.destroy();
  }
}
