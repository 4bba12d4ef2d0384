//! The `network!` macro of staticnet.
//!
//! It parses a layer listing (`ast`), infers and checks every shape (`check`), plans the
//! buffers (`plan`) and generates the network type with its forward and backward passes
//! (`expand`). Shape errors are collected and reported together (`ctxt`); beside them a stub of
//! the type is emitted so the code around it does not drown in follow-on errors.

mod ast;
mod check;
mod ctxt;
mod expand;
mod layers;
mod plan;
mod value;

use proc_macro::TokenStream;

/// Declares a network as a layer listing, the way PyTorch's `nn.Sequential` reads.
///
/// ```text
/// network! {
///     /// Model A: two same-padding convolutions, max pooling, one linear readout.
///     pub struct ModelA {
///         input: [1, 28, 28],
///         cnn1: Conv2d(1, 16, kernel_size = 5, stride = 1, padding = 2),
///         relu1: ReLU,
///         maxpool1: MaxPool2d(2),
///         cnn2: Conv2d(16, 32, kernel_size = 5, stride = 1, padding = 2),
///         relu2: ReLU,
///         maxpool2: MaxPool2d(2),
///         Flatten,
///         fc1: Linear(32 * 7 * 7, 10),
///     }
/// }
/// ```
///
/// Every shape is checked at compile time; see the crate documentation of `staticnet` for the
/// language and for what the generated type offers.
#[proc_macro]
pub fn network(input: TokenStream) -> TokenStream {
    let invocation = syn::parse_macro_input!(input as ast::Invocation);
    let mut out = proc_macro2::TokenStream::new();
    for def in &invocation.networks {
        let mut cx = ctxt::Ctxt::default();
        let checked = check::check(&mut cx, def, &invocation.blocks);
        if cx.has_errors() {
            out.extend(cx.into_compile_errors());
            out.extend(expand::stub(def, &checked));
        } else {
            let plan = plan::plan(&checked);
            out.extend(expand::expand(def, &checked, &plan));
        }
    }
    out.into()
}

/// `1234567` as `1,234,567`.
fn thousands(v: usize) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
