/**
 * The `gpu` kernel family (shaders/gpu/linear.wgsl and gpu/embedding.wgsl, with
 * shaders/embedding.wgsl's forward and cross_entropy.wgsl), shaped for real GPUs: many short
 * invocations instead of a few long ones. A GPU runs tens of thousands of invocations at once
 * and a dispatch costs it a few microseconds, so every sum is cut into slices that meet in
 * workgroup memory, and the step is fused as the software family's is: 2 (H + 1) + 3 dispatches
 * for H hidden layers (15 for `seed`, 7 for `lecture`).
 *
 * A training step:
 *   embedding_forward; per layer matmul_forward (the BatchNorm with its batch statistics and
 *   the tanh in its epilogue); cross_entropy (the loss, its gradient and the output BatchNorm's
 *   backward); per layer, last first, matmul_backward (dW with SGD, and dx with the previous
 *   layer's tanh and BatchNorm backward); embedding_backward (with SGD).
 *
 * `iterations` mirrors each kernel's loops as src/gpu/software.ts does: it sizes passes on
 * llvmpipe, where these kernels are tested, and it is the bench's serial depth.
 */

import { BINDINGS_WITHOUT_WINDOWS, C, constant } from "./abi.ts";
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

const G_ROWS = 32; // rows of one column per linear workgroup (outputs, in the weight gradient)
const G_SLICES = 8; // slices of each output's sum
const GPU_WG = G_ROWS * G_SLICES;
const EMB_WG = 64; // positions in parallel per embedding element
const BN_WG = 64; // batchnorm_backward: rows in parallel per column
const CE_WG = 64;
const EMBED_WG = 64;
/** The largest evaluation pass: beyond, buffers grow for nothing. */
const MAX_PASS_ROWS = 4096;

const CONSTANTS = {
  G_ROWS: constant(G_ROWS, "linear: rows (weight gradient: outputs) per workgroup"),
  G_SLICES: constant(G_SLICES, "linear: slices of each output's sum, added in workgroup memory"),
  GPU_WG: constant(GPU_WG, "linear: invocations per workgroup"),
  EMB_WG: constant(EMB_WG, "embedding_backward: positions in parallel per element"),
  BN_WG: constant(BN_WG, "batchnorm_backward: rows in parallel per column"),
  CE_WG: constant(CE_WG, "cross_entropy: invocations per workgroup"),
  EMBED_WG: constant(EMBED_WG, "embedding_forward: vec4 of x per workgroup"),
  // embedding.wgsl's backward, compiled with its forward but not dispatched by this family.
  EMBED_TOKENS: constant(8, "embedding.wgsl's embedding_backward (unused here)"),
};

const entry = (
  file: string,
  fn: string,
  invocations: number,
  overrides: Record<string, number> = {},
): EntryPoint => ({ file, entry: fn, overrides, invocations });

const ENTRY_POINTS: Record<string, EntryPoint> = {
  embeddingForward: entry("embedding.wgsl", "embedding_forward", EMBED_WG),
  embeddingBackward: entry("gpu/embedding.wgsl", "embedding_backward", EMB_WG, { DIAG: 0 }),
  embeddingBackwardDiag: entry("gpu/embedding.wgsl", "embedding_backward", EMB_WG, { DIAG: 1 }),
  matmulForward: entry("gpu/linear.wgsl", "matmul_forward", GPU_WG),
  matmulBackward: entry("gpu/linear.wgsl", "matmul_backward", GPU_WG, { DIAG: 0 }),
  matmulBackwardDiag: entry("gpu/linear.wgsl", "matmul_backward", GPU_WG, { DIAG: 1 }),
  // The loss's evaluation passes get a pipeline of their own (family.ts, lossDispatch).
  crossEntropy: entry("cross_entropy.wgsl", "cross_entropy", CE_WG),
  crossEntropyEval: entry("cross_entropy.wgsl", "cross_entropy", CE_WG),
  batchnormBackward: entry("batchnorm_backward.wgsl", "batchnorm_backward", BN_WG),
};

const ceil = (a: number, b: number) => Math.ceil(a / b);

/**
 * Row groups of a linear layer's dispatch: one workgroup takes a whole column when a BatchNorm
 * needs its sums over the batch (the forward's statistics in training, and the backward of the
 * BatchNorm that `flags` describe), else G_ROWS rows each.
 */
function rowGroups(flags: number, rows: number, train: boolean): number {
  return train && (flags & C.HAS_BN) ? 1 : ceil(rows, G_ROWS);
}
/** The loop of a tree reduction over n invocations: log2 n halvings. */
const tree = (n: number) => loop(Math.log2(n));

export const gpu: KernelFamily = {
  name: "gpu",
  constants: CONSTANTS,
  entryPoints: ENTRY_POINTS,
  bindings: BINDINGS_WITHOUT_WINDOWS,
  files: [
    "embedding.wgsl",
    "gpu/embedding.wgsl",
    "gpu/linear.wgsl",
    "cross_entropy.wgsl",
    "batchnorm_backward.wgsl",
  ],

  layerShape(inQ, outQ) {
    // matmul_backward's weight gradient: the 4 inQ rows of W and the bias, outQ vec4 each.
    const dwGroups = ceil((4 * inQ + 1) * outQ, G_ROWS);
    return { dwGroups, momentFloats: dwGroups * 4 };
  },

  embeddingMomentFloats(vocab, embd) {
    return vocab * embd * 4;
  },

  embed(plan, rows) {
    const e = plan.ops[0];
    const groups = [ceil(rows * e.positions * e.out_q, EMBED_WG), 1] as const;
    return { role: "embed", kernel: "embeddingForward", op: 0, groups, rows, train: true };
  },

  layer(plan, i, rows, train) {
    const f = plan.ops[i + 1];
    return [{
      role: "forward",
      kernel: "matmulForward",
      op: i + 1,
      groups: [f.out_q, rowGroups(f.flags, rows * f.positions, train)],
      rows,
      train,
    }];
  },

  loss: (plan, rows, train) => lossDispatch(plan, rows, train, CE_WG),

  backward(plan, diag) {
    const rows = plan.batchSize;
    const list: Dispatch[] = [];
    for (let i = plan.layers.length - 1; i >= 0; i--) {
      const f = plan.ops[i + 1];
      // The previous layer's BatchNorm, when its backward is fused here, needs whole columns.
      const fused = (f.flags & C.PREV_APART) ? 0 : plan.ops[i].flags;
      list.push({
        role: "backward",
        kernel: diag ? "matmulBackwardDiag" : "matmulBackward",
        op: i + 1,
        groups: [f.dw_groups + f.in_q * rowGroups(fused, rows * f.positions, true), 1],
        rows,
        train: true,
      }, ...apartBackward(plan, i, rows));
    }
    list.push({
      role: "embedBackward",
      kernel: "embeddingBackward" + (diag ? "Diag" : ""),
      op: 0,
      groups: [plan.config.vocabSize, ceil(plan.ops[0].embd, 4)],
      rows,
      train: true,
    });
    return list;
  },

  evalRows(plan) {
    return Math.min(plan.evalRows, MAX_PASS_ROWS);
  },

  iterations(plan, d) {
    const f = plan.ops[d.op];
    const slices = (n: number) => loop(ceil(n, G_SLICES)) + tree(G_SLICES);
    switch (d.kernel) {
      case "embeddingForward":
        return 0; // its one loop has the literal bound 4: unrolled
      case "matmulForward": {
        const blocks = ceil(opRows(plan, d), G_ROWS * d.groups[1]);
        const bn = (f.flags & C.HAS_BN) !== 0;
        // The row blocks, then with BatchNorm: two more row loops, two sums over the owners.
        return loop(blocks) + blocks * slices(f.in_q) +
          (bn ? 2 * loop(blocks) + (d.train ? 2 * tree(G_ROWS) : 0) : 0);
      }
      case "matmulBackward":
      case "matmulBackwardDiag": {
        const R = opRows(plan, d);
        const dw = slices(R) + (d.kernel.endsWith("Diag") ? tree(GPU_WG) : 0);
        const bn = !(f.flags & C.PREV_APART) && (plan.ops[d.op - 1].flags & C.HAS_BN) !== 0;
        const blocks = bn ? ceil(R, G_ROWS) : 1;
        const dx = loop(blocks) + blocks * slices(f.out_q) +
          (bn ? loop(blocks) + 2 * tree(G_ROWS) : 0);
        return Math.max(dw, dx);
      }
      case "crossEntropy":
      case "crossEntropyEval":
        return crossEntropyIterations(plan, d, CE_WG);
      case "batchnormBackward":
        return apartIterations(plan, d, BN_WG);
      default: // embedding_backward
        return loop(ceil(d.rows * plan.config.blockSize, EMB_WG)) + tree(EMB_WG) + loop(4);
    }
  },
};
