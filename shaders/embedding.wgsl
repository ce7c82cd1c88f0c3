// Embedding (CPU reference: src/cpu/embedding.ts): row p of the context matrix [rows][block]
// looks up its token's row of the table C [vocab][embd]; the lookups of a context, side by
// side, are the first layer's input x [rows][block * embd] (padded to a multiple of 4).
//
// The gradient of a table row is the sum of the gradients of every position that looked it
// up: a scatter-add, which WGSL could only do with float atomics (it has none) and in an
// arbitrary order. Instead each table element is owned by one invocation, which gathers the
// positions holding its token in a fixed order: deterministic, and the SGD update of the
// element follows at once (sgd.wgsl).
//
override DIAG: bool = false;

// Rows of embd floats are not vec4-aligned, so both kernels move single floats. The embedding
// is "layer -1": its output x is in Out, its gradient (from the first layer's backward) in Gin.

@compute @workgroup_size(64)
fn embedding_forward(@builtin(global_invocation_id) gid: vec3u) {
  let p = gid.x; // position: context row p / block, token p % block
  if (p >= step.rows * op.block) {
    return;
  }
  let id = u32(D[step.data + p]);
  let src = 4u * op.w + id * op.embd;
  let dst = 4u * (op.t + (p / op.block) * op.out_q) + (p % op.block) * op.embd;
  for (var e = 0u; e < op.embd; e++) {
    let i = dst + e;
    Out[i >> 2u][i & 3u] = read_p(src + e);
  }
}

@compute @workgroup_size(64)
fn embedding_backward(@builtin(global_invocation_id) gid: vec3u) {
  let f = gid.x; // table element: token f / embd, dimension f % embd
  if (f >= op.vocab * op.embd) {
    return;
  }
  let token = f / op.embd;
  let e = f % op.embd;
  var grad = 0.0;
  for (var r = 0u; r < step.rows; r++) {
    for (var t = 0u; t < op.block; t++) {
      if (u32(D[step.data + r * op.block + t]) == token) {
        let i = 4u * (op.dh + r * op.out_q) + t * op.embd + e;
        grad += Gin[i >> 2u][i & 3u];
      }
    }
  }
  let at = 4u * op.w + f;
  let updated = sgd1(read_p(at), grad);
  Pn[at >> 2u][at & 3u] = updated;
  if (DIAG) { // see linear.wgsl: this element's share of the moments, and its gradient
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
