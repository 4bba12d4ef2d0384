//! torchvision's ResNet-18, declared with a residual block definition: its summary, its
//! pretrained weights (exported from torchvision), and the classification of an image.
//!
//!     pip install torch torchvision safetensors
//!     python3 scripts/export_state_dict.py torchvision:resnet18 --weights DEFAULT resnet18.safetensors
//!     cargo run --release --example resnet18 -- --weights resnet18.safetensors cat.jpg
//!
//! The image is prepared as torchvision's ImageNet models expect: its shorter side resized to
//! 256, the centre 224 × 224 cropped, scaled to [0, 1] and normalised per channel with
//! mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).

mod common;

use std::path::Path;

use staticnet::prelude::*;
use staticnet::{Error, Result};

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
    let image = std::env::args().skip(1).collect::<Vec<_>>().last().filter(|a| !a.starts_with("--")).cloned();
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
        let x = imagenet_input(Path::new(&image))?;
        model.eval();
        let logits = model.forward(&x)?;
        let labels_path = args.opt("labels").unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/imagenet_classes.txt").to_string());
        let labels = std::fs::read_to_string(&labels_path).map_err(|e| Error::Io { path: labels_path.clone().into(), source: e })?;
        let labels: Vec<&str> = labels.lines().collect();
        // Softmax over the 1000 logits, then the five largest.
        let l = logits.sample(0);
        let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = l.iter().map(|v| (v - max).exp()).sum();
        let mut order: Vec<usize> = (0..l.len()).collect();
        order.sort_by(|&a, &b| l[b].partial_cmp(&l[a]).unwrap_or(std::cmp::Ordering::Equal));
        println!("\n{image}:");
        for &c in &order[..5] {
            println!("  {:6.2}%  {c:4}  {}", 100.0 * (l[c] - max).exp() / sum, labels.get(c).unwrap_or(&"?"));
        }
        Ok(())
    })
}

/// torchvision's ImageNet preprocessing: resize the shorter side to 256 (bilinear), crop the
/// centre 224 × 224, scale to [0, 1], normalise per channel.
fn imagenet_input(path: &Path) -> Result<Images<3, 224, 224>> {
    let img = image::open(path).map_err(|e| Error::File { path: path.into(), message: format!("cannot decode the image: {e}") })?.to_rgb8();
    let (w, h) = img.dimensions();
    let scale = 256.0 / w.min(h) as f32;
    let (nw, nh) = (((w as f32 * scale).round() as u32).max(224), ((h as f32 * scale).round() as u32).max(224));
    let resized = image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle);
    let (x0, y0) = ((nw - 224) / 2, (nh - 224) / 2);
    let (mean, std) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
    let mut data = vec![0.0f32; 3 * 224 * 224];
    for y in 0..224 {
        for x in 0..224 {
            let p = resized.get_pixel(x0 + x, y0 + y);
            for c in 0..3 {
                data[(c * 224 + y as usize) * 224 + x as usize] = (p[c] as f32 / 255.0 - mean[c]) / std[c];
            }
        }
    }
    Images::new(1, data)
}
