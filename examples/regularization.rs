//! The course's regularization chapter: L2 weight decay, dropout, batch normalization and early
//! stopping on a validation split, on MNIST. Two networks from its exercises are trained the same
//! way: the dropout MLP and the batch-norm CNN; each stops when its validation loss has not
//! improved for `--patience` epochs and keeps its best weights, then is tested once.
//!
//!     cargo run --release --example regularization [-- --data-dir ~/data/mnist]

mod common;

use staticnet::data::mnist::Mnist;
use staticnet::prelude::*;
use staticnet::{Dataset, Trainer, Vectors, evaluate};

network! {
    /// The dropout exercise: an MLP on flattened digits.
    pub struct DropoutMlp {
        input: [784],
        classifier: [
            Linear(28 * 28, 200), ReLU(inplace = true), Dropout(p = 0.5),
            Linear(200, 500), ReLU(inplace = true),
            Linear(500, 10),
        ],
    }
}

network! {
    /// The batch-normalization exercise.
    pub struct BatchNormNet {
        input: [1, 28, 28],
        features: [
            Conv2d(in_channels = 1, out_channels = 10, kernel_size = 3, stride = 1, padding = 1),
            MaxPool2d(2, 2), ReLU(inplace = true), BatchNorm2d(10),
            Conv2d(in_channels = 10, out_channels = 20, kernel_size = 3, stride = 1, padding = 1),
            MaxPool2d(2, 2), ReLU(inplace = true), BatchNorm2d(20),
        ],
        Flatten,
        fc: Linear(in_features = 7 * 7 * 20, out_features = 10),
    }
}

const USAGE: &str = "usage: regularization [--data-dir DIR] [--epochs 20] [--patience 3] [--seed 0]

Trains the dropout MLP and the batch-norm CNN of the course with L2 weight decay and early
stopping on a validation split of MNIST (by default the bundled digits), then tests each once.";

/// The same images as flat vectors, for the MLP.
fn flat(d: &Dataset<staticnet::Images<1, 28, 28>>) -> staticnet::Result<Dataset<Vectors<784>>> {
    Dataset::new(d.name(), d.values().to_vec(), d.labels().to_vec(), d.classes())
}

fn main() -> std::process::ExitCode {
    let args = common::Args::parse(USAGE);
    args.check(&["data-dir", "epochs", "patience", "seed"]);
    common::run(|| {
        let mut mnist = Mnist::load(args.opt("data-dir").unwrap_or_else(common::bundled_mnist))?;
        mnist.train.normalize(&[0.1307], &[0.3081])?;
        mnist.test.normalize(&[0.1307], &[0.3081])?;
        let seed = args.get("seed", 0);
        let (train, val) = mnist.train.split(mnist.train.len() * 7 / 8, seed)?;
        println!("{} training, {} validation, {} test images", train.len(), val.len(), mnist.test.len());
        let trainer = Trainer::new(args.get("epochs", 20)).batch_size(64).seed(seed).early_stopping(args.get("patience", 3));

        println!("\ndropout MLP, Adam(lr=3e-4, weight_decay=1e-3):");
        let mut mlp = DropoutMlp::new(&Cpu, seed)?;
        trainer.fit(&mut mlp, &mut Adam::new(3e-4).weight_decay(1e-3), &flat(&train)?, Some(&flat(&val)?))?;
        let mlp_test = evaluate(&mut mlp, &flat(&mnist.test)?, 1000)?;

        println!("\nbatch-norm CNN, Adam(lr=3e-4, weight_decay=1e-3):");
        let mut cnn = BatchNormNet::new(&Cpu, seed)?;
        trainer.fit(&mut cnn, &mut Adam::new(3e-4).weight_decay(1e-3), &train, Some(&val))?;
        let cnn_test = evaluate(&mut cnn, &mnist.test, 1000)?;

        println!("\ndropout MLP test accuracy: {:.2}%", 100.0 * mlp_test.accuracy);
        println!("batch-norm CNN test accuracy: {:.2}%", 100.0 * cnn_test.accuracy);
        Ok(())
    })
}
