#!/usr/bin/env python3
"""staticnet against PyTorch on the course's workloads, in one run on one machine.

Needs: pip install torch torchvision   (and a Rust toolchain: it runs `cargo run --release --example bench`)

Usage: python3 bench/compare.py [--threads 2] [--iters 20] [--only NAME] [--device cpu|cuda] [--compile]
                              [--bench-bin PATH] [--no-ort]

Times each workload in PyTorch (eager, the median of --iters steps after 3 warm-up steps, as
../shared/bench/torch_ref.py does), then runs staticnet's bench example twice with the same
number of threads and keeps the faster of its two medians, and prints the ratios
staticnet / PyTorch next to the goals of the CPU-speed issue. The networks, batch sizes and
optimizers are the same on both sides (examples/common/course.rs holds staticnet's listings).

On the CPU it also times the inference forward in ONNX Runtime (the same network exported with
torch.onnx.export, `pip install onnx onnxscript onnxruntime`; as ../shared/bench/ort_ref.py does)
at the workload's batch size and at batch 1, with the same threads, and prints staticnet's
forward over ONNX Runtime's; and it prints the CPU model and the instruction set our kernels use.

With --device cuda both sides run on the GPU (ours built with --features cuda; PyTorch eager
with cuDNN at its defaults, or with --compile through torch.compile). A GPU step ends with the
loss on the host and a forward with the output on the host, on both sides, so that the times
include the work queued on the device.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn


def model_a():
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


def model_c():
    return nn.Sequential(
        nn.Conv2d(1, 16, 5), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(16, 32, 5), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 10))


def net_seq():
    return nn.Sequential(
        nn.Conv2d(1, 5, 3, padding=1), nn.ReLU(),
        nn.Conv2d(5, 10, 3, padding=1), nn.MaxPool2d(2, 2), nn.ReLU(),
        nn.Conv2d(10, 20, 3, padding=1), nn.ReLU(),
        nn.Conv2d(20, 40, 3, padding=1), nn.MaxPool2d(2, 2), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(7 * 7 * 40, 1024), nn.ReLU(),
        nn.Linear(1024, 2048), nn.ReLU(),
        nn.Linear(2048, 10))


def net_bn():
    return nn.Sequential(
        nn.Conv2d(1, 10, 3, 1, 1), nn.MaxPool2d(2, 2), nn.ReLU(), nn.BatchNorm2d(10),
        nn.Conv2d(10, 20, 3, 1, 1), nn.MaxPool2d(2, 2), nn.ReLU(), nn.BatchNorm2d(20),
        nn.Flatten(), nn.Linear(7 * 7 * 20, 10))


def cifar_cnn():
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Flatten(), nn.Linear(128 * 4 * 4, 10))


def alexnet():
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.AdaptiveAvgPool2d((6, 6)), nn.Flatten(),
        nn.Dropout(), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(),
        nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(),
        nn.Linear(4096, 1000))


def mobilenet_v2_cifar():
    import torchvision
    return torchvision.models.mobilenet_v2(num_classes=10)


# name: (constructor, sample shape, batch, optimizer, goal for the train step, goal for the forward)
WORKLOADS = {
    "model_a_mnist_b100_sgd": (model_a, (1, 28, 28), 100, "sgd", 0.5, 0.5),
    "model_c_mnist_b100_sgd": (model_c, (1, 28, 28), 100, "sgd", 1.0, 1.0),
    "net_seq_mnist_b64_adam": (net_seq, (1, 28, 28), 64, "adam", 1.0, 1.0),
    "net_bn_mnist_b64_adam": (net_bn, (1, 28, 28), 64, "adam", 0.7, 1.0),
    "cifar_cnn_b128_adam": (cifar_cnn, (3, 32, 32), 128, "adam", 0.7, 1.0),
    "alexnet_224_b4_sgd": (alexnet, (3, 224, 224), 4, "sgd", 1.0, 1.0),
    # torchvision's MobileNetV2 on CIFAR-10's 32 x 32 images (examples/mobilenet-v2.rs --cifar).
    "mobilenet_v2_cifar_b128_sgd": (mobilenet_v2_cifar, (3, 32, 32), 128, "sgd", 1.0, 1.0),
}


# The CUDA issue's goals on the GPU (train step, forward); every other workload: no slower.
GPU_GOALS = {"model_a_mnist_b100_sgd": (0.3, 1.0), "cifar_cnn_b128_adam": (0.5, 1.0)}


def median_ms(fn, iters, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def pytorch(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    gpu = args.device != "cpu"
    out = {}
    for name, (make, shape, batch, opt, _, _) in WORKLOADS.items():
        if args.only not in name:
            continue
        model = make().to(dev)
        x = torch.rand(batch, *shape, device=dev)
        y = torch.randint(0, 10, (batch,), device=dev)
        crit = nn.CrossEntropyLoss()
        optim = (torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if opt == "sgd"
                 else torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=1e-3))
        run = torch.compile(model) if args.compile else model

        def step():
            optim.zero_grad()
            loss = crit(run(x), y)
            loss.backward()
            optim.step()
            if gpu:
                loss.item()

        def forward():
            out = run(x)
            if gpu:
                out.cpu()

        model.train()
        train = median_ms(step, args.iters, warmup=10 if gpu or args.compile else 3)
        model.eval()
        with torch.no_grad():
            forward = median_ms(forward, args.iters, warmup=10 if gpu or args.compile else 3)
        out[name] = {"train_step_ms": train, "forward_ms": forward}
        print(f"  pytorch {name:26s} train {train:9.3f} ms  forward {forward:9.3f} ms", file=sys.stderr)
    return out


# Inference goals against ONNX Runtime: the forward at the workload's batch and at batch 1.
ORT_GOALS = {"model_a_mnist_b100_sgd": 1.0, "cifar_cnn_b128_adam": 1.0}


def onnx_runtime(args):
    """Forward medians in ONNX Runtime, at the workload's batch and at batch 1, in ms."""
    import onnxruntime as ort
    import tempfile
    out = {}
    for name, (make, shape, batch, _, _, _) in WORKLOADS.items():
        if args.only not in name:
            continue
        model = make().eval()
        path = os.path.join(tempfile.gettempdir(), f"staticnet-{name}.onnx")
        torch.onnx.export(model, (torch.rand(batch, *shape),), path, input_names=["x"], dynamic_axes={"x": {0: "n"}}, dynamo=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        times = {}
        for key, n in (("forward_ms", batch), ("forward_b1_ms", 1)):
            x = torch.rand(n, *shape).numpy()
            times[key] = median_ms(lambda: session.run(None, {"x": x}), args.iters * (5 if n == 1 else 1), warmup=5)
        out[name] = times
        print(f"  onnxruntime {name:22s} forward {times['forward_ms']:9.3f} ms  batch 1 {times['forward_b1_ms']:7.3f} ms", file=sys.stderr)
    return out


def cpu_model():
    try:
        return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def staticnet(args):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    features = ["--features", "cuda"] if args.device != "cpu" else []
    # A machine without a Rust toolchain (a GPU machine) runs a bench binary built elsewhere.
    bench = [args.bench_bin] if args.bench_bin else ["cargo", "run", "--quiet", "--release"] + features + ["--example", "bench", "--"]
    cmd = (bench + ["--json", "--no-layers", "--iters", str(args.iters), "--device", args.device]
           + (["--only", args.only] if args.only else []))
    return json.loads(subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True, text=True).stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--only", default="")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--compile", action="store_true", help="PyTorch through torch.compile")
    ap.add_argument("--bench-bin", default="", help="a built bench example to run instead of cargo run "
                    "(cargo build --release [--features cuda] --example bench; target/release/examples/bench)")
    ap.add_argument("--no-ort", action="store_true", help="skip the ONNX Runtime column")
    args = ap.parse_args()

    where = f"{args.threads} threads each" if args.device == "cpu" else torch.cuda.get_device_name(0)
    print(f"staticnet (twice) and PyTorch {torch.__version__}{' compiled' if args.compile else ''}, {where}...", file=sys.stderr)
    ours = [staticnet(args), staticnet(args)]
    theirs = pytorch(args)
    ort_times = onnx_runtime(args) if args.device == "cpu" and not args.no_ort else {}
    if args.device == "cpu":
        print(f"CPU: {cpu_model()}; staticnet's kernels: {ours[0].get('isa', 'unknown')}; {args.threads} threads each")

    print(f"{'workload':26s} {'':6s} {'staticnet ms':>12s} {'PyTorch ms':>11s} {'ratio':>6s} {'goal':>5s}")
    met = True
    for name, (_, _, _, _, goal_train, goal_fwd) in WORKLOADS.items():
        if name not in theirs:
            continue
        if args.device != "cpu":
            goal_train, goal_fwd = GPU_GOALS.get(name, (1.0, 1.0))
        for key, label, goal in [("train_step_ms", "train", goal_train), ("forward_ms", "fwd", goal_fwd)]:
            mine = min(run[name][key] for run in ours)
            ratio = mine / theirs[name][key]
            ok = ratio <= goal
            met &= ok
            print(f"{name:26s} {label:6s} {mine:12.2f} {theirs[name][key]:11.2f} {ratio:6.2f} {goal:5.1f} {'' if ok else ' missed'}")
    if ort_times:
        print(f"\n{'forward against ONNX Runtime':34s} {'staticnet ms':>12s} {'ORT ms':>9s} {'ratio':>6s} {'goal':>5s}")
        for name, times in ort_times.items():
            for key, label in (("forward_ms", "batch"), ("forward_b1_ms", "batch 1")):
                mine = min(run[name][key] for run in ours)
                ratio = mine / times[key]
                goal = ORT_GOALS.get(name)
                ok = goal is None or ratio <= goal
                met &= ok
                print(f"{name:26s} {label:7s} {mine:12.3f} {times[key]:9.3f} {ratio:6.2f} {goal if goal else '':>5}{'' if ok else ' missed'}")
    print("every goal met" if met else "some goals missed")


if __name__ == "__main__":
    main()
