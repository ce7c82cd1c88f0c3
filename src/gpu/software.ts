/**
 * The `software` kernel family (shaders/embedding.wgsl, linear.wgsl, cross_entropy.wgsl),
 * shaped for CPU rasterizers such as Mesa's llvmpipe, where a dispatch costs 20-40 us and a
 * storage-buffer load several times a texel fetch: a step is 2 (H + 1) + 3 dispatches for H
 * hidden blocks (15 for `seed`, 7 for `lecture`), each fusing everything that can share a pass
 * over the same columns; workgroups are one 8-lane SIMD group; an invocation loops over many
 * rows so that each weight texel it loads serves all of them.
 *
 * A training step:
 *   embedding_forward; linear_forward per layer (BatchNorm and tanh fused); cross_entropy
 *   (the loss, its gradient, the output BatchNorm's backward); linear_backward per layer, last
 *   first (dW with SGD, and dx with the previous layer's tanh and BatchNorm backward fused);
 *   embedding_backward (with SGD).
 *
 * `iterations` mirrors each kernel's loops, as llvmpipe counts them against its limit of
 * 65,536 per invocation (every iteration of every loop, plus one exit test per loop entered,
 * all loops of the invocation together; measured with a probe kernel, 2026-11-29). Loops over
 * a literal bound of 4 are unrolled before the count and cost nothing; loops over the tile
 * constants are counted (measured: linear_forward at 1,024 x 50 vec4 was exact, 1,200 x 50 not).
 */

import { ALL_BINDINGS, C, constant } from "./abi.ts";
import {
  apartBackward,
  apartIterations,
  crossEntropyIterations,
  type Dispatch,
  type EntryPoint,
  type KernelFamily,
  loop,
  lossDispatch,
  opRows,
} from "./family.ts";
import type { Plan } from "./plan.ts";

const RB = 16; // rows per invocation in linear_forward and the input gradient
const RK = 16; // rows of W per invocation in the weight gradient (a multiple of 4)
const WX = 8; // adjacent vec4 columns per workgroup
const WY = 1; // row groups per workgroup: one SIMD group, no barriers to wait at
const CE_WG = 64; // cross_entropy's workgroup
const EMBED_WG = 64; // embedding_forward: vec4 of x per workgroup
const EMBED_TOKENS = 8; // embedding_backward: tokens (lanes) per workgroup
const BN_WG = 64; // batchnorm_backward: rows in parallel per column

const CONSTANTS = {
  RB: constant(RB, "linear: rows per invocation"),
  RK: constant(RK, "linear: rows of W per invocation in the weight gradient"),
  WX: constant(WX, "linear: adjacent vec4 columns per workgroup"),
  WY: constant(WY, "linear: row groups per workgroup"),
  CE_WG: constant(CE_WG, "cross_entropy: invocations per workgroup"),
  EMBED_WG: constant(EMBED_WG, "embedding_forward: vec4 of x per workgroup"),
  EMBED_TOKENS: constant(EMBED_TOKENS, "embedding_backward: tokens per workgroup"),
  BN_WG: constant(BN_WG, "batchnorm_backward: rows in parallel per column"),
};

/** Variant names: WINDOWS reads the shared operand through uniform windows, DIAG collects. */
const variants = (
  name: string,
  file: string,
  entry: string,
  invocations: number,
  flags: readonly ("WINDOWS" | "DIAG")[],
): [string, EntryPoint][] => {
  const out: [string, EntryPoint][] = [];
  const combos = flags.length === 2
    ? [[0, 0], [1, 0], [0, 1], [1, 1]]
    : flags.length
    ? [[0], [1]]
    : [[]];
  for (const values of combos) {
    const overrides = Object.fromEntries(flags.map((f, i) => [f, values[i]]));
    const suffix = flags.map((f, i) => values[i] ? (f === "WINDOWS" ? "Windowed" : "Diag") : "")
      .join("");
    out.push([name + suffix, { file, entry, overrides, invocations }]);
  }
  return out;
};

const ENTRY_POINTS: Record<string, EntryPoint> = Object.fromEntries([
  ...variants("embeddingForward", "embedding.wgsl", "embedding_forward", EMBED_WG, []),
  ...variants("embeddingBackward", "embedding.wgsl", "embedding_backward", EMBED_TOKENS, [
    "WINDOWS",
    "DIAG",
  ]),
  ...variants("linearForward", "linear.wgsl", "linear_forward", WX * WY, ["WINDOWS"]),
  ...variants("linearBackward", "linear.wgsl", "linear_backward", WX * WY, ["WINDOWS", "DIAG"]),
  // The loss's evaluation passes get a pipeline of their own (family.ts, lossDispatch).
  ...variants("crossEntropy", "cross_entropy.wgsl", "cross_entropy", CE_WG, []),
  ...variants("crossEntropyEval", "cross_entropy.wgsl", "cross_entropy", CE_WG, []),
  ...variants("batchnormBackward", "batchnorm_backward.wgsl", "batchnorm_backward", BN_WG, []),
]);

const ceil = (a: number, b: number) => Math.ceil(a / b);

/**
 * Whether `rows` rows of `quads` vec4 fit one uniform window. A window is bound at one offset
 * for the whole dispatch, so only a single replica's operand can come through it: a group of
 * replicas reads storage.
 */
const fits = (plan: Plan, rows: number, quads: number) =>
  plan.replicas === 1 && rows * quads <= C.WINDOW;

/** Iterations of linear_forward's busiest invocation (lid.y = wg.y = 0). */
function forwardIterations(plan: Plan, d: Dispatch): number {
  const f = plan.ops[d.op];
  const blocks = ceil(opRows(plan, d), d.groups[1] * WY * RB);
  const rowLoop = (body: number) => loop(blocks) + blocks * body;
  const n = rowLoop(loop(RB) + loop(f.in_q) + f.in_q * loop(RB) + loop(RB));
  const bn = (f.flags & C.HAS_BN) !== 0;
  if (!bn) return n + ((f.flags & C.HAS_ACT) ? rowLoop(loop(RB)) : 0);
  // The batch statistics' loops, counted whether or not this pass measures them.
  return n + 2 * loop(WY) + rowLoop(loop(RB)) + rowLoop(loop(RB));
}

/** Iterations of linear_backward: the longer of its weight-gradient and input-gradient roles. */
function backwardIterations(plan: Plan, d: Dispatch, diag: boolean): number {
  const f = plan.ops[d.op];
  const prev = plan.ops[d.op - 1];
  const R = opRows(plan, d);
  const dw = loop(RK) + loop(R) + R * loop(RK / 4) + loop(RK) + (diag ? loop(RK) : 0);
  const blocks = ceil(R, WY * RB);
  const rowLoop = (body: number) => loop(blocks) + blocks * body;
  let dx = rowLoop(
    loop(RB) + loop(f.out_q) + f.out_q * loop(RB) + loop(RB) + (diag ? loop(RB) : 0),
  );
  const fused = !(f.flags & C.PREV_APART);
  const bn = fused && (prev.flags & C.HAS_BN) !== 0;
  if (bn || (fused && (prev.flags & C.HAS_ACT))) dx += rowLoop(loop(RB));
  if (bn) dx += 2 * loop(WY) + rowLoop(loop(RB));
  return Math.max(dw, dx);
}

export const software: KernelFamily = {
  name: "software",
  constants: CONSTANTS,
  entryPoints: ENTRY_POINTS,
  bindings: ALL_BINDINGS,
  files: ["embedding.wgsl", "linear.wgsl", "cross_entropy.wgsl", "batchnorm_backward.wgsl"],

  layerShape(inQ, outQ) {
    // linear_backward's weight gradient: one RK x 4 block of dW per invocation.
    const dwGroups = ceil(4 * inQ, WY * RK) * ceil(outQ, WX);
    return { dwGroups, momentFloats: dwGroups * WX * WY * 4 };
  },

  embeddingMomentFloats(vocab, embd) {
    return vocab * embd * 4; // one vec4 of partial moments per table element
  },

  embed(plan, rows) {
    const e = plan.ops[0];
    const groups = [ceil(rows * e.positions * e.out_q, EMBED_WG), 1] as const;
    return { role: "embed", kernel: "embeddingForward", op: 0, groups, rows, train: true };
  },

  layer(plan, i, rows, train) {
    const f = plan.ops[i + 1];
    const R = rows * f.positions;
    // Batch statistics need every row in one workgroup; otherwise rows split over many.
    const batchStats = (f.flags & C.HAS_BN) !== 0 && train;
    return [{
      role: "forward",
      kernel: fits(plan, R, f.in_q) ? "linearForwardWindowed" : "linearForward",
      op: i + 1,
      groups: [ceil(f.out_q, WX), batchStats ? 1 : ceil(R, RB)],
      rows,
      train,
    }];
  },

  loss: (plan, rows, train) => lossDispatch(plan, rows, train, CE_WG),

  backward(plan, diag) {
    const rows = plan.batchSize;
    const suffix = (windowed: boolean) => (windowed ? "Windowed" : "") + (diag ? "Diag" : "");
    const list: Dispatch[] = [];
    for (let i = plan.layers.length - 1; i >= 0; i--) {
      const f = plan.ops[i + 1];
      const R = rows * f.positions;
      list.push({
        role: "backward",
        kernel: "linearBackward" + suffix(fits(plan, R, f.in_q) && fits(plan, R, f.out_q)),
        op: i + 1,
        groups: [f.dw_groups + ceil(f.in_q, WX), 1],
        rows,
        train: true,
      }, ...apartBackward(plan, i, rows));
    }
    const e = plan.ops[0];
    list.push({
      role: "embedBackward",
      kernel: "embeddingBackward" + suffix(fits(plan, rows * e.positions, e.out_q)),
      op: 0,
      groups: [ceil(plan.config.vocabSize, EMBED_TOKENS), ceil(e.embd, 4)],
      rows,
      train: true,
    });
    return list;
  },

  evalRows(plan, first, last) {
    // The most rows whose operand still fits a uniform window (llvmpipe loads those several
    // times faster than storage), unless that is too few to be worth a dispatch.
    const widest = Math.max(
      ...plan.ops.slice(first + 1, last + 2).map((f) => f.positions * f.in_q),
    );
    const windowed = Math.floor(C.WINDOW / widest);
    // A group's passes have the same rows as one replica's (though they cannot read through
    // the windows), so that they sum each replica's loss in the same order as its solo run.
    return Math.min(plan.evalRows, windowed >= RB ? windowed : plan.evalRows);
  },

  iterations(plan, d) {
    const diag = d.kernel.endsWith("Diag");
    if (d.kernel.startsWith("linearForward")) return forwardIterations(plan, d);
    if (d.kernel.startsWith("linearBackward")) return backwardIterations(plan, d, diag);
    if (d.kernel.startsWith("crossEntropy")) {
      return crossEntropyIterations(plan, d, CE_WG);
    }
    if (d.kernel === "batchnormBackward") return apartIterations(plan, d, BN_WG);
    if (d.kernel === "embeddingForward") return 0; // one loop over the literal 4: unrolled
    // embedding_backward: every row of the batch, for each of its tokens.
    const R = opRows(plan, d);
    return loop(R) + R * loop(plan.ops[0].group);
  },
};
