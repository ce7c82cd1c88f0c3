#!/usr/bin/env python3
"""N networks of one shape trained at once in PyTorch, as an expert would on one device: the
baseline of `deno task bench --replicas`. Every weight is stacked over the networks ([N, in,
out]) and the products are torch.bmm, the BatchNorm statistics are taken per network over its
own batch, each network draws its own minibatches and has its own learning rate; one autograd
graph, one backward and one SGD update per step for all of them. The MLP presets of
src/model.ts (`lecture`, `seed`; part 5's WaveNet has no batched baseline here).

  python3 bench/pytorch_batched.py --preset lecture --replicas 16 --steps 300

Prints one JSON object on the last line: us per step of the group, the aggregate model-steps
per second, and the BLAS the products ran on (see pytorch_baseline.py).
"""

import argparse
import json
import sys
import time

from baseline_common import loaded_blas

try:
    import torch
except ImportError:
    print(json.dumps({"error": "torch is not installed"}))
    sys.exit(3)

from pytorch_baseline import PRESETS, torch_declared_blas


def build(preset, n, vocab, g, device):
    """Stacked parameters of n networks: the embedding table, then per hidden block a weight
    and its BatchNorm's gamma and beta, then the output layer (and its BatchNorm)."""
    p = PRESETS[preset]
    block, n_embd, hidden = p["block"], p["n_embd"], p["hidden"]
    params = {"C": torch.randn((n, vocab, n_embd), generator=g)}
    fan_in = block * n_embd
    for i in range(p["layers"]):
        params[f"W{i}"] = torch.randn((n, fan_in, hidden), generator=g) * (5 / 3) / fan_in**0.5
        params[f"g{i}"] = torch.ones((n, 1, hidden))
        params[f"b{i}"] = torch.zeros((n, 1, hidden))
        fan_in = hidden
    params["Wo"] = torch.randn((n, fan_in, vocab), generator=g) / fan_in**0.5
    if p["out_bn"]:
        params["go"] = torch.full((n, 1, vocab), 0.1)
        params["bo"] = torch.zeros((n, 1, vocab))
    else:
        params["Wo"] *= 0.01 * fan_in**0.5
        params["bias"] = torch.zeros((n, 1, vocab))
    running = {}
    for name in [k for k in params if k.startswith("g")]:
        dim = params[name].shape[-1]
        running[name] = [torch.zeros((n, 1, dim), device=device), torch.ones((n, 1, dim),
                                                                                 device=device)]
    for k in params:
        params[k] = params[k].to(device).requires_grad_()
    return params, running


def batchnorm(x, gamma, beta, run, momentum):
    mean, var = x.mean(1, keepdim=True), x.var(1, keepdim=True)
    with torch.no_grad():
        run[0].mul_(1 - momentum).add_(momentum * mean)
        run[1].mul_(1 - momentum).add_(momentum * var)
    return gamma * (x - mean) / torch.sqrt(var + 1e-5) + beta


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", default="lecture")
    ap.add_argument("--replicas", type=int, default=16)
    ap.add_argument("--steps", type=int, default=300, help="timed steps (default 300)")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    if args.preset not in PRESETS or args.preset == "wavenet":
        print(json.dumps({"error": f"no batched baseline for {args.preset}"}))
        sys.exit(4)
    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print(json.dumps({"error": "CUDA is not available to this torch"}))
        sys.exit(3)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    p = PRESETS[args.preset]
    n, vocab, batch, block = args.replicas, 27, 32, p["block"]
    g = torch.Generator().manual_seed(2147483647)
    Xtr = torch.randint(0, vocab, (100_000, block), generator=g).to(args.device)
    Ytr = torch.randint(0, vocab, (100_000,), generator=g).to(args.device)
    params, running = build(args.preset, n, vocab, g, args.device)
    lrs = torch.linspace(0.05, 0.2, n, device=args.device).view(n, 1, 1)
    gd = g if not cuda else torch.Generator(device=args.device).manual_seed(2147483647)
    rows = torch.arange(n, device=args.device).view(n, 1)

    def step():
        ix = torch.randint(0, Xtr.shape[0], (n, batch), generator=gd, device=args.device)
        X, Y = Xtr[ix], Ytr[ix]  # [n, batch, block], [n, batch]
        x = params["C"][rows.unsqueeze(-1), X].view(n, batch, -1)
        for i in range(p["layers"]):
            h = torch.bmm(x, params[f"W{i}"])
            x = torch.tanh(batchnorm(h, params[f"g{i}"], params[f"b{i}"], running[f"g{i}"],
                                     p["momentum"]))
        logits = torch.bmm(x, params["Wo"])
        if p["out_bn"]:
            logits = batchnorm(logits, params["go"], params["bo"], running["go"], p["momentum"])
        else:
            logits = logits + params["bias"]
        # The sum of the networks' mean losses: each network's gradient is its own.
        loss = torch.nn.functional.cross_entropy(logits.reshape(n * batch, vocab),
                                                 Y.reshape(-1), reduction="sum") / batch
        for q in params.values():
            q.grad = None
        loss.backward()
        with torch.no_grad():
            for q in params.values():
                q -= lrs.view((n,) + (1,) * (q.dim() - 1)) * q.grad

    for _ in range(args.warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    seconds = time.perf_counter() - start
    us = seconds / args.steps * 1e6
    print(json.dumps({
        "preset": args.preset,
        "replicas": n,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        **({"blas": "cuBLAS"} if cuda else loaded_blas(torch_declared_blas())),
        "threads": torch.get_num_threads(),
        "us_per_step": us,
        "model_steps_per_s": n / seconds * args.steps,
    }))


if __name__ == "__main__":
    main()
