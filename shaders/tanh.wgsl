// tanh (CPU reference: src/cpu/tanh.ts). Applied element-wise inside the linear kernels'
// epilogues (linear.wgsl), where the values are already in registers.

// Metal computes tanh(y) as (e^2y - 1) / (e^2y + 1), which is inf / inf = NaN once e^2y
// overflows, for |y| above ~44 (apache/tvm#16438, huggingface/candle#2475); the lecture's
// badly initialized networks reach such inputs. tanh(15) is 1 in float32 (1 - tanh(15) =
// 1.9e-13, far below half an ulp of 1), so bounding the argument there changes no value and
// keeps the formula finite: e^30 ~ 1.1e13, whose neighbours +-1 round to it, giving exactly 1.
const TANH_BOUND = 15.0;

fn tanh_forward(y: vec4f) -> vec4f {
  return tanh(clamp(y, vec4f(-TANH_BOUND), vec4f(TANH_BOUND)));
}

// d tanh(y)/dy = 1 - tanh(y)^2, from the forward output t, so y need not be kept.
fn tanh_backward(dt: vec4f, t: vec4f) -> vec4f {
  return dt * (1.0 - t * t);
}
