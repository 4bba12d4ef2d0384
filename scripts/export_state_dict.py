#!/usr/bin/env python3
"""Exports a PyTorch model's state_dict to a safetensors file that staticnet loads with
`model.load(path, true)` (the same names; float32 parameters, int64 batch-norm counters).

Needs: pip install torch safetensors   (and torchvision for torchvision models)

Usage:
  # a torchvision model, with its pretrained weights (downloaded by torchvision) or none
  python3 scripts/export_state_dict.py torchvision:resnet18 --weights DEFAULT resnet18.safetensors
  python3 scripts/export_state_dict.py torchvision:alexnet --weights none alexnet.safetensors
  # a state_dict saved with torch.save(model.state_dict(), "model.pth")
  python3 scripts/export_state_dict.py model.pth model.safetensors
  # a whole module saved with torch.save(model, "model.pt")
  python3 scripts/export_state_dict.py model.pt model.safetensors --whole-module
"""
import argparse
import sys

import torch
from safetensors.torch import save_file


def load_state_dict(source, weights, whole_module):
    if source.startswith("torchvision:"):
        import torchvision

        name = source.split(":", 1)[1]
        model = torchvision.models.get_model(name, weights=None if weights.lower() == "none" else weights)
        return model.state_dict()
    obj = torch.load(source, map_location="cpu", weights_only=not whole_module)
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        return obj["state_dict"]  # a training checkpoint
    if isinstance(obj, dict):
        return obj
    sys.exit(f"{source}: neither a state_dict nor a module (a {type(obj).__name__})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="torchvision:NAME, or a .pth/.pt file")
    ap.add_argument("output", help="the .safetensors file to write")
    ap.add_argument("--weights", default="DEFAULT", help="torchvision weights: DEFAULT, a name like IMAGENET1K_V1, or none")
    ap.add_argument("--whole-module", action="store_true", help="the file holds a pickled module (unsafe: runs its code)")
    args = ap.parse_args()

    state = load_state_dict(args.source, args.weights, args.whole_module)
    out = {}
    for key, value in state.items():
        if not torch.is_tensor(value):
            sys.exit(f"{key}: not a tensor ({type(value).__name__})")
        if value.is_floating_point() and value.dtype != torch.float32:
            value = value.float()  # staticnet computes in float32
        # Shared or strided tensors are written as plain contiguous copies.
        out[key] = value.detach().cpu().contiguous().clone()
    save_file(out, args.output, metadata={"format": "pt", "source": args.source})
    params = sum(v.numel() for k, v in out.items() if v.is_floating_point() and "running_" not in k)
    print(f"wrote {args.output}: {len(out)} tensors, {params:,} parameters")


if __name__ == "__main__":
    main()
