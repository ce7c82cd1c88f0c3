/**
 * The whole model on the CPU, built from the reference ops: the oracle that the GPU trainer
 * is checked against, and a (slow) backend of its own (`--backend cpu`).
 */

import type { Activation } from "../layers.ts";
import { type LayerSpec, type ModelConfig, type ModelLayout, modelLayout, view } from "../model.ts";
import {
  batchnormBackward,
  batchnormForward,
  batchnormInference,
  batchnormRunningUpdate,
} from "./batchnorm.ts";
import { crossEntropyBackward, crossEntropyForward } from "./cross_entropy.ts";
import { embeddingBackward, embeddingForward } from "./embedding.ts";
import { linearBackward, linearForward } from "./linear.ts";
import { sgdUpdate } from "./sgd.ts";
import { reluBackward, reluForward } from "./relu.ts";
import { tanhBackward, tanhForward } from "./tanh.ts";
import type { Floats } from "./types.ts";
import type { Examples } from "../data.ts";
import { type Moments, momentsOf, type Snapshot } from "../diagnostics.ts";

export type Mode = "train" | "eval";

/** Each activation's forward and backward (src/layers.ts names them). */
const ACTIVATIONS: Readonly<
  Record<Activation, {
    forward(t: Floats, y: Floats, n: number): void;
    backward(dy: Floats, dt: Floats, t: Floats, n: number): void;
  }>
> = {
  tanh: { forward: tanhForward, backward: tanhBackward },
  relu: { forward: reluForward, backward: reluBackward },
};

/**
 * What one layer keeps from forward for backward, named as in shaders/ and src/gpu/: x is the
 * layer's input, h = x @ W (+ b), y = BatchNorm(h), t = tanh(y) (or y, or h) its output. All
 * [B, nOut] except x [B, nIn] and the statistics [nOut].
 */
export interface LayerCache {
  x: Floats; // the previous layer's t (or the embedding's output)
  h: Floats; // linear output
  xhat: Floats; // normalized h (BatchNorm layers)
  mean: Floats; // batch statistics
  variance: Floats;
  invstd: Floats;
  y: Floats; // BatchNorm output
  t: Floats; // what the next layer sees: tanh(y), y, or h
  dh: Floats; // after backward: the gradient of the loss w.r.t. h
  dt: Floats; // after backward: the gradient of the loss w.r.t. t
}

function alloc(like: Floats, n: number): Floats {
  return like instanceof Float64Array ? new Float64Array(n) : new Float32Array(n);
}

/**
 * A GPU's tanh as far off as WGSL allows (absolute 1e-5), for tests that size their tolerances
 * by what a conformant GPU may do: every tanh output moves by `size`, up, down, or in a fixed
 * pseudo-random pattern of signs ("mixed", different in every pass).
 */
export interface TanhError {
  readonly size: number;
  readonly pattern: "up" | "down" | "mixed";
}

export class CpuModel {
  readonly config: ModelConfig;
  readonly layout: ModelLayout;
  readonly params: Floats;
  readonly buffers: Floats;
  readonly grads: Floats;
  #B = 0;
  #ctx: Int32Array = new Int32Array(0);
  #x0: Floats;
  #caches: LayerCache[] = [];
  #probs: Floats;
  #dlogits: Floats;
  #dx0: Floats;
  readonly #tanhError: TanhError | null;
  #passes = 0;

  /** Float32Array storage mirrors the GPU; Float64Array is for finite-difference checks. */
  constructor(config: ModelConfig, params: Floats, buffers: Floats, tanhError?: TanhError) {
    this.config = config;
    this.#tanhError = tanhError ?? null;
    this.layout = modelLayout(config);
    if (params.length !== this.layout.nParams || buffers.length !== this.layout.nBuffers) {
      throw new Error("parameter or buffer array does not match the model layout");
    }
    this.params = params;
    this.buffers = buffers;
    this.grads = alloc(params, params.length);
    this.#x0 = alloc(params, 0);
    this.#probs = alloc(params, 0);
    this.#dlogits = alloc(params, 0);
    this.#dx0 = alloc(params, 0);
  }

  #resize(B: number): void {
    if (B === this.#B) return;
    const p = this.params;
    const { blockSize, vocabSize } = this.config;
    const E = this.layout.embedding.shape[1];
    this.#x0 = alloc(p, B * blockSize * E);
    let x = this.#x0;
    // Layer l works on B * positions rows (a FlattenConsecutive before it joins rows: the same
    // numbers, read as fewer, wider rows).
    this.#caches = this.layout.layers.map((l: LayerSpec) => {
      const n = B * l.positions * l.nOut;
      const c: LayerCache = {
        x,
        h: alloc(p, n),
        xhat: alloc(p, l.bn ? n : 0),
        mean: alloc(p, l.nOut),
        variance: alloc(p, l.nOut),
        invstd: alloc(p, l.nOut),
        y: alloc(p, l.bn ? n : 0),
        t: alloc(p, 0),
        dh: alloc(p, n),
        dt: alloc(p, n),
      };
      c.t = l.act ? alloc(p, n) : l.bn ? c.y : c.h;
      x = c.t;
      return c;
    });
    this.#probs = alloc(p, B * vocabSize);
    this.#dlogits = alloc(p, B * vocabSize);
    this.#dx0 = alloc(p, B * blockSize * E);
    this.#B = B;
  }

  /** The last pass's values, layer by layer, for tests and diagnostics. */
  get caches(): readonly LayerCache[] {
    return this.#caches;
  }

  /** The last pass's embedding output [B, blockSize * nEmbd] and, after backward, its gradient. */
  get embedding(): { x0: Floats; dx0: Floats } {
    return { x0: this.#x0, dx0: this.#dx0 };
  }

  /**
   * Logits for a batch of contexts [B, blockSize]. "train" normalizes with the batch's
   * statistics and moves the running statistics toward them; "eval" uses the running ones.
   */
  logits(ctx: Int32Array, mode: Mode, stopAfterLinear?: number): Floats {
    const B = ctx.length / this.config.blockSize;
    if (mode === "train" && this.layout.layers.some((l) => l.bn) && B < 2) {
      throw new Error("BatchNorm in training mode needs a batch of at least 2");
    }
    this.#resize(B);
    this.#ctx = ctx;
    const { params: p, buffers: buf, config } = this;
    const E = this.layout.embedding.shape[1];
    embeddingForward(this.#x0, view(p, this.layout.embedding), ctx, ctx.length, E);
    for (let i = 0; i < this.layout.layers.length; i++) {
      const l = this.layout.layers[i];
      const c = this.#caches[i];
      const R = B * l.positions;
      const bias = l.bias ? view(p, l.bias) : null;
      linearForward(c.h, c.x, view(p, l.weight), bias, R, l.nIn, l.nOut);
      if (i === stopAfterLinear) return c.h;
      if (l.bn) {
        const [gamma, beta] = [view(p, l.bn.gamma), view(p, l.bn.beta)];
        const [runMean, runVar] = [view(buf, l.bn.runMean), view(buf, l.bn.runVar)];
        if (mode === "train") {
          batchnormForward(
            c.y,
            c.xhat,
            c.mean,
            c.variance,
            c.invstd,
            c.h,
            gamma,
            beta,
            R,
            l.nOut,
            config.bnEps,
          );
          batchnormRunningUpdate(runMean, runVar, c.mean, c.variance, l.nOut, config.bnMomentum);
        } else {
          batchnormInference(c.y, c.h, gamma, beta, runMean, runVar, R, l.nOut, config.bnEps);
        }
      }
      if (l.act) {
        ACTIVATIONS[l.act].forward(c.t, l.bn ? c.y : c.h, R * l.nOut);
        if (this.#tanhError && l.act === "tanh") this.#perturb(c.t, i);
      }
    }
    return this.#caches.at(-1)!.t;
  }

  #perturb(t: Floats, layer: number): void {
    const { size, pattern } = this.#tanhError!;
    const pass = this.#passes++;
    for (let i = 0; i < t.length; i++) {
      const sign = pattern === "up"
        ? 1
        : pattern === "down"
        ? -1
        : (Math.imul(i + 1, 0x9e3779b1) ^ Math.imul(layer + 31 * pass, 0x85ebca6b)) & 0x10000
        ? 1
        : -1;
      t[i] = Math.max(-1, Math.min(1, t[i] + sign * size));
    }
  }

  /** The mean cross-entropy of a batch; keeps what backward needs. */
  forward(ctx: Int32Array, targets: Int32Array, mode: Mode): number {
    const logits = this.logits(ctx, mode);
    return crossEntropyForward(this.#probs, logits, targets, this.#B, this.config.vocabSize);
  }

  /** Gradients of the last forward's loss (which must have run in "train" mode). */
  backward(targets: Int32Array): void {
    const { params: p, grads: g, config } = this;
    const B = this.#B;
    // The gradient w.r.t. the current layer's output t, from the loss down.
    let dt = this.#dlogits;
    crossEntropyBackward(dt, this.#probs, targets, B, config.vocabSize);
    for (let i = this.layout.layers.length - 1; i >= 0; i--) {
      const l = this.layout.layers[i];
      const c = this.#caches[i];
      const R = B * l.positions;
      const n = R * l.nOut;
      c.dt.set(dt);
      let dy = dt;
      if (l.act) {
        dy = alloc(p, n);
        ACTIVATIONS[l.act].backward(dy, dt, c.t, n);
      }
      if (l.bn) {
        batchnormBackward(
          c.dh,
          view(g, l.bn.gamma),
          view(g, l.bn.beta),
          dy,
          c.xhat,
          c.invstd,
          view(p, l.bn.gamma),
          R,
          l.nOut,
        );
      } else {
        c.dh.set(dy);
      }
      const dx = i === 0 ? this.#dx0 : alloc(p, R * l.nIn);
      const dbias = l.bias ? view(g, l.bias) : null;
      linearBackward(dx, view(g, l.weight), dbias, c.dh, c.x, view(p, l.weight), R, l.nIn, l.nOut);
      dt = dx;
    }
    const emb = this.layout.embedding;
    embeddingBackward(
      view(g, emb),
      dt,
      this.#ctx,
      this.#ctx.length,
      emb.shape[1],
      config.vocabSize,
    );
  }

  /** Mean loss over a split in evaluation mode, in chunks of `chunk` rows. */
  evaluate(ex: Examples, chunk = 4096): number {
    let total = 0;
    for (let row = 0; row < ex.n; row += chunk) {
      const n = Math.min(chunk, ex.n - row);
      const T = ex.blockSize;
      total += n *
        this.forward(ex.x.subarray(row * T, (row + n) * T), ex.y.subarray(row, row + n), "eval");
    }
    return total / ex.n;
  }

  /**
   * Sets each BatchNorm's running statistics to the mean and unbiased variance of its input
   * over all the examples, layer by layer with the layers before already calibrated (the
   * statistics makemore computes over the training split after training).
   */
  calibrate(ex: Examples, chunk = 4096): void {
    const T = ex.blockSize;
    this.layout.layers.forEach((l, i) => {
      if (!l.bn) return;
      const mean = new Float64Array(l.nOut);
      const m2 = new Float64Array(l.nOut);
      for (let row = 0; row < ex.n; row += chunk) {
        const n = Math.min(chunk, ex.n - row);
        const h = this.logits(ex.x.subarray(row * T, (row + n) * T), "eval", i);
        // Every row of the layer: n examples of `positions` rows each.
        for (let b = 0; b < n * l.positions; b++) {
          const count = row * l.positions + b + 1; // Welford's update, in float64
          for (let j = 0; j < l.nOut; j++) {
            const d = h[b * l.nOut + j] - mean[j];
            mean[j] += d / count;
            m2[j] += d * (h[b * l.nOut + j] - mean[j]);
          }
        }
      }
      view(this.buffers, l.bn.runMean).set(mean);
      view(this.buffers, l.bn.runVar).set(
        m2.map((v) => v / Math.max(ex.n * l.positions - 1, 1)),
      );
    });
  }

  /** The embedding and the layers' weights: the tensors diagnostics follow. */
  get #weights() {
    return [this.layout.embedding, ...this.layout.layers.map((l) => l.weight)];
  }

  /** Each weight's moments after the last step (src/diagnostics.ts). */
  moments(): Moments[] {
    return this.#weights.map((t) => momentsOf(t.name, view(this.grads, t), view(this.params, t)));
  }

  /** The last step's values (src/diagnostics.ts), copied. */
  snapshot(step: number): Snapshot {
    return {
      step,
      tanh: this.layout.layers.flatMap((l, i) =>
        l.act === "tanh"
          ? [{
            t: Float32Array.from(this.#caches[i].t),
            dt: Float32Array.from(this.#caches[i].dt),
          }]
          : []
      ),
      weights: this.#weights.map((t) => ({
        name: t.name,
        shape: t.shape,
        grad: Float32Array.from(view(this.grads, t)),
        param: Float32Array.from(view(this.params, t)),
      })),
    };
  }

  /** One SGD step on a batch; returns the batch loss before the update. */
  step(ctx: Int32Array, targets: Int32Array, lr: number): number {
    const loss = this.forward(ctx, targets, "train");
    this.backward(targets);
    sgdUpdate(this.params, this.grads, lr, this.params.length);
    return loss;
  }
}
