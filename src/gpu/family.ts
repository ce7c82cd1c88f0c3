/**
 * A kernel family: one way of mapping the training step onto WGSL kernels. Every family runs
 * the same ops over the same buffers (src/gpu/plan.ts) and the same bindings (src/gpu/abi.ts),
 * so the host code is shared; a family brings its kernels, their tile sizes, the order and
 * shape of its dispatches, and a model of its loops.
 *
 * - `software` (src/gpu/software.ts): shaped for CPU rasterizers (llvmpipe, SwiftShader), where
 *   a dispatch costs tens of microseconds and memory loads dominate: few, fused dispatches of
 *   8-lane workgroups, each invocation looping over many rows.
 * - `gpu` (src/gpu/gpu.ts): shaped for real GPUs: workgroups of 64 and 256 invocations, one
 *   output vec4 per few invocations, sums over the batch reduced in workgroup memory, short loops.
 */

import { type BindingName, C, type Constant } from "./abi.ts";
import type { Plan } from "./plan.ts";

export type FamilyName = "software" | "gpu";

/** One compiled kernel: its file, entry point, override constants and workgroup size. */
export interface EntryPoint {
  readonly file: string;
  readonly entry: string;
  readonly overrides: Readonly<Record<string, number>>;
  /** Invocations per workgroup (for the invocation counts the bench prints). */
  readonly invocations: number;
}

/**
 * What a dispatch computes, whichever kernel of a family computes it: the embedding's forward,
 * a block's forward, the loss (and in training its gradient and the output BatchNorm's backward),
 * a block's backward (with the previous block's activation and BatchNorm backward, unless
 * PREV_APART), that BatchNorm backward apart, the embedding's backward.
 */
export type DispatchRole =
  | "embed"
  | "forward"
  | "loss"
  | "backward"
  | "batchnormBackward"
  | "embedBackward";

/** One dispatch of a kernel for one op (an index into plan.ops) over a pass of `rows` rows. */
export interface Dispatch {
  readonly role: DispatchRole;
  readonly kernel: string;
  readonly op: number;
  readonly groups: readonly [number, number];
  readonly rows: number;
  /** A training pass (batch statistics, gradients) rather than an evaluation pass. */
  readonly train: boolean;
}

export interface KernelFamily {
  readonly name: FamilyName;
  /** Tile and workgroup sizes, generated into WGSL constants for every kernel of the family. */
  readonly constants: Record<string, Constant>;
  readonly entryPoints: Readonly<Record<string, EntryPoint>>;
  /** The group-1 bindings its kernels read or write (src/gpu/abi.ts BINDINGS). */
  readonly bindings: readonly BindingName[];
  /** The kernel files the family compiles (each after the generated prelude and libraries). */
  readonly files: readonly string[];
  /**
   * Per layer of vec4 widths inQ -> outQ: workgroups of the weight gradient (the rest of the
   * backward dispatch computes the input gradient), and floats of the DIAG moment partials.
   */
  layerShape(inQ: number, outQ: number): { dwGroups: number; momentFloats: number };
  /** Floats of the embedding's DIAG moment partials, for a vocab x embd table. */
  embeddingMomentFloats(vocab: number, embd: number): number;
  /** The embedding's forward over `rows` rows. */
  embed(plan: Plan, rows: number): Dispatch;
  /** Layer i's forward: training (batch statistics) or evaluation (running statistics). */
  layer(plan: Plan, i: number, rows: number, train: boolean): Dispatch[];
  /** The loss (and, training, its gradient): the batch's mean, or in evaluation each row's. */
  loss(plan: Plan, rows: number, train: boolean): Dispatch;
  /** Every layer's backward and the embedding's, with SGD; `diag`: the DIAG variants. */
  backward(plan: Plan, diag: boolean): Dispatch[];
  /** The rows an evaluation pass through layers first..last runs fastest with. */
  evalRows(plan: Plan, first: number, last: number): number;
  /**
   * The loop iterations of the busiest invocation of a dispatch, counted as llvmpipe counts
   * them: every iteration of every loop, plus the final test of each loop it enters.
   */
  iterations(plan: Plan, d: Dispatch): number;
}

/** The rows a dispatch's op works on: its examples times the op's rows per example. */
export const opRows = (plan: Plan, d: Dispatch): number => d.rows * plan.ops[d.op].positions;

/**
 * The standalone BatchNorm backward of layer i - 1 (shaders/batchnorm_backward.wgsl), where a
 * FlattenConsecutive before layer i keeps it out of layer i's input gradient (PREV_APART); with
 * layer i's op, so that `prev` is the layer it acts on.
 */
export function apartBackward(plan: Plan, i: number, rows: number): Dispatch[] {
  const f = plan.ops[i + 1];
  if (!(f.flags & C.PREV_APART)) return [];
  return [{
    role: "batchnormBackward",
    kernel: "batchnormBackward",
    op: i + 1,
    groups: [plan.ops[i].out_q, 1],
    rows,
    train: true,
  }];
}

/** The loops of the standalone BatchNorm backward: two over the layer's rows, two sums. */
export function apartIterations(plan: Plan, d: Dispatch, wg: number): number {
  const rows = d.rows * plan.ops[d.op - 1].positions;
  return 2 * loop(Math.ceil(rows / wg)) + 2 * loop(Math.log2(wg));
}

/** A loop of n iterations, as llvmpipe's limiter counts it (n passes and the exit test). */
export const loop = (n: number): number => n + 1;

/** The forward of a whole pass: the embedding, then every layer. */
export function forward(plan: Plan, rows: number, train: boolean): Dispatch[] {
  const f = plan.family;
  return [f.embed(plan, rows), ...plan.layers.flatMap((_, i) => f.layer(plan, i, rows, train))];
}

/**
 * The loss dispatch both families use (the same cross_entropy kernel): one workgroup when
 * training (the batch's loss and gradient), else an invocation per row, each writing its loss.
 *
 * Evaluation runs it as a pipeline of its own, `crossEntropyEval`, the same code: on Mesa
 * 22.3's llvmpipe, a training dispatch of the pipeline that had last run an evaluation pass (of
 * more rows than the batch) computed the output BatchNorm's gradient otherwise, so a run with an
 * evaluation between two steps trained differently from one without (a resumed run differed in
 * the 8th digit; tests/training_test.ts). Even an evaluation dispatch that returned at once did
 * it; Mesa 25.0.7 does not. Two pipelines keep the two kinds of dispatch apart.
 */
export function lossDispatch(plan: Plan, rows: number, train: boolean, wg: number): Dispatch {
  return {
    role: "loss",
    kernel: train ? "crossEntropy" : "crossEntropyEval",
    op: plan.ops.length - 1,
    groups: [train ? 1 : Math.ceil(rows / wg), 1],
    rows,
    train,
  };
}

/**
 * The loops of cross_entropy (with `wg` invocations a workgroup): its rows, three passes over
 * each row's logits (two in evaluation), the tree of the partial losses, and in training with
 * an output BatchNorm its backward: two passes over the batch per column.
 */
export function crossEntropyIterations(plan: Plan, d: Dispatch, wg: number): number {
  // The output has one row per example: d.rows rows.
  const f = plan.ops[d.op];
  const perInvocation = Math.ceil(d.rows / (d.groups[0] * wg));
  let n = loop(perInvocation) + perInvocation * (d.train ? 3 : 2) * loop(f.out_q) +
    (d.train ? loop(Math.log2(wg)) : 0);
  if (d.train && (f.flags & C.HAS_BN)) {
    const columns = Math.ceil(f.out_q / wg);
    n += loop(columns) + columns * 2 * loop(d.rows);
  }
  return n;
}
