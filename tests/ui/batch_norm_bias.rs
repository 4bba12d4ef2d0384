// PyTorch 2.15's BatchNorm takes `bias`; staticnet learns both weight and bias for now.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [3, 8, 8],
        conv: Conv2d(3, 4, 3),
        bn: BatchNorm2d(4, bias = false),
    }
}

fn main() {}
