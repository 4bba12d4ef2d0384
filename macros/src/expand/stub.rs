//! What `network!` emits beside its errors: the network type with every method, so that the
//! user's code around it compiles and rustc shows only the errors in the listing (thiserror's
//! `fallback.rs`, clap's `dummies.rs`). Nothing here ever runs: the build fails.

use proc_macro2::TokenStream;
use quote::quote;

use super::{batch_type, display_impls, krate};
use crate::ast::NetworkDef;
use crate::check::Checked;

pub fn stub(def: &NetworkDef, net: &Checked) -> TokenStream {
    let sn = krate();
    let NetworkDef { attrs, vis, name, .. } = def;
    // Best effort: the shapes the checks could still infer, so `forward`'s types match.
    let input = net.input.as_deref().map_or_else(|| quote!(#sn::Vectors<1>), batch_type);
    let output = net.output.as_deref().map_or_else(|| quote!(#sn::Vectors<1>), batch_type);
    let name_str = name.to_string();
    let display = display_impls(name);
    quote! {
        #(#attrs)*
        #vis struct #name<B: #sn::Backend = #sn::Cpu> {
            net: #sn::network::NetState<B>,
        }

        const _: () = {
            use #sn::Backend;
            use #sn::network::{NetSpec, NetState, Pass, Slot};
            static SPEC: NetSpec = NetSpec {
                name: #name_str,
                input: &[],
                output: &[],
                layers: &[],
                tensors: &[],
                modules: &[],
                param_len: 0,
                buffer_len: 0,
                counters: 0,
                act_len: 0,
                grad_len: 0,
                saved_len: 0,
                input_slot: Slot::new(0, 0),
                output_slot: Slot::new(0, 0),
                output_grad_slot: Slot::new(0, 0),
                fusions: &[],
                folds: &[],
            };

            impl<B: #sn::Backend> #name<B> {
                pub const PARAMETERS: usize = 0;

                pub fn new(_device: &B, _seed: u64) -> #sn::Result<Self> {
                    ::core::unreachable!("the network! listing has errors")
                }
            }

            impl<B: #sn::Backend> #sn::Network<B> for #name<B> {
                type Input = #input;
                type Output = #output;
                const SPEC: &'static NetSpec = &SPEC;

                fn new(_device: &B, _seed: u64) -> #sn::Result<Self> {
                    ::core::unreachable!("the network! listing has errors")
                }

                fn state(&self) -> &NetState<B> {
                    &self.net
                }

                fn state_mut(&mut self) -> &mut NetState<B> {
                    &mut self.net
                }

                fn forward_pass(_: Pass<'_, B>) -> #sn::Result<()> {
                    ::core::unreachable!("the network! listing has errors")
                }

                fn backward_pass(_: Pass<'_, B>) -> #sn::Result<()> {
                    ::core::unreachable!("the network! listing has errors")
                }
            }

            #display
        };
    }
}
