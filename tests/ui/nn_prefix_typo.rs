// `nn.` is accepted before a layer, as a PyTorch user writes it; a misspelt layer after it is
// still found.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [784],
        fc: nn.Linear(784, 10),
        act: nn.Relu,
    }
}

fn main() {}
