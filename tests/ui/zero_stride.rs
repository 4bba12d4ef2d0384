// A stride of 0 never moves the kernel.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [1, 28, 28],
        conv: Conv2d(1, 4, 3, stride = 0),
    }
}

fn main() {}
