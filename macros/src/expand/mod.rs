//! Code generation: the network struct, its constants (one op description per layer, one slot
//! per tensor), its tables, and its passes (`forward.rs`, `backward.rs`).
//!
//! For Model A the output reads:
//!
//! ```text
//! pub struct ModelA<B: ::staticnet::Backend = ::staticnet::Cpu> {
//!     net: ::staticnet::network::NetState<B>,
//! }
//! const _: () = {
//!     /// `cnn1`: Conv2d(1, 16, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2)), [1, 28, 28] → [16, 28, 28]
//!     const CNN1: ops::Conv2d = ops::Conv2d::new(1, 16, [28, 28], [5, 5], [1, 1], [2, 2], [1, 1], 1, true);
//!     const X_CNN1: Slot = Slot::new(784, 12544);      // activation slot, per sample
//!     const P_CNN1: Range<usize> = 0..416;             // parameters in the flat buffer
//!     ...
//!     impl<B: Backend> ModelA<B> { pub const PARAMETERS: usize = 28_938; pub fn new(..) }
//!     impl<B: Backend> Network<B> for ModelA<B> { type Input = Images<1, 28, 28>; .. fn forward_pass(..) {..} }
//! };
//! ```

mod backward;
mod forward;
mod stub;

use proc_macro2::{Ident, Literal, TokenStream};
use quote::{ToTokens, format_ident, quote};

use crate::ast::NetworkDef;
use crate::check::{Act, Checked, Kind, fmt_shape};
use crate::plan::{Init, Plan, Slot, StateKind, Step, Tensor};

pub use stub::stub;

/// `::staticnet`, the facade every user crate depends on.
fn krate() -> TokenStream {
    quote!(::staticnet)
}

fn usize_lit(v: usize) -> Literal {
    Literal::usize_unsuffixed(v)
}

fn pair(p: [usize; 2]) -> TokenStream {
    let (a, b) = (usize_lit(p[0]), usize_lit(p[1]));
    quote!([#a, #b])
}

fn f32_lit(v: f64) -> Literal {
    Literal::f32_suffixed(v as f32)
}

/// The batch type of a sample shape: `Images<C, H, W>` or `Vectors<F>`.
pub fn batch_type(shape: &[usize]) -> TokenStream {
    let sn = krate();
    let dims = shape.iter().map(|&d| usize_lit(d));
    match shape.len() {
        3 => quote!(#sn::Images<#(#dims),*>),
        _ => quote!(#sn::Vectors<#(#dims),*>),
    }
}

/// The whole expansion of a network that passed every check.
pub fn expand(def: &NetworkDef, net: &Checked, plan: &Plan) -> TokenStream {
    let sn = krate();
    let NetworkDef { attrs, vis, name, .. } = def;
    let consts = plan.steps.iter().filter_map(|s| op_const(net, s));
    let slots = slot_consts(plan);
    let spec = spec_static(def, net, plan);
    let forward = forward::forward_pass(plan);
    let backward = backward::backward_pass(plan);
    let input = batch_type(&plan.input);
    let output = batch_type(&plan.output);
    let parameters = usize_lit(plan.param_len);
    let params_doc = format!("Trainable parameters: {} (as `sum(p.numel() for p in model.parameters())`).", crate::thousands(plan.param_len));
    let softmax_lint = softmax_lint(def, net);
    let display = display_impls(name);
    quote! {
        #(#attrs)*
        #vis struct #name<B: #sn::Backend = #sn::Cpu> {
            net: #sn::network::NetState<B>,
        }

        const _: () = {
            use ::core::ops::Range;
            use #sn::{Backend, Result, network, ops};
            use #sn::network::{NetState, Pass, Slot};

            #(#consts)*
            #slots
            #spec

            impl<B: Backend> #name<B> {
                #[doc = #params_doc]
                pub const PARAMETERS: usize = #parameters;

                /// A new network on `device`, initialised as PyTorch initialises its layers, with
                /// the random draws seeded by `seed`. It starts in train mode. (The same as
                /// `Network::new`, callable without the trait in scope.)
                pub fn new(device: &B, seed: u64) -> Result<Self> {
                    <Self as #sn::Network<B>>::new(device, seed)
                }

                #softmax_lint
            }

            impl<B: Backend> #sn::Network<B> for #name<B> {
                type Input = #input;
                type Output = #output;
                const SPEC: &'static #sn::network::NetSpec = &SPEC;

                fn new(device: &B, seed: u64) -> Result<Self> {
                    Ok(#name { net: NetState::new(device, &SPEC, seed)? })
                }

                fn state(&self) -> &NetState<B> {
                    &self.net
                }

                fn state_mut(&mut self) -> &mut NetState<B> {
                    &mut self.net
                }

                #forward
                #backward
            }

            #display
        };
    }
}

/// `Display` and `Debug` print the module tree as PyTorch's `print(model)` does:
///
/// ```text
/// impl<B: Backend> Display for ModelA<B> {
///     fn fmt(&self, f) -> fmt::Result { Display::fmt(&ModuleTree::new(&SPEC), f) }
/// }
/// ```
fn display_impls(name: &Ident) -> TokenStream {
    let sn = krate();
    quote! {
        /// PyTorch's `print(model)`: the module tree, one layer per line as PyTorch prints it.
        impl<B: Backend> ::core::fmt::Display for #name<B> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Display::fmt(&#sn::network::ModuleTree::new(&SPEC), f)
            }
        }

        /// The same text as `Display`, as PyTorch's `repr(model)` is its `print(model)`.
        impl<B: Backend> ::core::fmt::Debug for #name<B> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Display::fmt(&#sn::network::ModuleTree::new(&SPEC), f)
            }
        }
    }
}

/// One `const` describing a layer's op, documented with its PyTorch repr and shapes.
fn op_const(net: &Checked, step: &Step) -> Option<TokenStream> {
    let l = step.node;
    let ident = format_ident!("{}", step.stem);
    let doc = format!("`{}`: {}, {} → {}", l.path, l.display, fmt_shape(l.input_shape(net)), fmt_shape(l.output_shape(net)));
    let (ty, value) = op_value(net, step)?;
    Some(quote! {
        #[doc = #doc]
        const #ident: #ty = #value;
    })
}

/// The op type and its constructor for a layer; `None` for Flatten and sums, which need none.
fn op_value(net: &Checked, step: &Step) -> Option<(TokenStream, TokenStream)> {
    let l = step.node;
    let input = l.input_shape(net);
    let sample_hw = |s: &[usize]| pair([s[1], s[2]]);
    Some(match &l.kind {
        Kind::Conv2d { c_in, c_out, kernel, stride, padding, dilation, groups, bias } => {
            let (ci, co, hw, g) = (usize_lit(*c_in), usize_lit(*c_out), sample_hw(input), usize_lit(*groups));
            let (k, s, p, d) = (pair(*kernel), pair(*stride), pair(*padding), pair(*dilation));
            (quote!(ops::Conv2d), quote!(ops::Conv2d::new(#ci, #co, #hw, #k, #s, #p, #d, #g, #bias)))
        }
        Kind::Linear { in_features, out_features, bias } => {
            let (i, o) = (usize_lit(*in_features), usize_lit(*out_features));
            (quote!(ops::Linear), quote!(ops::Linear::new(#i, #o, #bias)))
        }
        Kind::Activation(act) => (quote!(ops::Activation), activation(*act)),
        Kind::MaxPool2d { kernel, stride, padding, dilation, ceil_mode } => {
            let (c, hw) = (usize_lit(input[0]), sample_hw(input));
            let (k, s, p, d) = (pair(*kernel), pair(*stride), pair(*padding), pair(*dilation));
            (quote!(ops::Pool2d), quote!(ops::Pool2d::max(#c, #hw, #k, #s, #p, #d, #ceil_mode)))
        }
        Kind::AvgPool2d { kernel, stride, padding, ceil_mode, count_include_pad, divisor_override } => {
            let (c, hw) = (usize_lit(input[0]), sample_hw(input));
            let (k, s, p, div) = (pair(*kernel), pair(*stride), pair(*padding), usize_lit(*divisor_override));
            (quote!(ops::Pool2d), quote!(ops::Pool2d::avg(#c, #hw, #k, #s, #p, #ceil_mode, #count_include_pad, #div)))
        }
        Kind::AdaptiveAvgPool2d { output } => {
            let (c, hw, out) = (usize_lit(input[0]), sample_hw(input), pair(*output));
            (quote!(ops::AdaptiveAvgPool2d), quote!(ops::AdaptiveAvgPool2d::new(#c, #hw, #out)))
        }
        Kind::AdaptiveMaxPool2d { output } => {
            let (c, hw, out) = (usize_lit(input[0]), sample_hw(input), pair(*output));
            (quote!(ops::AdaptiveMaxPool2d), quote!(ops::AdaptiveMaxPool2d::new(#c, #hw, #out)))
        }
        Kind::BatchNorm { c, eps, momentum, affine, track_running_stats, .. } => {
            let spatial = usize_lit(input[1..].iter().product());
            let (c, eps) = (usize_lit(*c), f32_lit(*eps));
            let momentum = match momentum {
                Some(m) => {
                    let m = f32_lit(*m);
                    quote!(Some(#m))
                }
                None => quote!(None),
            };
            (quote!(ops::BatchNorm), quote!(ops::BatchNorm::new(#c, #spatial, #eps, #momentum, #affine, #track_running_stats)))
        }
        Kind::Dropout { p, channels: false } => {
            let (len, p) = (usize_lit(input.iter().product()), f32_lit(*p));
            (quote!(ops::Dropout), quote!(ops::Dropout::new(#len, #p)))
        }
        Kind::Dropout { p, channels: true } => {
            let (c, plane, p) = (usize_lit(input[0]), usize_lit(input[1..].iter().product()), f32_lit(*p));
            (quote!(ops::Dropout), quote!(ops::Dropout::channels(#c, #plane, #p)))
        }
        Kind::Softmax { log } => {
            let c = usize_lit(input[0]);
            let inner = usize_lit(input[1..].iter().product());
            (quote!(ops::Softmax), quote!(ops::Softmax::new(#c, #inner, #log)))
        }
        Kind::Flatten | Kind::Add => return None,
    })
}

fn activation(act: Act) -> TokenStream {
    match act {
        Act::ReLU => quote!(ops::Activation::ReLU),
        Act::LeakyReLU(s) => {
            let s = f32_lit(s);
            quote!(ops::Activation::LeakyReLU(#s))
        }
        Act::Sigmoid => quote!(ops::Activation::Sigmoid),
        Act::Tanh => quote!(ops::Activation::Tanh),
        Act::SiLU => quote!(ops::Activation::SiLU),
        Act::ReLU6 => quote!(ops::Activation::ReLU6),
        Act::Hardswish => quote!(ops::Activation::Hardswish),
        Act::GELU { tanh } => quote!(ops::Activation::GELU { tanh: #tanh }),
        Act::ELU(alpha) => {
            let alpha = f32_lit(alpha);
            quote!(ops::Activation::ELU(#alpha))
        }
        Act::Identity => quote!(ops::Activation::Identity),
    }
}

fn range(r: &std::ops::Range<usize>) -> TokenStream {
    let (a, b) = (usize_lit(r.start), usize_lit(r.end));
    quote!(#a..#b)
}

fn slot(s: Slot) -> TokenStream {
    let (o, l) = (usize_lit(s.offset), usize_lit(s.len));
    quote!(Slot::new(#o, #l))
}

/// Every slot and range constant the passes name, each once.
fn slot_consts(plan: &Plan) -> TokenStream {
    let mut seen: Vec<String> = Vec::new();
    let mut out = TokenStream::new();
    let mut tensor = |t: &Tensor, doc: String, out: &mut TokenStream| {
        if seen.contains(&t.ident.to_string()) {
            return;
        }
        seen.push(t.ident.to_string());
        let (ident, value) = (&t.ident, slot(t.slot));
        out.extend(quote! { #[doc = #doc] const #ident: Slot = #value; });
    };
    let input_doc = format!("The input {}: its activation slot.", fmt_shape(&plan.input));
    tensor(&plan.x_in, input_doc, &mut out);
    for step in &plan.steps {
        let path = &step.node.path;
        let (what, written_by) = if step.relu { ("its ReLU's output", " (the ReLU fused into it)") } else { ("its output", "") };
        tensor(&step.y, format!("Activation slot of `{path}`: {what}{written_by}."), &mut out);
        if let Some(dy) = &step.dy {
            tensor(dy, format!("Gradient slot of `{path}`: {what}."), &mut out);
        }
        if let Some(d) = &step.dsum {
            tensor(d, format!("Gradient of `{path}` before its ReLU, passed to both of its inputs."), &mut out);
        }
        for (k, dx) in step.dx.iter().enumerate() {
            if let Some(dx) = dx {
                tensor(dx, format!("Gradient `{path}` writes for its input {k}."), &mut out);
            }
        }
        let consts = [
            (step.params.as_ref(), "P", "Parameters of", "Range<usize>"),
            (step.buffers.as_ref(), "R", "Running statistics of", "Range<usize>"),
            (step.saved.as_ref(), "S", "Statistics the forward saves for the backward of", "Range<usize>"),
        ];
        for (r, prefix, what, _) in consts {
            if let Some(r) = r {
                let ident = format_ident!("{}_{}", prefix, step.stem);
                let (doc, value) = (format!("{what} `{path}`."), range(r));
                out.extend(quote! { #[doc = #doc] const #ident: Range<usize> = #value; });
            }
        }
    }
    let g_doc = "Gradient slot of the network's output (written by the loss).".to_string();
    tensor(&plan.g_out, g_doc, &mut out);
    out
}

/// `static SPEC: NetSpec`: the tables the runtime's generic code reads.
fn spec_static(def: &NetworkDef, net: &Checked, plan: &Plan) -> TokenStream {
    let sn = krate();
    let name = def.name.to_string();
    let dims = |s: &[usize]| {
        let d = s.iter().map(|&v| usize_lit(v));
        quote!(&[#(#d),*])
    };
    let (input, output) = (dims(&plan.input), dims(&plan.output));
    let layers = plan.steps.iter().map(|step| {
        let l = step.node;
        let (path, display, out) = (&l.path, &l.display, dims(l.output_shape(net)));
        let ident = format_ident!("{}", step.stem);
        let op = match &l.kind {
            Kind::Conv2d { .. } => quote!(Op::Conv2d(#ident)),
            Kind::Linear { .. } => quote!(Op::Linear(#ident)),
            Kind::Activation(_) => quote!(Op::Activation(#ident)),
            Kind::MaxPool2d { .. } => quote!(Op::MaxPool2d(#ident)),
            Kind::AvgPool2d { .. } => quote!(Op::AvgPool2d(#ident)),
            Kind::AdaptiveAvgPool2d { .. } => quote!(Op::AdaptiveAvgPool2d(#ident)),
            Kind::AdaptiveMaxPool2d { .. } => quote!(Op::AdaptiveMaxPool2d(#ident)),
            Kind::BatchNorm { .. } => quote!(Op::BatchNorm(#ident)),
            Kind::Dropout { .. } => quote!(Op::Dropout(#ident)),
            Kind::Softmax { .. } => quote!(Op::Softmax(#ident)),
            Kind::Flatten => quote!(Op::Flatten),
            Kind::Add => quote!(Op::Add),
        };
        let params = usize_lit(step.params.as_ref().map_or(0, |r| r.len()));
        let param_range = range(&step.params.clone().unwrap_or(0..0));
        let flops = Literal::u64_unsuffixed(flops(net, step));
        let inputs = step.x.iter().map(|t| slot(t.slot));
        // With its ReLU fused, the slot holds the ReLU's output, not this layer's.
        let output_slot = if step.relu { quote!(None) } else { let s = slot(step.y.slot); quote!(Some(#s)) };
        let functional = l.functional;
        quote! {
            LayerSpec {
                name: #path, display: #display, op: #op, output: #out, params: #params, flops: #flops, param_range: #param_range,
                inputs: &[#(#inputs),*], output_slot: #output_slot, functional: #functional,
            }
        }
    });
    let tensors = plan.state.iter().map(|t| {
        let (name, shape, layer) = (&t.name, dims(&t.shape), usize_lit(t.layer));
        let init = |i: &Init| match i {
            Init::FanIn(f) => {
                let f = usize_lit(*f);
                quote!(Init::FanIn(#f))
            }
            Init::Zeros => quote!(Init::Zeros),
            Init::Ones => quote!(Init::Ones),
        };
        let kind = match &t.kind {
            StateKind::Param { offset, init: i } => {
                let (o, i) = (usize_lit(*offset), init(i));
                quote!(TensorKind::Param { offset: #o, init: #i })
            }
            StateKind::Buffer { offset, init: i } => {
                let (o, i) = (usize_lit(*offset), init(i));
                quote!(TensorKind::Buffer { offset: #o, init: #i })
            }
            StateKind::Counter { index } => {
                let i = usize_lit(*index);
                quote!(TensorKind::Counter { index: #i })
            }
        };
        quote!(TensorSpec { name: #name, shape: #shape, kind: #kind, layer: #layer })
    });
    let [param_len, buffer_len, counters, act_len, grad_len, saved_len] =
        [plan.param_len, plan.buffer_len, plan.counters, plan.act_len, plan.grad_len, plan.saved_len].map(usize_lit);
    let (x_in, x_out, g_out) = (&plan.x_in.ident, &plan.x_out.ident, &plan.g_out.ident);
    let modules = net.modules.iter().map(|(name, class)| quote!(ModuleSpec { name: #name, class: #class }));
    let fusions = plan.steps.iter().filter_map(|s| s.pool.as_ref().map(|(pool, _)| [usize_lit(s.index), usize_lit(*pool)])).map(|[c, p]| quote!([#c, #p]));
    let folds = plan.steps.iter().filter_map(|s| {
        let (bn, _) = s.fold.as_ref()?;
        let running = plan.steps[*bn].buffers.as_ref().expect("a folded batch norm has running statistics").start;
        let [conv, bn, running] = [s.index, *bn, running].map(usize_lit);
        Some(quote!(Fold { conv: #conv, bn: #bn, running: #running }))
    });
    quote! {
        static SPEC: #sn::network::NetSpec = {
            use #sn::network::{Fold, Init, LayerSpec, ModuleSpec, NetSpec, Op, TensorKind, TensorSpec};
            NetSpec {
                name: #name,
                input: #input,
                output: #output,
                layers: &[#(#layers),*],
                tensors: &[#(#tensors),*],
                modules: &[#(#modules),*],
                param_len: #param_len,
                buffer_len: #buffer_len,
                counters: #counters,
                act_len: #act_len,
                grad_len: #grad_len,
                saved_len: #saved_len,
                input_slot: #x_in,
                output_slot: #x_out,
                output_grad_slot: #g_out,
                fusions: &[#(#fusions),*],
                folds: &[#(#folds),*],
            }
        };
    }
}

/// Forward FLOPs of one layer for one sample (a multiply-add counts 2), as the runtime's op
/// descriptions count them.
fn flops(net: &Checked, step: &Step) -> u64 {
    let l = step.node;
    let out: usize = l.output_shape(net).iter().product();
    let inp: usize = l.input_shape(net).iter().product();
    (match &l.kind {
        Kind::Conv2d { c_in, kernel, groups, .. } => 2 * out * (c_in / groups) * kernel[0] * kernel[1],
        Kind::Linear { in_features, out_features, .. } => 2 * in_features * out_features,
        Kind::MaxPool2d { kernel, .. } | Kind::AvgPool2d { kernel, .. } => out * kernel[0] * kernel[1],
        Kind::AdaptiveAvgPool2d { .. } | Kind::AdaptiveMaxPool2d { .. } => inp.max(out),
        Kind::BatchNorm { .. } | Kind::Softmax { .. } => 4 * inp,
        Kind::Activation(_) | Kind::Dropout { .. } | Kind::Add => inp,
        Kind::Flatten => 0,
    }) as u64
}

/// A network ending in Softmax, trained with cross-entropy, applies softmax twice: its inherent
/// `train_step` and friends shadow the trait's and carry a deprecation note, which rustc shows
/// as a warning where they are called.
fn softmax_lint(def: &NetworkDef, net: &Checked) -> TokenStream {
    let Some(last) = net.nodes.last() else { return TokenStream::new() };
    if last.kind != (Kind::Softmax { log: false }) {
        return TokenStream::new();
    }
    let sn = krate();
    let note = format!(
        "`{}` ends in Softmax (layer `{}`), but cross-entropy applies log-softmax to the logits itself, so training on softmax outputs squashes the gradients: remove the last Softmax and apply it only when you want probabilities",
        def.name, last.path
    );
    quote! {
        #[deprecated(note = #note)]
        pub fn train_step<O: #sn::Optimizer<B>>(&mut self, x: &<Self as #sn::Network<B>>::Input, labels: &[usize], optimizer: &mut O) -> Result<#sn::LossOutput> {
            <Self as #sn::Network<B>>::train_step(self, x, labels, optimizer)
        }

        #[deprecated(note = #note)]
        pub fn loss_backward(&mut self, criterion: impl Into<#sn::Criterion>, labels: &[usize]) -> Result<#sn::LossOutput> {
            <Self as #sn::Network<B>>::loss_backward(self, criterion, labels)
        }
    }
}

impl ToTokens for Slot {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        tokens.extend(slot(*self));
    }
}

/// The identifier of a step's op constant.
fn op_ident(step: &Step) -> Ident {
    format_ident!("{}", step.stem)
}
