#!/usr/bin/env python3
"""The same network and training loop in PyTorch: the baseline `deno task bench` compares
against (it runs this script when `torch` can be imported), on the CPU, or with --device cuda
on a GPU (timed with CUDA synchronisation: torch.cuda.synchronize() before the clock is read).

Written the way makemore part 3 writes it (its own Linear, BatchNorm1d and Tanh modules,
autograd, plain SGD), with the presets of src/model.ts: `lecture` (one hidden block of 200,
output Linear with bias) and `seed` (5 hidden blocks of 200, output BatchNorm with gamma 0.1);
and `wavenet`, makemore part 5's final network as part 5 writes it (Embedding,
FlattenConsecutive, a BatchNorm1d over batch and positions, Sequential): context 8, embeddings
of 24, three blocks of 128, the last layer's weights times 0.1.

  python3 bench/pytorch_baseline.py --preset lecture --steps 2000      # us/step
  python3 bench/pytorch_baseline.py --preset seed --full --data FILE   # 200k steps + losses
  python3 bench/pytorch_baseline.py --preset seed --device cuda        # eager PyTorch on a GPU

Prints one JSON object on the last line, with the BLAS the products ran on ("blas",
"blas_path", "reference_blas": Debian's torch links the generic libblas.so.3, so that is
whatever update-alternatives points it at, which may be the slow netlib reference BLAS).
"""

import argparse
import json
import re
import sys
import time

from baseline_common import examples, loaded_blas

try:
    import torch
except ImportError:
    print(json.dumps({"error": "torch is not installed"}))
    sys.exit(3)


def torch_declared_blas():
    """The BLAS torch's build names (BLAS_INFO in torch.__config__.show()), or None when it
    is "generic": linked against libblas.so.3, whatever that resolves to (Debian's build)."""
    m = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    info = m.group(1).lower() if m else "generic"
    return {"generic": None, "open": "openblas"}.get(info, info)


class Linear:
    def __init__(self, fan_in, fan_out, bias, g):
        self.weight = torch.randn((fan_in, fan_out), generator=g) / fan_in**0.5
        self.bias = torch.zeros(fan_out) if bias else None

    def to(self, device):
        self.weight = self.weight.to(device)
        self.bias = None if self.bias is None else self.bias.to(device)

    def __call__(self, x):
        self.out = x @ self.weight
        if self.bias is not None:
            self.out += self.bias
        return self.out

    def parameters(self):
        return [self.weight] + ([] if self.bias is None else [self.bias])


class BatchNorm1d:
    """Unbiased batch variance, as makemore's (torch.var's default)."""

    def __init__(self, dim, momentum, eps=1e-5):
        self.eps, self.momentum, self.training = eps, momentum, True
        self.gamma, self.beta = torch.ones(dim), torch.zeros(dim)
        self.running_mean, self.running_var = torch.zeros(dim), torch.ones(dim)

    def __call__(self, x):
        # As part 5 writes it: over every dimension but the last (batch, and its positions).
        dim = (0, 1) if x.ndim == 3 else 0
        if self.training:
            xmean, xvar = x.mean(dim, keepdim=True), x.var(dim, keepdim=True)
        else:
            xmean, xvar = self.running_mean, self.running_var
        self.out = self.gamma * (x - xmean) / torch.sqrt(xvar + self.eps) + self.beta
        if self.training:
            with torch.no_grad():
                m = self.momentum
                self.running_mean = (1 - m) * self.running_mean + m * xmean.reshape(-1)
                self.running_var = (1 - m) * self.running_var + m * xvar.reshape(-1)
        return self.out

    def parameters(self):
        return [self.gamma, self.beta]

    def to(self, device):
        for k in ("gamma", "beta", "running_mean", "running_var"):
            setattr(self, k, getattr(self, k).to(device))


class Embedding:
    def __init__(self, vocab, dim, g):
        self.weight = torch.randn((vocab, dim), generator=g)

    def __call__(self, X):
        self.out = self.weight[X]
        return self.out

    def parameters(self):
        return [self.weight]

    def to(self, device):
        self.weight = self.weight.to(device)


class FlattenConsecutive:
    def __init__(self, n):
        self.n = n

    def __call__(self, x):
        B, T, C = x.shape
        x = x.view(B, T // self.n, C * self.n)
        self.out = x.squeeze(1) if x.shape[1] == 1 else x
        return self.out

    def parameters(self):
        return []

    def to(self, device):
        pass



class Tanh:
    def __call__(self, x):
        self.out = torch.tanh(x)
        return self.out

    def parameters(self):
        return []

    def to(self, device):
        pass


PRESETS = {
    "lecture": dict(layers=1, hidden=200, out_bn=False, out_bias=True, momentum=0.001,
                    decay_at=100_000, block=3, n_embd=10),
    "seed": dict(layers=5, hidden=200, out_bn=True, out_bias=False, momentum=0.1,
                 decay_at=150_000, block=3, n_embd=10),
    "wavenet": dict(layers=3, hidden=128, momentum=0.1, decay_at=150_000, block=8, n_embd=24),
}


def build_wavenet(vocab, n_embd, hidden, g, device="cpu"):
    """makemore part 5's model: Embedding, then three FlattenConsecutive(2) -> Linear(no bias)
    -> BatchNorm1d -> Tanh blocks, then the output Linear, its weights times 0.1."""
    p = PRESETS["wavenet"]
    layers = [Embedding(vocab, n_embd, g)]
    fan_in = n_embd
    for _ in range(p["layers"]):
        layers += [FlattenConsecutive(2), Linear(2 * fan_in, hidden, False, g),
                   BatchNorm1d(hidden, p["momentum"]), Tanh()]
        fan_in = hidden
    layers.append(Linear(fan_in, vocab, True, g))
    with torch.no_grad():
        layers[-1].weight *= 0.1
    for layer in layers:
        layer.to(device)
    params = [q for layer in layers for q in layer.parameters()]
    for q in params:
        q.requires_grad = True
    return layers, params


def build(preset, vocab, block, n_embd, hidden, g, device="cpu"):
    p = PRESETS[preset]
    C = torch.randn((vocab, n_embd), generator=g)
    layers, fan_in = [], block * n_embd
    for _ in range(p["layers"]):
        layers += [Linear(fan_in, hidden, False, g), BatchNorm1d(hidden, p["momentum"]), Tanh()]
        fan_in = hidden
    out = Linear(fan_in, vocab, p["out_bias"], g)
    layers.append(out)
    with torch.no_grad():
        for layer in layers[:-1]:
            if isinstance(layer, Linear):
                layer.weight *= 5 / 3
        if p["out_bn"]:
            layers.append(BatchNorm1d(vocab, p["momentum"]))
            layers[-1].gamma *= 0.1
        else:
            out.weight *= 0.01 * fan_in**0.5  # the lecture's W2 = randn * 0.01
    # Drawn on the CPU generator (the same numbers on any device), then moved.
    C = C.to(device)
    for layer in layers:
        layer.to(device)
    params = [C] + [q for layer in layers for q in layer.parameters()]
    for q in params:
        q.requires_grad = True
    return C, layers, params


def forward(C, layers, X):
    # Part 3's MLP looks up and joins its embeddings itself; part 5's has an Embedding layer.
    x = X if C is None else C[X].view(X.shape[0], -1)
    for layer in layers:
        x = layer(x)
    return x


def dataset(words, block):
    vocab, splits = examples(words, block)
    return (vocab, *((torch.tensor(X), torch.tensor(Y)) for X, Y in splits))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", choices=PRESETS, default="lecture")
    ap.add_argument("--steps", type=int, default=2000, help="timed steps (default 2000)")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--full", action="store_true", help="train 200k steps, report losses")
    ap.add_argument("--data", help="names file (default: random tokens, for timing only)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print(json.dumps({"error": "CUDA is not available to this torch"}))
        sys.exit(3)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    preset = PRESETS[args.preset]
    block, n_embd, batch = preset["block"], preset["n_embd"], 32
    g = torch.Generator().manual_seed(2147483647)
    if args.data:
        words = open(args.data).read().splitlines()
        vocab, (Xtr, Ytr), (Xva, Yva), (Xte, Yte) = dataset([w for w in words if w], block)
    else:
        vocab = 27
        Xtr = torch.randint(0, vocab, (100_000, block), generator=g)
        Ytr = torch.randint(0, vocab, (100_000,), generator=g)
    if args.preset == "wavenet":
        layers, params = build_wavenet(vocab, n_embd, preset["hidden"], g, args.device)
        C = None
    else:
        C, layers, params = build(args.preset, vocab, block, n_embd, preset["hidden"], g,
                                  args.device)
    Xtr, Ytr = Xtr.to(args.device), Ytr.to(args.device)
    if args.data:
        Xva, Yva, Xte, Yte = (t.to(args.device) for t in (Xva, Yva, Xte, Yte))
    # The minibatch indices come from a generator on the device, as a user would draw them.
    gd = g if not cuda else torch.Generator(device=args.device).manual_seed(2147483647)

    def step(i):
        ix = torch.randint(0, Xtr.shape[0], (batch,), generator=gd, device=args.device)
        loss = torch.nn.functional.cross_entropy(forward(C, layers, Xtr[ix]), Ytr[ix])
        for q in params:
            q.grad = None
        loss.backward()
        lr = 0.1 if i < preset["decay_at"] else 0.01
        for q in params:
            q.data += -lr * q.grad
        return loss

    total = 200_000 if args.full else args.warmup + args.steps
    start = None
    for i in range(total):
        if i == (0 if args.full else args.warmup):
            sync()
            start = time.perf_counter()
        step(i)
    sync()
    seconds = time.perf_counter() - start
    timed = total if args.full else args.steps
    result = {
        "preset": args.preset,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        # The BLAS the matrix products ran on, and (when it can tell) its own thread count.
        **({"blas": "cuBLAS"} if cuda else loaded_blas(torch_declared_blas())),
        "threads": torch.get_num_threads(),
        "us_per_step": seconds / timed * 1e6,
        "steps": timed,
        "seconds": seconds,
    }
    if args.full and args.data:
        for layer in layers:
            if isinstance(layer, BatchNorm1d):
                layer.training = False
        with torch.no_grad():
            for name, (X, Y) in [("train", (Xtr, Ytr)), ("val", (Xva, Yva)), ("test", (Xte, Yte))]:
                result[name] = torch.nn.functional.cross_entropy(forward(C, layers, X), Y).item()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
