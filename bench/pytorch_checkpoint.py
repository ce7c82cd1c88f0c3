#!/usr/bin/env python3
"""A model.safetensors of this project in PyTorch: torch.nn.Sequential built from the layers its
metadata lists (or, for checkpoints written before the list, from the MLP's sizes), run in
evaluation mode over every (context, next character) of a names file. Prints one JSON object:
{"loss": mean cross-entropy, "examples": count}.

  python3 bench/pytorch_checkpoint.py out/model.safetensors data/names.txt

The reader follows the safetensors format (an 8-byte little-endian header size, a JSON header, the
raw data) with nothing but the standard library and torch; weights are stored [fan_in, fan_out],
as makemore's x @ W, so torch.nn.Linear takes their transpose. tests/pytorch_test.ts checks that
this loss equals the project's own evaluation of the same checkpoint.
"""

import json
import struct
import sys

import torch


def read_safetensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, t in header.items():
        begin, end = t["data_offsets"]
        raw = bytearray(data[8 + n + begin:8 + n + end])
        tensors[name] = torch.frombuffer(raw, dtype=torch.float32).reshape(t["shape"])
    return tensors, meta


class FlattenConsecutive(torch.nn.Module):
    """makemore part 5's: n consecutive positions joined, [B, T, C] -> [B, T / n, C * n]."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def forward(self, x):
        B, T, C = x.shape
        x = x.view(B, T // self.n, C * self.n)
        return x.squeeze(1) if x.shape[1] == 1 else x


class BatchNorm1d(torch.nn.Module):
    """Evaluation mode over every dimension but the last, with the running statistics."""

    def __init__(self, t, prefix, eps):
        super().__init__()
        self.gamma, self.beta = t[prefix + ".bn.gamma"], t[prefix + ".bn.beta"]
        self.mean, self.var = t[prefix + ".bn.running_mean"], t[prefix + ".bn.running_var"]
        self.eps = eps

    def forward(self, x):
        return self.gamma * (x - self.mean) / torch.sqrt(self.var + self.eps) + self.beta


def mlp(cfg):
    """makemore part 3's MLP as a list (src/layers.ts mlp)."""
    hidden = [{"kind": "linear", "out": cfg["nHidden"], "bias": not cfg["batchNorm"]}]
    hidden += [{"kind": "batchnorm"}] if cfg["batchNorm"] else []
    hidden += [{"kind": "tanh"}]
    out = [{"kind": "linear", "out": "vocab", "bias": cfg["outputBias"]}]
    out += [{"kind": "batchnorm"}] if cfg["outputBatchNorm"] else []
    return ([{"kind": "embedding", "dim": cfg["nEmbd"]},
             {"kind": "flatten", "n": cfg["blockSize"]}] + hidden * cfg["nLayers"] + out)


def network(cfg, t):
    layers = cfg.get("layers") or mlp(cfg)
    linears = sum(1 for l in layers if l["kind"] == "linear")
    modules, block = [], -1
    for l in layers:
        kind = l["kind"]
        prefix = "output" if block == linears - 1 else f"hidden.{block}"
        if kind == "embedding":
            modules.append(torch.nn.Embedding.from_pretrained(t["embedding.weight"]))
        elif kind == "flatten":
            modules.append(FlattenConsecutive(l["n"]))
        elif kind == "linear":
            block += 1
            prefix = "output" if block == linears - 1 else f"hidden.{block}"
            w = t[prefix + ".weight"]
            linear = torch.nn.Linear(w.shape[0], w.shape[1], bias=l["bias"])
            with torch.no_grad():
                linear.weight.copy_(w.T)
                if l["bias"]:
                    linear.bias.copy_(t[prefix + ".bias"])
            modules.append(linear)
        elif kind == "batchnorm":
            modules.append(BatchNorm1d(t, prefix, cfg["bnEps"]))
        elif kind == "tanh":
            modules.append(torch.nn.Tanh())
        elif kind == "relu":
            modules.append(torch.nn.ReLU())
    return torch.nn.Sequential(*modules)


def main():
    ckpt, data = sys.argv[1:3]
    t, meta = read_safetensors(ckpt)
    cfg, vocab = json.loads(meta["config"]), json.loads(meta["vocab"])
    model = network(cfg, t).eval()
    stoi = {c: i for i, c in enumerate(vocab)}
    X, Y = [], []
    for w in open(data).read().split():
        ctx = [0] * cfg["blockSize"]
        for c in w + ".":
            X.append(ctx)
            Y.append(stoi[c])
            ctx = ctx[1:] + [stoi[c]]
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(torch.tensor(X)), torch.tensor(Y)).item()
    print(json.dumps({"loss": loss, "examples": len(Y)}))


if __name__ == "__main__":
    main()
