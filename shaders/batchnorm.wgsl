// BatchNorm1d (CPU reference: src/cpu/batchnorm.ts), statistics per feature over the batch.
//
//   mean = sum_b h / B,   var = sum_b (h - mean)^2 / (B - 1)   (unbiased, as makemore's)
//   xhat = (h - mean) / sqrt(var + eps),   y = gamma * xhat + beta
//   running = (1 - momentum) * running + momentum * batch   (mean and variance)
//   backward, with dxhat = dy * gamma:
//   dh = gamma / sqrt(var + eps) * (dy - sum_b dy / B - xhat * sum_b (dy * xhat) / (B - 1))
//   dgamma = sum_b dy * xhat,   dbeta = sum_b dy
//
// These are the pieces; the loops live in the kernels that own whole columns of the batch and
// can therefore reduce over it without another dispatch: the forward runs as the epilogue of
// linear_forward, the backward as the epilogue of the next layer's linear_backward (which
// produces dy), and the output layer's in cross_entropy (linear.wgsl, cross_entropy.wgsl).

fn bn_invstd(variance: vec4f, eps: f32) -> vec4f {
  return inverseSqrt(variance + eps);
}

// Unbiased variance from a sum of squared deviations. A single row (possible in the last
// evaluation chunk of a split) has no spread to measure: report 0 rather than 0 / 0.
fn bn_variance(sum_sq: vec4f, rows: u32) -> vec4f {
  return sum_sq / f32(max(rows, 2u) - 1u);
}

fn bn_forward(h: vec4f, mean: vec4f, invstd: vec4f, gamma: vec4f, beta: vec4f) -> vec4f {
  return gamma * (h - mean) * invstd + beta;
}

fn bn_running(running: vec4f, batch: vec4f, momentum: f32) -> vec4f {
  return mix(running, batch, momentum);
}

// dh for one value, given the column sums sum_dy = sum_b dy and sum_dy_xhat = sum_b dy * xhat.
fn bn_backward(dy: vec4f, xhat: vec4f, invstd: vec4f, gamma: vec4f, sum_dy: vec4f,
               sum_dy_xhat: vec4f, rows: u32) -> vec4f {
  let b = f32(rows);
  return gamma * invstd * (dy - sum_dy / b - xhat * sum_dy_xhat / (b - 1.0));
}
