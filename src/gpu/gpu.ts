/**
 * The `gpu` kernel family (shaders/gpu/linear.wgsl, gpu/batchnorm.wgsl, gpu/embedding.wgsl, with
 * shaders/embedding.wgsl's forward and cross_entropy.wgsl), shaped for real GPUs: many short
 * invocations instead of a few long ones. A dispatch costs a few microseconds there and a
 * GPU runs tens of thousands of invocations at once, so the step is split where a sum over the
 * whole batch is needed (BatchNorm), and every other sum is cut into slices that meet in
 * workgroup memory.
 *
 * A training step, for H hidden layers (27 dispatches for `seed`, 9 for `lecture`):
 *   embedding_forward; per layer matmul_forward (bias and tanh fused when there is no
 *   BatchNorm) and batchnorm_forward; cross_entropy (the loss and its gradient); the output
 *   BatchNorm's backward; per layer, last first, matmul_backward (dW with SGD, and dx, with the
 *   previous layer's tanh backward fused when it has no BatchNorm) and the previous layer's
 *   batchnorm_backward; embedding_backward (with SGD).
 *
 * `iterations` mirrors each kernel's loops as src/gpu/software.ts does: it sizes passes on
 * llvmpipe, where these kernels are tested, and it is the bench's serial depth.
 */

import { C, constant } from "./abi.ts";
import { type Dispatch, type EntryPoint, type KernelFamily, loop, lossDispatch } from "./family.ts";

const G_OUT = 32; // outputs (vec4) per linear workgroup
const G_SLICES = 8; // slices of each output's sum
const GPU_WG = G_OUT * G_SLICES;
const BN_WG = 64; // rows in parallel per BatchNorm column
const EMB_WG = 64; // positions in parallel per embedding element
const CE_WG = 64;
const CE_MAX_GROUPS = 64;
const EMBED_WG = 64;
/** The largest evaluation pass: beyond, buffers grow for nothing. */
const MAX_PASS_ROWS = 4096;

const CONSTANTS = {
  G_OUT: constant(G_OUT, "linear: output vec4 per workgroup"),
  G_SLICES: constant(G_SLICES, "linear: slices of each output's sum, added in workgroup memory"),
  GPU_WG: constant(GPU_WG, "linear: invocations per workgroup"),
  BN_WG: constant(BN_WG, "batchnorm: rows in parallel per column"),
  EMB_WG: constant(EMB_WG, "embedding_backward: positions in parallel per element"),
  CE_WG: constant(CE_WG, "cross_entropy: invocations per workgroup"),
  EMBED_WG: constant(EMBED_WG, "embedding_forward: positions per workgroup"),
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
  batchnormForward: entry("gpu/batchnorm.wgsl", "batchnorm_forward", BN_WG),
  batchnormBackwardPrev: entry("gpu/batchnorm.wgsl", "batchnorm_backward", BN_WG, { OUT: 0 }),
  batchnormBackwardOut: entry("gpu/batchnorm.wgsl", "batchnorm_backward", BN_WG, { OUT: 1 }),
  crossEntropy: entry("cross_entropy.wgsl", "cross_entropy", CE_WG, { FUSE_BN: 0 }),
};

const ceil = (a: number, b: number) => Math.ceil(a / b);
/** The loop of a tree reduction over n invocations: log2 n halvings. */
const tree = (n: number) => loop(Math.log2(n));

export const gpu: KernelFamily = {
  name: "gpu",
  constants: CONSTANTS,
  entryPoints: ENTRY_POINTS,
  files: [
    "embedding.wgsl",
    "gpu/embedding.wgsl",
    "gpu/linear.wgsl",
    "gpu/batchnorm.wgsl",
    "cross_entropy.wgsl",
  ],
  maxLossGroups: CE_MAX_GROUPS,

  layerShape(inQ, outQ) {
    // matmul_backward's weight gradient: the 4 inQ rows of W and the bias, outQ vec4 each.
    const dwGroups = ceil((4 * inQ + 1) * outQ, G_OUT);
    return { dwGroups, momentFloats: dwGroups * 4 };
  },

  embeddingMomentFloats(vocab, embd) {
    return vocab * embd * 4;
  },

  embed(plan, rows) {
    const groups = [ceil(rows * plan.config.blockSize, EMBED_WG), 1] as const;
    return { kernel: "embeddingForward", op: 0, groups, rows, train: true };
  },

  layer(plan, i, rows, train) {
    const f = plan.ops[i + 1];
    const list: Dispatch[] = [{
      kernel: "matmulForward",
      op: i + 1,
      groups: [ceil(rows * f.out_q, G_OUT), 1],
      rows,
      train,
    }];
    if (train && (f.flags & C.HAS_BN)) {
      list.push({ kernel: "batchnormForward", op: i + 1, groups: [f.out_q, 1], rows, train });
    }
    return list;
  },

  loss: (plan, rows, train) => lossDispatch(plan, rows, train, CE_WG, CE_MAX_GROUPS),

  backward(plan, diag) {
    const rows = plan.batchSize;
    const suffix = diag ? "Diag" : "";
    const L = plan.layers.length;
    const list: Dispatch[] = [];
    const out = plan.ops[L];
    if (out.flags & C.HAS_BN) {
      // The output layer's BatchNorm, with the loss op's bindings: its values in Out.
      list.push({
        kernel: "batchnormBackwardOut",
        op: L + 1,
        groups: [out.out_q, 1],
        rows,
        train: true,
      });
    }
    for (let i = L - 1; i >= 0; i--) {
      const f = plan.ops[i + 1];
      list.push({
        kernel: "matmulBackward" + suffix,
        op: i + 1,
        groups: [f.dw_groups + ceil(rows * f.in_q, G_OUT), 1],
        rows,
        train: true,
      });
      const prev = plan.ops[i];
      if (i > 0 && (prev.flags & C.HAS_BN)) {
        list.push({
          kernel: "batchnormBackwardPrev",
          op: i + 1,
          groups: [prev.out_q, 1],
          rows,
          train: true,
        });
      }
    }
    const { vocabSize, nEmbd } = plan.config;
    list.push({
      kernel: "embeddingBackward" + suffix,
      op: 0,
      groups: [vocabSize, ceil(nEmbd, 4)],
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
        return loop(plan.config.nEmbd);
      case "matmulForward":
        return slices(f.in_q);
      case "matmulBackward":
      case "matmulBackwardDiag": {
        const dw = slices(d.rows) + (d.kernel.endsWith("Diag") ? tree(GPU_WG) : 0);
        return Math.max(dw, slices(f.out_q));
      }
      case "batchnormForward":
        return 3 * loop(ceil(d.rows, BN_WG)) + 2 * tree(BN_WG);
      case "batchnormBackwardPrev":
      case "batchnormBackwardOut":
        return 2 * loop(ceil(d.rows, BN_WG)) + 2 * tree(BN_WG);
      case "crossEntropy": {
        const perInvocation = ceil(d.rows, d.groups[0] * CE_WG);
        return loop(perInvocation) + perInvocation * (d.train ? 3 : 2) * loop(f.out_q) +
          tree(CE_WG);
      }
      default: // embedding_backward
        return loop(ceil(d.rows * plan.config.blockSize, EMB_WG)) + tree(EMB_WG) + loop(4);
    }
  },
};
