#!/usr/bin/env python3
"""What loading your own data costs, staticnet beside PyTorch, in one run on one machine.

Needs: pip install torch torchvision pillow   (and a Rust toolchain)

Usage: python3 bench/compare_data.py [--epochs 3] [--threads 2]

Runs `cargo run --release --example data-bench -- --json` (epochs of Model A from memory, with
augmentation on 2 worker threads, and streamed from a folder of the bundled MNIST as PNGs on 2
worker threads; it writes the folder to target/data-bench), then bench/imagefolder_torch.py on the
same folder (torchvision's ImageFolder + DataLoader(num_workers=2)), and prints the ratios the
data issue sets goals for: augmentation ≤ 1.15× and streaming ≤ 1.2× the epoch from memory, and
streaming ≤ 0.5× PyTorch's.
"""
import argparse
import json
import os
import subprocess
import sys

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--threads", type=int, default=2)
args = p.parse_args()
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
ours = json.loads(subprocess.run(["cargo", "run", "--quiet", "--release", "--example", "data-bench", "--", "--json", "--epochs", str(args.epochs)],
                                 cwd=root, env=env, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
torch_out = subprocess.run([sys.executable, os.path.join(root, "bench", "imagefolder_torch.py"), os.path.join(root, "target", "data-bench"),
                            "--epochs", str(args.epochs), "--threads", str(args.threads)], check=True, capture_output=True, text=True)
theirs = json.loads(torch_out.stdout.strip().splitlines()[-1])

rows = [
    ("epoch from memory", ours["memory"], None, None),
    ("epoch with augmentation", ours["augment"], ours["augment"] / ours["memory"], 1.15),
    ("epoch streamed from PNG files", ours["stream"], ours["stream"] / ours["memory"], 1.2),
    ("PyTorch ImageFolder + DataLoader(num_workers=2)", theirs["torch_stream"], None, None),
    ("streamed, staticnet / PyTorch", None, ours["stream"] / theirs["torch_stream"], 0.5),
]
print(f"{cpu}, {args.threads} threads, median of {args.epochs} epochs after one warm-up, 8,000 MNIST images, Model A, batch 100")
met = True
for name, seconds, ratio, goal in rows:
    s = f"{seconds:7.3f} s" if seconds is not None else " " * 9
    r = f"  ratio {ratio:.2f} (goal ≤ {goal})" if ratio is not None else ""
    if ratio is not None and ratio > goal:
        met = False
        r += "  MISSED"
    print(f"{name:<50} {s}{r}")
print("every goal met" if met else "some goals missed")
