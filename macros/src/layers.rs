//! The layers `network!` knows, with PyTorch's signatures: argument names in positional order
//! and their defaults. Binding a layer's arguments to its signature catches unknown, repeated and
//! missing arguments, and gives the checks typed values with their spans.

use quote::ToTokens;

use crate::ast::{Layer, SpanRange};
use crate::ctxt::Ctxt;
use crate::value::{Env, Spanned, Value, eval_in};

/// A default value of a PyTorch argument.
#[derive(Clone, Copy)]
pub enum Fallback {
    Required,
    Int(i64),
    Float(f64),
    Bool(bool),
    None,
    Str(&'static str),
}

/// One argument of a layer's constructor.
pub struct Param {
    pub name: &'static str,
    pub default: Fallback,
}

/// A layer's constructor.
pub struct Signature {
    pub kind: &'static str,
    pub params: &'static [Param],
}

const fn p(name: &'static str, default: Fallback) -> Param {
    Param { name, default }
}

use Fallback::{Bool, Float, Int, None as NoneD, Required, Str};

/// PyTorch 2.15's `_BatchNorm`: `bias` sits between `affine` and `track_running_stats`.
const BATCH_NORM: &[Param] = &[
    p("num_features", Required),
    p("eps", Float(1e-5)),
    p("momentum", Float(0.1)),
    p("affine", Bool(true)),
    p("bias", Bool(true)),
    p("track_running_stats", Bool(true)),
];

/// Every layer, as `torch.nn` declares it.
pub const LAYERS: &[Signature] = &[
    Signature {
        kind: "Conv2d",
        params: &[
            p("in_channels", Required),
            p("out_channels", Required),
            p("kernel_size", Required),
            p("stride", Int(1)),
            p("padding", Int(0)),
            p("dilation", Int(1)),
            p("groups", Int(1)),
            p("bias", Bool(true)),
            p("padding_mode", Str("zeros")),
        ],
    },
    Signature { kind: "Linear", params: &[p("in_features", Required), p("out_features", Required), p("bias", Bool(true))] },
    Signature { kind: "ReLU", params: &[p("inplace", Bool(false))] },
    Signature { kind: "LeakyReLU", params: &[p("negative_slope", Float(0.01)), p("inplace", Bool(false))] },
    Signature { kind: "Sigmoid", params: &[] },
    Signature { kind: "Tanh", params: &[] },
    Signature { kind: "SiLU", params: &[p("inplace", Bool(false))] },
    Signature { kind: "ReLU6", params: &[p("inplace", Bool(false))] },
    Signature { kind: "Hardswish", params: &[p("inplace", Bool(false))] },
    Signature { kind: "GELU", params: &[p("approximate", Str("none"))] },
    Signature { kind: "ELU", params: &[p("alpha", Float(1.0)), p("inplace", Bool(false))] },
    Signature { kind: "Identity", params: &[] },
    Signature {
        kind: "MaxPool2d",
        params: &[
            p("kernel_size", Required),
            p("stride", NoneD),
            p("padding", Int(0)),
            p("dilation", Int(1)),
            p("return_indices", Bool(false)),
            p("ceil_mode", Bool(false)),
        ],
    },
    Signature {
        kind: "AvgPool2d",
        params: &[
            p("kernel_size", Required),
            p("stride", NoneD),
            p("padding", Int(0)),
            p("ceil_mode", Bool(false)),
            p("count_include_pad", Bool(true)),
            p("divisor_override", NoneD),
        ],
    },
    Signature { kind: "AdaptiveAvgPool2d", params: &[p("output_size", Required)] },
    Signature { kind: "AdaptiveMaxPool2d", params: &[p("output_size", Required), p("return_indices", Bool(false))] },
    Signature { kind: "Flatten", params: &[p("start_dim", Int(1)), p("end_dim", Int(-1))] },
    Signature { kind: "Dropout", params: &[p("p", Float(0.5)), p("inplace", Bool(false))] },
    Signature { kind: "Dropout2d", params: &[p("p", Float(0.5)), p("inplace", Bool(false))] },
    Signature { kind: "BatchNorm2d", params: BATCH_NORM },
    Signature { kind: "BatchNorm1d", params: BATCH_NORM },
    Signature { kind: "Softmax", params: &[p("dim", NoneD)] },
    Signature { kind: "LogSoftmax", params: &[p("dim", NoneD)] },
];

/// PyTorch layers a course may use that staticnet does not have yet: named in the error so the
/// user knows the name is right and the layer missing.
const NOT_YET: &[&str] = &[
    "Conv1d",
    "Conv3d",
    "ConvTranspose2d",
    "MaxPool1d",
    "MaxPool3d",
    "AvgPool1d",
    "BatchNorm3d",
    "LayerNorm",
    "GroupNorm",
    "Embedding",
    "LSTM",
    "GRU",
    "RNN",
    "Upsample",
];

pub fn lookup(kind: &str) -> Option<&'static Signature> {
    LAYERS.iter().find(|s| s.kind == kind)
}

/// Reports a layer name that is neither in [`LAYERS`] nor one of the invocation's `blocks`;
/// returns the layer it is likely a typo of, so that checking can go on as if that had been
/// written.
pub fn unknown_layer(cx: &mut Ctxt, kind: &syn::Ident, blocks: Vec<String>) -> Option<&'static Signature> {
    let name = kind.to_string();
    if NOT_YET.contains(&name.as_str()) {
        let msg = format!("`{name}` is a PyTorch layer that staticnet does not support yet");
        cx.error(kind.span(), msg, Some(format!("the layers available are {}", available())));
        return None;
    }
    let msg = format!("unknown layer `{name}`");
    if let Some(block) = closest(&name, blocks.iter().map(String::as_str)) {
        cx.error(kind.span(), msg, Some(format!("did you mean the block `{block}`?")));
        return None;
    }
    let best = closest(&name, LAYERS.iter().map(|s| s.kind));
    let help = match best {
        Some(best) => format!("did you mean `{best}`?"),
        None => format!("the layers available are {}", available()),
    };
    cx.error(kind.span(), msg, Some(help));
    best.and_then(lookup)
}

fn available() -> String {
    LAYERS.iter().map(|s| s.kind).collect::<Vec<_>>().join(", ")
}

/// The candidate closest to `name` (case-insensitive edit distance), if it is close enough to
/// be a typo.
pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    candidates
        .map(|c| (strsim::levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|&(d, _)| d <= 2.max(name.len() / 3))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Whether `_` may stand for a size: the value the input gives it, no (the size is free), or
/// unknown (after an earlier error; `_` is then accepted without a value).
#[derive(Clone, Copy)]
pub enum Infer {
    Yes(usize),
    No,
    Unknown,
}

/// A bound argument: its value, where it was written, and its expression.
pub struct Bound {
    pub value: Value,
    pub span: SpanRange,
}

/// A layer's arguments bound to its signature.
pub struct Args<'a> {
    pub sig: &'static Signature,
    pub layer: &'a Layer,
    values: Vec<Option<Bound>>,
}

/// Binds `layer`'s arguments to `sig`, PyTorch's way: positional ones in order, then keywords,
/// evaluated with the parameters of the block being instantiated (`env`) in scope.
pub fn bind<'a>(cx: &mut Ctxt, layer: &'a Layer, sig: &'static Signature, env: Env) -> Args<'a> {
    let mut values: Vec<Option<Bound>> = sig.params.iter().map(|_| None).collect();
    // Arguments written, even if their value failed to evaluate (that error is reported already).
    let mut written = vec![false; sig.params.len()];
    let mut positional = 0;
    for arg in &layer.args {
        let index = match &arg.key {
            None => {
                if positional >= sig.params.len() {
                    let names = sig.params.iter().map(|p| p.name).collect::<Vec<_>>().join(", ");
                    let msg = if sig.params.is_empty() {
                        format!("{} takes no arguments", sig.kind)
                    } else {
                        format!("{} takes at most {} arguments ({names}), this is argument {}", sig.kind, sig.params.len(), positional + 1)
                    };
                    cx.error(arg.span(), msg, None);
                    continue;
                }
                positional += 1;
                positional - 1
            }
            Some(key) => match sig.params.iter().position(|p| key == p.name) {
                Some(i) => i,
                None => {
                    let msg = format!("{} has no argument `{key}`", sig.kind);
                    let help = match closest(&key.to_string(), sig.params.iter().map(|p| p.name)) {
                        Some(best) => format!("did you mean `{best}`?"),
                        None if sig.params.is_empty() => format!("{} takes no arguments", sig.kind),
                        None => format!("{} takes {}", sig.kind, sig.params.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")),
                    };
                    cx.error(key.span(), msg, Some(help));
                    continue;
                }
            },
        };
        if written[index] {
            let span = arg.key.as_ref().map_or(arg.span(), |k| k.span().into());
            cx.error(span, format!("{} argument `{}` is given twice", sig.kind, sig.params[index].name), None);
            continue;
        }
        written[index] = true;
        match eval_in(&arg.value, env) {
            Ok(value) => values[index] = Some(Bound { value, span: arg.span() }),
            Err(e) => cx.push(e),
        }
    }
    for (param, &written) in sig.params.iter().zip(&written) {
        if !written && matches!(param.default, Required) {
            let call_span = SpanRange { start: layer.kind.span(), end: layer.span.end };
            cx.error(call_span, format!("{} needs its `{}` argument", sig.kind, param.name), Some(format!("write {}", usage(sig))));
        }
    }
    Args { sig, layer, values }
}

/// `Conv2d(in_channels, out_channels, kernel_size, stride=1, ...)`.
pub fn usage(sig: &Signature) -> String {
    let params: Vec<String> = sig
        .params
        .iter()
        .filter(|p| matches!(p.default, Required))
        .map(|p| p.name.to_string())
        .chain(sig.params.iter().find(|p| !matches!(p.default, Required)).map(|p| format!("{} = ...", p.name)))
        .collect();
    format!("{}({}{})", sig.kind, params.join(", "), if sig.params.iter().filter(|p| !matches!(p.default, Required)).count() > 1 { ", ..." } else { "" })
}

impl<'a> Args<'a> {
    fn index(&self, name: &str) -> usize {
        self.sig.params.iter().position(|p| p.name == name).unwrap_or_else(|| panic!("{} has no parameter {name}", self.sig.kind))
    }

    /// The argument's expression as the user wrote it (`0`, `1e-3`, `(2, 2)`), for messages
    /// that quote it.
    pub fn written(&self, name: &str) -> Option<String> {
        let i = self.index(name);
        let mut positional = 0;
        self.layer.args.iter().find_map(|a| {
            let index = match &a.key {
                Some(k) => self.sig.params.iter().position(|p| k == p.name),
                None => {
                    positional += 1;
                    Some(positional - 1)
                }
            };
            (index == Some(i)).then(|| tokens(&a.value))
        })
    }

    /// The argument as written, if it was.
    pub fn given(&self, name: &str) -> Option<&Bound> {
        self.values[self.index(name)].as_ref()
    }

    /// The value, written or default; `None` if required and missing (already reported).
    pub fn value(&self, name: &str) -> Option<(Value, SpanRange)> {
        let i = self.index(name);
        match &self.values[i] {
            Some(b) => Some((b.value.clone(), b.span)),
            None => {
                let span = self.layer.kind.span().into();
                let v = match self.sig.params[i].default {
                    Required => return None,
                    Int(v) => Value::Int(v),
                    Float(v) => Value::Float(v),
                    Bool(v) => Value::Bool(v),
                    NoneD => Value::None,
                    Str(s) => Value::Str(s.to_string()),
                };
                Some((v, span))
            }
        }
    }

    fn wrong_type(&self, cx: &mut Ctxt, name: &str, want: &str, got: &Value, span: SpanRange) {
        cx.error(span, format!("{} argument `{name}` must be {want}, got {}", self.sig.kind, got.describe()), None);
    }

    /// A size: a non-negative integer. `_` is accepted only where `infer` allows it.
    pub fn size(&self, cx: &mut Ctxt, name: &str, infer: Infer) -> Option<Spanned<usize>> {
        let (value, span) = self.value(name)?;
        match value {
            Value::Int(v) if v >= 0 => Some(Spanned { value: v as usize, span }),
            Value::Int(v) => {
                cx.error(span, format!("{} argument `{name}` must be at least 0, got {v}", self.sig.kind), None);
                None
            }
            Value::Infer => match infer {
                Infer::Yes(v) => Some(Spanned { value: v, span }),
                Infer::Unknown => None,
                Infer::No => {
                    cx.error(span, format!("`_` cannot stand for {}'s `{name}`: only a size that the input determines can be inferred", self.sig.kind), None);
                    None
                }
            },
            other => {
                self.wrong_type(cx, name, "an integer", &other, span);
                None
            }
        }
    }

    /// A size that must be at least 1 (zero stride, zero kernel, zero channels).
    pub fn positive(&self, cx: &mut Ctxt, name: &str) -> Option<Spanned<usize>> {
        let v = self.size(cx, name, Infer::No)?;
        if v.value == 0 {
            cx.error(v.span, format!("{} `{name}` must be at least 1, got 0", self.sig.kind), None);
            return None;
        }
        Some(v)
    }

    /// An integer or a pair `(h, w)`, as PyTorch's `_pair`; each side at least `min`.
    pub fn pair(&self, cx: &mut Ctxt, name: &str, min: usize) -> Option<Spanned<[usize; 2]>> {
        let (value, span) = self.value(name)?;
        let side = |cx: &mut Ctxt, v: &Value| -> Option<usize> {
            match v {
                Value::Int(i) if *i >= min as i64 => Some(*i as usize),
                Value::Int(i) => {
                    cx.error(span, format!("{} `{name}` must be at least {min}, got {i}", self.sig.kind), None);
                    None
                }
                other => {
                    self.wrong_type(cx, name, "an integer or a pair of integers", other, span);
                    None
                }
            }
        };
        let value = match &value {
            Value::Tuple(items) if items.len() == 2 => [side(cx, &items[0])?, side(cx, &items[1])?],
            Value::Tuple(items) => {
                cx.error(span, format!("{} `{name}` must be one integer or a pair (height, width), got {} values", self.sig.kind, items.len()), None);
                return None;
            }
            v => {
                let s = side(cx, v)?;
                [s, s]
            }
        };
        Some(Spanned { value, span })
    }

    pub fn float(&self, cx: &mut Ctxt, name: &str) -> Option<Spanned<f64>> {
        let (value, span) = self.value(name)?;
        match value {
            Value::Float(v) => Some(Spanned { value: v, span }),
            Value::Int(v) => Some(Spanned { value: v as f64, span }),
            other => {
                self.wrong_type(cx, name, "a number", &other, span);
                None
            }
        }
    }

    /// A number or None (`momentum=None`).
    pub fn opt_float(&self, cx: &mut Ctxt, name: &str) -> Option<Spanned<Option<f64>>> {
        match self.value(name)? {
            (Value::None, span) => Some(Spanned { value: None, span }),
            _ => self.float(cx, name).map(|f| Spanned { value: Some(f.value), span: f.span }),
        }
    }

    pub fn str(&self, cx: &mut Ctxt, name: &str) -> Option<Spanned<String>> {
        let (value, span) = self.value(name)?;
        match value {
            Value::Str(v) => Some(Spanned { value: v, span }),
            other => {
                self.wrong_type(cx, name, "a string", &other, span);
                None
            }
        }
    }

    pub fn bool(&self, cx: &mut Ctxt, name: &str) -> Option<Spanned<bool>> {
        let (value, span) = self.value(name)?;
        match value {
            Value::Bool(v) => Some(Spanned { value: v, span }),
            other => {
                self.wrong_type(cx, name, "true or false", &other, span);
                None
            }
        }
    }

    /// The layer as written with argument `name` replaced by `replacement` (for a `help:` that
    /// shows the fix).
    pub fn render_with(&self, name: &str, replacement: &str) -> String {
        let i = self.index(name);
        let mut positional = 0;
        let mut replaced = false;
        let mut parts: Vec<String> = self
            .layer
            .args
            .iter()
            .map(|a| {
                let index = match &a.key {
                    Some(k) => self.sig.params.iter().position(|p| k == p.name),
                    None => {
                        positional += 1;
                        Some(positional - 1)
                    }
                };
                let value = if index == Some(i) {
                    replaced = true;
                    replacement.to_string()
                } else {
                    tokens(&a.value)
                };
                match &a.key {
                    Some(k) => format!("{k} = {value}"),
                    None => value,
                }
            })
            .collect();
        if !replaced {
            parts.push(format!("{name} = {replacement}"));
        }
        format!("{}({})", self.sig.kind, parts.join(", "))
    }
}

/// An expression as source-like text: `32 * 7 * 7`, `(6, 6)`.
pub fn tokens(expr: &syn::Expr) -> String {
    let s = expr.to_token_stream().to_string();
    // proc-macro2 prints `(6 , 6)`; tidy the commas.
    s.replace(" ,", ",")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A default as PyTorch's documentation writes it in a signature: `1`, `1e-05`, `True`,
    /// `None`, `'zeros'`.
    fn python(default: Fallback) -> String {
        match default {
            Required => unreachable!("a required argument has no default"),
            Int(v) => v.to_string(),
            Float(v) => crate::check::py_float(v),
            Bool(v) => (if v { "True" } else { "False" }).to_string(),
            NoneD => "None".to_string(),
            Str(s) => format!("'{s}'"),
        }
    }

    /// The language reference (`staticnet::language`, src/language.rs of the facade) lists every
    /// layer of [`LAYERS`], in its order, with exactly its arguments and defaults: the table
    /// cannot drift from what the macro accepts.
    #[test]
    fn the_language_reference_lists_every_layer_with_its_signature() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../src/language.rs");
        let doc = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let rows: Vec<Vec<&str>> = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! | layer | arguments"))
            .skip(2)
            .take_while(|l| l.starts_with("//! |"))
            .map(|l| l.trim_start_matches("//! |").trim_end_matches('|').split(" | ").map(str::trim).collect())
            .collect();
        let documented: Vec<&str> = rows.iter().map(|r| r[0].trim_matches('`')).collect();
        let accepted: Vec<&str> = LAYERS.iter().map(|s| s.kind).collect();
        assert_eq!(documented, accepted, "the layers of the reference table and of the macro's table");
        for (row, sig) in rows.iter().zip(LAYERS) {
            let expected = if sig.params.is_empty() {
                "(none)".to_string()
            } else {
                let params: Vec<String> =
                    sig.params.iter().map(|p| if matches!(p.default, Required) { p.name.to_string() } else { format!("{}={}", p.name, python(p.default)) }).collect();
                format!("`{}`", params.join(", "))
            };
            assert_eq!(row[1], expected, "{}: the arguments the reference gives", sig.kind);
            assert!(row.len() == 3 && !row[2].is_empty(), "{}: the reference says what the macro checks", sig.kind);
        }
    }
}
