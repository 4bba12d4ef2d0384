//! State dicts: a network's parameters and buffers under PyTorch's names, in memory and in
//! safetensors files that PyTorch reads and writes (`safetensors.torch.save_file(model.state_dict())`).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::spec::{NetSpec, TensorKind, TensorSpec};
use super::state::{NetState, TensorValue};
use crate::backend::Backend;
use crate::{Error, Result};

/// One tensor of a state dict: float32 parameters and statistics, or the int64
/// `num_batches_tracked` counters of batch-norm.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    /// A float32 tensor (`torch.float32`).
    F32(ArrayD<f32>),
    /// An int64 tensor (`torch.int64`), as `num_batches_tracked`.
    I64(ArrayD<i64>),
}

impl Tensor {
    /// Its shape (`tensor.shape`).
    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::F32(a) => a.shape(),
            Tensor::I64(a) => a.shape(),
        }
    }

    /// Its dtype as safetensors and PyTorch name it: `"float32"` or `"int64"`.
    pub fn dtype(&self) -> &'static str {
        match self {
            Tensor::F32(_) => "float32",
            Tensor::I64(_) => "int64",
        }
    }

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

    /// The float array, if this is a float tensor.
    pub fn as_f32(&self) -> Option<&ArrayD<f32>> {
        match self {
            Tensor::F32(a) => Some(a),
            Tensor::I64(_) => None,
        }
    }
}

/// Named tensors in order, like PyTorch's `OrderedDict` state dict.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateDict {
    entries: Vec<(String, Tensor)>,
}

impl StateDict {
    /// An empty state dict.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn from_state<B: Backend>(state: &NetState<B>) -> Result<Self> {
        let entries = state.spec().tensors.iter().map(|t| Ok((t.name.to_string(), Tensor::from_value(t.shape, state.read_spec(t)?)))).collect::<Result<_>>()?;
        Ok(StateDict { entries })
    }

    /// The number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tensor under `name` (`state_dict[name]`), if there is one.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.entries.iter().find(|(k, _)| k == name).map(|(_, t)| t)
    }

    /// The names, in order (`state_dict.keys()`).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// The names and tensors, in order (`state_dict.items()`).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(k, t)| (k.as_str(), t))
    }

    /// Sets `name`, replacing a tensor of that name or appending a new one.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        let name = name.into();
        match self.entries.iter_mut().find(|(k, _)| *k == name) {
            Some((_, t)) => *t = tensor,
            None => self.entries.push((name, tensor)),
        }
    }

    /// Takes the tensor under `name` out (`state_dict.pop(name)`), if there is one.
    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        let i = self.entries.iter().position(|(k, _)| k == name)?;
        Some(self.entries.remove(i).1)
    }

    /// The tensors whose names start with `prefix.`, with the prefix removed (for loading one
    /// network's checkpoint into a block of another).
    pub fn with_prefix(&self, prefix: &str) -> StateDict {
        let p = format!("{prefix}.");
        StateDict { entries: self.entries.iter().filter_map(|(k, t)| k.strip_prefix(&p).map(|k| (k.to_string(), t.clone()))).collect() }
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

    /// The first value that is NaN or infinite, as (tensor name, flat index, value).
    pub fn first_non_finite(&self) -> Option<(&str, usize, f32)> {
        self.entries.iter().find_map(|(k, t)| {
            let a = t.as_f32()?;
            a.iter().position(|v| !v.is_finite()).map(|i| (k.as_str(), i, a.iter().nth(i).copied().unwrap_or(f32::NAN)))
        })
    }

    // ---- safetensors ----

    /// Reads a safetensors file (float32 and int64 tensors), e.g. one written by PyTorch's
    /// `safetensors.torch.save_file(model.state_dict(), path)`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_safetensors_bytes(&bytes).map_err(|msg| Error::file(path, msg))
    }

    /// Parses safetensors bytes; the error says what is wrong, without the file name.
    pub fn from_safetensors_bytes(bytes: &[u8]) -> std::result::Result<Self, String> {
        Self::parse(bytes).map(|(sd, _)| sd)
    }

    /// Reads a safetensors file and the metadata of its header.
    pub fn load_with_metadata(path: impl AsRef<Path>) -> Result<(Self, HashMap<String, String>)> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&bytes).map_err(|msg| Error::file(path, msg))
    }

    fn parse(bytes: &[u8]) -> std::result::Result<(Self, HashMap<String, String>), String> {
        check_header(bytes)?;
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| format!("not a valid safetensors file: {e}"))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let st = SafeTensors::deserialize(bytes).map_err(|e| format!("not a valid safetensors file: {e}"))?;
        // Keep the file's order (safetensors sorts names; the header offsets give the order written).
        let mut views: Vec<(String, TensorView)> = st.tensors();
        views.sort_by_key(|(_, v)| v.data().as_ptr() as usize);
        let mut entries = Vec::with_capacity(views.len());
        for (name, view) in views {
            let shape = view.shape().to_vec();
            let data = view.data();
            let tensor = match view.dtype() {
                Dtype::F32 => Tensor::F32(ArrayD::from_shape_vec(IxDyn(&shape), data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()).map_err(|e| format!("tensor `{name}`: {e}"))?),
                Dtype::I64 => Tensor::I64(ArrayD::from_shape_vec(IxDyn(&shape), data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()).map_err(|e| format!("tensor `{name}`: {e}"))?),
                other => return Err(format!("tensor `{name}` has dtype {other:?}; staticnet reads float32 and int64 tensors")),
            };
            entries.push((name, tensor));
        }
        Ok((StateDict { entries }, metadata))
    }

    /// The safetensors encoding of this dict, with `metadata` in its header.
    pub fn to_safetensors_bytes(&self, metadata: Option<HashMap<String, String>>) -> Result<Vec<u8>> {
        let raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = self
            .entries
            .iter()
            .map(|(k, t)| match t {
                Tensor::F32(a) => (k.clone(), Dtype::F32, a.shape().to_vec(), a.iter().flat_map(|v| v.to_le_bytes()).collect()),
                Tensor::I64(a) => (k.clone(), Dtype::I64, a.shape().to_vec(), a.iter().flat_map(|v| v.to_le_bytes()).collect()),
            })
            .collect();
        let views = raw
            .iter()
            .map(|(k, d, s, b)| Ok((k.as_str(), TensorView::new(*d, s.clone(), b).map_err(|e| Error::bad_input(format!("tensor `{k}`: {e}")))?)))
            .collect::<Result<Vec<_>>>()?;
        safetensors::serialize(views, metadata).map_err(|e| Error::bad_input(format!("cannot encode the state dict: {e}")))
    }

    /// Writes a safetensors file atomically: a temporary file beside it, flushed to disk, then
    /// renamed over `path`. A crash leaves the old file or the new one, never a torn one.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        // PyTorch's `safetensors.torch.save_file` marks its files with this, and some readers
        // (transformers) look for it.
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        let bytes = self.to_safetensors_bytes(Some(meta))?;
        crate::io::write_atomic(path.as_ref(), &bytes)
    }
}

/// Checks a safetensors header against the file before the `safetensors` crate reads it, so that
/// a flaw is reported with the tensor it concerns.
fn check_header(bytes: &[u8]) -> std::result::Result<(), String> {
    let invalid = |msg: String| format!("not a valid safetensors file: {msg}");
    if bytes.len() < 8 {
        return Err(invalid(format!("{} bytes, fewer than the 8 of the header's length", bytes.len())));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let data_len = match (bytes.len() as u64 - 8).checked_sub(n) {
        Some(d) => d,
        None => return Err(invalid(format!("its header claims {n} bytes, but only {} follow", bytes.len() - 8))),
    };
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n as usize]).map_err(|e| invalid(format!("its header is not JSON ({e})")))?;
    let tensors = header.as_object().ok_or_else(|| invalid("its header is not a JSON object".into()))?;
    for (name, info) in tensors.iter().filter(|(k, _)| *k != "__metadata__") {
        let bad = |msg: String| invalid(format!("tensor `{name}`: {msg}"));
        let dtype = info["dtype"].as_str().ok_or_else(|| bad("no dtype".into()))?;
        let size: u64 = match dtype {
            "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
            "I16" | "U16" | "F16" | "BF16" => 2,
            "I32" | "U32" | "F32" => 4,
            "I64" | "U64" | "F64" => 8,
            other => return Err(bad(format!("unknown dtype {other}"))),
        };
        let numbers = |key: &str| -> Option<Vec<u64>> { info[key].as_array()?.iter().map(|d| d.as_u64()).collect() };
        let (shape, offsets) = (numbers("shape"), numbers("data_offsets"));
        let (Some(shape), Some(offsets)) = (shape, offsets) else {
            return Err(bad("its shape or data_offsets are missing or not lists of whole numbers ≥ 0".into()));
        };
        let &[start, end] = &offsets[..] else { return Err(bad("data_offsets must be [start, end]".into())) };
        // Every number here comes from the file: checked arithmetic, so that a shape like
        // [2^31, 2^31] is reported rather than overflowing.
        let bytes_needed = shape.iter().try_fold(size, |acc, &d| acc.checked_mul(d));
        let Some(bytes_needed) = bytes_needed.filter(|&b| b <= data_len) else {
            return Err(bad(format!("shape {shape:?} of {dtype} needs more bytes than the {data_len} of data the file holds")));
        };
        if end < start || end - start != bytes_needed {
            return Err(bad(format!("shape {shape:?} of {dtype} needs {bytes_needed} bytes, but its data_offsets {start}..{end} span {}", end.saturating_sub(start))));
        }
        if end > data_len {
            return Err(bad(format!("its data_offsets {start}..{end} go past the {data_len} bytes of data the file holds")));
        }
    }
    Ok(())
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
