// Embedding (CPU reference: src/cpu/embedding.ts): row p of the context matrix [rows][block]
// looks up its token's row of the table C [vocab][embd]; the lookups of a context, side by
// side, are the first layer's input x [rows][block * embd] (padded to a multiple of 4).
//
// The gradient of a table row is the sum of the gradients of every position that looked it
// up: a scatter-add, which WGSL could only do with float atomics (it has none) and in an
// arbitrary order. Instead each table element is owned by one invocation, which gathers the
// positions holding its token in a fixed order: deterministic, and the SGD update of the
// element follows at once (sgd.wgsl). The positions are visited in the CPU reference's order.
//
override DIAG: bool = false;

// The embedding is "layer -1": its output x is in Out, its gradient (from the first layer's
// backward) in Gin. The table's rows are op.embd_q vec4 apart (padded, src/gpu/layout.ts).

// An output row joins op.group consecutive tokens of an example (a FlattenConsecutive right
// after the embedding; the whole context for makemore part 3's MLP): row r holds tokens
// r * group.. of the batch's flat [rows][block] contexts, side by side.
//
// One invocation per vec4 of x: row o / out_q, floats 4 (o % out_q).. of it, each the
// dimension e of the row's token t. The invocation owns the vec4 it stores (the tokens' embd
// floats are not vec4-aligned: a store per float from each token's invocation would share
// vec4s between invocations, see common.wgsl).
@compute @workgroup_size(EMBED_WG)
fn embedding_forward(@builtin(global_invocation_id) gid: vec3u) {
  enter(gid.z);
  let o = gid.x;
  if (o >= step.rows * op.positions * op.out_q) {
    return;
  }
  let r = o / op.out_q;
  var x = vec4f(0.0); // the row's padding stays 0
  for (var c = 0u; c < 4u; c++) {
    let f = 4u * (o % op.out_q) + c;
    if (f < op.group * op.embd) {
      let id = u32(D[rD + step.data + r * op.group + f / op.embd]);
      let e = f % op.embd;
      x[c] = P[rP + op.w + id * op.embd_q + e / 4u][e % 4u];
    }
  }
  Out[rA + op.t + o] = x;
}

// Lanes are tokens: the EMBED_TOKENS invocations of a workgroup own as many tokens' vec4 of
// dimensions 4 * wg.y.., so at each position of the batch they all read the same token id and
// the same gradient, which then comes through the uniform window (WINDOWS, as in linear.wgsl)
// and is added where the token matches.
override WINDOWS: bool = false;

@compute @workgroup_size(EMBED_TOKENS)
fn embedding_backward(@builtin(global_invocation_id) gid: vec3u) {
  enter(gid.z);
  let token = gid.x;
  let e0 = 4u * gid.y; // the first of this invocation's 4 dimensions
  let dims = e0 + vec4u(0u, 1u, 2u, 3u);
  let real = dims < vec4u(op.embd);
  let last = op.embd - 1u;
  var grad = vec4f(0.0);
  for (var r = 0u; r < step.rows * op.positions; r++) {
    for (var t = 0u; t < op.group; t++) {
      let id = u32(D[rD + step.data + r * op.group + t]);
      // The gradient of token t of row r, dimensions e0..e0+3: floats of row r of dx.
      let i = 4u * r * op.out_q + t * op.embd + min(dims, vec4u(last));
      var g: vec4f;
      for (var c = 0u; c < 4u; c++) {
        g[c] = select(Gin[rG + op.dh + (i[c] >> 2u)][i[c] & 3u], GinWindow[i[c] >> 2u][i[c] & 3u], WINDOWS);
      }
      grad += select(vec4f(0.0), g, vec4<bool>(id == token));
    }
  }
  if (token < op.vocab) {
    sgd_embedding(token, gid.y, select(vec4f(0.0), grad, real), DIAG);
  }
}
