#!/usr/bin/env python3
"""Checks the TensorBoard event files a training run wrote (Trainer::out_dir) against its
history.csv, reading them with TensorBoard's own reader (event_accumulator): the scalars
loss/train, accuracy/train, lr and, with a validation set, loss/val and accuracy/val must be
there at step = epoch for every epoch, each equal to history.csv's value as a float32; the first
convolution's filters must be a PNG image summary at every epoch with the size it says.

Needs: pip install tensorboard
Usage: python3 scripts/check_tensorboard.py OUT_DIR      (e.g. runs/mnist)
Exits non-zero, saying what differs, when anything does.
"""
import csv
import os
import struct
import sys

from tensorboard.backend.event_processing import event_accumulator

COLUMNS = {"loss/train": "train_loss", "accuracy/train": "train_accuracy", "loss/val": "val_loss",
           "accuracy/val": "val_accuracy", "lr": "lr"}


def f32(text):
    """The float32 nearest to a decimal from history.csv (Rust prints the shortest round trip)."""
    return struct.unpack("<f", struct.pack("<f", float(text)))[0]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    with open(os.path.join(out, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{out}/history.csv has no epoch")
    acc = event_accumulator.EventAccumulator(os.path.join(out, "tensorboard"), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0})
    acc.Reload()
    tags = acc.Tags()
    errors = []
    checked = 0
    for tag, column in COLUMNS.items():
        want = {int(r["epoch"]): f32(r[column]) for r in rows if r[column] != ""}
        if not want:
            if tag in tags["scalars"]:
                errors.append(f"{tag}: in the event files, but history.csv has no {column}")
            continue
        if tag not in tags["scalars"]:
            errors.append(f"{tag}: missing (scalars there: {tags['scalars']})")
            continue
        got = {e.step: e.value for e in acc.Scalars(tag)}
        if got != want:
            errors.append(f"{tag}: TensorBoard reads {got}, history.csv has {want}")
        checked += len(want)
    images = [t for t in tags["images"] if t.startswith("filters/")]
    if len(images) != 1:
        errors.append(f"expected one filters/<layer> image tag, found {tags['images']}")
    else:
        events = acc.Images(images[0])
        steps = sorted(e.step for e in events)
        if steps != sorted(int(r["epoch"]) for r in rows):
            errors.append(f"{images[0]}: images at steps {steps}, epochs in history.csv {[r['epoch'] for r in rows]}")
        for e in events:
            png = e.encoded_image_string
            width, height = struct.unpack(">II", png[16:24])
            if not png.startswith(b"\x89PNG\r\n\x1a\n") or (width, height) != (e.width, e.height):
                errors.append(f"{images[0]} step {e.step}: not a PNG of {e.width}x{e.height} (header says {width}x{height})")
    if errors:
        sys.exit("check_tensorboard: " + "\n".join(errors))
    print(f"check_tensorboard: {len(rows)} epochs, {checked} scalars and {len(images)} image tag equal to {out}/history.csv")


if __name__ == "__main__":
    main()
