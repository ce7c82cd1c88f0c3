// The previous layer's activation and BatchNorm backward, in a dispatch of its own: where a
// FlattenConsecutive lies between two blocks (PREV_APART), the next layer's input gradient owns
// columns of the joined rows, while the BatchNorm's sums run over the columns of the layer's own,
// so it cannot be fused there (both families; the formulas: batchnorm.wgsl, activation.wgsl).
//
// Bound with the next layer's op: the layer's values in In, its fields in `prev`, its gradient in
// Gout at prev.dh (where the next layer's input gradient left dt). One workgroup of BN_WG
// invocations per vec4 of the layer's features, each taking every BN_WG-th row; the column sums
// meet in workgroup memory.

var<workgroup> bn_sums: array<vec4f, BN_WG>;

// The sum of v over the workgroup, returned to every invocation.
fn bn_total(v: vec4f, li: u32) -> vec4f {
  bn_sums[li] = v;
  workgroupBarrier();
  for (var stride = BN_WG / 2u; stride > 0u; stride /= 2u) {
    if (li < stride) {
      bn_sums[li] += bn_sums[li + stride];
    }
    workgroupBarrier();
  }
  let total = bn_sums[0];
  workgroupBarrier();
  return total;
}

// Grid: (prev.out_q).
@compute @workgroup_size(BN_WG)
fn batchnorm_backward(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  enter(wg.z);
  let q = wg.x;
  let rows = step.rows * prev.positions;
  let mean = In[rA + prev.stats + q];
  let invstd = bn_invstd(In[rA + prev.stats + prev.out_q + q], prev.eps);
  var sum_dy = vec4f(0.0);
  var sum_dy_xhat = vec4f(0.0);
  for (var r = li; r < rows; r += BN_WG) {
    let at = r * prev.out_q + q;
    let dy = act_backward(Gout[rG + prev.dh + at], In[rA + prev.t + at], prev.flags);
    sum_dy += dy;
    sum_dy_xhat += dy * (In[rA + prev.h + at] - mean) * invstd;
    Gout[rG + prev.dh + at] = dy; // this invocation reads it back below
  }
  sum_dy = bn_total(sum_dy, li);
  sum_dy_xhat = bn_total(sum_dy_xhat, li);
  let gamma = P[rP + prev.gamma + q];
  for (var r = li; r < rows; r += BN_WG) {
    let at = r * prev.out_q + q;
    let xhat = (In[rA + prev.h + at] - mean) * invstd;
    Gout[rG + prev.dh + at] = bn_backward(Gout[rG + prev.dh + at], xhat, invstd, gamma, sum_dy,
                                     sum_dy_xhat, rows);
  }
  if (li == 0u) {
    Pn[rP + prev.gamma + q] = sgd(gamma, sum_dy_xhat);
    Pn[rP + prev.beta + q] = sgd(P[rP + prev.beta + q], sum_dy);
  }
}
