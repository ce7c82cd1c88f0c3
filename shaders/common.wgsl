// Declarations shared by every kernel; src/gpu/kernels.ts prepends this file to each op's file.
//
// Memory model of a training step (see src/gpu/model.ts):
// - P holds the parameters and the BatchNorm running statistics before the step, Pn receives
//   them after it, except the layer's weight, which is the texture W (Wn after the step).
//   Every value is written to Pn (Wn) exactly once per step, by the kernel that computes its
//   update (SGD is fused there, see sgd.wgsl), and the two copies swap roles for the next step
//   ("ping-pong").
// - Activations are batch-major, [rows][features], every row padded to a multiple of 4
//   features and read as vec4; padding is zero and stays zero. Layer l's forward values live
//   in activation buffer l % 2 and the gradients w.r.t. its h in gradient buffer l % 2 (the
//   embedding counts as layer -1), so an op never writes the buffer it reads from: In/Out and
//   Gin/Gout below. That lets In and Gin also be read through uniform-buffer windows, which
//   llvmpipe loads several times faster than storage buffers (see linear.wgsl).
// - D holds the token ids of the examples (the contexts [rows][block] followed by the targets
//   [rows]), Host what the host reads back: the losses, and the diagnostics of the steps that
//   collect them (see DIAG in linear.wgsl).
// Offsets in Op are in vec4 units of the buffer they index.

struct Step {
  lr: f32,
  rows: u32,        // examples in this pass: the batch, or one evaluation chunk
  data: u32,        // index in D of this pass's contexts
  loss: u32,        // index in Host where this pass writes its loss
  mode: u32,        // MODE_TRAIN or MODE_EVAL
  stats_layer: u32, // in MODE_EVAL: the layer that measures its batch statistics, or NONE
  diag: u32,        // DIAG kernels: index in Host of this step's moments, or NONE
  snap: u32,        // DIAG kernels: index in Host of this step's gradients snapshot, or NONE
}

const MODE_TRAIN = 0u;
const MODE_EVAL = 1u;
const NONE = 0xffffffffu;

const HAS_BIAS = 1u;
const HAS_BN = 2u;
const HAS_TANH = 4u;

// One layer (or the embedding), as the kernels see it. Unused fields are 0.
struct Op {
  index: u32,     // layer number (for Step.stats_layer)
  flags: u32,     // HAS_BIAS | HAS_BN | HAS_TANH
  n_in: u32,      // input features
  n_out: u32,     // output features
  in_q: u32,      // input row length in vec4 (n_in rounded up, / 4)
  out_q: u32,     // output row length in vec4
  x: u32,         // In: input [rows][in_q]
  h: u32,         // Out: linear output before BatchNorm [rows][out_q]
  t: u32,         // Out: layer output [rows][out_q] (after BatchNorm and tanh, if any)
  dh: u32,        // Gin: gradient of the loss w.r.t. h [rows][out_q]
  stats: u32,     // Out: batch mean [out_q], then unbiased batch variance [out_q]
  w: u32,         // P: the embedding table, for the embedding op (a layer's weight is W)
  bias: u32,      // P: [out_q]
  gamma: u32,     // P: [out_q]
  beta: u32,      // P: [out_q]
  run_mean: u32,  // P: [out_q]
  run_var: u32,   // P: [out_q]
  dw_groups: u32, // linear_backward: workgroups computing dW (the rest compute dx)
  momentum: f32,  // BatchNorm running-statistics momentum
  eps: f32,       // BatchNorm epsilon
  embd: u32,      // embedding: dimensions per token
  block: u32,     // embedding: tokens per context
  vocab: u32,     // embedding: table rows
  diag: u32,      // DIAG: offset of this op's partial moments in a step's moments
  snap_w: u32,    // DIAG: offset of this op's weight gradient [n_in][n_out] in a snapshot
  snap_dt: u32,   // DIAG: offset of the gradient w.r.t. this op's output t [rows][n_out], or NONE
}

// The uniform windows hold 64 KiB, the most a uniform binding may (maxUniformBufferBindingSize).
const WINDOW = 4096u;

@group(0) @binding(0) var<uniform> step: Step;
@group(1) @binding(0) var<uniform> op: Op;
@group(1) @binding(1) var<uniform> prev: Op; // linear_backward: the layer feeding this one
@group(1) @binding(2) var<storage, read> P: array<vec4f>;
@group(1) @binding(3) var<storage, read_write> Pn: array<vec4f>;
@group(1) @binding(4) var<storage, read> In: array<vec4f>;
@group(1) @binding(5) var<storage, read_write> Out: array<vec4f>;
@group(1) @binding(6) var<storage, read> Gin: array<vec4f>;
@group(1) @binding(7) var<storage, read_write> Gout: array<vec4f>;
@group(1) @binding(8) var<storage, read> D: array<i32>;
@group(1) @binding(9) var<storage, read_write> Host: array<f32>;
@group(1) @binding(10) var<uniform> InWindow: array<vec4f, WINDOW>;  // In from op.x
@group(1) @binding(11) var<uniform> GinWindow: array<vec4f, WINDOW>; // Gin from op.dh
@group(1) @binding(12) var W: texture_2d<f32>; // the layer's weight: row k, texel q = W[k][4q..4q+3]
@group(1) @binding(13) var Wn: texture_storage_2d<rgba32float, write>;

// Scalar access to the vec4 buffers, for the embedding's unaligned rows. `i` counts floats.
fn read_p(i: u32) -> f32 {
  return P[i >> 2u][i & 3u];
}
