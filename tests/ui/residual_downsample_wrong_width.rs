// A downsample shortcut that maps to 64 channels where the block's main path has 128.
use staticnet::prelude::*;

network! {
    block BasicBlock(inplanes, planes, stride = 1) {
        conv1: Conv2d(inplanes, planes, 3, stride = stride, padding = 1, bias = false),
        bn1: BatchNorm2d(planes),
        relu: ReLU,
        conv2: Conv2d(planes, planes, 3, padding = 1, bias = false),
        bn2: BatchNorm2d(planes),
        + downsample: [Conv2d(inplanes, 64, 1, stride = stride, bias = false), BatchNorm2d(64)] if stride != 1 || inplanes != planes,
        => ReLU,
    }

    pub struct Net {
        input: [64, 56, 56],
        layer2: [BasicBlock(64, 128, stride = 2), BasicBlock(128, 128)],
    }
}

fn main() {}
