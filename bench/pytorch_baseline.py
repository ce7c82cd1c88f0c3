#!/usr/bin/env python3
"""The same network and training loop in PyTorch on the CPU: the baseline `deno task bench`
compares against (it runs this script when `torch` can be imported).

Written the way makemore part 3 writes it (its own Linear, BatchNorm1d and Tanh modules,
autograd, plain SGD), with the presets of src/model.ts: `lecture` (one hidden block of 200,
output Linear with bias) and `seed` (5 hidden blocks of 200, output BatchNorm with gamma 0.1).

  python3 bench/pytorch_baseline.py --preset lecture --steps 2000      # us/step
  python3 bench/pytorch_baseline.py --preset seed --full --data FILE   # 200k steps + losses

Prints one JSON object on the last line, with the BLAS the products ran on ("blas",
"blas_path", "reference_blas": Debian's torch links the generic libblas.so.3, so that is
whatever update-alternatives points it at, which may be the slow netlib reference BLAS).
"""

import argparse
import ctypes
import json
import math
import os
import random
import re
import sys
import time

try:
    import torch
except ImportError:
    print(json.dumps({"error": "torch is not installed"}))
    sys.exit(3)


# --- Which BLAS is loaded (the same code as in numpy_baseline.py) -----------------------------

def _mapped_files():
    """[(start, end, path)] of the files mapped into this process; the kernel gives each
    path with its symbolic links resolved (alternatives included)."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(None, 5)
            if len(fields) == 6 and fields[5].startswith("/"):
                lo, hi = (int(a, 16) for a in fields[0].split("-"))
                out.append((lo, hi, os.path.realpath(fields[5].strip())))
    return out


def blas_kind(path):
    """The BLAS a shared object's path names, or None."""
    low, name = path.lower(), os.path.basename(path).lower()
    for kind, pattern in (("mkl", r"mkl"), ("openblas", r"openblas"), ("blis", r"blis"),
                          ("atlas", r"atlas")):
        if re.search(pattern, low):
            return kind
    # Debian's netlib reference BLAS is .../blas/libblas.so.3 (from the libblas3 package).
    if name.startswith(("libblas.so", "libcblas.so", "librefblas.so")):
        return "netlib reference BLAS"
    return None


def loaded_blas(declared=None):
    """{"blas", "blas_path", "reference_blas", "blas_threads", "blas_config"} for the BLAS this
    process uses. `declared` is what the library's build says it links ("openblas", "mkl",
    ...), or None when it links whatever libblas.so.3 resolves to at run time (Debian's
    builds): then the object that provides libblas.so.3's sgemm_ decides. Call it after a
    matrix product, so the BLAS is loaded and initialized."""
    maps = _mapped_files()
    path, handle = None, None
    try:
        handle = ctypes.CDLL("libblas.so.3", mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except OSError:
        pass  # not loaded: a build with its own copy (e.g. a wheel's bundled OpenBLAS)
    if declared is None and handle is not None:
        try:
            addr = ctypes.cast(handle.sgemm_, ctypes.c_void_p).value
            path = next((p for lo, hi, p in maps if lo <= addr < hi), None)
        except AttributeError:
            pass
    if path is None:  # the first mapped object of the declared kind, or of any known kind
        kinds = [(p, blas_kind(p)) for _, _, p in maps]
        path = next((p for p, k in kinds if k and (declared is None or k == declared)), None)
    kind = blas_kind(path) if path else declared
    info = {"blas": kind or "unknown", "blas_path": path,
            "reference_blas": kind == "netlib reference BLAS"}
    # Ask the library itself how many threads it runs, and (OpenBLAS) how it was built.
    lib = None
    if path:
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        except OSError:
            pass
    if kind == "openblas" and lib is not None:
        try:
            lib.openblas_get_config.restype = ctypes.c_char_p
            info["blas_config"] = config = lib.openblas_get_config().decode()
            # The threads it splits a product over (small ones always run on one). An OpenMP
            # build follows omp_get_max_threads() (so torch.set_num_threads) at each such
            # product; openblas_get_num_threads() is only updated then, so may be stale.
            if "USE_OPENMP" in config:
                info["blas_threads"] = lib.omp_get_max_threads()
            else:
                info["blas_threads"] = lib.openblas_get_num_threads()
        except AttributeError:
            pass
    elif kind == "mkl" and lib is not None:
        try:
            info["blas_threads"] = lib.mkl_get_max_threads()
        except AttributeError:
            pass
    elif kind == "netlib reference BLAS":
        info["blas_threads"] = 1  # the reference BLAS never threads
    return info


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
        if self.training:
            xmean, xvar = x.mean(0, keepdim=True), x.var(0, keepdim=True)
        else:
            xmean, xvar = self.running_mean, self.running_var
        self.out = self.gamma * (x - xmean) / torch.sqrt(xvar + self.eps) + self.beta
        if self.training:
            with torch.no_grad():
                m = self.momentum
                self.running_mean = (1 - m) * self.running_mean + m * xmean
                self.running_var = (1 - m) * self.running_var + m * xvar
        return self.out

    def parameters(self):
        return [self.gamma, self.beta]


class Tanh:
    def __call__(self, x):
        self.out = torch.tanh(x)
        return self.out

    def parameters(self):
        return []


PRESETS = {
    "lecture": dict(layers=1, hidden=200, out_bn=False, out_bias=True, momentum=0.001,
                    decay_at=100_000),
    "seed": dict(layers=5, hidden=200, out_bn=True, out_bias=False, momentum=0.1,
                 decay_at=150_000),
}


def build(preset, vocab, block, n_embd, hidden, g):
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
    params = [C] + [q for layer in layers for q in layer.parameters()]
    for q in params:
        q.requires_grad = True
    return C, layers, params


def forward(C, layers, X):
    x = C[X].view(X.shape[0], -1)
    for layer in layers:
        x = layer(x)
    return x


def dataset(words, block):
    chars = sorted(set("".join(words)))
    stoi = {s: i + 1 for i, s in enumerate(chars)}
    stoi["."] = 0

    def build_split(ws):
        X, Y = [], []
        for w in ws:
            context = [0] * block
            for ch in w + ".":
                X.append(context)
                Y.append(stoi[ch])
                context = context[1:] + [stoi[ch]]
        return torch.tensor(X), torch.tensor(Y)

    random.seed(42)
    words = words[:]
    random.shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return len(stoi), build_split(words[:n1]), build_split(words[n1:n2]), build_split(words[n2:])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", choices=PRESETS, default="lecture")
    ap.add_argument("--steps", type=int, default=2000, help="timed steps (default 2000)")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--full", action="store_true", help="train 200k steps, report losses")
    ap.add_argument("--data", help="names file (default: random tokens, for timing only)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    block, n_embd, batch = 3, 10, 32
    g = torch.Generator().manual_seed(2147483647)
    if args.data:
        words = open(args.data).read().splitlines()
        vocab, (Xtr, Ytr), (Xva, Yva), (Xte, Yte) = dataset([w for w in words if w], block)
    else:
        vocab = 27
        Xtr = torch.randint(0, vocab, (100_000, block), generator=g)
        Ytr = torch.randint(0, vocab, (100_000,), generator=g)
    preset = PRESETS[args.preset]
    C, layers, params = build(args.preset, vocab, block, n_embd, preset["hidden"], g)

    def step(i):
        ix = torch.randint(0, Xtr.shape[0], (batch,), generator=g)
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
            start = time.perf_counter()
        step(i)
    seconds = time.perf_counter() - start
    timed = total if args.full else args.steps
    result = {
        "preset": args.preset,
        "torch": torch.__version__,
        # The BLAS the matrix products ran on, and (when it can tell) its own thread count.
        **loaded_blas(torch_declared_blas()),
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
