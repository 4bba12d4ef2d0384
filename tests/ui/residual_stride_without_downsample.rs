// A stride-2 residual block whose shortcut is the identity: the sum's shapes differ.
use staticnet::prelude::*;

network! {
    block Block(inplanes, planes, stride = 1) {
        conv1: Conv2d(inplanes, planes, 3, stride = stride, padding = 1, bias = false),
        bn1: BatchNorm2d(planes),
        relu: ReLU,
        conv2: Conv2d(planes, planes, 3, padding = 1, bias = false),
        bn2: BatchNorm2d(planes),
        + identity,
        => ReLU,
    }

    pub struct Net {
        input: [8, 16, 16],
        layer1: [Block(8, 8), Block(8, 8, stride = 2)],
    }
}

fn main() {}
