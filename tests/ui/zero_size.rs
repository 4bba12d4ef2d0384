// A layer with no output channels and a pooling window of size 0.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [1, 28, 28],
        conv: Conv2d(1, 0, 3),
        pool: AvgPool2d(0),
    }
}

fn main() {}
