// Two layers named `relu`: their state_dict keys would collide.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [1, 28, 28],
        conv1: Conv2d(1, 8, 3),
        relu: ReLU,
        conv2: Conv2d(8, 8, 3),
        relu: ReLU,
    }
}

fn main() {}
