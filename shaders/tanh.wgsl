// tanh (CPU reference: src/cpu/tanh.ts). Applied element-wise inside the linear kernels'
// epilogues (linear.wgsl), where the values are already in registers.

fn tanh_forward(y: vec4f) -> vec4f {
  return tanh(y);
}

// d tanh(y)/dy = 1 - tanh(y)^2, from the forward output t, so y need not be kept.
fn tanh_backward(dt: vec4f, t: vec4f) -> vec4f {
  return dt * (1.0 - t * t);
}
