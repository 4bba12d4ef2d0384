// The layers beyond the course, misused: AdaptiveMaxPool2d on a vector and with
// return_indices (a listing passes one tensor on), an activation's inplace that is no boolean.
use staticnet::prelude::*;

network! {
    pub struct Net {
        input: [3, 8, 8],
        pool: AdaptiveMaxPool2d(4, return_indices = true),
        act: SiLU(inplace = 1),
        _: Flatten,
        late: AdaptiveMaxPool2d(2),
        fc: Linear(48, 10),
    }
}

fn main() {}
