/**
 * How fast the kernels train and evaluate on a device: the measurements of `deno task bench`,
 * and of the lab page's own benchmark (the same code in Chromium), and the numbers the plan
 * predicts without a device (invocations and serial depth per step, for real GPUs).
 *
 * us/step is steady-state training throughput: a round submits `chunks` chunks the way the
 * trainer does (CHUNKS_IN_FLIGHT waiting on the device while the next is encoded) and divides
 * its wall time by its steps, so encoding, submission and the loss readback count, everything
 * but drawing the batches. The figure is the median of the rounds. The host's share, the time
 * trainChunk takes to upload and encode a chunk (GpuModel.hostMs), is reported per step beside
 * it.
 */

import { drawBatches } from "../batches.ts";
import type { Examples } from "../data.ts";
import { initModel, type ModelConfig, modelLayout } from "../model.ts";
import { Rng } from "../rng.ts";
import type { Gpu } from "./device.ts";
import { type FamilyName, forward, type KernelFamily } from "./family.ts";
import { CHUNKS_IN_FLIGHT } from "./backend.ts";
import { GpuModel } from "./model.ts";
import { planModel } from "./plan.ts";

export interface SpeedOptions {
  readonly batchSize: number;
  readonly rounds: number;
  readonly chunks: number;
  readonly chunkSteps: number;
  readonly family?: FamilyName;
  /** Models trained together in the same dispatches (default 1), each on its own batches. */
  readonly replicas?: number;
}

export interface Speed {
  readonly usPerStep: number;
  /** The host's time per step: uploading the chunk's data and uniforms, encoding (GpuModel.hostMs). */
  readonly encodeUsPerStep: number;
  readonly roundUs: number[];
  readonly family: FamilyName;
  readonly dispatchesPerStep: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Multiply-adds of one forward pass over `rows` rows. */
export function macsPerForward(config: ModelConfig, rows: number): number {
  return modelLayout(config).layers.reduce((a, l) => a + rows * l.nIn * l.nOut, 0);
}

/** Multiply-adds of one step: each layer's x @ W forward, then dW and dx backward. */
export function macsPerStep(config: ModelConfig, batch: number): number {
  return 3 * macsPerForward(config, batch);
}

/**
 * Training steps per second, measured (see the module comment); with `replicas`, the time of a
 * step of the whole group.
 */
export async function measureTraining(
  gpu: Gpu,
  config: ModelConfig,
  train: Examples,
  o: SpeedOptions,
): Promise<Speed> {
  const R = o.replicas ?? 1;
  const model = await GpuModel.create(gpu, config, {
    batchSize: o.batchSize,
    chunkSteps: o.chunkSteps,
    family: o.family,
    replicas: R,
  });
  try {
    for (let r = 0; r < R; r++) {
      const { params, buffers } = initModel(config, new Rng(1 + r));
      model.setParams(params, buffers, r);
    }
    const rng = new Rng(2);
    const lrs = Array.from({ length: R }, () => new Array(o.chunkSteps).fill(0.1));
    const drawn = () =>
      Array.from({ length: R }, () => drawBatches(rng, train, o.chunkSteps, o.batchSize));
    await model.trainReplicas(drawn(), lrs); // warm-up: pipeline compilation, first touches
    const roundUs: number[] = [];
    const encodeUs: number[] = [];
    for (let r = 0; r < o.rounds; r++) {
      const start = performance.now();
      const inFlight: Promise<unknown>[] = [];
      const host = model.hostMs;
      for (let c = 0; c < o.chunks; c++) {
        inFlight.push(model.trainReplicas(drawn(), lrs));
        if (inFlight.length > CHUNKS_IN_FLIGHT) await inFlight.shift();
      }
      await Promise.all(inFlight);
      const steps = o.chunks * o.chunkSteps;
      roundUs.push(((performance.now() - start) * 1000) / steps);
      encodeUs.push(((model.hostMs - host) * 1000) / steps);
    }
    return {
      usPerStep: median(roundUs),
      encodeUsPerStep: median(encodeUs),
      roundUs,
      family: model.family.name,
      dispatchesPerStep: model.stepDispatches().length,
    };
  } finally {
    await gpu.device.queue.onSubmittedWorkDone();
    model.destroy();
  }
}

/** The phase after training: calibration over the training split, then val and test. */
export async function measurePostTraining(
  gpu: Gpu,
  config: ModelConfig,
  splits: { train: Examples; val: Examples; test: Examples },
  family?: FamilyName,
): Promise<{ calibrateSeconds: number; evaluateSeconds: number; macs: number }> {
  const model = await GpuModel.create(gpu, config, { batchSize: 32, chunkSteps: 1, family });
  try {
    const { params, buffers } = initModel(config, new Rng(1));
    model.setParams(params, buffers);
    let t = performance.now();
    await model.calibrate(splits.train);
    const calibrateSeconds = (performance.now() - t) / 1000;
    t = performance.now();
    await model.evaluate(splits.val);
    await model.evaluate(splits.test);
    const evaluateSeconds = (performance.now() - t) / 1000;
    // What the work is: two forward passes over the training split (each BatchNorm layer's h,
    // then its output) and one over each of the others.
    const bn = modelLayout(config).layers.some((l) => l.bn) ? 2 : 1;
    const macs = bn * macsPerForward(config, splits.train.n) +
      macsPerForward(config, splits.val.n + splits.test.n);
    return { calibrateSeconds, evaluateSeconds, macs };
  } finally {
    model.destroy();
  }
}

/** The shape of a step for a family, without a device: each dispatch's size, and the depth. */
export interface StepShape {
  readonly family: FamilyName;
  readonly dispatches: { kernel: string; op: number; invocations: number; iterations: number }[];
  /** The longest chain of loop iterations of one invocation, summed over the dispatches. */
  readonly serialDepth: number;
}

export function stepShape(config: ModelConfig, batchSize: number, family: KernelFamily): StepShape {
  const plan = planModel(config, family, { batchSize, chunkSteps: 1, maxBindingBytes: 1 << 30 });
  const list = [
    ...forward(plan, batchSize, true),
    family.loss(plan, batchSize, true),
    ...family.backward(plan, false),
  ];
  const dispatches = list.map((d) => ({
    kernel: d.kernel,
    op: d.op,
    invocations: d.groups[0] * d.groups[1] * family.entryPoints[d.kernel].invocations,
    iterations: family.iterations(plan, d),
  }));
  return {
    family: family.name,
    dispatches,
    serialDepth: dispatches.reduce((a, d) => a + d.iterations, 0),
  };
}
