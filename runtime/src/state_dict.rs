//! State dicts: named tensors in order, in memory and in safetensors files that PyTorch reads and
//! writes (`safetensors.torch.save_file(model.state_dict())`). A network's (network/state_dict.rs
//! loads one into a network and makes one of it) and an optimizer's state are both one.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

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
    pub(crate) entries: Vec<(String, Tensor)>,
}

impl StateDict {
    /// An empty state dict.
    pub fn new() -> Self {
        Self::default()
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
