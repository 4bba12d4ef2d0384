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

    /// Reads a checkpoint written by [`Checkpoint::save`]; any flaw is an error naming the file.
    pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint> {
        let path = path.as_ref();
        let (all, meta) = StateDict::load_with_metadata(path)?;
        let bad = |msg: String| Error::file(path, msg);
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad("not a staticnet checkpoint (its header has no `format: staticnet checkpoint 1`)".into()));
        }
        let text = |key: &str| meta.get(key).cloned().ok_or_else(|| bad(format!("the checkpoint's header lacks `{key}`")));
        fn num<T: std::str::FromStr>(key: &str, v: String) -> std::result::Result<T, String> {
            v.parse().map_err(|_| format!("the checkpoint's `{key}` is not a number: `{v}`"))
        }
        let number = |key: &str| text(key).and_then(|v| num::<u64>(key, v).map_err(bad));
        let best = match meta.get("best_loss") {
            None => None,
            Some(loss) => Some(Best {
                loss: num("best_loss", loss.clone()).map_err(bad)?,
                epoch: number("best_epoch")? as usize,
                since: number("best_since")? as usize,
                weights: all.with_prefix("best"),
            }),
        };
        Ok(Checkpoint {
            network: text("network")?,
            epoch: number("epoch")? as usize,
            model: all.with_prefix("model"),
            optimizer_kind: text("optimizer")?,
            optimizer: all.with_prefix("optimizer"),
            base_lr: num("base_lr", text("base_lr")?).map_err(bad)?,
            seed: number("seed")?,
            rng: (number("rng_seed")?, number("rng_step")?),
            history: History::from_csv(&text("history")?).map_err(|e| bad(format!("its history: {e}")))?,
            best,
        })
    }
}
