//! The training loop of the course, generic over every network: epochs of shuffled batches,
//! validation after each epoch, early stopping that restores the best weights, a learning-rate
//! schedule, a progress bar, and the history of losses and accuracies as CSV and as a plot.
//!
//! With `staticnet` (whose `network!` declares `model`'s type):
//!
//! ```text
//! let history = Trainer::new(5).batch_size(100).seed(0).out_dir("runs/mnist")
//!     .fit(&mut model, &mut optimizer, &train, Some(&validation))?;
//! let test = evaluate(&mut model, &test_set, 1000)?;
//! println!("test accuracy: {:.2}%", 100.0 * test.accuracy);
//! ```

mod checkpoint;
mod history;

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub use checkpoint::{Best, Checkpoint};
pub use history::{EpochStats, History};

use crate::backend::Backend;
use crate::batch::Logits;
use crate::data::Dataset;
use crate::loss::CrossEntropyLoss;
use crate::network::{Network, Op};
use crate::optim::{LrScheduler, Optimizer};
use crate::{Error, Result};

/// Loss and accuracy of a network on a data set.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Metrics {
    /// Mean cross-entropy per sample.
    pub loss: f32,
    /// Fraction classified right, in [0, 1].
    pub accuracy: f32,
    /// Samples classified right.
    pub correct: usize,
    /// Samples evaluated.
    pub total: usize,
}

/// Mean loss and accuracy of `model` on `data` in eval mode, without gradients (the course's
/// `model.eval()` + `torch.no_grad()` loop). The mode is restored afterwards.
pub fn evaluate<B, N>(model: &mut N, data: &Dataset<N::Input>, batch_size: usize) -> Result<Metrics>
where
    B: Backend,
    N: Network<B>,
    N::Output: Logits,
{
    let mut loader = data.loader(batch_size)?;
    loader.start_epoch(0);
    let (mut loss, mut correct, mut total) = (0.0f64, 0, 0);
    while let Some((x, labels)) = loader.next() {
        let out = model.evaluate(x, labels)?;
        loss += out.loss as f64 * labels.len() as f64;
        correct += out.correct;
        total += labels.len();
    }
    Ok(Metrics { loss: (loss / total.max(1) as f64) as f32, accuracy: correct as f32 / total.max(1) as f32, correct, total })
}

/// What to do when, configured with builder methods.
pub struct Trainer {
    epochs: usize,
    batch_size: usize,
    seed: u64,
    patience: Option<usize>,
    scheduler: Option<Box<dyn LrScheduler>>,
    criterion: CrossEntropyLoss,
    out_dir: Option<PathBuf>,
    checkpoint: Option<PathBuf>,
    resume: Option<PathBuf>,
    progress: bool,
    verbose: bool,
}

impl Trainer {
    /// `epochs` epochs of batches of 64, seed 0, no early stopping, a progress bar on a terminal,
    /// one printed line per epoch.
    pub fn new(epochs: usize) -> Self {
        Trainer {
            epochs,
            batch_size: 64,
            seed: 0,
            patience: None,
            scheduler: None,
            criterion: CrossEntropyLoss::default(),
            out_dir: None,
            checkpoint: None,
            resume: None,
            progress: true,
            verbose: true,
        }
    }

    /// Samples per batch (PyTorch's `DataLoader(batch_size=...)`).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Seeds the shuffling of every epoch: the same seed gives the same run.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Early stopping: stop after `patience` epochs without a lower validation loss, and
    /// restore the weights of the best epoch.
    pub fn early_stopping(mut self, patience: usize) -> Self {
        self.patience = Some(patience);
        self
    }

    /// Sets the optimizer's learning rate before each epoch from its initial one.
    pub fn scheduler(mut self, scheduler: impl LrScheduler + 'static) -> Self {
        self.scheduler = Some(Box::new(scheduler));
        self
    }

    /// The loss to train with (e.g. `CrossEntropyLoss::new().label_smoothing(0.1)`).
    pub fn criterion(mut self, criterion: CrossEntropyLoss) -> Self {
        self.criterion = criterion;
        self
    }

    /// Writes `history.csv` and `history.svg` there after every epoch.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Writes a [`Checkpoint`] there after every epoch (atomically: a crash leaves the previous
    /// one or the new one).
    pub fn checkpoint(mut self, path: impl Into<PathBuf>) -> Self {
        self.checkpoint = Some(path.into());
        self
    }

    /// Continues the run a [`Checkpoint`] there left, if the file exists (else starts from the
    /// first epoch): the weights, the optimizer's state, the RNG and the history are restored,
    /// so that the run ends exactly as an uninterrupted one would.
    pub fn resume(mut self, path: impl Into<PathBuf>) -> Self {
        self.resume = Some(path.into());
        self
    }

    /// Shows a progress bar (only ever on a terminal).
    pub fn progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    /// Prints one line per epoch.
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    /// Where the history is written, if anywhere.
    pub fn out_dir_path(&self) -> Option<&Path> {
        self.out_dir.as_deref()
    }

    /// Trains `model` on `train`, validating on `validation` after every epoch.
    pub fn fit<B, N, O>(&self, model: &mut N, optimizer: &mut O, train: &Dataset<N::Input>, validation: Option<&Dataset<N::Input>>) -> Result<History>
    where
        B: Backend,
        N: Network<B>,
        N::Output: Logits,
        O: Optimizer<B>,
    {
        if self.patience.is_some() && validation.is_none() {
            return Err(Error::bad_input("early stopping watches the validation loss: give a validation set"));
        }
        if train.is_empty() {
            return Err(Error::bad_input(format!("{}: the training set is empty", train.name())));
        }
        warn_softmax_last(N::SPEC);
        warn_nothing_trains(model);
        if let Some(dir) = &self.out_dir {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut run = Run { start: 0, base_lr: optimizer.learning_rate(), seed: self.seed, history: History::default(), best: None };
        if let Some(path) = &self.resume {
            run = self.restore(path, model, optimizer, run)?;
        }
        let Run { start, base_lr, seed, mut history, mut best } = run;
        let mut loader = train.loader(self.batch_size)?.shuffle(seed);
        for epoch in start..self.epochs {
            let start = Instant::now();
            if let Some(s) = &self.scheduler {
                optimizer.set_learning_rate(s.lr_at(base_lr, epoch));
            }
            model.train();
            loader.start_epoch(epoch as u64);
            let bar = self.progress_bar(epoch, loader.batches());
            let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
            while let Some((x, labels)) = loader.next() {
                let step = model.train_step_with(x, labels, &self.criterion, optimizer)?;
                if !step.loss.is_finite() {
                    bar.finish_and_clear();
                    return Err(Error::bad_input(format!(
                        "epoch {}: the loss became {} after {seen} samples; lower the learning rate",
                        epoch + 1,
                        step.loss
                    )));
                }
                loss_sum += step.loss as f64 * labels.len() as f64;
                correct += step.correct;
                seen += labels.len();
                bar.inc(1);
                bar.set_message(format!("loss {:.4} acc {:.2}%", loss_sum / seen as f64, 100.0 * correct as f64 / seen as f64));
            }
            bar.finish_and_clear();
            let val = validation.map(|v| evaluate(model, v, self.batch_size.max(256))).transpose()?;
            let stats = EpochStats {
                epoch: epoch + 1,
                train_loss: (loss_sum / seen as f64) as f32,
                train_accuracy: correct as f32 / seen as f32,
                val_loss: val.map(|v| v.loss),
                val_accuracy: val.map(|v| v.accuracy),
                lr: optimizer.learning_rate(),
                seconds: start.elapsed().as_secs_f32(),
            };
            if self.verbose {
                println!("{}", stats.line(self.epochs));
            }
            history.epochs.push(stats);
            self.write_history(&history)?;
            let mut stop = false;
            if let (Some(patience), Some(val)) = (self.patience, val) {
                match &mut best {
                    Some(b) if val.loss >= b.loss => {
                        b.since += 1;
                        stop = b.since >= patience;
                    }
                    _ => best = Some(Best { loss: val.loss, epoch: epoch + 1, since: 0, weights: model.state_dict()? }),
                }
                history.best_epoch = best.as_ref().map(|b| b.epoch);
            }
            if let Some(path) = &self.checkpoint {
                let checkpoint = Checkpoint {
                    network: N::SPEC.name.to_string(),
                    epoch: epoch + 1,
                    model: model.state_dict()?,
                    optimizer_kind: optimizer.kind().to_string(),
                    optimizer: optimizer.state_dict(model.device())?,
                    base_lr,
                    seed,
                    rng: model.state().rng_state(),
                    history: history.clone(),
                    best: best.clone(),
                };
                checkpoint.save(path)?;
            }
            if stop {
                history.stopped_early = true;
                if self.verbose {
                    println!("early stopping: no lower validation loss for {} epochs", self.patience.unwrap_or(0));
                }
                break;
            }
        }
        if let Some(b) = best {
            model.load_state_dict(&b.weights, true)?;
            if self.verbose {
                println!("restored the weights of epoch {} (validation loss {:.4})", b.epoch, b.loss);
            }
        }
        Ok(history)
    }

    /// Loads the checkpoint at `path` into the model and optimizer, if there is one.
    fn restore<B, N, O>(&self, path: &Path, model: &mut N, optimizer: &mut O, fresh: Run) -> Result<Run>
    where
        B: Backend,
        N: Network<B>,
        O: Optimizer<B>,
    {
        if !path.exists() {
            if self.verbose {
                println!("no checkpoint at {}: starting from epoch 1", path.display());
            }
            return Ok(fresh);
        }
        let ck = Checkpoint::load(path)?;
        let bad = |msg: String| Error::file(path, msg);
        if ck.network != N::SPEC.name {
            return Err(bad(format!("a checkpoint of {}, not of {}", ck.network, N::SPEC.name)));
        }
        if ck.optimizer_kind != optimizer.kind() {
            return Err(bad(format!("a checkpoint of a run with {}, not {}", ck.optimizer_kind, optimizer.kind())));
        }
        if ck.seed != self.seed && self.verbose {
            println!("resuming with the checkpoint's shuffling seed {} (this trainer has {})", ck.seed, self.seed);
        }
        model.load_state_dict(&ck.model, true).map_err(|e| bad(e.to_string()))?;
        optimizer.load_state_dict(model.device(), &ck.optimizer).map_err(|e| bad(e.to_string()))?;
        model.state_mut().set_rng_state(ck.rng.0, ck.rng.1);
        optimizer.set_learning_rate(ck.history.epochs.last().map_or(ck.base_lr, |e| e.lr));
        if self.verbose {
            println!("resumed from {}: {} epochs done", path.display(), ck.epoch);
        }
        let mut history = ck.history;
        history.best_epoch = ck.best.as_ref().map(|b| b.epoch);
        Ok(Run { start: ck.epoch, base_lr: ck.base_lr, seed: ck.seed, history, best: ck.best })
    }

    fn progress_bar(&self, epoch: usize, batches: usize) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(batches as u64), ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})").expect("a valid template").progress_chars("=> "));
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, self.epochs));
        bar
    }

    fn write_history(&self, history: &History) -> Result<()> {
        if let Some(dir) = &self.out_dir {
            history.write_csv(dir.join("history.csv"))?;
            history.plot(dir.join("history.svg"))?;
        }
        Ok(())
    }
}

/// Where a run starts: fresh, or from a checkpoint.
struct Run {
    start: usize,
    base_lr: f32,
    seed: u64,
    history: History,
    best: Option<Best>,
}

/// A network ending in Softmax trained with cross-entropy applies softmax twice.
/// After `freeze("")` (or on a network without parameters) `fit` would run its epochs and
/// change nothing: say so.
fn warn_nothing_trains<B: Backend, N: Network<B>>(model: &N) {
    if model.num_trainable_parameters() == 0 {
        eprintln!("warning: {} has no parameter left to train (all are frozen): fit will not change it; unfreeze some, e.g. `model.unfreeze(\"fc\")`", N::SPEC.name);
    }
}

fn warn_softmax_last(spec: &crate::network::NetSpec) {
    if let Some(last) = spec.layers.last()
        && matches!(last.op, Op::Softmax(s) if !s.log)
    {
        eprintln!(
            "warning: {} ends in Softmax (layer `{}`), but cross-entropy applies log-softmax itself: remove the last Softmax",
            spec.name, last.name
        );
    }
}
