"""The ImageFolder fixture: a small folder of class folders (tests/fixtures/image_folder/) and what
torchvision's ImageFolder makes of it (tests/fixtures/image_folder.txt), for tests/image_folder.rs.

    python3 scripts/make_image_folder_fixture.py          # needs torchvision and pillow

The folder has what trips a hand-written lister: class names whose sort order is not their
creation order (upper case sorts first), a nested folder inside a class, upper-case and mixed
extensions, files that are not images, a class folder that is a symbolic link is not made (git
keeps links, but not every checkout does). The output lists, as torchvision reads them:
`classes`, `class_to_idx`, then one line per sample: path relative to the root, class index,
the image's size and the sum of its pixels after `convert("RGB")` and `ToTensor()`, and after
`convert("L")` (the value a one-channel network gets).
"""
import os
import sys

import numpy as np
from PIL import Image
from torchvision import datasets, transforms

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.join(here, "..", "tests", "fixtures", "image_folder")


def make():
    rng = np.random.default_rng(0)

    def image(path, size, mode, fmt=None):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        w, h = size
        channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
        arr = rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)
        img = Image.fromarray(arr[:, :, 0] if channels == 1 else arr, mode)
        img.save(path, format=fmt)

    image(f"{root}/banana/b1.png", (5, 4), "RGB")
    image(f"{root}/banana/B0.PNG", (5, 4), "L")
    image(f"{root}/banana/nested/deep.bmp", (5, 4), "RGB")
    image(f"{root}/banana/a_nested/first.png", (5, 4), "RGBA")
    image(f"{root}/Zebra/z.jpg", (6, 6), "RGB", "JPEG")
    image(f"{root}/Zebra/y.Jpeg", (6, 6), "L", "JPEG")
    image(f"{root}/apple/10.png", (3, 3), "RGB")
    image(f"{root}/apple/2.png", (3, 3), "RGB")
    image(f"{root}/apple/photo.ppm", (3, 3), "RGB", "PPM")
    with open(f"{root}/apple/notes.txt", "w") as f:
        f.write("not an image\n")
    with open(f"{root}/banana/.hidden", "w") as f:
        f.write("neither\n")
    with open(f"{root}/README", "w") as f:
        f.write("a file beside the class folders is not a class\n")


if "--no-create" not in sys.argv:
    make()
ds = datasets.ImageFolder(root)
to_tensor = transforms.ToTensor()
lines = [f"classes {' '.join(ds.classes)}", "class_to_idx " + " ".join(f"{c}={i}" for c, i in ds.class_to_idx.items())]
for path, label in ds.samples:
    rel = os.path.relpath(path, root)
    with Image.open(path) as img:
        rgb = to_tensor(img.convert("RGB"))
        gray = to_tensor(img.convert("L"))
    lines.append(f"{rel} {label} {rgb.shape[2]}x{rgb.shape[1]} {rgb.sum().item():.6f} {gray.sum().item():.6f}")
with open(os.path.join(here, "..", "tests", "fixtures", "image_folder.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
