// PyTorch refuses pooling padding larger than half the kernel.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [1, 28, 28],
        pool: MaxPool2d(kernel_size = 3, stride = 2, padding = 2),
    }
}

fn main() {}
