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
mod confusion;
mod history;
mod outputs;
pub mod tensorboard;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub use checkpoint::{Best, Checkpoint};
pub use confusion::{ClassScores, ConfusionMatrix};
pub use history::{EpochStats, History};

use crate::backend::Backend;
use crate::batch::Logits;
use crate::data::transforms::Transform;
use crate::data::{DataLoader, Source};
use crate::distributed::Collective;
use crate::loss::Criterion;
use crate::network::{Network, Op};
use crate::optim::{LrScheduler, Optimizer};
use crate::{Error, Result};

/// Loss, accuracy and confusion matrix of a network on a data set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    /// Mean cross-entropy per sample.
    pub loss: f32,
    /// Fraction classified right, in [0, 1].
    pub accuracy: f32,
    /// Samples classified right.
    pub correct: usize,
    /// Samples evaluated.
    pub total: usize,
    /// True classes against predicted ones (the argmax of the logits, the first of equal
    /// maxima as `torch.argmax`), with per-class precision, recall and F1
    /// ([`ConfusionMatrix::per_class`]).
    pub confusion: ConfusionMatrix,
}

/// Mean loss and accuracy of `model` on `data` in eval mode, without gradients (the course's
/// `model.eval()` + `torch.no_grad()` loop). The mode is restored afterwards.
pub fn evaluate<B, N>(model: &mut N, data: &dyn Source<N::Input>, batch_size: usize) -> Result<Metrics>
where
    B: Backend,
    N: Network<B>,
    N::Output: Logits,
{
    evaluate_loader(model, &mut DataLoader::new(data, batch_size)?)
}

/// [`evaluate`] over the batches of `loader` (with its transforms and workers).
pub fn evaluate_loader<B, N>(model: &mut N, loader: &mut DataLoader<N::Input>) -> Result<Metrics>
where
    B: Backend,
    N: Network<B>,
    N::Output: Logits,
{
    loader.start_epoch(0);
    let (mut loss, mut correct, mut total) = (0.0f64, 0, 0);
    let classes = <N::Output as Logits>::CLASSES;
    let mut confusion = ConfusionMatrix::new(classes);
    let mut logits = vec![0.0f32; 0];
    while let Some((x, labels)) = loader.next()? {
        let out = model.evaluate(x, labels)?;
        loss += out.loss as f64 * labels.len() as f64;
        correct += out.correct;
        total += labels.len();
        logits.resize(labels.len() * classes, 0.0);
        model.state().read_output(&mut logits)?;
        for (row, &label) in logits.chunks_exact(classes).zip(labels) {
            confusion.record(label, crate::network::argmax(row))?;
        }
    }
    Ok(Metrics { loss: (loss / total.max(1) as f64) as f32, accuracy: correct as f32 / total.max(1) as f32, correct, total, confusion })
}

/// What to do when, configured with builder methods.
pub struct Trainer {
    epochs: usize,
    batch_size: usize,
    seed: u64,
    patience: Option<usize>,
    scheduler: Option<Box<dyn LrScheduler>>,
    criterion: Criterion,
    out_dir: Option<PathBuf>,
    checkpoint: Option<PathBuf>,
    resume: Option<PathBuf>,
    progress: bool,
    verbose: bool,
    num_workers: usize,
    train_transform: Option<Arc<dyn Transform>>,
    eval_transform: Option<Arc<dyn Transform>>,
    class_names: Option<Vec<String>>,
    tensorboard: bool,
    /// An `Arc<dyn Collective<B>>` for the backend `B` that `fit` will find (see `distributed`).
    distributed: Option<Arc<dyn std::any::Any + Send + Sync>>,
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
            criterion: Criterion::default(),
            out_dir: None,
            checkpoint: None,
            resume: None,
            progress: true,
            verbose: true,
            num_workers: 0,
            train_transform: None,
            eval_transform: None,
            class_names: None,
            tensorboard: true,
            distributed: None,
        }
    }

    /// The names of the classes, in label order (`ImageFolder::classes()`, CIFAR-10's
    /// `airplane`, `automobile`, …), for the confusion matrix; by default `0`, `1`, …. There must
    /// be one per output of the network.
    pub fn class_names<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.class_names = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Whether [`Trainer::out_dir`] also gets TensorBoard event files (it does by default).
    pub fn tensorboard(mut self, on: bool) -> Self {
        self.tensorboard = on;
        self
    }

    /// Trains data-parallel with the other ranks of `comm` (a `distributed::Mpi` with feature
    /// `mpi`, a `distributed::Nccl` with feature `nccl`), as PyTorch's `DistributedDataParallel`: rank 0's weights
    /// to every rank at the start, this rank's share of every epoch (the batch size is per rank),
    /// gradients averaged across ranks before each update, validation sharded and its metrics
    /// summed, early stopping decided by rank 0, and only rank 0 writing and printing. See
    /// [`crate::distributed`] for the details and what differs from one process.
    pub fn distributed<B: Backend>(mut self, comm: Arc<dyn crate::distributed::Collective<B>>) -> Self {
        self.distributed = Some(Arc::new(comm));
        self
    }

    /// Transforms every training sample (the `transform=` of a torchvision training set, e.g.
    /// `RandomCrop(32, padding=4)` then `RandomHorizontalFlip()`), with random parameters drawn
    /// from (seed, epoch, sample index): a resumed run sees the batches an uninterrupted one saw.
    pub fn train_transform(mut self, transform: impl Transform + 'static) -> Self {
        self.train_transform = Some(Arc::new(transform));
        self
    }

    /// Transforms every validation sample (the `transform=` of the test set: no augmentation,
    /// usually `Normalize` or `Resize` + `CenterCrop`).
    pub fn eval_transform(mut self, transform: impl Transform + 'static) -> Self {
        self.eval_transform = Some(Arc::new(transform));
        self
    }

    /// Prepares batches on `n` worker threads while the network trains on the previous one
    /// (`DataLoader(num_workers=n)`); 0, the default, prepares them between steps.
    pub fn num_workers(mut self, n: usize) -> Self {
        self.num_workers = n;
        self
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
    /// restore the weights of the best epoch. Patience 0 stops at the first epoch whose
    /// validation loss is not lower than the best so far (as Keras and Lightning count it).
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
    pub fn criterion(mut self, criterion: impl Into<Criterion>) -> Self {
        self.criterion = criterion.into();
        self
    }

    /// Writes there, after every epoch: `history.csv` and `history.svg` (the loss and accuracy
    /// curves, the best epoch and an early stop marked); with a validation set,
    /// `confusion_matrix.csv` and `confusion_matrix.svg` (a heatmap, for up to 100 classes) of
    /// the best epoch with early stopping, else of the last; and TensorBoard event files in
    /// `tensorboard/` (`tensorboard --logdir DIR/tensorboard`): the scalars `loss/train`,
    /// `loss/val`, `accuracy/train`, `accuracy/val` and `lr` at step = epoch, and the first
    /// convolution's filters as an image (`filters/<layer>`).
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
    ///
    /// Everything that can be checked is checked before the first step: the data (not empty,
    /// every label one of the network's classes), the paths it will write (their folders exist
    /// and take files), and a checkpoint to resume from, whole, against this network and
    /// optimizer. A loss, a validation loss or a parameter that becomes NaN or infinite stops
    /// the run with an error naming the epoch and step; the checkpoint on disk then still holds
    /// the last good epoch, since an epoch is checkpointed only once all of it is finite.
    pub fn fit<B, N, O>(&self, model: &mut N, optimizer: &mut O, train: &dyn Source<N::Input>, validation: Option<&dyn Source<N::Input>>) -> Result<History>
    where
        B: Backend,
        N: Network<B>,
        N::Output: Logits,
        O: Optimizer<B>,
    {
        self.check_data::<B, N>(train, validation)?;
        let ddp = self.collective::<B>()?;
        // Rank 0 alone writes files and prints (every rank, when not distributed).
        let root = ddp.as_ref().is_none_or(|c| c.rank() == 0);
        if root {
            self.prepare_files()?;
            warn_softmax_last(N::SPEC);
            warn_nothing_trains(model);
        }
        let mut extras = self.extras::<B, N>(root)?;
        let mut run = Run { start: 0, base_lr: optimizer.learning_rate(), seed: self.seed, history: History::default(), best: None };
        if let Some(path) = &self.resume {
            run = self.restore(path, model, optimizer, run, ddp.as_deref())?;
        }
        if let Some(c) = &ddp {
            let sizes = (train.len(), validation.map(|v| v.len()));
            crate::distributed::start(&**c, model, &format!("{} seed {} batch {} epochs {} from {} data {sizes:?}", N::SPEC.name, self.seed, self.batch_size, self.epochs, run.start))?;
        }
        let mut optimizer = crate::distributed::Synced::new(optimizer, ddp.clone());
        let optimizer = &mut optimizer;
        let Run { start, base_lr, seed, mut history, mut best } = run;
        // The last epoch known good on disk, for the message of a run that diverges.
        let mut saved = self.resume.clone().filter(|_| start > 0).map(|p| (p, start));
        let mut loader = DataLoader::new(train, self.batch_size)?.shuffle(seed).transform_shared(self.train_transform.clone()).num_workers(self.num_workers);
        let mut val_loader = match validation {
            Some(v) => Some(DataLoader::new(v, self.batch_size.max(256))?.transform_shared(self.eval_transform.clone()).transform_seed(seed).num_workers(self.num_workers)),
            None => None,
        };
        if let Some(c) = &ddp {
            loader = loader.shard(c.rank(), c.world_size())?;
            val_loader = val_loader.map(|l| l.shard_unpadded(c.rank(), c.world_size())).transpose()?;
        }
        for epoch in start..self.epochs {
            let start = Instant::now();
            if let Some(s) = &self.scheduler {
                optimizer.set_learning_rate(s.lr_at(base_lr, epoch));
            }
            model.train();
            loader.start_epoch(epoch as u64);
            let batches = loader.batches();
            let bar = if root { self.progress_bar(epoch, batches) } else { ProgressBar::hidden() };
            let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
            let mut step = 0;
            while let Some((x, labels)) = loader.next().inspect_err(|_| bar.finish_and_clear())? {
                step += 1;
                let out = model.train_step_with(x, labels, self.criterion, optimizer)?;
                if !out.loss.is_finite() {
                    bar.finish_and_clear();
                    return Err(diverged(epoch + 1, format!("step {step} of {batches}: the loss became {}; lower the learning rate", out.loss), &saved));
                }
                loss_sum += out.loss as f64 * labels.len() as f64;
                correct += out.correct;
                seen += labels.len();
                bar.inc(1);
                bar.set_message(format!("loss {:.4} acc {:.2}%", loss_sum / seen as f64, 100.0 * correct as f64 / seen as f64));
            }
            bar.finish_and_clear();
            if let Some(c) = &ddp {
                // The epoch's loss and accuracy over every rank's samples.
                let mut sums = [loss_sum, correct as f64, seen as f64];
                c.all_reduce_sum_f64(&mut sums)?;
                (loss_sum, correct, seen) = (sums[0], sums[1] as usize, sums[2] as usize);
            }
            // The last update of the epoch has no loss after it to show a NaN: look at the
            // weights themselves (they are copied for the checkpoint and early stopping anyway).
            let weights = model.state_dict()?;
            if let Some((name, i, v)) = weights.first_non_finite() {
                return Err(diverged(epoch + 1, format!("after its last step ({step} of {batches}), `{name}` holds {v} at {i}; lower the learning rate"), &saved));
            }
            let val = val_loader.as_mut().map(|l| evaluate_loader(model, l)).transpose()?;
            let val = match (&ddp, val) {
                (Some(c), Some(v)) => Some(all_reduce_metrics(&**c, v)?),
                (_, v) => v,
            };
            if let Some(val) = val.as_ref().filter(|v| !v.loss.is_finite()) {
                return Err(diverged(epoch + 1, format!("the validation loss is {}; lower the learning rate", val.loss), &saved));
            }
            let stats = EpochStats {
                epoch: epoch + 1,
                train_loss: (loss_sum / seen as f64) as f32,
                train_accuracy: correct as f32 / seen as f32,
                val_loss: val.as_ref().map(|v| v.loss),
                val_accuracy: val.as_ref().map(|v| v.accuracy),
                lr: optimizer.learning_rate(),
                seconds: start.elapsed().as_secs_f32(),
            };
            if self.verbose && root {
                println!("{}", stats.line(self.epochs));
            }
            history.epochs.push(stats);
            let mut stop = false;
            if let (Some(patience), Some(val)) = (self.patience, &val) {
                match &mut best {
                    // Only a strictly lower loss is better; a NaN never is (it cannot reach here).
                    Some(b) if !(val.loss < b.loss) => {
                        b.since += 1;
                        stop = b.since >= patience;
                    }
                    _ => best = Some(Best { loss: val.loss, epoch: epoch + 1, since: 0, weights: weights.clone() }),
                }
                history.best_epoch = best.as_ref().map(|b| b.epoch);
            }
            if let Some(c) = &ddp {
                // Decided once, by rank 0, for every rank.
                stop = crate::distributed::broadcast_flag(&**c, stop)?;
            }
            // The checkpoint first: the history and its plot are conveniences, the checkpoint is
            // the run.
            if let Some(path) = self.checkpoint.as_ref().filter(|_| root) {
                let checkpoint = Checkpoint {
                    network: N::SPEC.name.to_string(),
                    epoch: epoch + 1,
                    model: weights,
                    optimizer_kind: optimizer.kind().to_string(),
                    optimizer: optimizer.state_dict(model.device())?,
                    base_lr,
                    seed,
                    rng: model.state().rng_state(),
                    history: history.clone(),
                    best: best.clone(),
                    world_size: ddp.as_ref().map_or(1, |c| c.world_size()),
                };
                checkpoint.save(path)?;
                saved = Some((path.clone(), epoch + 1));
            }
            if stop {
                history.stopped_early = true;
                if self.verbose && root {
                    println!("early stopping: no lower validation loss for {} epochs", self.patience.unwrap_or(0));
                }
            }
            if root {
                self.write_history(&history);
                // The best epoch's confusion matrix with early stopping, else the last epoch's.
                let best_now = self.patience.is_none() || best.as_ref().is_some_and(|b| b.epoch == epoch + 1);
                extras.write_epoch(model, history.epochs.last().expect("pushed above"), val.as_ref().filter(|_| best_now).map(|v| &v.confusion));
            }
            if stop {
                break;
            }
        }
        if let Some(c) = &ddp {
            // Rank r's dropout seed back to the network's own.
            let (_, step) = model.state().rng_state();
            let seed = crate::distributed::dropout_seed(model.state().seed(), c.rank());
            model.state_mut().set_rng_state(seed, step);
        }
        if let Some(b) = best {
            model.load_state_dict(&b.weights, true)?;
            if self.verbose && root {
                println!("restored the weights of epoch {} (validation loss {:.4})", b.epoch, b.loss);
            }
        }
        Ok(history)
    }

    /// The data checks of [`Trainer::fit`], before anything trains.
    fn check_data<B, N>(&self, train: &dyn Source<N::Input>, validation: Option<&dyn Source<N::Input>>) -> Result<()>
    where
        B: Backend,
        N: Network<B>,
        N::Output: Logits,
    {
        if self.patience.is_some() && validation.is_none() {
            return Err(Error::bad_input("early stopping watches the validation loss: give a validation set"));
        }
        if train.is_empty() {
            return Err(Error::bad_input(format!("{}: the training set is empty", train.name())));
        }
        if let Some(v) = validation.filter(|v| v.is_empty()) {
            return Err(Error::bad_input(format!("{}: the validation set is empty", v.name())));
        }
        let classes = <N::Output as Logits>::CLASSES;
        if let Some(names) = self.class_names.as_ref().filter(|n| n.len() != classes) {
            return Err(Error::bad_input(format!("{} class names given, but {} has {classes} outputs (classes)", names.len(), N::SPEC.name)));
        }
        for data in std::iter::once(train).chain(validation) {
            if let Some((i, &l)) = data.labels().iter().enumerate().find(|&(_, &l)| l >= classes) {
                return Err(Error::bad_input(format!(
                    "{}: label {l} of sample {i} is not a class of {}, which has {classes} outputs (labels 0..={})",
                    data.name(),
                    N::SPEC.name,
                    classes - 1
                )));
            }
        }
        Ok(())
    }

    /// The file checks of [`Trainer::fit`], before anything trains: the history's folder is
    /// made and takes files, the checkpoint's folder takes files, and temporary files that a
    /// killed run left beside the checkpoint are removed.
    fn prepare_files(&self) -> Result<()> {
        if let Some(dir) = &self.out_dir {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            for file in ["history.csv", "history.svg", "confusion_matrix.csv", "confusion_matrix.svg"] {
                crate::io::check_writable(&dir.join(file))?;
            }
        }
        if let Some(path) = &self.checkpoint {
            crate::io::check_writable(path)?;
            let removed = crate::io::remove_stale_temps(path)?;
            if removed > 0 && self.verbose {
                println!("removed {removed} temporary file(s) that a killed run left beside {}", path.display());
            }
        }
        if let Some(path) = self.resume.as_ref().filter(|p| p.is_dir()) {
            return Err(Error::file(path, "is a folder, not a checkpoint to resume from"));
        }
        Ok(())
    }

    /// Loads the checkpoint at `path` into the model and optimizer, if there is one. All of it is
    /// read and checked against this network and optimizer first: on an error nothing changed.
    fn restore<B, N, O>(&self, path: &Path, model: &mut N, optimizer: &mut O, fresh: Run, ddp: Option<&dyn Collective<B>>) -> Result<Run>
    where
        B: Backend,
        N: Network<B>,
        O: Optimizer<B>,
    {
        let verbose = self.verbose && ddp.is_none_or(|c| c.rank() == 0);
        if let Some(c) = ddp {
            // Every rank resumes, or none: they must all see the checkpoint (shared storage).
            let mut found = [path.exists() as u8 as f64];
            c.all_reduce_sum_f64(&mut found)?;
            if found[0] as usize % c.world_size() != 0 {
                let here = if path.exists() { "is here" } else { "is missing here" };
                return Err(Error::file(path, format!("rank {}/{}: the checkpoint {here} but not on every rank: put it where every rank reads it", c.rank(), c.world_size())));
            }
        }
        if !path.exists() {
            if verbose {
                println!("no checkpoint at {}: starting from epoch 1", path.display());
            }
            return Ok(fresh);
        }
        let ck = Checkpoint::load(path)?;
        let bad = |msg: String| Error::file(path, msg);
        let world_size = ddp.map_or(1, |c| c.world_size());
        if ck.world_size != world_size {
            return Err(bad(format!(
                "a checkpoint of a run on {} process(es), and this one runs on {world_size}: resume with the same number (the global batch would change)",
                ck.world_size
            )));
        }
        if ck.network != N::SPEC.name {
            return Err(bad(format!("a checkpoint of {}, not of {}", ck.network, N::SPEC.name)));
        }
        if ck.optimizer_kind != optimizer.kind() {
            return Err(bad(format!("a checkpoint of a run with {}, not {}", ck.optimizer_kind, optimizer.kind())));
        }
        model.check_state_dict(&ck.model, true).map_err(|e| bad(format!("its model.* tensors: {e}")))?;
        if let Some(b) = &ck.best {
            model.check_state_dict(&b.weights, true).map_err(|e| bad(format!("its best.* tensors (early stopping's best weights): {e}")))?;
        }
        optimizer.check_state_dict(model.state().param_layout(), &ck.optimizer).map_err(|e| bad(format!("its optimizer.* tensors: {e}")))?;
        // Everything fits: apply it.
        if ck.seed != self.seed && verbose {
            println!("resuming with the checkpoint's shuffling seed {} (this trainer has {})", ck.seed, self.seed);
        }
        model.load_state_dict(&ck.model, true).map_err(|e| bad(e.to_string()))?;
        optimizer.load_state_dict(model.state().param_layout(), &ck.optimizer).map_err(|e| bad(e.to_string()))?;
        model.state_mut().set_rng_state(ck.rng.0, ck.rng.1);
        optimizer.set_learning_rate(ck.history.epochs.last().map_or(ck.base_lr, |e| e.lr));
        if verbose {
            println!("resumed from {}: {} epochs done", path.display(), ck.epoch);
        }
        let mut history = ck.history;
        history.best_epoch = ck.best.as_ref().map(|b| b.epoch);
        Ok(Run { start: ck.epoch, base_lr: ck.base_lr, seed: ck.seed, history, best: ck.best })
    }

    /// The communicator of [`Trainer::distributed`], for the backend being trained on.
    fn collective<B: Backend>(&self) -> Result<Option<Arc<dyn Collective<B>>>> {
        match &self.distributed {
            None => Ok(None),
            Some(any) => any
                .downcast_ref::<Arc<dyn Collective<B>>>()
                .map(|c| Some(c.clone()))
                .ok_or_else(|| Error::bad_input(format!("Trainer::distributed was given a communicator for another backend than {}", std::any::type_name::<B>()))),
        }
    }

    fn progress_bar(&self, epoch: usize, batches: usize) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(batches as u64), ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, {eta} left)").expect("a valid template").progress_chars("=> "));
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, self.epochs));
        bar
    }

    /// Writes the history and its plot. A failure (a full disk) is a warning, not the end of the
    /// run: the checkpoint, written before, holds the history too, and the next epoch rewrites
    /// both files whole.
    fn write_history(&self, history: &History) {
        if let Some(dir) = &self.out_dir {
            let written = history.write_csv(dir.join("history.csv")).and_then(|_| history.plot(dir.join("history.svg")));
            if let Err(e) = written {
                eprintln!("warning: the history was not written: {e}");
            }
        }
    }
}

impl Trainer {
    /// What [`Trainer::fit`] writes beside the history, set up before the first epoch (the
    /// TensorBoard file is created then, so that a folder it cannot write stops the run early).
    /// What the run writes beside its history (nothing on a rank other than 0).
    fn extras<B: Backend, N: Network<B>>(&self, root: bool) -> Result<outputs::Extras>
    where
        N::Output: Logits,
    {
        let classes = <N::Output as Logits>::CLASSES;
        let names = self.class_names.clone().unwrap_or_else(|| ConfusionMatrix::default_names(classes));
        outputs::Extras::new(self.out_dir.as_deref().filter(|_| root), self.tensorboard, names)
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

/// The error that ends a run whose loss or weights stopped being finite, with where the last
/// good state is.
fn diverged(epoch: usize, what: String, saved: &Option<(PathBuf, usize)>) -> Error {
    let kept = match saved {
        Some((path, e)) => format!(" The checkpoint {} holds epoch {e}, the last good one.", path.display()),
        None => String::new(),
    };
    Error::bad_input(format!("epoch {epoch}, {what}.{kept}"))
}

/// After `freeze("")` (or on a network without parameters) `fit` would run its epochs and
/// change nothing: say so.
fn warn_nothing_trains<B: Backend, N: Network<B>>(model: &N) {
    if model.num_trainable_parameters() == 0 {
        eprintln!("warning: {} has no parameter left to train (all are frozen): fit will not change it; unfreeze some, e.g. `model.unfreeze(\"fc\")`", N::SPEC.name);
    }
}

/// A network ending in Softmax trained with cross-entropy applies softmax twice.
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

/// The metrics of the whole data set from each rank's metrics of its shard: losses weighted by
/// the samples, counts summed.
fn all_reduce_metrics<B: Backend>(comm: &dyn crate::distributed::Collective<B>, m: Metrics) -> Result<Metrics> {
    // The loss, the counts, and the confusion matrix's counts, summed in one collective.
    let mut sums = vec![m.loss as f64 * m.total as f64, m.correct as f64, m.total as f64];
    sums.extend(m.confusion.counts().iter().map(|&c| c as f64));
    comm.all_reduce_sum_f64(&mut sums)?;
    let (correct, total) = (sums[1] as usize, sums[2] as usize);
    let mut confusion = m.confusion;
    confusion.set_counts(sums[3..].iter().map(|&c| c as usize));
    Ok(Metrics { loss: (sums[0] / total.max(1) as f64) as f32, accuracy: correct as f32 / total.max(1) as f32, correct, total, confusion })
}
