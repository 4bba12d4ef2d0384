#!/usr/bin/env python3
"""PyTorch's equivalent of `cargo run --release --example mnist`, for comparing time and accuracy
on the same machine: Model A on the bundled MNIST subset, 5 epochs of batches of 100 with SGD
(lr 0.05, momentum 0.9), validated on the test set after each epoch, then the test accuracy.

Needs: pip install torch numpy
Usage: python3 bench/mnist_torch.py [--data-dir data/mnist-10k] [--threads 2] [--seed 0] [--adam]
"""
import argparse, gzip, os, struct, time
import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(dir, prefix):
    find = lambda n: os.path.join(dir, n) if os.path.exists(os.path.join(dir, n)) else os.path.join(dir, n + ".gz")
    x = read_idx(find(f"{prefix}-images-idx3-ubyte")).astype(np.float32) / 255.0
    y = read_idx(find(f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=os.path.join(HERE, "..", "data", "mnist-10k"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--adam", action="store_true", help="Adam lr 1e-3 instead of SGD lr 0.05 momentum 0.9")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    xtr, ytr = load(args.data_dir, "train")
    xte, yte = load(args.data_dir, "t10k")
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xtr, ytr), batch_size=100, shuffle=True)
    test = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xte, yte), batch_size=1000)
    model = ModelA()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3) if args.adam else torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    crit = nn.CrossEntropyLoss()

    def evaluate():
        model.eval()
        correct, loss = 0, 0.0
        with torch.no_grad():
            for x, y in test:
                out = model(x)
                loss += crit(out, y).item() * len(y)
                correct += (out.argmax(1) == y).sum().item()
        return loss / len(yte), correct / len(yte)

    for epoch in range(args.epochs):
        t = time.perf_counter()
        model.train()
        tl, tc, n = 0.0, 0, 0
        for x, y in train:
            opt.zero_grad()
            out = model(x)
            loss = crit(out, y)
            loss.backward()
            opt.step()
            tl += loss.item() * len(y); tc += (out.argmax(1) == y).sum().item(); n += len(y)
        vl, va = evaluate()
        print(f"epoch {epoch + 1}/{args.epochs}  train loss {tl / n:.4f} acc {100 * tc / n:.2f}%  val loss {vl:.4f} acc {100 * va:.2f}%  {time.perf_counter() - t:.1f} s")
    _, acc = evaluate()
    print(f"total time: {time.perf_counter() - start:.1f} s")
    print(f"test accuracy: {100 * acc:.2f}%")


if __name__ == "__main__":
    main()
