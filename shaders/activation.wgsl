// The activations a block may end in (src/layers.ts; CPU references: src/cpu/tanh.ts,
// src/cpu/relu.ts), chosen by the op's flags: tanh (tanh.wgsl), ReLU, or none. The linear kernels
// apply them in their epilogues, where the values are already in registers.

fn relu_forward(y: vec4f) -> vec4f {
  return max(y, vec4f(0.0));
}

// d relu(y)/dy from the output t: 1 where t > 0 (exactly where y > 0), else 0.
fn relu_backward(dt: vec4f, t: vec4f) -> vec4f {
  return select(vec4f(0.0), dt, t > vec4f(0.0));
}

fn act_forward(y: vec4f, flags: u32) -> vec4f {
  if ((flags & HAS_TANH) != 0u) {
    return tanh_forward(y);
  }
  if ((flags & HAS_RELU) != 0u) {
    return relu_forward(y);
  }
  return y;
}

fn act_backward(dt: vec4f, t: vec4f, flags: u32) -> vec4f {
  if ((flags & HAS_TANH) != 0u) {
    return tanh_backward(dt, t);
  }
  if ((flags & HAS_RELU) != 0u) {
    return relu_backward(dt, t);
  }
  return dt;
}

fn has_act(flags: u32) -> bool {
  return (flags & HAS_ACT) != 0u;
}
