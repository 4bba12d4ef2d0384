//! The course's Model A trained on MNIST: two same-padding convolutions with max pooling and a
//! linear readout, 5 epochs of batches of 100 with SGD (lr 0.05, momentum 0.9), validated on the
//! test set after each epoch as the course does. `bench/mnist_torch.py` is the same run in
//! PyTorch, for comparing time and accuracy on one machine.
//!
//!     cargo run --release --example mnist                  # the bundled 8,000 + 2,000 digits
//!     cargo run --release --example mnist -- --data-dir ~/data/mnist   # the full MNIST
//!     cargo run --release --features cuda --example mnist -- --device cuda   # on the GPU
//!     cargo run --release --features cuda --example mnist -- --device cuda --precision bf16
//!     cargo run --release --example mnist -- --csv mnist.csv --test-csv test.csv   # Kaggle's CSV
//!     cargo run --release --example mnist -- --augment     # random crops (padding 2), ±10° turns
//!     cargo build --release --features mpi --example mnist && mpirun -np 2 target/release/examples/mnist --batch-size 50

mod common;

use std::time::Instant;

use staticnet::data::csv::CsvDataset;
use staticnet::data::mnist::Mnist;
use staticnet::data::transforms::{Compose, RandomCrop, RandomRotation};
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

const USAGE: &str = "usage: mnist [--data-dir DIR | --csv TRAIN.csv --test-csv TEST.csv] [--augment] [--workers 2]
             [--epochs 5] [--batch-size 100] [--lr 0.05] [--seed 0] [--out runs/mnist] [--device cpu|cuda]
             [--precision f32|bf16]

Trains the course's Model A on MNIST and prints the test accuracy. DIR holds the four MNIST
files (train-images-idx3-ubyte[.gz], ...); by default the 10,000 digits bundled in data/mnist-10k.
--csv and --test-csv read the Kaggle layout instead (a header, the label, 784 pixels; / 255).
--augment trains on random crops (padding 2) turned by up to ±10°, made by --workers threads.
--device cuda trains on the first NVIDIA GPU (built with --features cuda); --precision bf16 there
convolves and multiplies in bf16 with f32 sums and f32 master weights (PyTorch's autocast).";

fn main() -> std::process::ExitCode {
    let args = common::Args::parse(USAGE);
    args.check(&["data-dir", "csv", "test-csv", "augment", "workers", "epochs", "batch-size", "lr", "seed", "out", "device", "precision"]);
    let device = args.opt("device").unwrap_or_else(|| "cpu".into());
    common::run(|| match (device.as_str(), common::precision(&args, &device)?) {
        ("cpu", _) => train(&Cpu, &args),
        #[cfg(feature = "cuda")]
        ("cuda", precision) => train(&common::cuda(precision)?, &args),
        (other, _) => Err(staticnet::Error::BadInput(format!("--device {other}: expected cpu or cuda (cuda needs --features cuda)"))),
    })
}

/// The same run on any backend: the network, its initialisation and the batches are the same.
fn train<B: Backend>(dev: &B, args: &common::Args) -> staticnet::Result<()> {
    let start = Instant::now();
    let (train, test) = load(args)?;

    let mut model = ModelA::new(dev, args.get("seed", 0))?;
    let mut optimizer = Sgd::new(args.get("lr", 0.05)).momentum(0.9);
    let out = args.opt("out").unwrap_or_else(|| "runs/mnist".into());
    let mut trainer = Trainer::new(args.get("epochs", 5)).batch_size(args.get("batch-size", 100)).seed(args.get("seed", 0)).out_dir(&out);
    if args.flag("augment") {
        // transforms.RandomCrop(28, padding=2), transforms.RandomRotation(10)
        trainer = trainer.train_transform(Compose::new().then(RandomCrop::new(28).padding(2)).then(RandomRotation::new(10.0))).num_workers(args.get("workers", 2));
    }
    // Under mpirun (built with --features mpi): data-parallel, --batch-size per process.
    #[cfg(feature = "mpi")]
    let mpi = staticnet::distributed::launched().then(staticnet::distributed::Mpi::init).transpose()?.map(std::sync::Arc::new);
    #[cfg(feature = "mpi")]
    if let Some(mpi) = &mpi {
        trainer = trainer.distributed(staticnet::distributed::collective(mpi.clone(), dev)?);
    }
    let fitted = trainer.fit(&mut model, &mut optimizer, &train, Some(&test));
    #[cfg(feature = "mpi")]
    if let (Some(mpi), Err(e)) = (&mpi, &fitted) {
        mpi.abort(e); // ends every rank, not only this one
    }
    fitted?;

    let test = evaluate(&mut model, &test, 1000)?;
    #[cfg(feature = "mpi")]
    if let Some(mpi) = &mpi {
        println!("rank {}/{} weights fingerprint {:016x}", mpi.rank(), mpi.world_size(), staticnet::distributed::fingerprint(&model)?);
        if mpi.rank() != 0 {
            return Ok(());
        }
    }
    println!("history: {out}/history.csv, plot: {out}/history.svg");
    println!("total time: {:.1} s", start.elapsed().as_secs_f32());
    println!("test accuracy: {:.2}%", 100.0 * test.accuracy);
    Ok(())
}

/// The training and test sets: the IDX files of --data-dir (or the bundled ones), or two CSV files.
fn load(args: &common::Args) -> staticnet::Result<(Dataset<Images<1, 28, 28>>, Dataset<Images<1, 28, 28>>)> {
    match (args.opt("csv"), args.opt("test-csv")) {
        (Some(train), Some(test)) => {
            let (train, test) = (CsvDataset::new(&train).classes(10).load()?, CsvDataset::new(&test).classes(10).load()?);
            println!("MNIST from CSV: {} training and {} test images", train.len(), test.len());
            Ok((train, test))
        }
        (None, None) => {
            let dir = args.opt("data-dir").unwrap_or_else(common::bundled_mnist);
            let mnist = Mnist::load(&dir)?;
            println!("MNIST from {dir}: {} training and {} test images", mnist.train.len(), mnist.test.len());
            Ok((mnist.train, mnist.test))
        }
        _ => Err(staticnet::Error::BadInput("--csv and --test-csv go together: the training and the test file".into())),
    }
}
