#!/usr/bin/env python3
"""Writes tests/fixtures/inference.safetensors, the references of tests/inference.rs:

- `<net>.softmax`: torch.softmax(logits_eval, dim=1) of the fixture networks' eval-mode logits
  (tests/fixtures/<net>.safetensors), and `<net>.top3`: torch.topk(that, 3).indices (int64);
- `<net>.act.<module>`: what a forward hook on each named module sees (its output, cloned when
  the hook runs, so an in-place ReLU after it does not change it) in an eval-mode forward of the
  fixture's input with its initial parameters, for its first sample (of ResNetMini, the modules
  of KEEP only: every kind of layer and container, not all of them). A module called twice
  (BasicBlock's `relu`) keeps its last call, as a hook storing its output does;
- `grid.*`: torchvision.utils.make_grid(..., normalize=True) then save_image's conversion to bytes
  (`mul(255).add_(0.5).clamp_(0, 255)` to uint8), stored as float32 [H, W, 3] for a few inputs.

Needs: pip install torch torchvision safetensors
Usage: python3 scripts/make_inference_fixtures.py
"""
import os

import torch
import torch.nn as nn
import torchvision
from safetensors.torch import load_file, save_file
from torchvision.models.resnet import BasicBlock

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

    def forward(self, x):
        x = self.maxpool1(self.relu1(self.cnn1(x)))
        x = self.maxpool2(self.relu2(self.cnn2(x)))
        return self.fc1(x.view(x.size(0), -1))


class NetBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 10, 3, 1, 1), nn.MaxPool2d(2, 2), nn.ReLU(inplace=True), nn.BatchNorm2d(10),
            nn.Conv2d(10, 20, 3, 1, 1), nn.MaxPool2d(2, 2), nn.ReLU(inplace=True), nn.BatchNorm2d(20))
        self.fc = nn.Linear(7 * 7 * 20, 10)

    def forward(self, x):
        x = self.features(x)
        return self.fc(x.view(x.size(0), -1))


class ResNetMini(nn.Module):
    """torchvision's ResNet-18 topology at widths 8/16/32/64, without the max pooling."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        widths = [8, 16, 32, 64]
        inplanes = 8
        for i, planes in enumerate(widths):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or inplanes != planes:
                down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(inplanes, planes, stride, down), BasicBlock(planes, planes)))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


KEEP = {"resnet_mini": {"conv1", "bn1", "relu", "layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu", "layer1.0", "layer1",
                       "layer2.0.conv1", "layer2.0.downsample.0", "layer2.0.downsample", "layer2.0.bn2", "layer2.0",
                       "layer4.1.conv2", "layer4", "avgpool", "fc"}}


def network_refs(name, model, out):
    fx = load_file(os.path.join(FIXTURES, f"{name}.safetensors"))
    model.load_state_dict({k: fx[k] for k in model.state_dict()})
    model.eval()
    acts = {}
    for mname, module in model.named_modules():
        if mname:
            module.register_forward_hook(lambda m, i, o, mname=mname: acts.__setitem__(mname, o.detach().clone()))
    with torch.no_grad():
        logits = model(fx["input"])
    torch.testing.assert_close(logits, fx["logits_eval"], rtol=1e-4, atol=1e-5)
    probs = torch.softmax(fx["logits_eval"], dim=1)
    out[f"{name}.softmax"] = probs.contiguous()
    out[f"{name}.top3"] = torch.topk(probs, 3, dim=1).indices.contiguous()
    for mname, a in acts.items():
        if name not in KEEP or mname in KEEP[name]:
            out[f"{name}.act.{mname}"] = a[:1].contiguous()


def grid_bytes(tensor, **kw):
    grid = torchvision.utils.make_grid(tensor, normalize=True, **kw)
    return grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).to(torch.float32).contiguous()


def main():
    torch.manual_seed(0)
    out = {}
    network_refs("model_a", ModelA(), out)
    network_refs("net_bn", NetBN(), out)
    network_refs("resnet_mini", ResNetMini(), out)
    g = torch.randn(6, 1, 5, 7)
    out["grid.input"] = g
    out["grid.whole"] = grid_bytes(g, nrow=4, padding=1)
    out["grid.each"] = grid_bytes(g, nrow=3, padding=2, pad_value=1.0, scale_each=True)
    rgb = torch.randn(5, 3, 4, 4) * 3 + 1
    out["grid.rgb_input"] = rgb
    out["grid.rgb"] = grid_bytes(rgb)
    path = os.path.join(FIXTURES, "inference.safetensors")
    save_file(out, path, metadata={"torch": torch.__version__, "torchvision": torchvision.__version__})
    print(f"wrote {path}: {len(out)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
