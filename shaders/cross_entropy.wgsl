// Softmax cross-entropy (CPU reference: src/cpu/cross_entropy.ts): the loss is the mean over
// the batch of -log softmax(logits)[target].
//
// One kernel computes the loss and its gradient (softmax - onehot(target)) / B together: both
// need the row's maximum and sum of exponentials, and the gradient of the fused pair is that
// simple difference, where going through the softmax's own Jacobian would cost more and lose
// accuracy. When the output layer has a BatchNorm, its backward (and its SGD) runs here too,
// because it needs the whole column of gradients, which this one workgroup has just produced.
//
// Training runs one workgroup, which writes the batch's mean loss to Host[step.loss].
// Evaluation runs an invocation per row, each writing its row's loss to Host[step.loss + row]:
// the host adds them up in float64, in row order, so that a split's loss does not depend on how
// it was cut into passes (a group of replicas cuts it as each replica alone would not, when
// their splits differ in size: src/gpu/passes.ts). It runs with the output
// layer's op: the logits (and h, and the batch statistics) in Out, the gradient it produces
// in Gout.

// CE_WG (invocations per workgroup) comes from the kernel family (src/gpu/software.ts, gpu.ts).
var<workgroup> partial: array<f32, CE_WG>;

// Which of the 4 logits in vec4 n are real rather than padding.
fn real_logits(n: u32) -> vec4<bool> {
  return 4u * n + vec4u(0u, 1u, 2u, 3u) < vec4u(op.n_out);
}

@compute @workgroup_size(CE_WG)
fn cross_entropy(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32,
                 @builtin(num_workgroups) groups: vec3u) {
  enter(wg.z);
  let rows = step.rows;
  let train = step.mode == MODE_TRAIN;
  let targets = step.data + rows * op.block;
  let lowest = vec4f(-3.4e38);
  var loss = 0.0;
  for (var r = wg.x * CE_WG + li; r < rows; r += groups.x * CE_WG) {
    let row = op.t + r * op.out_q;
    var m = lowest;
    for (var n = 0u; n < op.out_q; n++) {
      m = max(m, select(lowest, Out[rA + row + n], real_logits(n)));
    }
    let row_max = max(max(m.x, m.y), max(m.z, m.w)); // subtracted so that exp cannot overflow
    var s = vec4f(0.0);
    for (var n = 0u; n < op.out_q; n++) {
      s += select(vec4f(0.0), exp(Out[rA + row + n] - row_max), real_logits(n));
    }
    let sum = s.x + s.y + s.z + s.w;
    let label = u32(D[rD + targets + r]);
    let row_loss = log(sum) + row_max - Out[rA + row + label / 4u][label % 4u];
    loss += row_loss;
    if (!train) {
      Host[rH + step.loss + r] = row_loss;
    }
    if (train) {
      for (var n = 0u; n < op.out_q; n++) {
        let p = select(vec4f(0.0), exp(Out[rA + row + n] - row_max) / sum, real_logits(n));
        let onehot = select(vec4f(0.0), vec4f(1.0), 4u * n + vec4u(0u, 1u, 2u, 3u) == vec4u(label));
        Gout[rG + op.dh + r * op.out_q + n] = (p - onehot) / f32(rows);
      }
    }
  }

  if (!train) {
    return;
  }
  partial[li] = loss;
  workgroupBarrier();
  for (var half = CE_WG / 2u; half > 0u; half /= 2u) {
    if (li < half) {
      partial[li] += partial[li + half];
    }
    workgroupBarrier();
  }
  if (li == 0u) {
    Host[rH + step.loss] = partial[0] / f32(rows);
  }
  if ((op.flags & HAS_BN) == 0u) {
    return;
  }

  // Output BatchNorm backward, a column (vec4) per invocation: the gradient just written is the
  // gradient w.r.t. the BatchNorm's output; turn it into the gradient w.r.t. its input h.
  // The hazard: a read after write across invocations. Above, invocation li wrote the gradient
  // rows li, li + CE_WG, ...; below, it reads column q of *every* row, most of them written by
  // other invocations. storageBarrier() makes all of the workgroup's storage writes visible to
  // all of it, and waits for every invocation to get here. Without it the reads race the
  // writes: llvmpipe cannot show it (it runs the workgroup's lanes in step), a GPU would.
  storageBarrier();
  for (var q = li; q < op.out_q; q += CE_WG) {
    let mean = Out[rA + op.stats + q];
    let invstd = bn_invstd(Out[rA + op.stats + op.out_q + q], op.eps);
    var sum_dy = vec4f(0.0);
    var sum_dy_xhat = vec4f(0.0);
    for (var r = 0u; r < rows; r++) {
      let dy = Gout[rG + op.dh + r * op.out_q + q];
      sum_dy += dy;
      sum_dy_xhat += dy * (Out[rA + op.h + r * op.out_q + q] - mean) * invstd;
    }
    let gamma = P[rP + op.gamma + q];
    for (var r = 0u; r < rows; r++) {
      let at = r * op.out_q + q;
      let xhat = (Out[rA + op.h + at] - mean) * invstd;
      Gout[rG + op.dh + at] = bn_backward(Gout[rG + op.dh + at], xhat, invstd, gamma, sum_dy, sum_dy_xhat,
                                     rows);
    }
    Pn[rP + op.gamma + q] = sgd(gamma, sum_dy_xhat);
    Pn[rP + op.beta + q] = sgd(P[rP + op.beta + q], sum_dy);
  }
}
