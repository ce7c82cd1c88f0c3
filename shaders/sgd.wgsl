// Plain SGD (CPU reference: src/cpu/sgd.ts): p' = p - lr * grad.
//
// There is no separate SGD pass over the parameters. On llvmpipe every load and store costs far
// more than the arithmetic, and a separate pass would store each gradient, then load it back
// with its parameter. Instead the kernel that finishes a gradient applies this update while
// the gradient is still in registers, reading the parameter from P (a weight from W) and
// writing the result to Pn (Wn), a second copy of the parameters (see common.wgsl): the step's
// other kernels keep reading the old values, as the CPU reference does, so no kernel races
// with an update. (linear.wgsl writes it out inline where a call would cost registers.)

fn sgd(param: vec4f, grad: vec4f) -> vec4f {
  return param - lr * grad;
}

// The update of one vec4 of the embedding table: dimensions 4 e4..4 e4 + 3 of `token`'s row
// (rows are padded to whole vec4s, src/gpu/layout.ts, so the invocation that calls this owns
// the vec4 it writes; `grad` is 0 in the padding, which stays 0). Both families'
// embedding_backward end with it, op being the embedding's. `diag` (the kernel's DIAG) also
// writes each real element's share of the step's moments (see linear.wgsl) and, in a snapshot
// step, its gradient, at the element's index in the CPU layout.
fn sgd_embedding(token: u32, e4: u32, grad: vec4f, diag: bool) {
  let at = op.w + token * op.embd_q + e4;
  let updated = sgd(P[rP + at], grad);
  Pn[rP + at] = updated;
  if (!diag) {
    return;
  }
  for (var c = 0u; c < 4u; c++) {
    let e = 4u * e4 + c;
    let f = token * op.embd + e;
    if (e < op.embd && step.diag != NONE) {
      let m = step.diag + op.diag + 4u * f;
      Host[rH + m] = grad[c];
      Host[rH + m + 1u] = grad[c] * grad[c];
      Host[rH + m + 2u] = updated[c];
      Host[rH + m + 3u] = updated[c] * updated[c];
    }
    if (e < op.embd && step.snap != NONE) {
      Host[rH + step.snap + op.snap_w + f] = grad[c];
    }
  }
}
