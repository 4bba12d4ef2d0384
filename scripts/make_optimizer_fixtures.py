#!/usr/bin/env python3
"""Writes tests/fixtures/optimizers.safetensors: PyTorch's optimizer updates on a Linear(3, 2),
for the settings the shared fixtures do not cover.

Needs: pip install torch safetensors numpy
Usage: python3 scripts/make_optimizer_fixtures.py

Contents: `x` [4, 3] and `dy` [4, 2] (step t's input and output gradient: the loss of step t is
sum(linear(x[t]) * dy[t])), `weight` / `bias` (the initial parameters), and for each setting
NAME, `NAME.weight` / `NAME.bias` [4, ...] (the parameters after each of the four steps).
The metadata holds every setting's arguments.
"""
import json, os
import torch
from safetensors.torch import save_file

SETTINGS = {
    "sgd": ("SGD", dict(lr=0.1)),
    "sgd_momentum_dampening": ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    "sgd_nesterov": ("SGD", dict(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.05)),
    "adam_amsgrad": ("Adam", dict(lr=0.01, betas=(0.8, 0.9), eps=1e-6, amsgrad=True)),
    "adamw": ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    "adamw_amsgrad": ("AdamW", dict(lr=0.02, betas=(0.85, 0.95), weight_decay=0.2, amsgrad=True)),
}


def main():
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(4, 3, generator=g)
    dy = torch.randn(4, 2, generator=g)
    init = torch.nn.Linear(3, 2)
    with torch.no_grad():
        init.weight.copy_(torch.randn(2, 3, generator=g))
        init.bias.copy_(torch.randn(2, generator=g))
    out = {"x": x, "dy": dy, "weight": init.weight.detach().clone(), "bias": init.bias.detach().clone()}
    for name, (cls, kwargs) in SETTINGS.items():
        lin = torch.nn.Linear(3, 2)
        lin.load_state_dict(init.state_dict())
        opt = getattr(torch.optim, cls)(lin.parameters(), **kwargs)
        ws, bs = [], []
        for t in range(4):
            opt.zero_grad()
            (lin(x[t : t + 1]) * dy[t : t + 1]).sum().backward()
            opt.step()
            ws.append(lin.weight.detach().clone())
            bs.append(lin.bias.detach().clone())
        out[f"{name}.weight"] = torch.stack(ws)
        out[f"{name}.bias"] = torch.stack(bs)
    meta = {name: json.dumps({"optimizer": cls, **kwargs}) for name, (cls, kwargs) in SETTINGS.items()}
    meta["torch"] = torch.__version__
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "optimizers.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, path, metadata=meta)
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
