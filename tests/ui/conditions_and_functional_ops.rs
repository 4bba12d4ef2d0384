// Misuses of the block language, all reported together: a condition that is not true or false,
// a `let` that reads a name the block does not have, and a layer with state marked `_:` (a
// functional op has no module to hold it). The `let`'s error is reported once for the two uses.
use staticnet::prelude::*;

network! {
    block Expand(inp, expand_ratio) {
        let hidden = inp * expansion;
        Conv2d(inp, inp * expand_ratio, 1) if expand_ratio,
        BatchNorm2d(inp * expand_ratio),
    }

    pub struct Net {
        input: [4, 8, 8],
        a: Expand(4, 6),
        b: Expand(24, 1),
        _: Flatten,
        _: Linear(24 * 8 * 8, 10),
    }
}

fn main() {}
