// The course's own slip: nn.Relu for nn.ReLU.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [1, 28, 28],
        cnn1: Conv2d(1, 16, 5, padding = 2),
        relu1: Relu,
        pool: MaxPool2d(2),
        Flatten,
        fc: Linear(16 * 14 * 14, 10),
    }
}

fn main() {}
