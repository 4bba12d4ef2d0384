//! The course's last lab: choose the learning rate and the batch size by a grid search on a
//! validation set, then evaluate only the best model, once, on the test set.
//!
//!     cargo run --release --example grid-search [-- --data-dir ~/data/mnist --epochs 2]

mod common;

use staticnet::data::mnist::Mnist;
use staticnet::prelude::*;
use staticnet::{Trainer, evaluate};

network! {
    /// The lab's CNN: two 3×3 convolutions with max pooling, one linear readout.
    pub struct Cnn {
        input: [1, 28, 28],
        conv: [
            Conv2d(in_channels = 1, out_channels = 16, kernel_size = 3, stride = 1, padding = 1),
            ReLU, MaxPool2d(kernel_size = 2),
            Conv2d(in_channels = 16, out_channels = 32, kernel_size = 3, stride = 1, padding = 1),
            ReLU, MaxPool2d(2),
        ],
        Flatten,
        out: Linear(32 * 7 * 7, 10),
    }
}

const USAGE: &str = "usage: grid-search [--data-dir DIR] [--epochs 2] [--seed 0]

Trains the lab's CNN for every (learning rate, batch size) of a small grid, picks the one with
the best validation accuracy, and tests that one model once.";

fn main() -> std::process::ExitCode {
    let args = common::Args::parse(USAGE);
    args.check(&["data-dir", "epochs", "seed"]);
    common::run(|| {
        let mnist = Mnist::load(args.opt("data-dir").unwrap_or_else(common::bundled_mnist))?;
        let seed = args.get("seed", 0);
        let (train, val) = mnist.train.split(mnist.train.len() * 7 / 8, seed)?;
        let epochs = args.get("epochs", 2);
        println!("{} training, {} validation images; {epochs} epochs per setting\n", train.len(), val.len());
        println!("{:>6} {:>6} {:>10} {:>10}", "lr", "batch", "val loss", "val acc");
        let mut best: Option<(f32, f32, usize, Cnn)> = None;
        for lr in [0.01, 0.1] {
            for batch in [32, 128] {
                let mut model = Cnn::new(&Cpu, seed)?;
                let mut optimizer = Sgd::new(lr);
                Trainer::new(epochs).batch_size(batch).seed(seed).progress(false).verbose(false).fit(&mut model, &mut optimizer, &train, None)?;
                let v = evaluate(&mut model, &val, 1000)?;
                println!("{lr:>6} {batch:>6} {:>10.4} {:>9.2}%", v.loss, 100.0 * v.accuracy);
                if best.as_ref().is_none_or(|b| v.accuracy > b.0) {
                    best = Some((v.accuracy, lr, batch, model));
                }
            }
        }
        let (acc, lr, batch, mut model) = best.expect("the grid is not empty");
        // The test set is used once, for the chosen model only.
        let test = evaluate(&mut model, &mnist.test, 1000)?;
        println!("\nbest: lr {lr}, batch size {batch} (validation accuracy {:.2}%)", 100.0 * acc);
        println!("test accuracy: {:.2}%", 100.0 * test.accuracy);
        Ok(())
    })
}
