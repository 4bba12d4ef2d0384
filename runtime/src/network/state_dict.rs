//! A network's state dict: its parameters and buffers under PyTorch's names, read from the
//! network and checked and loaded into it.

use std::fmt;

use ndarray::{ArrayD, IxDyn};

use super::spec::{NetSpec, TensorKind, TensorSpec};
use super::state::{NetState, TensorValue};
use crate::backend::Backend;
use crate::state_dict::{StateDict, Tensor};
use crate::{Error, Result};

impl Tensor {
    pub(crate) fn from_value(shape: &[usize], value: TensorValue) -> Tensor {
        match value {
            TensorValue::F32(v) => Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).expect("length from the spec")),
            TensorValue::I64(v) => Tensor::I64(ArrayD::from_shape_vec(IxDyn(shape), v).expect("length from the spec")),
        }
    }

    pub(crate) fn to_value(&self) -> TensorValue {
        match self {
            Tensor::F32(a) => TensorValue::F32(a.iter().copied().collect()),
            Tensor::I64(a) => TensorValue::I64(a.iter().copied().collect()),
        }
    }
}

impl StateDict {
    pub(crate) fn from_state<B: Backend>(state: &NetState<B>) -> Result<Self> {
        let entries = state.spec().tensors.iter().map(|t| Ok((t.name.to_string(), Tensor::from_value(t.shape, state.read_spec(t)?)))).collect::<Result<_>>()?;
        Ok(StateDict { entries })
    }

    /// Compares the dict with the network's tables without writing anything: what `load`
    /// would report, and the tensors it would write. Strict: any difference is an error.
    fn plan<'a>(&'a self, spec: &'static NetSpec, strict: bool) -> Result<(LoadReport, Vec<(&'static TensorSpec, &'a Tensor)>)> {
        let mut report = LoadReport::default();
        let mut matched = Vec::new();
        for t in spec.tensors {
            let mismatch = |what| Mismatch { key: t.name.to_string(), expected: t.shape.to_vec(), found: Vec::new(), what };
            match self.get(t.name) {
                None => report.missing_keys.push(t.name.to_string()),
                Some(v) if v.shape() != t.shape => report.mismatched.push(Mismatch { found: v.shape().to_vec(), ..mismatch("shape") }),
                Some(v) if v.dtype() != expected_dtype(t.kind) => report.mismatched.push(Mismatch {
                    found: v.shape().to_vec(),
                    ..mismatch(if v.dtype() == "int64" { "dtype int64, expected float32" } else { "dtype float32, expected int64" })
                }),
                // A negative batch count would make batch-norm's cumulative average divide by
                // zero or a negative number at the next step.
                Some(Tensor::I64(a)) if a.iter().any(|&c| c < 0) => report.mismatched.push(Mismatch {
                    found: a.shape().to_vec(),
                    ..mismatch("a negative batch count (expected ≥ 0)")
                }),
                Some(v) => matched.push((t, v)),
            }
        }
        report.unexpected_keys = self.keys().filter(|k| spec.tensor(k).is_none()).map(str::to_string).collect();
        if strict && !report.is_clean() {
            return Err(Error::bad_input(format!("{}: load_state_dict(strict=True) failed:\n{report}", spec.name)));
        }
        report.loaded = matched.len();
        Ok((report, matched))
    }

    /// What [`StateDict::load_into`] would do, without doing it: the report, or the error.
    pub(crate) fn check_against(&self, spec: &'static NetSpec, strict: bool) -> Result<LoadReport> {
        self.plan(spec, strict).map(|(report, _)| report)
    }

    /// Checks the whole dict against `state` first, then writes it: an error leaves the
    /// network as it was.
    pub(crate) fn load_into<B: Backend>(&self, state: &mut NetState<B>, strict: bool) -> Result<LoadReport> {
        let (report, matched) = self.plan(state.spec(), strict)?;
        // Values were checked above: the writes below cannot fail on content.
        for (t, v) in &matched {
            state.write_spec(t, &v.to_value())?;
        }
        Ok(report)
    }

}

fn expected_dtype(kind: TensorKind) -> &'static str {
    match kind {
        TensorKind::Counter { .. } => "int64",
        _ => "float32",
    }
}

/// What `load_state_dict` found: PyTorch's `missing_keys` and `unexpected_keys`, and the keys
/// whose shape or dtype differ (PyTorch raises on those; non-strict loading here skips them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Keys the network has and the state dict lacks (not loaded).
    pub missing_keys: Vec<String>,
    /// Keys the state dict has and the network lacks (ignored).
    pub unexpected_keys: Vec<String>,
    /// Keys on both sides whose shape or dtype differ (not loaded).
    pub mismatched: Vec<Mismatch>,
    /// Tensors loaded.
    pub loaded: usize,
}

/// A key present on both sides whose tensor does not fit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub key: String,
    pub expected: Vec<usize>,
    pub found: Vec<usize>,
    pub what: &'static str,
}

impl LoadReport {
    /// Nothing missing, unexpected or mismatched.
    pub fn is_clean(&self) -> bool {
        self.missing_keys.is_empty() && self.unexpected_keys.is_empty() && self.mismatched.is_empty()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return write!(f, "all {} keys matched", self.loaded);
        }
        if !self.missing_keys.is_empty() {
            writeln!(f, "  missing keys: {}", self.missing_keys.join(", "))?;
        }
        if !self.unexpected_keys.is_empty() {
            writeln!(f, "  unexpected keys: {}", self.unexpected_keys.join(", "))?;
        }
        for m in &self.mismatched {
            if m.what == "shape" {
                writeln!(f, "  size mismatch for {}: the file has shape {:?}, the network {:?}", m.key, m.found, m.expected)?;
            } else {
                writeln!(f, "  {} for {}", m.what, m.key)?;
            }
        }
        Ok(())
    }
}
