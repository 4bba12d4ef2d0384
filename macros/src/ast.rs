//! Tokens → our own description of a network listing. Every node keeps its span, so that the
//! checks can point at the smallest culprit token.
//!
//! ```text
//! network     := attrs vis "struct" Ident "{" item ("," item)* ","? "}"
//! item        := (Ident ":")? ( "[" item,* "]"            -- a block (nested Sequential)
//!                             | Ident ( "(" arg,* ")" )? ) -- a layer
//! arg         := (Ident "=")? Expr
//! ```
//! `input: [C, H, W]` is an item named `input` holding a list of sizes.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, Ident, Token, Visibility, bracketed, parenthesized};

/// A whole `network! { ... }` invocation.
pub struct NetworkDef {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub name: Ident,
    pub items: Vec<Item>,
}

/// One entry of a listing.
pub enum Item {
    Layer(Layer),
    Block(Block),
    /// `input: [1, 28, 28]`.
    Input(Input),
}

/// `name: Kind(args)` or `Kind`.
pub struct Layer {
    pub name: Option<Ident>,
    pub kind: Ident,
    pub args: Vec<Arg>,
    /// The whole layer, from its name (or kind) to its closing parenthesis.
    pub span: SpanRange,
}

/// `name: [ items ]`, a nested Sequential.
pub struct Block {
    pub name: Ident,
    pub items: Vec<Item>,
}

/// `input: [dims]`.
pub struct Input {
    pub key: Ident,
    pub dims: Vec<Expr>,
    pub span: SpanRange,
}

/// A stretch of source from `start` to `end`: what an error underlines. (On stable Rust a macro
/// cannot join two spans into one; an error built from two tokens spans both, see `ctxt.rs`.)
#[derive(Clone, Copy, Debug)]
pub struct SpanRange {
    pub start: Span,
    pub end: Span,
}

impl SpanRange {
    /// From the first to the last token of `tokens`.
    pub fn of(tokens: &dyn quote::ToTokens) -> SpanRange {
        let mut iter = tokens.to_token_stream().into_iter();
        let start = iter.next().map_or_else(Span::call_site, |t| t.span());
        let end = iter.last().map_or(start, |t| t.span());
        SpanRange { start, end }
    }
}

impl From<Span> for SpanRange {
    fn from(span: Span) -> Self {
        SpanRange { start: span, end: span }
    }
}


/// A positional (`5`) or keyword (`padding = 2`) argument.
pub struct Arg {
    pub key: Option<Ident>,
    pub value: Expr,
}

impl Arg {
    /// What to underline for this argument: its whole value.
    pub fn span(&self) -> SpanRange {
        SpanRange::of(&self.value)
    }
}

impl Parse for NetworkDef {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        input.parse::<Token![struct]>()?;
        let name: Ident = input.parse()?;
        if input.peek(Token![<]) {
            return Err(input.error("a network is generic over its backend only, which network! adds itself: remove the generic parameters"));
        }
        let body;
        syn::braced!(body in input);
        let items = parse_items(&body, true)?;
        if !input.is_empty() {
            return Err(input.error("network! takes one network; write a second network! for another"));
        }
        Ok(NetworkDef { attrs, vis, name, items })
    }
}

fn parse_items(input: ParseStream, top: bool) -> syn::Result<Vec<Item>> {
    let mut items = Vec::new();
    while !input.is_empty() {
        items.push(parse_item(input, top)?);
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    Ok(items)
}

fn parse_item(input: ParseStream, top: bool) -> syn::Result<Item> {
    let first: Ident = input.call(syn::ext::IdentExt::parse_any)?;
    if input.peek(Token![:]) && !input.peek(Token![::]) {
        input.parse::<Token![:]>()?;
        if input.peek(syn::token::Bracket) {
            let content;
            let bracket = bracketed!(content in input);
            if top && first == "input" {
                let dims: Punctuated<Expr, Token![,]> = content.parse_terminated(Expr::parse, Token![,])?;
                let span = SpanRange { start: first.span(), end: bracket.span.close() };
                return Ok(Item::Input(Input { key: first, dims: dims.into_iter().collect(), span }));
            }
            let items = parse_items(&content, false)?;
            return Ok(Item::Block(Block { name: first, items }));
        }
        let kind: Ident = input.parse()?;
        let (args, end) = parse_args(input, kind.span())?;
        let span = SpanRange { start: first.span(), end };
        return Ok(Item::Layer(Layer { name: Some(first), kind, args, span }));
    }
    let (args, end) = parse_args(input, first.span())?;
    let span = SpanRange { start: first.span(), end };
    Ok(Item::Layer(Layer { name: None, kind: first, args, span }))
}

/// `( arg, ... )` if present; returns the arguments and the span of the last token.
fn parse_args(input: ParseStream, kind_span: Span) -> syn::Result<(Vec<Arg>, Span)> {
    if !input.peek(syn::token::Paren) {
        return Ok((Vec::new(), kind_span));
    }
    let content;
    let paren = parenthesized!(content in input);
    let mut args = Vec::new();
    while !content.is_empty() {
        let key = if content.peek(Ident) && content.peek2(Token![=]) && !content.peek2(Token![==]) {
            let key: Ident = content.parse()?;
            content.parse::<Token![=]>()?;
            Some(key)
        } else {
            None
        };
        let value: Expr = content.parse()?;
        args.push(Arg { key, value });
        if content.is_empty() {
            break;
        }
        content.parse::<Token![,]>()?;
    }
    Ok((args, paren.span.close()))
}
