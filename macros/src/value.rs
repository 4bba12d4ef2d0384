//! Evaluation of argument values: integer expressions (`32 * 7 * 7`), `_`, floats, booleans,
//! `None`, tuples and strings, each kept with its span; inside a block, its parameters by name,
//! the comparisons and logic of a condition (`stride != 1 || inplanes != planes`), and Python's
//! `int`, `round`, `max` and `min` (`int(round(inp * expand_ratio))`).

use syn::spanned::Spanned as _;
use syn::{BinOp, Expr, Lit, UnOp};

/// An evaluated argument.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    /// `_`: infer from the shape flowing in.
    Infer,
    /// Python's `None`.
    None,
    Tuple(Vec<Value>),
    Str(String),
    /// A `let` whose value could not be computed: its error is reported, and a use of its name
    /// fails silently ([`ALREADY_REPORTED`]) rather than claim the name does not exist.
    Failed,
}

/// The message of an error that stands for one already reported: `Ctxt::push` drops it.
pub const ALREADY_REPORTED: &str = "(already reported)";

impl Value {
    pub fn describe(&self) -> &'static str {
        match self {
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Infer => "`_`",
            Value::None => "None",
            Value::Tuple(_) => "a tuple",
            Value::Str(_) => "a string",
            Value::Failed => "a value that could not be computed",
        }
    }
}

/// The values of a block's parameters while it is instantiated.
pub type Env<'a> = &'a [(String, Value)];

/// Evaluates `expr` (outside any block); the error points at the part that cannot be evaluated.
pub fn eval(expr: &Expr) -> syn::Result<Value> {
    eval_in(expr, &[])
}

/// Evaluates `expr` with the parameters of `env` in scope.
pub fn eval_in(expr: &Expr, env: Env) -> syn::Result<Value> {
    let eval = |e: &Expr| eval_in(e, env);
    match expr {
        Expr::Lit(lit) => match &lit.lit {
            Lit::Int(i) => Ok(Value::Int(i.base10_parse()?)),
            Lit::Float(f) => Ok(Value::Float(f.base10_parse()?)),
            Lit::Bool(b) => Ok(Value::Bool(b.value)),
            Lit::Str(s) => Ok(Value::Str(s.value())),
            other => Err(syn::Error::new(other.span(), "expected a number, a boolean, `_`, None, a tuple or a string")),
        },
        Expr::Infer(_) => Ok(Value::Infer),
        Expr::Paren(p) => eval(&p.expr),
        Expr::Group(g) => eval(&g.expr),
        Expr::Tuple(t) => Ok(Value::Tuple(t.elems.iter().map(eval).collect::<syn::Result<_>>()?)),
        Expr::Path(p) if p.path.is_ident("None") => Ok(Value::None),
        // PyTorch code spells booleans the Python way; accept both.
        Expr::Path(p) if p.path.is_ident("True") => Ok(Value::Bool(true)),
        Expr::Path(p) if p.path.is_ident("False") => Ok(Value::Bool(false)),
        Expr::Path(p) if p.path.get_ident().is_some_and(|i| env.iter().any(|(n, _)| i == n)) => {
            let name = p.path.get_ident().expect("checked").to_string();
            match &env.iter().find(|(n, _)| *n == name).expect("checked").1 {
                Value::Failed => Err(syn::Error::new(p.span(), ALREADY_REPORTED)),
                v => Ok(v.clone()),
            }
        }
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => match eval(&u.expr)? {
            Value::Int(v) => Ok(Value::Int(-v)),
            Value::Float(v) => Ok(Value::Float(-v)),
            _ => Err(syn::Error::new(u.span(), "only a number can be negated")),
        },
        Expr::Unary(u) if matches!(u.op, UnOp::Not(_)) => match eval(&u.expr)? {
            Value::Bool(v) => Ok(Value::Bool(!v)),
            _ => Err(syn::Error::new(u.span(), "only a condition can be negated with `!`")),
        },
        Expr::Binary(b) if matches!(b.op, BinOp::And(_) | BinOp::Or(_)) => match (eval(&b.left)?, eval(&b.right)?) {
            (Value::Bool(l), Value::Bool(r)) => Ok(Value::Bool(if matches!(b.op, BinOp::And(_)) { l && r } else { l || r })),
            _ => Err(syn::Error::new(b.span(), "`&&` and `||` join conditions")),
        },
        Expr::Binary(b) if matches!(b.op, BinOp::Eq(_) | BinOp::Ne(_) | BinOp::Lt(_) | BinOp::Le(_) | BinOp::Gt(_) | BinOp::Ge(_)) => {
            let (l, r) = (eval(&b.left)?, eval(&b.right)?);
            let ordering = match (&l, &r) {
                (Value::Int(l), Value::Int(r)) => l.cmp(r),
                (l, r) if l == r => std::cmp::Ordering::Equal,
                (l, r) if matches!(b.op, BinOp::Eq(_) | BinOp::Ne(_)) && l.describe() == r.describe() => std::cmp::Ordering::Less,
                _ => return Err(syn::Error::new(b.span(), format!("cannot compare {} with {}", l.describe(), r.describe()))),
            };
            use std::cmp::Ordering::*;
            Ok(Value::Bool(match b.op {
                BinOp::Eq(_) => ordering == Equal,
                BinOp::Ne(_) => ordering != Equal,
                BinOp::Lt(_) => ordering == Less,
                BinOp::Le(_) => ordering != Greater,
                BinOp::Gt(_) => ordering == Greater,
                _ => ordering != Less,
            }))
        }
        Expr::Binary(b) => {
            let (l, r) = (eval(&b.left)?, eval(&b.right)?);
            let overflow = || syn::Error::new(b.span(), "this size overflows");
            match (l, r) {
                (Value::Int(l), Value::Int(r)) => match b.op {
                    BinOp::Add(_) => l.checked_add(r).map(Value::Int).ok_or_else(overflow),
                    BinOp::Sub(_) => l.checked_sub(r).map(Value::Int).ok_or_else(overflow),
                    BinOp::Mul(_) => l.checked_mul(r).map(Value::Int).ok_or_else(overflow),
                    BinOp::Div(_) | BinOp::Rem(_) if r == 0 => Err(syn::Error::new(b.right.span(), "division by zero")),
                    BinOp::Div(_) => Ok(Value::Int(l / r)),
                    BinOp::Rem(_) => Ok(Value::Int(l % r)),
                    _ => Err(syn::Error::new(b.op.span(), "sizes support only + - * / %")),
                },
                (l, r) => match (as_float(&l), as_float(&r)) {
                    (Some(l), Some(r)) => match b.op {
                        BinOp::Add(_) => Ok(Value::Float(l + r)),
                        BinOp::Sub(_) => Ok(Value::Float(l - r)),
                        BinOp::Mul(_) => Ok(Value::Float(l * r)),
                        BinOp::Div(_) => Ok(Value::Float(l / r)),
                        _ => Err(syn::Error::new(b.op.span(), "numbers support only + - * /")),
                    },
                    _ => Err(syn::Error::new(b.span(), "only numbers can be combined with + - * /")),
                },
            }
        }
        // Python's builtins that torchvision's `__init__`s compute sizes with:
        // `int(round(inp * expand_ratio))`, `max(1.0, width_mult)`.
        Expr::Call(call) if matches!(&*call.func, Expr::Path(p) if p.path.get_ident().is_some_and(|i| ["int", "round", "max", "min"].iter().any(|b| i == b))) => {
            let Expr::Path(p) = &*call.func else { unreachable!("matched") };
            let name = p.path.get_ident().expect("matched").to_string();
            let args: Vec<Value> = call.args.iter().map(eval).collect::<syn::Result<_>>()?;
            builtin(&name, &args).ok_or_else(|| {
                if args.iter().any(|a| matches!(a, Value::Float(f) if !f.is_finite())) {
                    return syn::Error::new(call.span(), format!("{name}() of a value that is not finite (it overflowed)"));
                }
                let given = args.iter().map(Value::describe).collect::<Vec<_>>().join(", ");
                syn::Error::new(call.span(), format!("{name}() takes {}, got ({given})", if name == "max" || name == "min" { "two or more numbers" } else { "one number" }))
            })
        }
        // Inside a block: a name that is neither a parameter nor a `let` before it.
        Expr::Path(p) if !env.is_empty() && p.path.get_ident().is_some() => {
            let name = p.path.get_ident().expect("checked").to_string();
            let hint = match crate::layers::closest(&name, env.iter().map(|(n, _)| n.as_str())) {
                Some(best) => format!("did you mean `{best}`?"),
                None => format!("in scope: {}", env.iter().map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
            };
            Err(syn::Error::new(p.span(), format!("`{name}` is neither a parameter of this block nor a `let` before it; {hint}")))
        }
        Expr::Path(p) => Err(syn::Error::new(
            p.span(),
            format!(
                "network! computes every size at compile time and cannot read `{}`: write the number, or `_` to infer it",
                quote::ToTokens::to_token_stream(&p.path).to_string().replace(' ', "")
            ),
        )),
        other => Err(syn::Error::new(other.span(), "expected a number, a boolean, `_`, None, a tuple or a string")),
    }
}

/// `int`, `round`, `max` and `min` as Python computes them: `int` truncates towards zero,
/// `round` rounds half to even, and both give integers.
fn builtin(name: &str, args: &[Value]) -> Option<Value> {
    match (name, args) {
        ("int" | "round", [Value::Int(v)]) => Some(Value::Int(*v)),
        ("int", [Value::Float(v)]) if v.is_finite() => Some(Value::Int(v.trunc() as i64)),
        ("round", [Value::Float(v)]) if v.is_finite() => Some(Value::Int(v.round_ties_even() as i64)),
        ("max" | "min", [_, _, ..]) => {
            let floats: Vec<f64> = args.iter().map(as_float).collect::<Option<_>>()?;
            let pick = if name == "max" { floats.iter().cloned().fold(f64::MIN, f64::max) } else { floats.iter().cloned().fold(f64::MAX, f64::min) };
            // The first argument holding the extreme, with its own type (`max(1.0, 2)` is 2).
            args.iter().find(|a| as_float(a) == Some(pick)).cloned()
        }
        _ => None,
    }
}

fn as_float(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

/// A value and where it was written.
#[derive(Clone, Debug)]
pub struct Spanned<T> {
    pub value: T,
    pub span: crate::ast::SpanRange,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval_str(s: &str, env: Env) -> Value {
        eval_in(&syn::parse_str(s).unwrap(), env).unwrap()
    }

    #[test]
    fn python_builtins_compute_as_python_does() {
        let env = [("inp".to_string(), Value::Int(24)), ("expand_ratio".to_string(), Value::Int(6)), ("w".to_string(), Value::Float(0.25))];
        assert_eq!(eval_str("int(round(inp * expand_ratio))", &env), Value::Int(144));
        assert_eq!(eval_str("int(round(inp * w))", &env), Value::Int(6));
        // round() rounds half to even, int() truncates.
        assert_eq!(eval_str("round(2.5)", &env), Value::Int(2));
        assert_eq!(eval_str("round(3.5)", &env), Value::Int(4));
        assert_eq!(eval_str("int(7.9)", &env), Value::Int(7));
        assert_eq!(eval_str("max(1.0, w)", &env), Value::Float(1.0));
        assert_eq!(eval_str("min(inp, 16, 32)", &env), Value::Int(16));
        assert!(eval_in(&syn::parse_str("round(inp, 2)").unwrap(), &env).is_err());
    }
}
