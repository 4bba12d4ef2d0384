// Softmax normalises over the features (dim = 1); dim = 0 would mix the samples of a batch. The
// message quotes the value as written.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [784],
        fc: Linear(784, 10),
        probs: Softmax(dim = 0),
    }
}

fn main() {}
