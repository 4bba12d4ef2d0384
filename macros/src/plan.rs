//! The buffer plan of a checked network: where each parameter sits in the flat parameter
//! buffer (in PyTorch's `state_dict` order), where each activation and gradient sits in the
//! workspace arenas, and what the backward computes and adds.
//!
//! Arena slots are per sample (see `staticnet_runtime::network::Slot`). Every tensor gets its
//! own activation slot, as the backward reads them all; Flatten's output is its input.
//!
//! Fusion: a ReLU that is the only reader of a Conv2d's output, or of a residual sum, becomes
//! that step's epilogue. The pair has one tensor, the ReLU's output, and the ReLU emits no code;
//! the producer's backward masks the ReLU's output gradient itself.
//!
//! Gradients are planned by walking the steps backwards, as the backward runs: a step's input
//! gradient goes to that tensor's slot if no other reader has written it yet, else to a
//! temporary slot added to it afterwards (a residual block's input, read by its main path and
//! its shortcut). A sum passes its gradient to both inputs unchanged, so their slots become
//! aliases of its own. Gradients flow only towards layers with parameters.

use proc_macro2::Ident;
use quote::format_ident;

use crate::check::{Act, Checked, Kind, Node};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub offset: usize,
    pub len: usize,
}

/// A named arena slot (several tensors may share one).
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

/// What one node reads and writes.
pub struct Step<'a> {
    pub index: usize,
    pub node: &'a Node,
    /// `FEATURES_0` for `features.0`: the stem of this node's constant names.
    pub stem: String,
    /// The activation slots of its inputs, and of its output (with its ReLU fused, the ReLU's).
    pub x: Vec<Tensor>,
    pub y: Tensor,
    /// The gradient of its output, when the backward reaches it.
    pub dy: Option<Tensor>,
    /// Where it writes the gradient of each input, when one is wanted.
    pub dx: Vec<Option<Tensor>>,
    /// A sum with its ReLU fused: the masked gradient it passes to both inputs.
    pub dsum: Option<Tensor>,
    /// After its backward: `into += from`, for inputs that another reader wrote first.
    pub accumulate: Vec<(Tensor, Tensor)>,
    pub params: Option<std::ops::Range<usize>>,
    pub buffers: Option<std::ops::Range<usize>>,
    pub counter: Option<usize>,
    pub saved: Option<std::ops::Range<usize>>,
    /// This node applies the ReLU that reads its output.
    pub relu: bool,
    /// This node (a ReLU) is done by the node before it.
    pub fused: bool,
    /// A convolution with its ReLU fused, whose ReLU's output only a `MaxPool2d(2, 2)` reads:
    /// that pooling's layer and output, for an eval forward that runs the three as one kernel.
    pub pool: Option<(usize, Tensor)>,
    /// This node (such a pooling) may be done by the convolution two layers before it: its stem.
    pub pooled_by: Option<(usize, String)>,
    /// A convolution whose output only a `BatchNorm2d` with running statistics reads: that
    /// batch norm's layer and output, for an eval forward that folds it into the convolution.
    pub fold: Option<(usize, Tensor)>,
    /// This node (such a batch norm) may be folded into the convolution before it: its stem.
    pub folded_by: Option<(usize, String)>,
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

fn has_params(n: &Node) -> bool {
    matches!(n.kind, Kind::Conv2d { .. } | Kind::Linear { .. } | Kind::BatchNorm { affine: true, .. })
}

pub fn plan(net: &Checked) -> Plan<'_> {
    let input = net.input.clone().expect("planned only without errors");
    let nodes = &net.nodes;
    let readers = |t: usize| nodes.iter().filter(|n| n.inputs.contains(&t)).count();
    // A ReLU that is the only reader of a convolution's or a sum's output is fused into it.
    let fuses = |i: usize| {
        matches!(nodes[i].kind, Kind::Conv2d { .. } | Kind::Add)
            && readers(nodes[i].output) == 1
            && nodes.get(i + 1).is_some_and(|r| r.kind == Kind::Activation(Act::ReLU) && r.inputs == [nodes[i].output])
    };
    // A 2 × 2 max pooling of stride 2 that alone reads a fused ReLU's output (of a convolution
    // without groups): an eval forward may run the three layers as one kernel.
    let pools = |i: usize| {
        let even = |t: usize| net.tensors[t].iter().skip(1).all(|d| d % 2 == 0);
        matches!(nodes[i].kind, Kind::Conv2d { groups: 1, .. })
            && fuses(i)
            && readers(nodes[i + 1].output) == 1
            && nodes.get(i + 2).is_some_and(|p| {
                p.inputs == [nodes[i + 1].output]
                    && matches!(p.kind, Kind::MaxPool2d { kernel: [2, 2], stride: [2, 2], padding: [0, 0], dilation: [1, 1], ceil_mode } if !ceil_mode || even(p.inputs[0]))
            })
    };
    // A batch norm with running statistics that alone reads a convolution's output: an eval
    // forward may fold it into the convolution's weights.
    let folds = |i: usize| {
        matches!(nodes[i].kind, Kind::Conv2d { .. })
            && readers(nodes[i].output) == 1
            && nodes.get(i + 1).is_some_and(|b| b.inputs == [nodes[i].output] && matches!(b.kind, Kind::BatchNorm { two_d: true, track_running_stats: true, .. }))
    };
    let mut taken = Vec::new();
    let stems: Vec<String> = nodes.iter().map(|n| stem(&n.path, &mut taken)).collect();

    // Activation slots.
    let mut act: Vec<Option<Tensor>> = vec![None; net.tensors.len()];
    let mut act_len = 0;
    let new_act = |ident: Ident, len: usize, act_len: &mut usize| {
        let t = Tensor { ident, slot: Slot { offset: *act_len, len } };
        *act_len += len;
        t
    };
    act[0] = Some(new_act(format_ident!("X_INPUT"), numel(&input), &mut act_len));
    for (i, n) in nodes.iter().enumerate() {
        let out = n.output;
        act[out] = Some(match n.kind {
            Kind::Flatten => act[n.inputs[0]].clone().expect("inputs come first"),
            _ if i > 0 && fuses(i - 1) => act[n.inputs[0]].clone().expect("inputs come first"),
            // With its ReLU fused, the node writes the ReLU's tensor, named after the ReLU.
            _ if fuses(i) => new_act(format_ident!("X_{}", stems[i + 1]), numel(&net.tensors[out]), &mut act_len),
            _ => new_act(format_ident!("X_{}", stems[i]), numel(&net.tensors[out]), &mut act_len),
        });
    }
    let act = |t: usize| act[t].clone().expect("every tensor has a slot");

    // Which tensors a gradient must reach: those a node with parameters produced, or read.
    let mut upstream = vec![false; net.tensors.len()];
    for n in nodes {
        upstream[n.output] = has_params(n) || n.inputs.iter().any(|&t| upstream[t]);
    }

    // Gradient slots, planned in the backward's order.
    let mut grad: Vec<Option<Tensor>> = vec![None; net.tensors.len()];
    let mut grad_len = 0;
    let new_grad = |ident: Ident, len: usize, grad_len: &mut usize| {
        let t = Tensor { ident, slot: Slot { offset: *grad_len, len } };
        *grad_len += len;
        t
    };
    let out_t = net.output_tensor;
    let last = nodes.len().checked_sub(1);
    let out_name = match last {
        Some(l) => format_ident!("G_{}", stems[l]),
        None => format_ident!("G_OUTPUT"),
    };
    let g_out = new_grad(out_name, numel(&net.tensors[out_t]), &mut grad_len);
    grad[out_t] = Some(g_out.clone());
    let mut dxs: Vec<Vec<Option<Tensor>>> = nodes.iter().map(|n| vec![None; n.inputs.len()]).collect();
    let mut dsums: Vec<Option<Tensor>> = vec![None; nodes.len()];
    let mut accumulates: Vec<Vec<(Tensor, Tensor)>> = vec![Vec::new(); nodes.len()];
    let mut dys: Vec<Option<Tensor>> = vec![None; nodes.len()];
    let mut temps = 0usize;
    for i in (0..nodes.len()).rev() {
        let n = &nodes[i];
        if i > 0 && fuses(i - 1) {
            continue; // the fused ReLU's gradient is its producer's
        }
        // The gradient this node receives: that of its output (or of its fused ReLU's).
        let out = if fuses(i) { nodes[i + 1].output } else { n.output };
        let Some(dy) = grad[out].clone() else { continue };
        if !(has_params(n) || n.inputs.iter().any(|&t| upstream[t])) {
            continue;
        }
        dys[i] = Some(dy.clone());
        // What the node passes on: a sum passes its (masked) gradient as it is.
        let passed = match (&n.kind, fuses(i)) {
            (Kind::Add, true) => {
                let d = new_grad(format_ident!("D_{}", stems[i]), dy.slot.len, &mut grad_len);
                dsums[i] = Some(d.clone());
                Some(d)
            }
            (Kind::Add, false) => Some(dy.clone()),
            (Kind::Flatten, _) => Some(dy.clone()),
            _ => None,
        };
        for (k, &t) in n.inputs.iter().enumerate() {
            if !upstream[t] {
                continue;
            }
            let len = numel(&net.tensors[t]);
            match (&passed, grad[t].clone()) {
                // Passed unchanged, and the first to reach t: t's gradient is the same slot.
                (Some(p), None) => grad[t] = Some(p.clone()),
                (Some(p), Some(g)) => accumulates[i].push((g, p.clone())),
                // Computed by the node's kernel: into t's slot, or into a temporary added to it.
                (None, None) => {
                    let g = new_grad(format_ident!("G_{}", producer_stem(net, &stems, t)), len, &mut grad_len);
                    grad[t] = Some(g.clone());
                    dxs[i][k] = Some(g);
                }
                (None, Some(g)) => {
                    temps += 1;
                    let tmp = new_grad(format_ident!("G_{}_PART{}", producer_stem(net, &stems, t), temps), len, &mut grad_len);
                    dxs[i][k] = Some(tmp.clone());
                    accumulates[i].push((g, tmp));
                }
            }
        }
    }

    // Parameters and buffers, in state_dict order.
    let mut lay = Layout::default();
    let mut saved_len = 0;
    let mut steps = Vec::new();
    for (index, n) in nodes.iter().enumerate() {
        let path = n.path.as_str();
        let start = lay.param_len;
        let (mut buffers, mut counter, mut saved) = (None, None, None);
        match n.kind {
            Kind::Conv2d { c_in, c_out, kernel, groups, bias, .. } => {
                // PyTorch's weight (and fan_in) counts only the input channels of a group.
                let fan_in = c_in / groups * kernel[0] * kernel[1];
                lay.param(index, path, "weight", vec![c_out, c_in / groups, kernel[0], kernel[1]], Init::FanIn(fan_in));
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
        let params = (lay.param_len > start).then_some(start..lay.param_len);
        steps.push(Step {
            index,
            node: n,
            stem: stems[index].clone(),
            x: n.inputs.iter().map(|&t| act(t)).collect(),
            y: act(if fuses(index) { nodes[index + 1].output } else { n.output }),
            dy: dys[index].clone(),
            dx: dxs[index].clone(),
            dsum: dsums[index].clone(),
            accumulate: accumulates[index].clone(),
            params,
            buffers,
            counter,
            saved,
            relu: fuses(index),
            fused: index > 0 && fuses(index - 1),
            pool: pools(index).then(|| (index + 2, act(nodes[index + 2].output))),
            pooled_by: (index >= 2 && pools(index - 2)).then(|| (index - 2, stems[index - 2].clone())),
            fold: folds(index).then(|| (index + 1, act(nodes[index + 1].output))),
            folded_by: (index >= 1 && folds(index - 1)).then(|| (index - 1, stems[index - 1].clone())),
        });
    }
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
        x_in: act(0),
        x_out: act(out_t),
        g_out,
    }
}

/// The stem of the node that produced tensor `t` (`INPUT` for the input).
fn producer_stem<'a>(net: &Checked, stems: &'a [String], t: usize) -> &'a str {
    net.nodes.iter().position(|n| n.output == t).map_or("INPUT", |i| &stems[i])
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
