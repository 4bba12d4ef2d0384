//! Data sets in CSV files, one sample a row: the Kaggle digit layout that the course reads with
//! `pd.read_csv('data/mnist.csv')` (a header row, the label, then 784 pixel columns) and anything
//! laid out the same way.
//!
//! ```text
//! // xtrain = ds[:, 1:].reshape((-1, 1, 28, 28)) / 255.0; ytrain = ds[:, 0]
//! let train: Dataset<Images<1, 28, 28>> = CsvDataset::new("data/mnist.csv").classes(10).load()?;
//! ```

use std::path::{Path, PathBuf};

use super::Dataset;
use crate::batch::Batch;
use crate::{Error, Result};

/// Which column holds the label.
#[derive(Clone, Debug, PartialEq)]
pub enum LabelColumn {
    /// By position, from 0.
    Index(usize),
    /// By its name in the header row.
    Name(String),
}

/// How to read a CSV file of samples (a builder; [`CsvDataset::load`] reads it).
#[derive(Clone, Debug)]
pub struct CsvDataset {
    path: PathBuf,
    label: LabelColumn,
    scale: f64,
    has_header: bool,
    classes: Option<usize>,
}

impl CsvDataset {
    /// The Kaggle layout: a header row, the label in the first column, every other column a
    /// value scaled by 1/255 (the notebook's `/ 255.0`).
    pub fn new(path: impl Into<PathBuf>) -> CsvDataset {
        CsvDataset { path: path.into(), label: LabelColumn::Index(0), scale: 1.0 / 255.0, has_header: true, classes: None }
    }

    /// The label's column by position (from 0).
    pub fn label_index(mut self, index: usize) -> Self {
        self.label = LabelColumn::Index(index);
        self
    }

    /// The label's column by its header name (`"label"`).
    pub fn label_name(mut self, name: impl Into<String>) -> Self {
        self.label = LabelColumn::Name(name.into());
        self
    }

    /// Each value is multiplied by `scale` (1/255 by default; 1 keeps the file's values), in
    /// double precision as pandas computes, then rounded to float32 as `torch.tensor` does.
    pub fn scale(mut self, scale: f64) -> Self {
        self.scale = scale;
        self
    }

    /// Whether the first row is a header (it is by default).
    pub fn has_header(mut self, has_header: bool) -> Self {
        self.has_header = has_header;
        self
    }

    /// The number of classes (by default, one more than the largest label).
    pub fn classes(mut self, classes: usize) -> Self {
        self.classes = Some(classes);
        self
    }

    /// Reads every row as a sample shaped `I` (its values in row order: `[1, 28, 28]` takes 784
    /// pixel columns row by row, as `reshape((-1, 1, 28, 28))`). A row that is not a label and
    /// `I::SAMPLE_LEN` numbers is an error naming the line and the column.
    pub fn load<I: Batch>(&self) -> Result<Dataset<I>> {
        let path = &self.path;
        let mut reader = csv::ReaderBuilder::new().has_headers(self.has_header).flexible(true).from_path(path).map_err(|e| csv_error(path, e))?;
        let label_at = match &self.label {
            LabelColumn::Index(i) => *i,
            LabelColumn::Name(name) => {
                let headers = reader.headers().map_err(|e| csv_error(path, e))?;
                headers.iter().position(|h| h.trim() == name).ok_or_else(|| {
                    Error::file(path, format!("has no column named `{name}` in its header (its first columns: {})", headers.iter().take(5).collect::<Vec<_>>().join(", ")))
                })?
            }
        };
        let columns = I::SAMPLE_LEN + 1;
        if label_at >= columns {
            return Err(Error::file(path, format!("the label column {label_at} is past the {columns} columns of a row (the label and {} values)", I::SAMPLE_LEN)));
        }
        let (mut values, mut labels) = (Vec::new(), Vec::new());
        let mut record = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(csv_error(path, e)),
            }
            let line = record.position().map_or(0, |p| p.line());
            let at = |column: usize, msg: String| Error::file(path, format!("line {line}, column {}: {msg}", column + 1));
            if record.len() != columns {
                return Err(Error::file(path, format!("line {line}: {} columns, but a sample here is a label and {} values ({columns} columns)", record.len(), I::SAMPLE_LEN)));
            }
            for (column, cell) in record.iter().enumerate() {
                let cell = cell.trim();
                if column == label_at {
                    let label = cell.parse::<usize>().map_err(|_| at(column, format!("the label `{cell}` is not a whole number ≥ 0")))?;
                    if let Some(c) = self.classes.filter(|&c| label >= c) {
                        return Err(at(column, format!("the label {label} is not one of the {c} classes")));
                    }
                    labels.push(label);
                } else {
                    let v = cell.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| at(column, format!("`{cell}` is not a finite number")))?;
                    values.push((v * self.scale) as f32);
                }
            }
        }
        if labels.is_empty() {
            return Err(Error::file(path, "holds no rows of samples"));
        }
        let classes = self.classes.unwrap_or_else(|| labels.iter().max().map_or(0, |m| m + 1));
        Dataset::new(path.display().to_string(), values, labels, classes)
    }
}

/// A CSV reading error, with its line where the csv crate knows it.
fn csv_error(path: &Path, e: csv::Error) -> Error {
    let line = e.position().map(|p| format!("line {}: ", p.line())).unwrap_or_default();
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io(path, io),
        csv::ErrorKind::Utf8 { err, .. } => Error::file(path, format!("{line}not UTF-8 text ({err})")),
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => Error::file(path, format!("{line}{len} columns where the rows before have {expected_len}")),
        other => Error::file(path, format!("{line}{other:?}")),
    }
}
