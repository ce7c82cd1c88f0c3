// Linear layer (CPU reference: src/cpu/linear.ts): h = x @ W (+ b), W stored [in][out] (as the
// texture W, rows of vec4 texels).
//
// linear_forward computes h and then, as an epilogue, the layer's BatchNorm and activation;
// linear_backward computes dW (applying SGD to W) and dx, and as the epilogue of dx runs the
// *previous* layer's activation and BatchNorm backward, turning dx into that layer's dh (unless a
// FlattenConsecutive between them puts those in a dispatch of their own: PREV_APART). Each
// epilogue needs sums over the batch of a column, so a workgroup owns whole columns: all rows
// of a few output features. Fusing saves a dispatch per op (~20 us each on llvmpipe, a few us
// on a GPU) and the loads and stores of the intermediate values.
//
// Tiling, chosen for llvmpipe, which runs 8 invocations as the lanes of one SIMD register and
// where a memory access costs far more than a multiply-add: an invocation owns one vec4 of
// output features (4 columns) for RB rows, so each texel of W it loads serves RB rows, and the
// rows of the other operand (x, or dh for dx) it loads are the same for all 8 lanes. How the
// loads are made matters most: llvmpipe reads a storage buffer one lane at a time behind
// bounds checks (~70 ns per vec4 for 8 lanes, single-threaded), but gathers texels (~9 ns) and
// uniform-buffer elements (~12 ns) with plain vector code. So W is a texture, and x and dh come
// through uniform windows when they fit (WINDOWS, set per pipeline by the host).
// The workgroup is WX x WY: WX adjacent vec4 columns times WY groups of rows.
//
// The loops take any row count, width and depth: rows beyond the end are clamped on load and
// skipped on store, and padding features (to a multiple of 4) are zero in x, W and every
// parameter, so they add nothing and receive zero gradients.

// DIAG variants run on the steps that collect diagnostics (src/diagnostics.ts), and only there,
// so that the other steps cost nothing more: linear_backward also writes, per invocation, the
// sums of the weight gradient, of its square, of the updated weight and of its square (for the
// update-to-data ratio) and, on snapshot steps, the whole weight gradient and the gradient
// w.r.t. the previous layer's output, into Host.
override DIAG: bool = false;

fn sum4(v: vec4f) -> f32 {
  return dot(v, vec4f(1.0));
}

// Whether x (and dh, in the backward) come through the windows InWindow / GinWindow rather than
// In / Gin. The loads are written inline as select(storage, window, WINDOWS), which the
// override folds away: wrapped in a helper function, they ran at half the speed on llvmpipe.
override WINDOWS: bool = false;

// The tile sizes RB (rows per invocation), RK (rows of W per invocation in the weight gradient,
// a multiple of 4), WX and WY come from src/gpu/software.ts. WY = 1 makes a workgroup one SIMD
// group: no barriers to wait at, and rows uniform across lanes.

var<workgroup> column_sums: array<vec4f, WX * WY>;

// The sum of v over the WY invocations of this column (same local_invocation_id.x).
fn column_total(v: vec4f, lid: vec3u) -> vec4f {
  workgroupBarrier(); // earlier readers of column_sums are done
  column_sums[lid.y * WX + lid.x] = v;
  workgroupBarrier();
  var s = vec4f(0.0);
  for (var y = 0u; y < WY; y++) {
    s += column_sums[y * WX + lid.x];
  }
  return s;
}

// Forward. Grid: (ceil(out_q / WX), row groups); more than one row group only when the layer
// needs no batch statistics (the column sums below must see every row).
@compute @workgroup_size(WX, WY)
fn linear_forward(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u,
                  @builtin(num_workgroups) groups: vec3u) {
  enter(wg.z);
  let rows = step.rows * op.positions;
  let q = wg.x * WX + lid.x;
  let live = q < op.out_q;
  let qc = min(q, op.out_q - 1u);
  let bn = (op.flags & HAS_BN) != 0u;
  let act_out = has_act(op.flags);
  let batch_stats = bn && step.mode == MODE_TRAIN;
  // Row blocks of RB rows are dealt out round-robin: block lid.y * groups.y + wg.y, so that a
  // grid with several row groups (possible without batch statistics) keeps every workgroup busy.
  let first = (lid.y * groups.y + wg.y) * RB;
  let stride = groups.y * WY * RB;
  var bias = vec4f(0.0);
  if ((op.flags & HAS_BIAS) != 0u) {
    bias = P[rP + op.bias + qc];
  }

  // h = x @ W + b, over this invocation's rows; with BatchNorm, h is stored for the epilogue.
  var sum = vec4f(0.0);
  for (var r0 = first; r0 < rows; r0 += stride) {
    var acc: array<vec4f, RB>;
    for (var i = 0u; i < RB; i++) {
      acc[i] = bias;
    }
    for (var k = 0u; k < op.in_q; k++) {
      // Rows 4k..4k+3 of W, this invocation's 4 columns.
      let w0 = textureLoad(W, vec2u(qc, 4u * k), rep, 0);
      let w1 = textureLoad(W, vec2u(qc, 4u * k + 1u), rep, 0);
      let w2 = textureLoad(W, vec2u(qc, 4u * k + 2u), rep, 0);
      let w3 = textureLoad(W, vec2u(qc, 4u * k + 3u), rep, 0);
      for (var i = 0u; i < RB; i++) {
        let xi = min(r0 + i, rows - 1u) * op.in_q + k;
        let x = select(In[rA + op.x + xi], InWindow[xi], WINDOWS);
        acc[i] += x.x * w0 + x.y * w1 + x.z * w2 + x.w * w3;
      }
    }
    // (Loops over acc must stay simple enough for the compiler to unroll; otherwise acc
    // leaves the registers for memory, halving the speed of the loop above.)
    let to = select(op.t, op.h, bn);
    for (var i = 0u; i < RB; i++) {
      let r = r0 + i;
      if (live && r < rows) {
        Out[rA + to + r * op.out_q + q] = acc[i];
        sum += acc[i];
      }
    }
  }
  if (!bn) {
    if (act_out) {
      for (var r0 = first; r0 < rows; r0 += stride) {
        for (var i = 0u; i < RB; i++) {
          let at = op.t + (r0 + i) * op.out_q + q;
          if (live && r0 + i < rows) {
            Out[rA + at] = act_forward(Out[rA + at], op.flags);
          }
        }
      }
    }
    return;
  }

  // BatchNorm: the batch's statistics (two passes, for accuracy) or the running ones.
  var mean: vec4f;
  var variance: vec4f;
  if (batch_stats) {
    mean = column_total(sum, lid) / f32(rows);
    // Each invocation re-reads the rows it wrote: no storage barrier is needed.
    var sum_sq = vec4f(0.0);
    for (var r0 = first; r0 < rows; r0 += stride) {
      for (var i = 0u; i < RB; i++) {
        let r = r0 + i;
        if (live && r < rows) {
          let d = Out[rA + op.h + r * op.out_q + q] - mean;
          sum_sq += d * d;
        }
      }
    }
    variance = bn_variance(column_total(sum_sq, lid), rows);
    if (lid.y == 0u && live) {
      Out[rA + op.stats + q] = mean;
      Out[rA + op.stats + op.out_q + q] = variance;
      if (step.mode == MODE_TRAIN) {
        Pn[rP + op.run_mean + q] = bn_running(P[rP + op.run_mean + q], mean, momentum);
        Pn[rP + op.run_var + q] = bn_running(P[rP + op.run_var + q], variance, momentum);
      }
    }
  } else {
    mean = P[rP + op.run_mean + qc];
    variance = P[rP + op.run_var + qc];
  }
  let invstd = bn_invstd(variance, op.eps);
  let gamma = P[rP + op.gamma + qc];
  let beta = P[rP + op.beta + qc];
  for (var r0 = first; r0 < rows; r0 += stride) {
    for (var i = 0u; i < RB; i++) {
      let r = r0 + i;
      if (live && r < rows) {
        let y = bn_forward(Out[rA + op.h + r * op.out_q + q], mean, invstd, gamma, beta);
        Out[rA + op.t + r * op.out_q + q] = act_forward(y, op.flags);
      }
    }
  }
}

// Backward: workgroups below op.dw_groups compute tiles of dW, the others slices of dx.
@compute @workgroup_size(WX, WY)
fn linear_backward(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  enter(wg.z);
  if (wg.x < op.dw_groups) {
    weight_gradient(wg.x, lid);
  } else {
    input_gradient(wg.x - op.dw_groups, lid);
  }
}

// dW = x^T @ dh, one RK x 4 block per invocation, then W' = W - lr dW into Wn; the bias
// gradient (sum over rows of dh) rides along in the first row of tiles.
fn weight_gradient(tile: u32, lid: vec3u) {
  let rows = step.rows * op.positions;
  let col_tiles = (op.out_q + WX - 1u) / WX;
  let q = (tile % col_tiles) * WX + lid.x;
  let live = q < op.out_q;
  let qc = min(q, op.out_q - 1u);
  let k0 = ((tile / col_tiles) * WY + lid.y) * RK; // first row of W (a multiple of 4)
  var acc: array<vec4f, RK>;
  for (var i = 0u; i < RK; i++) {
    acc[i] = vec4f(0.0);
  }
  var bias_grad = vec4f(0.0);
  for (var b = 0u; b < rows; b++) {
    let gi = b * op.out_q + qc;
    let g = select(Gin[rG + op.dh + gi], GinWindow[gi], WINDOWS);
    bias_grad += g;
    for (var j = 0u; j < RK / 4u; j++) {
      let xi = b * op.in_q + min(k0 / 4u + j, op.in_q - 1u);
      let x = select(In[rA + op.x + xi], InWindow[xi], WINDOWS);
      acc[4u * j] += x.x * g;
      acc[4u * j + 1u] += x.y * g;
      acc[4u * j + 2u] += x.z * g;
      acc[4u * j + 3u] += x.w * g;
    }
  }
  for (var i = 0u; i < RK; i++) {
    let k = k0 + i;
    if (live && k < 4u * op.in_q) {
      let w = textureLoad(W, vec2u(q, k), rep, 0);
      textureStore(Wn, vec2u(q, k), rep, w - lr * acc[i]); // sgd(), inline: a call would spill acc
    }
  }
  if ((op.flags & HAS_BIAS) != 0u && k0 == 0u && live) {
    Pn[rP + op.bias + q] = sgd(P[rP + op.bias + q], bias_grad);
  }
  if (DIAG) {
    // Padding is left out of the moments; the snapshot keeps it, in W's padded layout.
    let real = 4u * q + vec4u(0u, 1u, 2u, 3u) < vec4u(op.n_out);
    var moments = vec4f(0.0); // sum g, sum g^2, sum w', sum w'^2
    for (var i = 0u; i < RK; i++) {
      let k = k0 + i;
      let counted = real & vec4<bool>(live && k < op.n_in);
      let g = select(vec4f(0.0), acc[i], counted);
      let w = textureLoad(W, vec2u(qc, min(k, 4u * op.in_q - 1u)), rep, 0) - lr * acc[i];
      let wc = select(vec4f(0.0), w, counted);
      moments += vec4f(sum4(g), sum4(g * g), sum4(wc), sum4(wc * wc));
      if (step.snap != NONE && live && k < 4u * op.in_q) {
        let at = step.snap + op.snap_w + 4u * (k * op.out_q + q);
        Host[rH + at] = acc[i].x;
        Host[rH + at + 1u] = acc[i].y;
        Host[rH + at + 2u] = acc[i].z;
        Host[rH + at + 3u] = acc[i].w;
      }
    }
    if (step.diag != NONE) {
      let at = step.diag + op.diag + 4u * ((tile * WY + lid.y) * WX + lid.x);
      Host[rH + at] = moments.x;
      Host[rH + at + 1u] = moments.y;
      Host[rH + at + 2u] = moments.z;
      Host[rH + at + 3u] = moments.w;
    }
  }
}

// dx = dh @ W^T for all rows of 4 input features, then the previous layer's backward: through
// its activation, then its BatchNorm (updating its gamma and beta), leaving its dh in Gout at prev.dh.
// The previous layer's forward values are in In, alongside this layer's input.
// Without them (the first layer, whose input is the embedding) dx itself goes to prev.dh.
fn input_gradient(tile: u32, lid: vec3u) {
  let rows = step.rows * op.positions;
  let iq = tile * WX + lid.x; // this invocation's input vec4
  let live = iq < op.in_q;
  let ic = min(iq, op.in_q - 1u);
  let fused = (op.flags & PREV_APART) == 0u;
  let bn = fused && (prev.flags & HAS_BN) != 0u;
  let act_in = fused && has_act(prev.flags);
  var mean = vec4f(0.0);
  var invstd = vec4f(0.0);
  if (bn) {
    mean = In[rA + prev.stats + ic];
    invstd = bn_invstd(In[rA + prev.stats + prev.out_q + ic], prev.eps);
  }

  var sum_dy = vec4f(0.0);
  var sum_dy_xhat = vec4f(0.0);
  for (var r0 = lid.y * RB; r0 < rows; r0 += WY * RB) {
    var acc: array<vec4f, RB>;
    for (var i = 0u; i < RB; i++) {
      acc[i] = vec4f(0.0);
    }
    for (var n = 0u; n < op.out_q; n++) {
      // Rows 4*ic..4*ic+3 of W (this invocation's input features), output features 4n..4n+3.
      let w0 = textureLoad(W, vec2u(n, 4u * ic), rep, 0);
      let w1 = textureLoad(W, vec2u(n, 4u * ic + 1u), rep, 0);
      let w2 = textureLoad(W, vec2u(n, 4u * ic + 2u), rep, 0);
      let w3 = textureLoad(W, vec2u(n, 4u * ic + 3u), rep, 0);
      for (var i = 0u; i < RB; i++) {
        let di = min(r0 + i, rows - 1u) * op.out_q + n;
        let d = select(Gin[rG + op.dh + di], GinWindow[di], WINDOWS);
        acc[i] += vec4f(dot(w0, d), dot(w1, d), dot(w2, d), dot(w3, d));
      }
    }
    for (var i = 0u; i < RB; i++) {
      let r = r0 + i;
      if (live && r < rows) {
        Gout[rG + prev.dh + r * op.in_q + iq] = acc[i];
      }
    }
    if (DIAG && step.snap != NONE && prev.snap_dt != NONE) {
      for (var i = 0u; i < RB; i++) {
        let r = r0 + i;
        if (live && r < rows) {
          let at = step.snap + prev.snap_dt + 4u * (r * op.in_q + iq); // padded [rows][in_q]
          Host[rH + at] = acc[i].x;
          Host[rH + at + 1u] = acc[i].y;
          Host[rH + at + 2u] = acc[i].z;
          Host[rH + at + 3u] = acc[i].w;
        }
      }
    }
  }

  // The previous layer's activation backward, and the column sums its BatchNorm backward needs.
  if (act_in || bn) {
    for (var r0 = lid.y * RB; r0 < rows; r0 += WY * RB) {
      for (var i = 0u; i < RB; i++) {
        let at = (r0 + i) * op.in_q + iq;
        if (live && r0 + i < rows) {
          var dy = Gout[rG + prev.dh + at];
          if (act_in) {
            // prev.t is this layer's input, op.x: the window holds it.
            dy = act_backward(dy, select(In[rA + prev.t + at], InWindow[at], WINDOWS), prev.flags);
          }
          sum_dy += dy;
          sum_dy_xhat += dy * (In[rA + prev.h + at] - mean) * invstd;
          Gout[rG + prev.dh + at] = dy; // with BatchNorm, dy is turned into dh below
        }
      }
    }
  }
  if (!bn) {
    return;
  }

  sum_dy = column_total(sum_dy, lid);
  sum_dy_xhat = column_total(sum_dy_xhat, lid);
  let gamma = P[rP + prev.gamma + ic];
  for (var r0 = lid.y * RB; r0 < rows; r0 += WY * RB) {
    for (var i = 0u; i < RB; i++) {
      let r = r0 + i;
      if (live && r < rows) {
        let at = r * op.in_q + iq;
        let xhat = (In[rA + prev.h + at] - mean) * invstd;
        Gout[rG + prev.dh + at] = bn_backward(Gout[rG + prev.dh + at], xhat, invstd, gamma, sum_dy,
                                         sum_dy_xhat, rows);
      }
    }
  }
  if (lid.y == 0u && live) {
    Pn[rP + prev.gamma + iq] = sgd(gamma, sum_dy_xhat);
    Pn[rP + prev.beta + iq] = sgd(P[rP + prev.beta + iq], sum_dy);
  }
}
