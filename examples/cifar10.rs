//! The course's CIFAR-10 network: three convolutions with max pooling and a linear readout,
//! trained on CIFAR-10 with a validation split, normalised as the course does.
//!
//!     cargo run --release --example cifar10 -- --data-dir ~/data/cifar-10-batches-bin
//!     cargo run --release --example cifar10 -- --data-dir … --augment   # crop 32 pad 4 + flip
//!
//! CIFAR-10 is not bundled (163 MB): download and unpack the binary version from
//! https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz first.

mod common;

use staticnet::data::cifar10::{CLASSES, Cifar10};
use staticnet::data::transforms::{Compose, Normalize, RandomCrop, RandomHorizontalFlip};
use staticnet::prelude::*;
use staticnet::{Trainer, evaluate};

network! {
    /// The three-convolution CIFAR-10 network of the course.
    pub struct CifarNet {
        input: [3, 32, 32],
        conv1: Conv2d(in_channels = 3, out_channels = 32, kernel_size = 3, padding = 1), ReLU, MaxPool2d(2, 2),
        conv2: Conv2d(in_channels = 32, out_channels = 64, kernel_size = 3, padding = 1), ReLU, MaxPool2d(2, 2),
        conv3: Conv2d(in_channels = 64, out_channels = 128, kernel_size = 3, padding = 1), ReLU, MaxPool2d(2, 2),
        Flatten,
        fc: Linear(128 * 4 * 4, 10),
    }
}

const USAGE: &str = "usage: cifar10 --data-dir DIR [--augment] [--workers 2] [--epochs 10] [--batch-size 128] [--lr 0.001] [--seed 0]

Trains the course's CIFAR-10 network. DIR holds the CIFAR-10 binary files (data_batch_1.bin ...
test_batch.bin), from https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz
--augment trains on the standard recipe: RandomCrop(32, padding=4) and RandomHorizontalFlip(),
made by --workers threads while the network trains.";

fn main() -> std::process::ExitCode {
    let args = common::Args::parse(USAGE);
    args.check(&["data-dir", "augment", "workers", "epochs", "batch-size", "lr", "seed"]);
    let Some(dir) = args.opt("data-dir") else {
        eprintln!("error: CIFAR-10 is not bundled: download and unpack\n  https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz\nthen run with --data-dir pointing at the folder of data_batch_1.bin ... test_batch.bin\n\n{USAGE}");
        return std::process::ExitCode::FAILURE;
    };
    common::run(|| {
        let mut cifar = Cifar10::load(&dir)?;
        // The course's transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)).
        let (mean, std) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
        let augment = args.flag("augment");
        if !augment {
            cifar.train.normalize(&mean, &std)?;
        }
        cifar.test.normalize(&mean, &std)?;
        let seed = args.get("seed", 0);
        // The course keeps 45,000 images for training and 5,000 for validation.
        let (train, val) = cifar.train.split(cifar.train.len() * 9 / 10, seed)?;
        println!("{} training, {} validation, {} test images; classes {}", train.len(), val.len(), cifar.test.len(), CLASSES.join(", "));

        let mut model = CifarNet::new(&Cpu, seed)?;
        let mut optimizer = Adam::new(args.get("lr", 1e-3));
        let mut trainer = Trainer::new(args.get("epochs", 10)).batch_size(args.get("batch-size", 128)).seed(seed).out_dir("runs/cifar10");
        if augment {
            // The crop pads with black before normalising, as transforms.Compose([RandomCrop(32,
            // padding=4), RandomHorizontalFlip(), ToTensor(), Normalize(...)]) does.
            let train_transform = Compose::new().then(RandomCrop::new(32).padding(4)).then(RandomHorizontalFlip::default()).then(Normalize::new(&mean, &std));
            trainer = trainer.train_transform(train_transform).eval_transform(Normalize::new(&mean, &std)).num_workers(args.get("workers", 2));
        }
        trainer.fit(&mut model, &mut optimizer, &train, Some(&val))?;
        let test = evaluate(&mut model, &cifar.test, 1000)?;
        println!("test accuracy: {:.2}%", 100.0 * test.accuracy);
        Ok(())
    })
}
