//! Tokens → our own description of a network listing. Every node keeps its span, so that the
//! checks can point at the smallest culprit token.
//!
//! ```text
//! invocation  := (network | block)+
//! network     := attrs vis "struct" Ident "{" items "}"
//! block       := attrs "block" Ident "(" param,* ")" "{" items "}"      -- a reusable block
//! param       := Ident ("=" Expr)?
//! items       := ( "let" Ident "=" Expr ";" | item "," )* item?      -- `let`: a value computed once
//! item        := entry ("if" Expr)?                                   -- present only if Expr holds
//!              | "+" ( Ident ":" "[" items "]" | "identity" ) ("if" Expr)?   -- a residual shortcut
//!              | "=>" kind ( "(" arg,* ")" )?                         -- the activation after the sum
//! entry       := (Ident ":")? ( "[" items "]"                         -- a nested Sequential
//!                             | "[" item ";" Expr "]"                 -- an item repeated
//!                             | kind ( "(" arg,* ")" )? )             -- a layer or a block
//!              | "_" ":" kind ( "(" arg,* ")" )?                      -- a functional op: no module
//!              | "[" items "]"                                        -- items spliced into the listing
//! kind        := ("nn" ".")? Ident                                    -- `nn.Conv2d` as in PyTorch
//! arg         := (Ident "=")? Expr
//! ```
//! `input: [C, H, W]` is an item named `input` holding a list of sizes.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, Ident, Token, Visibility, bracketed, parenthesized};

/// A whole `network! { ... }` invocation: networks and the blocks they use.
pub struct Invocation {
    pub networks: Vec<NetworkDef>,
    pub blocks: Vec<BlockDef>,
}

/// `struct Name { ... }`.
pub struct NetworkDef {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub name: Ident,
    pub items: Vec<Item>,
}

/// `block Name(params) { items }`: a listing with parameters, used like a layer. (Its doc
/// comment documents the source; nothing is generated for a block itself.)
pub struct BlockDef {
    pub name: Ident,
    pub params: Vec<BlockParam>,
    pub items: Vec<Item>,
}

/// A parameter of a block, with its default.
pub struct BlockParam {
    pub name: Ident,
    pub default: Option<Expr>,
}

/// One entry of a listing.
pub enum Item {
    Layer(Layer),
    Block(Block),
    /// `input: [1, 28, 28]`.
    Input(Input),
    /// `[item; count]`: `count` copies, named by their index.
    Repeat(Repeat),
    /// `+ downsample: [...] if cond`: a residual block's shortcut.
    Shortcut(Shortcut),
    /// `=> ReLU`: the activation applied to a residual block's sum.
    Then(Layer),
    /// `let hidden = inp * expand_ratio;`: a value computed from the block's parameters.
    Let(Let),
    /// `item if cond`: the item is there only when `cond` holds; when it does not, it takes no
    /// index (as a Python list that the item was not appended to).
    If(Box<Item>, Expr),
    /// `[items]` without a name: the items join the enclosing listing (Python's `list.extend`).
    Splice(Vec<Item>),
}

/// `let name = value;`.
pub struct Let {
    pub name: Ident,
    pub value: Expr,
}

/// `name: Kind(args)` or `Kind`: a layer, or a use of a block.
pub struct Layer {
    pub name: Option<Ident>,
    pub kind: Ident,
    pub args: Vec<Arg>,
    /// The whole layer, from its name (or kind) to its closing parenthesis.
    pub span: SpanRange,
    /// `_: Flatten`: the `_`. A functional op (`torch.flatten(x, 1)` in a PyTorch `forward`):
    /// no module, so no name or index of its own.
    pub functional: Option<Span>,
}

/// `name: [ items ]`, a nested Sequential.
pub struct Block {
    pub name: Ident,
    pub items: Vec<Item>,
}

/// `name: [item; count]`.
pub struct Repeat {
    pub name: Ident,
    pub item: Box<Item>,
    pub count: Expr,
}

/// `+ name: [items] if cond` or `+ identity`.
pub struct Shortcut {
    /// `None` for `+ identity`.
    pub path: Option<Block>,
    pub condition: Option<Expr>,
    pub span: SpanRange,
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

mod kw {
    syn::custom_keyword!(block);
    syn::custom_keyword!(identity);
}

impl Parse for Invocation {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let (mut networks, mut blocks) = (Vec::new(), Vec::new());
        while !input.is_empty() {
            let attrs = input.call(Attribute::parse_outer)?;
            if input.peek(kw::block) {
                input.parse::<kw::block>()?;
                blocks.push(parse_block_def(input)?);
                continue;
            }
            let vis: Visibility = input.parse()?;
            if !input.peek(Token![struct]) {
                return Err(input.error("expected `struct Name { ... }` (a network) or `block Name(...) { ... }` (a block it uses)"));
            }
            input.parse::<Token![struct]>()?;
            let name: Ident = input.parse()?;
            if input.peek(Token![<]) {
                return Err(input.error("a network is generic over its backend only, which network! adds itself: remove the generic parameters"));
            }
            let body;
            syn::braced!(body in input);
            networks.push(NetworkDef { attrs, vis, name, items: parse_items(&body, true)? });
        }
        if networks.is_empty() {
            return Err(input.error("network! declares at least one `struct Name { input: [...], ... }`"));
        }
        Ok(Invocation { networks, blocks })
    }
}

fn parse_block_def(input: ParseStream) -> syn::Result<BlockDef> {
    let name: Ident = input.parse()?;
    let content;
    parenthesized!(content in input);
    let mut params = Vec::new();
    while !content.is_empty() {
        let name: Ident = content.parse()?;
        let default = if content.peek(Token![=]) {
            content.parse::<Token![=]>()?;
            Some(content.parse()?)
        } else {
            None
        };
        params.push(BlockParam { name, default });
        if content.is_empty() {
            break;
        }
        content.parse::<Token![,]>()?;
    }
    let body;
    syn::braced!(body in input);
    Ok(BlockDef { name, params, items: parse_items(&body, false)? })
}

fn parse_items(input: ParseStream, top: bool) -> syn::Result<Vec<Item>> {
    let mut items = Vec::new();
    while !input.is_empty() {
        if input.peek(Token![let]) {
            input.parse::<Token![let]>()?;
            let name: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            let value: Expr = input.parse()?;
            input.parse::<Token![;]>()?;
            items.push(Item::Let(Let { name, value }));
            continue;
        }
        items.push(parse_item(input, top)?);
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    Ok(items)
}

fn parse_item(input: ParseStream, top: bool) -> syn::Result<Item> {
    let shortcut_or_then = input.peek(Token![+]) || input.peek(Token![=>]);
    let item = parse_entry(input, top)?;
    if !shortcut_or_then && input.peek(Token![if]) {
        input.parse::<Token![if]>()?;
        let condition = Expr::parse_without_eager_brace(input)?;
        return Ok(Item::If(Box::new(item), condition));
    }
    Ok(item)
}

fn parse_entry(input: ParseStream, top: bool) -> syn::Result<Item> {
    if input.peek(syn::token::Bracket) {
        let content;
        bracketed!(content in input);
        return Ok(Item::Splice(parse_items(&content, false)?));
    }
    if input.peek(Token![_]) && input.peek2(Token![:]) {
        let underscore = input.parse::<Token![_]>()?;
        input.parse::<Token![:]>()?;
        let kind = parse_kind(input)?;
        let (args, end) = parse_args(input, kind.span())?;
        let span = SpanRange { start: underscore.span, end };
        return Ok(Item::Layer(Layer { name: None, kind, args, span, functional: Some(underscore.span) }));
    }
    if input.peek(Token![+]) {
        let plus = input.parse::<Token![+]>()?;
        let path = if input.peek(kw::identity) {
            input.parse::<kw::identity>()?;
            None
        } else {
            let name: Ident = input.parse()?;
            input.parse::<Token![:]>()?;
            let content;
            bracketed!(content in input);
            Some(Block { name, items: parse_items(&content, false)? })
        };
        let condition = if input.peek(Token![if]) {
            input.parse::<Token![if]>()?;
            Some(Expr::parse_without_eager_brace(input)?)
        } else {
            None
        };
        let end = path.as_ref().map_or(plus.span, |p| p.name.span());
        return Ok(Item::Shortcut(Shortcut { path, condition, span: SpanRange { start: plus.span, end } }));
    }
    if input.peek(Token![=>]) {
        input.parse::<Token![=>]>()?;
        let kind = parse_kind(input)?;
        let (args, end) = parse_args(input, kind.span())?;
        let span = SpanRange { start: kind.span(), end };
        return Ok(Item::Then(Layer { name: None, kind, args, span, functional: None }));
    }
    let first: Ident = input.call(syn::ext::IdentExt::parse_any)?;
    let first = strip_nn(input, first)?;
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
            // `[item; count]` or `[items]`.
            let fork = content.fork();
            if fork.call(|s| parse_item(s, false)).is_ok() && fork.peek(Token![;]) {
                let item = parse_item(&content, false)?;
                content.parse::<Token![;]>()?;
                let count: Expr = content.parse()?;
                return Ok(Item::Repeat(Repeat { name: first, item: Box::new(item), count }));
            }
            let items = parse_items(&content, false)?;
            return Ok(Item::Block(Block { name: first, items }));
        }
        let kind = parse_kind(input)?;
        let (args, end) = parse_args(input, kind.span())?;
        let span = SpanRange { start: first.span(), end };
        return Ok(Item::Layer(Layer { name: Some(first), kind, args, span, functional: None }));
    }
    let (args, end) = parse_args(input, first.span())?;
    let span = SpanRange { start: first.span(), end };
    Ok(Item::Layer(Layer { name: None, kind: first, args, span, functional: None }))
}

/// A layer's kind: `Conv2d`, or `nn.Conv2d` as a PyTorch user writes it.
fn parse_kind(input: ParseStream) -> syn::Result<Ident> {
    let kind: Ident = input.parse()?;
    strip_nn(input, kind)
}

/// `nn.Conv2d` → `Conv2d`: after an identifier `nn` followed by `.`, the layer's kind.
fn strip_nn(input: ParseStream, ident: Ident) -> syn::Result<Ident> {
    if ident == "nn" && input.peek(Token![.]) {
        input.parse::<Token![.]>()?;
        return input.parse();
    }
    Ok(ident)
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
        let key = if content.peek(Ident) && content.peek2(Token![=]) && !content.peek2(Token![==]) && !content.peek2(Token![=>]) {
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
