// Linear layer, the `gpu` kernel family (src/gpu/gpu.ts; CPU reference: src/cpu/linear.ts):
// h = x @ W (+ b), then dW = x^T @ dh (with SGD applied to W) and dx = dh @ W^T; with the
// layer's BatchNorm and activation fused into the forward's epilogue, and the previous layer's
// activation
// and BatchNorm backward into the epilogue of dx, as the software family does (linear.wgsl).
//
// Shaped for GPUs, where thousands of invocations run at once: every output vec4 (4 adjacent
// features of one row, or of one row of W) is owned by G_SLICES invocations of one workgroup,
// each summing every G_SLICES-th term, and the partial sums meet in workgroup memory. A
// workgroup of the forward (and of dx) owns one vec4 column for G_ROWS rows at a time; where a
// BatchNorm needs the column's sums over the batch, one workgroup takes every row of it, block
// by block, and the sums are reduced in workgroup memory too. The loops stay short (the
// 200-wide layers of `seed`: 7 iterations a block), and a 32-row batch makes 12,800
// invocations per layer.
//
// Same memory model as the software family (shaders/common.wgsl): x in In at op.x, h and t in
// Out, dh in Gin, the previous layer's values in In at prev.*, its dh in Gout at prev.dh, W the
// texture, Wn after SGD. Every vec4 stored is owned by one invocation: the slice-0 invocation
// of its row (an "owner"), which is also the only one to read it back.

var<workgroup> partials: array<vec4f, GPU_WG>;

// The sum of v over the G_SLICES slices of this invocation's output (the invocations with the
// same li % G_ROWS). Called by every invocation of the workgroup (it holds barriers).
fn slice_total(v: vec4f, li: u32) -> vec4f {
  partials[li] = v;
  workgroupBarrier();
  for (var stride = G_SLICES / 2u; stride > 0u; stride /= 2u) {
    if (li / G_ROWS < stride) {
      partials[li] += partials[li + stride * G_ROWS];
    }
    workgroupBarrier();
  }
  let total = partials[li % G_ROWS];
  workgroupBarrier(); // read before partials is reused
  return total;
}

// The sum of v over the whole workgroup (the DIAG moments).
fn workgroup_sum(v: vec4f, li: u32) -> vec4f {
  partials[li] = v;
  workgroupBarrier();
  for (var stride = GPU_WG / 2u; stride > 0u; stride /= 2u) {
    if (li < stride) {
      partials[li] += partials[li + stride];
    }
    workgroupBarrier();
  }
  let total = partials[0];
  workgroupBarrier();
  return total;
}

// The sum of v over the owners (li < G_ROWS: slice 0), the only invocations that hold values
// of the workgroup's column: log2(G_ROWS) halvings rather than log2(GPU_WG).
fn owners_sum(v: vec4f, li: u32) -> vec4f {
  partials[li] = v;
  workgroupBarrier();
  for (var stride = G_ROWS / 2u; stride > 0u; stride /= 2u) {
    if (li < stride) {
      partials[li] += partials[li + stride];
    }
    workgroupBarrier();
  }
  let total = partials[0];
  workgroupBarrier();
  return total;
}

fn sum4(v: vec4f) -> f32 {
  return dot(v, vec4f(1.0));
}

override DIAG: bool = false;

// Forward. Grid: (out_q, row groups): workgroup (q, g) owns column vec4 q of rows g * G_ROWS..
// in steps of G_ROWS * groups; a single row group when the batch statistics are computed here.
// Without BatchNorm the epilogue adds the bias and applies the activation; with it, h is kept
// for the backward, and t = act(BatchNorm(h)) with the batch's statistics (training) or the running
// ones (evaluation).
@compute @workgroup_size(GPU_WG)
fn matmul_forward(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32,
                  @builtin(num_workgroups) groups: vec3u) {
  enter(wg.z);
  let rows = step.rows * op.positions;
  let q = wg.x;
  let slice = li / G_ROWS;
  let first = wg.y * G_ROWS + li % G_ROWS; // this invocation's first row
  let stride = groups.y * G_ROWS;
  let bn = (op.flags & HAS_BN) != 0u;
  let batch_stats = bn && step.mode == MODE_TRAIN;
  var bias = vec4f(0.0);
  if ((op.flags & HAS_BIAS) != 0u) {
    bias = P[rP + op.bias + q];
  }
  // The row loop's trip count is the same for every invocation: barriers stay uniform.
  var sum = vec4f(0.0);
  for (var r0 = wg.y * G_ROWS; r0 < rows; r0 += stride) {
    let r = r0 + li % G_ROWS;
    let rc = min(r, rows - 1u);
    var acc = vec4f(0.0);
    for (var k = slice; k < op.in_q; k += G_SLICES) {
      let x = In[rA + op.x + rc * op.in_q + k];
      acc += x.x * textureLoad(W, vec2u(q, 4u * k), rep, 0) +
             x.y * textureLoad(W, vec2u(q, 4u * k + 1u), rep, 0) +
             x.z * textureLoad(W, vec2u(q, 4u * k + 2u), rep, 0) +
             x.w * textureLoad(W, vec2u(q, 4u * k + 3u), rep, 0);
    }
    let h = slice_total(acc, li) + bias;
    // (No `continue` for the others: the next iteration's barriers must stay uniform.)
    if (slice == 0u && r < rows) {
      let at = r * op.out_q + q;
      if (!bn) {
        Out[rA + op.t + at] = act_forward(h, op.flags);
      } else {
        Out[rA + op.h + at] = h;
        sum += h;
      }
    }
  }
  if (!bn) {
    return;
  }
  var mean: vec4f;
  var variance: vec4f;
  if (batch_stats) {
    // Two passes, for accuracy: the mean, then the squared deviations from it. The owners
    // re-read only the rows they wrote.
    mean = owners_sum(sum, li) / f32(rows);
    var sum_sq = vec4f(0.0);
    for (var r = first; r < rows; r += stride) {
      if (slice == 0u) {
        let d = Out[rA + op.h + r * op.out_q + q] - mean;
        sum_sq += d * d;
      }
    }
    variance = bn_variance(owners_sum(sum_sq, li), rows);
    if (li == 0u) {
      Out[rA + op.stats + q] = mean;
      Out[rA + op.stats + op.out_q + q] = variance;
      Pn[rP + op.run_mean + q] = bn_running(P[rP + op.run_mean + q], mean, momentum);
      Pn[rP + op.run_var + q] = bn_running(P[rP + op.run_var + q], variance, momentum);
    }
  } else {
    mean = P[rP + op.run_mean + q];
    variance = P[rP + op.run_var + q];
  }
  let invstd = bn_invstd(variance, op.eps);
  let gamma = P[rP + op.gamma + q];
  let beta = P[rP + op.beta + q];
  for (var r = first; r < rows; r += stride) {
    if (slice == 0u) {
      let at = r * op.out_q + q;
      let y = bn_forward(Out[rA + op.h + at], mean, invstd, gamma, beta);
      Out[rA + op.t + at] = act_forward(y, op.flags);
    }
  }
}

// Backward: workgroups below op.dw_groups compute dW (and the bias gradient), the others dx.
@compute @workgroup_size(GPU_WG)
fn matmul_backward(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  enter(wg.z);
  if (wg.x < op.dw_groups) {
    weight_gradient(wg.x, li);
  } else {
    input_gradient(wg.x - op.dw_groups, li);
  }
}

// dW[k][4q..4q+3] = sum over rows of x[row][k] * dh[row][q], then W' = W - lr dW into Wn. The
// outputs are W's 4 in_q rows, then one more: the bias gradient (x = 1). G_ROWS outputs per
// workgroup, each summed over the batch by G_SLICES invocations.
fn weight_gradient(tile: u32, li: u32) {
  let k_rows = 4u * op.in_q + 1u;
  let outputs = k_rows * op.out_q;
  let o = tile * G_ROWS + li % G_ROWS;
  let slice = li / G_ROWS;
  let oc = min(o, outputs - 1u);
  let k = oc / op.out_q;
  let q = oc % op.out_q;
  let bias_row = k == 4u * op.in_q;
  let xq = min(k / 4u, op.in_q - 1u);
  var g = vec4f(0.0);
  for (var b = slice; b < step.rows * op.positions; b += G_SLICES) {
    let x = select(In[rA + op.x + b * op.in_q + xq][k % 4u], 1.0, bias_row);
    g += x * Gin[rG + op.dh + b * op.out_q + q];
  }
  g = slice_total(g, li);
  let owner = o < outputs && slice == 0u;
  var updated = vec4f(0.0);
  if (owner) {
    if (bias_row) {
      if ((op.flags & HAS_BIAS) != 0u) {
        Pn[rP + op.bias + q] = sgd(P[rP + op.bias + q], g);
      }
    } else {
      updated = textureLoad(W, vec2u(q, k), rep, 0) - lr * g;
      textureStore(Wn, vec2u(q, k), rep, updated);
      if (DIAG && step.snap != NONE) {
        let at = step.snap + op.snap_w + 4u * (k * op.out_q + q);
        Host[rH + at] = g.x;
        Host[rH + at + 1u] = g.y;
        Host[rH + at + 2u] = g.z;
        Host[rH + at + 3u] = g.w;
      }
    }
  }
  if (DIAG) {
    // This workgroup's share of the moments of the real weights (padding and the bias left
    // out): sum g, sum g^2, sum w', sum w'^2.
    let counted = (4u * q + vec4u(0u, 1u, 2u, 3u) < vec4u(op.n_out)) &
      vec4<bool>(owner && k < op.n_in);
    let gc = select(vec4f(0.0), g, counted);
    let wc = select(vec4f(0.0), updated, counted);
    let m = workgroup_sum(vec4f(sum4(gc), sum4(gc * gc), sum4(wc), sum4(wc * wc)), li);
    if (li == 0u && step.diag != NONE) {
      let at = step.diag + op.diag + 4u * tile;
      Host[rH + at] = m.x;
      Host[rH + at + 1u] = m.y;
      Host[rH + at + 2u] = m.z;
      Host[rH + at + 3u] = m.w;
    }
  }
}

// dx[row][4i..4i+3] = sum over n of dh[row][n] . W[4i + j][n]: the gradient w.r.t. the previous
// layer's output t, turned into its dh in Gout at prev.dh through its activation and its BatchNorm
// (updating its gamma and beta). Tiles: i = tile % in_q, row group tile / in_q of
// `row_groups` (one, covering the whole batch, when the previous layer has a BatchNorm).
// Without a previous layer (the embedding's gradient) dx itself goes to prev.dh.
fn input_gradient(tile: u32, li: u32) {
  let rows = step.rows * op.positions;
  let i = tile % op.in_q;
  let slice = li / G_ROWS;
  // Unless a FlattenConsecutive between the two puts them in a dispatch of their own
  // (PREV_APART, shaders/batchnorm_backward.wgsl).
  let fused = (op.flags & PREV_APART) == 0u;
  let bn = fused && (prev.flags & HAS_BN) != 0u;
  let row_groups = select((rows + G_ROWS - 1u) / G_ROWS, 1u, bn);
  let first = (tile / op.in_q) * G_ROWS + li % G_ROWS;
  let stride = row_groups * G_ROWS;
  var mean = vec4f(0.0);
  var invstd = vec4f(0.0);
  if (bn) {
    mean = In[rA + prev.stats + i];
    invstd = bn_invstd(In[rA + prev.stats + prev.out_q + i], prev.eps);
  }
  var sum_dy = vec4f(0.0);
  var sum_dy_xhat = vec4f(0.0);
  for (var r0 = (tile / op.in_q) * G_ROWS; r0 < rows; r0 += stride) {
    let r = r0 + li % G_ROWS;
    let rc = min(r, rows - 1u);
    var acc = vec4f(0.0);
    for (var n = slice; n < op.out_q; n += G_SLICES) {
      let d = Gin[rG + op.dh + rc * op.out_q + n];
      acc += vec4f(dot(textureLoad(W, vec2u(n, 4u * i), rep, 0), d),
                   dot(textureLoad(W, vec2u(n, 4u * i + 1u), rep, 0), d),
                   dot(textureLoad(W, vec2u(n, 4u * i + 2u), rep, 0), d),
                   dot(textureLoad(W, vec2u(n, 4u * i + 3u), rep, 0), d));
    }
    let dt = slice_total(acc, li);
    if (slice == 0u && r < rows) {
      let at = r * op.in_q + i;
      if (DIAG && step.snap != NONE && prev.snap_dt != NONE) {
        let s = step.snap + prev.snap_dt + 4u * at; // padded [rows][in_q]
        Host[rH + s] = dt.x;
        Host[rH + s + 1u] = dt.y;
        Host[rH + s + 2u] = dt.z;
        Host[rH + s + 3u] = dt.w;
      }
      // prev.t is this layer's input, op.x, in In.
      let dy = select(dt, act_backward(dt, In[rA + prev.t + at], prev.flags), fused);
      Gout[rG + prev.dh + at] = dy; // with BatchNorm, its owner turns it into dh below
      if (bn) {
        sum_dy += dy;
        sum_dy_xhat += dy * (In[rA + prev.h + at] - mean) * invstd;
      }
    }
  }
  if (!bn) {
    return;
  }
  sum_dy = owners_sum(sum_dy, li);
  sum_dy_xhat = owners_sum(sum_dy_xhat, li);
  let gamma = P[rP + prev.gamma + i];
  for (var r = first; r < rows; r += stride) {
    if (slice == 0u) {
      let at = r * op.in_q + i;
      let xhat = (In[rA + prev.h + at] - mean) * invstd;
      Gout[rG + prev.dh + at] = bn_backward(Gout[rG + prev.dh + at], xhat, invstd, gamma, sum_dy,
                                       sum_dy_xhat, rows);
    }
  }
  if (li == 0u) {
    Pn[rP + prev.gamma + i] = sgd(gamma, sum_dy_xhat);
    Pn[rP + prev.beta + i] = sgd(P[rP + prev.beta + i], sum_dy);
  }
}
