// A Linear layer fed a [C, H, W] tensor: the Flatten is missing.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [1, 28, 28],
        cnn1: Conv2d(1, 16, 5, padding = 2),
        relu1: ReLU,
        maxpool1: MaxPool2d(2),
        fc1: Linear(16 * 14 * 14, 10),
    }
}

fn main() {}
