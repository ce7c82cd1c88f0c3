/**
 * Every CPU reference op's backward against central finite differences of its forward, in
 * float64, on shapes that are multiples of nothing convenient. Each forward is reduced to a
 * scalar by a dot product with a random tensor R, so the gradient flowing in is R.
 */

import {
  batchnormBackward,
  batchnormForward,
  batchnormInference,
  batchnormRunningUpdate,
} from "../src/cpu/batchnorm.ts";
import { crossEntropyBackward, crossEntropyForward } from "../src/cpu/cross_entropy.ts";
import { embeddingBackward, embeddingForward } from "../src/cpu/embedding.ts";
import { linearBackward, linearForward } from "../src/cpu/linear.ts";
import { sgdUpdate } from "../src/cpu/sgd.ts";
import { tanhBackward, tanhForward } from "../src/cpu/tanh.ts";
import { Rng } from "../src/rng.ts";
import { assert, assertEquals, assertGradClose, dot, randInts, randn } from "./util.ts";

Deno.test("embedding (cpu reference): dC is the scatter-add of dx, by finite differences", () => {
  const rng = new Rng(1);
  const [vocab, dim, n] = [7, 5, 13];
  const C = randn(rng, vocab * dim);
  const ids = randInts(rng, n, vocab);
  ids[0] = ids[1] = 3; // a repeated id must accumulate
  const R = randn(rng, n * dim);
  const x = new Float64Array(n * dim);
  const f = () => (embeddingForward(x, C, ids, n, dim), dot(x, R));
  const dC = new Float64Array(vocab * dim).fill(123); // must be overwritten
  embeddingBackward(dC, R, ids, n, dim, vocab);
  assertGradClose("dC", C, dC, f);
  assertEquals(x.slice(0, dim), C.slice(ids[0] * dim, ids[0] * dim + dim));
});

for (const withBias of [true, false]) {
  Deno.test(`linear (cpu reference, ${withBias ? "with" : "no"} bias): dx, dw, dbias by finite differences`, () => {
    const rng = new Rng(2);
    const [B, nIn, nOut] = [5, 7, 3];
    const x = randn(rng, B * nIn);
    const w = randn(rng, nIn * nOut);
    const bias = withBias ? randn(rng, nOut) : null;
    const R = randn(rng, B * nOut);
    const h = new Float64Array(B * nOut);
    const f = () => (linearForward(h, x, w, bias, B, nIn, nOut), dot(h, R));
    const dx = new Float64Array(B * nIn);
    const dw = new Float64Array(nIn * nOut);
    const dbias = withBias ? new Float64Array(nOut) : null;
    linearBackward(dx, dw, dbias, R, x, w, B, nIn, nOut);
    assertGradClose("dx", x, dx, f);
    assertGradClose("dw", w, dw, f);
    if (bias && dbias) assertGradClose("dbias", bias, dbias, f);
  });
}

Deno.test("batchnorm (cpu reference): dh, dgamma, dbeta through the mean and unbiased variance", () => {
  const rng = new Rng(3);
  const [B, N, eps] = [6, 5, 1e-5];
  const h = randn(rng, B * N, 2);
  for (let i = 0; i < h.length; i++) h[i] += 0.5; // a nonzero mean
  const gamma = randn(rng, N);
  const beta = randn(rng, N);
  const R = randn(rng, B * N);
  const [y, xhat] = [new Float64Array(B * N), new Float64Array(B * N)];
  const [mean, variance, invstd] = [new Float64Array(N), new Float64Array(N), new Float64Array(N)];
  const f = () => {
    batchnormForward(y, xhat, mean, variance, invstd, h, gamma, beta, B, N, eps);
    return dot(y, R);
  };
  f();
  const [dh, dgamma, dbeta] = [new Float64Array(B * N), new Float64Array(N), new Float64Array(N)];
  batchnormBackward(dh, dgamma, dbeta, R, xhat, invstd, gamma, B, N);
  assertGradClose("dh", h, dh, f);
  assertGradClose("dgamma", gamma, dgamma, f);
  assertGradClose("dbeta", beta, dbeta, f);
  // Normalized columns: mean 0 and unbiased variance var / (var + eps) ~ 1.
  for (let n = 0; n < N; n++) {
    let s = 0;
    let ss = 0;
    for (let b = 0; b < B; b++) s += xhat[b * N + n];
    for (let b = 0; b < B; b++) ss += xhat[b * N + n] ** 2;
    assert(Math.abs(s) < 1e-9 && Math.abs(ss / (B - 1) - 1) < 1e-4, `column ${n}`);
  }
});

Deno.test("batchnorm (cpu reference): running statistics and inference mode", () => {
  const [B, N] = [4, 2];
  const h = Float64Array.from([1, 10, 2, 20, 3, 30, 6, 40]);
  const y = new Float64Array(B * N);
  const xhat = new Float64Array(B * N);
  const [mean, variance, invstd] = [new Float64Array(N), new Float64Array(N), new Float64Array(N)];
  const gamma = Float64Array.from([1, 2]);
  const beta = Float64Array.from([0, 1]);
  batchnormForward(y, xhat, mean, variance, invstd, h, gamma, beta, B, N, 0);
  assertEquals(Array.from(mean), [3, 25]);
  assertEquals(Array.from(variance), [14 / 3, 500 / 3]); // divided by B - 1
  const runMean = Float64Array.from([0, 0]);
  const runVar = Float64Array.from([1, 1]);
  batchnormRunningUpdate(runMean, runVar, mean, variance, N, 0.1);
  assert(Math.abs(runMean[0] - 0.3) < 1e-12 && Math.abs(runVar[1] - (0.9 + 50 / 3)) < 1e-12);
  // With the running statistics equal to the batch's, inference reproduces training.
  const evalY = new Float64Array(B * N);
  batchnormInference(evalY, h, gamma, beta, mean, variance, B, N, 0);
  for (let i = 0; i < y.length; i++) assert(Math.abs(evalY[i] - y[i]) < 1e-12);
});

Deno.test("tanh (cpu reference): dy from the output t, by finite differences", () => {
  const rng = new Rng(4);
  const n = 11;
  const y = randn(rng, n, 1.5);
  const R = randn(rng, n);
  const t = new Float64Array(n);
  const f = () => (tanhForward(t, y, n), dot(t, R));
  f();
  const dy = new Float64Array(n);
  tanhBackward(dy, R, t, n);
  assertGradClose("dy", y, dy, f);
});

Deno.test("cross_entropy (cpu reference): the loss, and the fused (softmax - onehot) / B gradient", () => {
  const rng = new Rng(5);
  const [B, V] = [7, 9];
  const logits = randn(rng, B * V, 3);
  logits[0] = 80; // far from 0: the max subtraction must keep exp in range
  const targets = randInts(rng, B, V);
  const probs = new Float64Array(B * V);
  const f = () => crossEntropyForward(probs, logits, targets, B, V);
  const loss = f();
  let expected = 0;
  for (let b = 0; b < B; b++) {
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(logits[b * V + v]);
    expected += Math.log(s) - logits[b * V + targets[b]];
  }
  assert(Math.abs(loss - expected / B) < 1e-12, `${loss} vs ${expected / B}`);
  const dlogits = new Float64Array(B * V);
  crossEntropyBackward(dlogits, probs, targets, B, V);
  assertGradClose("dlogits", logits, dlogits, f);
  // Uniform logits give ln(V).
  const flat = new Float64Array(B * V);
  assert(Math.abs(crossEntropyForward(probs, flat, targets, B, V) - Math.log(V)) < 1e-12);
});

Deno.test("sgd (cpu reference): params -= lr * grads", () => {
  const p = Float64Array.from([1, 2, 3]);
  sgdUpdate(p, Float64Array.from([10, -10, 0]), 0.1, 3);
  assertEquals(Array.from(p), [0, 3, 3]);
});
