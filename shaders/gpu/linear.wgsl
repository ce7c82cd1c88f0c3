// Linear layer, the `gpu` kernel family (src/gpu/gpu.ts; CPU reference: src/cpu/linear.ts):
// h = x @ W (+ b), then dW = x^T @ dh (with SGD applied to W) and dx = dh @ W^T.
//
// Shaped for GPUs, where a dispatch costs a few microseconds and thousands of invocations run
// at once: every output vec4 (4 adjacent features of one row, or of one row of W) is owned by
// G_SLICES invocations of one workgroup, each summing every G_SLICES-th term, and the partial
// sums meet in workgroup memory. The loops stay short (the 200-wide layers of `seed`: 7
// iterations), and a 32-row batch of them makes 12,800 invocations. BatchNorm, which needs a
// whole column, runs in its own dispatch (gpu/batchnorm.wgsl); tanh and the bias are fused where
// no column sum is needed.
//
// Same memory model as the software family (shaders/common.wgsl): x in In at op.x, h and t in
// Out, dh in Gin, the previous layer's dh in Gout at prev.dh, W the texture, Wn after SGD.

// The tile: G_OUT outputs x G_SLICES slices of their sums = GPU_WG invocations.
var<workgroup> partials: array<vec4f, GPU_WG>;

// The sum of v over the G_SLICES slices of this invocation's output (invocations li % G_OUT).
// Called by every invocation of the workgroup (it holds barriers).
fn slice_total(v: vec4f, li: u32) -> vec4f {
  partials[li] = v;
  workgroupBarrier();
  for (var stride = G_SLICES / 2u; stride > 0u; stride /= 2u) {
    if (li / G_OUT < stride) {
      partials[li] += partials[li + stride * G_OUT];
    }
    workgroupBarrier();
  }
  let total = partials[li % G_OUT];
  workgroupBarrier(); // read before partials is reused
  return total;
}

// The sum of v over the whole workgroup (for the DIAG moments).
fn workgroup_sum(v: vec4f, li: u32) -> vec4f {
  partials[li] = v;
  workgroupBarrier();
  for (var stride = GPU_WG / 2u; stride > 0u; stride /= 2u) {
    if (li < stride) {
      partials[li] += partials[li + stride];
    }
    workgroupBarrier();
  }
  let total = partials[0];
  workgroupBarrier();
  return total;
}

fn sum4(v: vec4f) -> f32 {
  return dot(v, vec4f(1.0));
}

override DIAG: bool = false;

// Forward. Grid: ceil(rows * out_q / G_OUT) workgroups; output o is row o / out_q, vec4
// o % out_q. Without BatchNorm the epilogue adds the bias and applies tanh; with it, h is kept
// for batchnorm_forward, and in evaluation the running statistics are applied here too.
@compute @workgroup_size(GPU_WG)
fn matmul_forward(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let outputs = step.rows * op.out_q;
  let o = wg.x * G_OUT + li % G_OUT;
  let slice = li / G_OUT;
  let oc = min(o, outputs - 1u);
  let r = oc / op.out_q;
  let q = oc % op.out_q;
  var acc = vec4f(0.0);
  for (var k = slice; k < op.in_q; k += G_SLICES) {
    let x = In[op.x + r * op.in_q + k];
    acc += x.x * textureLoad(W, vec2u(q, 4u * k), 0) +
           x.y * textureLoad(W, vec2u(q, 4u * k + 1u), 0) +
           x.z * textureLoad(W, vec2u(q, 4u * k + 2u), 0) +
           x.w * textureLoad(W, vec2u(q, 4u * k + 3u), 0);
  }
  var h = slice_total(acc, li);
  if (o >= outputs || slice != 0u) {
    return;
  }
  if ((op.flags & HAS_BIAS) != 0u) {
    h += P[op.bias + q];
  }
  let at = r * op.out_q + q;
  let tanh_out = (op.flags & HAS_TANH) != 0u;
  if ((op.flags & HAS_BN) == 0u) {
    Out[op.t + at] = select(h, tanh_forward(h), tanh_out);
    return;
  }
  Out[op.h + at] = h;
  if (step.mode == MODE_EVAL) {
    let invstd = bn_invstd(P[op.run_var + q], op.eps);
    let y = bn_forward(h, P[op.run_mean + q], invstd, P[op.gamma + q], P[op.beta + q]);
    Out[op.t + at] = select(y, tanh_forward(y), tanh_out);
  }
}

// Backward: workgroups below op.dw_groups compute dW (and the bias gradient), the others dx.
@compute @workgroup_size(GPU_WG)
fn matmul_backward(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  if (wg.x < op.dw_groups) {
    weight_gradient(wg.x, li);
  } else {
    input_gradient(wg.x - op.dw_groups, li);
  }
}

// dW[k][4q..4q+3] = sum over rows of x[row][k] * dh[row][q], then W' = W - lr dW into Wn. The
// outputs are W's 4 in_q rows, then one more: the bias gradient (x = 1).
fn weight_gradient(tile: u32, li: u32) {
  let k_rows = 4u * op.in_q + 1u;
  let outputs = k_rows * op.out_q;
  let o = tile * G_OUT + li % G_OUT;
  let slice = li / G_OUT;
  let oc = min(o, outputs - 1u);
  let k = oc / op.out_q;
  let q = oc % op.out_q;
  let bias_row = k == 4u * op.in_q;
  let xq = min(k / 4u, op.in_q - 1u);
  var g = vec4f(0.0);
  for (var b = slice; b < step.rows; b += G_SLICES) {
    let x = select(In[op.x + b * op.in_q + xq][k % 4u], 1.0, bias_row);
    g += x * Gin[op.dh + b * op.out_q + q];
  }
  g = slice_total(g, li);
  let owner = o < outputs && slice == 0u;
  var updated = vec4f(0.0);
  if (owner) {
    if (bias_row) {
      if ((op.flags & HAS_BIAS) != 0u) {
        Pn[op.bias + q] = sgd(P[op.bias + q], g);
      }
    } else {
      updated = textureLoad(W, vec2u(q, k), 0) - step.lr * g;
      textureStore(Wn, vec2u(q, k), updated);
      if (DIAG && step.snap != NONE) {
        let at = step.snap + op.snap_w + 4u * (k * op.out_q + q);
        Host[at] = g.x;
        Host[at + 1u] = g.y;
        Host[at + 2u] = g.z;
        Host[at + 3u] = g.w;
      }
    }
  }
  if (DIAG) {
    // This workgroup's share of the moments of the real weights (padding and the bias left
    // out): sum g, sum g^2, sum w', sum w'^2.
    let counted = (4u * q + vec4u(0u, 1u, 2u, 3u) < vec4u(op.n_out)) &
      vec4<bool>(owner && k < op.n_in);
    let gc = select(vec4f(0.0), g, counted);
    let wc = select(vec4f(0.0), updated, counted);
    let m = workgroup_sum(vec4f(sum4(gc), sum4(gc * gc), sum4(wc), sum4(wc * wc)), li);
    if (li == 0u && step.diag != NONE) {
      let at = step.diag + op.diag + 4u * tile;
      Host[at] = m.x;
      Host[at + 1u] = m.y;
      Host[at + 2u] = m.z;
      Host[at + 3u] = m.w;
    }
  }
}

// dx[row][4i..4i+3] = sum over n of dh[row][n] . W[4i + j][n], into Gout at prev.dh: the
// gradient w.r.t. the previous layer's output t. Without a BatchNorm there, its tanh backward
// is fused here (with one, gpu/batchnorm.wgsl does both).
fn input_gradient(tile: u32, li: u32) {
  let outputs = step.rows * op.in_q;
  let o = tile * G_OUT + li % G_OUT;
  let slice = li / G_OUT;
  let oc = min(o, outputs - 1u);
  let r = oc / op.in_q;
  let i = oc % op.in_q;
  var acc = vec4f(0.0);
  for (var n = slice; n < op.out_q; n += G_SLICES) {
    let d = Gin[op.dh + r * op.out_q + n];
    acc += vec4f(dot(textureLoad(W, vec2u(n, 4u * i), 0), d),
                 dot(textureLoad(W, vec2u(n, 4u * i + 1u), 0), d),
                 dot(textureLoad(W, vec2u(n, 4u * i + 2u), 0), d),
                 dot(textureLoad(W, vec2u(n, 4u * i + 3u), 0), d));
  }
  let dt = slice_total(acc, li);
  if (o >= outputs || slice != 0u) {
    return;
  }
  let at = r * op.in_q + i;
  if (DIAG && step.snap != NONE && prev.snap_dt != NONE) {
    let s = step.snap + prev.snap_dt + 4u * at; // padded [rows][in_q]
    Host[s] = dt.x;
    Host[s + 1u] = dt.y;
    Host[s + 2u] = dt.z;
    Host[s + 3u] = dt.w;
  }
  let fuse_tanh = (prev.flags & HAS_TANH) != 0u && (prev.flags & HAS_BN) == 0u;
  // prev.t is this layer's input, op.x, in In.
  Gout[prev.dh + at] = select(dt, tanh_backward(dt, In[prev.t + at]), fuse_tanh);
}
