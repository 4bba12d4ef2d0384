// `padding` given twice, once by position and once by name.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [1, 28, 28],
        conv: Conv2d(1, 8, 3, 1, 1, padding = 1),
    }
}

fn main() {}
