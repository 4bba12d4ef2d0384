// GELU's approximate is PyTorch's string, "none" or "tanh"; ELU's alpha is a number.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [16],
        classifier: [Linear(16, 8), GELU(approximate = "fast"), ELU(alpha = true), Linear(8, 2)],
    }
}

fn main() {}
