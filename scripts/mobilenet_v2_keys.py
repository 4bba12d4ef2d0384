#!/usr/bin/env python3
"""Lists torchvision's mobilenet_v2() state_dict: one line per tensor, `name dtype shape`, in
state_dict order, as scripts/list_state_dict_keys.py does for ResNet-18.

Usage: python3 scripts/mobilenet_v2_keys.py > tests/fixtures/mobilenet_v2_state_dict.txt
       python3 scripts/mobilenet_v2_keys.py --check tests/fixtures/mobilenet_v2_mini.safetensors

With torch and torchvision installed it asks torchvision itself. Without them (no network on
the machine that wrote the fixture) it builds the same list by following torchvision's
MobileNetV2.__init__ and InvertedResidual.__init__ step by step (below), and `--check` compares
that replica, at width_mult 0.25 and 10 classes, with the keys and shapes of a state_dict that
torchvision did write (mobilenet_v2_mini.safetensors, made by torchvision 0.29.2).
"""
import json
import struct
import sys


def _make_divisible(v, divisor, min_value=None):
    # torchvision.models._utils._make_divisible
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def replica(width_mult=1.0, num_classes=1000, round_nearest=8):
    """[(name, dtype, shape)] of torchvision's MobileNetV2(width_mult, num_classes)."""
    out = []

    def conv(prefix, cin, cout, k, groups=1):
        out.append((f"{prefix}.weight", "float32", [cout, cin // groups, k, k]))

    def bn(prefix, c):
        out.append((f"{prefix}.weight", "float32", [c]))
        out.append((f"{prefix}.bias", "float32", [c]))
        out.append((f"{prefix}.running_mean", "float32", [c]))
        out.append((f"{prefix}.running_var", "float32", [c]))
        out.append((f"{prefix}.num_batches_tracked", "int64", []))

    def conv_norm_act(prefix, cin, cout, k=3, groups=1):
        # Conv2dNormActivation: Sequential(Conv2d(bias=False), BatchNorm2d, ReLU6)
        conv(f"{prefix}.0", cin, cout, k, groups)
        bn(f"{prefix}.1", cout)

    def inverted_residual(prefix, inp, oup, expand_ratio):
        hidden_dim = int(round(inp * expand_ratio))
        layers = 0  # the index of the next entry of `layers`, as list.append numbers it
        if expand_ratio != 1:
            conv_norm_act(f"{prefix}.conv.{layers}", inp, hidden_dim, k=1)
            layers += 1
        conv_norm_act(f"{prefix}.conv.{layers}", hidden_dim, hidden_dim, groups=hidden_dim)
        conv(f"{prefix}.conv.{layers + 1}", hidden_dim, oup, 1)
        bn(f"{prefix}.conv.{layers + 2}", oup)

    input_channel = _make_divisible(32 * width_mult, round_nearest)
    last_channel = _make_divisible(1280 * max(1.0, width_mult), round_nearest)
    setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]
    conv_norm_act("features.0", 3, input_channel)
    index = 1
    for t, c, n, s in setting:
        output_channel = _make_divisible(c * width_mult, round_nearest)
        for _ in range(n):
            inverted_residual(f"features.{index}", input_channel, output_channel, t)
            input_channel = output_channel
            index += 1
    conv_norm_act(f"features.{index}", input_channel, last_channel, k=1)
    # classifier = Sequential(Dropout, Linear): only the Linear has tensors.
    out.append(("classifier.1.weight", "float32", [num_classes, last_channel]))
    out.append(("classifier.1.bias", "float32", [num_classes]))
    return out


def parameters(entries):
    total = 0
    for name, dtype, shape in entries:
        if name.endswith((".running_mean", ".running_var", ".num_batches_tracked")):
            continue
        n = 1
        for d in shape:
            n *= d
        total += n
    return total


def check(path):
    """The replica at the mini net's settings against a safetensors file torchvision wrote."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    skip = ("grad.", "sgd3.", "adam3.", "after_forward.")
    theirs = {
        k: ("int64" if v["dtype"] == "I64" else "float32", v["shape"])
        for k, v in header.items()
        if not k.startswith(skip) and k not in ("input", "target", "loss") and not k.startswith("logits")
    }
    ours = {name: (dtype, shape) for name, dtype, shape in replica(0.25, 10)}
    if ours != theirs:
        for k in sorted(set(ours) | set(theirs)):
            if ours.get(k) != theirs.get(k):
                print(k, ours.get(k), theirs.get(k))
        sys.exit(1)
    print(f"{path}: the replica's {len(ours)} keys and shapes are torchvision's")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        return check(sys.argv[2])
    try:
        import torchvision

        model = torchvision.models.mobilenet_v2(weights=None)
        entries = [(name, str(t.dtype).replace("torch.", ""), list(t.shape)) for name, t in model.state_dict().items()]
        params = sum(p.numel() for p in model.parameters())
        source = "torchvision.models.mobilenet_v2"
    except ImportError:
        entries = replica()
        params = parameters(entries)
        source = "torchvision.models.mobilenet_v2 (replica of its __init__, torch not installed)"
    print(f"# {source}: {params} parameters; name dtype shape")
    for name, dtype, shape in entries:
        print(name, dtype, shape)


if __name__ == "__main__":
    main()
