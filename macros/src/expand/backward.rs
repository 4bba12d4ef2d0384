//! The backward pass: the nodes in reverse, each reading the gradient of its output and
//! writing the gradient of its input (when a trainable layer before it wants it) and adding to
//! its parameters' gradients (unless they are frozen). For Model A's second convolution:
//!
//! ```text
//! if p.dw[3] || p.dx[3] {
//!     let (dy, dx) = B::io(p.grad, G_RELU2.at(n), G_MAXPOOL1.at(n));
//!     let dwb = if p.dw[3] { Some(B::dst(p.grads, P_CNN2)) } else { None };
//!     let packed = network::packed_weights::<B>(p.packed, p.packed_at, 3);
//!     p.dev.conv2d_backward(&CNN2, n, B::src(p.act, X_MAXPOOL1.at(n)), B::src(p.params, P_CNN2), packed, dy,
//!         Some(B::src(p.act, X_RELU2.at(n))), if p.dx[3] { Some(dx) } else { None }, dwb, ...)?;
//! }
//! ```
//!
//! Where a tensor feeds two nodes (a residual block's input), the second gradient to reach it
//! is computed into a temporary slot and added (`add_assign`).
//!
//! A Conv2d → ReLU → MaxPool2d(2, 2) whose backend says `fuses_conv2d_relu_max_pool_backward`
//! starts the convolution's backward from the pooling's output gradient; the pooling's own
//! backward is then skipped, under the same condition.

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote, quote_spanned};

use super::op_ident;
use crate::check::Kind;
use crate::plan::{Plan, Step};

/// `fn backward_pass(p: Pass<'_, B>) -> Result<()>`.
pub fn backward_pass(plan: &Plan) -> TokenStream {
    let steps = plan.steps.iter().rev().map(|s| step(plan, s));
    quote! {
        fn backward_pass(mut p: Pass<'_, B>) -> Result<()> {
            let n = p.n;
            #(#steps)*
            Ok(())
        }
    }
}

/// Whether a convolution's backward wants its input's gradient: an expression of `p`.
fn wants_dx(conv: &Step) -> TokenStream {
    let layer = Literal::usize_unsuffixed(conv.index);
    if conv.dx[0].is_some() { quote!(p.dx[#layer]) } else { quote!(false) }
}

fn step(plan: &Plan, step: &Step) -> TokenStream {
    let Some(dy) = &step.dy else { return TokenStream::new() };
    if step.fused {
        return TokenStream::new();
    }
    let op = op_ident(step);
    let (x, y, dy) = (&step.x[0].ident, &step.y.ident, &dy.ident);
    let span = step.node.span.start;
    let layer = Literal::usize_unsuffixed(step.index);
    // dy, and dx when this node writes its input's gradient (and a trainable layer wants it).
    let (grads, dx) = match &step.dx[0] {
        Some(dx) => {
            let dx = &dx.ident;
            (quote!(let (dy, dx) = B::io(p.grad, #dy.at(n), #dx.at(n));), quote!(if p.dx[#layer] { Some(dx) } else { None }))
        }
        None => (quote!(let dy = B::src(p.grad, #dy.at(n));), quote!(None)),
    };
    let params = step.params.as_ref().map(|_| format_ident!("P_{}", step.stem));
    let dwb = match &params {
        Some(params) => quote!(let dwb = if p.dw[#layer] { Some(B::dst(p.grads, #params)) } else { None };),
        None => quote!(let dwb = None;),
    };
    let body = match &step.node.kind {
        // Flatten passes its gradient through unchanged: its input's slot is its output's.
        Kind::Flatten => TokenStream::new(),
        Kind::Conv2d { .. } => {
            // With its ReLU fused, dy is the ReLU's output gradient, masked by that output.
            let relu_y = if step.relu { quote!(Some(B::src(p.act, #y.at(n)))) } else { quote!(None) };
            let unfused = quote! {
                #grads
                #dwb
                let packed = network::packed_weights::<B>(p.packed, p.packed_at, #layer);
                p.dev.conv2d_backward(&#op, n, B::src(p.act, #x.at(n)), B::src(p.params, #params), packed, dy, #relu_y, #dx, dwb, B::dst(p.scratch, 0..p.scratch_len))?;
            };
            // With the MaxPool2d(2, 2) after its ReLU, the backend may start from the pooling's
            // output gradient (the pooling's backward then does nothing).
            let pool = step.pool.as_ref().and_then(|(pool, pooled)| Some((plan.steps[*pool].dy.as_ref()?, pooled)));
            match pool {
                Some((pool_dy, pooled)) => {
                    let (pool_dy, pooled, wants_dx) = (&pool_dy.ident, &pooled.ident, wants_dx(step));
                    let grads = match &step.dx[0] {
                        Some(dx) => {
                            let dx = &dx.ident;
                            quote!(let (pool_dy, dx) = B::io(p.grad, #pool_dy.at(n), #dx.at(n));)
                        }
                        None => quote!(let pool_dy = B::src(p.grad, #pool_dy.at(n));),
                    };
                    quote! {
                        if p.dev.fuses_conv2d_relu_max_pool_backward(&#op, #wants_dx) {
                            #grads
                            #dwb
                            p.dev.conv2d_relu_max_pool_backward(&#op, n, B::src(p.act, #x.at(n)), B::src(p.params, #params), B::src(p.act, #y.at(n)), B::src(p.act, #pooled.at(n)), pool_dy, #dx, dwb, B::dst(p.scratch, 0..p.scratch_len))?;
                        } else {
                            #unfused
                        }
                    }
                }
                None => unfused,
            }
        }
        Kind::Linear { .. } => quote! {
            #grads
            #dwb
            p.dev.linear_backward(&#op, n, B::src(p.act, #x.at(n)), B::src(p.params, #params), dy, #dx, dwb)?;
        },
        // A layer without parameters runs its backward only to pass the gradient on: dx exists.
        Kind::Activation(_) => quote! {
            #grads
            p.dev.activation_backward(#op, n * #y.len, B::src(p.act, #x.at(n)), B::src(p.act, #y.at(n)), dy, dx)?;
        },
        Kind::MaxPool2d { .. } => {
            let body = quote! {
                #grads
                p.dev.max_pool2d_backward(&#op, n, B::src(p.act, #x.at(n)), B::src(p.act, #y.at(n)), dy, dx)?;
            };
            // Left to the convolution before the ReLU when it starts from this gradient.
            match &step.pooled_by {
                Some((conv, stem)) => {
                    let (conv_op, wants_dx) = (format_ident!("{}", stem), wants_dx(&plan.steps[*conv]));
                    quote!(if !p.dev.fuses_conv2d_relu_max_pool_backward(&#conv_op, #wants_dx) { #body })
                }
                None => body,
            }
        }
        Kind::AvgPool2d { .. } => quote! {
            #grads
            p.dev.avg_pool2d_backward(&#op, n, dy, dx)?;
        },
        Kind::AdaptiveAvgPool2d { .. } => quote! {
            #grads
            p.dev.adaptive_avg_pool2d_backward(&#op, n, dy, dx)?;
        },
        Kind::AdaptiveMaxPool2d { .. } => quote! {
            #grads
            p.dev.adaptive_max_pool2d_backward(&#op, n, B::src(p.act, #x.at(n)), dy, dx)?;
        },
        Kind::BatchNorm { track_running_stats, .. } => {
            let saved = format_ident!("S_{}", step.stem);
            let wb = match &params {
                Some(params) => quote!(Some(B::src(p.params, #params))),
                None => quote!(None),
            };
            // Batch statistics were used (and are differentiated) in training, or always
            // without running statistics.
            let batch_stats = if *track_running_stats { quote!(p.training) } else { quote!(true) };
            quote! {
                #grads
                #dwb
                p.dev.batch_norm_backward(&#op, n, #batch_stats, B::src(p.act, #x.at(n)), #wb, B::dst(p.saved, #saved), dy, #dx, dwb)?;
            }
        }
        Kind::Dropout { .. } => {
            let key_layer = Literal::u32_unsuffixed(step.index as u32);
            quote! {
                #grads
                if p.training {
                    p.dev.dropout_backward(&#op, n, ops::Dropout::key(p.seed, p.step, #key_layer), dy, dx)?;
                } else {
                    p.dev.copy(dy, dx)?;
                }
            }
        }
        Kind::Softmax { .. } => quote! {
            #grads
            p.dev.softmax_backward(&#op, n, B::src(p.act, #y.at(n)), dy, dx)?;
        },
        // A sum passes its gradient to both inputs as it is; with its ReLU fused, masked first.
        Kind::Add => match &step.dsum {
            Some(d) => {
                let d = &d.ident;
                quote! {
                    let (dy, d) = B::io(p.grad, #dy.at(n), #d.at(n));
                    p.dev.activation_backward(ops::Activation::ReLU, n * #y.len, B::src(p.act, #y.at(n)), B::src(p.act, #y.at(n)), dy, d)?;
                }
            }
            None => TokenStream::new(),
        },
    };
    let accumulate = step.accumulate.iter().map(|(into, from)| {
        let (into, from) = (&into.ident, &from.ident);
        quote! {
            let (from, into) = B::io(p.grad, #from.at(n), #into.at(n));
            p.dev.add_assign(n * #into.len, into, from)?;
        }
    });
    // A layer without trainable parameters whose input needs no gradient does nothing; one
    // with parameters runs when it has something to compute.
    let wanted = match &params {
        Some(_) if step.dx[0].is_some() => quote!(p.dw[#layer] || p.dx[#layer]),
        Some(_) => quote!(p.dw[#layer]),
        None => quote!(p.dx[#layer]),
    };
    if body.is_empty() && step.accumulate.is_empty() {
        return TokenStream::new();
    }
    if step.accumulate.is_empty() {
        return quote_spanned!(span=> if #wanted { #body });
    }
    // The body in its own block: its views (which may have destructors) end before the
    // accumulation takes the gradient arena again.
    quote_spanned!(span=> if #wanted { { #body } if p.dx[#layer] { #(#accumulate)* } })
}
