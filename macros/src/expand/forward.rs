//! The forward pass: one kernel call per node, in order, each reading its inputs' slots and
//! writing its output's slot. For Model A's first layer, with its ReLU fused:
//!
//! ```text
//! let (x, y) = B::io(p.act, X_INPUT.at(n), X_RELU1.at(n));
//! let packed = network::packed_weights::<B>(p.packed, p.packed_at, 0);
//! p.dev.conv2d_forward(&CNN1, n, x, B::src(p.params, P_CNN1), packed, y, B::dst(p.scratch, 0..p.scratch_len), true)?;
//! ```

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote, quote_spanned};

use super::op_ident;
use crate::check::Kind;
use crate::plan::{Plan, Step};

/// `fn forward_pass(p: Pass<'_, B>) -> Result<()>`.
pub fn forward_pass(plan: &Plan) -> TokenStream {
    let steps = plan.steps.iter().map(step);
    quote! {
        fn forward_pass(mut p: Pass<'_, B>) -> Result<()> {
            let n = p.n;
            #(#steps)*
            Ok(())
        }
    }
}

/// One node's forward. Spanned at the layer, so a type error in it points at the listing.
fn step(step: &Step) -> TokenStream {
    if step.fused || step.node.kind == Kind::Flatten {
        return TokenStream::new();
    }
    let op = op_ident(step);
    let (x, y) = (&step.x[0].ident, &step.y.ident);
    let span = step.node.span.start;
    let io = quote!(let (x, y) = B::io(p.act, #x.at(n), #y.at(n)););
    let params = step.params.as_ref().map(|_| format_ident!("P_{}", step.stem));
    let relu = step.relu;
    let layer = Literal::usize_unsuffixed(step.index);
    let body = match &step.node.kind {
        Kind::Flatten => unreachable!("returned above"),
        Kind::Conv2d { .. } => {
            let conv = quote! {
                #io
                let packed = network::packed_weights::<B>(p.packed, p.packed_at, #layer);
                p.dev.conv2d_forward(&#op, n, x, B::src(p.params, #params), packed, y, B::dst(p.scratch, 0..p.scratch_len), #relu)?;
            };
            let conv = match &step.fold {
                // An eval forward may fold the batch norm after it into its weights, and write
                // the batch norm's output.
                Some((bn, normed)) => {
                    let (bn, normed) = (Literal::usize_unsuffixed(*bn), &normed.ident);
                    quote! {
                        if p.fuse && p.layers.contains(&#bn) && p.dev.folds_batch_norm() {
                            // With the batch norm's shift as its bias.
                            const FOLDED: ops::Conv2d = ops::Conv2d { bias: true, ..#op };
                            let (x, y) = B::io(p.act, #x.at(n), #normed.at(n));
                            let (wb, packed) = network::folded_weights::<B>(p.packed, p.folded_at, #layer);
                            p.dev.conv2d_forward(&FOLDED, n, x, wb, packed, y, B::dst(p.scratch, 0..p.scratch_len), false)?;
                        } else {
                            #conv
                        }
                    }
                }
                None => conv,
            };
            match &step.pool {
                // The backend may take the ReLU and the pooling after it in the same pass: an
                // eval forward writing only the pooled output, a training forward the ReLU's
                // output too (the backward reads it).
                Some((pool, pooled)) => {
                    let (pool, pooled) = (Literal::usize_unsuffixed(*pool), &pooled.ident);
                    quote! {
                        if p.layers.contains(&#pool) && p.dev.fuses_conv2d_relu_max_pool(&#op, !p.fuse) {
                            let packed = network::packed_weights::<B>(p.packed, p.packed_at, #layer);
                            if p.fuse {
                                let (x, y) = B::io(p.act, #x.at(n), #pooled.at(n));
                                p.dev.conv2d_relu_max_pool_forward(&#op, n, x, B::src(p.params, #params), packed, y, None, B::dst(p.scratch, 0..p.scratch_len))?;
                            } else {
                                let (x, relu_y, y) = B::io_dst2(p.act, #x.at(n), #y.at(n), #pooled.at(n));
                                p.dev.conv2d_relu_max_pool_forward(&#op, n, x, B::src(p.params, #params), packed, y, Some(relu_y), B::dst(p.scratch, 0..p.scratch_len))?;
                            }
                        } else {
                            #conv
                        }
                    }
                }
                None => conv,
            }
        }
        Kind::Linear { .. } => quote! {
            #io
            p.dev.linear_forward(&#op, n, x, B::src(p.params, #params), y)?;
        },
        Kind::Activation(_) => quote! {
            #io
            p.dev.activation_forward(#op, n * #y.len, x, y)?;
        },
        Kind::MaxPool2d { .. } => quote! {
            #io
            p.dev.max_pool2d_forward(&#op, n, x, y)?;
        },
        Kind::AvgPool2d { .. } => quote! {
            #io
            p.dev.avg_pool2d_forward(&#op, n, x, y)?;
        },
        Kind::AdaptiveAvgPool2d { .. } => quote! {
            #io
            p.dev.adaptive_avg_pool2d_forward(&#op, n, x, y)?;
        },
        Kind::AdaptiveMaxPool2d { .. } => quote! {
            #io
            p.dev.adaptive_max_pool2d_forward(&#op, n, x, y)?;
        },
        Kind::BatchNorm { track_running_stats, .. } => {
            let saved = format_ident!("S_{}", step.stem);
            let wb = match &params {
                Some(params) => quote!(Some(B::src(p.params, #params))),
                None => quote!(None),
            };
            if *track_running_stats {
                let running = format_ident!("R_{}", step.stem);
                let counter = Literal::usize_unsuffixed(step.counter.expect("a tracking batch-norm has a counter"));
                quote! {
                    #io
                    if p.training {
                        // Saturating: a counter read from a file may already be at i64::MAX.
                        p.counters[#counter] = p.counters[#counter].saturating_add(1);
                        let factor = #op.factor(p.counters[#counter]);
                        p.dev.batch_norm_forward_train(&#op, n, x, #wb, Some(B::dst(p.buffers, #running)), factor, B::dst(p.saved, #saved), y)?;
                    } else {
                        p.dev.batch_norm_forward_eval(&#op, n, x, #wb, B::src(p.buffers, #running), B::dst(p.saved, #saved), y)?;
                    }
                }
            } else {
                // Without running statistics PyTorch normalises with the batch's in both modes.
                quote! {
                    #io
                    p.dev.batch_norm_forward_train(&#op, n, x, #wb, None, 0.0, B::dst(p.saved, #saved), y)?;
                }
            }
        }
        Kind::Dropout { .. } => {
            let layer = Literal::u32_unsuffixed(step.index as u32);
            quote! {
                #io
                if p.training {
                    p.dev.dropout_forward(&#op, n, ops::Dropout::key(p.seed, p.step, #layer), x, y)?;
                } else {
                    p.dev.copy(x, y)?;
                }
            }
        }
        Kind::Softmax { .. } => quote! {
            #io
            p.dev.softmax_forward(&#op, n, x, y)?;
        },
        // A residual block's sum (and its ReLU, fused).
        Kind::Add => {
            let b = &step.x[1].ident;
            quote! {
                let (a, b, y) = B::io2(p.act, #x.at(n), #b.at(n), #y.at(n));
                p.dev.add(n * #y.len, a, b, y, #relu)?;
            }
        }
    };
    // A layer that the layer before may do in an eval forward: a pooling taken by the
    // convolution (and its ReLU), a batch norm folded into the convolution's weights.
    let body = match (&step.pooled_by, &step.folded_by) {
        (Some((conv, stem)), _) => {
            let (conv, conv_op) = (Literal::usize_unsuffixed(*conv), format_ident!("{}", stem));
            quote!(if !(p.layers.contains(&#conv) && p.dev.fuses_conv2d_relu_max_pool(&#conv_op, !p.fuse)) { #body })
        }
        (None, Some((conv, _))) => {
            let conv = Literal::usize_unsuffixed(*conv);
            quote!(if !(p.fuse && p.layers.contains(&#conv) && p.dev.folds_batch_norm()) { #body })
        }
        (None, None) => body,
    };
    // Guarded, so that a depth-first forward can run the layers before its split per chunk and
    // the rest on the whole batch.
    quote_spanned!(span=> if p.layers.contains(&#layer) { #body })
}
