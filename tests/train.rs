//! The training loop: a fixed seed gives the same run twice; early stopping stops after
//! `patience` epochs without a better validation loss and restores the best epoch's weights;
//! the history is written as CSV and as a plot.

use std::path::Path;

use staticnet::prelude::*;
use staticnet::{Dataset, Trainer, evaluate};

network! {
    pub struct Tiny {
        input: [1, 6, 6],
        conv: Conv2d(1, 4, 3, padding = 1), ReLU, MaxPool2d(2),
        Flatten,
        drop: Dropout(0.1),
        fc: Linear(4 * 3 * 3, 4),
    }
}

/// 6×6 images with one bright pixel; the label is the quadrant it lies in (or, `shifted`, the
/// next quadrant: a validation set the training set cannot teach).
fn quadrants(n: usize, shifted: bool) -> Dataset<Images<1, 6, 6>> {
    let mut values = vec![0.05f32; n * 36];
    let mut labels = Vec::new();
    for i in 0..n {
        let (y, x) = ((i * 7) % 6, (i * 11 + i / 6) % 6);
        values[i * 36 + y * 6 + x] = 1.0;
        let q = (y / 3) * 2 + x / 3;
        labels.push(if shifted { (q + 1) % 4 } else { q });
    }
    Dataset::new("quadrants", values, labels, 4).unwrap()
}

fn params(net: &Tiny) -> Vec<f32> {
    ["conv.weight", "conv.bias", "fc.weight", "fc.bias"].iter().flat_map(|k| net.parameter(k).unwrap().iter().copied().collect::<Vec<_>>()).collect()
}

fn run(epochs: usize, seed: u64) -> (Tiny, staticnet::History) {
    let (train, val) = quadrants(240, false).split(200, 1).unwrap();
    let mut net = Tiny::new(&Cpu, seed).unwrap();
    let mut opt = Sgd::new(0.1).momentum(0.9);
    let history = Trainer::new(epochs).batch_size(16).seed(seed).progress(false).verbose(false).fit(&mut net, &mut opt, &train, Some(&val)).unwrap();
    (net, history)
}

#[test]
fn a_fixed_seed_gives_the_same_run_twice() {
    let ((a, ha), (b, hb)) = (run(3, 5), run(3, 5));
    assert_eq!(params(&a), params(&b));
    let losses = |h: &staticnet::History| h.epochs.iter().map(|e| (e.train_loss, e.val_loss)).collect::<Vec<_>>();
    assert_eq!(losses(&ha), losses(&hb));
    // ...and another seed another run.
    assert_ne!(params(&a), params(&run(3, 6).0));
    // It learned the task.
    let mut a = a;
    let acc = evaluate(&mut a, &quadrants(240, false), 64).unwrap().accuracy;
    assert!(acc > 0.9, "accuracy {acc}");
}

#[test]
fn early_stopping_restores_the_best_epoch() {
    let train = quadrants(200, false);
    let val = quadrants(40, true); // the better the model fits train, the worse this gets
    let trainer = |epochs: usize, patience: Option<usize>| {
        let t = Trainer::new(epochs).batch_size(16).seed(2).progress(false).verbose(false);
        match patience {
            Some(p) => t.early_stopping(p),
            None => t,
        }
    };
    let mut net = Tiny::new(&Cpu, 3).unwrap();
    let mut opt = Sgd::new(0.1).momentum(0.9);
    let history = trainer(30, Some(2)).fit(&mut net, &mut opt, &train, Some(&val)).unwrap();
    assert!(history.stopped_early, "{history:?}");
    let best = history.best_epoch.unwrap();
    assert_eq!(history.epochs.len(), best + 2, "stops `patience` epochs after the best");
    let val_losses: Vec<f32> = history.epochs.iter().map(|e| e.val_loss.unwrap()).collect();
    let argmin = val_losses.iter().enumerate().min_by(|a, b| a.1.partial_cmp(b.1).unwrap()).unwrap().0 + 1;
    assert_eq!(best, argmin);
    // The weights are those after epoch `best`: train the same run for `best` epochs only.
    let mut again = Tiny::new(&Cpu, 3).unwrap();
    let mut opt = Sgd::new(0.1).momentum(0.9);
    trainer(best, None).fit(&mut again, &mut opt, &train, Some(&val)).unwrap();
    assert_eq!(params(&net), params(&again));
}

#[test]
fn early_stopping_needs_a_validation_set() {
    let mut net = Tiny::new(&Cpu, 0).unwrap();
    let msg = Trainer::new(2).early_stopping(1).fit(&mut net, &mut Sgd::new(0.1), &quadrants(8, false), None).err().unwrap().to_string();
    assert!(msg.contains("early stopping watches the validation loss: give a validation set"), "{msg}");
}

#[test]
fn the_history_is_written_as_csv_and_svg() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("train-history");
    let _ = std::fs::remove_dir_all(&dir);
    let (train, val) = quadrants(64, false).split(48, 0).unwrap();
    let mut net = Tiny::new(&Cpu, 0).unwrap();
    Trainer::new(3).batch_size(16).progress(false).verbose(false).out_dir(&dir).fit(&mut net, &mut Adam::new(1e-2), &train, Some(&val)).unwrap();
    let csv = std::fs::read_to_string(dir.join("history.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds");
    assert_eq!(lines.len(), 4);
    assert!(lines[3].starts_with("3,"));
    let svg = std::fs::read_to_string(dir.join("history.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("validation"), "{}", &svg[..100]);
}

#[test]
fn a_diverging_run_stops_with_a_clear_error() {
    let mut net = Tiny::new(&Cpu, 0).unwrap();
    let msg = Trainer::new(5).batch_size(8).progress(false).verbose(false).fit(&mut net, &mut Sgd::new(f32::MAX), &quadrants(64, false), None).err().unwrap().to_string();
    assert!(msg.contains("the loss became") && msg.contains("lower the learning rate"), "{msg}");
}
