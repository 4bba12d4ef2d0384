//! What loading your own data costs, as epochs of Model A (batch 100, SGD) on MNIST images:
//! from memory; from memory with augmentation (random crops and turns on worker threads); and
//! streamed from a folder of PNG files (decoded per batch on worker threads). Each time is the
//! median of `--epochs` epochs after one warm-up epoch. `bench/compare_data.py` runs this beside
//! PyTorch's `ImageFolder` + `DataLoader(num_workers=2)` (bench/imagefolder_torch.py).
//!
//!     cargo run --release --example data-bench                      # the bundled MNIST
//!     cargo run --release --example data-bench -- --json
//!     cargo run --release --example data-bench -- --only stream --images 60000 --memory-budget-mb 150
//!
//! `--images N` streams a folder of N training images (the bundled ones repeated, written once
//! under the folder given by --png-dir) and prints the process's peak memory against the budget.

mod common;
#[path = "common/course.rs"]
mod course;

use std::path::{Path, PathBuf};
use std::time::Instant;

use staticnet::data::mnist::Mnist;
use staticnet::data::transforms::{Compose, RandomCrop, RandomRotation};
use staticnet::data::{DataLoader, ImageFolder, Source};
use staticnet::prelude::*;

use course::ModelA;

const USAGE: &str = "usage: data-bench [--png-dir DIR] [--epochs 3] [--workers 2] [--only memory|augment|stream] [--images N] [--memory-budget-mb MB] [--json]

Times epochs of Model A from memory, with augmentation, and streamed from a folder of PNGs
(written from the bundled MNIST into --png-dir, by default target/data-bench, if absent).";

fn main() -> std::process::ExitCode {
    let args = common::Args::parse(USAGE);
    args.check(&["png-dir", "epochs", "workers", "only", "images", "memory-budget-mb", "json"]);
    common::run(|| run(&args))
}

fn run(args: &common::Args) -> staticnet::Result<()> {
    let epochs = args.get("epochs", 3usize).max(1);
    let workers = args.get("workers", 2usize);
    let only = args.opt("only");
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let images = args.get("images", 0usize);
    let default_dir = if images > 0 { format!("target/data-bench-{images}") } else { "target/data-bench".into() };
    let png_dir = PathBuf::from(args.opt("png-dir").unwrap_or(default_dir));
    let train = Mnist::load(common::bundled_mnist())?.train;
    let images = if images > 0 { images } else { train.len() };
    let mut results = Vec::new();
    // In memory, the set holds `images` samples (the bundled ones repeated); streamed, only
    // the files do.
    let in_memory = || train.subset(&(0..images).map(|i| i % train.len()).collect::<Vec<_>>());
    if wanted("memory") {
        results.push(("memory", time_epochs(&in_memory()?, None, 0, epochs)?));
    }
    if wanted("augment") {
        let augment = Compose::new().then(RandomCrop::new(28).padding(2)).then(RandomRotation::new(10.0));
        results.push(("augment", time_epochs(&in_memory()?, Some(augment), workers, epochs)?));
    }
    if wanted("stream") {
        write_pngs(&train, images, &png_dir)?;
        drop(train);
        let stream = ImageFolder::new(&png_dir)?.stream::<Images<1, 28, 28>>()?;
        results.push(("stream", time_epochs(&stream, None, workers, epochs)?));
    }
    let peak = peak_memory_mb();
    let base = results.iter().find(|r| r.0 == "memory").map(|r| r.1);
    if args.flag("json") {
        let fields: Vec<String> = results.iter().map(|(n, t)| format!("\"{n}\": {t:.4}")).collect();
        println!("{{{}, \"peak_mb\": {}}}", fields.join(", "), peak.map_or("null".into(), |p| format!("{p:.1}")));
    } else {
        for (name, t) in &results {
            let ratio = base.filter(|_| *name != "memory").map_or(String::new(), |b| format!("  ({:.2}× the epoch from memory)", t / b));
            println!("{name:>8}: {t:.3} s an epoch{ratio}");
        }
    }
    if let Some(p) = peak {
        let budget = args.get("memory-budget-mb", 0.0f64);
        if !args.flag("json") {
            println!("peak memory: {p:.1} MB{}", if budget > 0.0 { format!(" (budget {budget:.0} MB)") } else { String::new() });
        }
        if budget > 0.0 && p > budget {
            return Err(staticnet::Error::BadInput(format!("peak memory {p:.1} MB is over the budget of {budget:.0} MB")));
        }
    }
    Ok(())
}

/// The median time of `epochs` epochs of Model A on `data` after one warm-up epoch.
fn time_epochs(data: &dyn Source<Images<1, 28, 28>>, transform: Option<Compose>, workers: usize, epochs: usize) -> staticnet::Result<f64> {
    let mut model = ModelA::new(&Cpu, 0)?;
    let mut sgd = Sgd::new(0.05).momentum(0.9);
    let mut loader = DataLoader::new(data, 100)?.shuffle(0).num_workers(workers);
    if let Some(t) = transform {
        loader = loader.transform(t);
    }
    let mut times = Vec::new();
    for epoch in 0..=epochs {
        let start = Instant::now();
        loader.start_epoch(epoch as u64);
        while let Some((x, y)) = loader.next()? {
            model.train_step(x, y, &mut sgd)?;
        }
        if epoch > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// `images` samples of the set (repeated) as `dir/<label>/<index>.png`, unless a previous run
/// wrote as many files.
fn write_pngs(data: &staticnet::Dataset<Images<1, 28, 28>>, images: usize, dir: &Path) -> staticnet::Result<()> {
    let count = |d: &Path| (0..10).map(|c| std::fs::read_dir(d.join(c.to_string())).map_or(0, |r| r.count())).sum::<usize>();
    if count(dir) == images {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(dir);
    for c in 0..10 {
        std::fs::create_dir_all(dir.join(c.to_string())).map_err(|e| staticnet::Error::Io { path: dir.into(), source: e })?;
    }
    for i in 0..images {
        let j = i % data.len();
        let pixels: Vec<u8> = data.sample(j)?.iter().map(|v| (v * 255.0).round() as u8).collect();
        let path = dir.join(data.labels()[j].to_string()).join(format!("{i:06}.png"));
        image::GrayImage::from_raw(28, 28, pixels).expect("784 pixels").save(&path).map_err(|e| staticnet::Error::BadInput(format!("{}: {e}", path.display())))?;
    }
    eprintln!("wrote {images} PNG files to {}", dir.display());
    Ok(())
}

/// The process's peak resident memory (Linux's VmHWM), in MB.
fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
