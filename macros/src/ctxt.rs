//! Error collection (serde_derive's `Ctxt`): every check adds its errors here and carries on,
//! so that one build reports every mistake of a network at once.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote_spanned};

use crate::ast::SpanRange;

#[derive(Default)]
pub struct Ctxt {
    errors: Vec<syn::Error>,
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
        // syn spans an error from its tokens' first span to their last: two tokens carrying the
        // two ends underline everything between them, which `Span::join` cannot do on stable.
        let range = range.into();
        let (start, end) = (range.start, range.end);
        let tokens: TokenStream = quote_spanned!(start=> a).into_iter().chain(quote_spanned!(end=> b)).collect();
        self.errors.push(syn::Error::new_spanned(tokens, message(msg, help)));
    }

    /// An error underlining some tokens.
    pub fn error_spanned(&mut self, tokens: &dyn ToTokens, msg: impl std::fmt::Display, help: Option<String>) {
        self.errors.push(syn::Error::new_spanned(tokens.to_token_stream(), message(msg, help)));
    }

    pub fn push(&mut self, err: syn::Error) {
        self.errors.push(err);
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// All errors as `compile_error!` invocations.
    pub fn into_compile_errors(self) -> TokenStream {
        self.errors.into_iter().map(|e| e.to_compile_error()).collect()
    }
}
