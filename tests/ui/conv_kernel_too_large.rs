// A 5x5 kernel on a 3x3 map without padding.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [3, 12, 12],
        conv1: Conv2d(3, 8, 3),
        pool1: MaxPool2d(3),
        conv2: Conv2d(8, 8, kernel_size = 5),
    }
}

fn main() {}
