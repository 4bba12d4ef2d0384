"""Reference values for staticnet's transforms (tests/transforms.rs) from torchvision's
transforms.v2: each functional on two test images with fixed parameters, and the statistics of
each random transform's parameter draws.

    python3 scripts/make_transform_fixtures.py    # needs torch, torchvision, safetensors

Writes tests/fixtures/transforms.safetensors: `input.rgb` (3x20x24) and `input.gray` (1x17x13),
one tensor per case (`<case>`, the case's call in the metadata `calls`), and the metadata
`stats`: for each random transform, the mean, standard deviation, minimum and maximum of each
parameter over 20,000 draws of torchvision's own `make_params`.
"""
import json
import math
import os

import torch
import torchvision
from safetensors.torch import save_file
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

torch.manual_seed(0)
rgb = torch.rand(3, 20, 24)
gray = torch.rand(1, 17, 13)

cases = {
    "resize_down": ("rgb", lambda x: F.resize(x, [11, 9])),
    "resize_up": ("rgb", lambda x: F.resize(x, [31, 37])),
    "resize_smaller_edge": ("rgb", lambda x: F.resize(x, [16])),
    "resize_gray": ("gray", lambda x: F.resize(x, [7, 9])),
    "center_crop": ("rgb", lambda x: F.center_crop(x, [15, 15])),
    "center_crop_odd": ("rgb", lambda x: F.center_crop(x, [13, 20])),
    "center_crop_larger": ("gray", lambda x: F.center_crop(x, [20, 18])),
    "pad_crop": ("rgb", lambda x: F.crop(F.pad(x, [4], fill=0.0), 3, 7, 20, 24)),
    "pad_crop_fill": ("gray", lambda x: F.crop(F.pad(x, [2], fill=0.5), 0, 4, 17, 13)),
    "hflip": ("rgb", lambda x: F.horizontal_flip(x)),
    "resized_crop": ("rgb", lambda x: F.resized_crop(x, 2, 3, 12, 15, [8, 8])),
    "resized_crop_up": ("gray", lambda x: F.resized_crop(x, 1, 1, 6, 5, [12, 10])),
    "rotate_23_5": ("rgb", lambda x: F.rotate(x, 23.5)),
    "rotate_minus_10": ("gray", lambda x: F.rotate(x, -10.0)),
    "rotate_100": ("rgb", lambda x: F.rotate(x, 100.0)),
    "rotate_fill": ("gray", lambda x: F.rotate(x, 37.0, fill=0.25)),
    "brightness_1_3": ("rgb", lambda x: F.adjust_brightness(x, 1.3)),
    "contrast_0_6": ("rgb", lambda x: F.adjust_contrast(x, 0.6)),
    "contrast_gray_1_4": ("gray", lambda x: F.adjust_contrast(x, 1.4)),
    "saturation_1_7": ("rgb", lambda x: F.adjust_saturation(x, 1.7)),
    "saturation_0_2": ("rgb", lambda x: F.adjust_saturation(x, 0.2)),
    "grayscale_1": ("rgb", lambda x: F.rgb_to_grayscale(x, 1)),
    "grayscale_3": ("rgb", lambda x: F.rgb_to_grayscale(x, 3)),
    "normalize": ("rgb", lambda x: F.normalize(x, [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616])),
}
tensors = {"input.rgb": rgb, "input.gray": gray}
for name, (which, f) in cases.items():
    tensors[name] = f(rgb if which == "rgb" else gray).contiguous()

DRAWS = 20000
stats = {}


def summarize(name, rows):
    t = torch.tensor(rows, dtype=torch.float64)
    stats[name] = {
        k: {"mean": t[:, i].mean().item(), "std": t[:, i].std().item(), "min": t[:, i].min().item(), "max": t[:, i].max().item()}
        for i, k in enumerate(keys[name])
    }


keys = {}
img = torchvision.tv_tensors.Image(rgb)

t = v2.RandomCrop(20, padding=4)
keys["RandomCrop(20, padding=4) on 3x20x24"] = ["top", "left"]
summarize("RandomCrop(20, padding=4) on 3x20x24", [[p["top"], p["left"]] for p in (t.make_params([img]) for _ in range(DRAWS))])

t = v2.RandomResizedCrop(8)
keys["RandomResizedCrop(8) on 3x20x24"] = ["top", "left", "height", "width"]
summarize("RandomResizedCrop(8) on 3x20x24", [[p["top"], p["left"], p["height"], p["width"]] for p in (t.make_params([img]) for _ in range(DRAWS))])

t = v2.RandomRotation(10)
keys["RandomRotation(10)"] = ["angle"]
summarize("RandomRotation(10)", [[t.make_params([img])["angle"]] for _ in range(DRAWS)])

t = v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4)
keys["ColorJitter(0.4, 0.4, 0.4)"] = ["brightness", "contrast", "saturation", "brightness_first"]
summarize(
    "ColorJitter(0.4, 0.4, 0.4)",
    [[p["brightness_factor"], p["contrast_factor"], p["saturation_factor"], float(p["fn_idx"][0] == 0)] for p in (t.make_params([img]) for _ in range(DRAWS))],
)

flip = v2.RandomHorizontalFlip(0.3)
keys["RandomHorizontalFlip(0.3)"] = ["flipped"]
summarize("RandomHorizontalFlip(0.3)", [[float(not torch.equal(flip(rgb), rgb))] for _ in range(DRAWS)])

meta = {
    "torch": torch.__version__,
    "torchvision": torchvision.__version__,
    "draws": str(DRAWS),
    "stats": json.dumps(stats),
    "cases": json.dumps({name: which for name, (which, _) in cases.items()}),
}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "transforms.safetensors")
save_file(tensors, out, metadata=meta)
print(f"wrote {out}: {len(cases)} cases")
print(json.dumps(stats, indent=1))
