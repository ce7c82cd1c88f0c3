/**
 * Replicas against solo runs: a group of models of one shape trained in the same dispatches
 * (src/gpu/plan.ts) must leave each replica exactly where the same model trained alone would
 * be. Each replica has its own parameters, batches, learning rates and BatchNorm momentum, and
 * one of them is driven to NaN by its learning rate; the group and each solo run do the same
 * chunks (one with moments and a snapshot), then evaluate and calibrate, each replica on its
 * own split; and a replica that sits a chunk out (trainReplicas' idle) stays as it was. The replicas and the
 * solo runs do the same sums in the same order (a split's loss and statistics are added up row
 * by row, however its passes cut it), so every value must be bit-identical (NaN
 * where the solo run has NaN): a replica reading or writing another's part of any buffer, or
 * any uniform mixing them up, shows as a difference.
 *
 * Run by tests/replicas_test.ts, and inside a page by the lab's kernel check (so in Chromium).
 */

import type { ChunkResult } from "../backend.ts";
import type { Examples } from "../data.ts";
import type { Snapshot } from "../diagnostics.ts";
import { initModel, type ModelConfig } from "../model.ts";
import { Rng } from "../rng.ts";
import type { Gpu } from "./device.ts";
import { type Comparison, nonTrivial } from "./expected.ts";
import type { FamilyName } from "./family.ts";
import { GpuModel } from "./model.ts";

/** Equal as bits go, except that any NaN equals any NaN. */
function mismatches(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    if (!(Object.is(a[i], b[i]) || (Number.isNaN(a[i]) && Number.isNaN(b[i])))) n++;
  }
  return n;
}

/** What one replica (or solo run) did: every value, named, in one order. */
type Trace = [name: string, values: ArrayLike<number>][];

interface Drive {
  replicas: number;
  train(
    batches: Int32Array<ArrayBuffer>[],
    lrs: number[][],
    diag: boolean,
  ): Promise<ChunkResult[]>;
  snapshot(step: number, r: number): Promise<Snapshot>;
  getParams(r: number): Promise<{ params: Float32Array; buffers: Float32Array }>;
  evaluate(exs: Examples[]): Promise<number[]>;
  calibrate(exs: Examples[]): Promise<number[]>;
}

const CHUNKS = 2;
const STEPS = 3; // per chunk

/** Trains a group (or one solo model) the same way, and records each replica's trace. */
async function traces(
  m: Drive,
  batches: Int32Array<ArrayBuffer>[][],
  lrs: number[][][],
  exs: Examples[],
) {
  const out: Trace[] = Array.from({ length: m.replicas }, () => []);
  for (let c = 0; c < CHUNKS; c++) {
    const last = c === CHUNKS - 1;
    const results = await m.train(batches.map((b) => b[c]), lrs.map((l) => l[c]), last);
    results.forEach((res, r) => {
      out[r].push([`chunk ${c} losses`, res.losses]);
      for (const [step, moments] of res.moments) {
        out[r].push([
          `chunk ${c} step ${step} moments`,
          moments.flatMap((w) => [w.gradSum, w.gradSumSq, w.paramSum, w.paramSumSq]),
        ]);
      }
    });
  }
  for (let r = 0; r < m.replicas; r++) {
    const snap = await m.snapshot(CHUNKS * STEPS, r);
    for (const w of snap.weights) out[r].push([`snapshot ${w.name} gradient`, w.grad]);
    snap.tanh.forEach((t, i) => out[r].push([`snapshot tanh ${i} dt`, t.dt]));
    const p = await m.getParams(r);
    out[r].push(["parameters after training", p.params], ["running statistics", p.buffers]);
  }
  (await m.evaluate(exs)).forEach((l, r) => out[r].push(["evaluation loss", [l]]));
  (await m.calibrate(exs)).forEach((l, r) => out[r].push(["calibrated loss", [l]]));
  for (let r = 0; r < m.replicas; r++) {
    out[r].push(["calibrated statistics", (await m.getParams(r)).buffers]);
  }
  return out;
}

function drive(model: GpuModel): Drive {
  return {
    replicas: model.replicas,
    train: (b, l, diag) => model.trainReplicas(b, l, diag ? { moments: [1], snapshot: true } : {}),
    snapshot: (step, r) => model.snapshot(step, r),
    getParams: (r) => model.getParams(r),
    evaluate: (ex) => model.evaluateReplicas(ex),
    calibrate: (ex) => model.calibrateReplicas(ex),
  };
}

/**
 * A group of `replicas` (at least 3: the second goes to NaN) against each replica trained
 * alone; one comparison per replica and value, its error the number of values that differ.
 */
export async function checkReplicas(
  gpu: Gpu,
  config: ModelConfig,
  batch: number,
  family: FamilyName,
  replicas = 3,
): Promise<Comparison[]> {
  const V = config.vocabSize;
  const T = config.blockSize;
  const ints = (rng: Rng, n: number, bound: number) =>
    Int32Array.from({ length: n }, () => Math.floor(rng.uniform() * bound));
  const inits = Array.from(
    { length: replicas },
    (_, r) => nonTrivial(config, initModel(config, new Rng(20 + r)), new Rng(40 + r)),
  );
  const batches = Array.from({ length: replicas }, (_, r) => {
    const rng = new Rng(60 + r);
    return Array.from({ length: CHUNKS }, () => {
      const b = new Int32Array(STEPS * batch * (T + 1));
      for (let s = 0; s < STEPS; s++) {
        const at = s * batch * (T + 1);
        b.set(ints(rng, batch * T, V), at);
        b.set(ints(rng, batch, V), at + batch * T);
      }
      return b;
    });
  });
  // Rates that change every step and differ by replica; replica 1's blows up to NaN.
  const lrs = Array.from(
    { length: replicas },
    (_, r) =>
      Array.from({ length: CHUNKS }, (_, c) =>
        Array.from(
          { length: STEPS },
          (_, s) => r === 1 ? 1e30 : 0.05 * (r + 1) * (1 - 0.1 * (c * STEPS + s)),
        )),
  );
  const momenta = Array.from({ length: replicas }, (_, r) => [0.001, 0.1, 0.5, 0.9][r % 4]);
  // Each replica's own split, of its own size (as seeds split the words differently), over
  // several passes, the last ones ragged.
  const exs = Array.from({ length: replicas }, (_, r): Examples => {
    const rng = new Rng(80 + r);
    const n = [700, 1234, 999, 1500][r % 4];
    return { x: ints(rng, n * T, V), y: ints(rng, n, V), n, blockSize: T };
  });
  const make = async (r: number | null) => {
    const m = await GpuModel.create(gpu, config, {
      batchSize: batch,
      chunkSteps: STEPS,
      family,
      replicas: r === null ? replicas : 1,
      // A group's evaluation passes may be shorter than a solo run's (its memory is shared):
      // here they are, and odd, so that each split is cut otherwise.
      evalRows: r === null ? 37 : undefined,
    });
    const mine = r === null ? inits.map((_, i) => i) : [r];
    mine.forEach((i, at) => {
      m.setParams(inits[i].params, inits[i].buffers, at);
      m.setMomentum(at, momenta[i]);
    });
    return m;
  };
  const run = async (r: number | null) => {
    const m = await make(r);
    try {
      const pick = <T>(a: T[]) => r === null ? a : [a[r]];
      const out = await traces(drive(m), pick(batches), pick(lrs), pick(exs));
      if (r === null) {
        // Replica 0 sits a chunk out while the others train: it must not move at all.
        const before = await m.getParams(0);
        await m.trainReplicas(
          batches.map((b, i) => i === 0 ? null : b[0]),
          lrs.map((l, i) => i === 0 ? null : l[0]),
        );
        const after = await m.getParams(0);
        out[0].push(["idle", [
          mismatches(after.params, before.params) + mismatches(after.buffers, before.buffers),
        ]]);
      }
      return out;
    } finally {
      await gpu.device.queue.onSubmittedWorkDone();
      m.destroy();
    }
  };
  const group = await run(null);
  const idle = group[0].pop()!;
  const out: Comparison[] = [{
    name: `replica 0 of ${replicas}: parameters and statistics after sitting a chunk out`,
    error: idle[1][0],
    tolerance: 0,
  }];
  for (let r = 0; r < replicas; r++) {
    const [solo] = await run(r);
    solo.forEach(([name, want], i) => {
      const [gotName, got] = group[r][i] ?? ["missing", []];
      out.push({
        name: `replica ${r} of ${replicas}${r === 1 ? " (NaN)" : ""}: ${name}`,
        error: gotName === name ? mismatches(got, want) : Infinity,
        tolerance: 0,
      });
    });
    // The NaN replica did go to NaN by the last chunk (else the check of its isolation is
    // empty), the others stayed finite.
    const losses = solo.filter(([name]) => name.endsWith("losses")).map(([, v]) => Array.from(v));
    const bad = r === 1
      ? losses[CHUNKS - 1].filter(Number.isFinite)
      : losses.flat().filter((l) => !Number.isFinite(l));
    out.push({
      name: `replica ${r} of ${replicas}: its losses ${r === 1 ? "end in NaN" : "are finite"}`,
      error: bad.length,
      tolerance: 0,
    });
  }
  return out;
}
