// CIFAR-sized input with Model A's flatten size: 32 * 7 * 7 is for 28x28 images.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [3, 32, 32],
        cnn1: Conv2d(3, 16, kernel_size = 5, stride = 1, padding = 2),
        relu1: ReLU,
        maxpool1: MaxPool2d(2),
        cnn2: Conv2d(16, 32, kernel_size = 5, stride = 1, padding = 2),
        relu2: ReLU,
        maxpool2: MaxPool2d(2),
        Flatten,
        fc1: Linear(32 * 7 * 7, 10),
    }
}

fn main() {}
