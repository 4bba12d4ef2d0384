//! The buffer plan of a checked network: where each parameter sits in the flat parameter
//! buffer (in PyTorch's `state_dict` order), where each activation and gradient sits in the
//! workspace arenas, and which backward steps run at all.
//!
//! Arena slots are per sample (see `staticnet_runtime::network::Slot`). Every tensor gets its
//! own activation slot: the backward reads them all. Flatten is free: its output is its input.
//! A layer's backward runs only if some layer at or before it has parameters; it computes the
//! gradient of its input only if some layer before it has parameters.
//!
//! Fusion: a ReLU right after a Conv2d becomes the convolution's epilogue. The pair has one
//! tensor, the ReLU's output, which the convolution writes; the ReLU step emits no code, and the
//! convolution's backward masks the ReLU's output gradient itself.

use proc_macro2::Ident;
use quote::format_ident;

use crate::check::{Act, Checked, Kind, Sized};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub offset: usize,
    pub len: usize,
}

/// A named arena slot (several tensors may share one, as Flatten's input and output do).
#[derive(Clone, Debug)]
pub struct Tensor {
    pub ident: Ident,
    pub slot: Slot,
}

pub enum Init {
    FanIn(usize),
    Zeros,
    Ones,
}

pub enum StateKind {
    Param { offset: usize, init: Init },
    Buffer { offset: usize, init: Init },
    Counter { index: usize },
}

/// A `state_dict` entry.
pub struct StateEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: StateKind,
    pub layer: usize,
}

/// What one layer reads and writes.
pub struct Step<'a> {
    pub index: usize,
    pub layer: &'a Sized,
    /// `FEATURES_0` for `features.0`: the stem of this layer's constant names.
    pub stem: String,
    pub x: Tensor,
    pub y: Tensor,
    /// Gradient of the output (when the backward runs) and of the input (when it is needed).
    pub dy: Option<Tensor>,
    pub dx: Option<Tensor>,
    pub params: Option<std::ops::Range<usize>>,
    pub buffers: Option<std::ops::Range<usize>>,
    pub counter: Option<usize>,
    pub saved: Option<std::ops::Range<usize>>,
    /// This layer applies the ReLU that follows it (a Conv2d).
    pub relu: bool,
    /// This layer (a ReLU) is done by the layer before it.
    pub fused: bool,
}

pub struct Plan<'a> {
    pub input: Vec<usize>,
    pub output: Vec<usize>,
    pub steps: Vec<Step<'a>>,
    pub state: Vec<StateEntry>,
    pub param_len: usize,
    pub buffer_len: usize,
    pub counters: usize,
    pub act_len: usize,
    pub grad_len: usize,
    pub saved_len: usize,
    pub x_in: Tensor,
    pub x_out: Tensor,
    pub g_out: Tensor,
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

/// `features.0` → `FEATURES_0`, unique among `taken`.
fn stem(path: &str, taken: &mut Vec<String>) -> String {
    let base: String = path.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    let base = if base.starts_with(|c: char| c.is_ascii_digit()) { format!("L{base}") } else { base };
    let mut s = base.clone();
    let mut k = 2;
    while taken.contains(&s) {
        s = format!("{base}_{k}");
        k += 1;
    }
    taken.push(s.clone());
    s
}

pub fn plan(net: &Checked) -> Plan<'_> {
    let input = net.input.clone().expect("planned only without errors");
    let layers = &net.layers;
    let has_params = |l: &Sized| matches!(l.kind, Kind::Conv2d { .. } | Kind::Linear { .. } | Kind::BatchNorm { affine: true, .. });

    let (mut act_len, mut grad_len, mut saved_len) = (0, 0, 0);
    let mut lay = Layout::default();
    let mut taken = Vec::new();

    let x_in = Tensor { ident: format_ident!("X_INPUT"), slot: Slot { offset: 0, len: numel(&input) } };
    act_len += x_in.slot.len;
    let mut x = x_in.clone();
    let mut steps: Vec<Step> = Vec::new();
    let mut params_before = false;

    let stems: Vec<String> = layers.iter().map(|l| stem(&l.path, &mut taken)).collect();
    let fuses_relu = |i: usize| matches!(layers[i].kind, Kind::Conv2d { .. }) && layers.get(i + 1).is_some_and(|l| l.kind == Kind::Activation(Act::ReLU));
    for (index, layer) in layers.iter().enumerate() {
        let stem = stems[index].clone();
        let relu = fuses_relu(index);
        let fused = index > 0 && fuses_relu(index - 1);
        let backprop = params_before || has_params(layer);
        let len = numel(&layer.output);
        // The tensor this layer writes: its own, or with its ReLU fused, the ReLU's.
        let out_stem = if relu { &stems[index + 1] } else { &stem };
        // Activation and gradient slots of the output; Flatten and a fused ReLU reuse their input's.
        let y = match layer.kind {
            Kind::Flatten => x.clone(),
            _ if fused => x.clone(),
            _ => {
                let t = Tensor { ident: format_ident!("X_{}", out_stem), slot: Slot { offset: act_len, len } };
                act_len += len;
                t
            }
        };
        let dx = if params_before { steps.last().and_then(|s: &Step| s.dy.clone()) } else { None };
        let dy = if backprop {
            match layer.kind {
                Kind::Flatten => dx.clone(),
                _ if fused => steps.last().and_then(|s: &Step| s.dy.clone()),
                _ => {
                    let t = Tensor { ident: format_ident!("G_{}", out_stem), slot: Slot { offset: grad_len, len } };
                    grad_len += len;
                    Some(t)
                }
            }
        } else {
            None
        };

        let path = layer.path.as_str();
        let start = lay.param_len;
        let (mut buffers, mut counter, mut saved) = (None, None, None);
        match layer.kind {
            Kind::Conv2d { c_in, c_out, kernel, bias, .. } => {
                let fan_in = c_in * kernel[0] * kernel[1];
                lay.param(index, path, "weight", vec![c_out, c_in, kernel[0], kernel[1]], Init::FanIn(fan_in));
                if bias {
                    lay.param(index, path, "bias", vec![c_out], Init::FanIn(fan_in));
                }
            }
            Kind::Linear { in_features, out_features, bias } => {
                lay.param(index, path, "weight", vec![out_features, in_features], Init::FanIn(in_features));
                if bias {
                    lay.param(index, path, "bias", vec![out_features], Init::FanIn(in_features));
                }
            }
            Kind::BatchNorm { c, affine, track_running_stats, .. } => {
                if affine {
                    lay.param(index, path, "weight", vec![c], Init::Ones);
                    lay.param(index, path, "bias", vec![c], Init::Zeros);
                }
                if track_running_stats {
                    let mean = lay.buffer(index, path, "running_mean", c, Init::Zeros);
                    lay.buffer(index, path, "running_var", c, Init::Ones);
                    buffers = Some(mean..mean + 2 * c);
                    counter = Some(lay.counter(index, path));
                }
                saved = Some(saved_len..saved_len + 4 * c);
                saved_len += 4 * c;
            }
            _ => {}
        }
        let param_len = lay.param_len;
        let params = (param_len > start).then_some(start..param_len);
        params_before |= has_params(layer);
        steps.push(Step { index, layer, stem, x: x.clone(), y: y.clone(), dy, dx, params, buffers, counter, saved, relu, fused });
        x = y;
    }
    // The loss writes the gradient of the output, whether or not a backward reads it.
    let g_out = match steps.last().and_then(|s| s.dy.clone()) {
        Some(g) => g,
        None => {
            let t = Tensor { ident: format_ident!("G_OUTPUT"), slot: Slot { offset: grad_len, len: x.slot.len } };
            grad_len += x.slot.len;
            t
        }
    };
    Plan {
        input,
        output: net.output.clone().expect("planned only without errors"),
        steps,
        state: lay.state,
        param_len: lay.param_len,
        buffer_len: lay.buffer_len,
        counters: lay.counters,
        act_len,
        grad_len,
        saved_len,
        x_in,
        x_out: x,
        g_out,
    }
}

/// The flat parameter and buffer layouts, filled in `state_dict` order.
#[derive(Default)]
struct Layout {
    state: Vec<StateEntry>,
    param_len: usize,
    buffer_len: usize,
    counters: usize,
}

impl Layout {
    fn param(&mut self, layer: usize, path: &str, name: &str, shape: Vec<usize>, init: Init) {
        let len = numel(&shape);
        self.state.push(StateEntry { name: format!("{path}.{name}"), shape, kind: StateKind::Param { offset: self.param_len, init }, layer });
        self.param_len += len;
    }

    fn buffer(&mut self, layer: usize, path: &str, name: &str, len: usize, init: Init) -> usize {
        let offset = self.buffer_len;
        self.state.push(StateEntry { name: format!("{path}.{name}"), shape: vec![len], kind: StateKind::Buffer { offset, init }, layer });
        self.buffer_len += len;
        offset
    }

    fn counter(&mut self, layer: usize, path: &str) -> usize {
        let index = self.counters;
        self.state.push(StateEntry { name: format!("{path}.num_batches_tracked"), shape: vec![], kind: StateKind::Counter { index }, layer });
        self.counters += 1;
        index
    }
}
