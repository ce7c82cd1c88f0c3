// BatchNorm1d, the `gpu` kernel family (src/gpu/gpu.ts; the formulas: shaders/batchnorm.wgsl;
// CPU reference: src/cpu/batchnorm.ts), each column's sums over the batch reduced in workgroup
// memory: one workgroup of BN_WG invocations per vec4 of features, each invocation taking every
// BN_WG-th row. The forward (training only: in evaluation gpu/linear.wgsl applies the running
// statistics) normalizes h into t with tanh fused; the backward turns the gradient w.r.t. t
// into the one w.r.t. h (through tanh first, when the layer has one) and updates gamma and beta.

var<workgroup> sums: array<vec4f, BN_WG>;

// The sum of v over the workgroup, returned to every invocation.
fn workgroup_total(v: vec4f, li: u32) -> vec4f {
  sums[li] = v;
  workgroupBarrier();
  for (var stride = BN_WG / 2u; stride > 0u; stride /= 2u) {
    if (li < stride) {
      sums[li] += sums[li + stride];
    }
    workgroupBarrier();
  }
  let total = sums[0];
  workgroupBarrier();
  return total;
}

// Forward over the batch: grid (out_q). Statistics in two passes, for accuracy.
@compute @workgroup_size(BN_WG)
fn batchnorm_forward(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let q = wg.x;
  let rows = step.rows;
  var s = vec4f(0.0);
  for (var r = li; r < rows; r += BN_WG) {
    s += Out[op.h + r * op.out_q + q];
  }
  let mean = workgroup_total(s, li) / f32(rows);
  var ss = vec4f(0.0);
  for (var r = li; r < rows; r += BN_WG) {
    let d = Out[op.h + r * op.out_q + q] - mean;
    ss += d * d;
  }
  let variance = bn_variance(workgroup_total(ss, li), rows);
  if (li == 0u) {
    Out[op.stats + q] = mean;
    Out[op.stats + op.out_q + q] = variance;
    Pn[op.run_mean + q] = bn_running(P[op.run_mean + q], mean, op.momentum);
    Pn[op.run_var + q] = bn_running(P[op.run_var + q], variance, op.momentum);
  }
  let invstd = bn_invstd(variance, op.eps);
  let gamma = P[op.gamma + q];
  let beta = P[op.beta + q];
  let tanh_out = (op.flags & HAS_TANH) != 0u;
  for (var r = li; r < rows; r += BN_WG) {
    let at = r * op.out_q + q;
    let y = bn_forward(Out[op.h + at], mean, invstd, gamma, beta);
    Out[op.t + at] = select(y, tanh_forward(y), tanh_out);
  }
}

// Which layer batchnorm_backward acts on: with OUT, the output layer (bound with the loss op:
// its values in Out, its fields in `op`); else the previous layer (bound with the next layer's
// op: its values in In, its fields in `prev`). Its gradient is in Gout either way.
override OUT: bool = false;

fn layer_value(i: u32) -> vec4f {
  if (OUT) {
    return Out[i];
  }
  return In[i];
}

// Backward: grid (out_q of the layer).
@compute @workgroup_size(BN_WG)
fn batchnorm_backward(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  var L: Op;
  if (OUT) {
    L = op;
  } else {
    L = prev;
  }
  let q = wg.x;
  let rows = step.rows;
  let tanh_in = (L.flags & HAS_TANH) != 0u;
  let mean = layer_value(L.stats + q);
  let invstd = bn_invstd(layer_value(L.stats + L.out_q + q), L.eps);
  var sum_dy = vec4f(0.0);
  var sum_dy_xhat = vec4f(0.0);
  for (var r = li; r < rows; r += BN_WG) {
    let at = r * L.out_q + q;
    var dy = Gout[L.dh + at];
    if (tanh_in) {
      dy = tanh_backward(dy, layer_value(L.t + at));
    }
    sum_dy += dy;
    sum_dy_xhat += dy * (layer_value(L.h + at) - mean) * invstd;
    Gout[L.dh + at] = dy; // this invocation reads it back below
  }
  sum_dy = workgroup_total(sum_dy, li);
  sum_dy_xhat = workgroup_total(sum_dy_xhat, li);
  let gamma = P[L.gamma + q];
  for (var r = li; r < rows; r += BN_WG) {
    let at = r * L.out_q + q;
    let xhat = (layer_value(L.h + at) - mean) * invstd;
    Gout[L.dh + at] = bn_backward(Gout[L.dh + at], xhat, invstd, gamma, sum_dy, sum_dy_xhat,
                                  rows);
  }
  if (li == 0u) {
    Pn[L.gamma + q] = sgd(gamma, sum_dy_xhat);
    Pn[L.beta + q] = sgd(P[L.beta + q], sum_dy);
  }
}
