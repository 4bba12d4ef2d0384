// A `let` that cannot be computed is reported once, at its expression; its uses say nothing more
// (they used to claim the name was not in scope).
use staticnet::prelude::*;

network! {
    block B(c, k) {
        let z = c / k;
        let big = c * 9223372036854775807;
        let r = int(round(c * 1e300 * 1e300));
        Conv2d(c, z, 1),
        Conv2d(z, big, 1) if k == 1,
        Conv2d(big, r, 1),
    }

    pub struct Net {
        input: [4, 8, 8],
        blocks: [B(4, 0), B(4, 1)],
    }
}

fn main() {}
