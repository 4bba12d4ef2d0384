//! The confusion matrix of a classifier, with scikit-learn's per-class precision, recall and F1,
//! written as CSV and drawn as a heatmap.

use std::fmt::Write as _;
use std::path::Path;

use ndarray::Array2;
use plotters::prelude::*;

use crate::{Error, Result};

/// Counts of (true class, predicted class) pairs, laid out as scikit-learn's
/// `confusion_matrix(y_true, y_pred)`: row `i` is the true class `i`, column `j` the predicted
/// class `j`, so the diagonal holds the samples classified right.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfusionMatrix {
    classes: usize,
    counts: Vec<usize>,
}

/// Precision, recall, F1 and support of one class, as scikit-learn's
/// `precision_recall_fscore_support` computes them (see [`ConfusionMatrix::precision`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassScores {
    /// Of the samples predicted as this class, the fraction that are: tp / (tp + fp).
    pub precision: f32,
    /// Of the samples of this class, the fraction predicted as it: tp / (tp + fn).
    pub recall: f32,
    /// The harmonic mean of the two: 2 tp / (2 tp + fp + fn).
    pub f1: f32,
    /// Samples of this class (tp + fn).
    pub support: usize,
}

/// `num / den`, or 0 when `den` is 0: scikit-learn's `zero_division="warn"` (its default) gives
/// 0 and a warning; we give 0 and document it.
fn ratio(num: usize, den: usize) -> f32 {
    if den == 0 { 0.0 } else { (num as f64 / den as f64) as f32 }
}

impl ConfusionMatrix {
    /// An empty matrix over `classes` classes.
    pub fn new(classes: usize) -> Self {
        ConfusionMatrix { classes, counts: vec![0; classes * classes] }
    }

    /// The matrix of `labels` (true classes) against `predicted`, both in `0..classes`.
    pub fn from_predictions(classes: usize, labels: &[usize], predicted: &[usize]) -> Result<Self> {
        if labels.len() != predicted.len() {
            return Err(Error::bad_input(format!("a confusion matrix of {} labels and {} predictions: give one prediction per label", labels.len(), predicted.len())));
        }
        let mut m = ConfusionMatrix::new(classes);
        for (&l, &p) in labels.iter().zip(predicted) {
            m.record(l, p)?;
        }
        Ok(m)
    }

    /// Counts one sample of class `label` predicted as `predicted`.
    pub fn record(&mut self, label: usize, predicted: usize) -> Result<()> {
        let classes = self.classes;
        for (what, c) in [("label", label), ("prediction", predicted)] {
            if c >= classes {
                return Err(Error::bad_input(format!("confusion matrix: {what} {c} is not one of the {classes} classes (0..{classes})")));
            }
        }
        self.counts[label * classes + predicted] += 1;
        Ok(())
    }

    /// Every count, row (true class) after row.
    pub fn counts(&self) -> &[usize] {
        &self.counts
    }

    /// Replaces the counts (row after row; as many as there are), e.g. with the sums over the
    /// ranks of a data-parallel run.
    pub(crate) fn set_counts(&mut self, counts: impl Iterator<Item = usize>) {
        self.counts.iter_mut().zip(counts).for_each(|(c, v)| *c = v);
    }

    /// The number of classes (rows and columns).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Samples of class `label` predicted as `predicted`.
    pub fn count(&self, label: usize, predicted: usize) -> usize {
        self.counts[label * self.classes + predicted]
    }

    /// All counts, row `i` for the true class `i` (`sklearn.metrics.confusion_matrix`).
    pub fn to_array(&self) -> Array2<usize> {
        Array2::from_shape_vec((self.classes, self.classes), self.counts.clone()).expect("classes² counts")
    }

    /// Samples counted.
    pub fn total(&self) -> usize {
        self.counts.iter().sum()
    }

    /// Samples classified right (the diagonal).
    pub fn correct(&self) -> usize {
        (0..self.classes).map(|c| self.count(c, c)).sum()
    }

    /// Samples of class `c` (its row's sum).
    pub fn support(&self, c: usize) -> usize {
        (0..self.classes).map(|p| self.count(c, p)).sum()
    }

    /// Samples predicted as class `c` (its column's sum).
    pub fn predicted(&self, c: usize) -> usize {
        (0..self.classes).map(|l| self.count(l, c)).sum()
    }

    /// tp / (tp + fp): of the samples predicted as `c`, the fraction of class `c`. A class never
    /// predicted has precision 0, as scikit-learn's default `zero_division="warn"` gives it (with
    /// a warning that we do not print).
    pub fn precision(&self, c: usize) -> f32 {
        ratio(self.count(c, c), self.predicted(c))
    }

    /// tp / (tp + fn): of the samples of class `c`, the fraction predicted as `c`; 0 for a class
    /// without samples (scikit-learn's default again).
    pub fn recall(&self, c: usize) -> f32 {
        ratio(self.count(c, c), self.support(c))
    }

    /// 2 tp / (2 tp + fp + fn), the harmonic mean of precision and recall (scikit-learn's
    /// formula); 0 for a class neither present nor predicted.
    pub fn f1(&self, c: usize) -> f32 {
        let tp = self.count(c, c);
        ratio(2 * tp, self.support(c) + self.predicted(c))
    }

    /// Precision, recall, F1 and support of class `c`.
    pub fn scores(&self, c: usize) -> ClassScores {
        ClassScores { precision: self.precision(c), recall: self.recall(c), f1: self.f1(c), support: self.support(c) }
    }

    /// [`ConfusionMatrix::scores`] of every class.
    pub fn per_class(&self) -> Vec<ClassScores> {
        (0..self.classes).map(|c| self.scores(c)).collect()
    }

    /// The unweighted mean of every class's scores (scikit-learn's `average="macro"`), support
    /// the total.
    pub fn macro_avg(&self) -> ClassScores {
        let k = self.classes.max(1) as f64;
        let mean = |f: fn(&ClassScores) -> f32| (self.per_class().iter().map(|s| f(s) as f64).sum::<f64>() / k) as f32;
        ClassScores { precision: mean(|s| s.precision), recall: mean(|s| s.recall), f1: mean(|s| s.f1), support: self.total() }
    }

    /// Fraction classified right, in [0, 1] (0 for an empty matrix).
    pub fn accuracy(&self) -> f32 {
        ratio(self.correct(), self.total())
    }

    /// `"0"`, `"1"`, … : the names of classes without names.
    pub fn default_names(classes: usize) -> Vec<String> {
        (0..classes).map(|c| c.to_string()).collect()
    }

    fn check_names(&self, names: &[String]) -> Result<()> {
        if names.len() != self.classes {
            return Err(Error::bad_input(format!("{} class names for a confusion matrix of {} classes", names.len(), self.classes)));
        }
        Ok(())
    }

    /// The matrix as CSV: a header `true\predicted,<name>,…`, then one row per true class
    /// starting with its name (`pandas.read_csv(path, index_col=0)` reads it back).
    pub fn to_csv(&self, names: &[String]) -> Result<String> {
        self.check_names(names)?;
        let mut w = csv::Writer::from_writer(Vec::new());
        let csv_err = |e: csv::Error| Error::bad_input(format!("confusion matrix CSV: {e}"));
        w.write_record(std::iter::once("true\\predicted").chain(names.iter().map(String::as_str))).map_err(csv_err)?;
        for (l, name) in names.iter().enumerate() {
            let row: Vec<String> = (0..self.classes).map(|p| self.count(l, p).to_string()).collect();
            w.write_record(std::iter::once(name.as_str()).chain(row.iter().map(String::as_str))).map_err(csv_err)?;
        }
        let bytes = w.into_inner().map_err(|e| Error::bad_input(format!("confusion matrix CSV: {e}")))?;
        Ok(String::from_utf8(bytes).expect("written from strings"))
    }

    /// [`ConfusionMatrix::to_csv`], written atomically.
    pub fn write_csv(&self, path: impl AsRef<Path>, names: &[String]) -> Result<()> {
        crate::io::write_atomic(path.as_ref(), self.to_csv(names)?.as_bytes())
    }

    /// scikit-learn's `classification_report`: precision, recall, F1 and support per class, then
    /// the accuracy and the macro average.
    pub fn report(&self, names: &[String]) -> Result<String> {
        self.check_names(names)?;
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0).max("macro avg".len());
        let mut s = format!("{:>width$} {:>9} {:>9} {:>9} {:>9}\n\n", "", "precision", "recall", "f1-score", "support");
        let row = |s: &mut String, name: &str, c: &ClassScores| {
            let _ = writeln!(s, "{name:>width$} {:>9.4} {:>9.4} {:>9.4} {:>9}", c.precision, c.recall, c.f1, c.support);
        };
        for (name, c) in names.iter().zip(self.per_class()) {
            row(&mut s, name, &c);
        }
        let _ = writeln!(s, "\n{:>width$} {:>9} {:>9} {:>9.4} {:>9}", "accuracy", "", "", self.accuracy(), self.total());
        row(&mut s, "macro avg", &self.macro_avg());
        Ok(s)
    }

    /// A heatmap of the matrix as an SVG image: true classes down, predicted classes across, each
    /// cell shaded by its share of its row (so classes of different sizes compare) and labelled
    /// with its count. Up to 100 classes (a larger matrix is an error: read its CSV instead).
    pub fn plot(&self, path: impl AsRef<Path>, names: &[String]) -> Result<()> {
        let path = path.as_ref();
        let svg = self.to_svg(names).map_err(|e| Error::file(path, e))?;
        crate::io::write_atomic(path, svg.as_bytes())
    }

    /// The SVG text of [`ConfusionMatrix::plot`].
    pub fn to_svg(&self, names: &[String]) -> std::result::Result<String, String> {
        self.check_names(names).map_err(|e| e.to_string())?;
        if self.classes > 100 {
            return Err(format!("a heatmap of {} classes would be unreadable (at most 100): read the CSV instead", self.classes));
        }
        let mut svg = String::new();
        self.draw(&mut svg, names).map_err(|e| format!("cannot draw the confusion matrix: {e}"))?;
        Ok(svg)
    }

    fn draw(&self, out: &mut String, names: &[String]) -> std::result::Result<(), Box<dyn std::error::Error>> {
        let k = self.classes.max(1) as i32;
        let cell = (640 / k).clamp(6, 56);
        let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(1) as i32;
        let label_font = (cell * 2 / 5).clamp(7, 14);
        // Names as wide as the longest (at most 24 characters), and room for the axis titles.
        let names_px = longest.min(24) * label_font * 3 / 5 + 12;
        let (left, top) = (names_px.max(100), 30 + names_px);
        let (width, height) = (left + k * cell + 20, top + k * cell + 20);
        let root = SVGBackend::with_string(out, (width as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        let title = ("sans-serif", 15).into_font();
        root.draw(&Text::new("predicted class →", (left, 6), title.clone()))?;
        root.draw(&Text::new("true class ↓", (6, top - 20), title))?;
        let label = ("sans-serif", label_font).into_font();
        let short = |n: &str| if n.chars().count() > 24 { format!("{}…", n.chars().take(23).collect::<String>()) } else { n.to_string() };
        for (i, name) in names.iter().enumerate() {
            let i = i as i32;
            let style = label.clone().color(&BLACK);
            root.draw(&Text::new(short(name), (6, top + i * cell + cell / 2 - label_font / 2), style.clone()))?;
            // Column names written downwards, so that long names fit.
            let down = style.transform(FontTransform::Rotate90);
            root.draw(&Text::new(short(name), (left + i * cell + cell / 2 + label_font / 2, 28), down))?;
        }
        let count_font = (cell / 3).clamp(6, 14);
        for l in 0..self.classes {
            let support = self.support(l).max(1) as f64;
            for p in 0..self.classes {
                let n = self.count(l, p);
                let share = n as f64 / support;
                // White to dark blue with the share of the row.
                let shade = |full: f64| (255.0 - share * (255.0 - full)).round() as u8;
                let color = RGBColor(shade(8.0), shade(48.0), shade(107.0));
                let (x, y) = (left + p as i32 * cell, top + l as i32 * cell);
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], color.filled()))?;
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], RGBColor(220, 220, 220).stroke_width(1)))?;
                if cell >= 16 && n > 0 {
                    let ink = if share > 0.5 { WHITE } else { BLACK };
                    let text = n.to_string();
                    let tx = x + cell / 2 - (text.len() as i32 * count_font * 3 / 10);
                    root.draw(&Text::new(text, (tx, y + cell / 2 - count_font / 2), ("sans-serif", count_font).into_font().color(&ink)))?;
                }
            }
        }
        root.present()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_rows_as_true_classes() {
        let m = ConfusionMatrix::from_predictions(3, &[0, 0, 1, 2], &[0, 1, 1, 1]).unwrap();
        assert_eq!(m.to_array(), ndarray::arr2(&[[1, 1, 0], [0, 1, 0], [0, 1, 0]]));
        assert!(m.clone().record(3, 0).unwrap_err().to_string().contains("label 3"));
        assert!(ConfusionMatrix::from_predictions(3, &[0], &[]).is_err());
    }

    #[test]
    fn csv_quotes_names_and_names_must_fit() {
        let m = ConfusionMatrix::from_predictions(2, &[0, 1, 1], &[0, 0, 1]).unwrap();
        let names = vec!["cat, big".to_string(), "dog".to_string()];
        assert_eq!(m.to_csv(&names).unwrap(), "true\\predicted,\"cat, big\",dog\n\"cat, big\",1,0\ndog,1,1\n");
        assert!(m.to_csv(&names[..1]).unwrap_err().to_string().contains("1 class names for a confusion matrix of 2 classes"));
        let svg = m.to_svg(&names).unwrap();
        assert!(svg.contains("dog") && svg.starts_with("<svg"));
    }
}
