/**
 * Whole-split passes on the GPU: the loss over a split (evaluation), and the BatchNorm
 * calibration, which sets every running statistic to the exact statistic of its input over a
 * split, layer after layer, as makemore does after training.
 *
 * A split is cut into passes of the rows the kernel family runs fastest with (the software
 * family: the most whose operand fits a uniform window), up to SUBMIT_ROWS rows of passes per
 * submit and readback.
 *
 * Calibration sweeps the split once per layer instead of running every layer's prefix again
 * for each BatchNorm (which costs O(layers^2) forwards): the previous layer's outputs over the
 * whole split wait in a GPU buffer (a "store", never bound to a kernel, only copied into the
 * activations of each pass). For each layer with a BatchNorm: pass A computes h over the split,
 * read back for column statistics in float64 on the host (Chan et al.'s pairwise merge of
 * per-pass means and squared deviations); then pass B computes the layer's output with those
 * statistics into the next store. The last layer's pass B ends in the loss: calibrating a split
 * also evaluates it, for about two forward passes in all.
 */

import type { Examples } from "../data.ts";
import { C, type StepFields } from "./abi.ts";
import { type Dispatch, forward } from "./family.ts";
import { EVAL_PASSES, type Plan, SUBMIT_ROWS } from "./plan.ts";
import { mapFloats, readFloats, staging } from "./readback.ts";
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
}

/** The passes of a split, grouped into submits. */
function* submits(n: number, rows: number): Generator<Pass[]> {
  const perSubmit = Math.max(1, Math.min(EVAL_PASSES, Math.floor(SUBMIT_ROWS / rows)));
  for (let start = 0; start < n; start += perSubmit * rows) {
    const passes: Pass[] = [];
    for (let p = 0, first = start; p < perSubmit && first < n; p++, first += rows) {
      passes.push({ first, rows: Math.min(rows, n - first) });
    }
    yield passes;
  }
}

/** Uploads the examples of one submit's passes and writes their Step uniforms. */
function upload(ctx: PassContext, ex: Examples, passes: readonly Pass[]): void {
  const T = ex.blockSize;
  const total = passes.reduce((a, p) => a + p.rows, 0);
  const data = new Int32Array(total * (T + 1));
  let at = 0;
  const steps = passes.map(({ first, rows }, p) => {
    data.set(ex.x.subarray(first * T, (first + rows) * T), at);
    data.set(ex.y.subarray(first, first + rows), at + rows * T);
    const step = { rows, data: at, loss: p * ctx.plan.family.maxLossGroups, mode: C.MODE_EVAL };
    at += rows * (T + 1);
    return step;
  });
  ctx.writeSteps(0, steps);
  ctx.device.queue.writeBuffer(ctx.res.data, 0, data);
}

/** Reads the partial losses of a submit's passes and returns their sum. */
async function lossOf(ctx: PassContext, partials: readonly number[]): Promise<number> {
  const groups = ctx.plan.family.maxLossGroups;
  const losses = await readFloats(ctx.device, ctx.res.host, 0, partials.length * groups);
  let total = 0;
  partials.forEach((n, p) => {
    for (let g = 0; g < n; g++) total += losses[p * groups + g];
  });
  return total;
}

/** Mean loss over all examples, in evaluation mode (running BatchNorm statistics). */
export async function evaluate(ctx: PassContext, ex: Examples): Promise<number> {
  if (ex.n === 0) return NaN;
  const { plan } = ctx;
  const rows = plan.family.evalRows(plan, 0, plan.layers.length - 1);
  let total = 0;
  for (const passes of submits(ex.n, rows)) {
    upload(ctx, ex, passes);
    const enc = ctx.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    const partials = passes.map((p, slot) => {
      const loss = plan.family.loss(plan, p.rows, false);
      ctx.bindStep(pass, slot);
      ctx.encode(pass, [...forward(plan, p.rows, false), loss.dispatch]);
      return loss.partials;
    });
    pass.end();
    ctx.device.queue.submit([enc.finish()]);
    total += await lossOf(ctx, partials);
  }
  return total / ex.n;
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

/** Column means and sums of squared deviations, merged pass by pass in float64. */
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
    const passMean = new Float64Array(this.columns);
    const passM2 = new Float64Array(this.columns);
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < this.columns; j++) passMean[j] += values[r * stride + j];
    }
    for (let j = 0; j < this.columns; j++) passMean[j] /= rows;
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < this.columns; j++) {
        const d = values[r * stride + j] - passMean[j];
        passM2[j] += d * d;
      }
    }
    // Chan et al.'s pairwise update of (count, mean, M2).
    const total = this.count + rows;
    for (let j = 0; j < this.columns; j++) {
      const delta = passMean[j] - this.mean[j];
      this.mean[j] += (delta * rows) / total;
      this.m2[j] += passM2[j] + (delta * delta * this.count * rows) / total;
    }
    this.count = total;
  }

  /** The unbiased variance (as the batch variance of BatchNorm1d in training). */
  variance(): Float64Array {
    return this.m2.map((v) => v / Math.max(this.count - 1, 1));
  }
}

/**
 * Calibrates every BatchNorm over `ex` (see the module comment) and returns the mean loss over
 * it with the new statistics; NaN if `signal` aborted it (the statistics then partly set).
 */
export async function calibrate(
  ctx: PassContext,
  ex: Examples,
  signal?: AbortSignal,
  progress?: (fraction: number) => void,
): Promise<number> {
  const { plan, device, res } = ctx;
  const { layers, ops, regions, family } = plan;
  if (ex.n === 0) return NaN;
  if (!layers.some((l) => l.bn)) return evaluate(ctx, ex);
  const L = layers.length;
  const rows = family.evalRows(plan, 0, L - 1);
  let store: RowStore | null = null;
  let total = 0;
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
    for (const passes of submits(ex.n, rows)) {
      if (signal?.aborted) return false;
      progress?.((swept + passes[0].first / ex.n) / sweeps);
      upload(ctx, ex, passes);
      const enc = device.createCommandEncoder();
      const partials = passes.map((p, slot) => {
        if (store) {
          const { buffer, offset } = store.at(p.first);
          const x = regions.t[i - 1] * 16;
          const bytes = p.rows * f.positions * f.in_q * 16;
          enc.copyBufferToBuffer(buffer, offset, res.activations[(i - 1) % 2], x, bytes);
        }
        const loss = family.loss(plan, p.rows, false);
        const pass = enc.beginComputePass();
        ctx.bindStep(pass, slot);
        ctx.encode(pass, [
          ...(i === 0 ? [family.embed(plan, p.rows)] : []),
          ...family.layer(plan, i, p.rows, false),
          ...(withLoss ? [loss.dispatch] : []),
        ]);
        pass.end();
        perPass(enc, p, slot);
        return loss.partials;
      });
      device.queue.submit([enc.finish()]);
      if (withLoss) total += await lossOf(ctx, partials);
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
        // Pass A: h over the split, read back, its column statistics.
        const stats = new ColumnStats(4 * f.out_q);
        let buf: GPUBuffer | null = null;
        const ok = await sweep(i, false, (enc, p, slot) => {
          buf ??= staging(device, Math.floor(SUBMIT_ROWS / rows + 1) * rows * rowBytes);
          enc.copyBufferToBuffer(
            res.activations[i % 2],
            regions.h[i] * 16,
            buf,
            slot * rows * rowBytes,
            p.rows * rowBytes,
          );
        }, async (passes) => {
          const values = await mapFloats(buf!);
          buf = null;
          passes.forEach((p, slot) =>
            stats.add(
              values.subarray(slot * rows * f.positions * 4 * f.out_q),
              p.rows * f.positions,
              4 * f.out_q,
            )
          );
        });
        if (!ok) return NaN;
        const P = res.params[ctx.parity];
        device.queue.writeBuffer(P, f.run_mean * 16, Float32Array.from(stats.mean));
        device.queue.writeBuffer(P, f.run_var * 16, Float32Array.from(stats.variance()));
      }
      // Pass B: the layer's output with its statistics set, into the next store; after the
      // last layer, the loss.
      const next = i === L - 1 ? null : new RowStore(device, ex.n, f.positions * f.out_q, rows);
      const ok = await sweep(i, next === null, (enc, p) => {
        if (!next) return;
        const { buffer, offset } = next.at(p.first);
        enc.copyBufferToBuffer(
          res.activations[i % 2],
          regions.t[i] * 16,
          buffer,
          offset,
          p.rows * rowBytes,
        );
      });
      store?.destroy();
      store = next;
      if (!ok) return NaN;
    }
  } finally {
    store?.destroy();
  }
  return total / ex.n;
}
