//! Your own images: a folder in torchvision's `ImageFolder` layout, `DIR/train/<class>/…` and
//! `DIR/test/<class>/…`, trains the course's Model A (one channel, 28 × 28, up to 10 classes:
//! other images are converted to grey and resized, as `Grayscale()`, `Resize(28)` and
//! `CenterCrop(28)` would).
//!
//!     cargo run --release --example image-folder -- --export /tmp/mnist-png   # the bundled MNIST as PNGs
//!     cargo run --release --example image-folder -- --data-dir /tmp/mnist-png
//!     cargo run --release --example image-folder -- --data-dir /tmp/mnist-png --stream

mod common;

use std::path::Path;
use std::time::Instant;

use staticnet::data::mnist::Mnist;
use staticnet::data::transforms::{CenterCrop, Compose, Resize};
use staticnet::data::{ImageFolder, Source};
use staticnet::prelude::*;
use staticnet::{Dataset, Trainer, evaluate};

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

const USAGE: &str = "usage: image-folder --data-dir DIR [--stream] [--workers 2] [--epochs 5] [--batch-size 100] [--lr 0.05] [--seed 0]
       image-folder --export DIR [--data-dir MNIST] [--copies 1]

Trains Model A on DIR/train/<class>/<image> and tests it on DIR/test/<class>/<image> (PNG, JPEG,
BMP, ... as torchvision's ImageFolder; at most 10 classes). --stream decodes the images per batch
on --workers threads instead of all at once into memory.
--export writes the bundled MNIST (or the IDX files in --data-dir) as such a folder of PNGs;
--copies N writes each training image N times (a larger folder, for the streaming benchmark).";

fn main() -> std::process::ExitCode {
    let args = common::Args::parse(USAGE);
    args.check(&["data-dir", "export", "copies", "stream", "workers", "epochs", "batch-size", "lr", "seed"]);
    common::run(|| match args.opt("export") {
        Some(out) => export(&args.opt("data-dir").unwrap_or_else(common::bundled_mnist), Path::new(&out), args.get("copies", 1)),
        None => match args.opt("data-dir") {
            Some(dir) => train(Path::new(&dir), &args),
            None => Err(staticnet::Error::BadInput(format!("give --data-dir DIR (or --export DIR to make one)\n\n{USAGE}"))),
        },
    })
}

fn train(dir: &Path, args: &common::Args) -> staticnet::Result<()> {
    let start = Instant::now();
    let (train_folder, test_folder) = (ImageFolder::new(dir.join("train"))?, ImageFolder::new(dir.join("test"))?);
    println!("classes: {:?}", train_folder.classes());
    if train_folder.classes() != test_folder.classes() {
        return Err(staticnet::Error::BadInput(format!("{}: the test classes {:?} differ from the training classes", dir.join("test").display(), test_folder.classes())));
    }
    if train_folder.classes().len() > 10 {
        return Err(staticnet::Error::BadInput(format!("{}: {} classes, but this example's network has 10 outputs", dir.display(), train_folder.classes().len())));
    }
    // transforms.Resize(28), transforms.CenterCrop(28): no-ops on 28 × 28 images.
    let fit = || Compose::new().then(Resize::new(28)).then(CenterCrop::new(28));
    let mut model = ModelA::new(&Cpu, args.get("seed", 0))?;
    let mut optimizer = Sgd::new(args.get("lr", 0.05)).momentum(0.9);
    let trainer = Trainer::new(args.get("epochs", 5)).batch_size(args.get("batch-size", 100)).seed(args.get("seed", 0)).out_dir("runs/image-folder");
    let test: Box<dyn Source<Images<1, 28, 28>>> = if args.flag("stream") {
        let (train, test) = (train_folder.stream::<Images<1, 28, 28>>()?, test_folder.stream::<Images<1, 28, 28>>()?);
        println!("streaming {} training and {} test images", train.len(), test.len());
        trainer.train_transform(fit()).eval_transform(fit()).num_workers(args.get("workers", 2)).fit(&mut model, &mut optimizer, &train, Some(&test))?;
        Box::new(test)
    } else {
        let (train, test): (Dataset<Images<1, 28, 28>>, Dataset<Images<1, 28, 28>>) = (train_folder.load_transformed(&fit())?, test_folder.load_transformed(&fit())?);
        println!("{} training and {} test images in memory ({:.1} s to decode)", train.len(), test.len(), start.elapsed().as_secs_f32());
        trainer.fit(&mut model, &mut optimizer, &train, Some(&test))?;
        Box::new(test)
    };
    let test = evaluate(&mut model, test.as_ref(), 1000)?;
    println!("total time: {:.1} s", start.elapsed().as_secs_f32());
    println!("test accuracy: {:.2}%", 100.0 * test.accuracy);
    Ok(())
}

/// Writes MNIST as `out/{train,test}/<digit>/<index>.png` (each training image `copies` times).
fn export(mnist_dir: &str, out: &Path, copies: usize) -> staticnet::Result<()> {
    let mnist = Mnist::load(mnist_dir)?;
    for (split, data, copies) in [("train", &mnist.train, copies.max(1)), ("test", &mnist.test, 1)] {
        for class in 0..10 {
            let dir = out.join(split).join(class.to_string());
            std::fs::create_dir_all(&dir).map_err(|e| staticnet::Error::Io { path: dir.clone(), source: e })?;
        }
        for copy in 0..copies {
            for i in 0..data.len() {
                let pixels: Vec<u8> = data.sample(i)?.iter().map(|v| (v * 255.0).round() as u8).collect();
                let path = out.join(split).join(data.labels()[i].to_string()).join(format!("{:06}.png", copy * data.len() + i));
                let img = image::GrayImage::from_raw(28, 28, pixels).expect("784 pixels");
                img.save(&path).map_err(|e| staticnet::Error::BadInput(format!("{}: {e}", path.display())))?;
            }
        }
        println!("wrote {} {split} images to {}", copies * data.len(), out.join(split).display());
    }
    Ok(())
}
