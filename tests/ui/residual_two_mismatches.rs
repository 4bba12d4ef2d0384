// Two residual blocks whose sums disagree, in one network: both are reported, and after each the
// main path's shape flows on, so the Linear after them is still checked (and is wrong too).
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
        layer2: [Block(8, 16), Block(16, 16)],
        avgpool: AdaptiveAvgPool2d(1),
        Flatten,
        fc: Linear(8, 10),
    }
}

fn main() {}
