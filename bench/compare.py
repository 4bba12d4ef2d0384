#!/usr/bin/env python3
"""staticnet against PyTorch on the course's workloads, in one run on one machine.

Needs: pip install torch torchvision   (and a Rust toolchain: it runs `cargo run --release --example bench`)

Usage: python3 bench/compare.py [--threads 2] [--iters 20] [--rounds 2] [--only NAME] [--device cpu|cuda]
                              [--precision f32|bf16] [--compile] [--bench-bin PATH] [--no-ort]

Times each workload in PyTorch (eager, the median of --iters steps after 3 warm-up steps, as
../shared/bench/torch_ref.py does) and in staticnet's bench example with the same number of
threads, and prints the ratios staticnet / PyTorch next to the goals of the CPU-speed issue.
The sides take turns, workload by workload, for --rounds rounds, and each side keeps its best
median of the rounds: on a shared machine whose speed drifts for seconds at a time (a 2-core
Zen 1 VM ran one convolution in 39 to 84 ms from one second to the next), a side timed in a
slow spell then has another chance, and both sides have the same number of them. The networks, batch sizes and
optimizers are the same on both sides (examples/common/course.rs holds staticnet's listings).

On the CPU it also times the inference forward in ONNX Runtime (the same network exported with
torch.onnx.export, `pip install onnx onnxscript onnxruntime`; as ../shared/bench/ort_ref.py does)
at the workload's batch size and at batch 1, with the same threads, and prints staticnet's
forward over ONNX Runtime's; and it prints the CPU model and the instruction set our kernels use.

With --device cuda both sides run on the GPU (ours built with --features cuda; PyTorch eager
with cuDNN at its defaults, or with --compile through torch.compile). A GPU step ends with the
loss on the host and a forward with the output on the host, on both sides, so that the times
include the work queued on the device. With --precision bf16 (GPU only) both sides train and infer
in bf16 mixed precision: PyTorch eager and compiled under torch.autocast("cuda", torch.bfloat16),
ours with `--precision bf16` (`Cuda::set_precision`).
"""
import argparse
import contextlib
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


def airbench94():
    """airbench94's network (github.com/KellerJordan/cifar10-airbench), as examples/common/course.rs
    lists it: without the final Mul(1/9), which staticnet's language has no layer for, and with
    the whitening weight and the batch norms' weights frozen, as airbench trains."""
    def norm(c):
        bn = nn.BatchNorm2d(c, eps=1e-12, momentum=1 - 0.6)
        bn.weight.requires_grad = False
        return bn

    def group(c_in, c_out):
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2), norm(c_out), nn.GELU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), norm(c_out), nn.GELU())

    net = nn.Sequential(
        nn.Conv2d(3, 24, 2, padding=0), nn.GELU(),
        group(24, 64), group(64, 256), group(256, 256),
        nn.MaxPool2d(3), nn.Flatten(), nn.Linear(256, 10, bias=False))
    net[0].weight.requires_grad = False
    return net


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
    # airbench94's network and optimizer (SGD, Nesterov momentum 0.85) at its batch size: GPU only.
    "airbench94_b1024_sgd": (airbench94, (3, 32, 32), 1024, "nesterov", 1.0, 1.0),
}
GPU_ONLY = {"airbench94_b1024_sgd"}

# The GPU issue's goals: every train step at most 0.3 x PyTorch eager (cuDNN, cudnn.benchmark on),
# and with --compile at most PyTorch's best compiled mode; the forward no slower. airbench's
# network is also timed in PyTorch's fastest eager setting (channels_last, bf16 autocast).
GPU_TRAIN_GOAL = 0.3
FASTEST = {"airbench94_b1024_sgd"}


def median_ms(fn, iters, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def optimizer(opt, model):
    if opt == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    if opt == "nesterov":
        return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.85, nesterov=True, weight_decay=5e-4)
    return torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=1e-3)


def workloads(args):
    return {name: w for name, w in WORKLOADS.items()
            if args.only in name and (args.device != "cpu" or name not in GPU_ONLY)}


def time_pytorch(args, make, shape, batch, opt, mode=None, fastest=False):
    """Train-step and forward medians (ms) of one workload in PyTorch: eager, or compiled in
    torch.compile `mode`, or (`fastest`) eager in channels_last with bf16 autocast; under bf16
    autocast throughout with --precision bf16."""
    torch.manual_seed(0)
    dev = torch.device(args.device)
    gpu = args.device != "cpu"
    model = make().to(dev)
    x = torch.rand(batch, *shape, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    if fastest:
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    crit = nn.CrossEntropyLoss()
    optim = optimizer(opt, model)
    run = model if mode is None else torch.compile(model, mode=None if mode == "default" else mode)
    bf16 = fastest or args.precision == "bf16"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def step():
        optim.zero_grad()
        with autocast():
            loss = crit(run(x), y)
        loss.backward()
        optim.step()
        if gpu:
            loss.item()

    def forward():
        with autocast():
            out = run(x)
        if gpu:
            out.cpu()

    warmup = 10 if gpu or mode else 3
    model.train()
    train = median_ms(step, args.iters, warmup=warmup)
    model.eval()
    with torch.no_grad():
        fwd = median_ms(forward, args.iters, warmup=warmup)
    return {"train_step_ms": train, "forward_ms": fwd, "params": sum(p.numel() for p in model.parameters())}


def pytorch(args, name):
    """One workload's eager times, and on the GPU the best of the --compile modes and (FASTEST)
    the channels_last bf16 times, each a dict of medians."""
    make, shape, batch, opt, _, _ = WORKLOADS[name]
    times = {"eager": time_pytorch(args, make, shape, batch, opt)}
    if args.compile:
        for mode in args.compile_modes.split(","):
            times[f"compile:{mode}"] = time_pytorch(args, make, shape, batch, opt, mode=mode)
    if args.device == "cuda" and name in FASTEST:
        times["channels_last_bf16"] = time_pytorch(args, make, shape, batch, opt, fastest=True)
    for how, t in times.items():
        print(f"  pytorch {name:26s} {how:22s} train {t['train_step_ms']:9.3f} ms  forward {t['forward_ms']:9.3f} ms", file=sys.stderr)
    return times


# Inference goals against ONNX Runtime: the forward at the workload's batch and at batch 1.
ORT_GOALS = {"model_a_mnist_b100_sgd": 1.0, "cifar_cnn_b128_adam": 1.0}


def onnx_session(args, name):
    """The workload's network exported with torch.onnx.export, in an ONNX Runtime session on
    --threads threads."""
    import onnxruntime as ort
    import tempfile
    make, shape, batch, _, _, _ = WORKLOADS[name]
    model = make().eval()
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    # The session reads the file when it is made: the export need not outlive it (it had been
    # left in the temporary directory, AlexNet's 233 MB among them).
    with tempfile.TemporaryDirectory(prefix="staticnet-onnx-") as tmp:
        path = os.path.join(tmp, f"{name}.onnx")
        torch.onnx.export(model, (torch.rand(batch, *shape),), path, input_names=["x"], dynamic_axes={"x": {0: "n"}}, dynamo=False)
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def onnx_runtime(args, name, session):
    """Forward medians in ONNX Runtime, at the workload's batch and at batch 1, in ms."""
    _, shape, batch, _, _, _ = WORKLOADS[name]
    times = {}
    for key, n in (("forward_ms", batch), ("forward_b1_ms", 1)):
        x = torch.rand(n, *shape).numpy()
        times[key] = median_ms(lambda: session.run(None, {"x": x}), args.iters * (5 if n == 1 else 1), warmup=5)
    print(f"  onnxruntime {name:22s} forward {times['forward_ms']:9.3f} ms  batch 1 {times['forward_b1_ms']:7.3f} ms", file=sys.stderr)
    return times


def keep_best(best, times):
    """Merges one round's times into the best so far: the smaller of each median."""
    for key, v in times.items():
        if isinstance(v, dict):
            keep_best(best.setdefault(key, {}), v)
        elif key.endswith("_ms"):
            best[key] = min(best.get(key, v), v)
        else:
            best.setdefault(key, v)


def cpu_model():
    try:
        return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def gpu_model():
    """The GPU's name, its driver's version and PyTorch's CUDA version."""
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, check=True).stdout.split()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        driver = "unknown"
    return (f"{torch.cuda.get_device_name(0)}, driver {driver}, CUDA {torch.version.cuda}, "
            f"cuDNN {torch.backends.cudnn.version()}, PyTorch's TF32 for convolutions {torch.backends.cudnn.allow_tf32}")


def staticnet(args, name):
    """The bench example's JSON for one workload."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    features = ["--features", "cuda"] if args.device != "cpu" else []
    # A machine without a Rust toolchain (a GPU machine) runs a bench binary built elsewhere.
    bench = [args.bench_bin] if args.bench_bin else ["cargo", "run", "--quiet", "--release"] + features + ["--example", "bench", "--"]
    cmd = bench + ["--json", "--no-layers", "--iters", str(args.iters), "--device", args.device, "--only", name]
    if args.precision != "f32":
        cmd += ["--precision", args.precision]
    out = json.loads(subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True, text=True).stdout)
    t = out[name]
    print(f"  staticnet {name:24s} train {t['train_step_ms']:9.3f} ms  forward {t['forward_ms']:9.3f} ms", file=sys.stderr)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2, help="turns each side takes at each workload; each keeps its best")
    ap.add_argument("--only", default="")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16"],
                    help="bf16: both sides in bf16 mixed precision (autocast), on the GPU only")
    ap.add_argument("--compile", action="store_true", help="PyTorch also through torch.compile, in each of --compile-modes")
    ap.add_argument("--compile-modes", default="default,reduce-overhead",
                    help="torch.compile modes to time, comma-separated (max-autotune compiles for minutes per network)")
    ap.add_argument("--bench-bin", default="", help="a built bench example to run instead of cargo run "
                    "(cargo build --release [--features cuda] --example bench; target/release/examples/bench)")
    ap.add_argument("--no-ort", action="store_true", help="skip the ONNX Runtime column")
    args = ap.parse_args()
    if args.precision != "f32" and args.device == "cpu":
        ap.error("--precision bf16 needs --device cuda: staticnet's CPU backend computes in f32")

    where = f"{args.threads} threads each" if args.device == "cpu" else torch.cuda.get_device_name(0)
    print(f"staticnet and PyTorch {torch.__version__}{' compiled' if args.compile else ''}, {where}, {args.precision}, "
          f"{args.rounds} rounds...", file=sys.stderr)
    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    names = list(workloads(args))
    use_ort = args.device == "cpu" and not args.no_ort
    sessions = {name: onnx_session(args, name) for name in names} if use_ort else {}
    # Best medians per side: ours (the bench's JSON), theirs (PyTorch's), ort_times.
    ours, theirs, ort_times = {}, {}, {}
    for _ in range(args.rounds):
        for name in names:
            keep_best(theirs.setdefault(name, {}), pytorch(args, name))
            if use_ort:
                keep_best(ort_times.setdefault(name, {}), onnx_runtime(args, name, sessions[name]))
            keep_best(ours, staticnet(args, name))
    if args.device == "cpu":
        print(f"CPU: {cpu_model()}; staticnet's kernels: {ours.get('isa', 'unknown')}; {args.threads} threads each; "
              f"the best of {args.rounds} rounds each")
    else:
        print(f"GPU: {gpu_model()}; staticnet's train step: {ours.get('train_step', 'unknown')}")

    print(f"{'workload':26s} {'':6s} {'against':22s} {'staticnet ms':>12s} {'PyTorch ms':>11s} {'ratio':>6s} {'goal':>5s}")
    met = True
    for name, (_, _, _, _, goal_train, goal_fwd) in WORKLOADS.items():
        if name not in theirs:
            continue
        times = theirs[name]
        params = ours[name].get("params")
        if params is not None and params != times["eager"]["params"]:
            print(f"{name}: staticnet's network has {params} parameters, PyTorch's {times['eager']['params']}: not the same network")
            met = False
        # (what to compare with, its times, the goals for train and forward)
        rows = [("eager", times["eager"], (goal_train, goal_fwd))]
        if args.device != "cpu":
            label = "eager (cuDNN benchmark)" if args.precision == "f32" else "eager bf16 autocast"
            rows = [(label, times["eager"], (GPU_TRAIN_GOAL, 1.0))]
        compiled = {k: t for k, t in times.items() if k.startswith("compile:")}
        if compiled:
            for key in ("train_step_ms", "forward_ms"):
                best = min(compiled, key=lambda k: compiled[k][key])
                rows.append((f"best {best}", {key: compiled[best][key]}, (1.0, 1.0)))
        if args.device != "cpu":
            if name in FASTEST:
                for key in ("train_step_ms", "forward_ms"):
                    best = min(times, key=lambda k: times[k][key])
                    rows.append((f"fastest: {best}", {key: times[best][key]}, (1.0, 1.0)))
        for against, t, goals in rows:
            for key, label, goal in [("train_step_ms", "train", goals[0]), ("forward_ms", "fwd", goals[1])]:
                if key not in t:
                    continue
                mine = ours[name][key]
                ratio = mine / t[key]
                ok = ratio <= goal
                met &= ok
                print(f"{name:26s} {label:6s} {against:22s} {mine:12.2f} {t[key]:11.2f} {ratio:6.2f} {goal:5.1f} {'' if ok else ' missed'}")
    if ort_times:
        print(f"\n{'forward against ONNX Runtime':34s} {'staticnet ms':>12s} {'ORT ms':>9s} {'ratio':>6s} {'goal':>5s}")
        for name, times in ort_times.items():
            for key, label in (("forward_ms", "batch"), ("forward_b1_ms", "batch 1")):
                mine = ours[name][key]
                ratio = mine / times[key]
                goal = ORT_GOALS.get(name)
                ok = goal is None or ratio <= goal
                met &= ok
                print(f"{name:26s} {label:7s} {mine:12.3f} {times[key]:9.3f} {ratio:6.2f} {goal if goal else '':>5}{'' if ok else ' missed'}")
    print("every goal met" if met else "some goals missed")


if __name__ == "__main__":
    main()
