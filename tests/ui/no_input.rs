// A network must say what one sample looks like.
use staticnet::prelude::*;

network! {
    pub struct Net {
        fc1: Linear(784, 10),
    }
}

fn main() {}
