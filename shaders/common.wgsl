// What every kernel shares. src/gpu/shaders.ts compiles each kernel file after the declarations
// generated from src/gpu/abi.ts (the Step and Op structs, MODE_*, HAS_*, NONE, WINDOW, the kernel
// family's tile sizes, and the bindings named below), then this file, then the op libraries.
//
// Memory model of a training step (see src/gpu/model.ts and src/gpu/plan.ts):
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
//
// Every store into a vec4 buffer writes a whole vec4, owned by the one invocation that writes
// it: WGSL lets a store to one component access the whole vector, and Metal compiles it as a
// read-modify-write of the float4, so two invocations writing different components of one
// vec4 would lose updates at random (tests/shader_lint_test.ts refuses such stores).
//
// Replicas: a pass runs every replica of a group in the same dispatch, replica r in the
// workgroups of z = r (src/gpu/plan.ts). Each kernel begins with enter(its workgroup's z), and
// from then on indexes every buffer from that replica's part of it (the strides are in Step):
// its parameters, activations, gradients, token ids and what it reports are its own, and its
// weight is layer `rep` of the texture arrays W and Wn. Nothing is shared between replicas but
// the Op uniforms (one shape) and, in evaluation, the examples (rep_data = 0).
var<private> rep: u32; // this replica
var<private> rP: u32; // where its part of P and Pn starts (vec4)
var<private> rA: u32; // ... of In and Out (vec4)
var<private> rG: u32; // ... of Gin and Gout (vec4)
var<private> rD: u32; // ... of D (ints)
var<private> rH: u32; // ... of Host (floats)
var<private> lr: f32; // its learning rate at this step
var<private> momentum: f32; // its BatchNorm momentum

fn enter(replica: u32) {
  rep = replica;
  rP = replica * step.rep_p;
  rA = replica * step.rep_act;
  rG = replica * step.rep_grad;
  rD = replica * step.rep_data;
  rH = replica * step.rep_host;
  lr = replicas[replica].lr;
  momentum = replicas[replica].momentum;
}
