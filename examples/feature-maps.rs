//! What Model A has learned, as pictures (the course's figure of VGG's layers): the first
//! convolution's 16 filters, and one digit's feature maps after each convolution, read with
//! `model.activation(name)` by the layers' PyTorch names. The model is trained for one epoch on
//! the bundled MNIST digits (its history, confusion matrix and TensorBoard files go to the
//! output folder too), or loaded with `--weights` from a safetensors file (ours or PyTorch's).
//!
//!     cargo run --release --example feature-maps
//!     cargo run --release --example feature-maps -- --weights model_a.safetensors --digit 3
//!     tensorboard --logdir runs/feature-maps/tensorboard

mod common;

use std::path::PathBuf;

use staticnet::data::mnist::Mnist;
use staticnet::ndarray::{ArrayD, Axis, IxDyn};
use staticnet::network::Op;
use staticnet::prelude::*;
use staticnet::viz::{self, GridOptions};
use staticnet::{Result, Trainer};

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

const USAGE: &str = "usage: feature-maps [--weights FILE] [--epochs 1] [--train-samples N] [--digit 0] [--out runs/feature-maps] [--data-dir DIR]

Trains Model A on MNIST (or loads --weights, a safetensors state dict), then writes OUT/filters.png
(the first convolution's filters) and OUT/feature_maps.png (test digit number --digit seen by
every convolution). --train-samples trains on the first N training images only.";

/// What to run.
pub struct Options {
    /// A safetensors state dict to load instead of training.
    pub weights: Option<PathBuf>,
    /// Epochs to train.
    pub epochs: usize,
    /// Train on the first N training images (all when `None`).
    pub train_samples: Option<usize>,
    /// The test image whose feature maps are drawn.
    pub digit: usize,
    /// Where the pictures (and the training run's files) go.
    pub out: PathBuf,
    /// The MNIST files.
    pub data_dir: String,
}

/// The pictures written, and their sizes in pixels (width, height).
pub struct Pictures {
    /// The first convolution's filters.
    pub filters: (PathBuf, (usize, usize)),
    /// The digit's feature maps after each convolution.
    pub feature_maps: (PathBuf, (usize, usize)),
}

/// Feature maps per row of the grid, and the pictures' magnification.
pub const MAPS_PER_ROW: usize = 8;
/// Each pixel of the feature-map grid is drawn as a square this many pixels wide.
pub const MAPS_SCALE: usize = 2;
/// Each pixel of the filter grid is drawn as a square this many pixels wide.
pub const FILTERS_SCALE: usize = 8;

fn main() -> std::process::ExitCode {
    let args = common::Args::parse(USAGE);
    args.check(&["weights", "epochs", "train-samples", "digit", "out", "data-dir"]);
    let options = Options {
        weights: args.opt("weights").map(PathBuf::from),
        epochs: args.get("epochs", 1),
        train_samples: args.opt("train-samples").map(|_| args.get("train-samples", 0)),
        digit: args.get("digit", 0),
        out: args.opt("out").unwrap_or_else(|| "runs/feature-maps".into()).into(),
        data_dir: args.opt("data-dir").unwrap_or_else(common::bundled_mnist),
    };
    common::run(|| run(&options).map(|_| ()))
}

/// Trains or loads Model A and draws its filters and one digit's feature maps.
pub fn run(options: &Options) -> Result<Pictures> {
    let mnist = Mnist::load(&options.data_dir)?;
    let mut model = ModelA::new(&Cpu, 0)?;
    std::fs::create_dir_all(&options.out).map_err(|e| staticnet::Error::Io { path: options.out.clone(), source: e })?;
    match &options.weights {
        Some(path) => {
            model.load(path, true)?;
            println!("loaded Model A from {}", path.display());
        }
        None => {
            let train = match options.train_samples {
                Some(n) => mnist.train.subset(&(0..n.min(mnist.train.len())).collect::<Vec<_>>())?,
                None => mnist.train.clone(),
            };
            let mut optimizer = Sgd::new(0.05).momentum(0.9);
            let trainer = Trainer::new(options.epochs).batch_size(100).out_dir(&options.out);
            trainer.fit(&mut model, &mut optimizer, &train, Some(&mnist.test))?;
        }
    }

    // The filters: 16 of 5×5, one scale for all, so that their weights compare.
    let filters = viz::filter_grid(&model.parameter("cnn1.weight")?)?.upscale(FILTERS_SCALE);
    let filters_path = options.out.join("filters.png");
    filters.save_png(&filters_path)?;

    // One digit through the network; then every convolution's output by its name.
    let sample = mnist.test.sample(options.digit)?;
    let x = Images::<1, 28, 28>::new(1, sample.to_vec())?;
    let top = &model.top_k(&x, 1)?[0][0];
    let label = mnist.test.labels()[options.digit];
    println!("test digit {}: a {label}, predicted {} with probability {:.3}", options.digit, top.class, top.probability);
    let convs: Vec<&str> = ModelA::<Cpu>::SPEC.layers.iter().filter(|l| matches!(l.op, Op::Conv2d(_))).map(|l| l.name).collect();
    let (maps, rows) = feature_maps(&model, &convs)?;
    let grid = viz::make_grid(&maps, &GridOptions::new().nrow(MAPS_PER_ROW).scale_each(true))?.upscale(MAPS_SCALE);
    let maps_path = options.out.join("feature_maps.png");
    grid.save_png(&maps_path)?;

    println!("filters of cnn1: {} ({}×{} pixels)", filters_path.display(), filters.width, filters.height);
    println!("feature maps: {} ({}×{} pixels; {})", maps_path.display(), grid.width, grid.height, rows.join(", "));
    Ok(Pictures { filters: (filters_path, (filters.width, filters.height)), feature_maps: (maps_path, (grid.width, grid.height)) })
}

/// The last forward's first sample's maps after each layer of `layers`, every map enlarged to
/// the input's 28 × 28 (nearest neighbour) so that they tile together, each layer's starting a
/// row of the grid; and which rows hold which layer.
fn feature_maps(model: &ModelA, layers: &[&str]) -> Result<(ArrayD<f32>, Vec<String>)> {
    let side = 28;
    let (mut tiles, mut rows) = (Vec::new(), Vec::new());
    for name in layers {
        let a = model.activation(name)?; // [N, C, H, W]
        let maps = a.index_axis(Axis(0), 0);
        let (c, h, w) = (maps.shape()[0], maps.shape()[1], maps.shape()[2]);
        let first = tiles.len() / (side * side) / MAPS_PER_ROW + 1;
        for ch in 0..c {
            tiles.extend((0..side * side).map(|p| maps[[ch, (p / side) * h / side, (p % side) * w / side]]));
        }
        // Blank tiles up to the end of the row.
        tiles.resize(tiles.len().div_ceil(side * side * MAPS_PER_ROW) * side * side * MAPS_PER_ROW, 0.0);
        let last = tiles.len() / (side * side) / MAPS_PER_ROW;
        rows.push(format!("rows {first}-{last}: {name}, {c} maps of {h}×{w}"));
    }
    let n = tiles.len() / (side * side);
    Ok((ArrayD::from_shape_vec(IxDyn(&[n, side, side]), tiles).expect("whole tiles"), rows))
}
