// torchvision's ResNet-18 written with a block definition: its parameter count is
// torchvision's (`sum(p.numel() for p in resnet18().parameters())`).
use staticnet::prelude::*;

network! {
    /// torchvision's BasicBlock.
    block BasicBlock(inplanes, planes, stride = 1) {
        conv1: Conv2d(inplanes, planes, kernel_size = 3, stride = stride, padding = 1, bias = false),
        bn1: BatchNorm2d(planes),
        relu: ReLU,
        conv2: Conv2d(planes, planes, kernel_size = 3, padding = 1, bias = false),
        bn2: BatchNorm2d(planes),
        + downsample: [
            Conv2d(inplanes, planes, kernel_size = 1, stride = stride, bias = false),
            BatchNorm2d(planes),
        ] if stride != 1 || inplanes != planes,
        => ReLU,
    }

    /// torchvision's ResNet-18.
    pub struct ResNet18 {
        input: [3, 224, 224],
        conv1: Conv2d(3, 64, kernel_size = 7, stride = 2, padding = 3, bias = false),
        bn1: BatchNorm2d(64),
        relu: ReLU,
        maxpool: MaxPool2d(kernel_size = 3, stride = 2, padding = 1),
        layer1: [BasicBlock(64, 64); 2],
        layer2: [BasicBlock(64, 128, stride = 2), BasicBlock(128, 128)],
        layer3: [BasicBlock(128, 256, stride = 2), BasicBlock(256, 256)],
        layer4: [BasicBlock(256, 512, stride = 2), BasicBlock(512, 512)],
        avgpool: AdaptiveAvgPool2d((1, 1)),
        Flatten,
        fc: Linear(512, 1000),
    }

    /// A second network of the same invocation shares the block.
    pub struct ResNet10 {
        input: [3, 64, 64],
        conv1: Conv2d(3, 16, kernel_size = 3, padding = 1, bias = false),
        bn1: BatchNorm2d(16),
        relu: ReLU,
        layer1: [BasicBlock(16, 16)],
        layer2: [BasicBlock(16, 32, stride = 2)],
        avgpool: AdaptiveAvgPool2d(1),
        Flatten,
        fc: Linear(32, 10),
    }
}

fn main() {
    assert_eq!(ResNet18::<Cpu>::PARAMETERS, 11_689_512);
    let keys: Vec<&str> = ResNet18::<Cpu>::SPEC.tensors.iter().map(|t| t.name).collect();
    assert_eq!(keys.len(), 122);
    assert!(keys.contains(&"layer2.0.downsample.1.running_var"));
    assert!(!keys.iter().any(|k| k.starts_with("layer1.0.downsample")));
    assert_eq!(ResNet10::<Cpu>::SPEC.output, &[10]);
}
