#!/usr/bin/env python3
"""PyTorch's side of bench/compare_data.py: epochs of the course's Model A (batch 100, SGD lr
0.05 momentum 0.9) on a folder of PNG digits read by torchvision's ImageFolder through
DataLoader(num_workers=2, shuffle=True), the way the course's notebooks load data.

Usage: python3 bench/imagefolder_torch.py ROOT [--epochs 3] [--threads 2] [--workers 2]
Prints {"torch_stream": seconds} (the median epoch after one warm-up epoch).
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

p = argparse.ArgumentParser()
p.add_argument("root")
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--workers", type=int, default=2)
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

data = datasets.ImageFolder(args.root, transform=transforms.Compose([transforms.Grayscale(), transforms.ToTensor()]))
loader = DataLoader(data, batch_size=100, shuffle=True, num_workers=args.workers, persistent_workers=args.workers > 0)
model = nn.Sequential(
    nn.Conv2d(1, 16, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
times = []
for epoch in range(args.epochs + 1):
    start = time.perf_counter()
    for x, y in loader:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    if epoch > 0:
        times.append(time.perf_counter() - start)
print(json.dumps({"torch_stream": statistics.median(times)}))
