// The course's other slip: `adding=1` for `padding=1`.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [3, 32, 32],
        conv3: Conv2d(in_channels = 3, out_channels = 128, kernel_size = 3, adding = 1),
    }
}

fn main() {}
