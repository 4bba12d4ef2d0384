#!/usr/bin/env python3
"""Writes tests/fixtures/state_dicts/*.safetensors: state dicts exactly as PyTorch saves them,
`safetensors.torch.save_file(model.state_dict(), path)`, for three course networks built as
nn.Modules with the parameters of the shared fixtures (tests/fixtures/NAME.safetensors).

Needs: pip install torch safetensors numpy
Usage: python3 scripts/make_state_dict_fixtures.py
"""
import os
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures")


class ModelA(nn.Module):
    def __init__(self):
        super().__init__()
        self.cnn1 = nn.Conv2d(1, 16, kernel_size=5, stride=1, padding=2)
        self.relu1 = nn.ReLU()
        self.maxpool1 = nn.MaxPool2d(kernel_size=2)
        self.cnn2 = nn.Conv2d(16, 32, kernel_size=5, stride=1, padding=2)
        self.relu2 = nn.ReLU()
        self.maxpool2 = nn.MaxPool2d(kernel_size=2)
        self.fc1 = nn.Linear(32 * 7 * 7, 10)


class NetBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 10, 3, 1, 1), nn.MaxPool2d(2, 2), nn.ReLU(inplace=True), nn.BatchNorm2d(10),
            nn.Conv2d(10, 20, 3, 1, 1), nn.MaxPool2d(2, 2), nn.ReLU(inplace=True), nn.BatchNorm2d(20))
        self.fc = nn.Linear(7 * 7 * 20, 10)


class CifarNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc = nn.Linear(128 * 4 * 4, 10)


def main():
    out = os.path.join(FIXTURES, "state_dicts")
    os.makedirs(out, exist_ok=True)
    for name, cls in (("model_a", ModelA), ("net_bn", NetBN), ("cifar_net", CifarNet)):
        model = cls()
        reference = load_file(os.path.join(FIXTURES, f"{name}.safetensors"))
        model.load_state_dict({k: reference[k] for k in model.state_dict()}, strict=True)
        save_file(model.state_dict(), os.path.join(out, f"{name}.safetensors"))
        print("wrote", os.path.normpath(os.path.join(out, f"{name}.safetensors")))


if __name__ == "__main__":
    main()
