// BatchNorm2d sized for the wrong number of channels.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [1, 28, 28],
        features: [
            Conv2d(1, 10, 3, stride = 1, padding = 1), MaxPool2d(2, 2), ReLU, BatchNorm2d(20),
        ],
    }
}

fn main() {}
