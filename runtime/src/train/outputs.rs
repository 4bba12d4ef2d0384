//! What a run writes beside its history when it has an output folder: the confusion matrix (CSV
//! and heatmap) and the TensorBoard event file.

use std::path::{Path, PathBuf};

use super::confusion::ConfusionMatrix;
use super::history::EpochStats;
use super::tensorboard::{EventWriter, PngImage};
use crate::backend::Backend;
use crate::network::{Network, Op};
use crate::{Result, viz};

/// The confusion matrix files and the TensorBoard writer of one `fit`.
pub(super) struct Extras {
    dir: Option<PathBuf>,
    names: Vec<String>,
    tensorboard: Option<EventWriter>,
}

impl Extras {
    /// Nothing without a folder; with one, a new event file in `dir/tensorboard/` if asked for.
    pub(super) fn new(dir: Option<&Path>, tensorboard: bool, names: Vec<String>) -> Result<Extras> {
        let writer = match dir {
            Some(d) if tensorboard => Some(EventWriter::create(d.join("tensorboard"))?),
            _ => None,
        };
        Ok(Extras { dir: dir.map(Path::to_path_buf), names, tensorboard: writer })
    }

    /// After an epoch: its scalars and the first convolution's filters to TensorBoard, and
    /// `confusion` (when it is the one to keep) as CSV and heatmap. A failure is a warning, as for
    /// the history: the checkpoint is the run, these are views of it.
    pub(super) fn write_epoch<B: Backend, N: Network<B>>(&mut self, model: &N, stats: &EpochStats, confusion: Option<&ConfusionMatrix>) {
        let Some(dir) = &self.dir else { return };
        if let Some(m) = confusion {
            let mut written = m.write_csv(dir.join("confusion_matrix.csv"), &self.names);
            if m.classes() <= 100 {
                written = written.and_then(|_| m.plot(dir.join("confusion_matrix.svg"), &self.names));
            }
            if let Err(e) = written {
                eprintln!("warning: the confusion matrix was not written: {e}");
            }
        }
        if let Some(tb) = &mut self.tensorboard
            && let Err(e) = write_tensorboard(tb, model, stats)
        {
            eprintln!("warning: TensorBoard's events of epoch {} were not written: {e}", stats.epoch);
        }
    }
}

/// The name of the first convolution, whose filters are pictured (`cnn1`, `features.0`).
pub(super) fn first_conv(spec: &crate::network::NetSpec) -> Option<&'static str> {
    spec.layers.iter().find(|l| matches!(l.op, Op::Conv2d(_))).map(|l| l.name)
}

fn write_tensorboard<B: Backend, N: Network<B>>(tb: &mut EventWriter, model: &N, s: &EpochStats) -> Result<()> {
    let step = s.epoch as i64;
    tb.add_scalar("loss/train", s.train_loss, step)?;
    tb.add_scalar("accuracy/train", s.train_accuracy, step)?;
    if let Some(v) = s.val_loss {
        tb.add_scalar("loss/val", v, step)?;
    }
    if let Some(v) = s.val_accuracy {
        tb.add_scalar("accuracy/val", v, step)?;
    }
    tb.add_scalar("lr", s.lr, step)?;
    if let Some(conv) = first_conv(N::SPEC) {
        let grid = viz::filter_grid(&model.parameter(&format!("{conv}.weight"))?)?;
        // Tiles of a few pixels are too small to see in TensorBoard: at least 128 pixels across.
        let grid = grid.upscale(128usize.div_ceil(grid.width));
        tb.add_image(&format!("filters/{conv}"), &PngImage::of_grid(&grid)?, step)?;
    }
    tb.flush()
}
