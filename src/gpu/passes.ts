/**
 * Whole-split passes on the GPU: the loss over a split (evaluation), and the BatchNorm
 * calibration, which sets every running statistic to the exact statistic of its input over a
 * split, layer after layer, as makemore does after training.
 *
 * A split is cut into passes of the rows the kernel family runs fastest with (the software
 * family: the most whose operand fits a uniform window), up to plan.submitRows rows of passes
 * per submit and readback. The loss of a split is the sum of its rows' losses, in row order, in
 * float64: it does not depend on the cut.
 *
 * Calibration sweeps the split once per layer instead of running every layer's prefix again
 * for each BatchNorm (which costs O(layers^2) forwards): the previous layer's outputs over the
 * whole split wait in a GPU buffer (a "store", never bound to a kernel, only copied into the
 * activations of each pass). For each layer with a BatchNorm: pass A computes h over the split,
 * read back for column statistics in float64 on the host (Welford's running means and squared
 * deviations, row by row); then pass B computes the layer's output with those
 * statistics into the next store. The last layer's pass B ends in the loss: calibrating a split
 * also evaluates it, for about two forward passes in all.
 *
 * Every replica of a group (src/gpu/plan.ts) runs in the same passes, each on its own split
 * (replicas of different seeds split the words differently): the passes cover the longest
 * split, a replica's part of a pass past the end of its split is computed and never counted,
 * and each replica adds up its own rows as its solo run would.
 */

import type { Examples } from "../data.ts";
import { C, type StepFields } from "./abi.ts";
import { type Dispatch, forward } from "./family.ts";
import { EVAL_PASSES, type Plan } from "./plan.ts";
import { mapFloats, staging } from "./readback.ts";
import type { Resources } from "./resources.ts";

/** What the passes need of the model that runs them. */
export interface PassContext {
  readonly device: GPUDevice;
  readonly plan: Plan;
  readonly res: Resources;
  /** Which parameter copy holds the current parameters. */
  readonly parity: number;
  encode(pass: GPUComputePassEncoder, list: readonly Dispatch[]): void;
  bindStep(pass: GPUComputePassEncoder, slot: number): void;
  /** Writes Step uniforms into consecutive slots from `first`, in one upload. */
  writeSteps(first: number, list: readonly StepFields[]): void;
}

interface Pass {
  readonly first: number;
  readonly rows: number;
  /** Where its rows' losses go in each replica's part of Host. */
  readonly loss: number;
}

/** The passes over the largest of the replicas' splits, grouped into submits. */
function* submits(plan: Plan, n: number, rows: number): Generator<Pass[]> {
  const perSubmit = Math.max(1, Math.min(EVAL_PASSES, Math.floor(plan.submitRows / rows)));
  for (let start = 0; start < n; start += perSubmit * rows) {
    const passes: Pass[] = [];
    for (let p = 0, first = start; p < perSubmit && first < n; p++, first += rows) {
      passes.push({ first, rows: Math.min(rows, n - first), loss: first - start });
    }
    yield passes;
  }
}

/** The rows of a pass that are replica r's examples (its split may be shorter than others'). */
const mine = (ex: Examples, p: Pass) => Math.max(0, Math.min(p.rows, ex.n - p.first));

/**
 * Uploads each replica's examples of one submit's passes (zeros past the end of a shorter
 * split: rows that are computed, never counted) and writes their Step uniforms.
 */
function upload(ctx: PassContext, exs: readonly Examples[], passes: readonly Pass[]): void {
  const T = exs[0].blockSize;
  const total = passes.reduce((a, p) => a + p.rows, 0);
  let at = 0;
  const steps = passes.map((p) => {
    const step = { rows: p.rows, data: at, loss: p.loss, mode: C.MODE_EVAL };
    at += p.rows * (T + 1);
    return step;
  });
  ctx.writeSteps(0, steps);
  exs.forEach((ex, r) => {
    const data = new Int32Array(total * (T + 1));
    passes.forEach((p, i) => {
      const n = mine(ex, p);
      data.set(ex.x.subarray(p.first * T, (p.first + n) * T), steps[i].data);
      data.set(ex.y.subarray(p.first, p.first + n), steps[i].data + p.rows * T);
    });
    ctx.device.queue.writeBuffer(ctx.res.data, r * ctx.plan.strides.data * 4, data);
  });
}

/** Reads a submit's row losses and adds each replica's, in row order, into its total. */
async function addLosses(
  ctx: PassContext,
  exs: readonly Examples[],
  passes: readonly Pass[],
  total: number[],
): Promise<void> {
  const { plan, device, res } = ctx;
  const floats = passes.reduce((a, p) => a + p.rows, 0);
  const buf = staging(device, plan.replicas * floats * 4);
  const enc = device.createCommandEncoder();
  for (let r = 0; r < plan.replicas; r++) {
    enc.copyBufferToBuffer(res.host, r * plan.strides.host * 4, buf, r * floats * 4, floats * 4);
  }
  device.queue.submit([enc.finish()]);
  const losses = await mapFloats(buf);
  exs.forEach((ex, r) => {
    for (const p of passes) {
      const n = mine(ex, p);
      for (let i = 0; i < n; i++) total[r] += losses[r * floats + p.loss + i];
    }
  });
}

/** The longest split of the replicas'. */
const longest = (exs: readonly Examples[]) => Math.max(...exs.map((e) => e.n));

/**
 * Mean loss over all examples, in evaluation mode (running BatchNorm statistics): replica r's
 * over exs[r] (NaN for an empty split).
 */
export async function evaluate(ctx: PassContext, exs: readonly Examples[]): Promise<number[]> {
  const { plan } = ctx;
  const rows = plan.family.evalRows(plan, 0, plan.layers.length - 1);
  const total: number[] = Array(plan.replicas).fill(0);
  for (const passes of submits(plan, longest(exs), rows)) {
    upload(ctx, exs, passes);
    const enc = ctx.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    passes.forEach((p, slot) => {
      ctx.bindStep(pass, slot);
      ctx.encode(pass, [...forward(plan, p.rows, false), plan.family.loss(plan, p.rows, false)]);
    });
    pass.end();
    ctx.device.queue.submit([enc.finish()]);
    await addLosses(ctx, exs, passes, total);
  }
  return total.map((t, r) => exs[r].n === 0 ? NaN : t / exs[r].n);
}

/** A layer's outputs over a split, in GPU buffers of whole passes, row-major [n][q] vec4. */
class RowStore {
  readonly buffers: GPUBuffer[] = [];
  readonly rowsPerBuffer: number;

  constructor(device: GPUDevice, n: number, readonly q: number, passRows: number) {
    const most = Math.min(device.limits.maxBufferSize, 1 << 30);
    this.rowsPerBuffer = Math.max(1, Math.floor(most / (q * 16) / passRows)) * passRows;
    for (let row = 0; row < n; row += this.rowsPerBuffer) {
      const rows = Math.min(this.rowsPerBuffer, n - row);
      this.buffers.push(device.createBuffer({
        label: "store",
        size: Math.max(16, rows * q * 16),
        usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      }));
    }
  }

  /** Where row `first` is (a pass never straddles two buffers). */
  at(first: number): { buffer: GPUBuffer; offset: number } {
    const b = Math.floor(first / this.rowsPerBuffer);
    return { buffer: this.buffers[b], offset: (first - b * this.rowsPerBuffer) * this.q * 16 };
  }

  destroy(): void {
    this.buffers.forEach((b) => b.destroy());
  }
}

/**
 * Column means and sums of squared deviations in float64, updated row by row (Welford's
 * method): the result depends on the rows and their order only, not on how the passes cut
 * them, so a replica of a group (whose passes may be shorter) gets its solo run's statistics.
 */
class ColumnStats {
  count = 0;
  readonly mean: Float64Array;
  readonly m2: Float64Array;

  constructor(readonly columns: number) {
    this.mean = new Float64Array(columns);
    this.m2 = new Float64Array(columns);
  }

  /** Adds `rows` rows of `values` ([rows][stride] floats, the first `columns` of each). */
  add(values: Float32Array, rows: number, stride: number): void {
    const { mean, m2, columns } = this;
    for (let r = 0; r < rows; r++) {
      const n = ++this.count;
      const at = r * stride;
      for (let j = 0; j < columns; j++) {
        const x = values[at + j];
        const d = x - mean[j];
        mean[j] += d / n;
        m2[j] += d * (x - mean[j]);
      }
    }
  }

  /** The unbiased variance (as the batch variance of BatchNorm1d in training). */
  variance(): Float64Array {
    return this.m2.map((v) => v / Math.max(this.count - 1, 1));
  }
}

/**
 * Calibrates every BatchNorm of replica r over exs[r] (see the module comment) and returns each
 * replica's mean loss over it with the new statistics; NaN if `signal` aborted it (the
 * statistics then partly set).
 */
export async function calibrate(
  ctx: PassContext,
  exs: readonly Examples[],
  signal?: AbortSignal,
  progress?: (fraction: number) => void,
): Promise<number[]> {
  const { plan, device, res } = ctx;
  const { layers, ops, regions, family, strides } = plan;
  const R = plan.replicas;
  const stopped = () => Array(R).fill(NaN);
  const n = longest(exs);
  if (n === 0) return stopped();
  if (!layers.some((l) => l.bn)) return evaluate(ctx, exs);
  const L = layers.length;
  const rows = family.evalRows(plan, 0, L - 1);
  // Each replica's outputs of the previous layer.
  let store: RowStore[] | null = null;
  const total: number[] = Array(R).fill(0);
  // Where replica r's part of an activation buffer starts, in bytes.
  const actAt = (r: number) => r * strides.act * 16;
  // Sweeps of the split: two for a layer with a BatchNorm (A and B below), one without.
  const sweeps = layers.reduce((a, l) => a + (l.bn ? 2 : 1), 0);
  let swept = 0;

  /**
   * One sweep of layer i over the split: per pass, its input (the embedding, or rows of the
   * store), its forward (and the loss, `withLoss`), then `perPass`; `perSubmit` after each
   * submit. False if the signal stopped it.
   */
  const sweep = async (
    i: number,
    withLoss: boolean,
    perPass: (enc: GPUCommandEncoder, p: Pass, slot: number) => void,
    perSubmit: (passes: Pass[]) => Promise<void> = () => Promise.resolve(),
  ): Promise<boolean> => {
    const f = ops[i + 1];
    for (const passes of submits(plan, n, rows)) {
      if (signal?.aborted) return false;
      progress?.((swept + passes[0].first / n) / sweeps);
      upload(ctx, exs, passes);
      const enc = device.createCommandEncoder();
      passes.forEach((p, slot) => {
        store?.forEach((s, r) => {
          const { buffer, offset } = s.at(p.first);
          const x = actAt(r) + regions.t[i - 1] * 16;
          const bytes = p.rows * f.positions * f.in_q * 16;
          enc.copyBufferToBuffer(buffer, offset, res.activations[(i - 1) % 2], x, bytes);
        });
        const pass = enc.beginComputePass();
        ctx.bindStep(pass, slot);
        ctx.encode(pass, [
          ...(i === 0 ? [family.embed(plan, p.rows)] : []),
          ...family.layer(plan, i, p.rows, false),
          ...(withLoss ? [family.loss(plan, p.rows, false)] : []),
        ]);
        pass.end();
        perPass(enc, p, slot);
      });
      device.queue.submit([enc.finish()]);
      if (withLoss) await addLosses(ctx, exs, passes, total);
      await perSubmit(passes);
    }
    swept++;
    return true;
  };

  try {
    for (let i = 0; i < L; i++) {
      const f = ops[i + 1];
      // Bytes of one example at this layer: its `positions` rows.
      const rowBytes = f.positions * f.out_q * 16;
      if (layers[i].bn) {
        // Pass A: h over the split, read back, its column statistics (replica r's passes
        // `replica` bytes apart in the staging buffer).
        const stats = Array.from({ length: R }, () => new ColumnStats(4 * f.out_q));
        const replica = Math.floor(plan.submitRows / rows + 1) * rows * rowBytes;
        let buf: GPUBuffer | null = null;
        const ok = await sweep(i, false, (enc, p, slot) => {
          buf ??= staging(device, R * replica);
          for (let r = 0; r < R; r++) {
            enc.copyBufferToBuffer(
              res.activations[i % 2],
              actAt(r) + regions.h[i] * 16,
              buf,
              r * replica + slot * rows * rowBytes,
              p.rows * rowBytes,
            );
          }
        }, async (passes) => {
          const values = await mapFloats(buf!);
          buf = null;
          // Each replica's own rows, pass by pass, as its solo run adds them.
          stats.forEach((s, r) =>
            passes.forEach((p, slot) => {
              const own = mine(exs[r], p);
              if (own === 0) return;
              s.add(
                values.subarray((r * replica + slot * rows * rowBytes) / 4),
                own * f.positions,
                4 * f.out_q,
              );
            })
          );
        });
        if (!ok) return stopped();
        const P = res.params[ctx.parity];
        stats.forEach((s, r) => {
          if (exs[r].n === 0) return; // a replica with no split keeps its statistics
          const at = r * strides.params * 16;
          device.queue.writeBuffer(P, at + f.run_mean * 16, Float32Array.from(s.mean));
          device.queue.writeBuffer(P, at + f.run_var * 16, Float32Array.from(s.variance()));
        });
      }
      // Pass B: the layer's output with its statistics set, into the next store; after the
      // last layer, the loss.
      const next = i === L - 1
        ? null
        : Array.from({ length: R }, () => new RowStore(device, n, f.positions * f.out_q, rows));
      const ok = await sweep(i, next === null, (enc, p) => {
        next?.forEach((s, r) => {
          const { buffer, offset } = s.at(p.first);
          enc.copyBufferToBuffer(
            res.activations[i % 2],
            actAt(r) + regions.t[i] * 16,
            buffer,
            offset,
            p.rows * rowBytes,
          );
        });
      });
      store?.forEach((s) => s.destroy());
      store = next;
      if (!ok) return stopped();
    }
  } finally {
    store?.forEach((s) => s.destroy());
  }
  return total.map((t, r) => exs[r].n === 0 ? NaN : t / exs[r].n);
}
