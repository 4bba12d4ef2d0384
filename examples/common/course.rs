//! The networks of the benchmark workloads (bench/compare.py, ../shared/bench/torch_ref.py),
//! and their random batches, shared by the bench example and the criterion benches
//! (benches/train_step.rs).

#![allow(dead_code)]

use staticnet::prelude::*;

network! {
    /// Model A: 2 convolutions (same padding), 2 max poolings, 1 linear layer.
    pub struct ModelA {
        input: [1, 28, 28],
        cnn1: Conv2d(1, 16, 5, 1, 2), relu1: ReLU, maxpool1: MaxPool2d(2),
        cnn2: Conv2d(16, 32, 5, 1, 2), relu2: ReLU, maxpool2: MaxPool2d(2),
        Flatten,
        fc1: Linear(32 * 7 * 7, 10),
    }

    /// Model C: valid padding, average pooling.
    pub struct ModelC {
        input: [1, 28, 28],
        cnn1: Conv2d(1, 16, 5), relu1: ReLU, avgpool1: AvgPool2d(2),
        cnn2: Conv2d(16, 32, 5), relu2: ReLU, avgpool2: AvgPool2d(2),
        Flatten,
        fc1: Linear(32 * 4 * 4, 10),
    }

    /// The Sequential exercise.
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

    /// The batch-norm exercise.
    pub struct NetBn {
        input: [1, 28, 28],
        features: [
            Conv2d(1, 10, 3, 1, 1), MaxPool2d(2, 2), ReLU, BatchNorm2d(10),
            Conv2d(10, 20, 3, 1, 1), MaxPool2d(2, 2), ReLU, BatchNorm2d(20),
        ],
        Flatten,
        fc: Linear(7 * 7 * 20, 10),
    }

    /// The CIFAR-10 network.
    pub struct CifarCnn {
        input: [3, 32, 32],
        conv1: Conv2d(3, 32, 3, padding = 1), ReLU, MaxPool2d(2, 2),
        conv2: Conv2d(32, 64, 3, padding = 1), ReLU, MaxPool2d(2, 2),
        conv3: Conv2d(64, 128, 3, padding = 1), ReLU, MaxPool2d(2, 2),
        Flatten,
        fc: Linear(128 * 4 * 4, 10),
    }

    /// AlexNet.
    pub struct AlexNet {
        input: [3, 224, 224],
        features: [
            Conv2d(3, 64, 11, 4, 2), ReLU, MaxPool2d(3, 2),
            Conv2d(64, 192, 5, padding = 2), ReLU, MaxPool2d(3, 2),
            Conv2d(192, 384, 3, padding = 1), ReLU,
            Conv2d(384, 256, 3, padding = 1), ReLU,
            Conv2d(256, 256, 3, padding = 1), ReLU, MaxPool2d(3, 2),
        ],
        avgpool: AdaptiveAvgPool2d((6, 6)),
        Flatten,
        classifier: [Dropout(), Linear(256 * 6 * 6, 4096), ReLU, Dropout(), Linear(4096, 4096), ReLU, Linear(4096, 1000)],
    }
}

network! {
    /// torchvision's Conv2dNormActivation with ReLU6.
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

    /// torchvision's `mobilenet_v2(num_classes=10)` on 32 × 32 images (examples/mobilenet-v2.rs).
    pub struct MobileNetV2Cifar {
        input: [3, 32, 32],
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
        classifier: [Dropout(0.2), Linear(1280, 10)],
    }
}

network! {
    /// airbench94's ConvGroup (github.com/KellerJordan/cifar10-airbench): a 3 × 3 convolution
    /// without bias, max pooling, then batch norm and GELU around a second convolution. Its
    /// batch norms are `BatchNorm(momentum=0.6, eps=1e-12)`, which subclasses nn.BatchNorm2d
    /// with PyTorch's momentum 1 − 0.6.
    block ConvGroup(channels_in, channels_out) {
        conv1: Conv2d(channels_in, channels_out, 3, padding = 1, bias = false),
        pool: MaxPool2d(2),
        norm1: BatchNorm2d(channels_out, eps = 1e-12, momentum = 0.4),
        GELU,
        conv2: Conv2d(channels_out, channels_out, 3, padding = 1, bias = false),
        norm2: BatchNorm2d(channels_out, eps = 1e-12, momentum = 0.4),
        GELU,
    }

    /// airbench94's network for CIFAR-10 (widths 64, 256, 256): a 2 × 2 whitening convolution,
    /// three ConvGroups, max pooling to 1 × 1 and a linear classifier without bias: 8 layers
    /// with weights. airbench multiplies the logits by 1/9 at the end (its `Mul` module, which
    /// PyTorch does not have); that scale is left out here and in bench/compare.py's twin.
    /// airbench trains with the whitening weights and the batch norms' weights frozen
    /// (`requires_grad = False`): see `freeze_like_airbench`.
    pub struct Airbench94 {
        input: [3, 32, 32],
        whiten: Conv2d(3, 24, 2, padding = 0),
        GELU,
        block1: ConvGroup(24, 64),
        block2: ConvGroup(64, 256),
        block3: ConvGroup(256, 256),
        MaxPool2d(3),
        Flatten,
        head: Linear(256, 10, bias = false),
    }
}

/// Freezes what airbench94 trains without: the whitening convolution's weight and every batch
/// norm's weight (their biases train).
pub fn freeze_like_airbench<B: staticnet::Backend>(net: &mut Airbench94<B>) -> staticnet::Result<()> {
    net.freeze("whiten.weight")?;
    for block in ["block1", "block2", "block3"] {
        for norm in ["norm1", "norm2"] {
            net.freeze(&format!("{block}.{norm}.weight"))?;
        }
    }
    Ok(())
}

/// Uniform values in [0, 1) and labels in 0..10, as `torch.rand` and `torch.randint` give.
pub fn batch<I: Batch>(n: usize, seed: u64) -> (I, Vec<usize>) {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let data = (0..n * I::SAMPLE_LEN).map(|_| (next() >> 40) as f32 / (1u64 << 24) as f32).collect();
    let labels = (0..n).map(|_| (next() % 10) as usize).collect();
    (I::from_vec(n, data).expect("sized above"), labels)
}
