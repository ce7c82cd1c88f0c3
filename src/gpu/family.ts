/**
 * A kernel family: one way of mapping the training step onto WGSL kernels. Every family runs
 * the same ops over the same buffers (src/gpu/plan.ts) and the same bindings (src/gpu/abi.ts),
 * so the host code is shared; a family brings its kernels, their tile sizes, the order and
 * shape of its dispatches, and a model of its loops.
 *
 * - `software` (src/gpu/software.ts): shaped for CPU rasterizers (llvmpipe, SwiftShader), where
 *   a dispatch costs tens of microseconds and memory loads dominate: few, fused dispatches of
 *   8-lane workgroups, each invocation looping over many rows.
 */

import type { Constant } from "./abi.ts";
import type { Plan } from "./plan.ts";

export type FamilyName = "software";

/** One compiled kernel: its file, entry point, override constants and workgroup size. */
export interface EntryPoint {
  readonly file: string;
  readonly entry: string;
  readonly overrides: Readonly<Record<string, number>>;
  /** Invocations per workgroup (for the invocation counts the bench prints). */
  readonly invocations: number;
}

/** One dispatch of a kernel for one op (an index into plan.ops) over a pass of `rows` rows. */
export interface Dispatch {
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
  /** The kernel files the family compiles (each after the generated prelude and libraries). */
  readonly files: readonly string[];
  /** The most partial losses an evaluation pass writes (the host sums them). */
  readonly maxLossGroups: number;
  /**
   * Per layer of vec4 widths inQ -> outQ: workgroups of the weight gradient (the rest of the
   * backward dispatch computes the input gradient), and floats of the DIAG moment partials.
   */
  layerShape(inQ: number, outQ: number): { dwGroups: number; momentFloats: number };
  /** Floats of the embedding's DIAG moment partials, for a vocab x embd table. */
  embeddingMomentFloats(vocab: number, embd: number): number;
  /** The embedding and each layer up to `upTo` (default: all), over `rows` rows. */
  forward(plan: Plan, rows: number, train: boolean, upTo?: number): Dispatch[];
  /** The loss (and, training, its gradient), with the number of partial losses it writes. */
  loss(plan: Plan, rows: number, train: boolean): { dispatch: Dispatch; partials: number };
  /** Every layer's backward and the embedding's, with SGD; `diag`: the DIAG variants. */
  backward(plan: Plan, diag: boolean): Dispatch[];
  /**
   * The loop iterations of the busiest invocation of a dispatch, counted as llvmpipe counts
   * them: every iteration of every loop, plus the final test of each loop it enters.
   */
  iterations(plan: Plan, d: Dispatch): number;
}

/** A loop of n iterations, as llvmpipe's limiter counts it (n passes and the exit test). */
export const loop = (n: number): number => n + 1;
