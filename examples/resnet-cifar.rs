//! A CIFAR-sized ResNet trained with the training loop: ResNet-18's topology (four stages of two
//! BasicBlocks) with a 3×3 stem and no max pooling, as ResNets for 32×32 images are built, at a
//! quarter of ResNet-18's width (16/32/64/128) so that it trains on a CPU.
//!
//!     cargo run --release --example resnet-cifar -- --data-dir ~/data/cifar-10-batches-bin
//!
//! CIFAR-10 is not bundled: download and unpack the binary version from
//! https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz first.

mod common;

use staticnet::data::cifar10::Cifar10;
use staticnet::prelude::*;
use staticnet::{Trainer, evaluate};

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

    /// ResNet-18 for 32×32 images at a quarter of its width.
    pub struct CifarResNet {
        input: [3, 32, 32],
        conv1: Conv2d(3, 16, kernel_size = 3, padding = 1, bias = false),
        bn1: BatchNorm2d(16),
        relu: ReLU,
        layer1: [BasicBlock(16, 16); 2],
        layer2: [BasicBlock(16, 32, stride = 2), BasicBlock(32, 32)],
        layer3: [BasicBlock(32, 64, stride = 2), BasicBlock(64, 64)],
        layer4: [BasicBlock(64, 128, stride = 2), BasicBlock(128, 128)],
        avgpool: AdaptiveAvgPool2d((1, 1)),
        Flatten,
        fc: Linear(128, 10),
    }
}

const USAGE: &str = "usage: resnet-cifar --data-dir DIR [--epochs 5] [--batch-size 128] [--lr 0.05] [--limit N] [--seed 0]

Trains a quarter-width ResNet-18 on CIFAR-10 (the binary files in DIR, from
https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz), with SGD, momentum, weight decay and a
cosine learning-rate schedule; --limit trains on the first N training images only.";

fn main() -> std::process::ExitCode {
    let args = common::Args::parse(USAGE);
    args.check(&["data-dir", "epochs", "batch-size", "lr", "limit", "seed"]);
    let Some(dir) = args.opt("data-dir") else {
        eprintln!("error: CIFAR-10 is not bundled: download and unpack\n  https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz\nthen run with --data-dir pointing at the folder of data_batch_1.bin ... test_batch.bin\n\n{USAGE}");
        return std::process::ExitCode::FAILURE;
    };
    common::run(|| {
        let mut cifar = Cifar10::load(&dir)?;
        let (mean, std) = ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]);
        cifar.train.normalize(&mean, &std)?;
        cifar.test.normalize(&mean, &std)?;
        let seed = args.get("seed", 0);
        let limit = args.get("limit", cifar.train.len()).min(cifar.train.len());
        let train = cifar.train.subset(&(0..limit).collect::<Vec<_>>())?;
        let (train, val) = train.split(train.len() * 9 / 10, seed)?;
        let mut model = CifarResNet::new(&Cpu, seed)?;
        println!("{}\n", model.summary());
        let epochs = args.get("epochs", 5);
        let mut optimizer = Sgd::new(args.get("lr", 0.05)).momentum(0.9).weight_decay(5e-4);
        Trainer::new(epochs)
            .batch_size(args.get("batch-size", 128))
            .seed(seed)
            .scheduler(CosineAnnealingLr::new(epochs))
            .out_dir("runs/resnet-cifar")
            .checkpoint("runs/resnet-cifar/checkpoint.safetensors")
            .fit(&mut model, &mut optimizer, &train, Some(&val))?;
        let test = evaluate(&mut model, &cifar.test, 500)?;
        println!("test accuracy: {:.2}%", 100.0 * test.accuracy);
        Ok(())
    })
}
