//! The course's transfer learning: train a network on one task, keep its convolutional
//! backbone, give it a new head for another task, freeze the backbone, and fine-tune the head.
//!
//! Model A learns digits 0–4 and is saved; a second network with Model A's layer names and a
//! 5-class head loads that file non-strictly (the report lists the head's keys, whose shapes
//! changed), freezes everything but the head, and trains on a few hundred digits 5–9. The same
//! network trained from scratch for the same steps is the comparison.
//!
//!     cargo run --release --example transfer-learning [-- --data-dir ~/data/mnist --samples 500]

mod common;

use staticnet::data::mnist::Mnist;
use staticnet::prelude::*;
use staticnet::{Trainer, evaluate};

network! {
    /// Model A, trained on digits 0–4.
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
    /// Model A's backbone under the same names, with a new head of 5 classes (digits 5–9).
    pub struct ModelA5 {
        input: [1, 28, 28],
        cnn1: Conv2d(1, 16, kernel_size = 5, stride = 1, padding = 2),
        relu1: ReLU,
        maxpool1: MaxPool2d(2),
        cnn2: Conv2d(16, 32, kernel_size = 5, stride = 1, padding = 2),
        relu2: ReLU,
        maxpool2: MaxPool2d(2),
        Flatten,
        fc1: Linear(32 * 7 * 7, 5),
    }
}

const USAGE: &str = "usage: transfer-learning [--data-dir DIR] [--samples 500] [--epochs 3] [--seed 0]

Trains Model A on digits 0-4, then fine-tunes only a new 5-class head on SAMPLES images of digits
5-9, and compares with the same network trained from scratch for as many steps.";

fn main() -> std::process::ExitCode {
    let args = common::Args::parse(USAGE);
    args.check(&["data-dir", "samples", "epochs", "seed"]);
    common::run(|| {
        let mnist = Mnist::load(args.opt("data-dir").unwrap_or_else(common::bundled_mnist))?;
        let seed = args.get("seed", 0);
        let low = |l: usize| l < 5;
        let (source, source_test) = (mnist.train.filter_classes(low, |l| l, 10)?, mnist.test.filter_classes(low, |l| l, 10)?);
        let high = |l: usize| l >= 5;
        let target_all = mnist.train.filter_classes(high, |l| l - 5, 5)?;
        let target_test = mnist.test.filter_classes(high, |l| l - 5, 5)?;
        let samples = args.get("samples", 500usize).min(target_all.len());
        let (target, _) = target_all.split(samples, seed)?;

        println!("1. Model A on digits 0-4 ({} images)", source.len());
        let mut model = ModelA::new(&Cpu, seed)?;
        Trainer::new(3).batch_size(100).seed(seed).progress(false).fit(&mut model, &mut Sgd::new(0.05).momentum(0.9), &source, None)?;
        println!("   test accuracy on digits 0-4: {:.2}%", 100.0 * evaluate(&mut model, &source_test, 1000)?.accuracy);
        let path = std::path::Path::new("runs/transfer-learning/model_a_digits_0_4.safetensors");
        std::fs::create_dir_all(path.parent().expect("a folder")).map_err(|e| staticnet::Error::Io { path: path.into(), source: e })?;
        model.save(path)?;
        println!("   saved to {}", path.display());

        println!("\n2. A 5-class head on its backbone, fine-tuned on {} images of digits 5-9", target.len());
        let mut transfer = ModelA5::new(&Cpu, seed)?;
        let report = transfer.load(path, false)?;
        println!("   loaded {} tensors; not loaded (the new head):", report.loaded);
        for m in &report.mismatched {
            println!("     {}: the file has {:?}, the network {:?}", m.key, m.found, m.expected);
        }
        transfer.freeze("")?;
        transfer.unfreeze("fc1")?;
        let epochs = args.get("epochs", 3);
        let trainer = Trainer::new(epochs).batch_size(50).seed(seed).progress(false);
        trainer.fit(&mut transfer, &mut Sgd::new(0.05).momentum(0.9), &target, None)?;

        println!("\n3. The same network from scratch, all layers trained, for as many steps");
        let mut scratch = ModelA5::new(&Cpu, seed)?;
        trainer.fit(&mut scratch, &mut Sgd::new(0.05).momentum(0.9), &target, None)?;

        let steps = epochs * target.len().div_ceil(50);
        let (t, s) = (evaluate(&mut transfer, &target_test, 1000)?, evaluate(&mut scratch, &target_test, 1000)?);
        println!("\ntest accuracy on digits 5-9 after {steps} steps on {} images:", target.len());
        println!("   transfer (frozen backbone, new head): {:.2}%", 100.0 * t.accuracy);
        println!("   from scratch:                         {:.2}%", 100.0 * s.accuracy);
        Ok(())
    })
}
