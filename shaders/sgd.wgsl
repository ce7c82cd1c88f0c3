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
  return param - step.lr * grad;
}

fn sgd1(param: f32, grad: f32) -> f32 {
  return param - step.lr * grad;
}

// The update of element f of the embedding table (both families' embedding_backward end with
// it, op being the embedding's). `diag` (the kernel's DIAG) also writes the element's share of
// the step's moments (see linear.wgsl) and, in a snapshot step, its gradient.
fn sgd_embedding_element(f: u32, grad: f32, diag: bool) {
  let at = 4u * op.w + f;
  let updated = sgd1(read_p(at), grad);
  Pn[at >> 2u][at & 3u] = updated;
  if (diag) {
    if (step.diag != NONE) {
      let m = step.diag + op.diag + 4u * f;
      Host[m] = grad;
      Host[m + 1u] = grad * grad;
      Host[m + 2u] = updated;
      Host[m + 3u] = updated * updated;
    }
    if (step.snap != NONE) {
      Host[step.snap + op.snap_w + f] = grad;
    }
  }
}
