// The second convolution expects 32 channels but the first produces 16.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [1, 28, 28],
        cnn1: Conv2d(1, 16, 5, padding = 2),
        relu1: ReLU,
        cnn2: Conv2d(32, 32, 5, padding = 2),
    }
}

fn main() {}
