// One pooling too many: the map is 1x1 when the last MaxPool2d(2) comes.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [1, 8, 8],
        conv: Conv2d(1, 4, 3, padding = 1),
        pool1: MaxPool2d(2),
        pool2: MaxPool2d(2),
        pool3: MaxPool2d(2),
        pool4: MaxPool2d(2),
    }
}

fn main() {}
