//! The networks of the fixtures, as the course writes them (see tests/fixtures/README.md), down
//! to `ReLU(inplace = true)` where the PyTorch definition has it, so that `print(model)` agrees.

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
            Conv2d(1, 10, 3, stride = 1, padding = 1), MaxPool2d(2, 2), ReLU(inplace = true), BatchNorm2d(10),
            Conv2d(10, 20, 3, stride = 1, padding = 1), MaxPool2d(2, 2), ReLU(inplace = true), BatchNorm2d(20),
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
        classifier: [Linear(28 * 28, 200), ReLU(inplace = true), Dropout(0.5), Linear(200, 500), ReLU(inplace = true), Linear(500, 10)],
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

network! {
    /// torchvision's BasicBlock: two 3×3 convolutions with batch-norm, added to a shortcut (the
    /// identity, or a 1×1 convolution with batch-norm when the block changes the shape), then
    /// ReLU.
    block BasicBlock(inplanes, planes, stride = 1) {
        conv1: Conv2d(inplanes, planes, kernel_size = 3, stride = stride, padding = 1, bias = false),
        bn1: BatchNorm2d(planes),
        relu: ReLU(inplace = true),
        conv2: Conv2d(planes, planes, kernel_size = 3, padding = 1, bias = false),
        bn2: BatchNorm2d(planes),
        + downsample: [
            Conv2d(inplanes, planes, kernel_size = 1, stride = stride, bias = false),
            BatchNorm2d(planes),
        ] if stride != 1 || inplanes != planes,
        => ReLU(inplace = true),
    }

    /// torchvision's ResNet-18.
    pub struct ResNet18 {
        input: [3, 224, 224],
        conv1: Conv2d(3, 64, kernel_size = 7, stride = 2, padding = 3, bias = false),
        bn1: BatchNorm2d(64),
        relu: ReLU(inplace = true),
        maxpool: MaxPool2d(kernel_size = 3, stride = 2, padding = 1),
        layer1: [BasicBlock(64, 64); 2],
        layer2: [BasicBlock(64, 128, stride = 2), BasicBlock(128, 128)],
        layer3: [BasicBlock(128, 256, stride = 2), BasicBlock(256, 256)],
        layer4: [BasicBlock(256, 512, stride = 2), BasicBlock(512, 512)],
        avgpool: AdaptiveAvgPool2d((1, 1)),
        Flatten,
        fc: Linear(512, 1000),
    }

    /// ResNet-18's topology at widths 8/16/32/64 on 3×32×32 images (tests/fixtures/resnet_mini).
    pub struct ResNetMini {
        input: [3, 32, 32],
        conv1: Conv2d(3, 8, kernel_size = 3, padding = 1, bias = false),
        bn1: BatchNorm2d(8),
        relu: ReLU(inplace = true),
        layer1: [BasicBlock(8, 8); 2],
        layer2: [BasicBlock(8, 16, stride = 2), BasicBlock(16, 16)],
        layer3: [BasicBlock(16, 32, stride = 2), BasicBlock(32, 32)],
        layer4: [BasicBlock(32, 64, stride = 2), BasicBlock(64, 64)],
        avgpool: AdaptiveAvgPool2d((1, 1)),
        Flatten,
        fc: Linear(64, 10),
    }
}

network! {
    /// tests/fixtures/activations_mix: depthwise and grouped convolutions and every activation
    /// beyond the course's (its metadata's `dsl`, in torch's module names).
    pub struct ActivationsMix {
        input: [3, 30, 30],
        features: [
            Conv2d(3, 16, 3, padding = 1), BatchNorm2d(16), ReLU6,
            Conv2d(16, 16, 3, padding = 1, groups = 16, bias = false), GELU,
            Conv2d(16, 32, 1), ELU,
            Conv2d(32, 32, 3, stride = 2, groups = 4), Hardswish,
            Conv2d(32, 32, 3, padding = 1), SiLU, Identity,
        ],
        pool: AdaptiveMaxPool2d((3, 3)),
        _: Flatten,
        classifier: [Linear(32 * 3 * 3, 24), GELU(approximate = "tanh"), Linear(24, 10)],
    }
}

network! {
    /// torchvision's Conv2dNormActivation with ReLU6 (a Sequential: its layers are 0, 1, 2).
    block Conv2dNormActivation(in_channels, out_channels, kernel_size = 3, stride = 1, groups = 1) {
        Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) / 2, groups = groups, bias = false),
        BatchNorm2d(out_channels),
        ReLU6(inplace = true),
    }

    /// torchvision's InvertedResidual.
    block InvertedResidual(inp, oup, stride, expand_ratio) {
        let hidden_dim = int(round(inp * expand_ratio));
        conv: [
            Conv2dNormActivation(inp, hidden_dim, kernel_size = 1) if expand_ratio != 1,
            Conv2dNormActivation(hidden_dim, hidden_dim, stride = stride, groups = hidden_dim),
            Conv2d(hidden_dim, oup, 1, 1, 0, bias = false),
            BatchNorm2d(oup),
        ],
        + identity if stride == 1 && inp == oup,
    }

    /// torchvision's `mobilenet_v2()` (tests/fixtures/mobilenet_v2_state_dict.txt).
    pub struct MobileNetV2 {
        input: [3, 224, 224],
        features: [
            Conv2dNormActivation(3, 32, stride = 2),
            InvertedResidual(32, 16, 1, 1),
            InvertedResidual(16, 24, 2, 6),
            InvertedResidual(24, 24, 1, 6),
            InvertedResidual(24, 32, 2, 6),
            InvertedResidual(32, 32, 1, 6),
            InvertedResidual(32, 32, 1, 6),
            InvertedResidual(32, 64, 2, 6),
            InvertedResidual(64, 64, 1, 6),
            InvertedResidual(64, 64, 1, 6),
            InvertedResidual(64, 64, 1, 6),
            InvertedResidual(64, 96, 1, 6),
            InvertedResidual(96, 96, 1, 6),
            InvertedResidual(96, 96, 1, 6),
            InvertedResidual(96, 160, 2, 6),
            InvertedResidual(160, 160, 1, 6),
            InvertedResidual(160, 160, 1, 6),
            InvertedResidual(160, 320, 1, 6),
            Conv2dNormActivation(320, 1280, kernel_size = 1),
        ],
        _: AdaptiveAvgPool2d((1, 1)),
        _: Flatten,
        classifier: [Dropout(0.2), Linear(1280, 1000)],
    }

    /// torchvision's `mobilenet_v2(width_mult=0.25, num_classes=10, dropout=0.0)`
    /// (tests/fixtures/mobilenet_v2_mini).
    pub struct MobileNetV2Mini {
        input: [3, 32, 32],
        features: [
            Conv2dNormActivation(3, 8, stride = 2),
            InvertedResidual(8, 8, 1, 1),
            InvertedResidual(8, 8, 2, 6),
            InvertedResidual(8, 8, 1, 6),
            InvertedResidual(8, 8, 2, 6),
            InvertedResidual(8, 8, 1, 6),
            InvertedResidual(8, 8, 1, 6),
            InvertedResidual(8, 16, 2, 6),
            InvertedResidual(16, 16, 1, 6),
            InvertedResidual(16, 16, 1, 6),
            InvertedResidual(16, 16, 1, 6),
            InvertedResidual(16, 24, 1, 6),
            InvertedResidual(24, 24, 1, 6),
            InvertedResidual(24, 24, 1, 6),
            InvertedResidual(24, 40, 2, 6),
            InvertedResidual(40, 40, 1, 6),
            InvertedResidual(40, 40, 1, 6),
            InvertedResidual(40, 80, 1, 6),
            Conv2dNormActivation(80, 1280, kernel_size = 1),
        ],
        _: AdaptiveAvgPool2d((1, 1)),
        _: Flatten,
        classifier: [Dropout(0.0), Linear(1280, 10)],
    }
}
