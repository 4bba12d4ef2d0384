// groups must divide both channel counts: 4 divides 16 but not 6, and 0 is no grouping at all.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [16, 8, 8],
        dw: Conv2d(16, 6, 3, padding = 1, groups = 4),
        zero: Conv2d(6, 6, 3, padding = 1, groups = 0),
    }
}

fn main() {}
