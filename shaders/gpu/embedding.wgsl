// Embedding backward, the `gpu` kernel family (src/gpu/gpu.ts; CPU reference:
// src/cpu/embedding.ts; the forward is shaders/embedding.wgsl's, already one invocation per
// position). A table element's gradient is the sum over the positions holding its token: one
// workgroup of EMB_WG invocations per token and vec4 of dimensions gathers them in parallel,
// each invocation every EMB_WG-th position, and adds its share up in workgroup memory. No
// atomics (WGSL has no float ones), and the same sum every time: deterministic.

override DIAG: bool = false;

var<workgroup> grads: array<vec4f, EMB_WG>;

@compute @workgroup_size(EMB_WG)
fn embedding_backward(@builtin(workgroup_id) wg: vec3u,
                      @builtin(local_invocation_index) li: u32) {
  enter(wg.z);
  let token = wg.x;
  let dims = 4u * wg.y + vec4u(0u, 1u, 2u, 3u);
  let last = vec4u(op.embd - 1u);
  let positions = step.rows * op.block;
  var g = vec4f(0.0);
  for (var p = li; p < positions; p += EMB_WG) {
    if (u32(D[rD + step.data + p]) == token) {
      // The gradient of token p (row p / group, its token p % group), 4 dimensions of dx.
      let i = 4u * (p / op.group) * op.out_q + (p % op.group) * op.embd + min(dims, last);
      g += vec4f(Gin[rG + op.dh + (i.x >> 2u)][i.x & 3u], Gin[rG + op.dh + (i.y >> 2u)][i.y & 3u],
                 Gin[rG + op.dh + (i.z >> 2u)][i.z & 3u], Gin[rG + op.dh + (i.w >> 2u)][i.w & 3u]);
    }
  }
  grads[li] = g;
  workgroupBarrier();
  for (var stride = EMB_WG / 2u; stride > 0u; stride /= 2u) {
    if (li < stride) {
      grads[li] += grads[li + stride];
    }
    workgroupBarrier();
  }
  if (li != 0u) {
    return;
  }
  sgd_embedding(token, wg.y, select(vec4f(0.0), grads[0], dims < vec4u(op.embd)), DIAG);
}
