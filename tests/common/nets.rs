//! The networks of the fixtures, as the course writes them (see tests/fixtures/README.md).

#![allow(dead_code)]

use staticnet::prelude::*;

network! {
    pub struct ModelA {
        input: [1, 28, 28],
        cnn1: Conv2d(1, 16, kernel_size = 5, stride = 1, padding = 2),
        relu1: ReLU,
        maxpool1: MaxPool2d(2),
        cnn2: Conv2d(16, 32, kernel_size = 5, stride = 1, padding = 2),
        relu2: ReLU,
        maxpool2: MaxPool2d(2),
        Flatten,
        fc1: Linear(32 * 7 * 7, 10),
    }
}

network! {
    pub struct ModelB {
        input: [1, 28, 28],
        cnn1: Conv2d(1, 16, 5, padding = 2),
        relu1: ReLU,
        avgpool1: AvgPool2d(2),
        cnn2: Conv2d(16, 32, 5, padding = 2),
        relu2: ReLU,
        avgpool2: AvgPool2d(2),
        Flatten,
        fc1: Linear(32 * 7 * 7, 10),
    }
}

network! {
    pub struct ModelC {
        input: [1, 28, 28],
        cnn1: Conv2d(1, 16, 5),
        relu1: ReLU,
        maxpool1: MaxPool2d(2),
        cnn2: Conv2d(16, 32, 5),
        relu2: ReLU,
        maxpool2: MaxPool2d(2),
        Flatten,
        fc1: Linear(32 * 4 * 4, 10),
    }
}

network! {
    pub struct NetBn {
        input: [1, 28, 28],
        features: [
            Conv2d(1, 10, 3, stride = 1, padding = 1), MaxPool2d(2, 2), ReLU, BatchNorm2d(10),
            Conv2d(10, 20, 3, stride = 1, padding = 1), MaxPool2d(2, 2), ReLU, BatchNorm2d(20),
        ],
        Flatten,
        fc: Linear(7 * 7 * 20, 10),
    }
}

network! {
    pub struct CifarNet {
        input: [3, 32, 32],
        conv1: Conv2d(3, 32, 3, padding = 1), ReLU, pool: MaxPool2d(2, 2),
        conv2: Conv2d(32, 64, 3, padding = 1), ReLU, MaxPool2d(2, 2),
        conv3: Conv2d(64, 128, 3, padding = 1), ReLU, MaxPool2d(2, 2),
        Flatten,
        fc: Linear(128 * 4 * 4, 10),
    }
}

network! {
    pub struct MlpDropout {
        input: [784],
        classifier: [Linear(28 * 28, 200), ReLU, Dropout(0.5), Linear(200, 500), ReLU, Linear(500, 10)],
    }
}


network! {
    /// The Sequential exercise: 4,137,324 parameters.
    pub struct NetSeq {
        input: [1, 28, 28],
        features: [
            Conv2d(1, 5, 3, padding = 1), ReLU,
            Conv2d(5, 10, 3, padding = 1), MaxPool2d(2, 2), ReLU,
            Conv2d(10, 20, 3, padding = 1), ReLU,
            Conv2d(20, 40, 3, padding = 1), MaxPool2d(2, 2), ReLU,
        ],
        Flatten,
        classifier: [Linear(7 * 7 * 40, 1024), ReLU, Linear(1024, 2048), ReLU, Linear(2048, 10)],
    }
}
