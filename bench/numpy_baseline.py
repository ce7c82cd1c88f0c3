#!/usr/bin/env python3
"""The same network and training loop in NumPy on the CPU, forward and backward written out
by hand: what a CPU user might write instead of a framework. It mirrors the CPU reference
(src/cpu/*.ts, src/cpu/model.ts) and the presets and initialization of src/model.ts, in
float32, with the parameters and their gradients in two flat arrays laid out as
modelLayout() lays them out:

  embedding C [vocab, nEmbd] -> concatenate the blockSize context embeddings
  -> nLayers x (Linear(no bias) -> BatchNorm1d -> tanh)
  -> Linear (+ bias: lecture) (-> BatchNorm1d with gamma 0.1: seed) -> softmax cross-entropy
  SGD, lr 0.1, then 0.01 from the preset's decay step.

  /usr/bin/python3 bench/numpy_baseline.py --preset lecture --steps 2000     # us/step
  /usr/bin/python3 bench/numpy_baseline.py --preset seed --full --data FILE  # 200k steps + losses

Prints one JSON object on the last line (exit code 3 and {"error": ...} without numpy).
"""

import argparse
import json
import os
import sys
import time

from baseline_common import blas_kind, examples, loaded_blas

PRESETS = {
    "lecture": dict(layers=1, hidden=200, out_bias=True, out_bn=False, out_gamma=1.0,
                    out_init=0.01, momentum=0.001, decay_at=100_000),
    "seed": dict(layers=5, hidden=200, out_bias=False, out_bn=True, out_gamma=0.1,
                 out_init="kaiming", momentum=0.1, decay_at=150_000),
}
BLOCK, N_EMBD, BATCH, TANH_GAIN, EPS, LR, LR_FINAL = 3, 10, 32, 5 / 3, 1e-5, 0.1, 0.01


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", default="lecture", help=f"one of {', '.join(PRESETS)}")
    ap.add_argument("--steps", type=int, default=2000, help="timed steps (default 2000)")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--full", action="store_true", help="train 200k steps, report losses")
    ap.add_argument("--data", help="names file (default: random tokens, for timing only)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    args = ap.parse_args(argv)
    if args.preset not in PRESETS:
        # One JSON line, as a result would be, so that bench.ts shows why there is no number.
        print(json.dumps({"error": f"no NumPy baseline for {args.preset} (only {', '.join(PRESETS)})"}))
        sys.exit(4)
    return args


if __name__ == "__main__":
    ARGS = parse_args()
    # OpenBLAS, OpenMP and MKL read their thread counts when they load, so these must be set
    # before numpy (and the BLAS it links) is imported.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

try:
    import numpy as np  # noqa: E402 (after the thread settings above)
except ImportError:
    print(json.dumps({"error": "numpy is not installed"}))
    sys.exit(3)


def numpy_declared_blas():
    """The BLAS numpy's build names, or None for the generic libblas.so.3."""
    try:  # numpy >= 1.26 (meson builds)
        name = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:  # numpy.distutils builds: a non-empty *_info dict names the library
        cfg = np.__config__
        for kind, attr in (("mkl", "blas_mkl_info"), ("openblas", "openblas_info"),
                           ("blis", "blis_info"), ("atlas", "atlas_blas_threads_info"),
                           ("atlas", "atlas_blas_info")):
            if getattr(cfg, attr, None):
                return kind
        return None
    kind = blas_kind(name or "")
    return None if kind == "netlib reference BLAS" else kind


# --- The model --------------------------------------------------------------------------------

class Layer:
    """Linear(n_in -> n_out) (+ bias) (-> BatchNorm1d) (-> tanh), with views of its tensors in
    the flat parameter, gradient and buffer arrays, and its workspace for a batch of B."""

    def __init__(self, n_in, n_out, bias, bn, tanh):
        self.n_in, self.n_out, self.has_bias, self.has_bn, self.tanh = n_in, n_out, bias, bn, tanh

    def allocate(self, B, x, dtype):
        """Workspace for a batch of B: x is the input (the previous layer's output t)."""
        z = lambda *shape: np.zeros(shape, dtype)  # noqa: E731
        N = self.n_out
        self.x = x
        self.h = z(B, N)  # x @ W (+ b)
        if self.has_bn:
            self.mean, self.var, self.invstd = z(N), z(N), z(N)
            self.xhat, self.y = z(B, N), z(B, N)  # normalized h; gamma * xhat + beta
        self.t = z(B, N) if self.tanh else (self.y if self.has_bn else self.h)
        self.tmp = z(B, N)
        self.dh = z(B, N)  # gradient w.r.t. h
        self.dx = z(B, self.n_in)  # gradient w.r.t. x: the previous layer's dt
        return self.t


class Model:
    """Parameters in one flat array, in modelLayout()'s order: the embedding; per hidden layer
    weight, gamma, beta; the output weight (bias) (gamma, beta). The running statistics in a
    second (buffers), the gradients in a third with the parameters' layout."""

    def __init__(self, vocab, preset, dtype=np.float32, block=BLOCK, n_embd=N_EMBD, seed=2147483647,
                 hidden=None, layers=None):
        p = PRESETS[preset] if isinstance(preset, str) else preset
        self.vocab, self.block, self.n_embd, self.dtype = vocab, block, n_embd, dtype
        self.momentum = p["momentum"]
        hidden = hidden or p["hidden"]
        n_in = block * n_embd
        self.layers = []
        for _ in range(layers or p["layers"]):
            self.layers.append(Layer(n_in, hidden, bias=False, bn=True, tanh=True))
            n_in = hidden
        self.layers.append(Layer(n_in, vocab, bias=p["out_bias"], bn=p["out_bn"], tanh=False))

        shapes, buffers = [("C", (vocab, n_embd))], []
        for i, l in enumerate(self.layers):
            shapes.append((f"{i}.W", (l.n_in, l.n_out)))
            if l.has_bias:
                shapes.append((f"{i}.b", (l.n_out,)))
            if l.has_bn:
                shapes += [(f"{i}.gamma", (l.n_out,)), (f"{i}.beta", (l.n_out,))]
                buffers += [(f"{i}.running_mean", (l.n_out,)), (f"{i}.running_var", (l.n_out,))]
        self.params, P = self._flat(shapes)
        self.grads, G = self._flat(shapes)
        self.buffers, R = self._flat(buffers)
        self.shapes = shapes
        self.C, self.dC = P["C"], G["C"]
        for i, l in enumerate(self.layers):
            l.W, l.dW = P[f"{i}.W"], G[f"{i}.W"]
            l.b, l.db = (P[f"{i}.b"], G[f"{i}.b"]) if l.has_bias else (None, None)
            if l.has_bn:
                l.gamma, l.beta = P[f"{i}.gamma"], P[f"{i}.beta"]
                l.dgamma, l.dbeta = G[f"{i}.gamma"], G[f"{i}.beta"]
                l.running_mean, l.running_var = R[f"{i}.running_mean"], R[f"{i}.running_var"]

        # Initialization as initModel: C ~ N(0, 1); weights feeding tanh ~ N(0, 1) * gain /
        # sqrt(fan_in); the output's N(0, 1) / sqrt(fan_in) or N(0, 1) * out_init; biases and
        # betas 0, gammas 1 (the output's out_gamma), running means 0, running variances 1.
        rng = np.random.default_rng(seed)
        self.C[...] = rng.standard_normal(self.C.shape)
        for l in self.layers:
            if l.tanh:
                scale = TANH_GAIN / np.sqrt(l.n_in)
            else:
                scale = 1 / np.sqrt(l.n_in) if p["out_init"] == "kaiming" else p["out_init"]
            l.W[...] = rng.standard_normal(l.W.shape) * scale
            if l.has_bn:
                l.gamma[...] = 1 if l.tanh else p["out_gamma"]
                l.running_var[...] = 1
        self.B = 0

    def _flat(self, shapes):
        flat = np.zeros(sum(int(np.prod(s)) for _, s in shapes), self.dtype)
        views, offset = {}, 0
        for name, shape in shapes:
            n = int(np.prod(shape))
            views[name] = flat[offset:offset + n].reshape(shape)
            offset += n
        return flat, views

    def _allocate(self, B):
        """The training workspace for batches of B rows, reused from step to step."""
        z = lambda *shape: np.zeros(shape, self.dtype)  # noqa: E731
        self.B = B
        self.x0 = z(B, self.block * self.n_embd)  # the embedding's output
        x = self.x0
        for l in self.layers:
            x = l.allocate(B, x, self.dtype)
        V = self.vocab
        self.probs, self.dlogits = z(B, V), z(B, V)
        self.rowmax, self.rowsum = z(B, 1), z(B, 1)
        self.rows = np.arange(B)
        self.onehot = z(B * self.block, V)
        self.scaled = np.zeros_like(self.grads)

    def forward(self, ctx, targets):
        """Training mode: the mean cross-entropy of a batch (ctx [B, block], targets [B]);
        updates the running statistics and keeps what backward needs."""
        B = ctx.shape[0]
        if B != self.B:
            self._allocate(B)
        # Embedding: row ctx[b, k] of C into columns k*E..(k+1)*E of row b.
        np.take(self.C, ctx, axis=0, out=self.x0.reshape(B, self.block, self.n_embd), mode="clip")
        for l in self.layers:
            np.matmul(l.x, l.W, out=l.h)
            if l.has_bias:
                l.h += l.b
            if l.has_bn:
                # Batch statistics per column; the variance is the unbiased one (/ (B - 1)),
                # as makemore's BatchNorm1d (torch.var) computes it, and the running variance
                # tracks that same estimate.
                l.h.mean(axis=0, out=l.mean)
                np.subtract(l.h, l.mean, out=l.xhat)
                np.square(l.xhat, out=l.tmp)
                l.tmp.sum(axis=0, out=l.var)
                l.var /= B - 1
                np.add(l.var, EPS, out=l.invstd)
                np.sqrt(l.invstd, out=l.invstd)
                np.reciprocal(l.invstd, out=l.invstd)
                l.xhat *= l.invstd
                np.multiply(l.xhat, l.gamma, out=l.y)
                l.y += l.beta
                # running = (1 - momentum) * running + momentum * batch
                l.running_mean *= 1 - self.momentum
                l.running_mean += self.momentum * l.mean
                l.running_var *= 1 - self.momentum
                l.running_var += self.momentum * l.var
            if l.tanh:
                np.tanh(l.y if l.has_bn else l.h, out=l.t)
        # Softmax with the row maximum subtracted (so exp cannot overflow), kept for backward.
        logits = self.layers[-1].t
        np.max(logits, axis=1, keepdims=True, out=self.rowmax)
        np.subtract(logits, self.rowmax, out=self.probs)
        np.exp(self.probs, out=self.probs)
        np.sum(self.probs, axis=1, keepdims=True, out=self.rowsum)
        self.probs /= self.rowsum
        # -log softmax(logits)[target] = log(sum exp(logits - max)) + max - logits[target]
        nll = np.log(self.rowsum[:, 0]) + self.rowmax[:, 0] - logits[self.rows, targets]
        return float(nll.mean())

    def backward(self, ctx, targets):
        """Gradients of the last forward's loss into self.grads (every element overwritten)."""
        B = self.B
        # Softmax and the mean cross-entropy together: dL/dlogits = (probs - onehot(target)) / B.
        d = self.dlogits
        np.copyto(d, self.probs)
        d[self.rows, targets] -= 1
        d *= 1 / B
        for l in reversed(self.layers):
            # Here d = dL/dt, the gradient w.r.t. this layer's output; d may be overwritten.
            if l.tanh:
                # tanh' = 1 - tanh^2, from the forward output t.
                np.multiply(l.t, l.t, out=l.tmp)
                np.subtract(1, l.tmp, out=l.tmp)
                d *= l.tmp
            if l.has_bn:
                # y = gamma * xhat + beta: dbeta sums dy over the batch, dgamma sums dy * xhat.
                d.sum(axis=0, out=l.dbeta)
                np.multiply(d, l.xhat, out=l.tmp)
                l.tmp.sum(axis=0, out=l.dgamma)
                # Through the normalization, with g = dy * gamma: h moves xhat directly
                # (invstd * g), through the mean (every row loses invstd * mean(g)), and
                # through the variance. The variance's derivative w.r.t. h is
                # 2 (h - mean) / (B - 1) (the mean's own change drops out, as the deviations
                # sum to zero), and invstd changes by -invstd^3 / 2 per unit of variance, so
                # that path gives -invstd * xhat * sum_b(g * xhat) / (B - 1). With
                # sum_b(g * xhat) = gamma * dgamma and mean(g) = gamma * dbeta / B:
                #   dh = gamma * invstd * (dy - dbeta / B - xhat * dgamma / (B - 1))
                np.multiply(l.xhat, l.dgamma / (B - 1), out=l.dh)
                np.subtract(d, l.dh, out=l.dh)
                l.dh -= l.dbeta / B
                l.dh *= l.gamma * l.invstd
                d = l.dh
            # h = x @ W + b: dW = x^T @ dh, db = sum_b dh, dx = dh @ W^T.
            np.matmul(l.x.T, d, out=l.dW)
            if l.has_bias:
                d.sum(axis=0, out=l.db)
            np.matmul(d, l.W.T, out=l.dx)
            d = l.dx
        # Embedding: each of the B * block rows of dx0 adds into the row of C it was read from.
        # As a product, dC = onehot(ids)^T @ dx0: one small BLAS call, no Python loop (and in
        # numpy < 1.25 much faster than np.add.at).
        ids = ctx.reshape(-1)
        self.onehot.fill(0)
        self.onehot[np.arange(ids.size), ids] = 1
        np.matmul(self.onehot.T, d.reshape(ids.size, self.n_embd), out=self.dC)

    def sgd(self, lr):
        """params -= lr * grads, over the one flat array."""
        np.multiply(self.grads, lr, out=self.scaled)
        self.params -= self.scaled

    def step(self, ctx, targets, lr):
        loss = self.forward(ctx, targets)
        self.backward(ctx, targets)
        self.sgd(lr)
        return loss

    def evaluate(self, X, Y, chunk=16384):
        """Mean cross-entropy over a split in evaluation mode: the running statistics stand in
        for the batch's, nothing is kept or updated."""
        total = 0.0
        for start in range(0, X.shape[0], chunk):
            ctx, targets = X[start:start + chunk], Y[start:start + chunk]
            x = self.C[ctx].reshape(ctx.shape[0], -1)
            for l in self.layers:
                x = x @ l.W
                if l.has_bias:
                    x += l.b
                if l.has_bn:
                    x = (x - l.running_mean) * (l.gamma / np.sqrt(l.running_var + EPS)) + l.beta
                if l.tanh:
                    x = np.tanh(x)
            m = x.max(axis=1, keepdims=True)
            lse = np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]
            total += float((lse - x[np.arange(ctx.shape[0]), targets]).astype(np.float64).sum())
        return total / X.shape[0]


# --- Data and the training loop ---------------------------------------------------------------

def dataset(words, block):
    vocab, splits = examples(words, block)
    return (vocab, *((np.array(X, np.int64).reshape(-1, block), np.array(Y, np.int64))
                     for X, Y in splits))


def main(args):
    rng = np.random.default_rng(2147483647)
    if args.data:
        words = open(args.data).read().splitlines()
        vocab, (Xtr, Ytr), (Xva, Yva), (Xte, Yte) = dataset([w for w in words if w], BLOCK)
    else:
        vocab = 27
        Xtr = rng.integers(0, vocab, (100_000, BLOCK))
        Ytr = rng.integers(0, vocab, 100_000)
    preset = PRESETS[args.preset]
    model = Model(vocab, args.preset)

    total = 200_000 if args.full else args.warmup + args.steps
    start = None
    for i in range(total):
        if i == (0 if args.full else args.warmup):
            start = time.perf_counter()
        ix = rng.integers(0, Xtr.shape[0], BATCH)
        model.step(Xtr[ix], Ytr[ix], LR if i < preset["decay_at"] else LR_FINAL)
    seconds = time.perf_counter() - start
    timed = total if args.full else args.steps

    blas = loaded_blas(numpy_declared_blas())
    result = {
        "preset": args.preset,
        "numpy": np.__version__,
        **blas,
        "threads": blas.get("blas_threads", args.threads),
        "us_per_step": seconds / timed * 1e6,
        "steps": timed,
        "seconds": seconds,
    }
    if args.full and args.data:
        for name, (X, Y) in [("train", (Xtr, Ytr)), ("val", (Xva, Yva)), ("test", (Xte, Yte))]:
            result[name] = model.evaluate(X, Y)
    print(json.dumps(result))


if __name__ == "__main__":
    main(ARGS)
