//! Checkpoints of a training run: everything needed to continue it exactly (the weights and
//! running statistics, the optimizer's moments and step counts, the epoch, the dropout RNG's
//! seed and step, early stopping's best weights, the history), in one safetensors file written
//! atomically, so that a crash at any moment leaves the previous checkpoint or the new one.
//!
//! Tensors are stored under `model.`, `optimizer.` and `best.` prefixes; the rest is in the
//! file's metadata. A checkpoint's `model.*` tensors are a plain state dict: PyTorch can read
//! them with `{k[6:]: v for k, v in load_file(path).items() if k.startswith("model.")}`.

use std::collections::HashMap;
use std::path::Path;

use super::History;
use crate::network::StateDict;
use crate::{Error, Result};

const FORMAT: &str = "staticnet checkpoint 1";

/// A training run at the end of an epoch.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The network type's name (a checkpoint refuses to load into another).
    pub network: String,
    /// Epochs completed.
    pub epoch: usize,
    /// The network's state dict.
    pub model: StateDict,
    /// `Optimizer::kind` and `Optimizer::state_dict`.
    pub optimizer_kind: String,
    /// The optimizer's state (moments, step counts).
    pub optimizer: StateDict,
    /// The learning rate the schedule starts from.
    pub base_lr: f32,
    /// The trainer's shuffling seed.
    pub seed: u64,
    /// The network's dropout seed and step (`NetState::rng_state`).
    pub rng: (u64, u64),
    /// The epochs completed so far.
    pub history: History,
    /// Early stopping: the best validation loss, its epoch, the epochs since, and its weights.
    pub best: Option<Best>,
    /// The number of processes of a data-parallel run (1 alone): a run resumes with the same.
    pub world_size: usize,
}

/// What early stopping remembers.
#[derive(Clone, Debug)]
pub struct Best {
    /// The best validation loss.
    pub loss: f32,
    /// The epoch it was reached at, from 1.
    pub epoch: usize,
    /// Epochs since then without improvement.
    pub since: usize,
    /// The weights of that epoch.
    pub weights: StateDict,
}

impl Checkpoint {
    /// Writes the checkpoint atomically (temporary file, fsync, rename).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut all = StateDict::new();
        let prefixed = |all: &mut StateDict, prefix: &str, sd: &StateDict| {
            for (k, t) in sd.iter() {
                all.insert(format!("{prefix}.{k}"), t.clone());
            }
        };
        prefixed(&mut all, "model", &self.model);
        prefixed(&mut all, "optimizer", &self.optimizer);
        let mut meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("network".to_string(), self.network.clone()),
            ("epoch".to_string(), self.epoch.to_string()),
            ("optimizer".to_string(), self.optimizer_kind.clone()),
            ("base_lr".to_string(), self.base_lr.to_string()),
            ("seed".to_string(), self.seed.to_string()),
            ("rng_seed".to_string(), self.rng.0.to_string()),
            ("rng_step".to_string(), self.rng.1.to_string()),
            ("history".to_string(), self.history.to_csv()),
            ("world_size".to_string(), self.world_size.to_string()),
        ]);
        if let Some(best) = &self.best {
            prefixed(&mut all, "best", &best.weights);
            meta.insert("best_loss".into(), best.loss.to_string());
            meta.insert("best_epoch".into(), best.epoch.to_string());
            meta.insert("best_since".into(), best.since.to_string());
        }
        let bytes = all.to_safetensors_bytes(Some(meta))?;
        crate::io::write_atomic(path.as_ref(), &bytes)
    }

    /// Reads a checkpoint written by [`Checkpoint::save`] and checks that it is whole and
    /// consistent (every header field, the history, finite values everywhere, early stopping's
    /// record); any flaw is an error naming the file and the field or tensor. Whether it fits a
    /// network and an optimizer is checked by [`crate::Trainer`] before it applies any of it.
    pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint> {
        let path = path.as_ref();
        let (all, meta) = StateDict::load_with_metadata(path)?;
        Self::from_parts(all, &meta).map_err(|msg| Error::file(path, msg))
    }

    fn from_parts(all: StateDict, meta: &HashMap<String, String>) -> std::result::Result<Checkpoint, String> {
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(format!("not a staticnet checkpoint (its header has no `format: {FORMAT}`)"));
        }
        let text = |key: &str| meta.get(key).cloned().ok_or_else(|| format!("the checkpoint's header lacks `{key}`"));
        fn num<T: std::str::FromStr>(key: &str, v: &str) -> std::result::Result<T, String> {
            v.parse().map_err(|_| format!("the checkpoint's `{key}` is not a number of the right kind: `{v}`"))
        }
        let number = |key: &str| text(key).and_then(|v| num::<usize>(key, &v));
        let rate = |key: &str, v: &str| {
            num::<f32>(key, v).and_then(|r| if r.is_finite() && r >= 0.0 { Ok(r) } else { Err(format!("the checkpoint's `{key}` is {r}; a learning rate is finite and ≥ 0")) })
        };
        if let Some(k) = all.keys().find(|k| !["model.", "optimizer.", "best."].iter().any(|p| k.starts_with(p))) {
            return Err(format!("tensor `{k}` belongs to none of model.*, optimizer.*, best.*"));
        }
        let best = match meta.get("best_loss") {
            None if all.keys().any(|k| k.starts_with("best.")) => return Err("it holds best.* weights but its header lacks `best_loss`".into()),
            None => None,
            Some(loss) => Some(Best {
                loss: num("best_loss", loss)?,
                epoch: number("best_epoch")?,
                since: number("best_since")?,
                weights: all.with_prefix("best"),
            }),
        };
        let ck = Checkpoint {
            network: text("network")?,
            epoch: number("epoch")?,
            model: all.with_prefix("model"),
            optimizer_kind: text("optimizer")?,
            optimizer: all.with_prefix("optimizer"),
            base_lr: rate("base_lr", &text("base_lr")?)?,
            seed: text("seed").and_then(|v| num("seed", &v))?,
            rng: (text("rng_seed").and_then(|v| num("rng_seed", &v))?, text("rng_step").and_then(|v| num("rng_step", &v))?),
            history: History::from_csv(&text("history")?).map_err(|e| format!("its history: {e}"))?,
            best,
            // Checkpoints from before data-parallel training were all of one process.
            world_size: meta.get("world_size").map_or(Ok(1), |v| num("world_size", v))?,
        };
        ck.check()?;
        Ok(ck)
    }

    /// The checks that need no network: the parts agree with each other, nothing is NaN or
    /// infinite (a run that diverged is never checkpointed, so such a file was damaged).
    fn check(&self) -> std::result::Result<(), String> {
        if self.world_size == 0 {
            return Err("its `world_size` is 0; a run has at least one process".into());
        }
        if self.history.epochs.len() != self.epoch {
            return Err(format!("its `epoch` is {} but its history has {} rows", self.epoch, self.history.epochs.len()));
        }
        for (part, sd) in [("model", &self.model), ("optimizer", &self.optimizer)] {
            if let Some((k, i, v)) = sd.first_non_finite() {
                return Err(format!("tensor `{part}.{k}` holds {v} at {i}"));
            }
        }
        if let Some(best) = &self.best {
            if !best.loss.is_finite() {
                return Err(format!("its `best_loss` is {}; a best validation loss is finite", best.loss));
            }
            if best.epoch == 0 || best.epoch > self.epoch || best.since != self.epoch - best.epoch {
                return Err(format!(
                    "its `best_epoch` {} and `best_since` {} do not fit its `epoch` {} (1 ≤ best_epoch ≤ epoch, best_since = epoch − best_epoch)",
                    best.epoch, best.since, self.epoch
                ));
            }
            if let Some((k, i, v)) = best.weights.first_non_finite() {
                return Err(format!("tensor `best.{k}` holds {v} at {i}"));
            }
        }
        Ok(())
    }
}
