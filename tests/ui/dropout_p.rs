// Dropout's p is a probability of dropping, between 0 and 1.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [784],
        classifier: [Linear(784, 200), ReLU, Dropout(1.5), Linear(200, 10)],
    }
}

fn main() {}
