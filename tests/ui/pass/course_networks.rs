// Every network of the course compiles as written, with PyTorch's parameter counts
// (from `sum(p.numel() for p in model.parameters())` in PyTorch 2.15; AlexNet and VGG16-bn
// as torchvision counts them).
use staticnet::prelude::*;

network! {
    /// Model A: two same-padding convolutions, max pooling, one linear readout.
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
    /// Model B: Model A with average pooling.
    pub struct ModelB {
        input: [1, 28, 28],
        cnn1: Conv2d(in_channels = 1, out_channels = 16, kernel_size = 5, stride = 1, padding = 2),
        relu1: ReLU,
        avgpool1: AvgPool2d(kernel_size = 2),
        cnn2: Conv2d(in_channels = 16, out_channels = 32, kernel_size = 5, stride = 1, padding = 2),
        relu2: ReLU,
        avgpool2: AvgPool2d(kernel_size = 2),
        Flatten,
        fc1: Linear(32 * 7 * 7, 10),
    }
}

network! {
    /// Model C: valid padding, so the maps shrink to 4x4.
    pub struct ModelC {
        input: [1, 28, 28],
        cnn1: Conv2d(in_channels = 1, out_channels = 16, kernel_size = 5, stride = 1, padding = 0),
        relu1: ReLU,
        avgpool1: AvgPool2d(kernel_size = 2),
        cnn2: Conv2d(in_channels = 16, out_channels = 32, kernel_size = 5, stride = 1, padding = 0),
        relu2: ReLU,
        avgpool2: AvgPool2d(kernel_size = 2),
        Flatten,
        fc1: Linear(32 * 4 * 4, 10),
    }
}

network! {
    /// The Sequential exercise: four convolutions in `features`, three linear layers in
    /// `classifier`.
    pub struct NetSeq {
        input: [1, 28, 28],
        features: [
            Conv2d(in_channels = 1, out_channels = 5, kernel_size = 3, padding = 1), ReLU(inplace = true),
            Conv2d(in_channels = 5, out_channels = 10, kernel_size = 3, padding = 1),
            MaxPool2d(2, 2), ReLU(inplace = true),
            Conv2d(in_channels = 10, out_channels = 20, kernel_size = 3, padding = 1), ReLU(inplace = true),
            Conv2d(in_channels = 20, out_channels = 40, kernel_size = 3, padding = 1),
            MaxPool2d(2, 2), ReLU(inplace = true),
        ],
        Flatten,
        classifier: [
            Linear(7 * 7 * 40, 1024), ReLU(inplace = true),
            Linear(1024, 2048), ReLU(inplace = true),
            Linear(2048, 10),
        ],
    }
}

network! {
    /// The batch-normalization exercise.
    pub struct NetBn {
        input: [1, 28, 28],
        features: [
            Conv2d(in_channels = 1, out_channels = 10, kernel_size = 3, stride = 1, padding = 1),
            MaxPool2d(2, 2), ReLU(inplace = true), BatchNorm2d(10),
            Conv2d(in_channels = 10, out_channels = 20, kernel_size = 3, stride = 1, padding = 1),
            MaxPool2d(2, 2), ReLU(inplace = true), BatchNorm2d(20),
        ],
        Flatten,
        fc: Linear(7 * 7 * 20, 10),
    }
}

network! {
    /// The dropout exercise.
    pub struct Mlp {
        input: [784],
        classifier: [
            Linear(28 * 28, 200), ReLU(inplace = true), Dropout(p = 0.5),
            Linear(200, 500), ReLU(inplace = true),
            Linear(500, 10),
        ],
    }
}

network! {
    /// The three-convolution CIFAR-10 network.
    pub struct CifarNet {
        input: [3, 32, 32],
        conv1: Conv2d(in_channels = 3, out_channels = 32, kernel_size = 3, padding = 1), ReLU, MaxPool2d(2, 2),
        conv2: Conv2d(in_channels = 32, out_channels = 64, kernel_size = 3, padding = 1), ReLU, MaxPool2d(2, 2),
        conv3: Conv2d(in_channels = 64, out_channels = 128, kernel_size = 3, padding = 1), ReLU, MaxPool2d(2, 2),
        Flatten,
        fc: Linear(128 * 4 * 4, 10),
    }
}

network! {
    /// AlexNet, written as the course writes it with nn.Sequential.
    pub struct AlexNet {
        input: [3, 224, 224],
        features: [
            Conv2d(3, 64, kernel_size = 11, stride = 4, padding = 2), ReLU,
            MaxPool2d(kernel_size = 3, stride = 2),
            Conv2d(64, 192, kernel_size = 5, padding = 2), ReLU,
            MaxPool2d(kernel_size = 3, stride = 2),
            Conv2d(192, 384, kernel_size = 3, padding = 1), ReLU,
            Conv2d(384, 256, kernel_size = 3, padding = 1), ReLU,
            Conv2d(256, 256, kernel_size = 3, padding = 1), ReLU,
            MaxPool2d(kernel_size = 3, stride = 2),
        ],
        avgpool: AdaptiveAvgPool2d((6, 6)),
        Flatten,
        classifier: [
            Dropout(0.5), Linear(256 * 6 * 6, 4096), ReLU,
            Dropout(0.5), Linear(4096, 4096), ReLU,
            Linear(4096, 1000),
        ],
    }
}

network! {
    /// VGG16 with batch normalization, as torchvision's vgg16_bn.
    pub struct Vgg16Bn {
        input: [3, 224, 224],
        features: [
            Conv2d(3, 64, 3, padding = 1), BatchNorm2d(64), ReLU,
            Conv2d(64, 64, 3, padding = 1), BatchNorm2d(64), ReLU,
            MaxPool2d(2, 2),
            Conv2d(64, 128, 3, padding = 1), BatchNorm2d(128), ReLU,
            Conv2d(128, 128, 3, padding = 1), BatchNorm2d(128), ReLU,
            MaxPool2d(2, 2),
            Conv2d(128, 256, 3, padding = 1), BatchNorm2d(256), ReLU,
            Conv2d(256, 256, 3, padding = 1), BatchNorm2d(256), ReLU,
            Conv2d(256, 256, 3, padding = 1), BatchNorm2d(256), ReLU,
            MaxPool2d(2, 2),
            Conv2d(256, 512, 3, padding = 1), BatchNorm2d(512), ReLU,
            Conv2d(512, 512, 3, padding = 1), BatchNorm2d(512), ReLU,
            Conv2d(512, 512, 3, padding = 1), BatchNorm2d(512), ReLU,
            MaxPool2d(2, 2),
            Conv2d(512, 512, 3, padding = 1), BatchNorm2d(512), ReLU,
            Conv2d(512, 512, 3, padding = 1), BatchNorm2d(512), ReLU,
            Conv2d(512, 512, 3, padding = 1), BatchNorm2d(512), ReLU,
            MaxPool2d(2, 2),
        ],
        avgpool: AdaptiveAvgPool2d((7, 7)),
        Flatten,
        classifier: [
            Linear(512 * 7 * 7, 4096), ReLU, Dropout(),
            Linear(4096, 4096), ReLU, Dropout(),
            Linear(4096, 1000),
        ],
    }
}

network! {
    /// Every size but the input inferred with `_`.
    pub struct Inferred {
        input: [3, 32, 32],
        conv: Conv2d(_, 8, 3, padding = "same"),
        bn: BatchNorm2d(_),
        Flatten,
        fc: Linear(_, 10),
    }
}

fn main() {
    assert_eq!(ModelA::<Cpu>::PARAMETERS, 28_938);
    assert_eq!(ModelB::<Cpu>::PARAMETERS, 28_938);
    assert_eq!(ModelC::<Cpu>::PARAMETERS, 18_378);
    assert_eq!(NetSeq::<Cpu>::PARAMETERS, 4_137_324);
    assert_eq!(NetBn::<Cpu>::PARAMETERS, 11_790);
    assert_eq!(Mlp::<Cpu>::PARAMETERS, 262_510);
    assert_eq!(CifarNet::<Cpu>::PARAMETERS, 113_738);
    assert_eq!(AlexNet::<Cpu>::PARAMETERS, 61_100_840);
    assert_eq!(Vgg16Bn::<Cpu>::PARAMETERS, 138_365_992);
    assert_eq!(Inferred::<Cpu>::PARAMETERS, 3 * 8 * 9 + 8 + 2 * 8 + 8 * 32 * 32 * 10 + 10);
    // State-dict keys are PyTorch's.
    let keys: Vec<&str> = NetBn::<Cpu>::SPEC.tensors.iter().map(|t| t.name).collect();
    assert_eq!(keys[..7], ["features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias", "features.3.running_mean", "features.3.running_var", "features.3.num_batches_tracked"]);
    assert_eq!(AlexNet::<Cpu>::SPEC.tensors.last().unwrap().name, "classifier.6.bias");
}
