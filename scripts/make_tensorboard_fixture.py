#!/usr/bin/env python3
"""Writes tests/fixtures/tensorboard.bin: three TFRecords as TensorBoard's own writer frames them
(tensorboard.summary.writer.record_writer.RecordWriter) around `Event` protocol buffers built
with TensorBoard's event_pb2, for tests/tensorboard.rs to compare byte for byte with ours:

1. file_version "brain.Event:2", wall_time 1700000000.5;
2. a scalar: tag "loss/train", simple_value 0.125, step 3, wall_time 1700000001.25;
3. an image: tag "filters/cnn1", height 2, width 3, colorspace 1, encoded_image_string
   b"\\x89PNG not really", step 12, wall_time 1700000002.0.

Needs: pip install tensorboard
Usage: python3 scripts/make_tensorboard_fixture.py
"""
import io
import os

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "..", "tests", "fixtures", "tensorboard.bin")


def main():
    buf = io.BytesIO()
    w = RecordWriter(buf)
    w.write(event_pb2.Event(wall_time=1700000000.5, file_version="brain.Event:2").SerializeToString())
    scalar = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="loss/train", simple_value=0.125)])
    w.write(event_pb2.Event(wall_time=1700000001.25, step=3, summary=scalar).SerializeToString())
    image = summary_pb2.Summary.Image(height=2, width=3, colorspace=1, encoded_image_string=b"\x89PNG not really")
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="filters/cnn1", image=image)])
    w.write(event_pb2.Event(wall_time=1700000002.0, step=12, summary=summary).SerializeToString())
    with open(PATH, "wb") as f:
        f.write(buf.getvalue())
    print(f"wrote {PATH}: {len(buf.getvalue())} bytes")


if __name__ == "__main__":
    main()
