//! torchvision's MobileNetV2, declared with its InvertedResidual block: its summary, its
//! pretrained weights (exported from torchvision), and the classification of an image.
//!
//!     pip install torch torchvision safetensors
//!     python3 scripts/export_state_dict.py torchvision:mobilenet_v2 --weights DEFAULT mobilenet_v2.safetensors
//!     cargo run --release --example mobilenet-v2 -- --weights mobilenet_v2.safetensors cat.jpg
//!
//! and, with `--cifar DIR`, trains the same network for CIFAR-10 (torchvision's
//! `mobilenet_v2(num_classes=10)` on 32 × 32 images) with the training loop:
//!
//!     cargo run --release --example mobilenet-v2 -- --cifar ~/data/cifar-10-batches-bin --epochs 10
//!
//! The listing reads as torchvision's source (torchvision/models/mobilenetv2.py): a block's
//! `let` computes its hidden width, the expansion layer is there only `if expand_ratio != 1`
//! (the indices after it shift as in PyTorch: `features.1.conv.1.weight` is a 1×1 convolution,
//! `features.2.conv.1.0.weight` a depthwise one), the residual sum only where the stride is 1
//! and the widths agree, with no activation after it. The pooling and flattening that
//! torchvision's `forward` does with functions are `_:` layers: they take no module name.
//! The image is prepared as torchvision's ImageNet models expect (examples/common/imagenet.rs).

mod common;
#[path = "common/course.rs"]
mod course;

use std::path::Path;

use staticnet::data::cifar10::Cifar10;
use staticnet::data::transforms::{Compose, Normalize, RandomCrop, RandomHorizontalFlip};
use staticnet::prelude::*;
use staticnet::{Trainer, evaluate};

network! {
    /// torchvision's Conv2dNormActivation with ReLU6: convolution ("same" padding), batch-norm,
    /// ReLU6, as one `nn.Sequential` (its layers are `0`, `1`, `2`).
    block Conv2dNormActivation(in_channels, out_channels, kernel_size = 3, stride = 1, groups = 1) {
        Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) / 2, groups = groups, bias = false),
        BatchNorm2d(out_channels),
        ReLU6(inplace = true),
    }

    /// torchvision's InvertedResidual: expand (1×1), depthwise 3×3, project (1×1, linear).
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

    /// torchvision's `mobilenet_v2()`: the inverted residual settings (t, c, n, s) = (1, 16, 1, 1),
    /// (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1).
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
}

const USAGE: &str = "usage: mobilenet-v2 [--weights FILE.safetensors] [--labels FILE] [IMAGE]
       mobilenet-v2 --cifar DIR [--epochs 10] [--batch-size 128] [--lr 0.05] [--limit N] [--workers 2] [--seed 0]

Prints MobileNetV2's summary and parameter count; with --weights loads them (a safetensors
file exported from torchvision by scripts/export_state_dict.py); with an IMAGE (JPEG or PNG)
prints its top-5 ImageNet classes. --labels defaults to examples/data/imagenet_classes.txt.

With --cifar, trains mobilenet_v2(num_classes=10) on CIFAR-10 (the binary files in DIR, from
https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz) with RandomCrop(32, padding=4) and
RandomHorizontalFlip(), SGD with momentum and weight decay and a cosine schedule, then prints
the test accuracy; --limit trains on the first N training images only.";

fn main() -> std::process::ExitCode {
    let image = common::imagenet::image_arg(&["--weights", "--labels", "--cifar", "--epochs", "--batch-size", "--lr", "--limit", "--workers", "--seed"]);
    let args = common::Args::parse_without_last(USAGE, image.is_some());
    args.check(&["weights", "labels", "cifar", "epochs", "batch-size", "lr", "limit", "workers", "seed"]);
    if let Some(dir) = args.opt("cifar") {
        return common::run(|| train_cifar(&args, &dir));
    }
    common::run(|| {
        let mut model = MobileNetV2::new(&Cpu, 0)?;
        println!("{}", model.summary());
        println!("parameters: {} (torchvision: 3,504,872)", MobileNetV2::<Cpu>::PARAMETERS);
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
        common::imagenet::print_top5(&image, logits.sample(0), args.opt("labels"))
    })
}

/// Trains `course::MobileNetV2Cifar` on CIFAR-10 with the standard augmentation, then tests it.
fn train_cifar(args: &common::Args, dir: &str) -> staticnet::Result<()> {
    let cifar = Cifar10::load(dir)?;
    let (mean, std) = ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]);
    let seed = args.get("seed", 0);
    let limit = args.get("limit", cifar.train.len()).min(cifar.train.len());
    let train = cifar.train.subset(&(0..limit).collect::<Vec<_>>())?;
    let (train, val) = train.split(train.len() * 9 / 10, seed)?;
    // The bench's workload (examples/common/course.rs): this listing with a [3, 32, 32] input
    // and Linear(1280, 10).
    let mut model = course::MobileNetV2Cifar::new(&Cpu, seed)?;
    println!("{}\n", model.summary());
    let epochs = args.get("epochs", 10);
    let mut optimizer = Sgd::new(args.get("lr", 0.05)).momentum(0.9).weight_decay(4e-5);
    // The crop pads with black before normalising, as transforms.Compose([RandomCrop(32,
    // padding=4), RandomHorizontalFlip(), ToTensor(), Normalize(...)]) does.
    let augment = Compose::new().then(RandomCrop::new(32).padding(4)).then(RandomHorizontalFlip::default()).then(Normalize::new(&mean, &std));
    Trainer::new(epochs)
        .batch_size(args.get("batch-size", 128))
        .seed(seed)
        .scheduler(CosineAnnealingLr::new(epochs))
        .train_transform(augment)
        .eval_transform(Normalize::new(&mean, &std))
        .num_workers(args.get("workers", 2))
        .out_dir("runs/mobilenet-cifar")
        .checkpoint("runs/mobilenet-cifar/checkpoint.safetensors")
        .fit(&mut model, &mut optimizer, &train, Some(&val))?;
    let mut test = cifar.test;
    test.normalize(&mean, &std)?;
    let result = evaluate(&mut model, &test, 500)?;
    println!("test accuracy: {:.2}%", 100.0 * result.accuracy);
    Ok(())
}
