//! A long run never loses its good state: nothing NaN or infinite is kept as best or
//! checkpointed, a checkpoint is resumed all-or-nothing, what can be checked is checked before the
//! first step, and the checkpoint is written before the history and its plot. Each test names
//! the behaviour; each failed on the main of 2026-12-02 before the fixes beside it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use staticnet::ndarray::{ArrayD, IxDyn};
use staticnet::prelude::*;
use staticnet::train::Checkpoint;
use staticnet::{Dataset, LrScheduler, StepLr, Trainer};

network! {
    pub struct Tiny {
        input: [1, 6, 6],
        conv: Conv2d(1, 4, 3, padding = 1), ReLU, MaxPool2d(2),
        bn: BatchNorm2d(4),
        Flatten,
        fc: Linear(4 * 3 * 3, 4),
    }
}

/// 6×6 images with one bright pixel, labelled by the quadrant it lies in.
fn quadrants(n: usize) -> Dataset<Images<1, 6, 6>> {
    let mut values = vec![0.05f32; n * 36];
    let mut labels = Vec::new();
    for i in 0..n {
        let (y, x) = ((i * 7) % 6, (i * 11 + i / 6) % 6);
        values[i * 36 + y * 6 + x] = 1.0;
        labels.push((y / 3) * 2 + x / 3);
    }
    Dataset::new("quadrants", values, labels, 4).unwrap()
}

/// A fresh folder for one test.
fn tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("long-runs-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn quiet(epochs: usize) -> Trainer {
    Trainer::new(epochs).batch_size(10).seed(3).progress(false).verbose(false)
}

fn err(r: staticnet::Result<staticnet::History>) -> String {
    match r {
        Ok(h) => panic!("expected an error, the run ended with {h:?}"),
        Err(e) => e.to_string(),
    }
}

// ---- 1. Nothing non-finite is ever kept ----

/// One epoch of one full batch: the only update is the epoch's last, and no loss follows it.
#[test]
fn non_finite_weights_after_the_last_update_of_an_epoch_stop_the_run() {
    let data = quadrants(10);
    let mut net = Tiny::new(&Cpu, 0).unwrap();
    let msg = err(quiet(1).fit(&mut net, &mut Sgd::new(f32::INFINITY), &data, None));
    assert!(msg.contains("epoch 1, after its last step (1 of 1)") && msg.contains("lower the learning rate"), "{msg}");
}

#[test]
fn a_non_finite_training_loss_names_epoch_and_step() {
    let mut net = Tiny::new(&Cpu, 0).unwrap();
    let msg = err(quiet(3).fit(&mut net, &mut Sgd::new(f32::MAX), &quadrants(40), None));
    assert!(msg.contains("epoch 1, step 2 of 4: the loss became"), "{msg}");
}

/// An exploding schedule with early stopping: the diverged epoch must never become the best,
/// and the checkpoint on disk stays the last good epoch, which loads.
#[test]
fn nan_validation_loss_is_never_best() {
    let dir = tmp("nan-val");
    let ckpt = dir.join("run.ckpt");
    let (train, val) = quadrants(60).split(50, 0).unwrap();
    let mut net = Tiny::new(&Cpu, 1).unwrap();
    let trainer = quiet(4).early_stopping(2).checkpoint(&ckpt).scheduler(StepLr::new(1).gamma(f32::INFINITY));
    let msg = err(trainer.fit(&mut net, &mut Sgd::new(0.05), &train, Some(&val)));
    assert!(msg.starts_with("epoch 2,"), "{msg}");
    assert!(msg.contains(&format!("The checkpoint {} holds epoch 1, the last good one", ckpt.display())), "{msg}");
    let ck = Checkpoint::load(&ckpt).unwrap();
    assert_eq!((ck.epoch, ck.best.as_ref().map(|b| b.epoch)), (1, Some(1)));
    let mut fresh = Tiny::new(&Cpu, 9).unwrap();
    fresh.load_state_dict(&ck.model, true).unwrap();
}

/// Weights so large (but finite) that the logits overflow: the training steps' losses were
/// finite, the validation loss is not.
#[test]
fn a_non_finite_validation_loss_stops_the_run_before_the_checkpoint() {
    let dir = tmp("inf-val");
    let ckpt = dir.join("run.ckpt");
    let train = quadrants(10);
    let val = quadrants(20);
    let mut net = Tiny::new(&Cpu, 1).unwrap();
    // Epoch 1 at a sane rate, epoch 2 at 1e35: one full batch each, so no training loss follows
    // the huge update.
    struct Jump;
    impl LrScheduler for Jump {
        fn lr_at(&self, base: f32, epoch: usize) -> f32 {
            if epoch == 0 { base } else { 1e35 }
        }
    }
    let trainer = quiet(3).early_stopping(2).checkpoint(&ckpt).scheduler(Jump);
    let msg = err(trainer.fit(&mut net, &mut Sgd::new(0.05), &train, Some(&val)));
    assert!(msg.starts_with("epoch 2, the validation loss is"), "{msg}");
    assert_eq!(Checkpoint::load(&ckpt).unwrap().epoch, 1);
}

// ---- 2. Resume is all-or-nothing ----

/// A two-epoch Adam run with early stopping, checkpointed: the file every resume case edits.
fn good_checkpoint(dir: &Path) -> PathBuf {
    let path = dir.join("good.ckpt");
    let (train, val) = quadrants(60).split(50, 0).unwrap();
    let mut net = Tiny::new(&Cpu, 4).unwrap();
    quiet(2).early_stopping(5).checkpoint(&path).fit(&mut net, &mut Adam::new(1e-2), &train, Some(&val)).unwrap();
    path
}

/// Rewrites a checkpoint with `edit` applied to its tensors and header.
fn edited(from: &Path, to: &Path, edit: impl FnOnce(&mut StateDict, &mut HashMap<String, String>)) {
    let (mut sd, mut meta) = StateDict::load_with_metadata(from).unwrap();
    edit(&mut sd, &mut meta);
    std::fs::write(to, sd.to_safetensors_bytes(Some(meta)).unwrap()).unwrap();
}

/// A batch-norm's `num_batches_tracked`: an int64 scalar, as PyTorch keeps it.
fn counter(v: i64) -> Tensor {
    Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[]), vec![v]).unwrap())
}

fn i64_tensor(v: Vec<i64>) -> Tensor {
    let n = v.len();
    Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[n]), v).unwrap())
}

/// Each flaw is an error naming the file and the tensor or field, before the first step, with
/// the network and the optimizer as they were.
#[test]
fn a_flawed_checkpoint_is_refused_whole_before_the_first_step() {
    let dir = tmp("resume-flaws");
    let good = good_checkpoint(&dir);
    type Edit = Box<dyn FnOnce(&mut StateDict, &mut HashMap<String, String>)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        ("optimizer lacks step", Box::new(|sd, _| drop(sd.remove("optimizer.step"))), "optimizer state has no `step`"),
        ("missing exp_avg", Box::new(|sd, _| drop(sd.remove("optimizer.exp_avg"))), "has taken steps but lacks `exp_avg`"),
        ("step of the wrong length", Box::new(|sd, _| sd.insert("optimizer.step", i64_tensor(vec![2, 2]))), "`step` holds 2 counts, but Tiny has 6 parameter tensors"),
        ("a negative step", Box::new(|sd, _| sd.insert("optimizer.step", i64_tensor(vec![2, 2, 2, -1, 2, 2]))), "`step` holds -1 for parameter tensor 3"),
        (
            "a history row with lr = -1",
            Box::new(|_, meta| {
                let h = meta["history"].clone();
                let mut lines: Vec<String> = h.lines().map(str::to_string).collect();
                let mut cells: Vec<String> = lines[2].split(',').map(str::to_string).collect();
                cells[5] = "-1".into();
                lines[2] = cells.join(",");
                meta.insert("history".into(), lines.join("\n"));
            }),
            "lr -1 is not a learning rate",
        ),
        ("a corrupt best.* tensor", Box::new(|sd, _| drop(sd.remove("best.fc.bias"))), "its best.* tensors (early stopping's best weights)"),
        (
            "a best.* tensor of the wrong shape",
            Box::new(|sd, _| sd.insert("best.fc.bias", Tensor::F32(ArrayD::zeros(IxDyn(&[3]))))),
            "size mismatch for fc.bias",
        ),
        (
            "a NaN in the model",
            Box::new(|sd, _| {
                let mut w = sd.get("model.conv.weight").unwrap().as_f32().unwrap().clone();
                w[[0, 0, 1, 1]] = f32::NAN;
                sd.insert("model.conv.weight", Tensor::F32(w));
            }),
            "tensor `model.conv.weight` holds NaN at 4",
        ),
        ("a negative exp_avg_sq", Box::new(|sd, _| {
            let mut v = sd.get("optimizer.exp_avg_sq").unwrap().as_f32().unwrap().clone();
            v[[7]] = -1.0;
            sd.insert("optimizer.exp_avg_sq", Tensor::F32(v));
        }), "`exp_avg_sq` holds -1 at 7"),
        ("an unknown optimizer tensor", Box::new(|sd, _| sd.insert("optimizer.momentum_buffer", Tensor::F32(ArrayD::zeros(IxDyn(&[3]))))), "unknown tensor `momentum_buffer`"),
        ("a negative batch count", Box::new(|sd, _| sd.insert("model.bn.num_batches_tracked", counter(-1))), "a negative batch count (expected ≥ 0) for bn.num_batches_tracked"),
        ("epoch and history disagree", Box::new(|_, meta| drop(meta.insert("epoch".into(), "3".into()))), "its `epoch` is 3 but its history has 2 rows"),
        ("best_epoch after epoch", Box::new(|_, meta| drop(meta.insert("best_epoch".into(), "7".into()))), "`best_epoch` 7"),
        ("a NaN best loss", Box::new(|_, meta| drop(meta.insert("best_loss".into(), "NaN".into()))), "`best_loss` is NaN"),
        ("a stray tensor", Box::new(|sd, _| sd.insert("stray", i64_tensor(vec![1]))), "tensor `stray` belongs to none of"),
    ];
    let (train, val) = quadrants(60).split(50, 0).unwrap();
    for (what, edit, expected) in cases {
        let path = dir.join("flawed.ckpt");
        edited(&good, &path, edit);
        let mut net = Tiny::new(&Cpu, 77).unwrap();
        let before = net.state_dict().unwrap();
        let mut opt = Adam::new(1e-2);
        let msg = err(quiet(4).early_stopping(5).resume(&path).fit(&mut net, &mut opt, &train, Some(&val)));
        assert!(msg.starts_with(&path.display().to_string()), "{what}: the error names the file: {msg}");
        assert!(msg.contains(expected), "{what}: expected `{expected}` in: {msg}");
        assert_eq!(net.state_dict().unwrap(), before, "{what}: the network changed");
        assert_eq!(opt.state_dict(&Cpu).unwrap(), Adam::<Cpu>::new(1e-2).state_dict(&Cpu).unwrap(), "{what}: the optimizer changed");
    }
}

/// Counters at the very end of their range resume and train without an overflow (a panic in a
/// debug build before).
#[test]
fn counters_at_their_limits_resume_without_overflow() {
    let dir = tmp("limits");
    let good = good_checkpoint(&dir);
    let path = dir.join("limits.ckpt");
    edited(&good, &path, |sd, meta| {
        meta.insert("rng_step".into(), u64::MAX.to_string());
        sd.insert("model.bn.num_batches_tracked", counter(i64::MAX));
    });
    let (train, val) = quadrants(60).split(50, 0).unwrap();
    let mut net = Tiny::new(&Cpu, 0).unwrap();
    let history = quiet(3).early_stopping(5).resume(&path).fit(&mut net, &mut Adam::new(1e-2), &train, Some(&val)).unwrap();
    assert_eq!(history.epochs.len(), 3);
    assert_eq!(net.tensor("bn.num_batches_tracked").unwrap(), counter(i64::MAX));
}

// ---- 3. Fail before the first step ----

/// Whatever stops the run must stop it before the network changed.
fn refused_before_training(trainer: Trainer, train: &Dataset<Images<1, 6, 6>>, val: Option<&dyn staticnet::data::Source<Images<1, 6, 6>>>) -> String {
    let mut net = Tiny::new(&Cpu, 5).unwrap();
    let before = net.state_dict().unwrap();
    let msg = err(trainer.fit(&mut net, &mut Sgd::new(0.1), train, val));
    assert_eq!(net.state_dict().unwrap(), before, "the network changed before: {msg}");
    msg
}

#[test]
fn a_checkpoint_path_that_cannot_be_written_fails_before_the_first_step() {
    let dir = tmp("unwritable");
    let data = quadrants(20);
    let missing = dir.join("no-such-folder/run.ckpt");
    let msg = refused_before_training(quiet(1).checkpoint(&missing), &data, None);
    assert!(msg.contains(&format!("{}: cannot be written: its folder", missing.display())) && msg.contains("does not exist"), "{msg}");

    let folder = dir.join("a-folder.ckpt");
    std::fs::create_dir_all(&folder).unwrap();
    let msg = refused_before_training(quiet(1).checkpoint(&folder), &data, None);
    assert!(msg.contains(&format!("{}: cannot be written: it is a folder", folder.display())), "{msg}");
    let msg = refused_before_training(quiet(1).resume(&folder), &data, None);
    assert!(msg.contains("is a folder, not a checkpoint to resume from"), "{msg}");

    let read_only = dir.join("read-only");
    std::fs::create_dir_all(&read_only).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).unwrap();
    // root ignores a folder's permissions; sysfs refuses new files even to root.
    let root = std::fs::write(read_only.join("probe"), b"").is_ok();
    let path = if root { PathBuf::from("/sys/run.ckpt") } else { read_only.join("run.ckpt") };
    let msg = refused_before_training(quiet(1).checkpoint(&path), &data, None);
    assert!(msg.contains(&format!("{}: cannot be written: creating a file in", path.display())), "{msg}");
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn an_empty_validation_set_is_an_error() {
    let data = quadrants(20);
    let empty = data.subset(&[]).unwrap();
    let msg = refused_before_training(quiet(1), &data, Some(&empty));
    assert!(msg.contains("quadrants: the validation set is empty"), "{msg}");
}

/// A data set of 10 classes on a 4-class network: found before any batch updated the weights.
#[test]
fn labels_outside_the_networks_classes_fail_before_any_step() {
    let mut labels = quadrants(30).labels().to_vec();
    labels[29] = 7;
    let data = Dataset::<Images<1, 6, 6>>::new("digits", quadrants(30).values().to_vec(), labels, 10).unwrap();
    let msg = refused_before_training(quiet(1), &data, None);
    assert!(msg.contains("digits: label 7 of sample 29 is not a class of Tiny, which has 4 outputs (labels 0..=3)"), "{msg}");
    let msg = refused_before_training(quiet(1), &quadrants(30), Some(&data));
    assert!(msg.contains("digits: label 7 of sample 29"), "{msg}");
}

/// Patience 0 is accepted and documented: the run stops at the first epoch whose validation
/// loss is not lower than the best so far.
#[test]
fn patience_zero_stops_at_the_first_epoch_without_improvement() {
    let train = quadrants(40);
    // A validation set the training set cannot teach: its loss soon rises.
    let val = Dataset::new("shifted", quadrants(20).values().to_vec(), quadrants(20).labels().iter().map(|l| (l + 1) % 4).collect(), 4).unwrap();
    let mut net = Tiny::new(&Cpu, 2).unwrap();
    let history = quiet(30).early_stopping(0).fit(&mut net, &mut Sgd::new(0.1).momentum(0.9), &train, Some(&val)).unwrap();
    let losses: Vec<f32> = history.epochs.iter().map(|e| e.val_loss.unwrap()).collect();
    let last = losses.len() - 1;
    assert!(history.stopped_early, "{losses:?}");
    // Every epoch before the last improved on all before it; the last did not.
    for i in 1..last {
        assert!(losses[i] < losses[..i].iter().copied().fold(f32::INFINITY, f32::min), "{losses:?}");
    }
    assert!(losses[last] >= losses[..last].iter().copied().fold(f32::INFINITY, f32::min), "{losses:?}");
    assert_eq!(history.best_epoch, Some(last));
}

// ---- 4. Order of writes ----

/// Replaces the plot with a folder when epoch 2 starts (a schedule is asked for each epoch's
/// rate before the epoch runs), so that writing the plot fails from then on.
struct BlockThePlot(PathBuf);

impl LrScheduler for BlockThePlot {
    fn lr_at(&self, base_lr: f32, epoch: usize) -> f32 {
        if epoch == 1 {
            std::fs::remove_file(&self.0).unwrap();
            std::fs::create_dir_all(self.0.join("in-the-way")).unwrap();
        }
        base_lr
    }
}

#[test]
fn a_plot_that_cannot_be_written_never_costs_the_checkpoint() {
    let dir = tmp("plot");
    let ckpt = dir.join("run.ckpt");
    let (train, val) = quadrants(60).split(50, 0).unwrap();
    let mut net = Tiny::new(&Cpu, 6).unwrap();
    let trainer = quiet(3).out_dir(&dir).checkpoint(&ckpt).scheduler(BlockThePlot(dir.join("history.svg")));
    let history = trainer.fit(&mut net, &mut Sgd::new(0.05), &train, Some(&val)).unwrap();
    assert_eq!(history.epochs.len(), 3);
    assert_eq!(Checkpoint::load(&ckpt).unwrap().epoch, 3);
    // The CSV, written before the plot, is whole too.
    assert_eq!(std::fs::read_to_string(dir.join("history.csv")).unwrap().lines().count(), 4);
    // ...and a folder in the way from the start is found before the first step.
    let msg = refused_before_training(quiet(1).out_dir(&dir), &train, None);
    assert!(msg.contains("history.svg: cannot be written: it is a folder"), "{msg}");
}

/// A pid that no process has now.
fn dead_pid() -> u32 {
    (4_000_000..).find(|p| !Path::new(&format!("/proc/{p}")).exists()).unwrap()
}

#[test]
fn stale_temp_files_of_a_killed_writer_are_removed_at_the_next_start() {
    let dir = tmp("stale");
    let ckpt = dir.join("run.ckpt");
    let dead = dead_pid();
    let ours = format!(".run.ckpt.tmp{dead}");
    // Names that are not the writer's own temporary files of this checkpoint stay.
    let others = [".run.ckpt.tmpabc", ".other.ckpt.tmp12", "run.ckpt.tmp12", ".run.ckpt.tmp12x"].map(String::from);
    for name in others.iter().chain([&ours]) {
        std::fs::write(dir.join(name), b"torn").unwrap();
    }
    let mut net = Tiny::new(&Cpu, 0).unwrap();
    quiet(1).checkpoint(&ckpt).fit(&mut net, &mut Sgd::new(0.05), &quadrants(20), None).unwrap();
    assert!(!dir.join(&ours).exists(), "{ours} was left");
    for name in &others {
        assert!(dir.join(name).exists(), "{name} was removed");
    }
}

/// Augmentation draws from (seed, epoch, sample index): a run stopped after 2 epochs and resumed
/// ends with the weights of an uninterrupted one, with worker threads making the batches in
/// whatever order they finish.
#[test]
fn a_resumed_augmented_run_sees_the_same_batches() {
    use staticnet::data::transforms::{Compose, RandomCrop, RandomHorizontalFlip};
    let dir = tmp("augmented-resume");
    let (train, val) = quadrants(60).split(50, 0).unwrap();
    let augment = || Compose::new().then(RandomCrop::new(6).padding(1)).then(RandomHorizontalFlip::default());
    let trainer = |epochs: usize| quiet(epochs).train_transform(augment()).num_workers(2);
    let mut whole = Tiny::new(&Cpu, 8).unwrap();
    trainer(4).fit(&mut whole, &mut Adam::new(1e-2), &train, Some(&val)).unwrap();
    let ckpt = dir.join("run.ckpt");
    let mut first = Tiny::new(&Cpu, 8).unwrap();
    trainer(2).checkpoint(&ckpt).fit(&mut first, &mut Adam::new(1e-2), &train, Some(&val)).unwrap();
    let mut resumed = Tiny::new(&Cpu, 99).unwrap();
    trainer(4).resume(&ckpt).fit(&mut resumed, &mut Adam::new(1e-2), &train, Some(&val)).unwrap();
    assert_eq!(resumed.state_dict().unwrap(), whole.state_dict().unwrap());
    // ...and the augmentation did change the batches: without it the run ends elsewhere.
    let mut plain = Tiny::new(&Cpu, 8).unwrap();
    quiet(4).fit(&mut plain, &mut Adam::new(1e-2), &train, Some(&val)).unwrap();
    assert_ne!(plain.state_dict().unwrap(), whole.state_dict().unwrap());
}
