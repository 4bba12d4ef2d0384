//! A train step replayed from a CUDA graph (`staticnet::graph`) against the same steps run
//! eagerly: the same kernels on the same values, so the parameters, running statistics and
//! optimizer state must come out bit for bit the same, the loss totals must agree, and once
//! captured a step must be one launch.
//!
//! Needs feature `cuda` and a GPU; without one each test says it is skipped.

#![cfg(feature = "cuda")]

mod common;

use staticnet::graph::GraphedTrainStep;
use staticnet::ops::random_values as random;
use staticnet::prelude::*;
use staticnet::{Cuda, Optimizer};

network! {
    /// Every op whose kernels take per-step scalars: batch norm's averaging factor, dropout's
    /// key, and the optimizers' learning rate and bias corrections.
    pub struct Small {
        input: [2, 10, 10],
        conv: Conv2d(2, 6, 3, padding = 1),
        bn: BatchNorm2d(6),
        ReLU,
        MaxPool2d(2),
        Flatten,
        drop: Dropout(0.3),
        fc1: Linear(6 * 5 * 5, 16),
        ReLU,
        fc2: Linear(16, 5),
    }
}

const BATCH: usize = 12;

/// One test at a time on the device: a capture records whatever the device's stream is given,
/// and the launch count is the device's.
static DEVICE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn gpu(test: &str) -> Option<(Cuda, std::sync::MutexGuard<'static, ()>)> {
    let gpu = common::gpu(test)?;
    Some((gpu, DEVICE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)))
}

fn batch(step: usize) -> (Images<2, 10, 10>, Vec<usize>) {
    let x = random(BATCH * 200, 100 + step as u64);
    let labels = (0..BATCH).map(|i| (i * 7 + step * 3) % 5).collect();
    (Images::from_vec(BATCH, x).unwrap(), labels)
}

/// Every parameter and buffer, by name.
fn values(net: &Small<Cuda>) -> Vec<(String, Vec<f32>)> {
    let sd = net.state_dict().unwrap();
    sd.iter()
        .filter_map(|(name, t)| match t {
            staticnet::Tensor::F32(a) => Some((name.to_string(), a.iter().copied().collect())),
            staticnet::Tensor::I64(_) => None,
        })
        .collect()
}

/// Steps `steps` batches eagerly and through a graphed step from the same start, the learning
/// rate lowered at step 5, and compares what each left.
fn same_as_eager<O: Optimizer<Cuda>>(test: &str, optimizer: impl Fn() -> O) {
    let Some((gpu, _one_at_a_time)) = gpu(test) else { return };
    let steps = 9;
    let mut eager = Small::new(&gpu, 7).unwrap();
    let mut eager_opt = optimizer();
    let mut losses = Vec::new();
    for s in 0..steps {
        if s == 5 {
            eager_opt.set_learning_rate(eager_opt.learning_rate() / 3.0);
        }
        let (x, labels) = batch(s);
        losses.push(eager.train_step(&x, &labels, &mut eager_opt).unwrap());
    }

    let mut graphed = GraphedTrainStep::new(Small::new(&gpu, 7).unwrap(), optimizer(), CrossEntropyLoss::new()).unwrap();
    for s in 0..steps {
        if s == 5 {
            let lr = graphed.optimizer().learning_rate() / 3.0;
            graphed.set_learning_rate(lr);
        }
        let (x, labels) = batch(s);
        graphed.step(&x, &labels).unwrap();
        assert_eq!(graphed.is_captured(), s >= 2, "{test}: step {s} captured?");
    }
    let got = graphed.loss().unwrap();
    let (net, _) = graphed.into_parts().unwrap();

    for ((name, want), (_, have)) in values(&eager).iter().zip(&values(&net)) {
        let worst = want.iter().zip(have).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst == 0.0, "{test}: {name} differs from the eager run by up to {worst:e}");
    }
    let mean = losses.iter().map(|l| l.loss as f64).sum::<f64>() / steps as f64;
    let correct: usize = losses.iter().map(|l| l.correct).sum();
    assert_eq!((got.steps, got.samples, got.correct), (steps, steps * BATCH, correct), "{test}: loss totals {got:?}");
    assert!(((got.loss as f64) - mean).abs() <= 1e-6 * mean.abs().max(1.0), "{test}: mean loss {} against the eager {mean}", got.loss);
    assert!(net.num_batches_tracked_total() == eager.num_batches_tracked_total(), "{test}: num_batches_tracked");
}

trait Counted {
    fn num_batches_tracked_total(&self) -> i64;
}

impl Counted for Small<Cuda> {
    fn num_batches_tracked_total(&self) -> i64 {
        match self.tensor("bn.num_batches_tracked").unwrap() {
            staticnet::Tensor::I64(a) => a.iter().sum(),
            staticnet::Tensor::F32(_) => panic!("num_batches_tracked is int64"),
        }
    }
}

#[test]
fn sgd_with_momentum_replays_the_eager_steps() {
    same_as_eager("sgd_with_momentum_replays_the_eager_steps", || Sgd::new(0.05).momentum(0.9).nesterov(true).weight_decay(1e-3));
}

#[test]
fn adam_replays_the_eager_steps() {
    same_as_eager("adam_replays_the_eager_steps", || Adam::new(3e-3).weight_decay(1e-3));
}

#[test]
fn adamw_with_amsgrad_replays_the_eager_steps() {
    same_as_eager("adamw_with_amsgrad_replays_the_eager_steps", || AdamW::new(3e-3).amsgrad(true));
}

#[test]
fn a_captured_step_is_one_launch() {
    let test = "a_captured_step_is_one_launch";
    let Some((gpu, _one_at_a_time)) = gpu(test) else { return };
    let mut step = GraphedTrainStep::new(Small::new(&gpu, 1).unwrap(), Adam::new(1e-3), CrossEntropyLoss::new()).unwrap();
    // Eager, then the two graphs' captures.
    for s in 0..3 {
        let (x, labels) = batch(s);
        let before = gpu.launches();
        step.step(&x, &labels).unwrap();
        let launched = gpu.launches() - before;
        if s == 0 {
            assert!(launched > 10, "{test}: the eager step made {launched} launches");
        }
    }
    for s in 3..8 {
        let (x, labels) = batch(s);
        let before = gpu.launches();
        step.step(&x, &labels).unwrap();
        assert_eq!(gpu.launches() - before, 1, "{test}: step {s} after capture");
    }
    let losses = step.loss().unwrap();
    assert_eq!(losses.steps, 8, "{test}: {losses:?}");
    assert!(losses.loss.is_finite(), "{test}: {losses:?}");
}

#[test]
fn borrowing_the_network_drops_the_graphs() {
    let test = "borrowing_the_network_drops_the_graphs";
    let Some((gpu, _one_at_a_time)) = gpu(test) else { return };
    let mut step = GraphedTrainStep::new(Small::new(&gpu, 2).unwrap(), Sgd::new(0.01), CrossEntropyLoss::new()).unwrap();
    for s in 0..4 {
        let (x, labels) = batch(s);
        step.step(&x, &labels).unwrap();
    }
    assert!(step.is_captured(), "{test}: captured after 4 steps");
    // An eval forward of another batch size reallocates the workspace the graphs point into.
    let net = step.net_mut().unwrap();
    let eval = Images::from_vec(40, random(40 * 200, 9)).unwrap();
    net.predict(&eval).unwrap();
    assert!(!step.is_captured(), "{test}: the graphs were dropped");
    for s in 4..8 {
        let (x, labels) = batch(s);
        step.step(&x, &labels).unwrap();
    }
    assert!(step.is_captured(), "{test}: captured again");
    assert_eq!(step.loss().unwrap().steps, 8, "{test}");
    // A bad batch is refused before anything runs.
    let (x, mut labels) = batch(9);
    labels[3] = 5;
    let err = step.step(&x, &labels).unwrap_err().to_string();
    assert!(err.contains("label 5"), "{test}: {err}");
}
