//! The course's Sequential exercise: four convolutions in a `features` block and three linear
//! layers in a `classifier` block, trained on MNIST with the course's validation recipe (shuffle
//! the training indices, keep the last part for validation), then tested once.
//!
//!     cargo run --release --example sequential [-- --data-dir ~/data/mnist --epochs 3]

mod common;

use staticnet::data::mnist::Mnist;
use staticnet::prelude::*;
use staticnet::{Trainer, evaluate};

network! {
    /// The Sequential exercise, as the course writes it.
    pub struct Net {
        input: [1, 28, 28],
        features: [
            Conv2d(in_channels = 1, out_channels = 5, kernel_size = 3, padding = 1), ReLU(inplace = true),
            Conv2d(in_channels = 5, out_channels = 10, kernel_size = 3, padding = 1),
            MaxPool2d(2, 2), ReLU(inplace = true),
            Conv2d(in_channels = 10, out_channels = 20, kernel_size = 3, padding = 1), ReLU(inplace = true),
            Conv2d(in_channels = 20, out_channels = 40, kernel_size = 3, padding = 1),
            MaxPool2d(2, 2), ReLU(inplace = true),
        ],
        Flatten,
        classifier: [
            Linear(7 * 7 * 40, 1024), ReLU(inplace = true),
            Linear(1024, 2048), ReLU(inplace = true),
            Linear(2048, 10),
        ],
    }
}

const USAGE: &str = "usage: sequential [--data-dir DIR] [--epochs 3] [--validation 1000] [--seed 0]

Trains the course's Sequential network on MNIST (by default the bundled 10,000 digits) with a
validation set split off the training set, then evaluates it once on the test set.";

fn main() -> std::process::ExitCode {
    let args = common::Args::parse(USAGE);
    args.check(&["data-dir", "epochs", "validation", "seed"]);
    common::run(|| {
        let mut mnist = Mnist::load(args.opt("data-dir").unwrap_or_else(common::bundled_mnist))?;
        // transforms.Normalize((0.1307,), (0.3081,)), as the course does.
        mnist.train.normalize(&[0.1307], &[0.3081])?;
        mnist.test.normalize(&[0.1307], &[0.3081])?;
        let seed = args.get("seed", 0);
        let validation = args.get("validation", 1000);
        let (train, val) = mnist.train.split(mnist.train.len().saturating_sub(validation), seed)?;
        println!("{} training, {} validation, {} test images", train.len(), val.len(), mnist.test.len());

        let mut model = Net::new(&Cpu, seed)?;
        println!("{}", model.summary());
        let mut optimizer = Adam::new(3e-4).weight_decay(1e-4);
        Trainer::new(args.get("epochs", 3)).batch_size(64).seed(seed).out_dir("runs/sequential").fit(&mut model, &mut optimizer, &train, Some(&val))?;
        let test = evaluate(&mut model, &mnist.test, 1000)?;
        println!("test accuracy: {:.2}%", 100.0 * test.accuracy);
        Ok(())
    })
}
