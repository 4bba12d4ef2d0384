//! torchvision's ResNet-18, declared with a residual block definition: its summary, its
//! pretrained weights (exported from torchvision), and the classification of an image.
//!
//!     pip install torch torchvision safetensors
//!     python3 scripts/export_state_dict.py torchvision:resnet18 --weights DEFAULT resnet18.safetensors
//!     cargo run --release --example resnet18 -- --weights resnet18.safetensors cat.jpg
//!
//! The image is prepared as torchvision's ImageNet models expect (examples/common/imagenet.rs).

mod common;

use std::path::Path;

use staticnet::prelude::*;

network! {
    /// torchvision's BasicBlock: two 3×3 convolutions with batch-norm, added to a shortcut (the
    /// identity, or a 1×1 convolution with batch-norm when the block changes the shape), then
    /// ReLU.
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
}

const USAGE: &str = "usage: resnet18 [--weights FILE.safetensors] [--labels FILE] [IMAGE]

Prints ResNet-18's summary; with --weights loads them (a safetensors file exported from
torchvision by scripts/export_state_dict.py); with an IMAGE (JPEG or PNG) prints its top-5
ImageNet classes. --labels defaults to examples/data/imagenet_classes.txt.";

fn main() -> std::process::ExitCode {
    let image = common::imagenet::image_arg(&["--weights", "--labels"]);
    // The image is the last argument; the rest are options.
    let args = common::Args::parse_without_last(USAGE, image.is_some());
    args.check(&["weights", "labels"]);
    common::run(|| {
        let mut model = ResNet18::new(&Cpu, 0)?;
        println!("{}", model.summary());
        match args.opt("weights") {
            Some(path) => {
                let report = model.load(&path, true)?;
                println!("\nloaded {} tensors from {path}", report.loaded);
            }
            None => println!("\nno --weights: the network keeps its random initialisation, so its classes mean nothing"),
        }
        let Some(image) = image else { return Ok(()) };
        let x = common::imagenet::input(Path::new(&image))?;
        model.eval();
        let logits = model.forward(&x)?;
        common::imagenet::print_top5(&image, logits.sample(0), args.opt("labels"))?;
        Ok(())
    })
}
