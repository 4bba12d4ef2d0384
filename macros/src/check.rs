//! Shape inference and the rules of a listing: one `check_xxx` function per layer kind, each
//! taking the shape that flows in and returning the shape that flows out, or reporting what is
//! wrong (expected vs found, the arithmetic, the fix) at the smallest culprit token.
//!
//! The result is a graph: nodes (layers, and the sums that join residual blocks) reading and
//! writing numbered tensors. Blocks defined with `block Name(params) { ... }` are instantiated
//! where they are used, with their parameters bound; a block with a `+ shortcut` line is
//! residual: its body's output and its shortcut's are added, then passed through its `=>` layer.
//! A block's `let`s are evaluated with its parameters when it is instantiated; an item with an
//! `if` is checked only where its condition holds, and an absent one takes no index, as an item
//! not appended to a Python list; a `+ identity if cond` sum is made only where cond holds. A
//! functional op (`_: Flatten`) takes no index and is marked as no module.
//!
//! After an error, a layer still reports the output it would have (a Linear with the wrong
//! in_features still outputs out_features), so later layers are checked without a cascade; only
//! when no output can be known are the later shape checks skipped.

use std::collections::HashSet;

use proc_macro2::Span;
use staticnet_shape::{conv_out, effective_kernel, pool_out};

use crate::ast::{BlockDef, Item, Layer, NetworkDef, SpanRange};
use crate::ctxt::Ctxt;
use crate::layers::{self, Args, Infer};
use crate::value::{Env, Value, eval_in};

/// The shape of one sample: `[C, H, W]` or `[F]`.
pub type Shape = Vec<usize>;

/// A network whose every layer has been checked and sized.
pub struct Checked {
    pub input: Option<Shape>,
    /// The shape of every tensor; tensor 0 is the input.
    pub tensors: Vec<Shape>,
    /// In execution order.
    pub nodes: Vec<Node>,
    /// The output tensor and its shape, when they could be inferred (also after errors, for
    /// the stub).
    pub output: Option<Shape>,
    pub output_tensor: usize,
    /// The containers of the module tree, by path, with their PyTorch class: `Sequential` for a
    /// nested listing or a repetition, the block's name for a block use (`layer1.0` →
    /// `BasicBlock`). In the order they are entered.
    pub modules: Vec<(String, String)>,
}

/// A layer (or a residual sum) with its configuration resolved and its tensors known.
pub struct Node {
    /// The PyTorch module path: `cnn1`, `features.0`, `layer2.0.conv1`.
    pub path: String,
    pub kind: Kind,
    /// PyTorch's repr of the layer: `Conv2d(1, 16, kernel_size=(5, 5), stride=(1, 1))`.
    pub display: String,
    /// The tensors it reads: one, or two for a sum.
    pub inputs: Vec<usize>,
    pub output: usize,
    pub span: SpanRange,
    /// A functional op (`_: Flatten`): no module, not printed.
    pub functional: bool,
}

impl Node {
    pub fn input_shape<'a>(&self, net: &'a Checked) -> &'a Shape {
        &net.tensors[self.inputs[0]]
    }

    pub fn output_shape<'a>(&self, net: &'a Checked) -> &'a Shape {
        &net.tensors[self.output]
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// `groups` divides both channel counts (checked); the weight is (c_out, c_in/groups, kh, kw).
    Conv2d { c_in: usize, c_out: usize, kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2], groups: usize, bias: bool },
    Linear { in_features: usize, out_features: usize, bias: bool },
    Activation(Act),
    MaxPool2d { kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2], ceil_mode: bool },
    AvgPool2d { kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2], ceil_mode: bool, count_include_pad: bool, divisor_override: usize },
    AdaptiveAvgPool2d { output: [usize; 2] },
    AdaptiveMaxPool2d { output: [usize; 2] },
    Flatten,
    /// `channels`: `Dropout2d`, whole channels of an image.
    Dropout { p: f64, channels: bool },
    BatchNorm { two_d: bool, c: usize, eps: f64, momentum: Option<f64>, affine: bool, track_running_stats: bool },
    Softmax { log: bool },
    /// The sum that joins a residual block's main path and its shortcut.
    Add,
}

#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(clippy::upper_case_acronyms)] // PyTorch's layer names
pub enum Act {
    ReLU,
    LeakyReLU(f64),
    Sigmoid,
    Tanh,
    SiLU,
    ReLU6,
    Hardswish,
    GELU { tanh: bool },
    ELU(f64),
    Identity,
}

/// Where the shape flowing into a layer comes from, for messages.
#[derive(Clone)]
enum Origin {
    Input,
    Layer(String),
    Flatten(Shape),
}

impl Origin {
    /// "the network input [1, 28, 28]", "`cnn1`'s output [16, 28, 28]", "Flatten of [32, 8, 8]".
    fn describe(&self, shape: &Shape) -> String {
        match self {
            Origin::Input => format!("the network input {}", fmt_shape(shape)),
            Origin::Layer(path) => format!("`{path}` outputs {}", fmt_shape(shape)),
            Origin::Flatten(of) => format!("Flatten of {}", fmt_shape(of)),
        }
    }
}

pub fn fmt_shape(s: &[usize]) -> String {
    format!("[{}]", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}

fn fmt_pair(p: [usize; 2]) -> String {
    format!("({}, {})", p[0], p[1])
}

fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// Python's `repr` of a float: `1e-05`, `0.1`, `0.5`, `1e+16` (scientific below 1e-4 and from
/// 1e16 on, exponents of two digits at least).
pub(crate) fn py_float(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    if v != 0.0 && (v.abs() < 1e-4 || v.abs() >= 1e16) {
        let s = format!("{v:e}");
        let (m, e) = s.split_once('e').unwrap();
        let e: i32 = e.parse().unwrap();
        format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
    } else {
        let s = format!("{v}");
        if s.contains('.') { s } else { format!("{s}.0") }
    }
}

/// A value as Python prints it in a module's `extra_repr` (`str.format` of the attribute):
/// `2`, `(2, 2)`, `1e-05`, `True`, `None`, and a string without quotes (`padding=same`).
fn py_repr(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Float(f) => py_float(*f),
        Value::Bool(b) => py_bool(*b).into(),
        Value::None => "None".into(),
        Value::Tuple(items) if items.len() == 1 => format!("({},)", py_repr(&items[0])),
        Value::Tuple(items) => format!("({})", items.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Str(s) => s.clone(),
        Value::Infer => "_".into(),
        Value::Failed => "?".into(),
    }
}

/// The argument `name` of a layer, written or default, as PyTorch's repr shows it.
fn repr_arg(a: &Args, name: &str) -> String {
    a.value(name).map_or_else(String::new, |(v, _)| py_repr(&v))
}

/// Blocks nest at most this deep (a block that uses itself would not end).
const MAX_DEPTH: usize = 16;

/// Checks a whole network; errors go to `cx`.
pub fn check(cx: &mut Ctxt, def: &NetworkDef, blocks: &[BlockDef]) -> Checked {
    let mut items = def.items.iter().peekable();
    let input = match items.peek() {
        Some(Item::Input(input)) => {
            items.next();
            check_input(cx, input)
        }
        _ => {
            cx.error(
                def.name.span(),
                format!("network `{}` has no input shape", def.name),
                Some("add `input: [C, H, W],` (an image, e.g. `input: [1, 28, 28],`) or `input: [F],` (a vector) as its first line".into()),
            );
            None
        }
    };
    let rest: Vec<&Item> = items.collect();
    let mut g = Graph { tensors: Vec::new(), nodes: Vec::new(), modules: Vec::new(), blocks };
    let tensor = input.as_ref().map(|s| g.tensor(s.clone()));
    let mut flow = Flow { shape: input.clone(), tensor, origin: Origin::Input };
    check_items(cx, &mut g, &rest, "", &mut flow, &[]);
    Checked { input, output: flow.shape, output_tensor: flow.tensor.unwrap_or(0), tensors: g.tensors, nodes: g.nodes, modules: g.modules }
}

fn check_input(cx: &mut Ctxt, input: &crate::ast::Input) -> Option<Shape> {
    let mut dims = Vec::new();
    for d in &input.dims {
        match crate::value::eval(d) {
            Ok(Value::Int(v)) if v >= 1 => dims.push(v as usize),
            Ok(Value::Int(v)) => {
                cx.error_spanned(d, format!("an input size must be at least 1, got {v}"), None);
                return None;
            }
            Ok(other) => {
                cx.error_spanned(d, format!("an input size must be an integer, got {}", other.describe()), None);
                return None;
            }
            Err(e) => {
                cx.push(e);
                return None;
            }
        }
    }
    if dims.len() != 3 && dims.len() != 1 {
        cx.error(
            input.span,
            format!("the input of a network is one sample shaped [C, H, W] (an image) or [F] (a vector), got {} sizes", dims.len()),
            Some("the batch size is not part of the input: it is chosen at run time".into()),
        );
        return None;
    }
    Some(dims)
}

/// The graph being built.
struct Graph<'a> {
    tensors: Vec<Shape>,
    nodes: Vec<Node>,
    modules: Vec<(String, String)>,
    blocks: &'a [BlockDef],
}

impl Graph<'_> {
    fn tensor(&mut self, shape: Shape) -> usize {
        self.tensors.push(shape);
        self.tensors.len() - 1
    }
}

/// The tensor flowing through a listing; unknown after an error that left no shape.
#[derive(Clone)]
struct Flow {
    shape: Option<Shape>,
    tensor: Option<usize>,
    origin: Origin,
}

/// One listing being checked: the names taken, the index the next unnamed entry gets, and the
/// values in scope (the block's parameters, then the listing's `let`s).
struct Listing {
    names: HashSet<String>,
    /// The names given to functional ops: unique among all names, but no module's.
    functional: HashSet<String>,
    /// The names the listing gives its modules, to keep functional ops off them.
    reserved: HashSet<String>,
    index: usize,
    scope: Vec<(String, Value)>,
}

fn check_items(cx: &mut Ctxt, g: &mut Graph, items: &[&Item], prefix: &str, flow: &mut Flow, env: Env) {
    let mut reserved = HashSet::new();
    explicit_names(items, &mut reserved);
    let mut listing = Listing { names: HashSet::new(), functional: HashSet::new(), reserved, index: 0, scope: env.to_vec() };
    check_entries(cx, g, &mut listing, items, prefix, flow);
}

/// The condition of `item if cond` (or of a shortcut), evaluated; `None` after an error.
fn condition(cx: &mut Ctxt, cond: &syn::Expr, env: Env, what: &str) -> Option<bool> {
    match eval_in(cond, env) {
        Ok(Value::Bool(b)) => Some(b),
        Ok(v) => {
            let help = format!("a condition is a comparison such as `{} != 1` (== != < <= > >=), or several joined by && and ||", layers::tokens(cond));
            cx.error_spanned(cond, format!("{what}'s condition must be true or false, got {}", v.describe()), Some(help));
            None
        }
        Err(e) => {
            cx.push(e);
            None
        }
    }
}

/// `let name = value;`: evaluated in `scope` and added to it (shadowing, as Python rebinds).
fn bind_let(cx: &mut Ctxt, l: &crate::ast::Let, scope: &mut Vec<(String, Value)>) {
    match eval_in(&l.value, scope) {
        Ok(v) => {
            scope.retain(|(n, _)| l.name != n);
            scope.push((l.name.to_string(), v));
        }
        Err(e) => {
            cx.push(e);
            // Still bound, so that its uses fail quietly instead of "not in scope".
            scope.retain(|(n, _)| l.name != n);
            scope.push((l.name.to_string(), Value::Failed));
        }
    }
}

fn check_entries(cx: &mut Ctxt, g: &mut Graph, listing: &mut Listing, items: &[&Item], prefix: &str, flow: &mut Flow) {
    for item in items {
        let (name, name_span) = match item {
            Item::Input(input) => {
                cx.error(input.key.span(), "`input:` must be the first line of the network", None);
                continue;
            }
            Item::Shortcut(s) => {
                cx.error(s.span, "a `+` shortcut line belongs in a `block` definition, which makes it a residual block", None);
                continue;
            }
            Item::Then(l) => {
                cx.error(l.span, "a `=>` line belongs in a residual `block` definition", None);
                continue;
            }
            Item::Let(l) => {
                bind_let(cx, l, &mut listing.scope);
                continue;
            }
            // Absent, it takes no index: the Python list was not appended to.
            Item::If(inner, cond) => {
                if condition(cx, cond, &listing.scope, "an item").unwrap_or(true) {
                    check_entries(cx, g, listing, &[&**inner], prefix, flow);
                }
                continue;
            }
            Item::Splice(inner) => {
                let inner: Vec<&Item> = inner.iter().collect();
                check_entries(cx, g, listing, &inner, prefix, flow);
                continue;
            }
            Item::Block(b) => (b.name.to_string(), Some(b.name.span())),
            Item::Repeat(r) => (r.name.to_string(), Some(r.name.span())),
            Item::Layer(l) if l.functional.is_some() => {
                let taken: HashSet<String> = listing.names.iter().chain(&listing.functional).chain(&listing.reserved).cloned().collect();
                let name = unique(&taken, &functional_name(&l.kind.to_string()));
                listing.functional.insert(name.clone());
                check_functional(cx, g, l, format!("{prefix}{name}"), flow, &listing.scope);
                continue;
            }
            Item::Layer(l) => match &l.name {
                Some(n) => (n.to_string(), Some(n.span())),
                None => (listing.index.to_string(), None),
            },
        };
        listing.index += 1;
        if let Some(span) = name_span
            && !listing.names.insert(name.clone())
        {
            cx.error(
                span,
                format!("the name `{name}` is used twice{}", if prefix.is_empty() { String::new() } else { format!(" in block `{}`", prefix.trim_end_matches('.')) }),
                Some("layer names become state_dict keys (`name.weight`), so they must be unique within a block: rename one".into()),
            );
        }
        listing.names.insert(name.clone());
        let path = format!("{prefix}{name}");
        let env = &listing.scope;
        match item {
            Item::Block(b) => {
                g.modules.push((path.clone(), "Sequential".into()));
                let inner: Vec<&Item> = b.items.iter().collect();
                check_items(cx, g, &inner, &format!("{path}."), flow, env);
            }
            Item::Repeat(r) => {
                let count = match eval_in(&r.count, env) {
                    Ok(Value::Int(c)) if c >= 1 => c as usize,
                    Ok(_) => {
                        let written = layers::tokens(&r.count);
                        cx.error_spanned(&r.count, format!("a repetition count must be a positive integer, got {written}"), None);
                        continue;
                    }
                    Err(e) => {
                        cx.push(e);
                        continue;
                    }
                };
                g.modules.push((path.clone(), "Sequential".into()));
                let copies: Vec<&Item> = std::iter::repeat_n(&*r.item, count).collect();
                check_items(cx, g, &copies, &format!("{path}."), flow, env);
            }
            Item::Layer(l) => match g.blocks.iter().find(|b| l.kind == b.name) {
                Some(def) => check_block_use(cx, g, l, def, path, flow, env),
                None => check_layer(cx, g, l, path, flow, env),
            },
            _ => unreachable!(),
        }
    }
}

/// The names written in a listing (`conv: …`), also inside its groups and conditional items.
fn explicit_names(items: &[&Item], out: &mut HashSet<String>) {
    for item in items {
        match item {
            Item::Layer(Layer { name: Some(n), .. }) => {
                out.insert(n.to_string());
            }
            Item::Block(b) => {
                out.insert(b.name.to_string());
            }
            Item::Repeat(r) => {
                out.insert(r.name.to_string());
            }
            Item::If(inner, _) => explicit_names(&[&**inner], out),
            Item::Splice(inner) => explicit_names(&inner.iter().collect::<Vec<_>>(), out),
            _ => {}
        }
    }
}

/// The name torch.fx gives a call of the functional form of a layer: `adaptive_avg_pool2d`
/// for `F.adaptive_avg_pool2d`, `flatten` for `torch.flatten`.
fn functional_name(kind: &str) -> String {
    match kind {
        "AdaptiveAvgPool2d" => "adaptive_avg_pool2d".into(),
        "MaxPool2d" => "max_pool2d".into(),
        "AvgPool2d" => "avg_pool2d".into(),
        "LeakyReLU" => "leaky_relu".into(),
        "LogSoftmax" => "log_softmax".into(),
        other => other.to_lowercase(),
    }
}

/// `name`, or `name_1`, `name_2`, … if it is taken (as torch.fx numbers a repeated call).
fn unique(taken: &HashSet<String>, name: &str) -> String {
    let mut candidate = name.to_string();
    let mut k = 1;
    while taken.contains(&candidate) {
        candidate = format!("{name}_{k}");
        k += 1;
    }
    candidate
}

/// `_: Flatten`: a layer used in its functional form, with no module. It may not hold state.
fn check_functional(cx: &mut Ctxt, g: &mut Graph, l: &Layer, path: String, flow: &mut Flow, env: Env) {
    let kind = l.kind.to_string();
    let stateful = matches!(kind.as_str(), "Conv2d" | "Linear" | "BatchNorm2d" | "BatchNorm1d") || g.blocks.iter().any(|b| l.kind == b.name);
    if stateful {
        cx.error(
            l.functional.expect("a functional layer"),
            format!("`_:` marks a functional op with no module (as `torch.flatten(x, 1)` in a forward), but {kind} is a module with state"),
            Some("give it a name (`name: ...`), or leave the name out to number it by its index".into()),
        );
    }
    let before = g.nodes.len();
    check_layer(cx, g, l, path, flow, env);
    for node in &mut g.nodes[before..] {
        node.functional = true;
    }
}

/// A use of a block: its parameters bound, its body checked under the use's name, and for a
/// residual block, the sum of its body and its shortcut passed through its `=>` layer.
fn check_block_use(cx: &mut Ctxt, g: &mut Graph, call: &Layer, def: &BlockDef, path: String, flow: &mut Flow, env: Env) {
    if cx.depth() >= MAX_DEPTH {
        cx.error(call.kind.span(), format!("blocks nest more than {MAX_DEPTH} deep here: does `{}` use itself?", def.name), None);
        flow.shape = None;
        return;
    }
    let Some(mut params) = bind_block(cx, call, def, env) else {
        flow.shape = None;
        return;
    };
    let call_text = format!("{}({})", def.name, call.args.iter().map(|a| arg_text(a)).collect::<Vec<_>>().join(", "));
    g.modules.push((path.clone(), def.name.to_string()));
    cx.enter(format!("`{path}` = {call_text}"));
    // The block's `let`s, computed from its parameters, are in scope everywhere in it: in its
    // layers, its shortcut and its conditions.
    for item in &def.items {
        if let Item::Let(l) = item {
            bind_let(cx, l, &mut params);
        }
    }
    let body: Vec<&Item> = def.items.iter().filter(|i| !matches!(i, Item::Shortcut(_) | Item::Then(_) | Item::Let(_))).collect();
    let shortcut = def.items.iter().find_map(|i| match i {
        Item::Shortcut(s) => Some(s),
        _ => None,
    });
    let then = def.items.iter().find_map(|i| match i {
        Item::Then(l) => Some(l),
        _ => None,
    });
    for extra in def.items.iter().filter(|i| matches!(i, Item::Shortcut(_))).skip(1) {
        if let Item::Shortcut(s) = extra {
            cx.error(s.span, "a residual block has one shortcut", None);
        }
    }
    let block_input = flow.clone();
    let prefix = format!("{path}.");
    check_items(cx, g, &body, &prefix, flow, &params);
    if shortcut.is_some() || then.is_some() {
        // The shortcut: its path from the block's input, or the input itself.
        let mut short = block_input.clone();
        let mut described = "the identity".to_string();
        // `+ identity if cond`: the sum itself is there only when cond holds.
        let mut sum = true;
        let mut identity_condition = None;
        if let Some(s) = shortcut {
            let active = s.condition.as_ref().map_or(Some(true), |c| condition(cx, c, &params, "a shortcut")).unwrap_or(true);
            match &s.path {
                Some(p) if active => {
                    g.modules.push((format!("{prefix}{}", p.name), "Sequential".into()));
                    let inner: Vec<&Item> = p.items.iter().collect();
                    check_items(cx, g, &inner, &format!("{prefix}{}.", p.name), &mut short, &params);
                    described = format!("`{prefix}{}`", p.name);
                }
                Some(p) => described = format!("the identity (the condition of `{}` is false)", p.name),
                None => {
                    sum = active;
                    identity_condition = s.condition.as_ref().map(layers::tokens);
                }
            }
        }
        if sum {
            // The sum's error names the instance itself: report it outside the instance's context.
            cx.leave();
            join(cx, g, call, &call_text, &path, flow, &short, &described, identity_condition.as_deref());
            cx.enter(format!("`{path}` = {call_text}"));
        }
        if let Some(then) = then {
            check_layer(cx, g, then, format!("{prefix}{}", then.kind.to_string().to_lowercase()), flow, &params);
        }
    }
    cx.leave();
}

/// The sum of a residual block's main path (`flow`) and its shortcut (`short`), checked equal.
/// After an error the main path's shape flows on, as after any layer's error, so that the
/// layers and blocks after it are still checked.
#[allow(clippy::too_many_arguments)]
fn join(cx: &mut Ctxt, g: &mut Graph, call: &Layer, call_text: &str, path: &str, flow: &mut Flow, short: &Flow, described: &str, condition: Option<&str>) {
    let (Some(main), Some(a)) = (&flow.shape, flow.tensor) else {
        return;
    };
    let (Some(side), Some(b)) = (&short.shape, short.tensor) else {
        return;
    };
    if main != side {
        let help = match condition {
            Some(cond) => format!(
                "the sum is there because `{cond}` holds for this use, but the main path maps {} to {}: make the condition false wherever the shape changes, as torchvision's InvertedResidual does with `stride == 1 && inp == oup`",
                fmt_shape(side),
                fmt_shape(main)
            ),
            None if described.starts_with("the identity") => format!(
                "its shortcut is {described}: give it a downsample path that maps {} to {}, as torchvision's BasicBlock does (a 1×1 convolution with the block's stride, then batch-norm)",
                fmt_shape(side),
                fmt_shape(main)
            ),
            None => format!("{described} must map the block's input to {}", fmt_shape(main)),
        };
        let last = match &flow.origin {
            Origin::Layer(layer) => format!(" (from `{layer}`)"),
            _ => String::new(),
        };
        let shortcut = if described.starts_with("the identity") { "the identity's".to_string() } else { format!("{described}'s") };
        cx.error(
            call.span,
            format!(
                "residual block `{path}` ({call_text}) adds its main path's output {}{last} to {shortcut} {}: they must have the same shape",
                fmt_shape(main),
                fmt_shape(side)
            ),
            Some(help),
        );
        return;
    }
    let out = g.tensor(main.clone());
    g.nodes.push(Node { path: format!("{path}.add"), kind: Kind::Add, display: "the residual sum".into(), inputs: vec![a, b], output: out, span: call.span, functional: false });
    flow.tensor = Some(out);
    flow.origin = Origin::Layer(path.to_string());
}

/// A block's parameters bound to a use's arguments (positional, then keywords, then defaults),
/// evaluated where the block is used.
fn bind_block(cx: &mut Ctxt, call: &Layer, def: &BlockDef, env: Env) -> Option<Vec<(String, Value)>> {
    let mut values: Vec<Option<Value>> = vec![None; def.params.len()];
    let mut positional = 0;
    let mut ok = true;
    for arg in &call.args {
        let index = match &arg.key {
            None => {
                positional += 1;
                if positional > def.params.len() {
                    cx.error(arg.span(), format!("block {} takes {} arguments, this is argument {positional}", def.name, def.params.len()), None);
                    ok = false;
                    continue;
                }
                positional - 1
            }
            Some(k) => match def.params.iter().position(|p| p.name == *k) {
                Some(i) => i,
                None => {
                    let names = def.params.iter().map(|p| p.name.to_string()).collect::<Vec<_>>();
                    let help = match layers::closest(&k.to_string(), names.iter().map(String::as_str)) {
                        Some(best) => format!("did you mean `{best}`?"),
                        None => format!("{} takes {}", def.name, names.join(", ")),
                    };
                    cx.error(k.span(), format!("block {} has no parameter `{k}`", def.name), Some(help));
                    ok = false;
                    continue;
                }
            },
        };
        if values[index].is_some() {
            cx.error(arg.span(), format!("block {} parameter `{}` is given twice", def.name, def.params[index].name), None);
            ok = false;
            continue;
        }
        match eval_in(&arg.value, env) {
            Ok(v) => values[index] = Some(v),
            Err(e) => {
                cx.push(e);
                ok = false;
            }
        }
    }
    let mut bound = Vec::new();
    for (param, value) in def.params.iter().zip(values) {
        let value = match (value, &param.default) {
            (Some(v), _) => v,
            (None, Some(d)) => match eval_in(d, &bound) {
                Ok(v) => v,
                Err(e) => {
                    cx.push(e);
                    ok = false;
                    continue;
                }
            },
            (None, None) => {
                cx.error(call.span, format!("block {} needs its `{}` argument", def.name, param.name), None);
                ok = false;
                continue;
            }
        };
        bound.push((param.name.to_string(), value));
    }
    ok.then_some(bound)
}

fn arg_text(a: &crate::ast::Arg) -> String {
    let v = layers::tokens(&a.value);
    match &a.key {
        Some(k) => format!("{k} = {v}"),
        None => v,
    }
}

fn check_layer(cx: &mut Ctxt, g: &mut Graph, layer: &Layer, path: String, flow: &mut Flow, env: Env) {
    let sig = match layers::lookup(&layer.kind.to_string()) {
        Some(sig) => sig,
        None => match layers::unknown_layer(cx, &layer.kind, g.blocks.iter().map(|b| b.name.to_string()).collect()) {
            Some(guess) => guess,
            None => {
                flow.shape = None;
                return;
            }
        },
    };
    let args = layers::bind(cx, layer, sig, env);
    // After an earlier error the shape may be unknown: the checks then test the arguments only.
    let at = Here { kind_span: layer.kind.span(), origin: flow.origin.clone(), input: flow.shape.clone() };
    let result = match sig.kind {
        "Conv2d" => check_conv2d(cx, &args, &at),
        "Linear" => check_linear(cx, &args, &at),
        "ReLU" => check_activation(cx, &args, &at, |_, _| Some(Act::ReLU)),
        "LeakyReLU" => check_activation(cx, &args, &at, |cx, a| a.float(cx, "negative_slope").map(|s| Act::LeakyReLU(s.value))),
        "Sigmoid" => check_activation(cx, &args, &at, |_, _| Some(Act::Sigmoid)),
        "Tanh" => check_activation(cx, &args, &at, |_, _| Some(Act::Tanh)),
        "SiLU" => check_activation(cx, &args, &at, |_, _| Some(Act::SiLU)),
        "ReLU6" => check_activation(cx, &args, &at, |_, _| Some(Act::ReLU6)),
        "Hardswish" => check_activation(cx, &args, &at, |_, _| Some(Act::Hardswish)),
        "GELU" => check_activation(cx, &args, &at, gelu),
        "ELU" => check_activation(cx, &args, &at, |cx, a| a.float(cx, "alpha").map(|s| Act::ELU(s.value))),
        "Identity" => check_activation(cx, &args, &at, |_, _| Some(Act::Identity)),
        "MaxPool2d" | "AvgPool2d" => check_pool2d(cx, &args, &at),
        "AdaptiveAvgPool2d" | "AdaptiveMaxPool2d" => check_adaptive_pool2d(cx, &args, &at),
        "Flatten" => check_flatten(cx, &args, &at),
        "Dropout" | "Dropout2d" => check_dropout(cx, &args, &at),
        "BatchNorm2d" | "BatchNorm1d" => check_batch_norm(cx, &args, &at),
        "Softmax" | "LogSoftmax" => check_softmax(cx, &args, &at),
        other => unreachable!("no check for {other}"),
    };
    match (result, at.input, flow.tensor) {
        (Some((kind, display, output)), Some(input), Some(tensor)) => {
            flow.origin = match kind {
                Kind::Flatten if input.len() > 1 => Origin::Flatten(input.clone()),
                Kind::Flatten => flow.origin.clone(),
                _ => Origin::Layer(path.clone()),
            };
            let out = g.tensor(output.clone());
            g.nodes.push(Node { path, kind, display, inputs: vec![tensor], output: out, span: layer.span, functional: false });
            flow.shape = Some(output);
            flow.tensor = Some(out);
        }
        _ => flow.shape = None,
    }
}

/// What a check knows about where it is: the layer's kind token, and what flows in (unknown
/// after an earlier error that left no shape).
struct Here {
    kind_span: Span,
    origin: Origin,
    input: Option<Shape>,
}

impl Here {
    /// The input shape; only called once a check knows it is there.
    fn shape(&self) -> &Shape {
        self.input.as_ref().expect("checked by the caller")
    }

    fn from(&self) -> String {
        self.origin.describe(self.shape())
    }

    /// How `_` resolves for a size the input determines (`dim` of the input, when the input
    /// has `rank` dimensions).
    fn infer(&self, rank: usize, dim: usize) -> Infer {
        match &self.input {
            Some(s) if s.len() == rank => Infer::Yes(s[dim]),
            Some(_) => Infer::No,
            None => Infer::Unknown,
        }
    }
}

type Outcome = Option<(Kind, String, Shape)>;

/// An image input `[C, H, W]`, or an error saying the layer needs one.
fn need_image(cx: &mut Ctxt, at: &Here, kind: &str) -> Option<(usize, usize, usize)> {
    match at.input.as_deref()? {
        &[c, h, w] => Some((c, h, w)),
        _ => {
            let help = match at.origin {
                Origin::Flatten(_) => format!("{kind} works on [C, H, W] images: move it before Flatten"),
                _ => format!("{kind} works on [C, H, W] images"),
            };
            cx.error(at.kind_span, format!("{kind} needs an image input [C, H, W], but {} arrives ({})", fmt_shape(at.shape()), at.from()), Some(help));
            None
        }
    }
}

/// `Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
/// bias=True, padding_mode='zeros')`, with `padding='same'|'valid'` as in PyTorch.
fn check_conv2d(cx: &mut Ctxt, a: &Args, at: &Here) -> Outcome {
    let image = need_image(cx, at, "Conv2d");
    let c_in = a.size(cx, "in_channels", at.infer(3, 0));
    let c_out = a.positive(cx, "out_channels");
    let kernel = a.pair(cx, "kernel_size", 1);
    let stride = a.pair(cx, "stride", 1);
    let dilation = a.pair(cx, "dilation", 1);
    let bias = a.bool(cx, "bias");
    let groups = a.size(cx, "groups", Infer::No);
    if let Some((Value::Str(mode), span)) = a.value("padding_mode")
        && mode != "zeros"
    {
        cx.error(span, format!("padding_mode = \"{mode}\" is not supported yet: staticnet pads with zeros"), None);
    }
    let padding = conv_padding(cx, a, kernel.as_ref().map(|k| k.value), dilation.as_ref().map(|d| d.value), stride.as_ref().map(|s| s.value));
    let (c_in, c_out, kernel, stride, dilation, bias, padding, (c, h, w)) = (c_in?, c_out?, kernel?, stride?, dilation?, bias?, padding?, image?);
    // PyTorch's `_ConvNd` requires groups > 0 dividing both channel counts; the largest that
    // does is their greatest common divisor. A wrong groups leaves the shape as it is, so the
    // layers after it are still checked (with groups = 1).
    let groups = match groups {
        Some(g) if g.value == 0 || c_in.value % g.value != 0 || c_out.value % g.value != 0 => {
            let (ci, co) = (c_in.value, c_out.value);
            let largest = gcd(ci, co);
            let what = if g.value == 0 {
                "must be at least 1".to_string()
            } else {
                let fails: Vec<String> = [("in_channels", ci), ("out_channels", co)].iter().filter(|(_, c)| c % g.value != 0).map(|(name, c)| format!("{name} = {c}")).collect();
                format!("must divide both in_channels = {ci} and out_channels = {co}, but does not divide {}", fails.join(" nor "))
            };
            cx.error(
                g.span,
                format!("Conv2d's groups = {} {what}", g.value),
                Some(format!("use a groups that divides both {ci} and {co}, such as {largest} (or 1 for a dense convolution)")),
            );
            1
        }
        Some(g) => g.value,
        None => 1,
    };
    if c_in.value != c {
        cx.error(
            c_in.span,
            format!("Conv2d expects {} input channels, but {c} arrive ({})", c_in.value, at.from()),
            Some(format!("write {}, or {} to infer it", a.render_with("in_channels", &c.to_string()), a.render_with("in_channels", "_"))),
        );
    }
    let (k, s, d, p) = (kernel.value, stride.value, dilation.value, padding.value);
    let mut out = [0; 2];
    for axis in 0..2 {
        let len = [h, w][axis];
        match conv_out(len, k[axis], s[axis], p[axis], d[axis]) {
            Some(o) => out[axis] = o,
            None => {
                let span = a.given("kernel_size").map_or(at.kind_span.into(), |b| b.span);
                let eff = effective_kernel(k[axis], d[axis]);
                let dilated = if d[axis] > 1 { format!(" (dilated to {eff})") } else { String::new() };
                let padded = len + 2 * p[axis];
                cx.error(
                    span,
                    format!(
                        "Conv2d's {}×{} kernel is larger than its padded input: {len} + 2·{} = {padded} < {eff}{dilated} along the {}",
                        k[0],
                        k[1],
                        p[axis],
                        ["height", "width"][axis]
                    ),
                    Some(format!(
                        "{}: use kernel_size = {} or smaller, or padding = {} or more",
                        at.from(),
                        padded,
                        (eff - len).div_ceil(2)
                    )),
                );
                return None;
            }
        }
    }
    // PyTorch's `_ConvNd.extra_repr`: sizes as pairs (`_pair`), padding also when it is the
    // string 'same' or 'valid', the rest only where it differs from the default.
    let mut display = format!("Conv2d({c_in}, {c_out}, kernel_size={}, stride={}", fmt_pair(k), fmt_pair(s), c_in = c_in.value, c_out = c_out.value);
    match a.value("padding") {
        Some((Value::Str(mode), _)) => display += &format!(", padding={mode}"),
        _ if p != [0, 0] => display += &format!(", padding={}", fmt_pair(p)),
        _ => {}
    }
    if d != [1, 1] {
        display += &format!(", dilation={}", fmt_pair(d));
    }
    if groups != 1 {
        display += &format!(", groups={groups}");
    }
    if !bias.value {
        display += ", bias=False";
    }
    display.push(')');
    let kind = Kind::Conv2d { c_in: c_in.value, c_out: c_out.value, kernel: k, stride: s, padding: p, dilation: d, groups, bias: bias.value };
    Some((kind, display, vec![c_out.value, out[0], out[1]]))
}

/// The greatest common divisor (the largest valid `groups` of a convolution).
fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Conv2d's padding: sizes, or PyTorch's strings 'valid' (none) and 'same' (stride 1 only).
fn conv_padding(cx: &mut Ctxt, a: &Args, kernel: Option<[usize; 2]>, dilation: Option<[usize; 2]>, stride: Option<[usize; 2]>) -> Option<crate::value::Spanned<[usize; 2]>> {
    match a.value("padding")? {
        (Value::Str(s), span) if s == "valid" => Some(crate::value::Spanned { value: [0, 0], span }),
        (Value::Str(s), span) if s == "same" => {
            let (k, d) = (kernel?, dilation?);
            if stride? != [1, 1] {
                cx.error(span, "padding = \"same\" needs stride 1 (PyTorch refuses it for strided convolutions)", Some("give the padding as a number".into()));
                return None;
            }
            let total = [d[0] * (k[0] - 1), d[1] * (k[1] - 1)];
            if total[0] % 2 == 1 || total[1] % 2 == 1 {
                cx.error(span, "padding = \"same\" with an even kernel pads one side more than the other, which staticnet does not support yet", Some("use an odd kernel_size".into()));
                return None;
            }
            Some(crate::value::Spanned { value: [total[0] / 2, total[1] / 2], span })
        }
        (Value::Str(s), span) => {
            cx.error(span, format!("padding must be a size, a pair, \"same\" or \"valid\", got \"{s}\""), None);
            None
        }
        _ => a.pair(cx, "padding", 0),
    }
}

/// `Linear(in_features, out_features, bias=True)`.
fn check_linear(cx: &mut Ctxt, a: &Args, at: &Here) -> Outcome {
    let in_f = a.size(cx, "in_features", at.infer(1, 0));
    let out_f = a.positive(cx, "out_features");
    let bias = a.bool(cx, "bias");
    let (out_f, bias, input) = (out_f?, bias?, at.input.as_ref()?);
    let &[f] = &input[..] else {
        let numel: usize = input.iter().product();
        let product = input.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" * ");
        cx.error(
            at.kind_span,
            format!("Linear needs a flat input, but {} arrives ({})", fmt_shape(input), at.from()),
            Some(format!("add `Flatten,` before this layer: it turns {} into {product} = {numel} features", fmt_shape(input))),
        );
        return None;
    };
    let in_f = in_f?;
    if in_f.value != f {
        let written = match &at.origin {
            Origin::Flatten(of) => of.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" * "),
            _ => f.to_string(),
        };
        cx.error(
            in_f.span,
            format!("Linear expects {} input features, but {f} arrive ({})", in_f.value, at.from()),
            Some(format!("write {}, or {} to infer it", a.render_with("in_features", &written), a.render_with("in_features", "_"))),
        );
    }
    let display = format!("Linear(in_features={}, out_features={}, bias={})", in_f.value, out_f.value, py_bool(bias.value));
    Some((Kind::Linear { in_features: in_f.value, out_features: out_f.value, bias: bias.value }, display, vec![out_f.value]))
}

/// `GELU(approximate='none')`: `approximate` is `'none'` (erf) or `'tanh'`, as in PyTorch.
fn gelu(cx: &mut Ctxt, a: &Args) -> Option<Act> {
    let approximate = a.str(cx, "approximate")?;
    match approximate.value.as_str() {
        "none" => Some(Act::GELU { tanh: false }),
        "tanh" => Some(Act::GELU { tanh: true }),
        other => {
            cx.error(approximate.span, format!("GELU's approximate must be \"none\" or \"tanh\", not \"{other}\""), None);
            None
        }
    }
}

/// The element-wise activations: any shape; `inplace` is accepted and changes nothing.
fn check_activation(cx: &mut Ctxt, a: &Args, at: &Here, act: impl Fn(&mut Ctxt, &Args) -> Option<Act>) -> Outcome {
    // A bad `inplace` is reported and taken as false: the shape passes through all the same.
    let inplace = a.sig.params.iter().any(|p| p.name == "inplace") && a.bool(cx, "inplace").is_some_and(|b| b.value);
    let act = act(cx, a)?;
    // PyTorch shows `inplace` only when it is True.
    let display = match act {
        Act::ReLU if inplace => "ReLU(inplace=True)".to_string(),
        Act::ReLU => "ReLU()".to_string(),
        Act::LeakyReLU(_) => format!("LeakyReLU(negative_slope={}{})", repr_arg(a, "negative_slope"), if inplace { ", inplace=True" } else { "" }),
        Act::Sigmoid => "Sigmoid()".to_string(),
        Act::Tanh => "Tanh()".to_string(),
        Act::SiLU if inplace => "SiLU(inplace=True)".to_string(),
        Act::SiLU => "SiLU()".to_string(),
        Act::ReLU6 if inplace => "ReLU6(inplace=True)".to_string(),
        Act::ReLU6 => "ReLU6()".to_string(),
        // Hardswish has no extra_repr: PyTorch prints it bare, inplace or not.
        Act::Hardswish => "Hardswish()".to_string(),
        Act::GELU { tanh } => format!("GELU(approximate='{}')", if tanh { "tanh" } else { "none" }),
        Act::ELU(_) => format!("ELU(alpha={}{})", repr_arg(a, "alpha"), if inplace { ", inplace=True" } else { "" }),
        Act::Identity => "Identity()".to_string(),
    };
    Some((Kind::Activation(act), display, at.input.clone()?))
}

/// `MaxPool2d(kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
/// ceil_mode=False)` and `AvgPool2d(kernel_size, stride=None, padding=0, ceil_mode=False,
/// count_include_pad=True, divisor_override=None)`.
fn check_pool2d(cx: &mut Ctxt, a: &Args, at: &Here) -> Outcome {
    let kind = a.sig.kind;
    let is_max = kind == "MaxPool2d";
    let image = need_image(cx, at, kind);
    let kernel = a.pair(cx, "kernel_size", 1);
    let stride = match a.value("stride") {
        Some((Value::None, _)) => kernel.as_ref().map(|k| crate::value::Spanned { value: k.value, span: k.span }),
        _ => a.pair(cx, "stride", 1),
    };
    let padding = a.pair(cx, "padding", 0);
    let dilation = if is_max { a.pair(cx, "dilation", 1) } else { Some(crate::value::Spanned { value: [1, 1], span: at.kind_span.into() }) };
    let ceil_mode = a.bool(cx, "ceil_mode");
    let (mut count_include_pad, mut divisor) = (true, 0);
    if is_max {
        if let Some(r) = a.bool(cx, "return_indices")
            && r.value
        {
            cx.error(r.span, "return_indices = true is not supported: staticnet keeps the indices for the backward itself", None);
        }
    } else {
        count_include_pad = a.bool(cx, "count_include_pad")?.value;
        divisor = match a.value("divisor_override")? {
            (Value::None, _) => 0,
            _ => a.positive(cx, "divisor_override")?.value,
        };
    }
    let (kernel, stride, padding, dilation, ceil_mode, (c, h, w)) = (kernel?, stride?, padding?, dilation?, ceil_mode?, image?);
    let (k, s, p, d) = (kernel.value, stride.value, padding.value, dilation.value);
    // PyTorch: "pad should be at most half of effective kernel size".
    for axis in 0..2 {
        let eff = effective_kernel(k[axis], d[axis]);
        if 2 * p[axis] > eff {
            cx.error(
                padding.span,
                format!("{kind} padding {} is more than half of its kernel size {eff}, which PyTorch refuses", p[axis]),
                Some(format!("use padding = {} or less", eff / 2)),
            );
            return None;
        }
    }
    let mut out = [0; 2];
    for axis in 0..2 {
        let len = [h, w][axis];
        match pool_out(len, k[axis], s[axis], p[axis], d[axis], ceil_mode.value) {
            Some(o) => out[axis] = o,
            None => {
                cx.error(
                    at.kind_span,
                    format!(
                        "{kind} shrinks {} to nothing: its {}×{} window does not fit the {}×{} input{}",
                        fmt_shape(at.shape()),
                        k[0],
                        k[1],
                        h,
                        w,
                        if p[axis] > 0 { format!(" padded by {}", p[axis]) } else { String::new() }
                    ),
                    Some(format!("{}: remove this pooling layer, or pool less before it", at.from())),
                );
                return None;
            }
        }
    }
    // PyTorch keeps the sizes as they were given (an int stays an int, a pair a pair) and a
    // stride of None becomes the kernel size.
    let kernel_repr = repr_arg(a, "kernel_size");
    let stride_repr = match a.value("stride") {
        Some((Value::None, _)) => kernel_repr.clone(),
        _ => repr_arg(a, "stride"),
    };
    let (kind_v, display) = if is_max {
        (
            Kind::MaxPool2d { kernel: k, stride: s, padding: p, dilation: d, ceil_mode: ceil_mode.value },
            format!(
                "MaxPool2d(kernel_size={kernel_repr}, stride={stride_repr}, padding={}, dilation={}, ceil_mode={})",
                repr_arg(a, "padding"),
                repr_arg(a, "dilation"),
                py_bool(ceil_mode.value)
            ),
        )
    } else {
        (
            Kind::AvgPool2d { kernel: k, stride: s, padding: p, ceil_mode: ceil_mode.value, count_include_pad, divisor_override: divisor },
            format!("AvgPool2d(kernel_size={kernel_repr}, stride={stride_repr}, padding={})", repr_arg(a, "padding")),
        )
    };
    Some((kind_v, display, vec![c, out[0], out[1]]))
}

/// `AdaptiveAvgPool2d(output_size)` and `AdaptiveMaxPool2d(output_size, return_indices=False)`:
/// `output_size` an int, a pair, or a pair with None (keep that side).
fn check_adaptive_pool2d(cx: &mut Ctxt, a: &Args, at: &Here) -> Outcome {
    let kind = a.sig.kind;
    let image = need_image(cx, at, kind);
    // Reported, then checked on as if absent: the shape after it is known.
    if kind == "AdaptiveMaxPool2d" && a.bool(cx, "return_indices").is_some_and(|r| r.value) {
        cx.error(a.value("return_indices")?.1, "AdaptiveMaxPool2d with return_indices = true is not supported: a layer of a listing passes on one tensor", None);
    }
    let (value, span) = a.value("output_size")?;
    let (c, h, w) = image?;
    let side = |cx: &mut Ctxt, v: &Value, keep: usize| -> Option<usize> {
        match v {
            Value::Int(i) if *i >= 1 => Some(*i as usize),
            Value::None => Some(keep),
            Value::Int(i) => {
                cx.error(span, format!("{kind} output_size must be at least 1, got {i}"), None);
                None
            }
            other => {
                cx.error(span, format!("{kind} output_size must be an integer or a pair, got {}", other.describe()), None);
                None
            }
        }
    };
    let out = match &value {
        Value::Tuple(items) if items.len() == 2 => [side(cx, &items[0], h)?, side(cx, &items[1], w)?],
        Value::Tuple(_) => {
            cx.error(span, format!("{kind} output_size must be one integer or a pair (height, width)"), None);
            return None;
        }
        v => {
            let s = side(cx, v, h)?;
            [s, s]
        }
    };
    let display = format!("{kind}(output_size={})", py_repr(&value));
    let kind = if kind == "AdaptiveMaxPool2d" { Kind::AdaptiveMaxPool2d { output: out } } else { Kind::AdaptiveAvgPool2d { output: out } };
    Some((kind, display, vec![c, out[0], out[1]]))
}

/// `Flatten(start_dim=1, end_dim=-1)`: everything after the batch dimension into one.
fn check_flatten(cx: &mut Ctxt, a: &Args, at: &Here) -> Outcome {
    let (start, end) = (a.value("start_dim")?, a.value("end_dim")?);
    // The last dimension counting the batch as 0; unknown after an earlier error.
    let last = at.input.as_ref().map_or(-1, |s| s.len() as i64);
    let ok_end = matches!(end.0, Value::Int(e) if e == -1 || e == last);
    if start.0 != Value::Int(1) || !ok_end {
        cx.error(start.1, "Flatten keeps the batch dimension and flattens all the others: only start_dim = 1, end_dim = -1 is supported", None);
        return None;
    }
    let display = format!("Flatten(start_dim={}, end_dim={})", py_repr(&start.0), py_repr(&end.0));
    Some((Kind::Flatten, display, vec![at.input.as_ref()?.iter().product()]))
}

/// `Dropout(p=0.5, inplace=False)`; p = 1 zeroes everything, as in PyTorch.
fn check_dropout(cx: &mut Ctxt, a: &Args, at: &Here) -> Outcome {
    let kind = a.sig.kind;
    let channels = kind == "Dropout2d";
    // PyTorch's Dropout2d on anything but (N, C, H, W) drops single features with a warning
    // (the "1D" behaviour); here it is an error: write Dropout for that.
    let image = if channels { need_image(cx, at, kind).map(Some) } else { Some(None) };
    a.bool(cx, "inplace")?;
    let p = a.float(cx, "p")?;
    if !(0.0..=1.0).contains(&p.value) {
        let written = a.written("p").unwrap_or_else(|| py_float(p.value));
        cx.error(
            p.span,
            format!("{kind} probability has to be between 0 and 1, but got {written}"),
            Some("p is the probability of zeroing an element: 0.5 drops half of them".into()),
        );
        return None;
    }
    image?;
    let display = format!("{kind}(p={}, inplace={})", repr_arg(a, "p"), repr_arg(a, "inplace"));
    Some((Kind::Dropout { p: p.value, channels }, display, at.input.clone()?))
}

/// `BatchNorm2d(num_features, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)`
/// on images, `BatchNorm1d` on vectors.
fn check_batch_norm(cx: &mut Ctxt, a: &Args, at: &Here) -> Outcome {
    let kind = a.sig.kind;
    let two_d = kind == "BatchNorm2d";
    let n = a.size(cx, "num_features", at.infer(if two_d { 3 } else { 1 }, 0));
    let eps = a.float(cx, "eps");
    let momentum = a.opt_float(cx, "momentum");
    let affine = a.bool(cx, "affine");
    let bias = a.bool(cx, "bias");
    if let Some(b) = &bias
        && !b.value
    {
        cx.error(b.span, format!("{kind} with bias = False is not supported yet: with affine = True staticnet learns both weight and bias"), None);
    }
    let track = a.bool(cx, "track_running_stats");
    let (n, eps, momentum, affine, bias, track, input) = (n?, eps?, momentum?, affine?, bias?, track?, at.input.as_ref()?);
    let c = match (two_d, &input[..]) {
        (true, &[c, _, _]) | (false, &[c]) => c,
        _ => {
            let (want, other) = if two_d { ("an image input [C, H, W]", "BatchNorm1d for vectors") } else { ("a vector input [F]", "BatchNorm2d for images") };
            cx.error(at.kind_span, format!("{kind} needs {want}, but {} arrives ({})", fmt_shape(input), at.from()), Some(format!("use {other}")));
            return None;
        }
    };
    if n.value != c {
        cx.error(
            n.span,
            format!("{kind} expects {} {}, but {c} arrive ({})", n.value, if two_d { "channels" } else { "features" }, at.from()),
            Some(format!("write {}, or {} to infer it", a.render_with("num_features", &c.to_string()), a.render_with("num_features", "_"))),
        );
    }
    if eps.value <= 0.0 {
        cx.error(eps.span, format!("{kind} eps must be positive, got {}", eps.value), None);
    }
    if let Some(m) = momentum.value
        && !(0.0..=1.0).contains(&m)
    {
        cx.error(momentum.span, format!("{kind} momentum must be in [0, 1] (or None for a cumulative average), got {m}"), None);
    }
    // PyTorch 2.15's `_NormBase.extra_repr`; `bias` says whether there is a bias parameter.
    let display = format!(
        "{kind}({}, eps={}, momentum={}, affine={}, bias={}, track_running_stats={})",
        n.value,
        repr_arg(a, "eps"),
        repr_arg(a, "momentum"),
        py_bool(affine.value),
        py_bool(affine.value && bias.value),
        py_bool(track.value)
    );
    let kind_v = Kind::BatchNorm { two_d, c: n.value, eps: eps.value, momentum: momentum.value, affine: affine.value, track_running_stats: track.value };
    Some((kind_v, display, input.clone()))
}

/// `Softmax(dim=None)` and `LogSoftmax(dim=None)`: over dimension 1 (the features or channels),
/// which is also what PyTorch's implicit dim picks for these inputs.
fn check_softmax(cx: &mut Ctxt, a: &Args, at: &Here) -> Outcome {
    let kind = a.sig.kind;
    let (dim, span) = a.value("dim")?;
    let ok = match dim {
        Value::None | Value::Int(1) => true,
        Value::Int(-1) => at.input.as_ref().is_none_or(|s| s.len() == 1),
        _ => false,
    };
    if !ok {
        let written = a.written("dim").unwrap_or_else(|| py_repr(&dim));
        cx.error(span, format!("{kind} normalises over dim = 1 (the features or channels) in staticnet; dim = {written} is not supported"), None);
        return None;
    }
    Some((Kind::Softmax { log: kind == "LogSoftmax" }, format!("{kind}(dim={})", py_repr(&dim)), at.input.clone()?))
}
