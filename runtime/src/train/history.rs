//! A training run's history: one row per epoch, written as CSV and drawn as the course's two
//! matplotlib panels (loss and accuracy against the epoch) in an SVG image.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::{Error, Result};

const HEADER: &str = "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds";

/// One epoch of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochStats {
    /// From 1.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (train mode, as the course reports it).
    pub train_loss: f32,
    /// Fraction of the training samples classified right during the epoch.
    pub train_accuracy: f32,
    /// Mean validation loss (eval mode), with a validation set.
    pub val_loss: Option<f32>,
    /// Validation accuracy, with a validation set.
    pub val_accuracy: Option<f32>,
    /// The learning rate of the epoch.
    pub lr: f32,
    /// Wall-clock time of the epoch.
    pub seconds: f32,
}

impl EpochStats {
    /// The row of epoch `epoch` as a run writes it: losses finite and ≥ 0, accuracies in
    /// [0, 1], a learning rate finite and ≥ 0, seconds ≥ 0.
    fn check(&self, epoch: usize) -> std::result::Result<(), String> {
        let loss = |name: &str, v: f32| if v.is_finite() && v >= 0.0 { Ok(()) } else { Err(format!("{name} {v} is not a loss (finite, ≥ 0)")) };
        let accuracy = |name: &str, v: f32| if (0.0..=1.0).contains(&v) { Ok(()) } else { Err(format!("{name} {v} is not an accuracy (0 to 1)")) };
        if self.epoch != epoch {
            return Err(format!("epoch {} where epoch {epoch} was due", self.epoch));
        }
        loss("train_loss", self.train_loss)?;
        accuracy("train_accuracy", self.train_accuracy)?;
        if let Some(v) = self.val_loss {
            loss("val_loss", v)?;
        }
        if let Some(v) = self.val_accuracy {
            accuracy("val_accuracy", v)?;
        }
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return Err(format!("lr {} is not a learning rate (finite, ≥ 0)", self.lr));
        }
        if !(self.seconds.is_finite() && self.seconds >= 0.0) {
            return Err(format!("seconds {} is not a duration (finite, ≥ 0)", self.seconds));
        }
        Ok(())
    }

    /// `epoch 2/5  train loss 0.1234 acc 96.12%  val loss 0.0987 acc 97.00%  2.1 s`.
    pub fn line(&self, epochs: usize) -> String {
        let mut s = format!("epoch {}/{epochs}  train loss {:.4} acc {:.2}%", self.epoch, self.train_loss, 100.0 * self.train_accuracy);
        if let (Some(l), Some(a)) = (self.val_loss, self.val_accuracy) {
            let _ = write!(s, "  val loss {l:.4} acc {:.2}%", 100.0 * a);
        }
        let _ = write!(s, "  {:.1} s", self.seconds);
        s
    }
}

/// Every epoch of a run, and how it ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// One entry per epoch run.
    pub epochs: Vec<EpochStats>,
    /// The epoch whose weights early stopping kept.
    pub best_epoch: Option<usize>,
    /// Whether early stopping ended the run before its last epoch.
    pub stopped_early: bool,
}

impl History {
    /// `epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds`, one row per epoch.
    pub fn to_csv(&self) -> String {
        let mut csv = String::from(HEADER);
        csv.push('\n');
        let opt = |v: Option<f32>| v.map_or(String::new(), |v| v.to_string());
        for e in &self.epochs {
            let _ = writeln!(csv, "{},{},{},{},{},{},{}", e.epoch, e.train_loss, e.train_accuracy, opt(e.val_loss), opt(e.val_accuracy), e.lr, e.seconds);
        }
        csv
    }

    /// Reads back [`History::to_csv`].
    pub fn from_csv(csv: &str) -> std::result::Result<History, String> {
        let mut lines = csv.lines();
        if lines.next() != Some(HEADER) {
            return Err(format!("the first line is not `{HEADER}`"));
        }
        let mut history = History::default();
        for (i, line) in lines.enumerate() {
            let cells: Vec<&str> = line.split(',').collect();
            let bad = || format!("line {} `{line}` is not {} cells of numbers", i + 2, HEADER.split(',').count());
            if cells.len() != 7 {
                return Err(bad());
            }
            let f = |k: usize| cells[k].parse::<f32>().map_err(|_| bad());
            let opt = |k: usize| if cells[k].is_empty() { Ok(None) } else { f(k).map(Some) };
            let row = EpochStats {
                epoch: cells[0].parse().map_err(|_| bad())?,
                train_loss: f(1)?,
                train_accuracy: f(2)?,
                val_loss: opt(3)?,
                val_accuracy: opt(4)?,
                lr: f(5)?,
                seconds: f(6)?,
            };
            row.check(i + 1).map_err(|e| format!("line {} `{line}`: {e}", i + 2))?;
            history.epochs.push(row);
        }
        Ok(history)
    }

    /// [`History::to_csv`], written atomically.
    pub fn write_csv(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::io::write_atomic(path.as_ref(), self.to_csv().as_bytes())
    }

    /// Loss and accuracy curves (train and validation) as an SVG image.
    pub fn plot(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut svg = String::new();
        self.draw(&mut svg).map_err(|e| Error::file(path, format!("cannot draw the history: {e}")))?;
        crate::io::write_atomic(path, svg.as_bytes())
    }

    /// The epoch of the lowest validation loss (the first of equals), with a validation set.
    pub fn lowest_val_loss(&self) -> Option<usize> {
        let with_val = self.epochs.iter().filter_map(|e| e.val_loss.map(|v| (v, e.epoch)));
        with_val.fold(None, |best: Option<(f32, usize)>, (v, e)| match best {
            Some((b, _)) if !(v < b) => best,
            _ => Some((v, e)),
        })
        .map(|(_, e)| e)
    }

    fn draw(&self, out: &mut String) -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(out, (1000, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(500);
        let last = self.epochs.len().max(2) as f32;
        let series = |f: &dyn Fn(&EpochStats) -> Option<f32>| -> Vec<(f32, f32)> { self.epochs.iter().filter_map(|e| f(e).map(|v| (e.epoch as f32, v))).collect() };
        let panels: [(&DrawingArea<SVGBackend, _>, &str, Vec<(f32, f32)>, Vec<(f32, f32)>); 2] = [
            (&left, "loss", series(&|e| Some(e.train_loss)), series(&|e| e.val_loss)),
            (&right, "accuracy (%)", series(&|e| Some(100.0 * e.train_accuracy)), series(&|e| e.val_accuracy.map(|a| 100.0 * a))),
        ];
        for (area, name, train, val) in panels {
            let values = train.iter().chain(&val).map(|p| p.1);
            let (lo, hi) = values.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
            let pad = ((hi - lo) * 0.1).max(1e-3);
            let (lo, hi) = if lo.is_finite() { (lo - pad, hi + pad) } else { (0.0, 1.0) };
            let mut chart = ChartBuilder::on(area)
                .caption(name, ("sans-serif", 20))
                .margin(15)
                .x_label_area_size(35)
                .y_label_area_size(55)
                .build_cartesian_2d(1f32..last, lo..hi)?;
            chart
                .configure_mesh()
                .x_labels(self.epochs.len().clamp(2, 12))
                .x_label_formatter(&|x| format!("{x:.0}"))
                .x_desc("epoch")
                .y_desc(name)
                .draw()?;
            chart.draw_series(LineSeries::new(train, &BLUE))?.label("train").legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
            if !val.is_empty() {
                chart.draw_series(LineSeries::new(val, &RED))?.label("validation").legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
            }
            // The best epoch (whose weights early stopping kept; without it, the lowest validation
            // loss) and the last one that early stopping ran.
            let marks = [
                (self.best_epoch.or_else(|| self.lowest_val_loss()), GREEN.mix(0.9), "best epoch"),
                (self.stopped_early.then(|| self.epochs.last().map(|e| e.epoch)).flatten(), BLACK.mix(0.6), "early stop"),
            ];
            for (epoch, color, what) in marks {
                if let Some(e) = epoch {
                    let line = DashedLineSeries::new(vec![(e as f32, lo), (e as f32, hi)], 6, 4, color.stroke_width(2));
                    chart.draw_series(line)?.label(format!("{what} ({e})")).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                }
            }
            chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
        }
        root.present()?;
        Ok(())
    }
}
