//! Error collection (serde_derive's `Ctxt`): every check adds its errors here and carries on,
//! so that one build reports every mistake of a network at once.
//!
//! While a block is instantiated, its instance (`layer2.0 = BasicBlock(64, 128, stride = 2)`)
//! is on the context stack, and an error found in its body says which instance it was. The same
//! error at the same place is reported once, however many instances run into it.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote_spanned};

use crate::ast::SpanRange;

#[derive(Default)]
pub struct Ctxt {
    errors: Vec<syn::Error>,
    /// (where, what) of every error reported, to report each once.
    seen: Vec<(String, String)>,
    /// The block instances being checked, outermost first.
    context: Vec<String>,
}

/// An error message with an optional `help:` line, rendered the way rustc renders its own.
pub fn message(msg: impl std::fmt::Display, help: Option<String>) -> String {
    match help {
        Some(help) => format!("{msg}\n= help: {help}"),
        None => msg.to_string(),
    }
}

impl Ctxt {
    /// An error underlining a span, or from `range.start` to `range.end`.
    pub fn error(&mut self, range: impl Into<SpanRange>, msg: impl std::fmt::Display, help: Option<String>) {
        let range = range.into();
        let (start, end) = (range.start, range.end);
        let (msg, help) = (msg.to_string(), help);
        // A span's debug form holds its position: enough to tell places apart.
        let key = (format!("{start:?}{end:?}"), msg.clone());
        if self.seen.contains(&key) {
            return;
        }
        self.seen.push(key);
        let mut text = message(msg, help);
        if let Some(instance) = self.context.last() {
            text.push_str(&format!("\n= note: in {instance}"));
        }
        // syn spans an error from its tokens' first span to their last: two tokens carrying the
        // two ends underline everything between them, which `Span::join` cannot do on stable.
        let tokens: TokenStream = quote_spanned!(start=> a).into_iter().chain(quote_spanned!(end=> b)).collect();
        self.errors.push(syn::Error::new_spanned(tokens, text));
    }

    /// An error underlining some tokens.
    pub fn error_spanned(&mut self, tokens: &dyn ToTokens, msg: impl std::fmt::Display, help: Option<String>) {
        self.error(SpanRange::of(tokens), msg, help);
    }

    /// An error made elsewhere (by an evaluation), reported once however many block instances
    /// run into it.
    pub fn push(&mut self, err: syn::Error) {
        if err.to_string() == crate::value::ALREADY_REPORTED {
            return;
        }
        let key = (format!("{:?}", err.span()), err.to_string());
        if self.seen.contains(&key) {
            return;
        }
        self.seen.push(key);
        self.errors.push(err);
    }

    /// Checks inside block instance `instance` until the matching [`Ctxt::leave`].
    pub fn enter(&mut self, instance: String) {
        self.context.push(instance);
    }

    pub fn leave(&mut self) {
        self.context.pop();
    }

    pub fn depth(&self) -> usize {
        self.context.len()
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// All errors as `compile_error!` invocations.
    pub fn into_compile_errors(self) -> TokenStream {
        self.errors.into_iter().map(|e| e.to_compile_error()).collect()
    }
}
